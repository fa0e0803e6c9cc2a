//! Errors of the runtime: creating it ([`RuntimeError`]), loading an extension
//! ([`LoadError`]) and executing a step ([`StepError`]).
//!
//! Every error about an extension names it (`category/name@version`); every step error also
//! names the stage. Messages are lowercase and carry no trailing period. Texts that come from
//! the guest (step-error messages, panic messages, the last error log line) are redacted of
//! every secret value handed out before they are put into an error.

use std::path::PathBuf;
use std::time::Duration;

/// Why a [`Runtime`](crate::Runtime) could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration.
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    /// The configuration is inconsistent.
    #[error("invalid runtime configuration: {0}")]
    Config(String),
}

/// Why an extension could not be loaded. Names the extension, its version and the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot load extension `{extension}@{version}` from `{}`: {kind}", path.display())]
pub struct LoadError {
    /// `category/name` of the extension.
    pub extension: String,
    /// The extension's version from its manifest.
    pub version: semver::Version,
    /// The component file.
    pub path: PathBuf,
    /// What went wrong (boxed to keep `Result`s small).
    pub kind: Box<LoadErrorKind>,
}

/// What went wrong while loading an extension.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(#[source] std::io::Error),
    /// The file is not WebAssembly at all (wrong magic number, unknown version, empty).
    #[error("not a WebAssembly file: {0}")]
    NotWasm(String),
    /// A `wasm32-wasip1` core module could not be adapted into a component.
    #[error("cannot adapt the wasm32-wasip1 core module into a component: {0}")]
    Adapt(String),
    /// wasmtime could not validate or compile the component (a malformed component).
    #[error("malformed component: {0}")]
    Compile(String),
    /// The component does not export `labhit:extension/pipeline-step`.
    #[error(
        "the component does not export `labhit:extension/pipeline-step` (its exports: {exports}); \
         build it for the world `extension` of `{wit}`"
    )]
    MissingExport {
        /// The names the component does export, comma-separated (or `none`).
        exports: String,
        /// The WIT package this runtime implements.
        wit: &'static str,
    },
    /// The component targets a contract version this runtime does not run.
    #[error(
        "the component targets contract {targets} (it exports `{export}`), but this host \
         runs components built for contract {supported}; rebuild the extension against the \
         labhit:extension WIT `{wit}` (labhit-sdk {newest} for Rust)"
    )]
    IncompatibleContract {
        /// The contract version found in the component's export name.
        targets: String,
        /// The export name it was read from.
        export: String,
        /// The range this host runs, [`crate::contracts::SUPPORTED`], e.g. `>=0.1, <0.3`.
        supported: String,
        /// [`labhit_protocol::CONTRACT_VERSION`], the newest.
        newest: &'static str,
        /// [`labhit_protocol::WIT_PACKAGE`].
        wit: &'static str,
    },
    /// The manifest's `contract` requirement admits none of the contracts this runtime runs.
    #[error(
        "its manifest requires contract `{requirement}`, which admits none of the contract \
         versions this host runs ({supported}); rebuild the extension against `{wit}` and set \
         `contract = \"^{series}\"`"
    )]
    ManifestContract {
        /// The manifest's requirement.
        requirement: semver::VersionReq,
        /// The range this host runs, [`crate::contracts::SUPPORTED`], e.g. `>=0.1, <0.3`.
        supported: String,
        /// `MAJOR.MINOR` of the newest contract.
        series: String,
        /// [`labhit_protocol::WIT_PACKAGE`].
        wit: &'static str,
    },
    /// The component targets a contract version this host runs, but not one the manifest's
    /// `contract` range admits (a 0.1 component beside a manifest saying `^0.2`, or the
    /// reverse): the manifest promises something the component was not built for.
    #[error(
        "its manifest requires `contract = \"{requirement}\"`, but the component targets \
         contract {targets} (it exports `{export}`); set `contract = \"^{series}\"` in \
         extension.toml to match the component, or rebuild the component against a contract \
         `{requirement}` admits"
    )]
    ContractMismatch {
        /// The manifest's requirement.
        requirement: semver::VersionReq,
        /// The contract version the component targets.
        targets: semver::Version,
        /// The export name it was read from.
        export: String,
        /// `MAJOR.MINOR` of `targets`.
        series: String,
    },
    /// The manifest asks for a capability added by a newer contract minor than the one the
    /// extension targets (for example `capabilities.network`, a 0.2 capability, for a 0.1
    /// component or a manifest whose `contract` admits only 0.1).
    #[error(
        "`capabilities.{capability}` is a contract {since} capability, but {why}; rebuild the \
         extension against `{wit}` and set `contract = \"^{since}\"`, or drop \
         `capabilities.{capability}`"
    )]
    CapabilityNeedsContract {
        /// The capability, e.g. `network`.
        capability: &'static str,
        /// `MAJOR.MINOR` of the contract that added it.
        since: String,
        /// What targets the older contract: the manifest's range or the component.
        why: String,
        /// [`labhit_protocol::WIT_PACKAGE`].
        wit: &'static str,
    },
    /// The component imports something the host does not provide (or with the wrong type).
    #[error("the component cannot be linked: {0}")]
    Link(String),
    /// The component imports `wasi:http` but its manifest grants no network.
    #[error(
        "the component imports `{import}` but its manifest grants no network; list the hosts it \
         may reach in `capabilities.network` of extension.toml (`host`, `host:port`, \
         `*.suffix`), or build it without HTTP (labhit-sdk without the `http` feature)"
    )]
    NetworkNotGranted {
        /// The `wasi:http` import found.
        import: String,
    },
    /// An entry of `capabilities.network` does not parse.
    #[error("its manifest's `capabilities.network` entry `{entry}` is invalid: {reason}")]
    NetworkEntry {
        /// The entry as written.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The manifest's `outputs` is not a JSON Schema the runtime can check outputs with.
    #[error(
        "its manifest's `outputs` is not a valid JSON Schema: {0}; fix it (`labhit ext check` shows it too)"
    )]
    OutputSchema(String),
    /// The manifest asks for more memory than this runtime allows any extension.
    #[error(
        "its manifest memory limit of {requested} bytes exceeds this runtime's maximum of {max} bytes"
    )]
    MemoryLimitTooLarge {
        /// `limits.memory` of the manifest.
        requested: u64,
        /// [`RuntimeConfig::max_memory_bytes`](crate::RuntimeConfig::max_memory_bytes).
        max: u64,
    },
}

/// Why a step ended without a [`StepOutcome`](crate::StepOutcome). Names the stage, the
/// extension and its version; [`StepError::failure`] says what happened.
#[derive(Debug, thiserror::Error)]
#[error("stage `{stage}`: extension `{extension}@{version}` {failure}")]
pub struct StepError {
    /// The stage id.
    pub stage: String,
    /// `category/name` of the extension.
    pub extension: String,
    /// The extension's version.
    pub version: semver::Version,
    /// What happened (boxed to keep `Result`s small).
    pub failure: Box<StepFailure>,
    /// Wall time from the start of the step to the failure (zero when it never started).
    pub elapsed: std::time::Duration,
}

/// What ended a step. The `Display` text is phrased to follow "extension `x@1.0.0` ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepFailure {
    /// The guest returned `step-error.invalid-config`.
    #[error("rejected its config: {0}")]
    InvalidConfig(String),
    /// The guest returned `step-error.failed`.
    #[error("failed: {0}")]
    Failed(String),
    /// The guest returned `step-error.cancelled`.
    #[error("stopped after cancellation: {0}")]
    Cancelled(String),
    /// The guest returned `step-error.internal`.
    #[error("reported an internal error: {0}")]
    Internal(String),
    /// The guest panicked (the message comes from the SDK's panic log line or from stderr).
    #[error("panicked: {message}")]
    Panic {
        /// The panic message.
        message: String,
    },
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...).
    #[error("trapped: {trap}{}", last_error.as_ref().map(|e| format!(" (last error logged: {e})")).unwrap_or_default())]
    Trap {
        /// wasmtime's description of the trap.
        trap: String,
        /// The last line the guest logged at error level, if any.
        last_error: Option<String>,
    },
    /// The step ran past its deadline and was interrupted.
    #[error("ran past its deadline of {} and was stopped", humantime(*timeout))]
    Timeout {
        /// The deadline that applied (the stage's timeout capped by the manifest's).
        timeout: Duration,
    },
    /// The guest needed more memory than its manifest allows.
    #[error("exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The step was cancelled and the guest kept running past the grace period.
    #[error("was cancelled and interrupted after a grace period of {}", humantime(*grace))]
    Interrupted {
        /// The grace period it was given.
        grace: Duration,
    },
    /// The guest called `wasi:cli/exit`, which ends a step as failed whatever the status.
    #[error("called `wasi:cli/exit` {} instead of returning from `execute`", exit_status(*status))]
    Exit {
        /// The exit status: `None` for WASI 0.2's `exit(err)`, which carries no code (Rust's
        /// `std::process::exit(3)` on `wasm32-wasip2` is one), `Some(n)` for `exit(ok)` (0)
        /// and `exit-with-code(n)`.
        status: Option<i32>,
    },
    /// The component could not be instantiated for this step (for example the instance pool
    /// is exhausted).
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The request could not be turned into a `step-input` or a sandbox.
    #[error("could not be started: {0}")]
    Setup(String),
    /// The guest returned a `step-output` that breaks the contract.
    #[error("returned an invalid step output: {0}")]
    InvalidOutput(String),
    /// The extension could not be loaded (only from [`Runtime::load_and_execute`](crate::Runtime::load_and_execute)).
    #[error("could not be loaded: {0}")]
    Load(String),
    /// The guest tried to add more bytes to the workspace than `limits.disk` allows; the
    /// write was refused with `insufficient-space`.
    #[error(
        "exceeded its disk limit of {} (what one step may add to the workspace); raise \
         `limits.disk` in its extension.toml", byte_size(*limit)
    )]
    DiskLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest tried to create more files, directories and links than `limits.files`
    /// allows; the creation was refused with `quota`.
    #[error(
        "exceeded its file limit of {limit} (files, directories and links one step may \
         create); raise `limits.files` in its extension.toml"
    )]
    FileLimit {
        /// The limit.
        limit: u64,
    },
    /// The guest tried to create a symbolic link that is absolute or leads outside the
    /// workspace; it was refused with `not-permitted`.
    #[error(
        "tried to create the symbolic link `{path}` -> `{target}`, which leads outside the \
         workspace; refused"
    )]
    EscapeAttempt {
        /// The workspace-relative path of the link.
        path: String,
        /// The target it asked for.
        target: String,
    },
    /// The step left links leading outside the workspace or special files in it; they were
    /// removed.
    #[error("{}", crate::boundary::BoundaryError::Trespass(found.clone()))]
    Trespass {
        /// What it left.
        found: Vec<crate::boundary::Trespass>,
    },
    /// The workspace could not be checked for what the step left in it.
    #[error("{0}")]
    Boundary(String),
}

impl StepFailure {
    /// A short stable code for the failure, for tools and summaries (`timeout`, `trap`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            StepFailure::InvalidConfig(_) => "invalid-config",
            StepFailure::Failed(_) => "failed",
            StepFailure::Cancelled(_) => "cancelled",
            StepFailure::Internal(_) => "internal",
            StepFailure::Panic { .. } => "panic",
            StepFailure::Trap { .. } => "trap",
            StepFailure::Timeout { .. } => "timeout",
            StepFailure::MemoryLimit { .. } => "memory-limit",
            StepFailure::Interrupted { .. } => "interrupted",
            StepFailure::Exit { .. } => "exit",
            StepFailure::Instantiate(_) => "instantiate",
            StepFailure::Setup(_) => "setup",
            StepFailure::InvalidOutput(_) => "invalid-output",
            StepFailure::Load(_) => "load",
            StepFailure::DiskLimit { .. } => "disk-limit",
            StepFailure::FileLimit { .. } => "file-limit",
            StepFailure::EscapeAttempt { .. } | StepFailure::Trespass { .. } => "workspace-escape",
            StepFailure::Boundary(_) => "workspace-check",
        }
    }
}

/// `16Mi`, `1Gi`, `1000`: a byte count in the manifest's own notation.
fn byte_size(bytes: u64) -> String {
    labhit_protocol::pipeline::ByteSize::from_bytes(bytes)
        .map_or_else(|_| format!("{bytes} bytes"), |size| size.to_string())
}

/// `1m30s`, `250ms`, `2h`: a short human form of a duration.
pub(crate) fn humantime(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    // Whole seconds in the pipeline format's canonical form (`1h30m`, `45s`).
    labhit_protocol::pipeline::DurationSpec::from_secs(d.as_secs())
        .map_or_else(|_| "0s".to_owned(), |spec| spec.to_string())
}

fn exit_status(status: Option<i32>) -> String {
    match status {
        Some(n) => format!("with status {n}"),
        None => "with a failure status (WASI 0.2 `exit` carries no code: return an exit code \
                 from `execute` to report one)"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short() {
        assert_eq!(humantime(Duration::from_millis(250)), "250ms");
        assert_eq!(humantime(Duration::from_secs(90)), "1m30s");
        assert_eq!(humantime(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn step_errors_name_stage_extension_and_version() {
        let err = StepError {
            stage: "build".into(),
            extension: "util/checksum".into(),
            version: semver::Version::new(1, 2, 3),
            failure: Box::new(StepFailure::Timeout {
                timeout: Duration::from_secs(5),
            }),
            elapsed: Duration::from_secs(5),
        };
        assert_eq!(
            err.to_string(),
            "stage `build`: extension `util/checksum@1.2.3` ran past its deadline of 5s and was stopped"
        );
    }
}
