//! Property tests of the wire types: every value survives a JSON and a borsh round trip,
//! borsh encodings are canonical (decode then re-encode gives the same bytes), and decoding
//! arbitrary or corrupted bytes returns an error instead of panicking.

use std::collections::BTreeMap;
use std::fmt::Debug;

use chrono::{DateTime, Utc};
use labhit_protocol::Value;
use labhit_protocol::codec::{from_borsh, from_json, to_borsh, to_json};
use labhit_protocol::executor::{
    ArtifactPath, ArtifactRef, CacheDecision, CommandStep, ExecutorInput, StepResult,
};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef, StepId};
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use uuid::Uuid;

// ---- strategies -------------------------------------------------------------------------

/// Any string, including non-ASCII and control characters.
fn text() -> impl Strategy<Value = String> {
    any::<String>()
}

fn small_text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

/// Timestamps across chrono's whole range, with any sub-second part (no leap seconds).
fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp();
    let max = DateTime::<Utc>::MAX_UTC.timestamp() - 1;
    (min..=max, 0u32..1_000_000_000).prop_map(|(seconds, nanos)| {
        DateTime::from_timestamp(seconds, nanos).unwrap_or(DateTime::UNIX_EPOCH)
    })
}

fn snapshot_ref() -> impl Strategy<Value = SnapshotRef> {
    small_text().prop_map(SnapshotRef::new)
}

fn stage_id() -> impl Strategy<Value = StageId> {
    "[a-z][a-z0-9_-]{0,62}".prop_map(|s| StageId::new(s).expect("matches the pattern"))
}

fn artifact_path() -> impl Strategy<Value = ArtifactPath> {
    let component = prop_oneof![
        "[A-Za-z0-9_ -][A-Za-z0-9._ -]{0,11}",
        Just(".".to_owned()),
        Just("...".to_owned()),
        "\\.[a-z]{1,6}",
        "[^/\\\\\\x00.][^/\\\\\\x00]{0,8}",
    ];
    vec(component, 1..5)
        .prop_map(|parts| ArtifactPath::new(parts.join("/")).expect("generated paths are valid"))
}

fn artifact_ref() -> impl Strategy<Value = ArtifactRef> {
    (artifact_path(), "[a-z]+/[a-z0-9.+-]+", any::<u64>()).prop_map(|(path, mime, size_bytes)| {
        ArtifactRef {
            path,
            mime,
            size_bytes,
        }
    })
}

fn command_step() -> impl Strategy<Value = CommandStep> {
    (
        text(),
        option::of(vec(small_text(), 1..4)),
        option::of(small_text()),
        option::of(1..u64::MAX),
        option::of(1..u64::MAX),
        option::of(1..u64::MAX),
    )
        .prop_map(
            |(script, shell, image, timeout_secs, cpu_millis, memory_bytes)| CommandStep {
                script,
                shell,
                image,
                timeout_secs,
                cpu_millis,
                memory_bytes,
            },
        )
}

fn cache_decision() -> impl Strategy<Value = CacheDecision> {
    prop_oneof![
        snapshot_ref().prop_map(|tag| CacheDecision::Hit { tag }),
        snapshot_ref().prop_map(|tag| CacheDecision::MissBuildAs { tag }),
        Just(CacheDecision::MissNoCommit),
    ]
}

fn executor_input() -> impl Strategy<Value = ExecutorInput> {
    (
        command_step(),
        uuid(),
        btree_map(small_text(), small_text(), 0..6),
        small_text(),
        (uuid(), uuid()),
        cache_decision(),
        option::of(snapshot_ref()),
    )
        .prop_map(
            |(step, archive, env, workdir, (run, step_id), cache_lookup, parent_snapshot)| {
                ExecutorInput {
                    step,
                    workspace_archive_id: ArchiveId::from(archive),
                    env,
                    workdir,
                    run_id: RunId::from(run),
                    step_id: StepId::from(step_id),
                    cache_lookup,
                    parent_snapshot,
                }
            },
        )
}

fn step_result() -> impl Strategy<Value = StepResult> {
    (
        any::<i32>(),
        option::of(snapshot_ref()),
        vec(artifact_ref(), 0..4),
    )
        .prop_map(|(exit_code, committed_snapshot, artifacts)| StepResult {
            exit_code,
            committed_snapshot,
            artifacts,
        })
}

fn run_status() -> impl Strategy<Value = RunStatus> {
    proptest::sample::select(RunStatus::ALL)
}

fn stage_status() -> impl Strategy<Value = StageStatus> {
    proptest::sample::select(StageStatus::ALL)
}

fn log_level() -> impl Strategy<Value = LogLevel> {
    proptest::sample::select(LogLevel::ALL)
}

fn log_stream() -> impl Strategy<Value = LogStream> {
    proptest::sample::select(LogStream::ALL)
}

fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(small_text(), small_text(), 0..5)
}

fn stage_run() -> impl Strategy<Value = StageRun> {
    (
        stage_id(),
        stage_status(),
        option::of(timestamp()),
        option::of(timestamp()),
        option::of(any::<i32>()),
        option::of(text()),
        string_map(),
        vec(artifact_ref(), 0..3),
    )
        .prop_map(
            |(stage, status, started_at, finished_at, exit_code, reason, outputs, artifacts)| {
                StageRun {
                    stage,
                    status,
                    started_at,
                    finished_at,
                    exit_code,
                    reason,
                    outputs,
                    artifacts,
                }
            },
        )
}

fn pipeline_run() -> impl Strategy<Value = PipelineRun> {
    (
        (uuid(), small_text(), small_text(), small_text()),
        option::of("[0-9a-f]{40}"),
        run_status(),
        (
            timestamp(),
            option::of(timestamp()),
            option::of(timestamp()),
        ),
        vec(stage_run(), 0..4),
    )
        .prop_map(
            |(
                (id, pipeline, repository, git_ref),
                commit,
                status,
                (created_at, started_at, finished_at),
                stages,
            )| PipelineRun {
                id: RunId::from(id),
                pipeline,
                repository,
                git_ref,
                commit,
                status,
                created_at,
                started_at,
                finished_at,
                stages,
            },
        )
}

fn log_entry() -> impl Strategy<Value = LogEntry> {
    (
        uuid(),
        any::<u64>(),
        option::of(stage_id()),
        log_level(),
        log_stream(),
        timestamp(),
        text(),
        string_map(),
    )
        .prop_map(
            |(run, sequence, stage, level, stream, timestamp, message, fields)| LogEntry {
                run_id: RunId::from(run),
                sequence,
                stage,
                level,
                stream,
                timestamp,
                message,
                fields,
            },
        )
}

/// Finite floats that survive a trip through decimal text, whatever the JSON parser's
/// precision: values with at most 15 significant digits.
fn json_float() -> impl Strategy<Value = f64> {
    (any::<i64>(), -20i32..20).prop_map(|(mantissa, exponent)| {
        let mantissa = mantissa % 1_000_000_000_000_000;
        format!("{mantissa}e{exponent}")
            .parse::<f64>()
            .unwrap_or_default()
    })
}

/// Any [`Value`]: every scalar kind (including `u64` above `i64::MAX`) nested in arrays and
/// objects up to a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Value::UInt),
        json_float().prop_map(Value::Float),
        small_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(small_text(), inner, 0..6).prop_map(Value::Object),
        ]
    })
}

// ---- properties -------------------------------------------------------------------------

/// The value survives JSON and borsh, and the borsh encoding is canonical.
fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + borsh::BorshSerialize
        + borsh::BorshDeserialize
        + PartialEq
        + Debug,
{
    let text = to_json(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let from_text: T = from_json(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    prop_assert_eq!(&from_text, value);

    let bytes = to_borsh(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let from_bytes: T = from_borsh(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&from_bytes, value);
    let again = to_borsh(&from_bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(again, bytes);
    Ok(())
}

/// Decoding corrupted encodings of a valid value never panics: every prefix, and the
/// encoding with one byte replaced.
fn survives_corruption<T>(value: &T, index: usize, byte: u8) -> Result<(), TestCaseError>
where
    T: borsh::BorshSerialize + borsh::BorshDeserialize,
{
    let mut bytes = to_borsh(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for len in 0..bytes.len() {
        prop_assert!(from_borsh::<T>(&bytes[..len]).is_err());
    }
    if !bytes.is_empty() {
        let index = index % bytes.len();
        bytes[index] = byte;
        let _ = from_borsh::<T>(&bytes);
    }
    Ok(())
}

macro_rules! properties {
    ($($name:ident: $ty:ty = $strategy:expr;)+) => {
        $(
            mod $name {
                use super::*;

                proptest! {
                    #[test]
                    fn json_and_borsh_round_trip(value in $strategy) {
                        round_trips(&value)?;
                    }

                    #[test]
                    fn corrupted_borsh_never_panics(
                        value in $strategy,
                        index in any::<usize>(),
                        byte in any::<u8>(),
                    ) {
                        survives_corruption(&value, index, byte)?;
                    }

                    #[test]
                    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
                        let _ = from_borsh::<$ty>(&bytes);
                    }
                }
            }
        )+
    };
}

properties! {
    archive_id: ArchiveId = uuid().prop_map(ArchiveId::from);
    run_id: RunId = uuid().prop_map(RunId::from);
    step_id: StepId = uuid().prop_map(StepId::from);
    snapshot_ref_: SnapshotRef = snapshot_ref();
    stage_id_: StageId = stage_id();
    artifact_ref_: ArtifactRef = artifact_ref();
    command_step_: CommandStep = command_step();
    cache_decision_: CacheDecision = cache_decision();
    executor_input_: ExecutorInput = executor_input();
    step_result_: StepResult = step_result();
    run_status_: RunStatus = run_status();
    stage_status_: StageStatus = stage_status();
    log_level_: LogLevel = log_level();
    log_stream_: LogStream = log_stream();
    stage_run_: StageRun = stage_run();
    pipeline_run_: PipelineRun = pipeline_run();
    log_entry_: LogEntry = log_entry();
    value_: Value = value();
}

proptest! {
    /// `Value`'s JSON is the JSON of the equivalent `serde_json::Value`.
    #[test]
    fn value_json_matches_serde_json(value in value()) {
        let text = to_json(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&parsed, &value.to_json());
        prop_assert_eq!(Value::from_json(&parsed), value);
    }

    /// Strings that are not valid artifact paths are refused by every decoder.
    #[test]
    fn invalid_artifact_paths_are_refused(prefix in "[a-z]{0,3}", bad in prop_oneof![
        Just(".."), Just("/"), Just("\\"), Just("\0"), Just("//"),
    ]) {
        let path = if bad == "/" { format!("/{prefix}") } else { format!("{prefix}{bad}") };
        let path = if bad == ".." { format!("{prefix}/..") } else { path };
        prop_assert!(ArtifactPath::new(path.clone()).is_err(), "{:?}", path);
        let json = serde_json::json!({"path": path, "mime": "a/b", "size_bytes": 0});
        prop_assert!(serde_json::from_value::<ArtifactRef>(json).is_err());
        let bytes = borsh::to_vec(&(path, "a/b".to_owned(), 0u64))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(from_borsh::<ArtifactRef>(&bytes).is_err());
    }
}

proptest! {
    /// The JSON Schema pattern of `ArtifactPath` accepts exactly what `ArtifactPath::new`
    /// accepts, on strings built from the characters that matter.
    #[test]
    fn artifact_path_pattern_agrees_with_the_validator(
        path in "[a./\\\\\\x00]{0,8}",
    ) {
        let schema = serde_json::to_value(schemars::schema_for!(ArtifactPath))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let validator = jsonschema::validator_for(&schema)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            validator.is_valid(&serde_json::Value::String(path.clone())),
            ArtifactPath::new(path.clone()).is_ok(),
            "{:?}", path
        );
    }
}
