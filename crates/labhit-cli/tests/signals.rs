//! `labhit run` stopped by signals: no stage process outlives it, `log.jsonl` keeps what was
//! logged, `summary.json` says the run was cancelled, and the exit code names the signal.
//!
//! Each test runs the real `labhit` on a pipeline whose `run:` stage starts a long `sleep`,
//! a background `sleep` and a double-forked `sleep` (orphaned at once), records their pids,
//! and ignores `SIGTERM` where a test needs the grace period to matter. The test signals
//! `labhit` with `kill(1)`, waits for it to exit, and then waits (bounded) for every recorded
//! process to be gone from `/proc` (a zombie counts as gone: it runs nothing).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long anything in these tests may take before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(60);

/// The processes the stage records: its shell, a background child, an orphaned grandchild.
const PIDS: [&str; 3] = ["shell", "child", "grandchild"];

struct Stage {
    project: tempfile::TempDir,
    labhit: Child,
}

impl Stage {
    /// Starts `labhit run` on a stage that records [`PIDS`] under the project's `pids/`;
    /// `ignore_term` makes the stage (and what it starts) ignore `SIGTERM`.
    fn start(ignore_term: bool) -> Self {
        let project = tempfile::tempdir().expect("tempdir");
        let pids = project.path().join("pids");
        std::fs::create_dir(&pids).expect("mkdir");
        let p = |name: &str| format!("'{}'", pids.join(name).display());
        let script = format!(
            "{trap}(sleep 300 & echo $! > {gc}.tmp && mv {gc}.tmp {gc}) &\n\
             sleep 300 &\n\
             echo $! > {c}.tmp && mv {c}.tmp {c}\n\
             echo $$ > {s}.tmp && mv {s}.tmp {s}\n\
             echo started\n\
             wait\n",
            trap = if ignore_term { "trap '' TERM\n" } else { "" },
            gc = p("grandchild"),
            c = p("child"),
            s = p("shell"),
        );
        let indented: String = script.lines().map(|l| format!("        {l}\n")).collect();
        let pipeline = format!(
            "engine: \"1\"\npipeline:\n  name: stubborn\n  stages:\n    stubborn:\n      run: |\n{indented}    after-it:\n      after: stubborn\n      run: echo never\n"
        );
        std::fs::write(project.path().join("pipeline.yaml"), pipeline).expect("write");
        let labhit = common::labhit(project.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .args(["run", "pipeline.yaml", "--no-cache", "--run-dir"])
            .arg(project.path().join("runs"))
            .spawn()
            .expect("spawn labhit");
        let stage = Self { project, labhit };
        stage.until("the stage recorded its processes", || {
            PIDS.iter().all(|name| pids.join(name).exists())
        });
        stage
    }

    fn pids(&self) -> Vec<u32> {
        PIDS.iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.project.path().join("pids").join(name))
                    .expect("pid file");
                text.trim().parse().expect("a pid")
            })
            .collect()
    }

    /// Waits for `condition`, failing the test after [`PATIENCE`].
    fn until(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        common::signal(self.labhit.id(), signal);
    }

    fn run_dir(&self) -> PathBuf {
        common::run_dir(&self.project.path().join("runs"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir().join("log.jsonl")).unwrap_or_default()
    }

    /// Waits (bounded) for `labhit` to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.labhit.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "labhit did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts every process the stage recorded is gone (bounded wait).
    fn assert_processes_gone(&self, pids: &[u32]) {
        for &pid in pids {
            self.until(&format!("process {pid} is gone"), || !alive(pid));
        }
    }

    fn summary(&self) -> Value {
        common::summary(&self.run_dir())
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // A failed assertion must not leave labhit running.
        let _ = self.labhit.kill();
        let _ = self.labhit.wait();
    }
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
    else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

fn assert_cancelled(stage: &Stage) {
    let summary = stage.summary();
    assert_eq!(summary["status"], "cancelled", "{summary:#}");
    let stages = summary["stages"].as_array().expect("stages");
    for s in stages {
        assert_ne!(s["status"], "succeeded", "{summary:#}");
        assert_ne!(s["status"], "running", "{summary:#}");
    }
    assert!(stage.log().contains("started"), "{}", stage.log());
}

#[test]
fn sigterm_cancels_the_run_kills_the_stage_and_writes_the_summary() {
    let mut stage = Stage::start(false);
    let pids = stage.pids();
    stage.signal("TERM");
    let status = stage.wait();
    assert_eq!(status.code(), Some(143), "{status:?}");
    stage.assert_processes_gone(&pids);
    assert_cancelled(&stage);
}

#[test]
fn sighup_cancels_the_run_like_sigterm() {
    let mut stage = Stage::start(false);
    let pids = stage.pids();
    stage.signal("HUP");
    let status = stage.wait();
    assert_eq!(status.code(), Some(129), "{status:?}");
    stage.assert_processes_gone(&pids);
    assert_cancelled(&stage);
}

#[test]
fn a_second_sigint_kills_a_stage_that_ignores_sigterm_and_still_writes_the_summary() {
    let mut stage = Stage::start(true);
    let pids = stage.pids();
    stage.signal("INT");
    stage.until("labhit cancelled the run", || {
        stage.log().contains("cancellation requested")
    });
    stage.signal("INT");
    let status = stage.wait();
    assert_eq!(status.code(), Some(130), "{status:?}");
    stage.assert_processes_gone(&pids);
    assert_cancelled(&stage);
}

#[test]
fn sigkill_of_labhit_leaves_the_log_and_no_stage_process() {
    let mut stage = Stage::start(true);
    let pids = stage.pids();
    stage.signal("KILL");
    let status = stage.wait();
    assert_eq!(status.code(), None, "{status:?}");
    stage.assert_processes_gone(&pids);
    let log = stage.log();
    assert!(log.contains("started"), "{log}");
    for line in log.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[test]
fn a_process_that_left_its_stage_group_does_not_outlive_the_run() {
    let project = tempfile::tempdir().expect("tempdir");
    let pid_file = project.path().join("escaped.pid");
    let pipeline = format!(
        "engine: \"1\"\npipeline:\n  name: escape\n  stages:\n    daemon:\n      run: |\n        setsid sh -c 'echo $$ > \"$0\"; exec sleep 300' '{p}' </dev/null >/dev/null 2>&1 &\n        while [ ! -s '{p}' ]; do :; done\n",
        p = pid_file.display()
    );
    std::fs::write(project.path().join("pipeline.yaml"), pipeline).expect("write");
    let out = common::labhit(project.path())
        .args(["run", "pipeline.yaml", "--no-cache", "--run-dir", "runs"])
        .output()
        .expect("run labhit");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    let deadline = Instant::now() + PATIENCE;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} outlived the run");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // At least the escaped sleeper; a stage's lifeline watcher that had not exited yet when
    // the run ended is counted too.
    assert!(
        stderr.contains("process(es) that `run:` stages left running outside their process group"),
        "{stderr}"
    );
    assert!(!stderr.contains("killed 0 process(es)"), "{stderr}");
}
