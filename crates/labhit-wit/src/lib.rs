//! The LabHit extension contract in WIT, and the bindings generated from it.
//!
//! A LabHit extension is a WebAssembly component that targets the world `extension` of the
//! WIT package `labhit:extension@0.2.0`. That package is the authoritative, language-neutral
//! definition of the contract: what an extension exports (`pipeline-step.execute`), the
//! host interfaces it may import (`log`, `secrets`, `cancellation`), which WASI 0.2
//! interfaces a host provides (scoped `wasi:filesystem` with exactly one preopen,
//! `/workspace`; outbound HTTP only to the hosts a manifest lists, no sockets), and what the
//! host guarantees around each call. Read it in
//! [`WIT`], or in the `wit/` directory of this crate.
//!
//! The crate's `wit/` directory is a copy of `wit/` at the root of the `labhit-contracts`
//! workspace, made by `cargo xtask codegen`, so the published crate needs nothing outside
//! itself. It holds:
//!
//! * `labhit-extension.wit`: the package documentation, the interfaces and the world
//!   `extension` (self-contained, also available as [`WIT`]);
//! * `extension-with-wasi.wit`: the world `extension-with-wasi`, which is `extension` plus
//!   exactly the WASI interfaces every host provides, for toolchains that need WASI in
//!   their target world; and the world `extension-with-wasi-sockets`, which adds the
//!   `wasi:sockets` interfaces hosts link but deny, for checking that a built component
//!   imports only what a host accepts;
//! * `deps/`: the WASI `0.2.12` WIT packages that world refers to, vendored unchanged.
//!
//! The package version always equals [`labhit_protocol::CONTRACT_VERSION`], and its name
//! [`labhit_protocol::WIT_PACKAGE`]; the tests of this crate parse the WIT, check that, and
//! check that every item of the contract is documented.
//!
//! # Bindings
//!
//! Both faces are generated from the crate's own `wit/` directory, world `extension`:
//!
//! | feature | module | generator | for |
//! |---|---|---|---|
//! | `guest` | `labhit_wit::guest` | `wit-bindgen` 0.63 | extensions (`wasm32-wasip2`, `wasm32-wasip1`; also builds natively) |
//! | `host` | `labhit_wit::host` | wasmtime 48 `bindgen!`, sync | engines that run extensions |
//!
//! With either feature, `labhit_wit::convert` translates the generated types to and from the
//! `labhit-protocol` types (`StepResult`, `ArtifactRef`, `CacheDecision`, `LogLevel`,
//! `ExecutorInput` pieces, the stage's `with` as a [`labhit_protocol::Value`]). Extension
//! authors normally use `labhit-sdk`, which wraps the guest face.
//!
//! The shape of the generated bindings is pinned by `tests/bindings.rs`, which uses every
//! generated type, field, case and function with explicit types: a change to the contract
//! or to a generator that alters them fails to compile there, besides the snapshot of the
//! WIT surface in `tests/wit.rs`.
#![warn(missing_docs)]

// Lets the generated guest code (and its `export!` macro) name this crate as `labhit_wit`
// from inside it as well as from its dependents.
#[cfg(feature = "guest")]
extern crate self as labhit_wit;

#[cfg(any(feature = "guest", feature = "host"))]
pub mod convert;
#[cfg(feature = "guest")]
pub mod guest;
#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "host")]
pub mod upgrade;

/// The text of `labhit-extension.wit`: the package `labhit:extension` with its documentation,
/// every LabHit interface and the world `extension`.
///
/// The file parses on its own (it refers to no other package), so a tool can feed it to a WIT
/// parser directly. The world `extension-with-wasi` and the WASI packages it needs are only in
/// the crate's `wit/` directory.
///
/// ```
/// assert!(labhit_wit::WIT.contains(&format!("package {};", labhit_protocol::WIT_PACKAGE)));
/// ```
pub const WIT: &str = include_str!("../wit/labhit-extension.wit");
