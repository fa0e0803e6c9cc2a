//! The JSON Schema of an extension's `with`, derived from its [`Config`](crate::Extension::Config)
//! type with `schemars`: the one source of truth for the manifest's `[inputs]`.
//!
//! A `Config` that derives [`schemars::JsonSchema`] describes itself; [`inputs_schema`] turns
//! that into the schema `extension.toml` declares as `[inputs]` (JSON Schema 2020-12, every
//! subschema inlined, no `$schema`, `title` or `description` at the top). Schemars runs at run time, so a
//! tool that only has the `.wasm` cannot ask for it: [`export_extension!`](crate::export_extension)
//! also emits, in native test builds (`cfg(test)`), the test `__labhit_sdk_schema::inputs_schema`.
//! Run alone with [`SCHEMA_OUT_ENV`] naming a file, it writes `{"inputs": <schema or null>}`
//! there; this is what `labhit ext build` runs (`cargo test --lib`) to compare the derived
//! schema with the manifest or to write it into the bundle. Without the variable the test
//! checks that the schema describes an object, so an ordinary `cargo test` exercises it.
//!
//! A `Config` that does not derive `JsonSchema` still builds: the hook then reports `null`
//! ([`__private`] picks the implementation with autoref specialisation), and `ext build`
//! keeps the hand-written `[inputs]`.
//!
//! The same hook reports the `[outputs]` schema of an extension that declares its named
//! outputs as one type ([`TypedOutputs`](crate::TypedOutputs)): `{"inputs": …, "outputs":
//! <schema or null>}`, made by [`outputs_schema`]. Every named output is a string on the
//! wire, so each field becomes `{"type": "string"}` (with its doc comment as
//! `description`); the fields that are always reported are `required`, and no other output
//! is allowed.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

/// The environment variable naming the file the schema hook writes (see the module
/// documentation).
pub const SCHEMA_OUT_ENV: &str = "LABHIT_SDK_SCHEMA_OUT";

/// The name of the schema hook test, as `cargo test` filters it.
pub const SCHEMA_HOOK_TEST: &str = "__labhit_sdk_schema::inputs_schema";

/// The `[inputs]` schema of `T`: JSON Schema 2020-12 with every subschema inlined, without
/// the top-level `$schema`, `title` and `description` (the type's own doc comment; the
/// manifest says what the schema is of). Field doc comments become `description`s.
pub fn inputs_schema<T: JsonSchema>() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
        object.remove("description");
    }
    value
}

/// The `[outputs]` schema of `T`, the type of an extension's named outputs
/// ([`TypedOutputs::Outputs`](crate::TypedOutputs::Outputs)): an object with one
/// `{"type": "string"}` property per field that `T` serializes (its doc comment as
/// `description`), the fields that never serialize to `null` or are skipped as `required`,
/// and `additionalProperties: false`. Outputs are strings on the wire
/// ([`Output::typed`](crate::Output::typed) turns every value into its text), so the field
/// types themselves are not part of it.
pub fn outputs_schema<T: JsonSchema>() -> Value {
    let settings = SchemaSettings::draft2020_12().for_serialize().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let derived = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    let required: Vec<&str> = derived
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut properties = serde_json::Map::new();
    let mut always = Vec::new();
    if let Some(fields) = derived.get("properties").and_then(Value::as_object) {
        for (name, field) in fields {
            let mut property = serde_json::Map::new();
            property.insert("type".to_owned(), Value::from("string"));
            if let Some(description) = field.get("description") {
                property.insert("description".to_owned(), description.clone());
            }
            properties.insert(name.clone(), Value::Object(property));
            if required.contains(&name.as_str()) && !admits_null(field) {
                always.push(Value::from(name.as_str()));
            }
        }
    }
    let mut schema = serde_json::Map::new();
    schema.insert(
        "type".to_owned(),
        derived.get("type").cloned().unwrap_or(Value::Null),
    );
    schema.insert("properties".to_owned(), Value::Object(properties));
    schema.insert("required".to_owned(), Value::Array(always));
    let additional = match derived.get("additionalProperties") {
        None | Some(Value::Bool(false)) => Value::Bool(false),
        Some(_) => serde_json::json!({ "type": "string" }),
    };
    schema.insert("additionalProperties".to_owned(), additional);
    Value::Object(schema)
}

/// Whether a (serialization) schema lets the value be `null`: an `Option` field, which
/// [`Output::typed`](crate::Output::typed) leaves out when it is `None`.
fn admits_null(schema: &Value) -> bool {
    let null = Value::from("null");
    match schema.get("type") {
        Some(Value::String(name)) if name == "null" => return true,
        Some(Value::Array(names)) if names.contains(&null) => return true,
        _ => {}
    }
    ["anyOf", "oneOf"].iter().any(|key| {
        schema
            .get(*key)
            .and_then(Value::as_array)
            .is_some_and(|options| options.iter().any(admits_null))
    })
}

/// Runs the schema hook with the schema found for the extension's `Config` (`None` when it
/// does not derive `JsonSchema`): writes it to the file [`SCHEMA_OUT_ENV`] names, or, without
/// the variable, checks that it describes a JSON object.
///
/// # Panics
///
/// When the file cannot be written, or the schema does not describe an object: it runs as a
/// test, whose failure is the panic.
#[doc(hidden)]
pub fn run_hook(schema: Option<Value>) {
    run_hooks(schema, None);
}

/// [`run_hook`] with the `[outputs]` schema too (`None` when the extension does not declare
/// [`TypedOutputs`](crate::TypedOutputs)): what `export_extension!` calls.
///
/// # Panics
///
/// As [`run_hook`]; also when the outputs schema does not describe an object.
#[doc(hidden)]
pub fn run_hooks(schema: Option<Value>, outputs: Option<Value>) {
    if let Some(path) = std::env::var_os(SCHEMA_OUT_ENV) {
        let document = serde_json::json!({ "inputs": schema, "outputs": outputs });
        let text = serde_json::to_string_pretty(&document).unwrap_or_default();
        if let Err(err) = std::fs::write(&path, text) {
            panic!(
                "cannot write the schema to `{}`: {err}",
                path.to_string_lossy()
            );
        }
        return;
    }
    if let Some(schema) = schema {
        let is_object = schema.get("type") == Some(&Value::from("object"))
            || schema == Value::Bool(true)
            || schema.as_object().is_some_and(serde_json::Map::is_empty);
        assert!(
            is_object,
            "the extension's `Config` must describe a JSON object (`with` is one), but its schema is {schema}"
        );
    }
    if let Some(outputs) = outputs {
        assert!(
            outputs.get("type") == Some(&Value::from("object")),
            "the extension's `Outputs` must be a struct with named fields (each a named output), but its schema is {outputs}"
        );
    }
}

/// The machinery of the schema hook `export_extension!` emits; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::marker::PhantomData;

    use schemars::JsonSchema;
    use serde_json::Value;

    /// Stands for a `Config` type; `(&&Probe::<T>::new()).derived_schema()` picks
    /// [`ViaJsonSchema`] when `T: JsonSchema`, else [`NoJsonSchema`].
    pub struct Probe<T>(PhantomData<T>);

    impl<T> Probe<T> {
        /// A probe for `T`.
        #[allow(clippy::new_without_default, reason = "only the macro makes one")]
        pub fn new() -> Self {
            Self(PhantomData)
        }
    }

    /// Chosen when the `Config` derives `JsonSchema`.
    pub trait ViaJsonSchema {
        /// The schema.
        fn derived_schema(&self) -> Option<Value>;
    }

    impl<T: JsonSchema> ViaJsonSchema for &Probe<T> {
        fn derived_schema(&self) -> Option<Value> {
            Some(super::inputs_schema::<T>())
        }
    }

    /// Chosen otherwise.
    pub trait NoJsonSchema {
        /// No schema.
        fn derived_schema(&self) -> Option<Value>;
    }

    impl<T> NoJsonSchema for Probe<T> {
        fn derived_schema(&self) -> Option<Value> {
            None
        }
    }

    /// Stands for an extension type; `(&&OutputsProbe::<E>::new()).derived_outputs_schema()`
    /// picks [`ViaTypedOutputs`] when `E: TypedOutputs`, else [`NoTypedOutputs`].
    pub struct OutputsProbe<E>(PhantomData<E>);

    impl<E> OutputsProbe<E> {
        /// A probe for `E`.
        #[allow(clippy::new_without_default, reason = "only the macro makes one")]
        pub fn new() -> Self {
            Self(PhantomData)
        }
    }

    /// Chosen when the extension declares [`TypedOutputs`](crate::TypedOutputs).
    pub trait ViaTypedOutputs {
        /// The `[outputs]` schema.
        fn derived_outputs_schema(&self) -> Option<Value>;
    }

    impl<E: crate::TypedOutputs> ViaTypedOutputs for &OutputsProbe<E> {
        fn derived_outputs_schema(&self) -> Option<Value> {
            Some(super::outputs_schema::<E::Outputs>())
        }
    }

    /// Chosen otherwise.
    pub trait NoTypedOutputs {
        /// No schema.
        fn derived_outputs_schema(&self) -> Option<Value>;
    }

    impl<E> NoTypedOutputs for OutputsProbe<E> {
        fn derived_outputs_schema(&self) -> Option<Value> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::__private::{NoJsonSchema as _, Probe, ViaJsonSchema as _};
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    #[allow(dead_code, reason = "only its schema is used")]
    struct Config {
        /// Patterns.
        patterns: Vec<String>,
        #[serde(default)]
        fail_fast: bool,
        #[serde(default)]
        mode: Mode,
    }

    #[derive(serde::Deserialize, serde::Serialize, JsonSchema, Default)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code, reason = "only its schema is used")]
    enum Mode {
        #[default]
        Fast,
        Slow,
    }

    struct NotSchema;

    /// The outputs of a test extension.
    #[derive(serde::Serialize, JsonSchema)]
    #[serde(rename_all = "kebab-case")]
    #[allow(dead_code, reason = "only its schema is used")]
    struct Outputs {
        /// Number of files.
        files: usize,
        all_ok: bool,
        note: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u32>,
        mode: Mode,
    }

    #[test]
    fn the_outputs_schema_is_strings_and_who_is_always_there() {
        let schema = outputs_schema::<Outputs>();
        assert_eq!(
            schema,
            serde_json::json!({
                "type": "object",
                "properties": {
                    "files": {"type": "string", "description": "Number of files."},
                    "all-ok": {"type": "string"},
                    "note": {"type": "string"},
                    "skipped": {"type": "string"},
                    "mode": {"type": "string"},
                },
                "required": ["files", "all-ok", "mode"],
                "additionalProperties": false,
            })
        );
    }

    #[test]
    fn the_schema_is_inlined_and_follows_serde() {
        let schema = inputs_schema::<Config>();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], serde_json::json!(["patterns"]));
        assert_eq!(schema["properties"]["fail-fast"]["type"], "boolean");
        assert_eq!(
            schema["properties"]["mode"]["enum"],
            serde_json::json!(["fast", "slow"])
        );
        assert!(schema.get("$schema").is_none() && schema.get("title").is_none());
        assert!(!schema.to_string().contains("$ref"), "{schema}");
    }

    #[test]
    #[allow(
        clippy::needless_borrow,
        reason = "the two borrows are how the probe picks an implementation"
    )]
    fn the_probe_finds_a_schema_only_where_one_is_derived() {
        assert!((&&Probe::<Config>::new()).derived_schema().is_some());
        assert!((&&Probe::<NotSchema>::new()).derived_schema().is_none());
    }

    struct Plain;
    impl crate::Extension for Plain {
        type Config = serde_json::Value;
        fn execute(
            _: &crate::Context,
            _: crate::Input<Self::Config>,
        ) -> Result<crate::Output, crate::Error> {
            Ok(crate::Output::new())
        }
    }

    struct Typed;
    impl crate::Extension for Typed {
        type Config = serde_json::Value;
        fn execute(
            _: &crate::Context,
            _: crate::Input<Self::Config>,
        ) -> Result<crate::Output, crate::Error> {
            Ok(crate::Output::new())
        }
    }
    impl crate::TypedOutputs for Typed {
        type Outputs = Outputs;
    }

    #[test]
    #[allow(
        clippy::needless_borrow,
        reason = "the two borrows are how the probe picks an implementation"
    )]
    fn the_outputs_probe_finds_a_schema_only_for_typed_outputs() {
        use super::__private::{NoTypedOutputs as _, OutputsProbe, ViaTypedOutputs as _};
        assert_eq!(
            (&&OutputsProbe::<Typed>::new()).derived_outputs_schema(),
            Some(outputs_schema::<Outputs>())
        );
        assert!(
            (&&OutputsProbe::<Plain>::new())
                .derived_outputs_schema()
                .is_none()
        );
    }
}
