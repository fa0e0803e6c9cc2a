//! `cargo xtask example [--runs N]`: builds the example extensions (exactly as
//! `cargo xtask extensions` does) and runs `examples/pipeline.yaml` end to end:
//!
//! ```sh
//! labhit run examples/pipeline.yaml --extensions target/extensions --approve deploy
//! ```
//!
//! from the repository root, through `cargo run -p labhit-cli`. The `deploy` stage's gate
//! needs the approval given here and the `main-only` policy of `.labhit/policies.toml`, so the
//! checkout must be on `main` (or pass the ref through `LABHIT_EXAMPLE_REF`, which becomes
//! `--ref`). With `--runs 2` the pipeline runs twice and the wall time of each run is printed:
//! the second finds the `run:` stages `prepare` (local executor) and `bundle` (the `exec/sh`
//! executor extension) in the snapshot cache.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

/// Builds the extensions, then runs the example pipeline `runs` times.
pub(crate) fn run(root: &Path, runs: u32) -> Result<()> {
    crate::extensions::run(root, None, false)?;
    let mut times = Vec::new();
    for i in 1..=runs.max(1) {
        eprintln!("running examples/pipeline.yaml (run {i})");
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command.current_dir(root).args([
            "run",
            "--quiet",
            "-p",
            "labhit-cli",
            "--bin",
            "labhit",
            "--",
            "run",
            "examples/pipeline.yaml",
            "--extensions",
            "target/extensions",
            "--approve",
            "deploy",
        ]);
        if let Ok(git_ref) = std::env::var("LABHIT_EXAMPLE_REF") {
            command.args(["--ref", &git_ref]);
        }
        let start = Instant::now();
        let status = command.status().context("cannot run cargo")?;
        times.push(start.elapsed());
        if !status.success() {
            bail!("`labhit run examples/pipeline.yaml` failed ({status})");
        }
    }
    for (i, time) in times.iter().enumerate() {
        println!(
            "run {}: {:.2}s (including `cargo run`)",
            i + 1,
            time.as_secs_f64()
        );
    }
    Ok(())
}
