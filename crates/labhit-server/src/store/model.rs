//! The records the store takes and gives: new runs, run records with their server-only
//! facts (approvals, idempotency), log lines before they get a sequence, pages and the
//! per-run progress published after each commit.
//!
//! Runs, stages and log entries are the `labhit_protocol::run` types; this module only adds
//! what the wire types do not carry.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::{LogLevel, LogStream, PipelineRun, RunStatus};

/// How hard each commit is pushed to disk (`--sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// SQLite `synchronous = NORMAL` in WAL mode: a committed entry survives a crash or
    /// `kill -9` of the server; the last commits before a power loss or OS crash may be lost.
    #[default]
    Normal,
    /// SQLite `synchronous = FULL`: every commit is fsynced, so it also survives power loss.
    /// Group commit amortises the fsync over everything queued at that moment.
    Full,
}

impl SyncMode {
    /// The `--sync` spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            SyncMode::Normal => "normal",
            SyncMode::Full => "full",
        }
    }
}

impl std::str::FromStr for SyncMode {
    type Err = String;

    /// Parses `normal` or `full`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" => Ok(SyncMode::Normal),
            "full" => Ok(SyncMode::Full),
            _ => Err(format!(
                "`{s}` is not a sync mode (expected normal or full)"
            )),
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The data dir; created if missing. The database is `runs.sqlite3` inside it.
    pub data_dir: PathBuf,
    /// Durability of each commit.
    pub sync: SyncMode,
    /// The most log entries a run accepts from producers; later ones are dropped and counted
    /// (see [`crate::store`] for the markers). `None`: no cap.
    pub log_cap: Option<u64>,
    /// How many commands may wait for the writer before senders wait (backpressure).
    pub queue_capacity: usize,
}

impl StoreOptions {
    /// The default log cap: 2,000,000 entries per run.
    pub const DEFAULT_LOG_CAP: u64 = 2_000_000;

    /// Defaults for `data_dir`: sync normal, the default log cap, a queue of 4,096 commands.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            sync: SyncMode::Normal,
            log_cap: Some(Self::DEFAULT_LOG_CAP),
            queue_capacity: 4096,
        }
    }
}

/// The client's idempotency key and a fingerprint of the request fields it was sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client-chosen key (the service checks its length).
    pub key: String,
    /// A canonical rendering of the request's fields, see [`Idempotency::fingerprint`]; two
    /// requests are "the same" exactly when their fingerprints are equal.
    pub fingerprint: String,
}

impl Idempotency {
    /// A canonical fingerprint of named request fields: a JSON array of `[name, value]`
    /// pairs in the given order (pass list fields sorted if their order does not matter).
    pub fn fingerprint<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let pairs: Vec<[&str; 2]> = fields.into_iter().map(|(k, v)| [k, v]).collect();
        serde_json::to_string(&pairs).unwrap_or_default()
    }
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The pipeline's `pipeline.name`.
    pub pipeline: String,
    /// The pipeline file's path inside the repository.
    pub pipeline_path: String,
    /// The repository as the client named it.
    pub repository: String,
    /// The git ref as the client gave it.
    pub git_ref: String,
    /// The commit the ref resolved to.
    pub commit: Option<String>,
    /// The stages in a topological order; each starts queued. At least one, no duplicates.
    pub stages: Vec<StageId>,
    /// When the run was accepted.
    pub created_at: DateTime<Utc>,
    /// The idempotency key, if the client sent one.
    pub idempotency: Option<Idempotency>,
}

/// What [`crate::store::Store::create_run`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    /// A new run was created (queued).
    Created(PipelineRun),
    /// The key was used before with the same fingerprint: the run the first request created.
    Existing(PipelineRun),
    /// The key was used before with a different fingerprint (`ALREADY_EXISTS`).
    Conflict {
        /// The run the key belongs to.
        run: RunId,
        /// The fingerprint recorded with the key.
        fingerprint: String,
    },
}

impl CreateOutcome {
    /// The run, unless the key conflicts.
    pub fn run(&self) -> Option<&PipelineRun> {
        match self {
            CreateOutcome::Created(run) | CreateOutcome::Existing(run) => Some(run),
            CreateOutcome::Conflict { .. } => None,
        }
    }
}

/// Who approved a stage and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The approver (the token's name).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A run as stored: the wire record plus what only the server knows.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run with its stages.
    pub run: PipelineRun,
    /// The pipeline file's path inside the repository.
    pub pipeline_path: String,
    /// Approvals by stage.
    pub approvals: BTreeMap<StageId, Approval>,
    /// The idempotency key the run was created with.
    pub idempotency_key: Option<String>,
    /// The committed state of its log.
    pub log: LogState,
}

/// The committed state of a run's log, as of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogState {
    /// The sequence the next entry will get: the number of entries committed.
    pub next_sequence: u64,
    /// Entries dropped past the log cap so far.
    pub dropped: u64,
    /// Whether the run ended and its log is complete (no entry will ever be added).
    pub closed: bool,
}

/// A log entry before the store gives it a run and a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLogEntry {
    /// The stage that produced it; `None` for the run as a whole.
    pub stage: Option<StageId>,
    /// Severity.
    pub level: LogLevel,
    /// Where it came from.
    pub stream: LogStream,
    /// When it was produced.
    pub timestamp: DateTime<Utc>,
    /// The text, one line, already redacted.
    pub message: String,
    /// Structured fields.
    pub fields: BTreeMap<String, String>,
}

/// A run's committed progress, published through a `tokio::sync::watch` after each commit
/// that changed the run (see [`crate::store::Store::subscribe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The sequence the next entry will get: entries `0..next_sequence` are committed.
    pub next_sequence: u64,
    /// The run's status as committed.
    pub status: RunStatus,
    /// Whether the run ended and its log is complete.
    pub closed: bool,
    /// Changes whenever a committed change touched the run's or a stage's state (status,
    /// approval); compare for inequality only, the value itself means nothing.
    pub state_changes: u64,
}

/// Which runs [`crate::store::Store::list_runs`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs of this repository (exact match).
    pub repository: Option<String>,
    /// Only runs in one of these statuses; empty: any status.
    pub statuses: Vec<RunStatus>,
}

/// One page of runs, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// The runs, newest first, each with its server-only facts (approvals) so a page shows
    /// the same run as [`crate::store::Store::get_run`].
    pub runs: Vec<RunRecord>,
    /// The token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// A batch of committed log entries and the log's state at the time of the read.
#[derive(Debug, Clone, PartialEq)]
pub struct LogBatch {
    /// Entries with `sequence >= cursor` (of the stage, if filtered), in sequence order.
    pub entries: Vec<labhit_protocol::run::LogEntry>,
    /// The position after the last entry examined: pass it as the next cursor. With a stage
    /// filter it can be past the last returned entry (entries of other stages were skipped).
    pub next_cursor: u64,
    /// The log's committed state in the same read.
    pub log: LogState,
}

impl LogBatch {
    /// Whether the read reached the end of a closed log: nothing will ever follow.
    pub fn is_complete(&self) -> bool {
        self.log.closed && self.next_cursor >= self.log.next_sequence
    }
}

/// What an append did, known once it is committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    /// The sequences the accepted entries got, in the order they were given.
    pub sequences: std::ops::Range<u64>,
    /// How many of the given entries were dropped because the run's log cap was reached.
    pub dropped: u64,
}
