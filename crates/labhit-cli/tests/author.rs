//! The author workflow outside this repository, end to end: `labhit ext new` scaffolds one
//! Rust and one Python extension into a temporary directory, `labhit ext build` builds and
//! bundles each, `labhit ext check` and `labhit ext install` (into a temporary per-user
//! directory) accept them, and `labhit run` runs a pipeline using both, found by default.
//!
//! The Rust project depends on this checkout's `labhit-sdk` (`--sdk-path`) and gets this
//! workspace's `Cargo.lock`, so it resolves to the crates already built: it is built into the
//! shared `target/guests` (`--target-dir`), where the example extensions' builds left the SDK
//! for `wasm32-wasip2` and natively. The Python project is built with the pinned
//! `componentize-py` of `target/python-ext-venv` (`bash tools/venv-install.sh python-ext`;
//! `.ci/run` and `cargo xtask ci` run it); without it this test fails naming that command. Compiled
//! components are cached like every CLI test's ([`common::component_cache`]). One test, so the
//! projects are built once.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, labhit, root};
use labhit_guest_build::python;

/// `labhit ext build DIR --format json` with the shared target directory and the pinned
/// componentize-py.
fn build(dir: &Path, out: &Path) -> Run {
    let componentize_py = python::componentize_py(&root())
        .unwrap_or_else(|e| panic!("the Python project needs componentize-py: {e}"));
    Run::of(
        labhit(dir)
            .args(["ext", "build", ".", "--format", "json", "--target-dir"])
            .arg(root().join("target").join("guests"))
            .arg("--out")
            .arg(out)
            .env("LABHIT_COMPONENTIZE_PY", componentize_py),
    )
}

/// The bundle `--format json` of `ext build` reports.
fn bundle_of(run: &Run) -> PathBuf {
    PathBuf::from(
        run.json()["bundle"]
            .as_str()
            .unwrap_or_else(|| panic!("no bundle in {run:?}")),
    )
}

/// Replaces `from` with `to` in `path`; `from` must be there.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

const PIPELINE: &str = r#"engine: "1"
pipeline:
  name: scaffolded
  stages:
    rust:
      use: util/greet-rs@^0.1
      with:
        greeting: hello
        shout: true
    python:
      after: rust
      use: util/greet-py@^0.1
      with:
        greeting: hi
"#;

#[test]
fn scaffolded_rust_and_python_extensions_build_install_and_run_outside_the_repo() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let out = home.join("bundles");
    let data = home.join("data");

    // Scaffold.
    let rust = home.join("greet-rs");
    Run::of(
        labhit(home)
            .args([
                "ext",
                "new",
                "util/greet-rs",
                "--dir",
                "greet-rs",
                "--sdk-path",
            ])
            .arg(root().join("crates/labhit-sdk")),
    )
    .expect(0);
    std::fs::copy(root().join("Cargo.lock"), rust.join("Cargo.lock")).expect("copy the lock");
    let python_dir = home.join("greet-py");
    Run::of(
        labhit(home)
            .args(["ext", "new", "util/greet-py", "--lang", "python"])
            .args(["--dir", "greet-py"]),
    )
    .expect(0);
    assert!(python_dir.join("wit/labhit-extension.wit").is_file());

    // Nothing is overwritten.
    let again = Run::of(labhit(home).args(["ext", "new", "util/greet-rs", "--dir", "greet-rs"]));
    assert_eq!(again.code(), 1, "{again:?}");
    assert!(again.stderr().contains("never overwrites"), "{again:?}");

    // Build: the Rust `[inputs]` agrees with `Config` and `[outputs]` with `Outputs`; the
    // Python ones are taken as written.
    let built_rust = build(&rust, &out).expect(0);
    assert_eq!(built_rust.json()["inputs"], "checked", "{built_rust:?}");
    assert_eq!(built_rust.json()["outputs"], "checked", "{built_rust:?}");
    assert!(
        built_rust
            .stderr()
            .contains("deriving the inputs and outputs schemas"),
        "{built_rust:?}"
    );
    let built_python = build(&python_dir, &out).expect(0);
    assert_eq!(
        built_python.json()["language"],
        "python",
        "{built_python:?}"
    );

    // Check and install both into a per-user directory of this test.
    for bundle in [bundle_of(&built_rust), bundle_of(&built_python)] {
        Run::of(labhit(home).args(["ext", "check"]).arg(&bundle)).expect(0);
        Run::of(
            labhit(home)
                .args(["ext", "install"])
                .arg(&bundle)
                .env("XDG_DATA_HOME", &data),
        )
        .expect(0);
    }

    // Run a pipeline that uses both, found in the per-user directory.
    let project = common::Project::new(PIPELINE);
    let run = Run::of(
        labhit(project.path())
            .args(["run", "pipeline.yaml", "--format", "json", "--ref", "main"])
            .arg("--cache-dir")
            .arg(project.cache())
            .arg("--run-dir")
            .arg(project.runs())
            .env("XDG_DATA_HOME", &data),
    );
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(
        run.stage("rust")["outputs"]["message"],
        "HELLO FROM RUST",
        "{run:?}"
    );
    assert_eq!(
        run.stage("python")["outputs"]["message"],
        "hi from python",
        "{run:?}"
    );

    // One source of truth: a `Config` field without a manifest entry fails the build,
    // naming the field ...
    let manifest = rust.join("extension.toml");
    let original = std::fs::read_to_string(&manifest).expect("read");
    edit(
        &manifest,
        "[inputs.properties.shout]\ntype = \"boolean\"\ndefault = false\ndescription = \"Write it in capitals\"\n",
        "",
    );
    let drift = build(&rust, &home.join("drift"));
    assert_eq!(drift.code(), 1, "{drift:?}");
    assert!(
        drift
            .stderr()
            .contains("`Config` field `shout` has no entry in the manifest"),
        "{drift:?}"
    );
    assert!(!home.join("drift").exists(), "nothing bundled");

    // ... and without `[inputs]` the schema derived from `Config` goes into the bundle.
    let start = original.find("[inputs]").expect("[inputs]");
    let end = original.find("[outputs]").expect("[outputs]");
    std::fs::write(
        &manifest,
        format!("{}{}", &original[..start], &original[end..]),
    )
    .expect("write");
    let derived = build(&rust, &home.join("derived")).expect(0);
    assert_eq!(derived.json()["inputs"], "derived", "{derived:?}");
    let written = std::fs::read_to_string(bundle_of(&derived).join("extension.toml"))
        .expect("bundle manifest");
    let written = labhit_protocol::manifest::Manifest::from_toml(&written)
        .unwrap_or_else(|d| panic!("{d:?}\n{written}"));
    let inputs = written.inputs_schema().expect("derived [inputs]");
    assert_eq!(
        inputs["required"],
        serde_json::json!(["greeting"]),
        "{inputs}"
    );
    assert_eq!(inputs["properties"]["shout"]["type"], "boolean", "{inputs}");
    assert_eq!(inputs["additionalProperties"], false, "{inputs}");

    // The same for outputs: an `Outputs` field the manifest does not declare fails the
    // build, naming the output ...
    let message_entry = "[outputs.properties.message]\ntype = \"string\"\ndescription = \"The line written to greeting.txt\"\n";
    std::fs::write(&manifest, original.replacen(message_entry, "", 1)).expect("write");
    let undeclared = build(&rust, &home.join("undeclared"));
    assert_eq!(undeclared.code(), 1, "{undeclared:?}");
    assert!(
        undeclared.stderr().contains(
            "`[outputs]` disagrees with the extension's `Outputs` type"
        ) && undeclared.stderr().contains(
            "`Outputs` field `message` is an output the manifest does not declare: add `[outputs.properties.message]`"
        ),
        "{undeclared:?}"
    );
    assert!(!home.join("undeclared").exists(), "nothing bundled");

    // ... so does a declared output the type lacks ...
    std::fs::write(
        &manifest,
        format!("{original}\n[outputs.properties.volume]\ntype = \"string\"\n"),
    )
    .expect("write");
    let lacking = build(&rust, &home.join("lacking"));
    assert_eq!(lacking.code(), 1, "{lacking:?}");
    assert!(
        lacking
            .stderr()
            .contains("`[outputs.properties.volume]` has no matching `Outputs` field"),
        "{lacking:?}"
    );
    assert!(!home.join("lacking").exists(), "nothing bundled");

    // ... and without `[outputs]` the schema derived from `Outputs` goes into the bundle.
    let start = original.find("[outputs]").expect("[outputs]");
    std::fs::write(&manifest, &original[..start]).expect("write");
    let derived = build(&rust, &home.join("derived-outputs")).expect(0);
    assert_eq!(derived.json()["outputs"], "derived", "{derived:?}");
    assert_eq!(derived.json()["inputs"], "checked", "{derived:?}");
    let written = std::fs::read_to_string(bundle_of(&derived).join("extension.toml"))
        .expect("bundle manifest");
    let written = labhit_protocol::manifest::Manifest::from_toml(&written)
        .unwrap_or_else(|d| panic!("{d:?}\n{written}"));
    assert_eq!(
        written.outputs_schema(),
        Some(serde_json::json!({
            "type": "object",
            "properties": {
                "message": {"type": "string", "description": "The line written to greeting.txt."}
            },
            "required": ["message"],
            "additionalProperties": false
        }))
    );
}

#[test]
fn ext_new_refuses_invalid_names() {
    let home = tempfile::tempdir().expect("tempdir");
    for bad in ["hello", "util/Hello", "util/1x", "a/b/c"] {
        let run = Run::of(labhit(home.path()).args(["ext", "new", bad]));
        assert_eq!(run.code(), 2, "{bad}: {run:?}");
        assert!(run.stderr().contains("CATEGORY/NAME"), "{bad}: {run:?}");
    }
    assert_eq!(
        std::fs::read_dir(home.path()).expect("read").count(),
        0,
        "nothing written"
    );
}

#[test]
fn ext_build_and_new_name_what_is_wrong() {
    let home = tempfile::tempdir().expect("tempdir");
    // Not a project: says what a project is.
    let run = Run::of(labhit(home.path()).args(["ext", "build", "."]));
    assert_eq!(run.code(), 3, "{run:?}");
    assert!(
        run.stderr()
            .contains("is not an extension project: expected `extension.toml` beside `Cargo.toml` (Rust) or `app.py` (Python)"),
        "{run:?}"
    );
    // A Python project without componentize-py: says how to get it, builds nothing.
    Run::of(labhit(home.path()).args(["ext", "new", "util/py", "--lang", "python"])).expect(0);
    let run = Run::of(labhit(&home.path().join("py")).args([
        "ext",
        "build",
        "--componentize-py",
        "/nonexistent/componentize-py",
    ]));
    assert_eq!(run.code(), 3, "{run:?}");
    assert!(
        run.stderr().contains("`/nonexistent/componentize-py`"),
        "{run:?}"
    );
    assert!(!home.path().join("py/target/bundle").exists(), "{run:?}");
    // An `--sdk-path` that is not the SDK.
    let run = Run::of(
        labhit(home.path())
            .args(["ext", "new", "util/rs", "--sdk-path"])
            .arg(home.path()),
    );
    assert_eq!(run.code(), 3, "{run:?}");
    assert!(
        run.stderr().contains("is not the labhit-sdk crate"),
        "{run:?}"
    );
    assert!(!home.path().join("rs").exists(), "nothing written");
}
