//! End-to-end proof that the checked-in stubs work: a real tonic server on `127.0.0.1:0` with a
//! tiny in-memory implementation of `PipelineService`, called over HTTP/2 with the generated
//! client. It also pins the `StreamLogs` cursor semantics the proto documents: entries from
//! the cursor on, in order, optionally filtered by stage, and the stream completes with `OK`.

use std::net::SocketAddr;

use labhit_proto::v1::{
    ApprovePipelineStageRequest, ApprovePipelineStageResponse, CancelPipelineRunRequest,
    CancelPipelineRunResponse, GetPipelineRunRequest, GetPipelineRunResponse,
    ListPipelineRunsRequest, ListPipelineRunsResponse, LogEntry, LogLevel, LogStream, PipelineRun,
    RunStatus, StageRun, StageStatus, StreamLogsRequest, StreamLogsResponse,
    TriggerPipelineRequest, TriggerPipelineResponse,
};
use labhit_proto::{PipelineService, PipelineServiceClient, PipelineServiceServer};
use prost_types::Timestamp;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const RUN_ID: &str = "0191b3c4-5d6e-7f80-91a2-b3c4d5e6f708";

/// A single finished run with a five-entry log, served from memory.
struct FakeService {
    run: PipelineRun,
    log: Vec<LogEntry>,
}

impl FakeService {
    fn new() -> Self {
        let at = |seconds| Timestamp { seconds, nanos: 0 };
        let run = PipelineRun {
            id: RUN_ID.to_owned(),
            pipeline_name: "demo".to_owned(),
            repository: "https://example.com/demo.git".to_owned(),
            git_ref: "main".to_owned(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            status: RunStatus::Succeeded.into(),
            created_at: Some(at(1_700_000_000)),
            started_at: Some(at(1_700_000_001)),
            finished_at: Some(at(1_700_000_009)),
            stages: vec![StageRun {
                stage_id: "build".to_owned(),
                status: StageStatus::Succeeded.into(),
                started_at: Some(at(1_700_000_001)),
                finished_at: Some(at(1_700_000_008)),
                exit_code: Some(0),
                reason: None,
                outputs: [("version".to_owned(), "1.2.3".to_owned())].into(),
                artifacts: Vec::new(),
                approved_by: None,
                approved_at: None,
            }],
        };
        let stages = [None, Some("fetch"), Some("build"), Some("build"), None];
        let log = (0u64..)
            .zip(stages)
            .map(|(sequence, stage)| LogEntry {
                run_id: RUN_ID.to_owned(),
                sequence,
                stage_id: stage.map(str::to_owned),
                level: LogLevel::Info.into(),
                stream: if stage.is_some() {
                    LogStream::Stdout.into()
                } else {
                    LogStream::System.into()
                },
                timestamp: Some(Timestamp {
                    seconds: 1_700_000_000 + i64::try_from(sequence).unwrap_or_default(),
                    nanos: 0,
                }),
                message: format!("line {sequence}"),
                fields: Default::default(),
            })
            .collect();
        Self { run, log }
    }

    fn find_run(&self, run_id: &str) -> Result<&PipelineRun, Status> {
        if run_id.is_empty() {
            return Err(Status::invalid_argument("run_id is empty"));
        }
        if run_id == self.run.id {
            Ok(&self.run)
        } else {
            Err(Status::not_found(format!("run {run_id} not found")))
        }
    }
}

#[tonic::async_trait]
impl PipelineService for FakeService {
    async fn trigger_pipeline(
        &self,
        request: Request<TriggerPipelineRequest>,
    ) -> Result<Response<TriggerPipelineResponse>, Status> {
        let request = request.into_inner();
        if request.repository.is_empty() {
            return Err(Status::invalid_argument("repository is empty"));
        }
        let run = PipelineRun {
            repository: request.repository,
            git_ref: request.git_ref,
            commit: None,
            status: RunStatus::Queued.into(),
            started_at: None,
            finished_at: None,
            stages: Vec::new(),
            ..self.run.clone()
        };
        Ok(Response::new(TriggerPipelineResponse { run: Some(run) }))
    }

    async fn get_pipeline_run(
        &self,
        request: Request<GetPipelineRunRequest>,
    ) -> Result<Response<GetPipelineRunResponse>, Status> {
        let run = self.find_run(&request.get_ref().run_id)?.clone();
        Ok(Response::new(GetPipelineRunResponse { run: Some(run) }))
    }

    type StreamLogsStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<StreamLogsResponse, Status>>>;

    async fn stream_logs(
        &self,
        request: Request<StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let request = request.into_inner();
        self.find_run(&request.run_id)?;
        let next = self.log.last().map_or(0, |entry| entry.sequence + 1);
        if request.cursor > next {
            return Err(Status::out_of_range(format!(
                "cursor {} is beyond the next sequence {next}",
                request.cursor
            )));
        }
        // The run is finished, so replaying the history is the whole stream.
        let entries: Vec<_> = self
            .log
            .iter()
            .filter(|entry| entry.sequence >= request.cursor)
            .filter(|entry| {
                request
                    .stage_id
                    .as_ref()
                    .is_none_or(|stage| entry.stage_id.as_ref() == Some(stage))
            })
            .map(|entry| {
                Ok(StreamLogsResponse {
                    entry: Some(entry.clone()),
                })
            })
            .collect();
        Ok(Response::new(tokio_stream::iter(entries)))
    }

    async fn list_pipeline_runs(
        &self,
        _request: Request<ListPipelineRunsRequest>,
    ) -> Result<Response<ListPipelineRunsResponse>, Status> {
        Ok(Response::new(ListPipelineRunsResponse {
            runs: vec![self.run.clone()],
            next_page_token: String::new(),
        }))
    }

    async fn cancel_pipeline_run(
        &self,
        request: Request<CancelPipelineRunRequest>,
    ) -> Result<Response<CancelPipelineRunResponse>, Status> {
        // The only run is finished: cancelling it changes nothing.
        let run = self.find_run(&request.get_ref().run_id)?.clone();
        Ok(Response::new(CancelPipelineRunResponse { run: Some(run) }))
    }

    async fn approve_pipeline_stage(
        &self,
        request: Request<ApprovePipelineStageRequest>,
    ) -> Result<Response<ApprovePipelineStageResponse>, Status> {
        self.find_run(&request.get_ref().run_id)?;
        Err(Status::failed_precondition("the run has already finished"))
    }
}

/// Serves [`FakeService`] on an ephemeral port and returns a connected client.
async fn start() -> Result<PipelineServiceClient<Channel>, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener);
    tokio::spawn(
        Server::builder()
            .serve_with_incoming(PipelineServiceServer::new(FakeService::new()), incoming),
    );
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(PipelineServiceClient::new(channel))
}

/// Collects the sequences of a `StreamLogs` call; the stream must end with `OK`.
async fn sequences(
    client: &mut PipelineServiceClient<Channel>,
    request: StreamLogsRequest,
) -> Result<Vec<u64>, Status> {
    let mut stream = client.stream_logs(request).await?.into_inner();
    let mut out = Vec::new();
    while let Some(message) = stream.message().await? {
        let entry = message
            .entry
            .ok_or_else(|| Status::internal("entry missing"))?;
        out.push(entry.sequence);
    }
    Ok(out)
}

#[tokio::test]
async fn trigger_get_and_stream_over_a_real_connection() -> TestResult {
    let mut client = start().await?;

    let triggered = client
        .trigger_pipeline(TriggerPipelineRequest {
            repository: "https://example.com/other.git".to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            pipeline_path: None,
            approved_stages: vec!["deploy".to_owned()],
            idempotency_key: Some("retry-1".to_owned()),
        })
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    assert_eq!(triggered.id, RUN_ID);
    assert_eq!(triggered.status(), RunStatus::Queued);
    assert_eq!(triggered.repository, "https://example.com/other.git");

    let run = client
        .get_pipeline_run(GetPipelineRunRequest {
            run_id: RUN_ID.to_owned(),
        })
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    assert_eq!(run.status(), RunStatus::Succeeded);
    assert_eq!(run.stages.len(), 1);
    assert_eq!(run.stages[0].status(), StageStatus::Succeeded);
    assert_eq!(run.stages[0].outputs["version"], "1.2.3");

    let all = StreamLogsRequest {
        run_id: RUN_ID.to_owned(),
        stage_id: None,
        cursor: 0,
    };
    assert_eq!(sequences(&mut client, all.clone()).await?, [0, 1, 2, 3, 4]);
    // Resuming after entry 1 (cursor = its sequence + 1) loses nothing and repeats nothing.
    let resumed = StreamLogsRequest {
        cursor: 2,
        ..all.clone()
    };
    assert_eq!(sequences(&mut client, resumed).await?, [2, 3, 4]);
    // A stage filter keeps the run-wide sequences (with gaps) and the cursor semantics.
    let build = StreamLogsRequest {
        stage_id: Some("build".to_owned()),
        cursor: 3,
        ..all.clone()
    };
    assert_eq!(sequences(&mut client, build).await?, [3]);
    // A cursor at the end of a finished run's log yields an empty stream that completes.
    let at_end = StreamLogsRequest { cursor: 5, ..all };
    assert_eq!(sequences(&mut client, at_end).await?, Vec::<u64>::new());
    Ok(())
}

#[tokio::test]
async fn errors_travel_as_status_codes() -> TestResult {
    let mut client = start().await?;

    let empty_repository = client
        .trigger_pipeline(TriggerPipelineRequest::default())
        .await
        .err()
        .ok_or("an empty repository was accepted")?;
    assert_eq!(empty_repository.code(), Code::InvalidArgument);

    let missing = client
        .get_pipeline_run(GetPipelineRunRequest {
            run_id: "00000000-0000-0000-0000-000000000000".to_owned(),
        })
        .await
        .err()
        .ok_or("an unknown run was found")?;
    assert_eq!(missing.code(), Code::NotFound);

    let beyond = sequences(
        &mut client,
        StreamLogsRequest {
            run_id: RUN_ID.to_owned(),
            stage_id: None,
            cursor: 6,
        },
    )
    .await
    .err()
    .ok_or("a cursor beyond the log was accepted")?;
    assert_eq!(beyond.code(), Code::OutOfRange);
    Ok(())
}

#[tokio::test]
async fn the_added_rpcs_are_served() -> TestResult {
    let mut client = start().await?;
    let listed = client
        .list_pipeline_runs(ListPipelineRunsRequest {
            repository: None,
            status: vec![RunStatus::Succeeded.into()],
            page_size: 10,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(listed.runs.len(), 1);
    assert!(listed.next_page_token.is_empty());

    let cancelled = client
        .cancel_pipeline_run(CancelPipelineRunRequest {
            run_id: RUN_ID.to_owned(),
        })
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    assert_eq!(cancelled.status(), RunStatus::Succeeded);

    let approve = client
        .approve_pipeline_stage(ApprovePipelineStageRequest {
            run_id: RUN_ID.to_owned(),
            stage_id: "build".to_owned(),
        })
        .await
        .err()
        .ok_or("approving a stage of a finished run succeeded")?;
    assert_eq!(approve.code(), Code::FailedPrecondition);
    Ok(())
}
