//! Benchmarks of `labhit validate` on a generated 10,000-stage pipeline.
//!
//! The pipeline is a random DAG with a fixed seed (a 64-bit LCG): stage `i` waits for up to
//! three distinct earlier stages; every tenth stage uses an extension with a `with` block,
//! every seventh has a sandbox. Two measurements:
//!
//! * `check_in_process`: `labhit_protocol::pipeline::check` on the bytes (parse, model,
//!   graph checks), no I/O;
//! * `validate_process`: the whole `labhit validate FILE` process — start-up, reading the
//!   file, checking, exit — spawned from `env!("CARGO_BIN_EXE_labhit")`, which Cargo sets for
//!   benchmarks and builds with the `bench` profile (optimized), so `cargo bench` measures the
//!   release binary without any path guessing. Target: median ≤ 100 ms on two cores.
//!
//! Run with `cargo bench -p labhit-cli --bench validate`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::LazyLock;

use labhit_protocol::pipeline::{CheckOptions, check};

fn main() {
    divan::main();
}

/// Stages in the generated pipeline.
const STAGES: usize = 10_000;

/// Knuth's MMIX LCG; the high bits are the random ones.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next()).unwrap_or(0) % n
    }
}

/// The YAML of a `stages`-stage pipeline.
fn pipeline_yaml(stages: usize) -> String {
    use std::fmt::Write as _;
    let mut rng = Lcg(0x1ab_4175);
    let mut out = String::from("engine: \"1\"\npipeline:\n  name: bench\n  stages:\n");
    for i in 0..stages {
        let _ = writeln!(out, "    stage-{i}:");
        if i > 0 {
            let mut after: Vec<usize> = (0..3).map(|_| rng.below(i)).collect();
            after.sort_unstable();
            after.dedup();
            let ids: Vec<String> = after.iter().map(|j| format!("stage-{j}")).collect();
            let _ = writeln!(out, "      after: [{}]", ids.join(", "));
        }
        if i % 10 == 0 {
            let _ = writeln!(
                out,
                "      use: build/cargo@^1\n      with: {{profile: release, jobs: {}}}",
                i % 8 + 1
            );
        } else {
            let _ = writeln!(out, "      run: make target-{i}");
        }
        if i % 7 == 0 {
            let _ = writeln!(
                out,
                "      sandbox:\n        image: rust:1.95-slim\n        timeout: 30m"
            );
        }
    }
    out
}

static YAML: LazyLock<String> = LazyLock::new(|| pipeline_yaml(STAGES));

/// The generated file on disk, in a directory that lives as long as the process.
static FILE: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, YAML.as_bytes()).expect("writing the generated pipeline");
    (dir, path)
});

#[divan::bench(sample_count = 50)]
fn check_in_process(bencher: divan::Bencher<'_, '_>) {
    let bytes = YAML.as_bytes();
    assert!(check(bytes, &CheckOptions::default()).is_ok());
    bencher.bench(|| check(divan::black_box(bytes), &CheckOptions::default()));
}

#[divan::bench(sample_count = 50)]
fn validate_process(bencher: divan::Bencher<'_, '_>) {
    let path = &FILE.1;
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_labhit"))
            .arg("validate")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spawning labhit")
    };
    assert!(run().success(), "the generated pipeline must be valid");
    bencher.bench(run);
}
