//! Running `git` against one git directory with a clean environment and bounded output.
//!
//! Every command names its git directory explicitly (`--git-dir`) and the variables that
//! would redirect git elsewhere (`GIT_DIR`, `GIT_WORK_TREE`, `GIT_INDEX_FILE`, …) are removed
//! from the inherited environment, so the server's own environment or working directory can
//! never make git act on another repository. Git never prompts (`GIT_TERMINAL_PROMPT=0`).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use labhit_runtime::fsio;

use super::RepoError;

/// Environment variables that change which repository, index or object store git uses.
const REDIRECTING_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_QUARANTINE_PATH",
    "GIT_REPLACE_REF_BASE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_LITERAL_PATHSPECS",
    "GIT_GLOB_PATHSPECS",
    "GIT_NOGLOB_PATHSPECS",
    "GIT_ICASE_PATHSPECS",
];

/// Most bytes of a git command's standard error kept for an error message.
const STDERR_LIMIT: u64 = 4096;

/// The result of a git command that ran to completion.
pub(crate) struct Output {
    /// Whether git exited with status 0.
    pub(crate) success: bool,
    /// Standard output (bounded by the caller's limit).
    pub(crate) stdout: Vec<u8>,
    /// Whether standard output was longer than the limit (and was cut).
    pub(crate) truncated: bool,
    /// The first line-trimmed part of standard error, for messages.
    pub(crate) stderr: String,
}

/// A git command bound to one git directory.
pub(crate) struct Git {
    command: Command,
    display: String,
}

impl Git {
    /// `git --git-dir=GIT_DIR --literal-pathspecs …` with a clean environment; the working
    /// directory is `/` (or the given work tree) so nothing is discovered from it.
    pub(crate) fn new(git_dir: &Path) -> Self {
        let mut command = Command::new("git");
        for var in REDIRECTING_VARS {
            command.env_remove(var);
        }
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .arg("--git-dir")
            .arg(git_dir)
            .arg("--literal-pathspecs")
            .current_dir(git_dir)
            .stdin(Stdio::null());
        Self {
            command,
            display: "git".to_owned(),
        }
    }

    /// A git command with no repository yet (for `clone`).
    pub(crate) fn bare(cwd: &Path) -> Self {
        let mut command = Command::new("git");
        for var in REDIRECTING_VARS {
            command.env_remove(var);
        }
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .current_dir(cwd)
            .stdin(Stdio::null());
        Self {
            command,
            display: "git".to_owned(),
        }
    }

    /// Appends arguments.
    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for arg in args {
            let arg = arg.as_ref();
            if self.display.len() < 200 {
                self.display.push(' ');
                self.display.push_str(&arg.to_string_lossy());
            }
            self.command.arg(arg);
        }
        self
    }

    /// Sets an environment variable for this command only.
    pub(crate) fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Runs the command, keeping at most `limit` bytes of standard output.
    pub(crate) fn run(mut self, limit: u64) -> Result<Output, RepoError> {
        let spawn_error = |e: std::io::Error| RepoError::Git {
            command: self.display.clone(),
            detail: format!("cannot start git: {}", fsio::describe(&e)),
        };
        let mut child = self
            .command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let mut stderr_pipe = child.stderr.take();
        // Standard error is drained on its own thread so a chatty git never blocks on a full
        // pipe while we read standard output.
        let stderr_reader = std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(pipe) = stderr_pipe.as_mut() {
                let _ = pipe.by_ref().take(STDERR_LIMIT).read_to_end(&mut kept);
                let _ = std::io::copy(pipe, &mut std::io::sink());
            }
            kept
        });
        let mut stdout = Vec::new();
        let mut truncated = false;
        if let Some(mut pipe) = child.stdout.take() {
            let read = pipe
                .by_ref()
                .take(limit.saturating_add(1))
                .read_to_end(&mut stdout);
            if let Err(e) = read {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RepoError::Git {
                    command: self.display,
                    detail: format!("cannot read git's output: {}", fsio::describe(&e)),
                });
            }
            if stdout.len() as u64 > limit {
                truncated = true;
                stdout.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                // The rest is not wanted: stop git instead of reading it.
                let _ = child.kill();
            }
        }
        let status = child.wait().map_err(|e| RepoError::Git {
            command: self.display.clone(),
            detail: format!("cannot wait for git: {}", fsio::describe(&e)),
        })?;
        let stderr = stderr_reader.join().unwrap_or_default();
        Ok(Output {
            success: status.success() && !truncated,
            stdout,
            truncated,
            stderr: first_lines(&stderr),
        })
    }

    /// Runs the command and fails with [`RepoError::Git`] unless it succeeds.
    pub(crate) fn run_ok(self, limit: u64) -> Result<Vec<u8>, RepoError> {
        let display = self.display.clone();
        let output = self.run(limit)?;
        if output.truncated {
            return Err(RepoError::Git {
                command: display,
                detail: format!("git printed more than {limit} bytes"),
            });
        }
        if !output.success {
            return Err(RepoError::Git {
                command: display,
                detail: output.stderr,
            });
        }
        Ok(output.stdout)
    }
}

/// Git's standard error as one line: control characters replaced, lines joined with `; `.
fn first_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let cleaned: String = joined
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cleaned.is_empty() {
        "git failed without a message".to_owned()
    } else {
        cleaned
    }
}

/// Finds the git directory of the repository at `path` (a work tree or a bare repository),
/// as an absolute path; `None` when `path` is not a git repository.
pub(crate) fn discover_git_dir(path: &Path) -> Result<Option<PathBuf>, RepoError> {
    let mut command = Command::new("git");
    for var in REDIRECTING_VARS {
        command.env_remove(var);
    }
    // Discovery must not walk up past `path` into an enclosing repository.
    let ceiling = path.parent().unwrap_or(path);
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CEILING_DIRECTORIES", ceiling)
        .current_dir(path)
        .args(["rev-parse", "--absolute-git-dir"])
        .stdin(Stdio::null());
    let output = command.output().map_err(|e| RepoError::Git {
        command: "git rev-parse --absolute-git-dir".to_owned(),
        detail: format!("cannot start git: {}", fsio::describe(&e)),
    })?;
    if !output.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let dir = text.trim_end_matches(['\n', '\r']);
    if dir.is_empty() {
        return Ok(None);
    }
    Ok(Some(PathBuf::from(dir)))
}
