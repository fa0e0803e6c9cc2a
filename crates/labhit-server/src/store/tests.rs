//! White-box tests of the writer: what others see of a batch before and after its commit.

use std::sync::Arc;

use chrono::Utc;
use labhit_protocol::forms::StageId;
use labhit_protocol::run::{LogLevel, LogStream, RunStatus};
use tokio::sync::oneshot;

use super::watches::Watches;
use super::writer::{Command, Writer};
use super::*;

fn stage(id: &str) -> StageId {
    StageId::new(id).unwrap()
}

#[test]
fn readers_subscribers_and_callers_see_a_batch_only_after_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATABASE_FILE);
    let mut conn = open_connection(&path, SyncMode::Normal).unwrap();
    schema::migrate(&mut conn, &path, schema::MIGRATIONS).unwrap();
    let lock = std::fs::File::create(dir.path().join(LOCK_FILE)).unwrap();
    let watches = Arc::new(Watches::default());
    let mut writer = Writer::new(conn, None, Arc::clone(&watches), lock);

    let (reply, created) = oneshot::channel();
    let new = NewRun {
        pipeline: "p".to_owned(),
        pipeline_path: ".labhit/pipeline.yaml".to_owned(),
        repository: "app".to_owned(),
        git_ref: "main".to_owned(),
        commit: None,
        stages: vec![stage("build")],
        created_at: Utc::now(),
        idempotency: None,
    };
    writer.process(
        vec![Command::Create {
            new: Box::new(new),
            reply,
        }],
        |_| {},
    );
    let run = match created.blocking_recv().unwrap().unwrap() {
        CreateOutcome::Created(run) => run.id,
        other => panic!("{other:?}"),
    };

    let reader = open_connection(&path, SyncMode::Normal).unwrap();
    let progress = watches
        .subscribe(run, || {
            let log = read::read_logs(&reader, run, 0, None, 10)?.log;
            Ok(Progress {
                next_sequence: log.next_sequence,
                status: RunStatus::Queued,
                closed: log.closed,
                state_changes: 0,
            })
        })
        .unwrap();

    let (reply, mut appended) = oneshot::channel();
    let entries = (0..3)
        .map(|i| NewLogEntry {
            stage: None,
            level: LogLevel::Info,
            stream: LogStream::Stdout,
            timestamp: Utc::now(),
            message: format!("line {i}"),
            fields: Default::default(),
        })
        .collect();
    let mut checked = false;
    writer.process(
        vec![Command::Append {
            run,
            entries,
            reply,
        }],
        |tx| {
            // Inside the writer's transaction the entries exist…
            assert_eq!(read::next_sequence(tx, 1).unwrap(), 3);
            // …but no reader, subscriber or caller sees them yet.
            let batch = read::read_logs(&reader, run, 0, None, 10).unwrap();
            assert!(batch.entries.is_empty());
            assert_eq!(batch.log.next_sequence, 0);
            assert_eq!(progress.borrow().next_sequence, 0);
            assert!(appended.try_recv().is_err());
            checked = true;
        },
    );
    assert!(checked);
    let batch = read::read_logs(&reader, run, 0, None, 10).unwrap();
    assert_eq!(batch.entries.len(), 3);
    assert_eq!(progress.borrow().next_sequence, 3);
    assert_eq!(appended.try_recv().unwrap().unwrap().sequences, 0..3);
}
