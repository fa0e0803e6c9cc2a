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
mod orphans;
mod progress;
mod shutdown;
mod signals;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use labhit_protocol::run::{PipelineRun, RunStatus, StageRun};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;
use labhit_protocol::pipeline::{CheckOptions, JsonSchemaValidator, Limits, PipelineFile};
use labhit_runtime::executor::{Executor, ExtensionExecutor, LocalExecutor};
use labhit_runtime::gates::{Gates, PreApproved};
use labhit_runtime::policy::{DEFAULT_POLICY_FILE, GitRef, Policies};
use labhit_runtime::scheduler::stages::{PipelineRunner, StagePlan};
use labhit_runtime::scheduler::{RunInfo, RunLog, Scheduler, SchedulerOptions};
use labhit_runtime::snapshot::SnapshotStore;
use labhit_runtime::workspace::{DEFAULT_SKIP, RunWorkspace, WorkspaceSource, default_runs_base};
use labhit_runtime::{Cancellation, Runtime, RuntimeConfig, summary};

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
    "which all stages share.\n",
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
    let stage_ids: BTreeSet<String> = pipeline
        .pipeline
        .stages
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    if let Some(unknown) = args.approve.iter().find(|s| !stage_ids.contains(*s)) {
        return usage(&format!(
            "`--approve {unknown}`: the pipeline has no stage `{unknown}`"
        ));
    }

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

    let run_id = labhit_runtime::scheduler::new_run_id();
    // Relative to the project: executors need an absolute workspace path.
    let base = args
        .run_dir
        .as_ref()
        .map_or_else(|| default_runs_base(&project), |dir| project.join(dir));
    let workspace = RunWorkspace::create(&base, run_id, &workspace_source(&project))
        .context("cannot create the run workspace")?;
    let run_dir = workspace.run_dir().to_owned();
    console.attach_log_file(&run_dir.join(summary::LOG_FILE))?;

    let jobs = args
        .jobs
        .map_or_else(labhit_runtime::scheduler::default_jobs, usize::from);
    let snapshots = match (&args.cache_dir, SnapshotStore::open_default()) {
        (Some(dir), _) => Some(SnapshotStore::new(dir)),
        (None, default) => default,
    };
    let local_store = snapshots
        .clone()
        .unwrap_or_else(|| SnapshotStore::new(run_dir.join("snapshots")));
    let abort = Cancellation::new();
    let local: Arc<dyn Executor> =
        Arc::new(LocalExecutor::new(local_store.clone()).with_abort(abort.clone()));

    let needs_runtime = pipeline
        .pipeline
        .stages
        .iter()
        .any(|(_, s)| s.uses.is_some());
    let runtime = if needs_runtime {
        let config = RuntimeConfig {
            max_concurrent_steps: u32::try_from(jobs).unwrap_or(u32::MAX).max(1),
            ..RuntimeConfig::from_env()
        };
        Some(Runtime::new(config).map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?)
    } else {
        None
    };

    let mut runner = PipelineRunner::new(workspace.path(), &run_dir);
    for (id, stage) in pipeline.pipeline.stages.iter() {
        let plan = match (&stage.uses, &runtime) {
            (None, _) => StagePlan::Command(Arc::clone(&local)),
            (Some(_), None) => StagePlan::Broken("no runtime".to_owned()),
            (Some(reference), Some(runtime)) => match registry.resolve(reference) {
                Err(e) => StagePlan::Broken(format!("extension `{reference}`: {e}")),
                Ok(bundle) => match runtime.load(&bundle.manifest, &bundle.component_path) {
                    Err(e) => StagePlan::Broken(e.to_string()),
                    Ok(loaded) if stage.run.is_some() => {
                        let with =
                            labhit_protocol::Value::Object(stage.with.clone().unwrap_or_default());
                        match ExtensionExecutor::new(runtime.clone(), loaded) {
                            Ok(exec) => StagePlan::Command(Arc::new(
                                exec.with_config(reference.to_string(), with)
                                    .with_snapshots(local_store.clone()),
                            )),
                            Err(e) => StagePlan::Broken(e.to_string()),
                        }
                    }
                    Ok(loaded) => StagePlan::Extension(Box::new(loaded)),
                },
            },
        };
        runner.plans.insert(id.to_string(), plan);
    }
    runner.runtime = runtime;
    runner.snapshots = if args.no_cache {
        None
    } else {
        snapshots.clone()
    };
    runner.secrets = Arc::new(secrets.store());
    runner.env = BTreeMap::from([
        ("CI".to_owned(), "true".to_owned()),
        ("LABHIT".to_owned(), "1".to_owned()),
        (
            "LABHIT_PIPELINE".to_owned(),
            pipeline.pipeline.name.to_string(),
        ),
    ]);

    let mut gates = Gates::new();
    gates.approved = if args.approve_all {
        PreApproved::All
    } else if args.approve.is_empty() {
        PreApproved::Nothing
    } else {
        PreApproved::Stages(args.approve.iter().cloned().collect())
    };
    if std::io::stdin().is_terminal() {
        gates.prompt = Some(console.prompt());
    }
    gates.policies = Some(policies);
    gates.git_ref = git_ref.clone();

    let mut scheduler = Scheduler::new(SchedulerOptions {
        jobs,
        fail_fast: args.fail_fast,
        ..SchedulerOptions::default()
    });
    scheduler.gates = gates;
    scheduler.on_status = Some(console.status_hook(&pipeline));
    let info = RunInfo {
        repository: project.display().to_string(),
        git_ref: git_ref.map(|r| r.full()).unwrap_or_default(),
        commit: git_commit(&project),
    };
    let shutdown = Arc::new(shutdown::Shutdown::default());
    let skeleton = PipelineRun {
        id: run_id,
        pipeline: pipeline.pipeline.name.to_string(),
        repository: info.repository.clone(),
        git_ref: info.git_ref.clone(),
        commit: info.commit.clone(),
        status: RunStatus::Running,
        created_at: labhit_runtime::scheduler::now(),
        started_at: None,
        finished_at: None,
        stages: pipeline
            .pipeline
            .stages
            .iter()
            .map(|(id, _)| StageRun::queued(id.clone()))
            .collect(),
    };
    let interrupted = Interrupted {
        cancellation: scheduler.cancellation.clone(),
        abort,
        console: console.clone(),
        shutdown: Arc::clone(&shutdown),
        skeleton,
        run_dir: run_dir.clone(),
    };
    signals.listen(move |signal, count| interrupted.handle(signal, count));

    let log = RunLog::new(run_id, console.sink()).with_redactor(redactor.clone());
    console.note(&format!(
        "run {run_id} of `{}` in {}",
        pipeline.pipeline.name,
        files::display(&run_dir)
    ));
    match (&snapshots, args.no_cache) {
        (_, true) => console.note("cache: off (`--no-cache`)"),
        (Some(store), false) => console.note(&format!("cache: {}", store.dir().display())),
        (None, false) => console.warn("no cache directory (set LABHIT_CACHE_DIR): caching is off"),
    }
    let reaping = orphans::become_subreaper();
    let result = scheduler.run(&pipeline, &runner, &log, info);
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

/// A copy of the project without [`DEFAULT_SKIP`] and, in a git work tree, without what git
/// ignores (`git ls-files --others --ignored --exclude-standard --directory`).
fn workspace_source(project: &Path) -> WorkspaceSource {
    let mut skip: Vec<String> = DEFAULT_SKIP.iter().map(|s| (*s).to_owned()).collect();
    let ignored = std::process::Command::new("git")
        .arg("-C")
        .arg(project)
        .args([
            "ls-files",
            "--others",
            "--ignored",
            "--exclude-standard",
            "--directory",
        ])
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(output) = ignored
        && output.status.success()
    {
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let path = line.trim_end_matches('/');
            if !path.is_empty() && !skip.iter().any(|s| s == path) {
                skip.push(path.to_owned());
            }
        }
    }
    WorkspaceSource::Copy {
        project: project.to_owned(),
        skip,
    }
}

fn git_commit(dir: &Path) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
