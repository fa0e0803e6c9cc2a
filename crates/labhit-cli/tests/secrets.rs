//! End-to-end tests of secrets in `labhit run`: how they are given (`--secret NAME`,
//! `--secrets-file`, stdin) and that a granted secret appears in nothing the run produces.
//!
//! The leak test runs a real pipeline: the hostile guest of `labhit-runtime`
//! (`crates/labhit-runtime/tests/fixtures/hostile`, mode `leak-secret`, built with
//! `labhit-guest-build`) is granted the secret and tries every path out — log message, field
//! key and value, stdout lines straddling the host's 16 KiB pieces, stderr, output name and
//! value (also read back from a file), artifact path, error message — and a `run:` stage on
//! the local executor echoes it from its environment, also straddling 16 KiB. Then every
//! file of the run directory except the workspace copy, every artifact's name, and
//! `labhit`'s stdout and stderr are searched for the raw value.

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::Run;

const SECRET: &str = "Zq7-leak-probe-s3cret/value";

const PIPELINE: &str = r#"engine: "1"
pipeline:
  name: leaks
  stages:
    guest:
      use: test/hostile
      with: {mode: leak-secret, name: DECLARED}
    guest-fails:
      after: [guest]
      use: test/hostile
      with: {mode: leak-secret, name: DECLARED, count: 1}
    script:
      after: [guest]
      run: |
        echo "env says $DECLARED"
        printf '%16380s%s\n' '' "$DECLARED"
        printf '%16370s%s\n' '' "$DECLARED" >&2
        printf '%s' "$DECLARED" | base64
        test "$DECLARED" = 'Zq7-leak-probe-s3cret/value'
      sandbox: {secrets: [DECLARED]}
"#;

common::project_type!();

impl Project {
    fn new(pipeline: &str) -> Self {
        Self(common::Project::new(pipeline))
    }

    /// `labhit run pipeline.yaml` with `args`, extra environment and standard input, given
    /// the hostile guest's bundle (which declares the secret `DECLARED`).
    fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut command = common::labhit(self.path());
        command
            .env_remove("DECLARED")
            .args(["run", "pipeline.yaml", "--ref", "main", "--no-cache"])
            .arg("--extensions")
            .arg(common::hostile_extensions(&[]))
            .arg("--run-dir")
            .arg(self.runs())
            .args(args)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("run labhit");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        Run(child.wait_with_output().expect("labhit ends"))
    }
}

/// Every file below `dir` (not following links), skipping `skip`.
fn files(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path == skip {
            continue;
        }
        out.push(path.clone());
        if path.symlink_metadata().expect("meta").is_dir() {
            files(&path, skip, out);
        }
    }
}

/// The parts of the secret that must not show up anywhere (the value and its halves).
fn leaks(haystack: &str) -> Vec<&'static str> {
    ["Zq7-leak-probe", "probe-s3cret", "s3cret/value", SECRET]
        .into_iter()
        .filter(|part| haystack.contains(part))
        .collect()
}

#[test]
fn a_granted_secret_appears_in_nothing_the_run_produces() {
    let project = Project::new(PIPELINE);
    let output = project.run(&["--secret", "DECLARED"], &[("DECLARED", SECRET)], None);
    let shown = format!("{output:?}");
    assert_eq!(output.code(), 1, "guest-fails fails: {shown}");
    assert!(
        leaks(&shown).is_empty(),
        "{:?} in the terminal: {shown}",
        leaks(&shown)
    );

    let run_dir = project.run_dir();
    let mut paths = Vec::new();
    files(&run_dir, &run_dir.join("workspace"), &mut paths);
    let artifacts = run_dir.join("artifacts");
    let mut checked = 0;
    for path in &paths {
        let name = path
            .strip_prefix(&run_dir)
            .expect("inside")
            .to_string_lossy();
        assert!(
            leaks(&name).is_empty(),
            "a file is named after the secret: {name}"
        );
        // Artifact contents are the guest's own files; names, logs and summary are ours.
        if path.is_file() && !path.starts_with(&artifacts) {
            let content = String::from_utf8_lossy(&std::fs::read(path).expect("read")).into_owned();
            assert!(
                leaks(&content).is_empty(),
                "{:?} in {name}",
                leaks(&content)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "log.jsonl and summary.json were checked: {paths:?}"
    );

    // Every path was really taken, and redacted rather than lost.
    let log = std::fs::read_to_string(run_dir.join("log.jsonl")).expect("log.jsonl");
    for expected in [
        "message ***",
        r#""***":"***""#,
        "stderr ***",
        "env says ***",
        "failing with ***",
    ] {
        assert!(
            log.contains(expected),
            "`{expected}` not in log.jsonl:\n{log}"
        );
    }
    let piece_ends = log.matches("p***").count() + log.matches(" ***").count();
    assert!(
        piece_ends >= 4,
        "the straddling lines were logged redacted:\n{log}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("summary.json")).expect("summary"),
    )
    .expect("json");
    let guest = summary["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["stage"] == "guest")
        .expect("guest stage");
    assert_eq!(guest["status"], "succeeded", "{guest}");
    assert_eq!(guest["outputs"]["***"], "name", "{guest}");
    assert_eq!(guest["outputs"]["value"], "***", "{guest}");
    assert_eq!(guest["outputs"]["from-file"], "***", "{guest}");
    assert_eq!(guest["artifacts"][0]["path"], "***.txt", "{guest}");
    assert!(artifacts.join("guest/***.txt").is_file(), "{paths:?}");
    let script = summary["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["stage"] == "script")
        .expect("script stage");
    assert_eq!(
        script["status"], "succeeded",
        "the script saw the value: {script}"
    );
}

#[test]
fn secrets_come_from_a_private_file_or_stdin_not_only_argv() {
    let pipeline = r#"engine: "1"
pipeline:
  name: env
  stages:
    script:
      run: test "$DECLARED" = 'from-file-value' && echo "got $DECLARED"
      sandbox: {secrets: [DECLARED]}
"#;
    let project = Project::new(pipeline);
    let file = project.path().join("secrets.env");
    std::fs::write(&file, "# secrets\nDECLARED=from-file-value\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let refused = project.run(&["--secrets-file", "secrets.env"], &[], None);
    assert_eq!(refused.code(), 2, "{refused:?}");
    assert!(refused.all().contains("chmod 600"), "{refused:?}");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let output = project.run(&["--secrets-file", "secrets.env"], &[], None);
    assert_eq!(output.code(), 0, "{output:?}");
    assert!(output.all().contains("got ***"), "{output:?}");
    assert!(!output.all().contains("from-file-value"), "{output:?}");

    let output = project.run(
        &["--secrets-file", "-"],
        &[],
        Some("DECLARED=from-file-value\n"),
    );
    assert_eq!(output.code(), 0, "{output:?}");

    // Usage errors: unset variable, too short, never the value.
    let unset = project.run(&["--secret", "DECLARED"], &[], None);
    assert_eq!(unset.code(), 2, "{unset:?}");
    assert!(unset.all().contains("is not set"), "{unset:?}");
    let short = project.run(&["--secret", "DECLARED=ab"], &[], None);
    assert_eq!(short.code(), 2, "{short:?}");
    assert!(short.all().contains("shorter than 4 bytes"), "{short:?}");
}

#[test]
fn a_granted_secret_without_a_value_fails_its_stage_clearly() {
    let pipeline = r#"engine: "1"
pipeline:
  name: env
  stages:
    script:
      run: echo never
      sandbox: {secrets: [MISSING_TOKEN]}
"#;
    let project = Project::new(pipeline);
    let output = project.run(&[], &[], None);
    assert_eq!(output.code(), 1, "{output:?}");
    assert!(
        output
            .all()
            .contains("secret `MISSING_TOKEN` is granted by `sandbox.secrets`"),
        "{output:?}"
    );
    assert!(!output.all().contains("never"), "{output:?}");
}
