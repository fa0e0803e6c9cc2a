//! Runtime overhead benchmarks: `cargo bench -p labhit-runtime --bench runtime`.
//!
//! The guest is the hostile fixture (`tests/fixtures/hostile/guest`), an ordinary SDK
//! extension (`export_extension!`, config parsed with serde), run in its `noop` and `log`
//! modes under a manifest that grants nothing (no filesystem, no secrets). Figures and
//! targets (issue 4):
//!
//! | bench | measures | target |
//! |---|---|---|
//! | `step_noop` | fresh store + WASI context + instantiate + `execute` (no-op) + drop | ≤ 25 µs |
//! | `step_log` | a step making `n` `log` calls; (t(1000) − t(0)) / 1000 is one call | ≤ 150 ns |
//! | `start_cached` | load a compiled artifact from the disk cache + pre-instantiate | ≤ 0.5 ms |
//! | `start_compile` | the same without a cache: compile the component | ≥ 100× `start_cached` |
//! | `throughput_2_threads` | 1000 no-op steps on 2 threads (divan shows items/s) | ≥ 50,000 steps/s |
//!
//! Log entries go to a sink that drops them, so `step_log` measures the host call and the
//! runtime's log handling (redaction, sequencing, limits), not a consumer.

use std::path::PathBuf;
use std::sync::OnceLock;

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use labhit_guest_build::{Builder, Target};
use labhit_protocol::manifest::Manifest;
use labhit_runtime::{LoadedExtension, Runtime, RuntimeConfig, StepRequest};

fn main() {
    divan::main();
}

const MANIFEST: &str = r#"
[extension]
category = "bench"
name = "noop"
version = "0.1.0"
contract = "^0.2"
description = "The hostile fixture run in its harmless modes"
component = "hostile.wasm"

[limits]
memory = "16Mi"
timeout = "1m"
"#;

struct Setup {
    manifest: Manifest,
    component: PathBuf,
    runtime: Runtime,
    extension: LoadedExtension,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let component = Builder::for_workspace(&crate_dir.join("../.."))
            .build(&crate_dir.join("tests/fixtures/hostile/guest"), Target::P2)
            .unwrap_or_else(|err| panic!("building the bench guest: {err}"))
            .component;
        let manifest = Manifest::from_toml(MANIFEST).unwrap_or_else(|d| panic!("{d:?}"));
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-runtime-cache");
        let runtime = Runtime::new(RuntimeConfig::with_cache_dir(cache))
            .unwrap_or_else(|err| panic!("runtime: {err}"));
        let extension = runtime
            .load(&manifest, &component)
            .unwrap_or_else(|err| panic!("{err}"));
        Setup {
            manifest,
            component,
            runtime,
            extension,
        }
    })
}

fn request(with: serde_json::Value) -> StepRequest {
    let mut request = StepRequest::new("bench");
    request.with = with.into();
    request
}

fn run_step(setup: &Setup, request: StepRequest) {
    let outcome = setup
        .runtime
        .execute(&setup.extension, request)
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(outcome.exit_code, 0);
}

/// One no-op step: fresh store, WASI context, instantiate, `execute`, drop.
#[divan::bench]
fn step_noop(bencher: Bencher<'_, '_>) {
    let setup = setup();
    bencher
        .with_inputs(|| request(serde_json::json!({"mode": "noop"})))
        .bench_local_values(|request| run_step(setup, request));
}

/// A step that makes `n` calls to `log`.
#[divan::bench(args = [0, 1000])]
fn step_log(bencher: Bencher<'_, '_>, n: u32) {
    let setup = setup();
    bencher
        .with_inputs(|| request(serde_json::json!({"mode": "log", "count": n})))
        .bench_local_values(|request| run_step(setup, request));
}

/// Start of a cached extension: read the file, find the verified compiled artifact in the
/// disk cache, load it, check the contract and pre-instantiate.
#[divan::bench]
fn start_cached(bencher: Bencher<'_, '_>) {
    let setup = setup();
    bencher.bench_local(|| {
        let extension = setup
            .runtime
            .load(black_box(&setup.manifest), black_box(&setup.component))
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(matches!(
            extension.cache_outcome(),
            labhit_runtime::CacheOutcome::Hit
        ));
        extension
    });
}

/// The same start without a cache: the component is compiled every time.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn start_compile(bencher: Bencher<'_, '_>) {
    let setup = setup();
    let runtime = Runtime::new(RuntimeConfig {
        pooling: true,
        ..RuntimeConfig::without_cache()
    })
    .unwrap_or_else(|err| panic!("runtime: {err}"));
    bencher.bench_local(|| {
        runtime
            .load(black_box(&setup.manifest), black_box(&setup.component))
            .unwrap_or_else(|err| panic!("{err}"))
    });
}

/// Steps per iteration of `throughput_2_threads`.
const STEPS: usize = 1000;

/// `STEPS` no-op steps spread over 2 threads on one runtime; divan reports items/s.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn throughput_2_threads(bencher: Bencher<'_, '_>) {
    let setup = setup();
    bencher.counter(ItemsCount::new(STEPS)).bench_local(|| {
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..STEPS / 2 {
                        run_step(setup, request(serde_json::json!({"mode": "noop"})));
                    }
                });
            }
        });
    });
}
