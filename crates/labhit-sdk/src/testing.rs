//! A native mock host, so an extension's unit tests run with plain `cargo test`.
//!
//! [`MockHost`] plays the part of a LabHit host on the build machine: it owns a temporary
//! workspace directory (removed on drop), a map of secret values, the capabilities the
//! manifest grants, a cancellation flag, and it captures every log entry. It enforces grants
//! the way the real host does: a secret name is checked for its form (`invalid-name`), then
//! against the declared names (`denied`), then for a value (`not-found`); the SDK's file
//! helpers refuse to touch the workspace without `filesystem = "read"` and refuse to write
//! without `"read-write"` (plain `std::fs` on the temporary directory cannot be stopped
//! natively; in a component the host's preopen enforces it). The `with` object is *not*
//! checked against the manifest's input schema here; `labhit validate --extensions` does that.
//!
//! ```
//! use labhit_sdk::testing::{MockHost, json};
//! use labhit_sdk::{Context, Error, Extension, Input, Output, SecretError};
//!
//! struct Token;
//! impl Extension for Token {
//!     type Config = serde_json::Value;
//!     fn execute(ctx: &Context, _: Input<Self::Config>) -> Result<Output, Error> {
//!         let token = ctx.require_secret("API_TOKEN")?;
//!         Ok(Output::new().output("length", token.len()))
//!     }
//! }
//!
//! let host = MockHost::from_manifest(r#"
//!     [extension]
//!     category = "util"
//!     name = "token"
//!     version = "0.1.0"
//!     contract = "^0.2"
//!     description = "Measures a token"
//!     component = "token.wasm"
//!     [capabilities]
//!     secrets = ["API_TOKEN"]
//! "#).unwrap();
//! assert_eq!(host.run::<Token>(json!({})).unwrap_err().kind(), "failed"); // no value yet
//!
//! let host = host.secret("API_TOKEN", "s3cr3t").secret("OTHER", "x");
//! assert_eq!(host.run::<Token>(json!({})).unwrap().get("length"), Some("6"));
//! assert_eq!(host.context().secret("OTHER"), Err(SecretError::Denied));
//! assert!(host.leaked_secrets(&[]).is_empty());
//! ```
//!
//! Most tests start from the extension's own manifest with [`mock_host!`](crate::mock_host).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use labhit_protocol::manifest::{FilesystemAccess, Manifest, SecretName};

use crate::context::{Context, Host, Level, WorkspaceAccess};
use crate::error::{Error, SecretError};
use crate::input::{Command, RawInput};
use crate::{Extension, Output};

/// Re-exported so tests can write `json!({...})` configs without another dependency.
pub use serde_json::json;

/// A mock host made from the `extension.toml` beside the calling crate's `Cargo.toml`.
///
/// Panics (failing the test) when the manifest cannot be read or is invalid.
///
/// ```no_run
/// // In the tests of an extension crate, beside its extension.toml:
/// let host = labhit_sdk::mock_host!().file("dist/app.txt", "hello");
/// ```
#[macro_export]
macro_rules! mock_host {
    () => {
        $crate::testing::MockHost::from_manifest_file(::std::concat!(
            ::std::env!("CARGO_MANIFEST_DIR"),
            "/extension.toml"
        ))
        .unwrap_or_else(|err| ::std::panic!("{err}"))
    };
}

/// One captured log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The level.
    pub level: Level,
    /// The message, unredacted (so tests can check that no secret is ever logged).
    pub message: String,
    /// The structured fields, in order.
    pub fields: Vec<(String, String)>,
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>5} {}", self.level, self.message)?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// State shared between the [`MockHost`] and the [`Context`]s it hands out.
#[derive(Default)]
struct State {
    declared: RefCell<BTreeSet<String>>,
    values: RefCell<BTreeMap<String, String>>,
    handed_out: RefCell<BTreeSet<String>>,
    logs: RefCell<Vec<LogEntry>>,
    cancelled: Cell<bool>,
    /// Answer `is_cancelled() == true` from this many checks on.
    cancel_after: Cell<Option<u64>>,
    checks: Cell<u64>,
}

struct MockCalls(Rc<State>);

impl Host for MockCalls {
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let entry = LogEntry {
            level,
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        // Shown by the test harness when a test fails.
        eprintln!("{entry}");
        self.0.logs.borrow_mut().push(entry);
    }

    fn secret(&self, name: &str) -> Result<String, SecretError> {
        if SecretName::new(name).is_err() {
            return Err(SecretError::InvalidName);
        }
        if !self.0.declared.borrow().contains(name) {
            return Err(SecretError::Denied);
        }
        let value = self
            .0
            .values
            .borrow()
            .get(name)
            .cloned()
            .ok_or(SecretError::NotFound)?;
        self.0.handed_out.borrow_mut().insert(name.to_owned());
        Ok(value)
    }

    fn is_cancelled(&self) -> bool {
        let checks = self.0.checks.get() + 1;
        self.0.checks.set(checks);
        if self
            .0
            .cancel_after
            .get()
            .is_some_and(|after| checks > after)
        {
            self.0.cancelled.set(true);
        }
        self.0.cancelled.get()
    }
}

/// A temporary directory, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let base = std::env::temp_dir();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!("labhit-mock-{}-{nanos:x}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(Self(dir)),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A native stand-in for a LabHit host; see the [module documentation](self).
///
/// Builder methods take and return `self`; inspection methods take `&self`. Every
/// [`run`](Self::run) uses the same workspace, so files written by one run are visible to
/// the test and to the next run.
pub struct MockHost {
    state: Rc<State>,
    workspace: TempDir,
    access: WorkspaceAccess,
    executor: bool,
    use_ref: String,
    stage_id: String,
    env: BTreeMap<String, String>,
    command: Option<Command>,
    runs: Cell<u64>,
}

impl fmt::Debug for MockHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockHost")
            .field("workspace", &self.workspace.0)
            .field("access", &self.access)
            .field("declared_secrets", &self.state.declared.borrow())
            .finish_non_exhaustive()
    }
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHost {
    /// A host granting nothing, like a manifest without `[capabilities]`: no filesystem, no
    /// secrets, no executor. Grant more with [`filesystem`](Self::filesystem),
    /// [`declare_secret`](Self::declare_secret) and [`executor`](Self::executor).
    ///
    /// # Panics
    ///
    /// When no temporary directory can be created.
    pub fn new() -> Self {
        let workspace = match TempDir::new() {
            Ok(dir) => dir,
            Err(err) => panic!("cannot create a temporary workspace: {err}"),
        };
        Self {
            state: Rc::new(State::default()),
            workspace,
            access: WorkspaceAccess::None,
            executor: false,
            use_ref: "test/mock".to_owned(),
            stage_id: "test".to_owned(),
            env: BTreeMap::new(),
            command: None,
            runs: Cell::new(0),
        }
    }

    /// A host granting exactly what the manifest text `toml` declares.
    ///
    /// # Errors
    ///
    /// The manifest's diagnostics, one per line, when it is invalid.
    pub fn from_manifest(toml: &str) -> Result<Self, String> {
        let manifest = Manifest::from_toml(toml).map_err(|diagnostics| {
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let caps = &manifest.capabilities;
        let mut host = Self::new()
            .filesystem(match caps.filesystem {
                FilesystemAccess::None => WorkspaceAccess::None,
                FilesystemAccess::Read => WorkspaceAccess::ReadOnly,
                FilesystemAccess::ReadWrite => WorkspaceAccess::ReadWrite,
            })
            .executor(caps.executor);
        for name in &caps.secrets {
            host = host.declare_secret(name.as_str());
        }
        host.use_ref = manifest.qualified_name();
        Ok(host)
    }

    /// A host granting what the manifest file at `path` declares; see [`mock_host!`](crate::mock_host).
    ///
    /// # Errors
    ///
    /// When the file cannot be read or the manifest is invalid.
    pub fn from_manifest_file(path: impl AsRef<Path>) -> Result<Self, String> {
        let path = path.as_ref();
        let text = fs::read_to_string(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        Self::from_manifest(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    /// Grants `access` to the workspace.
    #[must_use]
    pub fn filesystem(mut self, access: WorkspaceAccess) -> Self {
        self.access = access;
        self
    }

    /// Declares the secret `name`, as `capabilities.secrets` would.
    #[must_use]
    pub fn declare_secret(self, name: &str) -> Self {
        self.state.declared.borrow_mut().insert(name.to_owned());
        self
    }

    /// Gives the engine a value for the secret `name`. Declaring it is a separate matter:
    /// a value for an undeclared name is still `denied`, as on a real host.
    #[must_use]
    pub fn secret(self, name: &str, value: &str) -> Self {
        self.state
            .values
            .borrow_mut()
            .insert(name.to_owned(), value.to_owned());
        self
    }

    /// Grants the `executor` capability.
    #[must_use]
    pub fn executor(mut self, executor: bool) -> Self {
        self.executor = executor;
        self
    }

    /// Grants the environment variable `name`.
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Sets the stage id (default `test`).
    #[must_use]
    pub fn stage(mut self, stage_id: &str) -> Self {
        self.stage_id = stage_id.to_owned();
        self
    }

    /// Sends `command`, as for a stage with `run`; only an executor may receive one.
    #[must_use]
    pub fn command(mut self, command: Command) -> Self {
        self.command = Some(command);
        self
    }

    /// Writes a workspace file before the run, creating parent directories.
    ///
    /// # Panics
    ///
    /// When `path` leaves the workspace or the file cannot be written.
    #[must_use]
    pub fn file(self, path: &str, contents: impl AsRef<[u8]>) -> Self {
        let full = self.path(path);
        if let Some(parent) = full.parent()
            && let Err(err) = fs::create_dir_all(parent)
        {
            panic!("cannot create {}: {err}", parent.display());
        }
        if let Err(err) = fs::write(&full, contents) {
            panic!("cannot write {}: {err}", full.display());
        }
        self
    }

    /// Cancels the run: from now on `is_cancelled()` answers true.
    pub fn cancel(&self) {
        self.state.cancelled.set(true);
    }

    /// Answers `is_cancelled() == true` from the `checks + 1`-th check on (counting checks
    /// across runs), to test cancellation in the middle of the work.
    #[must_use]
    pub fn cancel_after(self, checks: u64) -> Self {
        self.state
            .cancel_after
            .set(Some(self.state.checks.get() + checks));
        self
    }

    /// The workspace directory.
    pub fn workspace(&self) -> &Path {
        &self.workspace.0
    }

    /// The absolute path of a workspace file.
    ///
    /// # Panics
    ///
    /// When `path` is absolute or contains `..`.
    pub fn path(&self, path: &str) -> PathBuf {
        assert!(
            !path.starts_with('/') && !path.split('/').any(|part| part == ".."),
            "`{path}` is not a path inside the workspace"
        );
        self.workspace.0.join(path)
    }

    /// Reads a workspace file as text.
    ///
    /// # Panics
    ///
    /// When the file cannot be read as UTF-8.
    pub fn read(&self, path: &str) -> String {
        let full = self.path(path);
        match fs::read_to_string(&full) {
            Ok(text) => text,
            Err(err) => panic!("cannot read {}: {err}", full.display()),
        }
    }

    /// A [`Context`] on this host, for testing helpers that take one.
    pub fn context(&self) -> Context {
        Context::new(
            Box::new(MockCalls(Rc::clone(&self.state))),
            self.workspace.0.clone(),
            self.access,
        )
    }

    /// Runs `E` once with `config` as the stage's `with`, like a host would: the config is
    /// serialized to JSON and parsed by `E::parse_config`, then `E::execute` runs.
    ///
    /// # Errors
    ///
    /// Whatever the extension returns; `internal` when a command is sent to an extension
    /// without the `executor` capability (a real host never does that).
    pub fn run<E: Extension>(&self, config: serde_json::Value) -> Result<Output, Error> {
        self.run_json::<E>(&config.to_string())
    }

    /// Like [`run`](Self::run), with the `with` object as JSON text.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub fn run_json<E: Extension>(&self, config: &str) -> Result<Output, Error> {
        if self.command.is_some() && !self.executor {
            return Err(Error::internal(
                "the mock host sends a command only to extensions with `executor = true`",
            ));
        }
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let raw = RawInput {
            config: config.to_owned(),
            run_id: "00000000-0000-4000-8000-000000000001".to_owned(),
            stage_id: self.stage_id.clone(),
            step_id: format!("00000000-0000-4000-8000-{n:012x}"),
            use_ref: self.use_ref.clone(),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            workspace: self.workspace.0.display().to_string(),
            access: self.access,
            command: self.command.clone(),
        };
        crate::run::<E>(&self.context(), raw)
    }

    /// Every log entry so far, across runs.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.state.logs.borrow().clone()
    }

    /// Whether some log entry's message contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.state
            .logs
            .borrow()
            .iter()
            .any(|entry| entry.message.contains(text))
    }

    /// The names of secrets handed out so far whose value appears in a log entry (message or
    /// field), in `outputs`, or in an error message — places a real host must redact. An
    /// extension should keep this empty.
    pub fn leaked_secrets(&self, outputs: &[&Result<Output, Error>]) -> Vec<String> {
        let mut haystacks: Vec<String> = Vec::new();
        for entry in self.state.logs.borrow().iter() {
            haystacks.push(entry.message.clone());
            haystacks.extend(entry.fields.iter().map(|(k, v)| format!("{k}={v}")));
        }
        for result in outputs {
            match result {
                Ok(output) => {
                    haystacks.extend(output.outputs().iter().map(|(k, v)| format!("{k}={v}")));
                }
                Err(err) => haystacks.push(err.message().to_owned()),
            }
        }
        let values = self.state.values.borrow();
        self.state
            .handed_out
            .borrow()
            .iter()
            .filter(|name| {
                values
                    .get(*name)
                    .is_some_and(|value| haystacks.iter().any(|h| h.contains(value.as_str())))
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Input;

    struct Files;

    impl Extension for Files {
        type Config = serde_json::Value;

        fn execute(ctx: &Context, input: Input<Self::Config>) -> Result<Output, Error> {
            let found = ctx.glob(&["**/*.txt"])?;
            crate::info!(ctx, "found {}", found.len());
            if input.config.get("write").is_some() {
                ctx.write("out/result.txt", found.join("\n"))?;
                let artifact = ctx.artifact("out/result.txt")?;
                return Ok(Output::new().artifact(artifact));
            }
            Ok(Output::new().output("found", found.len()))
        }
    }

    #[test]
    fn filesystem_grants_are_enforced() {
        let host = MockHost::new().file("a.txt", "x");
        let err = host.run::<Files>(json!({})).unwrap_err();
        assert_eq!(err.kind(), "internal");
        assert!(err.message().contains("no filesystem access"), "{err}");

        let host = host.filesystem(WorkspaceAccess::ReadOnly);
        assert_eq!(
            host.run::<Files>(json!({})).unwrap().get("found"),
            Some("1")
        );
        let err = host.run::<Files>(json!({"write": true})).unwrap_err();
        assert!(err.message().contains("read-only"), "{err}");
        assert!(!host.path("out/result.txt").exists());

        let host = host.filesystem(WorkspaceAccess::ReadWrite);
        let out = host.run::<Files>(json!({"write": true})).unwrap();
        assert_eq!(host.read("out/result.txt"), "a.txt");
        let artifact = &out.artifacts()[0];
        assert_eq!(
            (artifact.path(), artifact.mime(), artifact.size()),
            ("out/result.txt", "text/plain", 5)
        );
        assert_eq!(host.logs().len(), 3);
    }

    #[test]
    fn secrets_are_checked_in_host_order() {
        let host = MockHost::new()
            .declare_secret("DECLARED")
            .declare_secret("EMPTY")
            .secret("DECLARED", "value")
            .secret("UNDECLARED", "value");
        let ctx = host.context();
        assert_eq!(ctx.secret("DECLARED").as_deref(), Ok("value"));
        assert_eq!(ctx.secret("EMPTY"), Err(SecretError::NotFound));
        assert_eq!(ctx.secret("UNDECLARED"), Err(SecretError::Denied));
        assert_eq!(ctx.secret("lower"), Err(SecretError::InvalidName));
        assert_eq!(ctx.secret(""), Err(SecretError::InvalidName));
        assert_eq!(
            ctx.require_secret("UNDECLARED").unwrap_err().kind(),
            "internal"
        );
        ctx.info("value");
        assert_eq!(host.leaked_secrets(&[]), vec!["DECLARED".to_owned()]);
    }

    #[test]
    fn manifest_grants_and_cancellation() {
        let host = MockHost::from_manifest(
            r#"
            [extension]
            category = "util"
            name = "demo"
            version = "0.1.0"
            contract = "^0.2"
            description = "Demo"
            component = "demo.wasm"
            [capabilities]
            filesystem = "read"
            secrets = ["TOKEN"]
            "#,
        )
        .unwrap();
        assert_eq!(host.access, WorkspaceAccess::ReadOnly);
        assert_eq!(host.use_ref, "util/demo");
        assert_eq!(host.context().secret("TOKEN"), Err(SecretError::NotFound));

        let host = host.cancel_after(2);
        let ctx = host.context();
        assert!(!ctx.is_cancelled());
        assert!(!ctx.is_cancelled());
        assert_eq!(
            ctx.check_cancelled("hashing").unwrap_err().kind(),
            "cancelled"
        );
        assert!(ctx.is_cancelled());

        let bad = MockHost::from_manifest("[extension]\nname = 1\n").unwrap_err();
        assert!(bad.contains("invalid type"), "{bad}");
    }

    #[test]
    fn commands_only_reach_executors() {
        let host = MockHost::new().command(Command::new("make"));
        assert_eq!(host.run::<Files>(json!({})).unwrap_err().kind(), "internal");
    }

    #[test]
    fn paths_outside_the_workspace_are_refused() {
        let host = MockHost::new().filesystem(WorkspaceAccess::ReadWrite);
        let ctx = host.context();
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert_eq!(ctx.read(bad).unwrap_err().kind(), "invalid-config", "{bad}");
        }
        assert_eq!(ctx.artifact("missing").unwrap_err().kind(), "failed");
    }
}
