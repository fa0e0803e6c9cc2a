//! End-to-end tests of `labhit run` on the real example pipeline with the real example
//! extensions.
//!
//! Each test gets a project directory of its own (a temporary copy of
//! `examples/pipeline.yaml` and `.labhit/policies.toml`), its own run and snapshot-cache
//! directories, and `--ref main`. The example extensions are built once per test process
//! with `labhit-guest-build` (the logic of `cargo xtask extensions`) and bundled into one
//! directory given as `--extensions`. Compiled components are cached in
//! `CARGO_TARGET_TMPDIR` (through `LABHIT_CACHE_DIR`).

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{Run, root};
use serde_json::Value;

/// Every example extension, built once and bundled into one directory.
fn extensions() -> &'static Path {
    common::example_extensions().0.path()
}

// A project with a pipeline file and the repository's policy file.
common::project_type!();

impl Project {
    fn new(pipeline: &str) -> Self {
        let project = common::Project::new(pipeline);
        project.write(
            ".labhit/policies.toml",
            std::fs::read(root().join(".labhit/policies.toml")).expect("the policy file"),
        );
        Self(project)
    }

    fn example() -> Self {
        let text = std::fs::read_to_string(root().join("examples/pipeline.yaml")).expect("example");
        Self::new(&text)
    }

    /// `labhit run pipeline.yaml --format json` with `extra` arguments.
    fn run(&self, extra: &[&str]) -> Run {
        let mut command = common::labhit(self.path());
        command
            .args(["run", "pipeline.yaml", "--format", "json"])
            .args(if extra.contains(&"--ref") {
                &[][..]
            } else {
                &["--ref", "main"][..]
            })
            .arg("--extensions")
            .arg(extensions())
            .arg("--cache-dir")
            .arg(self.cache())
            .arg("--run-dir")
            .arg(self.runs())
            .args(extra);
        Run::of(&mut command)
    }
}

#[test]
fn the_example_runs_and_the_second_run_is_cached() {
    let project = Project::example();
    let first = project.run(&["--approve", "deploy"]);
    assert_eq!(first.code(), 0, "{first:?}");
    assert_eq!(first.json()["status"], "succeeded");
    for stage in ["prepare", "checksum", "test-report", "bundle", "deploy"] {
        assert_eq!(first.status(stage), "succeeded", "{stage}: {first:?}");
    }
    let stderr = first.stderr();
    assert!(
        stderr.contains("[prepare] executor `local` is UNSANDBOXED"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[prepare] `sandbox.image` (debian:12-slim) is not honoured"),
        "{stderr}"
    );
    assert!(stderr.contains("[checksum] hashed 2 files"), "{stderr}");
    assert!(
        stderr.contains("[bundle] executor `extension:exec/sh@0.1.0` (sandboxed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[bundle] bundled release/NOTES"),
        "{stderr}"
    );
    assert_eq!(first.stage("test-report")["outputs"]["tests"], "3");
    // An executor extension's outputs reach the summary too.
    assert_eq!(first.stage("bundle")["outputs"]["commands"], "6");

    // The run directory: summary.json equal to stdout, the log, the artifacts.
    let id = first.json()["id"].as_str().expect("id").to_owned();
    let run_dir = project.runs().join(&id);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary, first.json());
    let log = std::fs::read_to_string(run_dir.join("log.jsonl")).expect("log");
    assert!(log.lines().count() > 10);
    assert!(run_dir.join("artifacts/checksum/dist/SHA256SUMS").is_file());
    assert_eq!(
        std::fs::read_to_string(run_dir.join("artifacts/bundle/release/NOTES")).expect("notes"),
        "pipeline labhit-example\n"
    );
    // `deploy` got `checksum`'s digest through an output reference in its `with`.
    let digest = first.stage("checksum")["outputs"]["digest"]
        .as_str()
        .expect("checksum reports its digest")
        .to_owned();
    assert_eq!(digest.len(), 64, "{digest}");
    assert_eq!(
        std::fs::read_to_string(run_dir.join("workspace/dist/deploy.txt")).expect("rendered"),
        format!("app labhit-example (staging) manifest {digest}")
    );

    let second = project.run(&["--approve", "deploy"]);
    assert_eq!(second.code(), 0, "{second:?}");
    assert_eq!(second.status("prepare"), "cached", "{second:?}");
    assert_eq!(second.status("bundle"), "cached", "{second:?}");
    assert_eq!(second.stage("bundle")["outputs"]["commands"], "0");
    assert_eq!(second.status("deploy"), "succeeded");
    let id = second.json()["id"].as_str().expect("id").to_owned();
    let workspace = project.runs().join(id).join("workspace");
    assert!(
        workspace.join("reports/unit.xml").is_file(),
        "the cache hit restored the stage's files"
    );
    assert!(
        workspace.join("release/NOTES").is_file(),
        "the executor extension's cache hit restored its files"
    );

    // A changed script is a miss.
    project.edit("hello from labhit", "hello again from labhit");
    let third = project.run(&["--approve", "deploy"]);
    assert_eq!(third.code(), 0, "{third:?}");
    assert_eq!(third.status("prepare"), "succeeded", "{third:?}");
    // ... and so is a changed script of the extension executor's stage. (The pipeline file
    // is part of the project copy every stage sees, so editing it is a miss everywhere.)
    project.edit("bundled $file", "packed $file");
    let fourth = project.run(&["--approve", "deploy"]);
    assert_eq!(fourth.code(), 0, "{fourth:?}");
    assert_eq!(fourth.status("bundle"), "succeeded", "{fourth:?}");
    assert!(fourth.stderr().contains("[bundle] packed release/NOTES"));

    // --no-cache neither reads nor writes the cache.
    let fifth = project.run(&["--approve", "deploy", "--no-cache"]);
    assert_eq!(fifth.status("prepare"), "succeeded", "{fifth:?}");
    assert_eq!(fifth.status("bundle"), "succeeded", "{fifth:?}");
}

/// `checksum` hashes a project file, `bundle` (the `exec/sh` executor extension, whose key
/// covers no workspace file: `sandbox.inputs: []`) gets the digest through its `with`.
const DIGEST_TO_EXECUTOR: &str = r#"engine: "1"
pipeline:
  name: outputs-in-keys
  stages:
    checksum:
      use: util/checksum@^0.1
      with: {patterns: ["src.txt"], output: SUMS}
    bundle:
      after: checksum
      use: exec/sh@^0.1
      with:
        artifacts: ["out/*", "never-${{ stages.checksum.outputs.digest }}"]
      run: |
        mkdir -p out
        echo bundled > out/done
      sandbox:
        inputs: []
"#;

#[test]
fn an_output_reference_is_filled_in_and_part_of_the_executor_stages_cache_key() {
    let project = Project::new(DIGEST_TO_EXECUTOR);
    std::fs::write(project.path().join("src.txt"), "one").expect("write");
    let first = project.run(&[]);
    assert_eq!(first.code(), 0, "{first:?}");
    assert_eq!(first.status("bundle"), "succeeded", "{first:?}");
    let second = project.run(&[]);
    assert_eq!(second.status("bundle"), "cached", "same digest: {second:?}");
    // A different digest upstream is a different `with`, so a different key: a miss, though
    // nothing else the key covers changed.
    std::fs::write(project.path().join("src.txt"), "two").expect("write");
    let third = project.run(&[]);
    assert_ne!(
        third.stage("checksum")["outputs"]["digest"],
        first.stage("checksum")["outputs"]["digest"]
    );
    assert_eq!(third.status("bundle"), "succeeded", "new digest: {third:?}");
    let fourth = project.run(&[]);
    assert_eq!(fourth.status("bundle"), "cached", "{fourth:?}");
}

/// `render` reports the path it wrote, chosen in its `with` to be shell code; two `run:`
/// stages, one on the local executor (a real `sh`), one on `exec/sh`, get it as an
/// environment variable and write it to a file.
const HOSTILE_OUTPUT: &str = r#"engine: "1"
pipeline:
  name: hostile-output
  stages:
    render:
      use: deploy/render@^0.1
      with: {template: "x", output: "HOSTILE"}
    local:
      after: render
      run: |
        printf '%s' "$LABHIT_OUTPUT_RENDER__OUTPUT" > got-local.txt
        echo $LABHIT_OUTPUT_RENDER__OUTPUT
      sandbox: {inputs: []}
    wasm:
      after: local
      use: exec/sh@^0.1
      run: |
        printf '%s' "$LABHIT_OUTPUT_RENDER__OUTPUT" > got-sh.txt
      sandbox: {inputs: []}
"#;

#[test]
fn run_scripts_get_outputs_as_environment_variables_never_as_code() {
    let hostile = "p$(touch pwned1)`touch pwned2`;touch pwned3";
    let pipeline = HOSTILE_OUTPUT.replace("HOSTILE", hostile);
    let project = Project::new(&pipeline);
    let first = project.run(&[]);
    assert_eq!(first.code(), 0, "{first:?}");
    assert_eq!(first.stage("render")["outputs"]["output"], hostile);
    let id = first.json()["id"].as_str().expect("id").to_owned();
    let workspace = project.runs().join(&id).join("workspace");
    for (file, stage) in [("got-local.txt", "local"), ("got-sh.txt", "wasm")] {
        assert_eq!(first.status(stage), "succeeded", "{first:?}");
        let got = std::fs::read_to_string(workspace.join(file)).expect(file);
        assert_eq!(got, hostile, "{stage} got the value as data");
    }
    for dir in [&workspace, &project.path().to_path_buf()] {
        for n in 1..=3 {
            assert!(
                !dir.join(format!("pwned{n}")).exists(),
                "pwned{n} in {dir:?}"
            );
        }
    }

    // The value is part of the script stages' cache keys: same output, cached; another
    // output (nothing else their keys cover changed), run again.
    let second = project.run(&[]);
    assert_eq!(second.status("local"), "cached", "{second:?}");
    assert_eq!(second.status("wasm"), "cached", "{second:?}");
    project.write("pipeline.yaml", pipeline.replace("pwned3", "pwned4"));
    let third = project.run(&[]);
    assert_eq!(third.status("local"), "succeeded", "{third:?}");
    assert_eq!(third.status("wasm"), "succeeded", "{third:?}");
}

#[test]
fn an_output_the_upstream_did_not_declare_stops_the_run_before_it_starts() {
    let project = Project::new(&DIGEST_TO_EXECUTOR.replace("outputs.digest", "outputs.digets"));
    let run = project.run(&[]);
    assert_eq!(run.code(), 1, "{run:?}");
    let stderr = run.stderr();
    assert!(
        stderr.contains("pipeline.yaml:12:37: error[undeclared-output]: stage `bundle`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `digest`?"), "{stderr}");
}

#[test]
fn without_approval_the_gated_stage_is_denied() {
    let project = Project::example();
    let run = project.run(&[]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert_eq!(run.json()["status"], "failed");
    assert_eq!(run.status("deploy"), "denied");
    let reason = run.stage("deploy")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("--approve deploy"), "{reason}");
    assert_eq!(run.status("checksum"), "succeeded");
    assert!(project.runs().read_dir().expect("runs").next().is_some());

    // Approved, but off `main`: the policy denies.
    let run = project.run(&["--approve-all", "--ref", "feature/x"]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert_eq!(run.status("deploy"), "denied");
    let reason = run.stage("deploy")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.starts_with("policy `main-only` denied"), "{reason}");
}

#[test]
fn a_failed_middle_stage_skips_downstream_and_the_other_branch_finishes() {
    let project = Project::new(
        r#"engine: "1"
pipeline:
  name: failing
  stages:
    prepare:
      run: mkdir -p reports && echo '<testsuite tests="1"><testcase name="a"/></testsuite>' > reports/a.xml
    build:
      after: prepare
      run: echo building && exit 3
    package:
      after: build
      run: echo never
    report:
      after: prepare
      use: test/junit@^0.1
      with: {reports: ["reports/*.xml"]}
"#,
    );
    let run = project.run(&["--jobs", "2"]);
    assert_eq!(run.code(), 1, "{run:?}");
    let json = run.json();
    assert_eq!(json["status"], "failed");
    assert_eq!(run.status("prepare"), "succeeded");
    assert_eq!(run.status("build"), "failed");
    assert_eq!(run.stage("build")["exit_code"], 3);
    assert_eq!(
        run.stage("build")["reason"],
        "the command exited with code 3"
    );
    assert_eq!(run.status("package"), "skipped");
    assert_eq!(run.stage("package")["reason"], "skipped: `build` failed");
    assert_eq!(run.status("report"), "succeeded");
    assert!(run.stderr().contains("[build] building"), "{run:?}");
}

#[test]
fn problems_in_the_file_stop_the_run_before_it_starts() {
    // (stage text, what stderr must say): each is refused with file:line:col and its rule
    // before any stage runs.
    let cases = [
        (
            "use: util/no-such-thing",
            "pipeline.yaml:6:12: error[unknown-extension]",
        ),
        (
            "use: util/checksum@^9\n      with: {patterns: [\"x\"]}",
            "pipeline.yaml:6:12: error[extension-version]",
        ),
        (
            "use: util/checksum@^0.1\n      with: {patterns: []}",
            "error[input-schema]: stage `a`: `with.patterns`",
        ),
        (
            "use: util/checksum@^0.1\n      with: {patterns: [\"x\"]}\n      run: make",
            "error[not-an-executor]",
        ),
    ];
    for (stage, expected) in cases {
        let project = Project::new(&format!(
            "engine: \"1\"\npipeline:\n  name: broken\n  stages:\n    a:\n      {stage}\n"
        ));
        let run = project.run(&[]);
        assert_eq!(run.code(), 1, "{stage}: {run:?}");
        assert!(run.stderr().contains(expected), "{stage}: {run:?}");
        assert!(!project.runs().exists(), "{stage}: nothing ran");
    }
}

#[test]
fn an_unknown_policy_denies_the_stage() {
    let project = Project::new(
        r#"engine: "1"
pipeline:
  name: policy
  stages:
    build:
      run: echo built
    ship:
      after: build
      run: echo shipped
      gate:
        policy: no-such-policy
"#,
    );
    let run = project.run(&["--approve-all"]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert_eq!(run.status("build"), "succeeded");
    assert_eq!(run.status("ship"), "denied", "{run:?}");
    let reason = run.stage("ship")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("no-such-policy"), "{reason}");
    assert!(!run.stderr().contains("shipped"), "{run:?}");
}

#[test]
fn usage_errors_exit_2_and_a_missing_file_3() {
    let project = Project::example();
    assert_eq!(project.run(&["--approve", "nope"]).code(), 2);
    assert_eq!(project.run(&["--secret", "novalue"]).code(), 2);
    assert_eq!(project.run(&["--jobs", "0"]).code(), 2);
    let missing = Run::of(common::labhit(project.path()).args(["run", "missing.yaml"]));
    assert_eq!(missing.code(), 3, "{missing:?}");
}

#[test]
fn help_lists_examples_and_exit_codes() {
    let text = Run::of(common::labhit(&root()).args(["run", "--help"])).stdout();
    assert!(text.contains("Examples:"), "{text}");
    assert!(text.contains("Exit codes:"), "{text}");
    assert!(text.contains("--approve <STAGE>"), "{text}");
}

#[test]
fn sigint_cancels_the_run_cleanly() {
    let state = tempfile::tempdir().expect("tempdir");
    let marker = state.path().join("started");
    let project = Project::new(&format!(
        r#"engine: "1"
pipeline:
  name: slow
  stages:
    slow:
      run: touch '{}' && sleep 60
    after-slow:
      after: slow
      run: echo never
"#,
        marker.display()
    ));
    let mut command = common::labhit(project.path());
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .args([
            "run",
            "pipeline.yaml",
            "--format",
            "json",
            "--no-cache",
            "--run-dir",
        ])
        .arg(project.runs());
    let child = command.spawn().expect("spawn labhit");
    // Wait (with a deadline) until the stage's command is running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stage never started"
        );
        std::thread::yield_now();
    }
    common::signal(child.id(), "INT");
    let run = Run(child.wait_with_output().expect("wait"));
    assert_eq!(run.code(), 130, "{run:?}");
    assert_eq!(run.json()["status"], "cancelled", "{run:?}");
    assert_eq!(run.status("slow"), "cancelled", "{run:?}");
    assert_ne!(run.status("after-slow"), "succeeded", "{run:?}");
    assert!(
        run.stderr().contains("Ctrl-C: cancelling the run"),
        "{run:?}"
    );
}

#[test]
fn a_stage_past_its_deadline_fails_and_the_other_branch_finishes() {
    let project = Project::new(
        r#"engine: "1"
pipeline:
  name: deadline
  stages:
    slow:
      run: sleep 30
      sandbox: {timeout: 1s}
    quick:
      run: echo done
"#,
    );
    let run = project.run(&["--no-cache"]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert_eq!(run.status("slow"), "failed");
    let reason = run.stage("slow")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("deadline of 1s"), "{reason}");
    assert_eq!(run.status("quick"), "succeeded");
}

#[test]
fn an_executor_stages_with_is_part_of_its_cache_key() {
    let pipeline = |artifact: &str| {
        format!(
            "engine: \"1\"\npipeline:\n  name: keyed\n  stages:\n    pack:\n      use: exec/sh\n      \
             with: {{artifacts: [\"{artifact}\"]}}\n      run: |\n        printf 'a\\n' > a.txt\n        \
             printf 'b\\n' > b.txt\n"
        )
    };
    let project = Project::new(&pipeline("a.txt"));
    let first = project.run(&[]);
    assert_eq!(first.code(), 0, "{first:?}");
    assert_eq!(first.status("pack"), "succeeded", "{first:?}");
    let same = project.run(&[]);
    assert_eq!(same.status("pack"), "cached", "the same `with`: {same:?}");

    // Another `with` asks the executor for other artifacts: the snapshot of the first run
    // must not stand in for it.
    project.write("pipeline.yaml", pipeline("b.txt"));
    let changed = project.run(&[]);
    assert_eq!(changed.code(), 0, "{changed:?}");
    assert_eq!(
        changed.status("pack"),
        "succeeded",
        "a changed `with`: {changed:?}"
    );
    let artifacts = changed.stage("pack")["artifacts"].to_string();
    assert!(artifacts.contains("b.txt"), "{artifacts}");
}
