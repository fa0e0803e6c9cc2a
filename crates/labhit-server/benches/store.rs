//! Run store benchmarks: log ingest with group commit (`--sync normal` and `full`) and the
//! replay of a 1,000,000-entry run from the store.
//!
//! `cargo bench -p labhit-server --bench store`. Each ingest iteration appends
//! [`INGEST_ENTRIES`] entries, one entry per append call as the runtime's log capture does,
//! with many appends in flight, and waits for the last commit; divan's throughput counter
//! turns the time into entries per second.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::Utc;
use divan::counter::ItemsCount;
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::{LogLevel, LogStream};
use labhit_server::store::{CreateOutcome, NewLogEntry, NewRun, Store, StoreOptions, SyncMode};

/// Entries appended per ingest iteration.
const INGEST_ENTRIES: u64 = 100_000;
/// Entries of the replayed run.
const REPLAY_ENTRIES: u64 = 1_000_000;
/// Entries per read in the replay (a StreamLogs batch).
const REPLAY_BATCH: usize = 1_000;

fn main() {
    divan::main();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
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

async fn new_run(store: &Store) -> RunId {
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
    match store.create_run(new).await.expect("create run") {
        CreateOutcome::Created(run) => run.id,
        other => panic!("unexpected {other:?}"),
    }
}

fn open(dir: &std::path::Path, sync: SyncMode) -> Store {
    let mut options = StoreOptions::new(dir);
    options.sync = sync;
    options.log_cap = None;
    Store::open(options).expect("open store").0
}

fn ingest(bencher: divan::Bencher<'_, '_>, sync: SyncMode) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), sync);
    bencher
        .counter(ItemsCount::new(INGEST_ENTRIES))
        .with_inputs(|| {
            let entries: Vec<NewLogEntry> = (0..INGEST_ENTRIES).map(entry).collect();
            let run = rt.block_on(new_run(&store));
            (run, entries)
        })
        .bench_local_values(|(run, entries)| {
            rt.block_on(async {
                for e in entries {
                    // The receipt is dropped: appends return when queued.
                    drop(store.append_logs(run, vec![e]).await.expect("append"));
                }
                store.flush().await.expect("flush");
            });
        });
}

/// Log ingest, one entry per append, group commit, `--sync normal`.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn ingest_sync_normal(bencher: divan::Bencher<'_, '_>) {
    ingest(bencher, SyncMode::Normal);
}

/// Log ingest, one entry per append, group commit, `--sync full`.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn ingest_sync_full(bencher: divan::Bencher<'_, '_>) {
    ingest(bencher, SyncMode::Full);
}

struct Replay {
    _dir: tempfile::TempDir,
    store: Store,
    run: RunId,
    rt: tokio::runtime::Runtime,
}

/// A store holding one finished run of [`REPLAY_ENTRIES`] entries, built once.
fn replay_fixture() -> &'static Replay {
    static FIXTURE: OnceLock<Replay> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), SyncMode::Normal);
        let run = rt.block_on(async {
            let run = new_run(&store).await;
            for chunk in 0..REPLAY_ENTRIES / 1_000 {
                let entries = (chunk * 1_000..(chunk + 1) * 1_000).map(entry).collect();
                drop(store.append_logs(run, entries).await.expect("append"));
            }
            store
                .set_run_status(run, labhit_protocol::run::RunStatus::Succeeded, Utc::now())
                .await
                .expect("finish");
            run
        });
        Replay {
            _dir: dir,
            store,
            run,
            rt,
        }
    })
}

/// Replay of a finished 1,000,000-entry run from cursor 0 in batches of 1,000, as StreamLogs
/// reads it.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn replay_one_million(bencher: divan::Bencher<'_, '_>) {
    let fixture = replay_fixture();
    bencher
        .counter(ItemsCount::new(REPLAY_ENTRIES))
        .bench_local(|| {
            fixture.rt.block_on(async {
                let mut cursor = 0;
                let mut count = 0u64;
                loop {
                    let batch = fixture
                        .store
                        .read_logs(fixture.run, cursor, None, REPLAY_BATCH)
                        .await
                        .expect("read");
                    count += batch.entries.len() as u64;
                    cursor = batch.next_cursor;
                    if batch.is_complete() {
                        break;
                    }
                }
                assert_eq!(count, REPLAY_ENTRIES);
            });
        });
}
