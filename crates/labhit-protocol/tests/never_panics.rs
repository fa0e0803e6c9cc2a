//! The pipeline checker never panics, whatever it is fed, and every diagnostic points inside
//! the file: arbitrary bytes, YAML-ish text built from the pipeline vocabulary, and byte
//! flips and truncations of the corpus files.

use std::path::Path;
use std::sync::OnceLock;

use labhit_protocol::Diagnostic;
use labhit_protocol::pipeline::{CheckOptions, check};
use proptest::prelude::*;

/// Checks `bytes` and asserts every span (and related span) lies within the file.
fn check_within_bounds(bytes: &[u8]) -> Result<(), TestCaseError> {
    let checked = check(bytes, &CheckOptions::default());
    let lines = line_count(bytes);
    for d in &checked.diagnostics {
        let spans = std::iter::once(d.span).chain(d.related.iter().map(|r| r.span));
        for span in spans {
            prop_assert!(
                span.start.line >= 1 && span.start.column >= 1,
                "span before the file: {}",
                describe(d)
            );
            prop_assert!(
                span.start <= span.end,
                "span ends before it starts: {}",
                describe(d)
            );
            prop_assert!(
                span.end.line <= lines,
                "span past the last line ({lines}): {}",
                describe(d)
            );
        }
        prop_assert!(!d.message.is_empty(), "empty message for {}", d.rule);
    }
    prop_assert_eq!(checked.is_ok(), checked.pipeline.is_some());
    Ok(())
}

/// Lines as YAML counts them (LF, CRLF and a lone CR each end a line), plus the line after
/// the last break, where the end of the file is.
fn line_count(bytes: &[u8]) -> u32 {
    let mut lines = 1u32;
    let mut iter = bytes.iter().peekable();
    while let Some(&b) = iter.next() {
        match b {
            b'\n' => lines += 1,
            b'\r' => {
                iter.next_if_eq(&&b'\n');
                lines += 1;
            }
            _ => {}
        }
    }
    lines
}

fn describe(d: &Diagnostic) -> String {
    format!(
        "{}:{}-{}:{} [{}] {}",
        d.span.start.line,
        d.span.start.column,
        d.span.end.line,
        d.span.end.column,
        d.rule,
        d.message
    )
}

/// The corpus files' contents.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/pipelines");
        let mut files = Vec::new();
        for dir in ["valid", "invalid"] {
            let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
                .expect("corpus directory")
                .map(|e| e.expect("entry").path())
                .collect();
            paths.sort();
            for path in paths {
                files.push(std::fs::read(path).expect("corpus file"));
            }
        }
        assert!(!files.is_empty(), "empty corpus");
        files
    })
}

/// One token of YAML-ish text.
fn token() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "engine",
        "pipeline",
        "name",
        "stages",
        "use",
        "after",
        "with",
        "sandbox",
        "gate",
        "run",
        "image",
        "resources",
        "cpu",
        "memory",
        "timeout",
        "approval",
        "policy",
        "required",
        "none",
        "build",
        "test",
        "source/git@^1",
        "\"1\"",
        "1",
        "0",
        "-1",
        "1.5",
        "500m",
        "4Gi",
        "30m",
        "~",
        "null",
        "true",
        "yes",
        ".inf",
        "0x1f",
        "a/b",
        "Build",
        "${{",
        "$${{",
        "}}",
        "${{ stages.s0.outputs.x }}",
    ]);
    prop_oneof![
        4 => words.prop_map(str::to_owned),
        3 => prop::sample::select(vec![
            ":", ": ", "-", "- ", "[", "]", "{", "}", ",", "\"", "'", "&a ", "*a", "&b ", "*b",
            "? ", "|", ">", "!!str ", "!x ", "#", "---", "...", "%YAML 1.2",
        ])
        .prop_map(str::to_owned),
        3 => (0usize..8).prop_map(|n| format!("\n{}", " ".repeat(n))),
        1 => Just("\t".to_owned()),
        1 => "[a-z]{1,6}",
        1 => any::<char>().prop_map(String::from),
    ]
}

/// A structurally plausible pipeline with random choices at each place.
fn pipeline_like() -> impl Strategy<Value = String> {
    let value = prop::sample::select(vec![
        "x",
        "\"1\"",
        "1",
        "[a, b]",
        "{a: 1}",
        "",
        "~",
        "a/b",
        "30m",
        "4Gi",
        "500m",
        "*a",
        "&a {k: v}",
        "[",
        "required",
        "${{ stages.s1.outputs.x }}",
        "\"a ${{stages.s0.outputs.y}} b\"",
        "'${{ stages.s9.outputs.z'",
        "${{ }}",
        "[\"$${{\", \"${{ stages.s2.outputs.q }}\"]",
    ]);
    let key = prop::sample::select(vec![
        "use",
        "after",
        "with",
        "sandbox",
        "gate",
        "run",
        "image",
        "resources",
        "cpu",
        "memory",
        "timeout",
        "approval",
        "policy",
        "afer",
        "1",
        "\"q\"",
    ]);
    prop::collection::vec((0usize..4, key, value), 0..24).prop_map(|entries| {
        let mut text = String::from("engine: \"1\"\npipeline:\n  name: p\n  stages:\n");
        for (i, (depth, key, value)) in entries.into_iter().enumerate() {
            if depth == 0 {
                text.push_str(&format!("    s{}:\n", i % 5));
            } else {
                text.push_str(&format!("{}{key}: {value}\n", "  ".repeat(depth + 2)));
            }
        }
        text
    })
}

/// Text made of the pieces of output references, for their parser.
fn reference_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => prop::sample::select(vec![
            "${{", "$${{", "$$", "$", "}}", "}", "{{", " ", "stages", ".", "outputs", "s0",
            "digest", "a-b_c", "Stage", "é", "\n",
        ])
        .prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

/// What `refs::parse` promises for any string: no panic, ranges on character boundaries
/// inside the text, references that print back as valid references, and a render that keeps
/// the text around them.
fn check_reference_parser(text: &str) -> Result<(), TestCaseError> {
    use labhit_protocol::pipeline::refs;
    match refs::parse(text) {
        Err(e) => {
            prop_assert!(e.range.start < e.range.end && e.range.end <= text.len());
            prop_assert!(
                text.is_char_boundary(e.range.start) && text.is_char_boundary(e.range.end)
            );
            prop_assert!(!e.message.is_empty() && !e.help.is_empty());
        }
        Ok(template) => {
            for (reference, range) in template.references() {
                prop_assert!(range.end <= text.len() && text.is_char_boundary(range.start));
                prop_assert!(text[range.clone()].starts_with("${{"));
                let printed = reference.to_string();
                let again =
                    refs::parse(&printed).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(again.references().next().map(|(r, _)| r), Some(reference));
            }
            let rendered = template
                .render(|_| Some(""))
                .map_err(|r| TestCaseError::fail(r.to_string()))?;
            prop_assert!(rendered.len() <= text.len());
            if !text.contains('$') {
                prop_assert_eq!(rendered, text);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn output_reference_parser_on_arbitrary_strings(text in any::<String>()) {
        check_reference_parser(&text)?;
    }

    #[test]
    fn output_reference_parser_on_reference_soup(text in reference_soup()) {
        check_reference_parser(&text)?;
    }

    #[test]
    fn the_escape_is_always_a_literal(text in "[^$]{0,40}") {
        let template = labhit_protocol::pipeline::refs::parse(&format!("$${{{{{text}"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(template.references().count(), 0);
        prop_assert_eq!(template.render(|_| None).ok(), Some(format!("${{{{{text}")));
    }

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_within_bounds(&bytes)?;
    }

    #[test]
    fn yaml_ish_token_soup(tokens in prop::collection::vec(token(), 0..80)) {
        check_within_bounds(tokens.concat().as_bytes())?;
    }

    #[test]
    fn pipeline_shaped_text(text in pipeline_like()) {
        check_within_bounds(text.as_bytes())?;
    }

    #[test]
    fn corpus_byte_flips(
        file in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = file.get(corpus()).clone();
        if !bytes.is_empty() {
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
        }
        check_within_bounds(&bytes)?;
    }

    #[test]
    fn corpus_truncations(file in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let bytes = file.get(corpus());
        let end = cut.index(bytes.len() + 1);
        check_within_bounds(&bytes[..end])?;
    }

    #[test]
    fn corpus_splices(
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        cut_a in any::<prop::sample::Index>(),
        cut_b in any::<prop::sample::Index>(),
    ) {
        let (a, b) = (a.get(corpus()), b.get(corpus()));
        let mut bytes = a[..cut_a.index(a.len() + 1)].to_vec();
        bytes.extend_from_slice(&b[cut_b.index(b.len() + 1)..]);
        check_within_bounds(&bytes)?;
    }
}

/// The YAML scanner places the end of a file without a final newline on the line after it;
/// diagnostics there must still point inside the file.
#[test]
fn spans_stay_inside_a_file_without_a_final_newline() {
    for src in [
        "a: [b",
        "-\n ",
        "- a\n- b",
        "a:\n  b: c\n  d",
        "engine: \"1\"\npipeline: {",
    ] {
        if let Err(e) = check_within_bounds(src.as_bytes()) {
            panic!("{src:?}: {e}");
        }
    }
}

#[test]
fn every_corpus_file_stays_within_bounds() {
    for bytes in corpus() {
        if let Err(e) = check_within_bounds(bytes) {
            panic!("{e}");
        }
    }
}
