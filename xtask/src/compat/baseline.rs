//! Baselines: a released contract frozen under `compat/<version>/`, and the check that it was
//! not edited since.
//!
//! `cargo xtask compat freeze` writes, for the contract version of the working tree:
//!
//! ```text
//! compat/<version>/
//!   README.md         what this is and how it was made
//!   MANIFEST.sha256   sha256 and path of every other file, sorted by path
//!   wit/              the WIT package with its deps, as released
//!   proto/image.binpb the proto as a buf image (`buf build`), what `buf breaking` reads
//!   schema/           the JSON Schemas
//!   vectors/          the golden vectors (JSON and borsh)
//!   components/       real components of the example extensions, as installable bundles
//!   rustdoc/          rustdoc JSON of each contract crate, what cargo-semver-checks reads
//! ```
//!
//! The digest of `MANIFEST.sha256` is then pinned in [`PINNED`]. [`verify`] recomputes every
//! file's digest and the manifest's: a file edited, added or removed by hand, or a manifest
//! edited to match, is reported instead of being trusted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};

/// The pinned digest (sha256 of `MANIFEST.sha256`) of every released baseline.
pub(crate) const PINNED: &[(&str, &str)] = &[(
    "0.1.0",
    "fe8cf0c8da86292804722424ec3359de36fc2514bce16904b437d34cb33b4d6c",
)];

/// The manifest file of a baseline.
pub(crate) const MANIFEST: &str = "MANIFEST.sha256";

/// The contract crates whose Rust API is frozen (package name, rustdoc JSON name).
pub(crate) const CONTRACT_CRATES: [(&str, &str); 4] = [
    ("labhit-protocol", "labhit_protocol"),
    ("labhit-wit", "labhit_wit"),
    ("labhit-proto", "labhit_proto"),
    ("labhit-sdk", "labhit_sdk"),
];

/// The version a baseline directory holds (its name).
pub(crate) fn version_of(dir: &Path) -> Result<String> {
    let name = dir
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{} is not a baseline directory", dir.display()))?;
    semver::Version::parse(name)
        .with_context(|| format!("baseline directory name `{name}` is not a version"))?;
    Ok(name.to_owned())
}

/// Hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Every regular file under `dir` except the manifest, by `/`-separated relative path.
fn files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(base, &path, out)?;
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(base)
                    .context("walking the baseline")?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                if rel != MANIFEST {
                    out.insert(rel, path);
                }
            } else {
                bail!(
                    "{} is neither a file nor a directory; a baseline holds only files",
                    path.display()
                );
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// The manifest text of `dir`: `<sha256>  <path>` per file, sorted by path.
pub(crate) fn manifest_text(dir: &Path) -> Result<String> {
    let mut text = String::new();
    for (rel, path) in files(dir)? {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let _ = writeln!(text, "{}  {rel}", sha256_hex(&bytes));
    }
    Ok(text)
}

/// Checks that the baseline in `dir` is exactly what was frozen and pinned for `version`.
pub(crate) fn verify(dir: &Path, version: &str) -> Result<()> {
    verify_against(dir, version, PINNED)
}

/// [`verify`] with an explicit pin table (tests pin temporary baselines).
pub(crate) fn verify_against(dir: &Path, version: &str, pinned: &[(&str, &str)]) -> Result<()> {
    let manifest_path = dir.join(MANIFEST);
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let Some((_, pin)) = pinned.iter().find(|(v, _)| *v == version) else {
        bail!(
            "baseline {version} is not pinned: add its manifest digest to PINNED in \
             xtask/src/compat/baseline.rs (`cargo xtask compat freeze` prints it)"
        );
    };
    let actual = sha256_hex(manifest.as_bytes());
    if actual != *pin {
        bail!(
            "{} was edited: its sha256 is {actual}, but baseline {version} was pinned as {pin}",
            manifest_path.display()
        );
    }

    let mut listed = BTreeMap::new();
    for (number, line) in manifest.lines().enumerate() {
        let Some((digest, rel)) = line.split_once("  ") else {
            bail!(
                "{}:{}: not `<sha256>  <path>`",
                manifest_path.display(),
                number + 1
            );
        };
        listed.insert(rel.to_owned(), digest.to_owned());
    }
    let on_disk = files(dir)?;
    let mut problems = Vec::new();
    for (rel, path) in &on_disk {
        match listed.get(rel) {
            None => problems.push(format!("{rel}: added after the baseline was frozen")),
            Some(expected) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                if sha256_hex(&bytes) != *expected {
                    problems.push(format!("{rel}: edited after the baseline was frozen"));
                }
            }
        }
    }
    for rel in listed.keys() {
        if !on_disk.contains_key(rel) {
            problems.push(format!("{rel}: removed after the baseline was frozen"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "baseline {version} in {} does not match its manifest:\n  {}\n\
             restore it from git (`git checkout -- {}`); a baseline is never edited",
            dir.display(),
            problems.join("\n  "),
            dir.display()
        );
    }
    Ok(())
}

/// `cargo xtask compat freeze`: writes the baseline of the working tree's contract version.
pub(crate) fn freeze(root: &Path, force: bool) -> Result<()> {
    let version = labhit_protocol::CONTRACT_VERSION;
    let dir = root.join(super::COMPAT_DIR).join(version);
    if dir.exists() {
        if !force {
            bail!(
                "{} exists: a released baseline is never rewritten (pass --force only while \
                 {version} is unreleased)",
                dir.display()
            );
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;

    eprintln!("freeze: WIT, schemas and vectors");
    copy_tree(&root.join("wit"), &dir.join("wit"))?;
    copy_tree(&root.join("schema"), &dir.join("schema"))?;
    copy_tree(&root.join("tests/vectors"), &dir.join("vectors"))?;

    eprintln!("freeze: proto image (buf build)");
    std::fs::create_dir_all(dir.join("proto"))?;
    let buf = super::proto::buf(root)?;
    let status = Command::new(&buf)
        .arg("build")
        .arg(root.join("proto"))
        .arg("-o")
        .arg(dir.join("proto/image.binpb"))
        .status()
        .with_context(|| format!("starting {}", buf.display()))?;
    if !status.success() {
        bail!("`buf build` exited with {status}");
    }

    eprintln!("freeze: components of the example extensions");
    let bundles = root.join("target/compat-freeze/extensions");
    if bundles.exists() {
        std::fs::remove_dir_all(&bundles)?;
    }
    crate::extensions::run(root, Some(bundles.clone()), false)?;
    copy_tree(&bundles, &dir.join("components"))?;

    eprintln!("freeze: rustdoc JSON of the contract crates");
    std::fs::create_dir_all(dir.join("rustdoc"))?;
    for (package, name) in CONTRACT_CRATES {
        let json = super::rust_api::rustdoc_json(root, package, name)?;
        std::fs::copy(&json, dir.join("rustdoc").join(format!("{name}.json")))
            .with_context(|| format!("copying {}", json.display()))?;
    }

    std::fs::write(dir.join("README.md"), readme(version))?;
    let manifest = manifest_text(&dir)?;
    std::fs::write(dir.join(MANIFEST), &manifest)?;
    eprintln!(
        "freeze: wrote {}\npin it in xtask/src/compat/baseline.rs: (\"{version}\", \"{}\")",
        dir.display(),
        sha256_hex(manifest.as_bytes())
    );
    Ok(())
}

fn readme(version: &str) -> String {
    format!(
        "# Contract baseline {version}\n\n\
         The LabHit contract {version} as released, frozen by `cargo xtask compat freeze`.\n\
         `cargo xtask compat` compares the working tree with the newest baseline (WIT semver,\n\
         `buf breaking`, golden vectors against the current schemas and types, and\n\
         cargo-semver-checks of the contract crates). Never edit these files: `MANIFEST.sha256`\n\
         lists every file's sha256 and its own digest is pinned in `xtask/src/compat/baseline.rs`.\n\n\
         | path | what |\n|---|---|\n\
         | `wit/` | the WIT package `labhit:extension@{version}` and its WASI deps |\n\
         | `proto/image.binpb` | `proto/` as a buf image |\n\
         | `schema/` | the JSON Schemas |\n\
         | `vectors/` | the golden vectors, JSON and borsh |\n\
         | `components/` | installable bundles of the example extensions built against {version}: real {version} guests for host tests |\n\
         | `rustdoc/` | rustdoc JSON of labhit-protocol, labhit-wit, labhit-proto and labhit-sdk |\n"
    )
}

/// Copies the regular files under `from` to `to`, creating directories.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> (tempfile::TempDir, PathBuf, String) {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("9.9.9");
        std::fs::create_dir_all(dir.join("wit")).expect("mkdir");
        std::fs::write(dir.join("wit/a.wit"), "package a:b@9.9.9;\n").expect("write");
        std::fs::write(dir.join("README.md"), "readme\n").expect("write");
        let manifest = manifest_text(&dir).expect("manifest");
        std::fs::write(dir.join(MANIFEST), &manifest).expect("write");
        let pin = sha256_hex(manifest.as_bytes());
        (temp, dir, pin)
    }

    #[test]
    fn an_untouched_baseline_verifies() {
        let (_temp, dir, pin) = baseline();
        verify_against(&dir, "9.9.9", &[("9.9.9", &pin)]).expect("verifies");
    }

    #[test]
    fn an_edited_file_is_reported_by_name() {
        let (_temp, dir, pin) = baseline();
        std::fs::write(dir.join("wit/a.wit"), "package a:b@9.9.10;\n").expect("write");
        let err = verify_against(&dir, "9.9.9", &[("9.9.9", &pin)]).expect_err("edited");
        assert!(format!("{err:#}").contains("wit/a.wit: edited"), "{err:#}");
    }

    #[test]
    fn added_and_removed_files_are_reported() {
        let (_temp, dir, pin) = baseline();
        std::fs::write(dir.join("extra.json"), "{}").expect("write");
        std::fs::remove_file(dir.join("README.md")).expect("remove");
        let err = format!(
            "{:#}",
            verify_against(&dir, "9.9.9", &[("9.9.9", &pin)]).expect_err("changed")
        );
        assert!(err.contains("extra.json: added"), "{err}");
        assert!(err.contains("README.md: removed"), "{err}");
    }

    #[test]
    fn a_manifest_edited_to_match_is_caught_by_the_pin() {
        let (_temp, dir, pin) = baseline();
        std::fs::write(dir.join("wit/a.wit"), "package a:b@9.9.10;\n").expect("write");
        let manifest = manifest_text(&dir).expect("manifest");
        std::fs::write(dir.join(MANIFEST), manifest).expect("write");
        let err = verify_against(&dir, "9.9.9", &[("9.9.9", &pin)]).expect_err("pinned");
        assert!(format!("{err:#}").contains("was edited"), "{err:#}");
    }

    #[test]
    fn an_unpinned_baseline_is_refused() {
        let (_temp, dir, _pin) = baseline();
        let err = verify_against(&dir, "9.9.9", &[]).expect_err("unpinned");
        assert!(format!("{err:#}").contains("not pinned"), "{err:#}");
    }

    #[test]
    fn the_repository_baselines_verify() {
        let root = crate::project_root();
        for (version, _) in PINNED {
            let dir = root.join(super::super::COMPAT_DIR).join(version);
            verify(&dir, version).expect("checked-in baseline verifies");
        }
        // The newest baseline is pinned (a frozen but unpinned baseline fails here).
        let newest = super::super::newest_baseline(&root).expect("a baseline exists");
        let version = version_of(&newest).expect("version");
        assert!(
            PINNED.iter().any(|(v, _)| *v == version),
            "baseline {version} is not pinned"
        );
    }
}
