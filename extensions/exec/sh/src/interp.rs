//! The interpreter: runs a parsed [`Script`] against the workspace — lists, `&&`/`||`, `!`,
//! pipelines, `if`, `for`, redirections, errexit — dispatching simple commands to the
//! builtins ([`crate::builtins`]).

use std::fs::{self, OpenOptions};
use std::path::PathBuf;

use labhit_sdk::Context;

use crate::ast::{
    AndOr, Command, Connector, ForCommand, IfCommand, List, Part, Pipeline, Redirect, RedirectKind,
    Script, SimpleCommand,
};
use crate::builtins;
use crate::expand::{ExpandError, Expander};
use crate::fs::{PathError, WsPath, describe, resolve};
use crate::io::{Dest, Fds, Io, MAX_BUFFER_BYTES, Stop};
use crate::vars::Vars;

/// Shell options set with `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `-e`: stop at the first failing command (on by default, like `sh -e -c`).
    pub errexit: bool,
    /// `-u`: expanding an unset variable is an error.
    pub nounset: bool,
    /// `-x`: print each command to stderr before running it.
    pub xtrace: bool,
    /// `-o pipefail`: a pipeline fails when any of its commands fails.
    pub pipefail: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            errexit: true,
            nounset: false,
            xtrace: false,
            pipefail: false,
        }
    }
}

/// The state of a running script.
pub struct Shell<'c> {
    ctx: &'c Context,
    /// The real workspace directory.
    pub root: PathBuf,
    /// The current directory.
    pub cwd: WsPath,
    /// The variables.
    pub vars: Vars,
    /// `$?`.
    pub status: i32,
    /// `set` options.
    pub options: Options,
    /// Output routing.
    pub io: Io<'c>,
    /// How many simple commands ran.
    pub commands: u64,
    /// The line of the command running now, for messages.
    pub line: u32,
    /// Above 0 while errexit is ignored (conditions, `!`, all but the last of `&&`/`||`).
    suppress: u32,
    heredocs: Vec<Vec<Part>>,
}

/// Why a whole script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It ran to its end, or `exit`, or errexit: the status.
    Status(i32),
    /// It was cancelled.
    Cancelled(String),
}

impl<'c> Shell<'c> {
    /// A shell in the workspace of `ctx`, at its root, with `env` as exported variables.
    pub fn new(ctx: &'c Context, env: &[(String, String)]) -> Self {
        let mut vars = Vars::from_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let cwd = WsPath::root();
        vars.export("PWD", Some(cwd.guest()));
        Self {
            ctx,
            root: ctx.workspace().to_path_buf(),
            cwd,
            vars,
            status: 0,
            options: Options::default(),
            io: Io::new(ctx),
            commands: 0,
            line: 1,
            suppress: 0,
            heredocs: Vec::new(),
        }
    }

    /// Runs `script` to its end; stdout and stderr lines go to the log.
    pub fn run(&mut self, script: Script) -> Ending {
        self.heredocs = script.heredocs;
        let result = self.list(&script.body, Fds::script());
        let ending = match result {
            Ok(status) => Ending::Status(status),
            Err(Stop::Exit(status)) => Ending::Status(status),
            Err(Stop::Fatal(message)) => {
                let line = self.line;
                self.shell_error(Fds::script(), line, &message);
                Ending::Status(2)
            }
            Err(Stop::Cancelled(message)) => Ending::Cancelled(message),
        };
        self.io.flush();
        ending
    }

    /// Writes `exec/sh: line L: message` to the stderr of `fds`.
    pub fn shell_error(&mut self, fds: Fds, line: u32, message: &str) {
        let text = format!("exec/sh: line {line}: {message}\n");
        // A failing stderr cannot be reported anywhere else.
        let _ = self.io.write(fds.err, text.as_bytes());
    }

    /// Writes `bytes` to the stdout of `fds`.
    ///
    /// # Errors
    ///
    /// As [`Io::write`].
    pub fn out(&mut self, fds: Fds, bytes: &[u8]) -> Result<(), Stop> {
        self.io.write(fds.out, bytes)
    }

    /// Writes `message` and a newline to the stderr of `fds`.
    ///
    /// # Errors
    ///
    /// As [`Io::write`].
    pub fn err(&mut self, fds: Fds, message: &str) -> Result<(), Stop> {
        self.io.write(fds.err, format!("{message}\n").as_bytes())
    }

    /// Resolves a script path against the current directory.
    ///
    /// # Errors
    ///
    /// When it is empty or outside the workspace.
    pub fn resolve(&self, path: &str) -> Result<WsPath, PathError> {
        resolve(&self.cwd, path)
    }

    /// The real path of a workspace path.
    pub fn real(&self, path: &WsPath) -> PathBuf {
        path.real(&self.root)
    }

    /// Reads the workspace file `path` (as the script wrote it) into memory.
    ///
    /// # Errors
    ///
    /// The message to print after the command name: `path: No such file or directory`.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        let resolved = self.resolve(path).map_err(|err| err.to_string())?;
        let real = self.real(&resolved);
        let meta = fs::metadata(&real).map_err(|err| format!("{path}: {}", describe(&err)))?;
        if meta.is_dir() {
            return Err(format!("{path}: Is a directory"));
        }
        if meta.len() > MAX_BUFFER_BYTES as u64 {
            return Err(format!(
                "{path}: larger than the {} MiB this shell reads into memory",
                MAX_BUFFER_BYTES >> 20
            ));
        }
        fs::read(&real).map_err(|err| format!("{path}: {}", describe(&err)))
    }

    fn expander(&self) -> Expander<'_> {
        Expander {
            vars: &self.vars,
            status: self.status,
            nounset: self.options.nounset,
            root: &self.root,
            cwd: &self.cwd,
        }
    }

    fn list(&mut self, list: &List, fds: Fds) -> Result<i32, Stop> {
        let mut status = 0;
        for and_or in list {
            status = self.and_or(and_or, fds)?;
        }
        Ok(status)
    }

    fn and_or(&mut self, and_or: &AndOr, fds: Fds) -> Result<i32, Stop> {
        let mut status = self.checked_pipeline(&and_or.first, fds, !and_or.rest.is_empty())?;
        for (index, (connector, pipeline)) in and_or.rest.iter().enumerate() {
            let run = match connector {
                Connector::And => status == 0,
                Connector::Or => status != 0,
            };
            if run {
                let last = index + 1 == and_or.rest.len();
                status = self.checked_pipeline(pipeline, fds, !last)?;
            }
        }
        Ok(status)
    }

    /// Runs a pipeline, sets `$?`, and applies errexit unless it is ignored here.
    fn checked_pipeline(
        &mut self,
        pipeline: &Pipeline,
        fds: Fds,
        ignore_errexit: bool,
    ) -> Result<i32, Stop> {
        let suppress = ignore_errexit || pipeline.negated;
        if suppress {
            self.suppress += 1;
        }
        let result = self.pipeline(pipeline, fds);
        if suppress {
            self.suppress -= 1;
        }
        let mut status = result?;
        if pipeline.negated {
            status = i32::from(status == 0);
        }
        self.status = status;
        if status != 0 && !suppress && self.suppress == 0 && self.options.errexit {
            return Err(Stop::Exit(status));
        }
        Ok(status)
    }

    fn pipeline(&mut self, pipeline: &Pipeline, fds: Fds) -> Result<i32, Stop> {
        let [first, rest @ ..] = pipeline.commands.as_slice() else {
            return Ok(0);
        };
        if rest.is_empty() {
            return self.command(first, fds);
        }
        let mark = self.io.mark();
        let mut stdin = fds.stdin;
        let mut failed = 0;
        let mut status = 0;
        let count = pipeline.commands.len();
        for (index, command) in pipeline.commands.iter().enumerate() {
            let last = index + 1 == count;
            let out = if last {
                fds.out
            } else {
                Dest::Slot(self.io.buffer())
            };
            let stage = Fds {
                stdin,
                out,
                err: fds.err,
            };
            let result = self.subshell(command, stage);
            if index > 0
                && let Some(previous) = stdin
            {
                self.io.clear(previous);
            }
            status = match result {
                Ok(status) => status,
                Err(stop) => {
                    self.io.release(mark);
                    return Err(stop);
                }
            };
            if status != 0 {
                failed = status;
            }
            if let Dest::Slot(slot) = out
                && !last
            {
                self.io.buffer_to_input(slot);
                stdin = Some(slot);
            }
        }
        self.io.release(mark);
        Ok(if self.options.pipefail && status == 0 {
            failed
        } else {
            status
        })
    }

    /// Runs a command of a multi-command pipeline as sh would in a subshell: variable,
    /// directory and option changes do not survive it, and `exit` ends only it.
    fn subshell(&mut self, command: &Command, fds: Fds) -> Result<i32, Stop> {
        let saved = (
            self.vars.clone(),
            self.cwd.clone(),
            self.options,
            self.suppress,
        );
        let result = self.command(command, fds);
        (self.vars, self.cwd, self.options, self.suppress) = saved;
        match result {
            Err(Stop::Exit(status)) => Ok(status),
            other => other,
        }
    }

    fn command(&mut self, command: &Command, fds: Fds) -> Result<i32, Stop> {
        match command {
            Command::Simple(simple) => self.simple(simple, fds),
            Command::If(if_command) => self.if_command(if_command, fds),
            Command::For(for_command) => self.for_command(for_command, fds),
            Command::Redirected(inner, redirects) => {
                let mark = self.io.mark();
                let result = match self.redirect(redirects, fds) {
                    Ok(Some(local)) => self.command(inner, local),
                    Ok(None) => Ok(1),
                    Err(stop) => Err(stop),
                };
                self.io.release(mark);
                result
            }
        }
    }

    fn if_command(&mut self, command: &IfCommand, fds: Fds) -> Result<i32, Stop> {
        for (condition, body) in &command.branches {
            self.suppress += 1;
            let result = self.list(condition, fds);
            self.suppress -= 1;
            if result? == 0 {
                return self.list(body, fds);
            }
        }
        match &command.otherwise {
            Some(body) => self.list(body, fds),
            None => Ok(0),
        }
    }

    fn for_command(&mut self, command: &ForCommand, fds: Fds) -> Result<i32, Stop> {
        self.line = command.pos.line;
        let mut items = Vec::new();
        for word in &command.words {
            items.extend(self.expander().fields(word).map_err(expand_stop)?);
        }
        let mut status = 0;
        for item in items {
            self.vars.set(&command.name, item);
            status = self.list(&command.body, fds)?;
        }
        Ok(status)
    }

    fn simple(&mut self, command: &SimpleCommand, fds: Fds) -> Result<i32, Stop> {
        self.line = command.pos.line;
        if self.ctx.is_cancelled() {
            return Err(Stop::Cancelled(format!(
                "cancelled before the command on line {}",
                command.pos.line
            )));
        }
        self.commands += 1;
        let mut argv = Vec::new();
        for word in &command.words {
            argv.extend(self.expander().fields(word).map_err(expand_stop)?);
        }
        let mut values = Vec::new();
        for assignment in &command.assignments {
            let value = self
                .expander()
                .text(&assignment.value.parts)
                .map_err(expand_stop)?;
            values.push((assignment.name.as_str(), value));
        }
        if self.options.xtrace {
            let mut trace: Vec<String> = values.iter().map(|(n, v)| format!("{n}={v}")).collect();
            trace.extend(argv.iter().cloned());
            let line = format!("+ {}\n", trace.join(" "));
            self.io.write(fds.err, line.as_bytes())?;
        }
        let mark = self.io.mark();
        let result = match self.redirect(&command.redirects, fds) {
            Ok(Some(local)) => {
                for (name, value) in values {
                    self.vars.set(name, value);
                }
                match argv.split_first() {
                    None => Ok(0),
                    Some((name, args)) => self.dispatch(name, args, local),
                }
            }
            Ok(None) => Ok(1),
            Err(stop) => Err(stop),
        };
        self.io.release(mark);
        result
    }

    fn dispatch(&mut self, name: &str, args: &[String], fds: Fds) -> Result<i32, Stop> {
        match builtins::run(self, name, args, fds) {
            Some(result) => result,
            None => {
                let line = self.line;
                self.shell_error(
                    fds,
                    line,
                    &format!(
                        "{name}: command not found — this sandboxed shell runs only its builtins: {}",
                        builtins::NAMES.join(", ")
                    ),
                );
                Ok(127)
            }
        }
    }

    /// Applies `redirects` on top of `fds`: the new descriptors, or `None` after printing
    /// why one failed.
    fn redirect(&mut self, redirects: &[Redirect], fds: Fds) -> Result<Option<Fds>, Stop> {
        let mut local = fds;
        for redirect in redirects {
            let target = match &redirect.kind {
                RedirectKind::Read(word)
                | RedirectKind::Write(word)
                | RedirectKind::Append(word) => {
                    Some(self.expander().text(&word.parts).map_err(expand_stop)?)
                }
                RedirectKind::Dup(_) | RedirectKind::Heredoc(_) => None,
            };
            let outcome = match (&redirect.kind, target) {
                (RedirectKind::Dup(from), _) => {
                    let dest = if *from == 1 { local.out } else { local.err };
                    Ok(Some(dest))
                }
                (RedirectKind::Heredoc(index), _) => {
                    let parts = self.heredocs.get(*index).cloned().unwrap_or_default();
                    let text = self.expander().text(&parts).map_err(expand_stop)?;
                    local.stdin = Some(self.io.input(text.into_bytes()));
                    Ok(None)
                }
                (RedirectKind::Read(_), Some(path)) => match self.read_input(&path) {
                    Ok(data) => {
                        local.stdin = Some(self.io.input(data));
                        Ok(None)
                    }
                    Err(message) => Err(message),
                },
                (RedirectKind::Write(_), Some(path)) => self.open_output(&path, false, local),
                (RedirectKind::Append(_), Some(path)) => self.open_output(&path, true, local),
                _ => Ok(None),
            };
            match outcome {
                Ok(Some(dest)) => {
                    if redirect.fd == 2 {
                        local.err = dest;
                    } else {
                        local.out = dest;
                    }
                }
                Ok(None) => {}
                Err(message) => {
                    let line = redirect.pos.line;
                    self.shell_error(fds, line, &message);
                    return Ok(None);
                }
            }
        }
        Ok(Some(local))
    }

    fn read_input(&self, path: &str) -> Result<Vec<u8>, String> {
        if path == "/dev/null" {
            return Ok(Vec::new());
        }
        self.read_file(path)
            .map_err(|message| format!("cannot open {message}"))
    }

    fn open_output(&mut self, path: &str, append: bool, fds: Fds) -> Result<Option<Dest>, String> {
        match path {
            "/dev/null" => return Ok(Some(Dest::Null)),
            "/dev/stdout" => return Ok(Some(fds.out)),
            "/dev/stderr" => return Ok(Some(fds.err)),
            _ => {}
        }
        let resolved = self
            .resolve(path)
            .map_err(|err| format!("cannot create {err}"))?;
        let real = self.real(&resolved);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .append(append)
            .truncate(!append)
            .open(&real)
            .map_err(|err| format!("cannot create {path}: {}", describe(&err)))?;
        Ok(Some(Dest::Slot(self.io.file(file, path.to_owned()))))
    }

    /// Makes `path` the current directory (for `cd`), updating `PWD`.
    pub fn set_cwd(&mut self, path: WsPath) {
        self.vars.set("PWD", path.guest());
        self.cwd = path;
    }
}

fn expand_stop(err: ExpandError) -> Stop {
    Stop::Fatal(err.to_string())
}
