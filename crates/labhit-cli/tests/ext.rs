//! End-to-end tests of `labhit ext check`, `ext run`, `ext list` and `ext install`, and of
//! the one search path every command shares.
//!
//! Bundles are assembled in temporary directories from components built by
//! `labhit-guest-build` (the logic of `cargo xtask extensions`) into `target/guests`: every
//! example under `extensions/`, and the hostile fixtures of `labhit-runtime`
//! (`crates/labhit-runtime/tests/fixtures/hostile`). Compiled components are cached in
//! `CARGO_TARGET_TMPDIR` (through `LABHIT_CACHE_DIR`), so only the first test compiles.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, builder, hostile_component, root};
use labhit_guest_build::Target;
use serde_json::Value;

fn hostile_dir() -> PathBuf {
    common::hostile_fixtures()
}

fn examples() -> &'static (tempfile::TempDir, Vec<PathBuf>) {
    common::example_extensions()
}

fn example(name: &str) -> PathBuf {
    examples()
        .1
        .iter()
        .find(|b| b.ends_with(name))
        .unwrap_or_else(|| panic!("no example bundle {name}"))
        .clone()
}

/// A bundle in `dir/<name>/` made of the hostile manifest `manifest` and `component` bytes.
fn bundle(dir: &Path, manifest: &str, component: Option<(&str, &[u8])>) -> PathBuf {
    let text = std::fs::read_to_string(
        hostile_dir()
            .join("manifests")
            .join(format!("{manifest}.toml")),
    )
    .expect("manifest");
    bundle_text(dir, manifest, &text, component)
}

fn bundle_text(
    dir: &Path,
    name: &str,
    manifest: &str,
    component: Option<(&str, &[u8])>,
) -> PathBuf {
    let bundle = dir.join(name);
    std::fs::create_dir_all(&bundle).expect("mkdir");
    std::fs::write(bundle.join("extension.toml"), manifest).expect("write");
    if let Some((file, bytes)) = component {
        std::fs::write(bundle.join(file), bytes).expect("write");
    }
    bundle.join("extension.toml")
}

fn hostile_bundle(dir: &Path, manifest: &str) -> PathBuf {
    let wasm = std::fs::read(hostile_component("guest")).expect("component");
    bundle(dir, manifest, Some(("hostile.wasm", &wasm)))
}

fn labhit(args: &[&str]) -> Run {
    labhit_env(args, &[])
}

/// `labhit` in this crate's directory, with `env` added to its clean environment.
fn labhit_env(args: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut command = common::labhit(Path::new(env!("CARGO_MANIFEST_DIR")));
    for (key, value) in env {
        command.env(key, value);
    }
    Run::of(command.args(args))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn check_statuses(run: &Run) -> Vec<(String, String)> {
    run.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_owned(),
                c["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

/// The status and message of check `name`.
fn check<'a>(json: &'a Value, name: &str) -> (&'a str, &'a str) {
    let check = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {json}"));
    (
        check["status"].as_str().expect("status"),
        check["message"].as_str().expect("message"),
    )
}

#[test]
fn check_passes_on_every_example_bundle() {
    for bundle in &examples().1 {
        let run = labhit(&["ext", "check", path(bundle)]);
        assert_eq!(run.code(), 0, "{}: {run:?}", bundle.display());
        let stdout = run.stdout();
        assert!(stdout.contains("✓ manifest"), "{stdout}");
        assert!(stdout.contains("all 8 checks passed"), "{stdout}");
        assert!(!stdout.contains('✗'), "{stdout}");

        let run = labhit(&[
            "ext",
            "check",
            path(&bundle.join("extension.toml")),
            "--format",
            "json",
        ]);
        assert_eq!(run.code(), 0, "{run:?}");
        assert_eq!(run.json()["ok"], true);
        assert!(
            check_statuses(&run).iter().all(|(_, s)| s == "pass"),
            "{run:?}"
        );
    }
}

#[test]
fn check_accepts_a_wasip1_module() {
    let extensions = labhit_guest_build::discover(&root().join("extensions")).expect("discover");
    let checksum = extensions
        .iter()
        .find(|e| e.id() == "util/checksum")
        .expect("util/checksum");
    let dir = tempfile::tempdir().expect("tempdir");
    // The core module itself (not the adapted component the builder also writes).
    let built = builder()
        .build(&checksum.dir, Target::P1)
        .expect("builds for wasip1");
    let core = built.component.with_extension("").with_extension("wasm");
    // Written by hand: `Extension::bundle` insists on a component.
    let manifest = std::fs::read_to_string(checksum.dir.join("extension.toml")).expect("manifest");
    let core = std::fs::read(&core).expect("core module");
    assert_eq!(&core[..8], b"\0asm\x01\0\0\0", "a core module");
    let bundle = bundle_text(
        dir.path(),
        "checksum",
        &manifest,
        Some(("checksum.wasm", &core)),
    );
    let run = labhit(&["ext", "check", path(&bundle), "--format", "json"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let json = run.json();
    let (status, message) = check(&json, "component");
    assert_eq!(status, "pass");
    assert!(message.contains("wasm32-wasip1 core module"), "{message}");
}

#[test]
fn check_fails_with_the_reason_on_broken_bundles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = std::fs::read(hostile_component("wrong-contract")).expect("component");
    let missing = std::fs::read(hostile_component("missing-export")).expect("component");
    let hostile = std::fs::read(hostile_component("guest")).expect("component");
    let cases: Vec<(PathBuf, &str, &str)> = vec![
        (
            bundle(
                dir.path(),
                "garbage",
                Some(("garbage.wasm", b"\x7fELF garbage bytes")),
            ),
            "component",
            "not a WebAssembly file",
        ),
        (
            bundle(
                dir.path(),
                "wrong-contract",
                Some(("wrong_contract.wasm", &wrong)),
            ),
            "contract",
            "targets contract 9.0.0",
        ),
        (
            bundle(
                dir.path(),
                "missing-export",
                Some(("missing_export.wasm", &missing)),
            ),
            "exports",
            "does not export `labhit:extension/pipeline-step`",
        ),
        (
            bundle(dir.path(), "bad-schema", Some(("hostile.wasm", &hostile))),
            "inputs",
            "not a valid JSON Schema",
        ),
        (
            bundle(dir.path(), "hostile-readonly", None),
            "component",
            "cannot read the file",
        ),
        (
            bundle_text(
                dir.path(),
                "future",
                &std::fs::read_to_string(hostile_dir().join("manifests/hostile.toml"))
                    .expect("manifest")
                    .replace("contract = \"^0.2\"", "contract = \"^9\""),
                Some(("hostile.wasm", &hostile)),
            ),
            "contract",
            "requires contract `^9`",
        ),
        (
            bundle_text(
                dir.path(),
                "huge",
                &std::fs::read_to_string(hostile_dir().join("manifests/hostile.toml"))
                    .expect("manifest")
                    .replace("memory = \"32Mi\"", "memory = \"64Gi\""),
                Some(("hostile.wasm", &hostile)),
            ),
            "limits",
            "memory limit of 64Gi exceeds this host's maximum",
        ),
        (
            bundle_text(
                dir.path(),
                "invalid",
                "[extension]\nname = \"Bad Name\"\n",
                None,
            ),
            "manifest",
            "extension.toml:",
        ),
    ];
    for (manifest, failing, reason) in cases {
        let run = labhit(&["ext", "check", path(&manifest), "--format", "json"]);
        assert_eq!(run.code(), 1, "{}: {run:?}", manifest.display());
        let json = run.json();
        assert_eq!(json["ok"], false);
        let (status, message) = check(&json, failing);
        assert_eq!(status, "fail", "{}: {json:#}", manifest.display());
        assert!(
            message.contains(reason),
            "{}: {message}",
            manifest.display()
        );

        let human = labhit(&["ext", "check", path(&manifest)]);
        assert_eq!(human.code(), 1, "{human:?}");
        let line = human
            .stdout()
            .lines()
            .find(|l| l.contains(&format!("✗ {failing}")))
            .map(str::to_owned);
        assert!(line.is_some(), "{human:?}");
        assert!(human.stdout().contains("checks failed"), "{human:?}");
    }
}

#[test]
fn check_of_a_missing_manifest_is_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = labhit(&["ext", "check", path(&dir.path().join("nope.toml"))]);
    assert_eq!(run.code(), 3, "{run:?}");
    assert!(run.stderr().contains("does not exist"), "{run:?}");
}

#[test]
fn run_produces_outputs_and_artifacts() {
    let workspace = tempfile::tempdir().expect("tempdir");
    std::fs::write(workspace.path().join("a.txt"), "alpha\n").expect("write");
    std::fs::write(workspace.path().join("b.txt"), "beta\n").expect("write");
    let bundle = example("util/checksum");
    let with = r#"{"patterns": ["*.txt"]}"#;
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        path(workspace.path()),
        "--with",
        with,
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    let stdout = run.stdout();
    assert!(
        stdout.contains("util/checksum@0.1.0 stage `ext-run`: exit code 0"),
        "{stdout}"
    );
    assert!(stdout.contains("  files     2"), "{stdout}");
    assert!(stdout.contains("  SHA256SUMS  text/plain"), "{stdout}");
    assert!(
        run.stderr().contains("INFO [log] hashed 2 files"),
        "logs stream to stderr: {run:?}"
    );
    assert!(workspace.path().join("SHA256SUMS").is_file());

    let with_file = workspace.path().join("with.json");
    std::fs::write(
        &with_file,
        r#"{"patterns": ["a.txt"], "output": "one.sums"}"#,
    )
    .expect("write");
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        path(workspace.path()),
        "--with-file",
        path(&with_file),
        "--format",
        "json",
        "--stage",
        "hash",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    let json = run.json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["stage"], "hash");
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["outputs"]["files"], "1");
    assert_eq!(json["outputs"]["manifest"], "one.sums");
    assert_eq!(json["artifacts"][0]["path"], "one.sums");
    assert_eq!(json["error"], Value::Null);
}

#[test]
fn run_hands_a_script_to_an_executor_extension() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let bundle = example("exec/sh");
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        path(workspace.path()),
        "--format",
        "json",
        "--run",
        "mkdir -p out\necho \"$GREETING\" > out/hi.txt\ncargo build",
        "--env",
        "GREETING=hello",
    ]);
    // The script's own exit status (127: `cargo` is no builtin) is the exit code.
    assert_eq!(run.code(), 127, "{run:?}");
    let json = run.json();
    assert_eq!(json["exit_code"], 127);
    assert_eq!(json["outputs"]["commands"], "3");
    assert!(run.stderr().contains("cargo: command not found"), "{run:?}");
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("out/hi.txt")).expect("written"),
        "hello\n"
    );

    // Only an executor may be handed a script.
    let run = labhit(&[
        "ext",
        "run",
        path(&example("util/checksum")),
        "--workspace",
        path(workspace.path()),
        "--with",
        r#"{"patterns": ["out/*"]}"#,
        "--run",
        "ls",
    ]);
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(
        run.stderr()
            .contains("does not declare the `executor` capability"),
        "{run:?}"
    );
}

#[test]
fn run_rejects_with_that_breaks_the_input_schema() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let bundle = example("util/checksum");
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        path(workspace.path()),
        "--with",
        r#"{"patterns": 3}"#,
    ]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr()
            .contains("`with` does not satisfy the input schema of `util/checksum@0.1.0`"),
        "{run:?}"
    );
    assert!(run.stderr().contains("at `patterns`"), "{run:?}");
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        path(workspace.path()),
        "--with",
        "[1]",
    ]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr().contains("`with` must be a JSON object"),
        "{run:?}"
    );
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--with",
        r#"{"patterns": ["x"]}"#,
    ]);
    assert_eq!(run.code(), 2, "a workspace is needed: {run:?}");
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        "/nonexistent/ws",
        "--with",
        r#"{"patterns": ["x"]}"#,
    ]);
    assert_eq!(run.code(), 3, "{run:?}");
}

#[test]
fn run_exits_with_the_step_exit_code_and_errors_name_the_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workspace = tempfile::tempdir().expect("tempdir");
    let bundle = hostile_bundle(dir.path(), "hostile");
    let ws = path(workspace.path());
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        ws,
        "--with",
        r#"{"mode": "exit", "count": 7}"#,
    ]);
    assert_eq!(run.code(), 7, "{run:?}");
    assert!(run.stdout().contains("exit code 7"), "{run:?}");

    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        ws,
        "--with",
        r#"{"mode": "panic"}"#,
        "--stage",
        "boom",
    ]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr().contains("stage `boom`: extension `test/hostile@0.1.0` panicked: hostile guest panicked on purpose"),
        "{run:?}"
    );
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        ws,
        "--with",
        r#"{"mode": "loop"}"#,
        "--timeout",
        "1s",
        "--format",
        "json",
    ]);
    assert_eq!(run.code(), 1, "{run:?}");
    let json = run.json();
    assert_eq!(json["error"]["code"], "timeout");
    assert_eq!(json["exit_code"], Value::Null);
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("test/hostile@0.1.0")
    );
}

#[test]
fn secret_values_never_appear_in_anything_printed() {
    let secret = "hunter2-very-secret";
    // An example that uses a secret: it renders it into a workspace file only.
    let workspace = tempfile::tempdir().expect("tempdir");
    let with = r#"{"template": "token={{ secret.DEPLOY_TOKEN }}", "output": "out.txt"}"#;
    let secret_arg = format!("DEPLOY_TOKEN={secret}");
    for format in ["human", "json"] {
        let run = labhit(&[
            "ext",
            "run",
            path(&example("deploy/render")),
            "--workspace",
            path(workspace.path()),
            "--with",
            with,
            "--secret",
            &secret_arg,
            "--format",
            format,
        ]);
        assert_eq!(run.code(), 0, "{run:?}");
        assert!(!run.all().contains(secret), "{run:?}");
    }
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("out.txt")).expect("rendered"),
        format!("token={secret}")
    );

    // A guest that logs the secret, prints it to stdout and fails with it in the message.
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = hostile_bundle(dir.path(), "hostile");
    let secret_arg = format!("DECLARED={secret}");
    for format in ["human", "json"] {
        let run = labhit(&[
            "ext",
            "run",
            path(&bundle),
            "--workspace",
            path(workspace.path()),
            "--with",
            r#"{"mode": "echo-secret", "name": "DECLARED"}"#,
            "--secret",
            &secret_arg,
            "--format",
            format,
        ]);
        assert_eq!(run.code(), 1, "{run:?}");
        assert!(run.all().contains("failing with ***"), "{run:?}");
        assert!(run.stderr().contains("the secret is ***"), "{run:?}");
        assert!(!run.all().contains(secret), "{run:?}");
    }

    // `--secret NAME` takes the value from the environment.
    let run = labhit_env(
        &[
            "ext",
            "run",
            path(&bundle),
            "--workspace",
            path(workspace.path()),
            "--with",
            r#"{"mode": "echo-secret", "name": "DECLARED"}"#,
            "--secret",
            "DECLARED",
        ],
        &[("DECLARED", Path::new(secret))],
    );
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr().contains("the secret is ***"), "{run:?}");
    assert!(!run.all().contains(secret), "{run:?}");

    // Secrets in bad `--secret` arguments are not echoed either.
    let run = labhit(&[
        "ext",
        "run",
        path(&bundle),
        "--workspace",
        path(workspace.path()),
        "--secret",
        &format!("lower={secret}"),
    ]);
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(!run.all().contains(secret), "{run:?}");
}

#[test]
fn list_shows_bundles_conflicts_and_invalid_bundles() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let data_home = tempfile::tempdir().expect("tempdir");
    let hostile = std::fs::read(hostile_component("guest")).expect("component");
    bundle(first.path(), "hostile", Some(("hostile.wasm", &hostile)));
    bundle(second.path(), "hostile", Some(("hostile.wasm", &hostile)));
    let broken = bundle(second.path(), "garbage", Some(("garbage.wasm", b"garbage")));
    // The default directory lives under XDG_DATA_HOME; one more bundle there.
    let default = data_home.path().join("labhit/extensions");
    bundle(
        &default,
        "hostile-readonly",
        Some(("hostile.wasm", &hostile)),
    );

    let env = [
        ("LABHIT_EXTENSIONS", second.path()),
        ("XDG_DATA_HOME", data_home.path()),
    ];
    let run = labhit_env(
        &[
            "ext",
            "list",
            "--extensions",
            path(first.path()),
            "--format",
            "json",
        ],
        &env,
    );
    assert_eq!(run.code(), 1, "{run:?}");
    let json = run.json();
    let ids: Vec<&str> = json["bundles"]
        .as_array()
        .expect("bundles")
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["test/hostile@0.1.0", "test/hostile-readonly@0.1.0"]);
    let origins: Vec<&str> = json["searched"]
        .as_array()
        .expect("searched")
        .iter()
        .map(|s| s["origin"].as_str().expect("origin"))
        .collect();
    assert_eq!(origins, ["explicit", "env", "default"]);
    assert_eq!(json["conflicts"][0]["id"], "test/hostile@0.1.0");
    assert_eq!(json["invalid"][0]["path"], path(&broken));
    assert!(
        json["invalid"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("is not a WebAssembly file"),
        "{json:#}"
    );

    let human = labhit_env(&["ext", "list", "--extensions", path(first.path())], &env);
    assert_eq!(human.code(), 1, "{human:?}");
    assert!(
        human
            .stdout()
            .contains("conflict: `test/hostile@0.1.0` is installed more than once"),
        "{human:?}"
    );
    assert!(human.stdout().contains("invalid: "), "{human:?}");

    // `ext check` and `ext run` resolve `category/name@req` on the same search path.
    let run = labhit_env(
        &[
            "ext",
            "check",
            "test/hostile@^0.1",
            "--extensions",
            path(first.path()),
        ],
        &env,
    );
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(
        run.stdout().contains(&format!(
            "checking {}",
            path(&first.path().join("hostile/extension.toml"))
        )),
        "{run:?}"
    );
    let run = labhit_env(
        &[
            "ext",
            "check",
            "test/hostlie",
            "--extensions",
            path(first.path()),
        ],
        &env,
    );
    assert_eq!(run.code(), 3, "{run:?}");
    assert!(
        run.stderr()
            .contains("no extension `test/hostlie` is installed; did you mean `test/hostile`?"),
        "{run:?}"
    );

    let missing = labhit(&["ext", "list", "--extensions", "/nonexistent/extensions"]);
    assert_eq!(missing.code(), 3, "{missing:?}");
}

/// What no terminal printer may let through: ESC, a bare `\r`, a C1 CSI, DEL, a bidi override.
fn assert_no_terminal_controls(text: &str) {
    for bad in ['\u{1b}', '\r', '\u{9b}', '\u{7f}', '\u{202e}', '\u{7}'] {
        assert!(!text.contains(bad), "{bad:?} reached the terminal:\n{text}");
    }
}

#[test]
fn a_guest_cannot_send_terminal_escapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workspace = tempfile::tempdir().expect("tempdir");
    let bundle = hostile_bundle(dir.path(), "hostile");
    for format in ["human", "json"] {
        let run = labhit(&[
            "ext",
            "run",
            path(&bundle),
            "--workspace",
            path(workspace.path()),
            "--with",
            r#"{"mode": "terminal-escapes"}"#,
            "--format",
            format,
        ]);
        assert_no_terminal_controls(&run.all());
        // The text is shown, visibly escaped, not dropped.
        assert!(
            run.stderr().contains(r"\e]52;c;cHduZWQ=\x07\r\e[2K"),
            "{run:?}"
        );
    }
}

#[test]
fn a_planted_escaping_link_fails_the_step_and_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = hostile_bundle(dir.path(), "hostile");
    std::fs::create_dir_all(dir.path().join("run/workspace")).expect("mkdir");
    std::fs::write(dir.path().join("outside"), "untouched").expect("write");
    let workspace = dir.path().join("run/workspace");
    for mode in ["plant-link", "plant-link-rename"] {
        let with = format!(r#"{{"mode": "{mode}", "path": "../../outside", "name": "a"}}"#);
        let run = labhit(&[
            "ext",
            "run",
            path(&bundle),
            "--workspace",
            path(&workspace),
            "--with",
            &with,
            "--format",
            "json",
        ]);
        assert_eq!(run.code(), 1, "{mode}: {run:?}");
        let json = run.json();
        assert_eq!(json["error"]["code"], "workspace-escape", "{mode}: {run:?}");
        let message = json["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("`a` -> `../../outside`"),
            "{mode}: {message}"
        );
        assert!(
            std::fs::symlink_metadata(workspace.join("a")).is_err(),
            "{mode}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("outside")).expect("outside"),
            "untouched"
        );
    }
}

/// The bundle of the largest example (`exec/sh`) with its component rewritten to export the
/// contract under major version 9: a real, large component of the wrong contract.
fn wrong_contract_bundle(dir: &Path) -> PathBuf {
    let source = example("exec/sh");
    let manifest = std::fs::read_to_string(source.join("extension.toml")).expect("manifest");
    let wasm = std::fs::read(source.join("sh.wasm")).expect("component");
    let from = format!(
        "pipeline-step@{}.",
        labhit_protocol::CONTRACT_VERSION
            .split('.')
            .next()
            .expect("major")
    );
    let to = "pipeline-step@9.";
    assert_eq!(from.len(), to.len(), "the rewrite keeps every length");
    let mut rewritten = Vec::with_capacity(wasm.len());
    let mut rest = &wasm[..];
    let mut count = 0;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from.as_bytes()) {
        rewritten.extend_from_slice(&rest[..at]);
        rewritten.extend_from_slice(to.as_bytes());
        rest = &rest[at + from.len()..];
        count += 1;
    }
    rewritten.extend_from_slice(rest);
    assert!(count > 0, "the component names its contract");
    let bundle = bundle_text(dir, "sh-wrong", &manifest, Some(("sh.wasm", &rewritten)));
    bundle.parent().expect("bundle dir").to_owned()
}

/// Every file below `dir` (none when it does not exist).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_wrong_contract_is_refused_before_compiling_and_never_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let bundle = wrong_contract_bundle(dir.path());
    let env = [("LABHIT_CACHE_DIR", cache.as_path())];
    let run = labhit_env(&["ext", "check", path(&bundle), "--format", "json"], &env);
    assert_eq!(run.code(), 1, "{run:?}");
    let json = run.json();
    let (status, message) = check(&json, "contract");
    assert_eq!(status, "fail", "{json:#}");
    assert!(message.contains("targets contract 9."), "{message}");
    // Language-neutral: the supported range, the WIT, and the SDK only as the Rust way.
    assert!(
        message.contains("runs components built for contract >=0.1, <0.3"),
        "{message}"
    );
    assert!(
        message.contains("rebuild the extension against the labhit:extension WIT"),
        "{message}"
    );
    assert!(message.contains("for Rust)"), "{message}");
    let (status, message) = check(&json, "component");
    assert_eq!(status, "pass");
    assert!(message.contains("not compiled"), "{message}");
    assert_eq!(
        files_below(&cache),
        Vec::<PathBuf>::new(),
        "no compile-cache entry for a rejected component"
    );

    // Running it is refused the same way, and still nothing is cached.
    let workspace = tempfile::tempdir().expect("tempdir");
    let run = labhit_env(
        &[
            "ext",
            "run",
            path(&bundle),
            "--workspace",
            path(workspace.path()),
        ],
        &env,
    );
    assert_ne!(run.code(), 0, "{run:?}");
    assert!(run.stderr().contains("targets contract 9."), "{run:?}");
    assert_eq!(files_below(&cache), Vec::<PathBuf>::new());

    // The control: the genuine component is compiled and cached.
    let good = labhit_env(&["ext", "check", path(&example("exec/sh"))], &env);
    assert_eq!(good.code(), 0, "{good:?}");
    assert!(
        !files_below(&cache).is_empty(),
        "an accepted component is cached"
    );
}

#[test]
fn install_checks_the_bundle_refuses_duplicates_and_every_command_finds_it() {
    let data_home = tempfile::tempdir().expect("tempdir");
    let env = [("XDG_DATA_HOME", data_home.path())];
    let checksum = example("util/checksum");
    let version = "0.1.0";
    let dest = data_home
        .path()
        .join("labhit/extensions/util/checksum")
        .join(version);

    let run = labhit_env(&["ext", "install", path(&checksum)], &env);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(
        run.stdout().contains(&format!(
            "installed `util/checksum@{version}` into {}",
            dest.display()
        )),
        "{run:?}"
    );
    assert!(dest.join("extension.toml").is_file());
    assert_eq!(
        std::fs::read(dest.join("checksum.wasm")).expect("installed component"),
        std::fs::read(checksum.join("checksum.wasm")).expect("component")
    );

    // The same version again: refused, unless `--force`.
    let again = labhit_env(
        &["ext", "install", path(&checksum.join("extension.toml"))],
        &env,
    );
    assert_eq!(again.code(), 1, "{again:?}");
    assert!(
        again.stderr().contains(&format!(
            "`util/checksum@{version}` is already installed at `{}`; pass `--force`",
            dest.display()
        )),
        "{again:?}"
    );
    let forced = labhit_env(&["ext", "install", path(&checksum), "--force"], &env);
    assert_eq!(forced.code(), 0, "{forced:?}");
    assert!(forced.stdout().starts_with("replaced "), "{forced:?}");

    // `ext list` shows it, and where it came from.
    let list = labhit_env(&["ext", "list", "--format", "json"], &env);
    assert_eq!(list.code(), 0, "{list:?}");
    let json = list.json();
    assert_eq!(json["bundles"][0]["id"], format!("util/checksum@{version}"));
    assert_eq!(json["bundles"][0]["origin"], "default");
    let human = labhit_env(&["ext", "list"], &env);
    assert!(human.stdout().contains("per-user directory"), "{human:?}");

    // `validate` and `run` find it without `--extensions`: rule 7 checks `with` against it.
    let project = tempfile::tempdir().expect("tempdir");
    let pipeline = project.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        "engine: \"1\"\npipeline:\n  name: p\n  stages:\n    sums:\n      use: util/checksum\n      with: {paterns: [\"*\"]}\n",
    )
    .expect("write");
    for command in ["validate", "run"] {
        let run = labhit_env(&[command, path(&pipeline)], &env);
        assert_eq!(run.code(), 1, "{command}: {run:?}");
        assert!(
            run.all().contains("error[input-schema]"),
            "{command}: {run:?}"
        );
    }
    let check = labhit_env(&["ext", "check", "util/checksum"], &env);
    assert_eq!(check.code(), 0, "{check:?}");
    assert!(
        check.stdout().contains(path(&dest.join("extension.toml"))),
        "{check:?}"
    );

    // The same version earlier on the search path: installing says it is shadowed.
    let env_dir = tempfile::tempdir().expect("tempdir");
    let copy = env_dir.path().join("checksum");
    std::fs::create_dir_all(&copy).expect("mkdir");
    for file in ["extension.toml", "checksum.wasm"] {
        std::fs::copy(checksum.join(file), copy.join(file)).expect("copy");
    }
    let shadowed = labhit_env(
        &["ext", "install", path(&checksum), "--force"],
        &[
            ("XDG_DATA_HOME", data_home.path()),
            ("LABHIT_EXTENSIONS", env_dir.path()),
        ],
    );
    assert_eq!(shadowed.code(), 0, "{shadowed:?}");
    assert!(
        shadowed.stderr().contains(&format!(
            "`util/checksum@{version}` is installed more than once; using {}",
            copy.join("extension.toml").display()
        )),
        "{shadowed:?}"
    );

    // A bundle that fails a check is refused and nothing is written.
    let broken = tempfile::tempdir().expect("tempdir");
    let wrong = wrong_contract_bundle(broken.path());
    let refused = labhit_env(&["ext", "install", path(&wrong)], &env);
    assert_eq!(refused.code(), 1, "{refused:?}");
    assert!(
        refused.stderr().contains("not installed: `")
            && refused.stderr().contains("fails the check(s) contract"),
        "{refused:?}"
    );
    assert!(refused.stdout().contains("✗ contract"), "{refused:?}");
    assert!(
        !data_home.path().join("labhit/extensions/exec").exists(),
        "nothing installed"
    );
    let missing = labhit_env(&["ext", "install", "no/such/dir"], &env);
    assert_eq!(missing.code(), 3, "{missing:?}");
}

#[test]
fn validate_and_run_see_the_same_extensions() {
    // Bundles in `LABHIT_EXTENSIONS` (which `validate` used to ignore), one of them invalid,
    // one installed twice (once below a `target` directory, which `validate` used to skip).
    let dir = tempfile::tempdir().expect("tempdir");
    let checksum = example("util/checksum");
    let manifest = std::fs::read_to_string(checksum.join("extension.toml")).expect("manifest");
    let wasm = std::fs::read(checksum.join("checksum.wasm")).expect("component");
    bundle_text(
        dir.path(),
        "checksum",
        &manifest,
        Some(("checksum.wasm", &wasm)),
    );
    bundle_text(
        &dir.path().join("target"),
        "checksum",
        &manifest,
        Some(("checksum.wasm", &wasm)),
    );
    let broken = bundle_text(
        dir.path(),
        "broken",
        &manifest.replace("name = \"checksum\"", "name = \"broken\""),
        Some(("checksum.wasm", b"not wasm at all")),
    );
    let env = [("LABHIT_EXTENSIONS", dir.path())];
    let project = tempfile::tempdir().expect("tempdir");
    let pipeline = project.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        "engine: \"1\"\npipeline:\n  name: p\n  stages:\n    a:\n      use: util/broken\n    b:\n      use: util/checksum\n      with: {patterns: [\"*\"], algorithm: md5}\n",
    )
    .expect("write");
    let mut seen = Vec::new();
    for command in ["validate", "run"] {
        let run = labhit_env(&[command, path(&pipeline)], &env);
        assert_eq!(run.code(), 1, "{command}: {run:?}");
        let all = run.all();
        assert!(
            all.contains("error[unknown-extension]"),
            "{command}: {run:?}"
        );
        assert!(all.contains("error[input-schema]"), "{command}: {run:?}");
        assert!(
            all.contains(&format!(
                "warning: skipping extension bundle `{}`",
                broken.display()
            )),
            "{command}: {run:?}"
        );
        assert!(
            all.contains("`util/checksum@0.1.0` is installed more than once"),
            "{command}: {run:?}"
        );
        let rules: Vec<String> = all
            .lines()
            .filter(|l| l.contains(": error["))
            .map(str::to_owned)
            .collect();
        seen.push(rules);
    }
    assert_eq!(
        seen[0], seen[1],
        "validate and run report the same problems"
    );
}
