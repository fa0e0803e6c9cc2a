//! `labhit run` against hostile guests: what a stranger's extension can do to the whole run,
//! seen from the command line (the runtime's own hostile tests see one step at a time).
//!
//! The guest is the runtime's hostile fixture (`crates/labhit-runtime/tests/fixtures/
//! hostile/guest`, `with.mode` picks the misbehaviour), built once per test process and
//! bundled with a manifest whose own timeout is long, so the stage's `sandbox.timeout` is
//! the one that counts. No test sleeps: the tests wait for what `labhit` prints and for its
//! exit.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use labhit_guest_build::{Builder, Target};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A bundle directory holding `test/hostile` with a one-hour manifest timeout.
fn extensions() -> &'static Path {
    static BUILT: OnceLock<tempfile::TempDir> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let fixtures = root().join("crates/labhit-runtime/tests/fixtures/hostile");
            let built = Builder::for_workspace(&root())
                .build(&fixtures.join("guest"), Target::P2)
                .unwrap_or_else(|e| panic!("{e}"));
            let out = tempfile::tempdir().expect("tempdir");
            let bundle = out.path().join("test/hostile");
            std::fs::create_dir_all(&bundle).expect("mkdir");
            let manifest =
                std::fs::read_to_string(fixtures.join("manifests/hostile.toml")).expect("manifest");
            assert!(manifest.contains("timeout = \"1s\""), "{manifest}");
            std::fs::write(
                bundle.join("extension.toml"),
                manifest.replace("timeout = \"1s\"", "timeout = \"1h\""),
            )
            .expect("write manifest");
            std::fs::copy(&built.component, bundle.join("hostile.wasm")).expect("copy");
            out
        })
        .path()
}

/// A project with one pipeline file and its own run and cache directories.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pipeline.yaml"), pipeline).expect("write");
        Self { dir }
    }

    fn runs(&self) -> PathBuf {
        self.dir.path().join("state/runs")
    }

    /// `labhit run pipeline.yaml --format json`, started with stderr piped.
    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_labhit"))
            .current_dir(self.dir.path())
            .env(
                "LABHIT_CACHE_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("labhit-cache"),
            )
            .env_remove("LABHIT_EXTENSIONS")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .args(["run", "pipeline.yaml", "--format", "json", "--ref", "main"])
            .arg("--extensions")
            .arg(extensions())
            .arg("--cache-dir")
            .arg(self.dir.path().join("state/cache"))
            .arg("--run-dir")
            .arg(self.runs())
            .spawn()
            .expect("start labhit")
    }

    /// The one run's `summary.json`.
    fn summary(&self) -> Value {
        // The runs directory also holds labhit's bookkeeping files (CACHEDIR.TAG, the
        // digest index): the run is its one directory.
        let run = std::fs::read_dir(self.runs())
            .expect("run dir")
            .map(|e| e.expect("entry").path())
            .find(|path| path.is_dir())
            .expect("one run");
        let text = std::fs::read(run.join("summary.json")).expect("summary.json");
        serde_json::from_slice(&text).expect("summary is JSON")
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
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
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
