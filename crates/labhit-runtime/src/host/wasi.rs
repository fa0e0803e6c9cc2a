//! WASI 0.2 for a step, as the package documentation of `labhit-extension.wit` promises:
//!
//! * `wasi:filesystem`: exactly one preopen, the stage workspace at `/workspace`,
//!   read-only or read-write per the manifest; no preopen at all for `filesystem = "none"`;
//! * `wasi:cli/environment`: exactly the env the engine grants; no arguments; `initial-cwd`
//!   is `/workspace` when it is preopened and none otherwise;
//! * `wasi:cli/stdout` / `stderr`: captured line by line into the step's log stream (stdout at
//!   `info`, stderr at `warn`), redacted like `log` calls; `stdin` is empty; no terminal;
//! * `wasi:sockets/*`: linked so that runtimes that link socket support instantiate, but
//!   denied: no address is allowed (`access-denied`), name lookups fail, TCP and UDP are off;
//! * clocks and random: real.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use labhit_protocol::manifest::FilesystemAccess;
use labhit_protocol::run::{LogLevel, LogStream};
use labhit_wit::convert::WORKSPACE;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_io::bytes::Bytes;

use crate::logs::{LineBuffer, StepLog};
use crate::sandbox::StepHost;

pub(crate) fn add_to_linker(linker: &mut Linker<StepHost>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    // `exit(err)` carries no status code; wasmtime-wasi reports it as status 1, which reads
    // as if the guest had chosen 1. Keep "some failure status" apart from a real code.
    linker.allow_shadowing(true);
    let result = linker
        .instance("wasi:cli/exit@0.2.12")
        .and_then(|mut exit| {
            exit.func_wrap("exit", |_store, (status,): (Result<(), ()>,)| {
                Err::<(), _>(wasmtime::Error::new(GuestExit {
                    status: status.is_ok().then_some(0),
                }))
            })
        });
    linker.allow_shadowing(false);
    result
}

/// How a guest ended through `wasi:cli/exit`: `exit(ok)` is status 0, `exit(err)` a failure
/// status the guest could not name (WASI 0.2's `exit` takes a result, not a code), and
/// `exit-with-code(n)` surfaces as wasmtime-wasi's `I32Exit(n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the guest called `wasi:cli/exit`")]
pub(crate) struct GuestExit {
    pub(crate) status: Option<i32>,
}

impl WasiView for StepHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What the WASI context of one step is made of.
pub(crate) struct WasiSpec<'a> {
    pub(crate) env: &'a [(String, String)],
    pub(crate) workspace: Option<&'a std::path::Path>,
    pub(crate) access: FilesystemAccess,
    pub(crate) stdout: LineStream,
    pub(crate) stderr: LineStream,
}

/// Builds the WASI context of one step.
pub(crate) fn build(spec: WasiSpec<'_>) -> Result<(WasiCtx, ResourceTable), String> {
    let mut builder = WasiCtx::builder();
    // Filesystem calls run on the step's own thread instead of a blocking pool.
    builder.allow_blocking_current_thread(true);
    builder.stdout(spec.stdout).stderr(spec.stderr);
    builder.envs(spec.env);
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder.socket_addr_check(|_addr, _use| Box::pin(async { false }));
    let perms = match spec.access {
        FilesystemAccess::None => None,
        FilesystemAccess::Read => Some(FsPerms::ReadOnly),
        FilesystemAccess::ReadWrite => Some(FsPerms::ReadWrite),
    };
    if let Some(perms) = perms {
        let dir = spec.workspace.ok_or_else(|| {
            format!(
                "the manifest grants filesystem access `{}` but no workspace directory was given",
                spec.access
            )
        })?;
        builder
            .preopened_dir(dir, WORKSPACE, perms)
            .map_err(|err| format!("cannot open the workspace `{}`: {err}", dir.display()))?;
        builder.initial_cwd(WORKSPACE);
    }
    Ok((builder.build(), ResourceTable::new()))
}

/// Stdout or stderr of a step: bytes are split into lines (see `logs/lines.rs`: long lines
/// come in pieces, never cutting a secret in two), each line becomes a log entry. Clones
/// share the pending partial line.
#[derive(Clone)]
pub(crate) struct LineStream {
    log: Arc<StepLog>,
    stream: LogStream,
    level: LogLevel,
    pending: Arc<Mutex<LineBuffer>>,
}

impl LineStream {
    pub(crate) fn stdout(log: Arc<StepLog>, max_line: usize) -> Self {
        Self::new(log, LogStream::Stdout, LogLevel::Info, max_line)
    }

    pub(crate) fn stderr(log: Arc<StepLog>, max_line: usize) -> Self {
        Self::new(log, LogStream::Stderr, LogLevel::Warn, max_line)
    }

    fn new(log: Arc<StepLog>, stream: LogStream, level: LogLevel, max_line: usize) -> Self {
        Self {
            log,
            stream,
            level,
            pending: Arc::new(Mutex::new(LineBuffer::new(max_line))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LineBuffer> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut pending = self.lock();
        self.log
            .write_lines(&mut pending, bytes, self.level, self.stream);
    }

    /// Delivers a last line that had no newline.
    pub(crate) fn finish(&self) {
        let mut pending = self.lock();
        self.log.finish_lines(&mut pending, self.level, self.stream);
    }
}

impl IsTerminal for LineStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// How much a guest may write in one `write` call.
const WRITE_BUDGET: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl Pollable for LineStream {
    async fn ready(&mut self) {}
}

impl OutputStream for LineStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for LineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{CollectingSink, LogCursor, LogLimits};
    use labhit_protocol::ids::RunId;

    #[test]
    fn splits_lines_and_keeps_the_last_partial_one() {
        let sink = Arc::new(CollectingSink::new());
        let log = Arc::new(StepLog::new(
            RunId::from_uuid(uuid::Uuid::nil()),
            "s",
            sink.clone(),
            LogCursor::new(),
            LogLimits::default(),
        ));
        let out = LineStream::stdout(log.clone(), 8);
        out.write_bytes(b"one\r\ntw");
        out.write_bytes(b"o\nthree");
        out.write_bytes(b"0123456789");
        out.finish();
        assert_eq!(sink.messages(), ["one", "two", "three012", "3456789"]);
        let err = LineStream::stderr(log, 100);
        err.write_bytes(b"warn\n");
        let last = sink.entries().pop().expect("entry");
        assert_eq!(
            (last.level, last.stream),
            (LogLevel::Warn, LogStream::Stderr)
        );
    }
}
