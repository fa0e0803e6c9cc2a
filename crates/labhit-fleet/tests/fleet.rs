//! The fleet against a real `nats-server`: runs of real `run:` stages dispatched by
//! [`NatsDispatcher`] to workers in this process, and the faults a worker must report
//! clearly (a missing or corrupt archive, an extension nobody has).
//!
//! Nothing waits on time: tests wait for a run's end or a task's reply, each bounded by a
//! deadline that fails the test instead of hanging it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use labhit_fleet::testing::NatsServer;
use labhit_fleet::wire::{Failure, Need, Outcome, Reply, Task, TaskBody};
use labhit_fleet::worker::{Running, Worker, WorkerConfig};
use labhit_fleet::{Fleet, FleetOptions, NatsDispatcher, archive};
use labhit_protocol::executor::{CacheDecision, CommandStep, ExecutorInput};
use labhit_protocol::ids::{ArchiveId, RunId, StepId};
use labhit_protocol::pipeline::PipelineFile;
use labhit_protocol::run::{RunStatus, StageStatus};
use labhit_runtime::run::{CacheSettings, RunPlace, RunRequest, prepare};
use labhit_runtime::snapshot::SnapshotStore;
use labhit_runtime::{Cancellation, CollectingSink};

const DEADLINE: Duration = Duration::from_secs(60);

fn pipeline(stages: &str) -> PipelineFile {
    let text = format!("engine: \"1\"\npipeline:\n  name: test\n  stages:\n{stages}");
    PipelineFile::from_yaml(&text).unwrap_or_else(|d| panic!("bad test pipeline: {d:?}\n{text}"))
}

/// A worker in this process serving `fleet`, with no extensions.
async fn worker(fleet: &Fleet, name: &str, dir: &std::path::Path, stop: &Cancellation) -> Running {
    let worker = Worker::prepare(WorkerConfig {
        name: name.to_owned(),
        extensions: Vec::new(),
        concurrency: 2,
        work_dir: dir.join(name),
    })
    .expect("prepare the worker");
    worker
        .start(fleet.clone(), stop.clone())
        .await
        .expect("start the worker")
}

async fn connect(server: &NatsServer) -> Fleet {
    Fleet::connect(&server.url(), FleetOptions::default())
        .await
        .expect("connect")
}

// `copy` and `look` are siblings: `look`'s key covers what `make` left, whichever finishes
// first.
const STAGES: &str = "    make:\n      run: |\n        echo making\n        echo made > made.txt\n    \
                      copy:\n      after: make\n      run: cp made.txt copied.txt && echo copied\n    \
                      look:\n      after: make\n      run: cat made.txt\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dispatched_to_workers_has_the_effects_logs_and_cache_of_an_in_process_run() {
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Cancellation::new();
    let workers = [
        worker(&fleet, "w1", dir.path(), &stop).await,
        worker(&fleet, "w2", dir.path(), &stop).await,
    ];
    let dispatcher = Arc::new(NatsDispatcher::new(
        fleet.clone(),
        tokio::runtime::Handle::current(),
    ));
    let snapshots = SnapshotStore::new(dir.path().join("snapshots"));
    let run = |name: &'static str| {
        let workspace = dir.path().join(name);
        std::fs::create_dir_all(&workspace).expect("checkout");
        let mut request = RunRequest::new(
            pipeline(STAGES),
            RunPlace::Prepared {
                workspace: workspace.clone(),
                run_dir: dir.path().join(format!("{name}-run")),
            },
        );
        request.cache = CacheSettings {
            snapshots: Some(snapshots.clone()),
            ..CacheSettings::default()
        };
        request.dispatcher = dispatcher.clone();
        let sink = Arc::new(CollectingSink::new());
        request.log_sink = sink.clone();
        let handle =
            tokio::task::spawn_blocking(move || prepare(request).expect("prepare").execute());
        (handle, sink, workspace)
    };

    let (handle, sink, workspace) = run("first");
    let first = tokio::time::timeout(DEADLINE, handle)
        .await
        .expect("the run ends")
        .expect("the run's thread");
    assert_eq!(
        first.status,
        RunStatus::Succeeded,
        "{first:#?}\n{:#?}",
        sink.messages()
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("copied.txt")).expect("copied.txt"),
        "made\n"
    );
    let messages = sink.messages();
    for line in ["making", "copied", "made"] {
        assert_eq!(
            messages.iter().filter(|m| m.as_str() == line).count(),
            1,
            "`{line}` once in {messages:#?}"
        );
    }
    assert!(
        messages.iter().any(|m| m.starts_with("committed snapshot")),
        "{messages:#?}"
    );
    let entries = sink.entries();
    for (expected, entry) in (0..).zip(&entries) {
        assert_eq!(entry.sequence, expected, "gapless");
    }

    // The second run of the same content restores every stage from the server's cache.
    let (handle, sink, workspace) = run("second");
    let second = tokio::time::timeout(DEADLINE, handle)
        .await
        .expect("the run ends")
        .expect("the run's thread");
    assert_eq!(
        second.status,
        RunStatus::Succeeded,
        "{:#?}",
        sink.messages()
    );
    assert!(
        second
            .stages
            .iter()
            .all(|s| s.status == StageStatus::Cached),
        "{second:#?}"
    );
    assert!(workspace.join("copied.txt").is_file());

    stop.cancel();
    for worker in workers {
        tokio::time::timeout(DEADLINE, worker.wait())
            .await
            .expect("the worker stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_no_worker_can_run_fails_naming_the_extension() {
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // No worker at all: even the local executor is nobody's.
    let dispatcher = Arc::new(NatsDispatcher::new(
        fleet.clone(),
        tokio::runtime::Handle::current(),
    ));
    let workspace = dir.path().join("checkout");
    std::fs::create_dir_all(&workspace).expect("checkout");
    let mut request = RunRequest::new(
        pipeline("    only:\n      run: echo never\n"),
        RunPlace::Prepared {
            workspace,
            run_dir: dir.path().join("run"),
        },
    );
    request.dispatcher = dispatcher;
    let run = tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || prepare(request).expect("prepare").execute()),
    )
    .await
    .expect("the run ends")
    .expect("the run's thread");
    assert_eq!(run.status, RunStatus::Failed);
    let reason = run.stages[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("no worker of the fleet has the local executor")
            && reason.contains("labhit worker"),
        "{reason}"
    );
}

/// Publishes a `run:` task on archive `archive` and returns the reply a worker sends.
async fn reply_to(fleet: &Fleet, archive: ArchiveId, stage: &str) -> Reply {
    let run_id = RunId::from_uuid(uuid::Uuid::new_v4());
    let task = Task {
        run_id,
        stage: stage.to_owned(),
        attempt: 1,
        archive,
        need: Need::Local,
        body: TaskBody::Command {
            with: None,
            input: Box::new(ExecutorInput {
                step: CommandStep::new("echo never"),
                workspace_archive_id: archive,
                env: Default::default(),
                workdir: "/workspace".to_owned(),
                run_id,
                step_id: StepId::from_uuid(uuid::Uuid::new_v4()),
                cache_lookup: CacheDecision::MissNoCommit,
                parent_snapshot: None,
            }),
        },
        timeout_ms: None,
        writes: true,
    };
    let mut replies = fleet
        .client
        .subscribe(format!("labhit.done.{}", task.key()))
        .await
        .expect("subscribe");
    fleet
        .js
        .publish(
            format!("labhit.task.{}", Need::Local.token()),
            serde_json::to_vec(&task).expect("json").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    let message = tokio::time::timeout(DEADLINE, replies.next())
        .await
        .expect("a reply")
        .expect("the subscription");
    serde_json::from_slice(&message.payload).expect("a reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_corrupt_archive_is_refused_by_the_worker_naming_it() {
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Cancellation::new();
    let running = worker(&fleet, "w1", dir.path(), &stop).await;

    let missing = ArchiveId::from_uuid(uuid::Uuid::new_v4());
    let reply = reply_to(&fleet, missing, "missing").await;
    match &reply.outcome {
        Outcome::Failed {
            failure: Failure::Refused,
            message,
        } => assert!(
            message.contains(&missing.to_string()) && message.contains("missing"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }

    // Bytes stored under another archive's id.
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a"), "a").expect("write");
    let good = archive::pack(&src).expect("pack");
    let claimed = ArchiveId::from_uuid(uuid::Uuid::new_v4());
    fleet
        .archives
        .put(claimed.to_string().as_str(), &mut good.as_slice())
        .await
        .expect("put");
    let reply = reply_to(&fleet, claimed, "corrupt").await;
    match &reply.outcome {
        Outcome::Failed {
            failure: Failure::Refused,
            message,
        } => assert!(
            message.contains(&claimed.to_string()) && message.contains("corrupt"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    stop.cancel();
    tokio::time::timeout(DEADLINE, running.wait())
        .await
        .expect("the worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comma_separated_list_of_urls_connects_and_a_bad_one_is_named() {
    let server = NatsServer::start().expect("nats-server");
    let urls = format!("{}, {}", server.url(), server.url());
    Fleet::connect(&urls, FleetOptions::default())
        .await
        .expect("a list of URLs connects");
    let err = Fleet::connect("nats://127.0.0.1:notaport", FleetOptions::default())
        .await
        .expect_err("a bad URL");
    assert!(
        err.to_string().contains("`nats://127.0.0.1:notaport`"),
        "{err}"
    );
}
