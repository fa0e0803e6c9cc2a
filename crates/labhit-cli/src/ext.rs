//! `labhit ext`: work with one extension bundle (`extension.toml` beside its component).
//!
//! * [`check`]: `labhit ext check MANIFEST` proves a bundle is loadable: the manifest
//!   validates, the component compiles, exports the contract at a compatible version and
//!   links against this host, and the declared input and output schemas are valid JSON
//!   Schemas. One line per check, `✓` or `✗`.
//! * [`run`]: `labhit ext run MANIFEST --workspace DIR` executes one step through the
//!   reference runtime, streaming the step's log to stderr as it happens.
//! * [`list`]: `labhit ext list` shows what the registry
//!   ([`labhit_runtime::registry`]) finds on its search path, where each bundle came from,
//!   invalid bundles and conflicts.
//! * [`install`]: `labhit ext install BUNDLE` checks a bundle and copies it into the
//!   per-user extensions directory that every command searches by default.
//! * [`new`]: `labhit ext new CATEGORY/NAME` scaffolds a Rust or Python extension project
//!   that builds outside this repository.
//! * [`build`]: `labhit ext build [DIR]` builds such a project into a bundle, with the code
//!   `cargo xtask extensions` uses (`labhit-guest-build`).
//!
//! Both read the manifest the same way ([`read_manifest`]) and create the runtime the same
//! way ([`runtime`], the run API's single-step runtime): no pooling (one step at a time), the compile cache in its default
//! place (`$LABHIT_CACHE_DIR`, else `$XDG_CACHE_HOME/labhit/components`, else
//! `~/.cache/labhit/components`).

pub(crate) mod build;
pub(crate) mod check;
pub(crate) mod install;
pub(crate) mod list;
pub(crate) mod new;
pub(crate) mod run;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use labhit_protocol::Diagnostic;
use labhit_protocol::manifest::Manifest;
use labhit_runtime::Runtime;
use labhit_runtime::fsio::{Limit, ReadError};

use crate::files::{self, Contents};
use crate::{ColorWhen, Exit};

/// `labhit ext` subcommands.
// Parsed once per process: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check that an extension bundle loads and honours the contract.
    Check(check::Args),
    /// Run one step of an extension against a workspace directory.
    Run(run::Args),
    /// List the installed extension bundles, with invalid ones and conflicts.
    List(list::Args),
    /// Check a bundle and install it into the per-user extensions directory.
    Install(install::Args),
    /// Create a Rust or Python extension project: manifest, code, a test, a README.
    New(new::Args),
    /// Build an extension project (Rust crate or Python) into an installable bundle.
    Build(build::Args),
}

/// `--format` of `ext check` and `ext run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Lines for people.
    Human,
    /// One JSON document on stdout, for tools.
    Json,
}

impl Format {
    /// Prints `report`: as one pretty JSON document on stdout, or through `human`.
    fn print<T: serde::Serialize>(
        self,
        report: &T,
        human: impl FnOnce(&T) -> Result<()>,
    ) -> Result<()> {
        use std::io::Write as _;
        match self {
            Format::Json => {
                let text = crate::printable::json(report)?;
                writeln!(crate::stdio::raw_stdout(), "{text}")?;
                Ok(())
            }
            Format::Human => human(report),
        }
    }
}

/// The width of a table column holding `cells`, in characters.
fn column_width<'a>(cells: impl IntoIterator<Item = &'a str>) -> usize {
    cells
        .into_iter()
        .map(|cell| cell.chars().count())
        .max()
        .unwrap_or(0)
}

/// Runs an `ext` subcommand and returns the process exit code. `ext run` exits with the
/// step's own code and redacts secrets from its errors, so `ext` prints its own errors.
pub(crate) fn main(command: &Command, color: ColorWhen) -> std::process::ExitCode {
    match command {
        Command::Check(args) => fatal_to_exit(check::run(args, color), color),
        Command::List(args) => fatal_to_exit(list::run(args, color), color),
        Command::Install(args) => fatal_to_exit(install::run(args, color), color),
        Command::New(args) => fatal_to_exit(new::run(args, color), color),
        Command::Build(args) => fatal_to_exit(build::run(args, color), color),
        Command::Run(args) => run::main(args, color),
    }
}

/// The exit code of a subcommand that returns `Err` only for fatal problems.
fn fatal_to_exit(result: Result<Exit>, color: ColorWhen) -> std::process::ExitCode {
    match result {
        Ok(exit) => std::process::ExitCode::from(exit as u8),
        Err(err) => {
            let mut stderr = crate::stdio::stderr(color.choice());
            let style = anstyle::Style::new()
                .bold()
                .fg_color(Some(anstyle::AnsiColor::Red.into()));
            // Nothing sensible is left to do when stderr itself is gone.
            let _ = std::io::Write::write_fmt(
                &mut stderr,
                format_args!(
                    "labhit: {style}error{style:#}: {}\n",
                    crate::printable::printable(&crate::errors::message(&err))
                ),
            );
            std::process::ExitCode::from(Exit::Fatal as u8)
        }
    }
}

/// A manifest as read from disk: parsed, or the diagnostics that say why not.
pub(crate) struct ManifestFile {
    /// The path given.
    pub(crate) path: PathBuf,
    /// The parsed manifest, or every problem found in it.
    pub(crate) manifest: Result<Manifest, Vec<Diagnostic>>,
}

impl ManifestFile {
    /// The component path the manifest names, relative to the manifest's directory.
    pub(crate) fn component_path(&self, manifest: &Manifest) -> Result<PathBuf, String> {
        component_path(&self.path, manifest)
    }
}

/// The component of `manifest` read from `manifest_path`; `Err` when it resolves outside the
/// bundle directory (the registry's rule, [`labhit_runtime::registry::component_path`]).
pub(crate) fn component_path(manifest_path: &Path, manifest: &Manifest) -> Result<PathBuf, String> {
    labhit_runtime::registry::component_path(manifest_path, manifest)
}

/// Reads the manifest `what` names: an `extension.toml`, a bundle directory holding one, or
/// (when no such path exists) an installed extension `category/name[@req]`, resolved by the
/// registry on its search path with `extensions` first. Unreadable or unresolvable is `Err`
/// (fatal); invalid is a [`ManifestFile`] with diagnostics.
pub(crate) fn read_manifest(what: &Path, extensions: &[PathBuf]) -> Result<ManifestFile> {
    files::check_extension_dirs(extensions)?;
    if !what.exists()
        && let Some(reference) = what
            .to_str()
            .and_then(|s| s.parse::<labhit_protocol::pipeline::UseRef>().ok())
    {
        let registry = files::registry(extensions)?;
        let bundle = registry
            .resolve(&reference)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(ManifestFile {
            path: bundle.manifest_path.clone(),
            manifest: Ok(bundle.manifest.clone()),
        });
    }
    let path = what;
    let path = if path.is_dir() {
        path.join(files::MANIFEST_NAME)
    } else {
        path.to_owned()
    };
    let manifest = match files::read(&path, Limit::MANIFEST)? {
        Contents::Bytes(bytes) => Manifest::from_toml_bytes(&bytes),
        Contents::TooLarge { size } => {
            bail!(
                "{}",
                ReadError::TooLarge {
                    path,
                    limit: Limit::MANIFEST,
                    size
                }
            )
        }
    };
    Ok(ManifestFile { path, manifest })
}

/// The runtime the `ext` commands use (see the module documentation):
/// [`labhit_runtime::run::step_runtime`].
pub(crate) fn runtime() -> Result<Runtime> {
    labhit_runtime::run::step_runtime().map_err(|e| anyhow::anyhow!("{e}"))
}
