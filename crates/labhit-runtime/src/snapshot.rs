//! The local snapshot store: what a `miss_build_as` step commits and a `hit` restores.
//!
//! A snapshot is the *effect* of one stage on its workspace: the entries it added or changed
//! (directories, regular files with their permission bits, symbolic links) and the paths it
//! deleted, computed as the difference between a [`WorkspaceManifest`] taken before the
//! command and the workspace after it. Restoring applies that effect to a workspace in the
//! state the stage started from (the cache key guarantees it, see [`crate::cachekey`]).
//!
//! # Layout
//!
//! The store lives in [`default_dir`] (`$LABHIT_CACHE_DIR/snapshots`, else
//! `$XDG_CACHE_HOME/labhit/snapshots`, else `~/.cache/labhit/snapshots`) and survives across
//! runs:
//!
//! ```text
//! <dir>/blobs/<first 2 hex digits>/<sha256>   file contents, addressed by their sha256
//! <dir>/tags/<sha256 of the tag>.snapshot     one manifest per tag
//! <dir>/live/<pid>-<n>.lease                  one per live run using the store
//! ```
//!
//! The store is bounded ([`SnapshotStore::gc`]): a size cap with least-recently-used
//! eviction (a manifest's modification time is its last use; [`SnapshotStore::restore`]
//! touches it), and removal of what a killed process left, older than every live run
//! ([`StoreLease`]).
//!
//! A manifest file is a header line `labhit-snapshot/1 <sha256 of the rest>` followed by a
//! JSON object `{"tag", "changed": [{"path", "kind": "dir"|"file"|"symlink", "mode", "size",
//! "sha256", "target"}], "deleted": [path]}`. Every file is written under a temporary name
//! and renamed into place, blobs before the manifest that names them, so a reader never sees
//! a partial entry. Nothing is fsynced: what a crash tears fails verification below.
//!
//! # Trust
//!
//! Nothing read back is trusted: [`SnapshotStore::verify`] (used by [`SnapshotStore::exists`]
//! and before [`SnapshotStore::restore`] changes anything) checks the manifest's checksum and
//! tag, that every path is a clean workspace-relative path, and every blob's size and sha256.
//! A corrupt entry is reported as [`SnapshotError::Corrupt`] and deleted (its manifest, and a
//! blob whose content does not match its name), so the next lookup is a plain miss and the
//! next `miss_build_as` rewrites it. Restoring never writes through a symbolic link: a path
//! whose parent in the workspace is a link is refused.
//!
//! The workspace boundary ([`crate::boundary`]) holds for snapshots too: a manifest with a
//! link whose target is absolute or climbs out of the workspace is corrupt (a forged one),
//! and [`SnapshotStore::commit`] refuses to record a link that resolves outside. Permission
//! bits are masked to `0o777` when committed and again when restored: setuid, setgid and
//! sticky bits are never recorded nor restored, whatever a manifest says.

mod gc;
mod live;
mod transfer;

pub use gc::{
    DEFAULT_MAX_BYTES, GcOptions, GcReport, MAX_SIZE_ENV, StoreStats, TEMP_GRACE,
    max_bytes_from_env,
};
pub use live::StoreLease;

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use labhit_protocol::executor::ArtifactPath;
use labhit_protocol::ids::SnapshotRef;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::boundary::{self, Resolution};
use crate::workspace::{Entry, WorkspaceError, WorkspaceManifest, hex};

/// The permission bits a snapshot records and restores: no setuid, setgid or sticky bit.
const MODE_MASK: u32 = 0o777;

/// First word of a manifest file's header line.
const FORMAT: &str = "labhit-snapshot/1";

/// Why a snapshot could not be committed, verified or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The store has no snapshot with this tag.
    #[error("no such snapshot in the store")]
    NotFound,
    /// The stored snapshot failed verification; it has been removed from the store.
    #[error("the stored snapshot is corrupt and was discarded: {reason}")]
    Corrupt {
        /// What failed verification.
        reason: String,
    },
    /// A file system operation failed.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Restoring would write outside the workspace (a parent directory is a symbolic link).
    #[error("refusing to restore `{path}`: {reason}")]
    Unsafe {
        /// The workspace-relative path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The workspace could not be scanned.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// A path of the store is of the wrong kind (the store directory is a file, a manifest
    /// path is a directory).
    #[error("the snapshot cache entry `{}` is not a {expected}: remove it or pass another `--cache-dir`", path.display())]
    WrongKind {
        /// The path at fault.
        path: PathBuf,
        /// What it should be (`directory`, `regular file`).
        expected: &'static str,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + use<> {
    let path = path.to_owned();
    move |source| SnapshotError::Io {
        action,
        path,
        source,
    }
}

/// The default store directory: `$LABHIT_CACHE_DIR/snapshots`, else
/// `$XDG_CACHE_HOME/labhit/snapshots`, else `~/.cache/labhit/snapshots`; `None` when none of
/// these variables is set.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(crate::cache::CACHE_DIR_ENV) {
        return Some(PathBuf::from(dir).join("snapshots"));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("labhit").join("snapshots"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache/labhit/snapshots"))
}

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotInfo {
    /// Entries added or changed.
    pub changed: usize,
    /// Paths deleted.
    pub deleted: usize,
    /// Total size of the files it carries, in bytes.
    pub bytes: u64,
}

/// One stored change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    path: String,
    entry: Entry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    changed: Vec<Change>,
    deleted: Vec<String>,
}

impl Stored {
    fn info(&self) -> SnapshotInfo {
        SnapshotInfo {
            changed: self.changed.len(),
            deleted: self.deleted.len(),
            bytes: self
                .changed
                .iter()
                .map(|c| match &c.entry {
                    Entry::File { size, .. } => *size,
                    _ => 0,
                })
                .sum(),
        }
    }
}

/// A directory of snapshots (see the module docs). Cheap to clone; safe to share between
/// threads and processes (writes are atomic renames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// A store in `dir` (created on the first commit).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// A store in [`default_dir`], if one can be determined.
    pub fn open_default() -> Option<Self> {
        default_dir().map(Self::new)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tag_path(&self, tag: &SnapshotRef) -> PathBuf {
        let name = hex(&Sha256::digest(tag.as_ref().as_bytes()));
        self.dir.join("tags").join(format!("{name}.snapshot"))
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs").join(&sha256[..2]).join(sha256)
    }

    /// Whether a snapshot `tag` exists and passes verification (a corrupt one is discarded
    /// and reported as absent).
    pub fn exists(&self, tag: &SnapshotRef) -> bool {
        self.verify(tag).is_ok()
    }

    /// Verifies the snapshot `tag` in full (see the module docs); a corrupt one is discarded.
    pub fn verify(&self, tag: &SnapshotRef) -> Result<SnapshotInfo, SnapshotError> {
        self.load_verified(tag).map(|stored| stored.info())
    }

    /// Deletes the snapshot `tag` (its blobs stay; they may be shared). Absent is not an error.
    pub fn remove(&self, tag: &SnapshotRef) -> Result<(), SnapshotError> {
        let path = self.tag_path(tag);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Commits the effect on `workspace` since `before` as the snapshot `tag`, replacing any
    /// previous one.
    pub fn commit(
        &self,
        tag: &SnapshotRef,
        workspace: &Path,
        before: &WorkspaceManifest,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let after = WorkspaceManifest::scan(workspace)?;
        self.commit_scanned(tag, workspace, before, &after)
    }

    /// [`SnapshotStore::commit`] with the workspace already scanned: `after` must be its
    /// current manifest (taken after the step).
    pub fn commit_scanned(
        &self,
        tag: &SnapshotRef,
        workspace: &Path,
        before: &WorkspaceManifest,
        after: &WorkspaceManifest,
    ) -> Result<SnapshotInfo, SnapshotError> {
        crate::cachedir::tag(&self.dir, "labhit snapshot store")
            .map_err(io_err("create", &self.dir))?;
        let diff = before.diff(after);
        let mut changed = Vec::with_capacity(diff.changed.len());
        for (path, entry) in diff.changed {
            let entry = match entry {
                Entry::Dir { mode } => Entry::Dir {
                    mode: mode & MODE_MASK,
                },
                Entry::Symlink { target } => {
                    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                    if let Resolution::Outside(_) = boundary::resolve(workspace, dir, target) {
                        return Err(SnapshotError::Unsafe {
                            path: path.to_owned(),
                            reason: format!(
                                "it is a symbolic link to `{target}`, which leads outside the workspace"
                            ),
                        });
                    }
                    entry.clone()
                }
                Entry::File { mode, .. } => {
                    // Hash while copying: the blob and the manifest agree even if the file
                    // changed after the scan.
                    let (sha256, size) = self.store_blob(&workspace.join(path))?;
                    Entry::File {
                        mode: mode & MODE_MASK,
                        size,
                        sha256,
                    }
                }
            };
            changed.push(Change {
                path: path.to_owned(),
                entry,
            });
        }
        let stored = Stored {
            changed,
            deleted: diff.deleted,
        };
        let body = encode(tag, &stored);
        let text = format!("{FORMAT} {}\n{body}", hex(&Sha256::digest(body.as_bytes())));
        let path = self.tag_path(tag);
        write_atomic(&path, |file| file.write_all(text.as_bytes()))?;
        Ok(stored.info())
    }

    /// Restores the snapshot `tag` into `workspace`: verifies it in full first, then deletes
    /// the paths it deleted and writes what it added or changed.
    pub fn restore(
        &self,
        tag: &SnapshotRef,
        workspace: &Path,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let stored = self.load_verified(tag)?;
        self.record_use(tag);
        for path in stored.deleted.iter().rev() {
            if !parents_are_dirs(workspace, path)? {
                continue;
            }
            let full = workspace.join(path);
            let result = match fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => fs::remove_dir_all(&full),
                Ok(_) => fs::remove_file(&full),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("remove", &full)(e));
                }
                _ => {}
            }
        }
        for change in &stored.changed {
            if !parents_are_dirs(workspace, &change.path)? {
                return Err(SnapshotError::Unsafe {
                    path: change.path.clone(),
                    reason: "its parent directory is missing from the workspace".to_owned(),
                });
            }
            let full = workspace.join(&change.path);
            let existing = fs::symlink_metadata(&full).ok();
            match &change.entry {
                Entry::Dir { .. } => {
                    if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                        fs::remove_file(&full).map_err(io_err("remove", &full))?;
                    }
                    if !existing.as_ref().is_some_and(fs::Metadata::is_dir) {
                        fs::create_dir(&full).map_err(io_err("create", &full))?;
                    }
                    // Modes of directories are set last, so a read-only one can be filled.
                }
                Entry::File { mode, sha256, .. } => {
                    if existing.as_ref().is_some_and(fs::Metadata::is_dir) {
                        fs::remove_dir_all(&full).map_err(io_err("remove", &full))?;
                    }
                    let blob = self.blob_path(sha256);
                    write_atomic(&full, |file| {
                        io::copy(&mut fs::File::open(&blob)?, file)?;
                        file.set_permissions(fs::Permissions::from_mode(mode & MODE_MASK))
                    })?;
                }
                Entry::Symlink { target } => {
                    match existing {
                        Some(meta) if meta.is_dir() => fs::remove_dir_all(&full),
                        Some(_) => fs::remove_file(&full),
                        None => Ok(()),
                    }
                    .map_err(io_err("remove", &full))?;
                    std::os::unix::fs::symlink(target, &full).map_err(io_err("create", &full))?;
                }
            }
        }
        for change in stored.changed.iter().rev() {
            if let Entry::Dir { mode } = change.entry {
                let full = workspace.join(&change.path);
                fs::set_permissions(&full, fs::Permissions::from_mode(mode & MODE_MASK))
                    .map_err(io_err("set permissions of", &full))?;
            }
        }
        Ok(stored.info())
    }

    /// Checks, without changing anything, whether `tag` can be looked up and committed: its
    /// manifest path is a regular file or absent. A stage asks before its command runs, so a
    /// store entry of the wrong kind fails the stage up front instead of after the command.
    pub fn check_tag(&self, tag: &SnapshotRef) -> Result<(), SnapshotError> {
        let path = self.tag_path(tag);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => Ok(()),
            Ok(_) => Err(SnapshotError::WrongKind {
                path,
                expected: "regular file",
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Records a use of `tag` (its manifest's modification time, which least-recently-used
    /// eviction orders by). Best effort: a store that cannot be written still restores.
    fn record_use(&self, tag: &SnapshotRef) {
        let path = self.tag_path(tag);
        if let Ok(file) = fs::OpenOptions::new().write(true).open(&path) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
    }

    /// Copies `path` into the blob store, returning its sha256 and size.
    fn store_blob(&self, path: &Path) -> Result<(String, u64), SnapshotError> {
        let blobs = self.dir.join("blobs");
        fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
        let temp = temp_name(&blobs);
        let result = (|| {
            let mut source = fs::File::open(path).map_err(io_err("read", path))?;
            let mut out = fs::File::create(&temp).map_err(io_err("write", &temp))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = source.read(&mut buf).map_err(io_err("read", path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io_err("write", &temp))?;
                size += n as u64;
            }
            let sha256 = hex(&hasher.finalize());
            let dest = self.blob_path(&sha256);
            let parent = dest.parent().unwrap_or(&blobs);
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
            fs::rename(&temp, &dest).map_err(io_err("write", &dest))?;
            Ok((sha256, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Reads and fully verifies the manifest of `tag`; discards a corrupt entry.
    fn load_verified(&self, tag: &SnapshotRef) -> Result<Stored, SnapshotError> {
        let path = self.tag_path(tag);
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SnapshotError::NotFound),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let corrupt = |reason: String| {
            let _ = fs::remove_file(&path);
            SnapshotError::Corrupt { reason }
        };
        let stored = match decode(tag, &text) {
            Ok(stored) => stored,
            Err(reason) => return Err(corrupt(reason)),
        };
        for change in &stored.changed {
            if let Entry::File { size, sha256, .. } = &change.entry {
                let blob = self.blob_path(sha256);
                match crate::workspace::hash_file(&blob) {
                    Ok((actual, actual_size)) if actual == *sha256 && actual_size == *size => {}
                    Ok(_) => {
                        let _ = fs::remove_file(&blob);
                        return Err(corrupt(format!(
                            "the content of `{}` does not match its sha256 {sha256}",
                            change.path
                        )));
                    }
                    Err(e) => {
                        return Err(corrupt(format!(
                            "the content of `{}` (blob {sha256}) cannot be read: {e}",
                            change.path
                        )));
                    }
                }
            }
        }
        Ok(stored)
    }
}

/// Whether every parent of `rel` inside `root` is a real directory. `Ok(false)` when one is
/// missing; an error when one is a symbolic link or another non-directory.
fn parents_are_dirs(root: &Path, rel: &str) -> Result<bool, SnapshotError> {
    let mut dir = root.to_path_buf();
    let components: Vec<&str> = rel.split('/').collect();
    for component in &components[..components.len().saturating_sub(1)] {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(SnapshotError::Unsafe {
                    path: rel.to_owned(),
                    reason: format!(
                        "`{}` in the workspace is not a directory (a symbolic link is never followed)",
                        dir.strip_prefix(root).unwrap_or(&dir).display()
                    ),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("read", &dir)(e)),
        }
    }
    Ok(true)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name(dir: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".labhit-tmp-{}-{n}", std::process::id()))
}

/// Writes `path` through a temporary file in the same directory and renames it into place.
fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> Result<(), SnapshotError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    let temp = temp_name(parent);
    // No fsync: a file torn by a crash fails verification and is treated as a miss.
    let result = fs::File::create(&temp)
        .and_then(|mut file| write(&mut file))
        .and_then(|()| fs::rename(&temp, path));
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        io_err("write", path)(e)
    })
}

fn encode(tag: &SnapshotRef, stored: &Stored) -> String {
    let changed: Vec<Value> = stored
        .changed
        .iter()
        .map(|c| match &c.entry {
            Entry::Dir { mode } => json!({"path": c.path, "kind": "dir", "mode": mode}),
            Entry::File { mode, size, sha256 } => json!({
                "path": c.path, "kind": "file", "mode": mode, "size": size, "sha256": sha256,
            }),
            Entry::Symlink { target } => {
                json!({"path": c.path, "kind": "symlink", "target": target})
            }
        })
        .collect();
    json!({"tag": tag.as_ref(), "changed": changed, "deleted": stored.deleted}).to_string()
}

fn decode(tag: &SnapshotRef, bytes: &[u8]) -> Result<Stored, String> {
    let (found, stored) = decode_any(bytes)?;
    if found != tag.as_ref() {
        return Err("the manifest belongs to another tag".to_owned());
    }
    Ok(stored)
}

/// Decodes and checks a manifest of any tag, returning the tag it names.
fn decode_any(bytes: &[u8]) -> Result<(String, Stored), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the manifest is not UTF-8".to_owned())?;
    let (header, body) = text
        .split_once('\n')
        .ok_or_else(|| "the manifest has no header line".to_owned())?;
    let checksum = header
        .strip_prefix(FORMAT)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| format!("the manifest header is not `{FORMAT} <sha256>`"))?;
    if hex(&Sha256::digest(body.as_bytes())) != checksum {
        return Err("the manifest does not match its checksum".to_owned());
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    let tag = value["tag"]
        .as_str()
        .ok_or("the manifest names no tag")?
        .to_owned();
    let path_of = |v: &Value| -> Result<String, String> {
        let path = v.as_str().ok_or("a path is not a string")?;
        if path.split('/').any(|c| c == ".") {
            return Err(format!("path {path:?} has a `.` component"));
        }
        ArtifactPath::new(path)
            .map(|p| p.as_str().to_owned())
            .map_err(|e| e.to_string())
    };
    let mode_of = |v: &Value| -> Result<u32, String> {
        v.as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| "a mode is not a permission mask".to_owned())
    };
    let mut changed = Vec::new();
    for item in value["changed"]
        .as_array()
        .ok_or("`changed` is not a list")?
    {
        let path = path_of(&item["path"])?;
        let entry = match item["kind"].as_str() {
            Some("dir") => Entry::Dir {
                mode: mode_of(&item["mode"])?,
            },
            Some("file") => {
                let sha256 = item["sha256"]
                    .as_str()
                    .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or("a sha256 is not 64 hex digits")?
                    .to_ascii_lowercase();
                Entry::File {
                    mode: mode_of(&item["mode"])?,
                    size: item["size"].as_u64().ok_or("a size is not a number")?,
                    sha256,
                }
            }
            Some("symlink") => {
                let target = item["target"]
                    .as_str()
                    .ok_or("a link target is not a string")?;
                if boundary::escapes_lexically(&path, target) {
                    return Err(format!(
                        "entry `{path}` is a symbolic link to `{target}`, which leads outside the workspace"
                    ));
                }
                Entry::Symlink {
                    target: target.to_owned(),
                }
            }
            _ => return Err(format!("entry `{path}` has an unknown kind")),
        };
        changed.push(Change { path, entry });
    }
    let mut deleted = Vec::new();
    for item in value["deleted"]
        .as_array()
        .ok_or("`deleted` is not a list")?
    {
        deleted.push(path_of(item)?);
    }
    changed.sort_by(|a, b| a.path.cmp(&b.path));
    deleted.sort();
    Ok((tag, Stored { changed, deleted }))
}
