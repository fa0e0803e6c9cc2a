//! The wire check: every golden vector of the baseline must still be a valid value of the
//! current contract. For each vector:
//!
//! 1. its JSON validates against the current JSON Schema of its type (the type's own file in
//!    `schema/wire/`, or its `$defs` entry in another wire schema);
//! 2. its JSON decodes with the current Rust type;
//! 3. its borsh bytes decode with the current Rust type, to the same value, and re-encode to
//!    exactly the same bytes (borsh has no field names: any layout change breaks old bytes).
//!
//! A removed type, a field that became required, a narrowed enum or a changed borsh layout
//! each fail, naming the type, the vector and (for JSON) the field's path.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use labhit_protocol::Value;
use labhit_protocol::codec::{from_borsh, to_borsh};
use labhit_protocol::executor::{
    ArtifactPath, ArtifactRef, CacheDecision, CommandStep, ExecutorInput, StepResult,
};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef, StepId};
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};

use super::Breakage;

/// Decodes one vector as `$ty` both ways; an `Err` names what failed.
macro_rules! decode_as {
    ($ty:ty, $json:expr, $bytes:expr) => {{
        let json: &serde_json::Value = $json;
        let bytes: &[u8] = $bytes;
        (|| -> std::result::Result<(), String> {
            let from_json: $ty = serde_path_to_error::deserialize(json.clone()).map_err(|err| {
                format!("JSON does not decode at `{}`: {}", err.path(), err.inner())
            })?;
            let from_bytes: $ty =
                from_borsh(bytes).map_err(|err| format!("borsh does not decode: {err}"))?;
            if from_json != from_bytes {
                return Err("JSON and borsh decode to different values".to_owned());
            }
            let again =
                to_borsh(&from_bytes).map_err(|err| format!("borsh does not encode: {err}"))?;
            if again != bytes {
                return Err("borsh re-encoding differs from the baseline bytes".to_owned());
            }
            Ok(())
        })()
    }};
}

/// Decodes a vector of the wire type named `type_name` with the current Rust types.
fn decode(type_name: &str, json: &serde_json::Value, bytes: &[u8]) -> Option<Result<(), String>> {
    Some(match type_name {
        "RunId" => decode_as!(RunId, json, bytes),
        "StepId" => decode_as!(StepId, json, bytes),
        "ArchiveId" => decode_as!(ArchiveId, json, bytes),
        "SnapshotRef" => decode_as!(SnapshotRef, json, bytes),
        "StageId" => decode_as!(StageId, json, bytes),
        "ArtifactPath" => decode_as!(ArtifactPath, json, bytes),
        "ArtifactRef" => decode_as!(ArtifactRef, json, bytes),
        "CommandStep" => decode_as!(CommandStep, json, bytes),
        "CacheDecision" => decode_as!(CacheDecision, json, bytes),
        "ExecutorInput" => decode_as!(ExecutorInput, json, bytes),
        "StepResult" => decode_as!(StepResult, json, bytes),
        "RunStatus" => decode_as!(RunStatus, json, bytes),
        "StageStatus" => decode_as!(StageStatus, json, bytes),
        "LogLevel" => decode_as!(LogLevel, json, bytes),
        "LogStream" => decode_as!(LogStream, json, bytes),
        "StageRun" => decode_as!(StageRun, json, bytes),
        "PipelineRun" => decode_as!(PipelineRun, json, bytes),
        "LogEntry" => decode_as!(LogEntry, json, bytes),
        "Value" => decode_as!(Value, json, bytes),
        _ => return None,
    })
}

/// `PipelineRun` → `pipeline-run`.
fn kebab(type_name: &str) -> String {
    let mut out = String::new();
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
    out
}

/// The current JSON Schema of `type_name`: its own file, or a `$defs` entry of another wire
/// schema wrapped so that its references resolve.
fn schema_for(schema_dir: &Path, type_name: &str) -> Result<Option<serde_json::Value>> {
    let wire = schema_dir.join("wire");
    let own = wire.join(format!("{}.schema.json", kebab(type_name)));
    if own.is_file() {
        let text =
            std::fs::read_to_string(&own).with_context(|| format!("reading {}", own.display()))?;
        return Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", own.display()))?,
        ));
    }
    let mut files: Vec<_> = std::fs::read_dir(&wire)
        .with_context(|| format!("reading {}", wire.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(defs) = doc.get("$defs")
            && defs.get(type_name).is_some()
        {
            return Ok(Some(serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": format!("#/$defs/{type_name}"),
                "$defs": defs,
            })));
        }
    }
    Ok(None)
}

/// The most specific problems behind a schema error, as (instance path, message). For a
/// `oneOf`/`anyOf` failure (a tagged enum, say) the branches whose discriminator matched are
/// followed, so the report names the field that broke rather than the whole value.
fn leaves(error: &jsonschema::ValidationError<'_>) -> Vec<(String, String)> {
    use jsonschema::error::ValidationErrorKind as Kind;
    let branches = match error.kind() {
        Kind::OneOfNotValid { context } | Kind::AnyOf { context } => context,
        _ => {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            return vec![(at, error.to_string())];
        }
    };
    let is_discriminator =
        |e: &jsonschema::ValidationError<'_>| matches!(e.kind(), Kind::Constant { .. });
    let matching: Vec<_> = branches
        .iter()
        .filter(|branch| !branch.is_empty() && !branch.iter().any(is_discriminator))
        .collect();
    let chosen: Vec<_> = if matching.is_empty() {
        branches.iter().collect()
    } else {
        matching
    };
    let found: Vec<(String, String)> = chosen.into_iter().flatten().flat_map(leaves).collect();
    if found.is_empty() {
        let at = error.instance_path().to_string();
        vec![(
            if at.is_empty() { "/".to_owned() } else { at },
            error.to_string(),
        )]
    } else {
        found
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// Checks every baseline vector file in `vectors` against the schemas in `schema_dir` and the
/// current Rust types.
pub(crate) fn check(vectors: &Path, schema_dir: &Path) -> Result<Vec<Breakage>> {
    let mut files: Vec<_> = std::fs::read_dir(vectors)
        .with_context(|| format!("reading {}", vectors.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("the baseline has no vectors in {}", vectors.display());
    }
    let mut found = Vec::new();
    let mut breakage = |message: String| {
        found.push(Breakage {
            check: "wire",
            message,
        })
    };
    for path in files {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let type_name = doc["type"]
            .as_str()
            .with_context(|| format!("{}: no `type`", path.display()))?;
        let vectors = doc["vectors"]
            .as_array()
            .with_context(|| format!("{}: no `vectors` array", path.display()))?;

        let validator = match schema_for(schema_dir, type_name)? {
            Some(schema) => Some(jsonschema::validator_for(&schema).map_err(|err| {
                anyhow::anyhow!("the current schema of {type_name} does not compile: {err}")
            })?),
            None => {
                breakage(format!(
                    "type {type_name}: no JSON Schema describes it any more"
                ));
                None
            }
        };
        for vector in vectors {
            let name = vector["name"].as_str().unwrap_or("?");
            let json = &vector["json"];
            if let Some(validator) = &validator {
                for error in validator.iter_errors(json) {
                    for (at, why) in leaves(&error) {
                        breakage(format!(
                            "type {type_name}, vector `{name}`: field `{at}` no longer matches the schema: {why}"
                        ));
                    }
                }
            }
            let Some(bytes) = vector["borsh_hex"].as_str().and_then(unhex) else {
                bail!(
                    "{}: vector `{name}` has no valid `borsh_hex`",
                    path.display()
                );
            };
            match decode(type_name, json, &bytes) {
                None => breakage(format!("type {type_name}: the Rust type is gone")),
                Some(Err(why)) => breakage(format!("type {type_name}, vector `{name}`: {why}")),
                Some(Ok(())) => {}
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline_vectors() -> std::path::PathBuf {
        super::super::newest_baseline(&crate::project_root())
            .expect("a baseline")
            .join("vectors")
    }

    /// A copy of the repository's `schema/` with `wire/<file>` edited by `edit`.
    fn mutated_schema(file: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
        let root = crate::project_root();
        let temp = tempfile::tempdir().expect("tempdir");
        super::super::baseline::copy_tree(&root.join("schema"), temp.path()).expect("copy");
        let path = temp.path().join("wire").join(file);
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let before = doc.clone();
        edit(&mut doc);
        assert_ne!(doc, before, "the mutation must change the schema");
        std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json")).expect("write");
        temp
    }

    #[test]
    fn the_working_tree_decodes_every_baseline_vector() {
        let root = crate::project_root();
        let found = check(&baseline_vectors(), &root.join("schema")).expect("check runs");
        assert_eq!(found, Vec::new());
    }

    #[test]
    fn a_field_that_becomes_required_is_breaking_and_named() {
        let temp = mutated_schema("log-entry.schema.json", |doc| {
            let required = doc["required"].as_array_mut().expect("required");
            required.push(serde_json::json!("trace_id"));
        });
        let found = check(&baseline_vectors(), temp.path()).expect("check runs");
        assert!(!found.is_empty());
        assert!(
            found.iter().all(|b| b.message.contains("type LogEntry")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|b| b.message.contains("trace_id")),
            "{found:?}"
        );
    }

    #[test]
    fn a_narrowed_field_type_is_breaking_and_names_the_field() {
        /// Makes every `tag` property an integer.
        fn narrow(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::Object(props)) = map.get_mut("properties")
                        && let Some(serde_json::Value::Object(tag)) = props.get_mut("tag")
                    {
                        tag.insert("type".into(), "integer".into());
                    }
                    map.values_mut().for_each(narrow);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(narrow),
                _ => {}
            }
        }
        let temp = mutated_schema("cache-decision.schema.json", narrow);
        let found = check(&baseline_vectors(), temp.path()).expect("check runs");
        assert!(
            found
                .iter()
                .any(|b| b.message.contains("type CacheDecision") && b.message.contains("/tag")),
            "{found:?}"
        );
    }

    #[test]
    fn a_changed_borsh_layout_is_breaking() {
        // A baseline whose bytes were written by a layout the current types do not have: the
        // `hit` vector of CacheDecision with a u64 tag where the current type has a u8 tag.
        let temp = tempfile::tempdir().expect("tempdir");
        let doc = serde_json::json!({
            "type": "CacheDecision",
            "contract_version": "0.1.0",
            "vectors": [{
                "name": "hit",
                "json": { "kind": "hit", "tag": "labhit-cache/build:4f2a9c81" },
                "borsh_hex": "00000000000000001b0000006c61626869742d63616368652f6275696c643a3466326139633831"
            }]
        });
        std::fs::write(temp.path().join("cache-decision.json"), doc.to_string()).expect("write");
        let root = crate::project_root();
        let found = check(temp.path(), &root.join("schema")).expect("check runs");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("borsh"), "{}", found[0]);
    }
}
