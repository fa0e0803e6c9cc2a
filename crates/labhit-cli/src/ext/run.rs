//! `labhit ext run MANIFEST --workspace DIR`: execute one step of an extension.
//!
//! The step's `with` (from `--with` or `--with-file`) is checked against the manifest's input
//! schema first; then the component is loaded (through the compile cache) and run in a fresh
//! sandbox with the workspace preopened at `/workspace` as the manifest grants. Every log
//! entry is written to stderr as it arrives (`time LEVEL [stream] message key=value`). When
//! the step ends, its outputs and artifacts are printed on stdout (a table, or one JSON
//! document with `--format json`) and `labhit` exits with the step's exit code. The step is
//! assembled by the run API's [`StepRun`], like a stage of `labhit run`.
//!
//! Secrets (`--secret NAME`, `--secrets-file FILE`, `--secret NAME=VALUE`: see
//! `crate::secrets`, shared with `labhit run`, where they mean the same: values offered to
//! the run) are served to the extension only if its manifest declares `NAME`; a `--run`
//! script gets none as environment variables (in a pipeline only `sandbox.secrets` grants
//! that). Their values (and common encodings) are redacted from everything this
//! command prints — the runtime redacts what it hands out, and this module redacts its own
//! output again, including error messages and the parse errors of `--secret` itself.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use labhit_protocol::pipeline::{DurationSpec, InputValidator as _, JsonSchemaValidator};
use labhit_protocol::run::LogEntry;
use labhit_runtime::run::StepRun;
use labhit_runtime::{Redactor, StepOutcome};
use serde::Serialize;

use super::{Format, read_manifest};
use crate::ColorWhen;
use crate::printable::printable;

/// Exit code of a step that ended with a typed error (and of a rejected `--with`).
const STEP_ERROR: u8 = 1;
/// Exit code of a problem that stopped `ext run` before the step ran.
const FATAL: u8 = 3;

/// Arguments of `labhit ext run`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit ext run target/extensions/util/checksum --workspace . --with '{\"patterns\": [\"src/**/*.rs\"]}'\n",
    "  labhit ext run ext/extension.toml --workspace ws --with-file with.json --format json\n",
    "  labhit ext run util/checksum@^0.1 --extensions target/extensions --workspace . --with-file w.json\n",
    "  labhit ext run deploy/extension.toml --workspace ws --secret DEPLOY_TOKEN=\"$TOKEN\" --timeout 30s\n",
    "  DEPLOY_TOKEN=… labhit ext run deploy/extension.toml --workspace ws --secret DEPLOY_TOKEN\n",
    "  labhit ext run exec/sh --extensions target/extensions --workspace ws --run 'ls; echo hi > hi.txt'\n",
    "\n",
    "The step's log goes to stderr as it happens: `HH:MM:SS.mmm LEVEL [stream] message`, where\n",
    "stream is `log` (the `log` import), `stdout`, `stderr` or `system`. Outputs and artifacts go\n",
    "to stdout when the step ends. Secret values never appear in anything printed: they are\n",
    "replaced by `***` (also their base64, URL- and JSON-escaped forms).\n",
    "Secrets (`--secret NAME`, `--secrets-file FILE`, `--secret NAME=VALUE`) mean what they\n",
    "mean for `labhit run`: values offered to the step; the extension gets the names its\n",
    "manifest declares. A `--run` script gets none as environment variables (in a pipeline,\n",
    "only `sandbox.secrets` grants that).\n",
    "\n",
    "JSON output: {\"extension\", \"version\", \"stage\", \"ok\": bool, \"exit_code\": int|null,\n",
    "  \"outputs\": {name: value}, \"artifacts\": [{\"path\", \"mime\", \"size\"}], \"elapsed_ms\",\n",
    "  \"error\": null | {\"code\", \"message\"}}\n",
    "  error codes: invalid-config, failed, cancelled, internal, panic, trap, timeout,\n",
    "  memory-limit, interrupted, exit, instantiate, setup, invalid-output, load\n",
    "\n",
    "Exit codes:\n",
    "  0    the step succeeded\n",
    "  N    the step returned exit code N (1-255; other non-zero codes become 1)\n",
    "  1    the step ended with an error (trap, panic, timeout, memory limit, a step-error,\n",
    "       a component that cannot be loaded), or `with` or the manifest is invalid;\n",
    "       the message names the extension, its version and the stage\n",
    "  2    bad usage\n",
    "  3    fatal: the manifest or `--with-file` is unreadable, the workspace does not exist,\n",
    "       or the runtime could not start\n",
    "Exit codes 1-3 can therefore also be the step's own exit code; `--format json` tells them apart.\n",
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

    /// The stage workspace, preopened at `/workspace` as the manifest grants (required unless
    /// the manifest grants no filesystem access)
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,

    /// The stage's `with`, as a JSON object
    #[arg(long = "with", value_name = "JSON", conflicts_with = "with_file")]
    with: Option<String>,

    /// Read the stage's `with` (a JSON object) from a file
    #[arg(long, value_name = "FILE")]
    with_file: Option<PathBuf>,

    #[command(flatten)]
    secrets: crate::secrets::SecretArgs,

    /// An environment variable granted to the step; repeatable
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,

    /// Stop the step after this long (`90s`, `5m`, `1h30m`); the manifest's timeout caps it
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<DurationSpec>,

    /// The stage id the step runs as
    #[arg(long, value_name = "ID", default_value = "ext-run")]
    stage: String,

    /// For an executor extension (`executor = true`): the `run:` script to hand it, with the
    /// cache decision `miss-no-commit` (run, commit nothing)
    #[arg(long = "run", value_name = "SCRIPT")]
    script: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

fn parse_duration(text: &str) -> Result<DurationSpec, String> {
    text.parse::<DurationSpec>().map_err(|e| e.to_string())
}

/// Runs `labhit ext run`; returns the process exit code. Handles its own errors so that
/// they can be redacted.
pub(crate) fn main(args: &Args, color: ColorWhen) -> std::process::ExitCode {
    let secrets = match crate::secrets::collect(&args.secrets) {
        Ok(secrets) => secrets,
        Err(e) => {
            print_error(&e.message, color);
            return std::process::ExitCode::from(2);
        }
    };
    let redactor = secrets.redactor().clone();
    let code = match run(args, color, &secrets, &redactor) {
        Ok(code) => code,
        Err(failure) => {
            let (code, err) = match failure.downcast::<Problem>() {
                Ok(problem) => (problem.code, problem.message),
                Err(err) => (FATAL, crate::errors::message(&err)),
            };
            print_error(&redactor.redact(&err), color);
            code
        }
    };
    std::process::ExitCode::from(code)
}

/// A problem with its exit code (a plain `anyhow::Error` is fatal).
#[derive(Debug)]
struct Problem {
    code: u8,
    message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

fn problem(message: impl Into<String>) -> anyhow::Error {
    Problem {
        code: STEP_ERROR,
        message: message.into(),
    }
    .into()
}

fn print_error(message: &str, color: ColorWhen) {
    let mut stderr = crate::stdio::stderr(color.choice());
    let style = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Red.into()));
    // Nothing sensible is left to do when stderr itself is gone.
    let _ = writeln!(
        stderr,
        "labhit: {style}error{style:#}: {}",
        crate::printable::printable(message)
    );
}

fn pairs(specs: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let Some((name, value)) = spec.split_once('=') else {
            return Err(Problem {
                code: 2,
                message: format!("`--{what}` takes NAME=VALUE (the `=` is missing)"),
            }
            .into());
        };
        if out.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(Problem {
                code: 2,
                message: format!("`--{what} {name}=…` is given twice"),
            }
            .into());
        }
    }
    Ok(out)
}

fn run(
    args: &Args,
    color: ColorWhen,
    secrets: &crate::secrets::Secrets,
    redactor: &Redactor,
) -> Result<u8> {
    let env = pairs(&args.env, "env")?;
    let stage: labhit_protocol::pipeline::StageId = args.stage.parse().map_err(|e| Problem {
        code: 2,
        message: format!("`--stage`: {e}"),
    })?;

    let file = read_manifest(&args.manifest, &args.extensions)?;
    let manifest = match file.manifest {
        Ok(manifest) => manifest,
        Err(diagnostics) => {
            let lines: Vec<String> = diagnostics
                .iter()
                .map(|d| format!("{}:{d}", file.path.display()))
                .collect();
            return Err(problem(format!(
                "`{}` is not a valid extension manifest:\n{}",
                file.path.display(),
                lines.join("\n")
            )));
        }
    };
    let name = format!(
        "{}@{}",
        manifest.qualified_name(),
        manifest.extension.version
    );

    let with_text = match (&args.with, &args.with_file) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(path)) => Some(
            labhit_runtime::fsio::read_to_string(path, labhit_runtime::fsio::Limit::WITH)
                .with_context(|| format!("cannot read `--with-file {}`", path.display()))?,
        ),
        (None, None) => None,
    };
    let with = match with_text {
        None => serde_json::Value::Object(serde_json::Map::new()),
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value @ serde_json::Value::Object(_)) => value,
            Ok(_) => return Err(problem("`with` must be a JSON object")),
            Err(e) => return Err(problem(format!("`with` is not valid JSON: {e}"))),
        },
    };
    if let Some(schema) = manifest.inputs_schema() {
        let violations = JsonSchemaValidator
            .validate(&schema, &with)
            .map_err(|e| problem(format!("`{name}` declares an invalid input schema: {e}")))?;
        if !violations.is_empty() {
            let lines: Vec<String> = violations
                .iter()
                .map(|v| {
                    let at = v.instance_path.join("/");
                    if at.is_empty() {
                        format!("  {}", v.message)
                    } else {
                        format!("  at `{at}`: {}", v.message)
                    }
                })
                .collect();
            return Err(problem(format!(
                "`with` does not satisfy the input schema of `{name}`:\n{}",
                lines.join("\n")
            )));
        }
    }

    let workspace = match &args.workspace {
        Some(dir) => {
            if !dir.is_dir() {
                bail!("workspace `{}` is not an existing directory", dir.display());
            }
            Some(dir.clone())
        }
        None if manifest.capabilities.filesystem
            != labhit_protocol::manifest::FilesystemAccess::None =>
        {
            return Err(Problem {
                code: 2,
                message: format!(
                    "`{name}` is granted filesystem access `{}`; give `--workspace DIR`",
                    manifest.capabilities.filesystem
                ),
            }
            .into());
        }
        None => None,
    };

    let command = match &args.script {
        None => None,
        Some(_) if !manifest.capabilities.executor => {
            return Err(Problem {
                code: 2,
                message: format!(
                    "`{name}` does not declare the `executor` capability, so it cannot run `--run` scripts"
                ),
            }
            .into());
        }
        Some(script) => Some(labhit_runtime::ExecutorCommand {
            step: labhit_protocol::executor::CommandStep::new(script.as_str()),
            cache: labhit_protocol::executor::CacheDecision::MissNoCommit,
            parent_snapshot: None,
        }),
    };

    let runtime = super::runtime()?;
    let component = super::component_path(&file.path, &manifest)
        .map_err(|e| problem(format!("stage `{stage}`: {e}")))?;
    let extension = runtime
        .load(&manifest, &component)
        .map_err(|e| problem(format!("stage `{stage}`: {e}")))?;

    let mut step = StepRun::new(stage.as_str());
    step.with = labhit_protocol::Value::from_json(&with);
    step.env = env;
    step.workspace = workspace;
    step.timeout = args.timeout.map(|t| t.to_std());
    step.secrets = Arc::new(secrets.store());
    step.command = command;
    let sink_redactor = redactor.clone();
    let choice = color.choice();
    step.log_sink = Arc::new(move |entry: LogEntry| {
        print_log(&entry, &sink_redactor, choice);
    });

    let result = step.execute(&runtime, &extension);
    let mut report = JsonReport {
        extension: manifest.qualified_name(),
        version: manifest.extension.version.to_string(),
        stage: stage.to_string(),
        ok: false,
        exit_code: None,
        outputs: BTreeMap::new(),
        artifacts: Vec::new(),
        elapsed_ms: 0,
        error: None,
    };
    let code = match result {
        Ok(outcome) => {
            fill(&mut report, &outcome, redactor);
            report.ok = outcome.exit_code == 0;
            match outcome.exit_code {
                0 => 0,
                n => u8::try_from(n).unwrap_or(STEP_ERROR),
            }
        }
        Err(err) => {
            report.elapsed_ms = u64::try_from(err.elapsed.as_millis()).unwrap_or(u64::MAX);
            report.error = Some(JsonError {
                code: err.failure.code(),
                message: redactor.redact(&err.to_string()),
            });
            STEP_ERROR
        }
    };
    args.format
        .print(&report, |report| print_human(report, color))?;
    if let Some(error) = &report.error
        && args.format == Format::Human
    {
        print_error(&error.message, color);
    }
    Ok(code)
}

#[derive(Debug, Serialize)]
struct JsonReport {
    extension: String,
    version: String,
    stage: String,
    ok: bool,
    exit_code: Option<i32>,
    outputs: BTreeMap<String, String>,
    artifacts: Vec<JsonArtifact>,
    elapsed_ms: u64,
    error: Option<JsonError>,
}

#[derive(Debug, Serialize)]
struct JsonArtifact {
    path: String,
    mime: String,
    size: u64,
}

#[derive(Debug, Serialize)]
struct JsonError {
    code: &'static str,
    message: String,
}

fn fill(report: &mut JsonReport, outcome: &StepOutcome, redactor: &Redactor) {
    report.exit_code = Some(outcome.exit_code);
    report.outputs = outcome
        .outputs
        .iter()
        .map(|(k, v)| (redactor.redact(k), redactor.redact(v)))
        .collect();
    report.artifacts = outcome
        .artifacts
        .iter()
        .map(|a| JsonArtifact {
            path: redactor.redact(a.path.as_ref()),
            mime: redactor.redact(&a.mime),
            size: a.size_bytes,
        })
        .collect();
    report.elapsed_ms = u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX);
}

fn print_human(report: &JsonReport, color: ColorWhen) -> Result<()> {
    use anstyle::{AnsiColor, Style};
    let mut out = crate::stdio::stdout(color.choice());
    let bold = Style::new().bold();
    let (mark, style) = if report.ok {
        ("✓", bold.fg_color(Some(AnsiColor::Green.into())))
    } else {
        ("✗", bold.fg_color(Some(AnsiColor::Red.into())))
    };
    let what = match (&report.error, report.exit_code) {
        (Some(error), _) => format!("ended with an error ({})", error.code),
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "no result".to_owned(),
    };
    writeln!(
        out,
        "{style}{mark}{style:#} {bold}{}@{}{bold:#} stage `{}`: {what} in {} ms",
        printable(&report.extension),
        report.version,
        printable(&report.stage),
        report.elapsed_ms
    )?;
    if report.exit_code.is_none() {
        return Ok(());
    }
    if report.outputs.is_empty() {
        writeln!(out, "outputs: none")?;
    } else {
        writeln!(out, "outputs:")?;
        let shown: Vec<(String, String)> = report
            .outputs
            .iter()
            .map(|(name, value)| (printable(name).into_owned(), printable(value).into_owned()))
            .collect();
        let width = super::column_width(shown.iter().map(|(name, _)| name.as_str()));
        for (name, value) in &shown {
            let pad = width - name.chars().count();
            writeln!(out, "  {name}{:pad$}  {value}", "")?;
        }
    }
    if report.artifacts.is_empty() {
        writeln!(out, "artifacts: none")?;
    } else {
        writeln!(out, "artifacts:")?;
        let shown: Vec<(String, String, u64)> = report
            .artifacts
            .iter()
            .map(|a| {
                (
                    printable(&a.path).into_owned(),
                    printable(&a.mime).into_owned(),
                    a.size,
                )
            })
            .collect();
        let width = super::column_width(shown.iter().map(|(path, _, _)| path.as_str()));
        let mime_width = super::column_width(shown.iter().map(|(_, mime, _)| mime.as_str()));
        for (path, mime, size) in &shown {
            let pad = width - path.chars().count();
            let mime_pad = mime_width - mime.chars().count();
            writeln!(
                out,
                "  {path}{:pad$}  {mime}{:mime_pad$}  {size} bytes",
                "", ""
            )?;
        }
    }
    Ok(())
}

/// Writes one log entry to stderr: `HH:MM:SS.mmm LEVEL [stream] message key=value`.
fn print_log(entry: &LogEntry, redactor: &Redactor, choice: anstream::ColorChoice) {
    use anstyle::{AnsiColor, Style};
    use labhit_protocol::run::LogLevel;
    let level_style = match entry.level {
        LogLevel::Error => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
        LogLevel::Warn => Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
        LogLevel::Info => Style::new().fg_color(Some(AnsiColor::Green.into())),
        _ => Style::new().dimmed(),
    };
    let dim = Style::new().dimmed();
    let mut line = format!(
        "{dim}{}{dim:#} {level_style}{:>5}{level_style:#} {dim}[{}]{dim:#} {}",
        entry.timestamp.format("%H:%M:%S%.3f"),
        entry.level.as_str().to_uppercase(),
        entry.stream.as_str(),
        printable(&redactor.redact(&entry.message)),
    );
    for (key, value) in &entry.fields {
        line.push_str(&format!(
            " {dim}{}={dim:#}{}",
            printable(&redactor.redact(key)),
            printable(&redactor.redact(value))
        ));
    }
    let mut stderr = crate::stdio::stderr(choice);
    // A closed stderr must not fail the step.
    let _ = writeln!(stderr, "{line}");
}
