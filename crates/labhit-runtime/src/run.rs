//! One way to run a pipeline: [`RunRequest`] → [`prepare`] → [`PreparedRun::execute`].
//!
//! `labhit run`, the server (`labhit serve`) and tests all assemble a run here, so a stage
//! behaves the same wherever it runs. [`prepare`] does, in order:
//!
//! 1. checks the pre-approved stages name stages of the pipeline;
//! 2. registers the run with the snapshot store it will use (a lease, see
//!    [`crate::snapshot`]; a store of the wrong kind is [`RunError::Cache`] here, before any
//!    stage), and makes the run's place: a fresh `<runs-base>/<run-id>/`, locked as in
//!    progress ([`crate::retention`]) before the project is copied into its `workspace/`
//!    ([`RunPlace::Copy`]), or the workspace and run directory the caller prepared (a
//!    server's isolated checkout, [`RunPlace::Prepared`]). Both are held until
//!    [`PreparedRun::execute`] ends, or for as long as the caller holds
//!    [`PreparedRun::take_guard`];
//! 3. plans every stage ([`StagePlan`]): a `use:` stage is resolved in the registry and loaded
//!    (a bundle that cannot be resolved or loaded fails its stage, not the run), a `run:`
//!    stage gets its executor extension or the built-in local executor (unsandboxed);
//! 4. sets up the runtime (the caller's, else one sized for `jobs`, created only when a stage
//!    uses an extension; its compiled-component cache is [`CacheSettings::components`] or the
//!    default), the snapshot store ([`CacheSettings`]), secrets, the environment granted to
//!    every stage (`CI=true`, `LABHIT=1`, `LABHIT_PIPELINE=<name>` plus
//!    [`RunRequest::env`]), gates (pre-approvals, the [`Approver`], policies, the ref), the
//!    log sink and the observer.
//!
//! [`PreparedRun::execute`] runs the DAG with the [`Scheduler`] and returns the finished
//! [`PipelineRun`]. Writing `summary.json`, printing, signals and progress lines are the
//! caller's business.
//!
//! For the two hooks a caller drives from outside while the run is under way:
//! * **cancellation** — [`RunRequest::cancellation`] (the run ends `cancelled`; running stages
//!   see the flag) and [`RunRequest::abort`] (the local executor kills its commands at once,
//!   without the grace period);
//! * **approvals** — [`RunRequest::approver`]: an [`Approvals`](crate::approval::Approvals)
//!   handle lets stages wait (`waiting_for_approval`) until `approve(stage, by)`, the run's
//!   cancellation or the handle's deadline; the CLI's terminal prompt is another approver.
//!
//! [`StepRun`] is the same assembly for one step of one extension outside a pipeline (`labhit
//! ext run`): secrets, environment, workspace, log sink and cancellation mean the same there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use labhit_protocol::ids::RunId;
use labhit_protocol::pipeline::PipelineFile;
use labhit_protocol::run::{LogLevel, PipelineRun, RunStatus, StageRun};

use crate::approval::Approver;
use crate::cancellation::Cancellation;
use crate::digests::DigestIndex;
use crate::dispatch::{Dispatcher, InProcess};
use crate::error::{RuntimeError, StepError};
use crate::executor::{Executor, ExtensionExecutor, LocalExecutor};
use crate::gates::{Gates, PreApproved};
use crate::logs::{LogSink, NullSink, Redactor};
use crate::policy::{DEFAULT_POLICY_FILE, GitRef, Policies};
use crate::registry::Registry;
use crate::retention::{RetentionError, RunGuard, RunLock};
use crate::runtime::{LoadedExtension, Runtime, RuntimeConfig, StepOutcome, StepRequest};
use crate::scheduler::stages::{PipelineRunner, StagePlan};
use crate::scheduler::{RunInfo, RunLog, RunObserver, Scheduler, SchedulerOptions, StatusHook};
use crate::secrets::{NoSecrets, SecretStore};
use crate::snapshot::{SnapshotError, SnapshotStore};
use crate::workspace::{DEFAULT_SKIP, RunWorkspace, WorkspaceError, WorkspaceSource};

/// Where a run works and keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPlace {
    /// Create `<runs_base>/<run-id>/` with `workspace/` made from `source`.
    Copy {
        /// The directory run directories are created in (absolute: executors need an
        /// absolute workspace path).
        runs_base: PathBuf,
        /// What the workspace is made from (see [`project_source`]).
        source: WorkspaceSource,
    },
    /// Work in `workspace` and keep logs, artifacts and the summary in `run_dir`, both
    /// prepared by the caller (a server's isolated checkout). `run_dir` is created if missing.
    Prepared {
        /// The stages' shared workspace; must exist.
        workspace: PathBuf,
        /// The run directory.
        run_dir: PathBuf,
    },
}

/// The two caches a run uses.
#[derive(Debug, Clone, Default)]
pub struct CacheSettings {
    /// The workspace snapshot store of `run:` stages (see [`crate::snapshot`]); `None`: no
    /// store is known (caching is off; the local executor keeps its scratch snapshots in the
    /// run directory).
    pub snapshots: Option<SnapshotStore>,
    /// Neither read nor write [`CacheSettings::snapshots`] (`--no-cache`).
    pub disabled: bool,
    /// The compiled-component cache directory of a runtime [`prepare`] creates; `None`: the
    /// default ([`RuntimeConfig::from_env`]). Ignored when the caller passes its runtime.
    pub components: Option<PathBuf>,
}

impl CacheSettings {
    /// The snapshot store the run reads and writes, if caching is on.
    pub fn active(&self) -> Option<&SnapshotStore> {
        self.snapshots.as_ref().filter(|_| !self.disabled)
    }
}

/// Everything a run is made of. Fill it with [`RunRequest::new`] and change what differs.
#[derive(Clone)]
pub struct RunRequest {
    /// The validated pipeline (`labhit_protocol::pipeline::check` with the registry's
    /// manifests: rule 7 applied).
    pub pipeline: PipelineFile,
    /// Where the run works.
    pub place: RunPlace,
    /// The run's id (fresh by default).
    pub run_id: RunId,
    /// What the run is about (repository, ref, commit), recorded in the [`PipelineRun`].
    pub info: RunInfo,
    /// Where `use:` references resolve.
    pub registry: Arc<Registry>,
    /// A runtime to share (a server runs many runs on one); `None`: [`prepare`] creates one
    /// when a stage uses an extension.
    pub runtime: Option<Runtime>,
    /// Caches.
    pub cache: CacheSettings,
    /// Secret values: extensions get the names their manifest declares, `run:` stages those
    /// their `sandbox.secrets` grants.
    pub secrets: Arc<dyn SecretStore>,
    /// Knows every secret value; applied to every log entry and to the result.
    pub redactor: Redactor,
    /// Environment granted to every stage besides `CI`, `LABHIT` and `LABHIT_PIPELINE`
    /// (part of `run:` cache keys: keep it free of per-run values).
    pub env: BTreeMap<String, String>,
    /// Stages approved in advance (`--approve`, `--approve-all`, a trigger's approvals).
    pub approved: PreApproved,
    /// Who is asked (and waited for) when a stage needs an approval it was not given in
    /// advance; `None` denies such stages.
    pub approver: Option<Arc<dyn Approver>>,
    /// The policy file's content (see [`crate::policy`]).
    pub policies: Policies,
    /// The ref policies judge.
    pub git_ref: Option<GitRef>,
    /// Most stages running at once (at least 1).
    pub jobs: usize,
    /// Stop at the first failed or denied stage.
    pub fail_fast: bool,
    /// The caller's cancellation: the run ends `cancelled`.
    pub cancellation: Cancellation,
    /// Kills the local executor's commands at once (a second Ctrl-C).
    pub abort: Cancellation,
    /// Where the run's log entries go (numbered `0, 1, 2, …`, redacted).
    pub log_sink: Arc<dyn LogSink>,
    /// Sees every stage state change and the run's start and end.
    pub observer: Option<Arc<dyn RunObserver>>,
    /// Called on every stage status change (a progress line).
    pub on_status: Option<StatusHook>,
    /// Who runs each stage's step ([`crate::dispatch`]): in this process by default.
    pub dispatcher: Arc<dyn Dispatcher>,
}

impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("pipeline", &self.pipeline.pipeline.name)
            .field("place", &self.place)
            .field("run_id", &self.run_id)
            .field("info", &self.info)
            .field("cache", &self.cache)
            .field("approved", &self.approved)
            .field("approver", &self.approver.is_some())
            .field("git_ref", &self.git_ref)
            .field("jobs", &self.jobs)
            .field("fail_fast", &self.fail_fast)
            .field("dispatcher", &self.dispatcher.name())
            .finish_non_exhaustive()
    }
}

impl RunRequest {
    /// A run of `pipeline` in `place` with the defaults: a fresh id, an empty registry, no
    /// cache, no secrets, nothing approved and no approver, the policy file
    /// `.labhit/policies.toml` of the project (the copy's source, or the prepared workspace),
    /// no ref, one job per core, no fail-fast, fresh cancellation flags, a log that goes
    /// nowhere.
    pub fn new(pipeline: PipelineFile, place: RunPlace) -> Self {
        let project = match &place {
            RunPlace::Copy {
                source: WorkspaceSource::Copy { project, .. },
                ..
            } => Some(project.clone()),
            RunPlace::Copy {
                source: WorkspaceSource::GitWorktree { .. },
                ..
            } => None,
            RunPlace::Prepared { workspace, .. } => Some(workspace.clone()),
        };
        let policies = match project {
            Some(dir) => Policies::load(&dir.join(DEFAULT_POLICY_FILE)),
            None => Policies::Missing {
                path: DEFAULT_POLICY_FILE.into(),
            },
        };
        Self {
            pipeline,
            place,
            run_id: crate::scheduler::new_run_id(),
            info: RunInfo::default(),
            registry: Arc::new(Registry::default()),
            runtime: None,
            cache: CacheSettings::default(),
            secrets: Arc::new(NoSecrets),
            redactor: Redactor::new(),
            env: BTreeMap::new(),
            approved: PreApproved::Nothing,
            approver: None,
            policies,
            git_ref: None,
            jobs: crate::scheduler::default_jobs(),
            fail_fast: false,
            cancellation: Cancellation::new(),
            abort: Cancellation::new(),
            log_sink: Arc::new(NullSink),
            observer: None,
            on_status: None,
            dispatcher: Arc::new(InProcess),
        }
    }
}

/// Why a run could not be prepared. Nothing ran.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A pre-approved stage is not in the pipeline.
    #[error("cannot approve stage `{stage}`: the pipeline has no stage `{stage}`")]
    UnknownStage {
        /// The stage named.
        stage: String,
    },
    /// The workspace or the run directory could not be made.
    #[error("cannot create the run workspace: {0}")]
    Workspace(#[from] WorkspaceError),
    /// A prepared workspace is not an existing directory.
    #[error("the workspace `{}` is not an existing directory", path.display())]
    NoWorkspace {
        /// The path given.
        path: PathBuf,
    },
    /// The run directory could not be created.
    #[error("cannot create the run directory `{}`: {source}", path.display())]
    RunDir {
        /// The run directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// The snapshot store cannot be used (a path in it of the wrong kind, say).
    #[error("cannot use the snapshot cache: {0}")]
    Cache(#[from] SnapshotError),
    /// The run directory could not be created and locked.
    #[error("cannot create the run directory: {0}")]
    RunLock(#[from] RetentionError),
}

/// A run that is ready to go: workspace made, stages planned. See the module documentation.
pub struct PreparedRun {
    pipeline: PipelineFile,
    runner: PipelineRunner,
    scheduler: Scheduler,
    log: RunLog,
    info: RunInfo,
    run_dir: PathBuf,
    abort: Cancellation,
    snapshots: Option<SnapshotStore>,
    guard: RunGuard,
}

impl std::fmt::Debug for PreparedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRun")
            .field("run_id", &self.log.run_id())
            .field("run_dir", &self.run_dir)
            .field("runner", &self.runner)
            .finish_non_exhaustive()
    }
}

/// Prepares `request` (see the module documentation).
pub fn prepare(request: RunRequest) -> Result<PreparedRun, RunError> {
    let RunRequest {
        pipeline,
        place,
        run_id,
        info,
        registry,
        runtime,
        cache,
        secrets,
        redactor,
        env,
        approved,
        approver,
        policies,
        git_ref,
        jobs,
        fail_fast,
        cancellation,
        abort,
        log_sink,
        observer,
        on_status,
        dispatcher,
    } = request;
    let stages = &pipeline.pipeline.stages;
    if let PreApproved::Stages(named) = &approved
        && let Some(unknown) = named.iter().find(|s| stages.get(s.as_str()).is_none())
    {
        return Err(RunError::UnknownStage {
            stage: unknown.clone(),
        });
    }

    // Before anything is made: a store of the wrong kind is an error now, not after the
    // command of the first `run:` stage.
    let lease = cache.active().map(SnapshotStore::lease).transpose()?;
    let mut lock = None;
    let mut digests = DigestIndex::new();
    let mut warnings = Vec::new();
    let (workspace, run_dir) = match &place {
        RunPlace::Copy { runs_base, source } => {
            // Locked before the copy: no pruning removes a run in progress.
            lock = Some(RunLock::acquire(runs_base, run_id)?);
            let mut made = RunWorkspace::create(runs_base, run_id, source)?;
            digests = made.take_digests();
            warnings = made.warnings().to_vec();
            (made.path().to_owned(), made.run_dir().to_owned())
        }
        RunPlace::Prepared { workspace, run_dir } => {
            if !workspace.is_dir() {
                return Err(RunError::NoWorkspace {
                    path: workspace.clone(),
                });
            }
            std::fs::create_dir_all(run_dir).map_err(|source| RunError::RunDir {
                path: run_dir.clone(),
                source,
            })?;
            (workspace.clone(), run_dir.clone())
        }
    };

    let jobs = jobs.max(1);
    let local_store = cache
        .snapshots
        .clone()
        .unwrap_or_else(|| SnapshotStore::new(run_dir.join("snapshots")));
    let local: Arc<dyn Executor> =
        Arc::new(LocalExecutor::new(local_store.clone()).with_abort(abort.clone()));
    let runtime = match runtime {
        Some(runtime) => Some(runtime),
        None if stages.iter().any(|(_, s)| s.uses.is_some()) => {
            let mut config = RuntimeConfig {
                max_concurrent_steps: u32::try_from(jobs).unwrap_or(u32::MAX),
                ..RuntimeConfig::from_env()
            };
            if let Some(dir) = &cache.components {
                config.cache_dir = Some(dir.clone());
            }
            Some(Runtime::new(config)?)
        }
        None => None,
    };

    let mut runner = PipelineRunner::new(&workspace, &run_dir);
    runner.set_digests(digests);
    for (id, stage) in stages.iter() {
        let plan = match (&stage.uses, &runtime) {
            (None, _) => StagePlan::Command(Arc::clone(&local)),
            (Some(_), None) => StagePlan::Broken("no runtime".to_owned()),
            (Some(reference), Some(runtime)) => match registry.resolve(reference) {
                Err(e) => StagePlan::Broken(format!("extension `{reference}`: {e}")),
                Ok(bundle) => match runtime.load(&bundle.manifest, &bundle.component_path) {
                    Err(e) => StagePlan::Broken(e.to_string()),
                    Ok(loaded) if stage.run.is_some() => {
                        let with =
                            labhit_protocol::Value::Object(stage.with.clone().unwrap_or_default());
                        match ExtensionExecutor::new(runtime.clone(), loaded) {
                            Ok(exec) => StagePlan::Command(Arc::new(
                                exec.with_config(reference.to_string(), with)
                                    .with_snapshots(local_store.clone()),
                            )),
                            Err(e) => StagePlan::Broken(e.to_string()),
                        }
                    }
                    Ok(loaded) => StagePlan::Extension(Box::new(loaded)),
                },
            },
        };
        runner.plans.insert(id.to_string(), plan);
    }
    runner.runtime = runtime;
    let snapshots = cache.active().cloned();
    runner.snapshots = snapshots.clone();
    runner.secrets = secrets;
    runner.dispatcher = dispatcher;
    let mut granted = BTreeMap::from([
        ("CI".to_owned(), "true".to_owned()),
        ("LABHIT".to_owned(), "1".to_owned()),
        (
            "LABHIT_PIPELINE".to_owned(),
            pipeline.pipeline.name.to_string(),
        ),
    ]);
    granted.extend(env);
    runner.env = granted;

    let mut gates = Gates::new();
    gates.approved = approved;
    gates.approver = approver;
    gates.policies = Some(policies);
    gates.git_ref = git_ref;
    let mut scheduler = Scheduler::new(SchedulerOptions {
        jobs,
        fail_fast,
        ..SchedulerOptions::default()
    });
    scheduler.gates = gates;
    scheduler.cancellation = cancellation;
    scheduler.on_status = on_status;
    scheduler.observer = observer;
    let log = RunLog::new(run_id, log_sink).with_redactor(redactor);
    for warning in &warnings {
        log.system(None, LogLevel::Warn, warning);
    }
    Ok(PreparedRun {
        pipeline,
        runner,
        scheduler,
        log,
        info,
        run_dir,
        abort,
        snapshots,
        guard: RunGuard { lock, lease },
    })
}

impl PreparedRun {
    /// The run's id.
    pub fn run_id(&self) -> RunId {
        self.log.run_id()
    }

    /// The run directory (logs, artifacts, summary).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The stages' shared workspace.
    pub fn workspace(&self) -> &Path {
        &self.runner.workspace
    }

    /// The snapshot store the run reads and writes; `None` when caching is off.
    pub fn snapshots(&self) -> Option<&SnapshotStore> {
        self.snapshots.as_ref()
    }

    /// Hands the run's [`RunGuard`] (its run lock and its lease on the snapshot store) to the
    /// caller, who then decides when they are released; without this they are released when
    /// [`PreparedRun::execute`] returns. `labhit run` holds the lock while it prunes old runs.
    pub fn take_guard(&mut self) -> RunGuard {
        std::mem::take(&mut self.guard)
    }

    /// The run's cancellation flag (the request's).
    pub fn cancellation(&self) -> &Cancellation {
        &self.scheduler.cancellation
    }

    /// The local executor's abort flag (the request's).
    pub fn abort(&self) -> &Cancellation {
        &self.abort
    }

    /// The pipeline being run.
    pub fn pipeline(&self) -> &PipelineFile {
        &self.pipeline
    }

    /// The run as it stands before it starts: every stage `queued`, status `running`. What
    /// a caller records when it has to end the run without the scheduler (a forced exit).
    pub fn skeleton(&self) -> PipelineRun {
        PipelineRun {
            id: self.run_id(),
            pipeline: self.pipeline.pipeline.name.to_string(),
            repository: self.info.repository.clone(),
            git_ref: self.info.git_ref.clone(),
            commit: self.info.commit.clone(),
            status: RunStatus::Running,
            created_at: crate::scheduler::now(),
            started_at: None,
            finished_at: None,
            stages: self
                .pipeline
                .pipeline
                .stages
                .iter()
                .map(|(id, _)| StageRun::queued(id.clone()))
                .collect(),
        }
    }

    /// Runs every stage to its end (blocking the calling thread) and returns the run,
    /// redacted. It never fails: what goes wrong is in the stages' status and reason.
    pub fn execute(self) -> PipelineRun {
        self.scheduler
            .run(&self.pipeline, &self.runner, &self.log, self.info)
    }
}

/// A copy of `project` without [`DEFAULT_SKIP`] and, in a git work tree, without what git
/// ignores ([`crate::gitnames::ignored_paths`], read NUL-separated so that names with
/// non-ASCII bytes match).
pub fn project_source(project: &Path) -> WorkspaceSource {
    let mut skip: Vec<PathBuf> = DEFAULT_SKIP.iter().map(PathBuf::from).collect();
    // Ignored names are kept as bytes: one that is not UTF-8 is left out like any other
    // (only names that are copied must be UTF-8).
    for path in crate::gitnames::ignored_paths(project).unwrap_or_default() {
        if !skip.contains(&path) {
            skip.push(path);
        }
    }
    WorkspaceSource::Copy {
        project: project.to_owned(),
        skip,
    }
}

/// The commit `HEAD` of the git work tree `dir` is at, if it is one.
pub fn git_commit(dir: &Path) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// One step of one extension outside a pipeline (`labhit ext run`): the same secrets,
/// environment, workspace, log sink and cancellation as a stage of a run, without the
/// scheduler, gates or caches.
#[derive(Clone)]
pub struct StepRun {
    /// The stage id the step runs as.
    pub stage: String,
    /// The step's `with`.
    pub with: labhit_protocol::Value,
    /// The environment granted to the step (nothing else is).
    pub env: BTreeMap<String, String>,
    /// The workspace preopened at `/workspace` as the manifest grants.
    pub workspace: Option<PathBuf>,
    /// The step's timeout (the manifest's caps it).
    pub timeout: Option<std::time::Duration>,
    /// Secret values; the extension gets the names its manifest declares.
    pub secrets: Arc<dyn SecretStore>,
    /// For an executor extension: the command to hand it.
    pub command: Option<crate::ExecutorCommand>,
    /// Where the step's log entries go, as they arrive.
    pub log_sink: Arc<dyn LogSink>,
    /// Stops the step.
    pub cancellation: Cancellation,
}

impl StepRun {
    /// A step running as `stage` with an empty `with` and nothing granted.
    pub fn new(stage: impl Into<String>) -> Self {
        Self {
            stage: stage.into(),
            with: labhit_protocol::Value::Object(BTreeMap::new()),
            env: BTreeMap::new(),
            workspace: None,
            timeout: None,
            secrets: Arc::new(NoSecrets),
            command: None,
            log_sink: Arc::new(NullSink),
            cancellation: Cancellation::new(),
        }
    }

    /// Runs the step of `extension` on `runtime`.
    pub fn execute(
        self,
        runtime: &Runtime,
        extension: &LoadedExtension,
    ) -> Result<StepOutcome, StepError> {
        let mut request = StepRequest::new(self.stage);
        request.with = self.with;
        request.env = self.env;
        request.workspace = self.workspace;
        request.timeout = self.timeout;
        request.secrets = self.secrets;
        request.command = self.command;
        request.log_sink = self.log_sink;
        request.cancellation = self.cancellation;
        runtime.execute(extension, request)
    }
}

/// The runtime for single steps ([`StepRun`], `labhit ext check|run`): no pooling, one step
/// at a time, the compiled-component cache in its default place.
pub fn step_runtime() -> Result<Runtime, RuntimeError> {
    Runtime::new(RuntimeConfig {
        pooling: false,
        max_concurrent_steps: 1,
        ..RuntimeConfig::from_env()
    })
}
