//! Reading the files a command works on, and finding extension manifests.
//!
//! Everything here that fails is *fatal* (exit code 3): a missing file, a directory where a
//! file belongs, a permission problem. What is wrong *inside* a file (not UTF-8, too large,
//! bad YAML) is not fatal: it becomes a diagnostic, reported like any other problem.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The name of an extension manifest.
pub(crate) const MANIFEST_NAME: &str = "extension.toml";

/// What reading a file gave.
pub(crate) enum Contents {
    /// The whole file.
    Bytes(Vec<u8>),
    /// The file is larger than the limit; it was not read. `size` is known for regular files.
    TooLarge {
        /// Size in bytes, when the file system says.
        size: Option<u64>,
    },
}

/// How a path is shown in messages: as given, with `-` shown as `<stdin>`.
pub(crate) fn display(path: &Path) -> String {
    if is_stdin(path) {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads `path` (`-` is standard input), reading no more than `limit + 1` bytes so that an
/// enormous file or an endless stream cannot exhaust memory.
pub(crate) fn read(path: &Path, limit: usize) -> Result<Contents> {
    let limit_plus_one = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    if is_stdin(path) {
        let mut bytes = Vec::new();
        io::stdin()
            .lock()
            .take(limit_plus_one)
            .read_to_end(&mut bytes)
            .map_err(|e| anyhow::anyhow!("cannot read standard input: {}", describe(&e)))?;
        return Ok(if bytes.len() > limit {
            Contents::TooLarge { size: None }
        } else {
            Contents::Bytes(bytes)
        });
    }
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| fatal(path, &e))?;
    if metadata.is_dir() {
        bail!("`{shown}` is a directory; give the path of a file");
    }
    if metadata.is_file() && metadata.len() > limit_plus_one - 1 {
        return Ok(Contents::TooLarge {
            size: Some(metadata.len()),
        });
    }
    let file = File::open(path).map_err(|e| fatal(path, &e))?;
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0).min(limit));
    file.take(limit_plus_one)
        .read_to_end(&mut bytes)
        .map_err(|e| fatal(path, &e))?;
    Ok(if bytes.len() > limit {
        Contents::TooLarge { size: None }
    } else {
        Contents::Bytes(bytes)
    })
}

fn fatal(path: &Path, err: &io::Error) -> anyhow::Error {
    let shown = path.display();
    match err.kind() {
        io::ErrorKind::NotFound => anyhow::anyhow!("`{shown}` does not exist"),
        io::ErrorKind::IsADirectory => {
            anyhow::anyhow!("`{shown}` is a directory; give the path of a file")
        }
        _ => anyhow::anyhow!("cannot read `{shown}`: {}", describe(err)),
    }
}

/// An I/O error without the `(os error N)` tail, starting lowercase.
fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

/// Every `extension.toml` under `dir`, sorted by path. Hidden directories and `target`
/// directories are skipped; symbolic links to directories are not followed.
pub(crate) fn find_manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let shown = dir.display();
    let metadata = std::fs::metadata(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => anyhow::anyhow!("extensions directory `{shown}` does not exist"),
        _ => anyhow::anyhow!(
            "cannot read extensions directory `{shown}`: {}",
            describe(&e)
        ),
    })?;
    if !metadata.is_dir() {
        bail!("`--extensions {shown}` is not a directory");
    }
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| {
            anyhow::anyhow!(
                "cannot read directory `{}`: {}",
                current.display(),
                describe(&e)
            )
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                anyhow::anyhow!(
                    "cannot read directory `{}`: {}",
                    current.display(),
                    describe(&e)
                )
            })?;
            let name = entry.file_name();
            let file_type = entry.file_type().map_err(|e| fatal(&entry.path(), &e))?;
            if file_type.is_dir() {
                let hidden = name.to_string_lossy().starts_with('.');
                if !hidden && name != "target" {
                    pending.push(entry.path());
                }
            } else if name == MANIFEST_NAME {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_our_messages() {
        let err = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(describe(&err), "permission denied");
        assert_eq!(display(Path::new("-")), "<stdin>");
    }
}
