//! One host, several contract versions: the 0.1 components checked in under
//! `compat/0.1.0/components` pass `labhit ext check` reporting contract 0.1 and run,
//! unchanged, in a pipeline (`tests/data/mixed-contracts.yaml`) that also uses 0.2
//! extensions built from this repository; `labhit ext list` shows each bundle's contract.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, root};

/// The checked-in 0.1 bundle `category/name`.
fn old_bundle(id: &str) -> PathBuf {
    root().join("compat/0.1.0/components").join(id)
}

/// An extensions directory holding the 0.1 `util/checksum` and the 0.2 `exec/sh` and
/// `test/junit` (symbolic links to the bundles, as an install by `ln -s` would be).
fn mixed_extensions() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let built = common::example_extensions().0.path();
    for (id, from) in [
        ("util/checksum", old_bundle("util/checksum")),
        ("exec/sh", built.join("exec/sh")),
        ("test/junit", built.join("test/junit")),
    ] {
        let to = dir.path().join(id);
        std::fs::create_dir_all(to.parent().expect("category")).expect("mkdir");
        std::os::unix::fs::symlink(&from, &to).expect("symlink");
    }
    dir
}

fn labhit(dir: &Path, args: &[&str]) -> Run {
    Run::of(common::labhit(dir).args(args))
}

#[test]
fn the_checked_in_0_1_components_pass_ext_check_reporting_contract_0_1() {
    for id in ["util/checksum", "test/junit", "deploy/render", "exec/sh"] {
        let manifest = old_bundle(id).join("extension.toml");
        let manifest = manifest.to_str().expect("utf-8 path");
        let run = labhit(&root(), &["ext", "check", manifest, "--format", "json"]);
        assert_eq!(run.code(), 0, "{id}: {run:?}");
        let json = run.json();
        assert_eq!(json["ok"], true, "{id}: {json}");
        assert_eq!(json["contract"], "0.1.0", "{id}: {json}");
        assert_eq!(json["supported"], ">=0.1, <0.3", "{id}: {json}");

        let text = labhit(&root(), &["ext", "check", manifest]);
        assert_eq!(text.code(), 0, "{id}: {text:?}");
        assert!(
            text.stdout()
                .contains("targets contract 0.1.0; this host runs >=0.1, <0.3"),
            "{id}: {text:?}"
        );
    }
}

#[test]
fn ext_list_shows_each_bundles_contract() {
    let ext = mixed_extensions();
    let dir = ext.path().to_str().expect("utf-8 path");
    let run = labhit(
        &root(),
        &["ext", "list", "--extensions", dir, "--format", "json"],
    );
    assert_eq!(run.code(), 0, "{run:?}");
    let json = run.json();
    let contracts: Vec<(String, String)> = json["bundles"]
        .as_array()
        .expect("bundles")
        .iter()
        .map(|b| {
            (
                b["name"].as_str().expect("name").to_owned(),
                b["contract"].as_str().expect("contract").to_owned(),
            )
        })
        .collect();
    let expected = |name: &str, contract: &str| (name.to_owned(), contract.to_owned());
    assert!(
        contracts.contains(&expected("util/checksum", "0.1.0")),
        "{contracts:?}"
    );
    assert!(
        contracts.contains(&expected("exec/sh", labhit_protocol::CONTRACT_VERSION)),
        "{contracts:?}"
    );
    assert!(
        contracts.contains(&expected("test/junit", labhit_protocol::CONTRACT_VERSION)),
        "{contracts:?}"
    );

    let text = labhit(&root(), &["ext", "list", "--extensions", dir]);
    assert!(text.stdout().contains("contract 0.1.0"), "{text:?}");
    assert!(
        text.stdout()
            .contains(&format!("contract {}", labhit_protocol::CONTRACT_VERSION)),
        "{text:?}"
    );
}

#[test]
fn a_pipeline_mixing_a_0_1_component_with_0_2_extensions_runs() {
    let pipeline =
        std::fs::read_to_string(root().join("crates/labhit-cli/tests/data/mixed-contracts.yaml"))
            .expect("pipeline");
    let project = common::Project::new(&pipeline);
    let ext = mixed_extensions();
    let mut command = common::labhit(project.path());
    command
        .args([
            "run",
            "pipeline.yaml",
            "--format",
            "json",
            "--ref",
            "main",
            "--extensions",
        ])
        .arg(ext.path())
        .arg("--cache-dir")
        .arg(project.cache())
        .arg("--run-dir")
        .arg(project.runs());
    let run = Run::of(&mut command);
    assert_eq!(run.code(), 0, "{run:?}");
    for stage in ["prepare", "checksum", "test-report"] {
        assert_eq!(run.status(stage), "succeeded", "{stage}: {run:?}");
    }
    // The 0.1 component really ran: its outputs and the file it wrote.
    let checksum = run.stage("checksum");
    assert_eq!(checksum["outputs"]["files"], "1", "{checksum}");
    assert_eq!(checksum["outputs"]["manifest"], "SHA256SUMS", "{checksum}");
}

/// `ext check --format json` of the bundle in `dir`: its exit code and its `contract` check.
fn contract_check(dir: &Path) -> (i32, serde_json::Value, String) {
    let manifest = dir.join("extension.toml");
    let run = labhit(
        &root(),
        &[
            "ext",
            "check",
            manifest.to_str().expect("utf-8 path"),
            "--format",
            "json",
        ],
    );
    let json = run.json();
    let check = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "contract")
        .cloned()
        .unwrap_or_else(|| panic!("no contract check in {json}"));
    let text = labhit(
        &root(),
        &["ext", "check", manifest.to_str().expect("utf-8")],
    );
    (
        run.code(),
        check,
        format!("{}{}", text.stdout(), text.stderr()),
    )
}

/// A bundle in a temporary directory: `manifest` (an `extension.toml`) beside `component`,
/// copied under the name the manifest gives it.
fn bundle_of(manifest: &Path, component: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(manifest, dir.path().join("extension.toml")).expect("copy the manifest");
    std::fs::copy(component, dir.path().join("checksum.wasm")).expect("copy the component");
    dir
}

#[test]
fn a_manifest_whose_contract_range_misses_the_components_contract_is_refused() {
    // The checked-in 0.1 component beside this repository's 0.2 manifest ...
    let old = bundle_of(
        &root().join("extensions/util/checksum/extension.toml"),
        &old_bundle("util/checksum").join("checksum.wasm"),
    );
    let (code, check, text) = contract_check(old.path());
    assert_eq!(code, 1, "{check} {text}");
    assert_eq!(check["status"], "fail", "{check}");
    let message = check["message"].as_str().expect("message");
    for part in [
        "requires `contract = \"^0.2\"`",
        "the component targets contract 0.1.0",
        "labhit:extension/pipeline-step@0.1.0",
        "set `contract = \"^0.1\"` in extension.toml",
        "rebuild the component",
    ] {
        assert!(message.contains(part), "`{part}` not in {message}");
    }
    assert!(
        text.contains("util/checksum") && text.contains("^0.2") && text.contains("0.1.0"),
        "{text}"
    );

    // ... and the reverse: a 0.2 component beside the 0.1 manifest.
    let built = common::example_extensions().0.path().join("util/checksum");
    let new = bundle_of(
        &old_bundle("util/checksum").join("extension.toml"),
        &built.join("checksum.wasm"),
    );
    let (code, check, text) = contract_check(new.path());
    assert_eq!(code, 1, "{check} {text}");
    let message = check["message"].as_str().expect("message");
    for part in [
        "requires `contract = \"^0.1\"`",
        &format!(
            "the component targets contract {}",
            labhit_protocol::CONTRACT_VERSION
        ),
        "set `contract = \"^0.2\"`",
    ] {
        assert!(message.contains(part), "`{part}` not in {message}");
    }

    // The unchanged bundles pass.
    for dir in [old_bundle("util/checksum"), built] {
        let (code, check, text) = contract_check(&dir);
        assert_eq!((code, &check["status"]), (0, &"pass".into()), "{text}");
    }
}
