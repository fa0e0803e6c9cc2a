//! Fuzz target `pipeline`: the YAML loader and validator (`labhit_protocol::pipeline::check`)
//! on arbitrary bytes, once without extension manifests and once resolving `use` against the
//! example extensions' manifests with their input schemas (rule 7).
//!
//! Invariants: no panic; every diagnostic's span lies inside the file and has a message; a
//! model comes back exactly when there is no error.

#![no_main]

use std::sync::OnceLock;

use labhit_fuzz::{Lines, assert_diagnostics_inside};
use labhit_protocol::manifest::Manifest;
use labhit_protocol::pipeline::{CheckOptions, Checked, JsonSchemaValidator, check};
use libfuzzer_sys::fuzz_target;

/// The manifests of the example extensions, so `use:` references can resolve.
const MANIFESTS: [&str; 4] = [
    include_str!("../../extensions/util/checksum/extension.toml"),
    include_str!("../../extensions/test/junit/extension.toml"),
    include_str!("../../extensions/deploy/render/extension.toml"),
    include_str!("../../extensions/exec/sh/extension.toml"),
];

fn manifests() -> &'static [Manifest] {
    static PARSED: OnceLock<Vec<Manifest>> = OnceLock::new();
    PARSED.get_or_init(|| {
        MANIFESTS
            .iter()
            .map(|text| Manifest::from_toml(text).expect("example manifest is valid"))
            .collect()
    })
}

fn assert_consistent(checked: &Checked, lines: &Lines) {
    assert_diagnostics_inside(&checked.diagnostics, lines);
    assert_eq!(
        checked.is_ok(),
        checked.pipeline.is_some(),
        "a model must come back exactly when there is no error"
    );
}

fuzz_target!(|data: &[u8]| {
    let lines = Lines::new(data);
    let plain = check(data, &CheckOptions::default());
    assert_consistent(&plain, &lines);
    if plain.pipeline.is_some() || data.len() < 4096 {
        let resolved = check(
            data,
            &CheckOptions {
                extensions: Some(manifests()),
                input_validator: Some(&JsonSchemaValidator),
                ..CheckOptions::default()
            },
        );
        assert_consistent(&resolved, &lines);
        // Resolving `use` only adds problems: it never removes one found without it.
        assert!(
            resolved.diagnostics.len() >= plain.diagnostics.len(),
            "resolving extensions lost diagnostics"
        );
    }
});
