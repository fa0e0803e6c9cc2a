//! End-to-end tests of the disk `labhit run` keeps bounded and of its cache checks: run
//! retention after many runs, `labhit gc runs`, `labhit cache stats|gc`, a cache of the wrong
//! kind failing before any stage, a corrupt snapshot reported, and git-ignored files with
//! non-ASCII names left out of the workspace.
//!
//! Every test runs the real `labhit` binary on a project of its own with `run:` stages (the
//! built-in local executor, no extensions), its own run and cache directories outside the
//! project.

mod common;

use std::process::{Command, Stdio};

use common::Run;

// A project directory and a state directory (runs, cache, markers) beside it.
common::project_type!();

impl Project {
    fn new(stages: &str) -> Self {
        Self(common::Project::new(&format!(
            "engine: \"1\"\npipeline:\n  name: disk\n  stages:\n{stages}"
        )))
    }

    fn labhit(&self, args: &[&str]) -> Run {
        Run::of(
            common::labhit(self.path())
                .env("LABHIT_CACHE_DIR", self.state().join("components"))
                .args(args),
        )
    }

    /// `labhit run pipeline.yaml` with this project's run and cache directories.
    fn run(&self, extra: &[&str]) -> Run {
        let runs = self.runs();
        let cache = self.cache();
        let mut args = vec![
            "run",
            "pipeline.yaml",
            "--ref",
            "main",
            "--format",
            "json",
            "--run-dir",
            runs.to_str().expect("utf-8"),
            "--cache-dir",
            cache.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        self.labhit(&args)
    }

    /// What the runs directory holds besides labhit's own bookkeeping (the cache-directory
    /// tag and the digest index): run directories and what the test put there.
    fn run_dirs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.runs())
            .expect("runs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.') && name != "CACHEDIR.TAG")
            .collect();
        names.sort();
        names
    }
}

const ONE_STAGE: &str = "    build:\n      run: mkdir -p out && echo built > out/result\n";

#[test]
fn twenty_runs_with_the_default_retention_leave_at_most_the_retained_runs() {
    let project = Project::new(ONE_STAGE);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let run = project.run(&["--no-cache"]);
        assert_eq!(run.code(), 0, "{run:?}");
        ids.push(run.id());
    }
    let left = project.run_dirs();
    assert_eq!(left.len(), 10, "default retention keeps 10 runs: {left:?}");
    // The newest ten, the last run's included.
    let mut newest: Vec<String> = ids[10..].to_vec();
    newest.sort();
    assert_eq!(left, newest);
}

#[test]
fn keep_runs_and_gc_runs_never_touch_what_is_not_a_run() {
    let project = Project::new(ONE_STAGE);
    std::fs::create_dir_all(project.runs().join("notes")).expect("mkdir");
    std::fs::write(project.runs().join("notes/summary.json"), "{}").expect("write");
    // Named like a run, but a file; and a directory named like a run with nothing of a run.
    let fake = "0b7c6a1e-3f52-4c8e-9d4a-5b6f7e8d9c0a";
    std::fs::write(project.runs().join(fake), "mine").expect("write");
    let empty = "1b7c6a1e-3f52-4c8e-9d4a-5b6f7e8d9c0a";
    std::fs::create_dir(project.runs().join(empty)).expect("mkdir");
    for _ in 0..3 {
        let run = project.run(&["--no-cache", "--keep-runs", "1"]);
        assert_eq!(run.code(), 0, "{run:?}");
    }
    let left = project.run_dirs();
    assert_eq!(left.len(), 4, "{left:?}");
    for name in ["notes", fake, empty] {
        assert!(left.iter().any(|l| l == name), "{name} removed: {left:?}");
    }

    // By hand: `--keep 0` removes every finished run, and still nothing else.
    let dry = project.labhit(&[
        "gc",
        "runs",
        "--run-dir",
        project.runs().to_str().expect("utf-8"),
        "--keep",
        "0",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(dry.code(), 0, "{dry:?}");
    let report: serde_json::Value = serde_json::from_str(&dry.stdout()).expect("json");
    assert_eq!(
        report["removed"].as_array().map(Vec::len),
        Some(1),
        "{dry:?}"
    );
    assert_eq!(project.run_dirs().len(), 4, "a dry run removes nothing");
    let gc = project.labhit(&[
        "gc",
        "runs",
        "--run-dir",
        project.runs().to_str().expect("utf-8"),
        "--keep",
        "0",
    ]);
    assert_eq!(gc.code(), 0, "{gc:?}");
    let mut expected = vec!["notes".to_owned(), fake.to_owned(), empty.to_owned()];
    expected.sort();
    assert_eq!(project.run_dirs(), expected);
}

#[test]
fn a_cache_dir_that_is_a_file_fails_before_any_stage_runs() {
    let marker = tempfile::tempdir().expect("tempdir");
    let ran = marker.path().join("ran");
    let project = Project::new(&format!(
        "    build:\n      run: echo ran > '{}'\n",
        ran.display()
    ));
    std::fs::write(project.cache(), "not a directory").expect("write");
    let run = project.run(&[]);
    assert_eq!(run.code(), 3, "{run:?}");
    assert!(
        run.stderr().contains("is not a directory") && run.stderr().contains("cache"),
        "{run:?}"
    );
    assert!(!ran.exists(), "the stage ran: {run:?}");
}

#[test]
fn a_snapshot_path_that_is_a_directory_fails_before_any_stage_runs() {
    let marker = tempfile::tempdir().expect("tempdir");
    let ran = marker.path().join("ran");
    let project = Project::new(&format!(
        "    build:\n      run: echo ran >> '{}'\n",
        ran.display()
    ));
    let first = project.run(&[]);
    assert_eq!(first.code(), 0, "{first:?}");
    let tags = project.cache().join("tags");
    let manifest = std::fs::read_dir(&tags)
        .expect("tags")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .expect("a committed snapshot");
    std::fs::remove_file(&manifest).expect("remove");
    std::fs::create_dir(&manifest).expect("mkdir");
    let second = project.run(&[]);
    assert_eq!(second.code(), 3, "{second:?}");
    assert!(
        second.stderr().contains(&manifest.display().to_string())
            && second.stderr().contains("is not a regular file"),
        "{second:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&ran).expect("marker"),
        "ran\n",
        "the stage ran again: {second:?}"
    );
}

#[test]
fn a_corrupt_snapshot_is_reported_with_its_tag_and_rebuilt() {
    let project = Project::new(ONE_STAGE);
    let first = project.run(&[]);
    assert_eq!(first.code(), 0, "{first:?}");
    let stderr = first.stderr();
    let start = stderr.find("will commit `").expect("a commit") + "will commit `".len();
    let tag = &stderr[start..start + stderr[start..].find('`').expect("tag end")];
    let tags = project.cache().join("tags");
    for entry in std::fs::read_dir(&tags).expect("tags") {
        let path = entry.expect("entry").path();
        let mut text = std::fs::read(&path).expect("read");
        text.extend_from_slice(b"garbage");
        std::fs::write(&path, text).expect("corrupt");
    }
    let second = project.run(&[]);
    assert_eq!(second.code(), 0, "{second:?}");
    assert!(
        second.stderr().contains(&format!(
            "cache: snapshot `{tag}` is corrupt and was discarded"
        )),
        "{second:?}"
    );
    let third = project.run(&[]);
    assert!(third.stderr().contains("cache: hit"), "rebuilt: {third:?}");
}

#[test]
fn git_ignored_files_with_non_ascii_names_stay_out_of_the_workspace() {
    let project = Project::new(ONE_STAGE);
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .current_dir(project.path())
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(project.path().join(".gitignore"), "*.log\nbüild/\n").expect("write");
    std::fs::write(project.path().join("café.log"), "secret").expect("write");
    std::fs::write(project.path().join("plain.log"), "secret").expect("write");
    std::fs::create_dir(project.path().join("büild")).expect("mkdir");
    std::fs::write(project.path().join("büild/out"), "x").expect("write");
    std::fs::write(project.path().join("naïve.txt"), "kept").expect("write");
    // An ignored name that is not UTF-8 (Latin-1 `é`) is left out like the others.
    std::fs::write(project.path().join(not_utf8("caf\u{e9}-latin1.log")), "x").expect("write");
    let run = project.run(&["--no-cache"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let workspace = project.runs().join(run.id()).join("workspace");
    assert!(workspace.join("naïve.txt").exists(), "{run:?}");
    for ignored in ["café.log", "plain.log", "büild"] {
        assert!(
            !workspace.join(ignored).exists(),
            "{ignored} was copied into the workspace"
        );
    }
    assert!(!workspace.join(not_utf8("caf\u{e9}-latin1.log")).exists());

    // A name that is not UTF-8 and not ignored cannot be copied: the run says which and how
    // to fix it, once.
    std::fs::write(project.path().join(not_utf8("r\u{e9}sum\u{e9}.txt")), "x").expect("write");
    let refused = project.run(&["--no-cache"]);
    assert_eq!(refused.code(), 3, "{refused:?}");
    let stderr = refused.stderr();
    assert!(stderr.contains("is not UTF-8"), "{refused:?}");
    assert!(
        stderr.contains("rename it, or have git ignore it"),
        "{refused:?}"
    );
    assert_eq!(stderr.matches("is not UTF-8").count(), 1, "{refused:?}");
}

/// `text` with every char below 256 as one byte (Latin-1): not UTF-8 when it has `é`.
fn not_utf8(text: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    let bytes = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
        .collect();
    std::path::PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[test]
fn cache_stats_and_gc_report_and_evict_to_the_cap() {
    let project = Project::new(
        "    a:\n      run: head -c 20000 /dev/zero > a.bin\n    b:\n      after: a\n      run: head -c 20001 /dev/zero > b.bin\n",
    );
    let run = project.run(&[]);
    assert_eq!(run.code(), 0, "{run:?}");
    let cache = project.cache();
    let cache = cache.to_str().expect("utf-8");
    let stats = project.labhit(&["cache", "stats", "--cache-dir", cache, "--format", "json"]);
    assert_eq!(stats.code(), 0, "{stats:?}");
    let stats: serde_json::Value = serde_json::from_str(&stats.stdout()).expect("json");
    assert_eq!(stats["entries"], 2, "{stats}");
    assert!(stats["bytes"].as_u64().expect("bytes") > 40_000, "{stats}");
    assert!(stats["newest_use"].is_string(), "{stats}");

    let gc = project.labhit(&[
        "cache",
        "gc",
        "--cache-dir",
        cache,
        "--max-size",
        "30000",
        "--format",
        "json",
    ]);
    assert_eq!(gc.code(), 0, "{gc:?}");
    let report: serde_json::Value = serde_json::from_str(&gc.stdout()).expect("json");
    assert_eq!(
        report["evicted"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert!(
        report["bytes_after"].as_u64().expect("bytes") <= 30_000,
        "{report}"
    );
    let stats = project.labhit(&["cache", "stats", "--cache-dir", cache, "--format", "json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats.stdout()).expect("json");
    assert_eq!(stats["entries"], 1, "{stats}");
}
