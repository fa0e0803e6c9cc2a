//! The durable run store: runs, stage states, approvals and log entries in SQLite.
//!
//! # Files and durability
//!
//! The store lives in the data dir: `runs.sqlite3` (with SQLite's `-wal` and `-shm` files)
//! and `lock`, which one process holds for as long as its writer runs, so two servers never
//! share a data dir. The database runs in WAL mode. With [`SyncMode::Normal`] (the default)
//! every committed change survives a crash or `kill -9` of the server; with
//! [`SyncMode::Full`] it also survives power loss or an OS crash. The schema is versioned
//! (SQLite `user_version`) and migrated forward on open; a database from a newer labhit is
//! refused with an error saying so.
//!
//! # One writer, group commit
//!
//! A single thread owns the write connection. Every change is a command sent over a bounded
//! channel (senders wait when it is full: backpressure); the writer applies everything queued
//! at that moment in one transaction, commits, answers the commands and then publishes the
//! committed progress of each touched run through a `tokio::sync::watch`
//! ([`Store::subscribe`]). Reads use their own connections and only ever see committed data.
//!
//! # Log sequences and the log cap
//!
//! The writer gives each entry its sequence: per run, from 0, without gaps. Committed entries
//! are never changed or removed. With a log cap of `N` ([`StoreOptions::log_cap`]), a run
//! accepts `N` entries from producers; every later entry is dropped and counted (the count is
//! committed with each batch). When the run ends (or is found interrupted on the next start),
//! one `system`/`warn` marker entry, `log cap reached: D log entries were dropped …` with
//! fields `dropped` and `log_cap`, says how many: the final count, written once, right after
//! the last kept entry. A capped log therefore holds at most `N + 1` entries and stays
//! gapless; a follower of a capped run sees nothing between the `N`th entry and the marker.
//!
//! # Runs that were in flight
//!
//! [`Store::open`] marks every run that is still queued or running — the previous server
//! stopped without finishing it — as interrupted, in one transaction: the run ends `failed`,
//! its running and waiting stages end `failed` with reason
//! `interrupted: the server stopped while the stage was running`, its queued stages end
//! `skipped`, the dropped-entry count is logged if entries were dropped, a `system`/`error`
//! entry says the run was interrupted, and its log is closed. Every entry committed before
//! the stop is kept.
//!
//! # Following a log
//!
//! `StreamLogs` pattern: [`Store::subscribe`] first, then loop: [`Store::read_logs`] at the
//! cursor, send the batch, advance the cursor to [`LogBatch::next_cursor`]; stop when
//! [`LogBatch::is_complete`]; when a batch is empty, await `changed()` on the receiver.
//! Subscribing before reading means no commit can be missed.

mod error;
mod model;
mod read;
mod schema;
mod watches;
mod writer;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::{PipelineRun, RunStatus, StageRun};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, watch};

pub use error::{Result, StoreError};
pub use model::{
    Appended, Approval, CreateOutcome, Idempotency, LogBatch, LogState, NewLogEntry, NewRun,
    Progress, RunFilter, RunPage, RunRecord, StoreOptions, SyncMode,
};
pub use writer::{INTERRUPTED_QUEUED_REASON, INTERRUPTED_REASON};

use watches::Watches;
use writer::{Command, Writer};

/// The database file inside the data dir.
pub const DATABASE_FILE: &str = "runs.sqlite3";
/// The lock file inside the data dir.
pub const LOCK_FILE: &str = "lock";

/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;

/// A handle to the store; cheap to clone, all clones share one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    watches: Arc<Watches>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// An append that was queued; await [`AppendReceipt::committed`] to learn its sequences once
/// committed, or drop it.
#[derive(Debug)]
pub struct AppendReceipt {
    reply: oneshot::Receiver<Result<Appended>>,
}

impl AppendReceipt {
    /// Waits until the entries are committed (or refused) and returns their sequences.
    pub async fn committed(self) -> Result<Appended> {
        self.reply.await.unwrap_or(Err(StoreError::WriterStopped))
    }

    /// [`AppendReceipt::committed`] for threads outside an async runtime.
    pub fn blocking_committed(self) -> Result<Appended> {
        self.reply
            .blocking_recv()
            .unwrap_or(Err(StoreError::WriterStopped))
    }
}

fn open_connection(path: &Path, sync: SyncMode) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::sqlite("opening the database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite("configuring the database"))?;
    let synchronous = match sync {
        SyncMode::Normal => "NORMAL",
        SyncMode::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
    ))
    .map_err(StoreError::sqlite("configuring the database"))?;
    Ok(conn)
}

impl Store {
    /// Opens (or creates) the store in `options.data_dir`, migrates its schema, marks runs
    /// left in flight as interrupted (see the module docs) and starts the writer thread.
    ///
    /// Returns the store and the interrupted runs as they are now. Blocking: call it before
    /// serving, or through `spawn_blocking`.
    pub fn open(options: StoreOptions) -> Result<(Store, Vec<PipelineRun>)> {
        let dir = &options.data_dir;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::DataDir { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.clone(),
                    lock: lock_path,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::DataDir {
                    path: lock_path,
                    source,
                });
            }
        }
        let path = dir.join(DATABASE_FILE);
        let mut conn = open_connection(&path, options.sync)?;
        schema::migrate(&mut conn, &path, schema::MIGRATIONS)?;
        let watches = Arc::new(Watches::default());
        let mut writer = Writer::new(conn, options.log_cap, Arc::clone(&watches), lock);
        let interrupted = writer.recover(Utc::now())?;
        let (commands, receiver) = mpsc::channel(options.queue_capacity.max(1));
        std::thread::Builder::new()
            .name("labhit-store-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|source| StoreError::Spawn { source })?;
        let store = Store {
            inner: Arc::new(Inner {
                commands,
                watches,
                readers: Mutex::new(Vec::new()),
                path,
            }),
        };
        Ok((store, interrupted))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| StoreError::WriterStopped)
    }

    async fn request<T>(&self, make: impl FnOnce(writer::Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.unwrap_or(Err(StoreError::WriterStopped))
    }

    /// Creates a queued run with queued stages, or — when `new.idempotency` names a key used
    /// before — returns [`CreateOutcome::Existing`] (same fingerprint) or
    /// [`CreateOutcome::Conflict`] (different fingerprint). Returns once committed.
    pub async fn create_run(&self, new: NewRun) -> Result<CreateOutcome> {
        self.request(|reply| Command::Create {
            new: Box::new(new),
            reply,
        })
        .await
    }

    /// Moves run `run` to `status` at `at`. `running` sets `started_at` (once); a terminal
    /// status sets `finished_at`, logs the dropped-entry count if any, and closes the log
    /// (later appends are refused with [`StoreError::LogClosed`]). Setting the current status
    /// again is a no-op; an ended run refuses with [`StoreError::RunEnded`], a move back to
    /// `queued` with [`StoreError::InvalidTransition`]. Returns once committed.
    pub async fn set_run_status(
        &self,
        run: RunId,
        status: RunStatus,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.request(|reply| Command::RunStatus {
            run,
            status,
            at,
            reply,
        })
        .await
    }

    /// Records the state of stage `stage.stage` of run `run` (every field of `stage` is
    /// stored as given). Refused with [`StoreError::StageNotFound`], [`StoreError::StageEnded`]
    /// (a terminal stage never changes) or [`StoreError::RunEnded`]. Returns once committed.
    pub async fn update_stage(&self, run: RunId, stage: StageRun) -> Result<()> {
        self.request(|reply| Command::Stage {
            run,
            stage: Box::new(stage),
            reply,
        })
        .await
    }

    /// Records that `approval.by` approved stage `stage` of run `run` at `approval.at` (the
    /// stage's status is changed by [`Store::update_stage`], not here). Returns once committed.
    pub async fn record_approval(
        &self,
        run: RunId,
        stage: StageId,
        approval: Approval,
    ) -> Result<()> {
        self.request(|reply| Command::Approve {
            run,
            stage,
            approval,
            reply,
        })
        .await
    }

    /// Queues log entries of run `run` and returns as soon as they are queued (waiting only
    /// while the writer's queue is full). The store gives them sequences in the given order;
    /// await the receipt to learn them once committed, or drop it. Entries past the log cap
    /// are dropped (see the module docs); entries for an ended run are refused
    /// ([`StoreError::LogClosed`], through the receipt).
    pub async fn append_logs(
        &self,
        run: RunId,
        entries: Vec<NewLogEntry>,
    ) -> Result<AppendReceipt> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Append {
            run,
            entries,
            reply,
        })
        .await?;
        Ok(AppendReceipt { reply: rx })
    }

    /// [`Store::append_logs`] for threads outside an async runtime (it panics inside one:
    /// async code uses `append_logs`).
    pub fn blocking_append_logs(
        &self,
        run: RunId,
        entries: Vec<NewLogEntry>,
    ) -> Result<AppendReceipt> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .blocking_send(Command::Append {
                run,
                entries,
                reply,
            })
            .map_err(|_| StoreError::WriterStopped)?;
        Ok(AppendReceipt { reply: rx })
    }

    /// Waits until every change queued before this call is committed (and published).
    pub async fn flush(&self) -> Result<()> {
        self.request(|reply| Command::Flush { reply }).await
    }

    /// Commits what is queued, closes the database and stops the writer (releasing the data
    /// dir's lock). Later changes through any clone fail with [`StoreError::WriterStopped`];
    /// reads keep working until the last clone is dropped.
    pub async fn shutdown(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Shutdown { reply }).await?;
        rx.await.map_err(|_| StoreError::WriterStopped)
    }

    /// Runs `read` on a read connection in a blocking task.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.with_reader(read))
            .await
            .map_err(|e| StoreError::ReadAborted {
                detail: e.to_string(),
            })?
    }

    /// Runs `read` on a pooled read connection inside one read transaction (one committed
    /// snapshot).
    fn with_reader<T>(&self, read: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = open_connection(&self.inner.path, SyncMode::Normal)?;
                conn.execute_batch("PRAGMA query_only = ON;")
                    .map_err(StoreError::sqlite("configuring a reader"))?;
                conn
            }
        };
        conn.execute_batch("BEGIN")
            .map_err(StoreError::sqlite("starting a read"))?;
        let result = read(&mut conn);
        let ended = conn.execute_batch("COMMIT");
        if ended.is_ok() {
            let mut idle = self
                .inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }

    /// The run `run` with its stages, approvals, idempotency key and log state.
    pub async fn get_run(&self, run: RunId) -> Result<RunRecord> {
        self.read(move |conn| read::run(conn, run)?.ok_or(StoreError::RunNotFound { run }))
            .await
    }

    /// The run created with idempotency key `key` and the fingerprint it was created with,
    /// so a retried trigger can be answered before any work is repeated.
    pub async fn find_by_idempotency_key(
        &self,
        key: String,
    ) -> Result<Option<(RunRecord, String)>> {
        self.read(move |conn| read::run_by_key(conn, &key)).await
    }

    /// One page of the runs matching `filter`, newest first; `page_size` is at least 1.
    /// `page_token` is the previous page's `next_page_token`: pages stay disjoint and
    /// complete while new runs arrive (new runs appear only on a new first page). A token
    /// from another filter or not from this store is refused
    /// ([`StoreError::InvalidPageToken`]).
    pub async fn list_runs(
        &self,
        filter: RunFilter,
        page_size: usize,
        page_token: Option<String>,
    ) -> Result<RunPage> {
        self.read(move |conn| read::list_runs(conn, &filter, page_size, page_token.as_deref()))
            .await
    }

    /// Up to `limit` committed entries of run `run` with `sequence >= cursor` (only of stage
    /// `stage`, if given), with the log's committed state. A cursor past the committed log is
    /// refused ([`StoreError::CursorOutOfRange`]); an unknown run with
    /// [`StoreError::RunNotFound`].
    pub async fn read_logs(
        &self,
        run: RunId,
        cursor: u64,
        stage: Option<StageId>,
        limit: usize,
    ) -> Result<LogBatch> {
        self.read(move |conn| read::read_logs(conn, run, cursor, stage.as_ref(), limit))
            .await
    }

    /// A receiver of run `run`'s committed progress: its value is replaced after every
    /// commit that changed the run (new entries, status, stage states, approvals).
    pub async fn subscribe(&self, run: RunId) -> Result<watch::Receiver<Progress>> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            store.inner.watches.subscribe(run, || {
                store.with_reader(|conn| {
                    let record = read::run(conn, run)?.ok_or(StoreError::RunNotFound { run })?;
                    Ok(Progress {
                        next_sequence: record.log.next_sequence,
                        status: record.run.status,
                        closed: record.log.closed,
                        state_changes: 0,
                    })
                })
            })
        })
        .await
        .map_err(|e| StoreError::ReadAborted {
            detail: e.to_string(),
        })?
    }
}

#[cfg(test)]
mod tests;
