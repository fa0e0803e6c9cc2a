//! `labhit run` against hostile guests: what a stranger's extension can do to the whole run,
//! seen from the command line (the runtime's own hostile tests see one step at a time).
//!
//! The guest is the runtime's hostile fixture (`crates/labhit-runtime/tests/fixtures/
//! hostile/guest`, `with.mode` picks the misbehaviour), built once per test process and
//! bundled with a manifest whose own timeout is long, so the stage's `sandbox.timeout` is
//! the one that counts. No test sleeps: the tests wait for what `labhit` prints and for its
//! exit.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

// A project with one pipeline file and its own run and cache directories.
common::project_type!();

impl Project {
    fn new(pipeline: &str) -> Self {
        Self(common::Project::new(pipeline))
    }

    /// `labhit run pipeline.yaml --format json`, started with stderr piped, given the
    /// hostile guest with a one-hour manifest timeout.
    fn spawn(&self) -> Child {
        common::labhit(self.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .args(["run", "pipeline.yaml", "--format", "json", "--ref", "main"])
            .arg("--extensions")
            .arg(common::hostile_extensions(&[(
                "timeout = \"1s\"",
                "timeout = \"1h\"",
            )]))
            .arg("--cache-dir")
            .arg(self.cache())
            .arg("--run-dir")
            .arg(self.runs())
            .spawn()
            .expect("start labhit")
    }
}

/// Reads `child`'s stderr until a line contains `needle`; returns what it read, and a
/// thread that drains the rest (so the child never blocks on a full pipe).
fn wait_for_line(child: &mut Child, needle: &str) -> (String, std::thread::JoinHandle<String>) {
    let stderr = child.stderr.take().expect("stderr piped");
    let mut reader = BufReader::new(stderr);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "labhit ended before printing {needle:?}:\n{seen}");
        seen.push_str(&line);
        if line.contains(needle) {
            break;
        }
    }
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        for line in reader.lines().map_while(Result::ok) {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    (seen, rest)
}

const SLEEPER: &str = r#"engine: "1"
pipeline:
  name: sleeper
  stages:
    nap:
      use: test/hostile
      with: {mode: sleep, count: 3600}
      sandbox: {timeout: 2s}
"#;

#[test]
fn an_hour_of_sleep_under_a_two_second_timeout_ends_as_a_timeout() {
    let project = Project::new(SLEEPER);
    let start = Instant::now();
    let output = project.spawn().wait_with_output().expect("labhit runs");
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(60),
        "took {elapsed:?}: {stderr}"
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(summary["status"], "failed", "{summary:#}");
    let nap = &summary["stages"][0];
    assert_eq!(nap["status"], "failed", "{summary:#}");
    let reason = nap["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("deadline of 2s"), "{reason}");
    assert!(reason.contains("[timeout]"), "{reason}");
}

#[test]
fn sigint_stops_a_guest_asleep_in_the_host_and_the_summary_says_cancelled() {
    let project = Project::new(&SLEEPER.replace("timeout: 2s", "timeout: 1h"));
    let mut child = project.spawn();
    let (_, rest) = wait_for_line(&mut child, "sleeping");
    let start = Instant::now();
    common::signal(child.id(), "INT");
    let status = child.wait().expect("labhit exits");
    let elapsed = start.elapsed();
    let stderr = rest.join().expect("stderr reader");
    // The grace period is 5 s; a guest blocked in the host used to keep labhit alive.
    assert!(
        elapsed < Duration::from_secs(60),
        "took {elapsed:?}: {stderr}"
    );
    assert_ne!(status.code(), Some(0), "{stderr}");
    let summary = project.summary();
    assert_eq!(summary["status"], "cancelled", "{summary:#}\n{stderr}");
    assert_eq!(summary["stages"][0]["status"], "cancelled", "{summary:#}");
}
