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
//!   relative to the project root), the run base and the workspace itself when they lie
//!   inside the project, and every directory labhit tagged as its own ([`crate::cachedir`]:
//!   run bases and snapshot stores, wherever `--run-dir` / `--cache-dir` put them).
//!   Permission bits and modification times are kept; symbolic links are copied as links
//!   (their target verbatim) and never followed; sockets, FIFOs and devices are skipped.
//!   Files are copied by a few threads, each file as cheaply as the file system allows
//!   ([`crate::fastcopy`]: a copy-on-write clone, else `copy_file_range`, sparse files with
//!   their holes). The project is only read: no hard links, nothing written into it.
//!   While copying, the content digest of every file is taken from the project's persistent
//!   [`DigestIndex`] (`<base>/.labhit-digests-<project hash>`) when `stat` shows the file
//!   untouched, else hashed from the copy; the run keeps the result as the workspace's
//!   index ([`RunWorkspace::take_digests`]) so the first cache key costs a `stat` per file.
//! * [`WorkspaceSource::GitWorktree`] — `git worktree add --detach <workspace> <ref>` of a
//!   repository: exactly the committed tree at that ref.
//!
//! Cleanup: this module removes nothing by itself, so logs, artifacts and the workspace of a
//! finished run can be inspected. [`RunWorkspace::remove`] deletes the run's workspace (and
//! unregisters a worktree with `git worktree remove --force`); [`crate::retention`] prunes
//! whole run directories after each run (the newest 10 stay by default, `labhit run
//! --keep-runs` / `--max-run-age`, `labhit gc runs`).
//!
//! # Workspace manifests
//!
//! [`WorkspaceManifest::scan`] is the one place that hashes a directory tree: the sorted list
//! of every directory, regular file and symbolic link under a root as (relative path, kind,
//! permission bits, sha256 of the content or the link target). [`WorkspaceManifest::scan_indexed`]
//! takes a file's digest from a [`DigestIndex`] when its `stat` allows (see
//! [`crate::digests`]) and records what it hashes. A symbolic link whose target resolves
//! outside the root also records what it reaches ([`Outside`]): the content of a file there
//! is part of [`WorkspaceManifest::key_digest`], and a directory there makes the key an error
//! (its content cannot be covered), so such content is never silently left out of a cache key. Nothing a stage can read is
//! skipped, with one exception: a top-level `.git` entry (in a worktree it is a file naming
//! the run-specific worktree directory, so it would make every run's content differ; the
//! checked-out files are what the stage builds from). Paths must be UTF-8. Modification times
//! and owners are not part of the manifest. Cache keys ([`crate::cachekey`]) and snapshots
//! ([`crate::snapshot`]) are built on it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use labhit_protocol::glob::InputGlob;
use labhit_protocol::ids::RunId;
use sha2::{Digest, Sha256};

use crate::digests::{DigestIndex, Stamp, now_ns};
use crate::fastcopy::Copier;

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
    /// A file name is not UTF-8 (workspace paths must be: WASI paths are strings).
    #[error(
        "`{}` has a file name that is not UTF-8, which a workspace cannot hold (WASI paths are \
         strings): rename it, or have git ignore it",
        path.display()
    )]
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
    /// A symbolic link reaches content outside the workspace that a cache key cannot cover.
    #[error(
        "`{path}` is a symbolic link to `{target}` outside the workspace, which is {what}: a \
         cache key cannot cover it; copy it into the project, or run without caching \
         (`--no-cache`)"
    )]
    OutsideLink {
        /// The workspace-relative path of the link.
        path: String,
        /// Where it leads.
        target: String,
        /// What is there (`a directory`, ...).
        what: &'static str,
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

/// What a symbolic link that resolves outside the scanned root reaches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outside {
    /// A regular file: its size and sha256.
    File {
        /// Size in bytes.
        size: u64,
        /// Lowercase hex sha256 of the content.
        sha256: String,
    },
    /// A directory (a cache key cannot cover it).
    Dir,
    /// Nothing (a dangling link) or something unreadable as a file: a socket, a device.
    Nothing,
}

/// The content of a directory tree: every entry by relative path (`/`-separated), sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceManifest {
    entries: BTreeMap<String, Entry>,
    outside: BTreeMap<String, Outside>,
}

impl WorkspaceManifest {
    /// Scans the tree under `root` (see the module docs for what is recorded).
    pub fn scan(root: &Path) -> Result<Self, WorkspaceError> {
        Self::scan_indexed(root, &mut DigestIndex::new())
    }

    /// Scans the tree under `root`, taking file digests from `index` where `stat` allows and
    /// recording the ones it computes there.
    pub fn scan_indexed(root: &Path, index: &mut DigestIndex) -> Result<Self, WorkspaceError> {
        let mut manifest = Self::default();
        let real_root = root.canonicalize().map_err(io_err("read", root))?;
        let mut scan = Scan {
            real_root: &real_root,
            index,
            manifest: &mut manifest,
        };
        scan.dir(root, "")?;
        Ok(manifest)
    }

    /// What the symbolic links that resolve outside the root reach, by link path.
    pub fn outside(&self) -> &BTreeMap<String, Outside> {
        &self.outside
    }

    /// The digest a cache key covers: of every entry, or with `inputs` only of the entries
    /// they select ([`InputGlob::selects`]); in both cases with the content outside links
    /// reach. An outside link to a directory (among the selected entries) is an error.
    pub fn key_digest(&self, inputs: Option<&[InputGlob]>) -> Result<String, WorkspaceError> {
        let selected =
            |path: &str| inputs.is_none_or(|globs| globs.iter().any(|g| g.selects(path)));
        let mut hasher = Sha256::new();
        hasher.update(b"labhit-workspace-key/2\0");
        hash_entries(
            &mut hasher,
            self.entries
                .iter()
                .filter(|(path, _)| selected(path.as_str())),
        );
        field(&mut hasher, b"outside");
        for (path, outside) in self
            .outside
            .iter()
            .filter(|(path, _)| selected(path.as_str()))
        {
            field(&mut hasher, path.as_bytes());
            match outside {
                Outside::File { size, sha256 } => {
                    field(&mut hasher, b"file");
                    hasher.update(size.to_le_bytes());
                    field(&mut hasher, sha256.as_bytes());
                }
                Outside::Nothing => field(&mut hasher, b"nothing"),
                Outside::Dir => {
                    let target = match self.entries.get(path) {
                        Some(Entry::Symlink { target }) => target.clone(),
                        _ => String::new(),
                    };
                    return Err(WorkspaceError::OutsideLink {
                        path: path.clone(),
                        target,
                        what: "a directory",
                    });
                }
            }
        }
        Ok(hex(&hasher.finalize()))
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
        hash_entries(&mut hasher, self.entries.iter());
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

/// What one stage did to the workspace, owned: the entries it added or changed (with what
/// the links among them reach outside), and the paths it deleted. Made by
/// [`WorkspaceManifest::effect`], applied by [`WorkspaceManifest::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    changed: BTreeMap<String, Entry>,
    outside: BTreeMap<String, Outside>,
    deleted: Vec<String>,
}

impl Effect {
    /// Whether the stage changed nothing.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.outside.is_empty() && self.deleted.is_empty()
    }
}

impl WorkspaceManifest {
    /// The [`Effect`] that turns `self` (before) into `after`.
    pub fn effect(&self, after: &Self) -> Effect {
        let diff = self.diff(after);
        let changed: BTreeMap<String, Entry> = diff
            .changed
            .iter()
            .map(|(path, entry)| ((*path).to_owned(), (*entry).clone()))
            .collect();
        // What links reach outside: of every changed link, and of unchanged links whose
        // outside content changed.
        let outside = after
            .outside
            .iter()
            .filter(|(path, reach)| {
                changed.contains_key(*path) || self.outside.get(*path) != Some(*reach)
            })
            .map(|(path, reach)| (path.clone(), reach.clone()))
            .collect();
        Effect {
            changed,
            outside,
            deleted: diff.deleted,
        }
    }

    /// Applies `effect` (made against some workspace) to this manifest: deleted paths go,
    /// changed entries replace what is there.
    pub fn apply(&mut self, effect: &Effect) {
        for path in &effect.deleted {
            self.entries.remove(path);
            self.outside.remove(path);
        }
        for (path, entry) in &effect.changed {
            self.entries.insert(path.clone(), entry.clone());
            self.outside.remove(path);
        }
        for (path, reach) in &effect.outside {
            self.outside.insert(path.clone(), reach.clone());
        }
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

fn hash_entries<'e>(hasher: &mut Sha256, entries: impl Iterator<Item = (&'e String, &'e Entry)>) {
    for (path, entry) in entries {
        field(hasher, path.as_bytes());
        match entry {
            Entry::Dir { mode } => {
                field(hasher, b"dir");
                hasher.update(mode.to_le_bytes());
            }
            Entry::File { mode, size, sha256 } => {
                field(hasher, b"file");
                hasher.update(mode.to_le_bytes());
                hasher.update(size.to_le_bytes());
                field(hasher, sha256.as_bytes());
            }
            Entry::Symlink { target } => {
                field(hasher, b"symlink");
                field(hasher, target.as_bytes());
            }
        }
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
    hash_reader(fs::File::open(path)?)
}

/// The sha256 (hex) and size of what `file` yields, read in chunks.
pub(crate) fn hash_reader(mut file: impl Read) -> io::Result<(String, u64)> {
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

/// One scan in progress.
struct Scan<'s> {
    real_root: &'s Path,
    index: &'s mut DigestIndex,
    manifest: &'s mut WorkspaceManifest,
}

impl Scan<'_> {
    fn dir(&mut self, dir: &Path, prefix: &str) -> Result<(), WorkspaceError> {
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
                if let Some(outside) = self.outside(&path)? {
                    self.manifest.outside.insert(rel.clone(), outside);
                }
                self.manifest.entries.insert(rel, Entry::Symlink { target });
            } else if file_type.is_dir() {
                self.manifest
                    .entries
                    .insert(rel.clone(), Entry::Dir { mode });
                self.dir(&path, &rel)?;
            } else if file_type.is_file() {
                let stamp = Stamp::of(&meta);
                let known = self.index.lookup(&rel, &stamp).map(|(s, _)| s.to_owned());
                let sha256 = match known {
                    Some(sha256) => sha256,
                    None => {
                        let started = now_ns();
                        let (sha256, _) = hash_file(&path).map_err(io_err("read", &path))?;
                        self.index.record(&rel, stamp, &sha256, started);
                        sha256
                    }
                };
                let size = meta.size();
                self.manifest
                    .entries
                    .insert(rel, Entry::File { mode, size, sha256 });
            }
            // Sockets, FIFOs and devices carry no content a stage could build from.
        }
        Ok(())
    }

    /// What the link at `path` reaches when that is outside the root; `None` when inside.
    fn outside(&self, path: &Path) -> Result<Option<Outside>, WorkspaceError> {
        let Ok(real) = path.canonicalize() else {
            // Dangling, a loop, or not readable: whether it would point inside or outside,
            // nothing can be read through it now.
            return Ok(Some(Outside::Nothing));
        };
        if real.starts_with(self.real_root) {
            return Ok(None);
        }
        let meta = fs::metadata(&real).map_err(io_err("read", &real))?;
        Ok(Some(if meta.is_dir() {
            Outside::Dir
        } else if meta.is_file() {
            let (sha256, size) = hash_file(&real).map_err(io_err("read", &real))?;
            Outside::File { size, sha256 }
        } else {
            Outside::Nothing
        }))
    }
}

/// Where a run's workspace comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceSource {
    /// A copy of the project directory (see the module docs for what is skipped).
    Copy {
        /// The project directory.
        project: PathBuf,
        /// Paths relative to the project root to leave out; [`DEFAULT_SKIP`] by default.
        /// Compared as paths (a trailing `/` does not matter), so a name that is not UTF-8
        /// can be left out too.
        skip: Vec<PathBuf>,
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
            skip: DEFAULT_SKIP.iter().map(PathBuf::from).collect(),
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
    digests: DigestIndex,
    warnings: Vec<String>,
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
        crate::cachedir::tag(base, "labhit run directories").map_err(io_err("create", base))?;
        let mut digests = DigestIndex::new();
        let mut warnings = Vec::new();
        let worktree_of = match source {
            WorkspaceSource::Copy { project, skip } => {
                let index_path = project_index_path(base, project);
                let (known, warning) = DigestIndex::load(&index_path);
                warnings.extend(warning);
                let excluded = [base.to_owned(), workspace.clone()];
                let copied = copy_tree(project, &workspace, skip, &excluded, &known)?;
                if let Err(e) = copied.project.save(&index_path) {
                    warnings.push(format!(
                        "cannot write the digest index `{}` ({e}); the next run hashes every \
                         file again",
                        index_path.display()
                    ));
                }
                digests = copied.workspace;
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
            digests,
            warnings,
        })
    }

    /// The digests of the workspace's files as copied (empty for a git worktree, and after
    /// the first call): hand them to whatever scans the workspace next
    /// ([`PipelineRunner::set_digests`](crate::scheduler::stages::PipelineRunner::set_digests)).
    pub fn take_digests(&mut self) -> DigestIndex {
        std::mem::take(&mut self.digests)
    }

    /// What went wrong without failing the creation (an unreadable or corrupt digest index),
    /// for the caller to show.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
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

/// Where the digest index of `project` lives for runs under `base`.
fn project_index_path(base: &Path, project: &Path) -> PathBuf {
    let real = project
        .canonicalize()
        .unwrap_or_else(|_| project.to_owned());
    let id = hex(&Sha256::digest(real.as_os_str().as_encoded_bytes()));
    base.join(format!(".labhit-digests-{}", &id[..16]))
}

/// Copies the tree `project` to `dest` (which must not exist), leaving out `skip` (paths
/// relative to `project`) and `dest` itself should it lie inside `project`. Keeps permission
/// bits and modification times, copies symbolic links as links, skips special files.
pub fn copy_project(project: &Path, dest: &Path, skip: &[PathBuf]) -> Result<(), WorkspaceError> {
    copy_tree(project, dest, skip, &[dest.to_owned()], &DigestIndex::new()).map(|_| ())
}

/// What [`copy_tree`] learnt about the digests of the files it copied.
#[derive(Debug, Default)]
pub struct CopiedDigests {
    /// The copies, by workspace-relative path (their own stamps).
    pub workspace: DigestIndex,
    /// The project's files, by project-relative path: the index to keep for the next copy.
    pub project: DigestIndex,
}

/// One regular file to copy.
struct Job {
    from: PathBuf,
    to: PathBuf,
    rel: String,
}

/// One copied file.
struct Done {
    rel: String,
    sha256: String,
    hashed_at: i64,
    dest: Stamp,
    /// The source's stamp, when it did not change while being copied.
    source: Option<Stamp>,
}

/// Copies `project` to `dest` like [`copy_project`], also leaving out the directories in
/// `excluded` (absolute) and those [`crate::cachedir`] tagged, taking digests from `known`
/// where the source's stamp allows and hashing the copies otherwise.
pub fn copy_tree(
    project: &Path,
    dest: &Path,
    skip: &[PathBuf],
    excluded: &[PathBuf],
    known: &DigestIndex,
) -> Result<CopiedDigests, WorkspaceError> {
    let project_real = project.canonicalize().map_err(io_err("read", project))?;
    fs::create_dir_all(dest).map_err(io_err("create", dest))?;
    let dest_real = dest.canonicalize().map_err(io_err("read", dest))?;
    let mut excluded: Vec<PathBuf> = excluded
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    excluded.push(dest_real.clone());
    let mut walk = Walk {
        skip,
        excluded: &excluded,
        jobs: Vec::new(),
        dirs: Vec::new(),
    };
    walk.dir(&project_real, &dest_real, "")?;
    let results = copy_files(&walk.jobs, known)?;
    // Directory permissions last: a read-only directory must still receive its files.
    for (dir, mode) in walk.dirs.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
            .map_err(io_err("create", dir))?;
    }
    let mut digests = CopiedDigests::default();
    for done in results {
        digests
            .workspace
            .record(&done.rel, done.dest, &done.sha256, done.hashed_at);
        if let Some(source) = done.source {
            digests
                .project
                .record(&done.rel, source, &done.sha256, done.hashed_at);
        }
    }
    Ok(digests)
}

/// The directory walk of a copy: creates directories and links, collects the files.
struct Walk<'w> {
    skip: &'w [PathBuf],
    excluded: &'w [PathBuf],
    jobs: Vec<Job>,
    dirs: Vec<(PathBuf, u32)>,
}

impl Walk<'_> {
    fn dir(&mut self, src: &Path, dest: &Path, prefix: &str) -> Result<(), WorkspaceError> {
        let meta = fs::metadata(src).map_err(io_err("read", src))?;
        self.dirs.push((dest.to_owned(), meta.mode() & 0o7777));
        let read = fs::read_dir(src).map_err(io_err("read", src))?;
        for item in read {
            let item = item.map_err(io_err("read", src))?;
            let from = item.path();
            let file_name = item.file_name();
            // Skipped names are compared before the UTF-8 check: an ignored file may have
            // any name, since it is never copied.
            let rel_path = Path::new(prefix).join(&file_name);
            if self.skip.contains(&rel_path) {
                continue;
            }
            let name = utf8_name(&from, &file_name)?;
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let to = dest.join(&name);
            let file_type = item.file_type().map_err(io_err("read", &from))?;
            if file_type.is_symlink() {
                let target = fs::read_link(&from).map_err(io_err("read", &from))?;
                std::os::unix::fs::symlink(&target, &to).map_err(io_err("create", &to))?;
            } else if file_type.is_dir() {
                if self.excluded.contains(&from) || crate::cachedir::is_tagged(&from) {
                    continue;
                }
                fs::create_dir(&to).map_err(io_err("create", &to))?;
                self.dir(&from, &to, &rel)?;
            } else if file_type.is_file() {
                self.jobs.push(Job { from, to, rel });
            }
        }
        Ok(())
    }
}

/// Copies every job with a few threads; the first error stops the others.
fn copy_files(jobs: &[Job], known: &DigestIndex) -> Result<Vec<Done>, WorkspaceError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8)
        .min(jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let copier = Copier::new();
    let first_error: Mutex<Option<WorkspaceError>> = Mutex::new(None);
    let done: Vec<Option<Vec<Done>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        match copy_one(job, known, &copier) {
                            Ok(d) => done.push(d),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get_or_insert(e);
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().ok()).collect()
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // A worker that panicked left files uncopied: never hand out a partial workspace.
    let done: Option<Vec<Vec<Done>>> = done.into_iter().collect();
    let Some(done) = done else {
        let path = jobs.first().map(|j| j.from.clone()).unwrap_or_default();
        return Err(WorkspaceError::Io {
            action: "copy",
            path,
            source: io::Error::other("a copying thread panicked"),
        });
    };
    Ok(done.into_iter().flatten().collect())
}

/// Copies one file (content, permission bits, modification time) and finds its digest.
fn copy_one(job: &Job, known: &DigestIndex, copier: &Copier) -> Result<Done, WorkspaceError> {
    let started = now_ns();
    let src = fs::File::open(&job.from).map_err(io_err("read", &job.from))?;
    let before = src.metadata().map_err(io_err("read", &job.from))?;
    let stamp = Stamp::of(&before);
    let hit = known
        .lookup(&job.rel, &stamp)
        .map(|(sha, at)| (sha.to_owned(), at));
    let mut dest = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&job.to)
        .map_err(io_err("create", &job.to))?;
    copier
        .copy(&src, &before, &dest)
        .map_err(io_err("copy", &job.from))?;
    let mtime = before.modified().map_err(io_err("read", &job.from))?;
    dest.set_modified(mtime)
        .and_then(|()| dest.set_permissions(fs::Permissions::from_mode(before.mode() & 0o7777)))
        .map_err(io_err("create", &job.to))?;
    let after = src.metadata().map_err(io_err("read", &job.from))?;
    let unchanged = Stamp::of(&after) == stamp;
    let (sha256, hashed_at) = match hit {
        Some(hit) if unchanged => hit,
        _ => {
            dest.seek(io::SeekFrom::Start(0))
                .map_err(io_err("read", &job.to))?;
            let (sha256, _) = hash_reader(&mut dest).map_err(io_err("read", &job.to))?;
            (sha256, started)
        }
    };
    let dest_meta = dest.metadata().map_err(io_err("read", &job.to))?;
    Ok(Done {
        rel: job.rel.clone(),
        sha256,
        hashed_at,
        dest: Stamp::of(&dest_meta),
        source: unchanged.then_some(stamp),
    })
}
