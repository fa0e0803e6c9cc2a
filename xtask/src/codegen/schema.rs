//! Generator: the JSON Schemas in `schema/`.
//!
//! The schemas come from `labhit_protocol::schema` (the same functions `labhit schema`
//! prints): `schema/pipeline.schema.json`, `schema/extension-manifest.schema.json` and one
//! `schema/wire/<type>.schema.json` per wire type. Each file is pretty-printed JSON with keys
//! in sorted order (so the output does not depend on serde_json's `preserve_order` feature),
//! a trailing newline, and a top-level `"$comment"` carrying [`super::HEADER`], since JSON has no
//! comments.

use std::path::Path;

use anyhow::{Context, Result};
use labhit_protocol::schema;
use serde_json::Value;

use super::GeneratedFile;

/// Where the schemas go, relative to the workspace root.
const DIR: &str = "schema";

/// Returns the generated schema files.
pub(crate) fn generate(_root: &Path) -> Result<Vec<GeneratedFile>> {
    let mut files = vec![
        file(
            format!("{DIR}/{}", schema::PIPELINE_SCHEMA_FILE),
            schema::pipeline_schema(),
        )?,
        file(
            format!("{DIR}/{}", schema::MANIFEST_SCHEMA_FILE),
            schema::manifest_schema(),
        )?,
    ];
    for (name, value) in schema::wire_schemas() {
        let path = format!("{DIR}/wire/{}", schema::wire_file_name(name));
        files.push(file(path, value).with_context(|| format!("rendering the schema of {name}"))?);
    }
    Ok(files)
}

/// One schema file, laid out by [`schema::to_file_text`] (the same text `labhit schema` prints).
fn file(path: String, value: Value) -> Result<GeneratedFile> {
    if !value.is_object() {
        anyhow::bail!("the schema for {path} is not a JSON object");
    }
    Ok(GeneratedFile::new(path, schema::to_file_text(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_has_the_header_and_an_id() {
        let files = generate(&crate::project_root()).expect("schema generator runs");
        assert!(files.len() >= 3);
        for file in &files {
            let value: Value = serde_json::from_slice(&file.contents).expect("valid JSON");
            assert_eq!(
                value["$comment"],
                super::super::HEADER,
                "{}",
                file.path.display()
            );
            assert!(
                value["$id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(schema::SCHEMA_BASE)),
                "{}",
                file.path.display()
            );
            assert!(file.contents.ends_with(b"}\n"));
        }
    }
}
