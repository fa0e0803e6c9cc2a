//! `labhit validate`: check pipeline files (and, with `--extensions`, the extension manifests
//! they use) and report every problem.
//!
//! Every file is checked even when an earlier one is broken. Human output goes to stdout (one
//! block per problem, see [`crate::render`]) with a summary line on stderr; a clean run prints
//! nothing unless `--verbose`. `--format json` prints one JSON document on stdout (see
//! [`crate::output`]). A file that cannot be read is reported on stderr and makes the exit code
//! 3 after all other files were checked.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;
use labhit_protocol::manifest::Manifest;
use labhit_protocol::pipeline::{
    self, CheckOptions, Checked, JsonSchemaValidator, Limits, PipelineFile,
};
use labhit_protocol::{Diagnostic, Rule, Severity, Span};
use labhit_runtime::fsio::Limit;

use crate::files::{self, Contents};
use crate::render::{self, Styles};
use crate::{ColorWhen, Exit, exit_codes, output};

/// The pipeline file checked when no FILE is given.
pub(crate) const DEFAULT_PIPELINE: &str = ".labhit/pipeline.yaml";

/// Arguments of `labhit validate`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  labhit validate\n",
    "  labhit validate ci/release.yaml ci/nightly.yaml\n",
    "  labhit validate --extensions extensions/ --extensions ~/.labhit/extensions\n",
    "  cat pipeline.yaml | labhit validate -\n",
    "  labhit validate --format json | jq -r '.diagnostics[] | \"\\(.file):\\(.line): \\(.message)\"'\n",
    "\n",
    "Human output: every problem as `path:line:col: error[rule]: message`, the source line with\n",
    "the span underlined, `note:` lines for related places and a `help:` line, on stdout; then a\n",
    "summary such as `2 errors in 1 file` on stderr. Clean files print nothing; `--verbose`\n",
    "prints `path: ok` for each on stderr.\n",
    "\n",
    "JSON output (`--format json`): one document on stdout, whatever the outcome:\n",
    "  {\"files\": [{\"path\", \"kind\": \"pipeline\"|\"manifest\", \"ok\": bool,\n",
    "              \"error\": string|null, \"diagnostics\": [DIAGNOSTIC]}],\n",
    "   \"diagnostics\": [DIAGNOSTIC],   every diagnostic of every file, flat\n",
    "   \"errors\": N, \"warnings\": N, \"fatal\": N}\n",
    "  DIAGNOSTIC = {\"file\", \"line\", \"column\", \"end_line\", \"end_column\", \"rule\",\n",
    "                \"severity\": \"error\"|\"warning\", \"message\", \"help\": string|null,\n",
    "                \"related\": [{\"file\", \"line\", \"column\", \"end_line\", \"end_column\", \"message\"}]}\n",
    "  Lines and columns are 1-based; columns count Unicode characters; `end_*` is exclusive.\n",
    "  `error` is set (and `ok` false) for a file that could not be read (exit code 3).\n",
    "  Bounded output: at most 1000 diagnostics per file (`omitted`, per file and in all, counts\n",
    "  the rest; present when non-zero), 100 related places per diagnostic (`omitted_related`),\n",
    "  messages cut at 1000 characters. Human output shows the first 100 problems.\n",
    "\n",
    exit_codes!()
))]
pub(crate) struct Args {
    /// Pipeline files to check; `-` reads standard input [default: .labhit/pipeline.yaml]
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,

    /// A directory of extension bundles, searched before `$LABHIT_EXTENSIONS` and the
    /// per-user directory (the search path of `labhit run` and `ext list`). When extensions
    /// are given or found, each `use` must resolve to a bundle whose version fits, `with`
    /// must satisfy the extension's input schema, and `run` with `use` needs an executor.
    /// Repeatable
    #[arg(long = "extensions", value_name = "DIR")]
    extensions: Vec<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// Also report clean files (`path: ok`, on stderr)
    #[arg(short, long)]
    verbose: bool,
}

/// `--format` of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Messages with source snippets, for people.
    Human,
    /// One JSON document, for tools.
    Json,
}

/// What kind of file a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A pipeline file.
    Pipeline,
    /// An extension manifest found under `--extensions`.
    Manifest,
}

impl FileKind {
    /// `pipeline` or `manifest`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FileKind::Pipeline => "pipeline",
            FileKind::Manifest => "manifest",
        }
    }
}

/// The outcome for one file.
#[derive(Debug)]
pub(crate) struct FileReport {
    /// The path as given (or `<stdin>`).
    pub(crate) path: String,
    /// Pipeline or manifest.
    pub(crate) kind: FileKind,
    /// The text, for snippets (lossy for non-UTF-8 files; empty when unread).
    pub(crate) text: String,
    /// Problems, sorted by position.
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Why the file could not be read at all (exit code 3).
    pub(crate) fatal: Option<String>,
}

impl FileReport {
    fn fatal(path: String, kind: FileKind, err: &anyhow::Error) -> Self {
        Self {
            path,
            kind,
            text: String::new(),
            diagnostics: Vec::new(),
            fatal: Some(crate::errors::message(err)),
        }
    }

    /// `true` when the file was read and has no error.
    pub(crate) fn is_ok(&self) -> bool {
        self.fatal.is_none() && !self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Number of diagnostics of a severity.
    pub(crate) fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }
}

/// A readable file: its bytes, or a ready-made input-limit diagnostic.
pub(crate) enum Loaded {
    /// The bytes.
    Bytes(Vec<u8>),
    /// The file is over the limit and was not read.
    TooLarge(Diagnostic),
}

/// Reads a file for checking, turning "too large" into a diagnostic (not fatal).
pub(crate) fn load(path: &std::path::Path, limit: Limit) -> Result<Loaded> {
    Ok(match files::read(path, limit)? {
        Contents::Bytes(bytes) => Loaded::Bytes(bytes),
        Contents::TooLarge { size } => {
            let size = size.map_or_else(|| "more than".to_owned(), |s| format!("{s} bytes,"));
            Loaded::TooLarge(Diagnostic::error(
                Rule::InputLimit,
                Span::file_start(),
                format!(
                    "file is {size} more than the limit of {} bytes",
                    limit.bytes
                ),
            ))
        }
    })
}

/// Checks one pipeline file's bytes; the report keeps the text for snippets. The model is
/// returned when the file has no error.
pub(crate) fn check_pipeline(
    path: String,
    loaded: Loaded,
    options: &CheckOptions<'_>,
) -> (FileReport, Option<PipelineFile>) {
    let (text, checked) = match loaded {
        Loaded::TooLarge(diag) => (
            String::new(),
            Checked {
                pipeline: None,
                diagnostics: vec![diag],
            },
        ),
        Loaded::Bytes(bytes) => {
            let checked = pipeline::check(&bytes, options);
            (into_text(bytes), checked)
        }
    };
    let report = FileReport {
        path,
        kind: FileKind::Pipeline,
        text,
        diagnostics: checked.diagnostics,
        fatal: None,
    };
    (report, checked.pipeline)
}

fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Runs `labhit validate`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    let mut stderr = crate::stdio::stderr(color.choice());
    // The same registry as `labhit run` (one discovery, one search path): what validates is
    // what runs.
    let registry = files::registry(&args.extensions)?;
    let mut reports = Vec::new();
    for bundle in registry.bundles() {
        let (report, _) = load_manifest(&bundle.manifest_path);
        reports.push(report);
    }
    for invalid in registry.invalid() {
        // A manifest that does not parse is reported with its diagnostics; any other reason
        // (a missing or non-wasm component, a contract the host does not implement, an
        // unreadable directory) is skipped with a warning, as `labhit run` skips it.
        let is_manifest =
            invalid.path.file_name() == Some(std::ffi::OsStr::new(files::MANIFEST_NAME));
        if is_manifest {
            let (report, manifest) = load_manifest(&invalid.path);
            if manifest.is_none() {
                reports.push(report);
                continue;
            }
        }
        writeln!(
            stderr,
            "labhit: warning: skipping extension bundle `{}`: {}",
            crate::printable::printable(&invalid.path.display().to_string()),
            crate::printable::printable(&invalid.reason)
        )?;
    }
    for conflict in registry.conflicts() {
        writeln!(
            stderr,
            "labhit: warning: {}",
            crate::printable::printable(&conflict.to_string())
        )?;
    }
    if !args.extensions.is_empty() && registry.bundles().is_empty() && reports.is_empty() {
        let dirs: Vec<String> = args
            .extensions
            .iter()
            .map(|d| format!("`{}`", d.display()))
            .collect();
        writeln!(
            stderr,
            "labhit: warning: no `{}` found in {}; every `use` will be reported as unknown",
            files::MANIFEST_NAME,
            dirs.join(", ")
        )?;
    }
    drop(stderr);
    let manifests = registry.manifests();
    // Rule 7 runs when extensions were asked for or any were found on the search path.
    let with_extensions = !args.extensions.is_empty() || !registry.bundles().is_empty();
    let options = CheckOptions {
        limits: Limits::default(),
        extensions: with_extensions.then_some(manifests.as_slice()),
        input_validator: Some(&JsonSchemaValidator),
    };
    let defaulted = args.files.is_empty();
    let paths: Vec<PathBuf> = if defaulted {
        vec![PathBuf::from(DEFAULT_PIPELINE)]
    } else {
        args.files.clone()
    };
    for path in &paths {
        let shown = files::display(path);
        match load(path, files::pipeline_limit(&options.limits)) {
            Ok(loaded) => reports.push(check_pipeline(shown, loaded, &options).0),
            Err(err) if defaulted && !path.exists() => {
                let err = err.context(format!(
                    "no FILE given and the default `{DEFAULT_PIPELINE}` is missing; run in the repository root or name the file"
                ));
                reports.push(FileReport::fatal(shown, FileKind::Pipeline, &err));
            }
            Err(err) => reports.push(FileReport::fatal(shown, FileKind::Pipeline, &err)),
        }
    }
    let printed = match args.format {
        Format::Human => print_human(&reports, args.verbose, color),
        Format::Json => print_json(&reports, color),
    };
    // Printing cannot fail (`crate::stdio`): the verdict stands whether or not anyone read it.
    printed?;
    Ok(exit_code(&reports))
}

fn print_json(reports: &[FileReport], color: ColorWhen) -> Result<()> {
    let text = crate::printable::json(&output::report(reports))?;
    let mut stdout = crate::stdio::raw_stdout();
    writeln!(stdout, "{text}")?;
    stdout.flush()?;
    print_fatal(reports, color)
}

/// Parses one manifest; problems become diagnostics of the manifest file.
fn load_manifest(path: &std::path::Path) -> (FileReport, Option<Manifest>) {
    let shown = files::display(path);
    let bytes = match load(path, Limit::MANIFEST) {
        Err(err) => return (FileReport::fatal(shown, FileKind::Manifest, &err), None),
        Ok(Loaded::TooLarge(diag)) => {
            let report = FileReport {
                path: shown,
                kind: FileKind::Manifest,
                text: String::new(),
                diagnostics: vec![diag],
                fatal: None,
            };
            return (report, None);
        }
        Ok(Loaded::Bytes(bytes)) => bytes,
    };
    let (manifest, diagnostics) = match Manifest::from_toml_bytes(&bytes) {
        Ok(m) => (Some(m), Vec::new()),
        Err(diags) => (None, diags),
    };
    let report = FileReport {
        path: shown,
        kind: FileKind::Manifest,
        text: into_text(bytes),
        diagnostics,
        fatal: None,
    };
    (report, manifest)
}

/// 3 when any file could not be read, else 1 when any has an error, else 0.
fn exit_code(reports: &[FileReport]) -> Exit {
    if reports.iter().any(|r| r.fatal.is_some()) {
        Exit::Fatal
    } else if reports.iter().all(FileReport::is_ok) {
        Exit::Clean
    } else {
        Exit::Problems
    }
}

fn print_human(reports: &[FileReport], verbose: bool, color: ColorWhen) -> Result<()> {
    let mut stdout = crate::stdio::stdout(color.choice());
    let styles = Styles::new(stdout.get_ref().current_choice() != anstream::ColorChoice::Never);
    print_diagnostics(&mut stdout, &styles, reports)?;
    stdout.flush()?;
    drop(stdout);
    print_fatal(reports, color)?;
    let mut stderr = crate::stdio::stderr(color.choice());
    if verbose {
        for report in reports
            .iter()
            .filter(|r| r.fatal.is_none() && r.diagnostics.is_empty())
        {
            writeln!(stderr, "{}: ok", report.path)?;
        }
    }
    let errors = reports.iter().map(|r| r.count(Severity::Error)).sum();
    let warnings = reports.iter().map(|r| r.count(Severity::Warning)).sum();
    let with_problems = reports.iter().filter(|r| !r.diagnostics.is_empty()).count();
    if let Some(line) = render::summary(errors, warnings, with_problems) {
        let bold = if stderr.get_ref().current_choice() == anstream::ColorChoice::Never {
            anstyle::Style::new()
        } else {
            anstyle::Style::new().bold()
        };
        writeln!(stderr, "{bold}{line}{bold:#}")?;
    } else if verbose {
        let checked = reports.len();
        writeln!(
            stderr,
            "{checked} file{} checked, no problems",
            if checked == 1 { "" } else { "s" }
        )?;
    }
    Ok(())
}

/// Writes the diagnostics of the reports in human form: at most [`render::MAX_RENDERED`]
/// in all, then one line counting the rest.
pub(crate) fn print_diagnostics(
    out: &mut impl std::io::Write,
    styles: &Styles,
    reports: &[FileReport],
) -> Result<()> {
    let mut budget = render::MAX_RENDERED;
    for report in reports.iter().filter(|r| !r.diagnostics.is_empty()) {
        if budget == 0 {
            break;
        }
        let source = render::Source::new(&report.text);
        let mut text = String::new();
        for diag in report.diagnostics.iter().take(budget) {
            render::diagnostic(&mut text, styles, &report.path, &source, diag);
        }
        budget = budget.saturating_sub(report.diagnostics.len());
        out.write_all(text.as_bytes())?;
    }
    let total: usize = reports.iter().map(|r| r.diagnostics.len()).sum();
    if let Some(more) = total.checked_sub(render::MAX_RENDERED).filter(|&n| n > 0) {
        writeln!(
            out,
            "… {more} more problem{} not shown (the first {} are above; `labhit validate --format json` lists up to {} per file)\n",
            if more == 1 { "" } else { "s" },
            render::MAX_RENDERED,
            output::MAX_JSON_DIAGNOSTICS,
        )?;
    }
    Ok(())
}

/// `labhit: error: …` on stderr for each file that could not be read.
fn print_fatal(reports: &[FileReport], color: ColorWhen) -> Result<()> {
    let mut stderr = crate::stdio::stderr(color.choice());
    let red = if stderr.get_ref().current_choice() == anstream::ColorChoice::Never {
        anstyle::Style::new()
    } else {
        anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Red.into()))
    };
    for fatal in reports.iter().filter_map(|r| r.fatal.as_deref()) {
        writeln!(stderr, "labhit: {red}error{red:#}: {fatal}")?;
    }
    Ok(())
}
