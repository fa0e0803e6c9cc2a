//! Host bindings of contract 0.1 (world `extension` of `labhit:extension@0.1.0`), generated
//! by wasmtime's `bindgen!` from the frozen copy in the crate's `wit-0.1/` (made by
//! `cargo xtask codegen` from `compat/0.1.0/wit`, never edited by hand).
//!
//! A host that implements the newest contract keeps running 0.1 components with these: it
//! adds the 0.1 interfaces (`labhit:extension/log@0.1.0`, …) to the same linker, implementing
//! each `Host` trait by converting to the newest types, and instantiates a 0.1 component
//! with [`Extension`] / [`ExtensionPre`] of this module. [`crate::upgrade`] holds the
//! conversions, so the rest of a host only sees the newest types.

#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    world: "extension",
    path: "wit-0.1",
    additional_derives: [PartialEq, Eq],
});
