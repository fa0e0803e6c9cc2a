//! Wire and model types of the LabHit CI/CD contract.
//!
//! * [`forms`]: validated scalars (ids, extension references, durations, sizes, CPU) shared
//!   by the pipeline file, the manifest and the run model;
//! * [`pipeline`]: the `.labhit/pipeline.yaml` model, its parser and validator;
//! * [`glob`]: the workspace-relative globs of `sandbox.inputs`;
//! * [`manifest`]: the `extension.toml` model and parser;
//! * [`executor`]: what a host hands an executor and what it gets back;
//! * [`run`]: runs, stage runs, statuses and log entries;
//! * [`value`]: a dynamic, borsh-capable JSON value for stage `with` blocks;
//! * [`version`]: the contract version constants.
//!
//! Every type derives serde, borsh and schemars; the JSON Schemas in `schema/` and the
//! golden vectors in `tests/vectors/` are generated from them by `cargo xtask codegen`.
#![warn(missing_docs)]

pub mod borsh_ext;
pub mod codec;
pub mod diagnostic;
pub mod executor;
pub mod forms;
pub mod glob;
pub mod ids;
pub mod manifest;
pub mod pipeline;
pub mod run;
pub mod schema;
pub mod value;
pub mod version;

pub use diagnostic::{Diagnostic, Position, Rule, Severity, Span};
pub use forms::{
    ByteSize, Cpu, DurationSpec, ExtensionIdent, FormError, PipelineName, PolicyName, StageId,
    UseRef,
};
pub use value::Value;
pub use version::{CONTRACT_VERSION, ENGINE_FORMAT, WIT_PACKAGE};
