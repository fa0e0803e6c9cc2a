//! The run directory's records and the run summary.
//!
//! A run directory (`<project>/.labhit/runs/<run-id>/` by default, see
//! [`crate::workspace::default_runs_base`]) holds, besides the `workspace/`:
//!
//! ```text
//! summary.json                      the PipelineRun (labhit-protocol run model), pretty JSON
//! log.jsonl                         every LogEntry of the run, one JSON object per line
//! artifacts/<stage>/<path>          a copy of each artifact a stage reported
//! ```
//!
//! Artifacts are copied out of the workspace when their stage ends ([`collect_artifacts`]),
//! so later stages that change the workspace cannot alter them, and they survive removal of
//! the workspace. Outputs are recorded in `summary.json` under their stage.
//!
//! Nothing of a run reaches the user unredacted: [`redact_run`] replaces every secret of the
//! run (see [`Redactor`]) in stage reasons, output names and values and artifact paths, and
//! artifacts are copied under their redacted path, so a secret in a path never names a file.
//!
//! [`render_table`] draws the summary for a terminal (aligned columns, colored status),
//! [`render_plain`] writes one line per stage for logs and pipes.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labhit_protocol::executor::{ArtifactPath, ArtifactRef};
use labhit_protocol::run::{PipelineRun, RunStatus, StageRun, StageStatus};

use crate::logs::{REDACTED, Redactor};

/// File name of the summary in the run directory.
pub const SUMMARY_FILE: &str = "summary.json";
/// File name of the log in the run directory.
pub const LOG_FILE: &str = "log.jsonl";
/// Directory of collected artifacts in the run directory.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// Writes `run` as `summary.json` into `run_dir` (through a temporary file); returns its path.
pub fn write_summary(run_dir: &Path, run: &PipelineRun) -> io::Result<PathBuf> {
    std::fs::create_dir_all(run_dir)?;
    let path = run_dir.join(SUMMARY_FILE);
    let temp = run_dir.join(format!(".{SUMMARY_FILE}.tmp"));
    let mut text = serde_json::to_vec_pretty(run).map_err(io::Error::other)?;
    text.push(b'\n');
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, &path)?;
    Ok(path)
}

/// Reads a `summary.json`.
pub fn read_summary(path: &Path) -> io::Result<PipelineRun> {
    let text = std::fs::read(path)?;
    serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Copies the artifacts of `stage` from `workspace` to `<run_dir>/artifacts/<stage>/<path>`,
/// where `<path>` is the artifact's path redacted by `redactor`. Returns a message per
/// artifact that could not be copied (the copy of the others goes on).
pub fn collect_artifacts(
    workspace: &Path,
    run_dir: &Path,
    stage: &str,
    artifacts: &[ArtifactRef],
    redactor: &Redactor,
) -> Vec<String> {
    let mut problems = Vec::new();
    for artifact in artifacts {
        let from = workspace.join(artifact.path.as_str());
        let shown = redact_path(&artifact.path, redactor);
        let to = run_dir.join(ARTIFACTS_DIR).join(stage).join(shown.as_str());
        let result = (|| {
            // Only regular files inside the workspace; never follow a link out of it.
            let meta = std::fs::symlink_metadata(&from)?;
            if !meta.is_file() {
                return Err(io::Error::other("it is not a regular file"));
            }
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&from, &to).map(|_| ())
        })();
        if let Err(e) = result {
            problems.push(redactor.redact(&format!("cannot collect artifact `{shown}`: {e}")));
        }
    }
    problems
}

/// `path` with every secret redacted; still a valid artifact path (`***` when the redacted
/// text is not one).
fn redact_path(path: &ArtifactPath, redactor: &Redactor) -> ArtifactPath {
    let redacted = redactor.redact(path.as_str());
    if redacted == path.as_str() {
        return path.clone();
    }
    ArtifactPath::new(redacted)
        .or_else(|_| ArtifactPath::new(REDACTED))
        .unwrap_or_else(|_| path.clone())
}

/// Redacts every secret `redactor` knows from what a run reports: the run's pipeline name,
/// and of every stage its reason, output names and values, artifact paths and media types.
pub fn redact_run(run: &mut PipelineRun, redactor: &Redactor) {
    if redactor.is_empty() {
        return;
    }
    run.pipeline = redactor.redact(&run.pipeline);
    for stage in &mut run.stages {
        redact_stage(stage, redactor);
    }
}

/// Redacts the texts of one stage record (reason, outputs, artifact paths and types).
pub fn redact_stage(stage: &mut StageRun, redactor: &Redactor) {
    if redactor.is_empty() {
        return;
    }
    if let Some(reason) = stage.reason.take() {
        stage.reason = Some(redactor.redact_owned(reason));
    }
    stage.outputs = std::mem::take(&mut stage.outputs)
        .into_iter()
        .map(|(name, value)| (redactor.redact_owned(name), redactor.redact_owned(value)))
        .collect();
    for artifact in &mut stage.artifacts {
        artifact.path = redact_path(&artifact.path, redactor);
        artifact.mime = redactor.redact(&artifact.mime);
    }
}

/// The process exit code of a finished run: 0 when it succeeded, 1 otherwise.
pub fn exit_code(run: &PipelineRun) -> u8 {
    u8::from(run.status != RunStatus::Succeeded)
}

/// How long a stage took, when it started and ended.
pub fn stage_duration(stage: &StageRun) -> Option<Duration> {
    let (start, end) = (stage.started_at?, stage.finished_at?);
    (end - start).to_std().ok()
}

fn duration_text(stage: &StageRun) -> String {
    stage_duration(stage).map_or_else(|| "-".to_owned(), crate::scheduler::human)
}

/// What the last column says: the reason, else the outputs.
fn detail(stage: &StageRun) -> String {
    if let Some(reason) = &stage.reason {
        return reason.clone();
    }
    let mut parts: Vec<String> = stage
        .outputs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !stage.artifacts.is_empty() {
        parts.push(format!("{} artifact(s)", stage.artifacts.len()));
    }
    parts.join(" ")
}

/// Counts of stages by status, in declaration order of [`StageStatus`], non-zero only:
/// `3 succeeded, 1 cached`.
pub fn counts(run: &PipelineRun) -> String {
    StageStatus::ALL
        .iter()
        .filter_map(|status| {
            let n = run.stages.iter().filter(|s| s.status == *status).count();
            (n > 0).then(|| format!("{n} {status}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_duration(run: &PipelineRun) -> String {
    match (run.started_at.or(Some(run.created_at)), run.finished_at) {
        (Some(start), Some(end)) => (end - start)
            .to_std()
            .map_or_else(|_| "-".to_owned(), crate::scheduler::human),
        _ => "-".to_owned(),
    }
}

/// One line per stage, then a run line: for logs, pipes and CI.
///
/// ```text
/// prepare      cached     exit 0  12ms  files=3
/// deploy       denied     -       -     approval required but not given (...)
/// run 0b7c…: failed (2 succeeded, 1 cached, 1 denied) in 1.2s
/// ```
pub fn render_plain(run: &PipelineRun) -> String {
    render(run, false)
}

/// The same table as [`render_plain`] with a header row and colored statuses (ANSI), for a
/// terminal.
pub fn render_table(run: &PipelineRun) -> String {
    render(run, true)
}

fn render(run: &PipelineRun, tty: bool) -> String {
    let rows: Vec<[String; 5]> = run
        .stages
        .iter()
        .map(|s| {
            [
                s.stage.to_string(),
                s.status.to_string(),
                s.exit_code
                    .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                duration_text(s),
                detail(s),
            ]
        })
        .collect();
    let header = ["STAGE", "STATUS", "EXIT", "TIME", "DETAIL"].map(str::to_owned);
    let mut widths = [0usize; 4];
    for row in rows.iter().chain(tty.then_some(&header)) {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String; 5], status: Option<StageStatus>| {
        let (on, off) = match status.filter(|_| tty) {
            Some(status) => (color(status), "\x1b[0m"),
            None => ("", ""),
        };
        let _ = writeln!(
            out,
            "{:w0$}  {on}{:w1$}{off}  {:>w2$}  {:>w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    };
    if tty {
        let mut text = String::new();
        line(&mut text, &header, None);
        let _ = write!(out, "\x1b[1m{}\x1b[0m", text.trim_end());
        out.push('\n');
    }
    for (row, stage) in rows.iter().zip(&run.stages) {
        let mut text = String::new();
        line(&mut text, row, Some(stage.status));
        out.push_str(text.trim_end());
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "run {}: {} ({}) in {}",
        run.id,
        run.status,
        counts(run),
        run_duration(run)
    );
    out
}

fn color(status: StageStatus) -> &'static str {
    match status {
        StageStatus::Succeeded => "\x1b[32m",
        StageStatus::Cached => "\x1b[36m",
        StageStatus::Failed | StageStatus::Denied => "\x1b[1;31m",
        StageStatus::Skipped | StageStatus::Cancelled => "\x1b[33m",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> PipelineRun {
        let mut run = PipelineRun::example();
        run.status = RunStatus::Failed;
        let mut denied = StageRun::queued("deploy".parse().unwrap());
        denied.status = StageStatus::Denied;
        denied.reason = Some("approval required".to_owned());
        run.stages.push(denied);
        run.finished_at = run.started_at;
        run
    }

    #[test]
    fn plain_lines() {
        let text = render_plain(&run());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("build   succeeded  0  93.0s"),
            "{text}"
        );
        assert!(lines[0].contains("version=1.4.2"), "{text}");
        assert!(lines[1].starts_with("deploy  denied"), "{text}");
        assert!(lines[1].ends_with("approval required"), "{text}");
        assert!(
            lines[2].contains(": failed (1 succeeded, 1 denied)"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn table_has_a_header_and_colors() {
        let text = render_table(&run());
        assert!(text.contains("STAGE"), "{text}");
        assert!(text.contains("\x1b[1;31mdenied"), "{text}");
    }

    #[test]
    fn summary_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let run = run();
        let path = write_summary(dir.path(), &run).unwrap();
        assert_eq!(read_summary(&path).unwrap(), run);
        assert_eq!(exit_code(&run), 1);
    }

    #[test]
    fn artifacts_are_copied() {
        let ws = tempfile::tempdir().unwrap();
        let run_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("dist")).unwrap();
        std::fs::write(ws.path().join("dist/a.txt"), "a").unwrap();
        let ok = ArtifactRef::new("dist/a.txt", "text/plain", 1).unwrap();
        let missing = ArtifactRef::new("dist/b.txt", "text/plain", 1).unwrap();
        let problems = collect_artifacts(
            ws.path(),
            run_dir.path(),
            "build",
            &[ok, missing],
            &Redactor::new(),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        let copied = run_dir.path().join("artifacts/build/dist/a.txt");
        assert_eq!(std::fs::read_to_string(copied).unwrap(), "a");
    }

    #[test]
    fn secrets_are_redacted_from_the_run_and_from_artifact_file_names() {
        let mut redactor = Redactor::new();
        redactor.add("hunter22");
        let ws = tempfile::tempdir().unwrap();
        let run_dir = tempfile::tempdir().unwrap();
        std::fs::write(ws.path().join("hunter22.txt"), "x").unwrap();
        let artifact = ArtifactRef::new("hunter22.txt", "text/hunter22", 1).unwrap();
        let problems = collect_artifacts(
            ws.path(),
            run_dir.path(),
            "build",
            std::slice::from_ref(&artifact),
            &redactor,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(run_dir.path().join("artifacts/build/***.txt").is_file());

        let mut run = run();
        run.stages[0].outputs = [("hunter22".to_owned(), "v=hunter22".to_owned())].into();
        run.stages[0].artifacts = vec![artifact];
        run.stages[1].reason = Some("failed with aHVudGVyMjI=".to_owned());
        redact_run(&mut run, &redactor);
        let text = serde_json::to_string(&run).unwrap();
        assert!(
            !text.contains("hunter22") && !text.contains("aHVud"),
            "{text}"
        );
        assert_eq!(run.stages[0].outputs["***"], "v=***");
        assert_eq!(run.stages[0].artifacts[0].path.as_str(), "***.txt");
    }
}
