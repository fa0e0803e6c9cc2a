//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure.
//!
//! The README names this command as the way to run all tests; `.ci/run` installs the
//! prerequisites (wasm targets, cargo-nextest, cargo-deny, cargo-semver-checks, Node.js for
//! buf, the nightly toolchain and cargo-fuzz for the fuzz smoke run, the Python venvs of the
//! generated-client check and of `componentize-py`) and calls it; the venvs' install scripts
//! are idempotent and run again here, so the command works on its own. The conformance step needs Python 3 (standard
//! library only), which `.ci/run` checks for.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::codegen;

/// Runs every step; `quick` skips the slow packaging check.
pub(crate) fn run(root: &Path, quick: bool) -> Result<()> {
    let started = Instant::now();
    step("codegen --check", || {
        codegen::run(root, codegen::Mode::Check)
    })?;
    step(
        "conformance (golden vectors through the Python decoder, from borsh-layout.json alone)",
        || crate::conformance::run(root),
    )?;
    step("rustfmt", || {
        cargo(root, &["fmt", "--all", "--", "--check"])?;
        // The fuzz targets are a workspace of their own.
        cargo(
            root,
            &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
        )
    })?;
    step("clippy", || {
        cargo(
            root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        )
    })?;
    step("buf lint", || shell(root, "bash", &["tools/buf-lint.sh"]))?;
    step("compat (against the newest baseline in compat/)", || {
        let rust_api = crate::compat::rust_api::tool_installed();
        if !rust_api {
            if std::env::var_os("CI").is_some() {
                bail!(
                    "cargo-semver-checks is not installed; `.ci/run` installs it \
                     (cargo install --locked cargo-semver-checks)"
                );
            }
            eprintln!(
                "   Rust API check skipped: cargo-semver-checks is not installed \
                 (cargo install --locked cargo-semver-checks)"
            );
        }
        crate::compat::run(root, crate::compat::Checks { rust_api })
    })?;
    step("cargo deny", || {
        if which("cargo-deny") {
            cargo(
                root,
                &["deny", "--locked", "check", "bans", "licenses", "sources"],
            )
        } else if std::env::var_os("CI").is_some() {
            bail!(
                "cargo-deny is not installed; `.ci/run` installs it (cargo install --locked cargo-deny)"
            )
        } else {
            eprintln!(
                "   skipped: cargo-deny is not installed (cargo install --locked cargo-deny)"
            );
            Ok(())
        }
    })?;
    step(
        "Python extensions (pinned componentize-py, for the tests and the example)",
        || python_extensions(root),
    )?;
    step(
        "nats-server (pinned, for the scale-out tests of labhit-fleet and labhit-cli)",
        || shell(root, "bash", &["tools/venv-install.sh", "nats"]),
    )?;
    step(
        "libfaketime (the fleet's clock-skew test runs a worker under it)",
        || {
            if which("faketime") {
                Ok(())
            } else {
                shell(
                    root,
                    "sh",
                    &[
                        "-c",
                        "apt-get update -qq && apt-get install -y -qq faketime",
                    ],
                )
                .context(
                    "installing Debian's `faketime` (run `apt-get install -y faketime` as root)",
                )
            }
        },
    )?;
    step("tests", || {
        if which("cargo-nextest") {
            cargo(
                root,
                &[
                    "nextest",
                    "run",
                    "--workspace",
                    "--locked",
                    "--no-fail-fast",
                ],
            )
        } else {
            cargo(root, &["test", "--workspace", "--locked", "--no-fail-fast"])
        }
    })?;
    step("doctests", || {
        cargo(root, &["test", "--workspace", "--locked", "--doc"])
    })?;
    step(
        "example pipeline, twice (the README's first command)",
        || crate::example::run(root, 2),
    )?;
    step(
        "Python client generated from the .proto, against `labhit serve`",
        || proto_client(root),
    )?;
    step("fuzz smoke (every cargo-fuzz target, briefly)", || {
        if crate::fuzz::tools_installed() {
            crate::fuzz::run(
                root,
                &crate::fuzz::Options {
                    secs: crate::fuzz::SMOKE_SECS,
                    targets: Vec::new(),
                },
            )
        } else if std::env::var_os("CI").is_some() {
            bail!(
                "the nightly toolchain or cargo-fuzz is missing; `.ci/run` installs them \
                 (rustup toolchain install nightly --profile minimal; cargo install --locked cargo-fuzz)"
            )
        } else {
            eprintln!(
                "   skipped: needs the nightly toolchain and cargo-fuzz \
                 (cargo install --locked cargo-fuzz)"
            );
            Ok(())
        }
    })?;
    if !quick {
        step("cargo package (contract crates are self-contained)", || {
            cargo(
                root,
                &[
                    "package",
                    "--locked",
                    "--allow-dirty",
                    "-p",
                    "labhit-protocol",
                    "-p",
                    "labhit-proto",
                    "-p",
                    "labhit-wit",
                    "-p",
                    "labhit-sdk",
                ],
            )
        })?;
    }
    eprintln!("\nci: all steps passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Runs the Python unit tests of `util/verify`, installs the pinned componentize-py
/// (`tools/venv-install.sh python-ext`) and builds the
/// Python extensions into `target/extensions`, so that `crates/labhit-cli/tests/python.rs`
/// finds the venv and the example step bundles them.
fn python_extensions(root: &Path) -> Result<()> {
    // The standard-library logic of util/verify, with the machine's python3.
    shell(
        root,
        "python3",
        &[
            "-B",
            "-m",
            "unittest",
            "discover",
            "-s",
            "extensions/util/verify",
        ],
    )?;
    shell(root, "bash", &["tools/venv-install.sh", "python-ext"])?;
    crate::extensions::run_python(root, &root.join("target").join("extensions"))
}

/// Installs the pinned grpcio-tools venv (`tools/venv-install.sh proto-client`) and runs
/// `tools/proto-client/check.py` against the debug `labhit` binary and the extensions the
/// example step built.
fn proto_client(root: &Path) -> Result<()> {
    cargo(
        root,
        &[
            "build",
            "--quiet",
            "--locked",
            "-p",
            "labhit-cli",
            "--bin",
            "labhit",
        ],
    )?;
    let output = Command::new("bash")
        .args(["tools/venv-install.sh", "proto-client"])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting `bash tools/venv-install.sh proto-client`")?;
    if !output.status.success() {
        bail!(
            "`tools/venv-install.sh proto-client` exited with {}",
            output.status
        );
    }
    let python = String::from_utf8(output.stdout).context("the venv's python path is not UTF-8")?;
    shell(
        root,
        python.trim(),
        &[
            "tools/proto-client/check.py",
            "--labhit",
            "target/debug/labhit",
            "--extensions",
            "target/extensions",
        ],
    )
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("\n==> {name}");
    let started = Instant::now();
    f().with_context(|| format!("ci step `{name}` failed"))?;
    eprintln!("    {name}: ok ({:.1?})", started.elapsed());
    Ok(())
}

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    shell(root, &cargo, args)
}

fn shell(root: &Path, program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("starting `{program}`"))?;
    if !status.success() {
        bail!("`{program} {}` exited with {status}", args.join(" "));
    }
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// The tools `tools/venv-install.sh` installs: every directory of `tools/` with a
    /// `requirements.txt`.
    fn venv_tools(root: &std::path::Path) -> Vec<String> {
        let mut tools: Vec<String> = std::fs::read_dir(root.join("tools"))
            .expect("tools/")
            .filter_map(Result::ok)
            .filter(|entry| entry.path().join("requirements.txt").is_file())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        tools.sort();
        tools
    }

    /// Every venv tool is installed by `.ci/run` and `cargo xtask ci` through the one script,
    /// and its requirements are all pinned.
    #[test]
    fn every_venv_tool_is_pinned_and_installed_by_ci() {
        let root = crate::project_root();
        let tools = venv_tools(&root);
        assert_eq!(tools, ["nats", "proto-client", "python-ext"]);
        let ci_run = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
        let ci_rs = include_str!("ci.rs");
        for tool in &tools {
            assert!(
                ci_run.contains(&format!("bash tools/venv-install.sh {tool} ")),
                ".ci/run does not install {tool}"
            );
            assert!(
                ci_rs.contains(&format!("\"tools/venv-install.sh\", \"{tool}\"")),
                "cargo xtask ci does not install {tool}"
            );
            let requirements =
                std::fs::read_to_string(root.join("tools").join(tool).join("requirements.txt"))
                    .expect("requirements.txt");
            for line in requirements.lines().map(str::trim) {
                assert!(
                    line.is_empty() || line.starts_with('#') || line.contains("=="),
                    "tools/{tool}/requirements.txt: `{line}` is not pinned"
                );
            }
        }
    }

    /// A name that is not a tool is refused before anything is installed, naming the tools.
    #[test]
    fn the_venv_installer_refuses_what_is_not_a_tool() {
        let root = crate::project_root();
        let scratch = tempfile::tempdir().expect("tempdir");
        let target = scratch.path().to_str().expect("utf-8 path");
        for (args, says) in [
            (
                vec!["nope", target],
                "`tools/nope/requirements.txt` is missing: NAME is one of nats proto-client python-ext",
            ),
            (vec!["../nats", target], "`../nats` is not a tool name"),
            (vec![], "usage: tools/venv-install.sh NAME [TARGET_DIR]"),
            (
                vec!["nats", target, "extra"],
                "usage: tools/venv-install.sh NAME [TARGET_DIR]",
            ),
        ] {
            let output = Command::new("bash")
                .arg(root.join("tools/venv-install.sh"))
                .args(&args)
                .output()
                .expect("bash runs");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(says), "{args:?}: {stderr}");
            assert!(output.stdout.is_empty(), "{args:?}");
        }
        assert!(
            std::fs::read_dir(scratch.path())
                .expect("scratch")
                .next()
                .is_none(),
            "nothing installed"
        );
    }
}
