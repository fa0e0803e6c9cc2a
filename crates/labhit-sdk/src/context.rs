//! [`Context`]: what an extension can ask of its host during `execute` — logging, secrets,
//! cancellation and the workspace.
//!
//! The same `Context` serves two hosts behind the private `Host` trait: the real one, whose
//! calls go to the WIT imports (`log`, `secrets`, `cancellation`), and the native mock of
//! [`testing`](crate::testing). Extension code cannot tell them apart, which is the point.

use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, SecretError};
use crate::glob::{self, Glob};
use crate::output::Artifact;

/// The severity of a log entry, from the most verbose to the most severe (WIT `log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing, usually hidden.
    Trace,
    /// Diagnostic detail for extension developers.
    Debug,
    /// Normal progress that pipeline authors want to see.
    Info,
    /// Something unexpected that does not fail the step.
    Warn,
    /// A failure; usually followed by an [`Error`] or a failing exit code.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// The access to the workspace that the manifest grants and the host enforces (WIT
/// `workspace-access`, manifest `capabilities.filesystem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkspaceAccess {
    /// `filesystem = "none"`: nothing is mounted.
    None,
    /// `filesystem = "read"`: the workspace, read-only.
    ReadOnly,
    /// `filesystem = "read-write"`: the workspace, writable.
    ReadWrite,
}

/// The host services behind a [`Context`]: the WIT imports in a component, a mock natively.
pub(crate) trait Host {
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]);
    fn secret(&self, name: &str) -> Result<String, SecretError>;
    fn is_cancelled(&self) -> bool;
}

/// What an extension can ask of its host while it executes a step.
///
/// Handed to [`Extension::execute`](crate::Extension::execute). Logging goes into the run's
/// log stream (use the [`info!`](crate::info) family of macros for formatted messages);
/// secrets come from [`secret`](Self::secret); file helpers resolve workspace-relative paths,
/// refuse anything that would leave the workspace and respect the granted
/// [`WorkspaceAccess`] — plain `std::fs` on [`workspace`](Self::workspace) works too.
pub struct Context {
    host: Box<dyn Host>,
    workspace: PathBuf,
    access: WorkspaceAccess,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("workspace", &self.workspace)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(host: Box<dyn Host>, workspace: PathBuf, access: WorkspaceAccess) -> Self {
        Self {
            host,
            workspace,
            access,
        }
    }

    /// Appends an entry to the step's log.
    pub fn log(&self, level: Level, message: &str) {
        self.host.log(level, message, &[]);
    }

    /// Appends an entry with structured `(key, value)` context, kept in order.
    ///
    /// Never pass a secret value, in the message or in a field: the host redacts what it
    /// handed out, but do not rely on it.
    pub fn log_with(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        self.host.log(level, message, fields);
    }

    /// Logs at [`Level::Trace`].
    pub fn trace(&self, message: &str) {
        self.log(Level::Trace, message);
    }

    /// Logs at [`Level::Debug`].
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }

    /// Logs at [`Level::Info`].
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    /// Logs at [`Level::Warn`].
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    /// Logs at [`Level::Error`].
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }

    /// The value of the secret `name`, which the manifest must declare in
    /// `capabilities.secrets`. Never log it.
    ///
    /// # Errors
    ///
    /// [`SecretError::InvalidName`] for a malformed name, [`SecretError::Denied`] for an
    /// undeclared one, [`SecretError::NotFound`] when the run has no value for it.
    pub fn secret(&self, name: &str) -> Result<String, SecretError> {
        self.host.secret(name)
    }

    /// Like [`secret`](Self::secret), but answers with the [`Error`] to return from
    /// `execute`: `failed` when the run has no value, `internal` when the manifest does not
    /// declare the name (a bug in the extension).
    ///
    /// # Errors
    ///
    /// As described above; the message names the secret, never its value.
    pub fn require_secret(&self, name: &str) -> Result<String, Error> {
        self.secret(name).map_err(|err| match err {
            SecretError::NotFound => {
                Error::failed(format!("secret `{name}` is not configured for this run"))
            }
            SecretError::Denied => Error::internal(format!(
                "secret `{name}` is not declared in `capabilities.secrets` of extension.toml"
            )),
            SecretError::InvalidName => {
                Error::internal(format!("`{name}` is not a valid secret name"))
            }
        })
    }

    /// Whether the run or stage has been cancelled. Poll it between units of work.
    pub fn is_cancelled(&self) -> bool {
        self.host.is_cancelled()
    }

    /// `Err(Error::Cancelled)` once cancelled, saying what was being done; use with `?`
    /// between units of work.
    ///
    /// # Errors
    ///
    /// When the step has been cancelled.
    pub fn check_cancelled(&self, doing: &str) -> Result<(), Error> {
        if self.is_cancelled() {
            Err(Error::cancelled(format!("cancelled while {doing}")))
        } else {
            Ok(())
        }
    }

    /// The stage workspace: `/workspace` in a component, a temporary directory under the
    /// mock host.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The access to the workspace that the manifest grants.
    pub fn workspace_access(&self) -> WorkspaceAccess {
        self.access
    }

    /// The absolute path of the workspace-relative `path` (`/`-separated).
    ///
    /// # Errors
    ///
    /// `invalid-config` when `path` is empty, absolute or goes up with `..`: nothing outside
    /// the workspace is reachable.
    pub fn path(&self, path: &str) -> Result<PathBuf, Error> {
        let rel = Path::new(path);
        if path.is_empty() {
            return Err(Error::invalid_config("a workspace path is empty"));
        }
        for component in rel.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(Error::invalid_config(format!(
                        "path `{path}` goes up with `..`; paths are relative to the workspace"
                    )));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(Error::invalid_config(format!(
                        "path `{path}` is absolute; paths are relative to the workspace"
                    )));
                }
            }
        }
        Ok(self.workspace.join(rel))
    }

    fn require(&self, write: bool, path: &str) -> Result<(), Error> {
        match (self.access, write) {
            (WorkspaceAccess::None, _) => Err(Error::internal(format!(
                "cannot access `{path}`: the extension has no filesystem access (declare \
                 `filesystem = \"read\"` or `\"read-write\"` in extension.toml)"
            ))),
            (WorkspaceAccess::ReadOnly, true) => Err(Error::internal(format!(
                "cannot write `{path}`: the workspace is read-only for this extension (declare \
                 `filesystem = \"read-write\"` in extension.toml)"
            ))),
            _ => Ok(()),
        }
    }

    /// Reads the workspace file `path`.
    ///
    /// # Errors
    ///
    /// `invalid-config` for a path outside the workspace, `failed` when the file cannot be
    /// read, `internal` without filesystem access.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
        self.require(false, path)?;
        fs::read(self.path(path)?)
            .map_err(|err| Error::failed(format!("cannot read `{path}`: {err}")))
    }

    /// Reads the workspace file `path` as UTF-8 text.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read), and `failed` when the file is not UTF-8.
    pub fn read_to_string(&self, path: &str) -> Result<String, Error> {
        String::from_utf8(self.read(path)?)
            .map_err(|_| Error::failed(format!("cannot read `{path}`: it is not UTF-8 text")))
    }

    /// Writes `contents` to the workspace file `path`, creating missing parent directories
    /// and replacing an existing file.
    ///
    /// # Errors
    ///
    /// `invalid-config` for a path outside the workspace, `internal` unless the manifest
    /// grants `filesystem = "read-write"`, `failed` when the write fails.
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> Result<(), Error> {
        self.require(true, path)?;
        let full = self.path(path)?;
        let fail = |err: std::io::Error| Error::failed(format!("cannot write `{path}`: {err}"));
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).map_err(fail)?;
        }
        fs::write(&full, contents).map_err(fail)
    }

    /// Every workspace file matching one of `patterns` (see [`glob`](crate::glob) for the
    /// syntax), as sorted, `/`-separated workspace-relative paths.
    ///
    /// # Errors
    ///
    /// `invalid-config` for an invalid pattern, `failed` when the workspace cannot be read,
    /// `internal` without filesystem access.
    pub fn glob<S: AsRef<str>>(&self, patterns: &[S]) -> Result<Vec<String>, Error> {
        self.require(false, "the workspace")?;
        let globs = patterns
            .iter()
            .map(|pattern| Glob::new(pattern.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| Error::invalid_config(err.to_string()))?;
        glob::walk(&self.workspace, &globs)
            .map_err(|err| Error::failed(format!("cannot list the workspace: {err}")))
    }

    /// Describes the workspace file `path` as an [`Artifact`]: its size now and a media type
    /// guessed from its extension (override it with [`Artifact::with_mime`]).
    ///
    /// # Errors
    ///
    /// `invalid-config` for a path outside the workspace, `failed` when it is not a regular
    /// file, `internal` without filesystem access.
    pub fn artifact(&self, path: &str) -> Result<Artifact, Error> {
        self.require(false, path)?;
        let meta = fs::metadata(self.path(path)?)
            .map_err(|err| Error::failed(format!("artifact `{path}`: {err}")))?;
        if !meta.is_file() {
            return Err(Error::failed(format!(
                "artifact `{path}` is not a regular file"
            )));
        }
        let normalized = Path::new(path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(part) => part.to_str(),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("/");
        Ok(Artifact::new(normalized, meta.len()))
    }
}
