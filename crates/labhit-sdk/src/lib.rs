//! Write LabHit extensions in plain Rust.
//!
//! A LabHit extension is a WebAssembly component that runs one pipeline stage inside a
//! sandbox (see `wit/labhit-extension.wit`). With this crate it is an ordinary Rust type:
//!
//! * implement [`Extension`]: a `Config` type parsed from the stage's `with` (a mismatch is
//!   an `invalid-config` error naming the field path) and `execute`;
//! * use the [`Context`] for logging ([`info!`] and friends), [`secrets`](Context::secret),
//!   cancellation and the workspace (file helpers that respect the manifest's grant, and
//!   [`glob`](Context::glob));
//! * build the result with [`Output`] (named outputs, [artifacts](Context::artifact), exit
//!   code), or fail with an [`Error`]; [`TypedOutputs`] makes the named outputs one type,
//!   the source of the manifest's `[outputs]`;
//! * register it with one line, [`export_extension!`];
//! * test it natively with [`testing::MockHost`], which checks grants like the real host.
//!
//! # Example
//!
//! A complete extension that counts the lines of workspace files (crate type `cdylib` for the
//! component plus `rlib` for native tests):
//!
//! ```
//! use labhit_sdk::{Context, Error, Extension, Input, Output, info};
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! // `JsonSchema` makes this type the source of the manifest's `[inputs]` (see `schema`).
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! pub struct Config {
//!     /// Glob patterns of the files to count.
//!     patterns: Vec<String>,
//! }
//!
//! pub struct LineCount;
//!
//! impl Extension for LineCount {
//!     type Config = Config;
//!
//!     fn execute(ctx: &Context, input: Input<Config>) -> Result<Output, Error> {
//!         let mut lines = 0;
//!         for path in ctx.glob(&input.config.patterns)? {
//!             ctx.check_cancelled("counting lines")?;
//!             lines += ctx.read_to_string(&path)?.lines().count();
//!             info!(ctx, "counted {path}");
//!         }
//!         if lines == 0 {
//!             return Err(Error::failed("no lines in the matched files"));
//!         }
//!         Ok(Output::new().output("lines", lines))
//!     }
//! }
//!
//! labhit_sdk::export_extension!(LineCount);
//!
//! # fn main() {
//! // A native test: the mock host grants what the manifest grants.
//! use labhit_sdk::testing::{MockHost, json};
//! use labhit_sdk::WorkspaceAccess;
//!
//! let host = MockHost::new()
//!     .filesystem(WorkspaceAccess::ReadOnly)
//!     .file("src/a.txt", "one\ntwo\n")
//!     .file("src/b.txt", "three\n");
//! let output = host.run::<LineCount>(json!({"patterns": ["src/*.txt"]})).unwrap();
//! assert_eq!(output.get("lines"), Some("3"));
//! assert!(host.logged("counted src/b.txt"));
//!
//! let err = host.run::<LineCount>(json!({"patterns": "src"})).unwrap_err();
//! assert_eq!(err.message(), "invalid `with`: at `patterns`: invalid type: string \"src\", expected a sequence");
//! # }
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` and ship the `.wasm` with an
//! `extension.toml`; `extensions/README.md` in the repository is the authoring guide.
//!
//! # Panics
//!
//! A panic inside `execute` ends the step as failed. Before the component traps, the glue
//! logs the panic message and location at error level, so the host can show it.
#![warn(missing_docs)]

mod context;
mod error;
pub mod glob;
#[doc(hidden)]
pub mod glue;
#[cfg(feature = "http")]
pub mod http;
mod input;
mod output;
pub mod schema;
pub mod testing;

use serde::de::DeserializeOwned;

pub use context::{Context, Level, WorkspaceAccess};
pub use error::{Error, SecretError};
pub use input::{CacheDecision, Command, Input, parse_config};
pub use output::{Artifact, Output};

/// The wire and model types shared with hosts (`labhit-protocol`).
pub use labhit_protocol as protocol;

/// `schemars`, which derives the `[inputs]` schema from a `Config` (see [`schema`]).
pub use schemars;

/// A LabHit extension: how to read its configuration and how to execute one step.
///
/// `execute` is called once per step, in a fresh instance; nothing survives between calls.
pub trait Extension {
    /// The stage's `with`, deserialized from JSON. Use `#[serde(deny_unknown_fields)]` to
    /// reject misspelled keys, `#[serde(default)]` for optional ones, and
    /// `#[serde(rename_all = "kebab-case")]` for keys like `fail-on-skipped`.
    /// `serde_json::Value` accepts anything. Derive `schemars::JsonSchema` too: `labhit ext
    /// build` then checks the manifest's `[inputs]` against it, or writes it there when the
    /// manifest has none ([`schema`]).
    type Config: DeserializeOwned;

    /// Executes one step.
    ///
    /// # Errors
    ///
    /// An [`Error`] ends the stage as failed with its message. To fail while still reporting
    /// outputs and artifacts, return an [`Output`] with a non-zero
    /// [`exit_code`](Output::exit_code) instead.
    fn execute(ctx: &Context, input: Input<Self::Config>) -> Result<Output, Error>;

    /// Parses the stage's `with` JSON into [`Config`](Self::Config). The default,
    /// [`parse_config`], names the path of a mismatched field; override it to check more.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the configuration is unusable.
    fn parse_config(json: &str) -> Result<Self::Config, Error> {
        parse_config(json)
    }
}

/// An extension whose named outputs are the fields of one type: the typed path to
/// [`Output`], and the source of the manifest's `[outputs]`.
///
/// `Outputs` is a struct deriving `serde::Serialize` and `schemars::JsonSchema`; each field is
/// a named output (`#[serde(rename_all = "kebab-case")]` for names like `exit-code`, an
/// `Option` field for an output that is sometimes missing). [`output`](Self::output) turns a
/// value into an [`Output`]; `export_extension!` finds the implementation by itself, and
/// `labhit ext build` then checks the manifest's `[outputs]` against the type (naming each
/// output that one has and the other lacks), or writes it there when the manifest has none
/// ([`schema::outputs_schema`]). Extensions that set outputs by name with
/// [`Output::output`] need not implement it.
///
/// ```
/// use labhit_sdk::{Context, Error, Extension, Input, Output, TypedOutputs};
/// use schemars::JsonSchema;
/// use serde::Serialize;
///
/// /// The named outputs.
/// #[derive(Serialize, JsonSchema)]
/// pub struct Counted {
///     /// Number of files counted.
///     files: usize,
/// }
///
/// pub struct Count;
///
/// impl Extension for Count {
///     type Config = serde_json::Value;
///
///     fn execute(_: &Context, _: Input<Self::Config>) -> Result<Output, Error> {
///         Self::output(&Counted { files: 2 })
///     }
/// }
///
/// impl TypedOutputs for Count {
///     type Outputs = Counted;
/// }
/// # fn main() {
/// let output = labhit_sdk::testing::MockHost::new()
///     .run::<Count>(serde_json::json!({}))
///     .unwrap();
/// assert_eq!(output.get("files"), Some("2"));
/// # }
/// ```
pub trait TypedOutputs: Extension {
    /// The named outputs: a struct whose fields are the outputs.
    type Outputs: serde::Serialize + schemars::JsonSchema;

    /// `outputs` as a successful [`Output`] ([`Output::typed`]); add artifacts or an exit
    /// code to it as usual.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when `Outputs` does not serialize to a JSON object.
    fn output(outputs: &Self::Outputs) -> Result<Output, Error> {
        Output::typed(outputs)
    }
}

/// Parses the config and calls `E::execute`: shared by the component glue and the mock host.
pub(crate) fn run<E: Extension>(ctx: &Context, raw: input::RawInput) -> Result<Output, Error> {
    let config = E::parse_config(&raw.config)?;
    E::execute(ctx, raw.typed(config))
}

/// Exports an [`Extension`] as the component's `pipeline-step`: the one line of glue an
/// extension needs.
///
/// ```
/// # use labhit_sdk::{Context, Error, Extension, Input, Output};
/// # pub struct MyExtension;
/// # impl Extension for MyExtension {
/// #     type Config = serde_json::Value;
/// #     fn execute(_: &Context, _: Input<Self::Config>) -> Result<Output, Error> {
/// #         Ok(Output::new())
/// #     }
/// # }
/// labhit_sdk::export_extension!(MyExtension);
/// # fn main() {}
/// ```
///
/// It installs a panic hook that logs panics through the host, parses the config, runs
/// `execute` and converts the result to the WIT types. In a native build the exported
/// function exists but is never called; tests use [`testing::MockHost`]. In native test
/// builds it also adds the test `__labhit_sdk_schema::inputs_schema`, through which
/// `labhit ext build` reads the schema derived from the `Config` type and, for a
/// [`TypedOutputs`] extension, from its `Outputs` type ([`schema`]).
#[macro_export]
macro_rules! export_extension {
    ($extension:ty) => {
        // The component's exports exist only in wasm builds: native linkers refuse their
        // names, and native tests go through `labhit_sdk::testing` instead.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        const _: () = {
            #[doc(hidden)]
            struct __LabhitSdkGuest;

            impl $crate::glue::Guest for __LabhitSdkGuest {
                fn execute(
                    input: $crate::glue::StepInput,
                ) -> ::core::result::Result<$crate::glue::StepOutput, $crate::glue::StepError>
                {
                    $crate::glue::execute::<$extension>(input)
                }
            }

    $crate::glue::export!(__LabhitSdkGuest with_types_in $crate::glue::wit);
        };

        // Natively, still check that the type is an `Extension`.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = $crate::glue::execute::<$extension>;
        };

        // The schema hook `labhit ext build` runs (see `labhit_sdk::schema`): a test, so it
        // exists only in native test builds and costs the component nothing.
        #[cfg(all(test, not(target_arch = "wasm32")))]
        #[doc(hidden)]
        type __LabhitSdkExtension = $extension;

        #[cfg(all(test, not(target_arch = "wasm32")))]
        #[doc(hidden)]
        mod __labhit_sdk_schema {
            #[test]
            #[allow(clippy::needless_borrow)]
            fn inputs_schema() {
                #[allow(unused_imports)]
                use $crate::schema::__private::{
                    NoJsonSchema as _, NoTypedOutputs as _, ViaJsonSchema as _,
                    ViaTypedOutputs as _,
                };
                let probe = $crate::schema::__private::Probe::<
                    <super::__LabhitSdkExtension as $crate::Extension>::Config,
                >::new();
                let outputs =
                    $crate::schema::__private::OutputsProbe::<super::__LabhitSdkExtension>::new();
                $crate::schema::run_hooks(
                    (&&probe).derived_schema(),
                    (&&outputs).derived_outputs_schema(),
                );
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:ident, $ctx:expr, $($arg:tt)+) => {
        $crate::Context::log($ctx, $crate::Level::$level, &::std::format!($($arg)+))
    };
}

/// Logs a formatted message at [`Level::Trace`]: `trace!(ctx, "read {} bytes", n)`.
#[macro_export]
macro_rules! trace {
    ($ctx:expr, $($arg:tt)+) => { $crate::__log!(Trace, $ctx, $($arg)+) };
}

/// Logs a formatted message at [`Level::Debug`]: `debug!(ctx, "cache key {key}")`.
#[macro_export]
macro_rules! debug {
    ($ctx:expr, $($arg:tt)+) => { $crate::__log!(Debug, $ctx, $($arg)+) };
}

/// Logs a formatted message at [`Level::Info`]: `info!(ctx, "hashed {count} files")`.
#[macro_export]
macro_rules! info {
    ($ctx:expr, $($arg:tt)+) => { $crate::__log!(Info, $ctx, $($arg)+) };
}

/// Logs a formatted message at [`Level::Warn`]: `warn!(ctx, "{path} is empty")`.
#[macro_export]
macro_rules! warn {
    ($ctx:expr, $($arg:tt)+) => { $crate::__log!(Warn, $ctx, $($arg)+) };
}

/// Logs a formatted message at [`Level::Error`]: `error!(ctx, "{failed} tests failed")`.
#[macro_export]
macro_rules! error {
    ($ctx:expr, $($arg:tt)+) => { $crate::__log!(Error, $ctx, $($arg)+) };
}
