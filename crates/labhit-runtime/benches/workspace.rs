//! Workspace setup and cache keys on a generated project (issue 13): what a `labhit run` of
//! a two-stage pipeline of trivial `run:` stages costs, in process, with the real
//! [`RunWorkspace`], [`PipelineRunner`], local executor and snapshot store — against a plain
//! `cp -r` of the same tree measured in the same process.
//!
//! The project: `LABHIT_BENCH_FILES` files (default 10,000; the issue's figure is 40,000),
//! 100 per directory, sizes spread around 8 KiB (≈ 7.9 KB on average, like the issue's
//! 40,000 files / 314 MB), generated once with a fixed seed into a temporary directory.
//!
//! First, the comparison is printed (median of `LABHIT_BENCH_REPS` runs, default 5):
//!
//! * `cp -r`: a plain copy of the tree;
//! * first run: a new digest index and an empty snapshot store (every stage a miss);
//! * cached re-run: the index and the store of an earlier run (every stage `cached`);
//!
//! with the ratios to `cp -r` (targets: re-run ≤ 1.2 ×, first run ≤ 1.6 ×). Then divan
//! measures the cached re-run at 1,000, 10,000 and 40,000 files (`LABHIT_BENCH_SIZES`, a
//! comma-separated list, overrides them), which should grow with the number of files, not
//! with their bytes.
//!
//! Run with `cargo bench -p labhit-runtime --bench workspace`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use labhit_protocol::pipeline::PipelineFile;
use labhit_protocol::run::{PipelineRun, RunStatus};
use labhit_runtime::executor::LocalExecutor;
use labhit_runtime::scheduler::stages::{PipelineRunner, StagePlan};
use labhit_runtime::scheduler::{RunInfo, RunLog, Scheduler, SchedulerOptions, new_run_id};
use labhit_runtime::snapshot::SnapshotStore;
use labhit_runtime::workspace::{RunWorkspace, WorkspaceSource};

const PIPELINE: &str = "engine: \"1\"\npipeline:\n  name: bench\n  stages:\n    \
    build:\n      run: echo built > built.txt\n    \
    test:\n      after: build\n      run: cat built.txt > tested.txt\n";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Writes `files` files of pseudo-random sizes (fixed seed) under `dir`.
fn generate(dir: &Path, files: usize) -> u64 {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut bytes = 0;
    let chunk: Vec<u8> = (0..65_536u32).map(|i| (i * 31 % 251) as u8).collect();
    for i in 0..files {
        let sub = dir.join(format!("d{:03}/e{:02}", i / 1000, (i / 100) % 10));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub).expect("mkdir");
        }
        // 0..16 KiB, uniform: ≈ 8 KiB on average.
        let size = (next() % 16_384) as usize;
        let start = (next() % 32_768) as usize;
        std::fs::write(sub.join(format!("f{i}.dat")), &chunk[start..start + size]).expect("write");
        bytes += size as u64;
    }
    bytes
}

/// A generated project (kept for the whole process), its state directory and the pipeline.
struct Setup {
    project: tempfile::TempDir,
    state: tempfile::TempDir,
    pipeline: PipelineFile,
}

impl Setup {
    fn new(files: usize) -> Self {
        let project = tempfile::tempdir().expect("tempdir");
        let bytes = generate(project.path(), files);
        eprintln!("generated {files} files, {:.1} MB", bytes as f64 / 1e6);
        let pipeline = PipelineFile::from_yaml(PIPELINE).expect("pipeline");
        Self {
            project,
            state: tempfile::tempdir().expect("tempdir"),
            pipeline,
        }
    }

    fn runs(&self) -> PathBuf {
        self.state.path().join("runs")
    }

    /// One run with run directories under `runs` and the snapshot store `cache`; the run
    /// directory is removed afterwards (not timed by the caller).
    fn run(&self, runs: &Path, cache: &Path) -> (PipelineRun, RunWorkspace) {
        let mut workspace = RunWorkspace::create(
            runs,
            new_run_id(),
            &WorkspaceSource::copy(self.project.path()),
        )
        .expect("workspace");
        let store = SnapshotStore::new(cache);
        let local = Arc::new(LocalExecutor::new(store.clone()));
        let mut runner = PipelineRunner::new(workspace.path(), workspace.run_dir());
        runner.set_digests(workspace.take_digests());
        runner.snapshots = Some(store);
        for (id, _) in self.pipeline.pipeline.stages.iter() {
            runner
                .plans
                .insert(id.to_string(), StagePlan::Command(local.clone()));
        }
        let scheduler = Scheduler::new(SchedulerOptions {
            jobs: 2,
            ..SchedulerOptions::default()
        });
        let run = scheduler.run(&self.pipeline, &runner, &RunLog::null(), RunInfo::default());
        assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
        (run, workspace)
    }
}

/// Removes a run directory when dropped.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn remove(workspace: RunWorkspace) {
    let run_dir = workspace.run_dir().to_owned();
    let _ = std::fs::remove_dir_all(run_dir);
}

fn cp_r(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The printed comparison (see the module docs).
fn compare() {
    let files = env_usize("LABHIT_BENCH_FILES", 10_000);
    let reps = env_usize("LABHIT_BENCH_REPS", 5).max(1);
    let setup = Setup::new(files);
    let mut cp = Vec::new();
    let mut first = Vec::new();
    let mut rerun = Vec::new();
    for rep in 0..reps {
        let dest = setup.state.path().join(format!("cp-{rep}"));
        let start = Instant::now();
        cp_r(setup.project.path(), &dest);
        cp.push(start.elapsed());
        let _ = std::fs::remove_dir_all(&dest);

        // A first run: its own run base (no digest index) and an empty store.
        let runs = setup.state.path().join(format!("first-{rep}"));
        let cache = setup.state.path().join(format!("first-cache-{rep}"));
        let start = Instant::now();
        let (_, ws) = setup.run(&runs, &cache);
        first.push(start.elapsed());
        remove(ws);
        let _ = std::fs::remove_dir_all(&runs);
        let _ = std::fs::remove_dir_all(&cache);
    }
    let cache = setup.state.path().join("cache");
    // Warm up: the index and the store of an earlier run (twice: the first run's entries
    // are racy-clean when the tree was just generated).
    for _ in 0..2 {
        let (_, ws) = setup.run(&setup.runs(), &cache);
        remove(ws);
    }
    std::thread::sleep(labhit_runtime::digests::RACY_MARGIN);
    let (_, ws) = setup.run(&setup.runs(), &cache);
    remove(ws);
    for _ in 0..reps {
        let start = Instant::now();
        let (run, ws) = setup.run(&setup.runs(), &cache);
        rerun.push(start.elapsed());
        assert!(
            run.stages
                .iter()
                .all(|s| s.status == labhit_protocol::run::StageStatus::Cached),
            "{run:#?}"
        );
        remove(ws);
    }
    let (cp, first, rerun) = (median(cp), median(first), median(rerun));
    println!(
        "{files} files: cp -r {cp:.2?} | first run {first:.2?} ({:.2} x cp -r, target <= 1.6) | \
         cached re-run {rerun:.2?} ({:.2} x cp -r, target <= 1.2)",
        first.as_secs_f64() / cp.as_secs_f64(),
        rerun.as_secs_f64() / cp.as_secs_f64(),
    );
}

fn main() {
    if std::env::var_os("LABHIT_BENCH_SKIP_COMPARE").is_none() {
        compare();
    }
    divan::main();
}

fn sizes() -> Vec<usize> {
    std::env::var("LABHIT_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 40_000])
}

/// A fully cached re-run of a project of `files` files.
#[divan::bench(args = sizes(), sample_count = 5, sample_size = 1)]
fn cached_rerun(bencher: divan::Bencher<'_, '_>, files: usize) {
    let setup = Setup::new(files);
    let cache = setup.state.path().join("cache");
    for _ in 0..2 {
        let (_, ws) = setup.run(&setup.runs(), &cache);
        remove(ws);
    }
    std::thread::sleep(labhit_runtime::digests::RACY_MARGIN);
    let (_, ws) = setup.run(&setup.runs(), &cache);
    remove(ws);
    // The run directory is removed when divan drops the value, outside the timing.
    bencher.bench_local(|| {
        let (_, ws) = setup.run(&setup.runs(), &cache);
        Cleanup(ws.run_dir().to_owned())
    });
}
