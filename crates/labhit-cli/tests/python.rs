//! End-to-end test of a Python extension: `extensions/util/verify`, built with the pinned
//! `componentize-py` from `wit/`, in a pipeline together with the Rust extensions `exec/sh`
//! and `util/checksum`.
//!
//! The Python component is built by `labhit_guest_build::python` (the logic of `cargo xtask
//! extensions`) into `target/python-ext/`; it needs the venv that
//! `bash tools/venv-install.sh python-ext` makes (`.ci/run` and `cargo xtask ci` run it). Without
//! the venv this test fails and names that command: it never passes silently. The Rust
//! extensions are built with `labhit-guest-build` into `target/guests`. Compiled components
//! are cached in `CARGO_TARGET_TMPDIR` (through `LABHIT_CACHE_DIR`), so the 18 MB component
//! is compiled by wasmtime once per target directory; everything runs in one test so that
//! no two tests compile it at the same time.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, builder, labhit, root};
use labhit_guest_build::{Target, python};

/// The bundles of `exec/sh`, `util/checksum` and the Python `util/verify` in `out`; returns
/// the Python component.
fn bundle_extensions(out: &Path) -> PathBuf {
    let root = root();
    let builder = builder();
    for extension in labhit_guest_build::discover(&root.join("extensions")).expect("discover") {
        if ["exec/sh", "util/checksum"].contains(&extension.id().as_str()) {
            let built = builder
                .build(&extension.dir, Target::P2)
                .unwrap_or_else(|e| panic!("{e}"));
            extension
                .bundle(&built.component, out)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let pythons = python::discover(&root.join("extensions")).expect("discover Python extensions");
    let verify = pythons
        .iter()
        .find(|e| e.id() == "util/verify")
        .expect("extensions/util/verify is a Python extension");
    let built = python::build(&root, verify, &root.join("target/python-ext"))
        .unwrap_or_else(|e| panic!("building the Python extension util/verify: {e}"));
    verify
        .bundle(&built.component, out)
        .unwrap_or_else(|e| panic!("{e}"));
    built.component
}

const PIPELINE: &str = r#"engine: "1"
pipeline:
  name: python-and-rust
  stages:
    prepare:
      use: exec/sh@^0.1
      run: |
        mkdir -p dist
        printf 'hello from labhit\n' > dist/app.txt
        printf 'name: labhit-example\n' > dist/app.yaml
    checksum:
      after: prepare
      use: util/checksum@^0.1
      with:
        patterns: ["dist/**"]
        output: dist/SHA256SUMS
    verify:
      after: checksum
      use: util/verify@^0.1
      with:
        manifest: dist/SHA256SUMS
        report: reports/verify.txt
"#;

/// The same, with a stage between `checksum` and `verify` that changes one file and deletes
/// another.
fn tampered() -> String {
    PIPELINE.replace(
        "    verify:\n      after: checksum\n",
        "    tamper:\n      after: checksum\n      use: exec/sh@^0.1\n      run: |\n        \
         printf 'changed\\n' > dist/app.txt\n        rm dist/app.yaml\n    \
         verify:\n      after: tamper\n",
    )
}

/// `labhit run pipeline.yaml` in a fresh project with `pipeline`.
fn run(extensions: &Path, pipeline: &str) -> (common::Project, Run) {
    let project = common::Project::new(pipeline);
    let run = Run::of(
        labhit(project.path())
            .args(["run", "pipeline.yaml", "--format", "json", "--ref", "main"])
            .arg("--extensions")
            .arg(extensions)
            .arg("--cache-dir")
            .arg(project.cache())
            .arg("--run-dir")
            .arg(project.runs()),
    );
    (project, run)
}

#[test]
fn a_python_extension_checks_and_runs_with_rust_extensions() {
    let extensions = tempfile::tempdir().expect("tempdir");
    let component = bundle_extensions(extensions.path());

    // The host accepts what `componentize-py` imports (WASI CLI, including the sockets it
    // links but never uses); the advised conformance world says the same, while the world
    // without sockets would reject it.
    let wasm = std::fs::read(&component).expect("component");
    let wit = root().join("wit");
    labhit_guest_build::conforms(&wasm, &wit, "extension-with-wasi-sockets")
        .unwrap_or_else(|e| panic!("the Python component does not conform: {e}"));
    let err = labhit_guest_build::conforms(&wasm, &wit, "extension-with-wasi")
        .expect_err("the Python component imports wasi:sockets");
    assert!(err.contains("wasi:sockets"), "{err}");

    // A pipeline of Rust and Python extensions.
    let (project, good) = run(extensions.path(), PIPELINE);
    assert_eq!(good.code(), 0, "{good:?}");
    assert_eq!(good.json()["status"], "succeeded", "{good:?}");
    let verify = good.stage("verify");
    assert_eq!(verify["status"], "succeeded", "{good:?}");
    for (name, value) in [
        ("files", "2"),
        ("ok", "2"),
        ("failed", "0"),
        ("missing", "0"),
    ] {
        assert_eq!(verify["outputs"][name], value, "{name}: {good:?}");
    }
    let stderr = good.stderr();
    assert!(
        stderr.contains(
            "[verify] verified 2 file(s) against dist/SHA256SUMS: 2 ok, 0 failed, 0 missing"
        ),
        "{stderr}"
    );
    let report = project
        .run_dir()
        .join("artifacts/verify/reports/verify.txt");
    assert_eq!(
        std::fs::read_to_string(&report).expect("the report is kept as an artifact"),
        "dist/app.txt: OK\ndist/app.yaml: OK\n"
    );

    // A file changed and one deleted after hashing: the Python step fails the run, with its
    // outputs and a log line per file.
    let (_project, bad) = run(extensions.path(), &tampered());
    assert_ne!(bad.code(), 0, "{bad:?}");
    assert_eq!(bad.json()["status"], "failed", "{bad:?}");
    let verify = bad.stage("verify");
    assert_eq!(verify["status"], "failed", "{bad:?}");
    for (name, value) in [
        ("files", "2"),
        ("ok", "0"),
        ("failed", "1"),
        ("missing", "1"),
    ] {
        assert_eq!(verify["outputs"][name], value, "{name}: {bad:?}");
    }
    let stderr = bad.stderr();
    assert!(stderr.contains("[verify] failed dist/app.txt"), "{stderr}");
    assert!(
        stderr.contains("[verify] missing dist/app.yaml"),
        "{stderr}"
    );

    // `labhit ext check` accepts the bundle (its compiled component is cached by now).
    let bundle = extensions.path().join("util/verify");
    Run::of(
        labhit(extensions.path())
            .args(["ext", "check"])
            .arg(&bundle),
    )
    .expect(0);
}
