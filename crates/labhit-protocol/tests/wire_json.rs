//! The JSON shape of every wire type, pinned by insta snapshots in `tests/snapshots/`.
//!
//! A snapshot that changes is a change of the JSON contract: review it, and record it in
//! CHANGELOG.md. Each representative value is also checked against the type's generated JSON
//! Schema, so the schema and serde agree on it, and decoded back, so the shape round-trips.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use labhit_protocol::Value;
use labhit_protocol::executor::{
    ArtifactRef, CacheDecision, CommandStep, ExecutorInput, StepResult,
};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef, StepId};
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

fn at(seconds: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(1_740_830_400 + seconds, nanos).expect("in range")
}

fn stage(id: &str) -> StageId {
    StageId::new(id).expect("valid stage id")
}

fn tag(s: &str) -> SnapshotRef {
    SnapshotRef::new(s)
}

/// A validator for `T`'s JSON Schema that also checks `format`s (`uuid`, `date-time`).
fn validator<T: JsonSchema>() -> jsonschema::Validator {
    let schema = serde_json::to_value(schemars::schema_for!(T)).expect("schema serializes");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

/// Serializes `value`, checks it against `T`'s JSON Schema and that it decodes back to
/// `value`, and returns it for the snapshot (which keeps the declaration order of fields).
fn checked<T>(value: &T) -> &T
where
    T: Serialize + DeserializeOwned + JsonSchema + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_value(value).expect("serializes");
    let validator = validator::<T>();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{json} does not match its schema: {errors:?}"
    );
    let back: T = serde_json::from_value(json).expect("decodes");
    assert_eq!(&back, value);
    value
}

/// Asserts that `T`'s schema refuses `json` and so does serde.
fn refused<T: DeserializeOwned + JsonSchema + std::fmt::Debug>(json: serde_json::Value) {
    let validator = validator::<T>();
    assert!(!validator.is_valid(&json), "schema accepts {json}");
    assert!(
        serde_json::from_value::<T>(json.clone()).is_err(),
        "serde accepts {json}"
    );
}

#[test]
fn ids() {
    let run = RunId::from(Uuid::from_u128(0x0b7c6a1e_3f52_4c8e_9d4a_5b6f7e8d9c0a));
    let step = StepId::from(Uuid::from_u128(0x5e3d2c1b_0a9f_4e8d_8c7b_6a5f4e3d2c1b));
    let archive = ArchiveId::from(Uuid::from_u128(0x9a8b7c6d_5e4f_4a3b_8c2d_1e0f9a8b7c6d));
    insta::assert_json_snapshot!("run_id", checked(&run));
    insta::assert_json_snapshot!("step_id", checked(&step));
    insta::assert_json_snapshot!("archive_id", checked(&archive));
    insta::assert_json_snapshot!("snapshot_ref", checked(&tag("labhit-cache/build:4f2a9c81")));
    refused::<RunId>(serde_json::json!("not-a-uuid"));
}

#[test]
fn artifact_ref() {
    insta::assert_json_snapshot!("artifact_ref", checked(&ArtifactRef::example()));
    refused::<ArtifactRef>(serde_json::json!({
        "path": "../outside", "mime": "text/plain", "size_bytes": 1
    }));
    refused::<ArtifactRef>(serde_json::json!({
        "path": "/etc/passwd", "mime": "text/plain", "size_bytes": 1
    }));
    refused::<ArtifactRef>(serde_json::json!({
        "path": "a.txt", "mime": "text/plain", "size_bytes": 1, "sha": "x"
    }));
}

#[test]
fn command_step() {
    insta::assert_json_snapshot!("command_step_full", checked(&CommandStep::example()));
    let mut minimal = CommandStep::new("make test");
    insta::assert_json_snapshot!("command_step_minimal", checked(&minimal));
    minimal.shell = Some(vec![
        "bash".into(),
        "-eo".into(),
        "pipefail".into(),
        "-c".into(),
    ]);
    insta::assert_json_snapshot!("command_step_custom_shell", checked(&minimal));
    // Optional fields may be omitted on input.
    let omitted: CommandStep =
        serde_json::from_value(serde_json::json!({"script": "make test"})).expect("decodes");
    assert_eq!(omitted, CommandStep::new("make test"));
    refused::<CommandStep>(serde_json::json!({"script": "true", "timeout": 5}));
}

#[test]
fn cache_decision_hit() {
    insta::assert_json_snapshot!(
        "cache_decision_hit",
        checked(&CacheDecision::Hit {
            tag: tag("labhit-cache/build:4f2a9c81")
        })
    );
}

#[test]
fn cache_decision_miss_build_as() {
    insta::assert_json_snapshot!(
        "cache_decision_miss_build_as",
        checked(&CacheDecision::MissBuildAs {
            tag: tag("labhit-cache/build:4f2a9c81")
        })
    );
}

#[test]
fn cache_decision_miss_no_commit() {
    insta::assert_json_snapshot!(
        "cache_decision_miss_no_commit",
        checked(&CacheDecision::MissNoCommit)
    );
}

#[test]
fn cache_decision_refusals() {
    refused::<CacheDecision>(serde_json::json!({"kind": "hit"}));
    refused::<CacheDecision>(serde_json::json!({"kind": "MissNoCommit"}));
    refused::<CacheDecision>(serde_json::json!({"kind": "miss_no_commit", "tag": "x"}));
    refused::<CacheDecision>(serde_json::json!("miss_no_commit"));
}

#[test]
fn executor_input() {
    insta::assert_json_snapshot!("executor_input", checked(&ExecutorInput::example()));
    let mut json = serde_json::to_value(ExecutorInput::example()).expect("serializes");
    json["cache"] = serde_json::json!(null);
    refused::<ExecutorInput>(json);
}

#[test]
fn step_result() {
    insta::assert_json_snapshot!("step_result_committed", checked(&StepResult::example()));
    insta::assert_json_snapshot!("step_result_failed", checked(&StepResult::failure(101)));
}

#[test]
fn run_statuses() {
    insta::assert_json_snapshot!("run_status", checked(&RunStatus::ALL.to_vec()));
    insta::assert_json_snapshot!("stage_status", checked(&StageStatus::ALL.to_vec()));
    insta::assert_json_snapshot!("log_level", checked(&LogLevel::ALL.to_vec()));
    insta::assert_json_snapshot!("log_stream", checked(&LogStream::ALL.to_vec()));
    refused::<StageStatus>(serde_json::json!("WaitingForApproval"));
}

#[test]
fn pipeline_run() {
    insta::assert_json_snapshot!("pipeline_run", checked(&PipelineRun::example()));
    let queued = PipelineRun {
        id: RunId::from(Uuid::from_u128(1)),
        pipeline: "nightly".into(),
        repository: "/src/app".into(),
        git_ref: "v1.4.2".into(),
        commit: None,
        status: RunStatus::Queued,
        created_at: at(0, 0),
        started_at: None,
        finished_at: None,
        stages: vec![StageRun::queued(stage("fetch"))],
    };
    insta::assert_json_snapshot!("pipeline_run_queued", checked(&queued));
}

#[test]
fn stage_run() {
    insta::assert_json_snapshot!("stage_run_succeeded", checked(&StageRun::example()));
    let denied = StageRun {
        stage: stage("deploy"),
        status: StageStatus::Denied,
        started_at: None,
        finished_at: Some(at(120, 0)),
        exit_code: None,
        reason: Some("policy `production-deploy` denied the stage".into()),
        outputs: BTreeMap::new(),
        artifacts: Vec::new(),
    };
    insta::assert_json_snapshot!("stage_run_denied", checked(&denied));
    refused::<StageRun>(serde_json::json!({"stage": "Bad Id", "status": "queued"}));
}

#[test]
fn log_entry() {
    insta::assert_json_snapshot!("log_entry_stdout", checked(&LogEntry::example()));
    let structured = LogEntry {
        run_id: RunId::from(Uuid::from_u128(1)),
        sequence: 0,
        stage: None,
        level: LogLevel::Warn,
        stream: LogStream::Log,
        timestamp: at(1, 1),
        message: "cache unavailable, building from scratch".into(),
        fields: BTreeMap::from([
            ("backend".into(), "s3".into()),
            ("retry".into(), "3".into()),
        ]),
    };
    insta::assert_json_snapshot!("log_entry_structured", checked(&structured));
}

#[test]
fn value() {
    let value = Value::from(serde_json::json!({
        "depth": 1,
        "big": u64::MAX,
        "ratio": 0.25,
        "name": "git",
        "flags": [true, false, null],
        "nested": {"list": [-1, "x", {"k": []}]}
    }));
    insta::assert_json_snapshot!("value", checked(&value));
}
