//! The run store against real database files in temporary data dirs: schema versions,
//! idempotency, paging, the log cap, committed-only reads, recovery of interrupted runs.

use std::collections::BTreeMap;

use chrono::Utc;
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::{LogLevel, LogStream, RunStatus, StageRun, StageStatus};
use labhit_server::store::{
    Approval, CreateOutcome, INTERRUPTED_REASON, Idempotency, NewLogEntry, NewRun, RunFilter,
    Store, StoreError, StoreOptions,
};

fn stage(id: &str) -> StageId {
    StageId::new(id).expect("valid stage id")
}

fn new_run(repository: &str, stages: &[&str]) -> NewRun {
    NewRun {
        pipeline: "demo".to_owned(),
        pipeline_path: ".labhit/pipeline.yaml".to_owned(),
        repository: repository.to_owned(),
        git_ref: "main".to_owned(),
        commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
        stages: stages.iter().map(|s| stage(s)).collect(),
        created_at: Utc::now(),
        idempotency: None,
    }
}

fn line(stage_id: Option<&str>, message: impl Into<String>) -> NewLogEntry {
    NewLogEntry {
        stage: stage_id.map(stage),
        level: LogLevel::Info,
        stream: LogStream::Stdout,
        timestamp: Utc::now(),
        message: message.into(),
        fields: BTreeMap::new(),
    }
}

fn open(dir: &std::path::Path) -> Store {
    open_with(StoreOptions::new(dir))
}

fn open_with(options: StoreOptions) -> Store {
    let (store, interrupted) = Store::open(options).expect("open store");
    assert!(interrupted.is_empty(), "{interrupted:?}");
    store
}

async fn create(store: &Store, new: NewRun) -> RunId {
    match store.create_run(new).await.expect("create run") {
        CreateOutcome::Created(run) => run.id,
        other => panic!("expected a new run, got {other:?}"),
    }
}

async fn all_logs(store: &Store, run: RunId) -> Vec<labhit_protocol::run::LogEntry> {
    store
        .read_logs(run, 0, None, 1_000_000)
        .await
        .expect("read logs")
        .entries
}

#[tokio::test]
async fn a_run_moves_through_its_lifecycle_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = create(&store, new_run("app", &["build", "deploy"])).await;
    let record = store.get_run(id).await.unwrap();
    assert_eq!(record.run.status, RunStatus::Queued);
    assert_eq!(record.run.stages.len(), 2);
    assert_eq!(record.run.stages[1].status, StageStatus::Queued);

    let t0 = Utc::now();
    store
        .set_run_status(id, RunStatus::Running, t0)
        .await
        .unwrap();
    let mut build = StageRun::queued(stage("build"));
    build.status = StageStatus::Running;
    build.started_at = Some(t0);
    store.update_stage(id, build.clone()).await.unwrap();
    build.status = StageStatus::Succeeded;
    build.finished_at = Some(Utc::now());
    build.exit_code = Some(0);
    build
        .outputs
        .insert("version".to_owned(), "1.2.3".to_owned());
    store.update_stage(id, build.clone()).await.unwrap();
    let approval = Approval {
        by: "alice".to_owned(),
        at: Utc::now(),
    };
    store
        .record_approval(id, stage("deploy"), approval.clone())
        .await
        .unwrap();
    store
        .set_run_status(id, RunStatus::Succeeded, Utc::now())
        .await
        .unwrap();

    // A terminal stage or run never changes again.
    let err = store.update_stage(id, build.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::RunEnded { .. }), "{err}");
    let err = store
        .set_run_status(id, RunStatus::Failed, Utc::now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&id.to_string()), "{err}");

    store.shutdown().await.unwrap();
    drop(store);
    let store = open(dir.path());
    let record = store.get_run(id).await.unwrap();
    assert_eq!(record.run.status, RunStatus::Succeeded);
    assert_eq!(
        record.run.started_at.map(|t| t.timestamp_nanos_opt()),
        Some(t0.timestamp_nanos_opt())
    );
    assert!(record.run.finished_at.is_some());
    assert_eq!(record.run.stages[0], build);
    assert_eq!(record.approvals.get(&stage("deploy")), Some(&approval));
    assert!(record.log.closed);
    // A list page carries the same record, approvals included.
    let page = store
        .list_runs(RunFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(page.runs, vec![record]);
}

#[tokio::test]
async fn refusals_name_the_run_and_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = create(&store, new_run("app", &["build"])).await;
    let mut ghost = StageRun::queued(stage("ghost"));
    ghost.status = StageStatus::Running;
    let err = store.update_stage(id, ghost).await.unwrap_err();
    assert_eq!(err.to_string(), format!("run {id} has no stage `ghost`"));
    let unknown = RunId::from_uuid(uuid::Uuid::from_u128(7));
    let err = store.get_run(unknown).await.unwrap_err();
    assert!(matches!(err, StoreError::RunNotFound { .. }), "{err}");
    let err = store
        .append_logs(unknown, vec![line(None, "x")])
        .await
        .unwrap()
        .committed()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::RunNotFound { .. }), "{err}");
    let err = store
        .create_run(new_run("app", &["a", "a"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`a` is listed twice"), "{err}");

    store
        .set_run_status(id, RunStatus::Running, Utc::now())
        .await
        .unwrap();
    let err = store
        .set_run_status(id, RunStatus::Queued, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition { .. }), "{err}");
    store
        .set_run_status(id, RunStatus::Cancelled, Utc::now())
        .await
        .unwrap();
    let err = store
        .append_logs(id, vec![line(None, "late")])
        .await
        .unwrap()
        .committed()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LogClosed { .. }), "{err}");
    // A refused command does not spoil the others committed with it.
    let other = create(&store, new_run("app", &["build"])).await;
    let ok = store
        .append_logs(other, vec![line(None, "fine")])
        .await
        .unwrap();
    let bad = store
        .append_logs(id, vec![line(None, "late")])
        .await
        .unwrap();
    assert_eq!(ok.committed().await.unwrap().sequences, 0..1);
    assert!(bad.committed().await.is_err());
}

#[tokio::test]
async fn a_second_store_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = Store::open(StoreOptions::new(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another labhit server"),
        "{err}"
    );
    store.shutdown().await.unwrap();
    // Once the writer stopped, the lock is free.
    drop(open(dir.path()));
}

#[tokio::test]
async fn a_database_from_a_newer_labhit_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.shutdown().await.unwrap();
    drop(store);
    let path = dir.path().join(labhit_server::store::DATABASE_FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    drop(conn);
    let err = Store::open(StoreOptions::new(dir.path())).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade labhit"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(labhit_server::store::DATABASE_FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE notes (text);").unwrap();
    drop(conn);
    let err = Store::open(StoreOptions::new(dir.path())).unwrap_err();
    assert!(
        err.to_string().contains("is not a labhit run store"),
        "{err}"
    );
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_run_or_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let keyed = |repository: &str| {
        let mut new = new_run(repository, &["build"]);
        new.idempotency = Some(Idempotency {
            key: "retry-1".to_owned(),
            fingerprint: Idempotency::fingerprint([
                ("repository", repository),
                ("git_ref", "main"),
            ]),
        });
        new
    };
    let first = create(&store, keyed("app")).await;
    match store.create_run(keyed("app")).await.unwrap() {
        CreateOutcome::Existing(run) => assert_eq!(run.id, first),
        other => panic!("{other:?}"),
    }
    match store.create_run(keyed("other")).await.unwrap() {
        CreateOutcome::Conflict { run, .. } => assert_eq!(run, first),
        other => panic!("{other:?}"),
    }
    let (found, _) = store
        .find_by_idempotency_key("retry-1".to_owned())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.run.id, first);
    // Two requests with the same key in one batch still create one run.
    let (a, b) = tokio::join!(store.create_run(keyed("app2")), async {
        let mut new = keyed("app2");
        new.idempotency.as_mut().unwrap().key = "retry-2".to_owned();
        let mut again = new.clone();
        again.created_at = Utc::now();
        let x = store.create_run(new);
        let y = store.create_run(again);
        tokio::join!(x, y)
    });
    assert!(matches!(a.unwrap(), CreateOutcome::Conflict { .. }));
    let (x, y) = b;
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(matches!(x, CreateOutcome::Created(_)), "{x:?}");
    assert_eq!(x.run().map(|r| r.id), y.run().map(|r| r.id));
    let all = store
        .list_runs(RunFilter::default(), 100, None)
        .await
        .unwrap();
    assert_eq!(all.runs.len(), 2);
}

#[tokio::test]
async fn list_pages_stay_complete_and_disjoint_while_runs_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut older = Vec::new();
    for i in 0..25 {
        let repository = if i % 2 == 0 { "even" } else { "odd" };
        older.push(create(&store, new_run(repository, &["build"])).await);
    }
    older.reverse(); // newest first
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list_runs(RunFilter::default(), 7, token.clone())
            .await
            .unwrap();
        seen.extend(page.runs.iter().map(|r| r.run.id));
        // New runs arrive between pages.
        create(&store, new_run("even", &["build"])).await;
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, older);

    // Filters: repository and status.
    let running = older[3];
    assert_eq!(store.get_run(running).await.unwrap().run.repository, "odd");
    store
        .set_run_status(running, RunStatus::Running, Utc::now())
        .await
        .unwrap();
    let filter = RunFilter {
        repository: Some("odd".to_owned()),
        statuses: vec![RunStatus::Running, RunStatus::Succeeded],
    };
    let page = store.list_runs(filter, 10, None).await.unwrap();
    // older[3] is the run created fourth from last (i = 21), in repository "odd".
    assert_eq!(
        page.runs.iter().map(|r| r.run.id).collect::<Vec<_>>(),
        vec![running]
    );
    let odd = store
        .list_runs(
            RunFilter {
                repository: Some("odd".to_owned()),
                statuses: vec![],
            },
            5,
            None,
        )
        .await
        .unwrap();
    assert!(odd.runs.iter().all(|r| r.run.repository == "odd"));
    // A token only works with its own filter, and garbage is refused.
    let token = odd.next_page_token.unwrap();
    let err = store
        .list_runs(RunFilter::default(), 5, Some(token))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("different repository or status filter"),
        "{err}"
    );
    let err = store
        .list_runs(RunFilter::default(), 5, Some("zz".to_owned()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidPageToken { .. }), "{err}");
}

#[tokio::test]
async fn the_log_cap_drops_entries_with_one_marker_carrying_the_final_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path());
    options.log_cap = Some(10);
    let store = open_with(options);
    let id = create(&store, new_run("app", &["build"])).await;
    let first = store
        .append_logs(
            id,
            (0..7)
                .map(|i| line(Some("build"), format!("a{i}")))
                .collect(),
        )
        .await
        .unwrap();
    let second = store
        .append_logs(
            id,
            (0..8)
                .map(|i| line(Some("build"), format!("b{i}")))
                .collect(),
        )
        .await
        .unwrap();
    let third = store.append_logs(id, vec![line(None, "c")]).await.unwrap();
    let first = first.committed().await.unwrap();
    let second = second.committed().await.unwrap();
    let third = third.committed().await.unwrap();
    assert_eq!((first.sequences, first.dropped), (0..7, 0));
    assert_eq!((second.sequences, second.dropped), (7..10, 5));
    assert_eq!((third.sequences.is_empty(), third.dropped), (true, 1));

    // While the run goes on, the log holds the kept entries only: no marker yet, and a
    // cursor at the end stays valid for the marker to come.
    let log = all_logs(&store, id).await;
    assert_eq!(log.len(), 10, "the 10 kept entries");
    assert!(log.iter().all(|e| e.stream == LogStream::Stdout), "{log:?}");
    let at_end = store.read_logs(id, 10, None, 10).await.unwrap();
    assert!(at_end.entries.is_empty() && !at_end.is_complete());

    store
        .set_run_status(id, RunStatus::Succeeded, Utc::now())
        .await
        .unwrap();
    let log = all_logs(&store, id).await;
    assert_eq!(log.len(), 11, "10 entries and one marker");
    let markers: Vec<_> = log
        .iter()
        .filter(|e| e.stream == LogStream::System)
        .collect();
    assert_eq!(markers.len(), 1, "exactly one marker: {markers:?}");
    let marker = &log[10];
    assert_eq!(
        (marker.stream, marker.level, marker.stage.as_ref()),
        (LogStream::System, LogLevel::Warn, None)
    );
    assert_eq!(
        marker.message,
        "log cap reached: 6 log entries were dropped after the log cap of 10 entries"
    );
    assert_eq!(marker.fields.get("dropped").map(String::as_str), Some("6"));
    assert_eq!(marker.fields.get("log_cap").map(String::as_str), Some("10"));
    for (i, entry) in log.iter().enumerate() {
        assert_eq!(entry.sequence, i as u64);
    }
    let rest = store.read_logs(id, 10, None, 10).await.unwrap();
    assert_eq!(rest.entries.len(), 1);
    assert!(rest.is_complete());
    assert_eq!(store.get_run(id).await.unwrap().log.dropped, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_gets_every_committed_entry_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = create(&store, new_run("app", &["build", "test"])).await;
    let total = 5_000u64;
    let producer = {
        let store = store.clone();
        tokio::spawn(async move {
            for chunk in 0..total / 10 {
                let entries = (0..10)
                    .map(|i| {
                        let n = chunk * 10 + i;
                        line(
                            Some(if n % 3 == 0 { "test" } else { "build" }),
                            format!("line {n}"),
                        )
                    })
                    .collect();
                store.append_logs(id, entries).await.unwrap();
            }
            store
                .set_run_status(id, RunStatus::Succeeded, Utc::now())
                .await
                .unwrap();
        })
    };
    let follow = |stage_filter: Option<StageId>| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut progress = store.subscribe(id).await.unwrap();
            let mut cursor = 0;
            let mut got = Vec::new();
            loop {
                let batch = store
                    .read_logs(id, cursor, stage_filter.clone(), 97)
                    .await
                    .unwrap();
                // Only committed entries: never beyond the committed length read with them.
                assert!(
                    batch
                        .entries
                        .iter()
                        .all(|e| e.sequence < batch.log.next_sequence)
                );
                cursor = batch.next_cursor;
                let empty = batch.entries.is_empty();
                let complete = batch.is_complete();
                got.extend(batch.entries);
                if complete {
                    return got;
                }
                if empty {
                    progress.changed().await.unwrap();
                }
            }
        })
    };
    let all = follow(None);
    let tests = follow(Some(stage("test")));
    producer.await.unwrap();
    let all = all.await.unwrap();
    assert_eq!(all.len() as u64, total);
    for (i, entry) in all.iter().enumerate() {
        assert_eq!(
            (entry.sequence, entry.message.as_str()),
            (i as u64, format!("line {i}").as_str())
        );
    }
    let tests = tests.await.unwrap();
    let expected: Vec<u64> = (0..total).filter(|n| n % 3 == 0).collect();
    assert_eq!(
        tests.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        expected
    );

    // A cursor past the log is refused; the end of the log is a valid cursor.
    let err = store.read_logs(id, total + 1, None, 10).await.unwrap_err();
    assert!(
        matches!(err, StoreError::CursorOutOfRange { next_sequence, .. } if next_sequence == total),
        "{err}"
    );
    assert!(
        store
            .read_logs(id, total, None, 10)
            .await
            .unwrap()
            .is_complete()
    );
}

#[tokio::test]
async fn runs_in_flight_are_marked_interrupted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let done = create(&store, new_run("app", &["a"])).await;
    store
        .set_run_status(done, RunStatus::Succeeded, Utc::now())
        .await
        .unwrap();
    let queued = create(&store, new_run("app", &["a"])).await;
    let running = create(&store, new_run("app", &["a", "b", "c"])).await;
    store
        .set_run_status(running, RunStatus::Running, Utc::now())
        .await
        .unwrap();
    let mut a = StageRun::queued(stage("a"));
    a.status = StageStatus::Running;
    a.started_at = Some(Utc::now());
    store.update_stage(running, a).await.unwrap();
    let mut b = StageRun::queued(stage("b"));
    b.status = StageStatus::WaitingForApproval;
    store.update_stage(running, b).await.unwrap();
    store
        .append_logs(running, vec![line(Some("a"), "working")])
        .await
        .unwrap();
    store.shutdown().await.unwrap();
    drop(store);

    let (store, interrupted) = Store::open(StoreOptions::new(dir.path())).unwrap();
    let ids: Vec<RunId> = interrupted.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![queued, running]);
    let run = &interrupted[1];
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.finished_at.is_some());
    let statuses: Vec<_> = run
        .stages
        .iter()
        .map(|s| (s.status, s.reason.as_deref()))
        .collect();
    assert_eq!(statuses[0], (StageStatus::Failed, Some(INTERRUPTED_REASON)));
    assert_eq!(statuses[1], (StageStatus::Failed, Some(INTERRUPTED_REASON)));
    assert_eq!(statuses[2].0, StageStatus::Skipped);
    let log = all_logs(&store, running).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].message, "working");
    assert_eq!(
        (log[1].stream, log[1].level),
        (LogStream::System, LogLevel::Error)
    );
    assert!(log[1].message.contains("interrupted"), "{}", log[1].message);
    assert!(store.get_run(running).await.unwrap().log.closed);
    assert_eq!(
        store.get_run(done).await.unwrap().run.status,
        RunStatus::Succeeded
    );
    // A subscriber of an interrupted run sees a closed log.
    let progress = store.subscribe(running).await.unwrap();
    assert!(progress.borrow().closed);
}
