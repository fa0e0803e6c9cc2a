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
    if let Some(path) = std::env::var_os(SCHEMA_OUT_ENV) {
        let document = serde_json::json!({ "inputs": schema });
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

    #[derive(serde::Deserialize, JsonSchema, Default)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code, reason = "only its schema is used")]
    enum Mode {
        #[default]
        Fast,
        Slow,
    }

    struct NotSchema;

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
}
