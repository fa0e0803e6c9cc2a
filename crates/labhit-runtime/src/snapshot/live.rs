//! Live runs of a snapshot store: what garbage collection must not pull from under them.
//!
//! A run that uses a store holds a [`StoreLease`] for its whole life: an exclusive lock on
//! `<dir>/live/<pid>-<n>.lease`, whose modification time is when the run started. The lease
//! is created and locked under a temporary name and renamed into place, so a collector never
//! sees it unlocked while the run lives; the kernel drops the lock when the process ends
//! (however it ends), which makes a lease left by a kill *stale*. A collector
//! ([`SnapshotStore::gc`]) takes the oldest live lease as the start of the oldest live run:
//! temporary files and unreferenced blobs newer than it may belong to a commit in flight, and
//! entries used since then may be being restored, so they stay.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::{SnapshotError, SnapshotStore, io_err};

/// The directory of leases inside a store.
pub(super) const LIVE_DIR: &str = "live";

/// The suffix of a lease file.
const LEASE_SUFFIX: &str = ".lease";

static LEASE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A run's registration with a [`SnapshotStore`] (see the module docs). Released when
/// dropped.
#[derive(Debug)]
pub struct StoreLease {
    path: PathBuf,
    _file: fs::File,
}

impl StoreLease {
    /// The lease file (its modification time is the run's start as collectors see it).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl SnapshotStore {
    /// Checks the store's layout ([`SnapshotStore::check_layout`]), creating its directories,
    /// and registers a live run until the returned lease is dropped. Call it before any stage
    /// runs: a store of the wrong kind is then an error before anything ran.
    pub fn lease(&self) -> Result<StoreLease, SnapshotError> {
        self.check_layout()?;
        for sub in ["tags", "blobs", LIVE_DIR] {
            let dir = self.dir.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        // Tagged from the start: a store inside the project is never copied into a run's
        // workspace, not even by the first run (whose workspace is copied before anything
        // is committed).
        crate::cachedir::tag(&self.dir, "labhit snapshot store")
            .map_err(io_err("create", &self.dir))?;
        let live = self.dir.join(LIVE_DIR);
        let name = format!(
            "{}-{}",
            std::process::id(),
            LEASE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let temp = live.join(format!(".{name}.tmp"));
        let path = live.join(format!("{name}{LEASE_SUFFIX}"));
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(io_err("create", &temp))?;
        let locked = file
            .try_lock()
            .map_err(io::Error::from)
            .and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = locked {
            let _ = fs::remove_file(&temp);
            return Err(io_err("lock", &path)(e));
        }
        Ok(StoreLease { path, _file: file })
    }

    /// The start times of the live runs (held leases), and how many stale leases (and
    /// lease temporaries older than `temp_cutoff`) there were, removed unless `dry_run`.
    pub(super) fn live_runs(
        &self,
        temp_cutoff: SystemTime,
        dry_run: bool,
    ) -> Result<(Vec<SystemTime>, usize), SnapshotError> {
        let live = self.dir.join(LIVE_DIR);
        let items = match fs::read_dir(&live) {
            Ok(items) => items,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(io_err("read", &live)(e)),
        };
        let mut starts = Vec::new();
        let mut stale = 0;
        for item in items {
            let item = item.map_err(io_err("read", &live))?;
            let path = item.path();
            let name = item.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.file_type().is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.ends_with(LEASE_SUFFIX) && !name.starts_with('.') {
                let Ok(file) = fs::File::open(&path) else {
                    continue;
                };
                match file.try_lock_shared() {
                    Err(fs::TryLockError::WouldBlock) => starts.push(modified),
                    Ok(()) => {
                        stale += 1;
                        if !dry_run {
                            let _ = fs::remove_file(&path);
                        }
                    }
                    Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
                }
            } else if name.starts_with('.') && name.ends_with(".tmp") && modified < temp_cutoff {
                stale += 1;
                if !dry_run {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok((starts, stale))
    }
}
