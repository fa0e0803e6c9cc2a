//! `labhit ext list`: the extension bundles a `use:` can resolve to, from the registry's
//! search path (`--extensions DIR`…, then `LABHIT_EXTENSIONS`, then the default directory),
//! where each bundle came from, and every invalid bundle and every conflict, each with its
//! path and reason.

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
    "directories of `LABHIT_EXTENSIONS`, then the per-user directory\n",
    "`$XDG_DATA_HOME/labhit/extensions` (default `~/.local/share/labhit/extensions`, where\n",
    "`labhit ext install` puts bundles). A `use` resolves in the first group holding a fitting\n",
    "version. A bundle is a directory holding `extension.toml` and the component it names.\n",
    "When the same `category/name@version` is installed twice, the first one found wins and\n",
    "the conflict is reported. Each bundle is shown with the group it came from.\n",
    "\n",
    "Examples:\n",
    "  labhit ext list --extensions target/extensions\n",
    "  LABHIT_EXTENSIONS=/opt/labhit/ext labhit ext list --format json\n",
    "\n",
    "JSON output: {\"searched\": [{\"path\", \"origin\"}], \"bundles\": [{\"id\", \"origin\", \"name\",\n",
    "  \"version\", \"contract\", \"format\", \"manifest\", \"component\"}], \"invalid\": [{\"path\",\n",
    "  \"reason\"}], \"conflicts\": [{\"id\", \"used\", \"shadowed\": [path]}]}; \"contract\" is the\n",
    "  contract version the component exports (null when it cannot be read)\n",
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
    /// Which group of the search path it was found in: `explicit`, `env` or `default`.
    origin: String,
    name: String,
    version: String,
    /// The contract version the component exports (`None` when it cannot be read).
    contract: Option<String>,
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
                origin: origin_name(d.origin).to_owned(),
            })
            .collect(),
        bundles: registry
            .bundles()
            .iter()
            .zip(registry.origins())
            .map(|(b, origin)| Bundle {
                id: b.id(),
                origin: origin_name(*origin).to_owned(),
                name: b.name(),
                version: b.manifest.extension.version.to_string(),
                contract: b.contract_version().ok().map(|v| v.to_string()),
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

/// How an origin is named in the JSON output.
fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Explicit => "explicit",
        Origin::Env => "env",
        Origin::Default => "default",
    }
}

/// How an origin is named in the human output.
fn origin_text(origin: &str) -> &'static str {
    match origin {
        "explicit" => "from --extensions",
        "env" => "from LABHIT_EXTENSIONS",
        _ => "per-user directory",
    }
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
            "{bold}{}{bold:#}{:pad$}  {}  {dim}{}, contract {}, {}{dim:#}",
            bundle.id,
            "",
            bundle.manifest,
            bundle.format,
            bundle.contract.as_deref().unwrap_or("unreadable"),
            origin_text(&bundle.origin)
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
