//! A 0.1 component hosted by the 0.2 runtime against the same extension built at 0.2:
//! `cargo bench -p labhit-runtime --bench compat` (issue 11, target: within 5 %).
//!
//! The pairs are real extensions, not fixtures: the checked-in 0.1 components under
//! `compat/0.1.0/components` (built when 0.1.0 was frozen, `wasm` profile) and the same
//! extension built from `extensions/` at contract 0.2 with the same profile.
//!
//! | bench | measures |
//! |---|---|
//! | `sh_0_1(n)` / `sh_0_2(n)` | one `exec/sh` executor step running `true` followed by `n` × `echo x`: fresh store, instantiate, `execute` with the command converted to the component's contract, `n` `log` calls (one per line), the result converted back |
//! | `checksum_0_1` / `checksum_0_2` | one `util/checksum` step hashing one small file and writing its manifest |
//!
//! `sh_*(0)` is the per-step overhead of the pair; `(sh_*(1000) − sh_*(0)) / 1000` is one
//! `echo` line: the interpreter's `echo` plus one guest→host `log` call. There is no 0.1
//! component that makes `log` calls and nothing else, so the log figure includes the same
//! interpreter work on both sides. Both sides run on one runtime, in one workspace, with log
//! entries dropped (`NullSink`); the setup checks once that every step succeeds and that the
//! `n` lines arrive as `n` log entries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use divan::Bencher;
use labhit_guest_build::{Builder, Target};
use labhit_protocol::executor::{CacheDecision, CommandStep};
use labhit_protocol::manifest::Manifest;
use labhit_runtime::{
    CollectingSink, ExecutorCommand, LoadedExtension, Runtime, RuntimeConfig, StepOutcome,
    StepRequest,
};

fn main() {
    divan::main();
}

/// Lines echoed by the `log` variant.
const LINES: [usize; 2] = [0, 1000];

struct Pair {
    v0_1: LoadedExtension,
    v0_2: LoadedExtension,
}

struct Setup {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    runtime: Runtime,
    sh: Pair,
    checksum: Pair,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifest(path: &Path) -> Manifest {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Manifest::from_toml(&text).unwrap_or_else(|d| panic!("{}: {d:?}", path.display()))
}

/// Loads the checked-in 0.1 component `id` and the same extension built at 0.2.
fn pair(runtime: &Runtime, id: &str, wasm: &str) -> Pair {
    let old = root().join("compat/0.1.0/components").join(id);
    let v0_1 = runtime
        .load(&manifest(&old.join("extension.toml")), &old.join(wasm))
        .unwrap_or_else(|err| panic!("{err}"));
    let dir = root().join("extensions").join(id);
    let component = Builder::for_workspace(&root())
        .build(&dir, Target::P2)
        .unwrap_or_else(|err| panic!("building {id}: {err}"))
        .component;
    let v0_2 = runtime
        .load(&manifest(&dir.join("extension.toml")), &component)
        .unwrap_or_else(|err| panic!("{err}"));
    let minors = (
        v0_1.contract_version().major,
        v0_1.contract_version().minor,
        v0_2.contract_version().major,
        v0_2.contract_version().minor,
    );
    assert_eq!(minors, (0, 1, 0, 2), "{id}: the pair's contract versions");
    Pair { v0_1, v0_2 }
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-compat-cache");
        let runtime = Runtime::new(RuntimeConfig::with_cache_dir(cache))
            .unwrap_or_else(|err| panic!("runtime: {err}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let workspace = dir.path().join("workspace");
        std::fs::create_dir(&workspace).unwrap_or_else(|e| panic!("workspace: {e}"));
        std::fs::write(workspace.join("app.txt"), "the artifact\n")
            .unwrap_or_else(|e| panic!("app.txt: {e}"));
        let setup = Setup {
            sh: pair(&runtime, "exec/sh", "sh.wasm"),
            checksum: pair(&runtime, "util/checksum", "checksum.wasm"),
            runtime,
            workspace,
            _dir: dir,
        };
        verify(&setup);
        setup
    })
}

/// The script of an `exec/sh` step echoing `lines` lines.
fn script(lines: usize) -> String {
    let mut script = String::from("true\n");
    for _ in 0..lines {
        script.push_str("echo x\n");
    }
    script
}

fn sh_request(setup: &Setup, script: &str) -> StepRequest {
    let mut request = StepRequest::new("bench");
    request.workspace = Some(setup.workspace.clone());
    request.command = Some(ExecutorCommand {
        step: CommandStep::new(script),
        cache: CacheDecision::MissNoCommit,
        parent_snapshot: None,
    });
    request
}

fn checksum_request(setup: &Setup) -> StepRequest {
    let mut request = StepRequest::new("bench");
    request.workspace = Some(setup.workspace.clone());
    request.with = serde_json::json!({"patterns": ["app.txt"], "output": "SUMS"}).into();
    request
}

fn run(setup: &Setup, extension: &LoadedExtension, request: StepRequest) -> StepOutcome {
    let outcome = setup
        .runtime
        .execute(extension, request)
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(outcome.exit_code, 0);
    outcome
}

/// Every measured step succeeds, both sides do the same work, and the echoed lines arrive as
/// log entries.
fn verify(setup: &Setup) {
    for lines in LINES {
        for extension in [&setup.sh.v0_1, &setup.sh.v0_2] {
            let sink = Arc::new(CollectingSink::new());
            let mut request = sh_request(setup, &script(lines));
            request.log_sink = sink.clone();
            let outcome = run(setup, extension, request);
            assert_eq!(
                outcome.outputs.get("commands").map(String::as_str),
                Some((lines + 1).to_string().as_str()),
                "exec/sh {}: {outcome:?}",
                extension.contract_version()
            );
            let echoed = sink.messages().iter().filter(|m| *m == "x").count();
            assert_eq!(echoed, lines, "exec/sh {}", extension.contract_version());
        }
    }
    let digests: Vec<String> = [&setup.checksum.v0_1, &setup.checksum.v0_2]
        .into_iter()
        .map(|extension| {
            let outcome = run(setup, extension, checksum_request(setup));
            assert_eq!(outcome.outputs.get("files").map(String::as_str), Some("1"));
            outcome.outputs.get("digest").cloned().unwrap_or_default()
        })
        .collect();
    assert!(!digests[0].is_empty());
    assert_eq!(
        digests[0], digests[1],
        "both checksum builds write the same manifest"
    );
}

fn bench_sh(bencher: Bencher<'_, '_>, extension: &LoadedExtension, lines: usize) {
    let setup = setup();
    let script = script(lines);
    bencher
        .with_inputs(|| sh_request(setup, &script))
        .bench_local_values(|request| run(setup, extension, request));
}

/// `exec/sh` 0.1.0 (checked in), hosted by the 0.2 runtime.
#[divan::bench(args = LINES)]
fn sh_0_1(bencher: Bencher<'_, '_>, lines: usize) {
    bench_sh(bencher, &setup().sh.v0_1, lines);
}

/// `exec/sh` built from this repository at contract 0.2.
#[divan::bench(args = LINES)]
fn sh_0_2(bencher: Bencher<'_, '_>, lines: usize) {
    bench_sh(bencher, &setup().sh.v0_2, lines);
}

fn bench_checksum(bencher: Bencher<'_, '_>, extension: &LoadedExtension) {
    let setup = setup();
    bencher
        .with_inputs(|| checksum_request(setup))
        .bench_local_values(|request| run(setup, extension, request));
}

/// `util/checksum` 0.1.0 (checked in), hosted by the 0.2 runtime.
#[divan::bench]
fn checksum_0_1(bencher: Bencher<'_, '_>) {
    bench_checksum(bencher, &setup().checksum.v0_1);
}

/// `util/checksum` built from this repository at contract 0.2.
#[divan::bench]
fn checksum_0_2(bencher: Bencher<'_, '_>) {
    bench_checksum(bencher, &setup().checksum.v0_2);
}
