//! The digest index: what a file's content hash was the last time it was read, keyed by what
//! `stat` says about it, so that scanning an unchanged tree costs a `stat` per file instead of
//! reading every byte ("hash once").
//!
//! An entry maps a relative path to the file's [`Stamp`] (size, modification and change time
//! in nanoseconds, inode, device) and the sha256 of its content, plus the moment hashing
//! started (`hashed_at`). [`DigestIndex::lookup`] trusts an entry only when the file's stamp is
//! identical **and** its modification time is older than `hashed_at` by at least
//! [`RACY_MARGIN`]. That second rule is git's "racy clean" rule: a file written in the same
//! clock tick as (or after) it was hashed may have changed again without its stamp changing,
//! so it is re-hashed. The margin covers the kernel's coarse file-time clock and file systems
//! that store times in whole (or even two) seconds.
//!
//! The change time and inode make a rewrite that restores size and modification time (`touch
//! -d`, `cp -p`, a rename over the file) visible as well.
//!
//! # On disk
//!
//! [`DigestIndex::save`] writes a header line `labhit-digests/1 <sha256 of the rest>` and one
//! JSON array per entry, under a temporary name renamed into place. [`DigestIndex::load`]
//! never trusts it: an index that is missing is empty; one that fails its checksum, its
//! header or its syntax is discarded and the reason returned as a warning for the caller to
//! show. A stale index is harmless: every entry is re-checked against `stat` before use.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::workspace::hex;

/// How much older than the moment it was hashed a file's modification time must be for its
/// entry to be trusted (see the module docs).
pub const RACY_MARGIN: Duration = Duration::from_secs(2);

/// First word of an index file.
const FORMAT: &str = "labhit-digests/1";

/// What `stat` says about a file: equal stamps mean "not touched" (subject to the racy rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device number.
    pub dev: u64,
}

impl Stamp {
    /// The stamp of `meta`.
    pub fn of(meta: &fs::Metadata) -> Self {
        Self {
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// One known digest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    stamp: Stamp,
    sha256: String,
    hashed_at_ns: i64,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Relative path → (stamp, sha256, when it was hashed). See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestIndex {
    entries: HashMap<String, Known>,
}

impl DigestIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The digest recorded for `path` and when it was hashed, if the entry can be trusted for
    /// a file with `stamp`: same stamp, and modified at least [`RACY_MARGIN`] before it was
    /// hashed.
    pub fn lookup(&self, path: &str, stamp: &Stamp) -> Option<(&str, i64)> {
        let known = self.entries.get(path)?;
        let margin = i64::try_from(RACY_MARGIN.as_nanos()).unwrap_or(i64::MAX);
        (known.stamp == *stamp && stamp.mtime_ns < known.hashed_at_ns.saturating_sub(margin))
            .then_some((known.sha256.as_str(), known.hashed_at_ns))
    }

    /// Records that the file at `path` with `stamp` had the content `sha256` when hashing
    /// started at `hashed_at_ns` (see [`now_ns`]).
    pub fn record(&mut self, path: &str, stamp: Stamp, sha256: &str, hashed_at_ns: i64) {
        self.entries.insert(
            path.to_owned(),
            Known {
                stamp,
                sha256: sha256.to_owned(),
                hashed_at_ns,
            },
        );
    }

    /// Forgets `path`.
    pub fn forget(&mut self, path: &str) {
        self.entries.remove(path);
    }

    /// Adds every entry of `other`, replacing entries of the same path.
    pub fn extend(&mut self, other: DigestIndex) {
        self.entries.extend(other.entries);
    }

    /// Reads the index at `path`. Missing: empty, no warning. Unreadable or corrupt: empty,
    /// and the reason as a warning (the file is never trusted in part).
    pub fn load(path: &Path) -> (Self, Option<String>) {
        let text = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (Self::new(), None),
            Err(e) => {
                return (
                    Self::new(),
                    Some(format!(
                        "the digest index `{}` cannot be read ({e}); every file is hashed again",
                        path.display()
                    )),
                );
            }
        };
        match parse(&text) {
            Ok(index) => (index, None),
            Err(why) => (
                Self::new(),
                Some(format!(
                    "the digest index `{}` is corrupt ({why}) and was discarded; every file is \
                     hashed again",
                    path.display()
                )),
            ),
        }
    }

    /// Writes the index to `path` atomically (a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut body = Vec::with_capacity(self.entries.len() * 160);
        let mut paths: Vec<&String> = self.entries.keys().collect();
        paths.sort();
        for p in paths {
            let k = &self.entries[p];
            let line = serde_json::json!([
                p,
                k.stamp.size,
                k.stamp.mtime_ns,
                k.stamp.ctime_ns,
                k.stamp.ino,
                k.stamp.dev,
                k.hashed_at_ns,
                k.sha256
            ]);
            serde_json::to_writer(&mut body, &line)?;
            body.push(b'\n');
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut file = fs::File::create(&tmp)?;
        writeln!(file, "{FORMAT} {}", hex(&Sha256::digest(&body)))?;
        file.write_all(&body)?;
        drop(file);
        fs::rename(&tmp, path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }
}

fn parse(text: &[u8]) -> Result<DigestIndex, String> {
    let newline = text
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("it has no header line")?;
    let header = std::str::from_utf8(&text[..newline]).map_err(|_| "the header is not UTF-8")?;
    let body = &text[newline + 1..];
    let sum = header
        .strip_prefix(FORMAT)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| format!("the header is not `{FORMAT} <sha256>`"))?;
    if hex(&Sha256::digest(body)) != sum {
        return Err("its checksum does not match".to_owned());
    }
    let mut index = DigestIndex::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = || format!("entry {} is malformed", n + 1);
        let value: serde_json::Value = serde_json::from_slice(line).map_err(|_| bad())?;
        let item = value.as_array().filter(|a| a.len() == 8).ok_or_else(bad)?;
        let int = |i: usize| item[i].as_i64().ok_or_else(bad);
        let uint = |i: usize| item[i].as_u64().ok_or_else(bad);
        let path = item[0].as_str().ok_or_else(bad)?;
        let sha256 = item[7]
            .as_str()
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(bad)?;
        let stamp = Stamp {
            size: uint(1)?,
            mtime_ns: int(2)?,
            ctime_ns: int(3)?,
            ino: uint(4)?,
            dev: uint(5)?,
        };
        index.record(path, stamp, sha256, int(6)?);
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn stamp(mtime_ns: i64) -> Stamp {
        Stamp {
            size: 3,
            mtime_ns,
            ctime_ns: mtime_ns,
            ino: 7,
            dev: 1,
        }
    }

    #[test]
    fn racy_entries_are_not_trusted() {
        let mut index = DigestIndex::new();
        let hashed_at = 100_000_000_000;
        index.record("old", stamp(1), SHA, hashed_at);
        index.record("racy", stamp(hashed_at - 1), SHA, hashed_at);
        index.record("future", stamp(hashed_at + 5), SHA, hashed_at);
        assert!(index.lookup("old", &stamp(1)).is_some());
        assert!(index.lookup("racy", &stamp(hashed_at - 1)).is_none());
        assert!(index.lookup("future", &stamp(hashed_at + 5)).is_none());
        // Any difference in the stamp: not trusted.
        let mut moved = stamp(1);
        moved.ino = 8;
        assert!(index.lookup("old", &moved).is_none());
        let mut changed = stamp(1);
        changed.ctime_ns = 2;
        assert!(index.lookup("old", &changed).is_none());
    }

    #[test]
    fn save_and_load_round_trip_and_corruption_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        let mut index = DigestIndex::new();
        index.record("a/b c\n\"d\"", stamp(1), SHA, 99);
        index.record("é", stamp(2), SHA, 98);
        index.save(&path).expect("save");
        let (loaded, warning) = DigestIndex::load(&path);
        assert_eq!(warning, None);
        assert_eq!(loaded, index);

        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).expect("write");
        let (loaded, warning) = DigestIndex::load(&path);
        assert!(loaded.is_empty());
        let warning = warning.expect("a warning");
        assert!(
            warning.contains("corrupt") && warning.contains("checksum"),
            "{warning}"
        );

        fs::write(&path, b"garbage").expect("write");
        let (loaded, warning) = DigestIndex::load(&path);
        assert!(loaded.is_empty() && warning.is_some());

        let (loaded, warning) = DigestIndex::load(&dir.path().join("missing"));
        assert!(loaded.is_empty() && warning.is_none());
    }
}
