//! Scheduler overhead: a 1,000-stage pipeline of no-op stages run by
//! `labhit_runtime::scheduler::Scheduler` with a trivial in-process stage runner (it returns
//! "succeeded" at once), so what is measured is the scheduler itself: graph set-up, the ready
//! queue, worker hand-off, gate checks, status bookkeeping, system log entries (into a sink
//! that drops them) and the final `PipelineRun`.
//!
//! * `chain`: `s0 <- s1 <- … <- s999`, every stage waits for the previous one (no
//!   parallelism: each hand-off crosses threads);
//! * `fan_out`: `root` then 999 stages that all wait for it (the ready queue is as wide as it
//!   gets);
//! * `independent`: 1,000 stages with no edges.
//!
//! Each runs with `jobs` = 1 and = the number of cores. Divide the median by 1,000 for the
//! overhead per stage; the target is ≤ 100 µs per stage beyond the step itself.
//!
//! Run with `cargo bench -p labhit-runtime --bench scheduler`.

use std::fmt::Write as _;
use std::sync::LazyLock;

use labhit_protocol::pipeline::PipelineFile;
use labhit_runtime::scheduler::{
    RunInfo, RunLog, Scheduler, SchedulerOptions, StageOutcome, StageTask, default_jobs,
};

fn main() {
    divan::main();
}

/// Stages in every benchmark pipeline.
const STAGES: usize = 1_000;

fn parse(stages: &str) -> PipelineFile {
    let text = format!("engine: \"1\"\npipeline:\n  name: bench\n  stages:\n{stages}");
    match PipelineFile::from_yaml(&text) {
        Ok(file) => file,
        Err(diagnostics) => panic!("the benchmark pipeline is invalid: {diagnostics:?}"),
    }
}

static CHAIN: LazyLock<PipelineFile> = LazyLock::new(|| {
    let mut text = String::from("    s0: {run: \"true\"}\n");
    for i in 1..STAGES {
        let _ = writeln!(text, "    s{i}: {{run: \"true\", after: s{}}}", i - 1);
    }
    parse(&text)
});

static FAN_OUT: LazyLock<PipelineFile> = LazyLock::new(|| {
    let mut text = String::from("    root: {run: \"true\"}\n");
    for i in 1..STAGES {
        let _ = writeln!(text, "    s{i}: {{run: \"true\", after: root}}");
    }
    parse(&text)
});

static INDEPENDENT: LazyLock<PipelineFile> = LazyLock::new(|| {
    let mut text = String::new();
    for i in 0..STAGES {
        let _ = writeln!(text, "    s{i}: {{run: \"true\"}}");
    }
    parse(&text)
});

fn noop(_task: &StageTask<'_>) -> StageOutcome {
    StageOutcome::succeeded()
}

fn run(file: &PipelineFile, jobs: usize) {
    let scheduler = Scheduler::new(SchedulerOptions {
        jobs,
        ..SchedulerOptions::default()
    });
    let run = scheduler.run(file, &noop, &RunLog::null(), RunInfo::default());
    assert_eq!(run.stages.len(), STAGES);
    divan::black_box(run);
}

fn jobs() -> [usize; 2] {
    [1, default_jobs()]
}

#[divan::bench(args = jobs(), sample_count = 20)]
fn chain(jobs: usize) {
    run(&CHAIN, jobs);
}

#[divan::bench(args = jobs(), sample_count = 20)]
fn fan_out(jobs: usize) {
    run(&FAN_OUT, jobs);
}

#[divan::bench(args = jobs(), sample_count = 20)]
fn independent(jobs: usize) {
    run(&INDEPENDENT, jobs);
}
