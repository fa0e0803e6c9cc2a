//! Generator: `schema/wire/borsh-layout.json`, the normative, machine-readable description of
//! the borsh encoding of every wire type, and `schema/wire/README.md`, the prose around it.
//!
//! The description is derived, never written by hand: the byte layout comes from
//! `borsh::BorshSchema` (derived on every wire type under `labhit-protocol`'s `borsh-schema`
//! feature), the JSON names (fields, enum variants, the tag key of an internally tagged
//! enum) from the JSON Schemas of `labhit_protocol::schema::wire_schemas`. The walk checks
//! that the two agree (same fields in the same order, one JSON name per variant) and fails on
//! any borsh shape it does not know, so a wire type cannot change without this file changing
//! or codegen failing.
//!
//! `tools/conformance/borsh_check.py` decodes and re-encodes every golden vector from this
//! file alone; `schema/wire/README.md` explains it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use borsh::BorshSchema;
use borsh::schema::{BorshSchemaContainer, Declaration, Definition, Fields};
use labhit_protocol::CONTRACT_VERSION;
use labhit_protocol::executor::{
    ArtifactPath, ArtifactRef, CacheDecision, CommandStep, ExecutorInput, StepResult,
};
use labhit_protocol::ids::{ArchiveId, RunId, SnapshotRef, StepId};
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};
use labhit_protocol::schema::{SCHEMA_BASE, wire_schemas};
use serde_json::{Map, Value, json};

use super::{GeneratedFile, HEADER};

/// Where the description goes, relative to the workspace root.
pub(crate) const LAYOUT_PATH: &str = "schema/wire/borsh-layout.json";

/// Where its prose goes.
const README_PATH: &str = "schema/wire/README.md";

/// The hand-written part of the README; the generator adds the header and the type table.
const README_TEXT: &str = include_str!("wire-readme.md");

/// The borsh schema of every wire type, by name. Every type with golden vectors is here (a
/// test checks it).
pub(crate) fn containers() -> Vec<(&'static str, BorshSchemaContainer)> {
    fn of<T: BorshSchema>(name: &'static str) -> (&'static str, BorshSchemaContainer) {
        (name, BorshSchemaContainer::for_type::<T>())
    }
    vec![
        of::<RunId>("RunId"),
        of::<StepId>("StepId"),
        of::<ArchiveId>("ArchiveId"),
        of::<SnapshotRef>("SnapshotRef"),
        of::<StageId>("StageId"),
        of::<ArtifactPath>("ArtifactPath"),
        of::<ArtifactRef>("ArtifactRef"),
        of::<CommandStep>("CommandStep"),
        of::<CacheDecision>("CacheDecision"),
        of::<ExecutorInput>("ExecutorInput"),
        of::<StepResult>("StepResult"),
        of::<RunStatus>("RunStatus"),
        of::<StageStatus>("StageStatus"),
        of::<LogLevel>("LogLevel"),
        of::<LogStream>("LogStream"),
        of::<StageRun>("StageRun"),
        of::<PipelineRun>("PipelineRun"),
        of::<LogEntry>("LogEntry"),
        of::<labhit_protocol::Value>("Value"),
    ]
}

/// Returns the generated files.
pub(crate) fn generate(_root: &Path) -> Result<Vec<GeneratedFile>> {
    let layout = layout()?;
    let text = format!("{layout:#}\n");
    let readme = readme(&layout)?;
    Ok(vec![
        GeneratedFile::new(LAYOUT_PATH, text),
        GeneratedFile::new(README_PATH, readme),
    ])
}

/// Builds the description.
pub(crate) fn layout() -> Result<Value> {
    let mut walker = Walker::new()?;
    for (name, _) in containers() {
        walker
            .named(name)
            .with_context(|| format!("describing the borsh layout of `{name}`"))?;
    }
    let primitives: Map<String, Value> = walker
        .primitives
        .iter()
        .map(|name| Ok((name.clone(), walker.primitive_doc(name)?)))
        .collect::<Result<_>>()?;
    Ok(json!({
        "$comment": format!(
            "{HEADER} Normative description of the borsh encoding of the LabHit wire types, \
             derived from the Rust types; see README.md next to this file."
        ),
        "$id": format!("{SCHEMA_BASE}wire/borsh-layout.json"),
        "title": "LabHit borsh layout",
        "contract_version": CONTRACT_VERSION,
        "byte_order": "little-endian",
        "primitives": primitives,
        "constructors": constructors(),
        "representations": representations(),
        "types": walker.types,
    }))
}

/// The meaning of `{"option": T}`, `{"vec": T}` and `{"map": {"key": K, "value": V}}`.
fn constructors() -> Value {
    json!({
        "option": {
            "borsh": "one tag byte: 0 for none (nothing follows) or 1 for some (the value \
                      follows); any other tag byte is refused",
            "json": "null for none, else the value; a struct field of this type may be left out \
                     of a JSON object, meaning null",
        },
        "vec": {
            "borsh": "u32 element count, then the elements one after the other",
            "json": "an array; a struct field of this type may be left out of a JSON object, \
                     meaning []",
        },
        "map": {
            "borsh": "u32 entry count, then each entry as its key followed by its value, in \
                      strictly ascending order of the keys (string keys compare by their UTF-8 \
                      bytes); entries out of order or with a repeated key are refused",
            "json": "an object (keys are strings); a struct field of this type may be left out \
                     of a JSON object, meaning {}",
        },
    })
}

/// The meaning of each `kind` of named type.
fn representations() -> Value {
    json!({
        "struct": "borsh: the fields in the order listed, nothing between them. JSON: an object \
                   with one key per field; `json_required: false` fields may be left out; \
                   `unknown_fields` says whether other keys are refused or ignored",
        "newtype": "one value of `type`, in both encodings exactly as that type (JSON: the inner \
                    value, not an object); `pattern`, when present, is a regular expression the \
                    whole string must match",
        "enum": "borsh: a one-byte tag (the variant's `tag`), then the variant's fields in \
                 order. JSON by `json`: `string` — the variant's `name` as a string (variants \
                 have no fields); `internally_tagged` — an object whose `tag_key` holds the \
                 variant's `name`, next to the variant's fields; `untagged` — the JSON value of \
                 the variant's payload `type` alone, and a JSON value is encoded with the first \
                 variant (lowest tag) whose payload type represents it exactly (an integer is \
                 a JSON number without fraction or exponent); a decoder refuses any other \
                 variant for it",
    })
}

/// Walks borsh declarations into the description.
struct Walker {
    /// Every borsh definition of every wire type.
    definitions: BTreeMap<Declaration, Definition>,
    /// The JSON Schema of every wire type, by name.
    json: BTreeMap<String, Value>,
    /// Named types described so far (or being described).
    types: Map<String, Value>,
    /// Primitive names used.
    primitives: BTreeSet<String>,
}

/// Integer primitives: name, size in bytes, signed.
const INTEGERS: [(&str, u8, bool); 8] = [
    ("u8", 1, false),
    ("u16", 2, false),
    ("u32", 4, false),
    ("u64", 8, false),
    ("i8", 1, true),
    ("i16", 2, true),
    ("i32", 4, true),
    ("i64", 8, true),
];

impl Walker {
    fn new() -> Result<Self> {
        let mut definitions = BTreeMap::new();
        for (name, container) in containers() {
            for (declaration, definition) in container.definitions() {
                if let Some(previous) = definitions.insert(declaration.clone(), definition.clone())
                    && previous != *definition
                {
                    bail!("`{name}` defines `{declaration}` differently from another wire type");
                }
            }
        }
        let json = wire_schemas()
            .into_iter()
            .map(|(name, schema)| (name.to_owned(), schema))
            .collect();
        Ok(Self {
            definitions,
            json,
            types: Map::new(),
            primitives: BTreeSet::new(),
        })
    }

    fn definition(&self, declaration: &str) -> Result<&Definition> {
        self.definitions
            .get(declaration)
            .with_context(|| format!("borsh schema has no definition of `{declaration}`"))
    }

    /// The type expression of a declaration: a primitive name, a named type, or a constructor.
    fn expr(&mut self, declaration: &str) -> Result<Value> {
        let definition = self.definition(declaration)?.clone();
        let primitive = |walker: &mut Self, name: &str| {
            walker.primitives.insert(name.to_owned());
            Ok(Value::String(name.to_owned()))
        };
        match (declaration, &definition) {
            ("()", Definition::Primitive(0)) => primitive(self, "unit"),
            ("bool", Definition::Primitive(1)) | ("f64", Definition::Primitive(8)) => {
                primitive(self, declaration)
            }
            (name, Definition::Primitive(size))
                if INTEGERS.iter().any(|(n, s, _)| *n == name && s == size) =>
            {
                primitive(self, name)
            }
            (
                "String",
                Definition::Sequence {
                    length_width: 4,
                    elements,
                    ..
                },
            ) if elements == "u8" => {
                self.primitives.insert("u32".into()); // the length
                primitive(self, "string")
            }
            (
                "Uuid",
                Definition::Sequence {
                    length_width: 0,
                    length_range,
                    elements,
                },
            ) if elements == "u8" && *length_range == (16..=16) => primitive(self, "uuid"),
            (
                "Timestamp",
                Definition::Struct {
                    fields: Fields::NamedFields(fields),
                },
            ) => {
                for (_, field) in fields {
                    self.expr(field)?;
                }
                primitive(self, "timestamp")
            }
            (
                _,
                Definition::Enum {
                    tag_width: 1,
                    variants,
                },
            ) if declaration.starts_with("Option<")
                && variants.len() == 2
                && variants[0].0 == 0
                && variants[0].1 == "None"
                && variants[0].2 == "()"
                && variants[1].0 == 1
                && variants[1].1 == "Some" =>
            {
                Ok(json!({ "option": self.expr(&variants[1].2)? }))
            }
            (
                _,
                Definition::Sequence {
                    length_width: 4,
                    length_range,
                    elements,
                },
            ) if declaration.starts_with("Vec<")
                && *length_range == Definition::DEFAULT_LENGTH_RANGE =>
            {
                self.primitives.insert("u32".into()); // the count
                Ok(json!({ "vec": self.expr(elements)? }))
            }
            (
                _,
                Definition::Sequence {
                    length_width: 4,
                    length_range,
                    elements,
                },
            ) if declaration.starts_with("BTreeMap<")
                && *length_range == Definition::DEFAULT_LENGTH_RANGE =>
            {
                self.primitives.insert("u32".into()); // the count
                let Definition::Tuple { elements: pair } = self.definition(elements)?.clone()
                else {
                    bail!("map `{declaration}` has entries `{elements}` that are not a pair");
                };
                let [key, value] = pair.as_slice() else {
                    bail!("map `{declaration}` has entries `{elements}` that are not a pair");
                };
                Ok(json!({ "map": { "key": self.expr(key)?, "value": self.expr(value)? } }))
            }
            (name, Definition::Struct { .. } | Definition::Enum { .. })
                if self.json.contains_key(name) =>
            {
                self.named(name)?;
                Ok(Value::String(name.to_owned()))
            }
            _ => bail!(
                "borsh declaration `{declaration}` ({definition:?}) is not a shape the layout \
                 describes; extend xtask/src/codegen/layout.rs (and the README next to the \
                 layout) or make it a wire type with a JSON Schema"
            ),
        }
    }

    /// Describes the named type `name` (once) into `self.types`.
    fn named(&mut self, name: &str) -> Result<()> {
        if self.types.contains_key(name) {
            return Ok(());
        }
        // A placeholder first, so a type that contains itself (`Value`) ends the recursion.
        self.types.insert(name.to_owned(), Value::Null);
        let schema = self
            .json
            .get(name)
            .cloned()
            .with_context(|| format!("`{name}` has no JSON Schema in wire_schemas()"))?;
        let definition = self.definition(name)?.clone();
        let mut out = Map::new();
        match definition {
            Definition::Struct {
                fields: Fields::NamedFields(fields),
            } => {
                out.insert("kind".into(), "struct".into());
                out.insert("fields".into(), self.fields(name, &fields, &schema, &[])?);
                let refused = schema.get("additionalProperties") == Some(&Value::Bool(false));
                out.insert(
                    "unknown_fields".into(),
                    (if refused { "refused" } else { "ignored" }).into(),
                );
            }
            Definition::Struct {
                fields: Fields::UnnamedFields(fields),
            } => {
                let [inner] = fields.as_slice() else {
                    bail!(
                        "tuple struct `{name}` has {} fields; only newtypes are described",
                        fields.len()
                    );
                };
                out.insert("kind".into(), "newtype".into());
                out.insert("type".into(), self.expr(inner)?);
                if let Some(pattern) = schema.get("pattern") {
                    out.insert("pattern".into(), pattern.clone());
                }
            }
            Definition::Enum {
                tag_width: 1,
                variants,
            } => {
                out.insert("kind".into(), "enum".into());
                self.variants(name, &variants, &schema, &mut out)?;
            }
            other => {
                bail!("`{name}` has a borsh definition the layout does not describe: {other:?}")
            }
        }
        if let Some(description) = schema.get("description") {
            out.insert("description".into(), description.clone());
        }
        self.types.insert(name.to_owned(), Value::Object(out));
        Ok(())
    }

    /// The fields of a struct (or struct variant), checked against the JSON object schema
    /// `schema`: the same names in the same order, `skip` (an enum's tag key) aside.
    fn fields(
        &mut self,
        owner: &str,
        fields: &[(String, Declaration)],
        schema: &Value,
        skip: &[&str],
    ) -> Result<Value> {
        let json_names: Vec<&str> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| {
                p.keys()
                    .map(String::as_str)
                    .filter(|k| !skip.contains(k))
                    .collect()
            })
            .unwrap_or_default();
        let borsh_names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        if json_names != borsh_names {
            bail!(
                "`{owner}`: borsh fields {borsh_names:?} differ from the JSON Schema's properties \
                 {json_names:?} (names and order must agree)"
            );
        }
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (field, declaration) in fields {
            out.push(json!({
                "name": field,
                "type": self.expr(declaration)?,
                "json_required": required.contains(&field.as_str()),
            }));
        }
        Ok(Value::Array(out))
    }

    /// The variants of an enum and its JSON representation, from its JSON Schema.
    fn variants(
        &mut self,
        name: &str,
        variants: &[(i64, String, Declaration)],
        schema: &Value,
        out: &mut Map<String, Value>,
    ) -> Result<()> {
        for (index, (tag, variant, _)) in variants.iter().enumerate() {
            if usize::try_from(*tag).ok() != Some(index) {
                bail!(
                    "`{name}::{variant}` has tag {tag} at position {index}; tags must be 0, 1, 2, …"
                );
            }
        }
        let members: Vec<Value> = schema
            .get("oneOf")
            .and_then(Value::as_array)
            .cloned()
            .or_else(|| {
                schema.get("enum").and_then(Value::as_array).map(|names| {
                    names
                        .iter()
                        .map(|n| json!({ "type": "string", "const": n }))
                        .collect()
                })
            })
            .unwrap_or_default();
        let is_any = members.is_empty()
            && ["type", "properties", "$ref", "anyOf", "allOf"]
                .iter()
                .all(|k| schema.get(*k).is_none());
        let mut described = Vec::new();
        if is_any {
            // The JSON Schema admits any value: the JSON form is the payload alone.
            out.insert("json".into(), "untagged".into());
            for (tag, variant, payload) in variants {
                described.push(json!({
                    "tag": tag,
                    "name": variant.to_lowercase(),
                    "type": self.expr(payload)?,
                }));
            }
        } else if members.len() != variants.len() {
            bail!(
                "`{name}` has {} borsh variants but its JSON Schema lists {}",
                variants.len(),
                members.len()
            );
        } else if members
            .iter()
            .all(|m| m.get("const").is_some_and(Value::is_string))
        {
            out.insert("json".into(), "string".into());
            for ((tag, variant, payload), member) in variants.iter().zip(&members) {
                if !matches!(
                    self.definition(payload)?,
                    Definition::Struct {
                        fields: Fields::Empty
                    }
                ) {
                    bail!("`{name}::{variant}` has fields but is written as a plain string");
                }
                described.push(json!({ "tag": tag, "name": member["const"], "fields": [] }));
            }
        } else {
            let tag_key = internal_tag_key(name, &members)?;
            out.insert("json".into(), "internally_tagged".into());
            out.insert("tag_key".into(), tag_key.clone().into());
            for ((tag, variant, payload), member) in variants.iter().zip(&members) {
                let fields = match self.definition(payload)?.clone() {
                    Definition::Struct {
                        fields: Fields::NamedFields(fields),
                    } => fields,
                    Definition::Struct {
                        fields: Fields::Empty,
                    } => Vec::new(),
                    other => bail!(
                        "`{name}::{variant}` has a payload the layout does not describe: {other:?}"
                    ),
                };
                let owner = format!("{name}::{variant}");
                let refused = member.get("additionalProperties") == Some(&Value::Bool(false));
                described.push(json!({
                    "tag": tag,
                    "name": member["properties"][&tag_key]["const"],
                    "fields": self.fields(&owner, &fields, member, &[&tag_key])?,
                    "unknown_fields": if refused { "refused" } else { "ignored" },
                }));
            }
        }
        out.insert("tag".into(), "u8".into());
        self.primitives.insert("u8".into());
        out.insert("variants".into(), Value::Array(described));
        Ok(())
    }

    /// The documentation of a primitive, with its layout taken from the borsh definitions.
    fn primitive_doc(&self, name: &str) -> Result<Value> {
        if let Some((_, size, signed)) = INTEGERS.iter().find(|(n, _, _)| *n == name) {
            let bits = u32::from(*size) * 8;
            let (min, max): (i128, i128) = if *signed {
                (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
            } else {
                (0, (1i128 << bits) - 1)
            };
            return Ok(json!({
                "size": size,
                "signed": signed,
                "minimum": json_integer(min)?,
                "maximum": json_integer(max)?,
                "borsh": if *signed { "two's complement, little-endian" } else { "little-endian" },
                "json": "a number without fraction or exponent, in [minimum, maximum]",
            }));
        }
        Ok(match name {
            "unit" => json!({ "size": 0, "borsh": "nothing", "json": "null" }),
            "bool" => json!({
                "size": 1,
                "borsh": "one byte, 0 for false or 1 for true; any other byte is refused",
                "json": "true or false",
            }),
            "f64" => json!({
                "size": 8,
                "borsh": "IEEE 754 binary64, little-endian; NaN is refused",
                "json": "a finite number",
            }),
            "string" => json!({
                "borsh": "u32 byte length, then that many bytes of UTF-8 (invalid UTF-8 is refused)",
                "json": "a string",
            }),
            "uuid" => json!({
                "size": 16,
                "borsh": "the 16 bytes of the UUID in RFC 9562 order (the first byte is the first \
                          two hex digits of the text form), no length prefix",
                "json": "the lowercase hyphenated form, 8-4-4-4-12 hex digits",
            }),
            "timestamp" => {
                let Definition::Struct {
                    fields: Fields::NamedFields(fields),
                } = self.definition("Timestamp")?
                else {
                    bail!("`Timestamp` is not a struct with named fields");
                };
                let fields: Vec<Value> = fields
                    .iter()
                    .map(|(n, t)| json!({ "name": n, "type": t }))
                    .collect();
                json!({
                    "size": 12,
                    "fields": fields,
                    "borsh": "`seconds` since 1970-01-01T00:00:00Z (negative before it), then \
                              `nanos` added to that, 0 to 999999999 (larger is refused)",
                    "json": "RFC 3339 in UTC with a `Z` suffix (`2025-03-01T12:00:00Z`); the \
                             fraction of a second has 0, 3, 6 or 9 digits, the fewest that \
                             represent `nanos` exactly",
                })
            }
            other => bail!("no documentation for primitive `{other}`"),
        })
    }
}

/// The key that holds the variant name of an internally tagged enum: the one property every
/// member of `oneOf` fixes with `const`.
fn internal_tag_key(name: &str, members: &[Value]) -> Result<String> {
    let consts = |member: &Value| -> Vec<String> {
        member
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| {
                p.iter()
                    .filter(|(_, v)| v.get("const").is_some())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let first = members.first().map(consts).unwrap_or_default();
    let [key] = first.as_slice() else {
        bail!("`{name}`: cannot tell the JSON representation of this enum from its JSON Schema");
    };
    if members.iter().any(|m| consts(m) != first) {
        bail!("`{name}`: the variants of this enum do not share one tag key `{key}`");
    }
    Ok(key.clone())
}

/// `bound` as a JSON number.
fn json_integer(bound: i128) -> Result<Value> {
    if let Ok(signed) = i64::try_from(bound) {
        return Ok(signed.into());
    }
    u64::try_from(bound)
        .map(Value::from)
        .with_context(|| format!("{bound} does not fit a JSON integer"))
}

/// The README: the hand-written prose, then a table of the types.
fn readme(layout: &Value) -> Result<String> {
    let mut out = format!("<!-- {HEADER} Its prose is in xtask/src/codegen/wire-readme.md. -->\n");
    out.push_str(&README_TEXT.replace("{CONTRACT_VERSION}", CONTRACT_VERSION));
    out.push_str(
        "\n## The wire types\n\n| type | kind | JSON | schema | vectors |\n|---|---|---|---|---|\n",
    );
    let types = layout["types"].as_object().context("layout has no types")?;
    for (name, ty) in types {
        let kind = ty["kind"].as_str().unwrap_or_default();
        let json = match kind {
            "enum" => ty["json"].as_str().unwrap_or_default().replace('_', " "),
            "struct" => "object".to_owned(),
            _ => format!("as `{}`", ty["type"].as_str().unwrap_or("?")),
        };
        let file = labhit_protocol::schema::wire_name(name);
        writeln!(
            out,
            "| `{name}` | {kind} | {json} | [`{file}.schema.json`]({file}.schema.json) | \
             [`{file}.json`](../../tests/vectors/{file}.json) |"
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type with golden vectors, and every wire type with a JSON Schema, is described.
    #[test]
    fn every_vector_type_is_described() {
        let described: BTreeSet<String> =
            containers().iter().map(|(n, _)| (*n).to_owned()).collect();
        let schemas: BTreeSet<String> = wire_schemas()
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect();
        let vectors: BTreeSet<String> = super::super::vectors::type_names()
            .expect("vectors build")
            .into_iter()
            .collect();
        assert_eq!(described, vectors, "layout types vs vector types");
        assert_eq!(schemas, vectors, "JSON Schema files vs vector types");
    }

    /// A borsh shape the walk does not know is an error naming it, not a silent guess.
    #[test]
    fn unknown_shapes_are_refused() {
        let mut walker = Walker::new().expect("walker");
        walker.definitions.insert(
            "HashMap<String, u8>".into(),
            Definition::Sequence {
                length_width: 4,
                length_range: Definition::DEFAULT_LENGTH_RANGE,
                elements: "(String, u8)".into(),
            },
        );
        let err = walker.expr("HashMap<String, u8>").unwrap_err().to_string();
        assert!(err.contains("`HashMap<String, u8>`"), "{err}");
        assert!(walker.expr("NoSuchType").is_err());
    }

    /// Field names and order must agree between borsh and the JSON Schema.
    #[test]
    fn field_order_disagreement_is_refused() {
        let mut walker = Walker::new().expect("walker");
        let schema = json!({ "properties": { "b": {}, "a": {} } });
        let fields = vec![
            ("a".to_owned(), "u8".to_owned()),
            ("b".to_owned(), "u8".to_owned()),
        ];
        let err = walker
            .fields("T", &fields, &schema, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("names and order must agree"), "{err}");
    }

    #[test]
    fn the_layout_pins_the_documented_encodings() {
        let layout = layout().expect("layout");
        assert_eq!(
            layout["primitives"]["timestamp"]["fields"][0],
            json!({"name": "seconds", "type": "i64"})
        );
        assert_eq!(
            layout["primitives"]["timestamp"]["fields"][1],
            json!({"name": "nanos", "type": "u32"})
        );
        assert_eq!(layout["types"]["RunId"]["type"], "uuid");
        assert_eq!(
            layout["types"]["CacheDecision"]["json"],
            "internally_tagged"
        );
        assert_eq!(layout["types"]["CacheDecision"]["tag_key"], "kind");
        assert_eq!(layout["types"]["Value"]["json"], "untagged");
        assert_eq!(layout["types"]["Value"]["variants"][3]["type"], "u64");
        assert_eq!(
            layout["types"]["ExecutorInput"]["fields"][2]["type"],
            json!({"map": {"key": "string", "value": "string"}})
        );
        assert_eq!(
            layout["types"]["StageStatus"]["variants"][1]["name"],
            "waiting_for_approval"
        );
    }
}
