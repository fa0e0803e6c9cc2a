//! Fuzz target `component`: component loading (`labhit_runtime::Runtime::load_bytes`) on
//! arbitrary bytes, with a fixed valid manifest.
//!
//! One runtime serves every input: no disk cache, no pooling allocator, small limits. The
//! load detects a component or a preview1 core module, adapts the latter, compiles, checks
//! the contract export and links the imports. Invariants: no panic, no hang (libFuzzer's
//! `-timeout`); a failure is a `LoadError` that names the extension and the file; a success
//! targets a contract version the runtime supports. `cargo xtask fuzz` seeds the corpus with
//! generated components and core modules that pass every check, so mutations start deep.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use labhit_protocol::manifest::Manifest;
use labhit_runtime::component::is_compatible;
use labhit_runtime::{Runtime, RuntimeConfig};
use libfuzzer_sys::fuzz_target;

const MANIFEST: &str = r#"
[extension]
category = "fuzz"
name = "component"
version = "0.1.0"
contract = "^0.2"
description = "Fuzz target: arbitrary bytes as the component"
component = "fuzz.wasm"

[limits]
memory = "16Mi"
timeout = "5s"
"#;

fn setup() -> &'static (Runtime, Manifest) {
    static SETUP: OnceLock<(Runtime, Manifest)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let runtime = Runtime::new(RuntimeConfig {
            pooling: false,
            max_concurrent_steps: 1,
            max_memory_bytes: 64 << 20,
            default_memory_bytes: 16 << 20,
            default_timeout: Duration::from_secs(5),
            ..RuntimeConfig::without_cache()
        })
        .expect("the runtime starts");
        let manifest = Manifest::from_toml(MANIFEST).expect("the fixed manifest is valid");
        (runtime, manifest)
    })
}

fuzz_target!(
    init: {
        // The runtime contains panics of third-party code it calls (the preview1 adapter)
        // with `catch_unwind`; libfuzzer-sys's hook would abort on those before they are
        // caught. A panic that escapes still aborts: libfuzzer-sys catches it at the top.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
    let (runtime, manifest) = setup();
    match runtime.load_bytes(manifest, Path::new("fuzz.wasm"), data) {
        Ok(extension) => {
            let supported = labhit_protocol::version::contract_version();
            assert!(
                is_compatible(extension.contract_version(), &supported),
                "loaded a component for contract {}",
                extension.contract_version()
            );
        }
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.contains("`fuzz/component@0.1.0`") && message.contains("fuzz.wasm"),
                "the error does not name the extension and the file: {message}"
            );
        }
    }
    }
);
