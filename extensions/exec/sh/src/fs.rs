//! Workspace paths: resolving what a script writes (`dist/app`, `../x`, `/workspace/a`)
//! against the current directory, refusing anything that would leave the workspace, and the
//! error texts of file operations.
//!
//! The script sees the workspace at [`GUEST_ROOT`] (`/workspace`) whatever the real
//! directory is (it is `/workspace` in a component, a temporary directory in native tests).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where the workspace appears to the script.
pub const GUEST_ROOT: &str = "/workspace";

/// A directory or file inside the workspace, as its normal components (no `.`, `..` or
/// empty parts); the empty path is the workspace root.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct WsPath(Vec<String>);

impl WsPath {
    /// The workspace root.
    pub fn root() -> Self {
        Self::default()
    }

    /// Whether this is the workspace root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The components.
    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// This path with `name` appended.
    pub fn join(&self, name: &str) -> Self {
        let mut parts = self.0.clone();
        parts.push(name.to_owned());
        Self(parts)
    }

    /// The last component (empty for the root).
    pub fn name(&self) -> &str {
        self.0.last().map_or("", String::as_str)
    }

    /// Whether `self` is `other` or inside it.
    pub fn starts_with(&self, other: &WsPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The path as the script sees it: `/workspace/a/b`.
    pub fn guest(&self) -> String {
        let mut out = GUEST_ROOT.to_owned();
        for part in &self.0 {
            out.push('/');
            out.push_str(part);
        }
        out
    }

    /// The `/`-separated path relative to the workspace root (`.` for the root).
    pub fn relative(&self) -> String {
        if self.0.is_empty() {
            ".".to_owned()
        } else {
            self.0.join("/")
        }
    }

    /// The real path under the workspace directory `root`.
    pub fn real(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        for part in &self.0 {
            path.push(part);
        }
        path
    }
}

/// Why a path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The empty string.
    Empty,
    /// It would leave the workspace.
    Outside(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => f.write_str(": No such file or directory"),
            PathError::Outside(path) => write!(
                f,
                "{path}: outside the workspace (only paths under {GUEST_ROOT} are reachable)"
            ),
        }
    }
}

/// Resolves the script path `path` against the current directory `cwd`.
///
/// # Errors
///
/// [`PathError::Empty`] for `""`; [`PathError::Outside`] for an absolute path not under
/// [`GUEST_ROOT`], or a `..` that climbs above the workspace root.
pub fn resolve(cwd: &WsPath, path: &str) -> Result<WsPath, PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    let outside = || PathError::Outside(path.to_owned());
    let (mut parts, rest) = match path.strip_prefix('/') {
        Some(_) => {
            let trimmed = path.trim_start_matches('/');
            let root = GUEST_ROOT.trim_start_matches('/');
            match trimmed.strip_prefix(root) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => (Vec::new(), rest),
                _ => return Err(outside()),
            }
        }
        None => (cwd.0.clone(), path),
    };
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(outside());
                }
            }
            _ => {
                if part.contains('\0') {
                    return Err(outside());
                }
                parts.push(part.to_owned());
            }
        }
    }
    Ok(WsPath(parts))
}

/// The text of an I/O error, as file utilities print it (`No such file or directory`).
pub fn describe(err: &io::Error) -> String {
    use io::ErrorKind as K;
    match err.kind() {
        K::NotFound => "No such file or directory".to_owned(),
        K::PermissionDenied => "Permission denied".to_owned(),
        K::AlreadyExists => "File exists".to_owned(),
        K::IsADirectory => "Is a directory".to_owned(),
        K::NotADirectory => "Not a directory".to_owned(),
        K::DirectoryNotEmpty => "Directory not empty".to_owned(),
        K::ReadOnlyFilesystem => "Read-only file system".to_owned(),
        K::StorageFull => "No space left on device".to_owned(),
        K::InvalidInput => "Invalid argument".to_owned(),
        _ => {
            let text = err.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_owned(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(path: &str) -> WsPath {
        resolve(&WsPath::root(), path).unwrap()
    }

    #[test]
    fn resolves_relative_and_guest_absolute_paths() {
        let cwd = ws("src/bin");
        assert_eq!(resolve(&cwd, "main.rs").unwrap(), ws("src/bin/main.rs"));
        assert_eq!(resolve(&cwd, "../lib.rs").unwrap(), ws("src/lib.rs"));
        assert_eq!(resolve(&cwd, "./a//b/.").unwrap(), ws("src/bin/a/b"));
        assert_eq!(resolve(&cwd, "/workspace").unwrap(), WsPath::root());
        assert_eq!(resolve(&cwd, "//workspace/x/").unwrap(), ws("x"));
        assert_eq!(resolve(&cwd, "../..").unwrap(), WsPath::root());
        assert_eq!(ws("a/b").guest(), "/workspace/a/b");
        assert_eq!(WsPath::root().guest(), "/workspace");
        assert_eq!(WsPath::root().relative(), ".");
    }

    #[test]
    fn refuses_paths_outside_the_workspace() {
        let cwd = ws("src");
        for bad in [
            "../../x",
            "/etc/passwd",
            "/workspaces/x",
            "/",
            "/tmp",
            "a/../../..",
        ] {
            assert_eq!(
                resolve(&cwd, bad),
                Err(PathError::Outside(bad.to_owned())),
                "{bad}"
            );
        }
        assert_eq!(resolve(&cwd, ""), Err(PathError::Empty));
        assert_eq!(
            PathError::Outside("/etc".into()).to_string(),
            "/etc: outside the workspace (only paths under /workspace are reachable)"
        );
    }

    #[test]
    fn describes_io_errors_like_coreutils() {
        let err = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(describe(&err), "No such file or directory");
    }
}
