//! `labhit logs RUN`: stream a run's log (`StreamLogs`), reconnecting with its cursor.
//!
//! The stream sends every entry from the cursor on, live entries as the run produces them,
//! and completes once the run (or the `--stage`) has ended and every entry was sent. With
//! `-f` an interrupted stream (`UNAVAILABLE`: the server restarted or is shutting down, the
//! connection dropped) is resumed with `cursor = last sequence + 1`, after a backoff that
//! starts at [`FIRST_BACKOFF`], doubles up to [`MAX_BACKOFF`] and resets whenever an entry
//! arrives; after [`MAX_ATTEMPTS`] reconnections in a row without an entry the command
//! gives up, naming the cursor to resume from. An entry whose sequence is below the cursor
//! is never printed, so no entry appears twice whatever the server resends.

use std::time::Duration;

use anyhow::{Result, bail};
use labhit_proto::v1::{GetPipelineRunRequest, StreamLogsRequest};
use labhit_protocol::run::{LogEntry, StageStatus};
use tonic::Code;

use super::connect::Client;
use super::show::{self, LogPrinter};
use super::{Format, ServerArgs, client_connection_help, client_exit_codes, fail};
use crate::{ColorWhen, Exit};

/// The first wait before reconnecting.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between reconnections.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Reconnections in a row (without an entry in between) before giving up: about two
/// minutes of waiting.
pub(crate) const MAX_ATTEMPTS: u32 = 30;

/// Arguments of `labhit logs`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit logs RUN                              the log so far and, while the run lasts, live\n",
    "  labhit logs RUN -f                           follow to the end, surviving server restarts\n",
    "  labhit logs RUN --stage build --format json | jq -r .message\n",
    "  labhit logs RUN --cursor 120                 resume after entry 119\n",
    "\n",
    "The server streams the log from --cursor (default 0) and completes the stream once the\n",
    "run (with --stage: the stage) has ended and every entry was sent. Without -f an\n",
    "interrupted stream is an error that names the cursor to resume from; with -f the\n",
    "command reconnects from that cursor (backoff up to 5s, giving up after 30 attempts in a\n",
    "row) and never prints an entry twice. After the stream completed, the exit code is the\n",
    "run's (with --stage: the stage's).\n",
    "Lines are `[stage] message key=value` (`labhit:` for entries about the whole run);\n",
    "--format json prints one labhit-protocol LogEntry per line.\n\n",
    client_connection_help!(), "\n\n",
    client_exit_codes!(),
))]
pub(crate) struct Args {
    /// The run id (a UUID)
    #[arg(value_name = "RUN")]
    run_id: String,

    /// Only the entries of this stage
    #[arg(long, value_name = "STAGE")]
    stage: Option<String>,

    /// Reconnect with the cursor when the stream is interrupted
    #[arg(long, short = 'f')]
    follow: bool,

    /// The sequence of the first entry to print
    #[arg(long, value_name = "N", default_value_t = 0)]
    cursor: u64,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `labhit logs`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    super::block_on(async {
        let mut client = args.server.connect().await?;
        let follow = Follow {
            run_id: args.run_id.clone(),
            stage: args.stage.clone(),
            cursor: args.cursor,
            reconnect: args.follow,
        };
        follow_to_end(&mut client, follow, args.format, color).await
    })
}

/// One log stream to follow.
#[derive(Debug, Clone)]
pub(crate) struct Follow {
    /// The run.
    pub(crate) run_id: String,
    /// Only this stage's entries.
    pub(crate) stage: Option<String>,
    /// The sequence of the first entry wanted.
    pub(crate) cursor: u64,
    /// Whether an `UNAVAILABLE` stream is resumed.
    pub(crate) reconnect: bool,
}

/// How a stream ended.
enum Ended {
    /// The server completed it: every entry was sent.
    Complete,
    /// It ended with this status.
    Failed(tonic::Status),
}

/// Streams the log to the end, printing each entry once, then returns the exit code of the
/// run (or stage) from `GetPipelineRun`.
pub(crate) async fn follow_to_end(
    client: &mut Client,
    mut follow: Follow,
    format: Format,
    color: ColorWhen,
) -> Result<Exit> {
    let printer = LogPrinter::new(format, color);
    let mut attempts = 0u32;
    loop {
        let before = follow.cursor;
        let ended = stream_once(client, &mut follow, &printer).await?;
        if follow.cursor > before {
            attempts = 0;
        }
        let status = match ended {
            Ended::Complete => break,
            Ended::Failed(status) => status,
        };
        let retry = follow.reconnect && status.code() == Code::Unavailable;
        if !retry {
            let what = if status.code() == Code::Unavailable {
                format!(
                    "logs of run {} (resume with --cursor {}, or use -f to reconnect)",
                    follow.run_id, follow.cursor
                )
            } else {
                format!("logs of run {}", follow.run_id)
            };
            return Ok(fail::report(&what, &status, color.choice()));
        }
        attempts += 1;
        if attempts > MAX_ATTEMPTS {
            bail!(
                "the server stayed unavailable for {MAX_ATTEMPTS} reconnection attempts ({}); resume with `labhit logs {} -f --cursor {}`",
                fail::describe("last error", &status),
                follow.run_id,
                follow.cursor
            );
        }
        let wait = backoff(attempts);
        super::note(
            color,
            &format!(
                "{}; reconnecting from entry {} in {}ms",
                fail::describe("log stream interrupted", &status),
                follow.cursor,
                wait.as_millis()
            ),
        );
        tokio::time::sleep(wait).await;
    }
    verdict(client, &follow, color).await
}

/// The wait before reconnection number `attempt` (1-based).
pub(crate) fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// One `StreamLogs` call: prints the entries at and after the cursor, advancing it.
async fn stream_once(
    client: &mut Client,
    follow: &mut Follow,
    printer: &LogPrinter,
) -> Result<Ended> {
    let request = StreamLogsRequest {
        run_id: follow.run_id.clone(),
        stage_id: follow.stage.clone(),
        cursor: follow.cursor,
    };
    let mut stream = match client.stream_logs(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ok(Ended::Failed(status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                let Some(wire) = message.entry else { continue };
                let entry = LogEntry::try_from(wire).map_err(|e| {
                    anyhow::anyhow!(
                        "the server sent an invalid log entry after cursor {}: {e}",
                        follow.cursor
                    )
                })?;
                // Only ever forward: an entry below the cursor was printed already.
                if entry.sequence < follow.cursor {
                    continue;
                }
                follow.cursor = entry.sequence.saturating_add(1);
                printer.entry(&entry)?;
            }
            Ok(None) => return Ok(Ended::Complete),
            Err(status) => return Ok(Ended::Failed(status)),
        }
    }
}

/// The exit code after a complete stream: the run's, or with a stage filter the stage's.
async fn verdict(client: &mut Client, follow: &Follow, color: ColorWhen) -> Result<Exit> {
    let request = GetPipelineRunRequest {
        run_id: follow.run_id.clone(),
    };
    let run = match client.get_pipeline_run(request).await {
        Ok(response) => show::run_from_wire(response.into_inner().run)?,
        Err(status) => return Ok(fail::report("status", &status, color.choice())),
    };
    let Some(stage_id) = &follow.stage else {
        super::note(color, &format!("run {}: {}", run.id, run.status.as_str()));
        return Ok(show::run_exit(&run));
    };
    let stage = run.stages.iter().find(|s| s.stage.as_str() == stage_id);
    let failed = stage.is_some_and(|s| {
        matches!(
            s.status,
            StageStatus::Failed | StageStatus::Cancelled | StageStatus::Denied
        )
    });
    Ok(if failed { Exit::Problems } else { Exit::Clean })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(3), FIRST_BACKOFF * 4);
        assert_eq!(backoff(MAX_ATTEMPTS), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        let total: Duration = (1..=MAX_ATTEMPTS).map(backoff).sum();
        assert!(total < Duration::from_secs(180), "{total:?}");
    }
}
