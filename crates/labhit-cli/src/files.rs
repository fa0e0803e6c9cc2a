//! Reading the files a command works on, and the extension registry of a command.
//!
//! Everything here that fails is *fatal* (exit code 3): a missing file, a directory, FIFO or
//! device where a file belongs, a permission problem. What is wrong *inside* a file (not
//! UTF-8, too large, bad YAML) is not fatal: it becomes a diagnostic, reported like any other
//! problem. Files are read with [`labhit_runtime::fsio`], the one bounded reader of the
//! runtime and the CLI: it never blocks on a FIFO and never reads more than the limit.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use labhit_runtime::fsio::{self, Limit, ReadError, describe};

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

/// The limit of a pipeline file: the parser's own (`Limits::max_bytes`).
pub(crate) fn pipeline_limit(limits: &labhit_protocol::pipeline::Limits) -> Limit {
    Limit::new(
        Limit::PIPELINE.what,
        u64::try_from(limits.max_bytes).unwrap_or(u64::MAX),
    )
}

/// Reads `path` (`-` is standard input), reading no more than `limit + 1` bytes so that an
/// enormous file or an endless stream cannot exhaust memory. Anything but a regular file
/// (and standard input) is refused without blocking.
pub(crate) fn read(path: &Path, limit: Limit) -> Result<Contents> {
    let limit_plus_one = limit.bytes.saturating_add(1);
    if is_stdin(path) {
        let mut bytes = Vec::new();
        io::stdin()
            .lock()
            .take(limit_plus_one)
            .read_to_end(&mut bytes)
            .map_err(|e| anyhow::anyhow!("cannot read standard input: {}", describe(&e)))?;
        return Ok(
            if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit.bytes {
                Contents::TooLarge { size: None }
            } else {
                Contents::Bytes(bytes)
            },
        );
    }
    match fsio::read(path, limit) {
        Ok(bytes) => Ok(Contents::Bytes(bytes)),
        Err(ReadError::TooLarge { size, .. }) => Ok(Contents::TooLarge { size }),
        Err(
            err @ ReadError::NotRegular {
                kind: fsio::NotRegular::Directory,
                ..
            },
        ) => bail!("{err}; give the path of a file"),
        Err(err) => Err(err.into()),
    }
}

/// Checks the directories given with `--extensions`: each must exist and be a directory.
/// Every command that takes `--extensions` (`validate`, `graph`, `run`, `ext …`) calls this
/// first, so a mistyped directory is fatal (exit code 3) everywhere rather than an empty
/// registry; directories of `LABHIT_EXTENSIONS` and the default directory may be missing.
pub(crate) fn check_extension_dirs(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        let shown = dir.display();
        let metadata = std::fs::metadata(dir).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                anyhow::anyhow!(
                    "extensions directory `{shown}` does not exist; check the `--extensions` path"
                )
            }
            _ => anyhow::anyhow!(
                "cannot read extensions directory `{shown}`: {}",
                describe(&e)
            ),
        })?;
        if !metadata.is_dir() {
            bail!("`--extensions {shown}` is not a directory");
        }
    }
    Ok(())
}

/// The extension registry of a command: [`check_extension_dirs`], then discovery on the
/// search path with `explicit` first (see `labhit_runtime::registry`).
pub(crate) fn registry(explicit: &[PathBuf]) -> Result<labhit_runtime::registry::Registry> {
    check_extension_dirs(explicit)?;
    Ok(labhit_runtime::registry::Registry::discover(explicit))
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
