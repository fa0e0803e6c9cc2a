//! The fleet against a real `nats-server`: runs of real `run:` stages dispatched by
//! [`NatsDispatcher`] to workers in this process, and the faults a worker must report
//! clearly (a missing or corrupt archive, an extension nobody has), and snapshots in the object
//! store (a hit restored on a worker that never ran the stage, stored once, a missing or
//! corrupt object).
//!
//! Nothing waits on time: tests wait for a run's end or a task's reply, each bounded by a
//! deadline that fails the test instead of hanging it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use labhit_fleet::testing::NatsServer;
use labhit_fleet::wire::{ARCHIVES_BUCKET, Failure, Need, Outcome, Reply, Task, TaskBody};
use labhit_fleet::worker::{Running, Worker, WorkerConfig};
use labhit_fleet::{Fleet, FleetOptions, NatsDispatcher, archive};
use labhit_protocol::executor::{CacheDecision, CommandStep, ExecutorInput};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef, StepId};
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
    // No worker at all: even the local executor is nobody's.
    let reason = reason_of_a_local_stage(&fleet).await;
    assert!(
        reason.contains("no worker of the fleet has the local executor")
            && reason.contains("labhit worker"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_only_a_worker_of_another_fleet_protocol_has_fails_naming_both_protocols() {
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    // A worker of an older release: no `protocol` in its advert (protocol 0).
    let advert = serde_json::json!({"worker": "old-worker", "needs": [{"kind": "local"}]});
    fleet
        .workers
        .put("old-worker", advert.to_string().into())
        .await
        .expect("advert");
    let reason = reason_of_a_local_stage(&fleet).await;
    assert!(
        reason.contains("worker `old-worker` has it but speaks fleet protocol 0")
            && reason.contains(&format!("this server {}", labhit_fleet::wire::PROTOCOL))
            && reason.contains("same release"),
        "{reason}"
    );
}

/// Runs a one-stage `run:` pipeline through the fleet's dispatcher (no worker pulls it) and
/// returns why the stage failed.
async fn reason_of_a_local_stage(fleet: &Fleet) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
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
    run.stages[0].reason.clone().unwrap_or_default()
}

/// Publishes a `run:` task on archive `archive` and returns the reply a worker sends.
async fn reply_to(fleet: &Fleet, archive: ArchiveId, stage: &str) -> Reply {
    reply_of(
        fleet,
        &command_task(archive, stage, CacheDecision::MissNoCommit),
    )
    .await
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

/// Every stage reads an archive: reads must leave nothing behind on the server. (The
/// client's own object reads each left a consumer for its inactivity threshold; a busy
/// fleet hit the server's consumer limit and stalled every read for ≈ 25 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_reads_leave_no_consumer_and_a_truncated_archive_is_corrupt_at_once() {
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    // Several chunks (the object store's are 128 KiB), none alike.
    let big: Vec<u8> = (0u32..150_000).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(src.join("big.bin"), &big).expect("write");
    let bytes = archive::pack(&src).expect("pack");
    let id = fleet.put_archive(&bytes).await.expect("put");
    let chunks = fleet
        .js
        .get_stream(format!("OBJ_{ARCHIVES_BUCKET}"))
        .await
        .expect("the archives' stream");
    for _ in 0..20 {
        assert!(fleet.get_archive(id).await.expect("get") == bytes);
    }
    let mut info = chunks.clone();
    let state = info.info().await.expect("stream info").state.clone();
    assert_eq!(state.consumer_count, 0, "{state:?}");

    // Drop the object's last chunk under its metadata: the content no longer hashes to the
    // id, which is reported at once (not retried as if NATS had failed).
    let object = fleet.archives.info(id.to_string()).await.expect("info");
    assert!(object.chunks >= 3, "{object:?}");
    let subject = format!("$O.{ARCHIVES_BUCKET}.C.{}", object.nuid);
    let last = chunks
        .get_last_raw_message_by_subject(&subject)
        .await
        .expect("the last chunk");
    chunks
        .delete_message(last.sequence)
        .await
        .expect("delete a chunk");
    let started = std::time::Instant::now();
    let err = fleet
        .get_archive(id)
        .await
        .expect_err("a truncated archive");
    assert!(
        matches!(err, labhit_fleet::FleetError::CorruptArchive { .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
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

/// Runs `stages` through `dispatcher` in a fresh workspace `name` (holding `input.txt`) with
/// the server snapshot store `snapshots`; the run and its log messages.
async fn run_on_fleet(
    dispatcher: &Arc<NatsDispatcher>,
    dir: &std::path::Path,
    name: &str,
    stages: &'static str,
    snapshots: SnapshotStore,
) -> (labhit_protocol::run::PipelineRun, Vec<String>) {
    let workspace = dir.join(name);
    std::fs::create_dir_all(&workspace).expect("checkout");
    std::fs::write(workspace.join("input.txt"), "x\n").expect("input");
    let mut request = RunRequest::new(
        pipeline(stages),
        RunPlace::Prepared {
            workspace,
            run_dir: dir.join(format!("{name}-run")),
        },
    );
    request.cache = CacheSettings {
        snapshots: Some(snapshots),
        ..CacheSettings::default()
    };
    request.dispatcher = dispatcher.clone();
    let sink = Arc::new(CollectingSink::new());
    request.log_sink = sink.clone();
    let run = tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || prepare(request).expect("prepare").execute()),
    )
    .await
    .expect("the run ends")
    .expect("the run's thread");
    (run, sink.messages())
}

/// The tasks published while `during` runs, as a core NATS subscriber sees them.
async fn tasks_during<T>(
    fleet: &Fleet,
    during: impl std::future::Future<Output = T>,
) -> (T, Vec<Task>) {
    let mut subscriber = fleet
        .client
        .subscribe(format!("labhit.task.{}", Need::Local.token()))
        .await
        .expect("subscribe");
    fleet.client.flush().await.expect("flush");
    let out = during.await;
    let mut tasks = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(0), subscriber.next()).await
    {
        tasks.push(serde_json::from_slice(&message.payload).expect("a task"));
    }
    (out, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_restored_from_the_object_store_on_a_worker_that_never_ran_the_stage() {
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dispatcher = Arc::new(NatsDispatcher::new(
        fleet.clone(),
        tokio::runtime::Handle::current(),
    ));

    // Worker A runs everything the first time.
    let stop_a = Cancellation::new();
    let a = worker(&fleet, "a", dir.path(), &stop_a).await;
    let ((first, messages), tasks) = tasks_during(
        &fleet,
        run_on_fleet(
            &dispatcher,
            dir.path(),
            "first",
            STAGES,
            SnapshotStore::new(dir.path().join("server-1")),
        ),
    )
    .await;
    assert_eq!(
        first.status,
        RunStatus::Succeeded,
        "{first:#?}\n{messages:#?}"
    );
    stop_a.cancel();
    tokio::time::timeout(DEADLINE, a.wait())
        .await
        .expect("a stops");

    // Every committed snapshot is in the object store; `copy` and `look` come after `make`
    // alone, which committed one: that is their parent snapshot.
    let input = |stage: &str| {
        let task = tasks
            .iter()
            .find(|t| t.stage == stage)
            .unwrap_or_else(|| panic!("no task of `{stage}` in {tasks:#?}"));
        match &task.body {
            TaskBody::Command { input, .. } => (**input).clone(),
            other => panic!("{other:?}"),
        }
    };
    let CacheDecision::MissBuildAs { tag: made } = input("make").cache_lookup else {
        panic!("{:?}", input("make"));
    };
    assert_eq!(input("make").parent_snapshot, None, "a root stage has none");
    assert_eq!(input("copy").parent_snapshot.as_ref(), Some(&made));
    assert_eq!(input("look").parent_snapshot.as_ref(), Some(&made));
    for stage in ["make", "copy", "look"] {
        let CacheDecision::MissBuildAs { tag } = input(stage).cache_lookup else {
            panic!("{stage}: {:?}", input(stage));
        };
        assert!(
            fleet.has_snapshot(&tag).await.expect("lookup"),
            "`{stage}`'s `{tag}`"
        );
    }

    // Worker B, with an empty store, and a server with an empty store of its own: every stage
    // is a hit restored from the object store, with the same effect.
    let stop_b = Cancellation::new();
    let b = worker(&fleet, "b", dir.path(), &stop_b).await;
    let (second, messages) = run_on_fleet(
        &dispatcher,
        dir.path(),
        "second",
        STAGES,
        SnapshotStore::new(dir.path().join("server-2")),
    )
    .await;
    assert_eq!(second.status, RunStatus::Succeeded, "{messages:#?}");
    assert!(
        second
            .stages
            .iter()
            .all(|s| s.status == StageStatus::Cached),
        "{second:#?}\n{messages:#?}"
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.starts_with("cache hit: restored snapshot"))
            .count(),
        3,
        "{messages:#?}"
    );
    let scan = |name: &str| {
        labhit_runtime::workspace::WorkspaceManifest::scan(&dir.path().join(name)).expect("scan")
    };
    assert_eq!(scan("first"), scan("second"), "the same workspace effect");
    let server_store = SnapshotStore::new(dir.path().join("server-2"));
    for stage in ["make", "copy", "look"] {
        let CacheDecision::MissBuildAs { tag } = input(stage).cache_lookup else {
            panic!("{stage}");
        };
        assert!(
            !server_store.exists(&tag),
            "the server's own store is not used with a fleet"
        );
    }
    stop_b.cancel();
    tokio::time::timeout(DEADLINE, b.wait())
        .await
        .expect("b stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_object_is_a_miss_whose_reason_is_logged_and_is_stored_anew() {
    const ONE: &str = "    make:\n      run: echo made > made.txt\n";
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dispatcher = Arc::new(NatsDispatcher::new(
        fleet.clone(),
        tokio::runtime::Handle::current(),
    ));
    let store = || SnapshotStore::new(dir.path().join("server"));
    let stop = Cancellation::new();
    let w1 = worker(&fleet, "w1", dir.path(), &stop).await;
    let ((first, _), tasks) = tasks_during(
        &fleet,
        run_on_fleet(&dispatcher, dir.path(), "first", ONE, store()),
    )
    .await;
    assert_eq!(first.status, RunStatus::Succeeded);
    let tag = match &tasks[0].body {
        TaskBody::Command { input, .. } => match &input.cache_lookup {
            CacheDecision::MissBuildAs { tag } => tag.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    stop.cancel();
    tokio::time::timeout(DEADLINE, w1.wait())
        .await
        .expect("w1 stops");

    // Garbage under the tag, and a fresh worker (its local store empty) to find it.
    fleet.delete_snapshot(&tag).await.expect("delete");
    let garbage: &[u8] = b"labhit-snapshot-export/1 9999\nshort";
    fleet
        .snapshots
        .put(tag.as_ref(), &mut &garbage[..])
        .await
        .expect("put");
    let stop = Cancellation::new();
    let fresh = worker(&fleet, "fresh", dir.path(), &stop).await;
    let (run, messages) = run_on_fleet(&dispatcher, dir.path(), "second", ONE, store()).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{messages:#?}");
    assert_eq!(run.stages[0].status, StageStatus::Succeeded, "ran again");
    let logged = messages.iter().any(|m| {
        m.contains(&format!("cache: snapshot `{tag}` is unusable"))
            && m.contains("on worker `fresh`")
            && m.contains("is corrupt")
            && m.contains("running the command")
    });
    assert!(logged, "{messages:#?}");
    // Stored anew, whole.
    let bytes = fleet
        .get_snapshot(&tag)
        .await
        .expect("get")
        .expect("stored again");
    SnapshotStore::new(dir.path().join("check"))
        .import(&tag, &bytes)
        .expect("a whole snapshot");
    stop.cancel();
    tokio::time::timeout(DEADLINE, fresh.wait())
        .await
        .expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_whose_snapshot_object_is_missing_is_refused_naming_the_tag() {
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Cancellation::new();
    let running = worker(&fleet, "w1", dir.path(), &stop).await;
    let archive = empty_archive(&fleet, dir.path()).await;
    let tag = SnapshotRef::new("labhit-cache:0000");
    let task = command_task(archive, "gone", CacheDecision::Hit { tag: tag.clone() });
    let reply = reply_of(&fleet, &task).await;
    match &reply.outcome {
        Outcome::Failed {
            failure: Failure::Snapshot { tag: named },
            message,
        } => {
            assert_eq!(named, &tag);
            assert!(
                message.contains("`labhit-cache:0000`")
                    && message.contains("missing from the object store bucket `labhit_snapshots`"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    stop.cancel();
    tokio::time::timeout(DEADLINE, running.wait())
        .await
        .expect("the worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_run_again_as_after_a_redelivery_stores_its_snapshot_once() {
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Cancellation::new();
    let running = worker(&fleet, "w1", dir.path(), &stop).await;
    let archive = empty_archive(&fleet, dir.path()).await;
    let tag = SnapshotRef::new("labhit-cache:once");
    let mut task = command_task(
        archive,
        "once",
        CacheDecision::MissBuildAs { tag: tag.clone() },
    );
    if let TaskBody::Command { input, .. } = &mut task.body {
        input.step = CommandStep::new("echo once > once.txt");
    }
    let first = reply_of(&fleet, &task).await;
    assert!(
        matches!(first.outcome, Outcome::Command { .. }),
        "{first:?}"
    );
    let stored = fleet.snapshots.info(tag.as_ref()).await.expect("stored");

    // As if the worker had died before its reply: the task comes again and runs again.
    fleet
        .events
        .purge()
        .filter(format!("labhit.done.{}", task.key()))
        .await
        .expect("purge the reply");
    let second = reply_of(&fleet, &task).await;
    match &second.outcome {
        Outcome::Command { result, .. } => {
            assert_eq!(result.committed_snapshot.as_ref(), Some(&tag));
        }
        other => panic!("{other:?}"),
    }
    let again = fleet.snapshots.info(tag.as_ref()).await.expect("stored");
    assert_eq!(again.nuid, stored.nuid, "stored once, not replaced");
    stop.cancel();
    tokio::time::timeout(DEADLINE, running.wait())
        .await
        .expect("the worker stops");
}

/// An archive of an empty workspace, stored.
async fn empty_archive(fleet: &Fleet, dir: &std::path::Path) -> ArchiveId {
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let bytes = archive::pack(&empty).expect("pack");
    fleet.put_archive(&bytes).await.expect("put")
}

/// A `run:` task (`echo never`, local executor) on `archive` with `decision`.
fn command_task(archive: ArchiveId, stage: &str, decision: CacheDecision) -> Task {
    let run_id = RunId::from_uuid(uuid::Uuid::new_v4());
    Task {
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
                cache_lookup: decision,
                parent_snapshot: None,
            }),
        },
        timeout_ms: None,
        writes: true,
    }
}

/// Publishes `task` (without a message id, so publishing it again is not dropped) and
/// returns the reply a worker sends.
async fn reply_of(fleet: &Fleet, task: &Task) -> Reply {
    let mut replies = fleet
        .client
        .subscribe(format!("labhit.done.{}", task.key()))
        .await
        .expect("subscribe");
    fleet
        .js
        .publish(
            format!("labhit.task.{}", Need::Local.token()),
            serde_json::to_vec(task).expect("json").into(),
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

/// Sends the id of every stage that ended `succeeded` or `cached`.
struct Ended(std::sync::Mutex<std::sync::mpsc::Sender<String>>);

impl labhit_runtime::scheduler::RunObserver for Ended {
    fn stage_changed(&self, stage: &labhit_protocol::run::StageRun) {
        if matches!(stage.status, StageStatus::Succeeded | StageStatus::Cached) {
            let _ = self.0.lock().expect("lock").send(stage.stage.to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_siblings_key_on_the_fleet_does_not_depend_on_which_sibling_finished_first() {
    let server = NatsServer::start().expect("nats-server");
    let fleet = connect(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Cancellation::new();
    let running = worker(&fleet, "w1", dir.path(), &stop).await;
    let dispatcher = Arc::new(NatsDispatcher::new(
        fleet.clone(),
        tokio::runtime::Handle::current(),
    ));
    let snapshots = SnapshotStore::new(dir.path().join("server"));
    // `gated` waits at its gate until `first` ended: the two siblings run in that order.
    let run = |name: &'static str, gated: &'static str, first: &'static str| {
        let gate = |stage: &str| match stage == gated {
            true => "      gate: {approval: required}\n",
            false => "",
        };
        let stages = format!(
            "    make:\n      run: echo made > made.txt\n    \
             writer:\n      after: make\n{}      run: echo wrote > wrote.txt\n    \
             look:\n      after: make\n{}      run: cat made.txt > seen.txt\n",
            gate("writer"),
            gate("look")
        );
        let workspace = dir.path().join(name);
        std::fs::create_dir_all(&workspace).expect("checkout");
        let mut request = RunRequest::new(
            pipeline(&stages),
            RunPlace::Prepared {
                workspace,
                run_dir: dir.path().join(format!("{name}-run")),
            },
        );
        request.cache = CacheSettings {
            snapshots: Some(snapshots.clone()),
            ..CacheSettings::default()
        };
        request.dispatcher = dispatcher.clone();
        let approvals = labhit_runtime::approval::Approvals::new();
        request.approver = Some(Arc::new(approvals.clone()));
        let (tx, ended) = std::sync::mpsc::channel();
        request.observer = Some(Arc::new(Ended(std::sync::Mutex::new(tx))));
        tokio::task::spawn_blocking(move || {
            let prepared = prepare(request).expect("prepare");
            let handle = std::thread::spawn(move || prepared.execute());
            loop {
                match ended.recv_timeout(DEADLINE) {
                    Ok(stage) if stage == first => break,
                    Ok(_) => {}
                    Err(e) => panic!("`{first}` never ended: {e}"),
                }
            }
            approvals.approve(gated, "test");
            handle.join().expect("the run's thread")
        })
    };
    let one = tokio::time::timeout(DEADLINE, run("look-first", "writer", "look"))
        .await
        .expect("the run ends")
        .expect("the run's task");
    assert_eq!(one.status, RunStatus::Succeeded, "{one:#?}");
    let two = tokio::time::timeout(DEADLINE, run("writer-first", "look", "writer"))
        .await
        .expect("the run ends")
        .expect("the run's task");
    assert_eq!(two.status, RunStatus::Succeeded, "{two:#?}");
    let look = two.stage("look").expect("look");
    assert_eq!(
        look.status,
        StageStatus::Cached,
        "`look`'s key must not cover its sibling's `wrote.txt`: {two:#?}"
    );
    stop.cancel();
    tokio::time::timeout(DEADLINE, running.wait())
        .await
        .expect("the worker stops");
}
