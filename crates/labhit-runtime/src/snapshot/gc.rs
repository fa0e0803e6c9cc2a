//! Bounded disk for the snapshot store: its layout check, statistics and garbage collection.
//!
//! # Size cap and least-recently-used eviction
//!
//! The store is capped at a size ([`DEFAULT_MAX_BYTES`] unless `$LABHIT_CACHE_MAX_SIZE` or an
//! option says otherwise): the bytes of every manifest, blob and temporary file in it. A
//! manifest's modification time is its entry's last use: a commit writes it and a restore
//! (a cache hit) touches it. [`SnapshotStore::gc`] over the cap removes entries, least
//! recently used first, until the store fits, then every blob no entry names any more. An
//! entry used since the oldest live run started (see [`super::StoreLease`]) is never evicted, so
//! the store may stay over the cap while long runs go on.
//!
//! # Leftovers
//!
//! A process killed while committing leaves temporary files (`.labhit-tmp-*`) and blobs no
//! manifest names. Both are removed once they are older than every live run and older than
//! [`TEMP_GRACE`] (which covers writers that hold no lease). A manifest that fails to decode
//! is removed and reported, as is one that names a blob the store no longer has.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{SnapshotError, SnapshotStore, decode_any, io_err};
use crate::workspace::hex;

/// The default size cap of a store: 10 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

/// The environment variable that sets the size cap (a size like `500Mi` or `20G`).
pub const MAX_SIZE_ENV: &str = "LABHIT_CACHE_MAX_SIZE";

/// How old a temporary file or an unreferenced blob must be, at least, before it is removed.
pub const TEMP_GRACE: Duration = Duration::from_secs(3600);

/// Prefix of the store's temporary files.
const TEMP_PREFIX: &str = ".labhit-tmp-";

/// The size cap from [`MAX_SIZE_ENV`], else [`DEFAULT_MAX_BYTES`]; an error that names the
/// variable when it is not a size.
pub fn max_bytes_from_env() -> Result<u64, String> {
    match std::env::var(MAX_SIZE_ENV) {
        Ok(text) if !text.is_empty() => text
            .parse::<labhit_protocol::forms::ByteSize>()
            .map(|size| size.bytes())
            .map_err(|e| format!("`{MAX_SIZE_ENV}={text}`: {e}")),
        _ => Ok(DEFAULT_MAX_BYTES),
    }
}

/// What [`SnapshotStore::gc`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// The size cap; `None`: no eviction.
    pub max_bytes: Option<u64>,
    /// Read every manifest even when the store is under the cap (finds corrupt entries and
    /// unreferenced blobs). Without it, a store under the cap only loses its old temporary
    /// files, which costs a directory listing.
    pub full: bool,
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
}

/// What [`SnapshotStore::gc`] removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Tags of the entries evicted, least recently used first.
    pub evicted: Vec<String>,
    /// Manifests removed as corrupt: the path and why.
    pub corrupt: Vec<(PathBuf, String)>,
    /// Blobs removed (no entry names them any more).
    pub blobs_removed: usize,
    /// Temporary files removed.
    pub temps_removed: usize,
    /// Stale leases of runs that ended without releasing them.
    pub stale_leases: usize,
    /// Bytes before.
    pub bytes_before: u64,
    /// Bytes after.
    pub bytes_after: u64,
    /// Entries left.
    pub entries_after: usize,
    /// Live runs seen.
    pub live_runs: usize,
}

/// What a store holds ([`SnapshotStore::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries (tags with a manifest).
    pub entries: usize,
    /// Blobs.
    pub blobs: usize,
    /// Temporary files.
    pub temps: usize,
    /// Bytes of manifests, blobs and temporary files.
    pub bytes: u64,
    /// The least recent use of an entry.
    pub oldest_use: Option<SystemTime>,
    /// The most recent use of an entry.
    pub newest_use: Option<SystemTime>,
    /// Runs holding a lease now.
    pub live_runs: usize,
}

/// A file of the store, as listed.
#[derive(Debug, Clone)]
struct Listed {
    path: PathBuf,
    size: u64,
    modified: SystemTime,
}

/// The store's files by kind.
#[derive(Debug, Default)]
struct Listing {
    /// Manifests by file stem (the sha256 of their tag).
    tags: BTreeMap<String, Listed>,
    /// Blobs by sha256.
    blobs: BTreeMap<String, Listed>,
    temps: Vec<Listed>,
}

impl Listing {
    fn bytes(&self) -> u64 {
        let sum = |files: &mut dyn Iterator<Item = &Listed>| files.map(|f| f.size).sum::<u64>();
        sum(&mut self.tags.values()) + sum(&mut self.blobs.values()) + sum(&mut self.temps.iter())
    }
}

impl SnapshotStore {
    /// Checks that the store's paths have the right kinds, changing nothing: the store
    /// directory, `tags/` and `blobs/` are directories (or absent) and every manifest path is
    /// a regular file. Otherwise [`SnapshotError::WrongKind`] names the path.
    pub fn check_layout(&self) -> Result<(), SnapshotError> {
        let subs = ["tags", "blobs", super::live::LIVE_DIR].map(|sub| self.dir.join(sub));
        for dir in std::iter::once(self.dir.clone()).chain(subs) {
            match fs::metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(SnapshotError::WrongKind {
                        path: dir,
                        expected: "directory",
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("read", &dir)(e)),
            }
        }
        self.list().map(drop)
    }

    /// Counts what the store holds. A missing store is empty.
    pub fn stats(&self) -> Result<StoreStats, SnapshotError> {
        self.check_layout()?;
        let listing = self.list()?;
        let (live, _) = self.live_runs(SystemTime::UNIX_EPOCH, true)?;
        let uses = || listing.tags.values().map(|t| t.modified);
        Ok(StoreStats {
            entries: listing.tags.len(),
            blobs: listing.blobs.len(),
            temps: listing.temps.len(),
            bytes: listing.bytes(),
            oldest_use: uses().min(),
            newest_use: uses().max(),
            live_runs: live.len(),
        })
    }

    /// Collects garbage (see the module docs): old temporary files and stale leases always;
    /// with [`GcOptions::full`] or over [`GcOptions::max_bytes`] also corrupt manifests and
    /// unreferenced blobs; over the cap, least recently used entries.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, SnapshotError> {
        self.check_layout()?;
        let now = SystemTime::now();
        let grace = now
            .checked_sub(TEMP_GRACE)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let (live, stale_leases) = self.live_runs(grace, options.dry_run)?;
        let oldest_live = live.iter().min().copied();
        // Older than every live run and older than the grace period.
        let leftover_cutoff = oldest_live.map_or(grace, |t| t.min(grace));
        let mut listing = self.list()?;
        let mut report = GcReport {
            bytes_before: listing.bytes(),
            stale_leases,
            live_runs: live.len(),
            ..GcReport::default()
        };
        let mut total = report.bytes_before;
        let remove = |path: &Path| -> Result<(), SnapshotError> {
            if options.dry_run {
                return Ok(());
            }
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
                _ => Ok(()),
            }
        };

        for temp in std::mem::take(&mut listing.temps) {
            if temp.modified < leftover_cutoff {
                remove(&temp.path)?;
                report.temps_removed += 1;
                total = total.saturating_sub(temp.size);
            } else {
                listing.temps.push(temp);
            }
        }

        let over = |total: u64| options.max_bytes.is_some_and(|max| total > max);
        if !options.full && !over(total) {
            report.bytes_after = total;
            report.entries_after = listing.tags.len();
            return Ok(report);
        }

        // Which blobs each entry names; corrupt manifests go.
        let mut names: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
        for (stem, manifest) in &listing.tags {
            match self.blobs_of(stem, manifest, &listing) {
                Ok(named) => {
                    names.insert(stem.clone(), named);
                }
                Err(reason) => {
                    remove(&manifest.path)?;
                    total = total.saturating_sub(manifest.size);
                    report.corrupt.push((manifest.path.clone(), reason));
                }
            }
        }
        listing.tags.retain(|stem, _| names.contains_key(stem));
        let mut refs: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, blobs) in names.values() {
            for blob in blobs {
                *refs.entry(blob.as_str()).or_default() += 1;
            }
        }
        // A blob is removed only if its file is still the one listed (not rewritten since by
        // a commit in flight) and older than `cutoff`.
        let remove_blob =
            |blob: &Listed, cutoff: Option<SystemTime>| -> Result<bool, SnapshotError> {
                let current = fs::symlink_metadata(&blob.path).and_then(|m| m.modified());
                match current {
                    Ok(modified)
                        if modified == blob.modified && cutoff.is_none_or(|c| modified < c) =>
                    {
                        remove(&blob.path)?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            };
        for (sha, blob) in &listing.blobs {
            if !refs.contains_key(sha.as_str()) && remove_blob(blob, Some(leftover_cutoff))? {
                report.blobs_removed += 1;
                total = total.saturating_sub(blob.size);
            }
        }

        if over(total) {
            let mut by_use: Vec<(&String, &Listed)> = listing.tags.iter().collect();
            by_use.sort_by_key(|(stem, manifest)| (manifest.modified, *stem));
            for (stem, manifest) in by_use {
                if !over(total) {
                    break;
                }
                if oldest_live.is_some_and(|start| manifest.modified >= start) {
                    continue;
                }
                remove(&manifest.path)?;
                total = total.saturating_sub(manifest.size);
                let Some((tag, blobs)) = names.get(stem) else {
                    continue;
                };
                report.evicted.push(tag.clone());
                for sha in blobs {
                    let Some(count) = refs.get_mut(sha.as_str()) else {
                        continue;
                    };
                    *count -= 1;
                    if *count == 0
                        && let Some(blob) = listing.blobs.get(sha)
                        && remove_blob(blob, oldest_live)?
                    {
                        report.blobs_removed += 1;
                        total = total.saturating_sub(blob.size);
                    }
                }
            }
        }
        report.bytes_after = total;
        report.entries_after = listing.tags.len() - report.evicted.len();
        Ok(report)
    }

    /// The tag of a manifest and the sha256s of the blobs it names, or why it is corrupt: it
    /// does not decode, lies in the file of another tag, or names a blob the store does not
    /// have.
    fn blobs_of(
        &self,
        stem: &str,
        manifest: &Listed,
        listing: &Listing,
    ) -> Result<(String, BTreeSet<String>), String> {
        let bytes = fs::read(&manifest.path).map_err(|e| format!("cannot be read: {e}"))?;
        let (tag, stored) = decode_any(&bytes)?;
        if hex(&Sha256::digest(tag.as_bytes())) != stem {
            return Err(format!(
                "the manifest of `{tag}` lies in the file of another tag"
            ));
        }
        let mut blobs = BTreeSet::new();
        for change in &stored.changed {
            if let crate::workspace::Entry::File { sha256, .. } = &change.entry {
                if !listing.blobs.contains_key(sha256) {
                    return Err(format!(
                        "the snapshot `{tag}` names blob {sha256} (for `{}`), which the store does not have",
                        change.path
                    ));
                }
                blobs.insert(sha256.clone());
            }
        }
        Ok((tag, blobs))
    }

    /// Lists the store's manifests, blobs and temporary files. A manifest path that is not a
    /// regular file is [`SnapshotError::WrongKind`]; unknown names are left out (and alone).
    fn list(&self) -> Result<Listing, SnapshotError> {
        let mut listing = Listing::default();
        let tags = self.dir.join("tags");
        for (name, listed, is_file) in read_dir(&tags)? {
            if name.starts_with(TEMP_PREFIX) && is_file {
                listing.temps.push(listed);
            } else if let Some(stem) = name.strip_suffix(".snapshot") {
                if !is_file {
                    return Err(SnapshotError::WrongKind {
                        path: listed.path,
                        expected: "regular file",
                    });
                }
                listing.tags.insert(stem.to_owned(), listed);
            }
        }
        let blobs = self.dir.join("blobs");
        for (name, listed, is_file) in read_dir(&blobs)? {
            if name.starts_with(TEMP_PREFIX) && is_file {
                listing.temps.push(listed);
            } else if !is_file && name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                for (blob, listed, is_file) in read_dir(&listed.path)? {
                    if is_file && blob.len() == 64 && blob.starts_with(&name) {
                        listing.blobs.insert(blob, listed);
                    } else if is_file && blob.starts_with(TEMP_PREFIX) {
                        listing.temps.push(listed);
                    }
                }
            }
        }
        Ok(listing)
    }
}

/// The entries of `dir` (none when it is missing): name, size and time, whether a regular
/// file. Entries that vanish while listed are left out.
fn read_dir(dir: &Path) -> Result<Vec<(String, Listed, bool)>, SnapshotError> {
    let items = match fs::read_dir(dir) {
        Ok(items) => items,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", dir)(e)),
    };
    let mut out = Vec::new();
    for item in items {
        let item = item.map_err(io_err("read", dir))?;
        let Ok(name) = item.file_name().into_string() else {
            continue;
        };
        let path = item.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let listed = Listed {
            path,
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        };
        out.push((name, listed, meta.file_type().is_file()));
    }
    Ok(out)
}
