//! Scheduler behaviour with in-test stage runners: ordering, failure propagation, parallelism
//! bound, fail-fast, cancellation and gates. No sleeps decide anything: stages wait on each
//! other through condition variables or the cancellation flag, always with a deadline so a
//! broken scheduler fails the test instead of hanging it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use labhit_protocol::pipeline::PipelineFile;
use labhit_protocol::run::{LogLevel, LogStream, PipelineRun, RunStatus, StageStatus};
use labhit_runtime::CollectingSink;
use labhit_runtime::gates::{Gates, PreApproved};
use labhit_runtime::policy::{GitRef, Policies, Policy};
use labhit_runtime::scheduler::{
    RunInfo, RunLog, Scheduler, SchedulerOptions, StageOutcome, StageTask,
};

/// Long enough never to be hit by a working scheduler.
const DEADLINE: Duration = Duration::from_secs(20);

fn pipeline(stages: &str) -> PipelineFile {
    let text = format!("engine: \"1\"\npipeline:\n  name: test\n  stages:\n{stages}");
    PipelineFile::from_yaml(&text).unwrap_or_else(|d| panic!("bad test pipeline: {d:?}\n{text}"))
}

/// `n` independent `run: "true"` stages named s0, s1, ….
fn independent(n: usize) -> PipelineFile {
    let stages: String = (0..n)
        .map(|i| format!("    s{i}:\n      run: \"true\"\n"))
        .collect();
    pipeline(&stages)
}

fn scheduler(jobs: usize) -> Scheduler {
    Scheduler::new(SchedulerOptions {
        jobs,
        ..SchedulerOptions::default()
    })
}

fn status(run: &PipelineRun, stage: &str) -> StageStatus {
    run.stage(stage)
        .unwrap_or_else(|| panic!("no stage {stage}"))
        .status
}

fn reason(run: &PipelineRun, stage: &str) -> String {
    run.stage(stage)
        .and_then(|s| s.reason.clone())
        .unwrap_or_default()
}

/// Fails the stages named in `failing`, succeeds the others, recording the start order.
struct Scripted {
    failing: BTreeSet<&'static str>,
    started: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(failing: &[&'static str]) -> Self {
        Self {
            failing: failing.iter().copied().collect(),
            started: Mutex::new(Vec::new()),
        }
    }

    fn run(&self, task: &StageTask<'_>) -> StageOutcome {
        self.started.lock().expect("lock").push(task.id.to_string());
        if self.failing.contains(task.id.as_str()) {
            StageOutcome::failed(Some(2), "command exited with code 2")
        } else {
            StageOutcome::succeeded()
        }
    }
}

#[test]
fn a_stage_starts_after_all_its_dependencies() {
    let file = pipeline(
        "    a: {run: x}\n    b: {run: x, after: a}\n    c: {run: x, after: a}\n    d: {run: x, after: [b, c]}\n",
    );
    let runner = Scripted::new(&[]);
    let run = scheduler(4).run(
        &file,
        &|t: &StageTask<'_>| runner.run(t),
        &RunLog::null(),
        RunInfo::default(),
    );
    assert_eq!(run.status, RunStatus::Succeeded);
    let order = runner.started.lock().expect("lock").clone();
    let pos = |s: &str| order.iter().position(|x| x == s).expect("valid");
    assert_eq!(pos("a"), 0);
    assert_eq!(pos("d"), 3);
    let ids: Vec<&str> = run.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        ids,
        ["a", "b", "c", "d"],
        "stages are listed in topological order"
    );
    for stage in &run.stages {
        assert!(stage.started_at.is_some() && stage.finished_at.is_some());
        assert_eq!(stage.exit_code, Some(0));
    }
}

#[test]
fn a_failed_middle_stage_skips_downstream_and_the_other_branch_finishes() {
    // a -> b -> c, and an independent branch a -> x -> y.
    let file = pipeline(
        "    a: {run: x}\n    b: {run: x, after: a}\n    c: {run: x, after: b}\n    x: {run: x, after: a}\n    y: {run: x, after: x}\n",
    );
    let runner = Scripted::new(&["b"]);
    let sink = Arc::new(CollectingSink::new());
    let log = RunLog::new(labhit_protocol::ids::RunId::from_uuid(uuid()), sink.clone());
    let run = scheduler(2).run(
        &file,
        &|t: &StageTask<'_>| runner.run(t),
        &log,
        RunInfo::default(),
    );

    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(status(&run, "a"), StageStatus::Succeeded);
    assert_eq!(status(&run, "b"), StageStatus::Failed);
    assert_eq!(run.stage("b").expect("valid").exit_code, Some(2));
    assert_eq!(reason(&run, "b"), "command exited with code 2");
    assert_eq!(status(&run, "c"), StageStatus::Skipped);
    assert_eq!(reason(&run, "c"), "skipped: `b` failed");
    assert_eq!(status(&run, "x"), StageStatus::Succeeded);
    assert_eq!(status(&run, "y"), StageStatus::Succeeded);
    assert!(
        !runner
            .started
            .lock()
            .expect("lock")
            .contains(&"c".to_owned())
    );

    // The JSON summary says exactly that.
    let json = serde_json::to_value(&run).expect("valid");
    let stages: BTreeMap<&str, (&str, Option<&str>)> = json["stages"]
        .as_array()
        .expect("valid")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().expect("valid"),
                (s["status"].as_str().expect("valid"), s["reason"].as_str()),
            )
        })
        .collect();
    assert_eq!(json["status"], "failed");
    assert_eq!(stages["c"], ("skipped", Some("skipped: `b` failed")));
    assert_eq!(stages["y"], ("succeeded", None));

    // Every decision is logged, numbered in one sequence.
    let entries = sink.entries();
    assert!(
        entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.sequence == i as u64)
    );
    assert!(entries.iter().all(|e| e.stream == LogStream::System));
    assert!(
        entries
            .iter()
            .any(|e| e.stage.as_ref().is_some_and(|s| s.as_str() == "c")
                && e.message == "skipped: `b` failed"),
        "{:?}",
        sink.messages()
    );
}

fn uuid() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x1234)
}

/// Stages that each wait until `jobs` stages run at once (or every stage has started),
/// recording the highest concurrency seen.
struct Concurrency {
    jobs: usize,
    total: usize,
    state: Mutex<(usize, usize, usize)>, // (running, started, max)
    changed: Condvar,
}

impl Concurrency {
    fn run(&self, _task: &StageTask<'_>) -> StageOutcome {
        let mut state = self.state.lock().expect("lock");
        state.0 += 1;
        state.1 += 1;
        state.2 = state.2.max(state.0);
        self.changed.notify_all();
        let deadline = Instant::now() + DEADLINE;
        while state.0 < self.jobs && state.1 < self.total {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "parallelism never reached {}", self.jobs);
            state = self.changed.wait_timeout(state, left).expect("lock").0;
        }
        state.0 -= 1;
        self.changed.notify_all();
        StageOutcome::succeeded()
    }
}

#[test]
fn the_parallelism_bound_is_respected_and_reached() {
    for jobs in [1, 2, 3] {
        let total = 7;
        let runner = Concurrency {
            jobs,
            total,
            state: Mutex::new((0, 0, 0)),
            changed: Condvar::new(),
        };
        let run = scheduler(jobs).run(
            &independent(total),
            &|t: &StageTask<'_>| runner.run(t),
            &RunLog::null(),
            RunInfo::default(),
        );
        assert_eq!(run.status, RunStatus::Succeeded);
        let (_, started, max) = *runner.state.lock().expect("lock");
        assert_eq!(started, total);
        assert_eq!(max, jobs, "jobs = {jobs}");
    }
}

/// Waits (with a deadline) until the stage's cancellation flag goes true.
fn wait_for_cancel(task: &StageTask<'_>) -> StageOutcome {
    let deadline = Instant::now() + DEADLINE;
    while !task.cancellation.is_cancelled() {
        assert!(
            Instant::now() < deadline,
            "stage `{}` was never cancelled",
            task.id
        );
        std::thread::yield_now();
    }
    StageOutcome::cancelled("cancelled while running")
}

#[test]
fn fail_fast_cancels_running_stages_and_skips_the_rest() {
    // `slow` runs until cancelled; `bad` fails once `slow` is running; `late` and `after-slow`
    // never start.
    let file = pipeline(
        "    slow: {run: x}\n    bad: {run: x}\n    late: {run: x}\n    after-slow: {run: x, after: slow}\n",
    );
    let slow_running = (Mutex::new(false), Condvar::new());
    let runner = |task: &StageTask<'_>| match task.id.as_str() {
        "slow" => {
            *slow_running.0.lock().expect("lock") = true;
            slow_running.1.notify_all();
            wait_for_cancel(task)
        }
        "bad" => {
            let guard = slow_running.0.lock().expect("lock");
            let (_guard, timeout) = slow_running
                .1
                .wait_timeout_while(guard, DEADLINE, |running| !*running)
                .expect("valid");
            assert!(!timeout.timed_out());
            StageOutcome::failed(Some(1), "boom")
        }
        _ => StageOutcome::succeeded(),
    };
    let mut scheduler = scheduler(2);
    scheduler.options.fail_fast = true;
    let run = scheduler.run(&file, &runner, &RunLog::null(), RunInfo::default());
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(status(&run, "bad"), StageStatus::Failed);
    assert_eq!(status(&run, "slow"), StageStatus::Cancelled);
    assert_eq!(status(&run, "late"), StageStatus::Skipped);
    assert_eq!(
        reason(&run, "late"),
        "skipped: `--fail-fast` after `bad` did not succeed"
    );
    assert_eq!(status(&run, "after-slow"), StageStatus::Skipped);
}

#[test]
fn without_fail_fast_independent_stages_finish() {
    let file = pipeline("    bad: {run: x}\n    good: {run: x}\n    more: {run: x}\n");
    let runner = Scripted::new(&["bad"]);
    let run = scheduler(1).run(
        &file,
        &|t: &StageTask<'_>| runner.run(t),
        &RunLog::null(),
        RunInfo::default(),
    );
    assert_eq!(status(&run, "good"), StageStatus::Succeeded);
    assert_eq!(status(&run, "more"), StageStatus::Succeeded);
    assert_eq!(run.status, RunStatus::Failed);
}

#[test]
fn cancellation_stops_running_stages_and_ends_the_run_cancelled() {
    // `first` plays the user pressing Ctrl-C while it runs, then waits to be cancelled.
    let file = pipeline(
        "    first: {run: x}\n    second: {run: x, after: first}\n    third: {run: x, after: first}\n",
    );
    let scheduler = scheduler(2);
    let user = scheduler.cancellation.clone();
    let runs = AtomicUsize::new(0);
    let runner = |task: &StageTask<'_>| {
        runs.fetch_add(1, Ordering::SeqCst);
        user.cancel();
        wait_for_cancel(task)
    };
    let run = scheduler.run(&file, &runner, &RunLog::null(), RunInfo::default());
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(status(&run, "first"), StageStatus::Cancelled);
    // Downstream of a cancelled stage: skipped (naming it) or cancelled before it started.
    for stage in ["second", "third"] {
        assert!(
            matches!(
                status(&run, stage),
                StageStatus::Skipped | StageStatus::Cancelled
            ),
            "{stage}: {:?}",
            run.stage(stage)
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn cancellation_before_the_start_cancels_everything() {
    let scheduler = scheduler(2);
    scheduler.cancellation.cancel();
    let runner = Scripted::new(&[]);
    let run = scheduler.run(
        &independent(5),
        &|t: &StageTask<'_>| runner.run(t),
        &RunLog::null(),
        RunInfo::default(),
    );
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(
        run.stages
            .iter()
            .all(|s| s.status == StageStatus::Cancelled)
    );
    assert!(runner.started.lock().expect("lock").is_empty());
}

#[test]
fn gates_deny_without_approval_and_open_with_it() {
    let file = pipeline(
        "    build: {run: x}\n    deploy: {run: x, after: build, gate: {approval: required, policy: main-only}}\n    notify: {run: x, after: deploy}\n",
    );
    let policies = Policies::from_map(BTreeMap::from([(
        "main-only".to_owned(),
        Policy {
            branches: vec!["main".to_owned()],
            allow: true,
            ..Policy::default()
        },
    )]));
    let mut gates = Gates::new();
    gates.policies = Some(policies);
    gates.git_ref = Some(GitRef::new("main"));

    let runner = Scripted::new(&[]);
    let mut s = scheduler(2);
    s.gates = gates.clone();
    let run = s.run(
        &file,
        &|t: &StageTask<'_>| runner.run(t),
        &RunLog::null(),
        RunInfo::default(),
    );
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(status(&run, "deploy"), StageStatus::Denied);
    assert!(
        reason(&run, "deploy").contains("--approve deploy"),
        "{}",
        reason(&run, "deploy")
    );
    assert_eq!(reason(&run, "notify"), "skipped: `deploy` was denied");
    assert!(
        !runner
            .started
            .lock()
            .expect("lock")
            .contains(&"deploy".to_owned())
    );

    let runner = Scripted::new(&[]);
    gates.approved = PreApproved::Stages(BTreeSet::from(["deploy".to_owned()]));
    s.gates = gates.clone();
    let run = s.run(
        &file,
        &|t: &StageTask<'_>| runner.run(t),
        &RunLog::null(),
        RunInfo::default(),
    );
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(
        reason(&run, "deploy"),
        "policy `main-only` allows: branch `main` matches `main`; approved by `--approve deploy`"
    );

    // Approved, but the policy refuses the ref.
    gates.git_ref = Some(GitRef::new("feature"));
    s.gates = gates;
    let run = s.run(
        &file,
        &|t: &StageTask<'_>| runner.run(t),
        &RunLog::null(),
        RunInfo::default(),
    );
    assert_eq!(status(&run, "deploy"), StageStatus::Denied);
    assert!(reason(&run, "deploy").starts_with("policy `main-only` denied"));
}

#[test]
fn cached_stages_unblock_their_dependents() {
    let file = pipeline("    a: {run: x}\n    b: {run: x, after: a}\n");
    let runner = |task: &StageTask<'_>| {
        let mut outcome = StageOutcome::succeeded();
        if task.id.as_str() == "a" {
            outcome.status = StageStatus::Cached;
        }
        outcome
    };
    let run = scheduler(2).run(&file, &runner, &RunLog::null(), RunInfo::default());
    assert_eq!(status(&run, "a"), StageStatus::Cached);
    assert_eq!(status(&run, "b"), StageStatus::Succeeded);
    assert_eq!(run.status, RunStatus::Succeeded);
}

/// The `with` each stage was started with, as JSON; stages in `outputs` report those
/// outputs, stages in `failing` fail.
struct Recorder {
    outputs: BTreeMap<&'static str, Vec<(&'static str, String)>>,
    failing: BTreeSet<&'static str>,
    seen: Mutex<BTreeMap<String, serde_json::Value>>,
    env: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl Recorder {
    fn new(outputs: &[(&'static str, &'static str, &str)], failing: &[&'static str]) -> Self {
        let mut map: BTreeMap<&'static str, Vec<(&'static str, String)>> = BTreeMap::new();
        for (stage, name, value) in outputs {
            map.entry(*stage)
                .or_default()
                .push((*name, (*value).to_owned()));
        }
        Self {
            outputs: map,
            failing: failing.iter().copied().collect(),
            seen: Mutex::new(BTreeMap::new()),
            env: Mutex::new(BTreeMap::new()),
        }
    }

    fn run(&self, task: &StageTask<'_>) -> StageOutcome {
        let with = task.stage.with.clone().unwrap_or_default();
        self.seen.lock().expect("lock").insert(
            task.id.to_string(),
            labhit_protocol::Value::Object(with).to_json(),
        );
        self.env
            .lock()
            .expect("lock")
            .insert(task.id.to_string(), task.outputs_env.clone());
        if self.failing.contains(task.id.as_str()) {
            return StageOutcome::failed(Some(1), "it failed");
        }
        let mut outcome = StageOutcome::succeeded();
        for (name, value) in self.outputs.get(task.id.as_str()).into_iter().flatten() {
            outcome.outputs.insert((*name).to_owned(), value.clone());
        }
        outcome
    }

    fn env_of(&self, stage: &str) -> Option<BTreeMap<String, String>> {
        self.env.lock().expect("lock").get(stage).cloned()
    }

    fn with_of(&self, stage: &str) -> Option<serde_json::Value> {
        self.seen.lock().expect("lock").get(stage).cloned()
    }
}

const REFERRING: &str = "    a: {use: util/checksum}\n    m: {use: x/y, after: a}\n    b:\n      use: deploy/render\n      after: m\n      with:\n        text: \"sha ${{ stages.a.outputs.digest }} in ${{stages.m.outputs.n}}\"\n        values: {list: [\"${{ stages.a.outputs.digest }}\", 7]}\n        literal: \"$${{ stages.a.outputs.digest }}\"\n";

#[test]
fn output_references_are_filled_in_before_the_stage_starts() {
    let file = pipeline(REFERRING);
    let recorder = Recorder::new(&[("a", "digest", "abc123"), ("m", "n", "2")], &[]);
    let runner = |task: &StageTask<'_>| recorder.run(task);
    let run = scheduler(2).run(&file, &runner, &RunLog::null(), RunInfo::default());
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(
        recorder.with_of("b"),
        Some(serde_json::json!({
            "text": "sha abc123 in 2",
            "values": {"list": ["abc123", 7]},
            "literal": "${{ stages.a.outputs.digest }}",
        }))
    );
    // The pipeline as written is untouched.
    let written = file.pipeline.stages.get("b").and_then(|s| s.with.clone());
    assert!(format!("{written:?}").contains("${{ stages.a.outputs.digest }}"));
}

#[test]
fn a_missing_output_fails_the_stage_naming_stage_and_output() {
    let file = pipeline(REFERRING);
    let recorder = Recorder::new(&[("m", "n", "2")], &[]);
    let runner = |task: &StageTask<'_>| recorder.run(task);
    let run = scheduler(2).run(&file, &runner, &RunLog::null(), RunInfo::default());
    assert_eq!(status(&run, "b"), StageStatus::Failed);
    assert_eq!(
        reason(&run, "b"),
        "`with.text` refers to output `digest` of stage `a`, which that stage did not report"
    );
    assert_eq!(recorder.with_of("b"), None, "the stage never started");
    assert_eq!(run.status, RunStatus::Failed);
}

#[test]
fn a_failed_or_skipped_upstream_skips_the_referring_stage_with_the_reason() {
    // `a` fails: `m` is skipped, `b` (which needs outputs of both) too, naming `a`.
    let file = pipeline(REFERRING);
    let recorder = Recorder::new(&[], &["a"]);
    let runner = |task: &StageTask<'_>| recorder.run(task);
    let run = scheduler(2).run(&file, &runner, &RunLog::null(), RunInfo::default());
    assert_eq!(status(&run, "m"), StageStatus::Skipped);
    assert_eq!(status(&run, "b"), StageStatus::Skipped);
    // The reason (summary and log) names the references the failure left without a value.
    assert_eq!(
        reason(&run, "b"),
        "skipped: `a` failed; `with.text` needs output `digest` of `a`, `with.text` needs \
         output `n` of `m`, `with.values.list.0` needs output `digest` of `a`"
    );
    assert_eq!(reason(&run, "m"), "skipped: `a` failed");
    assert_eq!(recorder.with_of("b"), None);

    // A pipeline that was not validated (built from JSON) may refer to a stage that is not
    // upstream: a finished failed one skips the stage, one not finished fails it.
    let unchecked = |stages: serde_json::Value| -> PipelineFile {
        serde_json::from_value(serde_json::json!({
            "engine": "1",
            "pipeline": {"name": "unchecked", "stages": stages},
        }))
        .expect("pipeline JSON")
    };
    let file = unchecked(serde_json::json!({
        "a": {"use": "x/a"},
        "x": {"use": "x/x"},
        "c": {"use": "x/c", "after": ["x"], "with": {"d": "${{ stages.a.outputs.digest }}"}},
        "late": {"use": "x/l", "after": ["c"]},
        "d": {"use": "x/d", "after": ["x"], "with": {"d": "${{ stages.late.outputs.n }}"}},
    }));
    let recorder = Recorder::new(&[], &["a"]);
    let runner = |task: &StageTask<'_>| recorder.run(task);
    // One job: stages start in file order, so `a` has failed before `c` starts.
    let run = scheduler(1).run(&file, &runner, &RunLog::null(), RunInfo::default());
    assert_eq!(status(&run, "c"), StageStatus::Skipped, "{run:?}");
    assert_eq!(
        reason(&run, "c"),
        "skipped: `with.d` needs output `digest` of `a`, which failed"
    );
    assert_eq!(reason(&run, "late"), "skipped: `c` was skipped");
    assert_eq!(status(&run, "d"), StageStatus::Skipped);
    assert_eq!(
        reason(&run, "d"),
        "skipped: `with.d` needs output `n` of `late`, which was skipped"
    );
}

#[test]
fn run_stages_get_upstream_outputs_as_environment_variables_only() {
    // `s` runs after `m` (after `a`); `side` is not upstream of it. `a-b` and `a_b` of `c`
    // meet in one variable name: neither is set, and the log says why.
    let file = pipeline(
        "    a: {use: x/a}\n    side: {use: x/s}\n    c: {use: x/c}\n    m: {use: x/m, after: a}\n    s: {run: 'echo \"$LABHIT_OUTPUT_A__DIGEST\"', after: [m, c]}\n    e: {use: x/e, after: s}\n",
    );
    let hostile = "$(touch pwned) `id` ${{ stages.side.outputs.v }}";
    let recorder = Recorder::new(
        &[
            ("a", "digest", hostile),
            ("m", "n-x", "2"),
            ("side", "v", "no"),
            ("c", "a-b", "1"),
            ("c", "a_b", "2"),
        ],
        &[],
    );
    let runner = |task: &StageTask<'_>| recorder.run(task);
    let sink = Arc::new(CollectingSink::new());
    let log = RunLog::new(labhit_protocol::ids::RunId::from_uuid(uuid()), sink.clone());
    let run = scheduler(1).run(&file, &runner, &log, RunInfo::default());
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let expected: BTreeMap<String, String> = [
        ("LABHIT_OUTPUT_A__DIGEST", hostile),
        ("LABHIT_OUTPUT_M__N_X", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(recorder.env_of("s"), Some(expected));
    // The script itself is handed over as written.
    assert_eq!(
        file.pipeline
            .stages
            .get("s")
            .and_then(|s| s.run.clone())
            .as_deref(),
        Some("echo \"$LABHIT_OUTPUT_A__DIGEST\"")
    );
    // Stages without `run` get no variables.
    assert_eq!(recorder.env_of("e"), Some(BTreeMap::new()));
    let warning = sink
        .entries()
        .into_iter()
        .find(|e| e.message.contains("LABHIT_OUTPUT_C__A_B"))
        .expect("a warning about the clash");
    assert_eq!(warning.level, LogLevel::Warn);
    assert_eq!(
        warning.message,
        "`LABHIT_OUTPUT_C__A_B` is not set: outputs `a-b` of `c` and `a_b` of `c` all map to it; rename one of them"
    );
}

#[test]
fn status_changes_are_reported() {
    let file = pipeline("    a: {run: x}\n    b: {run: x, after: a}\n");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut s = scheduler(1);
    let record = Arc::clone(&seen);
    s.on_status = Some(Arc::new(move |id, status| {
        record.lock().expect("lock").push(format!("{id}:{status}"));
    }));
    let runner = Scripted::new(&["a"]);
    s.run(
        &file,
        &|t: &StageTask<'_>| runner.run(t),
        &RunLog::null(),
        RunInfo::default(),
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        ["a:queued", "b:queued", "a:running", "a:failed", "b:skipped"]
    );
}

mod real_runner {
    //! The real [`PipelineRunner`] with the built-in local executor: one shared workspace,
    //! writers serialised, host-side caching.

    use std::sync::Arc;

    use labhit_protocol::run::{RunStatus, StageStatus};
    use labhit_runtime::CollectingSink;
    use labhit_runtime::executor::LocalExecutor;
    use labhit_runtime::scheduler::stages::{PipelineRunner, StagePlan};
    use labhit_runtime::scheduler::{RunInfo, RunLog};
    use labhit_runtime::snapshot::SnapshotStore;

    use super::{pipeline, scheduler, status};

    /// Runs `text` in a fresh workspace (a copy of `project`) with the snapshot store `cache`.
    fn run_in(
        text: &str,
        project: &std::path::Path,
        cache: &std::path::Path,
    ) -> (
        labhit_protocol::run::PipelineRun,
        tempfile::TempDir,
        Vec<String>,
    ) {
        let file = pipeline(text);
        let run_dir = tempfile::tempdir().expect("tempdir");
        let workspace = run_dir.path().join("workspace");
        labhit_runtime::workspace::copy_project(project, &workspace, &[]).expect("copy");
        let store = SnapshotStore::new(cache);
        let local = Arc::new(LocalExecutor::new(store.clone()));
        let mut runner = PipelineRunner::new(&workspace, run_dir.path());
        runner.snapshots = Some(store);
        for (id, _) in file.pipeline.stages.iter() {
            runner
                .plans
                .insert(id.to_string(), StagePlan::Command(local.clone()));
        }
        let sink = Arc::new(CollectingSink::new());
        let log = RunLog::new(labhit_runtime::scheduler::new_run_id(), sink.clone());
        let run = scheduler(2).run(&file, &runner, &log, RunInfo::default());
        (run, run_dir, sink.messages())
    }

    const PIPELINE: &str = "    make:\n      run: mkdir -p out && echo one > out/a.txt\n    \
        left:\n      after: make\n      run: test ! -e busy && touch busy && cat out/a.txt > out/left.txt && rm busy\n    \
        right:\n      after: make\n      run: test ! -e busy && touch busy && cat out/a.txt > out/right.txt && rm busy\n";

    #[test]
    fn writers_share_one_workspace_in_turn_and_a_second_run_is_cached() {
        let project = tempfile::tempdir().expect("tempdir");
        std::fs::write(project.path().join("input.txt"), "x").expect("write");
        let cache = tempfile::tempdir().expect("tempdir");

        let (first, dir, messages) = run_in(PIPELINE, project.path(), cache.path());
        assert_eq!(
            first.status,
            RunStatus::Succeeded,
            "{first:#?}\n{messages:#?}"
        );
        let ws = dir.path().join("workspace");
        assert_eq!(
            std::fs::read_to_string(ws.join("out/left.txt")).expect("left"),
            "one\n"
        );
        assert_eq!(
            std::fs::read_to_string(ws.join("out/right.txt")).expect("right"),
            "one\n"
        );
        assert!(
            messages.iter().any(|m| m.contains("UNSANDBOXED")),
            "the local executor is announced: {messages:#?}"
        );

        let (second, dir, messages) = run_in(PIPELINE, project.path(), cache.path());
        for stage in ["make", "left", "right"] {
            assert_eq!(
                status(&second, stage),
                StageStatus::Cached,
                "{stage}: {messages:#?}"
            );
        }
        let ws = dir.path().join("workspace");
        assert_eq!(
            std::fs::read_to_string(ws.join("out/left.txt")).expect("left"),
            "one\n"
        );

        // A changed script is a miss, and so is everything that sees its new effect.
        let changed = PIPELINE.replace("echo one", "echo two");
        let (third, dir, _) = run_in(&changed, project.path(), cache.path());
        for stage in ["make", "left", "right"] {
            assert_eq!(status(&third, stage), StageStatus::Succeeded, "{stage}");
        }
        let ws = dir.path().join("workspace");
        assert_eq!(
            std::fs::read_to_string(ws.join("out/right.txt")).expect("right"),
            "two\n"
        );
    }
}
