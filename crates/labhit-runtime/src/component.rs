//! Reading extension `.wasm` files and checking the contract version they target.
//!
//! * [`detect`] tells a component from a core module by the WebAssembly preamble and refuses
//!   anything else with a clear reason.
//! * [`adapt_preview1`] turns a `wasm32-wasip1` core module (built with the guest bindings,
//!   so it carries the component type of the world `extension`) into a component with the
//!   WASI preview1 reactor adapter. It is the one adaptation routine of the workspace; build
//!   tooling should call it rather than keep its own.
//! * [`contract_export`] reads the contract version a component targets from its export
//!   name `labhit:extension/pipeline-step@X.Y.Z` (the WIT package version, see the package
//!   documentation of `labhit-extension.wit`), and [`is_compatible`] applies the rule: same
//!   major version, and for `0.x` the same minor version.

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadErrorKind;

/// The export every extension provides, without its version.
pub const PIPELINE_STEP_EXPORT: &str = "labhit:extension/pipeline-step";

/// What kind of WebAssembly file an extension shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A component (for example built for `wasm32-wasip2`).
    Component,
    /// A core module (built for `wasm32-wasip1`), adapted into a component on load.
    Preview1Module,
}

/// Tells a component from a core module by the 8-byte preamble.
pub fn detect(bytes: &[u8]) -> Result<SourceKind, LoadErrorKind> {
    if bytes.is_empty() {
        return Err(LoadErrorKind::NotWasm("the file is empty".into()));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadErrorKind::NotWasm(
            "it does not start with the WebAssembly magic number `\\0asm`".into(),
        ));
    }
    match &bytes[4..8] {
        [0x01, 0x00, 0x00, 0x00] => Ok(SourceKind::Preview1Module),
        [0x0d, 0x00, 0x01, 0x00] => Ok(SourceKind::Component),
        other => Err(LoadErrorKind::NotWasm(format!(
            "unknown WebAssembly version/layer {other:02x?} (expected a component or a core module)"
        ))),
    }
}

/// Adapts a `wasm32-wasip1` core module into a component with the WASI preview1 reactor
/// adapter.
pub fn adapt_preview1(core: &[u8]) -> Result<Vec<u8>, LoadErrorKind> {
    // wit-component 0.263 panics on some malformed modules (an out-of-range slice in its
    // metadata reader, found by the `component` fuzz target): a hostile file must end as a
    // load error, never take the host down.
    std::panic::catch_unwind(|| encode_preview1(core)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(LoadErrorKind::Adapt(format!(
            "the preview1 adapter failed on this module (a malformed module: {why})"
        )))
    })
}

fn encode_preview1(core: &[u8]) -> Result<Vec<u8>, LoadErrorKind> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(core)
        .and_then(|encoder| {
            encoder.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|encoder| encoder.encode())
        .map_err(|err| LoadErrorKind::Adapt(format!("{err:#}")))
}

/// The contract export of `component`: its full name and the version in it.
pub fn contract_export(
    engine: &Engine,
    component: &Component,
) -> Result<(String, Option<semver::Version>), LoadErrorKind> {
    let names: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let found = names.iter().find(|name| {
        name.as_str() == PIPELINE_STEP_EXPORT
            || name
                .strip_prefix(PIPELINE_STEP_EXPORT)
                .is_some_and(|rest| rest.starts_with('@'))
    });
    let Some(name) = found else {
        return Err(LoadErrorKind::MissingExport {
            exports: if names.is_empty() {
                "none".to_owned()
            } else {
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            wit: labhit_protocol::WIT_PACKAGE,
        });
    };
    let version = name
        .split_once('@')
        .and_then(|(_, v)| semver::Version::parse(v).ok());
    Ok((name.clone(), version))
}

/// Whether a component built for contract `targets` runs on a host implementing
/// `supported`: same major version and, while the major version is 0, same minor version.
pub fn is_compatible(targets: &semver::Version, supported: &semver::Version) -> bool {
    targets.major == supported.major && (supported.major > 0 || targets.minor == supported.minor)
}

/// `0.1.x` for 0.1.0, `1.x` for 1.2.0: the series [`is_compatible`] accepts.
pub fn compatible_series(supported: &semver::Version) -> String {
    if supported.major == 0 {
        format!("0.{}.x", supported.minor)
    } else {
        format!("{}.x", supported.major)
    }
}

/// Checks the contract version of `component` against `supported`.
pub fn check_contract(
    engine: &Engine,
    component: &Component,
    supported: &semver::Version,
) -> Result<semver::Version, LoadErrorKind> {
    let (export, version) = contract_export(engine, component)?;
    match version {
        Some(version) if is_compatible(&version, supported) => Ok(version),
        other => Err(LoadErrorKind::IncompatibleContract {
            targets: other.map_or_else(|| "(unversioned)".to_owned(), |v| v.to_string()),
            export,
            supported: labhit_protocol::CONTRACT_VERSION,
            series: compatible_series(supported),
            wit: labhit_protocol::WIT_PACKAGE,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_that_makes_the_adapter_panic_is_a_load_error() {
        // Found by the `component` fuzz target (2026-11-28).
        let bytes = include_bytes!("../tests/fixtures/fuzz/adapter-panic.wasm");
        match adapt_preview1(bytes) {
            Err(LoadErrorKind::Adapt(message)) => assert!(message.contains("adapter"), "{message}"),
            other => panic!("expected an adapt error, got {other:?}"),
        }
    }

    #[test]
    fn detects_kinds_and_refuses_non_wasm() {
        assert_eq!(
            detect(b"\0asm\x0d\0\x01\0").ok(),
            Some(SourceKind::Component)
        );
        assert_eq!(
            detect(b"\0asm\x01\0\0\0").ok(),
            Some(SourceKind::Preview1Module)
        );
        for bad in [
            &b""[..],
            b"\0asm",
            b"#!/bin/sh\necho hi\n",
            b"\0asm\x02\0\0\0",
        ] {
            let err = detect(bad).expect_err("refused");
            assert!(
                err.to_string().starts_with("not a WebAssembly file"),
                "{err}"
            );
        }
    }

    #[test]
    fn compatibility_follows_semver_for_0x() {
        let v = |s: &str| semver::Version::parse(s).expect("version");
        assert!(is_compatible(&v("0.1.0"), &v("0.1.0")));
        assert!(is_compatible(&v("0.1.7"), &v("0.1.0")));
        assert!(!is_compatible(&v("0.2.0"), &v("0.1.0")));
        assert!(!is_compatible(&v("1.0.0"), &v("0.1.0")));
        assert!(is_compatible(&v("1.4.0"), &v("1.0.0")));
        assert!(!is_compatible(&v("2.0.0"), &v("1.0.0")));
        assert_eq!(compatible_series(&v("0.1.0")), "0.1.x");
        assert_eq!(compatible_series(&v("1.2.0")), "1.x");
    }

    #[test]
    fn a_component_without_the_export_is_refused() {
        let engine = Engine::default();
        let component = Component::new(&engine, b"\0asm\x0d\0\x01\0").expect("empty component");
        let err = check_contract(
            &engine,
            &component,
            &labhit_protocol::version::contract_version(),
        )
        .expect_err("no export");
        assert!(err.to_string().contains("exports: none"), "{err}");
    }

    #[test]
    fn adapting_garbage_fails_clearly() {
        let err = adapt_preview1(b"\0asm\x01\0\0\0\xff").expect_err("garbage");
        assert!(err.to_string().starts_with("cannot adapt"), "{err}");
    }
}
