//! [`NatsDispatcher`]: the server's side of the fleet (see the crate documentation).
//!
//! One step, as the runner hands it over:
//!
//! 1. find a worker advertising the step's [`Need`]; none: the step fails at once, naming the
//!    extension and the fix;
//! 2. pack the workspace, store the archive unless its id is stored already;
//! 3. register for the task's events with the server's one subscription to them
//!    ([`crate::events`]), then publish the task (message id `run/stage/attempt`: JetStream
//!    drops a second publication of the same task);
//! 4. forward log lines in order, dropping numbers already forwarded (a task redelivered after
//!    a worker died sends its lines again), each stamped with the server's time of receipt
//!    (a worker's clock is never the log's), until the first reply; the run's cancellation is
//!    published for the worker, which stops the step;
//! 5. apply the worker's resulting workspace (for steps that may write) and answer the runner
//!    as an in-process step would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use futures_util::StreamExt as _;
use labhit_protocol::Value;
use labhit_protocol::executor::{ExecutorInput, StepResult};
use labhit_protocol::manifest::FilesystemAccess;
use labhit_protocol::run::LogEntry;
use labhit_runtime::dispatch::{Dispatch, Dispatcher};
use labhit_runtime::executor::{ExecContext, ExecError, Executor, host_side};
use labhit_runtime::{
    Cancellation, LoadedExtension, LogSink, Runtime, StepError, StepFailure, StepOutcome,
    StepRequest,
};

use crate::archive;
use crate::setup::{Fleet, FleetError, nats};
use crate::wire::{
    Failure, LogLine, Need, Outcome, PROTOCOL, Reply, SNAPSHOTS_BUCKET, Task, TaskBody,
    task_cancel_subject,
};
use labhit_protocol::ids::SnapshotRef;
use labhit_runtime::snapshot::{SnapshotError, SnapshotStore};

/// How long the server keeps waiting for a worker's reply after it published a cancellation.
const CANCEL_GRACE: Duration = Duration::from_secs(15);

/// How long a task's publication is retried while NATS refuses it (a leader election).
const RETRY: Duration = Duration::from_secs(30);

/// Dispatches steps to the fleet. Its methods block the calling (runner) thread on the
/// tokio runtime it was made on.
#[derive(Debug, Clone)]
pub struct NatsDispatcher {
    fleet: Fleet,
    handle: tokio::runtime::Handle,
}

/// Why a remote step did not come back.
#[derive(Debug)]
enum Remote {
    /// No worker advertises the need; or only this worker, of that other fleet protocol.
    NoWorker(Need, Option<(String, u32)>),
    /// Cancelled before a worker answered.
    Cancelled,
    /// The fleet failed.
    Fleet(FleetError),
}

impl From<FleetError> for Remote {
    fn from(e: FleetError) -> Self {
        Remote::Fleet(e)
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::NoWorker(need, None) => write!(
                f,
                "no worker of the fleet has {need}: start a `labhit worker --extensions DIR` \
                 whose DIR holds it"
            ),
            Remote::NoWorker(need, Some((worker, protocol))) => write!(
                f,
                "no worker of this server's release has {need}: worker `{worker}` has it but \
                 speaks fleet protocol {protocol}, this server {PROTOCOL}; run server and \
                 workers of the same release"
            ),
            Remote::Cancelled => f.write_str("cancelled before a worker answered"),
            Remote::Fleet(e) => write!(f, "{e}"),
        }
    }
}

impl NatsDispatcher {
    /// A dispatcher over `fleet`, blocking on `handle` (the server's runtime).
    pub fn new(fleet: Fleet, handle: tokio::runtime::Handle) -> Self {
        Self { fleet, handle }
    }

    /// Runs `task` on the fleet (steps 1–5 of the module documentation) on the dispatcher's
    /// runtime, while this thread forwards the worker's log lines to `log` as they come: the
    /// run's sink is called from this (runner) thread, never from inside the runtime.
    fn run(
        &self,
        task: Task,
        dispatch: &Dispatch<'_>,
        log: &Arc<dyn LogSink>,
        cancellation: &Cancellation,
    ) -> Result<Reply, Remote> {
        let (lines, received) = std::sync::mpsc::channel();
        let remote = self.handle.spawn(remote(
            self.fleet.clone(),
            task,
            dispatch.task_id(),
            dispatch.workspace.to_owned(),
            lines,
            cancellation.clone(),
        ));
        // Ends when `remote` is done and drops its sender.
        for entry in received {
            log.emit(entry);
        }
        match self.handle.block_on(remote) {
            Ok(result) => result,
            Err(e) => Err(Remote::Fleet(FleetError::Io {
                what: "the dispatch of a step".to_owned(),
                source: std::io::Error::other(e.to_string()),
            })),
        }
    }
}

/// Whether some worker advertises `need` (a need found a moment ago is not asked again).
async fn advertised(fleet: &Fleet, need: &Need) -> Result<Advertised, FleetError> {
    if fleet.advertised.contains(need) {
        return Ok(Advertised::Yes);
    }
    let found = ask_workers(fleet, need).await?;
    if matches!(found, Advertised::Yes) {
        fleet.advertised.saw(need.clone());
    }
    Ok(found)
}

/// Whether the workers bucket holds an advert of `need` (see [`advertised`]).
async fn ask_workers(fleet: &Fleet, need: &Need) -> Result<Advertised, FleetError> {
    let mut keys = fleet
        .workers
        .keys()
        .await
        .map_err(nats("listing the workers"))?;
    let mut found = Advertised::Nobody;
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        let Ok(Some(value)) = fleet.workers.get(&key).await else {
            continue;
        };
        if let Ok(advert) = serde_json::from_slice::<crate::worker::Advert>(&value)
            && advert.needs.contains(need)
        {
            if advert.protocol == PROTOCOL {
                return Ok(Advertised::Yes);
            }
            found = Advertised::OtherProtocol {
                worker: advert.worker,
                protocol: advert.protocol,
            };
        }
    }
    Ok(found)
}

/// Whether some worker advertises a need.
enum Advertised {
    /// A worker of this protocol.
    Yes,
    /// Only a worker of another fleet protocol (another release).
    OtherProtocol { worker: String, protocol: u32 },
    /// No worker.
    Nobody,
}

/// Steps 1–5 of the module documentation; log lines go to `lines`.
async fn remote(
    fleet: Fleet,
    mut task: Task,
    task_id: String,
    workspace: PathBuf,
    lines: std::sync::mpsc::Sender<LogEntry>,
    cancellation: Cancellation,
) -> Result<Reply, Remote> {
    // A cluster electing a leader refuses JetStream requests for a moment: the set-up is
    // retried (the task's message id makes a second publication a no-op).
    let started = tokio::time::Instant::now();
    let key = task.key();
    // Registered before the task is published: no event of it can come first.
    let mut events = loop {
        match fleet
            .router
            .register(&fleet.client, &fleet.events, &key)
            .await
        {
            Ok(events) => break events,
            Err(FleetError::Nats { .. }) if started.elapsed() < RETRY => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    loop {
        match publish(&fleet, &mut task, &task_id, &workspace).await {
            Ok(()) => break,
            Err(Remote::Fleet(FleetError::Nats { .. })) if started.elapsed() < RETRY => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let mut next_line = 0u64;
    let mut cancel_sent: Option<tokio::time::Instant> = None;
    loop {
        let deadline = cancel_sent.map(|at| at + CANCEL_GRACE);
        let event = tokio::select! {
            event = events.next() => event,
            () = cancellation.cancelled(), if cancel_sent.is_none() => {
                fleet
                    .js
                    .publish(task_cancel_subject(&key), bytes::Bytes::new())
                    .await
                    .map_err(nats(format!("cancelling task `{key}`")))?;
                cancel_sent = Some(tokio::time::Instant::now());
                continue;
            }
            () = sleep_until(deadline) => return Err(Remote::Cancelled),
        };
        let Some(message) = event else {
            return Err(Remote::Fleet(FleetError::Nats {
                what: format!("the events of task `{key}`"),
                source: "the subscription ended".into(),
            }));
        };
        let subject = message.subject.to_string();
        if subject.starts_with("labhit.log.") {
            let mut line: LogLine = serde_json::from_slice(&message.payload)
                .map_err(|source| FleetError::Malformed { subject, source })?;
            // A redelivered task sends its lines again: the first copy stands.
            if line.n >= next_line {
                next_line = line.n + 1;
                // The server's clock is the log's: a worker's clock may be off by hours.
                line.entry.timestamp = labhit_runtime::scheduler::now();
                // The runner thread is gone only when the step was abandoned.
                let _ = lines.send(line.entry);
            }
            continue;
        }
        let reply: Reply = serde_json::from_slice(&message.payload)
            .map_err(|source| FleetError::Malformed { subject, source })?;
        if let Some(after) = reply.archive_after {
            let bytes = fleet.get_archive(after).await?;
            archive::replace(&bytes, &workspace).map_err(FleetError::from)?;
        }
        return Ok(reply);
    }
}

/// Steps 1–3 of the module documentation (the caller registered for the task's events).
async fn publish(
    fleet: &Fleet,
    task: &mut Task,
    task_id: &str,
    workspace: &std::path::Path,
) -> Result<(), Remote> {
    match advertised(fleet, &task.need).await? {
        Advertised::Yes => {}
        Advertised::Nobody => return Err(Remote::NoWorker(task.need.clone(), None)),
        Advertised::OtherProtocol { worker, protocol } => {
            return Err(Remote::NoWorker(
                task.need.clone(),
                Some((worker, protocol)),
            ));
        }
    }
    let bytes = archive::pack(workspace).map_err(FleetError::from)?;
    task.archive = fleet.put_archive(&bytes).await?;
    let key = task.key();
    let payload = serde_json::to_vec(&task).map_err(|source| FleetError::Malformed {
        subject: "labhit.task".to_owned(),
        source,
    })?;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", task_id);
    fleet
        .js
        .publish_with_headers(
            format!("labhit.task.{}", task.need.token()),
            headers,
            payload.into(),
        )
        .await
        .map_err(nats(format!("publishing task `{key}`")))?
        .await
        .map_err(nats(format!("publishing task `{key}`")))?;
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The message of a failed remote step, naming the worker.
fn on_worker(worker: &str, message: &str) -> String {
    format!("on worker `{worker}`: {message}")
}

impl Dispatcher for NatsDispatcher {
    fn name(&self) -> &str {
        "nats"
    }

    fn extension(
        &self,
        dispatch: &Dispatch<'_>,
        _runtime: &Runtime,
        ext: &LoadedExtension,
        request: StepRequest,
    ) -> Result<StepOutcome, StepError> {
        let started = std::time::Instant::now();
        let error = |failure: StepFailure| StepError {
            stage: dispatch.stage.to_string(),
            extension: ext.name().to_owned(),
            version: ext.version().clone(),
            failure: Box::new(failure),
            elapsed: started.elapsed(),
        };
        let task = Task {
            run_id: dispatch.run_id,
            stage: dispatch.stage.to_string(),
            attempt: dispatch.attempt,
            archive: labhit_protocol::ids::ArchiveId::from_uuid(uuid::Uuid::nil()),
            need: Need::Extension {
                reference: format!("{}@{}", ext.name(), ext.version()),
                contract: ext.contract_version().to_string(),
            },
            body: TaskBody::Extension {
                with: request.with.clone(),
                env: request.env.clone(),
            },
            timeout_ms: request.timeout.map(|t| t.as_millis() as u64),
            writes: ext.manifest().capabilities.filesystem == FilesystemAccess::ReadWrite,
        };
        let reply = self.run(task, dispatch, &request.log_sink, &request.cancellation);
        match reply {
            Err(Remote::Cancelled) => Err(error(StepFailure::Cancelled(
                "cancelled before a worker answered".to_owned(),
            ))),
            Err(e) => Err(error(StepFailure::Setup(e.to_string()))),
            Ok(reply) => match reply.outcome {
                Outcome::Step {
                    exit_code,
                    outputs,
                    artifacts,
                } => Ok(StepOutcome {
                    exit_code,
                    outputs,
                    artifacts,
                    committed_snapshot: None,
                    elapsed: started.elapsed(),
                }),
                Outcome::Failed { failure, message } => Err(error(match failure {
                    Failure::Cancelled => StepFailure::Cancelled(message),
                    Failure::Timeout { ms } => StepFailure::Timeout {
                        timeout: Duration::from_millis(ms),
                    },
                    Failure::Exit { status } => StepFailure::Exit { status },
                    Failure::Refused | Failure::Snapshot { .. } => {
                        StepFailure::Setup(on_worker(&reply.worker, &message))
                    }
                    Failure::Other => StepFailure::Failed(on_worker(&reply.worker, &message)),
                })),
                Outcome::Command { .. } => Err(error(StepFailure::InvalidOutput(on_worker(
                    &reply.worker,
                    "answered an extension step with a command result",
                )))),
            },
        }
    }

    /// A `hit` when the fleet's snapshots bucket has `tag` (the worker verifies it).
    fn find_snapshot(
        &self,
        tag: &SnapshotRef,
        _store: &SnapshotStore,
    ) -> Result<bool, SnapshotError> {
        self.handle
            .block_on(self.fleet.has_snapshot(tag))
            .map_err(|e| SnapshotError::Io {
                action: "look up",
                path: format!("{SNAPSHOTS_BUCKET}/{tag}").into(),
                source: std::io::Error::other(e.to_string()),
            })
    }

    fn command(
        &self,
        dispatch: &Dispatch<'_>,
        executor: &dyn Executor,
        input: &ExecutorInput,
        ctx: &ExecContext<'_>,
    ) -> Result<StepResult, ExecError> {
        let stage = dispatch.stage.to_string();
        let need = match executor.contract() {
            None => Need::Local,
            Some(contract) => Need::Extension {
                reference: executor.name().trim_start_matches("extension:").to_owned(),
                contract: contract.to_string(),
            },
        };
        let with = dispatch.definition.with.clone().map(Value::Object);
        let task = Task {
            run_id: dispatch.run_id,
            stage: stage.clone(),
            attempt: dispatch.attempt,
            archive: labhit_protocol::ids::ArchiveId::from_uuid(uuid::Uuid::nil()),
            need,
            body: TaskBody::Command {
                with,
                input: Box::new(input.clone()),
            },
            timeout_ms: ctx.timeout.map(|t| t.as_millis() as u64),
            writes: true,
        };
        let mut outputs = BTreeMap::new();
        // The worker obeys the cache decision with the fleet's snapshots (`crate::snapshots`).
        let result = host_side(None, input, ctx, executor.called_on_hit(), || {
            let reply = self.run(task, dispatch, &ctx.log, &ctx.cancellation);
            match reply {
                Err(Remote::Cancelled) => Err(ExecError::Cancelled {
                    stage: stage.clone(),
                }),
                Err(e) => Err(ExecError::Refused {
                    stage: stage.clone(),
                    message: e.to_string(),
                }),
                Ok(reply) => match reply.outcome {
                    Outcome::Command {
                        result,
                        outputs: reported,
                    } => {
                        outputs = reported;
                        Ok(result)
                    }
                    Outcome::Failed { failure, message } => Err(match failure {
                        Failure::Cancelled => ExecError::Cancelled {
                            stage: stage.clone(),
                        },
                        Failure::Timeout { ms } => ExecError::Timeout {
                            stage: stage.clone(),
                            timeout: Duration::from_millis(ms),
                        },
                        // The runner logs it and runs the step again as a miss.
                        Failure::Snapshot { tag } => ExecError::Snapshot {
                            stage: stage.clone(),
                            tag,
                            source: SnapshotError::Corrupt {
                                reason: on_worker(&reply.worker, &message),
                            },
                        },
                        _ => ExecError::Refused {
                            stage: stage.clone(),
                            message: on_worker(&reply.worker, &message),
                        },
                    }),
                    Outcome::Step { .. } => Err(ExecError::Refused {
                        stage: stage.clone(),
                        message: on_worker(
                            &reply.worker,
                            "answered a command step with an extension result",
                        ),
                    }),
                },
            }
        });
        ctx.outputs.extend(outputs);
        result
    }
}
