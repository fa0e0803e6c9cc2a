//! Unit tests of manifest parsing.

use super::*;

const GOOD: &str = r#"
[extension]
category = "util"
name = "checksum"
version = "0.1.0"
contract = "^0.2"
description = "Hash workspace files"
component = "checksum.wasm"

[capabilities]
filesystem = "read-write"
secrets = ["SIGNING_KEY"]

[limits]
memory = "64Mi"
timeout = "5m"
disk = "512Mi"
files = 10000

[inputs]
type = "object"
required = ["patterns"]
[inputs.properties.patterns]
type = "array"
items = { type = "string" }
"#;

#[test]
fn parses_a_complete_manifest() {
    let m = Manifest::from_toml(GOOD).unwrap();
    assert_eq!(m.qualified_name(), "util/checksum");
    assert_eq!(m.capabilities.filesystem, FilesystemAccess::ReadWrite);
    assert!(!m.capabilities.executor);
    assert_eq!(m.limits.memory.map(|b| b.bytes()), Some(64 << 20));
    let schema = m.inputs_schema().unwrap();
    assert_eq!(schema["required"][0], "patterns");
    assert_eq!(m.outputs_schema(), None);
    let with_outputs = format!(
        "{GOOD}\n[outputs]\ntype = \"object\"\n[outputs.properties.files]\ntype = \"string\"\n"
    );
    let outputs = Manifest::from_toml(&with_outputs).unwrap().outputs_schema();
    assert_eq!(
        outputs,
        Some(serde_json::json!({"type": "object", "properties": {"files": {"type": "string"}}}))
    );
    let bytes = borsh::to_vec(&m).unwrap();
    assert_eq!(borsh::from_slice::<Manifest>(&bytes).unwrap(), m);
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(serde_json::from_value::<Manifest>(json).unwrap(), m);
}

#[test]
fn capabilities_default_to_denied() {
    let minimal = GOOD.split("[capabilities]").next().unwrap();
    let m = Manifest::from_toml(minimal).unwrap();
    assert_eq!(m.capabilities, Capabilities::default());
    assert_eq!(m.capabilities.filesystem, FilesystemAccess::None);
}

fn first_error(src: &str) -> Diagnostic {
    Manifest::from_toml(src).unwrap_err().remove(0)
}

#[test]
fn errors_have_locations() {
    let d = first_error(&GOOD.replace("filesystem", "filesytem"));
    assert_eq!(d.rule, Rule::UnknownKey);
    assert_eq!(d.span.start.line, 11);
    let d = first_error(&GOOD.replace("version = \"0.1.0\"", "version = \"one\""));
    assert_eq!(d.span.start.line, 5);
    assert!(d.message.contains("not a semver version"), "{}", d.message);
    let d = first_error(&GOOD.replace("name = \"checksum\"", "name = \"Check Sum\""));
    assert_eq!(d.span.start.line, 4);
    let d = first_error(&GOOD.replace("secrets = [\"SIGNING_KEY\"]", "secrets = [\"lower\"]"));
    assert_eq!(d.span.start.line, 12);
    let d = first_error(&format!("{GOOD}\n[extension]\n"));
    assert_eq!(d.rule, Rule::DuplicateKey);
    let d = first_error("[extension\n");
    assert_eq!(d.rule, Rule::InvalidManifest);
}

#[test]
fn semantic_problems_point_at_the_value() {
    // (replace, with, line, column) of the reported value.
    for (from, to, line, column) in [
        ("checksum.wasm", "../escape.wasm", 8, 13),
        ("checksum.wasm", "/abs/x.wasm", 8, 13),
        ("checksum.wasm", "checksum.txt", 8, 13),
        ("Hash workspace files", " ", 7, 15),
        ("[\"SIGNING_KEY\"]", "[\"A\", \"A\"]", 12, 17),
        (
            "secrets = [\"SIGNING_KEY\"]",
            "network = [\"ok.example\", \"a b\"]",
            12,
            26,
        ),
        ("type = \"object\"", "type = \"array\"", 21, 8),
    ] {
        let errs = Manifest::from_toml(&GOOD.replace(from, to)).unwrap_err();
        assert_eq!(errs.len(), 1, "{to}: {errs:?}");
        assert_eq!(errs[0].rule, Rule::InvalidManifest, "{to}");
        assert_eq!(
            (errs[0].span.start.line, errs[0].span.start.column),
            (line, column),
            "{to}: {}",
            errs[0].message
        );
    }
}

#[test]
fn hostile_input() {
    assert_eq!(
        Manifest::from_toml_bytes(b"\xff\xfe").unwrap_err()[0].rule,
        Rule::Syntax
    );
    let huge = vec![b'#'; MAX_MANIFEST_BYTES + 1];
    assert_eq!(
        Manifest::from_toml_bytes(&huge).unwrap_err()[0].rule,
        Rule::InputLimit
    );
    let deep = format!("a = {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(Manifest::from_toml(&deep).is_err());
}

#[test]
fn disk_and_file_limits_parse_and_bad_ones_are_located() {
    let m = Manifest::from_toml(GOOD).expect("valid");
    assert_eq!(m.limits.disk.map(|b| b.bytes()), Some(512 << 20));
    assert_eq!(m.limits.files.map(std::num::NonZeroU64::get), Some(10_000));
    // (replace, with, line, column, words the message must contain)
    for (from, to, line, column, words) in [
        ("disk = \"512Mi\"", "disk = \"0\"", 17, 8, "is zero"),
        ("disk = \"512Mi\"", "disk = \"lots\"", 17, 8, "lots"),
        (
            "disk = \"512Mi\"",
            "disk = -1",
            17,
            8,
            "invalid extension manifest",
        ),
        ("files = 10000", "files = 0", 18, 9, "nonzero"),
        ("files = 10000", "files = -5", 18, 9, "-5"),
        ("files = 10000", "files = \"many\"", 18, 9, "invalid type"),
    ] {
        let d = first_error(&GOOD.replace(from, to));
        assert_eq!(
            (d.span.start.line, d.span.start.column),
            (line, column),
            "{to}: {}",
            d.message
        );
        assert!(d.message.contains(words), "{to}: {}", d.message);
    }
}
