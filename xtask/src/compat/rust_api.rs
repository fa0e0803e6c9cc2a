//! The Rust API check: `cargo-semver-checks` compares the public API of each contract crate
//! (labhit-protocol, labhit-wit, labhit-proto, labhit-sdk) with the rustdoc JSON frozen in the
//! baseline. Both sides are rustdoc JSON (`--baseline-rustdoc`, `--current-rustdoc`), so the
//! check needs neither the registry nor the baseline's sources.
//!
//! rustdoc's JSON output is unstable; it is produced with `RUSTC_BOOTSTRAP=1` by the pinned
//! stable toolchain (as cargo-semver-checks itself does) into `target/compat-rustdoc/`.
//! A baseline whose JSON format the installed cargo-semver-checks cannot read is reported
//! as such (freeze a new one with the current toolchain).
//!
//! Unlike the WIT, proto, schema and wire checks, this one follows Cargo's rules, which the
//! tool reads from each JSON's `crate_version`: 0.1 → 0.2 is a breaking release, so a Rust
//! API break is allowed across a 0.x minor and still caught within one (0.2.0 → 0.2.1).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use super::Breakage;
use super::baseline::CONTRACT_CRATES;

/// Builds the rustdoc JSON of `package` (library target, default features) and returns its
/// path.
pub(crate) fn rustdoc_json(root: &Path, package: &str, name: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = root.join("target/compat-rustdoc");
    let status = Command::new(&cargo)
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "RUSTDOCFLAGS",
            "-Z unstable-options --output-format json --cap-lints allow",
        )
        .args([
            "doc",
            "--no-deps",
            "--lib",
            "--locked",
            "-q",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .with_context(|| format!("starting `{cargo} doc` for {package}"))?;
    if !status.success() {
        bail!("building the rustdoc JSON of {package} failed ({status})");
    }
    let json = target.join("doc").join(format!("{name}.json"));
    if !json.is_file() {
        bail!("rustdoc wrote no {}", json.display());
    }
    Ok(json)
}

/// Whether `cargo semver-checks` is installed.
pub(crate) fn tool_installed() -> bool {
    Command::new("cargo-semver-checks")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Compares the rustdoc JSON `current` with `baseline` for `package`.
pub(crate) fn compare(package: &str, baseline: &Path, current: &Path) -> Result<Vec<Breakage>> {
    if !tool_installed() {
        bail!(
            "cargo-semver-checks is not installed (`cargo install --locked cargo-semver-checks`; \
             `.ci/run` installs it), or skip this check with `cargo xtask compat --no-rust-api`"
        );
    }
    let output = Command::new("cargo-semver-checks")
        .args([
            "semver-checks",
            "check-release",
            "--color",
            "never",
            "--baseline-rustdoc",
        ])
        .arg(baseline)
        .arg("--current-rustdoc")
        .arg(current)
        .output()
        .context("starting cargo-semver-checks")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Ok(Vec::new());
    }
    // A failed check prints one `--- failure <lint>: <what> ---` block per lint, whose
    // `Failed in:` section lists the items, one per line, up to a blank line; anything else
    // means the tool could not run.
    let text = format!("{stdout}{stderr}");
    let mut found = Vec::new();
    let mut current_lint: Option<String> = None;
    let mut in_items = false;
    // The findings are on stdout; progress lines ("Checking …") go to stderr.
    for line in stdout.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("--- failure ") {
            current_lint = Some(rest.trim_end_matches('-').trim().to_owned());
            in_items = false;
        } else if trimmed == "Failed in:" {
            in_items = current_lint.is_some();
        } else if trimmed.is_empty() || trimmed.starts_with("---") {
            in_items = false;
        } else if in_items && let Some(lint) = &current_lint {
            // The tool may list an item under more than one heading of a lint; say it once.
            let message = format!("{package}: {lint}: {trimmed}");
            if !found.iter().any(|b: &Breakage| b.message == message) {
                found.push(Breakage {
                    check: "rust-api",
                    message,
                });
            }
        }
    }
    if found.is_empty() {
        bail!("cargo-semver-checks failed on {package} without naming a breaking change:\n{text}");
    }
    Ok(found)
}

/// Runs [`compare`] for every contract crate against `rustdoc_dir` of the baseline.
pub(crate) fn check(root: &Path, rustdoc_dir: &Path) -> Result<Vec<Breakage>> {
    let mut found = Vec::new();
    for (package, name) in CONTRACT_CRATES {
        let baseline = rustdoc_dir.join(format!("{name}.json"));
        if !baseline.is_file() {
            bail!(
                "the baseline has no rustdoc JSON for {package} ({})",
                baseline.display()
            );
        }
        let current = rustdoc_json(root, package, name)?;
        found.extend(compare(package, &baseline, &current)?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renames the public function `name` in a rustdoc JSON document (its item and its
    /// path), which to a user of the crate is the removal of `name`. Returns whether it was
    /// there. (Deleting the item outright would leave dangling ids the tool refuses.)
    fn remove_function(doc: &mut serde_json::Value, name: &str) -> bool {
        let renamed = format!("{name}_renamed");
        let mut ids = Vec::new();
        if let Some(index) = doc["index"].as_object_mut() {
            for (id, item) in index.iter_mut() {
                if item["name"] == name && item["inner"].get("function").is_some() {
                    item["name"] = renamed.clone().into();
                    ids.push(id.clone());
                }
            }
        }
        if let Some(paths) = doc["paths"].as_object_mut() {
            for id in &ids {
                if let Some(last) = paths
                    .get_mut(id)
                    .and_then(|summary| summary["path"].as_array_mut())
                    .and_then(|path| path.last_mut())
                {
                    *last = renamed.clone().into();
                }
            }
        }
        !ids.is_empty()
    }

    /// Whether the tool is there; without it the tests fail in CI (which installs it) and
    /// are skipped, loudly, elsewhere.
    fn tool_or_skip() -> bool {
        if tool_installed() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "cargo-semver-checks is not installed; `.ci/run` installs it"
        );
        eprintln!(
            "skipped: cargo-semver-checks is not installed (cargo install --locked cargo-semver-checks)"
        );
        false
    }

    #[test]
    fn a_removed_public_function_is_breaking_and_named() {
        if !tool_or_skip() {
            return;
        }
        let root = crate::project_root();
        let baseline = super::super::newest_baseline(&root)
            .expect("a baseline")
            .join("rustdoc/labhit_protocol.json");
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&baseline).expect("read")).expect("json");
        assert!(
            remove_function(&mut doc, "to_borsh"),
            "labhit_protocol::codec::to_borsh exists"
        );
        let temp = tempfile::tempdir().expect("tempdir");
        let current = temp.path().join("labhit_protocol.json");
        std::fs::write(&current, serde_json::to_vec(&doc).expect("json")).expect("write");

        let found = compare("labhit-protocol", &baseline, &current).expect("the tool runs");
        assert!(
            !found.is_empty(),
            "removing a public function must be breaking"
        );
        assert!(
            found.iter().any(|b| b.message.contains("to_borsh")),
            "{found:?}"
        );
    }

    #[test]
    fn a_rust_api_break_is_allowed_across_a_0x_minor_and_caught_within_one() {
        if !tool_or_skip() {
            return;
        }
        let root = crate::project_root();
        let baseline = super::super::newest_baseline(&root)
            .expect("a baseline")
            .join("rustdoc/labhit_protocol.json");
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&baseline).expect("read")).expect("json");
        let old: semver::Version = doc["crate_version"]
            .as_str()
            .expect("crate_version")
            .parse()
            .expect("a version");
        assert!(remove_function(&mut doc, "to_borsh"), "to_borsh exists");
        let temp = tempfile::tempdir().expect("tempdir");
        let current = temp.path().join("labhit_protocol.json");
        let with_version = |version: semver::Version| {
            let mut doc = doc.clone();
            doc["crate_version"] = version.to_string().into();
            std::fs::write(&current, serde_json::to_vec(&doc).expect("json")).expect("write");
            compare("labhit-protocol", &baseline, &current).expect("the tool runs")
        };

        let patch = semver::Version::new(old.major, old.minor, old.patch + 1);
        let found = with_version(patch.clone());
        assert!(
            found.iter().any(|b| b.message.contains("to_borsh")),
            "{old} -> {patch} must not remove a function: {found:?}"
        );
        let next_minor = semver::Version::new(old.major, old.minor + 1, 0);
        assert_eq!(
            with_version(next_minor),
            Vec::new(),
            "{old} -> 0.x+1 may break"
        );
    }

    #[test]
    fn the_baseline_is_compatible_with_itself() {
        if !tool_or_skip() {
            return;
        }
        let root = crate::project_root();
        let baseline = super::super::newest_baseline(&root)
            .expect("a baseline")
            .join("rustdoc/labhit_protocol.json");
        assert_eq!(
            compare("labhit-protocol", &baseline, &baseline).expect("the tool runs"),
            Vec::new()
        );
    }
}
