//! `labhit worker`: pulls tasks the fleet's server published and runs them with
//! `labhit-runtime`, in the same sandbox and with the same limits as a local run.
//!
//! A worker loads every bundle of its extension directories once ([`Worker::prepare`]) and
//! advertises what it can run (the local executor, and each extension as `name@version` with
//! its contract) in the `labhit_workers` bucket, refreshed while it lives. For each of these
//! needs it pulls from one durable consumer shared by every worker with the same need, so a
//! task only reaches a worker that can run it. One puller takes tasks while a permit of
//! `--concurrency` is free, asking the consumers in turn without waiting on any; when none
//! has a task it waits for a publication on its task subjects (core NATS, the doorbell) or
//! one second (redeliveries ring no bell); after a ring it asks the rung need's consumer
//! with a pull request the server holds until the task is stored.
//!
//! Per task: a task already answered (a redelivery after the answering worker died before
//! its acknowledgement) is acknowledged and dropped; otherwise the archive is fetched and
//! checked, unpacked into a fresh directory, the step runs while the task is kept in progress
//! (an acknowledgement every third of the ack wait), its log lines go to the server as they
//! come, the workspace goes back when the step may write, then the reply, then the
//! acknowledgement. A cancellation published for the task stops the step; the stage's
//! deadline applies here.
//!
//! Snapshots: a worker obeys a `run:` step's cache decision with its own local store
//! (`<work dir>/snapshots`), a cache of the fleet's snapshots bucket ([`crate::snapshots`]).
//! For a `hit` it imports the snapshot from the bucket unless its store has it (a missing or
//! corrupt object is a [`Failure::Snapshot`] reply), then restores it and skips the command;
//! for a `miss_build_as` it commits the step's effect locally and stores it in the bucket
//! before replying (once: a tag already stored is left as it is). A worker killed mid-step
//! leaves the task unacknowledged: JetStream delivers it to another worker after the ack
//! wait.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::pull;
use futures_util::StreamExt as _;
use labhit_protocol::Value;
use labhit_protocol::executor::CacheDecision;
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef};
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::LogEntry;
use labhit_runtime::executor::{
    ExecContext, ExecError, Executor, ExtensionExecutor, LocalExecutor,
};
use labhit_runtime::registry::Registry;
use labhit_runtime::snapshot::{SnapshotError, SnapshotStore};
use labhit_runtime::{
    Cancellation, LoadedExtension, LogSink, Runtime, RuntimeConfig, StepError, StepFailure,
    StepRequest,
};
use serde::{Deserialize, Serialize};

use crate::archive;
use crate::recent::Archives;
use crate::setup::{Fleet, FleetError, nats, publish_acked};
use crate::wire::{
    Abandoned, Failure, LogLine, Need, Outcome, Reply, SNAPSHOTS_BUCKET, Task, TaskBody,
    run_cancel_subject, task_cancel_subject,
};

/// What a worker advertises in the workers bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Advert {
    /// The worker's name.
    pub worker: String,
    /// The fleet protocol it speaks ([`crate::wire::PROTOCOL`]; 0 for a worker from before
    /// the field).
    #[serde(default)]
    pub protocol: u32,
    /// What it can run.
    pub needs: Vec<Need>,
}

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Its name (unique in the fleet).
    pub name: String,
    /// Directories of extension bundles.
    pub extensions: Vec<PathBuf>,
    /// Most tasks running at once (at least 1).
    pub concurrency: usize,
    /// Where task workspaces are unpacked.
    pub work_dir: PathBuf,
}

/// A worker with its extensions loaded.
pub struct Worker {
    config: WorkerConfig,
    runtime: Runtime,
    loaded: BTreeMap<Need, LoadedExtension>,
    snapshots: SnapshotStore,
    /// The archives fetched last ([`ARCHIVES_HELD`] bytes at most).
    archives: Archives,
    /// Bundles that could not be loaded, with why.
    pub problems: Vec<String>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("needs", &self.needs())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Discovers and loads (compiles) every bundle of `config.extensions`.
    pub fn prepare(config: WorkerConfig) -> Result<Self, FleetError> {
        let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| FleetError::Io {
            what: "starting the runtime".to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let registry = Registry::discover(&config.extensions);
        let mut loaded = BTreeMap::new();
        let mut problems: Vec<String> = registry
            .invalid()
            .iter()
            .map(|i| format!("{i:?}"))
            .collect();
        for bundle in registry.bundles() {
            match runtime.load(&bundle.manifest, &bundle.component_path) {
                Ok(ext) => {
                    let need = Need::Extension {
                        reference: format!("{}@{}", ext.name(), ext.version()),
                        contract: ext.contract_version().to_string(),
                    };
                    loaded.insert(need, ext);
                }
                Err(e) => problems.push(format!("{}: {e}", bundle.id())),
            }
        }
        Ok(Self {
            snapshots: SnapshotStore::new(config.work_dir.join("snapshots")),
            archives: Archives::new(ARCHIVES_HELD),
            config,
            runtime,
            loaded,
            problems,
        })
    }

    /// What this worker can run: the local executor and every loaded extension.
    pub fn needs(&self) -> Vec<Need> {
        std::iter::once(Need::Local)
            .chain(self.loaded.keys().cloned())
            .collect()
    }

    /// Advertises the worker and opens its consumers, then serves tasks in the background
    /// until `stop` is set ([`Running::wait`]).
    pub async fn start(self, fleet: Fleet, stop: Cancellation) -> Result<Running, FleetError> {
        std::fs::create_dir_all(&self.config.work_dir).map_err(|source| FleetError::Io {
            what: format!("creating `{}`", self.config.work_dir.display()),
            source,
        })?;
        let advert = serde_json::to_vec(&Advert {
            worker: self.config.name.clone(),
            protocol: crate::wire::PROTOCOL,
            needs: self.needs(),
        })
        .map_err(|source| FleetError::Malformed {
            subject: "advert".to_owned(),
            source,
        })?;
        let name = self.config.name.clone();
        fleet
            .workers
            .put(&name, advert.clone().into())
            .await
            .map_err(nats("advertising the worker"))?;
        let worker = Arc::new(self);
        let permits = Arc::new(tokio::sync::Semaphore::new(
            worker.config.concurrency.max(1),
        ));
        let mut consumers: Vec<TaskConsumer> = Vec::new();
        for need in worker.needs() {
            let token = need.token();
            let subject = format!("labhit.task.{token}");
            let consumer = fleet
                .tasks
                .get_or_create_consumer(
                    &format!("need-{token}"),
                    pull::Config {
                        durable_name: Some(format!("need-{token}")),
                        filter_subject: subject.clone(),
                        ack_wait: fleet.options.ack_wait,
                        max_deliver: fleet.options.max_deliver,
                        ..Default::default()
                    },
                )
                .await
                .map_err(nats(format!("the consumer of {need}")))?;
            consumers.push((subject, consumer));
        }
        let doorbell = Doorbell::subscribe(&fleet.client, &consumers).await?;
        let mut pullers = tokio::task::JoinSet::new();
        {
            let (worker, fleet, stop) = (Arc::clone(&worker), fleet.clone(), stop.clone());
            pullers.spawn(
                async move { pull(worker, fleet, consumers, doorbell, permits, stop).await },
            );
        }
        let task = tokio::spawn(async move {
            let mut refresh = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = refresh.tick() => {
                        // A failed refresh is retried on the next tick.
                        let _ = fleet.workers.put(&name, advert.clone().into()).await;
                    }
                }
            }
            let _ = fleet.workers.delete(&name).await;
            while pullers.join_next().await.is_some() {}
        });
        Ok(Running { task })
    }
}

/// A started worker.
#[derive(Debug)]
pub struct Running {
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits until the worker stopped (its `stop` was set and its running tasks ended).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// How many bytes of archives a worker keeps in memory (see [`Archives`]).
const ARCHIVES_HELD: usize = 64 << 20;

/// How long an idle worker waits before asking its consumers again without being rung: a
/// task redelivered after another worker died rings no bell.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The bell rings as the server receives the task, often before the stream has stored it:
/// after a ring the worker asks the rung need's consumer with a request the server holds
/// until a task is stored, for at most this long (another worker may have taken the task).
const RUNG_WAIT: Duration = Duration::from_millis(250);

/// Core NATS subscriptions to the worker's task subjects: a task published for one of its
/// needs wakes the idle puller at once (the task itself is taken from the durable
/// consumer, never from here).
struct Doorbell(futures_util::stream::SelectAll<async_nats::Subscriber>);

impl Doorbell {
    async fn subscribe(
        client: &async_nats::Client,
        consumers: &[TaskConsumer],
    ) -> Result<Self, FleetError> {
        let mut all = futures_util::stream::SelectAll::new();
        for (subject, _) in consumers {
            all.push(
                client
                    .subscribe(subject.clone())
                    .await
                    .map_err(nats(format!("subscribing to `{subject}`")))?,
            );
        }
        Ok(Self(all))
    }

    /// Waits for a ring, or [`IDLE_POLL`]; then forgets the rings already queued (one
    /// round of asking serves them all). The first ring, if one came: the published task.
    async fn wait(&mut self) -> Option<async_nats::Message> {
        let rang = tokio::time::timeout(IDLE_POLL, self.0.next())
            .await
            .ok()
            .flatten();
        while let Some(Some(_)) = futures_util::FutureExt::now_or_never(self.0.next()) {}
        rang
    }
}

/// One of the worker's consumers, with the task subject it serves.
type TaskConsumer = (
    String,
    async_nats::jetstream::consumer::Consumer<pull::Config>,
);

/// Takes tasks while permits are free, until `stop`. With a permit in hand it asks each of
/// the worker's consumers in turn for one task, never waiting on one consumer (a worker
/// with several needs would otherwise sit on its permit waiting for one need while a task
/// of another need queues); with nothing to take it lets the permit go and waits for the
/// [`Doorbell`]. After a ring it first asks the rung need's consumer, waiting up to
/// [`RUNG_WAIT`] for the task to be stored.
async fn pull(
    worker: Arc<Worker>,
    fleet: Fleet,
    consumers: Vec<TaskConsumer>,
    mut doorbell: Doorbell,
    permits: Arc<tokio::sync::Semaphore>,
    stop: Cancellation,
) {
    let mut running = tokio::task::JoinSet::new();
    // Where the next round starts, so that no need starves the others.
    let mut first = 0usize;
    // The need that rang, and the head start on the task it announced.
    let mut rung: Option<(usize, Option<HeadStart>)> = None;
    while !stop.is_cancelled() {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (mut taken, mut head) = match rung.take() {
            Some((at, head)) => (take_stored(&consumers[at].1).await, head),
            None => (None, None),
        };
        for i in 0..consumers.len() {
            if taken.is_some() {
                break;
            }
            let at = (first + i) % consumers.len();
            // `fetch` does not wait: an empty consumer answers at once.
            let Ok(mut batch) = consumers[at].1.fetch().max_messages(1).messages().await else {
                continue;
            };
            if let Some(Ok(message)) = batch.next().await {
                first = (at + 1) % consumers.len();
                taken = Some(message);
            }
        }
        match taken {
            Some(message) => {
                let (worker, fleet, head) = (Arc::clone(&worker), fleet.clone(), head.take());
                running.spawn(async move {
                    handle(worker, fleet, message, head).await;
                    drop(permit);
                });
            }
            None => {
                drop(permit);
                tokio::select! {
                    rang = doorbell.wait() => {
                        rung = rang.and_then(|ring| {
                            let at = consumers
                                .iter()
                                .position(|(served, _)| ring.subject.as_str() == served)?;
                            Some((at, HeadStart::begin(&fleet, &ring)))
                        });
                    }
                    () = stop.cancelled() => break,
                }
            }
        }
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// One task of `consumer`, waiting up to [`RUNG_WAIT`] for one to be stored.
async fn take_stored(
    consumer: &async_nats::jetstream::consumer::Consumer<pull::Config>,
) -> Option<async_nats::jetstream::Message> {
    let mut batch = consumer
        .batch()
        .max_messages(1)
        .expires(RUNG_WAIT)
        .messages()
        .await
        .ok()?;
    batch.next().await?.ok()
}

/// Runs one task message (see the module documentation).
async fn handle(
    worker: Arc<Worker>,
    fleet: Fleet,
    message: async_nats::jetstream::Message,
    head: Option<HeadStart>,
) {
    let task: Task = match serde_json::from_slice(&message.payload) {
        Ok(task) => task,
        Err(_) => {
            // Nothing can ever run it: do not let it come back.
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let key = task.key();
    // Only a redelivery can have been answered: a task is published once (its message id
    // makes JetStream drop a second publication).
    let redelivered = message.info().map_or(true, |info| info.delivered > 1);
    if redelivered
        && fleet
            .events
            .get_last_raw_message_by_subject(&format!("labhit.done.{key}"))
            .await
            .is_ok()
    {
        let _ = message.ack().await;
        return;
    }
    let message = Arc::new(message);
    let progress = {
        let message = Arc::clone(&message);
        let every = (fleet.options.ack_wait / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let _ = message.ack_with(AckKind::Progress).await;
            }
        })
    };
    // A head start begun for another task (taken by another worker) is dropped.
    let head = head.filter(|head| head.key == key);
    let reply = serve(&worker, &fleet, &task, head).await;
    progress.abort();
    if let Ok(payload) = serde_json::to_vec(&reply)
        && publish_acked(&fleet.js, format!("labhit.done.{key}"), payload.into())
            .await
            .is_ok()
    {
        let _ = message.double_ack().await;
    }
}

/// Fetches, runs and packs one task; every failure is a reply.
async fn serve(worker: &Arc<Worker>, fleet: &Fleet, task: &Task, head: Option<HeadStart>) -> Reply {
    let key = task.key();
    let refused = |message: String, lines: u64| Reply {
        worker: worker.config.name.clone(),
        lines,
        archive_after: None,
        outcome: Outcome::Failed {
            failure: Failure::Refused,
            message,
        },
    };
    // The cancellation watch (begun at the ring, or now) travels while the workspace is
    // prepared; nothing runs before it answered.
    let watching = async {
        match head {
            Some(mut head) => match (&mut head.watched).await {
                Ok(watched) => watched,
                Err(_) => watch(fleet, &key, task.run_id).await,
            },
            None => watch(fleet, &key, task.run_id).await,
        }
    };
    let (watched, prepared) =
        tokio::join!(watching, prepare_workspace(worker, fleet, task.archive));
    let watch = match watched {
        Ok(watch) => watch,
        Err(message) => return refused(message, 0),
    };
    let cancellation = watch.cancellation.clone();
    if let Some(why) = &watch.cancelled {
        // Cancelled before it started: nothing runs, the reply says why.
        return Reply {
            worker: worker.config.name.clone(),
            lines: 0,
            archive_after: None,
            outcome: Outcome::Failed {
                failure: Failure::Cancelled,
                message: format!("not started: {why}"),
            },
        };
    }
    // The task directory lives until the reply is made.
    let (_task_dir, workspace) = match prepared {
        Ok(prepared) => prepared,
        Err(message) => return refused(message, 0),
    };
    let decision = match &task.body {
        TaskBody::Command { input, .. } => input.cache_lookup.clone(),
        TaskBody::Extension { .. } => CacheDecision::MissNoCommit,
    };
    if let CacheDecision::Hit { tag } = &decision
        && let Err(message) = fetch_snapshot(worker, fleet, tag).await
    {
        return Reply {
            worker: worker.config.name.clone(),
            lines: 0,
            archive_after: None,
            outcome: Outcome::Failed {
                failure: Failure::Snapshot { tag: tag.clone() },
                message,
            },
        };
    }

    // Log lines go out in order, each acknowledged by the stream.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<LogEntry>();
    let publisher = {
        let (js, key) = (fleet.js.clone(), key.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(entry) = rx.recv().await {
                // Numbered before publishing, so the server sees a gap rather than a
                // renumbered line if one is lost after every retry.
                if let Ok(payload) = serde_json::to_vec(&LogLine { n, entry }) {
                    let _ = publish_acked(&js, format!("labhit.log.{key}"), payload.into()).await;
                }
                n += 1;
            }
            n
        })
    };
    let sink: Arc<dyn LogSink> = Arc::new(ChannelSink(tx));
    let outcome = {
        let (worker, task, workspace, cancellation) = (
            Arc::clone(worker),
            task.clone(),
            workspace.clone(),
            cancellation.clone(),
        );
        tokio::task::spawn_blocking(move || {
            run_step(&worker, &task, &workspace, sink, cancellation)
        })
        .await
    };
    drop(watch);
    let lines = publisher.await.unwrap_or(0);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return refused(format!("the step's thread failed: {e}"), lines),
    };
    if let (CacheDecision::MissBuildAs { tag }, Outcome::Command { result, .. }) =
        (&decision, &outcome)
        && result.is_success()
        && result.committed_snapshot.as_ref() == Some(tag)
        && let Err(message) = store_snapshot(worker, fleet, tag).await
    {
        return Reply {
            worker: worker.config.name.clone(),
            lines,
            archive_after: None,
            outcome: Outcome::Failed {
                failure: Failure::Other,
                message,
            },
        };
    }
    let ran = matches!(outcome, Outcome::Step { .. } | Outcome::Command { .. });
    let archive_after = if task.writes && ran {
        let packed = archive::pack(&workspace).map_err(FleetError::from);
        match packed {
            Ok(bytes) => match fleet.put_archive(&bytes).await {
                Ok(id) => Some(id),
                Err(e) => return refused(e.to_string(), lines),
            },
            Err(e) => return refused(e.to_string(), lines),
        }
    } else {
        None
    };
    Reply {
        worker: worker.config.name.clone(),
        lines,
        archive_after,
        outcome,
    }
}

/// A task's cancellation as the worker watches it: its subscriptions to the task's and the
/// run's cancellation subjects (until dropped), and whether one was published already.
struct Watch {
    cancellation: Cancellation,
    _watchers: Watchers,
    /// Why the task was cancelled before it started, if it was.
    cancelled: Option<String>,
}

/// Subscribes to task `key`'s and run `run`'s cancellation, then looks for one published
/// already, so none is missed (a restarted server abandons a whole run). The error says
/// why it cannot watch.
async fn watch(fleet: &Fleet, key: &str, run: RunId) -> Result<Watch, String> {
    let cancellation = Cancellation::new();
    let subjects = [task_cancel_subject(key), run_cancel_subject(run)];
    let mut watchers = Vec::new();
    for subject in &subjects {
        let mut subscriber = fleet
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| format!("cannot listen for cancellation: {e}"))?;
        let cancellation = cancellation.clone();
        watchers.push(tokio::spawn(async move {
            if subscriber.next().await.is_some() {
                cancellation.cancel();
            }
        }));
    }
    let watchers = Watchers(watchers);
    let published = futures_util::future::join_all(
        subjects
            .iter()
            .map(|subject| fleet.events.get_last_raw_message_by_subject(subject)),
    )
    .await;
    let cancelled = published.into_iter().find_map(Result::ok).map(|message| {
        serde_json::from_slice::<Abandoned>(&message.payload)
            .map(|a| a.reason)
            .unwrap_or_else(|_| "the run was cancelled".to_owned())
    });
    Ok(Watch {
        cancellation,
        _watchers: watchers,
        cancelled,
    })
}

/// The [`watch`] of the task a ring announced, begun while the worker asks for it (the
/// ring carries the task): the look-ups' round trip overlaps the pull request's. Used
/// when the worker is handed that very task; aborted when dropped.
struct HeadStart {
    /// The announced task's key.
    key: String,
    watched: tokio::task::JoinHandle<Result<Watch, String>>,
}

impl HeadStart {
    /// Begins watching the task `ring` announces, if it is one.
    fn begin(fleet: &Fleet, ring: &async_nats::Message) -> Option<Self> {
        let task: Task = serde_json::from_slice(&ring.payload).ok()?;
        let key = task.key();
        let fleet = fleet.clone();
        let watched = {
            let key = key.clone();
            tokio::spawn(async move { watch(&fleet, &key, task.run_id).await })
        };
        Some(Self { key, watched })
    }
}

impl Drop for HeadStart {
    fn drop(&mut self) {
        self.watched.abort();
    }
}

/// A fresh task directory (removed when dropped) and, in it, the workspace unpacked from
/// archive `id` (held by the worker, else fetched and checked). The error says why not.
async fn prepare_workspace(
    worker: &Worker,
    fleet: &Fleet,
    id: ArchiveId,
) -> Result<(tempfile::TempDir, PathBuf), String> {
    let bytes = match worker.archives.get(id) {
        Some(bytes) => bytes,
        None => {
            let bytes = Arc::new(fleet.get_archive(id).await.map_err(|e| e.to_string())?);
            worker.archives.insert(id, Arc::clone(&bytes));
            bytes
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("task-")
        .tempdir_in(&worker.config.work_dir)
        .map_err(|e| format!("cannot make a task directory: {e}"))?;
    let workspace = dir.path().join("workspace");
    archive::unpack(&bytes, &workspace).map_err(|e| e.to_string())?;
    Ok((dir, workspace))
}

/// The tasks that turn a task's cancellation messages into its [`Cancellation`]; aborted
/// when dropped (the step is over, or never started).
struct Watchers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Watchers {
    fn drop(&mut self) {
        for watcher in &self.0 {
            watcher.abort();
        }
    }
}

/// Makes the snapshot `tag` available in the worker's store: there already, or imported
/// from the snapshots bucket (a corrupt object is deleted from it). The error says why not.
async fn fetch_snapshot(worker: &Worker, fleet: &Fleet, tag: &SnapshotRef) -> Result<(), String> {
    if worker.snapshots.verify(tag).is_ok() {
        return Ok(());
    }
    let bytes = match fleet.get_snapshot(tag).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(format!(
                "snapshot `{tag}` is missing from the object store bucket `{SNAPSHOTS_BUCKET}`"
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    match worker.snapshots.import(tag, &bytes) {
        Ok(_) => Ok(()),
        Err(SnapshotError::Corrupt { reason }) => {
            let deleted = match fleet.delete_snapshot(tag).await {
                Ok(()) => "it was deleted".to_owned(),
                Err(e) => format!("deleting it failed: {e}"),
            };
            Err(format!(
                "snapshot `{tag}` in the object store bucket `{SNAPSHOTS_BUCKET}` is corrupt \
                 ({reason}); {deleted}"
            ))
        }
        Err(e) => Err(format!("cannot import snapshot `{tag}`: {e}")),
    }
}

/// Stores the snapshot `tag` the step committed in the worker's store in the snapshots
/// bucket, unless the bucket has it. The error says why not.
async fn store_snapshot(worker: &Worker, fleet: &Fleet, tag: &SnapshotRef) -> Result<(), String> {
    let bytes = worker
        .snapshots
        .export(tag)
        .map_err(|e| format!("cannot export the committed snapshot `{tag}`: {e}"))?;
    fleet
        .put_snapshot(tag, &bytes)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Hands log entries to the publisher.
struct ChannelSink(tokio::sync::mpsc::UnboundedSender<LogEntry>);

impl LogSink for ChannelSink {
    fn emit(&self, entry: LogEntry) {
        // The publisher outlives every step; a closed channel means the task is over.
        let _ = self.0.send(entry);
    }
}

/// Runs the step of `task` in `workspace` (blocking).
fn run_step(
    worker: &Worker,
    task: &Task,
    workspace: &std::path::Path,
    sink: Arc<dyn LogSink>,
    cancellation: Cancellation,
) -> Outcome {
    let refused = |message: String| Outcome::Failed {
        failure: Failure::Refused,
        message,
    };
    let timeout = task.timeout_ms.map(Duration::from_millis);
    let extension = match &task.need {
        Need::Local => None,
        need => match worker.loaded.get(need) {
            Some(ext) => Some(ext),
            None => return refused(format!("this worker does not have {need}")),
        },
    };
    match (&task.body, extension) {
        (TaskBody::Extension { with, env }, Some(ext)) => {
            let mut request = StepRequest::new(task.stage.as_str());
            request.run_id = task.run_id;
            request.use_ref = format!("{}@{}", ext.name(), ext.version());
            request.with = with.clone();
            request.env = env.clone();
            request.workspace = Some(workspace.to_owned());
            request.timeout = timeout;
            request.log_sink = sink;
            request.cancellation = cancellation;
            match worker.runtime.execute(ext, request) {
                Ok(outcome) => Outcome::Step {
                    exit_code: outcome.exit_code,
                    outputs: outcome.outputs,
                    artifacts: outcome.artifacts,
                },
                Err(e) => step_failure(&e),
            }
        }
        (TaskBody::Extension { .. }, None) => {
            refused("an extension step without an extension".to_owned())
        }
        (TaskBody::Command { with, input }, ext) => {
            let Ok(stage) = StageId::new(task.stage.as_str()) else {
                return refused(format!("`{}` is not a stage id", task.stage));
            };
            let mut input = (**input).clone();
            input.workdir = workspace.to_string_lossy().into_owned();
            // The worker obeys the decision with its own store (see the module documentation).
            let executor: Box<dyn Executor> = match ext {
                None => Box::new(LocalExecutor::new(worker.snapshots.clone())),
                Some(ext) => match ExtensionExecutor::new(worker.runtime.clone(), ext.clone()) {
                    Ok(exec) => Box::new(
                        exec.with_config(
                            format!("{}@{}", ext.name(), ext.version()),
                            with.clone()
                                .unwrap_or_else(|| Value::Object(BTreeMap::new())),
                        )
                        .with_snapshots(worker.snapshots.clone()),
                    ),
                    Err(e) => return refused(e.to_string()),
                },
            };
            let mut ctx = ExecContext::new(&stage, workspace);
            ctx.log = sink;
            ctx.cancellation = cancellation;
            ctx.timeout = timeout;
            match executor.execute(&input, &ctx) {
                Ok(result) => Outcome::Command {
                    result,
                    outputs: ctx.outputs.snapshot(),
                },
                Err(e) => exec_failure(&e),
            }
        }
    }
}

fn step_failure(e: &StepError) -> Outcome {
    let failure = match &*e.failure {
        StepFailure::Cancelled(_) | StepFailure::Interrupted { .. } => Failure::Cancelled,
        StepFailure::Timeout { timeout } => Failure::Timeout {
            ms: timeout.as_millis() as u64,
        },
        StepFailure::Exit { status } => Failure::Exit { status: *status },
        _ => Failure::Other,
    };
    Outcome::Failed {
        failure,
        message: e.failure.to_string(),
    }
}

fn exec_failure(e: &ExecError) -> Outcome {
    let failure = match e {
        ExecError::Cancelled { .. } => Failure::Cancelled,
        ExecError::Timeout { timeout, .. } => Failure::Timeout {
            ms: timeout.as_millis() as u64,
        },
        _ => Failure::Other,
    };
    Outcome::Failed {
        failure,
        message: e.to_string(),
    }
}
