//! Faults of a fleet run, against real `nats-server`, `labhit serve --nats` and
//! `labhit worker` processes: the server killed with SIGKILL mid-run and restarted on the
//! same data dir, approval and policy gates, cancellation, and a worker whose clock is an
//! hour off (real skew through libfaketime's `LD_PRELOAD`) keeping its stages' deadlines.
//!
//! Waits are on what the processes report: a log line, a reply on the fleet's events
//! stream, a run's state (polled; the pause between two looks only paces the loop).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt as _;
use labhit_fleet::testing::NatsServer;
use labhit_fleet::wire::{Failure, Need, Outcome, Reply};
use labhit_fleet::{Fleet, FleetOptions};
use labhit_proto::PipelineServiceClient;
use labhit_proto::v1::{
    ApprovePipelineStageRequest, CancelPipelineRunRequest, PipelineRun, RunStatus, StageRun,
    StageStatus,
};
use tonic::transport::Channel;

use crate::{
    TestResult, client, common, follow, get, repo, serve, trigger, worker, worker_with_env,
};

/// How long a test waits for anything before it fails saying what it waited for.
const DEADLINE: Duration = Duration::from_secs(120);

async fn connect(url: &str) -> Fleet {
    Fleet::connect(url, FleetOptions::default())
        .await
        .expect("connecting to NATS")
}

/// The first `n` replies workers published for tasks of `run`, with their subjects.
async fn replies(fleet: &Fleet, run: &str, n: usize) -> Vec<(String, Reply)> {
    let consumer = fleet
        .events
        .create_consumer(pull::OrderedConfig {
            filter_subjects: vec![format!("labhit.done.{run}.>")],
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("a consumer of the replies");
    let mut messages = consumer.messages().await.expect("the replies");
    let mut out = Vec::new();
    while out.len() < n {
        let Ok(next) = tokio::time::timeout(DEADLINE, messages.next()).await else {
            panic!(
                "{} of {n} replies for the tasks of run {run} after {}s: {out:#?}",
                out.len(),
                DEADLINE.as_secs()
            );
        };
        let message = next.expect("the replies' stream ended").expect("a reply");
        let reply: Reply = serde_json::from_slice(&message.payload).expect("a reply's JSON");
        out.push((message.subject.to_string(), reply));
    }
    out
}

/// How many tasks were ever published (the tasks stream's last sequence) and how many are
/// still in it (not acknowledged).
async fn tasks(fleet: &Fleet) -> (u64, u64) {
    let info = fleet.tasks.get_info().await.expect("the tasks stream");
    (info.state.last_sequence, info.state.messages)
}

/// Looks at the run until `done` holds; fails naming `what` after [`DEADLINE`].
async fn wait_for(
    client: &mut PipelineServiceClient<Channel>,
    run: &str,
    what: &str,
    done: impl Fn(&PipelineRun) -> bool,
) -> PipelineRun {
    let start = Instant::now();
    loop {
        let now = get(client, run).await;
        if done(&now) {
            return now;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not seen after {}s: {now:#?}",
            DEADLINE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stage<'a>(run: &'a PipelineRun, id: &str) -> &'a StageRun {
    run.stages
        .iter()
        .find(|s| s.stage_id == id)
        .unwrap_or_else(|| panic!("no stage `{id}` in {run:#?}"))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn cancelled(reply: &Reply) -> Option<&str> {
    match &reply.outcome {
        Outcome::Failed {
            failure: Failure::Cancelled,
            message,
        } => Some(message),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_marks_it_interrupted_and_its_tasks_on_the_fleet_run_no_further()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let o = dir.path().join("outside");
    std::fs::create_dir_all(&o)?;
    let pipeline = format!(
        "engine: \"1\"
pipeline:
  name: restart
  stages:
    hold:
      run: |
        echo started >> {o}/ran
        echo step-is-running
        while [ ! -e {o}/go ]; do sleep 0.05; done
        echo finished >> {o}/finished
        echo hold-finished
",
        o = o.display()
    );
    let repo = repo(dir.path(), &[(".labhit/pipeline.yaml", &pipeline)]);
    let nats = NatsServer::start()?;
    let fleet = connect(&nats.url()).await;
    // One task at a time: the first run's stage runs on the worker, the second run's task
    // waits in the stream.
    let mut worker = worker(&nats.url(), "w1", &["--concurrency", "1"]);
    let (mut server, addr) = serve(dir.path(), &repo, Some(&nats.url()), &[]);
    let mut client = client(&addr).await;
    let running = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    follow(&mut client, &running, Some("step-is-running")).await;
    let queued = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    let start = Instant::now();
    while tasks(&fleet).await != (2, 2) {
        assert!(start.elapsed() < DEADLINE, "both tasks published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    server.kill();
    let (_server, addr) = serve(dir.path(), &repo, Some(&nats.url()), &[]);
    let mut client = crate::client(&addr).await;

    // Marked: each run failed, its stage says it was interrupted, its log says so.
    for run in [&running, &queued] {
        let marked = get(&mut client, run).await;
        assert_eq!(marked.status(), RunStatus::Failed, "{marked:#?}");
        let reason = stage(&marked, "hold").reason.clone().unwrap_or_default();
        assert!(reason.starts_with("interrupted: "), "{marked:#?}");
        let log = follow(&mut client, run, None).await;
        assert!(
            log.iter()
                .any(|e| e.message.starts_with("run interrupted: the server stopped")),
            "{log:#?}"
        );
    }

    // The running task is stopped on the worker, the queued one is acknowledged unrun: both
    // replies say they were cancelled, and nothing of the dead runs ran twice or finished.
    let stopped = replies(&fleet, &running, 1).await.remove(0).1;
    let unrun = replies(&fleet, &queued, 1).await.remove(0).1;
    assert!(cancelled(&stopped).is_some(), "{stopped:#?}");
    assert!(
        cancelled(&unrun)
            .is_some_and(|m| m.starts_with("not started: the run was interrupted by a restart")),
        "{unrun:#?}"
    );
    assert_eq!(
        lines(&o.join("ran")).len(),
        1,
        "only the running stage started"
    );
    assert!(lines(&o.join("finished")).is_empty(), "nothing finished");
    for run in [&running, &queued] {
        let after = get(&mut client, run).await;
        assert_eq!(
            after.status(),
            RunStatus::Failed,
            "late replies change nothing"
        );
    }

    // The new server and the worker are healthy: a new run of the pipeline succeeds with its
    // own lines only, and no task is left in the stream.
    assert!(worker.child.try_wait()?.is_none(), "the worker is alive");
    std::fs::write(o.join("go"), "")?;
    let again = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    let entries = follow(&mut client, &again, None).await;
    let finished = get(&mut client, &again).await;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:#?}");
    let count = entries
        .iter()
        .filter(|e| e.message == "hold-finished")
        .count();
    assert_eq!(count, 1, "{entries:#?}");
    assert_eq!(lines(&o.join("ran")).len(), 2);
    let start = Instant::now();
    while tasks(&fleet).await != (3, 0) {
        assert!(start.elapsed() < DEADLINE, "every task acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.kill();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_gate_holds_its_task_back_until_approved_and_a_denied_stage_sends_none()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let pipeline = "engine: \"1\"
pipeline:
  name: gates
  stages:
    build:
      run: echo built
    deploy:
      after: build
      gate:
        approval: required
      run: echo deployed
    shut:
      after: build
      gate:
        policy: closed
      run: echo never
";
    let policies = "[policies.closed]\ndescription = \"nothing passes\"\nallow = false\n";
    let repo = repo(
        dir.path(),
        &[
            (".labhit/pipeline.yaml", pipeline),
            (".labhit/policies.toml", policies),
        ],
    );
    let nats = NatsServer::start()?;
    let fleet = connect(&nats.url()).await;
    let _worker = worker(&nats.url(), "w1", &[]);
    let (_server, addr) = serve(dir.path(), &repo, Some(&nats.url()), &[]);
    let mut client = client(&addr).await;
    let run = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    let waiting = wait_for(&mut client, &run, "deploy waiting, shut denied", |r| {
        stage(r, "deploy").status() == StageStatus::WaitingForApproval
            && stage(r, "shut").status() == StageStatus::Denied
    })
    .await;
    assert_eq!(stage(&waiting, "build").status(), StageStatus::Succeeded);
    assert_eq!(tasks(&fleet).await.0, 1, "only `build` was published");

    client
        .approve_pipeline_stage(ApprovePipelineStageRequest {
            run_id: run.clone(),
            stage_id: "deploy".to_owned(),
        })
        .await?;
    let entries = follow(&mut client, &run, None).await;
    let finished = get(&mut client, &run).await;
    assert_eq!(finished.status(), RunStatus::Failed, "`shut` was denied");
    assert_eq!(stage(&finished, "deploy").status(), StageStatus::Succeeded);
    assert!(stage(&finished, "deploy").approved_by.is_some());
    assert_eq!(stage(&finished, "shut").status(), StageStatus::Denied);
    let count = |m: &str| entries.iter().filter(|e| e.message == m).count();
    assert_eq!(count("deployed"), 1, "{entries:#?}");
    assert_eq!(count("never"), 0, "{entries:#?}");
    let answered = replies(&fleet, &run, 2).await;
    let subjects: Vec<&str> = answered.iter().map(|(s, _)| s.as_str()).collect();
    assert!(
        subjects[0].contains(".build.") && subjects[1].contains(".deploy."),
        "{subjects:#?}"
    );
    assert_eq!(tasks(&fleet).await.0, 2, "`deploy` published once approved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_its_stage_on_the_worker_which_acknowledges_the_task() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let o = dir.path().join("outside");
    std::fs::create_dir_all(&o)?;
    let pipeline = format!(
        "engine: \"1\"
pipeline:
  name: cancel
  stages:
    long:
      run: |
        echo $$ > {o}/pid
        echo attempt >> {o}/attempts
        echo step-is-running
        while true; do sleep 0.05; done
",
        o = o.display()
    );
    let repo = repo(dir.path(), &[(".labhit/pipeline.yaml", &pipeline)]);
    let nats = NatsServer::start()?;
    let fleet = connect(&nats.url()).await;
    // A short ack wait: a task left unacknowledged would come back within the test.
    let _worker = worker(&nats.url(), "w1", &["--ack-wait", "2s"]);
    let (_server, addr) = serve(
        dir.path(),
        &repo,
        Some(&nats.url()),
        &[("LABHIT_NATS_ACK_WAIT", "2s")],
    );
    let mut client = client(&addr).await;
    let run = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    follow(&mut client, &run, Some("step-is-running")).await;
    client
        .cancel_pipeline_run(CancelPipelineRunRequest {
            run_id: run.clone(),
        })
        .await?;
    follow(&mut client, &run, None).await;
    let finished = get(&mut client, &run).await;
    assert_eq!(finished.status(), RunStatus::Cancelled, "{finished:#?}");
    assert_eq!(stage(&finished, "long").status(), StageStatus::Cancelled);

    let answered = replies(&fleet, &run, 1).await;
    assert!(cancelled(&answered[0].1).is_some(), "{answered:#?}");
    let pid: i32 = std::fs::read_to_string(o.join("pid"))?.trim().parse()?;
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH),
        "the stage's shell is gone from the worker"
    );
    // Acknowledged: gone from the work queue, so never redelivered.
    let start = Instant::now();
    while tasks(&fleet).await != (1, 0) {
        assert!(start.elapsed() < DEADLINE, "the task acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let consumer = fleet
        .tasks
        .get_consumer::<pull::Config>(&format!("need-{}", Need::Local.token()))
        .await
        .expect("the consumer of local tasks");
    let info = consumer.get_info().await?;
    assert_eq!(
        (info.delivered.stream_sequence, info.num_redelivered),
        (1, 0),
        "{info:#?}"
    );
    assert_eq!(lines(&o.join("attempts")).len(), 1);
    Ok(())
}

/// libfaketime's preload library; fails naming the install step when it is absent.
fn libfaketime() -> PathBuf {
    let candidates = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")]);
    for path in candidates {
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "libfaketime is missing (no /usr/lib/*/faketime/libfaketime.so.1): install it with \
         `apt-get install -y faketime` (the step in .ci/run)"
    )
}

fn seconds(t: &Option<prost_types::Timestamp>) -> f64 {
    let t = t.as_ref().expect("a timestamp");
    t.seconds as f64 + f64::from(t.nanos) / 1e9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_an_hour_ahead_keeps_its_stages_deadlines_and_the_server_stamps_the_log()
-> TestResult {
    skewed_worker(3600).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_an_hour_behind_keeps_its_stages_deadlines_and_the_server_stamps_the_log()
-> TestResult {
    skewed_worker(-3600).await
}

/// A run whose stages all go to a worker whose wall clock is `offset` seconds off: a
/// one-minute deadline is not over at once, a two-second one stops `sleep 30` and an
/// extension asleep in the host, and every log entry is stamped on the server's clock.
async fn skewed_worker(offset: i64) -> TestResult {
    let lib = libfaketime();
    let lib = lib.to_string_lossy().into_owned();
    let faketime = format!("{offset:+}");
    // The wall clock off, the monotonic clock untouched: what a machine whose clock is off
    // has (libfaketime's default also moves the monotonic clock, which no real machine does,
    // and which breaks every timed wait: the kernel's monotonic clock is not faked).
    let skew = [
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME", faketime.as_str()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    // The skew is real: a process under it reads a clock that far off.
    let out = Command::new("date").arg("+%s").envs(skew).output()?;
    let faked: i64 = String::from_utf8(out.stdout)?.trim().parse()?;
    let real = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    assert!(
        (faked - real - offset).abs() < 60,
        "libfaketime did not move the clock by {offset}s: {faked} vs {real}"
    );

    let dir = tempfile::tempdir()?;
    let pipeline = "engine: \"1\"
pipeline:
  name: skew
  stages:
    talk:
      run: |
        echo one
        echo two
      sandbox:
        timeout: 1m
    stuck:
      after: talk
      run: |
        echo stuck-started
        sleep 30
        echo never
      sandbox:
        timeout: 2s
    nap:
      after: talk
      use: test/hostile
      with: {mode: sleep, count: 3600}
      sandbox:
        timeout: 2s
";
    let repo = repo(dir.path(), &[(".labhit/pipeline.yaml", pipeline)]);
    let nats = NatsServer::start()?;
    // The hostile guest sleeps in the host for an hour unless its deadline stops it (its
    // manifest's own timeout raised out of the way).
    let hostile = common::hostile_extensions(&[("timeout = \"1s\"", "timeout = \"1h\"")])
        .to_string_lossy()
        .into_owned();
    let examples = common::example_extensions()
        .0
        .path()
        .to_string_lossy()
        .into_owned();
    let extensions = ["--extensions", &examples, "--extensions", &hostile];
    let _worker = worker_with_env(&nats.url(), "skewed", &extensions, &skew);
    let (_server, addr) = serve(
        dir.path(),
        &repo,
        Some(&nats.url()),
        &[("LABHIT_EXTENSIONS", &hostile)],
    );
    let mut client = client(&addr).await;
    let run = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    let entries = follow(&mut client, &run, None).await;
    let finished = get(&mut client, &run).await;

    // A one-minute deadline is not over at once, and a two-second one stops `sleep 30`
    // after two seconds.
    assert_eq!(stage(&finished, "talk").status(), StageStatus::Succeeded);
    let stuck = stage(&finished, "stuck");
    assert_eq!(stuck.status(), StageStatus::Failed, "{finished:#?}");
    let reason = stuck.reason.clone().unwrap_or_default();
    assert!(reason.contains("deadline of 2s"), "{reason}");
    let took = seconds(&stuck.finished_at) - seconds(&stuck.started_at);
    assert!(took < 20.0, "the 2s deadline held: {took}s");
    let nap = stage(&finished, "nap");
    assert_eq!(nap.status(), StageStatus::Failed, "{finished:#?}");
    let reason = nap.reason.clone().unwrap_or_default();
    assert!(reason.contains("deadline of 2s"), "{reason}");
    let took = seconds(&nap.finished_at) - seconds(&nap.started_at);
    assert!(took < 20.0, "the extension's 2s deadline held: {took}s");
    let messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    assert!(messages.contains(&"stuck-started") && !messages.contains(&"never"));

    // Every entry, the worker's lines included, is stamped on the server's clock.
    let (from, to) = (
        seconds(&finished.created_at) - 5.0,
        seconds(&finished.finished_at) + 5.0,
    );
    for entry in &entries {
        let at = seconds(&entry.timestamp);
        assert!(
            (from..=to).contains(&at),
            "entry {:?} is stamped {at}, outside the run's {from}..={to} on the server's clock",
            entry.message
        );
    }
    Ok(())
}
