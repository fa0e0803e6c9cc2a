//! Printing what the server sent: runs (the `labhit run` summary table, or JSON) and log
//! entries (`[stage] message` lines, or JSON Lines).
//!
//! Wire messages are converted to the `labhit-protocol` types first (`labhit_proto::convert`),
//! so `--format json` prints exactly the documents `labhit run` writes (`summary.json`,
//! `log.jsonl`). Text that comes from stages goes through [`printable`] on the way to a
//! terminal, and JSON through [`crate::printable::json`]/[`crate::printable::json_line`].

use std::io::{IsTerminal as _, Write as _};

use anyhow::{Context as _, Result};
use labhit_proto::v1;
use labhit_protocol::run::{LogEntry, PipelineRun};
use labhit_runtime::summary;

use super::Format;
use crate::printable::printable;
use crate::{ColorWhen, Exit};

/// Converts a wire run, naming the field the server got wrong.
pub(crate) fn run_from_wire(run: Option<v1::PipelineRun>) -> Result<PipelineRun> {
    let run = run.context("the server's response has no run")?;
    PipelineRun::try_from(run).context("the server sent an invalid run")
}

/// The exit code a run stands for: 1 when it failed or was cancelled, 0 otherwise (also
/// while it has not finished).
pub(crate) fn run_exit(run: &PipelineRun) -> Exit {
    if run.status.is_terminal() && summary::exit_code(run) != 0 {
        Exit::Problems
    } else {
        Exit::Clean
    }
}

/// Prints one run: the summary table on a terminal, plain lines otherwise, or JSON.
pub(crate) fn print_run(run: &PipelineRun, format: Format, color: ColorWhen) -> Result<()> {
    let mut stdout = crate::stdio::raw_stdout();
    match format {
        Format::Json => {
            let _ = writeln!(stdout, "{}", crate::printable::json(run)?);
        }
        Format::Human => {
            let tty = std::io::stdout().is_terminal() && color != ColorWhen::Never;
            let shown = printable_run(run);
            let text = if tty || color == ColorWhen::Always {
                summary::render_table(&shown)
            } else {
                summary::render_plain(&shown)
            };
            let _ = write!(stdout, "{text}");
        }
    }
    let _ = stdout.flush();
    Ok(())
}

/// Prints a list of runs: one line each (`ID STATUS REPOSITORY REF COMMIT CREATED`) or a
/// JSON array.
pub(crate) fn print_runs(runs: &[PipelineRun], format: Format) -> Result<()> {
    let mut stdout = crate::stdio::raw_stdout();
    match format {
        Format::Json => {
            let _ = writeln!(stdout, "{}", crate::printable::json(runs)?);
        }
        Format::Human => {
            for run in runs {
                let commit = run
                    .commit
                    .as_deref()
                    .map_or("-", |c| c.get(..12).unwrap_or(c));
                let line = format!(
                    "{}  {:<9}  {}  {}  {}  {}",
                    run.id,
                    run.status.as_str(),
                    run.repository,
                    run.git_ref,
                    commit,
                    run.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                );
                let _ = writeln!(stdout, "{}", printable(&line));
            }
        }
    }
    let _ = stdout.flush();
    Ok(())
}

/// Prints log entries as they arrive.
pub(crate) struct LogPrinter {
    format: Format,
    color: anstream::ColorChoice,
}

impl LogPrinter {
    /// A printer for `format`; human lines are colored per `color` (on stdout).
    pub(crate) fn new(format: Format, color: ColorWhen) -> Self {
        Self {
            format,
            color: color.choice(),
        }
    }

    /// Prints one entry: `[stage] message key=value` (`labhit:` for run-wide entries) or
    /// one JSON line.
    pub(crate) fn entry(&self, entry: &LogEntry) -> Result<()> {
        let mut stdout = crate::stdio::stdout(self.color);
        match self.format {
            Format::Json => {
                let _ = writeln!(stdout, "{}", crate::printable::json_line(entry)?);
            }
            Format::Human => {
                let _ = writeln!(stdout, "{}", crate::run::log_line(entry));
            }
        }
        let _ = stdout.flush();
        Ok(())
    }
}

/// A copy of `run` fit for a terminal: every text that comes from the server or a stage
/// through [`printable`].
fn printable_run(run: &PipelineRun) -> PipelineRun {
    let mut shown = run.clone();
    shown.pipeline = printable(&shown.pipeline).into_owned();
    shown.repository = printable(&shown.repository).into_owned();
    shown.git_ref = printable(&shown.git_ref).into_owned();
    shown.commit = shown.commit.as_deref().map(|c| printable(c).into_owned());
    for stage in &mut shown.stages {
        if let Some(reason) = &mut stage.reason {
            *reason = printable(reason).into_owned();
        }
        stage.outputs = stage
            .outputs
            .iter()
            .map(|(k, v)| (printable(k).into_owned(), printable(v).into_owned()))
            .collect();
    }
    shown
}
