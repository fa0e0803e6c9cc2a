//! Bounded disk, on real directories: run retention (`labhit_runtime::retention`) and the
//! snapshot store's size cap, least-recently-used eviction, leftover cleanup and layout
//! checks (`labhit_runtime::snapshot`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use labhit_protocol::ids::SnapshotRef;
use labhit_runtime::retention::{self, Retention, RunLock};
use labhit_runtime::scheduler::new_run_id;
use labhit_runtime::snapshot::{GcOptions, SnapshotError, SnapshotStore};
use labhit_runtime::workspace::WorkspaceManifest;
use sha2::{Digest, Sha256};

fn set_mtime(path: &Path, ago: Duration) {
    let file = fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| fs::File::open(path))
        .expect("open");
    file.set_modified(SystemTime::now() - ago)
        .expect("set mtime");
}

const HOUR: Duration = Duration::from_secs(3600);

/// A finished run as `labhit run` leaves it: lock released, a summary written.
fn finished_run(base: &Path) -> PathBuf {
    let lock = RunLock::acquire(base, new_run_id()).expect("lock");
    let dir = lock.run_dir().to_owned();
    fs::write(dir.join("summary.json"), "{}").expect("summary");
    dir
}

#[test]
fn retention_keeps_the_newest_runs_and_never_a_non_run_or_a_run_in_progress() {
    let base = tempfile::tempdir().expect("tempdir");
    let base = base.path();
    // The oldest run is still in progress.
    let live = RunLock::acquire(base, new_run_id()).expect("lock");
    let older: Vec<PathBuf> = (0..5).map(|_| finished_run(base)).collect();
    // Not runs: a file named like one, a run-named directory with no run files, another
    // directory with a summary, a link to a run directory.
    let id_file = base.join(new_run_id().to_string());
    fs::write(&id_file, "x").expect("write");
    let bare = base.join(new_run_id().to_string());
    fs::create_dir(&bare).expect("mkdir");
    let other = base.join("mine");
    fs::create_dir(&other).expect("mkdir");
    fs::write(other.join("summary.json"), "{}").expect("write");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let target = finished_run(elsewhere.path());
    let link = base.join(new_run_id().to_string());
    std::os::unix::fs::symlink(&target, &link).expect("symlink");

    let dry = retention::prune(
        base,
        &Retention {
            keep_runs: Some(3),
            max_age: None,
        },
        true,
    )
    .expect("dry prune");
    assert_eq!(dry.removed, older[..2].to_vec());
    assert!(
        older.iter().all(|r| r.exists()),
        "a dry run removes nothing"
    );

    let report = retention::prune(
        base,
        &Retention {
            keep_runs: Some(0),
            max_age: None,
        },
        false,
    )
    .expect("prune");
    assert_eq!(report.removed, older);
    assert_eq!(report.in_progress, 1);
    assert!(live.run_dir().exists(), "the run in progress was removed");
    for kept in [&id_file, &bare, &other, &link, &target] {
        assert!(
            fs::symlink_metadata(kept).is_ok(),
            "{} was removed",
            kept.display()
        );
    }
    // Once it ends, it is a finished run like the others.
    let dir = live.run_dir().to_owned();
    drop(live);
    let report = retention::prune(base, &Retention::default(), false).expect("prune");
    assert!(report.removed.is_empty(), "within the default: {report:?}");
    let report = retention::prune(
        base,
        &Retention {
            keep_runs: Some(0),
            max_age: None,
        },
        false,
    )
    .expect("prune");
    assert_eq!(report.removed, [dir]);
}

#[test]
fn retention_by_age_removes_only_old_runs_even_with_read_only_directories() {
    let base = tempfile::tempdir().expect("tempdir");
    let old = finished_run(base.path());
    let recent = finished_run(base.path());
    // A stage left a read-only directory behind.
    let locked = old.join("workspace/cache");
    fs::create_dir_all(locked.join("inner")).expect("mkdir");
    fs::write(locked.join("inner/file"), "x").expect("write");
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).expect("chmod");
    fs::write(old.join("run.lock"), "0\n").expect("an old start time");
    let report = retention::prune(
        base.path(),
        &Retention {
            keep_runs: None,
            max_age: Some(Duration::from_secs(7 * 86_400)),
        },
        false,
    )
    .expect("prune");
    assert_eq!(report.removed, std::slice::from_ref(&old));
    assert!(!old.exists());
    assert!(recent.exists());
    assert_eq!(
        retention::parse_age("7d").expect("age"),
        Duration::from_secs(7 * 86_400)
    );
    assert!(retention::parse_age("7 days").is_err());
}

/// A store with one committed entry per `(tag, bytes)`, each a distinct file of that size.
fn store_with(entries: &[(&str, usize)]) -> (tempfile::TempDir, SnapshotStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::new(dir.path().join("store"));
    for (i, (tag, size)) in entries.iter().enumerate() {
        let workspace = dir.path().join(format!("ws{i}"));
        fs::create_dir(&workspace).expect("mkdir");
        let before = WorkspaceManifest::scan(&workspace).expect("scan");
        let mut content = vec![b'a'; *size];
        content[0] = i as u8;
        fs::write(workspace.join("out.bin"), content).expect("write");
        store
            .commit(&SnapshotRef::new(*tag), &workspace, &before)
            .expect("commit");
    }
    (dir, store)
}

fn manifest_path(store: &SnapshotStore, tag: &str) -> PathBuf {
    let name: String = Sha256::digest(tag.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    store.dir().join("tags").join(format!("{name}.snapshot"))
}

#[test]
fn eviction_under_a_size_cap_keeps_the_recently_used() {
    let (dir, store) = store_with(&[("a", 10_000), ("b", 10_000), ("c", 10_000)]);
    set_mtime(&manifest_path(&store, "a"), 3 * HOUR);
    set_mtime(&manifest_path(&store, "b"), 2 * HOUR);
    set_mtime(&manifest_path(&store, "c"), HOUR);
    // A cache hit on `a` makes it the most recently used.
    let target = dir.path().join("restore");
    fs::create_dir(&target).expect("mkdir");
    store
        .restore(&SnapshotRef::new("a"), &target)
        .expect("restore");
    let before = store.stats().expect("stats");
    assert_eq!(before.entries, 3);
    assert!(before.bytes > 30_000);

    let cap = 22_000;
    let report = store
        .gc(&GcOptions {
            max_bytes: Some(cap),
            full: false,
            dry_run: false,
        })
        .expect("gc");
    assert_eq!(report.evicted, ["b"]);
    assert_eq!(report.blobs_removed, 1);
    let after = store.stats().expect("stats");
    assert_eq!(after.entries, 2);
    assert!(after.bytes <= cap, "{after:?}");
    assert_eq!(report.bytes_after, after.bytes);
    assert!(store.exists(&SnapshotRef::new("a")));
    assert!(store.exists(&SnapshotRef::new("c")));
    assert!(!store.exists(&SnapshotRef::new("b")));
}

#[test]
fn entries_used_since_a_live_run_started_are_not_evicted() {
    let (_dir, store) = store_with(&[("a", 10_000), ("b", 10_000)]);
    let lease = store.lease().expect("lease");
    set_mtime(lease.path(), 2 * HOUR);
    set_mtime(&manifest_path(&store, "a"), 3 * HOUR);
    // `b` was used an hour ago, after the live run started.
    set_mtime(&manifest_path(&store, "b"), HOUR);
    let report = store
        .gc(&GcOptions {
            max_bytes: Some(1),
            full: false,
            dry_run: false,
        })
        .expect("gc");
    assert_eq!(report.evicted, ["a"]);
    assert_eq!(report.live_runs, 1);
    assert!(store.exists(&SnapshotRef::new("b")));
}

#[test]
fn temp_blobs_left_by_a_kill_are_removed_unless_a_live_run_may_own_them() {
    let (_dir, store) = store_with(&[("a", 100)]);
    let temp = |dir: &str, name: &str, ago: Duration| {
        let path = store.dir().join(dir).join(format!(".labhit-tmp-{name}"));
        fs::write(&path, vec![0u8; 4096]).expect("write");
        set_mtime(&path, ago);
        path
    };
    let old_blob = temp("blobs", "1-1", 3 * HOUR);
    let old_tag = temp("tags", "1-2", 3 * HOUR);
    let fresh = temp("blobs", "2-1", Duration::ZERO);
    // An orphan blob (a commit killed between blob and manifest).
    let orphan = store.dir().join("blobs/ff").join("f".repeat(64));
    fs::create_dir_all(orphan.parent().expect("parent")).expect("mkdir");
    fs::write(&orphan, "orphan").expect("write");
    set_mtime(&orphan, 3 * HOUR);
    assert_eq!(store.stats().expect("stats").temps, 3);

    // A run that started four hours ago still lives: everything may be its own.
    let lease = store.lease().expect("lease");
    set_mtime(lease.path(), 4 * HOUR);
    let report = store
        .gc(&GcOptions {
            max_bytes: None,
            full: true,
            dry_run: false,
        })
        .expect("gc");
    assert_eq!((report.temps_removed, report.blobs_removed), (0, 0));
    assert!(old_blob.exists() && old_tag.exists() && orphan.exists());

    // It ended: what is older than the grace period goes, the fresh temp stays.
    drop(lease);
    let report = store
        .gc(&GcOptions {
            max_bytes: None,
            full: true,
            dry_run: false,
        })
        .expect("gc");
    assert_eq!((report.temps_removed, report.blobs_removed), (2, 1));
    assert!(!old_blob.exists() && !old_tag.exists() && !orphan.exists());
    assert!(fresh.exists());
    assert!(store.exists(&SnapshotRef::new("a")), "the live entry stays");
}

#[test]
fn a_lease_killed_with_its_process_is_stale() {
    let (_dir, store) = store_with(&[("a", 10)]);
    let live = store.dir().join("live");
    fs::create_dir_all(&live).expect("mkdir");
    // A lease file nobody holds: what a SIGKILLed run leaves.
    fs::write(live.join("999999-0.lease"), "").expect("write");
    let report = store
        .gc(&GcOptions {
            max_bytes: None,
            full: false,
            dry_run: false,
        })
        .expect("gc");
    assert_eq!((report.stale_leases, report.live_runs), (1, 0));
    assert!(!live.join("999999-0.lease").exists());
}

#[test]
fn a_store_of_the_wrong_kind_is_an_error_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cache");
    fs::write(&file, "x").expect("write");
    let store = SnapshotStore::new(&file);
    let err = store.lease().expect_err("a file as the store");
    assert!(
        matches!(&err, SnapshotError::WrongKind { path, expected: "directory" } if *path == file),
        "{err}"
    );
    assert!(err.to_string().contains("is not a directory"), "{err}");

    let (_dir, store) = store_with(&[("a", 10)]);
    let manifest = manifest_path(&store, "a");
    fs::remove_file(&manifest).expect("remove");
    fs::create_dir(&manifest).expect("mkdir");
    let err = store.lease().expect_err("a directory as a manifest");
    assert!(
        matches!(&err, SnapshotError::WrongKind { path, .. } if *path == manifest),
        "{err}"
    );
    let err = store
        .check_tag(&SnapshotRef::new("a"))
        .expect_err("checked per tag too");
    assert!(err.to_string().contains("is not a regular file"), "{err}");
}

#[test]
fn gc_reports_and_removes_a_corrupt_manifest() {
    let (_dir, store) = store_with(&[("a", 10), ("b", 10)]);
    let manifest = manifest_path(&store, "b");
    let mut text = fs::read(&manifest).expect("read");
    text.extend_from_slice(b"tampered");
    fs::write(&manifest, text).expect("write");
    let report = store
        .gc(&GcOptions {
            max_bytes: None,
            full: true,
            dry_run: false,
        })
        .expect("gc");
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert_eq!(report.corrupt[0].0, manifest);
    assert!(!manifest.exists());
    assert!(store.exists(&SnapshotRef::new("a")));
}
