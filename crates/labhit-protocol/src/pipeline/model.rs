//! The pipeline file model: what `.labhit/pipeline.yaml` means once parsed.
//!
//! These types are the single source of `schema/pipeline.schema.json` (through schemars) and
//! of the JSON/borsh form engines exchange. The YAML parser in [`super::parse`] builds them
//! while collecting every problem with its location; serde can also read them from JSON.

use std::borrow::Cow;

use borsh::{BorshDeserialize, BorshSerialize};
use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::forms::{ByteSize, Cpu, DurationSpec, PipelineName, PolicyName, StageId, UseRef};
use crate::glob::InputGlob;
use crate::manifest::SecretName;
use crate::value::Map;

/// A whole pipeline file.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, BorshSerialize, BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "LabHit pipeline",
    example = example_pipeline_file()
)]
pub struct PipelineFile {
    /// The format version of this file. Always the string `"1"`.
    pub engine: EngineVersion,
    /// The pipeline itself.
    pub pipeline: Pipeline,
}

fn example_pipeline_file() -> serde_json::Value {
    serde_json::json!({
        "engine": "1",
        "pipeline": {
            "name": "my-pipeline",
            "stages": {
                "fetch": { "use": "source/git", "with": { "depth": 1 } },
                "build": { "after": ["fetch"], "run": "cargo build --release" }
            }
        }
    })
}

fn example_with() -> serde_json::Value {
    serde_json::json!({
        "message": "built ${{ stages.checksum.outputs.digest }}",
        "literal": "$${{ not a reference }}"
    })
}

/// The pipeline file format version.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[borsh(use_discriminant = false)]
pub enum EngineVersion {
    /// Format version 1, written `engine: "1"`.
    #[serde(rename = "1")]
    V1,
}

/// A named set of stages.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, BorshSerialize, BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// 1–100 of `[A-Za-z0-9._-]`, starting with a letter or digit.
    pub name: PipelineName,
    /// The stages, by id, in the order they were written.
    pub stages: Stages,
}

/// The stages of a pipeline, keyed by id, in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stages(pub IndexMap<StageId, Stage>);

impl Stages {
    /// The stage with this id.
    pub fn get(&self, id: &str) -> Option<&Stage> {
        self.0.get(id)
    }

    /// Stage ids and stages in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&StageId, &Stage)> {
        self.0.iter()
    }

    /// Number of stages.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` when there are no stages.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Stages {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Stages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IndexMap::deserialize(deserializer).map(Stages)
    }
}

impl BorshSerialize for Stages {
    /// A `u32` count, then each id and stage, in order.
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        let len = u32::try_from(self.0.len()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "more than u32::MAX stages",
            )
        })?;
        BorshSerialize::serialize(&len, writer)?;
        for (id, stage) in &self.0 {
            BorshSerialize::serialize(id, writer)?;
            BorshSerialize::serialize(stage, writer)?;
        }
        Ok(())
    }
}

impl BorshDeserialize for Stages {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let len = u32::deserialize_reader(reader)?;
        let mut stages = IndexMap::new();
        for _ in 0..len {
            let id = StageId::deserialize_reader(reader)?;
            let stage = Stage::deserialize_reader(reader)?;
            if stages.insert(id.clone(), stage).is_some() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("stage `{id}` appears twice"),
                ));
            }
        }
        Ok(Stages(stages))
    }
}

impl JsonSchema for Stages {
    fn schema_name() -> Cow<'static, str> {
        "Stages".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let id = generator.subschema_for::<StageId>();
        let stage = generator.subschema_for::<Stage>();
        json_schema!({
            "description": "The stages, keyed by stage id. At least one.",
            "type": "object",
            "minProperties": 1,
            "propertyNames": id,
            "additionalProperties": stage,
        })
    }
}

/// One stage: an extension to run (`use`), a script (`run`), or an executor extension that
/// runs the script (both).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "anyOf" = [{ "required": ["use"] }, { "required": ["run"] }],
    "dependentRequired" = { "with": ["use"] },
    "if" = { "required": ["sandbox"], "properties": { "sandbox": { "required": ["secrets"] } } },
    "then" = { "required": ["run"] }
))]
pub struct Stage {
    /// The extension this stage runs: `category/name`, optionally `@<semver requirement>`.
    /// With `run`, the extension must declare the `executor` capability and runs the script.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<UseRef>,
    /// Stages that must succeed before this one starts (edges of the DAG). A single id is
    /// accepted in place of a list.
    #[serde(default, skip_serializing_if = "After::is_empty")]
    pub after: After,
    /// Configuration handed to the extension as a JSON object. Needs `use`.
    ///
    /// Any string value in it (at any depth, not keys) may use a named output of a stage
    /// upstream through `after` (directly or transitively):
    /// `${{ stages.<stage>.outputs.<name> }}`, as the whole string or inside a longer one. The
    /// runner fills it in, as a string, just before the stage starts; an upstream stage that
    /// failed or was skipped skips this one, and a missing output fails it. `$${{` is a
    /// literal `${{`. `run` scripts never get such substitutions (see `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = example_with())]
    pub with: Option<Map>,
    /// Where and with what resources the stage runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Sandbox>,
    /// Conditions checked before the stage starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    /// A shell script, run by the default executor or by the `use`d executor extension.
    ///
    /// Handed over exactly as written: `${{ … }}` is never filled in here (no script
    /// injection). The script gets the outputs of the stages upstream of it through `after`
    /// as environment variables instead: `LABHIT_OUTPUT_<STAGE>__<NAME>`, stage id and
    /// output name upper-cased with `-` as `_` (`"$LABHIT_OUTPUT_CHECKSUM__DIGEST"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub run: Option<String>,
}

/// The stages a stage waits for.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct After(pub Vec<StageId>);

impl After {
    /// `true` when the stage waits for nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids, in order.
    pub fn iter(&self) -> impl Iterator<Item = &StageId> {
        self.0.iter()
    }
}

impl Serialize for After {
    /// Always a list.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for After {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            One(StageId),
            Many(Vec<StageId>),
        }
        Ok(match Repr::deserialize(deserializer)? {
            Repr::One(id) => After(vec![id]),
            Repr::Many(ids) => After(ids),
        })
    }
}

impl JsonSchema for After {
    fn schema_name() -> Cow<'static, str> {
        "After".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let id = generator.subschema_for::<StageId>();
        json_schema!({
            "description": "A stage id, or a list of distinct stage ids, that must succeed first.",
            "oneOf": [
                id,
                { "type": "array", "items": id, "uniqueItems": true },
            ],
            "examples": ["fetch", ["lint", "test"]],
        })
    }
}

/// Where a stage runs and with which resources.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// Container image for `run` stages; executors that cannot honour it say so at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = "rust:1.95-slim")]
    pub image: Option<String>,
    /// CPU and memory for the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Deadline of the stage, e.g. `30m`; the stage fails when it is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Secrets granted to the stage's `run` script, each as the environment variable of the
    /// same name (only with `run`). Their values are redacted from everything the run
    /// reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true), example = ["DEPLOY_TOKEN"])]
    pub secrets: Vec<SecretName>,
    /// The files the stage's `run` script reads, as workspace-relative globs (only with
    /// `run`): its cache key covers just these (and what their symbolic links reach). Absent:
    /// the key covers the whole workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("uniqueItems" = true), example = ["package-lock.json", "src"])]
    pub inputs: Option<Vec<InputGlob>>,
}

/// Resource requests of a stage.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores: a number greater than zero, or millicores like `500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Memory: bytes, or a number with Ki/Mi/Gi/Ti/K/M/G/T.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
}

/// Conditions checked before a stage starts. Needs `approval: required`, a `policy`, or both.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    // Without a policy, `approval: required` must be there. Not an `anyOf`: its message
    // ("'policy' is required") hid the real problem; now `approval: maybe` is reported by
    // the `Approval` enum, which names the allowed values.
    "if" = { "not": { "required": ["policy"] } },
    "then" = {
        "required": ["approval"],
        "properties": { "approval": { "const": "required" } }
    }
))]
pub struct Gate {
    /// Whether a person must approve the stage before it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// A named policy the engine evaluates; an unknown policy denies the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyName>,
}

impl Gate {
    /// `true` when the gate asks for something (approval or a policy).
    pub fn is_effective(&self) -> bool {
        self.approval == Some(Approval::Required) || self.policy.is_some()
    }
}

/// Whether a gate waits for a person.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = false)]
pub enum Approval {
    /// A person must approve the stage.
    #[serde(rename = "required")]
    Required,
    /// No approval needed (useful to state it explicitly next to a policy).
    #[serde(rename = "none")]
    NotRequired,
}

impl JsonSchema for Approval {
    fn schema_name() -> Cow<'static, str> {
        "Approval".into()
    }
    /// An `enum` (not a `oneOf` of constants), so a validator's message lists the allowed
    /// values.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Whether a gate waits for a person: `required` (a person must approve the stage) or `none` (no approval needed; useful to state it explicitly next to a policy).",
            "type": "string",
            "enum": ["required", "none"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let file: PipelineFile = serde_json::from_value(example_pipeline_file()).unwrap();
        assert_eq!(file.pipeline.stages.len(), 2);
        let back = serde_json::to_value(&file).unwrap();
        assert_eq!(back, example_pipeline_file());
        let bytes = borsh::to_vec(&file).unwrap();
        assert_eq!(borsh::from_slice::<PipelineFile>(&bytes).unwrap(), file);
    }

    #[test]
    fn after_accepts_one_or_many() {
        let one: After = serde_json::from_str("\"a\"").unwrap();
        let many: After = serde_json::from_str("[\"a\", \"b\"]").unwrap();
        assert_eq!(one.0.len(), 1);
        assert_eq!(many.0.len(), 2);
    }
}
