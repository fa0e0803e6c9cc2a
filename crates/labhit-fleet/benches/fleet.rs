//! What the fleet costs, against a real `nats-server` on loopback (`tools/venv-install.sh nats`):
//!
//! * `dispatch`: a pipeline of 20 `run: "true"` stages run one at a time (`jobs` = 1), in
//!   process and through JetStream to one worker in this process; divide by 20 for the time
//!   per stage, the difference is the dispatch overhead (archive, task, logs, reply);
//! * `throughput`: 200 independent `run: "true"` stages through JetStream with 1, 2 and 4
//!   workers (two tasks each at a time);
//! * `archive`: packing a 10,000-file project, and packing plus storing it in the object store
//!   (after the first iteration the content is stored already: only the lookup remains).
//!
//! Run with `cargo bench -p labhit-fleet --bench fleet`.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use labhit_fleet::testing::NatsServer;
use labhit_fleet::worker::{Worker, WorkerConfig};
use labhit_fleet::{Fleet, FleetOptions, NatsDispatcher, archive};
use labhit_protocol::pipeline::PipelineFile;
use labhit_protocol::run::RunStatus;
use labhit_runtime::Cancellation;
use labhit_runtime::dispatch::{Dispatcher, InProcess};
use labhit_runtime::run::{RunPlace, RunRequest, prepare};

fn main() {
    divan::main();
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

static NATS: LazyLock<NatsServer> =
    LazyLock::new(|| NatsServer::start().expect("nats-server (run tools/venv-install.sh nats)"));

static FLEET: LazyLock<Fleet> = LazyLock::new(|| {
    RUNTIME
        .block_on(Fleet::connect(&NATS.url(), FleetOptions::default()))
        .expect("connect")
});

static SCRATCH: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("tempdir"));

/// Starts `n` workers more, so that `total` run.
fn workers(total: usize) {
    static STARTED: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
    let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
    while *started < total {
        let name = format!("bench-{}", *started);
        let worker = Worker::prepare(WorkerConfig {
            name: name.clone(),
            extensions: Vec::new(),
            concurrency: 2,
            work_dir: SCRATCH.path().join(name),
        })
        .expect("worker");
        let running = RUNTIME
            .block_on(worker.start(FLEET.clone(), Cancellation::new()))
            .expect("start");
        std::mem::forget(running);
        *started += 1;
    }
}

fn pipeline(stages: usize) -> PipelineFile {
    let mut text = String::from("engine: \"1\"\npipeline:\n  name: bench\n  stages:\n");
    for i in 0..stages {
        let _ = writeln!(text, "    s{i}: {{run: \"true\"}}");
    }
    PipelineFile::from_yaml(&text).expect("a valid pipeline")
}

fn run(file: &PipelineFile, dispatcher: Arc<dyn Dispatcher>, jobs: usize) {
    let dir = tempfile::tempdir_in(SCRATCH.path()).expect("tempdir");
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    std::fs::write(workspace.join("input.txt"), "x").expect("input");
    let mut request = RunRequest::new(
        file.clone(),
        RunPlace::Prepared {
            workspace,
            run_dir: dir.path().join("run"),
        },
    );
    request.jobs = jobs;
    request.dispatcher = dispatcher;
    let run = prepare(request).expect("prepare").execute();
    assert_eq!(run.status, RunStatus::Succeeded);
}

#[divan::bench(args = ["in-process", "nats"], sample_count = 5, sample_size = 1)]
fn dispatch(bencher: divan::Bencher<'_, '_>, how: &str) {
    let file = pipeline(20);
    let dispatcher: Arc<dyn Dispatcher> = match how {
        "nats" => {
            workers(1);
            Arc::new(NatsDispatcher::new(FLEET.clone(), RUNTIME.handle().clone()))
        }
        _ => Arc::new(InProcess),
    };
    bencher.bench(|| run(&file, Arc::clone(&dispatcher), 1));
}

#[divan::bench(args = [1, 2, 4], sample_count = 3, sample_size = 1)]
fn throughput(bencher: divan::Bencher<'_, '_>, total: usize) {
    let file = pipeline(200);
    workers(total);
    let dispatcher: Arc<dyn Dispatcher> =
        Arc::new(NatsDispatcher::new(FLEET.clone(), RUNTIME.handle().clone()));
    // Workers beyond `total` were started by an earlier argument: run this one first.
    bencher.bench(|| run(&file, Arc::clone(&dispatcher), 32));
}

static PROJECT: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..10_000 {
        let sub = dir.path().join(format!("d{}", i / 100));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(sub.join(format!("f{i}.txt")), format!("file {i}\n")).expect("write");
    }
    dir
});

#[divan::bench(sample_count = 5, sample_size = 1)]
fn archive_pack_10k_files(bencher: divan::Bencher<'_, '_>) {
    let root = PROJECT.path();
    bencher.bench(|| archive::pack(root).expect("pack"));
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn archive_pack_and_store_10k_files(bencher: divan::Bencher<'_, '_>) {
    let root = PROJECT.path();
    bencher.bench(|| {
        let bytes = archive::pack(root).expect("pack");
        RUNTIME.block_on(FLEET.put_archive(&bytes)).expect("put")
    });
}
