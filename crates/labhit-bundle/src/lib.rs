//! Reading and checking the WebAssembly file of a LabHit extension bundle, without wasmtime.
//!
//! The one implementation of these checks in the workspace, shared by the host
//! (`labhit-runtime`: the registry's discovery and `Runtime::load`, hence every `labhit`
//! command and the server) and by the build tooling (`labhit-guest-build`, which must not
//! depend on wasmtime):
//!
//! * [`header`]: tell a component from a core module by the 8-byte preamble, and refuse
//!   anything else with a clear reason;
//! * [`adapt`]: turn a `wasm32-wasip1` core module into a component with the WASI preview1
//!   reactor adapter;
//! * [`contract`]: read the contract version a component targets from its export names
//!   (`labhit:extension/pipeline-step@X.Y.Z`) *without compiling it*, and apply the
//!   compatibility rule. Reading the export section of even a large component takes
//!   milliseconds, so a component built for the wrong contract is refused before any
//!   compilation (and before anything is stored in a compile cache).
//!
//! Discovery of bundles on disk and the bounded reading of their files live in
//! `labhit_runtime::registry` and `labhit_runtime::fsio`, which call this crate.

pub mod adapt;
pub mod contract;
pub mod header;

pub use adapt::{AdaptError, adapt_preview1};
pub use contract::{
    ContractError, ContractExport, PIPELINE_STEP_EXPORT, SupportedContracts, check_contract,
    check_export, contract_export_of, export_names, is_compatible, read_contract_export,
    rebuild_hint,
};
pub use header::{HeaderError, Kind, detect};
