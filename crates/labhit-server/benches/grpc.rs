//! `PipelineService` over loopback gRPC: `cargo bench -p labhit-server --bench grpc`.
//!
//! One in-process server (the same `server::serve`, `Pipeline` service, `Driver` and SQLite
//! store `labhit serve` uses, no token) on `127.0.0.1:0`, and tonic clients on their own
//! connections. Figures and targets (issue 10):
//!
//! | bench | measures | target |
//! |---|---|---|
//! | `stream_logs_one_follower` | replay of a finished 1,000,000-entry run to one follower, from cursor 0 to the end of the stream | ≥ 500,000 entries/s |
//! | `stream_logs_hundred_followers` | 100 followers, each on its own connection, replaying a finished 100,000-entry run at once (divan's count is the aggregate) | report |
//! | `trigger_to_first_entry` | `TriggerPipeline` of a one-stage pipeline whose component is already compiled, then `StreamLogs` until its first entry arrives | ≤ 50 ms |
//! | `get_pipeline_run_16_clients` | 16 clients, each on its own connection, 250 `GetPipelineRun` calls each | report requests/s |
//!
//! The one-stage pipeline runs the runtime's test guest (`tests/fixtures/hostile/guest` of
//! `labhit-runtime`, an ordinary SDK extension) in its `log` mode; it is built once with
//! `labhit-guest-build` and compiled once by a warm-up run before the measured runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use chrono::Utc;
use divan::counter::ItemsCount;
use labhit_guest_build::{Builder, Target};
use labhit_proto::PipelineServiceClient;
use labhit_proto::v1::{GetPipelineRunRequest, StreamLogsRequest, TriggerPipelineRequest};
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::{LogLevel, LogStream, RunStatus};
use labhit_runtime::registry::Registry;
use labhit_server::auth::Tokens;
use labhit_server::driver::{Driver, DriverConfig};
use labhit_server::repos::{RepoSpec, Repos};
use labhit_server::server::{self, Drain};
use labhit_server::service::pipeline::Pipeline;
use labhit_server::store::{CreateOutcome, NewLogEntry, NewRun, Store, StoreOptions};
use tonic::Streaming;
use tonic::transport::Channel;

/// Entries of the run replayed to one follower.
const ONE_FOLLOWER_ENTRIES: u64 = 1_000_000;
/// Entries of the run replayed to [`FOLLOWERS`] followers at once.
const SHARED_ENTRIES: u64 = 100_000;
/// Concurrent followers of [`SHARED_ENTRIES`].
const FOLLOWERS: u64 = 100;
/// Concurrent `GetPipelineRun` clients.
const CLIENTS: u64 = 16;
/// `GetPipelineRun` calls per client and iteration.
const CALLS_PER_CLIENT: u64 = 250;

fn main() {
    divan::main();
}

const MANIFEST: &str = r#"[extension]
category = "bench"
name = "log"
version = "0.1.0"
contract = "^0.2"
description = "The runtime's test guest, logging a line"
component = "guest.wasm"

[limits]
memory = "16Mi"
timeout = "1m"
"#;

const PIPELINE: &str = r#"engine: "1"
pipeline:
  name: bench
  stages:
    hello:
      use: bench/log
      with:
        mode: log
        count: 1
"#;

/// The server, its store and the ids of the pre-filled runs.
struct Fixture {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    one_follower_run: RunId,
    shared_run: RunId,
    /// Streams of triggered runs whose rest was not read yet (drained between samples).
    pending: std::sync::Mutex<Vec<Streaming<labhit_proto::v1::StreamLogsResponse>>>,
    _dir: tempfile::TempDir,
}

fn entry(n: u64) -> NewLogEntry {
    NewLogEntry {
        stage: Some(StageId::new("build").expect("stage id")),
        level: LogLevel::Info,
        stream: LogStream::Stdout,
        timestamp: Utc::now(),
        message: format!("   Compiling crate-{n} v1.0.0 (/workspace/crates/crate-{n})"),
        fields: BTreeMap::new(),
    }
}

/// A finished run of `entries` log entries, written straight into the store.
async fn finished_run(store: &Store, entries: u64) -> RunId {
    let new = NewRun {
        pipeline: "bench".to_owned(),
        pipeline_path: ".labhit/pipeline.yaml".to_owned(),
        repository: "bench".to_owned(),
        git_ref: "main".to_owned(),
        commit: None,
        stages: vec![StageId::new("build").expect("stage id")],
        created_at: Utc::now(),
        idempotency: None,
    };
    let run = match store.create_run(new).await.expect("create run") {
        CreateOutcome::Created(run) => run.id,
        other => panic!("unexpected {other:?}"),
    };
    for chunk in 0..entries.div_ceil(1_000) {
        let end = ((chunk + 1) * 1_000).min(entries);
        let batch = (chunk * 1_000..end).map(entry).collect();
        drop(store.append_logs(run, batch).await.expect("append"));
    }
    store
        .set_run_status(run, RunStatus::Succeeded, Utc::now())
        .await
        .expect("finish");
    run
}

/// A git repository whose `main` holds [`PIPELINE`].
fn repository(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join(".labhit")).expect("mkdir");
    std::fs::write(repo.join(".labhit/pipeline.yaml"), PIPELINE).expect("write pipeline");
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["commit", "-q", "-m", "pipeline"],
    ] {
        let status = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args([
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@example.com",
            ])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("running git");
        assert!(status.success(), "git {args:?}");
    }
    repo
}

/// An extensions dir holding the test guest as `bench/log`.
fn extensions(dir: &Path) -> PathBuf {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let guest = crate_dir.join("../labhit-runtime/tests/fixtures/hostile/guest");
    let component = Builder::for_workspace(&crate_dir.join("../.."))
        .build(&guest, Target::P2)
        .unwrap_or_else(|err| panic!("building the bench guest: {err}"))
        .component;
    let bundle = dir.join("extensions/bench/log");
    std::fs::create_dir_all(&bundle).expect("mkdir bundle");
    std::fs::copy(component, bundle.join("guest.wasm")).expect("copy component");
    std::fs::write(bundle.join("extension.toml"), MANIFEST).expect("write manifest");
    dir.join("extensions")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let repo = repository(dir.path());
        let extensions = extensions(dir.path());
        let (addr, one_follower_run, shared_run) = rt.block_on(async {
            let (store, _) = Store::open(StoreOptions::new(&data_dir)).expect("open store");
            let one = finished_run(&store, ONE_FOLLOWER_ENTRIES).await;
            let shared = finished_run(&store, SHARED_ENTRIES).await;
            let spec: RepoSpec = format!("bench={}", repo.display())
                .parse()
                .expect("repo spec");
            let repos = Repos::open([spec], &data_dir).expect("register repo");
            let driver = Driver::new(
                store.clone(),
                Arc::new(repos),
                DriverConfig {
                    runs_dir: data_dir.join("runs"),
                    registry: Arc::new(Registry::discover(&[extensions])),
                    jobs: 2,
                    dispatcher: Arc::new(labhit_runtime::dispatch::InProcess),
                    snapshots: None,
                },
            );
            let drain = Drain::new();
            let tokens = Tokens::none();
            let listener = server::bind("127.0.0.1:0".parse().expect("addr"), &tokens)
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let service = Pipeline::new(store, driver, drain.clone());
            tokio::spawn(server::serve(
                listener,
                service,
                tokens,
                drain,
                std::future::pending(),
            ));
            (addr, one, shared)
        });
        let fixture = Fixture {
            rt,
            addr,
            one_follower_run,
            shared_run,
            pending: std::sync::Mutex::new(Vec::new()),
            _dir: dir,
        };
        // Warm-up: compiles the component into the runtime's cache.
        fixture.rt.block_on(async {
            let mut client = fixture.client().await;
            let mut stream = trigger_and_follow(&mut client).await;
            while stream.message().await.expect("stream").is_some() {}
        });
        fixture
    })
}

impl Fixture {
    async fn client(&self) -> PipelineServiceClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        PipelineServiceClient::new(channel)
    }

    async fn clients(&self, n: u64) -> Vec<PipelineServiceClient<Channel>> {
        let mut clients = Vec::new();
        for _ in 0..n {
            clients.push(self.client().await);
        }
        clients
    }

    /// Reads the rest of every stream a trigger left open, so runs do not pile up.
    fn drain_pending(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending"));
        self.rt.block_on(async {
            for mut stream in pending {
                while stream.message().await.expect("stream").is_some() {}
            }
        });
    }
}

/// Replays `run` from cursor 0 to the end of the stream; returns the number of entries.
async fn replay(client: &mut PipelineServiceClient<Channel>, run: RunId) -> u64 {
    let mut stream = client
        .stream_logs(StreamLogsRequest {
            run_id: run.to_string(),
            stage_id: None,
            cursor: 0,
        })
        .await
        .expect("StreamLogs")
        .into_inner();
    let mut count = 0;
    while stream.message().await.expect("stream").is_some() {
        count += 1;
    }
    count
}

async fn trigger_and_follow(
    client: &mut PipelineServiceClient<Channel>,
) -> Streaming<labhit_proto::v1::StreamLogsResponse> {
    let run = client
        .trigger_pipeline(TriggerPipelineRequest {
            repository: "bench".to_owned(),
            git_ref: "main".to_owned(),
            pipeline_path: None,
            approved_stages: Vec::new(),
            idempotency_key: None,
        })
        .await
        .expect("TriggerPipeline")
        .into_inner()
        .run
        .expect("run");
    client
        .stream_logs(StreamLogsRequest {
            run_id: run.id,
            stage_id: None,
            cursor: 0,
        })
        .await
        .expect("StreamLogs")
        .into_inner()
}

/// A finished 1,000,000-entry run replayed to one follower.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn stream_logs_one_follower(bencher: divan::Bencher<'_, '_>) {
    let fixture = fixture();
    let mut client = fixture.rt.block_on(fixture.client());
    bencher
        .counter(ItemsCount::new(ONE_FOLLOWER_ENTRIES))
        .bench_local(|| {
            let count = fixture
                .rt
                .block_on(replay(&mut client, fixture.one_follower_run));
            assert_eq!(count, ONE_FOLLOWER_ENTRIES);
        });
}

/// A finished 100,000-entry run replayed to 100 followers at once.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn stream_logs_hundred_followers(bencher: divan::Bencher<'_, '_>) {
    let fixture = fixture();
    let clients = fixture.rt.block_on(fixture.clients(FOLLOWERS));
    bencher
        .counter(ItemsCount::new(SHARED_ENTRIES * FOLLOWERS))
        .bench_local(|| {
            let run = fixture.shared_run;
            let tasks: Vec<_> = clients
                .iter()
                .cloned()
                .map(|mut client| {
                    fixture
                        .rt
                        .spawn(async move { replay(&mut client, run).await })
                })
                .collect();
            fixture.rt.block_on(async {
                for task in tasks {
                    assert_eq!(task.await.expect("follower"), SHARED_ENTRIES);
                }
            });
        });
}

/// Trigger → the first log entry of the run reaches a follower.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn trigger_to_first_entry(bencher: divan::Bencher<'_, '_>) {
    let fixture = fixture();
    let mut client = fixture.rt.block_on(fixture.client());
    bencher
        .with_inputs(|| fixture.drain_pending())
        .bench_local_values(|()| {
            let stream = fixture.rt.block_on(async {
                let mut stream = trigger_and_follow(&mut client).await;
                let first = stream.message().await.expect("stream");
                assert!(first.is_some(), "the run logged nothing");
                stream
            });
            fixture.pending.lock().expect("pending").push(stream);
        });
    fixture.drain_pending();
}

/// 16 clients calling `GetPipelineRun` at once.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn get_pipeline_run_16_clients(bencher: divan::Bencher<'_, '_>) {
    let fixture = fixture();
    let clients = fixture.rt.block_on(fixture.clients(CLIENTS));
    let run = fixture.one_follower_run.to_string();
    bencher
        .counter(ItemsCount::new(CLIENTS * CALLS_PER_CLIENT))
        .bench_local(|| {
            let tasks: Vec<_> = clients
                .iter()
                .cloned()
                .map(|mut client| {
                    let run = run.clone();
                    fixture.rt.spawn(async move {
                        for _ in 0..CALLS_PER_CLIENT {
                            client
                                .get_pipeline_run(GetPipelineRunRequest {
                                    run_id: run.clone(),
                                })
                                .await
                                .expect("GetPipelineRun");
                        }
                    })
                })
                .collect();
            fixture.rt.block_on(async {
                for task in tasks {
                    task.await.expect("client");
                }
            });
        });
}
