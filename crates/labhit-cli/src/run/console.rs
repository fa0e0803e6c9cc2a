//! What `labhit run` shows while it runs: live log lines on stderr with a `[stage]` prefix,
//! a progress line under them (only when stderr is a terminal), the approval prompt, and the
//! copy of every log entry in the run directory's `log.jsonl`.
//!
//! One lock serialises everything written to the terminal, so a log line never tears the
//! progress line or a prompt. Every text from a stage, a guest or a file goes through
//! [`printable`] on its way to the terminal; `log.jsonl` gets the raw entry, one line written
//! (not buffered) per entry, so a labhit that is killed leaves every entry logged so far.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anstyle::{AnsiColor, Style};
use labhit_protocol::pipeline::{PipelineFile, StageId};
use labhit_protocol::run::{LogEntry, LogLevel, LogStream, StageStatus};
use labhit_runtime::Cancellation;
use labhit_runtime::approval::{Approver, Verdict};
use labhit_runtime::scheduler::StatusHook;
use labhit_runtime::{LogSink, Redactor};

use super::progress::Progress;
use crate::ColorWhen;
use crate::printable::printable;

/// The terminal side of a run. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    choice: anstream::ColorChoice,
    redactor: Redactor,
    progress: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    progress: Progress,
    progress_shown: bool,
    /// The run is over: no more progress line.
    finished: bool,
    log_file: Option<File>,
}

impl Console {
    /// A console writing to stderr; `progress` draws the progress line.
    pub(crate) fn new(color: ColorWhen, redactor: Redactor, progress: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                choice: color.choice(),
                redactor,
                progress,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies every later log entry to `path` as JSON lines.
    pub(crate) fn attach_log_file(&self, path: &Path) -> anyhow::Result<()> {
        let file = File::create(path)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", path.display()))?;
        self.lock().log_file = Some(file);
        Ok(())
    }

    /// Writes `text` (one or more lines) to stderr above the progress line.
    fn write(&self, state: &mut State, text: &str) {
        let mut stderr = crate::stdio::stderr(self.inner.choice);
        if state.progress_shown {
            // Nothing sensible is left to do when stderr itself is gone.
            clear_line();
            state.progress_shown = false;
        }
        let _ = writeln!(stderr, "{text}");
        if self.inner.progress && !state.finished {
            let line = state.progress.line();
            let _ = write!(stderr, "{line}");
            state.progress_shown = true;
        }
        let _ = stderr.flush();
    }

    /// A `labhit: …` line.
    pub(crate) fn note(&self, message: &str) {
        let dim = Style::new().dimmed();
        let text = format!(
            "{dim}labhit:{dim:#} {}",
            printable(&self.inner.redactor.redact(message))
        );
        let mut state = self.lock();
        self.write(&mut state, &text);
    }

    /// A `labhit: warning: …` line.
    pub(crate) fn warn(&self, message: &str) {
        let style = Style::new().bold().fg_color(Some(AnsiColor::Yellow.into()));
        let text = format!(
            "labhit: {style}warning{style:#}: {}",
            printable(&self.inner.redactor.redact(message))
        );
        let mut state = self.lock();
        self.write(&mut state, &text);
    }

    /// Every stage's last reported status, by id.
    pub(crate) fn statuses(&self) -> HashMap<String, StageStatus> {
        self.lock().progress.statuses()
    }

    /// Clears the progress line and flushes the log file.
    pub(crate) fn finish(&self) {
        let mut state = self.lock();
        state.finished = true;
        if state.progress_shown {
            let mut stderr = crate::stdio::stderr(self.inner.choice);
            clear_line();
            let _ = stderr.flush();
            state.progress_shown = false;
        }
        if let Some(file) = state.log_file.as_mut() {
            let _ = file.sync_data();
        }
    }

    /// The log sink of the run.
    pub(crate) fn sink(&self) -> Arc<dyn LogSink> {
        let console = self.clone();
        Arc::new(move |entry: LogEntry| console.entry(entry))
    }

    /// One entry, already redacted by the run's log (`RunLog::with_redactor`): to the
    /// terminal and to `log.jsonl`.
    fn entry(&self, entry: LogEntry) {
        let line = log_line(&entry);
        let mut state = self.lock();
        if let Some(file) = state.log_file.as_mut()
            && let Ok(mut json) = serde_json::to_string(&entry)
        {
            // One write per entry, straight to the file: nothing waits in a buffer.
            json.push('\n');
            let _ = file.write_all(json.as_bytes());
        }
        self.write(&mut state, &line);
    }

    /// The scheduler's status hook: keeps the progress line current.
    pub(crate) fn status_hook(&self, pipeline: &PipelineFile) -> StatusHook {
        {
            let mut state = self.lock();
            state.progress = Progress::new(
                pipeline
                    .pipeline
                    .stages
                    .iter()
                    .map(|(id, _)| id.to_string())
                    .collect(),
            );
        }
        let console = self.clone();
        Arc::new(move |id: &StageId, status: StageStatus| {
            let mut state = console.lock();
            state.progress.update(id.as_str(), status);
            if console.inner.progress && state.progress_shown {
                let mut stderr = crate::stdio::stderr(console.inner.choice);
                clear_line();
                let _ = write!(stderr, "{}", state.progress.line());
                let _ = stderr.flush();
            }
        })
    }

    /// The approval prompt (for a terminal on stdin): the run's approver.
    pub(crate) fn prompt(&self) -> Arc<dyn Approver> {
        Arc::new(Prompt {
            console: self.clone(),
            one_at_a_time: Mutex::new(()),
        })
    }
}

/// Clears the terminal line the progress line is on. Written past `anstream`, which strips
/// every escape sequence when colors are off; only ever called when stderr is a terminal.
fn clear_line() {
    let _ = std::io::stderr().write_all(b"\r\x1b[2K");
}

/// Asks on the terminal, one question at a time. A person's answer cannot be interrupted:
/// a cancelled run waits for it (the second signal stops labhit).
struct Prompt {
    console: Console,
    /// Serialises prompts: one question on the terminal at a time.
    one_at_a_time: Mutex<()>,
}

impl Approver for Prompt {
    fn wait(&self, stage: &str, why: &str, _cancellation: &Cancellation) -> Verdict {
        let _one = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match self.ask(stage, why) {
            Ok(true) => Verdict::Approved {
                how: "at the prompt".to_owned(),
            },
            Ok(false) => Verdict::Denied {
                reason: format!("approval refused at the prompt ({why})"),
            },
            Err(e) => Verdict::Denied {
                reason: format!("no approval: the prompt failed: {e} ({why})"),
            },
        }
    }
}

impl Prompt {
    /// Asks whether `stage` may run; `Err` when standard input cannot answer.
    fn ask(&self, stage: &str, why: &str) -> Result<bool, String> {
        let mut state = self.console.lock();
        let style = Style::new().bold().fg_color(Some(AnsiColor::Yellow.into()));
        let mut stderr = crate::stdio::stderr(self.console.inner.choice);
        if state.progress_shown {
            clear_line();
            state.progress_shown = false;
        }
        let _ = write!(
            stderr,
            "{style}approve stage `{}`?{style:#} ({}) [y/N] ",
            printable(stage),
            printable(why)
        );
        let _ = stderr.flush();
        drop(stderr);
        // Not held while waiting for a person: a signal must still be able to log, read the
        // statuses and flush the log file.
        drop(state);
        let mut answer = String::new();
        let read = std::io::stdin().lock().read_line(&mut answer);
        match read {
            Ok(0) => Err("standard input is closed".to_owned()),
            Ok(_) => Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The terminal line of a log entry: `[stage] message key=value` (`labhit:` for run-wide
/// entries), coloured by level and stream, every text through [`printable`]. `labhit run`
/// and the client's `labhit logs` print entries this way.
pub(crate) fn log_line(entry: &LogEntry) -> String {
    let mut line = match &entry.stage {
        Some(stage) => {
            let style = Style::new().bold().fg_color(Some(AnsiColor::Cyan.into()));
            format!("{style}[{}]{style:#} ", printable(stage.as_str()))
        }
        None => {
            let dim = Style::new().dimmed();
            format!("{dim}labhit:{dim:#} ")
        }
    };
    let style = match (entry.level, entry.stream) {
        (LogLevel::Error, _) => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
        (LogLevel::Warn, LogStream::System) => {
            Style::new().fg_color(Some(AnsiColor::Yellow.into()))
        }
        (_, LogStream::System) => Style::new().dimmed(),
        _ => Style::new(),
    };
    line.push_str(&format!("{style}{}{style:#}", printable(&entry.message)));
    for (key, value) in &entry.fields {
        line.push_str(&format!(" {}={}", printable(key), printable(value)));
    }
    line
}
