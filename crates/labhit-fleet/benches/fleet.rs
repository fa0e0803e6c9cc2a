//! What the fleet costs, against a real `nats-server` on loopback (`tools/venv-install.sh nats`):
//! `cargo bench -p labhit-fleet --bench fleet` (issue 14).
//!
//! Every stage is a no-op extension step: the runtime's test guest
//! (`labhit-runtime/tests/fixtures/hostile/guest`, built with the SDK) as `bench/noop`, run in
//! its `noop` mode under a manifest that grants nothing. The server side (runner and
//! [`NatsDispatcher`]), the workers and their runtimes live in this process, `nats-server` in
//! its own; all of them share the machine's cores.
//!
//! | bench | measures |
//! |---|---|
//! | `dispatch(in-process / nats)` | a run of 20 independent no-op stages, one at a time (`jobs` = 1), in process and through JetStream to one worker; ÷ 20 is the time per stage, the difference the dispatch overhead (pack the workspace, register for the task's events, publish, the worker's pull, cancellation look-ups, unpack and ack, the log line and the reply) |
//! | `throughput(workers)` | a run of 1,000 independent no-op stages through JetStream with 1, 2 and 4 workers (`--concurrency 1`, the CLI's default), the runner keeping 32 stages in flight; divan shows stages/s |
//! | `throughput_in_process` | the same 1,000 stages in process with `jobs` = 2, for reference |
//! | `archive_pack_10k_files` | packing a 10,000-file project (the dispatcher packs a stage's workspace before publishing it) |
//! | `archive_first_upload_10k_files` | storing a packed archive the object store does not hold yet (each sample's project differs in one small file, packed untimed) |
//! | `archive_identical_upload_10k_files` | storing the same archive again: content-addressed, so only a lookup |
//!
//! Before measuring, each part checks it does the work it claims: every run succeeds with
//! every stage succeeded, and a second upload of an identical archive adds no byte and no
//! message to the object store's stream (the bytes are printed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use divan::counter::ItemsCount;
use labhit_fleet::testing::NatsServer;
use labhit_fleet::worker::{Running, Worker, WorkerConfig};
use labhit_fleet::{Fleet, FleetOptions, NatsDispatcher, archive};
use labhit_guest_build::{Builder, Target};
use labhit_protocol::ids::ArchiveId;
use labhit_protocol::pipeline::PipelineFile;
use labhit_protocol::run::{RunStatus, StageStatus};
use labhit_runtime::dispatch::{Dispatcher, InProcess};
use labhit_runtime::registry::Registry;
use labhit_runtime::run::{RunPlace, RunRequest, prepare};
use labhit_runtime::{Cancellation, Runtime, RuntimeConfig};

fn main() {
    divan::main();
    if let Some(server) = NATS.get() {
        server.lock().unwrap_or_else(|p| p.into_inner()).kill();
    }
}

/// Stages of a `dispatch` run.
const DISPATCH_STAGES: usize = 20;

/// Stages of a `throughput` run.
const THROUGHPUT_STAGES: usize = 1000;

const MANIFEST: &str = r#"[extension]
category = "bench"
name = "noop"
version = "0.1.0"
contract = "^0.2"
description = "The runtime's test guest in its noop mode"
component = "guest.wasm"

[limits]
memory = "16Mi"
timeout = "1m"
"#;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

/// The server; killed when the benches end (a static is never dropped).
static NATS: OnceLock<Mutex<NatsServer>> = OnceLock::new();

fn nats_url() -> String {
    NATS.get_or_init(|| {
        Mutex::new(NatsServer::start().expect("nats-server (run tools/venv-install.sh nats)"))
    })
    .lock()
    .unwrap_or_else(|p| p.into_inner())
    .url()
}

static FLEET: LazyLock<Fleet> = LazyLock::new(|| {
    RUNTIME
        .block_on(Fleet::connect(&nats_url(), FleetOptions::default()))
        .expect("connect")
});

static SCRATCH: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("tempdir"));

/// The extensions dir holding the no-op guest as `bench/noop`.
static EXTENSIONS: LazyLock<PathBuf> = LazyLock::new(|| {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let guest = crate_dir.join("../labhit-runtime/tests/fixtures/hostile/guest");
    let component = Builder::for_workspace(&crate_dir.join("../.."))
        .build(&guest, Target::P2)
        .unwrap_or_else(|err| panic!("building the bench guest: {err}"))
        .component;
    let dir = SCRATCH.path().join("extensions");
    let bundle = dir.join("bench/noop");
    std::fs::create_dir_all(&bundle).expect("mkdir bundle");
    std::fs::copy(component, bundle.join("guest.wasm")).expect("copy component");
    std::fs::write(bundle.join("extension.toml"), MANIFEST).expect("write manifest");
    dir
});

static REGISTRY: LazyLock<Arc<Registry>> = LazyLock::new(|| {
    let registry = Registry::discover(std::slice::from_ref(&*EXTENSIONS));
    assert!(registry.invalid().is_empty(), "{:?}", registry.invalid());
    Arc::new(registry)
});

/// The server side's runtime, shared by every run (compiled once, into a cache).
static HOST: LazyLock<Runtime> = LazyLock::new(|| {
    Runtime::new(RuntimeConfig::with_cache_dir(
        SCRATCH.path().join("compile-cache"),
    ))
    .expect("runtime")
});

/// The workers running now, each with its stop flag.
static WORKERS: Mutex<Vec<(Cancellation, Running)>> = Mutex::new(Vec::new());

/// Makes exactly `total` workers serve the fleet: starts more or stops the extra ones.
fn workers(total: usize) {
    let mut running = WORKERS.lock().unwrap_or_else(|p| p.into_inner());
    while running.len() > total {
        if let Some((stop, worker)) = running.pop() {
            stop.cancel();
            RUNTIME.block_on(worker.wait());
        }
    }
    while running.len() < total {
        let name = format!("bench-{}", running.len());
        let worker = Worker::prepare(WorkerConfig {
            name: name.clone(),
            extensions: vec![EXTENSIONS.clone()],
            concurrency: 1,
            work_dir: SCRATCH.path().join(name),
        })
        .expect("worker");
        assert!(worker.problems.is_empty(), "{:?}", worker.problems);
        let stop = Cancellation::new();
        let started = RUNTIME
            .block_on(worker.start(FLEET.clone(), stop.clone()))
            .expect("start");
        running.push((stop, started));
    }
}

fn pipeline(stages: usize) -> PipelineFile {
    let mut text = String::from("engine: \"1\"\npipeline:\n  name: bench\n  stages:\n");
    for i in 0..stages {
        let _ = writeln!(text, "    s{i}: {{use: bench/noop, with: {{mode: noop}}}}");
    }
    PipelineFile::from_yaml(&text).expect("a valid pipeline")
}

/// Runs `file` and checks that the run and each of its stages succeeded.
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
    request.registry = Arc::clone(&REGISTRY);
    request.runtime = Some(HOST.clone());
    let run = prepare(request).expect("prepare").execute();
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.stages.len(), file.pipeline.stages.len());
    assert!(
        run.stages
            .iter()
            .all(|stage| stage.status == StageStatus::Succeeded),
        "{run:#?}"
    );
}

fn nats_dispatcher() -> Arc<dyn Dispatcher> {
    Arc::new(NatsDispatcher::new(FLEET.clone(), RUNTIME.handle().clone()))
}

#[divan::bench(args = ["in-process", "nats"], sample_count = 10, sample_size = 1)]
fn dispatch(bencher: divan::Bencher<'_, '_>, how: &str) {
    let file = pipeline(DISPATCH_STAGES);
    let dispatcher: Arc<dyn Dispatcher> = match how {
        "nats" => {
            workers(1);
            nats_dispatcher()
        }
        _ => Arc::new(InProcess),
    };
    // Warm: the component compiled, the consumers open.
    run(&file, Arc::clone(&dispatcher), 1);
    bencher.bench(|| run(&file, Arc::clone(&dispatcher), 1));
}

#[divan::bench(args = [1, 2, 4], sample_count = 3, sample_size = 1)]
fn throughput(bencher: divan::Bencher<'_, '_>, total: usize) {
    let file = pipeline(THROUGHPUT_STAGES);
    workers(total);
    let dispatcher = nats_dispatcher();
    bencher
        .counter(ItemsCount::new(THROUGHPUT_STAGES))
        .bench(|| run(&file, Arc::clone(&dispatcher), 32));
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn throughput_in_process(bencher: divan::Bencher<'_, '_>) {
    let file = pipeline(THROUGHPUT_STAGES);
    let dispatcher: Arc<dyn Dispatcher> = Arc::new(InProcess);
    bencher
        .counter(ItemsCount::new(THROUGHPUT_STAGES))
        .bench(|| run(&file, Arc::clone(&dispatcher), 2));
}

/// A generated 10,000-file project (100 per directory, small text files).
static PROJECT: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..10_000 {
        let sub = dir.path().join(format!("d{}", i / 100));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(sub.join(format!("f{i}.txt")), format!("file {i}\n")).expect("write");
    }
    dir
});

/// Archives made by [`unique_archive`].
static NONCE: AtomicU64 = AtomicU64::new(0);

/// The project with one small file changed, packed: an archive the object store cannot hold
/// yet, without deleting anything between samples.
fn unique_archive() -> Vec<u8> {
    let nonce = NONCE.fetch_add(1, Ordering::SeqCst);
    std::fs::write(PROJECT.path().join("nonce.txt"), format!("{nonce}\n")).expect("nonce");
    archive::pack(PROJECT.path()).expect("pack")
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            if entry.file_type().expect("file type").is_dir() {
                count_files(&entry.path())
            } else {
                1
            }
        })
        .sum()
}

/// Bytes and messages of the object store's stream.
fn stored() -> (u64, u64) {
    // Connected before `block_on`: connecting blocks on the runtime itself.
    let fleet: &Fleet = &FLEET;
    RUNTIME.block_on(async {
        let mut stream = fleet
            .js
            .get_stream(format!("OBJ_{}", labhit_fleet::wire::ARCHIVES_BUCKET))
            .await
            .expect("the archives stream");
        let info = stream.info().await.expect("stream info");
        (info.state.bytes, info.state.messages)
    })
}

fn put(bytes: &[u8]) -> ArchiveId {
    RUNTIME.block_on(FLEET.put_archive(bytes)).expect("put")
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn archive_pack_10k_files(bencher: divan::Bencher<'_, '_>) {
    let root = PROJECT.path();
    bencher.bench(|| archive::pack(root).expect("pack"));
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn archive_first_upload_10k_files(bencher: divan::Bencher<'_, '_>) {
    // Each sample stores an archive of new content: check that it really adds its bytes.
    let bytes = unique_archive();
    let back = tempfile::tempdir().expect("tempdir");
    archive::unpack(&bytes, back.path()).expect("unpack");
    assert_eq!(
        count_files(back.path()),
        10_001,
        "the project and its nonce"
    );
    let before = stored();
    put(&bytes);
    let after = stored();
    assert!(
        after.0 >= before.0 + bytes.len() as u64,
        "a new archive of {} bytes stored: {before:?} → {after:?}",
        bytes.len()
    );
    bencher
        .with_inputs(unique_archive)
        .bench_values(|bytes| put(&bytes));
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn archive_identical_upload_10k_files(bencher: divan::Bencher<'_, '_>) {
    let bytes = unique_archive();
    let before = stored();
    let id = put(&bytes);
    let once = stored();
    let again = put(&bytes);
    let twice = stored();
    assert_eq!(id, again);
    assert!(
        once.0 >= before.0 + bytes.len() as u64,
        "the first upload stored {before:?} → {once:?}"
    );
    assert_eq!(once, twice, "an identical archive is stored once");
    eprintln!(
        "archive of 10,001 files: {} bytes packed; object store stream: {} → {} bytes \
         (first upload), {} bytes after the identical second upload",
        bytes.len(),
        before.0,
        once.0,
        twice.0
    );
    bencher.bench(|| put(&bytes));
}
