//! The `labhit.v1.PipelineService` implementation.
//!
//! [`validate`] holds the request checks shared by every RPC.

pub mod validate;
