//! The proto check: `buf breaking` (the FILE category configured in `proto/buf.yaml`) of the
//! working tree's `proto/` against the baseline's buf image. Each line buf prints is one
//! breaking change, already naming the file, line, message and field.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use super::Breakage;

/// The buf binary pinned in `tools/package.json`, installed with `npm ci` on first use.
pub(crate) fn buf(root: &Path) -> Result<PathBuf> {
    let tools = root.join("tools");
    let buf = tools.join("node_modules/.bin/buf");
    if !buf.is_file() {
        eprintln!("compat: installing buf into tools/node_modules (npm ci)");
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&tools)
            .status()
            .context("starting npm (Node.js is needed for buf; `.ci/run` installs it)")?;
        if !status.success() || !buf.is_file() {
            bail!("`npm ci --prefix tools` did not install buf ({status})");
        }
    }
    Ok(buf)
}

/// Runs `buf breaking` of `proto_dir` against `image`.
pub(crate) fn check(root: &Path, image: &Path, proto_dir: &Path) -> Result<Vec<Breakage>> {
    if !image.is_file() {
        bail!("the baseline has no proto image at {}", image.display());
    }
    let buf = buf(root)?;
    let output = Command::new(&buf)
        .arg("breaking")
        .arg(proto_dir)
        .arg("--against")
        .arg(image)
        .output()
        .with_context(|| format!("starting {}", buf.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let found: Vec<Breakage> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|line| !line.trim().is_empty())
        .map(|line| Breakage {
            check: "proto",
            message: line.trim().to_owned(),
        })
        .collect();
    match (output.status.success(), found.is_empty()) {
        (true, _) => Ok(found),
        // buf exits 100 when it found breaking changes; anything else is a failure to run.
        (false, false) if output.status.code() == Some(100) => Ok(found),
        (false, _) => bail!(
            "`buf breaking` failed ({}): {stdout}{stderr}",
            output.status
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> PathBuf {
        super::super::newest_baseline(&crate::project_root())
            .expect("a baseline")
            .join("proto/image.binpb")
    }

    /// A copy of the repository's `proto/` with `pipeline.proto` edited by `edit`.
    fn mutated(edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
        let root = crate::project_root();
        let temp = tempfile::tempdir().expect("tempdir");
        super::super::baseline::copy_tree(&root.join("proto"), temp.path()).expect("copy");
        let path = temp.path().join("labhit/v1/pipeline.proto");
        let text = std::fs::read_to_string(&path).expect("read");
        let edited = edit(text.clone());
        assert_ne!(edited, text, "the mutation must change the proto");
        std::fs::write(&path, edited).expect("write");
        temp
    }

    #[test]
    fn the_working_tree_is_compatible_with_the_baseline() {
        let root = crate::project_root();
        let found = check(&root, &image(), &root.join("proto")).expect("buf runs");
        assert_eq!(found, Vec::new());
    }

    #[test]
    fn deleting_a_field_is_breaking_and_named() {
        let root = crate::project_root();
        let temp = mutated(|text| text.replacen("  string message = 7;\n", "", 1));
        let found = check(&root, &image(), temp.path()).expect("buf runs");
        assert!(!found.is_empty(), "a deleted field must be breaking");
        assert!(
            found
                .iter()
                .any(|b| b.message.contains("LogEntry") && b.message.contains("message")),
            "{found:?}"
        );
    }

    #[test]
    fn renumbering_a_field_is_breaking() {
        let root = crate::project_root();
        let temp =
            mutated(|text| text.replacen("  string message = 7;", "  string message = 9;", 1));
        let found = check(&root, &image(), temp.path()).expect("buf runs");
        assert!(!found.is_empty(), "a renumbered field must be breaking");
    }
}
