//! A snapshot as one byte string, to carry it between stores (a fleet's object store and a
//! worker's local store): [`SnapshotStore::export`] and [`SnapshotStore::import`].
//!
//! The bytes are a header line `labhit-snapshot-export/1 <manifest length>`, the manifest
//! exactly as stored (it carries its own checksum and tag), then each file content the
//! manifest names, once per distinct sha256, in manifest order, as a line `<sha256> <size>`
//! followed by the bytes. Nothing imported is trusted: the manifest is decoded and checked as
//! a stored one is (checksum, tag, clean paths), every content is checked against its sha256
//! and size before it is written, and the imported snapshot is verified in full.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;

use labhit_protocol::ids::SnapshotRef;
use sha2::{Digest, Sha256};

use super::{SnapshotError, SnapshotInfo, SnapshotStore, decode, io_err, write_atomic};
use crate::workspace::{Entry, hex};

/// The first word of an export.
const EXPORT_FORMAT: &str = "labhit-snapshot-export/1";

impl SnapshotStore {
    /// The snapshot `tag`, verified, as one byte string another store can
    /// [`import`](SnapshotStore::import).
    pub fn export(&self, tag: &SnapshotRef) -> Result<Vec<u8>, SnapshotError> {
        let stored = self.load_verified(tag)?;
        let path = self.tag_path(tag);
        let manifest = fs::read(&path).map_err(io_err("read", &path))?;
        let mut out = format!("{EXPORT_FORMAT} {}\n", manifest.len()).into_bytes();
        out.extend_from_slice(&manifest);
        let mut seen = BTreeSet::new();
        for change in &stored.changed {
            if let Entry::File { size, sha256, .. } = &change.entry
                && seen.insert(sha256.clone())
            {
                let blob = self.blob_path(sha256);
                let bytes = fs::read(&blob).map_err(io_err("read", &blob))?;
                out.extend_from_slice(format!("{sha256} {size}\n").as_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        Ok(out)
    }

    /// Stores `bytes`, an [`export`](SnapshotStore::export) of the snapshot `tag`, in this
    /// store and verifies it. Bytes that are not an export of `tag` (truncated, altered,
    /// another tag's) are [`SnapshotError::Corrupt`] saying what is wrong.
    pub fn import(&self, tag: &SnapshotRef, bytes: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
        let corrupt = |reason: String| SnapshotError::Corrupt { reason };
        let (header, rest) = split_line(bytes).ok_or_else(|| corrupt("no header line".into()))?;
        let length: usize = header
            .strip_prefix(EXPORT_FORMAT)
            .and_then(|r| r.strip_prefix(' '))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt(format!("the header is not `{EXPORT_FORMAT} <length>`")))?;
        if rest.len() < length {
            return Err(corrupt("the manifest is cut short".into()));
        }
        let (manifest, mut rest) = rest.split_at(length);
        let stored = decode(tag, manifest).map_err(corrupt)?;
        let mut wanted: Vec<(&str, u64)> = Vec::new();
        for change in &stored.changed {
            if let Entry::File { size, sha256, .. } = &change.entry
                && !wanted.iter().any(|(s, _)| *s == sha256.as_str())
            {
                wanted.push((sha256.as_str(), *size));
            }
        }
        crate::cachedir::tag(&self.dir, "labhit snapshot store")
            .map_err(io_err("create", &self.dir))?;
        for (sha256, size) in wanted {
            let (line, after) =
                split_line(rest).ok_or_else(|| corrupt(format!("content {sha256} is missing")))?;
            if line != format!("{sha256} {size}") {
                return Err(corrupt(format!(
                    "expected content `{sha256} {size}`, found `{line}`"
                )));
            }
            let size = usize::try_from(size).map_err(|_| corrupt("a size is too large".into()))?;
            if after.len() < size {
                return Err(corrupt(format!("content {sha256} is cut short")));
            }
            let (content, after) = after.split_at(size);
            if hex(&Sha256::digest(content)) != sha256 {
                return Err(corrupt(format!(
                    "content {sha256} does not match its sha256"
                )));
            }
            let blob = self.blob_path(sha256);
            if !blob.is_file() {
                write_atomic(&blob, |file| file.write_all(content))?;
            }
            rest = after;
        }
        if !rest.is_empty() {
            return Err(corrupt("bytes follow the last content".into()));
        }
        let path = self.tag_path(tag);
        write_atomic(&path, |file| file.write_all(manifest))?;
        self.verify(tag)
    }
}

/// The text of the first line of `bytes` and what follows it.
fn split_line(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    Some((line, &bytes[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::WorkspaceManifest;

    fn committed() -> (tempfile::TempDir, SnapshotStore, SnapshotRef) {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = dir.path().join("ws");
        std::fs::create_dir_all(workspace.join("out")).expect("mkdir");
        std::fs::write(workspace.join("old"), "old").expect("write");
        let before = WorkspaceManifest::scan(&workspace).expect("scan");
        std::fs::write(workspace.join("out/a"), "same").expect("write");
        std::fs::write(workspace.join("out/b"), "same").expect("write");
        std::fs::remove_file(workspace.join("old")).expect("rm");
        let store = SnapshotStore::new(dir.path().join("store"));
        let tag = SnapshotRef::new("labhit-cache:t");
        store.commit(&tag, &workspace, &before).expect("commit");
        (dir, store, tag)
    }

    #[test]
    fn an_export_imports_into_an_empty_store_and_restores_the_same_effect() {
        let (dir, store, tag) = committed();
        let bytes = store.export(&tag).expect("export");
        let other = SnapshotStore::new(dir.path().join("other"));
        let info = other.import(&tag, &bytes).expect("import");
        assert_eq!(info, store.verify(&tag).expect("verify"));
        let target = dir.path().join("target");
        std::fs::create_dir_all(target.join("out")).expect("mkdir");
        std::fs::write(target.join("old"), "old").expect("write");
        other.restore(&tag, &target).expect("restore");
        assert_eq!(
            WorkspaceManifest::scan(&target).expect("scan"),
            WorkspaceManifest::scan(&dir.path().join("ws")).expect("scan")
        );
    }

    #[test]
    fn damaged_or_foreign_bytes_are_corrupt_saying_why() {
        let (dir, store, tag) = committed();
        let bytes = store.export(&tag).expect("export");
        let other = SnapshotStore::new(dir.path().join("other"));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let cases: Vec<(&str, Vec<u8>, SnapshotRef)> = vec![
            ("cut", bytes[..bytes.len() - 2].to_vec(), tag.clone()),
            ("flipped", flipped, tag.clone()),
            ("foreign", bytes.clone(), SnapshotRef::new("labhit-cache:u")),
            ("empty", Vec::new(), tag.clone()),
        ];
        for (what, bytes, tag) in cases {
            match other.import(&tag, &bytes) {
                Err(SnapshotError::Corrupt { reason }) => assert!(!reason.is_empty(), "{what}"),
                other => panic!("{what}: {other:?}"),
            }
            assert!(!other.exists(&tag), "{what}: nothing usable is left");
        }
    }
}
