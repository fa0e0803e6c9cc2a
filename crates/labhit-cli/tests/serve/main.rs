//! End-to-end tests of `labhit serve`: the real binary on `127.0.0.1:0`, a real git
//! repository in a temporary directory, and the generated tonic client over loopback.
//!
//! Nothing here waits on time: a test waits for a log entry, a stream's end, or the process's
//! exit. Each server is killed when its guard drops, so a failing test leaves nothing behind.
//!
//! This file holds the helpers and the trigger/follow/crash/shutdown tests; `faults` has the
//! followers that leave or lag, `control` idempotency, cancel, approve and listing,
//! `endpoints` health, reflection and the request size limit.

mod control;
mod endpoints;
mod faults;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use labhit_proto::PipelineServiceClient;
use labhit_proto::v1::{
    GetPipelineRunRequest, LogEntry, PipelineRun, RunStatus, StageStatus, StreamLogsRequest,
    TriggerPipelineRequest,
};
use tonic::Code;
use tonic::transport::Channel;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A running `labhit serve`; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `labhit serve` on an ephemeral loopback port with `data_dir` and `extra` args
    /// and waits for its `listening on ADDR` line.
    fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(data_dir, extra, Stdio::inherit())
    }

    /// [`Server::start`] with the server's stderr written to `log`.
    fn start_logged(data_dir: &Path, extra: &[&str], log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("creating the stderr log");
        Self::spawn(data_dir, extra, Stdio::from(file))
    }

    fn spawn(data_dir: &Path, extra: &[&str], stderr: Stdio) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_labhit"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting labhit serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line is not `listening on ADDR`: {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    async fn client(&self) -> PipelineServiceClient<Channel> {
        PipelineServiceClient::new(self.channel().await)
    }

    /// A new connection to the server.
    async fn channel(&self) -> Channel {
        self.endpoint().connect().await.expect("connecting")
    }

    fn endpoint(&self) -> tonic::transport::Endpoint {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr)).expect("endpoint")
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signalling the server");
    }

    /// Waits for the process to exit (bounded by `limit`, polling its status).
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::yield_now();
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A git repository with `pipeline` as `.labhit/pipeline.yaml`, committed on `main`.
fn repo(dir: &Path, pipeline: &str) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join(".labhit")).expect("mkdir");
    std::fs::write(repo.join(".labhit/pipeline.yaml"), pipeline).expect("write");
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("running git");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "pipeline"]);
    repo
}

/// Runs `git args` in `repo` (as a committer named `t`); panics when git fails.
fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("running git");
    assert!(output.status.success(), "git {args:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

const QUICK: &str = "engine: \"1\"
pipeline:
  name: quick
  stages:
    build:
      run: |
        echo first line
        echo second line
    test:
      after: build
      run: echo tested
";

fn trigger(repository: &str, git_ref: &str) -> TriggerPipelineRequest {
    TriggerPipelineRequest {
        repository: repository.to_owned(),
        git_ref: git_ref.to_owned(),
        pipeline_path: None,
        approved_stages: Vec::new(),
        idempotency_key: None,
    }
}

/// Follows `run` from `cursor` until the stream ends; returns the entries and the status
/// that ended it (`Ok` on a completed stream).
async fn follow(
    client: &mut PipelineServiceClient<Channel>,
    run: &str,
    cursor: u64,
) -> (Vec<LogEntry>, Result<(), tonic::Status>) {
    follow_request(client, tonic::Request::new(logs(run, cursor))).await
}

/// A `StreamLogs` request of the whole run from `cursor`.
fn logs(run: &str, cursor: u64) -> StreamLogsRequest {
    StreamLogsRequest {
        run_id: run.to_owned(),
        stage_id: None,
        cursor,
    }
}

/// `message` with the metadata `authorization: Bearer token`.
fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// [`follow`] with a prepared request (metadata such as a token).
async fn follow_request(
    client: &mut PipelineServiceClient<Channel>,
    request: tonic::Request<StreamLogsRequest>,
) -> (Vec<LogEntry>, Result<(), tonic::Status>) {
    let mut stream = match client.stream_logs(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut entries = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => entries.extend(message.entry),
            Ok(None) => return (entries, Ok(())),
            Err(status) => return (entries, Err(status)),
        }
    }
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

/// The code and message of a failed call; `None` when it succeeded.
fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Option<(Code, String)> {
    result.err().map(|s| (s.code(), s.message().to_owned()))
}

fn assert_gapless(entries: &[LogEntry], from: u64) {
    for (expected, entry) in (from..).zip(entries) {
        assert_eq!(entry.sequence, expected, "sequences must be gapless");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_follow_to_the_end_and_read_the_final_status() -> TestResult {
    let dir = tempfile::tempdir()?;
    let repo = repo(dir.path(), QUICK);
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
    assert_eq!(run.commit.as_deref().map(str::len), Some(40));
    let (entries, end) = follow(&mut client, &run.id, 0).await;
    end?;
    assert_gapless(&entries, 0);
    let messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    for line in ["first line", "second line", "tested"] {
        assert!(messages.contains(&line), "{line} missing from {messages:?}");
    }
    let finished = get(&mut client, &run.id).await;
    assert_eq!(finished.status(), RunStatus::Succeeded);
    assert!(
        finished
            .stages
            .iter()
            .all(|s| s.status() == StageStatus::Succeeded)
    );
    // A finished run replays the same log and completes; a cursor past the end is refused.
    let (replay, end) = follow(&mut client, &run.id, 0).await;
    end?;
    assert_eq!(replay, entries);
    let next = u64::try_from(entries.len())?;
    let (_, past) = follow(&mut client, &run.id, next + 1).await;
    assert_eq!(past.err().map(|s| s.code()), Some(Code::OutOfRange));
    Ok(())
}

const SLOW: &str = "engine: \"1\"
pipeline:
  name: slow
  stages:
    work:
      run: |
        echo one
        echo two
        echo marker
        exec sleep 600
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_marks_the_run_interrupted_and_resumed_followers_lose_nothing() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let repo = repo(dir.path(), SLOW);
    let data = dir.path().join("data");
    let repo_arg = format!("app={}", repo.display());
    let mut server = Server::start(&data, &["--repo", &repo_arg]);
    let mut client = server.client().await;
    let run = client
        .trigger_pipeline(trigger("app", "main"))
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    // Follow until the marker is committed, then kill the server mid-run.
    let mut stream = client
        .stream_logs(StreamLogsRequest {
            run_id: run.id.clone(),
            stage_id: None,
            cursor: 0,
        })
        .await?
        .into_inner();
    let mut before = Vec::new();
    while let Some(message) = stream.message().await? {
        let entry = message.entry.ok_or("entry missing")?;
        let marker = entry.message == "marker";
        before.push(entry);
        if marker {
            break;
        }
    }
    server.signal(nix::sys::signal::Signal::SIGKILL);
    server
        .wait_exit(Duration::from_secs(30))
        .ok_or("killed server did not exit")?;
    drop(stream);
    drop(server);

    let server = Server::start(&data, &["--repo", &repo_arg]);
    let mut client = server.client().await;
    let after_restart = get(&mut client, &run.id).await;
    assert_eq!(after_restart.status(), RunStatus::Failed);
    let stage = &after_restart.stages[0];
    assert_eq!(stage.status(), StageStatus::Failed);
    assert!(
        stage
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("interrupted"),
        "{:?}",
        stage.reason
    );
    // Resume from the cursor: nothing lost, nothing repeated, and the stream completes.
    let cursor = before.last().map_or(0, |e| e.sequence + 1);
    let (rest, end) = follow(&mut client, &run.id, cursor).await;
    end?;
    assert_gapless(&before, 0);
    assert_gapless(&rest, cursor);
    let (whole, end) = follow(&mut client, &run.id, 0).await;
    end?;
    let mut joined = before.clone();
    joined.extend(rest);
    assert_eq!(whole, joined);
    assert!(
        whole.iter().any(|e| e.message.contains("interrupted")),
        "a system entry says the run was interrupted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_triggers_and_ids_get_the_documented_codes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let repo = repo(
        dir.path(),
        "engine: \"1\"\npipeline:\n  name: broken\n  stages:\n    a:\n      ru: x\n",
    );
    let server = Server::start(
        &dir.path().join("data"),
        &["--repo", &format!("app={}", repo.display())],
    );
    let mut client = server.client().await;

    let (c, m) = code(client.trigger_pipeline(trigger("/etc", "main")).await).ok_or("accepted")?;
    assert_eq!(c, Code::PermissionDenied, "{m}");
    let (c, m) = code(
        client
            .trigger_pipeline(trigger("app", "no-such-branch"))
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::NotFound, "{m}");
    let mut missing = trigger("app", "main");
    missing.pipeline_path = Some("ci/none.yaml".to_owned());
    let (c, m) = code(client.trigger_pipeline(missing).await).ok_or("accepted")?;
    assert_eq!(c, Code::NotFound, "{m}");
    let (c, m) = code(client.trigger_pipeline(trigger("app", "main")).await).ok_or("accepted")?;
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    assert!(
        m.contains(".labhit/pipeline.yaml:6:"),
        "diagnostics with file:line:col: {m}"
    );
    let mut escape = trigger("app", "main");
    escape.pipeline_path = Some("../x.yaml".to_owned());
    let (c, m) = code(client.trigger_pipeline(escape).await).ok_or("accepted")?;
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("pipeline_path"), "{m}");

    let (c, m) = code(
        client
            .get_pipeline_run(GetPipelineRunRequest {
                run_id: "not-a-uuid".to_owned(),
            })
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("run_id"), "{m}");
    let (c, _) = code(
        client
            .get_pipeline_run(GetPipelineRunRequest {
                run_id: "0191b3c4-5d6e-7f80-91a2-b3c4d5e6f708".to_owned(),
            })
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::NotFound);

    // An oversized request is refused, and the server keeps serving.
    let (c, m) = code(
        client
            .trigger_pipeline(trigger(&"x".repeat(200_000), "main"))
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::ResourceExhausted, "{m}");
    assert!(m.contains("at most 65536 bytes"), "{m}");
    let (c, _) = code(client.trigger_pipeline(trigger("/etc", "main")).await).ok_or("accepted")?;
    assert_eq!(c, Code::PermissionDenied);
    Ok(())
}

#[test]
fn a_non_loopback_listen_without_a_token_file_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_labhit"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("running labhit serve");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "nothing was listening");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("--token-file"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_token_is_unauthenticated() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "alice s3cret\n")?;
    let server = Server::start(
        &dir.path().join("data"),
        &["--token-file", tokens.to_str().ok_or("path")?],
    );
    let mut client = server.client().await;
    let request = || GetPipelineRunRequest {
        run_id: "0191b3c4-5d6e-7f80-91a2-b3c4d5e6f708".to_owned(),
    };
    let none = client
        .get_pipeline_run(request())
        .await
        .err()
        .ok_or("accepted")?;
    assert_eq!(none.code(), Code::Unauthenticated);
    let mut wrong = tonic::Request::new(request());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse()?);
    let wrong = client
        .get_pipeline_run(wrong)
        .await
        .err()
        .ok_or("accepted")?;
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let mut right = tonic::Request::new(request());
    right
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse()?);
    let right = client.get_pipeline_run(right).await.err().ok_or("found")?;
    assert_eq!(
        right.code(),
        Code::NotFound,
        "authenticated, the run is unknown"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_followers_attached_ends_their_streams_and_exits_in_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let repo = repo(dir.path(), SLOW);
    let mut server = Server::start(
        &dir.path().join("data"),
        &[
            "--repo",
            &format!("app={}", repo.display()),
            "--grace",
            "1s",
        ],
    );
    let mut client = server.client().await;
    let run = client
        .trigger_pipeline(trigger("app", "main"))
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    let mut followers = Vec::new();
    for _ in 0..10 {
        let mut client = server.client().await;
        let id = run.id.clone();
        followers.push(tokio::spawn(
            async move { follow(&mut client, &id, 0).await },
        ));
    }
    // Wait until the run's marker is committed, so the followers are live.
    let mut stream = client
        .stream_logs(StreamLogsRequest {
            run_id: run.id.clone(),
            stage_id: None,
            cursor: 0,
        })
        .await?
        .into_inner();
    while let Some(message) = stream.message().await? {
        if message.entry.is_some_and(|e| e.message == "marker") {
            break;
        }
    }
    let start = Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    for follower in followers {
        let (_, end) = follower.await?;
        assert_eq!(end.err().map(|s| s.code()), Some(Code::Unavailable));
    }
    let status = server
        .wait_exit(Duration::from_secs(20))
        .ok_or("the server did not exit after SIGTERM")?;
    assert!(status.success(), "{status:?}");
    // Grace 1s + cancel grace 3s + connection grace 2s, with room for a loaded machine.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_followers_receive_identical_complete_streams() -> TestResult {
    let dir = tempfile::tempdir()?;
    let lines = "engine: \"1\"\npipeline:\n  name: many\n  stages:\n    talk:\n      run: for i in $(seq 1 500); do echo line $i; done\n";
    let repo = repo(dir.path(), lines);
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
    let mut followers = Vec::new();
    for _ in 0..100 {
        let mut client = client.clone();
        let id = run.id.clone();
        followers.push(tokio::spawn(
            async move { follow(&mut client, &id, 0).await },
        ));
    }
    let mut streams = Vec::new();
    for follower in followers {
        let (entries, end) = follower.await?;
        end?;
        streams.push(entries);
    }
    let first = &streams[0];
    assert_gapless(first, 0);
    assert!(first.iter().any(|e| e.message == "line 500"));
    assert!(streams.iter().all(|s| s == first));
    Ok(())
}

const GATED: &str = "engine: \"1\"
pipeline:
  name: gated
  stages:
    deploy:
      run: echo deployed
      gate:
        policy: main-only
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_of_the_commit_judge_the_triggered_ref() -> TestResult {
    let dir = tempfile::tempdir()?;
    let repo = repo(dir.path(), GATED);
    std::fs::write(
        repo.join(".labhit/policies.toml"),
        "[policies.main-only]\nbranches = [\"main\"]\n",
    )?;
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .map(|status| status.success())
    };
    assert!(git(&["add", "."])?);
    assert!(git(&["commit", "-q", "-m", "policy"])?);
    assert!(git(&["branch", "feature"])?);
    let server = Server::start(
        &dir.path().join("data"),
        &["--repo", &format!("app={}", repo.display())],
    );
    let mut client = server.client().await;
    for (git_ref, expected) in [
        ("main", StageStatus::Succeeded),
        ("feature", StageStatus::Denied),
    ] {
        let run = client
            .trigger_pipeline(trigger("app", git_ref))
            .await?
            .into_inner()
            .run
            .ok_or("run missing")?;
        let (_, end) = follow(&mut client, &run.id, 0).await;
        end?;
        let finished = get(&mut client, &run.id).await;
        let stage = finished.stages.first().ok_or("no stage")?;
        assert_eq!(stage.status(), expected, "ref {git_ref}: {stage:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_judge_what_the_ref_resolved_to_not_its_short_name() -> TestResult {
    let dir = tempfile::tempdir()?;
    let repo = repo(dir.path(), &GATED.replace("main-only", "branches-only"));
    std::fs::write(
        repo.join(".labhit/policies.toml"),
        "[policies.branches-only]\nbranches = [\"**\"]\n",
    )?;
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "policy"]);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    // A tag that looks like a branch, and a tag with the same name as the branch `main`.
    git(&repo, &["tag", "release/1.0"]);
    git(&repo, &["tag", "-a", "-m", "same name", "main"]);
    let server = Server::start(
        &dir.path().join("data"),
        &["--repo", &format!("app={}", repo.display())],
    );
    let mut client = server.client().await;
    for (git_ref, expected) in [
        // A short name that is a branch (a branch wins over a tag of the same name).
        ("main", StageStatus::Succeeded),
        ("refs/heads/main", StageStatus::Succeeded),
        // Tags are no branches, whatever their names look like.
        ("release/1.0", StageStatus::Denied),
        ("refs/tags/main", StageStatus::Denied),
        // A commit id is no ref at all.
        (commit.as_str(), StageStatus::Denied),
        (&commit[..12], StageStatus::Denied),
    ] {
        let run = client
            .trigger_pipeline(trigger("app", git_ref))
            .await?
            .into_inner()
            .run
            .ok_or("run missing")?;
        assert_eq!(run.commit.as_deref(), Some(commit.as_str()), "{git_ref}");
        let (_, end) = follow(&mut client, &run.id, 0).await;
        end?;
        let finished = get(&mut client, &run.id).await;
        let stage = finished.stages.first().ok_or("no stage")?;
        // Let through, the stage runs, or (the same commit again) is restored from the cache.
        let status = match stage.status() {
            StageStatus::Cached => StageStatus::Succeeded,
            other => other,
        };
        assert_eq!(status, expected, "ref {git_ref}: {stage:?}");
    }
    Ok(())
}
