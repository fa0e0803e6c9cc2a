//! `labhit ext build [DIR]`: build an extension project (a Rust crate or a Python project)
//! from anywhere into an installable bundle, on the code `cargo xtask extensions` uses
//! ([`labhit_guest_build::project`]).
//!
//! A Rust crate is built for `wasm32-wasip2` with the size-optimised `wasm` profile; its
//! `[inputs]` is checked against the schema derived from its `Config` type (the SDK's schema
//! hook, `cargo test --lib` natively) or, when the manifest has none, written into the
//! bundle from it; likewise `[outputs]` against the `Outputs` type of an extension that
//! declares `labhit_sdk::TypedOutputs`. A Python project is built with `componentize-py` from its `wit/`. The
//! bundle is `OUT/<category>/<name>/`. Progress goes to stderr; stdout has the summary (one
//! line, or one JSON document with `--format json`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use labhit_guest_build::project::{Options, Project};
use labhit_guest_build::{Builder, Error, python};
use serde::Serialize;

use super::Format;
use crate::{ColorWhen, Exit};

/// The environment variable naming the `componentize-py` to use.
pub(crate) const COMPONENTIZE_PY_ENV: &str = "LABHIT_COMPONENTIZE_PY";

/// Arguments of `labhit ext build`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit ext build                               the project in the current directory\n",
    "  labhit ext build ext/hello --out dist          bundle into dist/<category>/<name>/\n",
    "  labhit ext build --format json | jq -r .bundle\n",
    "\n",
    "A project is a directory with extension.toml beside Cargo.toml (Rust, built for\n",
    "wasm32-wasip2; `rustup target add wasm32-wasip2`) or beside app.py (Python, built with\n",
    "componentize-py from the project's `wit/`). For a Rust crate the JSON Schema of its\n",
    "`Config` type (labhit-sdk's schema hook, run natively with `cargo test --lib`) is\n",
    "compared with `[inputs]` of extension.toml: a disagreement fails the build and names the\n",
    "field; without `[inputs]` the derived schema is written into the bundle's manifest.\n",
    "Likewise `[outputs]` against the `Outputs` type of an extension implementing\n",
    "`labhit_sdk::TypedOutputs` (a disagreement names the output).\n",
    "\n",
    "Cargo's target directory: `--target-dir`, else `CARGO_TARGET_DIR`, else DIR/target.\n",
    "componentize-py: `--componentize-py`, else `LABHIT_COMPONENTIZE_PY`, else `PATH`.\n",
    "\n",
    "JSON output: {\"extension\", \"version\", \"language\": \"rust\"|\"python\", \"component\",\n",
    "  \"size\", \"bundle\", \"inputs\": \"checked\"|\"derived\"|\"unchecked\", \"outputs\": (the same),\n",
    "  \"note\", \"elapsed_ms\"}\n",
    "\n",
    "Exit codes:\n",
    "  0  built and bundled\n",
    "  1  the project has problems: invalid manifest, compile error, `[inputs]` disagreeing\n",
    "     with `Config` or `[outputs]` with `Outputs`, a component of the wrong contract\n",
    "  2  bad usage\n",
    "  3  fatal: not a project, a missing toolchain, a file that cannot be read or written\n",
))]
pub(crate) struct Args {
    /// The project directory
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,

    /// Where to write the bundle (as OUT/<category>/<name>/); default DIR/target/bundle
    #[arg(long, value_name = "OUT")]
    out: Option<PathBuf>,

    /// Cargo's target directory (shared between projects to build the SDK once)
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,

    /// The `componentize-py` program for Python projects
    #[arg(long, value_name = "PATH")]
    componentize_py: Option<PathBuf>,

    /// Output format of the summary
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// The JSON summary.
#[derive(Debug, Serialize)]
struct Summary {
    extension: String,
    version: String,
    language: &'static str,
    component: PathBuf,
    size: u64,
    bundle: PathBuf,
    inputs: &'static str,
    outputs: &'static str,
    note: Option<String>,
    elapsed_ms: u128,
}

/// Runs `labhit ext build`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    let mut err = crate::stdio::stderr(color.choice());
    let project = match Project::load(&args.dir) {
        Ok(project) => project,
        Err(error @ Error::Manifest { .. }) => {
            writeln!(err, "labhit: error: {error}")?;
            return Ok(Exit::Problems);
        }
        Err(error) => anyhow::bail!("{error}"),
    };
    let target_dir = args
        .target_dir
        .clone()
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| args.dir.join("target"));
    let target_dir = std::path::absolute(&target_dir).unwrap_or(target_dir);
    let mut builder = Builder::new(&target_dir);
    builder.verbose = true;
    let options = Options {
        builder,
        python: python_toolchain(args, &args.dir),
        python_out: target_dir.join("python"),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join("target").join("bundle"));
    let out = std::path::absolute(&out).unwrap_or(out);
    let bundled = match project.build(&options, &out, &mut |line| {
        // Progress only; a closed stderr must not stop the build.
        let _ = writeln!(err, "labhit: {line}");
    }) {
        Ok(bundled) => bundled,
        Err(error) => {
            let fatal = matches!(
                error,
                Error::Io { .. } | Error::NoPythonToolchain { .. } | Error::NotAProject { .. }
            );
            if fatal {
                anyhow::bail!("{error}");
            }
            // Line by line: cargo's and componentize-py's output come with it.
            let text = error.to_string();
            let mut lines = text.lines();
            writeln!(
                err,
                "labhit: error: {}",
                crate::printable::printable(lines.next().unwrap_or_default())
            )?;
            for line in lines {
                writeln!(err, "{}", crate::printable::printable(line))?;
            }
            return Ok(Exit::Problems);
        }
    };
    let manifest = &project.extension.manifest;
    let summary = Summary {
        extension: project.extension.id(),
        version: manifest.extension.version.to_string(),
        language: project.language.as_str(),
        component: bundled.component,
        size: bundled.size,
        bundle: bundled.bundle,
        inputs: bundled.inputs.as_str(),
        outputs: bundled.outputs.as_str(),
        note: bundled.note,
        elapsed_ms: bundled.elapsed.as_millis(),
    };
    args.format.print(&summary, |s| {
        let mut out = crate::stdio::stdout(color.choice());
        writeln!(
            out,
            "built {}@{} ({}, {} bytes, inputs {}, outputs {}) in {:.1}s: {}",
            s.extension,
            s.version,
            s.language,
            s.size,
            s.inputs,
            s.outputs,
            bundled.elapsed.as_secs_f64(),
            s.bundle.display()
        )?;
        Ok(())
    })?;
    Ok(Exit::Clean)
}

/// The Python toolchain: `--componentize-py`, `$LABHIT_COMPONENTIZE_PY` or `componentize-py`
/// on `PATH`, with the project's `wit/`; `Err` says what is missing and how to get it.
fn python_toolchain(args: &Args, dir: &Path) -> Result<python::Toolchain, String> {
    let componentize_py = args
        .componentize_py
        .clone()
        .or_else(|| {
            std::env::var_os(COMPONENTIZE_PY_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| on_path("componentize-py"))
        .ok_or_else(|| {
            format!(
                "no `componentize-py` found: install it (`pip install componentize-py==0.25.1`), or name it with `--componentize-py PATH` or `{COMPONENTIZE_PY_ENV}`"
            )
        })?;
    if !componentize_py.is_file() {
        return Err(format!(
            "`{}` (the componentize-py to use) does not exist",
            componentize_py.display()
        ));
    }
    let wit = dir.join("wit");
    if !wit.is_dir() {
        return Err(format!(
            "`{}` is missing: a Python project carries the contract's WIT there (`labhit ext new --lang python` writes it)",
            wit.display()
        ));
    }
    Ok(python::Toolchain {
        componentize_py,
        wit,
        stamp: None,
    })
}

/// `program` in a directory of `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
