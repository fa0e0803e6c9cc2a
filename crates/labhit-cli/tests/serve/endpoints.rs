//! The standard services next to `PipelineService`, over the wire with their own generated
//! clients: `grpc.health.v1` (serving, then not serving while the server drains) and server
//! reflection (the service is listed and its file descriptor is served).

use std::time::Duration;

use prost::Message as _;
use prost_types::FileDescriptorProto;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use crate::{Server, TestResult};

const SERVICE: &str = "labhit.v1.PipelineService";

fn health(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_serves_until_the_drain_starts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start(&dir.path().join("data"), &["--grace", "1s"]);
    let mut health_client = HealthClient::new(server.channel().await);
    for service in ["", SERVICE] {
        let status = health_client
            .check(health(service))
            .await?
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let unknown = health_client
        .check(health("no.such.Service"))
        .await
        .err()
        .ok_or("an unknown service has a status")?;
    assert_eq!(unknown.code(), Code::NotFound);

    // A watcher sees SERVING now and NOT_SERVING once SIGTERM starts the drain.
    let mut watch = health_client.watch(health(SERVICE)).await?.into_inner();
    let first = watch.message().await?.ok_or("watch ended")?;
    assert_eq!(first.status(), ServingStatus::Serving);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let next = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await??
        .ok_or("watch ended without NOT_SERVING")?;
    assert_eq!(next.status(), ServingStatus::NotServing);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .ok_or("the server did not exit after SIGTERM")?;
    assert!(status.success(), "{status:?}");
    Ok(())
}

/// One reflection request and its answer.
async fn reflect(
    server: &Server,
    request: MessageRequest,
) -> Result<MessageResponse, Box<dyn std::error::Error>> {
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tonic::codegen::tokio_stream::iter([request]))
        .await?
        .into_inner();
    let answer: ServerReflectionResponse = answers.message().await?.ok_or("no answer")?;
    Ok(answer.message_response.ok_or("empty answer")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_service_and_serves_its_descriptor() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(&dir.path().join("data"), &[]);

    let MessageResponse::ListServicesResponse(list) =
        reflect(&server, MessageRequest::ListServices(String::new())).await?
    else {
        return Err("not a service list".into());
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for name in [SERVICE, "grpc.health.v1.Health"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &server,
        MessageRequest::FileContainingSymbol(SERVICE.to_owned()),
    )
    .await?
    else {
        return Err("not a file descriptor".into());
    };
    let files = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()))
        .collect::<Result<Vec<_>, _>>()?;
    let file = files
        .iter()
        .find(|f| f.name() == "labhit/v1/pipeline.proto")
        .ok_or("labhit/v1/pipeline.proto not served")?;
    assert_eq!(file.package(), "labhit.v1");
    let service = file
        .service
        .iter()
        .find(|s| s.name() == "PipelineService")
        .ok_or("no PipelineService in the descriptor")?;
    let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    for method in [
        "TriggerPipeline",
        "GetPipelineRun",
        "StreamLogs",
        "ListPipelineRuns",
        "CancelPipelineRun",
        "ApprovePipelineStage",
    ] {
        assert!(
            methods.contains(&method),
            "{method} missing from {methods:?}"
        );
    }
    Ok(())
}
