//! The run model: a [`PipelineRun`] with one [`StageRun`] per stage, their statuses, and
//! the [`LogEntry`] stream of a run.
//!
//! These are what an engine stores and what `labhit.v1.PipelineService` returns (the gRPC
//! messages are converted from these types in `labhit-proto`).
//!
//! # Wire shape
//!
//! JSON: structs are objects with snake_case field names; enums are snake_case strings
//! (`"waiting_for_approval"`); timestamps are RFC 3339 strings in UTC
//! (`"2025-03-01T12:00:00Z"`, with as many fraction digits as needed); optional fields are
//! written as `null` when absent and may be omitted on input; collections may be omitted on
//! input when empty. Unknown fields are ignored, so that readers survive new fields.
//!
//! Borsh: struct fields in declaration order; enums as a `u8` index in declaration order
//! (listed on each enum); timestamps as in [`crate::borsh_ext::datetime`]; `Option` as a
//! `0`/`1` tag byte then the value; maps as a `u32` count then entries sorted by key.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::executor::ArtifactRef;
use crate::forms::StageId;
use crate::ids::RunId;

/// A string that names no variant of a status or log enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind} (expected one of: {expected})")]
pub struct ParseEnumError {
    /// What was being parsed (`run status`, `log level`, …).
    pub kind: &'static str,
    /// The rejected input.
    pub input: String,
    /// The accepted spellings, comma-separated.
    pub expected: &'static str,
}

/// Adds `ALL`, `as_str`, `Display` and `FromStr` to a fieldless enum whose serde names are
/// the snake_case strings given here.
macro_rules! string_enum {
    (
        $name:ident, $kind:literal,
        { $first:ident = $first_text:literal $(, $variant:ident = $text:literal)* $(,)? }
    ) => {
        impl $name {
            /// Every variant, in declaration (and borsh index) order.
            pub const ALL: &'static [$name] = &[$name::$first $(, $name::$variant)*];

            /// The JSON spelling of this variant.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $name::$first => $first_text,
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            /// Parses the JSON spelling.
            fn from_str(s: &str) -> Result<Self, ParseEnumError> {
                match s {
                    $first_text => Ok($name::$first),
                    $($text => Ok($name::$variant),)*
                    _ => Err(ParseEnumError {
                        kind: $kind,
                        input: s.to_owned(),
                        expected: concat!($first_text $(, ", ", $text)*),
                    }),
                }
            }
        }
    };
}

/// The state of a whole run. Borsh indices: queued 0, running 1, succeeded 2, failed 3,
/// cancelled 4.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, no stage started yet.
    Queued,
    /// At least one stage started and the run has not finished.
    Running,
    /// Every stage ended without failure (succeeded, cached or skipped by design).
    Succeeded,
    /// A stage failed or was denied, or the run could not be executed.
    Failed,
    /// Cancelled by a user or the engine before it finished.
    Cancelled,
}

string_enum!(RunStatus, "run status", {
    Queued = "queued",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Cancelled = "cancelled",
});

impl RunStatus {
    /// Whether the run is over (succeeded, failed or cancelled); a terminal status never
    /// changes again.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// The state of one stage in a run. Borsh indices: queued 0, waiting_for_approval 1,
/// running 2, succeeded 3, failed 4, skipped 5, cached 6, cancelled 7, denied 8.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Waiting for the stages it comes `after`.
    Queued,
    /// Its gate requires an approval that has not been given yet.
    WaitingForApproval,
    /// Executing.
    Running,
    /// Finished with exit code 0.
    Succeeded,
    /// Finished with an error or a non-zero exit code; `reason` says why.
    Failed,
    /// Not run because a stage it depends on did not succeed, or the run was stopped.
    Skipped,
    /// Not run because the host had a cached snapshot of its result (a cache hit).
    Cached,
    /// Cancelled while queued, waiting or running.
    Cancelled,
    /// Its gate refused it: approval rejected or a policy denied it; `reason` says which.
    Denied,
}

string_enum!(StageStatus, "stage status", {
    Queued = "queued",
    WaitingForApproval = "waiting_for_approval",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Skipped = "skipped",
    Cached = "cached",
    Cancelled = "cancelled",
    Denied = "denied",
});

impl StageStatus {
    /// Whether the stage is over (succeeded, failed, skipped, cached, cancelled or denied);
    /// a terminal status never changes again.
    pub const fn is_terminal(self) -> bool {
        !matches!(
            self,
            StageStatus::Queued | StageStatus::WaitingForApproval | StageStatus::Running
        )
    }

    /// Whether stages that come `after` this one may run: it succeeded or was cached.
    pub const fn unblocks_dependents(self) -> bool {
        matches!(self, StageStatus::Succeeded | StageStatus::Cached)
    }
}

/// Severity of a log entry, from least to most severe. Borsh indices: trace 0, debug 1,
/// info 2, warn 3, error 4.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics for developers.
    Debug,
    /// Normal progress messages.
    Info,
    /// Something unexpected that did not stop the work.
    Warn,
    /// Something failed.
    Error,
}

string_enum!(LogLevel, "log level", {
    Trace = "trace",
    Debug = "debug",
    Info = "info",
    Warn = "warn",
    Error = "error",
});

/// Where a log entry came from. Borsh indices: log 0, stdout 1, stderr 2, system 3.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// A structured `log` call of an extension.
    Log,
    /// A line the stage wrote to standard output.
    Stdout,
    /// A line the stage wrote to standard error.
    Stderr,
    /// A message of the engine itself (stage started, gate waiting, …).
    System,
}

string_enum!(LogStream, "log stream", {
    Log = "log",
    Stdout = "stdout",
    Stderr = "stderr",
    System = "system",
});

/// One run of a pipeline: what was run, where it stands, and one entry per stage.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, BorshSerialize, BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[schemars(example = PipelineRun::example())]
pub struct PipelineRun {
    /// The run's id.
    pub id: RunId,
    /// The pipeline's `pipeline.name`.
    pub pipeline: String,
    /// The repository the pipeline file was read from, as given to the engine (a URL or a
    /// local path).
    pub repository: String,
    /// The git ref the run was triggered for, e.g. `refs/heads/main` or a tag.
    pub git_ref: String,
    /// The full commit id `git_ref` resolved to; `null` until resolved.
    #[serde(default)]
    pub commit: Option<String>,
    /// Where the run stands.
    pub status: RunStatus,
    /// When the run was created (queued).
    #[borsh(
        serialize_with = "crate::borsh_ext::datetime::serialize",
        deserialize_with = "crate::borsh_ext::datetime::deserialize"
    )]
    #[cfg_attr(
        feature = "borsh-schema",
        borsh(schema(with_funcs(
            declaration = "crate::borsh_ext::datetime::schema_declaration",
            definitions = "crate::borsh_ext::datetime::schema_definitions"
        )))
    )]
    pub created_at: DateTime<Utc>,
    /// When its first stage started; `null` while queued.
    #[serde(default)]
    #[borsh(
        serialize_with = "crate::borsh_ext::option_datetime::serialize",
        deserialize_with = "crate::borsh_ext::option_datetime::deserialize"
    )]
    #[cfg_attr(
        feature = "borsh-schema",
        borsh(schema(with_funcs(
            declaration = "crate::borsh_ext::option_datetime::schema_declaration",
            definitions = "crate::borsh_ext::option_datetime::schema_definitions"
        )))
    )]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status; `null` until then.
    #[serde(default)]
    #[borsh(
        serialize_with = "crate::borsh_ext::option_datetime::serialize",
        deserialize_with = "crate::borsh_ext::option_datetime::deserialize"
    )]
    #[cfg_attr(
        feature = "borsh-schema",
        borsh(schema(with_funcs(
            declaration = "crate::borsh_ext::option_datetime::schema_declaration",
            definitions = "crate::borsh_ext::option_datetime::schema_definitions"
        )))
    )]
    pub finished_at: Option<DateTime<Utc>>,
    /// One entry per stage of the pipeline, in a topological order of the stage graph.
    #[serde(default)]
    pub stages: Vec<StageRun>,
}

impl PipelineRun {
    /// The entry of stage `id`, if the run has one.
    pub fn stage(&self, id: &str) -> Option<&StageRun> {
        self.stages.iter().find(|s| s.stage.as_str() == id)
    }

    /// A representative value (shown as the example in the JSON Schema).
    pub fn example() -> Self {
        let at = |seconds: i64| DateTime::from_timestamp(1_740_830_400 + seconds, 0);
        Self {
            id: RunId(uuid::Uuid::from_u128(
                0x0b7c6a1e_3f52_4c8e_9d4a_5b6f7e8d9c0a,
            )),
            pipeline: "my-pipeline".to_owned(),
            repository: "https://git.example/acme/app.git".to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            commit: Some("4f2a9c81d0e3b7a65c1f8e2d9b0a3c4d5e6f7a8b".to_owned()),
            status: RunStatus::Running,
            created_at: at(0).unwrap_or_default(),
            started_at: at(2),
            finished_at: None,
            stages: vec![StageRun::example()],
        }
    }
}

/// One stage within a run.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, BorshSerialize, BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[schemars(example = StageRun::example())]
pub struct StageRun {
    /// The stage's id (its key under `pipeline.stages`).
    pub stage: StageId,
    /// Where the stage stands.
    pub status: StageStatus,
    /// When it started running; `null` if it has not.
    #[serde(default)]
    #[borsh(
        serialize_with = "crate::borsh_ext::option_datetime::serialize",
        deserialize_with = "crate::borsh_ext::option_datetime::deserialize"
    )]
    #[cfg_attr(
        feature = "borsh-schema",
        borsh(schema(with_funcs(
            declaration = "crate::borsh_ext::option_datetime::schema_declaration",
            definitions = "crate::borsh_ext::option_datetime::schema_definitions"
        )))
    )]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status; `null` until then.
    #[serde(default)]
    #[borsh(
        serialize_with = "crate::borsh_ext::option_datetime::serialize",
        deserialize_with = "crate::borsh_ext::option_datetime::deserialize"
    )]
    #[cfg_attr(
        feature = "borsh-schema",
        borsh(schema(with_funcs(
            declaration = "crate::borsh_ext::option_datetime::schema_declaration",
            definitions = "crate::borsh_ext::option_datetime::schema_definitions"
        )))
    )]
    pub finished_at: Option<DateTime<Utc>>,
    /// The exit code of its command or extension, once it ran to completion.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it ended the way it did, for humans: the error of a failure, the gate decision
    /// of a denial, the failed dependency of a skip. `null` when there is nothing to say.
    #[serde(default)]
    pub reason: Option<String>,
    /// The named outputs the stage produced.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// The artifacts the stage produced.
    #[serde(default)]
    pub artifacts: Vec<ArtifactRef>,
}

impl StageRun {
    /// A queued stage with nothing recorded yet.
    pub fn queued(stage: StageId) -> Self {
        Self {
            stage,
            status: StageStatus::Queued,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            outputs: BTreeMap::new(),
            artifacts: Vec::new(),
        }
    }

    /// A representative value (shown as the example in the JSON Schema).
    pub fn example() -> Self {
        let at = |seconds: i64| DateTime::from_timestamp(1_740_830_400 + seconds, 250_000_000);
        let mut stage = StageRun::queued(example_stage_id());
        stage.status = StageStatus::Succeeded;
        stage.started_at = at(2);
        stage.finished_at = at(95);
        stage.exit_code = Some(0);
        stage.outputs = BTreeMap::from([("version".to_owned(), "1.4.2".to_owned())]);
        stage.artifacts = vec![ArtifactRef::example()];
        stage
    }
}

/// The stage id used by the examples.
fn example_stage_id() -> StageId {
    // `build` matches the stage id pattern, so this never falls back.
    StageId::new("build").unwrap_or_else(|_| unreachable!("`build` is a valid stage id"))
}

/// One entry of a run's log stream: a line of output or a log message.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, BorshSerialize, BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[schemars(example = LogEntry::example())]
pub struct LogEntry {
    /// The run the entry belongs to.
    pub run_id: RunId,
    /// Position in the run's log stream, starting at 0 and increasing by 1 per entry. It is
    /// the stream cursor: a client that resumes from cursor `n` receives entries `n`, `n+1`,
    /// … and nothing it saw before.
    pub sequence: u64,
    /// The stage that produced the entry; `null` for entries about the whole run.
    #[serde(default)]
    pub stage: Option<StageId>,
    /// Severity. Output lines are `info` (stdout) or `warn` (stderr) unless the producer says
    /// otherwise.
    pub level: LogLevel,
    /// Where the entry came from.
    pub stream: LogStream,
    /// When the engine received it.
    #[borsh(
        serialize_with = "crate::borsh_ext::datetime::serialize",
        deserialize_with = "crate::borsh_ext::datetime::deserialize"
    )]
    #[cfg_attr(
        feature = "borsh-schema",
        borsh(schema(with_funcs(
            declaration = "crate::borsh_ext::datetime::schema_declaration",
            definitions = "crate::borsh_ext::datetime::schema_definitions"
        )))
    )]
    pub timestamp: DateTime<Utc>,
    /// The text, without a trailing newline. Secret values are already redacted.
    pub message: String,
    /// Structured fields of a `log` call (key → value); empty for output lines.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl LogEntry {
    /// A representative value (shown as the example in the JSON Schema).
    pub fn example() -> Self {
        Self {
            run_id: RunId(uuid::Uuid::from_u128(
                0x0b7c6a1e_3f52_4c8e_9d4a_5b6f7e8d9c0a,
            )),
            sequence: 42,
            stage: Some(example_stage_id()),
            level: LogLevel::Info,
            stream: LogStream::Stdout,
            timestamp: DateTime::from_timestamp(1_740_830_410, 125_000_000).unwrap_or_default(),
            message: "   Compiling app v1.4.2 (/workspace)".to_owned(),
            fields: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str`, `FromStr` and serde agree on every variant's spelling.
    fn check_spellings<T>(all: &[T])
    where
        T: Copy + fmt::Display + FromStr<Err = ParseEnumError> + Serialize + PartialEq + fmt::Debug,
    {
        for value in all {
            let text = value.to_string();
            assert_eq!(
                serde_json::to_value(value).unwrap(),
                serde_json::Value::String(text.clone())
            );
            assert_eq!(text.parse::<T>().unwrap(), *value);
        }
    }

    #[test]
    fn spellings_agree_with_serde() {
        check_spellings(RunStatus::ALL);
        check_spellings(StageStatus::ALL);
        check_spellings(LogLevel::ALL);
        check_spellings(LogStream::ALL);
    }

    #[test]
    fn borsh_indices_follow_declaration_order() {
        for (index, status) in StageStatus::ALL.iter().enumerate() {
            assert_eq!(
                borsh::to_vec(status).unwrap(),
                [u8::try_from(index).unwrap()]
            );
        }
        assert!(borsh::from_slice::<StageStatus>(&[9]).is_err());
    }

    #[test]
    fn parse_error_lists_the_choices() {
        let err = "done".parse::<RunStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`done` is not a valid run status (expected one of: queued, running, succeeded, failed, cancelled)"
        );
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<_> = StageStatus::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal.len(), 6);
        assert!(!StageStatus::WaitingForApproval.is_terminal());
        assert!(StageStatus::Denied.is_terminal());
        assert!(RunStatus::Cancelled.is_terminal());
        assert!(!RunStatus::Running.is_terminal());
    }

    #[test]
    fn log_levels_are_ordered() {
        assert!(LogLevel::Trace < LogLevel::Debug && LogLevel::Warn < LogLevel::Error);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let json = serde_json::to_value(LogEntry::example()).unwrap();
        assert_eq!(json["timestamp"], "2025-03-01T12:00:10.125Z");
        let run = serde_json::to_value(PipelineRun::example()).unwrap();
        assert_eq!(run["created_at"], "2025-03-01T12:00:00Z");
    }
}
