//! `PipelineService`: each RPC checks its request ([`super::validate`]), then reads the store
//! or asks the [`Driver`]. `StreamLogs` is pull-based: it reads a committed batch at the
//! cursor, sends it, and waits on the run's committed-progress watch only when it has caught
//! up, so a slow follower never loses entries and every follower sees the same stream.

use std::pin::Pin;

use labhit_proto::v1;
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::{PipelineRun, RunStatus};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::validate;
use crate::auth::Caller;
use crate::driver::{Driver, Trigger};
use crate::server::Drain;
use crate::store::{RunFilter, RunRecord, Store, StoreError};

/// How many entries one store read returns at most.
pub const LOG_BATCH: usize = 1024;

/// Messages queued per stream before the sender waits for the client.
const STREAM_BUFFER: usize = 256;

/// The default and the largest `ListPipelineRuns` page.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

/// The gRPC status of a store error.
pub fn store_status(err: StoreError) -> Status {
    let message = err.to_string();
    match err {
        StoreError::RunNotFound { .. } | StoreError::StageNotFound { .. } => {
            Status::not_found(message)
        }
        StoreError::CursorOutOfRange { .. } => Status::out_of_range(message),
        StoreError::InvalidPageToken { .. } => {
            Status::invalid_argument(format!("`page_token`: {message}"))
        }
        StoreError::WriterStopped => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

/// The wire form of a stored run, with the approval facts only the wire carries.
fn wire_run(record: RunRecord) -> v1::PipelineRun {
    let mut run = v1::PipelineRun::from(record.run);
    for stage in &mut run.stages {
        let approval = StageId::new(stage.stage_id.clone())
            .ok()
            .and_then(|id| record.approvals.get(&id));
        if let Some(approval) = approval {
            stage.approved_by = Some(approval.by.clone());
            stage.approved_at = Some(labhit_proto::convert::timestamp(approval.at));
        }
    }
    run
}

/// The reference `PipelineService`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    store: Store,
    driver: Driver,
    drain: Drain,
}

impl Pipeline {
    /// A service over `store` that starts runs through `driver` and stops streaming when
    /// `drain` starts.
    pub fn new(store: Store, driver: Driver, drain: Drain) -> Self {
        Self {
            store,
            driver,
            drain,
        }
    }

    async fn record(&self, run: RunId) -> Result<RunRecord, Status> {
        self.store.get_run(run).await.map_err(store_status)
    }

    fn refuse_while_draining(&self) -> Result<(), Status> {
        if self.drain.is_draining() {
            return Err(Status::unavailable(
                "the server is shutting down; retry against the restarted server",
            ));
        }
        Ok(())
    }
}

/// The `StreamLogs` response stream.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<v1::StreamLogsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl labhit_proto::PipelineService for Pipeline {
    async fn trigger_pipeline(
        &self,
        request: Request<v1::TriggerPipelineRequest>,
    ) -> Result<Response<v1::TriggerPipelineResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let trigger = Trigger {
            repository: validate::required_text("repository", &request.repository)?.to_owned(),
            git_ref: validate::required_text("git_ref", &request.git_ref)?.to_owned(),
            pipeline_path: validate::pipeline_path(request.pipeline_path.as_deref())?,
            approved_stages: validate::approved_stages(&request.approved_stages)?,
            idempotency_key: validate::idempotency_key(request.idempotency_key.as_deref())?,
            caller,
        };
        self.refuse_while_draining()?;
        let run = self.driver.trigger(trigger).await?;
        let record = self.record(run.id).await?;
        Ok(Response::new(v1::TriggerPipelineResponse {
            run: Some(wire_run(record)),
        }))
    }

    async fn get_pipeline_run(
        &self,
        request: Request<v1::GetPipelineRunRequest>,
    ) -> Result<Response<v1::GetPipelineRunResponse>, Status> {
        let run = validate::run_id("run_id", &request.get_ref().run_id)?;
        let record = self.record(run).await?;
        Ok(Response::new(v1::GetPipelineRunResponse {
            run: Some(wire_run(record)),
        }))
    }

    type StreamLogsStream = LogStream;

    async fn stream_logs(
        &self,
        request: Request<v1::StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let request = request.into_inner();
        let run = validate::run_id("run_id", &request.run_id)?;
        let stage = request
            .stage_id
            .as_deref()
            .map(|s| validate::stage_id("stage_id", s))
            .transpose()?;
        let record = self.record(run).await?;
        if let Some(stage) = &stage
            && record.run.stage(stage.as_str()).is_none()
        {
            return Err(Status::not_found(format!(
                "run {run} has no stage `{stage}`"
            )));
        }
        // Subscribe before the first read: no commit can slip between them.
        let mut progress = self.store.subscribe(run).await.map_err(store_status)?;
        let first = self
            .store
            .read_logs(run, request.cursor, stage.clone(), LOG_BATCH)
            .await
            .map_err(store_status)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let store = self.store.clone();
        let drain = self.drain.clone();
        tokio::spawn(async move {
            let unavailable = || {
                Status::unavailable(
                    "the server is shutting down; reconnect with the last received sequence + 1 as cursor",
                )
            };
            let mut batch = first;
            // One drain future for the whole stream (not one per message); it is polled
            // only until it completes, since the stream ends right then.
            let draining = drain.started();
            tokio::pin!(draining);
            loop {
                // While this batch is sent, the next one (if already committed) is read on a
                // blocking thread: reading and sending overlap.
                let prefetch = (!batch.is_complete()
                    && batch.next_cursor < batch.log.next_sequence)
                    .then(|| {
                        let store = store.clone();
                        let stage = stage.clone();
                        let cursor = batch.next_cursor;
                        tokio::spawn(
                            async move { store.read_logs(run, cursor, stage, LOG_BATCH).await },
                        )
                    });
                for entry in batch.entries.drain(..) {
                    let message = v1::StreamLogsResponse {
                        entry: Some(entry.into()),
                    };
                    tokio::select! {
                        biased;
                        () = &mut draining => {
                            let _ = tx.send(Err(unavailable())).await;
                            return;
                        }
                        sent = tx.send(Ok(message)) => if sent.is_err() {
                            // The client went away.
                            return;
                        },
                    }
                }
                if batch.is_complete() {
                    return;
                }
                let read = match prefetch {
                    Some(read) => read.await.unwrap_or_else(|err| {
                        Err(StoreError::ReadAborted {
                            detail: err.to_string(),
                        })
                    }),
                    None => {
                        // Caught up: wait for the next commit, the drain or the client leaving.
                        tokio::select! {
                            biased;
                            () = &mut draining => {
                                let _ = tx.send(Err(unavailable())).await;
                                return;
                            }
                            () = tx.closed() => return,
                            changed = progress.changed() => if changed.is_err() {
                                let _ = tx.send(Err(unavailable())).await;
                                return;
                            },
                        }
                        store
                            .read_logs(run, batch.next_cursor, stage.clone(), LOG_BATCH)
                            .await
                    }
                };
                batch = match read {
                    Ok(batch) => batch,
                    Err(err) => {
                        let _ = tx.send(Err(store_status(err))).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_pipeline_runs(
        &self,
        request: Request<v1::ListPipelineRunsRequest>,
    ) -> Result<Response<v1::ListPipelineRunsResponse>, Status> {
        let request = request.into_inner();
        let mut statuses = Vec::with_capacity(request.status.len());
        for (index, value) in request.status.iter().enumerate() {
            let status = v1::RunStatus::try_from(*value)
                .ok()
                .and_then(|s| RunStatus::try_from(s).ok())
                .ok_or_else(|| {
                    validate::invalid(
                        &format!("status[{index}]"),
                        format_args!(
                            "{value} is not a run status (RUN_STATUS_QUEUED … RUN_STATUS_CANCELLED)"
                        ),
                    )
                })?;
            statuses.push(status);
        }
        let page_size = match usize::try_from(request.page_size) {
            Err(_) => {
                return Err(validate::invalid(
                    "page_size",
                    format_args!("is {}; it must not be negative", request.page_size),
                ));
            }
            Ok(0) => DEFAULT_PAGE,
            Ok(n) => n.min(MAX_PAGE),
        };
        let repository = request
            .repository
            .as_deref()
            .map(|r| validate::required_text("repository", r).map(str::to_owned))
            .transpose()?;
        let token = (!request.page_token.is_empty()).then_some(request.page_token);
        let page = self
            .store
            .list_runs(
                RunFilter {
                    repository,
                    statuses,
                },
                page_size,
                token,
            )
            .await
            .map_err(store_status)?;
        // The same wire form as `GetPipelineRun`, approvals included.
        let runs = page.runs.into_iter().map(wire_run).collect();
        Ok(Response::new(v1::ListPipelineRunsResponse {
            runs,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn cancel_pipeline_run(
        &self,
        request: Request<v1::CancelPipelineRunRequest>,
    ) -> Result<Response<v1::CancelPipelineRunResponse>, Status> {
        let run = validate::run_id("run_id", &request.get_ref().run_id)?;
        let record = self.record(run).await?;
        if !record.run.status.is_terminal() {
            self.refuse_while_draining()?;
            self.driver.cancel(run);
        }
        Ok(Response::new(v1::CancelPipelineRunResponse {
            run: Some(wire_run(record)),
        }))
    }

    async fn approve_pipeline_stage(
        &self,
        request: Request<v1::ApprovePipelineStageRequest>,
    ) -> Result<Response<v1::ApprovePipelineStageResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let run = validate::run_id("run_id", &request.run_id)?;
        let stage = validate::stage_id("stage_id", &request.stage_id)?;
        let record = self.record(run).await?;
        let Some(state) = record.run.stage(stage.as_str()) else {
            return Err(Status::not_found(format!(
                "run {run} has no stage `{stage}`"
            )));
        };
        if record.approvals.contains_key(&stage) {
            return Ok(Response::new(v1::ApprovePipelineStageResponse {
                run: Some(wire_run(record)),
            }));
        }
        if record.run.status.is_terminal() || state.status.is_terminal() {
            return Err(Status::failed_precondition(format!(
                "stage `{stage}` of run {run} has already ended ({}); it can no longer be approved",
                state.status
            )));
        }
        self.refuse_while_draining()?;
        match self.driver.approve(run, &stage, &caller)? {
            Some(approval) => {
                self.store
                    .record_approval(run, stage, approval)
                    .await
                    .map_err(store_status)?;
            }
            None => {
                return Err(Status::failed_precondition(format!(
                    "run {run} is not executing on this server; it can no longer be approved"
                )));
            }
        }
        let record = self.record(run).await?;
        Ok(Response::new(v1::ApprovePipelineStageResponse {
            run: Some(wire_run(record)),
        }))
    }
}

/// Whether a run is over (used by tests and the CLI).
pub fn is_finished(run: &PipelineRun) -> bool {
    run.status.is_terminal()
}
