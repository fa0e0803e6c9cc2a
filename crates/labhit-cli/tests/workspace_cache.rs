//! `labhit run` and the cache keys of `run:` stages over a changing project: declared inputs
//! (`sandbox.inputs`), symbolic links to files outside the project, run and cache
//! directories inside the project, and the persistent digest index.
//!
//! Every project is a temporary directory with `run:` stages only (no extensions); run and
//! cache directories are given explicitly.

mod common;

use std::path::PathBuf;

use common::Run;

common::project_type!();

impl Project {
    fn new(pipeline: &str) -> Self {
        Self(common::Project::new(pipeline))
    }

    fn run(&self) -> Run {
        Run::of(
            common::labhit(self.path())
                .env("LABHIT_CACHE_DIR", self.state().join("labhit-cache"))
                .args(["run", "pipeline.yaml", "--format", "json", "--ref", "main"])
                .arg("--cache-dir")
                .arg(self.cache())
                .arg("--run-dir")
                .arg(self.runs()),
        )
    }
}

/// The workspace of `run`'s run directory.
fn workspace(run: &Run, project: &Project) -> PathBuf {
    project.runs().join(run.id()).join("workspace")
}

#[test]
fn declared_inputs_keep_a_stage_cached_across_an_unrelated_edit() {
    let project = Project::new(
        "engine: \"1\"\npipeline:\n  name: inputs\n  stages:\n    deps:\n      run: cat \
         package-lock.json > installed.txt\n      sandbox: {inputs: [package-lock.json]}\n    \
         all:\n      run: cat src/app.js > built.txt\n",
    );
    project.write("package-lock.json", "{\"lock\": 1}");
    project.write("src/app.js", "one");
    let first = project.run();
    assert_eq!(first.status("deps"), "succeeded", "{first:?}");
    assert_eq!(first.status("all"), "succeeded", "{first:?}");

    // An unrelated edit (also of the pipeline file): the declared stage stays cached, the
    // undeclared one (whole-workspace key) does not.
    project.write("src/app.js", "two");
    let text = std::fs::read_to_string(project.path().join("pipeline.yaml")).expect("read");
    std::fs::write(
        project.path().join("pipeline.yaml"),
        format!("{text}# edited\n"),
    )
    .expect("write");
    let second = project.run();
    assert_eq!(second.status("deps"), "cached", "{second:?}");
    assert_eq!(second.status("all"), "succeeded", "{second:?}");
    assert_eq!(
        std::fs::read_to_string(workspace(&second, &project).join("installed.txt")).expect("read"),
        "{\"lock\": 1}"
    );

    // Editing the declared input is a miss.
    project.write("package-lock.json", "{\"lock\": 2}");
    let third = project.run();
    assert_eq!(third.status("deps"), "succeeded", "{third:?}");
    assert_eq!(
        std::fs::read_to_string(workspace(&third, &project).join("installed.txt")).expect("read"),
        "{\"lock\": 2}"
    );
}

#[test]
fn a_symlinked_input_outside_the_project_that_changes_is_a_miss() {
    let project = Project::new(
        "engine: \"1\"\npipeline:\n  name: outside\n  stages:\n    read:\n      run: cat \
         config > seen.txt\n",
    );
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("config");
    std::fs::write(&target, "v1").expect("write");
    std::os::unix::fs::symlink(&target, project.path().join("config")).expect("symlink");
    let first = project.run();
    assert_eq!(first.status("read"), "succeeded", "{first:?}");
    let second = project.run();
    assert_eq!(second.status("read"), "cached", "{second:?}");

    std::fs::write(&target, "v2").expect("write");
    let third = project.run();
    assert_eq!(third.status("read"), "succeeded", "{third:?}");
    assert_eq!(
        std::fs::read_to_string(workspace(&third, &project).join("seen.txt")).expect("read"),
        "v2"
    );

    // A link to an outside directory cannot be covered: the stage fails, saying why.
    std::os::unix::fs::symlink(outside.path(), project.path().join("shared")).expect("symlink");
    let fourth = project.run();
    assert_eq!(fourth.status("read"), "failed", "{fourth:?}");
    let told = format!("{}{}", fourth.stderr(), fourth.json());
    assert!(
        told.contains("`shared` is a symbolic link to `") && told.contains("--no-cache"),
        "{fourth:?}"
    );
}

#[test]
fn run_and_cache_directories_inside_the_project_are_never_copied() {
    let mut project = Project::new(
        "engine: \"1\"\npipeline:\n  name: inside\n  stages:\n    build:\n      run: \
         date +%s%N > stamp.txt\n",
    );
    project.0.runs = project.path().join("my-runs");
    project.0.cache = project.path().join("my-cache");
    project.write("src/a.txt", "a");
    let mut last = None;
    for i in 0..3 {
        let run = project.run();
        // The earlier runs and the cache inside the project are not part of the key either:
        // the second and third runs are served from the cache.
        let expected = if i == 0 { "succeeded" } else { "cached" };
        assert_eq!(run.status("build"), expected, "run {i}: {run:?}");
        last = Some(run);
    }
    let workspace = workspace(&last.expect("a run"), &project);
    assert!(workspace.join("src/a.txt").is_file());
    assert!(
        !workspace.join("my-runs").exists(),
        "the run base was copied"
    );
    assert!(!workspace.join("my-cache").exists(), "the cache was copied");
}

#[test]
fn a_corrupt_digest_index_is_reported_and_not_trusted() {
    let project = Project::new(
        "engine: \"1\"\npipeline:\n  name: index\n  stages:\n    read:\n      run: cat \
         data.txt > seen.txt\n",
    );
    project.write("data.txt", "one");
    assert_eq!(project.run().status("read"), "succeeded");
    let index = std::fs::read_dir(project.runs())
        .expect("runs")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".labhit-digests-"))
        })
        .expect("the digest index");
    std::fs::write(&index, "labhit-digests/1 0000\n[\"data.txt\"]\n").expect("corrupt");
    let run = project.run();
    assert_eq!(run.status("read"), "cached", "{run:?}");
    assert!(
        run.stderr().contains("is corrupt") && run.stderr().contains("discarded"),
        "{run:?}"
    );
}
