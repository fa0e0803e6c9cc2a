//! The published JSON Schemas (`labhit_protocol::schema`): pinned by insta snapshots, valid
//! against the draft 2020-12 meta-schema, and in agreement with serde and the validator on
//! the documented examples.
//!
//! A snapshot that changes is a change of a public contract: review it, and record it in
//! CHANGELOG.md. `cargo xtask codegen` then writes the same schemas to `schema/`.

use labhit_protocol::StageId;
use labhit_protocol::executor::{
    ArtifactPath, ArtifactRef, CacheDecision, CommandStep, ExecutorInput, StepResult,
};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef, StepId};
use labhit_protocol::manifest::Manifest;
use labhit_protocol::pipeline::{CheckOptions, PipelineFile, check};
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};
use labhit_protocol::schema::{manifest_schema, pipeline_schema, wire_schemas};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The pipeline example of DESIGN.md §5, as YAML.
const DESIGN_PIPELINE: &str = r#"engine: "1"
pipeline:
  name: my-pipeline
  stages:
    fetch:
      use: source/git
      with: {depth: 1}
    build:
      after: [fetch]
      run: cargo build --release
      sandbox:
        image: rust:1.95-slim
        resources: {cpu: 2, memory: 4Gi}
        timeout: 30m
    deploy:
      after: [build]
      use: deploy/kubernetes
      gate: {approval: required, policy: production-deploy}
"#;

/// The same pipeline as JSON, written the way the YAML reads.
fn design_pipeline_json() -> Value {
    json!({
        "engine": "1",
        "pipeline": {
            "name": "my-pipeline",
            "stages": {
                "fetch": { "use": "source/git", "with": { "depth": 1 } },
                "build": {
                    "after": ["fetch"],
                    "run": "cargo build --release",
                    "sandbox": {
                        "image": "rust:1.95-slim",
                        "resources": { "cpu": 2, "memory": "4Gi" },
                        "timeout": "30m"
                    }
                },
                "deploy": {
                    "after": ["build"],
                    "use": "deploy/kubernetes",
                    "gate": { "approval": "required", "policy": "production-deploy" }
                }
            }
        }
    })
}

/// A manifest exercising every key, as TOML.
const MANIFEST: &str = r#"[extension]
category = "util"
name = "checksum"
version = "0.1.0"
contract = "^0.2"
description = "Hash workspace files and write a checksum manifest"
component = "checksum.wasm"

[capabilities]
filesystem = "read-write"
secrets = ["CHECKSUM_KEY"]
executor = false
network = ["example.com:443"]

[limits]
memory = "64Mi"
timeout = "5m"

[inputs]
type = "object"
required = ["patterns"]
additionalProperties = false

[inputs.properties.patterns]
type = "array"
items = { type = "string" }

[outputs]
type = "object"
"#;

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(schema).expect("the schema compiles")
}

fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    validator(schema)
        .iter_errors(instance)
        .map(|e| format!("{e} at `{}`", e.instance_path()))
        .collect()
}

#[test]
fn pipeline_schema_snapshot() {
    insta::assert_json_snapshot!("pipeline_schema", pipeline_schema());
}

#[test]
fn manifest_schema_snapshot() {
    insta::assert_json_snapshot!("manifest_schema", manifest_schema());
}

#[test]
fn every_schema_is_a_valid_draft_2020_12_schema() {
    let mut all = vec![
        ("pipeline", pipeline_schema()),
        ("manifest", manifest_schema()),
    ];
    all.extend(wire_schemas());
    for (name, schema) in &all {
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        if let Err(e) = jsonschema::meta::validate(schema) {
            panic!("{name}: the schema is not a valid JSON Schema: {e}");
        }
        assert!(
            jsonschema::draft202012::new(schema).is_ok(),
            "{name}: the schema does not compile"
        );
        let id = schema["$id"].as_str().unwrap_or_default();
        assert!(
            id.starts_with("https://labhit.dev/schema/v1/"),
            "{name}: $id is {id:?}"
        );
        assert!(schema["title"].is_string(), "{name}: no title");
    }
}

#[test]
fn the_design_pipeline_validates() {
    let json = design_pipeline_json();
    assert_eq!(errors(&pipeline_schema(), &json), Vec::<String>::new());
    // The validator agrees on the YAML, and serde reads the JSON to the same model.
    let checked = check(DESIGN_PIPELINE.as_bytes(), &CheckOptions::default());
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    let from_json: PipelineFile = serde_json::from_value(json).expect("serde reads the JSON");
    assert_eq!(checked.pipeline, Some(from_json));
}

#[test]
fn the_manifest_example_validates() {
    let manifest = Manifest::from_toml(MANIFEST).expect("the manifest parses");
    let json = serde_json::to_value(&manifest).expect("serializes");
    assert_eq!(errors(&manifest_schema(), &json), Vec::<String>::new());
    // The TOML itself, turned into JSON key for key, validates too.
    let table: toml::Table = toml::from_str(MANIFEST).expect("TOML");
    let raw = serde_json::to_value(&table).expect("TOML as JSON");
    assert_eq!(errors(&manifest_schema(), &raw), Vec::<String>::new());
    // So do the extension manifests shipped in `extensions/`.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../extensions");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path().join("extension.toml");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let table: toml::Table = toml::from_str(&text).expect("extension.toml is TOML");
        let raw = serde_json::to_value(&table).expect("TOML as JSON");
        assert_eq!(
            errors(&manifest_schema(), &raw),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn the_schema_examples_validate_against_their_schema() {
    let mut all = vec![
        ("pipeline", pipeline_schema()),
        ("manifest", manifest_schema()),
    ];
    all.extend(wire_schemas());
    for (name, schema) in &all {
        for example in schema["examples"].as_array().into_iter().flatten() {
            assert_eq!(
                errors(schema, example),
                Vec::<String>::new(),
                "{name}: {example}"
            );
        }
    }
}

#[test]
fn the_file_schemas_never_allow_null_for_optional_keys() {
    // In YAML, `use:` with nothing after it is null, which the validator refuses.
    for schema in [pipeline_schema(), manifest_schema()] {
        let text = schema.to_string();
        assert!(
            !text.contains(r#""null""#),
            "{}: null allowed",
            schema["$id"]
        );
    }
    let stage_with_null_use = json!({
        "engine": "1",
        "pipeline": { "name": "p", "stages": { "a": { "use": null, "run": "x" } } }
    });
    assert!(!validator(&pipeline_schema()).is_valid(&stage_with_null_use));
}

#[test]
fn unknown_fields_are_refused_where_rust_refuses_them() {
    let pipeline = pipeline_schema();
    let base = design_pipeline_json();
    for pointer in [
        "",
        "/pipeline",
        "/pipeline/stages/build",
        "/pipeline/stages/build/sandbox",
        "/pipeline/stages/build/sandbox/resources",
        "/pipeline/stages/deploy/gate",
    ] {
        let mut json = base.clone();
        json.pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .expect("object")
            .insert("unknown".into(), json!(1));
        assert!(
            !validator(&pipeline).is_valid(&json),
            "schema accepts an unknown key at {pointer:?}"
        );
        assert!(
            serde_json::from_value::<PipelineFile>(json).is_err(),
            "serde accepts an unknown key at {pointer:?}"
        );
    }
    // `with` is free-form.
    let mut json = base;
    json["pipeline"]["stages"]["fetch"]["with"]["anything"] = json!({"goes": [1, "x"]});
    assert!(validator(&pipeline).is_valid(&json));

    let manifest = manifest_schema();
    let base = serde_json::to_value(Manifest::from_toml(MANIFEST).expect("parses")).expect("JSON");
    for pointer in ["", "/extension", "/capabilities", "/limits"] {
        let mut json = base.clone();
        json.pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .expect("object")
            .insert("unknown".into(), json!(1));
        assert!(
            !validator(&manifest).is_valid(&json),
            "manifest schema accepts an unknown key at {pointer:?}"
        );
        assert!(
            serde_json::from_value::<Manifest>(json).is_err(),
            "serde accepts an unknown manifest key at {pointer:?}"
        );
    }
    // `inputs` and `outputs` are JSON Schemas themselves: any keys.
    let mut json = base;
    json["inputs"]["x-vendor"] = json!(true);
    assert!(validator(&manifest).is_valid(&json));
}

/// For each wire type: the schema's own examples decode with serde, and an unknown
/// top-level field is refused by the schema exactly when serde refuses it.
#[test]
fn wire_schemas_agree_with_serde_on_unknown_fields() {
    fn check_type<T: DeserializeOwned>(name: &str) {
        let schemas = wire_schemas();
        let (_, schema) = schemas
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no wire schema named {name}"));
        let compiled = validator(schema);
        let examples = schema["examples"].as_array().cloned().unwrap_or_default();
        for example in examples {
            if let Err(e) = serde_json::from_value::<T>(example.clone()) {
                panic!("{name}: serde refuses the schema example {example}: {e}");
            }
            let Value::Object(mut map) = example else {
                continue;
            };
            map.insert("unknown_field".into(), json!(1));
            let extended = Value::Object(map);
            let serde_accepts = serde_json::from_value::<T>(extended.clone()).is_ok();
            let schema_accepts = compiled.is_valid(&extended);
            assert_eq!(
                serde_accepts,
                schema_accepts,
                "{name}: with an unknown field serde {} but the schema {}",
                if serde_accepts { "accepts" } else { "refuses" },
                if schema_accepts { "accepts" } else { "refuses" },
            );
        }
    }
    check_type::<ExecutorInput>("ExecutorInput");
    check_type::<CacheDecision>("CacheDecision");
    check_type::<StepResult>("StepResult");
    check_type::<ArtifactRef>("ArtifactRef");
    check_type::<CommandStep>("CommandStep");
    check_type::<ArchiveId>("ArchiveId");
    check_type::<SnapshotRef>("SnapshotRef");
    check_type::<PipelineRun>("PipelineRun");
    check_type::<StageRun>("StageRun");
    check_type::<LogEntry>("LogEntry");
    check_type::<RunStatus>("RunStatus");
    check_type::<StageStatus>("StageStatus");
    check_type::<labhit_protocol::Value>("Value");
    check_type::<RunId>("RunId");
    check_type::<StepId>("StepId");
    check_type::<StageId>("StageId");
    check_type::<ArtifactPath>("ArtifactPath");
    check_type::<LogLevel>("LogLevel");
    check_type::<LogStream>("LogStream");
    assert_eq!(wire_schemas().len(), 19);
}

#[test]
fn the_checked_in_schemas_are_the_generated_ones() {
    // `cargo xtask codegen --check` is the authority; this catches the common case of a
    // schema change without regeneration from `cargo test -p labhit-protocol` alone.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema");
    let files = [
        ("pipeline.schema.json", pipeline_schema()),
        ("extension-manifest.schema.json", manifest_schema()),
    ];
    for (file, schema) in files {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("schema/{file}: {e}; run `cargo xtask codegen`"));
        let mut on_disk: Value = serde_json::from_str(&text).expect("valid JSON");
        if let Some(map) = on_disk.as_object_mut() {
            map.remove("$comment");
        }
        assert_eq!(
            on_disk, schema,
            "schema/{file} is stale; run `cargo xtask codegen`"
        );
    }
}

/// Every `pattern` (and `patternProperties` key) in `value`, with its JSON Pointer.
fn patterns(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, sub) in map {
                let here = format!("{at}/{key}");
                if key == "pattern"
                    && let Some(p) = sub.as_str()
                {
                    out.push((here.clone(), p.to_owned()));
                }
                if key == "patternProperties"
                    && let Some(props) = sub.as_object()
                {
                    out.extend(props.keys().map(|p| (here.clone(), p.clone())));
                }
                patterns(sub, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                patterns(item, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Editors validate with many engines; RE2-based ones (Go, Rust's `regex`) have no
/// lookaround and no back-references. Every pattern of every published schema must compile
/// with the `regex` crate, which has the same limits.
#[test]
fn every_schema_pattern_is_accepted_by_an_re2_style_engine() {
    let mut found = Vec::new();
    patterns(&pipeline_schema(), "pipeline", &mut found);
    patterns(&manifest_schema(), "manifest", &mut found);
    for (name, schema) in wire_schemas() {
        patterns(&schema, name, &mut found);
    }
    assert!(found.len() >= 8, "{found:?}");
    let refused: Vec<String> = found
        .iter()
        .filter_map(|(at, p)| {
            regex::Regex::new(p)
                .err()
                .map(|e| format!("{at}: {p}: {e}"))
        })
        .collect();
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}

/// The lookahead-free patterns of durations and sizes accept exactly what the parsers
/// accept (as far as form goes; sizes too large for 64 bits are the parser's business), on
/// every string of a small alphabet up to a length, and at the digit-count boundaries.
#[test]
fn duration_and_size_patterns_agree_with_the_parsers() {
    fn strings(alphabet: &[&str], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |a| format!("{s}{a}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }
    use labhit_protocol::{ByteSize, DurationSpec};
    let duration = regex::Regex::new(DurationSpec::PATTERN).expect("compiles");
    let mut cases = strings(&["0", "1", "h", "m", "s"], 7);
    cases.extend(["0000009s", "999999h", "1000000h", "000000h1s", "1h1h"].map(String::from));
    for s in &cases {
        assert_eq!(
            duration.is_match(s),
            s.parse::<DurationSpec>().is_ok(),
            "duration {s:?}"
        );
    }
    let size = regex::Regex::new(ByteSize::PATTERN).expect("compiles");
    let mut cases = strings(&["0", "1", "K", "i", "M"], 6);
    cases.extend([
        "0".repeat(15),
        format!("{}1", "0".repeat(14)),
        format!("{}1", "0".repeat(15)),
        format!("{}Ki", "1".repeat(15)),
        "1".repeat(16),
        "999999999999999".to_owned(),
    ]);
    for s in &cases {
        assert_eq!(
            size.is_match(s),
            s.parse::<ByteSize>().is_ok(),
            "size {s:?}"
        );
    }
}

/// Schema messages name what is allowed: a wrong `approval` lists the allowed values (it
/// used to say that `policy` is required), a negative `cpu` or a zero `memory` names the
/// bound (it used to say "not of type string"), a bad string names its pattern.
#[test]
fn schema_messages_name_the_allowed_values() {
    let validator = jsonschema::validator_for(&pipeline_schema()).expect("compiles");
    let messages = |stage: Value| -> Vec<(String, String)> {
        let doc = json!({"engine": "1", "pipeline": {"name": "p", "stages": {"a": stage}}});
        validator
            .iter_errors(&doc)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect()
    };
    let approval = messages(json!({"run": "x", "gate": {"approval": "maybe"}}));
    assert!(
        approval.iter().any(|(at, m)| at.ends_with("/gate/approval")
            && m.contains("\"required\"")
            && m.contains("\"none\"")),
        "{approval:?}"
    );
    assert!(
        !approval.iter().any(|(_, m)| m.contains("policy")),
        "{approval:?}"
    );
    let resources =
        messages(json!({"run": "x", "sandbox": {"resources": {"cpu": -1, "memory": 0}}}));
    assert_eq!(resources.len(), 2, "{resources:?}");
    for (at, m) in &resources {
        assert!(!m.contains("type"), "{at}: {m}");
        assert!(
            m.contains("minimum") || m.contains("less than"),
            "{at}: {m}"
        );
    }
    let pattern = messages(json!({"run": "x", "sandbox": {"resources": {"cpu": "5x"}}}));
    assert_eq!(pattern.len(), 1, "{pattern:?}");
    assert!(pattern[0].1.contains("does not match"), "{pattern:?}");
}
