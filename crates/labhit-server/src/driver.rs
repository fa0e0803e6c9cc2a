//! The driver: a trigger becomes a run. It resolves the ref, reads and validates the pipeline
//! at that commit (`repos`), creates the run in the store, makes an isolated checkout of that
//! commit in the data dir and executes it through the runtime's run API, with the run's log,
//! stage states and final status going to the store as they happen.
//!
//! Each executing run is registered as an [`ActiveRun`]: its cancellation (for
//! `CancelPipelineRun` and shutdown) and its [`Approvals`] handle (for
//! `ApprovePipelineStage`). A run thread is a plain OS thread: the run API blocks.
//!
//! Shutdown ([`Driver::shutdown`]): new triggers are refused, running runs get the grace
//! period to finish, then are cancelled (a system entry says the server cut them short) and
//! given a short bounded time to stop; whatever is still running after that is left to the
//! store's recovery on the next start (it marks such runs interrupted).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::pipeline::{self, Approval as GateApproval, CheckOptions, PipelineFile};
use labhit_protocol::run::{LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun};
use labhit_runtime::Cancellation;
use labhit_runtime::approval::Approvals;
use labhit_runtime::gates::PreApproved;
use labhit_runtime::logs::LogSink;
use labhit_runtime::registry::Registry;
use labhit_runtime::run::{RunPlace, RunRequest};
use labhit_runtime::scheduler::{RunInfo, RunObserver};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tonic::Status;

use crate::repos::{DEFAULT_MAX_FILE_BYTES, RepoError, RepoErrorKind, Repos};
use crate::store::{Approval, CreateOutcome, Idempotency, NewLogEntry, NewRun, Store};

/// How many diagnostics a `FAILED_PRECONDITION` message lists at most.
const MAX_DIAGNOSTICS: usize = 20;

/// How long cancelled runs get to stop after the grace period before shutdown goes on.
pub const CANCEL_GRACE: Duration = Duration::from_secs(3);

/// A validated trigger request.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The repository as the client named it.
    pub repository: String,
    /// The git ref as the client gave it.
    pub git_ref: String,
    /// The pipeline file's path in the repository.
    pub pipeline_path: String,
    /// Stages approved up front, sorted, without duplicates.
    pub approved_stages: Vec<StageId>,
    /// The idempotency key.
    pub idempotency_key: Option<String>,
    /// Who triggered (the token's name): the approver of `approved_stages`.
    pub caller: String,
}

impl Trigger {
    /// The canonical fingerprint of the request's fields (idempotency).
    fn fingerprint(&self) -> String {
        let approved = self
            .approved_stages
            .iter()
            .map(StageId::as_str)
            .collect::<Vec<_>>()
            .join(",");
        Idempotency::fingerprint([
            ("repository", self.repository.as_str()),
            ("git_ref", self.git_ref.as_str()),
            ("pipeline_path", self.pipeline_path.as_str()),
            ("approved_stages", approved.as_str()),
        ])
    }
}

/// What the driver needs besides the store and the repositories.
#[derive(Clone)]
pub struct DriverConfig {
    /// Where run directories (checkout, artifacts) are made: `DATA/runs`.
    pub runs_dir: PathBuf,
    /// The extension registry (`--extensions`).
    pub registry: Arc<Registry>,
    /// Most stages of one run running at once.
    pub jobs: usize,
    /// Who runs each stage's step: in this process, or a fleet (`labhit serve --nats`).
    pub dispatcher: Arc<dyn labhit_runtime::dispatch::Dispatcher>,
    /// The snapshot store of `run:` stages (`DATA/snapshots`); `None`: no caching. With a
    /// fleet it only turns caching on: the snapshots live in the fleet's object store.
    pub snapshots: Option<labhit_runtime::snapshot::SnapshotStore>,
}

/// An executing run's handles.
#[derive(Clone)]
struct ActiveRun {
    cancellation: Cancellation,
    approvals: Approvals,
    /// Stages whose gate requires approval.
    gated: BTreeSet<String>,
}

struct Inner {
    store: Store,
    repos: Arc<Repos>,
    config: DriverConfig,
    handle: Handle,
    active: Mutex<HashMap<RunId, ActiveRun>>,
    /// The number of executing runs.
    running: watch::Sender<usize>,
    stopping: Mutex<bool>,
}

/// Turns triggers into runs; cheap to clone.
#[derive(Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("runs_dir", &self.inner.config.runs_dir)
            .field("running", &*self.inner.running.borrow())
            .finish_non_exhaustive()
    }
}

/// The gRPC status of a repository error.
fn repo_status(err: &RepoError) -> Status {
    let message = err.to_string();
    match err.kind() {
        RepoErrorKind::InvalidArgument => Status::invalid_argument(message),
        RepoErrorKind::PermissionDenied => Status::permission_denied(message),
        RepoErrorKind::NotFound => Status::not_found(message),
        RepoErrorKind::FailedPrecondition => Status::failed_precondition(message),
        RepoErrorKind::Unavailable => Status::unavailable(message),
        RepoErrorKind::Internal => Status::internal(message),
    }
}

/// What the blocking part of a trigger found.
struct Resolved {
    commit: String,
    /// The full ref the trigger's `git_ref` resolved to (`None`: a commit id).
    full_ref: Option<String>,
    pipeline: PipelineFile,
}

impl Driver {
    /// A driver on the current tokio runtime.
    pub fn new(store: Store, repos: Arc<Repos>, config: DriverConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                repos,
                config,
                handle: Handle::current(),
                active: Mutex::new(HashMap::new()),
                running: watch::channel(0).0,
                stopping: Mutex::new(false),
            }),
        }
    }

    fn is_stopping(&self) -> bool {
        *self
            .inner
            .stopping
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles `TriggerPipeline` (see the proto for the status codes).
    pub async fn trigger(&self, trigger: Trigger) -> Result<PipelineRun, Status> {
        let fingerprint = trigger.fingerprint();
        if let Some(key) = &trigger.idempotency_key {
            let found = self
                .inner
                .store
                .find_by_idempotency_key(key.clone())
                .await
                .map_err(crate::service::store_status)?;
            if let Some((record, stored)) = found {
                return if stored == fingerprint {
                    Ok(record.run)
                } else {
                    Err(Status::already_exists(format!(
                        "`idempotency_key` `{key}` was already used for run {} with different fields",
                        record.run.id
                    )))
                };
            }
        }
        if self.is_stopping() {
            return Err(Status::unavailable(
                "the server is shutting down; retry against the restarted server",
            ));
        }
        let resolved = {
            let repos = Arc::clone(&self.inner.repos);
            let registry = Arc::clone(&self.inner.config.registry);
            let trigger = trigger.clone();
            tokio::task::spawn_blocking(move || resolve(&repos, &registry, &trigger))
                .await
                .map_err(|err| Status::internal(format!("resolving the trigger failed: {err}")))??
        };
        let stages = topological(&resolved.pipeline);
        let new = NewRun {
            pipeline: resolved.pipeline.pipeline.name.to_string(),
            pipeline_path: trigger.pipeline_path.clone(),
            repository: trigger.repository.clone(),
            git_ref: trigger.git_ref.clone(),
            commit: Some(resolved.commit.clone()),
            stages,
            created_at: Utc::now(),
            idempotency: trigger.idempotency_key.clone().map(|key| Idempotency {
                key,
                fingerprint: fingerprint.clone(),
            }),
        };
        let outcome = self
            .inner
            .store
            .create_run(new)
            .await
            .map_err(crate::service::store_status)?;
        let run = match outcome {
            CreateOutcome::Created(run) => run,
            CreateOutcome::Existing(run) => return Ok(run),
            CreateOutcome::Conflict { run, .. } => {
                return Err(Status::already_exists(format!(
                    "`idempotency_key` was already used for run {run} with different fields"
                )));
            }
        };
        let gated = gated_stages(&resolved.pipeline);
        let at = Utc::now();
        for stage in &trigger.approved_stages {
            if gated.contains(stage.as_str()) {
                self.inner
                    .store
                    .record_approval(
                        run.id,
                        stage.clone(),
                        Approval {
                            by: trigger.caller.clone(),
                            at,
                        },
                    )
                    .await
                    .map_err(crate::service::store_status)?;
            }
        }
        self.start(run.clone(), resolved, &trigger, gated);
        Ok(run)
    }

    /// Registers the run and starts its thread.
    fn start(
        &self,
        run: PipelineRun,
        resolved: Resolved,
        trigger: &Trigger,
        gated: BTreeSet<String>,
    ) {
        let active = ActiveRun {
            cancellation: Cancellation::new(),
            approvals: Approvals::new(),
            gated,
        };
        self.inner
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.id, active.clone());
        self.inner.running.send_modify(|n| *n += 1);
        let driver = self.clone();
        let approved: BTreeSet<String> = trigger
            .approved_stages
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        let spawned = std::thread::Builder::new()
            .name(format!("labhit-run-{}", run.id))
            .spawn(move || {
                let id = run.id;
                driver.execute(run, resolved, approved, active);
                driver
                    .inner
                    .active
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                driver
                    .inner
                    .running
                    .send_modify(|n| *n = n.saturating_sub(1));
            });
        if let Err(err) = spawned {
            // The run stays queued until the next start marks it interrupted; say why now.
            self.inner.running.send_modify(|n| *n = n.saturating_sub(1));
            eprintln!("labhit serve: cannot start a run thread: {err}");
        }
    }

    /// Executes one run to its end (blocking; on the run's own thread).
    fn execute(
        &self,
        run: PipelineRun,
        resolved: Resolved,
        approved: BTreeSet<String>,
        active: ActiveRun,
    ) {
        let store = &self.inner.store;
        let handle = &self.inner.handle;
        let sink = StoreSink {
            store: store.clone(),
            run: run.id,
        };
        let run_dir = self.inner.config.runs_dir.join(run.id.to_string());
        let workspace = run_dir.join("workspace");
        let checkout = (|| {
            std::fs::create_dir_all(&run_dir).map_err(|err| {
                format!(
                    "cannot create the run directory {}: {err}",
                    run_dir.display()
                )
            })?;
            let repo = self
                .inner
                .repos
                .get(&run.repository)
                .map_err(|err| err.to_string())?;
            let commit = crate::repos::CommitId::parse(&resolved.commit)
                .ok_or_else(|| format!("`{}` is not a commit id", resolved.commit))?;
            repo.checkout(&commit, &workspace)
                .map_err(|err| err.to_string())
        })();
        if let Err(reason) = checkout {
            self.fail_before_start(
                &sink,
                run.id,
                &format!("cannot check out the commit: {reason}"),
            );
            return;
        }
        let mut request =
            RunRequest::new(resolved.pipeline, RunPlace::Prepared { workspace, run_dir });
        request.run_id = run.id;
        request.info = RunInfo {
            repository: run.repository.clone(),
            git_ref: run.git_ref.clone(),
            commit: run.commit.clone(),
        };
        // Policies (read from the checkout's `.labhit/policies.toml`) judge the ref the run
        // was triggered for as what it resolved to: `refs/heads/…` or `refs/tags/…`, never
        // guessed from a short name (a tag `release/1` is no branch); a commit id is no ref
        // and passes only policies without ref conditions.
        request.git_ref = resolved
            .full_ref
            .clone()
            .map(labhit_runtime::policy::GitRef::new);
        request.registry = Arc::clone(&self.inner.config.registry);
        request.jobs = self.inner.config.jobs;
        request.dispatcher = Arc::clone(&self.inner.config.dispatcher);
        request.cache.snapshots = self.inner.config.snapshots.clone();
        request.approved = PreApproved::Stages(approved);
        request.approver = Some(Arc::new(active.approvals.clone()));
        request.cancellation = active.cancellation.clone();
        request.log_sink = Arc::new(sink.clone());
        request.observer = Some(Arc::new(StoreObserver {
            store: store.clone(),
            handle: handle.clone(),
            run: run.id,
            approvals: active.approvals.clone(),
        }));
        match labhit_runtime::run::prepare(request) {
            Ok(prepared) => {
                let finished = prepared.execute();
                // The observer recorded the end; make sure a run never stays open.
                let _ = handle.block_on(store.set_run_status(
                    finished.id,
                    finished.status,
                    finished.finished_at.unwrap_or_else(Utc::now),
                ));
            }
            Err(err) => self.fail_before_start(&sink, run.id, &err.to_string()),
        }
    }

    /// Ends a run that could not start: a system error entry, every stage skipped, `failed`.
    fn fail_before_start(&self, sink: &StoreSink, run: RunId, reason: &str) {
        sink.system(
            LogLevel::Error,
            format!("the run could not start: {reason}"),
        );
        let store = &self.inner.store;
        let handle = &self.inner.handle;
        if let Ok(record) = handle.block_on(store.get_run(run)) {
            let now = Utc::now();
            for stage in record.run.stages {
                let skipped = StageRun {
                    status: labhit_protocol::run::StageStatus::Skipped,
                    finished_at: Some(now),
                    reason: Some(format!("the run could not start: {reason}")),
                    ..stage
                };
                let _ = handle.block_on(store.update_stage(run, skipped));
            }
        }
        let _ = handle.block_on(store.set_run_status(run, RunStatus::Failed, Utc::now()));
    }

    /// Handles `CancelPipelineRun` for an executing run; returns whether the run was
    /// executing here.
    pub fn cancel(&self, run: RunId) -> bool {
        let active = self
            .inner
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&run)
            .cloned();
        match active {
            Some(active) => {
                active.cancellation.cancel();
                true
            }
            None => false,
        }
    }

    /// Approves `stage` of the executing run `run` on behalf of `by`. `Ok(None)`: the run is
    /// not executing here; `Err`: the stage has no approval gate.
    pub fn approve(
        &self,
        run: RunId,
        stage: &StageId,
        by: &str,
    ) -> Result<Option<Approval>, Status> {
        let active = self
            .inner
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&run)
            .cloned();
        let Some(active) = active else {
            return Ok(None);
        };
        if !active.gated.contains(stage.as_str()) {
            return Err(Status::failed_precondition(format!(
                "stage `{stage}` of run {run} has no approval gate; only stages with `gate.approval: required` can be approved"
            )));
        }
        active.approvals.approve(stage.as_str(), by);
        let grant = active.approvals.grant(stage.as_str());
        Ok(grant.map(|g| Approval { by: g.by, at: g.at }))
    }

    /// Shuts down: refuses new triggers, waits up to `grace` for executing runs, cancels the
    /// rest with a system entry and waits up to [`CANCEL_GRACE`] more.
    pub async fn shutdown(&self, grace: Duration) {
        *self
            .inner
            .stopping
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        let mut running = self.inner.running.subscribe();
        let finished = tokio::time::timeout(grace, running.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if finished {
            return;
        }
        let active: Vec<(RunId, ActiveRun)> = self
            .inner
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        for (id, run) in active {
            let sink = StoreSink {
                store: self.inner.store.clone(),
                run: id,
            };
            sink.system_async(
                LogLevel::Warn,
                format!(
                    "the server is shutting down: the run did not finish within the grace period of {}s and is cancelled",
                    grace.as_secs_f64()
                ),
            )
            .await;
            run.cancellation.cancel();
        }
        let stopped = tokio::time::timeout(CANCEL_GRACE, running.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if !stopped {
            eprintln!(
                "labhit serve: some runs did not stop within {}s of their cancellation; the next start marks them interrupted",
                CANCEL_GRACE.as_secs()
            );
        }
    }
}

/// Resolves the repository, the ref and the pipeline file (blocking).
fn resolve(repos: &Repos, registry: &Registry, trigger: &Trigger) -> Result<Resolved, Status> {
    let repo = repos
        .get(&trigger.repository)
        .map_err(|e| repo_status(&e))?;
    let crate::repos::ResolvedRef { commit, full_ref } = repo
        .resolve_ref(&trigger.git_ref)
        .map_err(|e| repo_status(&e))?;
    let source = repo
        .read_file(&commit, &trigger.pipeline_path, DEFAULT_MAX_FILE_BYTES)
        .map_err(|e| repo_status(&e))?;
    let manifests = registry.manifests();
    let checked = pipeline::check(
        &source,
        &CheckOptions {
            extensions: (!manifests.is_empty()).then_some(manifests.as_slice()),
            ..CheckOptions::default()
        },
    );
    let Some(pipeline) = checked.pipeline else {
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .take(MAX_DIAGNOSTICS)
            .map(|d| format!("{}:{d}", trigger.pipeline_path))
            .collect();
        return Err(Status::failed_precondition(format!(
            "the pipeline file `{}` at commit {} is invalid:\n{}",
            trigger.pipeline_path,
            commit.as_str(),
            errors.join("\n")
        )));
    };
    for stage in &trigger.approved_stages {
        if pipeline.pipeline.stages.get(stage.as_str()).is_none() {
            return Err(Status::failed_precondition(format!(
                "`approved_stages` names stage `{stage}`, but the pipeline `{}` at commit {} has no such stage",
                trigger.pipeline_path,
                commit.as_str()
            )));
        }
    }
    Ok(Resolved {
        commit: commit.as_str().to_owned(),
        full_ref,
        pipeline,
    })
}

/// The stages in a topological order (the graph's layers, in order).
fn topological(pipeline: &PipelineFile) -> Vec<StageId> {
    let stages = &pipeline.pipeline.stages;
    match pipeline::layers(stages) {
        Some(layers) => layers.into_iter().flatten().cloned().collect(),
        // A validated pipeline has no cycle; keep the file order if that ever changes.
        None => stages.iter().map(|(id, _)| id.clone()).collect(),
    }
}

/// The stages whose gate requires approval.
fn gated_stages(pipeline: &PipelineFile) -> BTreeSet<String> {
    pipeline
        .pipeline
        .stages
        .iter()
        .filter(|(_, stage)| {
            stage
                .gate
                .as_ref()
                .is_some_and(|gate| gate.approval == Some(GateApproval::Required))
        })
        .map(|(id, _)| id.as_str().to_owned())
        .collect()
}

/// The run's log sink: every entry goes to the store, which gives it its sequence.
#[derive(Clone)]
struct StoreSink {
    store: Store,
    run: RunId,
}

impl StoreSink {
    fn new_entry(entry: LogEntry) -> NewLogEntry {
        NewLogEntry {
            stage: entry.stage,
            level: entry.level,
            stream: entry.stream,
            timestamp: entry.timestamp,
            message: entry.message,
            fields: entry.fields,
        }
    }

    fn system_entry(level: LogLevel, message: String) -> NewLogEntry {
        NewLogEntry {
            stage: None,
            level,
            stream: LogStream::System,
            timestamp: Utc::now(),
            message,
            fields: Default::default(),
        }
    }

    /// A system entry from a blocking thread.
    fn system(&self, level: LogLevel, message: String) {
        let _ = self
            .store
            .blocking_append_logs(self.run, vec![Self::system_entry(level, message)]);
    }

    /// A system entry from async code.
    async fn system_async(&self, level: LogLevel, message: String) {
        let _ = self
            .store
            .append_logs(self.run, vec![Self::system_entry(level, message)])
            .await;
    }
}

impl LogSink for StoreSink {
    fn emit(&self, entry: LogEntry) {
        // Queued in order; the writer commits in groups. A closed log (the run ended) or a
        // stopped writer (shutdown) loses nothing that was acknowledged.
        let _ = self
            .store
            .blocking_append_logs(self.run, vec![Self::new_entry(entry)]);
    }
}

/// Writes stage states and the run's status to the store as the scheduler reports them.
struct StoreObserver {
    store: Store,
    handle: Handle,
    run: RunId,
    approvals: Approvals,
}

impl RunObserver for StoreObserver {
    fn run_started(&self, run: &PipelineRun) {
        let at = run.started_at.unwrap_or_else(Utc::now);
        let _ = self
            .handle
            .block_on(self.store.set_run_status(self.run, RunStatus::Running, at));
    }

    fn stage_changed(&self, stage: &StageRun) {
        if let Some(grant) = self.approvals.grant(stage.stage.as_str()) {
            let _ = self.handle.block_on(self.store.record_approval(
                self.run,
                stage.stage.clone(),
                Approval {
                    by: grant.by,
                    at: grant.at,
                },
            ));
        }
        let _ = self
            .handle
            .block_on(self.store.update_stage(self.run, stage.clone()));
    }

    fn run_finished(&self, run: &PipelineRun) {
        for stage in &run.stages {
            let _ = self
                .handle
                .block_on(self.store.update_stage(self.run, stage.clone()));
        }
        let _ = self.handle.block_on(self.store.set_run_status(
            self.run,
            run.status,
            run.finished_at.unwrap_or_else(Utc::now),
        ));
    }
}
