//! Run workspaces on a real file system: the copy (sparse files, modification times, the
//! fallback when the file system cannot clone, directories labhit owns) and the digest index
//! (racy-clean entries are re-hashed, trusted entries spare the read).

use std::fs;
use std::io::{Seek, Write};
use std::os::unix::fs::MetadataExt;

use labhit_protocol::ids::RunId;
use labhit_runtime::digests::{DigestIndex, Stamp, now_ns};
use labhit_runtime::workspace::{Entry, RunWorkspace, WorkspaceManifest, WorkspaceSource};

const FAKE: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn sha_of(manifest: &WorkspaceManifest, path: &str) -> String {
    match manifest.get(path) {
        Some(Entry::File { sha256, .. }) => sha256.clone(),
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn racy_clean_entries_are_hashed_again_and_old_ones_are_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.txt");
    fs::write(&file, "same size").expect("write");
    let real = sha_of(&WorkspaceManifest::scan(dir.path()).expect("scan"), "a.txt");
    let stamp = Stamp::of(&fs::symlink_metadata(&file).expect("stat"));

    // An entry hashed in the same instant the file was written (the racy case: it could have
    // changed again without its stamp changing) is never trusted, even with an equal stamp.
    let mut index = DigestIndex::new();
    index.record("a.txt", stamp, FAKE, stamp.mtime_ns);
    let scanned = WorkspaceManifest::scan_indexed(dir.path(), &mut index).expect("scan");
    assert_eq!(sha_of(&scanned, "a.txt"), real);

    // An entry hashed well after the last write is trusted: the file is not read (the fake
    // digest proves it), so a re-run costs a stat.
    let mut index = DigestIndex::new();
    index.record("a.txt", stamp, FAKE, stamp.mtime_ns + 10_000_000_000);
    let scanned = WorkspaceManifest::scan_indexed(dir.path(), &mut index).expect("scan");
    assert_eq!(sha_of(&scanned, "a.txt"), FAKE);

    // Any change of the stamp (here the content, same size) is a re-hash.
    fs::write(&file, "SAME SIZE").expect("write");
    let scanned = WorkspaceManifest::scan_indexed(dir.path(), &mut index).expect("scan");
    assert_ne!(sha_of(&scanned, "a.txt"), FAKE);
    assert_ne!(sha_of(&scanned, "a.txt"), real);
}

#[test]
fn the_copy_keeps_sparse_files_sparse_and_times_and_its_digests_are_right() {
    let project = tempfile::tempdir().expect("tempdir");
    let mut sparse = fs::File::create(project.path().join("disk.img")).expect("create");
    sparse.write_all(b"boot").expect("write");
    sparse
        .seek(std::io::SeekFrom::Start(1 << 30))
        .expect("seek");
    sparse.write_all(b"end").expect("write");
    drop(sparse);
    fs::create_dir(project.path().join("src")).expect("mkdir");
    for i in 0..50 {
        fs::write(
            project.path().join(format!("src/{i}.c")),
            format!("int x{i};"),
        )
        .expect("w");
    }
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(project.path().join("src/7.c"))
        .and_then(|f| f.set_modified(old))
        .expect("set mtime");

    let base = tempfile::tempdir().expect("tempdir");
    let mut run = RunWorkspace::create(
        base.path(),
        RunId::from_uuid(uuid::Uuid::new_v4()),
        &WorkspaceSource::copy(project.path()),
    )
    .expect("create");
    let copy = fs::metadata(run.path().join("disk.img")).expect("stat");
    assert_eq!(copy.len(), (1 << 30) + 3);
    assert!(
        copy.blocks() * 512 < 1 << 20,
        "the sparse file took {} bytes",
        copy.blocks() * 512
    );
    assert_eq!(
        fs::metadata(run.path().join("src/7.c"))
            .expect("stat")
            .modified()
            .expect("mtime"),
        old
    );
    // The digests learnt while copying are the real ones.
    let mut digests = run.take_digests();
    assert_eq!(digests.len(), 51);
    let from_copy = WorkspaceManifest::scan_indexed(run.path(), &mut digests).expect("scan");
    assert_eq!(
        from_copy,
        WorkspaceManifest::scan(run.path()).expect("scan")
    );
    assert_eq!(
        from_copy,
        WorkspaceManifest::scan(project.path()).expect("scan")
    );
    assert!(run.warnings().is_empty(), "{:?}", run.warnings());
}

#[test]
fn a_second_copy_takes_digests_from_the_index_and_a_changed_file_is_hashed() {
    let project = tempfile::tempdir().expect("tempdir");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for name in ["a", "b"] {
        let path = project.path().join(name);
        fs::write(&path, name).expect("write");
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(old))
            .expect("mtime");
    }
    let base = tempfile::tempdir().expect("tempdir");
    let create = || {
        RunWorkspace::create(
            base.path(),
            RunId::from_uuid(uuid::Uuid::new_v4()),
            &WorkspaceSource::copy(project.path()),
        )
        .expect("create")
    };
    let started = now_ns();
    create();
    // `b` changes, same size, and its time is set back: the change time still tells.
    fs::write(project.path().join("b"), "B").expect("write");
    fs::File::options()
        .write(true)
        .open(project.path().join("b"))
        .and_then(|f| f.set_modified(old))
        .expect("mtime");
    let mut second = create();
    let mut digests = second.take_digests();
    let manifest = WorkspaceManifest::scan_indexed(second.path(), &mut digests).expect("scan");
    assert_eq!(
        manifest,
        WorkspaceManifest::scan(project.path()).expect("scan")
    );
    // The project itself was never written.
    for name in ["a", "b"] {
        let meta = fs::metadata(project.path().join(name)).expect("stat");
        assert!(meta.nlink() == 1, "{name} got a hard link");
        assert!(meta.mtime() * 1_000_000_000 < started);
    }
}
