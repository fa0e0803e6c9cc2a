//! The executor contract: what a host hands an executor for one `run:` step
//! ([`ExecutorInput`]) and what the executor hands back ([`StepResult`]).
//!
//! An *executor* runs the shell script of a `run:` stage, in a container or sandbox of its
//! choosing. Caching is decided by the host, never by the executor: the host looks up its
//! cache and sends a [`CacheDecision`]; the executor obeys it and reports what it did. Two
//! rules tie a result to its decision, checked by [`StepResult::validate`]:
//!
//! * a failed step (non-zero exit code) never commits a snapshot;
//! * a snapshot is committed exactly when the decision was [`CacheDecision::MissBuildAs`]
//!   and the step succeeded, and then under the decided tag.
//!
//! # Wire shape
//!
//! JSON: structs are objects with snake_case field names; optional fields are written as
//! `null` when absent and may be omitted on input; unknown fields are errors.
//! [`CacheDecision`] is internally tagged by `kind` (`{"kind": "hit", "tag": "…"}`).
//!
//! Borsh: struct fields in declaration order; `Option` as a `0`/`1` tag byte then the value;
//! strings and vectors as a `u32` length then the items; maps as a `u32` count then the
//! entries sorted by key; enums as a `u8` variant index in declaration order, then the
//! variant's fields. Ids are described in [`crate::ids`].

use std::collections::BTreeMap;
use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{ArchiveId, RunId, SnapshotRef, StepId};

/// The shell command line an executor uses when [`CommandStep::shell`] is absent: the
/// script is run by a POSIX shell that stops at the first failing command.
pub const DEFAULT_SHELL: [&str; 3] = ["sh", "-e", "-c"];

/// The command a `run:` stage executes, as the executor needs it: the script plus the
/// sandbox settings that shape how it runs.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(deny_unknown_fields)]
#[schemars(example = CommandStep::example())]
pub struct CommandStep {
    /// The script of the stage's `run:` key, verbatim. May span several lines; it is passed
    /// to the shell as a single argument.
    pub script: String,
    /// The program and leading arguments that run the script: the executor appends the
    /// script as the last argument and runs the result. `null` means `["sh", "-e", "-c"]`.
    /// When present it must not be empty.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub shell: Option<Vec<String>>,
    /// The container image to run in (from the stage's `sandbox.image`), as an OCI reference
    /// such as `rust:1.95-slim`. `null` lets the executor choose its default environment. An
    /// executor that cannot honour an image fails the step rather than ignore it. When the
    /// input carries a `parent_snapshot`, the executor boots from that instead.
    #[serde(default)]
    pub image: Option<String>,
    /// The step's deadline in seconds (from `sandbox.timeout`), counted from the start of the
    /// command. On expiry the executor kills the command and reports a failure. `null`: no
    /// deadline beyond the host's own.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub timeout_secs: Option<u64>,
    /// CPU limit in thousandths of a core (from `sandbox.resources.cpu`: `2` is `2000`,
    /// `"500m"` is `500`). `null`: no limit requested.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub cpu_millis: Option<u64>,
    /// Memory limit in bytes (from `sandbox.resources.memory`: `4Gi` is `4294967296`).
    /// `null`: no limit requested.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub memory_bytes: Option<u64>,
}

impl CommandStep {
    /// A step that runs `script` with every setting at its default.
    pub fn new(script: impl Into<String>) -> Self {
        Self {
            script: script.into(),
            shell: None,
            image: None,
            timeout_secs: None,
            cpu_millis: None,
            memory_bytes: None,
        }
    }

    /// The full command line: the shell (or [`DEFAULT_SHELL`]) followed by the script.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = match &self.shell {
            Some(shell) => shell.clone(),
            None => DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect(),
        };
        argv.push(self.script.clone());
        argv
    }

    /// Checks the settings: a present shell is non-empty, and limits are positive.
    pub fn validate(&self) -> Result<(), InputError> {
        if self.shell.as_ref().is_some_and(Vec::is_empty) {
            return Err(InputError::EmptyShell);
        }
        for (field, value) in [
            ("timeout_secs", self.timeout_secs),
            ("cpu_millis", self.cpu_millis),
            ("memory_bytes", self.memory_bytes),
        ] {
            if value == Some(0) {
                return Err(InputError::ZeroLimit { field });
            }
        }
        Ok(())
    }

    /// A representative value (shown as the example in the JSON Schema).
    pub fn example() -> Self {
        Self {
            script: "cargo build --release\ncargo test --release\n".to_owned(),
            shell: None,
            image: Some("rust:1.95-slim".to_owned()),
            timeout_secs: Some(1800),
            cpu_millis: Some(2000),
            memory_bytes: Some(4 << 30),
        }
    }
}

/// The host's cache decision for one step. The host decides; the executor obeys and never
/// second-guesses it.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Serialize, JsonSchema, BorshSerialize, BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schemars(example = CacheDecision::MissBuildAs { tag: SnapshotRef::new("labhit-cache/build:4f2a9c81") })]
pub enum CacheDecision {
    /// Cache hit: boot from the snapshot `tag` and skip the command. The step succeeds
    /// without running anything and commits nothing.
    Hit {
        /// The snapshot to boot from.
        tag: SnapshotRef,
    },
    /// Cache miss: run the command; if it succeeds, commit the resulting filesystem as the
    /// snapshot `tag` and report it as the result's `committed_snapshot`.
    MissBuildAs {
        /// The reference to commit the snapshot under.
        tag: SnapshotRef,
    },
    /// Cache miss, and the step is not cacheable: run the command and commit nothing.
    MissNoCommit,
}

/// The decoding form of [`CacheDecision`]. serde ignores unknown fields of unit variants
/// even under `deny_unknown_fields`, so `miss_no_commit` is decoded as an empty struct
/// variant, which refuses them like the schema does.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum CacheDecisionRepr {
    Hit { tag: SnapshotRef },
    MissBuildAs { tag: SnapshotRef },
    MissNoCommit {},
}

impl<'de> Deserialize<'de> for CacheDecision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match CacheDecisionRepr::deserialize(deserializer)? {
            CacheDecisionRepr::Hit { tag } => CacheDecision::Hit { tag },
            CacheDecisionRepr::MissBuildAs { tag } => CacheDecision::MissBuildAs { tag },
            CacheDecisionRepr::MissNoCommit {} => CacheDecision::MissNoCommit,
        })
    }
}

impl CacheDecision {
    /// The JSON `kind` of this decision (`hit`, `miss_build_as`, `miss_no_commit`).
    pub fn kind(&self) -> &'static str {
        match self {
            CacheDecision::Hit { .. } => "hit",
            CacheDecision::MissBuildAs { .. } => "miss_build_as",
            CacheDecision::MissNoCommit => "miss_no_commit",
        }
    }

    /// Whether the executor runs the command (every decision but [`CacheDecision::Hit`]).
    pub fn runs_command(&self) -> bool {
        !matches!(self, CacheDecision::Hit { .. })
    }

    /// The tag a successful run must commit to, if any.
    pub fn commit_tag(&self) -> Option<&SnapshotRef> {
        match self {
            CacheDecision::MissBuildAs { tag } => Some(tag),
            _ => None,
        }
    }
}

impl fmt::Display for CacheDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheDecision::Hit { tag } => write!(f, "hit `{tag}`"),
            CacheDecision::MissBuildAs { tag } => write!(f, "miss, build as `{tag}`"),
            CacheDecision::MissNoCommit => f.write_str("miss, no commit"),
        }
    }
}

/// Everything an executor needs to run one step. Sent by the host; the executor must not
/// act on anything not in here.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(deny_unknown_fields)]
#[schemars(example = ExecutorInput::example())]
pub struct ExecutorInput {
    /// The command to run.
    pub step: CommandStep,
    /// The archive of the stage workspace; the executor fetches it from the host and unpacks
    /// it at `workdir` before running the command (unless booting from a snapshot that
    /// already contains it).
    pub workspace_archive_id: ArchiveId,
    /// Environment variables for the command, exactly as granted by the engine (secrets
    /// included, so executors must not log them). Names are non-empty and contain neither
    /// `=` nor NUL.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Absolute path, inside the executor's environment, of the workspace directory the
    /// command starts in, e.g. `/workspace`.
    pub workdir: String,
    /// The run this step belongs to.
    pub run_id: RunId,
    /// This step execution.
    pub step_id: StepId,
    /// The host's cache decision for this step; the executor obeys it.
    pub cache_lookup: CacheDecision,
    /// The snapshot committed by the upstream step of this chain, if any. When present the
    /// executor boots from it instead of `step.image`, so a step sees the filesystem its
    /// predecessor left behind.
    #[serde(default)]
    pub parent_snapshot: Option<SnapshotRef>,
}

impl ExecutorInput {
    /// Checks what the types alone do not: the step settings ([`CommandStep::validate`]),
    /// environment variable names and an absolute `workdir`.
    pub fn validate(&self) -> Result<(), InputError> {
        self.step.validate()?;
        if let Some(name) = self
            .env
            .keys()
            .find(|name| name.is_empty() || name.contains(['=', '\0']))
        {
            return Err(InputError::InvalidEnvName { name: name.clone() });
        }
        if !self.workdir.starts_with('/') {
            return Err(InputError::RelativeWorkdir {
                workdir: self.workdir.clone(),
            });
        }
        Ok(())
    }

    /// A representative value (shown as the example in the JSON Schema).
    pub fn example() -> Self {
        Self {
            step: CommandStep::example(),
            workspace_archive_id: ArchiveId(uuid::Uuid::from_u128(
                0x9a8b7c6d_5e4f_4a3b_8c2d_1e0f9a8b7c6d,
            )),
            env: BTreeMap::from([
                ("CARGO_TERM_COLOR".to_owned(), "never".to_owned()),
                ("CI".to_owned(), "true".to_owned()),
            ]),
            workdir: "/workspace".to_owned(),
            run_id: RunId(uuid::Uuid::from_u128(
                0x0b7c6a1e_3f52_4c8e_9d4a_5b6f7e8d9c0a,
            )),
            step_id: StepId(uuid::Uuid::from_u128(
                0x5e3d2c1b_0a9f_4e8d_8c7b_6a5f4e3d2c1b,
            )),
            cache_lookup: CacheDecision::MissBuildAs {
                tag: SnapshotRef::new("labhit-cache/build:4f2a9c81"),
            },
            parent_snapshot: Some(SnapshotRef::new("labhit-cache/fetch:77c0e1d2")),
        }
    }
}

/// An [`ExecutorInput`] that is well-typed but not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// `step.shell` is present but empty.
    #[error("step shell is an empty command line; omit it to use the default `sh -e -c`")]
    EmptyShell,
    /// A limit is zero.
    #[error("step `{field}` is 0; omit it for no limit")]
    ZeroLimit {
        /// The field (`timeout_secs`, `cpu_millis` or `memory_bytes`).
        field: &'static str,
    },
    /// An environment variable name is empty or contains `=` or NUL.
    #[error("environment variable name {name:?} is empty or contains `=` or NUL")]
    InvalidEnvName {
        /// The offending name.
        name: String,
    },
    /// `workdir` is not an absolute path.
    #[error("workdir `{workdir}` is not an absolute path")]
    RelativeWorkdir {
        /// The offending path.
        workdir: String,
    },
}

/// What an executor reports after a step.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(deny_unknown_fields)]
#[schemars(example = StepResult::example())]
pub struct StepResult {
    /// The command's exit code; `0` is success. A cache hit reports `0`. A command killed by
    /// a signal or a deadline reports a non-zero code chosen by the executor
    /// (conventionally `128 + signal`).
    pub exit_code: i32,
    /// The snapshot committed for this step: the `tag` of a `miss_build_as` decision when
    /// the command succeeded, otherwise `null`. A failed step never commits a snapshot.
    #[serde(default)]
    pub committed_snapshot: Option<SnapshotRef>,
    /// Files the step produced that the host should collect, in the order produced.
    #[serde(default)]
    pub artifacts: Vec<ArtifactRef>,
}

impl StepResult {
    /// A result, checked against the rule that needs no decision: a failed step never
    /// commits a snapshot.
    pub fn new(
        exit_code: i32,
        committed_snapshot: Option<SnapshotRef>,
        artifacts: Vec<ArtifactRef>,
    ) -> Result<Self, StepResultError> {
        if exit_code != 0
            && let Some(snapshot) = committed_snapshot
        {
            return Err(StepResultError::FailedStepCommitted {
                exit_code,
                snapshot,
            });
        }
        Ok(Self {
            exit_code,
            committed_snapshot,
            artifacts,
        })
    }

    /// A successful step that committed nothing.
    pub fn success(artifacts: Vec<ArtifactRef>) -> Self {
        Self {
            exit_code: 0,
            committed_snapshot: None,
            artifacts,
        }
    }

    /// A failed step. `exit_code` 0 is turned into 1, since a failure must not look like
    /// success.
    pub fn failure(exit_code: i32) -> Self {
        Self {
            exit_code: if exit_code == 0 { 1 } else { exit_code },
            committed_snapshot: None,
            artifacts: Vec::new(),
        }
    }

    /// Whether the step succeeded (exit code 0).
    pub fn is_success(&self) -> bool {
        self.exit_code == 0
    }

    /// Checks that this result obeys `decision`:
    ///
    /// * a failed step never commits a snapshot;
    /// * only a `miss_build_as` decision allows a commit, and then only to its tag;
    /// * a successful `miss_build_as` step must report the commit.
    pub fn validate(&self, decision: &CacheDecision) -> Result<(), StepResultError> {
        match (&self.committed_snapshot, decision) {
            (Some(snapshot), _) if !self.is_success() => {
                Err(StepResultError::FailedStepCommitted {
                    exit_code: self.exit_code,
                    snapshot: snapshot.clone(),
                })
            }
            (Some(snapshot), CacheDecision::MissBuildAs { tag }) if snapshot != tag => {
                Err(StepResultError::WrongCommitTag {
                    expected: tag.clone(),
                    actual: snapshot.clone(),
                })
            }
            (Some(snapshot), CacheDecision::Hit { .. } | CacheDecision::MissNoCommit) => {
                Err(StepResultError::UnexpectedCommit {
                    decision: decision.kind(),
                    snapshot: snapshot.clone(),
                })
            }
            (None, CacheDecision::MissBuildAs { tag }) if self.is_success() => {
                Err(StepResultError::MissingCommit { tag: tag.clone() })
            }
            _ => Ok(()),
        }
    }

    /// A representative value (shown as the example in the JSON Schema).
    pub fn example() -> Self {
        Self {
            exit_code: 0,
            committed_snapshot: Some(SnapshotRef::new("labhit-cache/build:4f2a9c81")),
            artifacts: vec![ArtifactRef::example()],
        }
    }
}

/// A [`StepResult`] that breaks the executor contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepResultError {
    /// A step with a non-zero exit code reported a snapshot.
    #[error(
        "step failed with exit code {exit_code} but committed snapshot `{snapshot}`; a failed step never commits"
    )]
    FailedStepCommitted {
        /// The step's exit code.
        exit_code: i32,
        /// The snapshot it should not have committed.
        snapshot: SnapshotRef,
    },
    /// A `miss_build_as` step committed under another tag than the host chose.
    #[error("step committed snapshot `{actual}` but the host asked for `{expected}`")]
    WrongCommitTag {
        /// The tag of the decision.
        expected: SnapshotRef,
        /// The tag reported.
        actual: SnapshotRef,
    },
    /// A step committed although the decision was not `miss_build_as`.
    #[error(
        "step committed snapshot `{snapshot}` although the cache decision was `{decision}`, which commits nothing"
    )]
    UnexpectedCommit {
        /// The decision's `kind`.
        decision: &'static str,
        /// The snapshot reported.
        snapshot: SnapshotRef,
    },
    /// A successful `miss_build_as` step reported no commit.
    #[error("step succeeded but did not commit snapshot `{tag}` as the host asked")]
    MissingCommit {
        /// The tag of the decision.
        tag: SnapshotRef,
    },
}

/// A workspace-relative path of a file or directory, with `/` as the separator.
///
/// Valid paths are non-empty, not absolute (no leading `/`), contain no `..` component, no
/// empty component (`a//b`, trailing `/`), no backslash and no NUL. `.` components are
/// allowed. The checks run whenever a path is built or decoded, so a held `ArtifactPath` is
/// always valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    /// The JSON Schema pattern equivalent to the checks of [`ArtifactPath::new`].
    pub const PATTERN: &'static str = r"^(?:[^/\\\x00.][^/\\\x00]*|\.|\.[^/\\\x00.][^/\\\x00]*|\.\.[^/\\\x00]+)(?:/(?:[^/\\\x00.][^/\\\x00]*|\.|\.[^/\\\x00.][^/\\\x00]*|\.\.[^/\\\x00]+))*$";

    /// Validates and wraps `path`.
    pub fn new(path: impl Into<String>) -> Result<Self, ArtifactPathError> {
        let path = path.into();
        let problem = if path.is_empty() {
            Some("it is empty")
        } else if path.starts_with('/') {
            Some("it is absolute")
        } else if path.contains('\\') {
            Some("it contains a backslash (use `/`)")
        } else if path.contains('\0') {
            Some("it contains NUL")
        } else if path.split('/').any(|c| c == "..") {
            Some("it has a `..` component")
        } else if path.split('/').any(str::is_empty) {
            Some("it has an empty component")
        } else {
            None
        };
        match problem {
            Some(reason) => Err(ArtifactPathError { path, reason }),
            None => Ok(Self(path)),
        }
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArtifactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ArtifactPath {
    type Err = ArtifactPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for ArtifactPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for ArtifactPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ArtifactPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(<String as Deserialize>::deserialize(deserializer)?)
            .map_err(serde::de::Error::custom)
    }
}

impl BorshSerialize for ArtifactPath {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.0, writer)
    }
}

impl BorshDeserialize for ArtifactPath {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        Self::new(String::deserialize_reader(reader)?)
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
    }
}

#[cfg(feature = "borsh-schema")]
impl borsh::BorshSchema for ArtifactPath {
    /// A struct with one unnamed `String` field: encoded as the string itself.
    fn add_definitions_recursively(
        definitions: &mut BTreeMap<borsh::schema::Declaration, borsh::schema::Definition>,
    ) {
        let fields = borsh::schema::Fields::UnnamedFields(vec![
            <String as borsh::BorshSchema>::declaration(),
        ]);
        borsh::schema::add_definition(
            <Self as borsh::BorshSchema>::declaration(),
            borsh::schema::Definition::Struct { fields },
            definitions,
        );
        <String as borsh::BorshSchema>::add_definitions_recursively(definitions);
    }

    fn declaration() -> borsh::schema::Declaration {
        "ArtifactPath".into()
    }
}

impl JsonSchema for ArtifactPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ArtifactPath".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": Self::PATTERN,
            "description": "A workspace-relative path with `/` separators: not absolute, no \
                `..` or empty components, no backslash or NUL.",
            "examples": ["target/release/app.tar.gz"],
        })
    }
}

/// A string that is not a valid [`ArtifactPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("artifact path {path:?} is not a valid workspace-relative path: {reason}")]
pub struct ArtifactPathError {
    /// The rejected path.
    pub path: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

/// A file a step produced, for the host to collect from the workspace.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(deny_unknown_fields)]
#[schemars(example = ArtifactRef::example())]
pub struct ArtifactRef {
    /// Where the artifact is, relative to the workspace root, with `/` separators.
    pub path: ArtifactPath,
    /// Its IANA media type, e.g. `application/gzip`; `application/octet-stream` when unknown.
    pub mime: String,
    /// Its size in bytes.
    pub size_bytes: u64,
}

impl ArtifactRef {
    /// An artifact at `path` (validated) with the given media type and size.
    pub fn new(
        path: impl Into<String>,
        mime: impl Into<String>,
        size_bytes: u64,
    ) -> Result<Self, ArtifactPathError> {
        Ok(Self {
            path: ArtifactPath::new(path)?,
            mime: mime.into(),
            size_bytes,
        })
    }

    /// A representative value (shown as the example in the JSON Schema).
    pub fn example() -> Self {
        Self {
            path: ArtifactPath("target/release/app.tar.gz".to_owned()),
            mime: "application/gzip".to_owned(),
            size_bytes: 7_340_032,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> SnapshotRef {
        SnapshotRef::new(s)
    }

    #[test]
    fn failed_step_never_commits() {
        let err = StepResult::new(2, Some(tag("t")), Vec::new()).unwrap_err();
        assert!(matches!(
            err,
            StepResultError::FailedStepCommitted { exit_code: 2, .. }
        ));
        assert!(StepResult::new(2, None, Vec::new()).is_ok());
        assert!(StepResult::new(0, Some(tag("t")), Vec::new()).is_ok());

        let result = StepResult {
            exit_code: 1,
            committed_snapshot: Some(tag("t")),
            artifacts: Vec::new(),
        };
        let decision = CacheDecision::MissBuildAs { tag: tag("t") };
        assert!(matches!(
            result.validate(&decision),
            Err(StepResultError::FailedStepCommitted { .. })
        ));
    }

    #[test]
    fn commit_must_match_the_decision() {
        let build_as = CacheDecision::MissBuildAs { tag: tag("want") };
        let committed = |t: &str| StepResult::new(0, Some(tag(t)), Vec::new()).unwrap();

        assert_eq!(committed("want").validate(&build_as), Ok(()));
        assert_eq!(
            committed("other").validate(&build_as),
            Err(StepResultError::WrongCommitTag {
                expected: tag("want"),
                actual: tag("other")
            })
        );
        assert_eq!(
            StepResult::success(Vec::new()).validate(&build_as),
            Err(StepResultError::MissingCommit { tag: tag("want") })
        );
        assert_eq!(StepResult::failure(3).validate(&build_as), Ok(()));

        for decision in [
            CacheDecision::Hit { tag: tag("want") },
            CacheDecision::MissNoCommit,
        ] {
            assert!(matches!(
                committed("want").validate(&decision),
                Err(StepResultError::UnexpectedCommit { .. })
            ));
            assert_eq!(StepResult::success(Vec::new()).validate(&decision), Ok(()));
        }
    }

    #[test]
    fn failure_is_never_zero() {
        assert_eq!(StepResult::failure(0).exit_code, 1);
        assert_eq!(StepResult::failure(137).exit_code, 137);
    }

    #[test]
    fn error_messages_name_the_subject() {
        let err = StepResultError::WrongCommitTag {
            expected: tag("a"),
            actual: tag("b"),
        };
        assert_eq!(
            err.to_string(),
            "step committed snapshot `b` but the host asked for `a`"
        );
    }

    #[test]
    fn artifact_paths() {
        for ok in [
            "a",
            "dist/app.tar.gz",
            "./out",
            ".hidden/x",
            "...",
            "..a/b",
            "a/.b",
            "a b",
        ] {
            assert!(ArtifactPath::new(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../b",
            "a/..",
            "a\\b",
            "a//b",
            "a/",
            "a\0",
        ] {
            assert!(ArtifactPath::new(bad).is_err(), "{bad:?}");
        }
        let err = ArtifactPath::new("../x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "artifact path \"../x\" is not a valid workspace-relative path: it has a `..` component"
        );
    }

    #[test]
    fn artifact_path_is_checked_when_decoding() {
        let json = r#"{"path":"../secret","mime":"text/plain","size_bytes":1}"#;
        let err = serde_json::from_str::<ArtifactRef>(json).unwrap_err();
        assert!(err.to_string().contains("`..` component"), "{err}");

        let bytes = borsh::to_vec(&("/abs".to_owned(), "text/plain".to_owned(), 1u64)).unwrap();
        let err = borsh::from_slice::<ArtifactRef>(&bytes).unwrap_err();
        assert!(err.to_string().contains("it is absolute"), "{err}");
    }

    #[test]
    fn input_validation() {
        let mut input = ExecutorInput::example();
        assert_eq!(input.validate(), Ok(()));
        input.env.insert("A=B".to_owned(), String::new());
        assert!(matches!(
            input.validate(),
            Err(InputError::InvalidEnvName { .. })
        ));

        let mut input = ExecutorInput::example();
        input.workdir = "workspace".to_owned();
        assert!(matches!(
            input.validate(),
            Err(InputError::RelativeWorkdir { .. })
        ));

        let mut input = ExecutorInput::example();
        input.step.shell = Some(Vec::new());
        assert_eq!(input.validate(), Err(InputError::EmptyShell));

        let mut input = ExecutorInput::example();
        input.step.timeout_secs = Some(0);
        assert_eq!(
            input.validate(),
            Err(InputError::ZeroLimit {
                field: "timeout_secs"
            })
        );
    }

    #[test]
    fn argv_appends_the_script_to_the_shell() {
        let mut step = CommandStep::new("echo hi");
        assert_eq!(step.argv(), ["sh", "-e", "-c", "echo hi"]);
        step.shell = Some(vec!["bash".to_owned(), "-c".to_owned()]);
        assert_eq!(step.argv(), ["bash", "-c", "echo hi"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"kind":"miss_no_commit","tag":"x"}"#;
        assert!(serde_json::from_str::<CacheDecision>(json).is_err());
        let json = r#"{"script":"true","shel":["bash"]}"#;
        assert!(serde_json::from_str::<CommandStep>(json).is_err());
    }
}
