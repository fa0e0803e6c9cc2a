//! `labhit serve --nats` with `labhit worker` processes against a real `nats-server`: the
//! example pipeline end to end (its `StreamLogs` content equal to an in-process run's), a
//! worker killed with SIGKILL mid-stage, 100 stages on 3 workers, a three-node cluster
//! losing the worker's node; `faults`: the server killed mid-run, approval gates,
//! cancellation, and a worker whose clock is off keeping its stages' deadlines.
//!
//! Nothing waits on time: tests wait for a worker's `ready` line, a log entry, or a stream's
//! end. Processes are killed when their guards drop.

#[path = "../common/mod.rs"]
mod common;
mod faults;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use labhit_fleet::testing::{NatsCluster, NatsServer};
use labhit_proto::PipelineServiceClient;
use labhit_proto::v1::{
    GetPipelineRunRequest, LogEntry, PipelineRun, RunStatus, StreamLogsRequest,
    TriggerPipelineRequest,
};
use tonic::transport::Channel;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A `labhit` process; killed on drop.
struct Process {
    child: Child,
    /// The first line it printed.
    first: String,
}

impl Process {
    /// Starts `labhit args` and waits for its first stdout line.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_labhit"))
            .args(args)
            .envs(env.iter().copied())
            .env("LABHIT_CACHE_DIR", common::component_cache())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting labhit");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("reading the first line");
        Self { child, first }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `labhit serve` on a free port; `nats` is `--nats URL` when given.
fn serve(dir: &Path, repo: &Path, nats: Option<&str>, env: &[(&str, &str)]) -> (Process, String) {
    let data = dir.join(format!("data-{}", nats.is_some()));
    let extensions = common::example_extensions().0.path().to_owned();
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data.to_string_lossy().into_owned(),
        "--repo".into(),
        format!("app={}", repo.display()),
        "--extensions".into(),
        extensions.to_string_lossy().into_owned(),
    ];
    if let Some(url) = nats {
        args.extend(["--nats".into(), url.to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = Process::start(&args, env);
    let addr = process
        .first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not `listening on ADDR`: {:?}", process.first))
        .to_owned();
    (process, addr)
}

/// `labhit worker` named `name` with `extra` arguments and, unless `extra` names its own
/// `--extensions`, the example extensions.
fn worker(url: &str, name: &str, extra: &[&str]) -> Process {
    worker_with_env(url, name, extra, &[])
}

/// [`worker`] with `env` added to its environment; `extra` may name its own `--concurrency`
/// (else 2).
fn worker_with_env(url: &str, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Process {
    let extensions = common::example_extensions()
        .0
        .path()
        .to_string_lossy()
        .into_owned();
    let mut args = vec!["worker", "--nats", url, "--name", name];
    if !extra.contains(&"--concurrency") {
        args.extend(["--concurrency", "2"]);
    }
    if !extra.contains(&"--extensions") {
        args.extend(["--extensions", &extensions]);
    }
    args.extend_from_slice(extra);
    // No per-user extensions directory: a worker has exactly what it is given.
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path().to_string_lossy().into_owned();
    let mut all = vec![("XDG_DATA_HOME", home.as_str()), ("LABHIT_EXTENSIONS", "")];
    all.extend_from_slice(env);
    let process = Process::start(&args, &all);
    assert!(
        process.first.starts_with(&format!("worker {name} ready")),
        "{:?}",
        process.first
    );
    process
}

/// A git repository holding `files`, committed on `main`.
fn repo(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let repo = dir.join("repo");
    for (path, text) in files {
        let path = repo.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["commit", "-q", "-m", "pipeline"],
    ] {
        let status = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    }
    repo
}

async fn client(addr: &str) -> PipelineServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connecting");
    PipelineServiceClient::new(channel)
}

async fn trigger(
    client: &mut PipelineServiceClient<Channel>,
    path: &str,
    approve: &[&str],
) -> String {
    client
        .trigger_pipeline(TriggerPipelineRequest {
            repository: "app".to_owned(),
            git_ref: "main".to_owned(),
            pipeline_path: Some(path.to_owned()),
            approved_stages: approve.iter().map(|s| (*s).to_owned()).collect(),
            idempotency_key: None,
        })
        .await
        .expect("TriggerPipeline")
        .into_inner()
        .run
        .expect("run")
        .id
}

/// The run's log from `cursor`, followed until the stream ends; stops early (returning
/// what it has) once an entry's message is `until`.
async fn follow(
    client: &mut PipelineServiceClient<Channel>,
    run: &str,
    until: Option<&str>,
) -> Vec<LogEntry> {
    let mut stream = client
        .stream_logs(StreamLogsRequest {
            run_id: run.to_owned(),
            stage_id: None,
            cursor: 0,
        })
        .await
        .expect("StreamLogs")
        .into_inner();
    let mut entries = Vec::new();
    while let Some(message) = stream.message().await.expect("StreamLogs message") {
        if let Some(entry) = message.entry {
            let stop = until.is_some_and(|u| entry.message == u);
            entries.push(entry);
            if stop {
                return entries;
            }
        }
    }
    entries
}

async fn get(client: &mut PipelineServiceClient<Channel>, run: &str) -> PipelineRun {
    client
        .get_pipeline_run(GetPipelineRunRequest {
            run_id: run.to_owned(),
        })
        .await
        .expect("GetPipelineRun")
        .into_inner()
        .run
        .expect("run")
}

/// A log's content without what differs between two runs of the same pipeline: per stage
/// (and the run's own entries) the `(level, stream, message)` in order, with durations, ids
/// and temporary paths replaced.
fn content(entries: &[LogEntry]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by_stage = std::collections::BTreeMap::<String, Vec<String>>::new();
    for entry in entries {
        let message = normalise(&entry.message);
        by_stage
            .entry(entry.stage_id.clone().unwrap_or_default())
            .or_default()
            .push(format!("{} {} {message}", entry.level, entry.stream));
    }
    by_stage
}

fn normalise(message: &str) -> String {
    let mut out = String::new();
    for word in message.split(' ') {
        let bare = word.trim_matches(|c: char| ",.:;()`".contains(c));
        let is_duration = bare
            .strip_suffix("ms")
            .or_else(|| bare.strip_suffix('s'))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.'));
        let is_uuid = bare.len() == 36 && bare.chars().filter(|c| *c == '-').count() == 4;
        // `up to N at a time`: the server's parallelism, larger with a fleet.
        let is_jobs = out.ends_with(" up to") && bare.chars().all(|c| c.is_ascii_digit());
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(if is_duration {
            "<duration>"
        } else if is_jobs {
            "<jobs>"
        } else if is_uuid {
            "<id>"
        } else {
            word
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_pipeline_on_two_workers_logs_what_an_in_process_run_logs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pipeline = std::fs::read_to_string(common::root().join("examples/pipeline.yaml"))?;
    let policies = std::fs::read_to_string(common::root().join(".labhit/policies.toml"))?;
    let repo = repo(
        dir.path(),
        &[
            (".labhit/pipeline.yaml", &pipeline),
            (".labhit/policies.toml", &policies),
        ],
    );
    let nats = NatsServer::start()?;
    let _workers = [
        worker(&nats.url(), "w1", &[]),
        worker(&nats.url(), "w2", &[]),
    ];

    let (_local, local_addr) = serve(dir.path(), &repo, None, &[]);
    let mut local = client(&local_addr).await;
    let run = trigger(&mut local, ".labhit/pipeline.yaml", &["deploy"]).await;
    let in_process = follow(&mut local, &run, None).await;
    let finished = get(&mut local, &run).await;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:#?}");

    let (_fleet, fleet_addr) = serve(dir.path(), &repo, Some(&nats.url()), &[]);
    let mut fleet = client(&fleet_addr).await;
    let run = trigger(&mut fleet, ".labhit/pipeline.yaml", &["deploy"]).await;
    let on_fleet = follow(&mut fleet, &run, None).await;
    let finished = get(&mut fleet, &run).await;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:#?}");
    for (expected, entry) in (0..).zip(&on_fleet) {
        assert_eq!(entry.sequence, expected, "gapless");
    }
    let (a, b) = (content(&in_process), content(&on_fleet));
    for stage in a.keys().chain(b.keys()) {
        assert_eq!(
            a.get(stage),
            b.get(stage),
            "stage `{stage}`: in-process (left) and fleet (right) logs differ"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stage_loses_its_task_to_another_which_finishes_it_once() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    let pipeline = format!(
        "engine: \"1\"
pipeline:
  name: redelivery
  stages:
    long:
      run: |
        echo attempt >> {o}/attempts
        echo step-is-running
        while [ ! -e {o}/go ]; do sleep 0.05; done
        echo finished
        echo result > result.txt
    after:
      after: long
      run: cat result.txt
",
        o = outside.display()
    );
    let repo = repo(dir.path(), &[(".labhit/pipeline.yaml", &pipeline)]);
    let nats = NatsServer::start()?;
    let mut first = worker(&nats.url(), "doomed", &["--ack-wait", "2s"]);
    let (_server, addr) = serve(dir.path(), &repo, Some(&nats.url()), &[]);
    let mut client = client(&addr).await;
    let run = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    // The stage is running on the only worker: kill it there.
    follow(&mut client, &run, Some("step-is-running")).await;
    first.kill();
    let _second = worker(&nats.url(), "survivor", &["--ack-wait", "2s"]);
    std::fs::write(outside.join("go"), "")?;
    let entries = follow(&mut client, &run, None).await;
    let finished = get(&mut client, &run).await;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:#?}");
    let messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    let count = |m: &str| messages.iter().filter(|x| **x == m).count();
    // Redelivered: it ran twice, but its log is there once.
    assert_eq!(
        std::fs::read_to_string(outside.join("attempts"))?,
        "attempt\nattempt\n"
    );
    assert_eq!(count("step-is-running"), 1, "{messages:#?}");
    assert_eq!(count("finished"), 1, "{messages:#?}");
    assert_eq!(count("result"), 1, "{messages:#?}");
    // `long`'s snapshot went to the object store, committed once.
    let committed: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.strip_prefix("cache: committed `"))
        .filter_map(|m| m.strip_suffix('`'))
        .collect();
    assert_eq!(committed.len(), 2, "`long` and `after`: {messages:#?}");
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.starts_with(&format!("committed snapshot `{}`", committed[0])))
            .count(),
        1,
        "{messages:#?}"
    );
    let fleet =
        labhit_fleet::Fleet::connect(&nats.url(), labhit_fleet::FleetOptions::default()).await?;
    for tag in committed {
        let tag = labhit_protocol::ids::SnapshotRef::new(tag);
        assert!(
            fleet.has_snapshot(&tag).await?,
            "`{tag}` in the object store"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_a_fresh_worker_and_server_is_a_hit_restored_from_the_object_store() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let pipeline = "engine: \"1\"
pipeline:
  name: cached
  stages:
    make:
      run: echo made > made.txt
    use:
      after: make
      run: cat made.txt > used.txt && echo used
";
    let repo = repo(dir.path(), &[(".labhit/pipeline.yaml", pipeline)]);
    let nats = NatsServer::start()?;

    // Worker A and a server run it once.
    let mut a = worker(&nats.url(), "a", &[]);
    let first_dir = dir.path().join("first");
    let (mut first_server, addr) = serve(&first_dir, &repo, Some(&nats.url()), &[]);
    let mut client1 = client(&addr).await;
    let run = trigger(&mut client1, ".labhit/pipeline.yaml", &[]).await;
    let entries = follow(&mut client1, &run, None).await;
    let finished = get(&mut client1, &run).await;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:#?}");
    assert!(entries.iter().any(|e| e.message == "used"));
    a.kill();
    first_server.kill();

    // Worker B (a work dir of its own) and a server with a fresh data dir: hits from the
    // object store, restored on B.
    let _b = worker(&nats.url(), "b", &[]);
    let second_dir = dir.path().join("second");
    let (_second_server, addr) = serve(&second_dir, &repo, Some(&nats.url()), &[]);
    let mut client2 = client(&addr).await;
    let run = trigger(&mut client2, ".labhit/pipeline.yaml", &[]).await;
    let entries = follow(&mut client2, &run, None).await;
    let finished = get(&mut client2, &run).await;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:#?}");
    assert!(
        finished
            .stages
            .iter()
            .all(|s| s.status() == labhit_proto::v1::StageStatus::Cached),
        "{finished:#?}"
    );
    let messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.starts_with("cache hit: restored snapshot"))
            .count(),
        2,
        "{messages:#?}"
    );
    assert!(
        !messages.contains(&"used"),
        "the command was skipped: {messages:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_stages_on_three_workers_all_succeed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut pipeline = String::from("engine: \"1\"\npipeline:\n  name: wide\n  stages:\n");
    for i in 0..100 {
        pipeline.push_str(&format!("    s{i}:\n      run: echo stage-{i}\n"));
    }
    let repo = repo(dir.path(), &[(".labhit/pipeline.yaml", &pipeline)]);
    let nats = NatsServer::start()?;
    let _workers = [
        worker(&nats.url(), "w1", &[]),
        worker(&nats.url(), "w2", &[]),
        worker(&nats.url(), "w3", &[]),
    ];
    let (_server, addr) = serve(dir.path(), &repo, Some(&nats.url()), &[]);
    let mut client = client(&addr).await;
    let run = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    let entries = follow(&mut client, &run, None).await;
    let finished = get(&mut client, &run).await;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:#?}");
    assert_eq!(finished.stages.len(), 100);
    for i in 0..100 {
        let line = format!("stage-{i}");
        assert_eq!(
            entries.iter().filter(|e| e.message == line).count(),
            1,
            "`{line}` once"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_keeps_working_when_the_workers_node_dies() -> TestResult {
    let dir = tempfile::tempdir()?;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    let pipeline = format!(
        "engine: \"1\"
pipeline:
  name: cluster
  stages:
    first:
      run: |
        echo step-is-running
        while [ ! -e {o}/go ]; do sleep 0.05; done
        echo first-done
    second:
      after: first
      run: echo second-done
",
        o = outside.display()
    );
    let repo = repo(dir.path(), &[(".labhit/pipeline.yaml", &pipeline)]);
    let mut cluster = NatsCluster::start()?;
    let urls: Vec<String> = cluster.nodes.iter().map(NatsServer::url).collect();
    // The worker knows only node 1 at first (it learns the others from the cluster); the
    // server knows nodes 0 and 2.
    let _worker = worker(&urls[1], "w1", &["--ack-wait", "2s", "--replicas", "3"]);
    let server_urls = format!("{},{}", urls[0], urls[2]);
    let (_server, addr) = serve(
        dir.path(),
        &repo,
        Some(&server_urls),
        &[
            ("LABHIT_NATS_REPLICAS", "3"),
            ("LABHIT_NATS_ACK_WAIT", "2s"),
        ],
    );
    let mut client = client(&addr).await;
    let run = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    follow(&mut client, &run, Some("step-is-running")).await;
    cluster.nodes[1].kill();
    std::fs::write(outside.join("go"), "")?;
    let entries = follow(&mut client, &run, None).await;
    let finished = get(&mut client, &run).await;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:#?}");
    let messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    for line in ["step-is-running", "first-done", "second-done"] {
        assert_eq!(
            messages.iter().filter(|m| **m == line).count(),
            1,
            "`{line}` once in {messages:#?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_whose_extension_no_worker_has_fails_naming_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pipeline = "engine: \"1\"
pipeline:
  name: orphan
  stages:
    sums:
      use: util/checksum@^0.1
      with:
        patterns: [\"*.txt\"]
";
    let repo = repo(
        dir.path(),
        &[(".labhit/pipeline.yaml", pipeline), ("a.txt", "a\n")],
    );
    let nats = NatsServer::start()?;
    let empty = dir.path().join("no-extensions");
    std::fs::create_dir_all(&empty)?;
    let empty = empty.to_string_lossy().into_owned();
    let _worker = worker(&nats.url(), "bare", &["--extensions", &empty]);
    let (_server, addr) = serve(dir.path(), &repo, Some(&nats.url()), &[]);
    let mut client = client(&addr).await;
    let run = trigger(&mut client, ".labhit/pipeline.yaml", &[]).await;
    follow(&mut client, &run, None).await;
    let finished = get(&mut client, &run).await;
    assert_eq!(finished.status(), RunStatus::Failed, "{finished:#?}");
    let reason = finished.stages[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("no worker of the fleet has extension `util/checksum@0.1")
            && reason.contains("labhit worker --extensions"),
        "{reason}"
    );
    Ok(())
}
