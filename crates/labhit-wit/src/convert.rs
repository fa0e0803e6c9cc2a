//! Conversions between the WIT types of the contract and the `labhit-protocol` types, for
//! both faces of the bindings (feature `guest` and feature `host`).
//!
//! The generated types of the two faces are distinct Rust types with the same shape, so every
//! conversion below is written once, in a macro, and implemented for each face that is
//! enabled:
//!
//! | WIT (`types`, `log`) | `labhit-protocol` | direction |
//! |---|---|---|
//! | `step-output` | [`StepOutcome`] ([`StepResult`] + named outputs) | both; WIT → protocol checks artifact paths and duplicate names |
//! | `artifact` | [`ArtifactRef`] | both; WIT → protocol checks the path |
//! | `cache-decision` | [`CacheDecision`] | both, lossless |
//! | `workspace-access` | [`FilesystemAccess`] | both, lossless |
//! | `log.level` | [`LogLevel`] | both, lossless |
//! | `command` | [`ExecutorCommand`] (pieces of [`ExecutorInput`]) | both; seconds ⇔ milliseconds |
//! | `step-input` | [`StepSpec`], the engine-side description of a step | both; `with` ⇔ JSON text |
//!
//! Fallible conversions return [`ConvertError`], which names the field at fault.

use std::collections::BTreeMap;

use labhit_protocol::Value;
use labhit_protocol::executor::{
    ArtifactPathError, ArtifactRef, CacheDecision, CommandStep, DEFAULT_SHELL, ExecutorInput,
    StepResult,
};
use labhit_protocol::ids::{ParseIdError, RunId, SnapshotRef, StepId};
use labhit_protocol::manifest::FilesystemAccess;
use labhit_protocol::run::LogLevel;

/// The guest path of the stage workspace in this contract version (`step-input.workspace`).
pub const WORKSPACE: &str = "/workspace";

/// Why a value could not be converted; every case names the field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// An artifact path is not a workspace-relative path.
    #[error("`{field}` is not a valid artifact path: {source}")]
    ArtifactPath {
        /// The field, for example `step-output.artifacts[2].path`.
        field: String,
        /// Why the path was refused.
        #[source]
        source: ArtifactPathError,
    },
    /// A name occurs twice in a list of `(name, value)` pairs.
    #[error("`{field}` has the name `{name}` more than once")]
    DuplicateName {
        /// The field, for example `step-output.outputs`.
        field: &'static str,
        /// The repeated name.
        name: String,
    },
    /// An id is not a UUID.
    #[error("`{field}` is not a UUID: {source}")]
    Id {
        /// The field, `step-input.run-id` or `step-input.step-id`.
        field: &'static str,
        /// Why it did not parse.
        #[source]
        source: ParseIdError,
    },
    /// The stage's `with` is not a JSON object.
    #[error("`{field}` must be a JSON object, found {found}")]
    ConfigNotObject {
        /// The field, `step-input.config` or `with`.
        field: &'static str,
        /// What was found instead.
        found: String,
    },
    /// A number does not fit the range of the target field.
    #[error("`{field}` is {value}, which is out of range for the contract (at most {max})")]
    OutOfRange {
        /// The field, for example `step.timeout_secs`.
        field: &'static str,
        /// The value that does not fit.
        value: u64,
        /// The largest value that fits.
        max: u64,
    },
    /// A setting the WIT contract cannot express.
    #[error("`{field}` cannot be expressed in the WIT contract: {reason}")]
    Unsupported {
        /// The field, for example `step.shell`.
        field: &'static str,
        /// Why not.
        reason: &'static str,
    },
}

/// A `Result` whose error is a [`ConvertError`].
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;

/// What a step produced, on the protocol side: the [`StepResult`] (exit code, artifacts,
/// committed snapshot) plus the named outputs of `step-output.outputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// Exit code, committed snapshot and artifacts.
    pub result: StepResult,
    /// Named outputs, each name once.
    pub outputs: BTreeMap<String, String>,
}

/// The command an executor extension runs (WIT `command`): the pieces of an
/// [`ExecutorInput`] that a `step-input` carries besides ids and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorCommand {
    /// Script and sandbox settings. `shell` must be `None` or the default shell (the WIT
    /// contract always uses a POSIX shell) and `timeout_secs` travels as milliseconds.
    pub step: CommandStep,
    /// The host's cache decision.
    pub cache: CacheDecision,
    /// The upstream snapshot to boot from, if any.
    pub parent_snapshot: Option<SnapshotRef>,
}

impl ExecutorCommand {
    /// The command pieces of an [`ExecutorInput`].
    pub fn from_executor_input(input: &ExecutorInput) -> Self {
        Self {
            step: input.step.clone(),
            cache: input.cache_lookup.clone(),
            parent_snapshot: input.parent_snapshot.clone(),
        }
    }
}

/// The engine-side description of one step, from which a WIT `step-input` is built (and into
/// which one is read back).
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    /// The run.
    pub run_id: RunId,
    /// This execution of the stage.
    pub step_id: StepId,
    /// The stage id in the pipeline file.
    pub stage_id: String,
    /// The stage's `use` value as written.
    pub use_ref: String,
    /// The stage's `with`: an object, or [`Value::Null`] when the stage has none.
    pub with: Value,
    /// The environment granted to the step.
    pub env: BTreeMap<String, String>,
    /// The filesystem access the manifest grants.
    pub workspace_access: FilesystemAccess,
    /// The command, for an executor extension running a `run:` stage.
    pub command: Option<ExecutorCommand>,
}

impl StepSpec {
    /// A spec for the stage `stage_id` using `use_ref`, with no `with`, no environment, no
    /// filesystem and no command.
    pub fn new(
        run_id: RunId,
        step_id: StepId,
        stage_id: impl Into<String>,
        use_ref: impl Into<String>,
    ) -> Self {
        Self {
            run_id,
            step_id,
            stage_id: stage_id.into(),
            use_ref: use_ref.into(),
            with: Value::Null,
            env: BTreeMap::new(),
            workspace_access: FilesystemAccess::None,
            command: None,
        }
    }

    /// The stage's `with` as the text of a JSON object (`{}` when absent).
    pub fn config_json(&self) -> Result<String> {
        match &self.with {
            Value::Null => Ok("{}".to_owned()),
            Value::Object(_) => Ok(self.with.to_json().to_string()),
            other => Err(ConvertError::ConfigNotObject {
                field: "with",
                found: other.type_name().to_owned(),
            }),
        }
    }
}

/// Parses `step-input.config` into a [`Value::Object`].
pub fn parse_config(config: &str) -> Result<Value> {
    let json: serde_json::Value =
        serde_json::from_str(config).map_err(|err| ConvertError::ConfigNotObject {
            field: "step-input.config",
            found: format!("text that is not JSON ({err})"),
        })?;
    let value = Value::from_json(&json);
    match value {
        Value::Object(_) => Ok(value),
        other => Err(ConvertError::ConfigNotObject {
            field: "step-input.config",
            found: other.type_name().to_owned(),
        }),
    }
}

fn unique(
    field: &'static str,
    pairs: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (name, value) in pairs {
        if map.contains_key(&name) {
            return Err(ConvertError::DuplicateName { field, name });
        }
        map.insert(name, value);
    }
    Ok(map)
}

fn secs_to_ms(secs: u64) -> Result<u64> {
    secs.checked_mul(1000).ok_or(ConvertError::OutOfRange {
        field: "step.timeout_secs",
        value: secs,
        max: u64::MAX / 1000,
    })
}

fn ms_to_secs(ms: u64) -> u64 {
    // Round up so that a deadline never gets shorter.
    ms.div_ceil(1000)
}

/// Implements every conversion for one face of the bindings; `$types` and `$level` name
/// that face's generated `types` module and `log::Level`.
macro_rules! conversions {
    ($types:path, $level:path) => {
        use $types as wit;
        use $level as WitLevel;
        use super::*;

        impl From<CacheDecision> for wit::CacheDecision {
            fn from(decision: CacheDecision) -> Self {
                match decision {
                    CacheDecision::Hit { tag } => Self::Hit(tag.0),
                    CacheDecision::MissBuildAs { tag } => Self::MissBuildAs(tag.0),
                    CacheDecision::MissNoCommit => Self::MissNoCommit,
                }
            }
        }

        impl From<wit::CacheDecision> for CacheDecision {
            fn from(decision: wit::CacheDecision) -> Self {
                match decision {
                    wit::CacheDecision::Hit(tag) => Self::Hit {
                        tag: SnapshotRef(tag),
                    },
                    wit::CacheDecision::MissBuildAs(tag) => Self::MissBuildAs {
                        tag: SnapshotRef(tag),
                    },
                    wit::CacheDecision::MissNoCommit => Self::MissNoCommit,
                }
            }
        }

        impl From<FilesystemAccess> for wit::WorkspaceAccess {
            fn from(access: FilesystemAccess) -> Self {
                match access {
                    FilesystemAccess::None => Self::None,
                    FilesystemAccess::Read => Self::ReadOnly,
                    FilesystemAccess::ReadWrite => Self::ReadWrite,
                }
            }
        }

        impl From<wit::WorkspaceAccess> for FilesystemAccess {
            fn from(access: wit::WorkspaceAccess) -> Self {
                match access {
                    wit::WorkspaceAccess::None => Self::None,
                    wit::WorkspaceAccess::ReadOnly => Self::Read,
                    wit::WorkspaceAccess::ReadWrite => Self::ReadWrite,
                }
            }
        }

        impl From<LogLevel> for WitLevel {
            fn from(level: LogLevel) -> Self {
                match level {
                    LogLevel::Trace => Self::Trace,
                    LogLevel::Debug => Self::Debug,
                    LogLevel::Info => Self::Info,
                    LogLevel::Warn => Self::Warn,
                    LogLevel::Error => Self::Error,
                }
            }
        }

        impl From<WitLevel> for LogLevel {
            fn from(level: WitLevel) -> Self {
                match level {
                    WitLevel::Trace => Self::Trace,
                    WitLevel::Debug => Self::Debug,
                    WitLevel::Info => Self::Info,
                    WitLevel::Warn => Self::Warn,
                    WitLevel::Error => Self::Error,
                }
            }
        }

        impl From<ArtifactRef> for wit::Artifact {
            fn from(artifact: ArtifactRef) -> Self {
                Self {
                    path: artifact.path.as_str().to_owned(),
                    mime: artifact.mime,
                    size: artifact.size_bytes,
                }
            }
        }

        impl TryFrom<wit::Artifact> for ArtifactRef {
            type Error = ConvertError;

            fn try_from(artifact: wit::Artifact) -> Result<Self> {
                artifact_ref(artifact, "artifact.path".to_owned())
            }
        }

        fn artifact_ref(artifact: wit::Artifact, field: String) -> Result<ArtifactRef> {
            ArtifactRef::new(artifact.path, artifact.mime, artifact.size)
                .map_err(|source| ConvertError::ArtifactPath { field, source })
        }

        impl From<StepOutcome> for wit::StepOutput {
            fn from(outcome: StepOutcome) -> Self {
                Self {
                    exit_code: outcome.result.exit_code,
                    outputs: outcome.outputs.into_iter().collect(),
                    artifacts: outcome
                        .result
                        .artifacts
                        .into_iter()
                        .map(Into::into)
                        .collect(),
                    committed_snapshot: outcome.result.committed_snapshot.map(|tag| tag.0),
                }
            }
        }

        impl TryFrom<wit::StepOutput> for StepOutcome {
            type Error = ConvertError;

            fn try_from(output: wit::StepOutput) -> Result<Self> {
                let artifacts = output
                    .artifacts
                    .into_iter()
                    .enumerate()
                    .map(|(i, artifact)| {
                        artifact_ref(artifact, format!("step-output.artifacts[{i}].path"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Self {
                    result: StepResult {
                        exit_code: output.exit_code,
                        committed_snapshot: output.committed_snapshot.map(SnapshotRef),
                        artifacts,
                    },
                    outputs: unique("step-output.outputs", output.outputs)?,
                })
            }
        }

        impl TryFrom<&ExecutorCommand> for wit::Command {
            type Error = ConvertError;

            fn try_from(command: &ExecutorCommand) -> Result<Self> {
                let step = &command.step;
                if step
                    .shell
                    .as_ref()
                    .is_some_and(|shell| shell.iter().ne(DEFAULT_SHELL.iter()))
                {
                    return Err(ConvertError::Unsupported {
                        field: "step.shell",
                        reason: "executors always run the script with a POSIX shell",
                    });
                }
                let cpu_millicores = step
                    .cpu_millis
                    .map(|cpu| {
                        u32::try_from(cpu).map_err(|_| ConvertError::OutOfRange {
                            field: "step.cpu_millis",
                            value: cpu,
                            max: u64::from(u32::MAX),
                        })
                    })
                    .transpose()?;
                Ok(Self {
                    script: step.script.clone(),
                    image: step.image.clone(),
                    timeout_ms: step.timeout_secs.map(secs_to_ms).transpose()?,
                    cpu_millicores,
                    memory_bytes: step.memory_bytes,
                    cache: command.cache.clone().into(),
                    parent_snapshot: command.parent_snapshot.as_ref().map(|tag| tag.0.clone()),
                })
            }
        }

        impl From<wit::Command> for ExecutorCommand {
            fn from(command: wit::Command) -> Self {
                Self {
                    step: CommandStep {
                        script: command.script,
                        shell: None,
                        image: command.image,
                        timeout_secs: command.timeout_ms.map(ms_to_secs),
                        cpu_millis: command.cpu_millicores.map(u64::from),
                        memory_bytes: command.memory_bytes,
                    },
                    cache: command.cache.into(),
                    parent_snapshot: command.parent_snapshot.map(SnapshotRef),
                }
            }
        }

        impl TryFrom<&StepSpec> for wit::StepInput {
            type Error = ConvertError;

            fn try_from(spec: &StepSpec) -> Result<Self> {
                Ok(Self {
                    run_id: spec.run_id.to_string(),
                    stage_id: spec.stage_id.clone(),
                    step_id: spec.step_id.to_string(),
                    use_ref: spec.use_ref.clone(),
                    config: spec.config_json()?,
                    env: spec
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    workspace: WORKSPACE.to_owned(),
                    workspace_access: spec.workspace_access.into(),
                    command: spec.command.as_ref().map(TryInto::try_into).transpose()?,
                })
            }
        }

        impl TryFrom<wit::StepInput> for StepSpec {
            type Error = ConvertError;

            fn try_from(input: wit::StepInput) -> Result<Self> {
                Ok(Self {
                    run_id: RunId::parse(&input.run_id).map_err(|source| ConvertError::Id {
                        field: "step-input.run-id",
                        source,
                    })?,
                    step_id: StepId::parse(&input.step_id).map_err(|source| {
                        ConvertError::Id {
                            field: "step-input.step-id",
                            source,
                        }
                    })?,
                    stage_id: input.stage_id,
                    use_ref: input.use_ref,
                    with: parse_config(&input.config)?,
                    env: unique("step-input.env", input.env)?,
                    workspace_access: input.workspace_access.into(),
                    command: input.command.map(Into::into),
                })
            }
        }

        #[cfg(test)]
        mod tests {
            use super::*;

            fn spec() -> StepSpec {
                let input = ExecutorInput::example();
                let mut spec = StepSpec::new(input.run_id, input.step_id, "build", "exec/oci@^1");
                spec.with = Value::from(serde_json::json!({"depth": 1, "tags": ["a", "b"]}));
                spec.env = BTreeMap::from([("CI".to_owned(), "true".to_owned())]);
                spec.workspace_access = FilesystemAccess::ReadWrite;
                spec.command = Some(ExecutorCommand::from_executor_input(&input));
                spec
            }

            #[test]
            fn step_input_round_trips() {
                let spec = spec();
                let input = wit::StepInput::try_from(&spec).expect("converts");
                assert_eq!(input.config, r#"{"depth":1,"tags":["a","b"]}"#);
                assert_eq!(input.workspace, "/workspace");
                assert_eq!(input.workspace_access, wit::WorkspaceAccess::ReadWrite);
                assert_eq!(input.env, [("CI".to_owned(), "true".to_owned())]);
                let command = input.command.clone().expect("command");
                assert_eq!(command.timeout_ms, Some(1_800_000));
                assert_eq!(command.cpu_millicores, Some(2000));
                assert_eq!(StepSpec::try_from(input).expect("converts back"), spec);
            }

            #[test]
            fn step_input_without_with_has_an_empty_object() {
                let mut spec = spec();
                spec.with = Value::Null;
                spec.command = None;
                let input = wit::StepInput::try_from(&spec).expect("converts");
                assert_eq!(input.config, "{}");
                assert_eq!(input.command, None);
            }

            #[test]
            fn bad_step_inputs_name_the_field() {
                let mut spec = spec();
                spec.with = Value::Array(Vec::new());
                let err = wit::StepInput::try_from(&spec).expect_err("not an object");
                assert_eq!(err.to_string(), "`with` must be a JSON object, found array");

                let mut spec = self::spec();
                if let Some(command) = &mut spec.command {
                    command.step.shell = Some(vec!["bash".to_owned(), "-c".to_owned()]);
                }
                let err = wit::StepInput::try_from(&spec).expect_err("shell");
                assert!(err.to_string().starts_with("`step.shell`"), "{err}");

                let mut spec = self::spec();
                if let Some(command) = &mut spec.command {
                    command.step.cpu_millis = Some(u64::MAX);
                }
                let err = wit::StepInput::try_from(&spec).expect_err("cpu");
                assert!(err.to_string().starts_with("`step.cpu_millis`"), "{err}");

                let mut input = wit::StepInput::try_from(&self::spec()).expect("converts");
                input.run_id = "nope".to_owned();
                let err = StepSpec::try_from(input).expect_err("bad id");
                assert!(err.to_string().starts_with("`step-input.run-id`"), "{err}");

                let mut input = wit::StepInput::try_from(&self::spec()).expect("converts");
                input.config = "[1]".to_owned();
                let err = StepSpec::try_from(input).expect_err("array config");
                assert!(err.to_string().starts_with("`step-input.config`"), "{err}");

                let mut input = wit::StepInput::try_from(&self::spec()).expect("converts");
                input.env.push(("CI".to_owned(), "false".to_owned()));
                let err = StepSpec::try_from(input).expect_err("duplicate env");
                assert_eq!(
                    err.to_string(),
                    "`step-input.env` has the name `CI` more than once"
                );
            }

            #[test]
            fn timeout_rounds_up_to_whole_seconds() {
                let command = wit::Command {
                    script: "true".to_owned(),
                    image: None,
                    timeout_ms: Some(1_500),
                    cpu_millicores: None,
                    memory_bytes: None,
                    cache: wit::CacheDecision::MissNoCommit,
                    parent_snapshot: None,
                };
                assert_eq!(ExecutorCommand::from(command).step.timeout_secs, Some(2));
            }

            #[test]
            fn step_output_round_trips() {
                let outcome = StepOutcome {
                    result: StepResult::example(),
                    outputs: BTreeMap::from([
                        ("passed".to_owned(), "12".to_owned()),
                        ("failed".to_owned(), "0".to_owned()),
                    ]),
                };
                let output = wit::StepOutput::from(outcome.clone());
                assert_eq!(output.exit_code, outcome.result.exit_code);
                assert_eq!(output.artifacts.len(), outcome.result.artifacts.len());
                assert_eq!(StepOutcome::try_from(output).expect("converts back"), outcome);
            }

            #[test]
            fn bad_step_outputs_name_the_field() {
                let artifact = |path: &str| wit::Artifact {
                    path: path.to_owned(),
                    mime: "text/plain".to_owned(),
                    size: 1,
                };
                let output = wit::StepOutput {
                    exit_code: 0,
                    outputs: Vec::new(),
                    artifacts: vec![artifact("ok.txt"), artifact("../escape")],
                    committed_snapshot: None,
                };
                let err = StepOutcome::try_from(output).expect_err("escaping path");
                assert!(
                    err.to_string().starts_with("`step-output.artifacts[1].path`"),
                    "{err}"
                );
                let err = ArtifactRef::try_from(artifact("/abs")).expect_err("absolute path");
                assert!(err.to_string().starts_with("`artifact.path`"), "{err}");

                let output = wit::StepOutput {
                    exit_code: 1,
                    outputs: vec![("a".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())],
                    artifacts: Vec::new(),
                    committed_snapshot: None,
                };
                let err = StepOutcome::try_from(output).expect_err("duplicate");
                assert_eq!(
                    err.to_string(),
                    "`step-output.outputs` has the name `a` more than once"
                );
            }

            #[test]
            fn artifact_round_trips() {
                let artifact = ArtifactRef::example();
                let wit = wit::Artifact::from(artifact.clone());
                assert_eq!(wit.path, "target/release/app.tar.gz");
                assert_eq!(wit.size, artifact.size_bytes);
                assert_eq!(ArtifactRef::try_from(wit).expect("converts back"), artifact);
            }

            #[test]
            fn enums_round_trip() {
                for decision in [
                    CacheDecision::Hit { tag: SnapshotRef::new("a") },
                    CacheDecision::MissBuildAs { tag: SnapshotRef::new("b") },
                    CacheDecision::MissNoCommit,
                ] {
                    let wit = wit::CacheDecision::from(decision.clone());
                    assert_eq!(CacheDecision::from(wit), decision);
                }
                assert_eq!(
                    wit::CacheDecision::from(CacheDecision::Hit { tag: SnapshotRef::new("t") }),
                    wit::CacheDecision::Hit("t".to_owned())
                );
                for access in [
                    FilesystemAccess::None,
                    FilesystemAccess::Read,
                    FilesystemAccess::ReadWrite,
                ] {
                    assert_eq!(FilesystemAccess::from(wit::WorkspaceAccess::from(access)), access);
                }
                for level in [
                    LogLevel::Trace,
                    LogLevel::Debug,
                    LogLevel::Info,
                    LogLevel::Warn,
                    LogLevel::Error,
                ] {
                    assert_eq!(LogLevel::from(WitLevel::from(level)), level);
                }
            }
        }
    };
}

/// The conversions for the guest face ([`crate::guest`]).
#[cfg(feature = "guest")]
mod guest_face {
    conversions!(
        crate::guest::labhit::extension::types,
        crate::guest::labhit::extension::log::Level
    );
}

/// The conversions for the host face ([`crate::host`]).
#[cfg(feature = "host")]
mod host_face {
    conversions!(
        crate::host::labhit::extension::types,
        crate::host::labhit::extension::log::Level
    );
}
