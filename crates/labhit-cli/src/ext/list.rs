//! `labhit ext list`: the extension bundles a `use:` can resolve to, from the registry's
//! search path (`--extensions DIR`…, then `LABHIT_EXTENSIONS`, then the default directory),
//! with every invalid bundle and every conflict, each with its path and reason.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use labhit_runtime::registry::Origin;
use serde::Serialize;

use super::Format;
use crate::{ColorWhen, Exit};

/// Arguments of `labhit ext list`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Search path, in precedence order: every `--extensions DIR`, then the `:`-separated\n",
    "directories of `LABHIT_EXTENSIONS`, then `$XDG_DATA_HOME/labhit/extensions` (default\n",
    "`~/.local/share/labhit/extensions`). A bundle is a directory holding `extension.toml` and\n",
    "the component it names. When the same `category/name@version` is installed twice, the\n",
    "first one found wins and the conflict is reported.\n",
    "\n",
    "Examples:\n",
    "  labhit ext list --extensions target/extensions\n",
    "  LABHIT_EXTENSIONS=/opt/labhit/ext labhit ext list --format json\n",
    "\n",
    "JSON output: {\"searched\": [{\"path\", \"origin\"}], \"bundles\": [{\"id\", \"name\", \"version\",\n",
    "  \"format\", \"manifest\", \"component\"}], \"invalid\": [{\"path\", \"reason\"}],\n",
    "  \"conflicts\": [{\"id\", \"used\", \"shadowed\": [path]}]}\n",
    "\n",
    "Exit codes:\n",
    "  0  every bundle found is valid and unique\n",
    "  1  an invalid bundle or a conflict was found\n",
    "  2  bad usage\n",
    "  3  fatal: an `--extensions` directory does not exist or cannot be read\n",
))]
pub(crate) struct Args {
    /// A directory of extension bundles, searched before the others; repeatable
    #[arg(long = "extensions", value_name = "DIR")]
    extensions: Vec<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(Debug, Serialize)]
struct Report {
    searched: Vec<Searched>,
    bundles: Vec<Bundle>,
    invalid: Vec<Invalid>,
    conflicts: Vec<Conflict>,
}

#[derive(Debug, Serialize)]
struct Searched {
    path: String,
    origin: String,
}

#[derive(Debug, Serialize)]
struct Bundle {
    id: String,
    name: String,
    version: String,
    format: String,
    manifest: String,
    component: String,
}

#[derive(Debug, Serialize)]
struct Invalid {
    path: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Conflict {
    id: String,
    used: String,
    shadowed: Vec<String>,
    /// The registry's own sentence for it (also printed by `labhit run`).
    #[serde(skip)]
    text: String,
}

/// Runs `labhit ext list`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    let registry = crate::files::registry(&args.extensions)?;
    let report = Report {
        searched: registry
            .searched()
            .iter()
            .map(|d| Searched {
                path: d.path.display().to_string(),
                origin: match d.origin {
                    Origin::Explicit => "explicit",
                    Origin::Env => "env",
                    Origin::Default => "default",
                }
                .to_owned(),
            })
            .collect(),
        bundles: registry
            .bundles()
            .iter()
            .map(|b| Bundle {
                id: b.id(),
                name: b.name(),
                version: b.manifest.extension.version.to_string(),
                format: b.format.to_string(),
                manifest: b.manifest_path.display().to_string(),
                component: b.component_path.display().to_string(),
            })
            .collect(),
        invalid: registry
            .invalid()
            .iter()
            .map(|i| Invalid {
                path: i.path.display().to_string(),
                reason: i.reason.clone(),
            })
            .collect(),
        conflicts: registry
            .conflicts()
            .iter()
            .map(|c| Conflict {
                id: c.id.clone(),
                used: c.used.display().to_string(),
                shadowed: c.shadowed.iter().map(|p| p.display().to_string()).collect(),
                text: c.to_string(),
            })
            .collect(),
    };
    args.format
        .print(&report, |report| print_human(report, color))?;
    Ok(
        if report.invalid.is_empty() && report.conflicts.is_empty() {
            Exit::Clean
        } else {
            Exit::Problems
        },
    )
}

fn print_human(report: &Report, color: ColorWhen) -> Result<()> {
    use anstyle::{AnsiColor, Style};
    let mut out = crate::stdio::stdout(color.choice());
    let bold = Style::new().bold();
    let red = Style::new().bold().fg_color(Some(AnsiColor::Red.into()));
    let yellow = Style::new().bold().fg_color(Some(AnsiColor::Yellow.into()));
    let dim = Style::new().dimmed();
    if report.bundles.is_empty() {
        writeln!(out, "no extensions found")?;
    }
    let width = super::column_width(report.bundles.iter().map(|b| b.id.as_str()));
    for bundle in &report.bundles {
        let pad = width - bundle.id.chars().count();
        writeln!(
            out,
            "{bold}{}{bold:#}{:pad$}  {}  {dim}{}{dim:#}",
            bundle.id, "", bundle.manifest, bundle.format
        )?;
    }
    for conflict in &report.conflicts {
        writeln!(out, "{yellow}conflict{yellow:#}: {}", conflict.text)?;
    }
    for invalid in &report.invalid {
        writeln!(
            out,
            "{red}invalid{red:#}: {}: {}",
            invalid.path, invalid.reason
        )?;
    }
    let searched: Vec<String> = report
        .searched
        .iter()
        .map(|s| format!("{} ({})", s.path, s.origin))
        .collect();
    writeln!(out, "{dim}searched: {}{dim:#}", searched.join(", "))?;
    Ok(())
}
