//! [`LocalExecutor`]: the built-in executor. Runs the script on the host, unsandboxed.
//!
//! The command line is the step's shell (default `sh -e -c`) followed by the script. It runs
//! in the stage workspace ([`ExecContext::workspace`]; the input's `workdir` is for sandboxed
//! executors and is not used), in a process group of its own, with standard input closed and
//! an environment made only of:
//!
//! * `PATH` = [`DEFAULT_PATH`] and `HOME` = the invoking user's home directory (`/` when the
//!   runner has no `HOME`) — tools such as git and cargo read their configuration there;
//! * then every variable of `input.env`, which overrides the two above.
//!
//! Nothing else of the runner's environment is visible. Standard output and standard error are
//! read by one thread each and every line is sent to the log stream as it arrives (stdout
//! `info`, stderr `warn`; lines longer than the log's message limit are split), with the
//! context's secret values redacted.
//!
//! On the deadline (the shorter of the context's and `step.timeout_secs`) or on cancellation
//! the whole process group gets `SIGTERM`, then `SIGKILL` after [`LocalExecutor::kill_grace`]
//! (at once when the executor's abort flag, [`LocalExecutor::with_abort`], is set: a second
//! Ctrl-C). When the shell exits, whatever it left running in its process group is killed
//! too, so no stage outlives its step. A command killed by a signal reports `128 + signal`.
//!
//! **When the runner dies.** The command is started by a small keeper shell ([`KEEPER`]) that
//! leads the process group: it starts a watcher that blocks reading a pipe whose only write
//! end the executor holds, then `exec`s the step's command line. When the runner exits for any
//! reason, `SIGKILL` included, the kernel closes that pipe, the watcher reads end-of-file and
//! kills the whole group. A process that leaves the group (`setsid`) escapes this and the
//! group kills above; a sandbox is the answer to that, not the local executor.
//!
//! Not honoured: `sandbox.image`, cpu and memory limits ([`Executor::unhonoured`] lists them
//! for the runner to report). `parent_snapshot` is not applied either: the local executor
//! boots from the workspace it is given, which the runner has prepared with the upstream
//! stages' effects; the parent still belongs in the cache key.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::ChildStdin;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use labhit_protocol::executor::{CacheDecision, CommandStep, ExecutorInput, StepResult};
use labhit_protocol::run::{LogLevel, LogStream};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::decision::{self, OnHit};
use super::{ExecContext, ExecError, Executor};
use crate::cancellation::Cancellation;
use crate::logs::{LineBuffer, StepLog};
use crate::snapshot::SnapshotStore;

/// `PATH` of commands run by the local executor unless the granted env sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How often a running command checks the cancellation flag.
const POLL: Duration = Duration::from_millis(20);

/// How long output readers may keep going after the command's process group is gone (a
/// process that left the group may still hold the pipes).
const READER_GRACE: Duration = Duration::from_secs(1);

/// The keeper shell every command starts under (`sh -c KEEPER labhit-stage ARGV…`). Its
/// standard input is the lifeline pipe: it moves it to fd 3, starts the watcher (which kills
/// the process group, `0`, when the pipe reaches end-of-file, i.e. when the runner is gone),
/// closes its own copy and `exec`s the command with standard input from `/dev/null`.
pub const KEEPER: &str = "exec 3<&0 </dev/null
(while read -r _ <&3; do :; done; kill -s KILL 0) >/dev/null 2>&1 &
exec 3<&-
exec \"$@\"";

/// The built-in executor: runs `run:` scripts with the host's shell, unsandboxed. See the
/// module docs for the environment, streaming, deadlines and caching.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    snapshots: SnapshotStore,
    base_env: BTreeMap<String, String>,
    kill_grace: Duration,
    abort: Cancellation,
}

impl LocalExecutor {
    /// The name reported by [`Executor::name`].
    pub const NAME: &'static str = "local";

    /// An executor that commits and restores snapshots in `snapshots`.
    pub fn new(snapshots: SnapshotStore) -> Self {
        let home = std::env::var("HOME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        Self {
            snapshots,
            base_env: BTreeMap::from([
                ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
                ("HOME".to_owned(), home),
            ]),
            kill_grace: Duration::from_secs(5),
            abort: Cancellation::new(),
        }
    }

    /// Sets the abort flag: once it is set, a command being stopped (cancelled or past its
    /// deadline) gets `SIGKILL` at once instead of waiting out the grace period, and a running
    /// command is stopped as if cancelled. `labhit run` sets it on a second signal.
    pub fn with_abort(mut self, abort: Cancellation) -> Self {
        self.abort = abort;
        self
    }

    /// Sets how long a command may take to exit after `SIGTERM` before it gets `SIGKILL`
    /// (default 5 s).
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The grace period between `SIGTERM` and `SIGKILL`.
    pub fn kill_grace(&self) -> Duration {
        self.kill_grace
    }

    /// The variables every command starts with (`PATH`, `HOME`), before `input.env`.
    pub fn base_env(&self) -> &BTreeMap<String, String> {
        &self.base_env
    }

    /// The snapshot store.
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    fn run(
        &self,
        input: &ExecutorInput,
        ctx: &ExecContext<'_>,
        log: &Arc<StepLog>,
    ) -> Result<i32, ExecError> {
        let stage = || ctx.stage.as_str().to_owned();
        if ctx.cancellation.is_cancelled() {
            return Err(ExecError::Cancelled { stage: stage() });
        }
        if !ctx.workspace.is_dir() {
            return Err(ExecError::Workspace {
                stage: stage(),
                source: crate::workspace::WorkspaceError::Io {
                    action: "run in",
                    path: ctx.workspace.to_owned(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
                },
            });
        }
        let argv = input.step.argv();
        // The keeper would report a missing program as exit 127; report it as what it is.
        let path = input
            .env
            .get("PATH")
            .or_else(|| self.base_env.get("PATH"))
            .map_or("", String::as_str);
        if let Err(source) = find_program(&argv[0], path, ctx.workspace) {
            return Err(ExecError::Spawn {
                stage: stage(),
                program: argv[0].clone(),
                source,
            });
        }
        let mut command = Command::new("sh");
        command
            .args(["-c", KEEPER, "labhit-stage"])
            .args(&argv)
            .current_dir(ctx.workspace)
            .env_clear()
            .envs(&self.base_env)
            .envs(&input.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn().map_err(|source| ExecError::Spawn {
            stage: stage(),
            program: argv[0].clone(),
            source,
        })?;
        let start = Instant::now();
        let pgid = child.id();
        // Held until the group is gone: dropping it (or the runner dying) ends the group.
        let lifeline: Option<ChildStdin> = child.stdin.take();

        let open = Arc::new(AtomicBool::new(true));
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let max_line = ctx.log_limits.max_message_bytes.max(256);
        if let Some(pipe) = child.stdout.take() {
            spawn_reader(
                pipe,
                log,
                LogLevel::Info,
                LogStream::Stdout,
                max_line,
                &open,
                &done_tx,
            );
        }
        if let Some(pipe) = child.stderr.take() {
            spawn_reader(
                pipe,
                log,
                LogLevel::Warn,
                LogStream::Stderr,
                max_line,
                &open,
                &done_tx,
            );
        }
        drop(done_tx);
        let (exit_tx, exit_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = exit_tx.send(child.wait());
        });

        let deadline = ctx.deadline(input);
        let ending = loop {
            let elapsed = start.elapsed();
            if let Some(limit) = deadline
                && elapsed >= limit
            {
                break Ending::Timeout(limit);
            }
            if ctx.cancellation.is_cancelled() || self.abort.is_cancelled() {
                break Ending::Cancelled;
            }
            let wait = deadline.map_or(POLL, |limit| POLL.min(limit - elapsed));
            match exit_rx.recv_timeout(wait) {
                Ok(status) => break Ending::Exited(status),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Ending::Exited(Err(std::io::Error::other("the wait thread ended")));
                }
            }
        };
        if !matches!(ending, Ending::Exited(_)) {
            let why = match ending {
                Ending::Timeout(limit) => format!(
                    "command ran past its deadline of {}; stopping it",
                    crate::error::humantime(limit)
                ),
                _ => "run cancelled; stopping the command".to_owned(),
            };
            log.emit(LogLevel::Error, LogStream::System, &why, Vec::new());
            signal_group(pgid, Signal::SIGTERM);
            if !self.wait_grace(&exit_rx) {
                signal_group(pgid, Signal::SIGKILL);
                let _ = exit_rx.recv();
            }
        }
        // Whatever the shell left behind in its group goes with it.
        signal_group(pgid, Signal::SIGKILL);
        drop(lifeline);
        finish_readers(&done_rx, &open, log);
        match ending {
            Ending::Timeout(timeout) => Err(ExecError::Timeout {
                stage: stage(),
                timeout,
            }),
            Ending::Cancelled => Err(ExecError::Cancelled { stage: stage() }),
            Ending::Exited(status) => {
                let status = status.map_err(|source| ExecError::Spawn {
                    stage: stage(),
                    program: argv[0].clone(),
                    source,
                })?;
                Ok(exit_code(status))
            }
        }
    }
}

impl LocalExecutor {
    /// Waits for the command to exit within the grace period, cut short by the abort flag;
    /// whether it exited.
    fn wait_grace(&self, exit: &mpsc::Receiver<std::io::Result<ExitStatus>>) -> bool {
        let until = Instant::now() + self.kill_grace;
        loop {
            if self.abort.is_cancelled() {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match exit.recv_timeout(left.min(POLL)) {
                Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

enum Ending {
    Exited(std::io::Result<ExitStatus>),
    Timeout(Duration),
    Cancelled,
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Checks that `program` names an executable file: as a path (relative to `cwd`) when it has
/// a `/`, else in one of the `path` directories.
fn find_program(program: &str, path: &str, cwd: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |candidate: &Path| {
        std::fs::metadata(candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if program.contains('/') {
        executable(&cwd.join(program))
    } else {
        !program.is_empty()
            && path
                .split(':')
                .filter(|dir| !dir.is_empty())
                .any(|dir| executable(&Path::new(dir).join(program)))
    };
    if found {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such executable file (searched `PATH` for a bare name)",
        ))
    }
}

/// Sends `signal` to the process group `pgid`. A group that no longer exists is not an error.
fn signal_group(pgid: u32, signal: Signal) {
    if let Ok(pgid) = i32::try_from(pgid) {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    log: &Arc<StepLog>,
    level: LogLevel,
    stream: LogStream,
    max_line: usize,
    open: &Arc<AtomicBool>,
    done: &mpsc::Sender<()>,
) {
    let log = Arc::clone(log);
    let open = Arc::clone(open);
    let done = done.clone();
    thread::spawn(move || {
        // Chunks go through the step log's line buffer, which never cuts a secret in two.
        let mut lines = LineBuffer::new(max_line);
        let mut chunk = vec![0u8; 8192];
        loop {
            let n = match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if open.load(Ordering::SeqCst) {
                log.write_lines(&mut lines, &chunk[..n], level, stream);
            }
        }
        if open.load(Ordering::SeqCst) {
            log.finish_lines(&mut lines, level, stream);
        }
        drop(done);
    });
}

/// Waits for both output readers to reach the end of their pipe, at most [`READER_GRACE`];
/// after that their output is no longer logged.
fn finish_readers(done: &mpsc::Receiver<()>, open: &AtomicBool, log: &StepLog) {
    let until = Instant::now() + READER_GRACE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match done.recv_timeout(left) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                open.store(false, Ordering::SeqCst);
                log.emit(
                    LogLevel::Warn,
                    LogStream::System,
                    "a process that left the command's process group still holds its output; \
                     its further output is not logged",
                    Vec::new(),
                );
                return;
            }
        }
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> String {
        Self::NAME.to_owned()
    }

    fn sandboxed(&self) -> bool {
        false
    }

    fn unhonoured(&self, step: &CommandStep) -> Vec<&'static str> {
        let mut ignored = Vec::new();
        if step.image.is_some() {
            ignored.push("image");
        }
        if step.cpu_millis.is_some() {
            ignored.push("cpu_millis");
        }
        if step.memory_bytes.is_some() {
            ignored.push("memory_bytes");
        }
        ignored
    }

    fn execute(
        &self,
        input: &ExecutorInput,
        ctx: &ExecContext<'_>,
    ) -> Result<StepResult, ExecError> {
        ctx.check_input(input)?;
        let log = Arc::new(ctx.step_log(input));
        let result = self.obey(input, ctx, &log);
        log.finish();
        result
    }
}

impl LocalExecutor {
    fn obey(
        &self,
        input: &ExecutorInput,
        ctx: &ExecContext<'_>,
        log: &Arc<StepLog>,
    ) -> Result<StepResult, ExecError> {
        decision::obey(&self.snapshots, input, ctx, log, OnHit::Skip, || {
            let exit_code = self.run(input, ctx, log)?;
            Ok(match (&input.cache_lookup, exit_code) {
                (CacheDecision::MissBuildAs { tag }, 0) => StepResult {
                    exit_code: 0,
                    committed_snapshot: Some(tag.clone()),
                    artifacts: Vec::new(),
                },
                (_, 0) => StepResult::success(Vec::new()),
                (_, code) => StepResult::failure(code),
            })
        })
    }
}
