//! `labhit run [FILE]`: run a pipeline on this machine.
//!
//! 1. **Validate** the file with every extension manifest the registry finds
//!    (`--extensions DIR`, `$LABHIT_EXTENSIONS`, the default directory): rule 7 applies, so
//!    an unknown extension, an unsatisfied version, a `with` that breaks the input schema or a
//!    `run` on a non-executor extension stop the run before anything starts (exit 1, printed
//!    like `labhit validate`).
//! 2. **Prepare** the run: a fresh run directory `<run-dir>/<run-id>/` with a copy of the
//!    project (the current directory, without `.git`, `target`, `node_modules`,
//!    `.labhit/runs` and, in a git work tree, without what git ignores) as its `workspace/`; every `use` resolved to a bundle
//!    and loaded (a bundle that fails to load fails its stage, not the run); `run:` stages get
//!    the stage's executor extension or the built-in local executor (unsandboxed).
//!
//!    Steps 2 and 3 are `labhit_runtime::run` (the same run API the server uses); this module
//!    adds what belongs to a terminal: the console, signals, the prompt and the summary.
//! 3. **Run** the DAG with `labhit_runtime::scheduler` (see its docs for ordering, failure,
//!    fail-fast, cancellation, gates, workspace sharing and caching). Logs stream to stderr
//!    with a `[stage]` prefix; on a terminal a progress line sits under them.
//! 4. **Report**: `summary.json` and `log.jsonl` in the run directory, artifacts under its
//!    `artifacts/`; the summary on stdout (a table on a terminal, plain lines otherwise, one
//!    JSON document with `--format json`).
//!
//! The environment granted to every stage is `CI=true`, `LABHIT=1` and
//! `LABHIT_PIPELINE=<name>` (plus `PATH` and `HOME` for the local executor); nothing run-
//! specific, so cache keys stay stable across runs.

mod console;
mod housekeeping;
mod orphans;
mod progress;
mod shutdown;
mod signals;

pub(crate) use console::log_line;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use labhit_protocol::run::PipelineRun;

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;
use labhit_protocol::pipeline::{CheckOptions, JsonSchemaValidator, Limits, PipelineFile};
use labhit_runtime::gates::PreApproved;
use labhit_runtime::policy::{DEFAULT_POLICY_FILE, GitRef, Policies};
use labhit_runtime::retention::{DEFAULT_KEEP_RUNS, Retention};
use labhit_runtime::run::{CacheSettings, RunError, RunPlace, RunRequest};
use labhit_runtime::scheduler::RunInfo;
use labhit_runtime::snapshot::SnapshotStore;
use labhit_runtime::workspace::default_runs_base;
use labhit_runtime::{Cancellation, summary};

use crate::printable::printable;
use crate::render::Styles;
use crate::validate::{self, DEFAULT_PIPELINE};
use crate::{ColorWhen, Exit, files};

/// Arguments of `labhit run`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  cargo xtask extensions && labhit run examples/pipeline.yaml --extensions target/extensions --approve deploy\n",
    "  labhit run                                   run .labhit/pipeline.yaml\n",
    "  labhit run --jobs 1 --fail-fast              one stage at a time, stop at the first failure\n",
    "  labhit run --no-cache --approve-all --ref main\n",
    "  labhit run --format json | jq '.stages[] | {stage, status, reason}'\n",
    "\n",
    "The project is the current directory: each run copies it (without .git, target,\n",
    "node_modules, .labhit/runs and what git ignores) into <run-dir>/<run-id>/workspace,\n",
    "which all stages share. After the run, only the newest --keep-runs run directories\n",
    "stay (default 10; runs in progress are never removed) and the snapshot cache is pruned\n",
    "to --cache-max-size, least recently used entries first (see `labhit gc runs`,\n",
    "`labhit cache stats|gc`).\n",
    "Stage logs go to stderr as `[stage] message`; the summary goes to stdout and, as\n",
    "JSON (the labhit-protocol PipelineRun), to <run-dir>/<run-id>/summary.json.\n",
    "\n",
    "Gates: `approval: required` needs --approve STAGE, --approve-all, or a `y` at the prompt\n",
    "(only when stdin is a terminal); otherwise the stage is denied. `policy: NAME` is judged by\n",
    "[policies.NAME] in .labhit/policies.toml against --ref (default: the current git branch);\n",
    "an unknown policy or a missing file denies.\n",
    "\n",
    "`run:` stages: the built-in local executor runs the script with `sh -e -c` on this machine,\n",
    "UNSANDBOXED; with `use: X` the script goes to the executor extension X instead (for\n",
    "example exec/sh, a sandboxed shell). Either way a successful stage's effect on the\n",
    "workspace is kept in --cache-dir, and a later run whose key matches restores it (`cached`).\n",
    "\n",
    "Secrets: `--secret NAME` (value from the environment variable NAME), `--secrets-file FILE`\n",
    "(NAME=VALUE lines, mode 600; `-` reads stdin) or `--secret NAME=VALUE` (visible in `ps`).\n",
    "An extension gets the secrets its manifest declares; a `run:` stage gets those its\n",
    "`sandbox.secrets` lists, as environment variables. Values are redacted from the terminal,\n",
    "log.jsonl, summary.json and artifact names (see SECURITY.md).\n",
    "\n",
    "Ctrl-C, SIGTERM or SIGHUP cancels the run cleanly (running stages get SIGTERM, then\n",
    "SIGKILL after a grace period; the run ends `cancelled`); a second signal kills the\n",
    "running stages at once. Either way summary.json (run `cancelled`) and log.jsonl are\n",
    "written. If labhit itself is killed (SIGKILL), log.jsonl keeps every entry so far and\n",
    "each `run:` stage's process group is killed with it.\n",
    "\n",
    "Exit codes:\n",
    "  0  every stage succeeded (or was cached)\n",
    "  1  a stage failed, was denied or was cancelled, or the pipeline file has problems\n",
    "  2  bad usage\n",
    "  3  fatal: the file is unreadable, the workspace or the runtime could not be set up\n",
    "  128+N  the run was interrupted by signal N: 130 SIGINT, 143 SIGTERM, 129 SIGHUP",
))]
pub(crate) struct Args {
    /// The pipeline file [default: .labhit/pipeline.yaml]
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,

    /// A directory of extension bundles, searched before `$LABHIT_EXTENSIONS` and the
    /// default directory (a `use` resolves in the first of them that has a fitting version);
    /// it must exist. Repeatable
    #[arg(long = "extensions", value_name = "DIR")]
    extensions: Vec<PathBuf>,

    /// Most stages running at once [default: the number of cores]
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,

    /// Stop the run at the first failed or denied stage (running stages are cancelled)
    #[arg(long)]
    fail_fast: bool,

    /// Neither read nor write the snapshot cache: every `run:` stage runs
    #[arg(long)]
    no_cache: bool,

    /// Approve the gate of STAGE in advance; repeatable
    #[arg(long = "approve", value_name = "STAGE")]
    approve: Vec<String>,

    /// Approve every gate in advance
    #[arg(long)]
    approve_all: bool,

    /// The git ref policies judge [default: `git rev-parse --abbrev-ref HEAD`]
    #[arg(long = "ref", value_name = "REF")]
    git_ref: Option<String>,

    /// Output format of the summary on stdout
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    #[command(flatten)]
    secrets: crate::secrets::SecretArgs,

    /// The snapshot cache directory [default: $LABHIT_CACHE_DIR/snapshots, else
    /// ~/.cache/labhit/snapshots]. Keep it outside the project: the project's content is
    /// part of every cache key
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Where run directories are created [default: .labhit/runs]
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,

    /// After the run, keep only the newest N run directories, this one included (`all`:
    /// keep every run); runs in progress are never removed [default: 10]
    #[arg(long, value_name = "N")]
    keep_runs: Option<crate::cache::Keep>,

    /// After the run, also remove run directories that started longer ago than AGE (`7d`,
    /// `36h`, `90m`)
    #[arg(long, value_name = "AGE")]
    max_run_age: Option<crate::cache::Age>,

    /// The snapshot cache's size cap, like `500Mi` or `20G`: after the run, least recently
    /// used entries are evicted down to it [default: $LABHIT_CACHE_MAX_SIZE, else 10Gi]
    #[arg(long, value_name = "SIZE")]
    cache_max_size: Option<labhit_protocol::forms::ByteSize>,
}

/// `--format` of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A table on a terminal, plain lines otherwise.
    Human,
    /// The `PipelineRun` as one JSON document.
    Json,
}

/// Runs `labhit run`.
pub(crate) fn run(args: &Args, color: ColorWhen) -> Result<Exit> {
    // Before any thread starts, so that every thread inherits the mask.
    let signals = signals::Signals::block().context("cannot block SIGINT, SIGTERM and SIGHUP")?;
    let secrets = match crate::secrets::collect(&args.secrets) {
        Ok(secrets) => secrets,
        Err(e) => return usage(&e.message),
    };
    let redactor = secrets.redactor().clone();

    let registry = files::registry(&args.extensions)?;
    for invalid in registry.invalid() {
        let _ = writeln!(
            crate::stdio::stderr(color.choice()),
            "labhit: warning: skipping extension bundle `{}`: {}",
            printable(&invalid.path.display().to_string()),
            printable(&invalid.reason)
        );
    }
    for conflict in registry.conflicts() {
        eprintln!("labhit: warning: {conflict}");
    }
    let manifests = registry.manifests();
    let Some(pipeline) = check(args, &manifests, color)? else {
        return Ok(Exit::Problems);
    };

    let project = std::env::current_dir().context("cannot determine the current directory")?;
    let git_ref = match &args.git_ref {
        Some(r) => Some(GitRef::new(r)),
        None => GitRef::detect(&project),
    };
    let policies = Policies::load(&project.join(DEFAULT_POLICY_FILE));
    let console = console::Console::new(
        color,
        redactor.clone(),
        args.format == Format::Human && std::io::stderr().is_terminal(),
    );
    if let Policies::Invalid { path, error } = &policies {
        console.warn(&format!(
            "the policy file `{}` is invalid, every policy gate will be denied: {error}",
            path.display()
        ));
    }

    let info = RunInfo {
        repository: project.display().to_string(),
        git_ref: git_ref.as_ref().map(GitRef::full).unwrap_or_default(),
        commit: labhit_runtime::run::git_commit(&project),
    };
    // Relative to the project: executors need an absolute workspace path.
    let runs_base = args
        .run_dir
        .as_ref()
        .map_or_else(|| default_runs_base(&project), |dir| project.join(dir));
    let max_bytes = crate::cache::max_bytes(args.cache_max_size)?;
    let retention = Retention {
        keep_runs: args
            .keep_runs
            .map_or(Some(DEFAULT_KEEP_RUNS), |keep| keep.0),
        max_age: args.max_run_age.map(|age| age.0),
    };
    let mut request = RunRequest::new(
        pipeline,
        RunPlace::Copy {
            runs_base: runs_base.clone(),
            source: labhit_runtime::run::project_source(&project),
        },
    );
    request.info = info;
    request.registry = Arc::new(registry);
    request.cache = CacheSettings {
        snapshots: match (&args.cache_dir, SnapshotStore::open_default()) {
            (Some(dir), _) => Some(SnapshotStore::new(dir)),
            (None, default) => default,
        },
        disabled: args.no_cache,
        components: None,
    };
    request.secrets = Arc::new(secrets.store());
    request.redactor = redactor.clone();
    request.approved = if args.approve_all {
        PreApproved::All
    } else if args.approve.is_empty() {
        PreApproved::Nothing
    } else {
        PreApproved::Stages(args.approve.iter().cloned().collect())
    };
    if std::io::stdin().is_terminal() {
        request.approver = Some(console.prompt());
    }
    request.policies = policies;
    request.git_ref = git_ref;
    request.jobs = args
        .jobs
        .map_or_else(labhit_runtime::scheduler::default_jobs, usize::from);
    request.fail_fast = args.fail_fast;
    request.log_sink = console.sink();
    request.on_status = Some(console.status_hook(&request.pipeline));
    let cache = request.cache.clone();
    let mut prepared = match labhit_runtime::run::prepare(request) {
        Ok(prepared) => prepared,
        Err(RunError::UnknownStage { stage }) => {
            return usage(&format!(
                "`--approve {stage}`: the pipeline has no stage `{stage}`"
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // Held until the pruning after the run: marks the run in progress and its cache use.
    let guard = prepared.take_guard();
    let run_dir = prepared.run_dir().to_owned();
    console.attach_log_file(&run_dir.join(summary::LOG_FILE))?;

    let shutdown = Arc::new(shutdown::Shutdown::default());
    let interrupted = Interrupted {
        cancellation: prepared.cancellation().clone(),
        abort: prepared.abort().clone(),
        console: console.clone(),
        shutdown: Arc::clone(&shutdown),
        skeleton: prepared.skeleton(),
        run_dir: run_dir.clone(),
    };
    signals.listen(move |signal, count| interrupted.handle(signal, count));

    console.note(&format!(
        "run {} of `{}` in {}",
        prepared.run_id(),
        prepared.pipeline().pipeline.name,
        files::display(&run_dir)
    ));
    match (&cache.snapshots, cache.disabled) {
        (_, true) => console.note("cache: off (`--no-cache`)"),
        (Some(store), false) => console.note(&format!("cache: {}", store.dir().display())),
        (None, false) => console.warn("no cache directory (set LABHIT_CACHE_DIR): caching is off"),
    }
    let reaping = orphans::become_subreaper();
    let result = prepared.execute();
    if reaping {
        report_orphans(&console, orphans::reap());
    }
    let summary_path = shutdown
        .finish(|| {
            console.finish();
            summary::write_summary(&run_dir, &result)
        })
        .with_context(|| format!("cannot write the summary into `{}`", run_dir.display()))?;

    // What is printed from here on is a copy of the summary: a reader that went away
    // (`labhit run | true`) changes nothing about the outcome, so write errors are ignored.
    let mut stdout = crate::stdio::raw_stdout();
    let _ = match args.format {
        Format::Json => {
            let text = redactor.redact(&crate::printable::json(&result)?);
            writeln!(stdout, "{text}")
        }
        Format::Human => {
            let tty = std::io::stdout().is_terminal() && color != ColorWhen::Never;
            let shown = printable_run(&result);
            let text = if tty || color == ColorWhen::Always {
                summary::render_table(&shown)
            } else {
                summary::render_plain(&shown)
            };
            write!(stdout, "{}", redactor.redact(&text))
        }
    };
    let _ = stdout.flush();
    drop(stdout);
    console.note(&format!("summary: {}", files::display(&summary_path)));
    housekeeping::after_run(
        &console,
        guard,
        cache.active(),
        max_bytes,
        &runs_base,
        &retention,
    );
    if let Some(signal) = shutdown.signal() {
        std::process::exit(i32::from(signals::exit_code(signal)));
    }
    Ok(if summary::exit_code(&result) == 0 {
        Exit::Clean
    } else {
        Exit::Problems
    })
}

/// A copy of `run` fit for a terminal: the texts that come from stages (reasons, output
/// names and values) through [`printable`].
fn printable_run(run: &PipelineRun) -> PipelineRun {
    let mut shown = run.clone();
    for stage in &mut shown.stages {
        if let Some(reason) = &mut stage.reason {
            *reason = printable(reason).into_owned();
        }
        stage.outputs = stage
            .outputs
            .iter()
            .map(|(k, v)| (printable(k).into_owned(), printable(v).into_owned()))
            .collect();
    }
    shown
}

/// Says how many processes stages had left running outside their process groups.
fn report_orphans(console: &console::Console, killed: usize) {
    if killed > 0 {
        console.warn(&format!(
            "killed {killed} process(es) that `run:` stages left running outside their \
             process group"
        ));
    }
}

/// What the signal listener of a run needs.
struct Interrupted {
    /// The run's cancellation (first signal).
    cancellation: Cancellation,
    /// The local executor's abort flag (second signal).
    abort: Cancellation,
    console: console::Console,
    shutdown: Arc<shutdown::Shutdown>,
    /// The run's identity and stages, for a summary written without the scheduler.
    skeleton: PipelineRun,
    run_dir: PathBuf,
}

impl Interrupted {
    /// The first signal cancels the run; the second kills the running stages at once and,
    /// if the run still has not ended after [`shutdown::FORCE_WAIT`], writes the summary from
    /// what is known and exits. The exit code is `128 +` the first signal's number.
    fn handle(&self, signal: nix::sys::signal::Signal, count: u32) {
        self.shutdown.record(signal);
        let name = signals::describe(signal);
        // Flags first: nothing printed may delay them.
        self.cancellation.cancel();
        if count == 1 {
            self.console.warn(&format!(
                "{name}: cancelling the run (send it again to stop the running stages at once)"
            ));
            return;
        }
        self.abort.cancel();
        self.console
            .warn(&format!("{name} again: killing the running stages now"));
        let first = self.shutdown.signal().unwrap_or(signal);
        self.shutdown
            .force(shutdown::FORCE_WAIT, signals::exit_code(first), || {
                let run = shutdown::interrupted_run(
                    self.skeleton.clone(),
                    &self.console.statuses(),
                    &format!("interrupted: labhit stopped at once on a second {name}"),
                );
                self.console.warn(&format!(
                    "the run did not end within {}s; writing the summary and exiting",
                    shutdown::FORCE_WAIT.as_secs()
                ));
                report_orphans(&self.console, orphans::reap());
                self.console.finish();
                if let Err(e) = summary::write_summary(&self.run_dir, &run) {
                    self.console.warn(&format!("cannot write the summary: {e}"));
                }
            });
    }
}

/// Prints a usage problem and exits 2.
fn usage(message: &str) -> Result<Exit> {
    let _ = writeln!(
        crate::stdio::stderr(anstream::ColorChoice::Never),
        "labhit: error: {}",
        printable(message)
    );
    std::process::exit(2);
}

/// Reads and validates the file (rule 7 with `manifests`); prints the diagnostics and returns
/// `None` when it has errors.
fn check(
    args: &Args,
    manifests: &[labhit_protocol::manifest::Manifest],
    color: ColorWhen,
) -> Result<Option<PipelineFile>> {
    let defaulted = args.file.is_none();
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIPELINE));
    let options = CheckOptions {
        limits: Limits::default(),
        extensions: Some(manifests),
        input_validator: Some(&JsonSchemaValidator),
    };
    let loaded = match validate::load(&path, files::pipeline_limit(&options.limits)) {
        Ok(loaded) => loaded,
        Err(_) if defaulted && !path.exists() => {
            bail!(
                "no FILE given and the default `{DEFAULT_PIPELINE}` is missing; run in the project root or name the file"
            )
        }
        Err(err) => return Err(err),
    };
    let (report, file) = validate::check_pipeline(files::display(&path), loaded, &options);
    if !report.diagnostics.is_empty() {
        let mut stderr = crate::stdio::stderr(color.choice());
        let styles = Styles::new(stderr.get_ref().current_choice() != anstream::ColorChoice::Never);
        validate::print_diagnostics(&mut stderr, &styles, std::slice::from_ref(&report))?;
        if file.is_none() {
            writeln!(
                stderr,
                "labhit: the pipeline was not run: fix the problems above{}",
                if manifests.is_empty() {
                    " (no extension bundles were found: pass `--extensions DIR`, e.g. \
                     `cargo xtask extensions` then `--extensions target/extensions`)"
                } else {
                    ""
                }
            )?;
        }
    }
    Ok(file)
}
