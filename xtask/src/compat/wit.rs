//! The WIT check: every world of the baseline package still exists and is a semver-compatible
//! superset of the baseline's (`wit_component::semver_check`), as long as the working tree's
//! package has the baseline's major version. The WIT is stricter than Cargo: a new 0.x minor
//! (0.1 → 0.2) must stay additive too, because one host runs components of every minor it
//! supports (see `compat/README.md`). Only a new major version may break, and is not checked.

use std::path::Path;

use anyhow::{Context as _, Result};
use wit_parser::{PackageId, PackageName, Resolve};

use super::Breakage;

/// The package name of our contract.
const PACKAGE: (&str, &str) = ("labhit", "extension");

/// Compares the WIT package in `current` (a `wit/` directory) with the one in `baseline`.
pub(crate) fn check(baseline: &Path, current: &Path) -> Result<Vec<Breakage>> {
    let mut resolve = Resolve::default();
    let (old_id, _) = resolve
        .push_dir(baseline)
        .with_context(|| format!("parsing the baseline WIT in {}", baseline.display()))?;
    let old_name = resolve.packages[old_id].name.clone();
    // Both packages are `labhit:extension@…` and may even have the same version: rename the
    // baseline's so the two can live in one `Resolve` (semver_check ignores versions).
    let renamed = rename_baseline(&mut resolve, old_id)?;

    let mut current_resolve = Resolve::default();
    let (new_id, _) = current_resolve
        .push_dir(current)
        .with_context(|| format!("parsing the WIT in {}", current.display()))?;
    let new_name = current_resolve.packages[new_id].name.clone();
    if (new_name.namespace.as_str(), new_name.name.as_str()) != PACKAGE {
        anyhow::bail!(
            "{} holds package {new_name}, not {}:{}",
            current.display(),
            PACKAGE.0,
            PACKAGE.1
        );
    }
    if let (Some(old), Some(new)) = (&old_name.version, &new_name.version)
        && !must_stay_compatible(old, new)
    {
        eprintln!(
            "   WIT: {new_name} is a new major version after {old_name}; not checked against it"
        );
        return Ok(Vec::new());
    }
    resolve
        .merge(current_resolve)
        .context("combining the baseline and current WIT")?;
    let new_id = *resolve
        .package_names
        .get(&new_name)
        .context("the current package vanished while merging")?;

    let mut found = Vec::new();
    let old_worlds: Vec<(String, wit_parser::WorldId)> = resolve.packages[renamed]
        .worlds
        .iter()
        .map(|(name, id)| (name.clone(), *id))
        .collect();
    for (world, old_world) in old_worlds {
        let Some(&new_world) = resolve.packages[new_id].worlds.get(&world) else {
            found.push(Breakage {
                check: "wit",
                message: format!("world `{world}` of {old_name} was removed"),
            });
            continue;
        };
        if let Err(err) = wit_component::semver_check(resolve.clone(), old_world, new_world) {
            found.push(Breakage {
                check: "wit",
                message: format!(
                    "world `{world}` of {new_name} is not compatible with {old_name}: {}",
                    chain(&err)
                ),
            });
        }
    }
    Ok(found)
}

/// Gives the baseline package a pre-release version of its own, so the current package of
/// the same name can be added to the same `Resolve`.
fn rename_baseline(resolve: &mut Resolve, id: PackageId) -> Result<PackageId> {
    let old = resolve.packages[id].name.clone();
    let mut version = old
        .version
        .clone()
        .unwrap_or_else(|| semver::Version::new(0, 0, 0));
    version.pre = semver::Prerelease::new("compat-baseline").context("pre-release tag")?;
    let renamed = PackageName {
        namespace: old.namespace.clone(),
        name: old.name.clone(),
        version: Some(version),
    };
    resolve.package_names.shift_remove(&old);
    resolve.package_names.insert(renamed.clone(), id);
    resolve.packages[id].name = renamed;
    Ok(id)
}

/// Whether the WIT of version `new` must stay backward compatible with `old`: same major
/// version, including across 0.x minors (stricter than Cargo, for which 0.1 → 0.2 breaks).
fn must_stay_compatible(old: &semver::Version, new: &semver::Version) -> bool {
    old.major == new.major
}

/// An error and its causes on one line.
fn chain(err: &anyhow::Error) -> String {
    err.chain()
        .map(|cause| cause.to_string().replace('\n', "; "))
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the repository's `wit/` in a temporary directory, edited by `edit`.
    fn mutated(edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
        let root = crate::project_root();
        let temp = tempfile::tempdir().expect("tempdir");
        super::super::baseline::copy_tree(&root.join("wit"), temp.path()).expect("copy");
        let path = temp.path().join("labhit-extension.wit");
        let text = std::fs::read_to_string(&path).expect("read");
        let edited = edit(text.clone());
        assert_ne!(edited, text, "the mutation must change the WIT");
        std::fs::write(&path, edited).expect("write");
        temp
    }

    fn baseline_wit() -> std::path::PathBuf {
        super::super::newest_baseline(&crate::project_root())
            .expect("a baseline")
            .join("wit")
    }

    #[test]
    fn the_working_tree_is_compatible_with_the_baseline() {
        let root = crate::project_root();
        let found = check(&baseline_wit(), &root.join("wit")).expect("check runs");
        assert_eq!(found, Vec::new());
    }

    #[test]
    fn removing_an_import_of_the_world_is_breaking_and_named() {
        let temp = mutated(|text| text.replacen("    import secrets;\n", "", 1));
        let found = check(&baseline_wit(), temp.path()).expect("check runs");
        // Both worlds (`extension-with-wasi` includes `extension`) lost the import.
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|b| b.message.contains("world `extension`")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .all(|b| b.message.contains("labhit:extension/secrets")),
            "{found:?}"
        );
    }

    #[test]
    fn changing_a_function_signature_is_breaking_and_named() {
        let temp = mutated(|text| {
            let start = text.find("interface log {").expect("log interface");
            let (head, tail) = text.split_at(start);
            let tail = tail.replacen("message: string", "message: u32", 1);
            format!("{head}{tail}")
        });
        let found = check(&baseline_wit(), temp.path()).expect("check runs");
        assert!(
            !found.is_empty(),
            "a changed parameter type must be breaking"
        );
        assert!(found.iter().any(|b| b.message.contains("log")), "{found:?}");
    }

    #[test]
    fn a_new_0x_minor_must_stay_compatible_and_only_a_new_major_may_break() {
        let v = |s: &str| semver::Version::parse(s).expect("version");
        assert!(must_stay_compatible(&v("0.1.0"), &v("0.1.3")));
        assert!(must_stay_compatible(&v("0.1.0"), &v("0.2.0")));
        assert!(must_stay_compatible(&v("1.0.0"), &v("1.4.0")));
        assert!(!must_stay_compatible(&v("0.2.0"), &v("1.0.0")));

        // The working tree is a newer minor than the newest baseline, or the same one: either
        // way a removed import is still found (the mutation tests above run on it too).
        let root = crate::project_root();
        let current = std::fs::read_to_string(root.join("wit/labhit-extension.wit")).expect("read");
        let baseline =
            std::fs::read_to_string(baseline_wit().join("labhit-extension.wit")).expect("read");
        let version_of = |text: &str| {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("package labhit:extension@"))
                .expect("package line");
            v(line.trim_end_matches(';'))
        };
        assert!(must_stay_compatible(
            &version_of(&baseline),
            &version_of(&current)
        ));
    }

    #[test]
    fn an_additive_change_is_compatible() {
        // A new function in an interface the world imports, and a new interface.
        let temp = mutated(|text| {
            let text = text.replacen(
                "    log: func(",
                "    /// Added later.\n    flush: func();\n\n    log: func(",
                1,
            );
            text.replacen(
                "interface cancellation {",
                "/// Added later.\ninterface extra {\n    /// A new function.\n    ping: func() -> u32;\n}\n\n/// Cancellation.\ninterface cancellation {",
                1,
            )
        });
        let found = check(&baseline_wit(), temp.path()).expect("check runs");
        assert_eq!(found, Vec::new());
    }
}
