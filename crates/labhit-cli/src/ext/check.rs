//! `labhit ext check MANIFEST`: is this bundle something a LabHit host can run?
//!
//! Checks, in order (a check that depends on a failed one is skipped, never guessed):
//!
//! | check | passes when |
//! |---|---|
//! | `manifest` | `extension.toml` parses and validates |
//! | `component` | the component file exists, is WebAssembly (a component, or a `wasm32-wasip1` core module, which is adapted) and compiles |
//! | `exports` | it exports `labhit:extension/pipeline-step` |
//! | `contract` | the contract version in that export, and the manifest's `contract` requirement, are compatible with this host |
//!
//! `exports` and `contract` are read from the component's export names *before* it is
//! compiled (`labhit_bundle`): a component of the wrong contract is refused in milliseconds
//! whatever its size, and nothing is stored in the compile cache for it.
//! | `links` | it imports nothing this host does not provide |
//! | `limits` | the manifest's memory limit is within this host's maximum |
//! | `inputs`, `outputs` | the declared JSON Schemas are valid (2020-12 unless `$schema` says otherwise) |

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use labhit_protocol::manifest::Manifest;
use labhit_protocol::pipeline::{ByteSize, DurationSpec};
use labhit_runtime::LoadErrorKind;
use labhit_runtime::contracts::SUPPORTED;
use serde::Serialize;

use super::{Format, ManifestFile, read_manifest};
use crate::{ColorWhen, Exit};

/// Arguments of `labhit ext check`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit ext check target/extensions/util/checksum/extension.toml\n",
    "  labhit ext check target/extensions/util/checksum          (the bundle directory)\n",
    "  labhit ext check util/checksum@^0.1 --extensions target/extensions   (an installed one)\n",
    "  labhit ext check ext/extension.toml --format json | jq '.checks[] | select(.status != \"pass\")'\n",
    "\n",
    "Checks: manifest, component (loads and compiles; wasip1 modules are adapted), exports\n",
    "(`labhit:extension/pipeline-step`), contract (version compatible with this host), links\n",
    "(imports only what the host provides), limits, inputs and outputs (valid JSON Schemas).\n",
    "A check that depends on a failed one is reported as skipped.\n",
    "\n",
    "JSON output: {\"manifest\", \"extension\": string|null, \"version\": string|null, \"ok\": bool,\n",
    "  \"checks\": [{\"name\", \"status\": \"pass\"|\"fail\"|\"skip\", \"message\"}]}\n",
    "\n",
    "Exit codes:\n",
    "  0  every check passed\n",
    "  1  a check failed\n",
    "  2  bad usage\n",
    "  3  fatal: the manifest is missing or unreadable, or the runtime could not start\n",
))]
pub(crate) struct Args {
    /// The bundle's `extension.toml`, the directory holding it, or an installed extension
    /// `category/name[@req]` (newest matching version on the search path; see `ext list`)
    #[arg(value_name = "MANIFEST")]
    manifest: PathBuf,

    /// A directory of extension bundles to search first when MANIFEST is `category/name`;
    /// repeatable
    #[arg(long = "extensions", value_name = "DIR")]
    extensions: Vec<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Pass,
    Fail,
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    /// `manifest`, `component`, …
    pub(crate) name: &'static str,
    /// Pass, fail or skip.
    pub(crate) status: Status,
    /// What was found.
    pub(crate) message: String,
}

impl Check {
    fn pass(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Pass,
            message: message.into(),
        }
    }
    fn fail(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            message: message.into(),
        }
    }
    fn skip(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Skip,
            message: message.into(),
        }
    }
}

/// The whole report (also the JSON document).
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    manifest: String,
    extension: Option<String>,
    version: Option<String>,
    /// The contract version the component exports, when it could be read.
    contract: Option<String>,
    /// The contract versions this host runs, e.g. `>=0.1, <0.3`.
    supported: String,
    /// Whether every check passed.
    pub(crate) ok: bool,
    /// Every check, in order.
    pub(crate) checks: Vec<Check>,
}

/// Runs `labhit ext check`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    let file = read_manifest(&args.manifest, &args.extensions)?;
    let report = check_bundle(&file)?;
    args.format
        .print(&report, |report| print_human(report, color))?;
    Ok(if report.ok {
        Exit::Clean
    } else {
        Exit::Problems
    })
}

/// Every check of the bundle whose manifest `file` is (also what `ext install` runs before
/// installing). `Err` only when the runtime cannot start.
pub(crate) fn check_bundle(file: &ManifestFile) -> Result<Report> {
    let mut checks = Vec::new();
    let mut contract = None;
    let (extension, version) = match &file.manifest {
        Err(diagnostics) => {
            let message = diagnostics
                .iter()
                .map(|d| format!("{}:{d}", file.path.display()))
                .collect::<Vec<_>>()
                .join("\n");
            checks.push(Check::fail("manifest", message));
            for name in [
                "component",
                "exports",
                "contract",
                "links",
                "limits",
                "inputs",
                "outputs",
            ] {
                checks.push(Check::skip(name, "the manifest is invalid"));
            }
            (None, None)
        }
        Ok(manifest) => {
            checks.push(Check::pass(
                "manifest",
                format!(
                    "{}@{} is valid",
                    manifest.qualified_name(),
                    manifest.extension.version
                ),
            ));
            let runtime = super::runtime()?;
            match file.component_path(manifest) {
                Ok(component) => {
                    checks.extend(component_checks(
                        &runtime,
                        manifest,
                        &component,
                        &mut contract,
                    ));
                }
                Err(reason) => checks.push(Check::fail("component", reason)),
            }
            checks.push(schema_check("inputs", "input", manifest.inputs_schema()));
            checks.push(schema_check(
                "outputs",
                "output",
                manifest
                    .outputs
                    .as_ref()
                    .map(|m| labhit_protocol::Value::Object(m.clone()).to_json()),
            ));
            (
                Some(manifest.qualified_name()),
                Some(manifest.extension.version.to_string()),
            )
        }
    };
    let ok = checks.iter().all(|c| c.status == Status::Pass);
    Ok(Report {
        manifest: file.path.display().to_string(),
        extension,
        version,
        contract,
        supported: SUPPORTED.to_string(),
        ok,
        checks,
    })
}

pub(crate) fn print_human(report: &Report, color: ColorWhen) -> Result<()> {
    use anstyle::{AnsiColor, Style};
    let mut out = crate::stdio::stdout(color.choice());
    let green = Style::new().fg_color(Some(AnsiColor::Green.into())).bold();
    let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    let dim = Style::new().dimmed();
    writeln!(out, "checking {}", report.manifest)?;
    for check in &report.checks {
        let (mark, style) = match check.status {
            Status::Pass => ("✓", green),
            Status::Fail => ("✗", red),
            Status::Skip => ("-", dim),
        };
        let mut lines = check.message.lines();
        let first = lines.next().unwrap_or_default();
        let skipped = if check.status == Status::Skip {
            "skipped: "
        } else {
            ""
        };
        writeln!(
            out,
            "  {style}{mark}{style:#} {:<10} {skipped}{first}",
            check.name
        )?;
        for line in lines {
            writeln!(out, "    {:<10} {line}", "")?;
        }
    }
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    if failed == 0 {
        writeln!(
            out,
            "{green}all {} checks passed{green:#}",
            report.checks.len()
        )?;
    } else {
        let skipped = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Skip)
            .count();
        writeln!(
            out,
            "{red}{failed} of {} checks failed{red:#}{}",
            report.checks.len(),
            if skipped > 0 {
                format!(", {skipped} skipped")
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

/// `component`, `exports`, `contract`, `links` and `limits`, from one load.
fn component_checks(
    runtime: &labhit_runtime::Runtime,
    manifest: &Manifest,
    component: &std::path::Path,
    contract_found: &mut Option<String>,
) -> Vec<Check> {
    let host = SUPPORTED.newest();
    // Problems the runtime finds before it reads the component are reported on their own
    // lines; the component is then loaded with them neutralised, so it is still checked.
    let mut relaxed = manifest.clone();
    let contract_req = SUPPORTED.admitted_by(&manifest.extension.contract).is_none().then(|| {
        format!(
            "the manifest requires contract `{}`, but this host runs contracts {SUPPORTED}; set `contract = \"^{}.{}\"` after rebuilding against {}",
            manifest.extension.contract,
            host.major,
            host.minor,
            labhit_protocol::WIT_PACKAGE,
        )
    });
    if contract_req.is_some()
        && let Ok(any) = "*".parse()
    {
        relaxed.extension.contract = any;
    }
    let max = runtime.config().max_memory_bytes;
    let memory = manifest
        .limits
        .memory
        .as_ref()
        .map_or(runtime.config().default_memory_bytes, |m| m.bytes());
    let limits = if memory > max {
        relaxed.limits.memory = None;
        Check::fail(
            "limits",
            format!(
                "memory limit of {} exceeds this host's maximum of {}",
                bytes(memory),
                bytes(max)
            ),
        )
    } else {
        let timeout = manifest
            .limits
            .timeout
            .as_ref()
            .map_or(runtime.config().default_timeout, |t| t.to_std());
        Check::pass(
            "limits",
            format!(
                "memory {}{}, timeout {}{}",
                bytes(memory),
                if manifest.limits.memory.is_none() {
                    " (default)"
                } else {
                    ""
                },
                seconds(timeout.as_secs()),
                if manifest.limits.timeout.is_none() {
                    " (default)"
                } else {
                    ""
                },
            ),
        )
    };

    let shown = component.display();
    let mut checks = match runtime.load(&relaxed, component) {
        Ok(loaded) => {
            let how = match loaded.cache_outcome() {
                labhit_runtime::CacheOutcome::Hit => "loaded from the compile cache",
                _ => "compiled",
            };
            let kind = match loaded.source_kind() {
                labhit_runtime::SourceKind::Component => "component",
                labhit_runtime::SourceKind::Preview1Module => {
                    "wasm32-wasip1 core module, adapted into a component"
                }
            };
            let contract = loaded.contract_version();
            *contract_found = Some(contract.to_string());
            vec![
                Check::pass(
                    "component",
                    format!(
                        "`{shown}`: {kind}, {how} in {} ms",
                        loaded.load_time().as_millis()
                    ),
                ),
                Check::pass(
                    "exports",
                    format!("exports `labhit:extension/pipeline-step@{contract}`"),
                ),
                contract_req.clone().map_or_else(
                    || {
                        Check::pass(
                            "contract",
                            format!("targets contract {contract}; this host runs {SUPPORTED}"),
                        )
                    },
                    |m| Check::fail("contract", m),
                ),
                Check::pass("links", "imports only what this host provides"),
            ]
        }
        Err(err) => {
            let reason = err.kind.to_string();
            // The contract is read from the export names before compiling: a component
            // refused for its exports was not compiled (nor cached).
            let read = "is a component (not compiled: its exports were checked first)";
            match *err.kind {
                LoadErrorKind::MissingExport { .. } => vec![
                    Check::pass("component", format!("`{shown}` {read}")),
                    Check::fail("exports", reason),
                    Check::skip("contract", "the component exports no contract"),
                    Check::skip("links", "the component exports no contract"),
                ],
                LoadErrorKind::IncompatibleContract { .. } => vec![
                    Check::pass("component", format!("`{shown}` {read}")),
                    Check::pass("exports", "exports `labhit:extension/pipeline-step`"),
                    Check::fail(
                        "contract",
                        contract_req
                            .clone()
                            .map_or(reason.clone(), |m| format!("{reason}; {m}")),
                    ),
                    Check::skip("links", "the contract version is incompatible"),
                ],
                LoadErrorKind::ContractMismatch { .. } => vec![
                    Check::pass("component", format!("`{shown}` {read}")),
                    Check::pass("exports", "exports `labhit:extension/pipeline-step`"),
                    Check::fail("contract", reason),
                    Check::skip("links", "the manifest does not describe the component"),
                ],
                LoadErrorKind::Link(_) => vec![
                    Check::pass("component", format!("`{shown}` compiles")),
                    Check::pass("exports", "exports `labhit:extension/pipeline-step`"),
                    contract_req.clone().map_or_else(
                        || Check::pass("contract", "compatible"),
                        |m| Check::fail("contract", m),
                    ),
                    Check::fail("links", reason),
                ],
                _ => vec![
                    Check::fail("component", format!("`{shown}`: {reason}")),
                    Check::skip("exports", "the component did not load"),
                    contract_req.clone().map_or_else(
                        || Check::skip("contract", "the component did not load"),
                        |m| Check::fail("contract", m),
                    ),
                    Check::skip("links", "the component did not load"),
                ],
            }
        }
    };
    checks.push(limits);
    checks
}

/// Whether `schema` (the manifest's `inputs` or `outputs`) is a valid JSON Schema.
fn schema_check(name: &'static str, what: &str, schema: Option<serde_json::Value>) -> Check {
    let Some(schema) = schema else {
        return Check::pass(name, format!("no {what} schema declared"));
    };
    if let Err(err) = jsonschema::meta::validate(&schema) {
        let at = err.instance_path().as_str().to_owned();
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" at `{at}`")
        };
        return Check::fail(
            name,
            format!("the {what} schema is not a valid JSON Schema{at}: {err}"),
        );
    }
    match jsonschema::validator_for(&schema) {
        Ok(_) => Check::pass(name, format!("the {what} schema is a valid JSON Schema")),
        Err(err) => Check::fail(name, format!("the {what} schema cannot be used: {err}")),
    }
}

/// `64Mi`, `1Gi`, `1500 bytes`: the manifest's memory form ([`ByteSize`]'s canonical text).
fn bytes(n: u64) -> String {
    match ByteSize::from_bytes(n) {
        Ok(size) if n.is_multiple_of(1 << 10) => size.to_string(),
        _ => format!("{n} bytes"),
    }
}

/// `5m`, `1h30m`, `45s`: the manifest's duration form ([`DurationSpec`]'s canonical text).
fn seconds(total: u64) -> String {
    DurationSpec::from_secs(total).map_or_else(|_| "0s".to_owned(), |d| d.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_durations_use_manifest_units() {
        assert_eq!(super::bytes(64 << 20), "64Mi");
        assert_eq!(super::bytes(1 << 30), "1Gi");
        assert_eq!(super::bytes(1500), "1500 bytes");
        assert_eq!(super::seconds(300), "5m");
        assert_eq!(super::seconds(5400), "1h30m");
        assert_eq!(super::seconds(45), "45s");
    }
}
