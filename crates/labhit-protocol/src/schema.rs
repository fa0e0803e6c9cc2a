//! The published JSON Schemas (draft 2020-12) of the contract: the pipeline file, the
//! extension manifest and every wire type.
//!
//! These functions are the single source of the schemas: `cargo xtask codegen` writes them
//! to `schema/` and `labhit schema pipeline|manifest` prints them. Each schema is generated
//! from the Rust types with schemars and then stamped with a stable `$id` under
//! [`SCHEMA_BASE`] and a `title`. Structs that refuse unknown fields in Rust carry
//! `additionalProperties: false`, so an editor flags the same typos the validator does.
//!
//! The pipeline and manifest schemas describe files people write (YAML and TOML), where an
//! absent optional key is *absent*, never `null`: the validator refuses `use: ~`, so their
//! schemas do not admit `null` for optional keys either. The wire schemas keep schemars'
//! defaults, where an optional field may be `null`, because that is how serde writes it.

use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use schemars::{JsonSchema, Schema};
use serde_json::Value;

use crate::executor::{ArtifactRef, CacheDecision, CommandStep, ExecutorInput, StepResult};
use crate::ids::{ArchiveId, SnapshotRef};
use crate::manifest::Manifest;
use crate::pipeline::PipelineFile;
use crate::run::{LogEntry, PipelineRun, RunStatus, StageRun, StageStatus};

/// The URL prefix of every schema `$id` (version 1 of the formats).
pub const SCHEMA_BASE: &str = "https://labhit.dev/schema/v1/";

/// The file name of the pipeline schema, under [`SCHEMA_BASE`] and in `schema/`.
pub const PIPELINE_SCHEMA_FILE: &str = "pipeline.schema.json";

/// The file name of the manifest schema, under [`SCHEMA_BASE`] and in `schema/`.
pub const MANIFEST_SCHEMA_FILE: &str = "extension-manifest.schema.json";

/// The JSON Schema of `.labhit/pipeline.yaml` (its JSON form).
///
/// The schema checks everything a single file can show: keys, types, forms (ids, `use`
/// references, durations, sizes), stage shape and gates. Checks that need more than a
/// JSON Schema can express are the validator's alone: `after` naming existing stages,
/// cycles, semver requirement syntax, numbers too large for 64 bits, duplicate keys, and
/// everything rule 7 (extension manifests) decides.
pub fn pipeline_schema() -> Value {
    let schema = file_settings()
        .into_generator()
        .into_root_schema_for::<PipelineFile>();
    finish(
        schema,
        PIPELINE_SCHEMA_FILE,
        "LabHit pipeline",
        "A LabHit pipeline file (`.labhit/pipeline.yaml`): the format version and a named \
         set of stages, each running an extension (`use`), a shell script (`run`) or both.",
    )
}

/// The JSON Schema of `extension.toml` (its JSON form).
pub fn manifest_schema() -> Value {
    let schema = file_settings()
        .into_generator()
        .into_root_schema_for::<Manifest>();
    finish(
        schema,
        MANIFEST_SCHEMA_FILE,
        "LabHit extension manifest",
        "The manifest of a LabHit extension (`extension.toml`): its identity, the \
         capabilities it is granted (everything not declared is denied), its limits and the \
         JSON Schemas of its inputs and outputs.",
    )
}

/// The JSON Schema of every wire type, by type name, in a fixed order.
///
/// The `$id` of each is `{SCHEMA_BASE}wire/{file}` where `file` is [`wire_file_name`] of
/// the name.
pub fn wire_schemas() -> Vec<(&'static str, Value)> {
    vec![
        wire::<ExecutorInput>("ExecutorInput"),
        wire::<CacheDecision>("CacheDecision"),
        wire::<StepResult>("StepResult"),
        wire::<ArtifactRef>("ArtifactRef"),
        wire::<CommandStep>("CommandStep"),
        wire::<ArchiveId>("ArchiveId"),
        wire::<SnapshotRef>("SnapshotRef"),
        wire::<PipelineRun>("PipelineRun"),
        wire::<StageRun>("StageRun"),
        wire::<LogEntry>("LogEntry"),
        wire::<RunStatus>("RunStatus"),
        wire::<StageStatus>("StageStatus"),
        wire::<crate::Value>("Value"),
    ]
}

/// The file name of a wire type's schema: `ExecutorInput` → `executor-input.schema.json`.
pub fn wire_file_name(type_name: &str) -> String {
    let mut out = String::with_capacity(type_name.len() + 16);
    for (i, c) in type_name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out.push_str(".schema.json");
    out
}

fn wire<T: JsonSchema>(name: &'static str) -> (&'static str, Value) {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let title = format!("LabHit {name}");
    let description = schema
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_default();
    let path = format!("wire/{}", wire_file_name(name));
    (name, finish(schema, &path, &title, &description))
}

/// Settings for the schemas of hand-written files: draft 2020-12, optional keys not nullable.
fn file_settings() -> SchemaSettings {
    SchemaSettings::draft2020_12().with_transform(NoNullForOptionalKeys)
}

/// Sets `$id`, `title` and (when not empty) `description` on a root schema.
fn finish(schema: Schema, path: &str, title: &str, description: &str) -> Value {
    let mut value = schema.to_value();
    if let Value::Object(map) = &mut value {
        map.insert("$id".into(), Value::String(format!("{SCHEMA_BASE}{path}")));
        map.insert("title".into(), Value::String(title.to_owned()));
        if !description.is_empty() {
            map.insert("description".into(), Value::String(description.to_owned()));
        }
    }
    value
}

/// Removes the `null` that schemars adds to the schema of an `Option` field which is not
/// required: in a YAML or TOML file such a key is left out, and `key: null` is an error.
#[derive(Debug, Clone, Copy)]
struct NoNullForOptionalKeys;

impl Transform for NoNullForOptionalKeys {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let Some(Value::Object(properties)) = schema.get_mut("properties") else {
            return;
        };
        for (key, property) in properties.iter_mut() {
            if !required.contains(key) {
                drop_null(property);
            }
        }
    }
}

/// `{"type": ["string", "null"]}` → `{"type": "string"}`; `{"anyOf": [S, {"type": "null"}]}` → S.
fn drop_null(property: &mut Value) {
    let Value::Object(map) = property else { return };
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            map.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(members)) = map.get_mut("enum") {
        members.retain(|m| !m.is_null());
    }
    let single = match map.get_mut("anyOf") {
        Some(Value::Array(options)) => {
            options.retain(|o| o.get("type").and_then(Value::as_str) != Some("null"));
            (options.len() == 1).then(|| options[0].clone())
        }
        _ => None,
    };
    if let Some(Value::Object(inner)) = single {
        map.remove("anyOf");
        for (k, v) in inner {
            map.entry(k).or_insert(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            wire_file_name("ExecutorInput"),
            "executor-input.schema.json"
        );
        assert_eq!(wire_file_name("Value"), "value.schema.json");
    }

    #[test]
    fn ids_and_titles() {
        let pipeline = pipeline_schema();
        assert_eq!(
            pipeline["$id"],
            "https://labhit.dev/schema/v1/pipeline.schema.json"
        );
        assert_eq!(
            pipeline["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(pipeline["title"], "LabHit pipeline");
        for (name, schema) in wire_schemas() {
            let id = schema["$id"].as_str().unwrap_or_default();
            assert!(id.ends_with(&wire_file_name(name)), "{name}: {id}");
        }
    }
}
