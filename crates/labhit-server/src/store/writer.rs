//! The single writer: one thread owns the write connection, takes commands from a bounded
//! channel, applies everything queued at that moment in one transaction (group commit),
//! answers each command after the commit and then publishes the progress of every run the
//! batch touched.
//!
//! Each command is checked (run exists, not ended, stage exists) before it writes anything,
//! so a refused command never spoils the batch it is in. If a statement or the commit itself
//! fails, the whole batch is rolled back, every command in it is answered with the error, and
//! the in-memory state of the touched runs is restored to the last commit.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::{LogLevel, LogStream, PipelineRun, RunStatus, StageRun};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::error::{Result, StoreError};
use super::model::{Appended, Approval, CreateOutcome, NewLogEntry, NewRun, Progress};
use super::read::{self, to_nanos};
use super::watches::Watches;

/// Where a command's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// The most commands applied in one transaction.
const MAX_BATCH: usize = 4096;

/// The reason given to stages that were in flight when the server stopped.
pub const INTERRUPTED_REASON: &str = "interrupted: the server stopped while the stage was running";
/// The reason given to queued stages of an interrupted run.
pub const INTERRUPTED_QUEUED_REASON: &str =
    "interrupted: the server stopped before the stage could run";

/// A request to the writer.
pub(crate) enum Command {
    /// Create a run (or find it by idempotency key).
    Create {
        new: Box<NewRun>,
        reply: Reply<CreateOutcome>,
    },
    /// Move a run to another status.
    RunStatus {
        run: RunId,
        status: RunStatus,
        at: DateTime<Utc>,
        reply: Reply<()>,
    },
    /// Record a stage's state.
    Stage {
        run: RunId,
        stage: Box<StageRun>,
        reply: Reply<()>,
    },
    /// Record who approved a stage.
    Approve {
        run: RunId,
        stage: StageId,
        approval: Approval,
        reply: Reply<()>,
    },
    /// Append log entries.
    Append {
        run: RunId,
        entries: Vec<NewLogEntry>,
        reply: Reply<Appended>,
    },
    /// Answer once everything queued before is committed.
    Flush { reply: Reply<()> },
    /// Commit what is queued, close the database and stop.
    Shutdown { reply: oneshot::Sender<()> },
}

/// What the writer knows about a run that has not ended.
#[derive(Debug, Clone)]
struct Live {
    /// `runs.seq`.
    seq: i64,
    status: RunStatus,
    /// The sequence the next entry gets.
    next: u64,
    /// Entries accepted from producers (at most the cap).
    accepted: u64,
    /// Entries dropped past the cap.
    dropped: u64,
    closed: bool,
    changes: u64,
}

impl Live {
    fn progress(&self) -> Progress {
        Progress {
            next_sequence: self.next,
            status: self.status,
            closed: self.closed,
            state_changes: self.changes,
        }
    }
}

/// A command's answer, held until its batch has committed.
enum Done {
    Create(Reply<CreateOutcome>, Result<CreateOutcome>),
    Unit(Reply<()>, Result<()>),
    Append(Reply<Appended>, Result<Appended>),
}

impl Done {
    fn send(self) {
        // A caller that stopped waiting dropped its receiver; nothing to tell it.
        match self {
            Done::Create(tx, r) => drop(tx.send(r)),
            Done::Unit(tx, r) => drop(tx.send(r)),
            Done::Append(tx, r) => drop(tx.send(r)),
        }
    }

    fn fail(self, detail: &str) {
        let err = || StoreError::CommitFailed {
            detail: detail.to_owned(),
        };
        match self {
            Done::Create(tx, Ok(_)) => drop(tx.send(Err(err()))),
            Done::Unit(tx, Ok(())) => drop(tx.send(Err(err()))),
            Done::Append(tx, Ok(_)) => drop(tx.send(Err(err()))),
            refused => refused.send(),
        }
    }
}

/// Answers a command that was never applied because its batch failed.
fn fail_command(command: Command, detail: &str) {
    let err = || StoreError::CommitFailed {
        detail: detail.to_owned(),
    };
    match command {
        Command::Create { reply, .. } => drop(reply.send(Err(err()))),
        Command::RunStatus { reply, .. }
        | Command::Stage { reply, .. }
        | Command::Approve { reply, .. }
        | Command::Flush { reply } => drop(reply.send(Err(err()))),
        Command::Append { reply, .. } => drop(reply.send(Err(err()))),
        Command::Shutdown { reply } => drop(reply.send(())),
    }
}

/// A command-level refusal (`Ok(Err(..))`) or a batch-level failure (`Err(..)`).
type Applied<T> = std::result::Result<Result<T>, StoreError>;

/// The writer's connection and in-memory state.
pub(crate) struct Writer {
    conn: Connection,
    log_cap: Option<u64>,
    live: HashMap<RunId, Live>,
    watches: Arc<Watches>,
    /// The data dir's lock: held for as long as the writer runs.
    _lock: File,
}

/// The state a batch mutates, apart from the connection.
struct State<'a> {
    log_cap: Option<u64>,
    live: &'a mut HashMap<RunId, Live>,
    /// The state of each touched run before the batch (`None`: created in this batch).
    undo: HashMap<RunId, Option<Live>>,
}

impl Writer {
    /// A writer over an opened, migrated connection.
    pub(crate) fn new(
        conn: Connection,
        log_cap: Option<u64>,
        watches: Arc<Watches>,
        lock: File,
    ) -> Self {
        Self {
            conn,
            log_cap,
            live: HashMap::new(),
            watches,
            _lock: lock,
        }
    }

    /// Marks every run left queued or running as interrupted (see the module docs of
    /// [`crate::store`]) and returns them as they are now.
    pub(crate) fn recover(&mut self, now: DateTime<Utc>) -> Result<Vec<PipelineRun>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting recovery"))?;
        let ids: Vec<String> = tx
            .prepare("SELECT id FROM runs WHERE status IN ('queued', 'running') ORDER BY seq")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(StoreError::sqlite("finding runs in flight"))?;
        let at = to_nanos(now)?;
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            let id = read::run_id(&id)?;
            let Some((seq, _, _)) = read::run_key(&tx, id)? else {
                continue;
            };
            let sql = |what, sql: &str, p: &[&dyn rusqlite::ToSql]| {
                tx.execute(sql, p).map_err(StoreError::sqlite(what))
            };
            sql(
                "interrupting stages",
                "UPDATE stages SET status = 'failed', reason = ?2, finished_at = ?3 \
                 WHERE run_seq = ?1 AND status IN ('running', 'waiting_for_approval')",
                &[&seq, &INTERRUPTED_REASON, &at],
            )?;
            sql(
                "interrupting stages",
                "UPDATE stages SET status = 'skipped', reason = ?2, finished_at = ?3 \
                 WHERE run_seq = ?1 AND status = 'queued'",
                &[&seq, &INTERRUPTED_QUEUED_REASON, &at],
            )?;
            let mut live = load_live(&tx, seq, RunStatus::Running, false)?;
            write_dropped_count(&tx, &mut live, self.log_cap, now)?;
            insert_entry(
                &tx,
                seq,
                live.next,
                &system_entry(
                    now,
                    LogLevel::Error,
                    "run interrupted: the server stopped while the run was in flight; it is marked failed".to_owned(),
                    [],
                ),
            )?;
            sql(
                "interrupting a run",
                "UPDATE runs SET status = 'failed', finished_at = ?2, log_closed = 1 WHERE seq = ?1",
                &[&seq, &at],
            )?;
            runs.push(id);
        }
        let recovered = runs
            .into_iter()
            .map(|id| {
                read::run(&tx, id)?
                    .map(|r| r.run)
                    .ok_or(StoreError::RunNotFound { run: id })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit()
            .map_err(StoreError::sqlite("committing recovery"))?;
        Ok(recovered)
    }

    /// Runs the command loop until a shutdown command or until every sender is gone.
    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let Some(first) = commands.blocking_recv() else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let mut shutdown = None;
            let work: Vec<Command> = batch
                .drain(..)
                .filter_map(|command| match command {
                    Command::Shutdown { reply } => {
                        shutdown = Some(reply);
                        None
                    }
                    other => Some(other),
                })
                .collect();
            self.process(work, |_| {});
            if let Some(reply) = shutdown {
                commands.close();
                // Commands that raced the shutdown are answered, not lost silently.
                let rest: Vec<Command> = std::iter::from_fn(|| commands.try_recv().ok()).collect();
                self.process(rest, |_| {});
                drop(self);
                let _ = reply.send(());
                return;
            }
        }
    }

    /// Applies `commands` in one transaction, calls `before_commit` (tests look at the
    /// database from outside there), commits, answers and publishes.
    pub(crate) fn process(
        &mut self,
        commands: Vec<Command>,
        before_commit: impl FnOnce(&Connection),
    ) {
        if commands.is_empty() {
            return;
        }
        let mut state = State {
            log_cap: self.log_cap,
            live: &mut self.live,
            undo: HashMap::new(),
        };
        let mut done = Vec::with_capacity(commands.len());
        let mut unapplied = Vec::new();
        let outcome = (|| -> Result<()> {
            let tx = match self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
            {
                Ok(tx) => tx,
                Err(source) => {
                    unapplied.extend(commands);
                    return Err(StoreError::Sqlite {
                        what: "starting a transaction",
                        source,
                    });
                }
            };
            let mut commands = commands.into_iter();
            for command in commands.by_ref() {
                let result = match command {
                    Command::Create { new, reply } => apply_create(&tx, &mut state, *new)
                        .map(|r| done.push(Done::Create(reply, r))),
                    Command::RunStatus {
                        run,
                        status,
                        at,
                        reply,
                    } => apply_status(&tx, &mut state, run, status, at)
                        .map(|r| done.push(Done::Unit(reply, r))),
                    Command::Stage { run, stage, reply } => {
                        apply_stage(&tx, &mut state, run, &stage)
                            .map(|r| done.push(Done::Unit(reply, r)))
                    }
                    Command::Approve {
                        run,
                        stage,
                        approval,
                        reply,
                    } => apply_approval(&tx, &mut state, run, &stage, &approval)
                        .map(|r| done.push(Done::Unit(reply, r))),
                    Command::Append {
                        run,
                        entries,
                        reply,
                    } => apply_append(&tx, &mut state, run, entries)
                        .map(|r| done.push(Done::Append(reply, r))),
                    Command::Flush { reply } => {
                        done.push(Done::Unit(reply, Ok(())));
                        Ok(())
                    }
                    Command::Shutdown { reply } => {
                        let _ = reply.send(());
                        Ok(())
                    }
                };
                if let Err(err) = result {
                    // The batch is lost: the commands not applied yet share its fate.
                    unapplied.extend(commands);
                    return Err(err);
                }
            }
            before_commit(&tx);
            tx.commit()
                .map_err(StoreError::sqlite("committing a batch"))
        })();
        match outcome {
            Ok(()) => {
                let touched: Vec<RunId> = state.undo.keys().copied().collect();
                for d in done {
                    d.send();
                }
                self.publish(&touched);
            }
            Err(err) => {
                let detail = err.to_string();
                for (run, before) in state.undo {
                    match before {
                        Some(live) => self.live.insert(run, live),
                        None => self.live.remove(&run),
                    };
                }
                for d in done {
                    d.fail(&detail);
                }
                for command in unapplied {
                    fail_command(command, &detail);
                }
            }
        }
    }

    /// Publishes the committed progress of `runs` and forgets runs that ended.
    fn publish(&mut self, runs: &[RunId]) {
        let progress: Vec<(RunId, Progress)> = runs
            .iter()
            .filter_map(|run| self.live.get(run).map(|live| (*run, live.progress())))
            .collect();
        self.watches.publish(&progress);
        for (run, p) in progress {
            if p.closed {
                self.live.remove(&run);
            }
        }
    }
}

/// Loads the writer state of run `seq` from the database.
fn load_live(conn: &Connection, seq: i64, status: RunStatus, closed: bool) -> Result<Live> {
    let next = read::next_sequence(conn, seq)?;
    let dropped: i64 = conn
        .query_row("SELECT log_dropped FROM runs WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .map_err(StoreError::sqlite("reading a run's log state"))?;
    let dropped = u64::try_from(dropped).unwrap_or(0);
    // The store writes its one marker only when the log closes, so every entry of an open
    // log came from a producer.
    Ok(Live {
        seq,
        status,
        next,
        accepted: next,
        dropped,
        closed,
        changes: 0,
    })
}

impl State<'_> {
    /// The live state of `run`, remembering its pre-batch value for a rollback; a refusal if
    /// the run does not exist or has ended.
    fn live(&mut self, conn: &Connection, run: RunId) -> Applied<&mut Live> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.live.entry(run) {
            let Some((seq, status, closed)) = read::run_key(conn, run)? else {
                return Ok(Err(StoreError::RunNotFound { run }));
            };
            if status.is_terminal() {
                return Ok(Err(StoreError::RunEnded { run, status }));
            }
            slot.insert(load_live(conn, seq, status, closed)?);
        }
        let before = self.live.get(&run).cloned();
        self.undo.entry(run).or_insert(before);
        match self.live.get_mut(&run) {
            // Ended earlier in this batch.
            Some(live) if live.status.is_terminal() => Ok(Err(StoreError::RunEnded {
                run,
                status: live.status,
            })),
            Some(live) => Ok(Ok(live)),
            None => Ok(Err(StoreError::RunNotFound { run })),
        }
    }
}

fn apply_create(conn: &Connection, state: &mut State<'_>, new: NewRun) -> Applied<CreateOutcome> {
    if let Some(idem) = &new.idempotency {
        let found: Option<(String, Option<String>)> = conn
            .prepare_cached("SELECT id, request_fingerprint FROM runs WHERE idempotency_key = ?1")
            .and_then(|mut s| {
                s.query_row([&idem.key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(StoreError::sqlite("looking up an idempotency key"))?;
        if let Some((id, fingerprint)) = found {
            let id = read::run_id(&id)?;
            let fingerprint = fingerprint.unwrap_or_default();
            if fingerprint != idem.fingerprint {
                return Ok(Ok(CreateOutcome::Conflict {
                    run: id,
                    fingerprint,
                }));
            }
            let record = read::run(conn, id)?.ok_or(StoreError::RunNotFound { run: id })?;
            return Ok(Ok(CreateOutcome::Existing(record.run)));
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = new.stages.iter().find(|s| !seen.insert(s.as_str())) {
        return Ok(Err(StoreError::InvalidStages {
            detail: format!("stage `{dup}` is listed twice"),
        }));
    }
    let created = match to_nanos(new.created_at) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    let id = RunId::from_uuid(uuid::Uuid::new_v4());
    conn.prepare_cached(
        "INSERT INTO runs (id, repository, git_ref, commit_id, pipeline_path, pipeline_name, status, \
         created_at, idempotency_key, request_fingerprint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id.to_string(),
            new.repository,
            new.git_ref,
            new.commit,
            new.pipeline_path,
            new.pipeline,
            created,
            new.idempotency.as_ref().map(|i| &i.key),
            new.idempotency.as_ref().map(|i| &i.fingerprint),
        ])
    })
    .map_err(StoreError::sqlite("creating a run"))?;
    let seq = conn.last_insert_rowid();
    {
        let mut stmt = conn
            .prepare_cached("INSERT INTO stages (run_seq, position, stage_id, status) VALUES (?1, ?2, ?3, 'queued')")
            .map_err(StoreError::sqlite("creating stages"))?;
        for (position, stage) in new.stages.iter().enumerate() {
            stmt.execute(params![seq, position as i64, stage.as_str()])
                .map_err(StoreError::sqlite("creating stages"))?;
        }
    }
    state.undo.entry(id).or_insert(None);
    state.live.insert(
        id,
        Live {
            seq,
            status: RunStatus::Queued,
            next: 0,
            accepted: 0,
            dropped: 0,
            closed: false,
            changes: 0,
        },
    );
    Ok(Ok(CreateOutcome::Created(PipelineRun {
        id,
        pipeline: new.pipeline,
        repository: new.repository,
        git_ref: new.git_ref,
        commit: new.commit,
        status: RunStatus::Queued,
        created_at: read::from_nanos(created),
        started_at: None,
        finished_at: None,
        stages: new.stages.into_iter().map(StageRun::queued).collect(),
    })))
}

fn apply_status(
    conn: &Connection,
    state: &mut State<'_>,
    run: RunId,
    status: RunStatus,
    at: DateTime<Utc>,
) -> Applied<()> {
    let cap = state.log_cap;
    let live = match state.live(conn, run)? {
        Ok(live) => live,
        Err(e) => return Ok(Err(e)),
    };
    if status == live.status {
        return Ok(Ok(()));
    }
    if status == RunStatus::Queued {
        return Ok(Err(StoreError::InvalidTransition {
            run,
            from: live.status,
            to: status,
        }));
    }
    let at_nanos = match to_nanos(at) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    let seq = live.seq;
    if status.is_terminal() {
        write_dropped_count(conn, live, cap, at)?;
        conn.execute(
            "UPDATE runs SET status = ?2, started_at = coalesce(started_at, ?3), finished_at = ?3, \
             log_closed = 1 WHERE seq = ?1",
            params![seq, status.as_str(), at_nanos],
        )
        .map_err(StoreError::sqlite("ending a run"))?;
        live.closed = true;
    } else {
        conn.execute(
            "UPDATE runs SET status = ?2, started_at = coalesce(started_at, ?3) WHERE seq = ?1",
            params![seq, status.as_str(), at_nanos],
        )
        .map_err(StoreError::sqlite("updating a run"))?;
    }
    live.status = status;
    live.changes += 1;
    Ok(Ok(()))
}

fn apply_stage(
    conn: &Connection,
    state: &mut State<'_>,
    run: RunId,
    stage: &StageRun,
) -> Applied<()> {
    let live = match state.live(conn, run)? {
        Ok(live) => live,
        Err(e) => return Ok(Err(e)),
    };
    let times = [stage.started_at, stage.finished_at].map(|t| t.map(to_nanos).transpose());
    let [Ok(started), Ok(finished)] = times else {
        let [a, b] = times;
        return Ok(Err(a
            .err()
            .or(b.err())
            .unwrap_or(StoreError::WriterStopped)));
    };
    let outputs = serde_json::to_string(&stage.outputs).unwrap_or_else(|_| "{}".to_owned());
    let artifacts = serde_json::to_string(&stage.artifacts).unwrap_or_else(|_| "[]".to_owned());
    let changed = conn
        .prepare_cached(
            "UPDATE stages SET status = ?3, started_at = ?4, finished_at = ?5, exit_code = ?6, \
             reason = ?7, outputs = ?8, artifacts = ?9 WHERE run_seq = ?1 AND stage_id = ?2 \
             AND status IN ('queued', 'waiting_for_approval', 'running')",
        )
        .and_then(|mut s| {
            s.execute(params![
                live.seq,
                stage.stage.as_str(),
                stage.status.as_str(),
                started,
                finished,
                stage.exit_code,
                stage.reason,
                outputs,
                artifacts,
            ])
        })
        .map_err(StoreError::sqlite("updating a stage"))?;
    if changed == 0 {
        return Ok(Err(stage_refusal(conn, live.seq, run, &stage.stage)?));
    }
    live.changes += 1;
    Ok(Ok(()))
}

/// Why an update of stage `stage` changed no row: it does not exist, or it ended.
fn stage_refusal(conn: &Connection, seq: i64, run: RunId, stage: &StageId) -> Result<StoreError> {
    let status: Option<String> = conn
        .query_row(
            "SELECT status FROM stages WHERE run_seq = ?1 AND stage_id = ?2",
            params![seq, stage.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::sqlite("reading a stage"))?;
    Ok(match status {
        None => StoreError::StageNotFound {
            run,
            stage: stage.clone(),
        },
        Some(_) => StoreError::StageEnded {
            run,
            stage: stage.clone(),
        },
    })
}

fn apply_approval(
    conn: &Connection,
    state: &mut State<'_>,
    run: RunId,
    stage: &StageId,
    approval: &Approval,
) -> Applied<()> {
    let live = match state.live(conn, run)? {
        Ok(live) => live,
        Err(e) => return Ok(Err(e)),
    };
    let at = match to_nanos(approval.at) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    let changed = conn
        .execute(
            "UPDATE stages SET approved_by = ?3, approved_at = ?4 WHERE run_seq = ?1 AND stage_id = ?2",
            params![live.seq, stage.as_str(), approval.by, at],
        )
        .map_err(StoreError::sqlite("recording an approval"))?;
    if changed == 0 {
        return Ok(Err(StoreError::StageNotFound {
            run,
            stage: stage.clone(),
        }));
    }
    live.changes += 1;
    Ok(Ok(()))
}

fn apply_append(
    conn: &Connection,
    state: &mut State<'_>,
    run: RunId,
    entries: Vec<NewLogEntry>,
) -> Applied<Appended> {
    let cap = state.log_cap;
    let live = match state.live(conn, run)? {
        Ok(live) if live.closed => return Ok(Err(StoreError::LogClosed { run })),
        Ok(live) => live,
        Err(StoreError::RunEnded { .. }) => return Ok(Err(StoreError::LogClosed { run })),
        Err(e) => return Ok(Err(e)),
    };
    // Every timestamp is checked before anything is written.
    if let Some(bad) = entries
        .iter()
        .find(|e| e.timestamp.timestamp_nanos_opt().is_none())
    {
        return Ok(Err(StoreError::TimestampOutOfRange { at: bad.timestamp }));
    }
    let first = live.next;
    let mut accepted = 0;
    let mut dropped = 0;
    for entry in &entries {
        if cap.is_some_and(|cap| live.accepted >= cap) {
            dropped += 1;
            continue;
        }
        insert_entry(conn, live.seq, live.next, entry)?;
        live.next += 1;
        live.accepted += 1;
        accepted += 1;
    }
    if dropped > 0 {
        live.dropped += dropped;
        conn.execute(
            "UPDATE runs SET log_dropped = ?2 WHERE seq = ?1",
            params![live.seq, live.dropped as i64],
        )
        .map_err(StoreError::sqlite("counting dropped log entries"))?;
    }
    Ok(Ok(Appended {
        sequences: first..first + accepted,
        dropped,
    }))
}

/// An entry written by the store itself.
fn system_entry<const N: usize>(
    at: DateTime<Utc>,
    level: LogLevel,
    message: String,
    fields: [(&str, String); N],
) -> NewLogEntry {
    NewLogEntry {
        stage: None,
        level,
        stream: LogStream::System,
        timestamp: at,
        message,
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// At the end of a run that dropped entries: the one marker entry, saying how many.
fn write_dropped_count(
    conn: &Connection,
    live: &mut Live,
    cap: Option<u64>,
    at: DateTime<Utc>,
) -> Result<()> {
    if live.dropped == 0 {
        return Ok(());
    }
    let cap = cap.map_or_else(|| "the".to_owned(), |c| c.to_string());
    let entry = system_entry(
        at,
        LogLevel::Warn,
        format!(
            "log cap reached: {} log entries were dropped after the log cap of {cap} entries",
            live.dropped
        ),
        [("dropped", live.dropped.to_string()), ("log_cap", cap)],
    );
    insert_entry(conn, live.seq, live.next, &entry)?;
    live.next += 1;
    Ok(())
}

/// Inserts one entry at `sequence`.
fn insert_entry(conn: &Connection, run_seq: i64, sequence: u64, entry: &NewLogEntry) -> Result<()> {
    let ts = to_nanos(entry.timestamp)?;
    let fields = if entry.fields.is_empty() {
        None
    } else {
        serde_json::to_string(&entry.fields).ok()
    };
    conn.prepare_cached(
        "INSERT INTO log_entries (run_seq, sequence, stage_id, level, stream, ts, message, fields) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            run_seq,
            sequence as i64,
            entry.stage.as_ref().map(|s| s.as_str()),
            entry.level.as_str(),
            entry.stream.as_str(),
            ts,
            entry.message,
            fields,
        ])
    })
    .map_err(StoreError::sqlite("appending a log entry"))?;
    Ok(())
}
