//! How fast a component of the wrong contract is refused:
//! `cargo bench -p labhit-runtime --bench contract`.
//!
//! The component is the largest real example frozen under `compat/` (`exec/sh`), with its
//! export `labhit:extension/pipeline-step@0.1.0` rewritten to `@9.1.0` (same length, so the
//! file stays well-formed), then padded with a custom section to show that the refusal does
//! not depend on the size. `Runtime::load` reads the contract from the export names before
//! compiling (`labhit_bundle`), so each load reads the file and the export sections only.
//! Target (issue 12): ≤ 1 s whatever the size; compiling the genuine component takes
//! seconds.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use divan::Bencher;
use labhit_protocol::manifest::Manifest;
use labhit_runtime::{Runtime, RuntimeConfig};

fn main() {
    divan::main();
}

const MANIFEST: &str = r#"
[extension]
category = "bench"
name = "wrong"
version = "0.1.0"
contract = "^0.2"
description = "A real component exporting a contract this host does not implement"
component = "wrong.wasm"
"#;

struct Setup {
    _dir: tempfile::TempDir,
    manifest: Manifest,
    runtime: Runtime,
    /// (padding in MiB, component file)
    files: Vec<(usize, PathBuf)>,
}

/// The largest `.wasm` under `compat/*/components`.
fn largest_example(root: &Path) -> PathBuf {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    let mut pending = vec![root.join("compat")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "wasm")
                && path.to_string_lossy().contains("/components/")
            {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                found.push((size, path));
            }
        }
    }
    found.sort();
    found
        .pop()
        .map(|(_, path)| path)
        .unwrap_or_else(|| panic!("no example component under compat/"))
}

fn leb(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let source = largest_example(&root);
        let wasm = std::fs::read(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        let from = b"pipeline-step@0.1.0";
        let to = b"pipeline-step@9.1.0";
        let mut wrong = wasm.clone();
        let mut at = 0;
        while let Some(i) = wrong[at..].windows(from.len()).position(|w| w == from) {
            wrong[at + i..at + i + to.len()].copy_from_slice(to);
            at += i + to.len();
        }
        assert_ne!(wrong, wasm, "the example names its contract");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = [0usize, 16, 64]
            .into_iter()
            .map(|mib| {
                let mut bytes = wrong.clone();
                if mib > 0 {
                    let name = b"padding";
                    let mut body = Vec::new();
                    leb(&mut body, name.len());
                    body.extend_from_slice(name);
                    body.resize(body.len() + (mib << 20), 0);
                    bytes.push(0); // a custom section
                    leb(&mut bytes, body.len());
                    bytes.extend_from_slice(&body);
                }
                let path = dir.path().join(format!("wrong-{mib}.wasm"));
                std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
                (mib, path)
            })
            .collect();
        let cache = dir.path().join("cache");
        Setup {
            manifest: Manifest::from_toml(MANIFEST).unwrap_or_else(|d| panic!("{d:?}")),
            runtime: Runtime::new(RuntimeConfig::with_cache_dir(cache))
                .unwrap_or_else(|e| panic!("{e}")),
            files,
            _dir: dir,
        }
    })
}

/// `Runtime::load` of the wrong-contract component, padded by `mib` MiB: read, header,
/// export names, refusal.
#[divan::bench(args = [0, 16, 64])]
fn refuse_wrong_contract(bencher: Bencher<'_, '_>, mib: usize) {
    let setup = setup();
    let path = setup
        .files
        .iter()
        .find(|(m, _)| *m == mib)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("no file for {mib} MiB"));
    bencher.bench(|| {
        let err = setup
            .runtime
            .load(&setup.manifest, &path)
            .expect_err("a wrong contract is refused");
        divan::black_box(err)
    });
}
