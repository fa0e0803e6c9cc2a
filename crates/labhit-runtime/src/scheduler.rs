//! The pipeline scheduler: runs a validated stage graph with bounded parallelism.
//!
//! [`Scheduler::run`] takes a [`PipelineFile`] (already checked by
//! `labhit_protocol::pipeline::check`, so the graph is acyclic) and a [`StageRunner`] that
//! executes one stage, and returns the finished [`PipelineRun`].
//!
//! # Rules
//!
//! * **Order.** A stage starts when every stage it comes `after` ended `succeeded` or
//!   `cached`. Ready stages start in the file's order, at most [`SchedulerOptions::jobs`] at
//!   a time (default: the number of available cores); each runs on one of `jobs` worker
//!   threads (plain `std` threads: a step blocks its thread, wasmtime and `sh` do the work).
//! * **Gates** are decided by [`Gates`] on the worker, right before the stage would start; a
//!   stage whose gate may wait for the run's approver shows `waiting_for_approval`
//!   meanwhile. A closed gate ends the stage `denied` with the reason; a stop (cancellation,
//!   fail-fast) while it waits ends it like a stage that had not started.
//! * **Observer.** Every change of a stage's state (queued, waiting for approval, running with
//!   `started_at`, terminal with `finished_at`, exit code, reason, outputs and artifacts) is
//!   handed to the [`RunObserver`] as the whole [`StageRun`], redacted, in the order it
//!   happened for that stage; so are the start and the end of the run.
//! * **Failure.** When a stage fails, is denied or is cancelled, every stage downstream of it
//!   is marked `skipped` with a reason naming that stage (`` `checksum` failed ``).
//!   Independent branches carry on and finish. With [`SchedulerOptions::fail_fast`], the first
//!   failure or denial stops the run instead: running stages see the cancellation flag and end
//!   `cancelled`, stages not started yet are `skipped` (`--fail-fast after `x` failed`).
//! * **Output references.** Right before a stage starts (after its gate), the
//!   `${{ stages.S.outputs.N }}` references in its `with` are filled in from the outputs
//!   stage `S` recorded ([`labhit_protocol::pipeline::refs`]), and the runner gets the stage
//!   with the filled-in `with` (so it is what an executor extension's cache key covers). A
//!   referenced stage that failed, was denied, cancelled or skipped skips the stage, naming
//!   it (normally its failure already skipped everything downstream); one that has not
//!   finished (not upstream through `after`: the validator refuses such files) or succeeded
//!   without reporting the output fails the stage, naming the stage and the output.
//! * **Outputs for `run:` scripts.** A script is never filled in (no script injection): a
//!   stage with `run` gets the outputs of every stage upstream of it through `after`
//!   (transitively) as environment variables instead ([`StageTask::outputs_env`], named by
//!   [`refs::env_name`], e.g. `LABHIT_OUTPUT_CHECKSUM__DIGEST`), which the shell expands as
//!   data. Two outputs whose names meet in one variable set neither; a warning in the
//!   stage's log names both.
//! * **Cancellation.** The caller's [`Cancellation`] (set by a Ctrl-C handler, say) is polled
//!   by the thread that called [`Scheduler::run`] (every [`SchedulerOptions::poll`]). Once
//!   set, the flag every running stage was handed goes true (extensions see
//!   `is-cancelled()`, executors stop their command), stages not started yet end `cancelled`,
//!   and the run ends `cancelled`. Stage deadlines keep applying while a stage winds down.
//! * **Run status.** `cancelled` when the caller cancelled; `failed` when a stage failed, was
//!   denied or was cancelled; `succeeded` otherwise.
//! * **Logs.** Every decision is a `system` [`LogEntry`](labhit_protocol::run::LogEntry) of
//!   the stage in the run's log ([`RunLog`]): queued, gate decisions, start, end and why.
//! * **Redaction.** The run's [`Redactor`] ([`RunLog::with_redactor`]) is applied to every
//!   entry that goes through the run's log (system entries and every step's entries) and to
//!   the returned [`PipelineRun`] ([`crate::summary::redact_run`]).
//!
//! The scheduler knows nothing about extensions, executors or workspaces: that is the
//! runner's job. [`PipelineRunner`](stages::PipelineRunner) is the real one (extensions
//! through the [`Runtime`](crate::Runtime), `run:` stages through an executor, one shared run
//! workspace, host-side caching); tests and benchmarks plug in their own.

mod lineage;
pub mod stages;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use labhit_protocol::executor::ArtifactRef;
use labhit_protocol::ids::RunId;
use labhit_protocol::pipeline::{PipelineFile, Stage, StageId, refs};
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};

use crate::cancellation::Cancellation;
use crate::gates::{GateDecision, Gates};
use crate::logs::{LogSink, NullSink, Redactor};

/// The run's log: the `system` entries of the scheduler and runners and every step's own
/// entries, numbered in one sequence.
///
/// Steps get [`RunLog::sink`]: it renumbers each entry as it arrives (under a lock, so the
/// downstream sink sees sequence numbers strictly in order, `0, 1, 2, …`) and forwards it.
#[derive(Clone)]
pub struct RunLog {
    run_id: RunId,
    sequencer: Arc<Sequencer>,
}

struct Sequencer {
    next: Mutex<u64>,
    sink: Arc<dyn LogSink>,
    redactor: Redactor,
}

impl LogSink for Sequencer {
    fn emit(&self, mut entry: LogEntry) {
        self.redactor.redact_entry(&mut entry);
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        entry.sequence = *next;
        *next += 1;
        self.sink.emit(entry);
    }
}

impl std::fmt::Debug for RunLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLog")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl RunLog {
    /// A log of run `run_id` into `sink`, numbered from 0.
    pub fn new(run_id: RunId, sink: Arc<dyn LogSink>) -> Self {
        Self {
            run_id,
            sequencer: Arc::new(Sequencer {
                next: Mutex::new(0),
                sink,
                redactor: Redactor::new(),
            }),
        }
    }

    /// A log that drops everything.
    pub fn null() -> Self {
        Self::new(RunId::from_uuid(uuid::Uuid::new_v4()), Arc::new(NullSink))
    }

    /// Redacts the secrets `redactor` knows from every entry of the run (system entries and
    /// the entries of every step) and from the run's result. Call it before handing out
    /// [`RunLog::sink`].
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        let next = *self
            .sequencer
            .next
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.sequencer = Arc::new(Sequencer {
            next: Mutex::new(next),
            sink: Arc::clone(&self.sequencer.sink),
            redactor,
        });
        self
    }

    /// The run's redactor.
    pub fn redactor(&self) -> &Redactor {
        &self.sequencer.redactor
    }

    /// The run id.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// The sink to hand to steps: it numbers their entries in the run's sequence.
    pub fn sink(&self) -> Arc<dyn LogSink> {
        self.sequencer.clone()
    }

    /// Emits a `system` entry.
    pub fn system(&self, stage: Option<&StageId>, level: LogLevel, message: &str) {
        self.sequencer.emit(LogEntry {
            run_id: self.run_id,
            sequence: 0,
            stage: stage.cloned(),
            level,
            stream: LogStream::System,
            timestamp: now(),
            message: message.to_owned(),
            fields: BTreeMap::new(),
        });
    }

    /// Emits an `info` system entry for `stage`.
    pub fn info(&self, stage: &StageId, message: &str) {
        self.system(Some(stage), LogLevel::Info, message);
    }

    /// Emits a `warn` system entry for `stage`.
    pub fn warn(&self, stage: &StageId, message: &str) {
        self.system(Some(stage), LogLevel::Warn, message);
    }
}

/// One stage handed to a [`StageRunner`].
#[derive(Debug)]
pub struct StageTask<'a> {
    /// The run.
    pub run_id: RunId,
    /// The stage id.
    pub id: &'a StageId,
    /// The stage as written.
    pub stage: &'a Stage,
    /// Goes true when the run is cancelled or stopped by `--fail-fast`.
    pub cancellation: &'a Cancellation,
    /// The run's log.
    pub log: &'a RunLog,
    /// For a stage with `run`: the outputs of the stages upstream of it, as environment
    /// variables for the script (see the module documentation); empty otherwise.
    pub outputs_env: &'a BTreeMap<String, String>,
}

/// How a stage ended, as its runner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageOutcome {
    /// `succeeded`, `failed`, `cached` or `cancelled` (anything else is recorded as `failed`).
    pub status: StageStatus,
    /// Exit code of the command or extension, when it ran to completion.
    pub exit_code: Option<i32>,
    /// Why it ended that way (required for `failed` and `cancelled`).
    pub reason: Option<String>,
    /// Named outputs.
    pub outputs: BTreeMap<String, String>,
    /// Artifacts.
    pub artifacts: Vec<ArtifactRef>,
}

impl StageOutcome {
    /// Succeeded with exit code 0 and nothing else.
    pub fn succeeded() -> Self {
        Self {
            status: StageStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            outputs: BTreeMap::new(),
            artifacts: Vec::new(),
        }
    }

    /// Failed for `reason`.
    pub fn failed(exit_code: Option<i32>, reason: impl Into<String>) -> Self {
        Self {
            status: StageStatus::Failed,
            exit_code,
            reason: Some(reason.into()),
            outputs: BTreeMap::new(),
            artifacts: Vec::new(),
        }
    }

    /// Cancelled for `reason`.
    pub fn cancelled(reason: impl Into<String>) -> Self {
        Self {
            status: StageStatus::Cancelled,
            exit_code: None,
            reason: Some(reason.into()),
            outputs: BTreeMap::new(),
            artifacts: Vec::new(),
        }
    }
}

/// Executes one stage. Called from several worker threads at once.
pub trait StageRunner: Send + Sync {
    /// Runs `task` to its end and says how it went. Must return soon after
    /// `task.cancellation` goes true.
    fn run_stage(&self, task: &StageTask<'_>) -> StageOutcome;
}

impl<F: Fn(&StageTask<'_>) -> StageOutcome + Send + Sync> StageRunner for F {
    fn run_stage(&self, task: &StageTask<'_>) -> StageOutcome {
        self(task)
    }
}

/// Called on every stage status change (progress lines, tests).
pub type StatusHook = Arc<dyn Fn(&StageId, StageStatus) + Send + Sync>;

/// Sees a run's state change as it happens (a server persists it). Called from the
/// scheduler's threads, sometimes while it holds its state lock: return quickly (hand the
/// update to a channel) and never call back into the run. Secrets are already redacted.
pub trait RunObserver: Send + Sync {
    /// The run starts: every stage `queued`, status `running`.
    fn run_started(&self, run: &PipelineRun) {
        let _ = run;
    }

    /// A stage changed state; `stage` is its whole record after the change.
    fn stage_changed(&self, stage: &StageRun) {
        let _ = stage;
    }

    /// The run ended: the same [`PipelineRun`] [`Scheduler::run`] returns.
    fn run_finished(&self, run: &PipelineRun) {
        let _ = run;
    }
}

/// How the scheduler behaves.
#[derive(Clone)]
pub struct SchedulerOptions {
    /// Most stages running at once (at least 1).
    pub jobs: usize,
    /// Stop the whole run at the first failure or denial.
    pub fail_fast: bool,
    /// How often the caller's cancellation flag is polled.
    pub poll: Duration,
}

impl std::fmt::Debug for SchedulerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerOptions")
            .field("jobs", &self.jobs)
            .field("fail_fast", &self.fail_fast)
            .field("poll", &self.poll)
            .finish()
    }
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            jobs: default_jobs(),
            fail_fast: false,
            poll: Duration::from_millis(25),
        }
    }
}

/// The number of available cores (1 when unknown).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// What a run is about, recorded in the [`PipelineRun`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunInfo {
    /// The repository or project directory.
    pub repository: String,
    /// The git ref.
    pub git_ref: String,
    /// The commit, when known.
    pub commit: Option<String>,
}

/// Runs stage graphs. See the module documentation.
#[derive(Clone, Default)]
pub struct Scheduler {
    /// Behaviour.
    pub options: SchedulerOptions,
    /// Gate decisions.
    pub gates: Gates,
    /// The caller's cancellation flag (Ctrl-C).
    pub cancellation: Cancellation,
    /// Status-change callback.
    pub on_status: Option<StatusHook>,
    /// Sees every stage record and the run's start and end.
    pub observer: Option<Arc<dyn RunObserver>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("options", &self.options)
            .field("gates", &self.gates)
            .field("cancelled", &self.cancellation.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Why the run is being stopped.
#[derive(Debug, Clone)]
enum Stop {
    Cancelled,
    FailFast(StageId),
}

struct Node<'p> {
    id: &'p StageId,
    stage: &'p Stage,
    dependents: Vec<usize>,
}

struct State {
    runs: Vec<StageRun>,
    /// Dependencies not yet succeeded, per stage.
    blocked_on: Vec<usize>,
    ready: VecDeque<usize>,
    /// Taken by a worker (its gate or runner may be under way): a stop leaves it to that
    /// worker.
    claimed: Vec<bool>,
    done: usize,
    stop: Option<Stop>,
    started: Option<chrono::DateTime<Utc>>,
}

struct Shared<'p> {
    nodes: Vec<Node<'p>>,
    /// Stage id → index in `nodes`.
    index: BTreeMap<&'p str, usize>,
    state: Mutex<State>,
    changed: Condvar,
    /// The flag every stage is handed: the caller's cancellation or fail-fast.
    stop_flag: Cancellation,
}

impl Shared<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Scheduler {
    /// A scheduler with `options`, no pre-approvals, no policies and a fresh cancellation flag.
    pub fn new(options: SchedulerOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// Reports the change of `run` (already recorded): logs `message` (unless empty), tells
    /// the status hook and the observer.
    fn status(&self, log: &RunLog, run: &StageRun, message: &str) {
        let (id, status) = (&run.stage, run.status);
        if !message.is_empty() {
            let level = match status {
                StageStatus::Failed | StageStatus::Denied => LogLevel::Error,
                StageStatus::Skipped | StageStatus::Cancelled => LogLevel::Warn,
                _ => LogLevel::Info,
            };
            log.system(Some(id), level, message);
        }
        if let Some(hook) = &self.on_status {
            hook(id, status);
        }
        if let Some(observer) = &self.observer {
            let mut run = run.clone();
            crate::summary::redact_stage(&mut run, log.redactor());
            observer.stage_changed(&run);
        }
    }

    /// Runs `pipeline` with `runner`; returns the finished run (every stage terminal).
    pub fn run(
        &self,
        pipeline: &PipelineFile,
        runner: &dyn StageRunner,
        log: &RunLog,
        info: RunInfo,
    ) -> PipelineRun {
        let created_at = now();
        let stages = &pipeline.pipeline.stages;
        // Topological order (layers), file order within a layer.
        let order: Vec<&StageId> = labhit_protocol::pipeline::layers(stages)
            .map(|layers| layers.into_iter().flatten().collect())
            .unwrap_or_else(|| stages.iter().map(|(id, _)| id).collect());
        let index: BTreeMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut nodes: Vec<Node<'_>> = order
            .iter()
            .map(|id| Node {
                id,
                stage: stages.get(id.as_str()).unwrap_or_else(|| unreachable!()),
                dependents: Vec::new(),
            })
            .collect();
        let mut blocked_on = vec![0usize; nodes.len()];
        for i in 0..nodes.len() {
            let deps: Vec<usize> = nodes[i]
                .stage
                .after
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect();
            blocked_on[i] = deps.len();
            for d in deps {
                nodes[d].dependents.push(i);
            }
        }
        // Ready stages start in file order.
        let file_order: Vec<usize> = stages
            .iter()
            .filter_map(|(id, _)| index.get(id.as_str()).copied())
            .collect();
        let ready: VecDeque<usize> = file_order
            .iter()
            .copied()
            .filter(|&i| blocked_on[i] == 0)
            .collect();
        let runs: Vec<StageRun> = nodes
            .iter()
            .map(|n| StageRun::queued(n.id.clone()))
            .collect();
        let total = nodes.len();
        let shared = Shared {
            nodes,
            index,
            state: Mutex::new(State {
                claimed: vec![false; runs.len()],
                runs,
                blocked_on,
                ready,
                done: 0,
                stop: None,
                started: None,
            }),
            changed: Condvar::new(),
            stop_flag: Cancellation::new(),
        };
        if let Some(observer) = &self.observer {
            let mut run = PipelineRun {
                id: log.run_id(),
                pipeline: pipeline.pipeline.name.to_string(),
                repository: info.repository.clone(),
                git_ref: info.git_ref.clone(),
                commit: info.commit.clone(),
                status: RunStatus::Running,
                created_at,
                started_at: None,
                finished_at: None,
                stages: shared.lock().runs.clone(),
            };
            crate::summary::redact_run(&mut run, log.redactor());
            observer.run_started(&run);
        }
        for run in &shared.lock().runs {
            self.status(log, run, "");
        }
        log.system(
            None,
            LogLevel::Info,
            &format!(
                "run {} of `{}`: {total} stage(s), up to {} at a time{}",
                log.run_id(),
                pipeline.pipeline.name,
                self.options.jobs.max(1),
                if self.options.fail_fast {
                    ", fail-fast"
                } else {
                    ""
                }
            ),
        );

        let jobs = self.options.jobs.max(1).min(total.max(1));
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                scope.spawn(|| self.worker(&shared, runner, log));
            }
            self.watch(&shared, log, total);
        });

        let state = shared.state.into_inner().unwrap_or_else(|p| p.into_inner());
        let cancelled = matches!(state.stop, Some(Stop::Cancelled));
        let failed = state.runs.iter().any(|r| {
            matches!(
                r.status,
                StageStatus::Failed | StageStatus::Denied | StageStatus::Cancelled
            )
        });
        let status = if cancelled {
            RunStatus::Cancelled
        } else if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        log.system(None, LogLevel::Info, &format!("run {status}"));
        let mut run = PipelineRun {
            id: log.run_id(),
            pipeline: pipeline.pipeline.name.to_string(),
            repository: info.repository,
            git_ref: info.git_ref,
            commit: info.commit,
            status,
            created_at,
            started_at: state.started,
            finished_at: Some(now()),
            stages: state.runs,
        };
        crate::summary::redact_run(&mut run, log.redactor());
        if let Some(observer) = &self.observer {
            observer.run_finished(&run);
        }
        run
    }

    /// The calling thread: waits for the end, turning the caller's cancellation into a stop.
    fn watch(&self, shared: &Shared<'_>, log: &RunLog, total: usize) {
        let mut state = shared.lock();
        while state.done < total {
            if self.stop_if_cancelled(shared, &mut state, log) {
                continue;
            }
            state = shared
                .changed
                .wait_timeout(state, self.options.poll)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        shared.changed.notify_all();
    }

    /// Turns the caller's cancellation into a stop (once); whether it did.
    fn stop_if_cancelled(&self, shared: &Shared<'_>, state: &mut State, log: &RunLog) -> bool {
        if !self.cancellation.is_cancelled() || state.stop.is_some() {
            return false;
        }
        log.system(
            None,
            LogLevel::Warn,
            "cancellation requested: stopping running stages, not starting new ones",
        );
        self.stop(shared, state, log, Stop::Cancelled);
        true
    }

    /// Stops the run: raises the stages' flag and ends every stage not started yet.
    fn stop(&self, shared: &Shared<'_>, state: &mut State, log: &RunLog, why: Stop) {
        shared.stop_flag.cancel();
        let (status, reason) = match &why {
            Stop::Cancelled => (
                StageStatus::Cancelled,
                "cancelled before it started".to_owned(),
            ),
            Stop::FailFast(stage) => (
                StageStatus::Skipped,
                format!("skipped: `--fail-fast` after `{stage}` did not succeed"),
            ),
        };
        state.stop = Some(why);
        state.ready.clear();
        let now = now();
        for i in 0..shared.nodes.len() {
            if state.runs[i].status == StageStatus::Queued && !state.claimed[i] {
                let run = &mut state.runs[i];
                run.status = status;
                run.reason = Some(reason.clone());
                run.finished_at = Some(now);
                state.done += 1;
                self.status(log, &state.runs[i], &reason);
            }
        }
        shared.changed.notify_all();
    }

    fn worker(&self, shared: &Shared<'_>, runner: &dyn StageRunner, log: &RunLog) {
        let total = shared.nodes.len();
        loop {
            let i = {
                let mut state = shared.lock();
                loop {
                    if state.done >= total {
                        return;
                    }
                    if self.stop_if_cancelled(shared, &mut state, log) {
                        continue;
                    }
                    if let Some(i) = state.ready.pop_front() {
                        state.claimed[i] = true;
                        let node = &shared.nodes[i];
                        let waiting = node
                            .stage
                            .gate
                            .as_ref()
                            .is_some_and(|g| self.gates.may_wait(node.id.as_str(), g));
                        if waiting {
                            state.runs[i].status = StageStatus::WaitingForApproval;
                            self.status(log, &state.runs[i], "waiting for approval");
                        }
                        break i;
                    }
                    state = shared
                        .changed
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
            };
            let outcome = self.run_one(shared, i, runner, log);
            let mut state = shared.lock();
            self.finish(shared, &mut state, i, outcome, log);
            shared.changed.notify_all();
        }
    }

    /// Gate, then the runner. Returns the recorded outcome (status may be `denied`).
    fn run_one(
        &self,
        shared: &Shared<'_>,
        i: usize,
        runner: &dyn StageRunner,
        log: &RunLog,
    ) -> (StageOutcome, Option<String>) {
        let node = &shared.nodes[i];
        let decision = self.gates.decide(
            node.id.as_str(),
            node.stage.gate.as_ref(),
            &shared.stop_flag,
        );
        let gate_reason = match decision {
            GateDecision::Denied { reason } => {
                let mut outcome = StageOutcome::failed(None, reason);
                outcome.status = StageStatus::Denied;
                return (outcome, None);
            }
            // The stop that raised the flag decides below how the stage ends.
            GateDecision::Cancelled if shared.lock().stop.is_some() => None,
            GateDecision::Cancelled => {
                let reason = "cancelled while waiting for an approval";
                return (StageOutcome::cancelled(reason), None);
            }
            GateDecision::Open { reason } if reason.is_empty() => None,
            GateDecision::Open { reason } => {
                log.info(node.id, &format!("gate open: {reason}"));
                Some(reason)
            }
        };
        let (running, filled, outputs_env) = {
            let mut state = shared.lock();
            if let Some(stop) = &state.stop {
                let outcome = match stop {
                    Stop::Cancelled => StageOutcome::cancelled("cancelled before it started"),
                    Stop::FailFast(failed) => {
                        let mut outcome = StageOutcome::cancelled(format!(
                            "skipped: `--fail-fast` after `{failed}` did not succeed"
                        ));
                        outcome.status = StageStatus::Skipped;
                        outcome
                    }
                };
                return (outcome, gate_reason);
            }
            let filled = match fill(shared, &state, i) {
                Ok(filled) => filled,
                Err(outcome) => {
                    let level = if outcome.status == StageStatus::Skipped {
                        LogLevel::Warn
                    } else {
                        LogLevel::Error
                    };
                    log.system(
                        Some(node.id),
                        level,
                        outcome.reason.as_deref().unwrap_or_default(),
                    );
                    return (outcome, gate_reason);
                }
            };
            let outputs_env = if node.stage.run.is_some() {
                upstream_env(shared, &state, i, log)
            } else {
                BTreeMap::new()
            };
            let now = now();
            state.started.get_or_insert(now);
            let run = &mut state.runs[i];
            run.status = StageStatus::Running;
            run.started_at = Some(now);
            (run.clone(), filled, outputs_env)
        };
        self.status(log, &running, "started");
        let task = StageTask {
            run_id: log.run_id(),
            id: node.id,
            stage: filled.as_ref().unwrap_or(node.stage),
            cancellation: &shared.stop_flag,
            log,
            outputs_env: &outputs_env,
        };
        let start = Instant::now();
        let mut outcome = runner.run_stage(&task);
        if !matches!(
            outcome.status,
            StageStatus::Succeeded
                | StageStatus::Failed
                | StageStatus::Cached
                | StageStatus::Cancelled
        ) {
            outcome.reason = Some(format!(
                "the stage runner reported status `{}`, which a finished stage cannot have",
                outcome.status
            ));
            outcome.status = StageStatus::Failed;
        }
        let elapsed = start.elapsed();
        let message = match (&outcome.status, &outcome.reason) {
            (status, Some(reason)) => format!("{status} after {}: {reason}", human(elapsed)),
            (status, None) => format!("{status} in {}", human(elapsed)),
        };
        log.system(
            Some(node.id),
            match outcome.status {
                StageStatus::Failed => LogLevel::Error,
                StageStatus::Cancelled => LogLevel::Warn,
                _ => LogLevel::Info,
            },
            &message,
        );
        (outcome, gate_reason)
    }

    fn finish(
        &self,
        shared: &Shared<'_>,
        state: &mut State,
        i: usize,
        (outcome, gate_reason): (StageOutcome, Option<String>),
        log: &RunLog,
    ) {
        let node = &shared.nodes[i];
        let status = outcome.status;
        {
            let run = &mut state.runs[i];
            run.status = status;
            run.exit_code = outcome.exit_code;
            run.reason = outcome.reason.or(gate_reason);
            run.outputs = outcome.outputs;
            run.artifacts = outcome.artifacts;
            run.finished_at = Some(now());
        }
        state.done += 1;
        match status {
            StageStatus::Denied => {
                let reason = state.runs[i].reason.clone().unwrap_or_default();
                self.status(log, &state.runs[i], &format!("denied: {reason}"));
            }
            _ => self.status(log, &state.runs[i], ""),
        }
        if status.unblocks_dependents() {
            for &d in &node.dependents {
                state.blocked_on[d] -= 1;
                if state.blocked_on[d] == 0
                    && state.runs[d].status == StageStatus::Queued
                    && state.stop.is_none()
                {
                    state.ready.push_back(d);
                }
            }
            return;
        }
        // Not succeeded: everything downstream is skipped, naming this stage.
        let what = match status {
            StageStatus::Denied => "was denied",
            StageStatus::Cancelled => "was cancelled",
            StageStatus::Skipped => "was skipped",
            _ => "failed",
        };
        let reason = format!("skipped: `{}` {what}", node.id);
        let now = now();
        // Everything downstream that has not started, found first so that each stage's
        // reason can name its references to any stage this skips.
        let mut skipped: Vec<usize> = Vec::new();
        let mut todo: Vec<usize> = node.dependents.clone();
        while let Some(d) = todo.pop() {
            if state.runs[d].status != StageStatus::Queued || skipped.contains(&d) {
                continue;
            }
            skipped.push(d);
            todo.extend(shared.nodes[d].dependents.iter().copied());
        }
        let mut gone: Vec<&str> = skipped
            .iter()
            .map(|&d| shared.nodes[d].id.as_str())
            .collect();
        gone.push(node.id.as_str());
        for d in skipped {
            let reason = match needed_outputs(shared.nodes[d].stage, &gone) {
                needs if needs.is_empty() => reason.clone(),
                needs => format!("{reason}; {needs}"),
            };
            let run = &mut state.runs[d];
            run.status = StageStatus::Skipped;
            run.reason = Some(reason.clone());
            run.finished_at = Some(now);
            state.done += 1;
            self.status(log, &state.runs[d], &reason);
        }
        if self.options.fail_fast
            && matches!(status, StageStatus::Failed | StageStatus::Denied)
            && state.stop.is_none()
        {
            log.system(
                None,
                LogLevel::Warn,
                &format!("`--fail-fast`: `{}` {what}, stopping the run", node.id),
            );
            self.stop(shared, state, log, Stop::FailFast(node.id.clone()));
        }
    }
}

/// The references of `stage`'s `with` to outputs of the stages in `gone`, for the reason a
/// skipped stage gives: `` `with.text` needs output `digest` of `a` `` (at most three, then
/// how many more); empty when it has none.
fn needed_outputs(stage: &Stage, gone: &[&str]) -> String {
    const SHOWN: usize = 3;
    let Some(with) = &stage.with else {
        return String::new();
    };
    let needs: Vec<String> = refs::references(with)
        .into_iter()
        .filter(|(_, r)| gone.contains(&r.stage.as_str()))
        .map(|(path, r)| {
            format!(
                "`{}` needs output `{}` of `{}`",
                refs::path_text(&path),
                r.output,
                r.stage
            )
        })
        .collect();
    let mut text = needs
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if needs.len() > SHOWN {
        text.push_str(&format!(" and {} more", needs.len() - SHOWN));
    }
    text
}

/// Stage `i` with the output references of its `with` filled in from the outputs the
/// referenced stages recorded; `Ok(None)` when it has no `with`. `Err` is how the stage ends
/// instead of starting (see the module documentation).
fn fill(shared: &Shared<'_>, state: &State, i: usize) -> Result<Option<Stage>, StageOutcome> {
    let node = &shared.nodes[i];
    let Some(with) = &node.stage.with else {
        return Ok(None);
    };
    let run_of = |stage: &str| shared.index.get(stage).map(|&j| &state.runs[j]);
    for (path, reference) in refs::references(with) {
        let at = refs::path_text(&path);
        let target = reference.stage.as_str();
        match run_of(target).map(|r| r.status) {
            Some(status) if status.unblocks_dependents() => {}
            Some(status) if status.is_terminal() => {
                let what = match status {
                    StageStatus::Denied => "was denied",
                    StageStatus::Cancelled => "was cancelled",
                    StageStatus::Skipped => "was skipped",
                    _ => "failed",
                };
                let mut outcome = StageOutcome::cancelled(format!(
                    "skipped: `{at}` needs output `{}` of `{target}`, which {what}",
                    reference.output
                ));
                outcome.status = StageStatus::Skipped;
                return Err(outcome);
            }
            _ => {
                return Err(StageOutcome::failed(
                    None,
                    format!(
                        "`{at}` refers to output `{}` of stage `{target}`, which is not upstream of `{}`; add it to `after`",
                        reference.output, node.id
                    ),
                ));
            }
        }
    }
    let filled = refs::fill_with(with, |r| {
        run_of(r.stage.as_str())
            .and_then(|run| run.outputs.get(&r.output))
            .map(String::as_str)
    })
    .map_err(|e| StageOutcome::failed(None, format!("{e}")))?;
    Ok(Some(Stage {
        with: Some(filled),
        ..node.stage.clone()
    }))
}

/// The outputs of every stage upstream of stage `i` through `after` (transitively), as
/// environment variables named by [`refs::env_name`]; a name two outputs meet in is left out,
/// with a warning naming both.
fn upstream_env(
    shared: &Shared<'_>,
    state: &State,
    i: usize,
    log: &RunLog,
) -> BTreeMap<String, String> {
    let mut seen = vec![false; shared.nodes.len()];
    let mut todo = vec![i];
    while let Some(j) = todo.pop() {
        for dep in shared.nodes[j].stage.after.iter() {
            if let Some(&d) = shared.index.get(dep.as_str())
                && !seen[d]
            {
                seen[d] = true;
                todo.push(d);
            }
        }
    }
    let mut env: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut clashes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (j, _) in seen.iter().enumerate().filter(|(_, s)| **s) {
        let stage = shared.nodes[j].id.as_str();
        for (output, value) in &state.runs[j].outputs {
            let name = refs::env_name(stage, output);
            let source = format!("`{output}` of `{stage}`");
            if let Some(list) = clashes.get_mut(&name) {
                list.push(source);
            } else if let Some((first, _)) = env.remove(&name) {
                clashes.insert(name, vec![first, source]);
            } else {
                env.insert(name, (source, value.clone()));
            }
        }
    }
    for (name, sources) in &clashes {
        log.system(
            Some(shared.nodes[i].id),
            LogLevel::Warn,
            &format!(
                "`{name}` is not set: outputs {} all map to it; rename one of them",
                sources.join(" and ")
            ),
        );
    }
    env.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

/// A fresh random run id.
pub fn new_run_id() -> RunId {
    RunId::from_uuid(uuid::Uuid::new_v4())
}

/// The current time (chrono's `clock` feature is off in this workspace).
pub fn now() -> chrono::DateTime<Utc> {
    chrono::DateTime::from(std::time::SystemTime::now())
}

/// `1.2s`, `350ms`.
pub fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}
