//! What `labhit run` does after the summary is written: bounds the disk it uses.
//!
//! The run releases its lease on the snapshot cache, prunes the cache to its size cap
//! (least recently used entries first, see `labhit_runtime::snapshot`) and removes the run
//! directories the retention does not keep (see `labhit_runtime::retention`), while still
//! holding its own run lock (its [`RunGuard`]) so that its own directory is never removed. Problems are
//! warnings: the run's outcome is already decided.

use std::path::Path;

use labhit_runtime::retention::{self, Retention, RunGuard};
use labhit_runtime::snapshot::{GcOptions, SnapshotStore};

use super::console::Console;

/// Prunes the cache the run used (after releasing its lease) and the run directories under
/// `base`, then releases the run's lock.
pub(super) fn after_run(
    console: &Console,
    mut guard: RunGuard,
    cache: Option<&SnapshotStore>,
    max_bytes: u64,
    base: &Path,
    retention: &Retention,
) {
    guard.release_cache();
    if let Some(store) = cache {
        let options = GcOptions {
            max_bytes: Some(max_bytes),
            full: false,
            dry_run: false,
        };
        match store.gc(&options) {
            Ok(report) => {
                for (path, reason) in &report.corrupt {
                    console.warn(&format!(
                        "cache: removed the corrupt entry `{}`: {reason}",
                        path.display()
                    ));
                }
                if !report.evicted.is_empty() || report.temps_removed > 0 {
                    console.note(&format!(
                        "cache: evicted {} least recently used entries and {} temporary files \
                         ({} → {} bytes, cap {max_bytes})",
                        report.evicted.len(),
                        report.temps_removed,
                        report.bytes_before,
                        report.bytes_after
                    ));
                }
            }
            Err(e) => console.warn(&format!("cache: cannot prune the cache: {e}")),
        }
    }
    match retention::prune(base, retention, false) {
        Ok(report) if !report.removed.is_empty() => console.note(&format!(
            "removed {} old run directories (keeping {})",
            report.removed.len(),
            report.kept
        )),
        Ok(_) => {}
        Err(e) => console.warn(&format!("cannot prune old run directories: {e}")),
    }
    drop(guard);
}
