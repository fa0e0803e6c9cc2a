//! One source of truth for `with` and the named outputs: the `[inputs]` schema derived from
//! an extension crate's `Config` type and the `[outputs]` schema derived from its `Outputs`
//! type (`labhit_sdk::TypedOutputs`), each compared with the manifest's or written into the
//! bundle's.
//!
//! Schemars runs at run time and a component exports nothing but `pipeline-step`, so the
//! schema comes from a native run: `labhit_sdk::export_extension!` adds the test
//! `__labhit_sdk_schema::inputs_schema` to native test builds, and [`derive`] runs it alone
//! (`cargo test --lib`, into the builder's target directory) with `LABHIT_SDK_SCHEMA_OUT`
//! naming the file it writes. [`disagreements`] compares that schema with the hand-written
//! `[inputs]`, [`output_disagreements`] the outputs schema with `[outputs]`;
//! [`section_toml`] renders either as its table of a bundle's manifest.
//!
//! "Agree" means every `with` the manifest accepts is one the `Config` parses, field by
//! field: the same property names, everything the `Config` requires listed in `required`,
//! no unknown keys let through when the `Config` denies them, and declared types and `enum`
//! values within the `Config`'s. Descriptions, defaults and bounds such as `minLength` are
//! the manifest's to add. For outputs, "agree" means the same output names, every output
//! the manifest requires always reported, and every output declared a string (the only
//! type an output has on the wire).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use serde_json::{Map, Value};

use crate::{Builder, Error, Result, io, tail};

/// The environment variable the schema hook reads (`labhit_sdk::schema::SCHEMA_OUT_ENV`).
pub const SCHEMA_OUT_ENV: &str = "LABHIT_SDK_SCHEMA_OUT";

/// The schema hook's test name, as a `cargo test` filter
/// (`labhit_sdk::schema::SCHEMA_HOOK_TEST`).
pub const SCHEMA_HOOK_TEST: &str = "__labhit_sdk_schema::inputs_schema";

/// Settings of the `dev` profile (which `test` inherits) for the schema hook, the same as
/// the workspace manifest's `[profile.dev.package."*"]`: passed on the command line so that
/// crates outside this workspace build their dependencies the same way, and share them in
/// the target directory with the workspace's extensions.
pub const HOOK_PROFILE_SETTINGS: &[(&str, &str)] = &[("package.\"*\".debug", "false")];

/// What the schema hook of a crate reported.
#[derive(Debug, Clone, PartialEq)]
pub enum Derived {
    /// The crate has no schema hook: it does not call `export_extension!`, or its
    /// `labhit-sdk` predates the hook.
    NoHook,
    /// The `Config` type does not derive `schemars::JsonSchema`.
    NotDerived,
    /// The schema derived from the `Config` type.
    Schema(Value),
}

/// What the schema hook of a crate reported, inputs and outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// The `[inputs]` schema of the `Config` type.
    pub inputs: Derived,
    /// The `[outputs]` schema of the `Outputs` type, when the extension declares
    /// `labhit_sdk::TypedOutputs` (`None` also without a hook, or with a `labhit-sdk` whose
    /// hook predates typed outputs).
    pub outputs: Option<Value>,
}

impl Hook {
    /// Nothing derived: a crate without a schema hook, or a Python project.
    pub fn none() -> Self {
        Self {
            inputs: Derived::NoHook,
            outputs: None,
        }
    }
}

/// Runs the schema hook of the extension crate in `crate_dir` natively (`cargo test --lib`
/// into `builder`'s target directory) and returns what it reported.
pub fn derive(builder: &Builder, crate_dir: &Path) -> Result<Hook> {
    let dir = builder.target_dir.join("labhit-schema");
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let out = dir.join(format!("{}.json", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut cmd = builder.cargo_command();
    cmd.arg("test")
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--lib")
        .arg("--target-dir")
        .arg(&builder.target_dir);
    for (key, value) in HOOK_PROFILE_SETTINGS {
        cmd.arg("--config")
            .arg(format!("profile.dev.{key}={value}"));
    }
    cmd.args(["--", SCHEMA_HOOK_TEST, "--test-threads=1"])
        .env(SCHEMA_OUT_ENV, &out)
        .stdout(Stdio::piped())
        .stderr(if builder.verbose {
            Stdio::inherit()
        } else {
            Stdio::piped()
        });
    let output = cmd
        .output()
        .map_err(io("cannot run cargo test for", crate_dir))?;
    if !output.status.success() {
        return Err(Error::SchemaHook {
            crate_dir: crate_dir.to_owned(),
            status: output.status,
            output: tail(
                &format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
                60,
            ),
        });
    }
    let text = match std::fs::read_to_string(&out) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Hook::none()),
        Err(err) => return Err(io("cannot read", &out)(err)),
    };
    let _ = std::fs::remove_file(&out);
    let document: Value = serde_json::from_str(&text).map_err(|err| Error::Contract {
        path: out.clone(),
        message: format!("the schema hook wrote no JSON: {err}"),
    })?;
    let inputs = match document.get("inputs") {
        Some(Value::Null) | None => Derived::NotDerived,
        Some(schema) => Derived::Schema(schema.clone()),
    };
    let outputs = document.get("outputs").filter(|v| !v.is_null()).cloned();
    Ok(Hook { inputs, outputs })
}

/// The `properties` of an object schema (none when it has none).
fn properties(schema: &Value) -> Map<String, Value> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The names in the `required` list of an object schema.
fn required(schema: &Value) -> BTreeSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Where the hand-written `[inputs]` (`manifest`) lets through a `with` that the `Config`'s
/// schema (`derived`) rejects, or lacks a field the `Config` has: one message per problem,
/// each naming the field. Empty when they agree.
pub fn disagreements(manifest: &Value, derived: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (declared, fields) = (properties(manifest), properties(derived));
    let (declared_required, field_required) = (required(manifest), required(derived));

    for name in fields.keys() {
        if !declared.contains_key(name) {
            out.push(format!(
                "`Config` field `{name}` has no entry in the manifest: add `[inputs.properties.{name}]`"
            ));
        }
    }
    for name in declared.keys() {
        if !fields.contains_key(name) {
            out.push(format!(
                "`[inputs.properties.{name}]` has no matching `Config` field: add the field or remove the entry"
            ));
        }
    }
    for name in &field_required {
        if !declared_required.contains(name) {
            out.push(format!(
                "`Config` field `{name}` is required, but `required` of `[inputs]` does not list it: add it, or give the field `#[serde(default)]`"
            ));
        }
    }
    if derived.get("additionalProperties") == Some(&Value::Bool(false))
        && manifest.get("additionalProperties") != Some(&Value::Bool(false))
    {
        out.push(
            "`Config` denies unknown fields, but `[inputs]` lets them through: add `additionalProperties = false`"
                .to_owned(),
        );
    }
    for (name, field) in &fields {
        let Some(entry) = declared.get(name) else {
            continue;
        };
        if let (Some(theirs), Some(ours)) = (types(entry), types(field)) {
            let outside: Vec<&String> = theirs
                .iter()
                .filter(|t| !(ours.contains(*t) || (*t == "integer" && ours.contains("number"))))
                .collect();
            if !outside.is_empty() {
                out.push(format!(
                    "`{name}`: the manifest allows type {}, but the `Config` field takes {}",
                    list(outside),
                    list(ours.iter().collect())
                ));
            }
        }
        if let (Some(Value::Array(theirs)), Some(Value::Array(ours))) =
            (entry.get("enum"), field.get("enum"))
        {
            let outside: Vec<String> = theirs
                .iter()
                .filter(|v| !ours.contains(v))
                .map(Value::to_string)
                .collect();
            if !outside.is_empty() {
                out.push(format!(
                    "`{name}`: the manifest allows {}, which the `Config` field does not accept",
                    outside.join(", ")
                ));
            }
        }
    }
    out
}

/// Where the hand-written `[outputs]` (`manifest`) and the schema derived from the
/// `Outputs` type (`derived`, [`labhit_sdk::schema::outputs_schema`]) name different outputs,
/// or the manifest requires one the type may leave out, or declares a type other than
/// string: one message per problem, each naming the output. Empty when they agree.
pub fn output_disagreements(manifest: &Value, derived: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (declared, fields) = (properties(manifest), properties(derived));
    let always = required(derived);
    for name in fields.keys() {
        if !declared.contains_key(name) {
            out.push(format!(
                "`Outputs` field `{name}` is an output the manifest does not declare: add `[outputs.properties.{name}]`"
            ));
        }
    }
    for name in declared.keys() {
        if !fields.contains_key(name) {
            out.push(format!(
                "`[outputs.properties.{name}]` has no matching `Outputs` field: add the field or remove the entry"
            ));
        }
    }
    for name in required(manifest) {
        if fields.contains_key(&name) && !always.contains(&name) {
            out.push(format!(
                "`required` of `[outputs]` lists `{name}`, but the `Outputs` field may be left out (`Option`): make it a plain field or drop it from `required`"
            ));
        }
    }
    for (name, entry) in &declared {
        if let Some(theirs) = types(entry)
            && theirs.iter().any(|t| t != "string")
        {
            out.push(format!(
                "`[outputs.properties.{name}]` declares type {}, but every output is a string: declare `type = \"string\"`",
                list(theirs.iter().collect())
            ));
        }
    }
    out
}

/// The JSON types a schema names in `type` (`null` left out: an absent key is how a manifest
/// says "optional"), or `None` when it names none.
fn types(schema: &Value) -> Option<BTreeSet<String>> {
    let names: BTreeSet<String> = match schema.get("type")? {
        Value::String(name) => [name.clone()].into(),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return None,
    };
    let names: BTreeSet<String> = names.into_iter().filter(|t| t != "null").collect();
    (!names.is_empty()).then_some(names)
}

fn list(names: Vec<&String>) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// `schema` as the `[inputs]` table of a manifest: top-level keys first, then one
/// `[inputs.properties.NAME]` table per property. JSON `null`s are left out (TOML has none).
pub fn inputs_toml(schema: &Value) -> String {
    section_toml("inputs", "Config", schema)
}

/// `schema` as the table `[section]` of a manifest (`inputs` or `outputs`), derived from the
/// type `source`: top-level keys first, then one `[section.properties.NAME]` table per
/// property. JSON `null`s are left out (TOML has none).
pub fn section_toml(section: &str, source: &str, schema: &Value) -> String {
    let mut text =
        format!("\n# Derived from the `{source}` type by `labhit ext build`.\n[{section}]\n");
    let Some(object) = schema.as_object() else {
        return text;
    };
    for (key, value) in object {
        if key == "properties" {
            continue;
        }
        if let Some(value) = inline(value) {
            text.push_str(&format!("{} = {value}\n", toml_key(key)));
        }
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            text.push_str(&format!("\n[{section}.properties.{}]\n", toml_key(name)));
            if let Some(fields) = property.as_object() {
                for (key, value) in fields {
                    if let Some(value) = inline(value) {
                        text.push_str(&format!("{} = {value}\n", toml_key(key)));
                    }
                }
            }
        }
    }
    text
}

/// A TOML key: bare when it can be, else quoted.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_owned()
    } else {
        Value::from(key).to_string()
    }
}

/// A JSON value as an inline TOML value (JSON strings are valid TOML basic strings); `None`
/// for `null`.
fn inline(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) | Value::Number(_) | Value::String(_) => value.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .filter_map(inline)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(fields) => format!(
            "{{ {} }}",
            fields
                .iter()
                .filter_map(|(k, v)| inline(v).map(|v| format!("{} = {v}", toml_key(k))))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// The error for a manifest whose `[inputs]` disagrees with the `Config` type.
pub(crate) fn disagree(manifest: &Path, problems: Vec<String>) -> Error {
    Error::InputsDisagree {
        manifest: manifest.to_owned(),
        problems: bullets(&problems),
    }
}

/// The error for a manifest whose `[outputs]` disagrees with the `Outputs` type.
pub(crate) fn outputs_disagree(manifest: &Path, problems: Vec<String>) -> Error {
    Error::OutputsDisagree {
        manifest: manifest.to_owned(),
        problems: bullets(&problems),
    }
}

fn bullets(problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn derived() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["patterns"],
            "properties": {
                "patterns": {"type": "array", "items": {"type": "string"}},
                "algorithm": {"type": "string", "enum": ["sha256", "sha512"], "default": "sha256"},
                "output": {"type": ["string", "null"], "default": null},
                "count": {"type": "number"}
            }
        })
    }

    #[test]
    fn a_matching_manifest_agrees() {
        let manifest = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["patterns"],
            "properties": {
                "patterns": {"type": "array", "minItems": 1},
                "algorithm": {"type": "string", "enum": ["sha256"]},
                "output": {"type": "string", "minLength": 1},
                "count": {"type": "integer"}
            }
        });
        assert_eq!(disagreements(&manifest, &derived()), Vec::<String>::new());
    }

    #[test]
    fn every_disagreement_names_its_field() {
        let manifest = json!({
            "type": "object",
            "properties": {
                "patterns": {"type": "string"},
                "algorithm": {"type": "string", "enum": ["md5"]},
                "output": {"type": "string"},
                "extra": {"type": "string"}
            }
        });
        let problems = disagreements(&manifest, &derived());
        let text = problems.join("\n");
        for needle in [
            "`Config` field `count` has no entry in the manifest: add `[inputs.properties.count]`",
            "`[inputs.properties.extra]` has no matching `Config` field",
            "`Config` field `patterns` is required",
            "add `additionalProperties = false`",
            "`patterns`: the manifest allows type `string`, but the `Config` field takes `array`",
            "`algorithm`: the manifest allows \"md5\"",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        assert_eq!(problems.len(), 6, "{text}");
    }

    fn derived_outputs() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["files", "digest"],
            "properties": {
                "files": {"type": "string", "description": "Files hashed"},
                "digest": {"type": "string"},
                "note": {"type": "string"}
            }
        })
    }

    #[test]
    fn matching_outputs_agree() {
        let manifest = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["files"],
            "properties": {
                "files": {"type": "string", "description": "Number of files hashed"},
                "digest": {"type": "string"},
                "note": {}
            }
        });
        assert_eq!(
            output_disagreements(&manifest, &derived_outputs()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_output_disagreement_names_its_output() {
        let manifest = json!({
            "type": "object",
            "required": ["files", "note"],
            "properties": {
                "files": {"type": "integer"},
                "note": {"type": "string"},
                "extra": {"type": "string"}
            }
        });
        let problems = output_disagreements(&manifest, &derived_outputs());
        let text = problems.join("\n");
        for needle in [
            "`Outputs` field `digest` is an output the manifest does not declare: add `[outputs.properties.digest]`",
            "`[outputs.properties.extra]` has no matching `Outputs` field",
            "`required` of `[outputs]` lists `note`, but the `Outputs` field may be left out",
            "`[outputs.properties.files]` declares type `integer`, but every output is a string",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        assert_eq!(problems.len(), 4, "{text}");
    }

    #[test]
    fn the_derived_outputs_render_as_a_valid_outputs_table() {
        let manifest = format!(
            "[extension]\ncategory = \"util\"\nname = \"hello\"\nversion = \"0.1.0\"\n\
             contract = \"^0.2\"\ndescription = \"d\"\ncomponent = \"hello.wasm\"\n{}",
            section_toml("outputs", "Outputs", &derived_outputs())
        );
        let parsed = labhit_protocol::manifest::Manifest::from_toml(&manifest)
            .unwrap_or_else(|d| panic!("{d:?}\n{manifest}"));
        assert_eq!(
            parsed.outputs_schema(),
            Some(derived_outputs()),
            "{manifest}"
        );
    }

    #[test]
    fn the_derived_schema_renders_as_a_valid_inputs_table() {
        let manifest = format!(
            "[extension]\ncategory = \"util\"\nname = \"hello\"\nversion = \"0.1.0\"\n\
             contract = \"^0.1\"\ndescription = \"d\"\ncomponent = \"hello.wasm\"\n{}",
            inputs_toml(&derived())
        );
        let parsed = labhit_protocol::manifest::Manifest::from_toml(&manifest)
            .unwrap_or_else(|d| panic!("{d:?}\n{manifest}"));
        let mut expected = derived();
        // `null`s are left out.
        expected["properties"]["output"]
            .as_object_mut()
            .expect("object")
            .remove("default");
        assert_eq!(parsed.inputs_schema(), Some(expected), "{manifest}");
    }
}
