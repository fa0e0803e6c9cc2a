//! The local executor, the snapshot store and run workspaces, end to end on real processes
//! and directories.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use labhit_protocol::executor::{CacheDecision, CommandStep, ExecutorInput, StepResult};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef, StepId};
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::{LogLevel, LogStream};
use labhit_runtime::executor::{ExecContext, ExecError, Executor, LocalExecutor};
use labhit_runtime::snapshot::{SnapshotError, SnapshotStore};
use labhit_runtime::workspace::{RunWorkspace, WorkspaceManifest, WorkspaceSource};
use labhit_runtime::{Cancellation, CollectingSink, LogSink};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn stage() -> StageId {
    StageId::new("build").expect("valid stage id")
}

fn input(script: &str, decision: CacheDecision) -> ExecutorInput {
    ExecutorInput {
        step: CommandStep::new(script),
        workspace_archive_id: ArchiveId(uuid::Uuid::nil()),
        env: BTreeMap::new(),
        workdir: "/workspace".to_owned(),
        run_id: RunId(uuid::Uuid::nil()),
        step_id: StepId(uuid::Uuid::nil()),
        cache_lookup: decision,
        parent_snapshot: None,
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    store: SnapshotStore,
    executor: LocalExecutor,
    workspace: std::path::PathBuf,
    sink: Arc<CollectingSink>,
    stage: StageId,
}

impl Setup {
    /// A new workspace whose executor uses `store`.
    fn sharing(store: &SnapshotStore) -> Self {
        Self {
            executor: LocalExecutor::new(store.clone()),
            store: store.clone(),
            ..Setup::new()
        }
    }

    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::new(dir.path().join("snapshots"));
        let workspace = dir.path().join("workspace");
        fs::create_dir(&workspace).expect("mkdir workspace");
        Self {
            executor: LocalExecutor::new(store.clone()),
            store,
            workspace,
            _dir: dir,
            sink: Arc::new(CollectingSink::new()),
            stage: stage(),
        }
    }

    fn ctx(&self) -> ExecContext<'_> {
        let mut ctx = ExecContext::new(&self.stage, &self.workspace);
        ctx.log = self.sink.clone();
        ctx
    }

    fn run(&self, input: &ExecutorInput) -> Result<StepResult, ExecError> {
        self.executor.execute(input, &self.ctx())
    }

    fn lines(&self, stream: LogStream) -> Vec<String> {
        self.sink
            .entries()
            .into_iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.message)
            .collect()
    }
}

#[test]
fn output_is_streamed_line_by_line_in_order() -> TestResult {
    let setup = Setup::new();
    let result = setup.run(&input(
        "echo one; echo two >&2; echo three; printf 'no newline'",
        CacheDecision::MissNoCommit,
    ))?;
    assert_eq!(result, StepResult::success(Vec::new()));
    assert_eq!(
        setup.lines(LogStream::Stdout),
        ["one", "three", "no newline"]
    );
    assert_eq!(setup.lines(LogStream::Stderr), ["two"]);
    let entries = setup.sink.entries();
    for entry in &entries {
        assert_eq!(entry.stage.as_ref(), Some(&setup.stage));
        let expected = match entry.stream {
            LogStream::Stdout => LogLevel::Info,
            LogStream::Stderr => LogLevel::Warn,
            _ => continue,
        };
        assert_eq!(entry.level, expected);
    }
    let sequences: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
    let mut sorted = sequences.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), sequences.len(), "sequences are unique");
    Ok(())
}

#[test]
fn lines_arrive_while_the_command_runs() -> TestResult {
    // The sink cancels the step when it sees the first line: if output were only delivered
    // at the end, the `sleep 30` would run to completion.
    let setup = Setup::new();
    let cancellation = Cancellation::new();
    let trigger = cancellation.clone();
    let collected = setup.sink.clone();
    let sink = move |entry: labhit_protocol::run::LogEntry| {
        if entry.message == "ready" {
            trigger.cancel();
        }
        collected.emit(entry);
    };
    let mut ctx = setup.ctx();
    ctx.log = Arc::new(sink);
    ctx.cancellation = cancellation;
    let start = Instant::now();
    let err = setup
        .executor
        .execute(
            &input("echo ready; sleep 30", CacheDecision::MissNoCommit),
            &ctx,
        )
        .expect_err("cancelled");
    assert!(matches!(err, ExecError::Cancelled { .. }), "{err}");
    assert_eq!(err.to_string(), "stage `build`: command was cancelled");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(setup.lines(LogStream::Stdout), ["ready"]);
    Ok(())
}

#[test]
fn exit_codes_are_reported() -> TestResult {
    let setup = Setup::new();
    assert_eq!(
        setup
            .run(&input("exit 3", CacheDecision::MissNoCommit))?
            .exit_code,
        3
    );
    // `sh -e`: the first failing command ends the script.
    let result = setup.run(&input(
        "false; echo unreachable",
        CacheDecision::MissNoCommit,
    ))?;
    assert_eq!(result.exit_code, 1);
    assert!(setup.lines(LogStream::Stdout).is_empty());
    // Killed by a signal: 128 + signal.
    let result = setup.run(&input("kill -KILL $$", CacheDecision::MissNoCommit))?;
    assert_eq!(result.exit_code, 137);
    Ok(())
}

#[test]
fn a_missing_shell_is_a_spawn_error() {
    let setup = Setup::new();
    let mut step = input("true", CacheDecision::MissNoCommit);
    step.step.shell = Some(vec!["/nonexistent/shell".to_owned(), "-c".to_owned()]);
    let err = setup.run(&step).expect_err("no such shell");
    assert!(matches!(err, ExecError::Spawn { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("stage `build`: cannot start `/nonexistent/shell`"),
        "{err}"
    );
}

#[test]
fn the_deadline_kills_the_whole_process_group() -> TestResult {
    let setup = Setup::new();
    let mut ctx = setup.ctx();
    ctx.timeout = Some(Duration::from_secs(1));
    let start = Instant::now();
    // A background child in the same group must die with the shell.
    let err = setup
        .executor
        .execute(
            &input(
                "sleep 30 & echo $! > bg.pid; sleep 30",
                CacheDecision::MissNoCommit,
            ),
            &ctx,
        )
        .expect_err("deadline");
    let elapsed = start.elapsed();
    assert!(
        matches!(err, ExecError::Timeout { timeout, .. } if timeout == Duration::from_secs(1)),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "stage `build`: command ran past its deadline of 1s and was killed"
    );
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    let pid = fs::read_to_string(setup.workspace.join("bg.pid"))?;
    assert!(
        !running(pid.trim()),
        "background process {} survived",
        pid.trim()
    );
    Ok(())
}

#[test]
fn the_abort_flag_kills_a_command_that_ignores_sigterm_without_the_grace_period() {
    let setup = Setup::new();
    let abort = Cancellation::new();
    let executor = LocalExecutor::new(setup.store.clone())
        .with_kill_grace(Duration::from_secs(60))
        .with_abort(abort.clone());
    let cancellation = Cancellation::new();
    let trigger = cancellation.clone();
    let sink: Arc<dyn LogSink> = Arc::new(move |entry: labhit_protocol::run::LogEntry| {
        if entry.message == "ready" {
            // A first Ctrl-C (the command ignores its SIGTERM), then a second one.
            trigger.cancel();
            abort.cancel();
        }
    });
    let mut ctx = setup.ctx();
    ctx.log = sink;
    ctx.cancellation = cancellation;
    let start = Instant::now();
    let err = executor
        .execute(
            &input(
                "trap '' TERM; echo ready; sleep 30",
                CacheDecision::MissNoCommit,
            ),
            &ctx,
        )
        .expect_err("cancelled");
    assert!(matches!(err, ExecError::Cancelled { .. }), "{err}");
    // Without the abort flag the command would run out its 30 s (the grace is 60 s).
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_shell_missing_from_path_is_a_spawn_error() {
    let setup = Setup::new();
    let mut step = input("true", CacheDecision::MissNoCommit);
    step.step.shell = Some(vec!["no-such-shell-anywhere".to_owned(), "-c".to_owned()]);
    let err = setup.run(&step).expect_err("no such shell");
    assert!(matches!(err, ExecError::Spawn { .. }), "{err}");
}

/// Whether process `pid` exists and is not a zombie waiting for its (new) parent to reap it.
fn running(pid: &str) -> bool {
    // SIGKILL takes effect when the process is next scheduled: on a loaded machine a killed
    // process can look alive for a moment after `killpg` returned. Give it a bounded while.
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) {
        if Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Whether `pid` is a process that is neither a zombie nor dead.
fn alive(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

#[test]
fn the_step_timeout_applies_too() {
    let setup = Setup::new();
    let mut step = input("sleep 30", CacheDecision::MissNoCommit);
    step.step.timeout_secs = Some(1);
    let start = Instant::now();
    let err = setup.run(&step).expect_err("deadline");
    assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn only_the_granted_env_is_visible() -> TestResult {
    let setup = Setup::new();
    assert!(
        std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
        "cargo sets it for tests"
    );
    let mut step = input(
        "echo \"leak=${CARGO_MANIFEST_DIR:-unset}\"; echo \"granted=$GRANTED\"; echo \"path=$PATH\"; env | cut -d= -f1 | sort | tr '\\n' ' '",
        CacheDecision::MissNoCommit,
    );
    step.env.insert("GRANTED".to_owned(), "yes".to_owned());
    assert!(setup.run(&step)?.is_success());
    let out = setup.lines(LogStream::Stdout);
    assert_eq!(out[0], "leak=unset");
    assert_eq!(out[1], "granted=yes");
    assert_eq!(
        out[2],
        format!("path={}", labhit_runtime::executor::local::DEFAULT_PATH)
    );
    let names: Vec<&str> = out[3].split_whitespace().collect();
    for name in &names {
        assert!(
            ["GRANTED", "HOME", "PATH", "PWD", "OLDPWD", "SHLVL", "_"].contains(name),
            "unexpected variable {name} in {names:?}"
        );
    }
    Ok(())
}

#[test]
fn secret_values_are_redacted_from_output() -> TestResult {
    let setup = Setup::new();
    let mut ctx = setup.ctx();
    ctx.secret_values = vec!["hunter2".to_owned()];
    let mut step = input("echo \"token=$TOKEN\"", CacheDecision::MissNoCommit);
    step.env.insert("TOKEN".to_owned(), "hunter2".to_owned());
    setup.executor.execute(&step, &ctx)?;
    assert_eq!(setup.lines(LogStream::Stdout), ["token=***"]);
    Ok(())
}

#[test]
fn the_local_executor_announces_what_it_does_not_honour() {
    let setup = Setup::new();
    assert_eq!(setup.executor.name(), "local");
    assert!(!setup.executor.sandboxed());
    assert!(
        setup
            .executor
            .unhonoured(&CommandStep::new("true"))
            .is_empty()
    );
    assert_eq!(
        setup.executor.unhonoured(&CommandStep::example()),
        ["image", "cpu_millis", "memory_bytes"]
    );
}

const BUILD: &str = "echo run >> counter.txt; mkdir -p out/bin; printf 'bin' > out/bin/app; \
                     chmod 755 out/bin/app; ln -s bin/app out/link; rm gone.txt";

fn seed(workspace: &Path) -> TestResult {
    fs::write(workspace.join("gone.txt"), "old")?;
    fs::write(workspace.join("keep.txt"), "keep")?;
    Ok(())
}

#[test]
fn miss_build_as_commits_and_hit_restores_without_running() -> TestResult {
    let setup = Setup::new();
    seed(&setup.workspace)?;
    let tag = SnapshotRef::new("labhit-cache:test-build");
    let result = setup.run(&input(
        BUILD,
        CacheDecision::MissBuildAs { tag: tag.clone() },
    ))?;
    assert_eq!(result.committed_snapshot.as_ref(), Some(&tag));
    assert_eq!(
        result.validate(&CacheDecision::MissBuildAs { tag: tag.clone() }),
        Ok(())
    );
    assert!(setup.store.exists(&tag));
    let built = WorkspaceManifest::scan(&setup.workspace)?;

    // A fresh workspace in the state the stage started from: the hit reproduces the build.
    let other = Setup::sharing(&setup.store);
    seed(&other.workspace)?;
    let hit = other.run(&input(BUILD, CacheDecision::Hit { tag: tag.clone() }))?;
    assert_eq!(hit, StepResult::success(Vec::new()));
    assert_eq!(WorkspaceManifest::scan(&other.workspace)?, built);
    // The command did not run: the counter has the one line of the build.
    assert_eq!(
        fs::read_to_string(other.workspace.join("counter.txt"))?,
        "run\n"
    );
    assert!(!other.workspace.join("gone.txt").exists());
    assert_eq!(
        fs::metadata(other.workspace.join("out/bin/app"))?
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_link(other.workspace.join("out/link"))?,
        Path::new("bin/app")
    );
    assert!(other.lines(LogStream::Stdout).is_empty());
    assert!(
        other.lines(LogStream::System)[0].starts_with("cache hit: restored snapshot"),
        "{:?}",
        other.lines(LogStream::System)
    );

    // A hit on the built workspace does not run the command either.
    setup.run(&input(BUILD, CacheDecision::Hit { tag }))?;
    assert_eq!(
        fs::read_to_string(setup.workspace.join("counter.txt"))?,
        "run\n"
    );
    Ok(())
}

#[test]
fn a_failed_step_never_commits() -> TestResult {
    let setup = Setup::new();
    let tag = SnapshotRef::new("labhit-cache:test-failed");
    let result = setup.run(&input(
        "echo partial > f.txt; exit 4",
        CacheDecision::MissBuildAs { tag: tag.clone() },
    ))?;
    assert_eq!(result, StepResult::failure(4));
    assert!(!setup.store.exists(&tag));

    let mut ctx = setup.ctx();
    ctx.timeout = Some(Duration::from_secs(1));
    let err = setup
        .executor
        .execute(
            &input(
                "echo partial > g.txt; sleep 30",
                CacheDecision::MissBuildAs { tag: tag.clone() },
            ),
            &ctx,
        )
        .expect_err("deadline");
    assert!(matches!(err, ExecError::Timeout { .. }));
    assert!(!setup.store.exists(&tag));
    Ok(())
}

#[test]
fn miss_no_commit_commits_nothing() -> TestResult {
    let setup = Setup::new();
    let result = setup.run(&input("echo x > f.txt", CacheDecision::MissNoCommit))?;
    assert_eq!(result.committed_snapshot, None);
    assert!(!setup.store.dir().join("tags").exists());
    Ok(())
}

fn blobs(store: &SnapshotStore) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for shard in fs::read_dir(store.dir().join("blobs")).expect("blobs") {
        let shard = shard.expect("entry").path();
        if shard.is_dir() {
            for blob in fs::read_dir(shard).expect("shard") {
                found.push(blob.expect("entry").path());
            }
        }
    }
    found
}

#[test]
fn a_corrupt_snapshot_is_a_miss() -> TestResult {
    let setup = Setup::new();
    let tag = SnapshotRef::new("labhit-cache:test-corrupt");
    setup.run(&input(
        "echo content > f.txt",
        CacheDecision::MissBuildAs { tag: tag.clone() },
    ))?;
    assert!(setup.store.exists(&tag));
    for blob in blobs(&setup.store) {
        fs::write(blob, "tampered!")?;
    }
    assert!(
        !setup.store.exists(&tag),
        "a corrupt snapshot is not trusted"
    );
    // The corrupt entry was discarded: a plain miss now.
    assert!(matches!(
        setup.store.verify(&tag),
        Err(SnapshotError::NotFound)
    ));

    let fresh = Setup::sharing(&setup.store);
    let err = fresh
        .run(&input("true", CacheDecision::Hit { tag: tag.clone() }))
        .expect_err("nothing to restore");
    assert!(
        matches!(
            err,
            ExecError::Snapshot {
                source: SnapshotError::NotFound,
                ..
            }
        ),
        "{err}"
    );
    assert!(!fresh.workspace.join("f.txt").exists());

    // Rebuilding rewrites it.
    fresh.run(&input(
        "echo content > f.txt",
        CacheDecision::MissBuildAs { tag: tag.clone() },
    ))?;
    assert!(fresh.store.exists(&tag));
    Ok(())
}

#[test]
fn a_tampered_manifest_is_a_miss() -> TestResult {
    let setup = Setup::new();
    let tag = SnapshotRef::new("labhit-cache:test-manifest");
    setup.run(&input(
        "echo content > f.txt",
        CacheDecision::MissBuildAs { tag: tag.clone() },
    ))?;
    let tags = setup.store.dir().join("tags");
    let manifest = fs::read_dir(&tags)?.next().ok_or("no manifest")??.path();
    let text = fs::read_to_string(&manifest)?;
    fs::write(&manifest, text.replace("f.txt", "../../x"))?;
    let err = setup.store.verify(&tag).expect_err("tampered");
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
    assert!(!manifest.exists());
    Ok(())
}

#[test]
fn restore_never_writes_through_a_symlink() -> TestResult {
    let setup = Setup::new();
    let tag = SnapshotRef::new("labhit-cache:test-symlink");
    fs::create_dir(setup.workspace.join("d"))?;
    let before = WorkspaceManifest::scan(&setup.workspace)?;
    fs::write(setup.workspace.join("d/f.txt"), "inside")?;
    setup.store.commit(&tag, &setup.workspace, &before)?;

    let target = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    std::os::unix::fs::symlink(outside.path(), target.path().join("d"))?;
    let err = setup
        .store
        .restore(&tag, target.path())
        .expect_err("refused");
    assert!(matches!(err, SnapshotError::Unsafe { .. }), "{err}");
    assert!(!outside.path().join("f.txt").exists());
    Ok(())
}

#[test]
fn a_copied_workspace_skips_build_output_and_keeps_modes_and_links() -> TestResult {
    let project = tempfile::tempdir()?;
    let p = project.path();
    fs::create_dir_all(p.join(".git/objects"))?;
    fs::create_dir_all(p.join("target/debug"))?;
    fs::create_dir_all(p.join("node_modules/x"))?;
    fs::create_dir_all(p.join("src"))?;
    fs::write(p.join("src/main.rs"), "fn main() {}")?;
    fs::write(p.join("run.sh"), "#!/bin/sh")?;
    fs::set_permissions(p.join("run.sh"), fs::Permissions::from_mode(0o755))?;
    std::os::unix::fs::symlink("/etc/hostname", p.join("outside-link"))?;

    let base = labhit_runtime::workspace::default_runs_base(p);
    let run_id = RunId(uuid::Uuid::from_u128(7));
    let run = RunWorkspace::create(&base, run_id, &WorkspaceSource::copy(p))?;
    let ws = run.path().to_owned();
    assert_eq!(ws, base.join(run_id.to_string()).join("workspace"));
    assert!(ws.join("src/main.rs").is_file());
    assert!(!ws.join(".git").exists());
    assert!(!ws.join("target").exists());
    assert!(!ws.join("node_modules").exists());
    assert!(
        !ws.join(".labhit/runs").exists(),
        "the run directory is not copied into itself"
    );
    assert_eq!(
        fs::metadata(ws.join("run.sh"))?.permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_link(ws.join("outside-link"))?,
        Path::new("/etc/hostname")
    );
    assert!(
        fs::symlink_metadata(ws.join("outside-link"))?
            .file_type()
            .is_symlink()
    );

    // The project and the copy have the same content.
    let project_manifest = WorkspaceManifest::scan(p)?;
    let copy_manifest = WorkspaceManifest::scan(&ws)?;
    for (path, entry) in copy_manifest.entries() {
        assert_eq!(project_manifest.get(path), Some(entry), "{path}");
    }
    assert!(matches!(
        RunWorkspace::create(&base, run_id, &WorkspaceSource::copy(p)),
        Err(labhit_runtime::workspace::WorkspaceError::Exists { .. })
    ));
    run.remove()?;
    assert!(!ws.exists());
    Ok(())
}

#[test]
fn a_git_worktree_workspace_is_the_committed_tree() -> TestResult {
    let repo = tempfile::tempdir()?;
    let git = |args: &[&str]| -> Result<(), Box<dyn std::error::Error>> {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("git {args:?} failed").into())
        }
    };
    git(&["init", "--quiet"])?;
    fs::write(repo.path().join("a.txt"), "committed")?;
    git(&["add", "a.txt"])?;
    git(&["commit", "--quiet", "-m", "one"])?;
    fs::write(repo.path().join("a.txt"), "dirty")?;

    let runs = tempfile::tempdir()?;
    let run = RunWorkspace::create(
        runs.path(),
        RunId(uuid::Uuid::from_u128(9)),
        &WorkspaceSource::GitWorktree {
            repo: repo.path().to_owned(),
            git_ref: "HEAD".to_owned(),
        },
    )?;
    assert_eq!(fs::read_to_string(run.path().join("a.txt"))?, "committed");
    let manifest = WorkspaceManifest::scan(run.path())?;
    assert!(
        manifest.get(".git").is_none(),
        "the worktree's .git file is not content"
    );
    let ws = run.path().to_owned();
    run.remove()?;
    assert!(!ws.exists());
    Ok(())
}

#[test]
fn a_start_manifest_from_the_runner_is_used_for_the_commit() -> TestResult {
    let setup = Setup::new();
    seed(&setup.workspace)?;
    let start = WorkspaceManifest::scan(&setup.workspace)?;
    let tag = SnapshotRef::new("labhit-cache:test-start-manifest");
    let mut ctx = setup.ctx();
    ctx.start_manifest = Some(&start);
    let result = setup.executor.execute(
        &input(BUILD, CacheDecision::MissBuildAs { tag: tag.clone() }),
        &ctx,
    )?;
    assert_eq!(result.committed_snapshot.as_ref(), Some(&tag));
    let other = Setup::sharing(&setup.store);
    seed(&other.workspace)?;
    other.run(&input(BUILD, CacheDecision::Hit { tag }))?;
    assert_eq!(
        WorkspaceManifest::scan(&other.workspace)?,
        WorkspaceManifest::scan(&setup.workspace)?
    );
    Ok(())
}

mod extension {
    //! [`ExtensionExecutor`] around the probe fixture of the runtime tests.

    use std::path::{Path, PathBuf};

    use labhit_guest_build::{Builder, Target};
    use labhit_protocol::manifest::Manifest;
    use labhit_runtime::executor::ExtensionExecutor;
    use labhit_runtime::{Runtime, RuntimeConfig};

    use super::*;

    fn probe(executor: bool) -> (Runtime, labhit_runtime::LoadedExtension, tempfile::TempDir) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe");
        let component = Builder::for_workspace(&root)
            .build(&dir, Target::P2)
            .unwrap_or_else(|err| panic!("{err}"))
            .component;
        let mut text = fs::read_to_string(dir.join("extension.toml")).expect("manifest");
        if executor {
            text = text.replace("[capabilities]", "[capabilities]\nexecutor = true");
        }
        let manifest = Manifest::from_toml(&text).unwrap_or_else(|d| panic!("{d:?}"));
        let cache = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new(RuntimeConfig::with_cache_dir(cache.path())).expect("runtime");
        let loaded = runtime.load(&manifest, &component).expect("load");
        (runtime, loaded, cache)
    }

    #[test]
    fn an_extension_without_the_capability_is_refused() {
        let (runtime, loaded, _cache) = probe(false);
        let err = ExtensionExecutor::new(runtime, loaded).expect_err("not an executor");
        assert_eq!(
            err.to_string(),
            "extension `test/probe@0.3.1` does not declare the `executor` capability, so it cannot run `run:` scripts"
        );
    }

    #[test]
    fn the_result_is_checked_against_the_decision() -> TestResult {
        let (runtime, loaded, _cache) = probe(true);
        let executor = ExtensionExecutor::new(runtime, loaded)?
            .with_config("test/probe", serde_json::json!({"mode": "noop"}).into());
        assert_eq!(executor.name(), "extension:test/probe@0.3.1");
        assert!(executor.sandboxed());
        let setup = Setup::new();
        let ctx = setup.ctx();
        let result = executor.execute(&input("true", CacheDecision::MissNoCommit), &ctx)?;
        assert_eq!(result, StepResult::success(Vec::new()));

        // The probe commits nothing, which a successful `miss_build_as` must not do.
        let tag = SnapshotRef::new("labhit-cache:ext");
        let err = executor
            .execute(&input("true", CacheDecision::MissBuildAs { tag }), &ctx)
            .expect_err("no commit");
        assert!(matches!(err, ExecError::Refused { .. }), "{err}");
        assert!(err.to_string().contains("did not commit"), "{err}");
        Ok(())
    }
}

#[test]
fn a_missing_workspace_is_a_workspace_error() {
    let setup = Setup::new();
    let missing = setup.workspace.join("missing");
    let ctx = ExecContext::new(&setup.stage, &missing);
    let err = setup
        .executor
        .execute(&input("true", CacheDecision::MissNoCommit), &ctx)
        .expect_err("no workspace");
    assert!(matches!(err, ExecError::Workspace { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("stage `build`: workspace: cannot run in `"),
        "{err}"
    );
}

mod sh_executor {
    //! [`ExtensionExecutor`] around the real `exec/sh` example extension, with the host's
    //! snapshot store: the same cache contract as the local executor, end to end.

    use std::path::Path;
    use std::sync::OnceLock;

    use labhit_guest_build::{Builder, Target};
    use labhit_protocol::manifest::Manifest;
    use labhit_runtime::executor::ExtensionExecutor;
    use labhit_runtime::{Runtime, RuntimeConfig};

    use super::*;

    /// `exec/sh`, built once per test process, and a runtime to load it with.
    fn runtime() -> &'static (Runtime, labhit_runtime::LoadedExtension, tempfile::TempDir) {
        static LOADED: OnceLock<(Runtime, labhit_runtime::LoadedExtension, tempfile::TempDir)> =
            OnceLock::new();
        LOADED.get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let dir = root.join("extensions/exec/sh");
            let component = Builder::for_workspace(&root)
                .build(&dir, Target::P2)
                .unwrap_or_else(|err| panic!("{err}"))
                .component;
            let text = fs::read_to_string(dir.join("extension.toml")).expect("manifest");
            let manifest = Manifest::from_toml(&text).unwrap_or_else(|d| panic!("{d:?}"));
            let cache = tempfile::tempdir().expect("tempdir");
            let runtime =
                Runtime::new(RuntimeConfig::with_cache_dir(cache.path())).expect("runtime");
            let loaded = runtime.load(&manifest, &component).expect("load");
            (runtime, loaded, cache)
        })
    }

    fn executor(store: &SnapshotStore) -> ExtensionExecutor {
        let (runtime, loaded, _) = runtime();
        ExtensionExecutor::new(runtime.clone(), loaded.clone())
            .expect("exec/sh declares `executor`")
            .with_config("exec/sh@^0.1", Value::Object(Default::default()))
            .with_snapshots(store.clone())
    }

    use labhit_protocol::Value;

    const SCRIPT: &str = "echo run >> counter.txt\nmkdir -p out/bin\nprintf 'bin' > out/bin/app\nrm gone.txt\necho built";

    #[test]
    fn miss_build_as_commits_through_the_host_and_hit_restores_without_running() -> TestResult {
        let setup = Setup::new();
        seed(&setup.workspace)?;
        let exec = executor(&setup.store);
        assert_eq!(exec.name(), "extension:exec/sh@0.1.0");
        assert!(exec.sandboxed());
        let tag = SnapshotRef::new("labhit-cache:test-sh");
        let result = exec.execute(
            &input(SCRIPT, CacheDecision::MissBuildAs { tag: tag.clone() }),
            &setup.ctx(),
        )?;
        assert_eq!(result.exit_code, 0);
        assert_eq!(result.committed_snapshot.as_ref(), Some(&tag));
        assert!(setup.store.exists(&tag), "the host committed the snapshot");
        assert_eq!(
            fs::read_to_string(setup.workspace.join("counter.txt"))?,
            "run\n"
        );
        assert!(!setup.workspace.join("gone.txt").exists());
        let messages: Vec<String> = setup
            .sink
            .entries()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert!(messages.iter().any(|m| m == "built"), "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("committed snapshot `labhit-cache:test-sh`")),
            "{messages:?}"
        );

        // Another workspace in the same starting state: the host restores the snapshot and
        // the guest skips the script (which here would fail if it ran).
        let other = Setup::sharing(&setup.store);
        seed(&other.workspace)?;
        let exec = executor(&other.store);
        let result = exec.execute(&input("exit 7", CacheDecision::Hit { tag }), &other.ctx())?;
        assert_eq!(result, StepResult::success(Vec::new()));
        assert_eq!(
            WorkspaceManifest::scan(&other.workspace)?,
            WorkspaceManifest::scan(&setup.workspace)?
        );
        Ok(())
    }

    #[test]
    fn a_failing_script_commits_nothing() -> TestResult {
        let setup = Setup::new();
        let exec = executor(&setup.store);
        let tag = SnapshotRef::new("labhit-cache:test-sh-fails");
        let result = exec.execute(
            &input(
                "echo partial > half.txt\ncat missing.txt\necho never > never.txt",
                CacheDecision::MissBuildAs { tag: tag.clone() },
            ),
            &setup.ctx(),
        )?;
        assert_ne!(result.exit_code, 0);
        assert_eq!(result.committed_snapshot, None);
        assert!(!setup.store.exists(&tag), "a failed step never commits");
        assert!(setup.workspace.join("half.txt").is_file());
        assert!(
            !setup.workspace.join("never.txt").exists(),
            "errexit stopped the script"
        );
        Ok(())
    }

    #[test]
    fn a_missing_snapshot_on_hit_is_a_snapshot_error() {
        let setup = Setup::new();
        let exec = executor(&setup.store);
        let err = exec
            .execute(
                &input(
                    "true",
                    CacheDecision::Hit {
                        tag: SnapshotRef::new("labhit-cache:never-committed"),
                    },
                ),
                &setup.ctx(),
            )
            .expect_err("nothing to restore");
        assert!(matches!(err, ExecError::Snapshot { .. }), "{err}");
    }

    #[test]
    fn miss_no_commit_leaves_the_store_alone() -> TestResult {
        let setup = Setup::new();
        let exec = executor(&setup.store);
        let result = exec.execute(
            &input("echo hi > hi.txt", CacheDecision::MissNoCommit),
            &setup.ctx(),
        )?;
        assert_eq!(result, StepResult::success(Vec::new()));
        assert_eq!(fs::read_to_string(setup.workspace.join("hi.txt"))?, "hi\n");
        assert!(
            !setup.store.dir().exists() || fs::read_dir(setup.store.dir())?.next().is_none(),
            "nothing was written to the store"
        );
        Ok(())
    }
}

// --- Forged snapshots and the workspace boundary (issue 9, item 2) ---

/// Rewrites the only manifest in `store` with `edit` applied to its JSON body, and a
/// correct checksum: what a forger with write access to the store can do.
fn forge(store: &SnapshotStore, edit: impl FnOnce(&mut serde_json::Value)) -> TestResult {
    use sha2::Digest;
    let tags = store.dir().join("tags");
    let manifest = fs::read_dir(&tags)?.next().ok_or("no manifest")??.path();
    let text = fs::read_to_string(&manifest)?;
    let (_, body) = text.split_once('\n').ok_or("no header")?;
    let mut value: serde_json::Value = serde_json::from_str(body)?;
    edit(&mut value);
    let body = value.to_string();
    let sum: String = sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fs::write(&manifest, format!("labhit-snapshot/1 {sum}\n{body}"))?;
    Ok(())
}

/// A snapshot `tag` of one file `f.txt` (mode 0o644) committed by `setup`.
fn one_file_snapshot(setup: &Setup, tag: &SnapshotRef) -> TestResult {
    let before = WorkspaceManifest::scan(&setup.workspace)?;
    fs::write(setup.workspace.join("f.txt"), "content")?;
    fs::set_permissions(
        setup.workspace.join("f.txt"),
        fs::Permissions::from_mode(0o644),
    )?;
    setup.store.commit(tag, &setup.workspace, &before)?;
    fs::remove_file(setup.workspace.join("f.txt"))?;
    Ok(())
}

#[test]
fn forged_snapshots_with_escaping_links_or_paths_are_refused() -> TestResult {
    let outside = tempfile::tempdir()?;
    let victim = outside.path().join("victim");
    let cases: Vec<(&str, serde_json::Value)> = vec![
        (
            "absolute link",
            serde_json::json!({"path": "a", "kind": "symlink", "target": victim}),
        ),
        (
            "climbing link",
            serde_json::json!({"path": "d/a", "kind": "symlink", "target": "../../../victim"}),
        ),
        (
            "climbing path",
            serde_json::json!({"path": "../../victim", "kind": "dir", "mode": 0o755}),
        ),
        (
            "absolute path",
            serde_json::json!({"path": victim, "kind": "dir", "mode": 0o755}),
        ),
    ];
    for (what, entry) in cases {
        let setup = Setup::new();
        let tag = SnapshotRef::new("labhit-cache:forged");
        one_file_snapshot(&setup, &tag)?;
        forge(&setup.store, |v| {
            if let Some(changed) = v["changed"].as_array_mut() {
                changed.push(entry);
            }
        })?;
        let err = setup.store.restore(&tag, &setup.workspace).expect_err(what);
        assert!(
            matches!(err, SnapshotError::Corrupt { .. }),
            "{what}: {err}"
        );
        assert!(
            !setup.workspace.join("f.txt").exists(),
            "{what}: nothing restored"
        );
        assert!(!victim.exists(), "{what}");
    }
    Ok(())
}

#[test]
fn restored_modes_never_carry_setuid_setgid_or_sticky_bits() -> TestResult {
    let setup = Setup::new();
    let tag = SnapshotRef::new("labhit-cache:modes");
    one_file_snapshot(&setup, &tag)?;
    forge(&setup.store, |v| {
        v["changed"][0]["mode"] = serde_json::json!(0o7755);
        if let Some(changed) = v["changed"].as_array_mut() {
            changed.push(serde_json::json!({"path": "d", "kind": "dir", "mode": 0o3777}));
        }
    })?;
    setup.store.restore(&tag, &setup.workspace)?;
    let mode = |p: &str| -> std::io::Result<u32> {
        Ok(fs::metadata(setup.workspace.join(p))?.permissions().mode() & 0o7777)
    };
    assert_eq!(mode("f.txt")?, 0o755);
    assert_eq!(mode("d")?, 0o777);

    // A local stage that sets them: the commit records the masked mode.
    let tag = SnapshotRef::new("labhit-cache:modes-commit");
    setup.run(&input(
        "touch s && chmod 4755 s",
        CacheDecision::MissBuildAs { tag: tag.clone() },
    ))?;
    let fresh = Setup::sharing(&setup.store);
    fresh.run(&input("false", CacheDecision::Hit { tag }))?;
    assert_eq!(
        fs::metadata(fresh.workspace.join("s"))?
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    Ok(())
}

#[test]
fn a_local_stage_may_not_leave_escaping_links_or_fifos_and_nothing_is_committed() -> TestResult {
    for script in [
        "ln -s ../../outside a",
        "ln -s /etc/passwd a",
        "mkdir d && ln -s . up && ln -s up/.. a",
        "mkfifo a",
    ] {
        let setup = Setup::new();
        let tag = SnapshotRef::new("labhit-cache:escape");
        let err = setup
            .run(&input(
                script,
                CacheDecision::MissBuildAs { tag: tag.clone() },
            ))
            .expect_err(script);
        assert!(matches!(err, ExecError::Boundary { .. }), "{script}: {err}");
        assert_eq!(err.code(), "workspace-escape");
        assert!(err.to_string().contains("`a`"), "{script}: {err}");
        assert!(
            fs::symlink_metadata(setup.workspace.join("a")).is_err(),
            "{script}: removed"
        );
        assert!(!setup.store.exists(&tag), "{script}: nothing committed");
        assert!(
            setup.sink.messages().iter().any(|m| m.contains("`a`")),
            "{script}: logged"
        );
    }
    // Links that stay inside are fine, and the user's own escaping links stay.
    let setup = Setup::new();
    std::os::unix::fs::symlink("/usr/bin/env", setup.workspace.join("users-own"))?;
    setup.run(&input(
        "mkdir d && ln -s ../x d/l",
        CacheDecision::MissNoCommit,
    ))?;
    assert!(fs::symlink_metadata(setup.workspace.join("users-own")).is_ok());
    Ok(())
}

#[test]
fn a_restored_link_that_escapes_through_another_link_is_removed() -> TestResult {
    // `up -> .` and `a -> up/..` both look inside to a lexical check; together `a` is the
    // workspace's parent. The host's check after the restore catches it.
    let setup = Setup::new();
    let tag = SnapshotRef::new("labhit-cache:sneaky");
    setup.run(&input(
        "ln -s . up",
        CacheDecision::MissBuildAs { tag: tag.clone() },
    ))?;
    forge(&setup.store, |v| {
        if let Some(changed) = v["changed"].as_array_mut() {
            changed.push(serde_json::json!({"path": "a", "kind": "symlink", "target": "up/.."}));
        }
    })?;
    let fresh = Setup::sharing(&setup.store);
    let err = fresh
        .run(&input("true", CacheDecision::Hit { tag }))
        .expect_err("refused");
    assert!(matches!(err, ExecError::Boundary { .. }), "{err}");
    assert!(fs::symlink_metadata(fresh.workspace.join("a")).is_err());
    Ok(())
}
