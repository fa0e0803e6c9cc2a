//! Line breaks in diagnostics: `\n`, `\r\n` and a lone `\r` (old Mac files; YAML counts it
//! as a break) each end one line, for [`Position`] (line:col of a byte) and for
//! [`diagnostic::lines`] (the lines a renderer shows), so a diagnostic's line:col names the
//! same character whatever line breaks the file uses.

use labhit_protocol::Position;
use labhit_protocol::diagnostic;
use labhit_protocol::pipeline::{CheckOptions, check};
use proptest::prelude::*;

#[test]
fn positions_of_every_kind_of_line_break() {
    // (source, byte offset, line, column)
    let table: &[(&str, usize, u32, u32)] = &[
        ("ab\ncd", 3, 2, 1),
        ("ab\ncd", 4, 2, 2),
        ("ab\r\ncd", 2, 1, 3),
        // The `\n` of a `\r\n` is where its `\r` is: just past the line's end.
        ("ab\r\ncd", 3, 1, 3),
        ("ab\r\ncd", 4, 2, 1),
        ("ab\r\ncd", 5, 2, 2),
        ("ab\rcd", 2, 1, 3),
        ("ab\rcd", 3, 2, 1),
        ("ab\rcd", 4, 2, 2),
        ("a\r\rb", 2, 2, 1),
        ("a\r\rb", 3, 3, 1),
        ("a\n\rb", 3, 3, 1),
        ("a\r\n\rb", 4, 3, 1),
        ("a\r\n\nb", 4, 3, 1),
        ("é\rü\r\nx\ny", 3, 2, 1),
        ("é\rü\r\nx\ny", 5, 2, 2),
        ("é\rü\r\nx\ny", 8, 3, 2),
        ("é\rü\r\nx\ny", 9, 4, 1),
        ("é\rü\r\nx\ny", 99, 4, 2),
        ("ab\r", 3, 2, 1),
    ];
    for &(source, offset, line, column) in table {
        assert_eq!(
            Position::at_byte(source, offset),
            Position::new(line, column),
            "{source:?} at byte {offset}"
        );
    }
    assert_eq!(Position::after("ab\rcd"), Position::new(2, 3));
    assert_eq!(Position::after("ab\r\ncd\r"), Position::new(3, 1));
    assert_eq!(Position::after("\r\r\n\n"), Position::new(4, 1));
}

#[test]
fn lines_split_on_every_kind_of_line_break() {
    let table: &[(&str, &[&str])] = &[
        ("", &[""]),
        ("a", &["a"]),
        ("a\n", &["a", ""]),
        ("a\nb", &["a", "b"]),
        ("a\r\nb", &["a", "b"]),
        ("a\rb", &["a", "b"]),
        ("a\r\rb\r\n\nc\r", &["a", "", "b", "", "c", ""]),
    ];
    for &(text, expected) in table {
        assert_eq!(
            diagnostic::lines(text).collect::<Vec<_>>(),
            expected,
            "{text:?}"
        );
    }
}

/// Text of short pieces joined by line breaks of every kind.
fn text() -> impl Strategy<Value = String> {
    let piece = proptest::string::string_regex("[a-zé日 :\t-]{0,6}").expect("regex");
    let brk = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    proptest::collection::vec((piece, brk), 0..12).prop_flat_map(|parts| {
        let text: String = parts.iter().flat_map(|(p, b)| [p.as_str(), *b]).collect();
        let tail = proptest::string::string_regex("[a-zé]{0,4}").expect("regex");
        tail.prop_map(move |t| format!("{text}{t}"))
    })
}

proptest! {
    /// Every character that is not a line break is where `lines` shows it: at its position's
    /// line and column; and the text ends on the last line.
    #[test]
    fn positions_and_lines_agree(text in text()) {
        let lines: Vec<&str> = diagnostic::lines(&text).collect();
        for (offset, c) in text.char_indices() {
            if c == '\r' || c == '\n' {
                continue;
            }
            let at = Position::at_byte(&text, offset);
            let line = lines[usize::try_from(at.line).expect("fits") - 1];
            let shown = line.chars().nth(usize::try_from(at.column).expect("fits") - 1);
            prop_assert_eq!(shown, Some(c), "{:?} at byte {}: {:?}", text, offset, at);
        }
        let end = Position::after(&text);
        prop_assert_eq!(usize::try_from(end.line).expect("fits"), lines.len());
        let last = lines.last().expect("one line at least");
        prop_assert_eq!(usize::try_from(end.column).expect("fits"), last.chars().count() + 1);
    }
}

/// The same pipeline with an unknown key on line 6, column 7, in each line-break style.
#[test]
fn a_diagnostic_names_the_same_line_and_column_whatever_the_line_breaks() {
    let pipeline = "engine: \"1\"\npipeline:\n  name: breaks\n  stages:\n    build:\n      \
                    rnu: make\n";
    for (style, brk) in [("\\n", "\n"), ("\\r\\n", "\r\n"), ("\\r", "\r")] {
        let text = pipeline.replace('\n', brk);
        let checked = check(text.as_bytes(), &CheckOptions::default());
        let unknown = checked
            .diagnostics
            .iter()
            .find(|d| d.message.contains("rnu"))
            .unwrap_or_else(|| panic!("{style}: no diagnostic for `rnu`: {checked:?}"));
        assert_eq!(
            (unknown.span.start.line, unknown.span.start.column),
            (6, 7),
            "{style}: {unknown:?}"
        );
        let line = diagnostic::lines(&text).nth(5).expect("line 6");
        assert_eq!(line, "      rnu: make", "{style}");
    }
}

/// Found by the `manifest` fuzz target: a TOML error at the `\n` of a `\r\n` was one column
/// past the end of its line.
#[test]
fn a_manifest_error_at_a_crlf_is_just_past_its_line() {
    let bytes = b"\"\r\n[i\"object\"\nadditionalPropea\n0m\"\r\n[input\0wasm\"\n";
    let diagnostics =
        labhit_protocol::manifest::Manifest::from_toml_bytes(bytes).expect_err("not TOML");
    let text = String::from_utf8_lossy(bytes);
    for d in &diagnostics {
        for at in [d.span.start, d.span.end] {
            let line = diagnostic::lines(&text)
                .nth(at.line as usize - 1)
                .unwrap_or_else(|| panic!("no line {}: {d:?}", at.line));
            assert!(
                at.column as usize <= line.chars().count() + 1,
                "{}:{} is past the end of {line:?}: {d:?}",
                at.line,
                at.column
            );
        }
    }
}

/// Found by the `manifest` fuzz target: a manifest whose lines end with a lone `\r` and that
/// holds a byte that is not UTF-8 is refused at that byte, counted in the same convention.
#[test]
fn a_manifest_with_lone_cr_lines_names_its_bad_byte_on_the_right_line() {
    let mut bytes = b"[extension]\rcategory = \"util\"\rname = \"x".to_vec();
    bytes.push(0xff);
    bytes.extend_from_slice(b"\"\r");
    let diagnostics =
        labhit_protocol::manifest::Manifest::from_toml_bytes(&bytes).expect_err("not UTF-8");
    let bad = &diagnostics[0];
    assert!(bad.message.contains("UTF-8"), "{bad:?}");
    assert_eq!(
        (bad.span.start.line, bad.span.start.column),
        (3, 10),
        "{bad:?}"
    );
}
