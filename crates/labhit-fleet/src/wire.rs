//! What server and workers say to each other over NATS, as JSON.
//!
//! These messages are the fleet's own (server and workers of the same release talk); the
//! contract types they carry (`ExecutorInput`, `StepResult`, `LogEntry`, `Value`) keep their
//! published JSON forms.
//!
//! | subject | stream | message |
//! |---|---|---|
//! | `labhit.task.<need>` | `LABHIT_TASKS` (work queue) | [`Task`] |
//! | `labhit.log.<run>.<stage>.<attempt>` | `LABHIT_EVENTS` | [`LogLine`] |
//! | `labhit.done.<run>.<stage>.<attempt>` | `LABHIT_EVENTS` | [`Reply`] |
//! | `labhit.cancel.<run>.<stage>.<attempt>` | `LABHIT_EVENTS` | empty: this task is cancelled |
//! | `labhit.cancel.<run>` | `LABHIT_EVENTS` | [`Abandoned`]: every task of the run is cancelled |
//!
//! Workspaces and snapshots are objects: [`ARCHIVES_BUCKET`] (by `ArchiveId`) and
//! [`SNAPSHOTS_BUCKET`] (by cache tag, see [`crate::snapshots`]).
//!
//! `<need>` is [`Need::token`]: the extension a worker must have (or the local executor)
//! and the fleet [`PROTOCOL`], so a task is only ever pulled by a worker that can run it and
//! reads its messages the same way.
//!
//! These messages are not a contract: server and workers of one release talk, and a change
//! to them bumps [`PROTOCOL`] instead of staying compatible. The contract types inside them
//! keep their published forms. A worker of another protocol never pulls a task (its need
//! tokens differ), and the server names the mismatch when only such workers have a need.

use std::collections::BTreeMap;

use labhit_protocol::Value;
use labhit_protocol::executor::{ArtifactRef, ExecutorInput, StepResult};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef};
use labhit_protocol::run::LogEntry;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The version of the fleet's messages (this module). Part of every need token and of
/// every worker's [`Advert`](crate::worker::Advert); bumped on any change to them.
pub const PROTOCOL: u32 = 1;

/// The work-queue stream of tasks.
pub const TASKS_STREAM: &str = "LABHIT_TASKS";
/// The stream of logs and replies.
pub const EVENTS_STREAM: &str = "LABHIT_EVENTS";
/// The object store bucket of workspace archives.
pub const ARCHIVES_BUCKET: &str = "labhit_archives";
/// The object store bucket of snapshots, one object per cache tag.
pub const SNAPSHOTS_BUCKET: &str = "labhit_snapshots";
/// The key-value bucket where workers advertise what they can run.
pub const WORKERS_BUCKET: &str = "labhit_workers";

/// What a worker must have to run a task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Need {
    /// The built-in local executor (`run:` without `use:`).
    Local,
    /// An extension, exactly this version, for this contract.
    Extension {
        /// `category/name@version`.
        reference: String,
        /// The contract version it was built for.
        contract: String,
    },
}

impl Need {
    /// The subject token of the need under the fleet [`PROTOCOL`] `p`: `p<p>local`, or
    /// `p<p>x` and the first 16 hex digits of the sha256 of `reference contract`.
    pub fn token(&self) -> String {
        match self {
            Need::Local => format!("p{PROTOCOL}local"),
            Need::Extension {
                reference,
                contract,
            } => {
                let digest = Sha256::digest(format!("{reference} {contract}").as_bytes());
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("p{PROTOCOL}x{hex}")
            }
        }
    }
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Local => f.write_str("the local executor"),
            Need::Extension {
                reference,
                contract,
            } => write!(f, "extension `{reference}` (contract {contract})"),
        }
    }
}

/// One stage's step for a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    /// The run.
    pub run_id: RunId,
    /// The stage.
    pub stage: String,
    /// The attempt (see `labhit_runtime::dispatch::Dispatch::attempt`).
    pub attempt: u32,
    /// The workspace the step starts from, in the archives bucket.
    pub archive: ArchiveId,
    /// What the worker must have.
    pub need: Need,
    /// The step.
    pub body: TaskBody,
    /// The stage's deadline, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Whether the step may change the workspace: the worker then sends it back.
    pub writes: bool,
}

impl Task {
    /// `run.stage.attempt`: the subject suffix of the task's events.
    pub fn key(&self) -> String {
        task_key(self.run_id, &self.stage, self.attempt)
    }
}

/// `run.stage.attempt` (stage ids are subject-safe: `[a-z][a-z0-9_-]*`).
pub fn task_key(run_id: RunId, stage: &str, attempt: u32) -> String {
    format!("{run_id}.{stage}.{attempt}")
}

/// The subject that cancels one task: `labhit.cancel.<run>.<stage>.<attempt>`.
pub fn task_cancel_subject(key: &str) -> String {
    format!("labhit.cancel.{key}")
}

/// The subject that cancels every task of a run: `labhit.cancel.<run>`.
pub fn run_cancel_subject(run_id: RunId) -> String {
    format!("labhit.cancel.{run_id}")
}

/// Why every task of a run was cancelled (published on [`run_cancel_subject`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Abandoned {
    /// Said to whoever asks about a task of the run (a worker's reply message).
    pub reason: String,
}

/// The step of a [`Task`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TaskBody {
    /// A `use:` stage.
    Extension {
        /// The stage's `with`.
        with: Value,
        /// The granted environment.
        env: BTreeMap<String, String>,
    },
    /// A `run:` stage (with an executor extension when [`Task::need`] names one). The worker
    /// obeys the cache decision in `input` with the fleet's snapshots ([`crate::snapshots`]).
    Command {
        /// An executor extension's `with`.
        with: Option<Value>,
        /// The executor input.
        input: Box<ExecutorInput>,
    },
}

/// One log entry of a step, numbered per task from 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// The entry's number within the task.
    pub n: u64,
    /// The entry (its `sequence` is the server's to assign).
    pub entry: LogEntry,
}

/// How a task ended, from the worker that ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// The worker's name.
    pub worker: String,
    /// How many log lines it sent.
    pub lines: u64,
    /// The workspace after the step, when the task [`Task::writes`] and the step ran.
    pub archive_after: Option<ArchiveId>,
    /// The result.
    pub outcome: Outcome,
}

/// The result of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// An extension step ran to its end.
    Step {
        /// Its exit code.
        exit_code: i32,
        /// Named outputs.
        outputs: BTreeMap<String, String>,
        /// Artifacts.
        artifacts: Vec<ArtifactRef>,
    },
    /// A command step ran to its end.
    Command {
        /// The executor's result.
        result: StepResult,
        /// Named outputs.
        outputs: BTreeMap<String, String>,
    },
    /// The step failed before ending (or could not start).
    Failed {
        /// What kind of failure.
        failure: Failure,
        /// The message, phrased as the runtime phrases it.
        message: String,
    },
}

/// The kind of a [`Outcome::Failed`], for the server to rebuild the runtime's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Failure {
    /// Stopped after cancellation.
    Cancelled,
    /// Ran past its deadline (milliseconds).
    Timeout {
        /// The deadline that applied.
        ms: u64,
    },
    /// An extension called `wasi:cli/exit`.
    Exit {
        /// Its status.
        status: Option<i32>,
    },
    /// The worker cannot run it (the extension is missing, the archive unusable).
    Refused,
    /// The snapshot of a `hit` is missing from the snapshots bucket or corrupt (then the
    /// worker deleted it): the server retries the step as a miss.
    Snapshot {
        /// The snapshot's tag.
        tag: SnapshotRef,
    },
    /// Anything else.
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_tokens_are_subject_safe_and_distinct() {
        let a = Need::Extension {
            reference: "util/checksum@0.1.0".to_owned(),
            contract: "0.1.0".to_owned(),
        };
        let b = Need::Extension {
            reference: "util/checksum@0.1.0".to_owned(),
            contract: "0.2.0".to_owned(),
        };
        for token in [a.token(), b.token(), Need::Local.token()] {
            assert!(token.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");
        }
        assert_ne!(a.token(), b.token());
        assert!(Need::Local.token().starts_with(&format!("p{PROTOCOL}")));
        assert!(a.token().starts_with(&format!("p{PROTOCOL}x")));
    }
}
