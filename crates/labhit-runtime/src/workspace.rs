//! Run workspaces, and the content manifest of a workspace tree.
//!
//! # Run workspaces
//!
//! Each run gets its own directory, `<base>/<run-id>/` (by default `<project>/.labhit/runs/`,
//! see [`default_runs_base`]), whose `workspace/` subdirectory is the stages' workspace. It is
//! never the user's working tree. [`RunWorkspace::create`] makes it from a
//! [`WorkspaceSource`]:
//!
//! * [`WorkspaceSource::Copy`] — a copy of the project directory. Skipped: the entries of
//!   [`DEFAULT_SKIP`] (`.git`, `target`, `node_modules`, `.labhit/runs`, matched as paths
//!   relative to the project root) and the run base itself when it lies inside the project.
//!   Permission bits are kept; symbolic links are copied as links (their target verbatim) and
//!   never followed; sockets, FIFOs and devices are skipped.
//! * [`WorkspaceSource::GitWorktree`] — `git worktree add --detach <workspace> <ref>` of a
//!   repository: exactly the committed tree at that ref.
//!
//! Cleanup: nothing is removed automatically, so logs, artifacts and the workspace of a
//! finished run can be inspected. [`RunWorkspace::remove`] deletes the run's workspace (and
//! unregisters a worktree with `git worktree remove --force`); the runner calls it according
//! to its own policy (for example after a successful run unless asked to keep it).
//!
//! # Workspace manifests
//!
//! [`WorkspaceManifest::scan`] is the one place that hashes a directory tree: the sorted list
//! of every directory, regular file and symbolic link under a root as (relative path, kind,
//! permission bits, sha256 of the content or the link target). Nothing a stage can read is
//! skipped, with one exception: a top-level `.git` entry (in a worktree it is a file naming
//! the run-specific worktree directory, so it would make every run's content differ; the
//! checked-out files are what the stage builds from). Paths must be UTF-8. Modification times
//! and owners are not part of the manifest. Cache keys ([`crate::cachekey`]) and snapshots
//! ([`crate::snapshot`]) are built on it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use labhit_protocol::ids::RunId;
use sha2::{Digest, Sha256};

/// Paths (relative to the project root) a [`WorkspaceSource::Copy`] leaves out.
pub const DEFAULT_SKIP: [&str; 4] = [".git", "target", "node_modules", ".labhit/runs"];

/// Why a workspace could not be created, read or removed. Names the path at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    /// A file system operation failed.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done (`read`, `copy`, `create`, ...).
        action: &'static str,
        /// The path at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A file name is not UTF-8 (workspace paths must be).
    #[error("`{}` has a file name that is not UTF-8", path.display())]
    NonUtf8Path {
        /// The path at fault.
        path: PathBuf,
    },
    /// `git` failed.
    #[error("`git {args}` failed: {message}")]
    Git {
        /// The arguments of the git command.
        args: String,
        /// git's error output (or why it could not be run).
        message: String,
    },
    /// The directory already exists (a run id was reused).
    #[error("workspace `{}` already exists", path.display())]
    Exists {
        /// The existing directory.
        path: PathBuf,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WorkspaceError + use<> {
    let path = path.to_owned();
    move |source| WorkspaceError::Io {
        action,
        path,
        source,
    }
}

/// One entry of a [`WorkspaceManifest`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entry {
    /// A directory with its permission bits.
    Dir {
        /// Permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// A regular file.
    File {
        /// Permission bits (`mode & 0o7777`).
        mode: u32,
        /// Size in bytes.
        size: u64,
        /// Lowercase hex sha256 of the content.
        sha256: String,
    },
    /// A symbolic link (never followed).
    Symlink {
        /// The link target, verbatim.
        target: String,
    },
}

/// The content of a directory tree: every entry by relative path (`/`-separated), sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceManifest {
    entries: BTreeMap<String, Entry>,
}

impl WorkspaceManifest {
    /// Scans the tree under `root` (see the module docs for what is recorded).
    pub fn scan(root: &Path) -> Result<Self, WorkspaceError> {
        let mut manifest = Self::default();
        scan_dir(root, "", &mut manifest.entries)?;
        Ok(manifest)
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A lowercase hex sha256 over every entry (path, kind, mode, content hash or target):
    /// equal exactly when the manifests are equal.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"labhit-workspace-manifest/1\0");
        for (path, entry) in &self.entries {
            field(&mut hasher, path.as_bytes());
            match entry {
                Entry::Dir { mode } => {
                    field(&mut hasher, b"dir");
                    hasher.update(mode.to_le_bytes());
                }
                Entry::File { mode, size, sha256 } => {
                    field(&mut hasher, b"file");
                    hasher.update(mode.to_le_bytes());
                    hasher.update(size.to_le_bytes());
                    field(&mut hasher, sha256.as_bytes());
                }
                Entry::Symlink { target } => {
                    field(&mut hasher, b"symlink");
                    field(&mut hasher, target.as_bytes());
                }
            }
        }
        hex(&hasher.finalize())
    }

    /// What changed from `self` (before) to `after`: entries added or changed in `after`, and
    /// paths of `self` that `after` no longer has.
    pub fn diff<'m>(&self, after: &'m Self) -> Diff<'m> {
        let changed = after
            .entries
            .iter()
            .filter(|(path, entry)| self.entries.get(*path) != Some(*entry))
            .map(|(path, entry)| (path.as_str(), entry))
            .collect();
        let deleted = self
            .entries
            .keys()
            .filter(|path| !after.entries.contains_key(*path))
            .cloned()
            .collect();
        Diff { changed, deleted }
    }
}

/// The change between two [`WorkspaceManifest`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff<'m> {
    /// Entries added or changed, sorted by path (parents before children).
    pub changed: Vec<(&'m str, &'m Entry)>,
    /// Paths removed, sorted.
    pub deleted: Vec<String>,
}

impl Diff<'_> {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.deleted.is_empty()
    }
}

/// Writes `bytes` length-prefixed, so consecutive fields cannot run into each other.
pub(crate) fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The sha256 (hex) and size of the file at `path`, read in chunks.
pub(crate) fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex(&hasher.finalize()), size))
}

fn utf8_name(path: &Path, name: &std::ffi::OsStr) -> Result<String, WorkspaceError> {
    name.to_str()
        .map(str::to_owned)
        .ok_or_else(|| WorkspaceError::NonUtf8Path {
            path: path.to_owned(),
        })
}

fn scan_dir(
    dir: &Path,
    prefix: &str,
    entries: &mut BTreeMap<String, Entry>,
) -> Result<(), WorkspaceError> {
    let read = fs::read_dir(dir).map_err(io_err("read", dir))?;
    for item in read {
        let item = item.map_err(io_err("read", dir))?;
        let path = item.path();
        let name = utf8_name(&path, &item.file_name())?;
        if prefix.is_empty() && name == ".git" {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&path).map_err(io_err("read", &path))?;
        let file_type = meta.file_type();
        let mode = meta.mode() & 0o7777;
        if file_type.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err("read", &path))?;
            let target = target
                .to_str()
                .ok_or_else(|| WorkspaceError::NonUtf8Path { path: path.clone() })?
                .to_owned();
            entries.insert(rel, Entry::Symlink { target });
        } else if file_type.is_dir() {
            entries.insert(rel.clone(), Entry::Dir { mode });
            scan_dir(&path, &rel, entries)?;
        } else if file_type.is_file() {
            let (sha256, size) = hash_file(&path).map_err(io_err("read", &path))?;
            entries.insert(rel, Entry::File { mode, size, sha256 });
        }
        // Sockets, FIFOs and devices carry no content a stage could build from.
    }
    Ok(())
}

/// Where a run's workspace comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceSource {
    /// A copy of the project directory (see the module docs for what is skipped).
    Copy {
        /// The project directory.
        project: PathBuf,
        /// Paths relative to the project root to leave out; [`DEFAULT_SKIP`] by default.
        skip: Vec<String>,
    },
    /// A detached `git worktree` of `repo` at `git_ref`.
    GitWorktree {
        /// The repository (any directory inside it).
        repo: PathBuf,
        /// A commit, branch or tag.
        git_ref: String,
    },
}

impl WorkspaceSource {
    /// A copy of `project` skipping [`DEFAULT_SKIP`].
    pub fn copy(project: impl Into<PathBuf>) -> Self {
        WorkspaceSource::Copy {
            project: project.into(),
            skip: DEFAULT_SKIP.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// The default base directory of run directories: `<project>/.labhit/runs`.
pub fn default_runs_base(project: &Path) -> PathBuf {
    project.join(".labhit").join("runs")
}

/// The directory of one run, `<base>/<run-id>/`, with its workspace in `workspace/`.
#[derive(Debug, Clone)]
pub struct RunWorkspace {
    run_dir: PathBuf,
    workspace: PathBuf,
    worktree_of: Option<PathBuf>,
}

impl RunWorkspace {
    /// Creates `<base>/<run_id>/workspace` from `source`. Fails when it already exists.
    pub fn create(
        base: &Path,
        run_id: RunId,
        source: &WorkspaceSource,
    ) -> Result<Self, WorkspaceError> {
        let run_dir = base.join(run_id.to_string());
        let workspace = run_dir.join("workspace");
        if fs::symlink_metadata(&workspace).is_ok() {
            return Err(WorkspaceError::Exists { path: workspace });
        }
        fs::create_dir_all(&run_dir).map_err(io_err("create", &run_dir))?;
        let worktree_of = match source {
            WorkspaceSource::Copy { project, skip } => {
                copy_project(project, &workspace, skip)?;
                None
            }
            WorkspaceSource::GitWorktree { repo, git_ref } => {
                let target = workspace.to_string_lossy().into_owned();
                git(
                    repo,
                    &["worktree", "add", "--detach", "--quiet", &target, git_ref],
                )?;
                Some(repo.clone())
            }
        };
        Ok(Self {
            run_dir,
            workspace,
            worktree_of,
        })
    }

    /// The run directory (`<base>/<run-id>`): the workspace, and whatever the runner keeps
    /// beside it (logs, artifacts, summary).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The workspace directory the stages work in.
    pub fn path(&self) -> &Path {
        &self.workspace
    }

    /// Deletes the workspace (a worktree is unregistered from its repository first). The
    /// rest of the run directory is kept.
    pub fn remove(self) -> Result<(), WorkspaceError> {
        if let Some(repo) = &self.worktree_of {
            let target = self.workspace.to_string_lossy().into_owned();
            git(repo, &["worktree", "remove", "--force", &target])?;
        }
        match fs::remove_dir_all(&self.workspace) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err("remove", &self.workspace)(e))
            }
            _ => Ok(()),
        }
    }
}

fn git(repo: &Path, args: &[&str]) -> Result<(), WorkspaceError> {
    let fail = |message: String| WorkspaceError::Git {
        args: args.join(" "),
        message,
    };
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| fail(format!("cannot run git: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

/// Copies the tree `project` to `dest` (which must not exist), leaving out `skip` (paths
/// relative to `project`) and `dest` itself should it lie inside `project`. Keeps permission
/// bits, copies symbolic links as links, skips special files.
pub fn copy_project(project: &Path, dest: &Path, skip: &[String]) -> Result<(), WorkspaceError> {
    let project_real = project.canonicalize().map_err(io_err("read", project))?;
    fs::create_dir_all(dest).map_err(io_err("create", dest))?;
    let dest_real = dest.canonicalize().map_err(io_err("read", dest))?;
    copy_dir(&project_real, &dest_real, "", skip, &dest_real)
}

fn copy_dir(
    src: &Path,
    dest: &Path,
    prefix: &str,
    skip: &[String],
    dest_root: &Path,
) -> Result<(), WorkspaceError> {
    let meta = fs::metadata(src).map_err(io_err("read", src))?;
    let read = fs::read_dir(src).map_err(io_err("read", src))?;
    for item in read {
        let item = item.map_err(io_err("read", src))?;
        let from = item.path();
        let name = utf8_name(&from, &item.file_name())?;
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if skip.iter().any(|s| s.trim_end_matches('/') == rel) || from == dest_root {
            continue;
        }
        let to = dest.join(&name);
        let file_type = fs::symlink_metadata(&from)
            .map_err(io_err("read", &from))?
            .file_type();
        if file_type.is_symlink() {
            let target = fs::read_link(&from).map_err(io_err("read", &from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io_err("create", &to))?;
        } else if file_type.is_dir() {
            fs::create_dir(&to).map_err(io_err("create", &to))?;
            copy_dir(&from, &to, &rel, skip, dest_root)?;
        } else if file_type.is_file() {
            // fs::copy keeps the permission bits.
            fs::copy(&from, &to).map_err(io_err("copy", &from))?;
        }
    }
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err("create", dest))
}
