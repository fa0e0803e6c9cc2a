//! The pipeline corpus: every file under `tests/data/pipelines/` (at the workspace root) is
//! checked, its diagnostics are pinned by an insta snapshot, and the JSON Schema's verdict
//! on the file is compared with the validator's.
//!
//! Files in `valid/` must produce no error; files in `invalid/` at least one. The agreement
//! rule between `schema/pipeline.schema.json` and the Rust validator is:
//!
//! * the validator finds no error ⇒ the schema accepts the file's JSON;
//! * some error has a rule the schema judges ([`SchemaCoverage::Judged`]) ⇒ the schema
//!   rejects it;
//! * every error has a rule the schema is blind to ([`SchemaCoverage::Blind`]) ⇒ the schema
//!   accepts it;
//! * some error means the file has no JSON form ([`SchemaCoverage::NoJson`]), or the file
//!   cannot be turned into JSON (bad YAML, duplicate or non-string keys, NaN) ⇒ nothing to
//!   compare.
//!
//! The YAML is turned into JSON with `saphyr`, a loader independent of the validator's own.
//! A file whose first line is `# corpus: with the example extensions` is checked with the
//! manifests of the repository's example extensions (`extensions/*/*/extension.toml`), so
//! that checks needing manifests (declared outputs) have corpus cases too.
//!
//! To add a case, drop a `.yaml` file into `valid/` or `invalid/` and run
//! `INSTA_UPDATE=always cargo test -p labhit-protocol --test corpus` (or `cargo insta
//! review`), then read the new snapshot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use labhit_protocol::diagnostic::SchemaCoverage;
use labhit_protocol::manifest::Manifest;
use labhit_protocol::pipeline::{CheckOptions, Checked, check};
use labhit_protocol::{Diagnostic, Rule, Span};
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::Value;

/// The corpus directory.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/pipelines")
}

/// The first line that asks for the example extensions' manifests.
const WITH_EXTENSIONS: &[u8] = b"# corpus: with the example extensions\n";

/// The manifests of the repository's example extensions, read once.
fn example_manifests() -> &'static [Manifest] {
    static MANIFESTS: std::sync::OnceLock<Vec<Manifest>> = std::sync::OnceLock::new();
    MANIFESTS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../extensions");
        let mut manifests = Vec::new();
        for category in std::fs::read_dir(&root).expect("extensions dir") {
            let category = category.expect("entry").path();
            let Ok(names) = std::fs::read_dir(&category) else {
                continue;
            };
            for name in names {
                let path = name.expect("entry").path().join("extension.toml");
                if let Ok(text) = std::fs::read(&path) {
                    manifests.push(
                        Manifest::from_toml_bytes(&text)
                            .unwrap_or_else(|d| panic!("{}: {d:?}", path.display())),
                    );
                }
            }
        }
        assert!(manifests.len() >= 4, "example manifests found");
        manifests
    })
}

/// Checks a corpus file, with the example manifests when its first line asks for them.
fn check_file(bytes: &[u8]) -> Checked {
    let mut options = CheckOptions::default();
    if bytes.starts_with(WITH_EXTENSIONS) {
        options.extensions = Some(example_manifests());
    }
    check(bytes, &options)
}

/// Every corpus file, sorted, as (path relative to the corpus, expected valid, bytes).
fn corpus() -> Vec<(String, bool, Vec<u8>)> {
    let mut files = Vec::new();
    for (dir, valid) in [("valid", true), ("invalid", false)] {
        let path = corpus_dir().join(dir);
        let entries =
            std::fs::read_dir(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = format!(
                    "{dir}/{}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
                let bytes = std::fs::read(&path).expect("corpus file readable");
                files.push((name, valid, bytes));
            }
        }
    }
    files.sort();
    files
}

fn span(span: Span) -> String {
    format!(
        "{}:{}-{}:{}",
        span.start.line, span.start.column, span.end.line, span.end.column
    )
}

/// `line:col-endline:endcol error[rule]: message`, then help and related locations.
fn render(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let _ = writeln!(
            out,
            "{} {}[{}]: {}",
            span(d.span),
            d.severity,
            d.rule,
            d.message
        );
        if let Some(help) = &d.help {
            let _ = writeln!(out, "    help: {help}");
        }
        for related in &d.related {
            let _ = writeln!(
                out,
                "    related {}: {}",
                span(related.span),
                related.message
            );
        }
    }
    if out.is_empty() {
        out.push_str("no diagnostics\n");
    }
    out
}

/// The file as JSON, as an editor with a YAML plugin would see it; `None` when it has no
/// JSON form (not UTF-8, not YAML, several documents, duplicate or non-string keys,
/// custom tags, non-finite numbers, aliases that expand too far).
fn to_json(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let docs = Yaml::load_from_str(text).ok()?;
    match docs.as_slice() {
        [] => Some(Value::Null),
        [doc] => yaml_to_json(doc),
        _ => None,
    }
}

fn yaml_to_json(yaml: &Yaml<'_>) -> Option<Value> {
    Some(match yaml {
        Yaml::Value(scalar) => match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::from(*i),
            Scalar::FloatingPoint(f) => {
                Value::Number(serde_json::Number::from_f64(f.into_inner())?)
            }
            Scalar::String(s) => Value::String(s.to_string()),
        },
        Yaml::Sequence(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Option<_>>()?)
        }
        Yaml::Mapping(pairs) => {
            let mut map = serde_json::Map::new();
            for (key, value) in pairs {
                let Yaml::Value(Scalar::String(key)) = key else {
                    return None;
                };
                map.insert(key.to_string(), yaml_to_json(value)?);
            }
            Value::Object(map)
        }
        Yaml::Representation(..) | Yaml::Tagged(..) | Yaml::Alias(_) | Yaml::BadValue => {
            return None;
        }
    })
}

/// What the schema should say about a file, given the validator's diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Accept,
    Reject,
    /// No JSON to judge.
    Skip,
}

fn expected(diagnostics: &[Diagnostic]) -> Expected {
    let errors = || diagnostics.iter().filter(|d| d.is_error());
    if errors().any(|d| d.rule.schema_coverage() == SchemaCoverage::NoJson) {
        Expected::Skip
    } else if errors().any(|d| d.rule.schema_coverage() == SchemaCoverage::Judged) {
        Expected::Reject
    } else {
        Expected::Accept
    }
}

/// The schema's errors for `json`; empty when it accepts.
fn schema_errors(json: &Value) -> Vec<String> {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(&labhit_protocol::schema::pipeline_schema())
            .expect("the pipeline schema compiles")
    });
    validator
        .iter_errors(json)
        .map(|e| format!("{} at `{}`", e, e.instance_path()))
        .collect()
}

/// One line for the snapshot: what the schema says about the file.
fn schema_verdict(bytes: &[u8], diagnostics: &[Diagnostic]) -> &'static str {
    match to_json(bytes) {
        None => "json schema: cannot judge (no JSON form)",
        Some(_) if expected(diagnostics) == Expected::Skip => {
            "json schema: cannot judge (the validator found no JSON form)"
        }
        Some(json) if schema_errors(&json).is_empty() => "json schema: accepts",
        Some(_) => "json schema: rejects",
    }
}

#[test]
fn diagnostics_snapshots() {
    insta::glob!("../../../tests/data/pipelines", "**/*.yaml", |path| {
        let bytes = std::fs::read(path).expect("corpus file readable");
        let checked = check_file(&bytes);
        let mut text = render(&checked.diagnostics);
        text.push_str(schema_verdict(&bytes, &checked.diagnostics));
        text.push('\n');
        insta::assert_snapshot!(text);
    });
}

#[test]
fn valid_files_are_clean_and_invalid_files_are_not() {
    let mut failures = Vec::new();
    for (name, valid, bytes) in corpus() {
        let checked = check_file(&bytes);
        let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        if valid && errors > 0 {
            failures.push(format!(
                "{name}: expected no error, got:\n{}",
                render(&checked.diagnostics)
            ));
        }
        if valid && checked.pipeline.is_none() {
            failures.push(format!("{name}: valid, but no model was built"));
        }
        if !valid && errors == 0 {
            failures.push(format!("{name}: expected at least one error, got none"));
        }
        if !valid && checked.pipeline.is_some() {
            failures.push(format!("{name}: invalid, but a model was built"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn schema_and_validator_agree() {
    let mut failures = Vec::new();
    let mut compared = 0;
    for (name, _, bytes) in corpus() {
        let checked = check_file(&bytes);
        let want = expected(&checked.diagnostics);
        let Some(json) = to_json(&bytes) else {
            continue;
        };
        if want == Expected::Skip {
            continue;
        }
        compared += 1;
        let errors = schema_errors(&json);
        let schema_accepts = errors.is_empty();
        if (want == Expected::Accept) != schema_accepts {
            let rules: Vec<&str> = checked
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| d.rule.code())
                .collect();
            failures.push(format!(
                "{name}: validator {} ({}), schema {}{}",
                if want == Expected::Accept {
                    "expects the schema to accept"
                } else {
                    "expects the schema to reject"
                },
                if rules.is_empty() {
                    "no errors".to_owned()
                } else {
                    rules.join(", ")
                },
                if schema_accepts { "accepts" } else { "rejects" },
                errors
                    .iter()
                    .map(|e| format!("\n    {e}"))
                    .collect::<String>(),
            ));
        }
    }
    assert!(
        compared >= 40,
        "only {compared} corpus files could be compared"
    );
    assert!(
        failures.is_empty(),
        "schema and validator disagree:\n{}",
        failures.join("\n")
    );
}

/// Every rule the pipeline checker can raise without extension manifests appears in the
/// corpus (rule 7 is covered by the CLI's manifest tests).
#[test]
fn corpus_covers_every_rule() {
    let rule_seven = [
        Rule::UnknownExtension,
        Rule::ExtensionVersion,
        Rule::InputSchema,
        Rule::NotAnExecutor,
        Rule::InvalidManifest,
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (_, _, bytes) in corpus() {
        for d in check_file(&bytes).diagnostics {
            seen.insert(d.rule);
        }
    }
    let missing: Vec<&str> = Rule::ALL
        .iter()
        .filter(|r| !rule_seven.contains(r) && !seen.contains(r))
        .map(|r| r.code())
        .collect();
    assert!(missing.is_empty(), "no corpus file raises: {missing:?}");
    assert!(corpus().len() >= 40);
}

/// Every corpus snapshot belongs to a corpus file, so a renamed or deleted file leaves no
/// stale snapshot behind.
#[test]
fn no_orphaned_snapshots() {
    let names: std::collections::BTreeSet<String> = corpus()
        .into_iter()
        .map(|(name, _, _)| name.replace('/', "__"))
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("snapshot directory") {
        let file = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Some(rest) = file.strip_prefix("corpus__diagnostics_snapshots@") else {
            continue;
        };
        let source = rest
            .strip_suffix(".snap")
            .or_else(|| rest.strip_suffix(".snap.new"));
        if source.is_none_or(|s| !names.contains(s)) {
            orphans.push(file);
        }
    }
    assert!(
        orphans.is_empty(),
        "snapshots without a corpus file (delete them): {orphans:?}"
    );
}

#[test]
fn the_json_conversion_is_faithful() {
    let json = to_json(b"a: [1, 2.5, x, ~, true]\nb: {\"c\": *x}\n");
    assert_eq!(json, None, "unknown alias");
    let json = to_json(b"a: &x [1, 2.5, x, ~, true]\nb: {\"c\": *x}\n").expect("converts");
    assert_eq!(
        json,
        serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": [1, 2.5, "x", null, true]}})
    );
    assert_eq!(to_json(b"a: 1\na: 2\n"), None, "duplicate keys");
    assert_eq!(to_json(b"1: a\n"), None, "non-string key");
    assert_eq!(to_json(b"a: .nan\n"), None, "NaN");
    assert_eq!(to_json(b"a: !custom x\n"), None, "custom tag");
    assert_eq!(to_json(b"a: 1\n---\nb: 2\n"), None, "two documents");
    assert_eq!(to_json(b"# nothing\n"), Some(Value::Null));
}
