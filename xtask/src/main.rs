//! `cargo xtask`: repository automation that would be awkward as shell scripts.
//!
//! * `cargo xtask codegen` regenerates every generated file of the repository;
//! * `cargo xtask codegen --check` fails with a diff when any of them is stale;
//! * `cargo xtask conformance` checks every golden vector with the independent Python decoder
//!   that reads only `schema/wire/borsh-layout.json`;
//! * `cargo xtask extensions` builds every example extension into an installable bundle;
//! * `cargo xtask example` builds them and runs `examples/pipeline.yaml` end to end;
//! * `cargo xtask fuzz [--smoke] [--time SECS] [TARGET...]` builds the cargo-fuzz targets of
//!   `fuzz/`, seeds them from the test corpus and runs each for a fixed time;
//! * `cargo xtask compat [--no-rust-api]` checks the working tree against the newest released
//!   contract baseline in `compat/` (WIT semver, `buf breaking`, golden vectors, Rust API);
//!   `cargo xtask compat freeze` writes the baseline of the current contract version;
//! * `cargo xtask ci` runs every check CI runs.

mod ci;
mod codegen;
mod compat;
mod conformance;
mod doc_examples;
mod example;
mod extensions;
mod fuzz;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// LabHit repository automation.
#[derive(Parser)]
#[command(name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerate JSON Schemas, the borsh layout, gRPC stubs, golden vectors and copied WIT.
    Codegen {
        /// Do not write anything; fail with a diff if a generated file is stale.
        #[arg(long)]
        check: bool,
    },
    /// Decode and re-encode every golden vector with `tools/conformance/borsh_check.py`, an
    /// independent Python implementation that reads only `schema/wire/borsh-layout.json`.
    Conformance,
    /// Build every extension under `extensions/` into an installable bundle
    /// (`target/extensions/<category>/<name>/`: `extension.toml` + the `.wasm` component).
    Extensions {
        /// Where to write the bundles (default `target/extensions`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also build every extension through the wasm32-wasip1 route (core module +
        /// preview1 adapter); by default only the first one is.
        #[arg(long)]
        p1: bool,
    },
    /// Build the example extensions and run `examples/pipeline.yaml` end to end with
    /// `labhit run … --extensions target/extensions --approve deploy`.
    Example {
        /// Run the pipeline this many times (the second run finds `prepare` cached).
        #[arg(long, default_value_t = 1)]
        runs: u32,
    },
    /// Build the cargo-fuzz targets of `fuzz/` (nightly), seed their corpora from the test
    /// corpus and run each for a fixed time; fails with the input's path on a crash.
    Fuzz {
        /// Run each target for a short fixed time (what CI does).
        #[arg(long, conflicts_with = "time")]
        smoke: bool,
        /// Seconds per target (default 300, or 20 with `--smoke`).
        #[arg(long, value_name = "SECS")]
        time: Option<u64>,
        /// Targets to run (default: all of pipeline, manifest, policy, borsh, component).
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Check the working tree against the newest contract baseline in `compat/`: WIT
    /// semver, `buf breaking`, baseline golden vectors against the current schemas and types,
    /// and cargo-semver-checks of the contract crates.
    Compat {
        #[command(subcommand)]
        action: Option<CompatAction>,
        /// Skip the Rust API check (cargo-semver-checks; slow, builds rustdoc JSON).
        #[arg(long)]
        no_rust_api: bool,
    },
    /// Run every CI check: codegen drift, rustfmt, clippy, buf lint, cargo-deny, all tests,
    /// the example pipeline and a fuzz smoke run.
    Ci {
        /// Skip the slow `cargo package` check.
        #[arg(long)]
        quick: bool,
    },
}

/// `cargo xtask compat` subcommands.
#[derive(Subcommand)]
enum CompatAction {
    /// Freeze the working tree's contract version as a baseline under `compat/<version>/`
    /// (WIT, proto image, schemas, vectors, example components, rustdoc JSON) and print the
    /// digest to pin in `xtask/src/compat/baseline.rs`.
    Freeze {
        /// Replace an existing baseline of the same version (only before it is released).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Codegen { check } => {
            let mode = if check {
                codegen::Mode::Check
            } else {
                codegen::Mode::Write
            };
            codegen::run(&project_root(), mode)
        }
        Command::Conformance => conformance::run(&project_root()),
        Command::Extensions { out, p1 } => extensions::run(&project_root(), out, p1),
        Command::Example { runs } => example::run(&project_root(), runs),
        Command::Fuzz {
            smoke,
            time,
            targets,
        } => {
            let secs = time.unwrap_or(if smoke {
                fuzz::SMOKE_SECS
            } else {
                fuzz::DEFAULT_SECS
            });
            fuzz::run(&project_root(), &fuzz::Options { secs, targets })
        }
        Command::Compat {
            action,
            no_rust_api,
        } => match action {
            Some(CompatAction::Freeze { force }) => {
                compat::baseline::freeze(&project_root(), force)
            }
            None => compat::run(
                &project_root(),
                compat::Checks {
                    rust_api: !no_rust_api,
                },
            ),
        },
        Command::Ci { quick } => ci::run(&project_root(), quick),
    }
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn project_root() -> PathBuf {
    let dir = env!("CARGO_MANIFEST_DIR");
    PathBuf::from(dir)
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(dir))
}
