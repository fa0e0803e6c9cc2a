//! Executors: what runs the script of a `run:` stage.
//!
//! The runner decides the [`CacheDecision`](labhit_protocol::executor::CacheDecision) of a
//! step (see [`crate::cachekey`]), builds an [`ExecutorInput`] and hands it, with an
//! [`ExecContext`], to an [`Executor`]. The executor obeys the decision and returns a
//! [`StepResult`]:
//!
//! * `hit{tag}` — restore the snapshot `tag` into the workspace and skip the command (exit 0,
//!   nothing committed);
//! * `miss_build_as{tag}` — run the command and, only when it exits 0, commit the stage's
//!   effect on the workspace as `tag`;
//! * `miss_no_commit` — run the command, commit nothing.
//!
//! Two executors exist: [`LocalExecutor`] (built in, unsandboxed: `sh -e -c` on the host) and
//! [`ExtensionExecutor`] (a WebAssembly extension that declares the `executor` capability).
//! Both run the command in the stage workspace, so the host keeps the snapshots for both in
//! its [`SnapshotStore`](crate::snapshot::SnapshotStore): it restores a `hit` before the
//! executor runs and commits the workspace's change after a successful `miss_build_as` (see
//! `executor/decision.rs`).
//! A command that ends — with any exit code — is an `Ok(StepResult)`; a command that could not
//! be started, ran past its deadline, was cancelled, or whose snapshot could not be restored
//! or committed is an [`ExecError`] naming the stage.

mod decision;
pub mod extension;
pub mod local;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use labhit_protocol::executor::{CommandStep, ExecutorInput, InputError, StepResult};
use labhit_protocol::ids::SnapshotRef;
use labhit_protocol::pipeline::StageId;

use crate::cancellation::Cancellation;
use crate::digests::DigestIndex;
use crate::error::StepError;
use crate::logs::{LogCursor, LogLimits, LogSink, NullSink, StepLog};
use crate::secrets::{NoSecrets, SecretStore};
use crate::snapshot::SnapshotError;
use crate::workspace::{WorkspaceError, WorkspaceManifest};

pub use extension::ExtensionExecutor;
pub use local::LocalExecutor;

/// Runs `run:` steps. Implementations are shared between the runner's worker threads.
pub trait Executor: Send + Sync {
    /// The executor's name, e.g. `local` or `extension:ci/shell@1.2.0`. Part of the cache
    /// key, so it changes whenever the executor's behaviour may change.
    fn name(&self) -> String;

    /// Whether commands run in a sandbox. `false` for the built-in local executor: the runner
    /// announces it as unsandboxed.
    fn sandboxed(&self) -> bool;

    /// The settings of `step` this executor ignores (`image`, `cpu_millis`, `memory_bytes`),
    /// for the runner to report as not honoured. Empty by default.
    fn unhonoured(&self, step: &CommandStep) -> Vec<&'static str> {
        let _ = step;
        Vec::new()
    }

    /// The contract version of the component behind the executor, when it is an extension
    /// (a dispatcher needs it to find a worker that has the same). `None` by default.
    fn contract(&self) -> Option<semver::Version> {
        None
    }

    /// Whether the executor is called on a `hit` too (an extension acknowledges the decision)
    /// rather than skipped (the local executor). `false` by default.
    fn called_on_hit(&self) -> bool {
        false
    }

    /// Runs (or, on `CacheDecision::Hit`, restores and skips) one `run:` step.
    fn execute(
        &self,
        input: &ExecutorInput,
        ctx: &ExecContext<'_>,
    ) -> Result<StepResult, ExecError>;
}

/// The host's part of `input.cache_lookup`, for a dispatcher whose `run` has the command
/// executed elsewhere (another host's executor, which must not touch a snapshot store): a
/// `hit` is restored here before `run` (called only when `called_on_hit`), a
/// `miss_build_as` is committed here after `run` reported success and the commit, and the
/// workspace boundary is checked around it, exactly as for the executors of this process.
/// Without a store (caching off) `run` is called alone.
pub fn host_side(
    store: Option<&crate::snapshot::SnapshotStore>,
    input: &ExecutorInput,
    ctx: &ExecContext<'_>,
    called_on_hit: bool,
    run: impl FnOnce() -> Result<StepResult, ExecError>,
) -> Result<StepResult, ExecError> {
    ctx.check_input(input)?;
    let Some(store) = store else {
        return run();
    };
    let log = ctx.step_log(input);
    let on_hit = if called_on_hit {
        decision::OnHit::Call
    } else {
        decision::OnHit::Skip
    };
    let result = decision::obey(store, input, ctx, &log, on_hit, run);
    log.finish();
    result
}

/// What the runner gives an executor besides the [`ExecutorInput`]: where the stage's files
/// are, where its log goes, and when to stop.
#[derive(Clone)]
pub struct ExecContext<'a> {
    /// The stage being run (named in log entries and errors).
    pub stage: &'a StageId,
    /// The stage workspace on the host: the directory the command starts in, and the one
    /// snapshots are taken of and restored into. The runner must not let another stage write
    /// to it while this step runs (the committed effect is the whole workspace's change).
    pub workspace: &'a Path,
    /// Where log entries go (stdout lines as `info`, stderr lines as `warn`, the executor's
    /// own messages as `system`).
    pub log: Arc<dyn LogSink>,
    /// The run's log sequence counter.
    pub log_cursor: LogCursor,
    /// Bounds on what the step may log.
    pub log_limits: LogLimits,
    /// The run's (or stage's) cancellation flag: once set the command is stopped.
    pub cancellation: Cancellation,
    /// The runner's deadline for the step; the effective deadline is the shorter of this and
    /// `input.step.timeout_secs`.
    pub timeout: Option<Duration>,
    /// Where an extension executor's secrets come from (declared names only).
    pub secrets: Arc<dyn SecretStore>,
    /// Secret values the runner put into `input.env`: redacted (with their common encodings)
    /// from every log entry the step produces.
    pub secret_values: Vec<String>,
    /// The workspace's manifest as the step starts, when the runner already scanned it (for
    /// the cache key). A `miss_build_as` step then records its effect against it instead of
    /// scanning the workspace a second time; it must be current.
    pub start_manifest: Option<&'a WorkspaceManifest>,
    /// The workspace's digest index, when the runner keeps one: the scans around a commit
    /// take unchanged files' digests from it instead of reading them again.
    pub digests: Option<&'a Mutex<DigestIndex>>,
    /// Where the executor puts the named outputs it reports (an executor extension's
    /// `step-output.outputs`, already checked against its output schema; the local executor
    /// reports none). The runner shows them in the stage's summary.
    pub outputs: StepOutputs,
    /// The stage's `with` as the runner filled it in when the stage started (output
    /// references replaced). An extension executor hands it to the guest instead of the
    /// `with` it was configured with; `None`: the configured one.
    pub with: Option<&'a labhit_protocol::Value>,
}

/// Named outputs of one step, filled by the executor and read by the runner afterwards.
#[derive(Debug, Clone, Default)]
pub struct StepOutputs(Arc<Mutex<BTreeMap<String, String>>>);

impl StepOutputs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `outputs`, replacing values of the same names.
    pub fn extend(&self, outputs: impl IntoIterator<Item = (String, String)>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(outputs);
    }

    /// The outputs reported so far.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl<'a> ExecContext<'a> {
    /// A context for `stage` in `workspace`: logs dropped, a fresh log cursor, default log
    /// limits, not cancelled, no deadline, no secrets.
    pub fn new(stage: &'a StageId, workspace: &'a Path) -> Self {
        Self {
            stage,
            workspace,
            log: Arc::new(NullSink),
            log_cursor: LogCursor::new(),
            log_limits: LogLimits::default(),
            cancellation: Cancellation::new(),
            timeout: None,
            secrets: Arc::new(NoSecrets),
            secret_values: Vec::new(),
            start_manifest: None,
            digests: None,
            outputs: StepOutputs::new(),
            with: None,
        }
    }

    /// Checks `input` against the executor contract, naming the stage on failure: the first
    /// thing every [`Executor::execute`] does.
    pub(crate) fn check_input(&self, input: &ExecutorInput) -> Result<(), ExecError> {
        input.validate().map_err(|source| ExecError::InvalidInput {
            stage: self.stage.as_str().to_owned(),
            source,
        })
    }

    /// The log of one step of `input` in this context: entries numbered by the run's cursor,
    /// bounded by the context's limits, with the context's secret values redacted.
    pub(crate) fn step_log(&self, input: &ExecutorInput) -> StepLog {
        let log = StepLog::new(
            input.run_id,
            self.stage.as_str(),
            Arc::clone(&self.log),
            self.log_cursor.clone(),
            self.log_limits,
        );
        for secret in &self.secret_values {
            log.add_secret(secret);
        }
        log
    }

    /// The effective deadline of `input`: the shorter of [`ExecContext::timeout`] and the
    /// step's own `timeout_secs`.
    pub fn deadline(&self, input: &ExecutorInput) -> Option<Duration> {
        let step = input.step.timeout_secs.map(Duration::from_secs);
        match (self.timeout, step) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl std::fmt::Debug for ExecContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecContext")
            .field("stage", &self.stage)
            .field("workspace", &self.workspace)
            .field("timeout", &self.timeout)
            .field("cancelled", &self.cancellation.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Why a step ended without a [`StepResult`]. Every variant names the stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The input breaks the executor contract ([`ExecutorInput::validate`]).
    #[error("stage `{stage}`: invalid executor input: {source}")]
    InvalidInput {
        /// The stage id.
        stage: String,
        /// What is wrong.
        #[source]
        source: InputError,
    },
    /// The command ran past its deadline; its process group was killed.
    #[error("stage `{stage}`: command ran past its deadline of {} and was killed", crate::error::humantime(*timeout))]
    Timeout {
        /// The stage id.
        stage: String,
        /// The deadline that applied.
        timeout: Duration,
    },
    /// The run was cancelled; the command's process group was killed.
    #[error("stage `{stage}`: command was cancelled")]
    Cancelled {
        /// The stage id.
        stage: String,
    },
    /// The command could not be started (shell missing, workspace missing, ...).
    #[error("stage `{stage}`: cannot start `{program}`: {source}")]
    Spawn {
        /// The stage id.
        stage: String,
        /// The program that was to be run.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The snapshot of a cache decision could not be restored or committed. A `hit` whose
    /// snapshot is missing or corrupt ends here; the runner may run the step again as a miss.
    #[error("stage `{stage}`: snapshot `{tag}`: {source}")]
    Snapshot {
        /// The stage id.
        stage: String,
        /// The snapshot of the decision.
        tag: SnapshotRef,
        /// What went wrong.
        #[source]
        source: SnapshotError,
    },
    /// The workspace could not be read (to record what the step changes).
    #[error("stage `{stage}`: workspace: {source}")]
    Workspace {
        /// The stage id.
        stage: String,
        /// What went wrong.
        #[source]
        source: WorkspaceError,
    },
    /// The step (or the snapshot it restored) left a link leading outside the workspace or a
    /// special file in it; they were removed (see [`crate::boundary`]).
    #[error("stage `{stage}`: the step {source}")]
    Boundary {
        /// The stage id.
        stage: String,
        /// What it left.
        #[source]
        source: crate::boundary::BoundaryError,
    },
    /// The executor extension failed (the error names stage, extension and version).
    #[error(transparent)]
    Extension(#[from] StepError),
    /// The executor refused the step (for example an extension without the `executor`
    /// capability, or a result that breaks the contract).
    #[error("stage `{stage}`: {message}")]
    Refused {
        /// The stage id.
        stage: String,
        /// Why.
        message: String,
    },
}

impl ExecError {
    /// A short stable code for summaries and tools (`timeout`, `cancelled`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            ExecError::InvalidInput { .. } => "invalid-input",
            ExecError::Timeout { .. } => "timeout",
            ExecError::Cancelled { .. } => "cancelled",
            ExecError::Spawn { .. } => "spawn",
            ExecError::Snapshot { .. } => "snapshot",
            ExecError::Workspace { .. } => "workspace",
            ExecError::Boundary { .. } => "workspace-escape",
            ExecError::Extension(err) => err.failure.code(),
            ExecError::Refused { .. } => "refused",
        }
    }
}
