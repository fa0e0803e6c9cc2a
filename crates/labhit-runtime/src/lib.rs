//! Reference LabHit host: runs extension components under wasmtime.
//!
//! [`Runtime`] owns one wasmtime [`Engine`](wasmtime::Engine) (component model, epoch
//! interruption, pooling allocator) and a background epoch ticker. [`Runtime::load`] turns an
//! extension's `.wasm` (a component, or a `wasm32-wasip1` core module that is adapted with the
//! WASI preview1 adapter) into a [`LoadedExtension`]: compiled once, cached on disk
//! ([`cache`]), checked against the contract version this runtime implements and
//! pre-instantiated. [`Runtime::execute`] runs one step in a fresh, sandboxed store
//! ([`sandbox`]) and turns every way a guest can fail into a [`StepError`]; the runtime carries
//! on.
//!
//! | module | job |
//! |---|---|
//! | [`engine`] | the wasmtime engine, pooling bounds, the epoch ticker |
//! | [`cache`] | on-disk cache of compiled components, verified before use |
//! | [`component`] | reading `.wasm` files, preview1 adaptation, contract version check |
//! | [`contracts`] | the contract versions this host runs (`>=0.1, <0.3`), one binding per minor |
//! | [`sandbox`] | the per-step store: limits, deadline, cancellation interrupt |
//! | [`cancellation`] | the [`Cancellation`] flag shared by scheduler, executors and sandbox |
//! | [`secrets`] | [`SecretStore`] and its providers (env, directory, map) |
//! | [`host`] | one module per host capability: `log`, `secrets`, `cancellation`, WASI, bounded waits |
//! | [`logs`] | the structured log stream, sinks, secret redaction, log limits |
//! | [`outputs`] | bounds on a step's named outputs |
//! | [`runtime`] | [`Runtime`], [`StepRequest`], [`StepOutcome`] |
//! | [`error`] | [`LoadError`], [`StepError`] and their kinds |
//! | [`fsio`] | bounded reading of input files: regular files only, a size limit per kind |
//!
//! The modules above are the extension host. The pipeline side (registry, scheduler,
//! executors, gates, approvals, policies, workspaces, snapshots, run summaries) lives in the
//! other modules and uses it through [`Runtime`]; [`run`] assembles all of it into one run,
//! the API `labhit run`, `labhit ext run` and the server call.
//!
//! `Runtime` is `Send + Sync` and cheap to clone; steps may run on several threads at once.

pub mod approval;
pub mod boundary;
pub mod cache;
pub mod cachedir;
pub mod cachekey;
pub mod cancellation;
pub mod component;
pub mod contracts;
pub mod digests;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod executor;
pub mod fastcopy;
pub mod fsio;
pub mod gates;
pub mod gitnames;
pub mod host;
pub mod logs;
pub mod net;
pub mod outputs;
pub mod policy;
pub mod registry;
pub mod retention;
pub mod run;
pub mod runtime;
pub mod sandbox;
pub mod scheduler;
pub mod secrets;
pub mod snapshot;
pub mod summary;
pub mod workspace;

pub use labhit_protocol as protocol;

pub use cache::CacheOutcome;
pub use cancellation::Cancellation;
pub use component::SourceKind;
pub use error::{LoadError, LoadErrorKind, RuntimeError, StepError, StepFailure};
/// The command of an executor step ([`StepRequest::command`]).
pub use labhit_wit::convert::ExecutorCommand;
pub use logs::{
    CollectingSink, LogCursor, LogLimits, LogSink, MIN_SECRET_BYTES, NullSink, REDACTED,
    RedactingSink, Redactor, TRUNCATED_FIELD,
};
pub use net::HttpLimits;
pub use net::tls::TlsRoots;
pub use outputs::OutputLimits;
pub use runtime::{LoadedExtension, Runtime, RuntimeConfig, StepOutcome, StepRequest};
pub use secrets::{DirSecrets, EnvSecrets, MapSecrets, NoSecrets, SecretStore, SecretStoreError};
