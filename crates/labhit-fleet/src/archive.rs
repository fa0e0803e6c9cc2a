//! Workspace archives: a directory as one deterministic `tar` and its content-addressed
//! [`ArchiveId`].
//!
//! [`pack`] writes entries sorted by path with zero times and owners and only the executable
//! bit of the mode, so the same tree always gives the same bytes and therefore the same id
//! ([`archive_id`]: the first 16 bytes of the sha256, as a UUID of version 8). Directories,
//! regular files and symbolic links are kept; anything else (a FIFO, a socket, a device) is
//! refused, as the workspace boundary refuses it.
//!
//! [`unpack`] refuses an entry whose path is absolute or climbs out with `..`, and entries of
//! any other kind; links are recreated as they were (the caller's boundary check judges
//! them).

use std::path::{Component, Path, PathBuf};

use labhit_protocol::ids::ArchiveId;
use sha2::{Digest as _, Sha256};

/// Why a workspace could not be packed or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing a file.
    #[error("workspace archive: `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An entry that cannot be archived or must not be unpacked.
    #[error("workspace archive: entry `{path}`: {why}")]
    Entry {
        /// The entry's path inside the archive.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The content-addressed id of an archive's bytes.
pub fn archive_id(bytes: &[u8]) -> ArchiveId {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    ArchiveId::from_uuid(uuid::Builder::from_custom_bytes(first).into_uuid())
}

/// Packs the tree under `root` (see the module documentation).
pub fn pack(root: &Path) -> Result<Vec<u8>, ArchiveError> {
    let mut entries = Vec::new();
    walk(root, Path::new(""), &mut entries)?;
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for relative in entries {
        let path = root.join(&relative);
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let name = relative.to_string_lossy().into_owned();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let kind = meta.file_type();
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, &name, std::io::empty())
                .map_err(io(&path))?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io(&path))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder
                .append_link(&mut header, &name, &target)
                .map_err(io(&path))?;
        } else if kind.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if executable(&meta) { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            let file = std::fs::File::open(&path).map_err(io(&path))?;
            builder
                .append_data(&mut header, &name, file)
                .map_err(io(&path))?;
        } else {
            return Err(ArchiveError::Entry {
                path: name,
                why: "is neither a file, a directory nor a link (special files are not \
                      carried between hosts)"
                    .to_owned(),
            });
        }
    }
    builder.into_inner().map_err(io(root))
}

#[cfg(unix)]
fn executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Every path below `dir` (relative to the walk's root), sorted, directories before what
/// they hold.
fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ArchiveError> {
    let here = root.join(dir);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&here).map_err(io(&here))? {
        names.push(entry.map_err(io(&here))?.file_name());
    }
    names.sort();
    for name in names {
        let relative = dir.join(&name);
        let path = root.join(&relative);
        let is_dir = std::fs::symlink_metadata(&path)
            .map_err(io(&path))?
            .file_type()
            .is_dir();
        out.push(relative.clone());
        if is_dir {
            walk(root, &relative, out)?;
        }
    }
    Ok(())
}

/// Checks every entry of `bytes` (see [`unpack`]) without writing anything.
pub fn check(bytes: &[u8]) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(bytes);
    let here = Path::new("<archive>");
    for entry in archive.entries().map_err(io(here))? {
        let entry = entry.map_err(io(here))?;
        let path = entry.path().map_err(io(here))?.into_owned();
        check_entry(&path, entry.header().entry_type())?;
    }
    Ok(())
}

fn check_entry(path: &Path, kind: tar::EntryType) -> Result<(), ArchiveError> {
    let name = path.to_string_lossy().into_owned();
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ArchiveError::Entry {
            path: name,
            why: "leaves the workspace (absolute, or climbs out with `..`)".to_owned(),
        });
    }
    if !matches!(
        kind,
        tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::Symlink
    ) {
        return Err(ArchiveError::Entry {
            path: name,
            why: format!("has the entry type {kind:?}, which a workspace never holds"),
        });
    }
    Ok(())
}

/// Unpacks `bytes` into the directory `into` (made when missing), refusing entries that
/// would land outside it.
pub fn unpack(bytes: &[u8], into: &Path) -> Result<(), ArchiveError> {
    check(bytes)?;
    std::fs::create_dir_all(into).map_err(io(into))?;
    let mut archive = tar::Archive::new(bytes);
    archive.set_preserve_mtime(false);
    archive.set_preserve_permissions(true);
    for entry in archive.entries().map_err(io(into))? {
        let mut entry = entry.map_err(io(into))?;
        let path = entry.path().map_err(io(into))?.into_owned();
        check_entry(&path, entry.header().entry_type())?;
        let target = into.join(&path);
        entry.unpack(&target).map_err(io(&target))?;
    }
    Ok(())
}

/// Makes `root`'s content exactly what `bytes` holds: checks the archive, removes everything
/// in `root`, then unpacks.
pub fn replace(bytes: &[u8], root: &Path) -> Result<(), ArchiveError> {
    check(bytes)?;
    for entry in std::fs::read_dir(root).map_err(io(root))? {
        let path = entry.map_err(io(root))?.path();
        let is_dir = std::fs::symlink_metadata(&path)
            .map_err(io(&path))?
            .file_type()
            .is_dir();
        let removed = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(&path))?;
    }
    unpack(bytes, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tree_packs_to_the_same_id_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        std::fs::create_dir_all(a.join("src/deep")).expect("mkdir");
        std::fs::write(a.join("src/deep/x.txt"), "x").expect("write");
        std::fs::write(a.join("top"), "top").expect("write");
        let first = pack(&a).expect("pack");
        let b = dir.path().join("b");
        unpack(&first, &b).expect("unpack");
        let second = pack(&b).expect("pack again");
        assert_eq!(archive_id(&first), archive_id(&second));
        assert_eq!(
            std::fs::read_to_string(b.join("src/deep/x.txt")).expect("read"),
            "x"
        );
        std::fs::write(b.join("top"), "changed").expect("write");
        assert_ne!(archive_id(&first), archive_id(&pack(&b).expect("pack")));
    }

    #[test]
    fn an_entry_climbing_out_is_refused_and_nothing_is_written_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`; write the name into the header directly.
        let name = b"../escaped";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        builder.append(&header, &b"bad"[..]).expect("append");
        let bytes = builder.into_inner().expect("tar");
        let into = dir.path().join("ws");
        let err = unpack(&bytes, &into).expect_err("must refuse");
        assert!(err.to_string().contains("`../escaped`"), "{err}");
        assert!(!dir.path().join("escaped").exists());
    }

    #[test]
    fn replace_leaves_exactly_the_archives_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("kept"), "1").expect("write");
        let bytes = pack(&src).expect("pack");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("old/dir")).expect("mkdir");
        std::fs::write(ws.join("stale"), "s").expect("write");
        replace(&bytes, &ws).expect("replace");
        assert!(ws.join("kept").is_file());
        assert!(!ws.join("stale").exists());
        assert!(!ws.join("old").exists());
    }
}
