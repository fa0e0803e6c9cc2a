//! The client commands of `labhit`: talk to a `labhit serve` over gRPC.
//!
//! | command | RPC |
//! |---|---|
//! | `labhit trigger REPO REF` | `TriggerPipeline` (then `StreamLogs` with `--follow`) |
//! | `labhit status RUN` | `GetPipelineRun` |
//! | `labhit runs` | `ListPipelineRuns` |
//! | `labhit logs RUN` | `StreamLogs` (reconnecting with its cursor with `-f`) |
//! | `labhit cancel RUN` | `CancelPipelineRun` |
//! | `labhit approve RUN STAGE` | `ApprovePipelineStage` |
//!
//! [`connect`] holds what every command shares (`--server`, the bearer token, the
//! connection), [`show`] the printing of runs and log entries (terminal-sanitised, or JSON),
//! and [`fail`] the mapping of a gRPC status to an exit code.

pub(crate) mod approve;
pub(crate) mod cancel;
mod connect;
mod fail;
pub(crate) mod logs;
pub(crate) mod runs;
mod show;
pub(crate) mod status;
pub(crate) mod trigger;

pub(crate) use connect::ServerArgs;

/// The exit-code table of every client command's `--help`.
macro_rules! client_exit_codes {
    () => {
        "Exit codes (like `labhit run`):
  0  the request succeeded; a run that was followed or shown succeeded (or has not finished)
  1  a followed or shown run failed or was cancelled, or the server refused the request
     (unknown repository, ref, run or stage; invalid pipeline file; bad argument)
  2  bad usage
  3  fatal: the server is unreachable, the token is missing or wrong, or the server failed"
    };
}
pub(crate) use client_exit_codes;

/// The connection options every client command's `--help` explains.
macro_rules! client_connection_help {
    () => {
        "The server is --server (default http://127.0.0.1:7777, the default of `labhit serve`).
The bearer token comes from --token-file FILE (the token alone on one line) or the
environment variable LABHIT_TOKEN, and is sent as `authorization: Bearer TOKEN`."
    };
}
pub(crate) use client_connection_help;

/// `--format` of the client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A table or log lines for people (colored on a terminal).
    Human,
    /// JSON: the `labhit-protocol` types (`PipelineRun`, `LogEntry` one per line).
    Json,
}

/// Runs a client command's future on a single-threaded runtime.
pub(crate) fn block_on<F>(future: F) -> anyhow::Result<crate::Exit>
where
    F: std::future::Future<Output = anyhow::Result<crate::Exit>>,
{
    use anyhow::Context as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(future)
}

/// A progress note on stderr (`labhit: …`, dimmed on a terminal), terminal-sanitised.
pub(crate) fn note(color: crate::ColorWhen, text: &str) {
    use std::io::Write as _;
    let dim = anstyle::Style::new().dimmed();
    let _ = writeln!(
        crate::stdio::stderr(color.choice()),
        "{dim}labhit: {}{dim:#}",
        crate::printable::printable(text)
    );
}
