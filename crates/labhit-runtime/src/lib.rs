//! Reference LabHit host.
//!
//! The wasmtime host (registry, sandbox, limits, executor, scheduler) arrives with the
//! reference-host issue; this crate exists now so the workspace layout matches the design.

pub use labhit_protocol as protocol;
