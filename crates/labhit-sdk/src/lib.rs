//! Guest-side SDK for LabHit extensions.
//!
//! The `Extension` trait, typed configuration, logging, secrets and the
//! `export_extension!` macro arrive with the guest-side issue; until then this crate only
//! re-exports the wire types extension authors share with the host.
#![warn(missing_docs)]

pub use labhit_protocol as protocol;
