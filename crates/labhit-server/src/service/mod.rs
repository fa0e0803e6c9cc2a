//! The `labhit.v1.PipelineService` implementation.
//!
//! [`pipeline::Pipeline`] is the service; [`validate`] holds the request checks shared by
//! every RPC.

pub mod pipeline;
pub mod validate;

pub use pipeline::store_status;
