//! Reading extension `.wasm` files and checking the contract version they target: the
//! wasmtime side of [`labhit_bundle`], which holds the one implementation of the header
//! check, the preview1 adaptation and the contract-version reading (shared with the build
//! tooling, which must not depend on wasmtime).
//!
//! * [`detect`] tells a component from a core module by the WebAssembly preamble and refuses
//!   anything else with a clear reason.
//! * [`adapt_preview1`] turns a `wasm32-wasip1` core module into a component with the WASI
//!   preview1 reactor adapter.
//! * [`precheck_contract`] reads the contract version from the component's export names
//!   *before* it is compiled, so a component of the wrong contract is refused in
//!   milliseconds whatever its size; [`check_contract`] reads it from a compiled component
//!   (one that came from the compile cache).
//! * [`refuse_http_import`] refuses a component importing `wasi:http` whose manifest grants
//!   no network.

use labhit_bundle::SupportedContracts;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadErrorKind;

pub use labhit_bundle::{PIPELINE_STEP_EXPORT, is_compatible};

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
    match labhit_bundle::detect(bytes) {
        Ok(labhit_bundle::Kind::Component) => Ok(SourceKind::Component),
        Ok(labhit_bundle::Kind::CoreModule) => Ok(SourceKind::Preview1Module),
        Err(err) => Err(LoadErrorKind::NotWasm(err.to_string())),
    }
}

/// Adapts a `wasm32-wasip1` core module into a component with the WASI preview1 reactor
/// adapter ([`labhit_bundle::adapt_preview1`]).
pub fn adapt_preview1(core: &[u8]) -> Result<Vec<u8>, LoadErrorKind> {
    labhit_bundle::adapt_preview1(core).map_err(|err| LoadErrorKind::Adapt(err.0))
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
    let export = labhit_bundle::contract_export_of(&names).map_err(contract_error)?;
    Ok((export.name, export.version))
}

/// Checks the contract version of a compiled `component` against `supported`.
pub fn check_contract(
    engine: &Engine,
    component: &Component,
    supported: &SupportedContracts,
) -> Result<semver::Version, LoadErrorKind> {
    let (name, version) = contract_export(engine, component)?;
    labhit_bundle::check_export(labhit_bundle::ContractExport { name, version }, supported)
        .map_err(contract_error)
}

/// Refuses a component that imports `wasi:http` (an extension whose manifest grants no
/// network), naming the import, before linking reports it as merely missing.
pub fn refuse_http_import(engine: &Engine, component: &Component) -> Result<(), LoadErrorKind> {
    let ty = component.component_type();
    let found = ty
        .imports(engine)
        .map(|(name, _)| name)
        .find(|name| name.starts_with(crate::host::http::IMPORT_PREFIX));
    match found {
        Some(import) => Err(LoadErrorKind::NetworkNotGranted {
            import: import.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Checks the contract version of the component `bytes` against `supported` from its export
/// names, without compiling it. `Ok(None)` when the exports cannot be read: compiling the
/// component then reports what is wrong with it in wasmtime's words.
pub fn precheck_contract(
    bytes: &[u8],
    supported: &SupportedContracts,
) -> Result<Option<semver::Version>, LoadErrorKind> {
    match labhit_bundle::check_contract(bytes, supported) {
        Ok(version) => Ok(Some(version)),
        Err(labhit_bundle::ContractError::Unreadable(_)) => Ok(None),
        Err(err) => Err(contract_error(err)),
    }
}

fn contract_error(err: labhit_bundle::ContractError) -> LoadErrorKind {
    match err {
        labhit_bundle::ContractError::MissingExport { exports } => LoadErrorKind::MissingExport {
            exports,
            wit: labhit_protocol::WIT_PACKAGE,
        },
        labhit_bundle::ContractError::Incompatible {
            targets,
            export,
            supported,
        } => LoadErrorKind::IncompatibleContract {
            targets,
            export,
            supported: supported.to_string(),
            newest: labhit_protocol::CONTRACT_VERSION,
            wit: labhit_protocol::WIT_PACKAGE,
        },
        labhit_bundle::ContractError::Unreadable(why) => LoadErrorKind::Compile(why),
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
    fn a_component_without_the_export_is_refused() {
        let engine = Engine::default();
        let component = Component::new(&engine, b"\0asm\x0d\0\x01\0").expect("empty component");
        let err = check_contract(&engine, &component, &crate::contracts::SUPPORTED)
            .expect_err("no export");
        assert!(err.to_string().contains("exports: none"), "{err}");
    }

    #[test]
    fn adapting_garbage_fails_clearly() {
        let err = adapt_preview1(b"\0asm\x01\0\0\0\xff").expect_err("garbage");
        assert!(err.to_string().starts_with("cannot adapt"), "{err}");
    }
}
