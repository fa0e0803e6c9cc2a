//! [`Input`]: what the host tells an extension about the step, with the stage's `with`
//! already parsed into the extension's own `Config` type; [`Command`] for executors.
//!
//! [`RawInput`] is the untyped form both hosts (the WIT glue and the mock) build first;
//! [`parse_config`] turns the `with` JSON into `Config`, naming the field path on a mismatch.

use serde::de::DeserializeOwned;

use crate::context::WorkspaceAccess;
use crate::error::Error;

/// The host's cache decision for an executor step (WIT `cache-decision`). The host decides;
/// the executor obeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheDecision {
    /// Boot from this snapshot, skip the command, return exit code 0 and no snapshot.
    Hit(String),
    /// Run the command and, only if it succeeds, commit the result to this snapshot tag.
    MissBuildAs(String),
    /// Run the command and commit nothing.
    MissNoCommit,
}

/// The command an executor extension runs for a stage with both `use` and `run` (WIT
/// `command`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Command {
    /// The stage's `run` script, verbatim; run it with a POSIX shell in the workspace.
    pub script: String,
    /// The stage's `sandbox.image`, if any.
    pub image: Option<String>,
    /// The stage's `sandbox.timeout` in milliseconds, if any.
    pub timeout_ms: Option<u64>,
    /// The CPU request in millicores, if any.
    pub cpu_millicores: Option<u32>,
    /// The memory request in bytes, if any.
    pub memory_bytes: Option<u64>,
    /// The host's cache decision.
    pub cache: CacheDecision,
    /// The upstream step's snapshot to boot from instead of `image`, if any.
    pub parent_snapshot: Option<String>,
}

impl Command {
    /// A command running `script` that commits nothing, with no sandbox settings.
    pub fn new(script: impl Into<String>) -> Self {
        Self {
            script: script.into(),
            image: None,
            timeout_ms: None,
            cpu_millicores: None,
            memory_bytes: None,
            cache: CacheDecision::MissNoCommit,
            parent_snapshot: None,
        }
    }
}

/// Everything the host tells an extension about the step it executes, with the stage's
/// `with` parsed into `C`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Input<C> {
    /// The stage's `with`, parsed.
    pub config: C,
    /// The pipeline run (a UUID), the same for every step of one run.
    pub run_id: String,
    /// The stage id from the pipeline file, for example `build`.
    pub stage_id: String,
    /// A fresh UUID for this execution of the stage; use it to make side effects traceable.
    pub step_id: String,
    /// The stage's `use` as written, for example `util/checksum@^0.1`.
    pub use_ref: String,
    /// The environment the engine grants, sorted by name (never secrets).
    pub env: Vec<(String, String)>,
    /// For an executor extension running a stage with `run`: the command.
    pub command: Option<Command>,
}

impl<C> Input<C> {
    /// The granted environment variable `name`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The untyped input both hosts produce; `#[doc(hidden)]` plumbing.
#[derive(Debug, Clone)]
pub(crate) struct RawInput {
    pub(crate) config: String,
    pub(crate) run_id: String,
    pub(crate) stage_id: String,
    pub(crate) step_id: String,
    pub(crate) use_ref: String,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) workspace: String,
    pub(crate) access: WorkspaceAccess,
    pub(crate) command: Option<Command>,
}

impl RawInput {
    pub(crate) fn typed<C>(self, config: C) -> Input<C> {
        Input {
            config,
            run_id: self.run_id,
            stage_id: self.stage_id,
            step_id: self.step_id,
            use_ref: self.use_ref,
            env: self.env,
            command: self.command,
        }
    }
}

/// Parses the stage's `with` (a JSON object) into `C`.
///
/// This is the default of [`Extension::parse_config`](crate::Extension::parse_config).
///
/// # Errors
///
/// `invalid-config` whose message names the path of the offending field, for example
/// ``invalid `with`: at `values.port`: invalid type: string "x", expected u16``.
///
/// ```
/// #[derive(serde::Deserialize, Debug)]
/// struct Config { patterns: Vec<String> }
///
/// let err = labhit_sdk::parse_config::<Config>(r#"{"patterns": ["a", 1]}"#).unwrap_err();
/// assert_eq!(err.kind(), "invalid-config");
/// assert!(err.message().contains("`patterns[1]`"), "{err}");
/// ```
pub fn parse_config<C: DeserializeOwned>(json: &str) -> Result<C, Error> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let mut de = serde_json::Deserializer::from_str(json);
    let config = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = strip_position(err.inner());
        if path.is_empty() || path == "." || path == "?" {
            Error::invalid_config(format!("invalid `with`: {inner}"))
        } else {
            Error::invalid_config(format!("invalid `with`: at `{path}`: {inner}"))
        }
    })?;
    de.end().map_err(|err| {
        Error::invalid_config(format!("invalid `with`: {}", strip_position(&err)))
    })?;
    Ok(config)
}

/// serde_json's message without its " at line L column C" suffix, which points into the
/// host's re-serialized JSON, not into the pipeline file.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(at) if err.line() > 0 => text[..at].to_owned(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    #[allow(dead_code)]
    struct Config {
        patterns: Vec<String>,
        #[serde(default)]
        fail_on_skipped: bool,
        #[serde(default)]
        values: BTreeMap<String, Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    fn message(json: &str) -> String {
        match parse_config::<Config>(json) {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("expected invalid-config, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field_path() {
        assert_eq!(
            message(r#"{"patterns": "x"}"#),
            "invalid `with`: at `patterns`: invalid type: string \"x\", expected a sequence"
        );
        assert_eq!(
            message(r#"{"patterns": [], "values": {"web": {"port": "80"}}}"#),
            "invalid `with`: at `values.web.port`: invalid type: string \"80\", expected u16"
        );
        assert!(message(r#"{"patterns": [], "fail-on-skipped": 1}"#).contains("`fail-on-skipped`"));
    }

    #[test]
    fn names_missing_and_unknown_keys() {
        assert_eq!(message("{}"), "invalid `with`: missing field `patterns`");
        assert!(message(r#"{"patterns": [], "patern": 1}"#).contains("unknown field `patern`"));
        assert!(message(r#"{"patterns": []} trailing"#).contains("trailing characters"));
        assert_eq!(message("{"), "invalid `with`: EOF while parsing an object");
    }

    #[test]
    fn empty_config_is_an_empty_object() {
        #[derive(Deserialize)]
        struct Nothing {}
        assert!(parse_config::<Nothing>("").is_ok());
        assert!(parse_config::<Config>(r#"{"patterns": ["a"]}"#).is_ok());
    }
}
