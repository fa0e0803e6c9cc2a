//! `kill -9` of a process writing to the store: every entry it acknowledged as committed is
//! there after a restart, exactly once, with gapless sequences, and the run it left in flight
//! is marked interrupted.
//!
//! A test binary without the libtest harness: run normally it is the parent; started with
//! `LABHIT_STORE_CRASH_WRITER=<data dir>` it is the writer child, which creates a run,
//! appends numbered entries and prints `run <id>` and then `ack <sequence>` for each entry
//! once its commit is confirmed. The parent kills it with SIGKILL after a number of acks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chrono::Utc;
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::{LogLevel, LogStream, RunStatus, StageRun, StageStatus};
use labhit_server::store::{
    CreateOutcome, INTERRUPTED_REASON, NewLogEntry, NewRun, Store, StoreOptions,
};

const ROLE: &str = "LABHIT_STORE_CRASH_WRITER";
/// Acks the parent waits for before the kill.
const KILL_AFTER: u64 = 3_000;
/// The child stops by itself after this many entries if it is never killed.
const CHILD_LIMIT: u64 = 2_000_000;

/// The one test of this binary, as test runners list it.
const TEST_NAME: &str = "a_killed_writer_loses_no_acknowledged_entry";

fn main() {
    if let Some(dir) = std::env::var_os(ROLE) {
        return writer(std::path::PathBuf::from(dir));
    }
    // Speak enough of the libtest command line for `cargo test` and `cargo nextest`:
    // `--list` lists the one test (none with `--ignored`), a name filter that does not
    // match runs nothing.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("{TEST_NAME}: test");
        }
        return;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected = filters.is_empty()
        || filters.iter().any(|f| {
            if exact {
                f.as_str() == TEST_NAME
            } else {
                TEST_NAME.contains(f.as_str())
            }
        });
    if selected {
        parent();
    }
}

fn stage(id: &str) -> StageId {
    StageId::new(id).expect("valid stage id")
}

/// The child: writes until killed (or until `CHILD_LIMIT`).
fn writer(dir: std::path::PathBuf) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (store, _) = Store::open(StoreOptions::new(&dir)).expect("open store");
        let new = NewRun {
            pipeline: "crash".to_owned(),
            pipeline_path: ".labhit/pipeline.yaml".to_owned(),
            repository: "app".to_owned(),
            git_ref: "main".to_owned(),
            commit: None,
            stages: vec![stage("build"), stage("deploy")],
            created_at: Utc::now(),
            idempotency: None,
        };
        let CreateOutcome::Created(run) = store.create_run(new).await.expect("create") else {
            panic!("no run created");
        };
        store
            .set_run_status(run.id, RunStatus::Running, Utc::now())
            .await
            .expect("running");
        let mut build = StageRun::queued(stage("build"));
        build.status = StageStatus::Running;
        build.started_at = Some(Utc::now());
        store.update_stage(run.id, build).await.expect("stage");
        println!("run {}", run.id);
        // Appends are pipelined (many in flight, so batches form); acks follow commits.
        let (acks, mut committed) = tokio::sync::mpsc::channel(1024);
        let producer = {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..CHILD_LIMIT {
                    let entry = NewLogEntry {
                        stage: Some(stage("build")),
                        level: LogLevel::Info,
                        stream: LogStream::Stdout,
                        timestamp: Utc::now(),
                        message: format!("entry {n}"),
                        fields: BTreeMap::new(),
                    };
                    let receipt = store
                        .append_logs(run.id, vec![entry])
                        .await
                        .expect("append");
                    if acks.send(receipt).await.is_err() {
                        return;
                    }
                }
            })
        };
        while let Some(receipt) = committed.recv().await {
            let appended = receipt.committed().await.expect("commit");
            for sequence in appended.sequences {
                println!("ack {sequence}");
            }
        }
        producer.await.expect("producer");
    });
}

fn parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env(ROLE, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a first line").expect("read");
    let run = RunId::parse(first.strip_prefix("run ").expect("`run <id>` first")).expect("run id");
    let mut acked = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read");
        let sequence: u64 = line
            .strip_prefix("ack ")
            .expect("`ack <n>`")
            .parse()
            .expect("number");
        acked.push(sequence);
        if acked.len() as u64 == KILL_AFTER {
            // Child::kill is SIGKILL on Unix.
            child.kill().expect("kill");
            break;
        }
    }
    // Acks already written to the pipe before the kill count too.
    for line in lines {
        match line {
            Ok(line) => acked.push(
                line.strip_prefix("ack ")
                    .expect("`ack <n>`")
                    .parse()
                    .expect("number"),
            ),
            Err(_) => break,
        }
    }
    let status = child.wait().expect("wait");
    assert!(
        !status.success(),
        "the writer was killed, not finished: {status}"
    );
    assert!(acked.len() as u64 >= KILL_AFTER, "acks: {}", acked.len());

    let (store, interrupted) = Store::open(StoreOptions::new(dir.path())).expect("reopen");
    assert_eq!(
        interrupted.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![run]
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let record = store.get_run(run).await.expect("run");
        assert_eq!(record.run.status, RunStatus::Failed);
        let build = record.run.stage("build").expect("build");
        assert_eq!(
            (build.status, build.reason.as_deref()),
            (StageStatus::Failed, Some(INTERRUPTED_REASON))
        );
        assert_eq!(
            record.run.stage("deploy").expect("deploy").status,
            StageStatus::Skipped
        );
        let mut log = Vec::new();
        let mut cursor = 0;
        loop {
            let batch = store
                .read_logs(run, cursor, None, 10_000)
                .await
                .expect("read");
            cursor = batch.next_cursor;
            let complete = batch.is_complete();
            log.extend(batch.entries);
            if complete {
                break;
            }
        }
        let (marker, entries) = log.split_last().expect("entries");
        assert!(
            marker.message.contains("run interrupted"),
            "{}",
            marker.message
        );
        assert_eq!(
            marker.sequence,
            entries.len() as u64,
            "the marker follows the last entry"
        );
        for (i, entry) in entries.iter().enumerate() {
            // Gapless from 0, and each entry exactly once: entry n has sequence n.
            assert_eq!(
                (entry.sequence, entry.message.as_str()),
                (i as u64, format!("entry {i}").as_str())
            );
        }
        for sequence in &acked {
            assert!(
                *sequence < entries.len() as u64,
                "acknowledged entry {sequence} was lost"
            );
        }
        println!(
            "crash test ok: {} entries acknowledged, {} committed before the kill",
            acked.len(),
            entries.len()
        );
    });
}
