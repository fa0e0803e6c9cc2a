//! What `labhit` writes to the terminal, and what it does when nobody reads it.
//!
//! * A `run:` script's output, a stage's failure reason and the pipeline's own text reach the
//!   terminal with every control character rendered visibly (no ESC, no bare `\r`), while
//!   `log.jsonl` keeps the raw text.
//! * The exit status never depends on whether output could be written: stdout and stderr are
//!   pipes whose read end is closed before `labhit` starts (every write is `EPIPE`).

mod common;

use std::path::Path;
use std::process::Output;

use common::project;

/// Runs `labhit` in `dir` with `args`; `closed` gives it stdout and stderr pipes nobody reads.
fn labhit(dir: &Path, args: &[&str], closed: bool) -> Output {
    let mut command = common::labhit(dir);
    command.args(args);
    if closed {
        let (out_reader, out_writer) = std::io::pipe().expect("pipe");
        let (err_reader, err_writer) = std::io::pipe().expect("pipe");
        drop((out_reader, err_reader));
        command.stdout(out_writer).stderr(err_writer);
        let status = command.status().expect("run labhit");
        Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    } else {
        command.output().expect("run labhit")
    }
}

const FAILING: &str = r#"engine: "1"
pipeline:
  name: failing
  stages:
    boom:
      run: echo going down; exit 3
"#;

#[test]
fn a_failed_run_exits_1_when_nobody_reads_its_output() {
    let dir = project(FAILING);
    for format in ["human", "json"] {
        let out = labhit(
            dir.path(),
            &[
                "run",
                "pipeline.yaml",
                "--no-cache",
                "--run-dir",
                "runs",
                "--format",
                format,
            ],
            true,
        );
        assert_eq!(out.status.code(), Some(1), "--format {format}: {out:?}");
    }
}

#[test]
fn validate_with_problems_exits_1_when_nobody_reads_its_output() {
    let dir = project(
        "engine: \"1\"\npipeline:\n  name: bad\n  stages:\n    a:\n      after: nowhere\n      run: true\n",
    );
    std::fs::create_dir(dir.path().join("no-extensions")).expect("mkdir");
    for format in ["human", "json"] {
        let out = labhit(
            dir.path(),
            &[
                "validate",
                "pipeline.yaml",
                "--extensions",
                "no-extensions",
                "--format",
                format,
            ],
            true,
        );
        assert_eq!(out.status.code(), Some(1), "--format {format}: {out:?}");
    }
}

#[test]
fn a_run_script_cannot_send_terminal_escapes() {
    // printf turns `\033`, `\007`, `\r` into the bytes; `\342\200\256` is U+202E.
    let dir = project(
        r#"engine: "1"
pipeline:
  name: escapes
  stages:
    forge:
      run: |
        printf '\033]52;c;cHduZWQ=\007\r\033[2K[deploy] succeeded\n'
        printf 'over\rwritten \342\200\256dlrow\n' >&2
        printf 'no newline\033[1A'
        exit 1
"#,
    );
    let out = labhit(
        dir.path(),
        &["run", "pipeline.yaml", "--no-cache", "--run-dir", "runs"],
        false,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for bad in ['\u{1b}', '\r', '\u{7}', '\u{202e}'] {
            assert!(!text.contains(bad), "{bad:?} on {name}:\n{text}");
        }
    }
    assert!(
        stderr.contains(r"[forge] \e]52;c;cHduZWQ=\x07\r\e[2K[deploy] succeeded"),
        "{stderr}"
    );
    assert!(stderr.contains(r"over\rwritten \u{202e}dlrow"), "{stderr}");
    // log.jsonl keeps the raw text.
    let run = common::run_dir(&dir.path().join("runs"));
    let log = std::fs::read_to_string(run.join("log.jsonl")).expect("log");
    let messages: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["message"].to_string())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains(r"\u001b]52;c;cHduZWQ=\u0007\r\u001b[2K[deploy] succeeded")),
        "{log}"
    );
}
