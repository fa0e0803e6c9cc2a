//! The reference implementation of `labhit.v1.PipelineService`.
//!
//! `labhit serve` is a thin binary wrapper around this crate. The modules, one job each:
//!
//! | module | job |
//! |---|---|
//! | `store` | the durable run store: SQLite (WAL) with versioned migrations, one writer thread with group commit, runs, stages, approvals and log entries; a watch of each run's committed log sequence |
//! | `auth` | bearer tokens: the token file, the constant-time check, the interceptor |
//! | `server` | the listen policy, tonic with health and reflection, message limits, the drain |
//! | `limits` | an oversized request is `RESOURCE_EXHAUSTED` naming the limit (tonic says `OUT_OF_RANGE`) |
//! | `service` | the `PipelineService` implementation (`service::pipeline`); `service::validate` checks request fields |
//! | `driver` | trigger → repos → the runtime's run API → store; cancellation, approvals, shutdown of runs |
//! | `repos` | the repositories registered with `--repo`: resolve a ref to a commit, read the pipeline file at that commit, make an isolated checkout of it |

pub mod auth;
pub mod driver;
pub mod limits;
pub mod repos;
pub mod server;
pub mod service;
pub mod store;
