//! Helpers the `labhit` end-to-end tests share (`mod common;` in each test file): the
//! repository root, guests built with `labhit-guest-build` and bundled once per test process
//! (the example extensions, the hostile fixture of `labhit-runtime`), the `labhit` command
//! with a clean environment, the outcome of one invocation, temporary projects, and the run
//! directory a run leaves.
//!
//! Each test binary compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use labhit_guest_build::{Builder, Target};
use serde_json::Value;

/// The repository root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The hostile fixtures of `labhit-runtime` (guest crates and `manifests/`).
pub(crate) fn hostile_fixtures() -> PathBuf {
    root().join("crates/labhit-runtime/tests/fixtures/hostile")
}

/// Builds guests into the workspace's shared `target/guests`.
pub(crate) fn builder() -> Builder {
    Builder::for_workspace(&root())
}

/// The component of the hostile fixture crate `crate_name` (`guest`, `wrong-contract`,
/// `missing-export`), built once per test process.
pub(crate) fn hostile_component(crate_name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    built
        .entry(crate_name.to_owned())
        .or_insert_with(|| {
            builder()
                .build(&hostile_fixtures().join(crate_name), Target::P2)
                .unwrap_or_else(|e| panic!("building `{crate_name}`: {e}"))
                .component
        })
        .clone()
}

/// `(from, to)` replacements in a manifest's text.
type Edits = Vec<(String, String)>;

/// A directory holding one bundle, `test/hostile`: the hostile guest with
/// `manifests/hostile.toml` (read-write, the secret `DECLARED`, a 1 s timeout), each
/// `(from, to)` of `edits` applied to the manifest (each must match). Made once per test
/// process and set of edits.
pub(crate) fn hostile_extensions(edits: &[(&str, &str)]) -> &'static Path {
    static MADE: OnceLock<Mutex<BTreeMap<Edits, &'static Path>>> = OnceLock::new();
    let key: Edits = edits
        .iter()
        .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
        .collect();
    let mut made = MADE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    made.entry(key).or_insert_with(|| {
        let out = tempfile::tempdir().expect("tempdir");
        let bundle = out.path().join("test/hostile");
        std::fs::create_dir_all(&bundle).expect("mkdir");
        let mut manifest =
            std::fs::read_to_string(hostile_fixtures().join("manifests/hostile.toml"))
                .expect("manifest");
        for (from, to) in edits {
            assert!(manifest.contains(from), "`{from}` is not in: {manifest}");
            manifest = manifest.replacen(from, to, 1);
        }
        std::fs::write(bundle.join("extension.toml"), manifest).expect("write manifest");
        std::fs::copy(hostile_component("guest"), bundle.join("hostile.wasm"))
            .expect("copy the component");
        // Kept for the whole process, like the guests it bundles.
        Box::leak(Box::new(out)).path()
    })
}

/// Every example extension under `extensions/`, built once per test process and bundled
/// under one directory; the directory and each bundle's `extension.toml`.
pub(crate) fn example_extensions() -> &'static (tempfile::TempDir, Vec<PathBuf>) {
    static BUILT: OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = tempfile::tempdir().expect("tempdir");
        let extensions =
            labhit_guest_build::discover(&root().join("extensions")).expect("discover");
        assert!(
            !extensions.is_empty(),
            "the workspace has example extensions"
        );
        let bundles = extensions
            .iter()
            .map(|extension| {
                let built = builder()
                    .build(&extension.dir, Target::P2)
                    .unwrap_or_else(|e| panic!("{e}"));
                extension
                    .bundle(&built.component, out.path())
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        (out, bundles)
    })
}

/// Where compiled components are cached across the tests (`LABHIT_CACHE_DIR`).
pub(crate) fn component_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("labhit-cache")
}

/// The built `labhit`, run in `dir`, with an environment that does not depend on the
/// caller's: no color (`NO_COLOR=1`, no `CLICOLOR*`), no `LABHIT_EXTENSIONS`, an empty
/// per-user extensions directory (`XDG_DATA_HOME`), no cache size
/// from the environment, components cached in [`component_cache`], and no standard input.
/// Callers change what their test is about (a `.env(..)` after this wins).
pub(crate) fn labhit(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_labhit"));
    command
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .env_remove("LABHIT_EXTENSIONS")
        // Every command searches the per-user extensions directory: an empty one, not the
        // caller's.
        .env(
            "XDG_DATA_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-data-home"),
        )
        .env_remove("LABHIT_CACHE_MAX_SIZE")
        .env("LABHIT_CACHE_DIR", component_cache())
        .stdin(Stdio::null());
    command
}

/// The outcome of one `labhit` invocation; its `Debug` shows the exit code and both streams.
pub(crate) struct Run(pub(crate) Output);

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self(output)
    }
}

impl Run {
    /// Runs `command` to its end, its output captured.
    pub(crate) fn of(command: &mut Command) -> Self {
        Self(command.output().expect("running labhit"))
    }

    /// The exit code (a run killed by a signal fails the test).
    pub(crate) fn code(&self) -> i32 {
        self.0
            .status
            .code()
            .unwrap_or_else(|| panic!("no exit code: {self:?}"))
    }

    /// Stdout, which must be UTF-8 (labhit renders what is not).
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8(self.0.stdout.clone())
            .unwrap_or_else(|e| panic!("stdout is not UTF-8 ({e}): {self:?}"))
    }

    /// Stderr, which must be UTF-8 (labhit renders what is not).
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8(self.0.stderr.clone())
            .unwrap_or_else(|e| panic!("stderr is not UTF-8 ({e}): {self:?}"))
    }

    /// Both streams, stdout first.
    pub(crate) fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    /// Stdout as one JSON document.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.0.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    /// Stage `id` of the JSON run summary on stdout.
    pub(crate) fn stage(&self, id: &str) -> Value {
        self.json()["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .find(|s| s["stage"] == id)
            .unwrap_or_else(|| panic!("no stage {id}: {self:?}"))
            .clone()
    }

    /// The status of stage `id` in the JSON run summary on stdout.
    pub(crate) fn status(&self, id: &str) -> String {
        self.stage(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The run id, from the JSON run summary on stdout.
    pub(crate) fn id(&self) -> String {
        self.json()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no run id: {self:?}"))
            .to_owned()
    }

    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub(crate) fn expect(self, code: i32) -> Self {
        assert_eq!(self.code(), code, "{self:?}");
        self
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.0.status.code(),
            String::from_utf8_lossy(&self.0.stdout),
            String::from_utf8_lossy(&self.0.stderr)
        )
    }
}

/// A temporary project directory holding `pipeline.yaml`.
pub(crate) fn project(pipeline: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pipeline.yaml"), pipeline).expect("write pipeline.yaml");
    dir
}

/// A temporary project holding `pipeline.yaml`, and a state directory beside it for runs and
/// caches (outside the project, whose content is part of cache keys). Test files wrap it in
/// their own `Project` that adds how they run `labhit`.
pub(crate) struct Project {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    /// Where runs go (`--run-dir`); `<state>/runs` unless a test moves it.
    pub(crate) runs: PathBuf,
    /// The snapshot cache (`--cache-dir`); `<state>/cache` unless a test moves it.
    pub(crate) cache: PathBuf,
}

impl Project {
    pub(crate) fn new(pipeline: &str) -> Self {
        let state = tempfile::tempdir().expect("tempdir");
        Self {
            dir: project(pipeline),
            runs: state.path().join("runs"),
            cache: state.path().join("cache"),
            state,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The state directory beside the project.
    pub(crate) fn state(&self) -> &Path {
        self.state.path()
    }

    /// Where runs go (`--run-dir`).
    pub(crate) fn runs(&self) -> PathBuf {
        self.runs.clone()
    }

    /// The snapshot cache (`--cache-dir`).
    pub(crate) fn cache(&self) -> PathBuf {
        self.cache.clone()
    }

    /// Writes `content` to `relative` in the project, creating directories.
    pub(crate) fn write(&self, relative: &str, content: impl AsRef<[u8]>) {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    /// Replaces the first `from` in `pipeline.yaml` with `to`; `from` must be there.
    pub(crate) fn edit(&self, from: &str, to: &str) {
        let path = self.path().join("pipeline.yaml");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "{from:?} not in the pipeline");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    }

    /// The one run directory.
    pub(crate) fn run_dir(&self) -> PathBuf {
        run_dir(&self.runs())
    }

    /// The one run's `summary.json`.
    pub(crate) fn summary(&self) -> Value {
        summary(&self.run_dir())
    }
}

/// Declares the test file's `Project`: a [`Project`] (it derefs to one) to which the file adds
/// how it makes one and runs `labhit` on it.
#[allow(unused_macros)]
macro_rules! project_type {
    () => {
        struct Project(common::Project);

        impl std::ops::Deref for Project {
            type Target = common::Project;
            fn deref(&self) -> &common::Project {
                &self.0
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use project_type;

/// Sends `signal` (`INT`, `TERM`, ...) to process `pid` with `kill(1)`.
pub(crate) fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The one run directory under `runs` (which also holds labhit's bookkeeping files: the
/// cache-directory tag and the digest index).
pub(crate) fn run_dir(runs: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
        .unwrap_or_else(|e| panic!("{}: {e}", runs.display()))
        .map(|e| e.expect("entry").path())
        .filter(|path| path.is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "one run directory in {}: {dirs:?}",
        runs.display()
    );
    dirs.remove(0)
}

/// A run directory's `summary.json`.
pub(crate) fn summary(run_dir: &Path) -> Value {
    let path = run_dir.join("summary.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
