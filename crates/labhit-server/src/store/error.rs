//! The store's error type: every failure names the data dir, run or stage it is about.

use std::path::PathBuf;

use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::RunStatus;

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What went wrong in the run store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data dir could not be created or its lock file could not be opened.
    #[error("cannot use data dir {}: {source}", path.display())]
    DataDir {
        /// The data dir or file inside it.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (another `labhit serve`) holds the data dir's lock.
    #[error(
        "data dir {} is in use by another labhit server (lock file {}); stop it or pass another --data-dir",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The data dir.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// The database file belongs to another application.
    #[error(
        "{} is not a labhit run store (application id {found:#x}); pass another --data-dir",
        path.display()
    )]
    NotAStore {
        /// The database file.
        path: PathBuf,
        /// The application id found in the file.
        found: i32,
    },
    /// The database was written by a newer labhit with a schema this build does not know.
    #[error(
        "run store {} has schema version {found}, newer than the {supported} this labhit supports; upgrade labhit or pass another --data-dir",
        path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// A schema migration step failed.
    #[error("migrating run store {} to schema version {version} failed: {source}", path.display())]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The version the failing step migrates to.
        version: i64,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// An SQLite operation failed.
    #[error("run store: {what}: {source}")]
    Sqlite {
        /// What the store was doing.
        what: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A value read from the database is not valid (the file was edited or corrupted).
    #[error("run store: corrupt {what}: {detail}")]
    Corrupt {
        /// Which column or record.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// No run with this id exists.
    #[error("run {run} not found")]
    RunNotFound {
        /// The run id.
        run: RunId,
    },
    /// The run has no stage with this id.
    #[error("run {run} has no stage `{stage}`")]
    StageNotFound {
        /// The run id.
        run: RunId,
        /// The stage id.
        stage: StageId,
    },
    /// The run already reached a terminal status; it never changes again.
    #[error("run {run} already ended ({status}); it cannot change any more")]
    RunEnded {
        /// The run id.
        run: RunId,
        /// Its terminal status.
        status: RunStatus,
    },
    /// The run's log is closed (the run ended): no more entries can be appended.
    #[error("the log of run {run} is closed because the run ended; the entry was not recorded")]
    LogClosed {
        /// The run id.
        run: RunId,
    },
    /// The stage already reached a terminal status; it never changes again.
    #[error("stage `{stage}` of run {run} already ended; it cannot change any more")]
    StageEnded {
        /// The run id.
        run: RunId,
        /// The stage id.
        stage: StageId,
    },
    /// A new run was given the same stage id twice, or no stage at all.
    #[error("run stages are invalid: {detail}")]
    InvalidStages {
        /// What is wrong.
        detail: String,
    },
    /// The log cursor lies beyond the run's log.
    #[error(
        "cursor {cursor} is beyond the log of run {run}, which has {next_sequence} entries so far"
    )]
    CursorOutOfRange {
        /// The run id.
        run: RunId,
        /// The requested cursor.
        cursor: u64,
        /// The sequence the next entry will get (the number of entries committed so far).
        next_sequence: u64,
    },
    /// A page token was not issued by this store or for this filter.
    #[error("page token `{token}` is invalid: {reason}")]
    InvalidPageToken {
        /// The rejected token.
        token: String,
        /// Why.
        reason: &'static str,
    },
    /// A timestamp outside the range the store can keep (years 1677 to 2262).
    #[error("timestamp {at} is outside the range the run store keeps (years 1677 to 2262)")]
    TimestampOutOfRange {
        /// The timestamp.
        at: chrono::DateTime<chrono::Utc>,
    },
    /// A run cannot move back to an earlier status.
    #[error("run {run} cannot move from {from} back to {to}")]
    InvalidTransition {
        /// The run id.
        run: RunId,
        /// Its current status.
        from: RunStatus,
        /// The refused status.
        to: RunStatus,
    },
    /// The batch this change was part of could not be committed; nothing of it was recorded.
    #[error("run store: a write failed and was rolled back, the change was not recorded: {detail}")]
    CommitFailed {
        /// The underlying error.
        detail: String,
    },
    /// The writer thread has stopped (the store was shut down, or the thread failed).
    #[error("the run store's writer has stopped; no more changes can be recorded")]
    WriterStopped,
    /// The writer thread could not be started.
    #[error("cannot start the run store's writer thread: {source}")]
    Spawn {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking read task failed (it panicked or the runtime is shutting down).
    #[error("a run store read was aborted: {detail}")]
    ReadAborted {
        /// The join error.
        detail: String,
    },
}

impl StoreError {
    /// Wraps an SQLite error with what the store was doing.
    pub(crate) fn sqlite(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sqlite { what, source }
    }
}
