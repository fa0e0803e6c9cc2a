//! The LabHit extension contract in WIT, and (in later versions) the bindings generated from it.
//!
//! A LabHit extension is a WebAssembly component that targets the world `extension` of the
//! WIT package `labhit:extension@0.1.0`. That package is the authoritative, language-neutral
//! definition of the contract: what an extension exports (`pipeline-step.execute`), the
//! host interfaces it may import (`log`, `secrets`, `cancellation`), which WASI 0.2
//! interfaces a host provides (scoped `wasi:filesystem` with exactly one preopen,
//! `/workspace`; no network), and what the host guarantees around each call. Read it in
//! [`WIT`], or in the `wit/` directory of this crate.
//!
//! The crate's `wit/` directory is a copy of `wit/` at the root of the `labhit-contracts`
//! workspace, made by `cargo xtask codegen`, so the published crate needs nothing outside
//! itself. It holds:
//!
//! * `labhit-extension.wit`: the package documentation, the interfaces and the world
//!   `extension` (self-contained, also available as [`WIT`]);
//! * `extension-with-wasi.wit`: the world `extension-with-wasi`, which is `extension` plus
//!   exactly the WASI interfaces every host provides, for conformance checks and for
//!   toolchains that need WASI in their target world;
//! * `deps/`: the WASI `0.2.12` WIT packages that world refers to, vendored unchanged.
//!
//! The package version always equals [`labhit_protocol::CONTRACT_VERSION`], and its name
//! [`labhit_protocol::WIT_PACKAGE`]; the tests of this crate parse the WIT, check that, and
//! check that every item of the contract is documented.
//!
//! Guest bindings (wit-bindgen, feature `guest`) and host bindings (wasmtime, feature
//! `host`) are added to this crate in a later version; until then generate them from the
//! `wit/` directory yourself.
#![warn(missing_docs)]

// Lets generated code (and the guest `export!` macro) name this crate as `labhit_wit` from
// inside it as well as from its dependents.
extern crate self as labhit_wit;

#[cfg(any(feature = "guest", feature = "host"))]
pub mod convert;
#[cfg(feature = "guest")]
pub mod guest;
#[cfg(feature = "host")]
pub mod host;

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
