//! `labhit ext install BUNDLE`: copy a checked bundle into the per-user extensions directory.
//!
//! The per-user directory is the registry's default directory
//! ([`labhit_runtime::registry::default_dir`]: `$XDG_DATA_HOME/labhit/extensions`, else
//! `~/.local/share/labhit/extensions`), the last group of the search path every command uses
//! (`--extensions DIR`, then `LABHIT_EXTENSIONS`, then this directory). A bundle is
//! installed as `<dir>/<category>/<name>/<version>/`, holding `extension.toml` and the
//! component it names, so several versions live side by side.
//!
//! Before anything is written the bundle goes through every check of `labhit ext check`; a
//! bundle that fails one is refused. The same `category/name@version` already installed is
//! refused unless `--force` replaces it. The copy is assembled in a hidden directory next to
//! its destination (discovery skips hidden directories) and renamed into place, so a
//! reader never sees half a bundle.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use labhit_protocol::manifest::Manifest;
use labhit_runtime::fsio::{self, Limit};
use labhit_runtime::registry::{self, Origin, Registry, SearchDir};

use super::check::{self, Status};
use crate::{ColorWhen, Exit, files};

/// Arguments of `labhit ext install`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Installs into the per-user extensions directory: `$XDG_DATA_HOME/labhit/extensions`\n",
    "(default `~/.local/share/labhit/extensions`), as `<category>/<name>/<version>/`.\n",
    "`labhit run`, `labhit validate`, `labhit serve` and `labhit ext list|check|run` search it by\n",
    "default. Search order (a `use` resolves in the first group holding a fitting version):\n",
    "  1. every `--extensions DIR`, in order\n",
    "  2. the `:`-separated directories of `LABHIT_EXTENSIONS`, in order\n",
    "  3. the per-user directory\n",
    "The same `category/name@version` found twice is a conflict: the first one found is used\n",
    "and `labhit ext list` reports it.\n",
    "\n",
    "The bundle is checked first (every check of `labhit ext check`) and refused when a check\n",
    "fails; installing a version that is already installed is refused unless `--force`.\n",
    "\n",
    "Examples:\n",
    "  labhit ext install target/extensions/util/checksum\n",
    "  labhit ext install my-ext/extension.toml --force\n",
    "\n",
    "Exit codes:\n",
    "  0  installed\n",
    "  1  refused: a check failed, or the version is already installed (use --force)\n",
    "  2  bad usage\n",
    "  3  fatal: the bundle is unreadable, or the per-user directory cannot be written\n",
))]
pub(crate) struct Args {
    /// The bundle directory (holding `extension.toml` and its component), or its
    /// `extension.toml`
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,

    /// Replace the same version when it is already installed
    #[arg(long)]
    force: bool,
}

/// Runs `labhit ext install`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    if !args.bundle.exists() {
        bail!(
            "`{}` does not exist; give a bundle directory (holding `{}`) or its manifest",
            args.bundle.display(),
            files::MANIFEST_NAME
        );
    }
    let file = super::read_manifest(&args.bundle, &[])?;
    let report = check::check_bundle(&file)?;
    let mut err = crate::stdio::stderr(color.choice());
    let manifest = match (&file.manifest, report.ok) {
        (Ok(manifest), true) => manifest,
        _ => {
            check::print_human(&report, color)?;
            let failed: Vec<&str> = report
                .checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(|c| c.name)
                .collect();
            writeln!(
                err,
                "labhit: error: not installed: `{}` fails the check(s) {}; fix the bundle (`labhit ext check` shows the same)",
                file.path.display(),
                failed.join(", ")
            )?;
            return Ok(Exit::Problems);
        }
    };
    let Some(root) = registry::default_dir() else {
        bail!(
            "cannot tell where the per-user extensions directory is: set `XDG_DATA_HOME` or `HOME`"
        );
    };
    let id = format!(
        "{}@{}",
        manifest.qualified_name(),
        manifest.extension.version
    );
    let dest = root
        .join(manifest.extension.category.as_str())
        .join(manifest.extension.name.as_str())
        .join(manifest.extension.version.to_string());

    // The same version anywhere in the per-user directory (installed by hand, too).
    let installed = Registry::discover_in(vec![SearchDir {
        path: root.clone(),
        origin: Origin::Default,
    }]);
    let mut replaced = false;
    for bundle in installed.bundles().iter().filter(|b| b.id() == id) {
        let at = bundle.dir();
        if !args.force {
            writeln!(
                err,
                "labhit: error: `{id}` is already installed at `{}`; pass `--force` to replace it",
                at.display()
            )?;
            return Ok(Exit::Problems);
        }
        if !same_dir(at, &dest) {
            writeln!(
                err,
                "labhit: error: `{id}` is already installed at `{}`, which `labhit ext install` did not create; remove it by hand",
                at.display()
            )?;
            return Ok(Exit::Problems);
        }
        replaced = true;
    }
    let component = file
        .component_path(manifest)
        .map_err(|reason| anyhow::anyhow!("{reason}"))?;
    copy_bundle(&file.path, &component, manifest, &dest)?;

    let mut out = crate::stdio::stdout(color.choice());
    writeln!(
        out,
        "{} `{id}` into {}",
        if replaced { "replaced" } else { "installed" },
        dest.display()
    )?;
    // Warn when something earlier on the search path shadows what was just installed.
    let everywhere = Registry::discover(&[]);
    for conflict in everywhere.conflicts().iter().filter(|c| c.id == id) {
        writeln!(
            err,
            "labhit: warning: {}",
            crate::printable::printable(&conflict.to_string())
        )?;
    }
    Ok(Exit::Clean)
}

/// Copies `extension.toml` and the component into `dest`: assembled in a hidden sibling,
/// then renamed into place (replacing an existing `dest`).
fn copy_bundle(
    manifest_path: &Path,
    component: &Path,
    manifest: &Manifest,
    dest: &Path,
) -> Result<()> {
    let parent = dest
        .parent()
        .context("the installation directory has no parent")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create `{}`", parent.display()))?;
    let leaf = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{leaf}.install-{}", std::process::id()));
    let old = parent.join(format!(".{leaf}.old-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let manifest_bytes = fsio::read(manifest_path, Limit::MANIFEST)?;
        let component_bytes =
            fsio::read(component, Limit::component(fsio::DEFAULT_COMPONENT_BYTES))?;
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("cannot create `{}`", staging.display()))?;
        write(&staging.join(files::MANIFEST_NAME), &manifest_bytes)?;
        write(
            &staging.join(&manifest.extension.component),
            &component_bytes,
        )?;
        if dest.exists() {
            std::fs::rename(dest, &old)
                .with_context(|| format!("cannot move `{}` aside", dest.display()))?;
        }
        std::fs::rename(&staging, dest)
            .with_context(|| format!("cannot install into `{}`", dest.display()))?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    if old.exists() {
        if result.is_err() && !dest.exists() {
            // Put the previous installation back.
            let _ = std::fs::rename(&old, dest);
        }
        let _ = std::fs::remove_dir_all(&old);
    }
    result
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write `{}`", path.display()))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
