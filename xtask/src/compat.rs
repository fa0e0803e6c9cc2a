//! `cargo xtask compat`: is the working tree still compatible with the last released contract?
//!
//! A released contract version is frozen as a **baseline** under `compat/<version>/` by
//! `cargo xtask compat freeze` (see [`baseline`]): the WIT package, the proto as a `buf`
//! image, the JSON Schemas, the golden vectors, real components built from the example
//! extensions, and the rustdoc JSON of the contract crates. `cargo xtask compat` compares the
//! working tree with the newest baseline, four ways:
//!
//! | check | module | fails when |
//! |---|---|---|
//! | WIT | [`wit`] | a world of the package is not a semver-compatible superset of the baseline's (within one minor) |
//! | proto | [`proto`] | `buf breaking` (category FILE) reports a change against the baseline image |
//! | wire | [`vectors`] | a baseline golden vector no longer validates against the current JSON Schemas or no longer decodes (JSON and borsh) with the current Rust types |
//! | Rust API | [`rust_api`] | `cargo-semver-checks` finds a breaking change of a contract crate's public API |
//!
//! Before any of that the baseline itself is verified: every file must match its
//! `MANIFEST.sha256`, and that manifest must match the digest pinned in [`baseline::PINNED`]
//! in this source file's sibling, so a baseline edited by hand is reported, not trusted.

pub(crate) mod baseline;
pub(crate) mod proto;
pub(crate) mod rust_api;
pub(crate) mod vectors;
pub(crate) mod wit;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// The directory of the baselines, relative to the workspace root.
pub(crate) const COMPAT_DIR: &str = "compat";

/// One finding of a check: a breaking change, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Breakage {
    /// Which check found it (`wit`, `proto`, `wire`, `rust-api`).
    pub(crate) check: &'static str,
    /// What broke, naming the item (interface, function, message, field, type, vector).
    pub(crate) message: String,
}

impl std::fmt::Display for Breakage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.check, self.message)
    }
}

/// Which checks to run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checks {
    /// Run `cargo-semver-checks` (slow: it builds rustdoc JSON of the contract crates).
    pub(crate) rust_api: bool,
}

/// `cargo xtask compat`: runs every check against the newest baseline; fails listing every
/// breaking change found.
pub(crate) fn run(root: &Path, checks: Checks) -> Result<()> {
    let dir = newest_baseline(root)?;
    let version = baseline::version_of(&dir)?;
    eprintln!(
        "compat: comparing the working tree with baseline {version} ({})",
        dir.display()
    );
    baseline::verify(&dir, &version).context("the baseline cannot be trusted")?;
    eprintln!("   baseline {version}: every file matches its pinned manifest");

    let mut found = Vec::new();
    let wit = wit::check(&dir.join("wit"), &root.join("wit"))?;
    report("WIT", &wit);
    found.extend(wit);
    let proto = proto::check(root, &dir.join("proto/image.binpb"), &root.join("proto"))?;
    report("proto", &proto);
    found.extend(proto);
    let wire = vectors::check(&dir.join("vectors"), &root.join("schema"))?;
    report("wire", &wire);
    found.extend(wire);
    if checks.rust_api {
        let api = rust_api::check(root, &dir.join("rustdoc"))?;
        report("Rust API", &api);
        found.extend(api);
    } else {
        eprintln!("   Rust API: skipped (--no-rust-api)");
    }

    if !found.is_empty() {
        for breakage in &found {
            eprintln!("error: {breakage}");
        }
        bail!(
            "{} breaking change(s) against contract {version}; restore compatibility, or \
             release a new major/minor version and freeze it with `cargo xtask compat freeze`",
            found.len()
        );
    }
    eprintln!("compat: compatible with {version}");
    Ok(())
}

fn report(name: &str, found: &[Breakage]) {
    if found.is_empty() {
        eprintln!("   {name}: compatible");
    } else {
        eprintln!("   {name}: {} breaking change(s)", found.len());
    }
}

/// The baseline directory with the highest version under `compat/`.
pub(crate) fn newest_baseline(root: &Path) -> Result<PathBuf> {
    let dir = root.join(COMPAT_DIR);
    let mut best: Option<(semver::Version, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(version) = semver::Version::parse(name) else {
            continue;
        };
        if entry.file_type()?.is_dir() && best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, entry.path()));
        }
    }
    match best {
        Some((_, path)) => Ok(path),
        None => bail!(
            "no baseline under {}: freeze one with `cargo xtask compat freeze`",
            dir.display()
        ),
    }
}
