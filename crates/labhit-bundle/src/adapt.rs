//! Adapting a `wasm32-wasip1` core module into a component.
//!
//! The module must be built with the guest bindings, so that it carries the component type
//! of the world `extension` in a custom section; the WASI preview1 *reactor* adapter then
//! supplies the preview1 imports on top of WASI preview2.

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

/// Why a core module could not be adapted (what `wit-component` reported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AdaptError(pub String);

/// Adapts a `wasm32-wasip1` core module into a component with the WASI preview1 reactor
/// adapter.
pub fn adapt_preview1(core: &[u8]) -> Result<Vec<u8>, AdaptError> {
    // wit-component 0.263 panics on some malformed modules (an out-of-range slice in its
    // metadata reader, found by the `component` fuzz target): a hostile file must end as an
    // error, never take the host down.
    std::panic::catch_unwind(|| encode(core)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(AdaptError(format!(
            "the preview1 adapter failed on this module (a malformed module: {why})"
        )))
    })
}

fn encode(core: &[u8]) -> Result<Vec<u8>, AdaptError> {
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
        .map_err(|err| AdaptError(format!("{err:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapting_garbage_fails_clearly() {
        let err = adapt_preview1(b"\0asm\x01\0\0\0\xff").expect_err("garbage");
        assert!(!err.0.is_empty());
    }
}
