//! Fuzz target `manifest`: the extension manifest parser (`Manifest::from_toml_bytes`, which
//! checks size and UTF-8 and then calls `Manifest::from_toml`) on arbitrary bytes.
//!
//! Invariants: no panic; on failure there is at least one diagnostic, each inside the file
//! (TOML counts lines by LF) with a message; on success the accessors a host calls work.

#![no_main]

use labhit_fuzz::{Lines, assert_diagnostics_inside};
use labhit_protocol::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Manifest::from_toml_bytes(data) {
        Ok(manifest) => {
            let _ = manifest.qualified_name();
            let _ = manifest.inputs_schema();
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "an error without a diagnostic");
            assert_diagnostics_inside(&diagnostics, &Lines::new(data));
        }
    }
});
