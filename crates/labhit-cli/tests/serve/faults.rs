//! Followers that misbehave: one that hangs up in the middle of a stream, one that reads more
//! slowly than the run writes. The run waits for a flag file the test creates, so the test
//! decides when the run produces its bulk of lines.

use std::path::Path;
use std::time::Duration;

use labhit_proto::PipelineServiceClient;
use labhit_proto::v1::{LogEntry, RunStatus};
use tokio::sync::oneshot;

use crate::{Server, TestResult, assert_gapless, follow, get, logs, repo, trigger};

/// How many lines the run writes once the flag exists: far more than a stream's buffer.
const LINES: u32 = 3000;

/// A one-stage pipeline that says `marker`, waits for `flag` to exist, then writes [`LINES`]
/// lines `line N`.
fn flagged(flag: &Path) -> String {
    format!(
        "engine: \"1\"
pipeline:
  name: flagged
  stages:
    talk:
      run: |
        echo marker
        while [ ! -e '{}' ]; do sleep 0.01; done
        for i in $(seq 1 {LINES}); do echo line $i; done
",
        flag.display()
    )
}

/// Reads `stream` until the entry `marker`; returns what it read.
async fn until_marker(
    stream: &mut tonic::Streaming<labhit_proto::v1::StreamLogsResponse>,
) -> Result<Vec<LogEntry>, Box<dyn std::error::Error>> {
    let mut seen = Vec::new();
    while let Some(message) = stream.message().await? {
        let entry = message.entry.ok_or("entry missing")?;
        let marker = entry.message == "marker";
        seen.push(entry);
        if marker {
            return Ok(seen);
        }
    }
    Err("the stream ended before the marker".into())
}

/// A complete stream of the flagged run: gapless from 0, every line, in order.
fn assert_complete(entries: &[LogEntry]) {
    assert_gapless(entries, 0);
    let lines: Vec<&str> = entries
        .iter()
        .filter(|e| e.message.starts_with("line "))
        .map(|e| e.message.as_str())
        .collect();
    let expected: Vec<String> = (1..=LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "every line once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_hangs_up_mid_stream_harms_neither_the_run_nor_other_followers()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let flag = dir.path().join("go");
    let repo = repo(dir.path(), &flagged(&flag));
    let stderr = dir.path().join("stderr.log");
    let mut server = Server::start_logged(
        &dir.path().join("data"),
        &["--repo", &format!("app={}", repo.display())],
        &stderr,
    );
    let mut client = server.client().await;
    let run = client
        .trigger_pipeline(trigger("app", "main"))
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;

    // Two leavers: one drops its stream but keeps its connection, the other drops its whole
    // connection. Both leave while the run is writing and the server is blocked sending to
    // them (the run writes more than a stream buffers).
    let mut keeps_connection = server.client().await;
    let mut stream = keeps_connection
        .stream_logs(logs(&run.id, 0))
        .await?
        .into_inner();
    let mut hangs_up = PipelineServiceClient::new(server.channel().await);
    let mut other = hangs_up.stream_logs(logs(&run.id, 0)).await?.into_inner();
    until_marker(&mut stream).await?;
    until_marker(&mut other).await?;
    std::fs::write(&flag, "")?;
    for _ in 0..10 {
        stream.message().await?.ok_or("stream ended early")?;
        other.message().await?.ok_or("stream ended early")?;
    }
    drop(stream);
    drop(other);
    drop(hangs_up);

    // The run goes on to its end; a new follower on the connection that dropped its stream
    // gets the whole log and the stream completes.
    let (entries, end) = tokio::time::timeout(
        Duration::from_secs(120),
        follow(&mut keeps_connection, &run.id, 0),
    )
    .await?;
    end?;
    assert_complete(&entries);
    let finished = get(&mut client, &run.id).await;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:?}");

    // The server is healthy: it stops cleanly in time, and logged no crash.
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .ok_or("the server did not exit after SIGTERM")?;
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&stderr)?;
    for line in log.lines() {
        assert!(
            line.starts_with("labhit serve: stopping"),
            "unexpected server output: {log}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_slower_than_the_run_still_gets_the_whole_stream() -> TestResult {
    let dir = tempfile::tempdir()?;
    let flag = dir.path().join("go");
    let repo = repo(dir.path(), &flagged(&flag));
    let server = Server::start(
        &dir.path().join("data"),
        &["--repo", &format!("app={}", repo.display())],
    );
    let mut client = server.client().await;
    let run = client
        .trigger_pipeline(trigger("app", "main"))
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;

    // The slow follower has tiny HTTP/2 windows, so the server can send it little before it
    // reads, and it stops reading after the marker until the run has ended.
    let slow_channel = server
        .endpoint()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await?;
    let mut slow = PipelineServiceClient::new(slow_channel);
    let mut stream = slow.stream_logs(logs(&run.id, 0)).await?.into_inner();
    let mut slow_entries = until_marker(&mut stream).await?;
    let (ended_tx, ended_rx) = oneshot::channel::<()>();
    let slow_reader = tokio::spawn(async move {
        // Paused until the run is over and a fast follower has read all of it.
        let _ = ended_rx.await;
        loop {
            match stream.message().await {
                Ok(Some(message)) => slow_entries.extend(message.entry),
                Ok(None) => return (slow_entries, Ok(())),
                Err(status) => return (slow_entries, Err(status)),
            }
        }
    });

    std::fs::write(&flag, "")?;
    let (fast, end) =
        tokio::time::timeout(Duration::from_secs(120), follow(&mut client, &run.id, 0)).await?;
    end?;
    assert_complete(&fast);
    let finished = get(&mut client, &run.id).await;
    assert_eq!(finished.status(), RunStatus::Succeeded);
    ended_tx.send(()).map_err(|()| "the slow reader is gone")?;

    let (slow_entries, end) = tokio::time::timeout(Duration::from_secs(60), slow_reader).await??;
    end?;
    assert_eq!(
        slow_entries, fast,
        "the slow follower's stream is the fast one's"
    );
    Ok(())
}
