//! Checks the golden vectors in `tests/vectors/` against this implementation.
//!
//! For every vector, the JSON and the borsh bytes must decode to the same value, and that
//! value must re-encode to exactly the same bytes and to the same JSON. The vectors live in
//! this crate's `tests/vectors/` (so the test runs from a packaged crate too) and, for
//! engines in other languages, in the workspace's `tests/vectors/`; both are written by
//! `cargo xtask codegen`, which also keeps them fresh.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use borsh::{BorshDeserialize, BorshSerialize};
use labhit_protocol::codec::{from_borsh, to_borsh};
use labhit_protocol::executor::{
    ArtifactPath, ArtifactRef, CacheDecision, CommandStep, ExecutorInput, StepResult,
};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef, StepId};
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};
use labhit_protocol::{CONTRACT_VERSION, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// This crate's copy of the vectors.
fn crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The workspace's copy, absent when the crate is built from a package.
fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(
        text.len().is_multiple_of(2),
        "odd-length hex string `{text}`"
    );
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// Checks every vector of `file` as values of `T`; returns how many there were.
fn check<T>(type_name: &str, file: &str) -> usize
where
    T: Serialize + DeserializeOwned + BorshSerialize + BorshDeserialize + PartialEq + Debug,
{
    let path = crate_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("vector file is JSON");
    assert_eq!(doc["type"], type_name, "{file}");
    assert_eq!(doc["contract_version"], CONTRACT_VERSION, "{file}");
    let comment = doc["$comment"].as_str().expect("a $comment");
    assert!(comment.contains("cargo xtask codegen"), "{file}: {comment}");

    let vectors = doc["vectors"].as_array().expect("a vectors array");
    assert!(!vectors.is_empty(), "{file} has no vectors");
    for vector in vectors {
        let name = vector["name"].as_str().expect("a name");
        let json = &vector["json"];
        let bytes = unhex(vector["borsh_hex"].as_str().expect("a borsh_hex string"));

        let from_json: T = serde_json::from_value(json.clone())
            .unwrap_or_else(|err| panic!("{file} `{name}`: JSON does not decode: {err}"));
        let from_bytes: T = from_borsh(&bytes)
            .unwrap_or_else(|err| panic!("{file} `{name}`: borsh does not decode: {err}"));
        assert_eq!(
            from_json, from_bytes,
            "{file} `{name}`: JSON and borsh disagree"
        );
        assert_eq!(
            to_borsh(&from_json).expect("encodes"),
            bytes,
            "{file} `{name}`: borsh re-encoding differs"
        );
        assert_eq!(
            &serde_json::to_value(&from_bytes).expect("encodes"),
            json,
            "{file} `{name}`: JSON re-encoding differs"
        );
    }
    vectors.len()
}

/// A [`check`] instantiated for one type.
type CheckFn = fn(&str, &str) -> usize;

#[test]
fn every_vector_decodes_and_re_encodes_exactly() {
    let checks: &[(&str, &str, CheckFn)] = &[
        ("RunId", "run-id.json", check::<RunId>),
        ("StepId", "step-id.json", check::<StepId>),
        ("ArchiveId", "archive-id.json", check::<ArchiveId>),
        ("SnapshotRef", "snapshot-ref.json", check::<SnapshotRef>),
        ("StageId", "stage-id.json", check::<StageId>),
        ("ArtifactPath", "artifact-path.json", check::<ArtifactPath>),
        ("ArtifactRef", "artifact-ref.json", check::<ArtifactRef>),
        ("CommandStep", "command-step.json", check::<CommandStep>),
        (
            "CacheDecision",
            "cache-decision.json",
            check::<CacheDecision>,
        ),
        (
            "ExecutorInput",
            "executor-input.json",
            check::<ExecutorInput>,
        ),
        ("StepResult", "step-result.json", check::<StepResult>),
        ("RunStatus", "run-status.json", check::<RunStatus>),
        ("StageStatus", "stage-status.json", check::<StageStatus>),
        ("LogLevel", "log-level.json", check::<LogLevel>),
        ("LogStream", "log-stream.json", check::<LogStream>),
        ("StageRun", "stage-run.json", check::<StageRun>),
        ("PipelineRun", "pipeline-run.json", check::<PipelineRun>),
        ("LogEntry", "log-entry.json", check::<LogEntry>),
        ("Value", "value.json", check::<Value>),
    ];

    let mut checked = BTreeSet::new();
    for (type_name, file, check) in checks {
        assert!(check(type_name, file) > 0);
        checked.insert((*file).to_owned());
    }

    // Every vector file is checked: a new file without a check here fails.
    let on_disk: BTreeSet<String> = std::fs::read_dir(crate_dir())
        .expect("vector directory")
        .map(|entry| entry.expect("directory entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    assert_eq!(
        on_disk, checked,
        "vector files without a check (or checks without a file)"
    );
}

/// The JSON of every vector in `file`.
fn vector_json(file: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(crate_dir().join(file)).expect("vector file");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    match doc["vectors"].take() {
        serde_json::Value::Array(vectors) => {
            vectors.into_iter().map(|mut v| v["json"].take()).collect()
        }
        other => panic!("{file}: vectors is not an array: {other}"),
    }
}

/// Asserts that `file` has one vector per spelling in `expected`.
fn covers(file: &str, expected: impl IntoIterator<Item = &'static str>) {
    let found: BTreeSet<String> = vector_json(file)
        .iter()
        .filter_map(|json| json.as_str().or_else(|| json["kind"].as_str()))
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = expected.into_iter().map(str::to_owned).collect();
    assert_eq!(found, expected, "{file}");
}

#[test]
fn every_enum_variant_has_a_vector() {
    covers("run-status.json", RunStatus::ALL.iter().map(|s| s.as_str()));
    covers(
        "stage-status.json",
        StageStatus::ALL.iter().map(|s| s.as_str()),
    );
    covers("log-level.json", LogLevel::ALL.iter().map(|s| s.as_str()));
    covers("log-stream.json", LogStream::ALL.iter().map(|s| s.as_str()));
    covers(
        "cache-decision.json",
        ["hit", "miss_build_as", "miss_no_commit"],
    );
}

#[test]
fn workspace_copy_matches_the_crate_copy() {
    let workspace = workspace_dir();
    if !workspace.is_dir() {
        println!(
            "note: {} is absent (packaged crate?); only this crate's copy is checked",
            workspace.display()
        );
        return;
    }
    let mut compared = 0;
    for entry in std::fs::read_dir(crate_dir()).expect("vector directory") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().expect("a file name");
        let ours = std::fs::read_to_string(&path).expect("readable");
        let theirs = std::fs::read_to_string(workspace.join(name))
            .unwrap_or_else(|err| panic!("workspace copy of {name:?}: {err}"));
        assert_eq!(ours, theirs, "{name:?} differs; run `cargo xtask codegen`");
        compared += 1;
    }
    assert!(compared > 0);
}
