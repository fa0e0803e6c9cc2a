//! File names asked of git, read NUL-separated.
//!
//! Without `-z`, git quotes a path that has a byte outside printable ASCII (`core.quotePath`,
//! on by default): `café.log` comes back as `"caf\303\251.log"`, which names no file, so a
//! caller comparing it with directory entries silently misses it. Every place the runtime
//! asks git for file names goes through this module, which passes `-z` and splits on NUL:
//! the names come back verbatim, whatever bytes they hold.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Splits git's `-z` output into names (empty items are dropped).
pub fn split_nul(output: &[u8]) -> impl Iterator<Item = &OsStr> {
    output
        .split(|b| *b == 0)
        .filter(|item| !item.is_empty())
        .map(OsStr::from_bytes)
}

/// What git ignores in the work tree around `project`, relative to `project`
/// (`git ls-files -z --others --ignored --exclude-standard --directory`): a whole ignored
/// directory is one entry, without its trailing `/`. `None` when `project` is not in a git
/// work tree or git cannot be run.
pub fn ignored_paths(project: &Path) -> Option<Vec<PathBuf>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(project)
        .args([
            "ls-files",
            "-z",
            "--others",
            "--ignored",
            "--exclude-standard",
            "--directory",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(
        split_nul(&output.stdout)
            .map(|name| {
                let bytes = name.as_bytes();
                PathBuf::from(OsStr::from_bytes(bytes.strip_suffix(b"/").unwrap_or(bytes)))
            })
            .filter(|path| !path.as_os_str().is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_on_nul_and_kept_verbatim() {
        let names: Vec<&OsStr> = split_nul("café.log\0dir/\0\0a\nb\0".as_bytes()).collect();
        assert_eq!(
            names,
            [
                OsStr::new("café.log"),
                OsStr::new("dir/"),
                OsStr::new("a\nb")
            ]
        );
    }
}
