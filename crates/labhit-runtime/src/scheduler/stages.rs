//! [`PipelineRunner`]: the [`StageRunner`] that really runs stages.
//!
//! # Workspace sharing
//!
//! A run has **one** workspace (`<run-dir>/workspace`, a copy of the project made by
//! [`RunWorkspace`](crate::workspace::RunWorkspace)); every stage sees what the stages before
//! it left there. Access is arbitrated by one reader–writer lock per run:
//!
//! * stages that may write take it **exclusively**: `run:` stages (any executor: the cache
//!   snapshot is the change of the whole workspace, so nothing else may change it meanwhile)
//!   and extensions granted `filesystem = "read-write"`;
//! * extensions granted `read` or `none` **share** it with each other.
//!
//! So parallel branches run truly in parallel while they only read, and writers are
//! serialised; a stage never sees a half-written result of a stage running beside it. A
//! stage holds its lock from the first read of the workspace (the cache key's scan) until
//! its artifacts are copied out.
//!
//! # `run:` stages and the cache
//!
//! The [`CommandStep`] is the script, `sandbox.image`, `sandbox.timeout` and
//! `sandbox.resources`. The environment is the runner's [`PipelineRunner::env`], the outputs
//! of upstream stages ([`StageTask::outputs_env`], part of the cache key like the rest), plus one
//! variable per secret `sandbox.secrets` grants (`NAME=value`, from the run's secret store;
//! a stage fails when a granted secret has no value), whose values are redacted from the
//! step's log; the cache key counts granted secrets by name, never by value. The executor is the stage's `use` extension when it has one (an
//! executor extension, see [`ExtensionExecutor`](crate::executor::ExtensionExecutor)), else
//! the default executor (the built-in [`LocalExecutor`](crate::executor::LocalExecutor)). An
//! unsandboxed executor is announced as such in the stage's log before the command starts,
//! and every setting it ignores (`sandbox.image` for the local executor) is reported as not
//! honoured.
//!
//! The host decides caching ([`CacheDecision`]): the key is
//! [`cache_key`](crate::cachekey::cache_key) over executor, command, granted env, the
//! workspace content the stage is entitled to see (the run's initial workspace with the
//! effects of its `after` ancestors, never a sibling's: `scheduler::lineage`), its `with` (for
//! an executor extension) as filled in by the scheduler, its parent snapshot and the keys of
//! its upstream `run:` stages. With caching on, the runner scans the workspace around every
//! stage that may write to record its effect. The parent snapshot
//! ([`ExecutorInput::parent_snapshot`]) is set when the stage comes `after` exactly one
//! stage and that stage is a `run:` stage that ended with a snapshot (committed or restored);
//! otherwise (several `after` stages, an extension, caching off) it is empty. When the
//! [`SnapshotStore`] holds a verified snapshot of the key, the decision is `hit` (the
//! executor restores it and skips the command; the stage ends `cached`), else
//! `miss_build_as` (on success the executor commits the stage's effect under the key). A hit
//! whose snapshot turns out unusable is retried once as `miss_build_as`. With caching off
//! (`--no-cache`, [`PipelineRunner::snapshots`] `None`) the decision is `miss_no_commit`
//! without any lookup: the store is neither read nor written.
//!
//! # `use:` stages
//!
//! Run through [`Runtime::execute`] with the stage's `with` (output references already filled
//! in by the scheduler, see [`super`]), the granted env, the run's
//! secret store (the runtime serves declared names only), `sandbox.timeout` (capped by the
//! manifest's timeout) and the run's cancellation flag.
//!
//! # Dispatch
//!
//! The step itself (the extension's, or the script's with its cache decision) goes to the
//! runner's [`Dispatcher`] ([`crate::dispatch`]): [`InProcess`] by default, so it runs on the
//! runner's thread; the runner keeps the workspace lock, the cache decision and the artifacts
//! whoever runs it.
//!
//! Artifacts of every finished stage are copied to `<run-dir>/artifacts/<stage>/` while the
//! stage still holds its workspace lock (see [`crate::summary`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use labhit_protocol::Value;
use labhit_protocol::executor::{CacheDecision, CommandStep, ExecutorInput, StepResult};
use labhit_protocol::ids::{ArchiveId, SnapshotRef, StepId};
use labhit_protocol::manifest::{FilesystemAccess, SecretName};
use labhit_protocol::pipeline::Stage;
use labhit_protocol::run::StageStatus;

use super::lineage::Lineage;
use super::{StageOutcome, StageRunner, StageTask};
use crate::cachekey::{CacheKeyInput, cache_key};
use crate::digests::DigestIndex;
use crate::dispatch::{Dispatch, Dispatcher, InProcess};
use crate::error::StepFailure;
use crate::executor::{ExecContext, ExecError, Executor};
use crate::logs::{LogCursor, REDACTED};
use crate::runtime::{LoadedExtension, Runtime, StepRequest};
use crate::secrets::{NoSecrets, SecretStore};
use crate::snapshot::{SnapshotError, SnapshotStore};
use crate::workspace::WorkspaceManifest;

/// What a stage runs with, prepared by the caller before the run.
#[derive(Clone)]
pub enum StagePlan {
    /// A `use:` stage: the loaded extension.
    Extension(Box<LoadedExtension>),
    /// A `run:` stage: the executor that runs its script.
    Command(Arc<dyn Executor>),
    /// The stage cannot run: why (an extension that failed to load, …). It fails with this.
    Broken(String),
}

impl std::fmt::Debug for StagePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StagePlan::Extension(ext) => write!(f, "Extension({})", ext.name()),
            StagePlan::Command(exec) => write!(f, "Command({})", exec.name()),
            StagePlan::Broken(why) => write!(f, "Broken({why})"),
        }
    }
}

/// Runs the stages of one run in its workspace. See the module documentation.
pub struct PipelineRunner {
    /// The runtime for `use:` stages.
    pub runtime: Option<Runtime>,
    /// Per stage id, what it runs with. A stage without a plan fails.
    pub plans: BTreeMap<String, StagePlan>,
    /// The run's workspace.
    pub workspace: PathBuf,
    /// The run directory (artifacts are copied below it).
    pub run_dir: PathBuf,
    /// The snapshot store; `None` turns caching off (`miss_no_commit`, no lookup).
    pub snapshots: Option<SnapshotStore>,
    /// The environment granted to every stage (part of `run:` cache keys).
    pub env: BTreeMap<String, String>,
    /// Secrets: for extensions (names their manifest declares) and for `run:` stages (names
    /// their `sandbox.secrets` grants).
    pub secrets: Arc<dyn SecretStore>,
    /// Who runs each step: [`InProcess`] (the default) or a fleet.
    pub dispatcher: Arc<dyn Dispatcher>,
    lock: RwLock<()>,
    keys: Mutex<BTreeMap<String, SnapshotRef>>,
    digests: Mutex<DigestIndex>,
    lineage: Lineage,
}

impl std::fmt::Debug for PipelineRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineRunner")
            .field("plans", &self.plans)
            .field("workspace", &self.workspace)
            .field("run_dir", &self.run_dir)
            .field("cache", &self.snapshots.as_ref().map(SnapshotStore::dir))
            .field("dispatcher", &self.dispatcher.name())
            .finish_non_exhaustive()
    }
}

impl PipelineRunner {
    /// A runner for the run directory `run_dir` with its workspace `workspace`: no plans, no
    /// runtime, caching off, no env, no secrets, steps dispatched [`InProcess`].
    pub fn new(workspace: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        Self {
            runtime: None,
            plans: BTreeMap::new(),
            workspace: workspace.into(),
            run_dir: run_dir.into(),
            snapshots: None,
            env: BTreeMap::new(),
            secrets: Arc::new(NoSecrets),
            dispatcher: Arc::new(InProcess),
            lock: RwLock::new(()),
            keys: Mutex::new(BTreeMap::new()),
            digests: Mutex::new(DigestIndex::new()),
            lineage: Lineage::default(),
        }
    }

    /// Starts the workspace's digest index from `digests` (what
    /// [`RunWorkspace::take_digests`](crate::workspace::RunWorkspace::take_digests) learnt
    /// while copying), so the first scan for a cache key reads no file the copy already
    /// hashed. Without it every file is hashed once, on the first scan.
    pub fn set_digests(&mut self, digests: DigestIndex) {
        *self.digests.get_mut().unwrap_or_else(|p| p.into_inner()) = digests;
    }

    fn run_extension(&self, task: &StageTask<'_>, ext: &LoadedExtension) -> StageOutcome {
        let Some(runtime) = &self.runtime else {
            return StageOutcome::failed(None, "no runtime to run extensions with");
        };
        let access = ext.manifest().capabilities.filesystem;
        let log = task.log;
        log.info(
            task.id,
            &format!(
                "extension `{}@{}` (filesystem {access}, {} workspace access)",
                ext.name(),
                ext.version(),
                if access == FilesystemAccess::ReadWrite {
                    "exclusive"
                } else {
                    "shared"
                }
            ),
        );
        let stage = task.stage;
        let mut request = StepRequest::new(task.id.as_str());
        request.run_id = task.run_id;
        request.step_id = StepId::from_uuid(uuid::Uuid::new_v4());
        request.use_ref = stage
            .uses
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        request.with = stage
            .with
            .clone()
            .map_or_else(|| Value::Object(BTreeMap::new()), Value::Object);
        request.env = self.env.clone();
        request.workspace = Some(self.workspace.clone());
        request.timeout = timeout(stage);
        request.secrets = Arc::clone(&self.secrets);
        request.log_sink = log.sink();
        request.log_cursor = LogCursor::new();
        request.cancellation = task.cancellation.clone();
        let dispatch = self.dispatch(task, 1);
        let run = || self.dispatcher.extension(&dispatch, runtime, ext, request);
        if access == FilesystemAccess::ReadWrite {
            let _exclusive = self.lock.write().unwrap_or_else(|p| p.into_inner());
            let before = match self.snapshots.is_some() {
                // Its effect is part of what stages downstream of it are keyed on.
                true => match self.scan() {
                    Ok(before) => Some(before),
                    Err(e) => {
                        return StageOutcome::failed(
                            None,
                            format!("cannot scan the workspace: {e}"),
                        );
                    }
                },
                false => None,
            };
            if let Some(before) = &before {
                self.lineage.before_write(before);
            }
            let outcome = self.finish_extension(task, run());
            if let Some(before) = &before {
                self.record_effect(task, before);
            }
            outcome
        } else {
            let _shared = self.lock.read().unwrap_or_else(|p| p.into_inner());
            self.finish_extension(task, run())
        }
    }

    /// The [`Dispatch`] of `task`'s step number `attempt`.
    fn dispatch<'t>(&'t self, task: &'t StageTask<'_>, attempt: u32) -> Dispatch<'t> {
        Dispatch {
            run_id: task.run_id,
            stage: task.id,
            definition: task.stage,
            attempt,
            workspace: &self.workspace,
            snapshots: self.snapshots.as_ref(),
        }
    }

    fn finish_extension(
        &self,
        task: &StageTask<'_>,
        result: Result<crate::runtime::StepOutcome, crate::error::StepError>,
    ) -> StageOutcome {
        match result {
            Ok(outcome) => {
                self.collect(task, &outcome.artifacts);
                StageOutcome {
                    status: if outcome.is_success() {
                        StageStatus::Succeeded
                    } else {
                        StageStatus::Failed
                    },
                    exit_code: Some(outcome.exit_code),
                    reason: (!outcome.is_success())
                        .then(|| format!("the extension returned exit code {}", outcome.exit_code)),
                    outputs: outcome.outputs,
                    artifacts: outcome.artifacts,
                }
            }
            Err(err) => {
                let cancelled = matches!(
                    *err.failure,
                    StepFailure::Cancelled(_) | StepFailure::Interrupted { .. }
                ) && task.cancellation.is_cancelled();
                let exit_code = match *err.failure {
                    // A failure status without a code is reported as the conventional 1.
                    StepFailure::Exit { status } => Some(status.unwrap_or(1)),
                    _ => None,
                };
                let reason = format!("{err} [{}]", err.failure.code());
                if cancelled {
                    StageOutcome::cancelled(reason)
                } else {
                    StageOutcome::failed(exit_code, reason)
                }
            }
        }
    }

    fn run_command(&self, task: &StageTask<'_>, executor: &dyn Executor) -> StageOutcome {
        let stage = task.stage;
        let log = task.log;
        let Some(script) = &stage.run else {
            return StageOutcome::failed(None, "the stage has no `run` script");
        };
        let step = command_step(script, stage);
        let name = executor.name();
        if executor.sandboxed() {
            log.info(task.id, &format!("executor `{name}` (sandboxed)"));
        } else {
            log.warn(
                task.id,
                &format!(
                    "executor `{name}` is UNSANDBOXED: the script runs directly on this machine, \
                     as the current user, with its file system and network"
                ),
            );
        }
        for setting in executor.unhonoured(&step) {
            let value = match setting {
                "image" => step.image.clone().unwrap_or_default(),
                "cpu_millis" => step.cpu_millis.map(|m| format!("{m}m")).unwrap_or_default(),
                "memory_bytes" => step
                    .memory_bytes
                    .map(|b| format!("{b} bytes"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let key = match setting {
                "image" => "sandbox.image",
                "cpu_millis" => "sandbox.resources.cpu",
                "memory_bytes" => "sandbox.resources.memory",
                other => other,
            };
            log.warn(
                task.id,
                &format!("`{key}` ({value}) is not honoured by executor `{name}`"),
            );
        }

        let _exclusive = self.lock.write().unwrap_or_else(|p| p.into_inner());
        let upstream: Vec<SnapshotRef> = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            stage
                .after
                .iter()
                .filter_map(|id| keys.get(id.as_str()).cloned())
                .collect()
        };
        let parent = self.parent_snapshot(stage);
        let mut start_manifest = None;
        let decision = match &self.snapshots {
            None => {
                log.info(task.id, "cache: off (`--no-cache`): miss, no commit");
                CacheDecision::MissNoCommit
            }
            Some(store) => {
                let manifest = match self.scan() {
                    Ok(m) => m,
                    Err(e) => {
                        return StageOutcome::failed(
                            None,
                            format!("cannot scan the workspace: {e}"),
                        );
                    }
                };
                // Granted secrets count by name, never by value.
                let mut key_env = self.env.clone();
                key_env.extend(task.outputs_env.clone());
                for secret in granted_secrets(stage) {
                    key_env.insert(secret.as_str().to_owned(), REDACTED.to_owned());
                }
                let inputs = stage.sandbox.as_ref().and_then(|s| s.inputs.as_deref());
                let with = stage.with.clone().map(Value::Object);
                // Keyed on what its `after` stages left, never on a sibling's effect.
                self.lineage.before_write(&manifest);
                let view = match self.lineage.view(task.id, &manifest) {
                    Ok(view) => view,
                    Err(e) => {
                        return StageOutcome::failed(None, format!("no cache key: {e}"));
                    }
                };
                let key = match cache_key(&CacheKeyInput {
                    executor: &name,
                    step: &step,
                    env: &key_env,
                    workspace: &view,
                    inputs,
                    with: with.as_ref(),
                    parent_snapshot: parent.as_ref(),
                    upstream: &upstream,
                }) {
                    Ok(key) => key,
                    Err(e) => {
                        return StageOutcome::failed(None, format!("no cache key: {e}"));
                    }
                };
                // A store entry of the wrong kind fails the stage before its command runs.
                if let Err(e) = store.check_tag(&key) {
                    return StageOutcome::failed(None, format!("cache: {e}"));
                }
                let exists = match self.dispatcher.find_snapshot(&key, store) {
                    Ok(found) => found,
                    Err(SnapshotError::Corrupt { reason }) => {
                        log.warn(
                            task.id,
                            &format!(
                                "cache: snapshot `{key}` is corrupt and was discarded ({reason}); \
                                 running the command"
                            ),
                        );
                        false
                    }
                    Err(e) => {
                        log.warn(
                            task.id,
                            &format!(
                                "cache: snapshot `{key}` cannot be read ({e}); running the command"
                            ),
                        );
                        false
                    }
                };
                start_manifest = Some(manifest);
                if exists {
                    log.info(
                        task.id,
                        &format!(
                            "cache: hit `{key}`: restoring its snapshot, skipping the command"
                        ),
                    );
                    CacheDecision::Hit { tag: key }
                } else {
                    log.info(
                        task.id,
                        &format!("cache: miss: running, will commit `{key}` on success"),
                    );
                    CacheDecision::MissBuildAs { tag: key }
                }
            }
        };
        let outcome = self.execute(
            task,
            executor,
            &step,
            decision.clone(),
            start_manifest.as_ref(),
            1,
        );
        let outcome = match (&decision, &outcome) {
            (CacheDecision::Hit { tag }, (Err(ExecError::Snapshot { source, .. }), _)) => {
                log.warn(
                    task.id,
                    &format!("cache: snapshot `{tag}` is unusable ({source}); running the command"),
                );
                let retry = CacheDecision::MissBuildAs { tag: tag.clone() };
                // A failed restore may have changed the workspace: the executor scans it
                // afresh.
                let outcome = self.execute(task, executor, &step, retry.clone(), None, 2);
                self.finish_command(task, outcome, &retry)
            }
            _ => self.finish_command(task, outcome, &decision),
        };
        if let Some(before) = &start_manifest {
            self.record_effect(task, before);
        }
        outcome
    }

    /// Scans the run's workspace with the run's digest index.
    fn scan(&self) -> Result<WorkspaceManifest, crate::workspace::WorkspaceError> {
        let mut digests = self.digests.lock().unwrap_or_else(|p| p.into_inner());
        WorkspaceManifest::scan_indexed(&self.workspace, &mut digests)
    }

    /// Records the effect of the writing stage of `task`, which found `before`, for the keys
    /// of the stages downstream of it ([`Lineage`]).
    fn record_effect(&self, task: &StageTask<'_>, before: &WorkspaceManifest) {
        let after = self.scan();
        if let Err(e) = &after {
            task.log.warn(
                task.id,
                &format!(
                    "cache: cannot scan the workspace after the stage ({e}); stages after it \
                     get no cache key"
                ),
            );
        }
        self.lineage
            .wrote(task.id, before, after.as_ref().map_err(ToString::to_string));
    }

    /// The stage's parent snapshot: when it comes `after` exactly one stage, and that stage
    /// is a `run:` stage that ended with a snapshot (committed it, or restored it on a hit),
    /// that snapshot's tag. See `docs/scale-out.md`.
    fn parent_snapshot(&self, stage: &Stage) -> Option<SnapshotRef> {
        let mut after = stage.after.iter();
        let (Some(only), None) = (after.next(), after.next()) else {
            return None;
        };
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(only.as_str())
            .cloned()
    }

    fn execute(
        &self,
        task: &StageTask<'_>,
        executor: &dyn Executor,
        step: &CommandStep,
        decision: CacheDecision,
        start_manifest: Option<&WorkspaceManifest>,
        attempt: u32,
    ) -> (Result<StepResult, ExecError>, BTreeMap<String, String>) {
        let mut env = self.env.clone();
        env.extend(task.outputs_env.clone());
        let mut secret_values = Vec::new();
        for secret in granted_secrets(task.stage) {
            let name = secret.as_str();
            let refused = |why: String| ExecError::Refused {
                stage: task.id.to_string(),
                message: format!("secret `{name}` is granted by `sandbox.secrets`, but {why}"),
            };
            match self.secrets.get(name) {
                Ok(Some(value)) => {
                    env.insert(name.to_owned(), value.clone());
                    secret_values.push(value);
                }
                Ok(None) => {
                    let why = "the run has no value for it (give it to the run, e.g. \
                               `labhit run --secret NAME`)";
                    return (Err(refused(why.to_owned())), BTreeMap::new());
                }
                Err(e) => return (Err(refused(e.to_string())), BTreeMap::new()),
            }
        }
        let input = ExecutorInput {
            step: step.clone(),
            workspace_archive_id: ArchiveId::from_uuid(uuid::Uuid::new_v4()),
            env,
            workdir: self.workspace.to_string_lossy().into_owned(),
            run_id: task.run_id,
            step_id: StepId::from_uuid(uuid::Uuid::new_v4()),
            cache_lookup: decision,
            parent_snapshot: self.parent_snapshot(task.stage),
        };
        let with = task.stage.with.clone().map(Value::Object);
        let mut ctx = ExecContext::new(task.id, &self.workspace);
        ctx.with = with.as_ref();
        ctx.log = task.log.sink();
        ctx.cancellation = task.cancellation.clone();
        ctx.timeout = timeout(task.stage);
        ctx.secrets = Arc::clone(&self.secrets);
        ctx.secret_values = secret_values;
        ctx.start_manifest = start_manifest;
        ctx.digests = Some(&self.digests);
        let result = self
            .dispatcher
            .command(&self.dispatch(task, attempt), executor, &input, &ctx);
        (result, ctx.outputs.snapshot())
    }

    fn finish_command(
        &self,
        task: &StageTask<'_>,
        (result, outputs): (Result<StepResult, ExecError>, BTreeMap<String, String>),
        decision: &CacheDecision,
    ) -> StageOutcome {
        match result {
            Ok(result) => {
                if let Err(e) = result.validate(decision) {
                    return StageOutcome::failed(
                        Some(result.exit_code),
                        format!("the executor broke the cache contract: {e}"),
                    );
                }
                self.collect(task, &result.artifacts);
                if !result.is_success() {
                    return StageOutcome {
                        outputs,
                        artifacts: result.artifacts,
                        ..StageOutcome::failed(
                            Some(result.exit_code),
                            format!("the command exited with code {}", result.exit_code),
                        )
                    };
                }
                let status = match decision {
                    CacheDecision::Hit { tag } | CacheDecision::MissBuildAs { tag } => {
                        self.keys
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(task.id.to_string(), tag.clone());
                        if matches!(decision, CacheDecision::Hit { .. }) {
                            StageStatus::Cached
                        } else {
                            task.log.info(task.id, &format!("cache: committed `{tag}`"));
                            StageStatus::Succeeded
                        }
                    }
                    CacheDecision::MissNoCommit => StageStatus::Succeeded,
                };
                StageOutcome {
                    status,
                    exit_code: Some(result.exit_code),
                    reason: None,
                    outputs,
                    artifacts: result.artifacts,
                }
            }
            Err(ExecError::Cancelled { .. }) if task.cancellation.is_cancelled() => {
                StageOutcome::cancelled("the command was cancelled")
            }
            Err(err) => StageOutcome::failed(None, format!("{err} [{}]", err.code())),
        }
    }

    fn collect(&self, task: &StageTask<'_>, artifacts: &[labhit_protocol::executor::ArtifactRef]) {
        for problem in crate::summary::collect_artifacts(
            &self.workspace,
            &self.run_dir,
            task.id.as_str(),
            artifacts,
            task.log.redactor(),
        ) {
            task.log.warn(task.id, &problem);
        }
    }
}

impl StageRunner for PipelineRunner {
    fn run_stage(&self, task: &StageTask<'_>) -> StageOutcome {
        self.lineage.enter(task.id, &task.stage.after.0);
        match self.plans.get(task.id.as_str()) {
            Some(StagePlan::Extension(ext)) => self.run_extension(task, ext),
            Some(StagePlan::Command(executor)) => self.run_command(task, executor.as_ref()),
            Some(StagePlan::Broken(why)) => StageOutcome::failed(None, why.clone()),
            None => StageOutcome::failed(None, format!("no plan for stage `{}`", task.id)),
        }
    }
}

/// The secrets `sandbox.secrets` grants the stage's `run` script.
fn granted_secrets(stage: &Stage) -> &[SecretName] {
    stage.sandbox.as_ref().map_or(&[], |s| s.secrets.as_slice())
}

/// The stage's `sandbox.timeout`.
pub fn timeout(stage: &Stage) -> Option<std::time::Duration> {
    stage
        .sandbox
        .as_ref()
        .and_then(|s| s.timeout.as_ref())
        .map(|t| t.to_std())
}

/// The command of a `run:` stage: script, image, timeout and resources from `sandbox`.
pub fn command_step(script: &str, stage: &Stage) -> CommandStep {
    let mut step = CommandStep::new(script);
    if let Some(sandbox) = &stage.sandbox {
        step.image = sandbox.image.clone();
        step.timeout_secs = sandbox
            .timeout
            .as_ref()
            .map(|t| t.as_secs())
            .filter(|s| *s > 0);
        if let Some(resources) = &sandbox.resources {
            step.cpu_millis = resources
                .cpu
                .as_ref()
                .map(|c| (c.cores() * 1000.0).round() as u64)
                .filter(|m| *m > 0);
            step.memory_bytes = resources
                .memory
                .as_ref()
                .map(|m| m.bytes())
                .filter(|b| *b > 0);
        }
    }
    step
}
