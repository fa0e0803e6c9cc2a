//! `labhit cache stats|gc` and `labhit gc runs|cache`: what the snapshot cache and the run
//! directories hold, and pruning them by hand.
//!
//! The logic lives in the runtime ([`labhit_runtime::snapshot`]'s `gc` and `stats`,
//! [`labhit_runtime::retention`]); this module parses options and prints reports. `labhit run`
//! applies the same policies after every run (see `labhit run --help`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, anyhow};
use clap::{Subcommand, ValueEnum};
use labhit_runtime::retention::{self, DEFAULT_KEEP_RUNS, Retention};
use labhit_runtime::snapshot::{self, GcOptions, SnapshotStore};
use labhit_runtime::workspace::default_runs_base;
use serde::Serialize;

use crate::Exit;

/// `labhit cache` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Show what the snapshot cache holds: entries, blobs, bytes, oldest and newest use.
    Stats(StatsArgs),
    /// Prune the snapshot cache to its size cap, least recently used entries first.
    Gc(CacheGcArgs),
}

/// `labhit gc` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum GcCommand {
    /// Remove finished run directories beyond the retention limits.
    Runs(RunsGcArgs),
    /// Prune the snapshot cache (the same as `labhit cache gc`).
    Cache(CacheGcArgs),
}

/// `--format` of the cache and gc commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Lines for people.
    Human,
    /// One JSON document on stdout, for tools.
    Json,
}

/// Where the snapshot cache is.
#[derive(Debug, clap::Args)]
pub(crate) struct CacheDir {
    /// The snapshot cache directory [default: $LABHIT_CACHE_DIR/snapshots, else
    /// $XDG_CACHE_HOME/labhit/snapshots, else ~/.cache/labhit/snapshots]
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl CacheDir {
    fn store(&self) -> Result<SnapshotStore> {
        match &self.cache_dir {
            Some(dir) => Ok(SnapshotStore::new(dir)),
            None => SnapshotStore::open_default().ok_or_else(|| {
                anyhow!("no cache directory: set LABHIT_CACHE_DIR or HOME, or pass `--cache-dir`")
            }),
        }
    }
}

/// Arguments of `labhit cache stats`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "JSON fields: dir, entries, blobs, temps, bytes, max_bytes, \
    oldest_use, newest_use (RFC 3339, null when empty), live_runs."
)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    dir: CacheDir,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// Arguments of `labhit cache gc` and `labhit gc cache`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reads every manifest: removes corrupt entries, blobs no entry names, \
    temporary files left by a killed run (older than every live run and than an hour) and, \
    over the cap, the least recently used entries (a cache hit counts as a use). Entries used \
    since the oldest live run started stay.\n\
    JSON fields: evicted (tags), corrupt ([path, reason]), blobs_removed, temps_removed, \
    stale_leases, bytes_before, bytes_after, entries_after, live_runs, dry_run."
)]
pub(crate) struct CacheGcArgs {
    #[command(flatten)]
    dir: CacheDir,
    /// The size cap, like `500Mi` or `20G` [default: $LABHIT_CACHE_MAX_SIZE, else 10Gi]
    #[arg(long, value_name = "SIZE")]
    max_size: Option<labhit_protocol::forms::ByteSize>,
    /// Report what would be removed; remove nothing
    #[arg(long)]
    dry_run: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// How many runs to keep: a number, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keep(pub(crate) Option<usize>);

impl std::str::FromStr for Keep {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "all" {
            return Ok(Keep(None));
        }
        text.parse()
            .map(|n| Keep(Some(n)))
            .map_err(|_| format!("`{text}` is not a number of runs or `all`"))
    }
}

/// An age like `7d` or `36h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Age(pub(crate) Duration);

impl std::str::FromStr for Age {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        retention::parse_age(text).map(Age)
    }
}

/// Arguments of `labhit gc runs`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "A run directory is a directory under the runs directory whose name is a run id and\n",
    "which holds run.lock, summary.json or log.jsonl; nothing else is touched. A run in\n",
    "progress (its run.lock held) is never removed. A run is removed when it is not among\n",
    "the newest --keep runs (runs in progress count) or started longer ago than --older-than.\n",
    "Without either option: --keep 10.",
))]
pub(crate) struct RunsGcArgs {
    /// Where run directories are [default: .labhit/runs]
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Keep the newest N runs (`all`: no limit on the count)
    #[arg(long, value_name = "N")]
    keep: Option<Keep>,
    /// Remove runs that started longer ago than AGE (`7d`, `36h`, `90m`)
    #[arg(long, value_name = "AGE")]
    older_than: Option<Age>,
    /// Report what would be removed; remove nothing
    #[arg(long)]
    dry_run: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// The cap: the option, else the environment, else the default.
pub(crate) fn max_bytes(option: Option<labhit_protocol::forms::ByteSize>) -> Result<u64> {
    match option {
        Some(size) => Ok(size.bytes()),
        None => snapshot::max_bytes_from_env().map_err(|e| anyhow!(e)),
    }
}

fn time(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    })
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    use std::io::Write as _;
    let text = crate::printable::json(value)?;
    writeln!(crate::stdio::raw_stdout(), "{text}")?;
    Ok(())
}

fn print_lines(lines: &[String]) -> Result<()> {
    use std::io::Write as _;
    let mut out = crate::stdio::raw_stdout();
    for line in lines {
        writeln!(out, "{}", crate::printable::printable(line))?;
    }
    Ok(())
}

/// Runs `labhit cache ...`.
pub(crate) fn cache(command: &CacheCommand) -> Result<Exit> {
    match command {
        CacheCommand::Stats(args) => stats(args),
        CacheCommand::Gc(args) => cache_gc(args),
    }
}

/// Runs `labhit gc ...`.
pub(crate) fn gc(command: &GcCommand) -> Result<Exit> {
    match command {
        GcCommand::Runs(args) => runs_gc(args),
        GcCommand::Cache(args) => cache_gc(args),
    }
}

#[derive(Serialize)]
struct StatsReport {
    dir: String,
    entries: usize,
    blobs: usize,
    temps: usize,
    bytes: u64,
    max_bytes: u64,
    oldest_use: Option<String>,
    newest_use: Option<String>,
    live_runs: usize,
}

fn stats(args: &StatsArgs) -> Result<Exit> {
    let store = args.dir.store()?;
    let stats = store.stats()?;
    let report = StatsReport {
        dir: store.dir().display().to_string(),
        entries: stats.entries,
        blobs: stats.blobs,
        temps: stats.temps,
        bytes: stats.bytes,
        max_bytes: max_bytes(None)?,
        oldest_use: time(stats.oldest_use),
        newest_use: time(stats.newest_use),
        live_runs: stats.live_runs,
    };
    match args.format {
        Format::Json => print_json(&report)?,
        Format::Human => print_lines(&[
            format!("cache:      {}", report.dir),
            format!("entries:    {}", report.entries),
            format!("blobs:      {}", report.blobs),
            format!("temp files: {}", report.temps),
            format!("size:       {} of {} bytes", report.bytes, report.max_bytes),
            format!(
                "oldest use: {}",
                report.oldest_use.as_deref().unwrap_or("-")
            ),
            format!(
                "newest use: {}",
                report.newest_use.as_deref().unwrap_or("-")
            ),
            format!("live runs:  {}", report.live_runs),
        ])?,
    }
    Ok(Exit::Clean)
}

#[derive(Serialize)]
struct CacheGcReport {
    evicted: Vec<String>,
    corrupt: Vec<(String, String)>,
    blobs_removed: usize,
    temps_removed: usize,
    stale_leases: usize,
    bytes_before: u64,
    bytes_after: u64,
    entries_after: usize,
    live_runs: usize,
    dry_run: bool,
}

fn cache_gc(args: &CacheGcArgs) -> Result<Exit> {
    let store = args.dir.store()?;
    let report = store.gc(&GcOptions {
        max_bytes: Some(max_bytes(args.max_size)?),
        full: true,
        dry_run: args.dry_run,
    })?;
    let report = CacheGcReport {
        evicted: report.evicted,
        corrupt: report
            .corrupt
            .into_iter()
            .map(|(path, reason)| (path.display().to_string(), reason))
            .collect(),
        blobs_removed: report.blobs_removed,
        temps_removed: report.temps_removed,
        stale_leases: report.stale_leases,
        bytes_before: report.bytes_before,
        bytes_after: report.bytes_after,
        entries_after: report.entries_after,
        live_runs: report.live_runs,
        dry_run: args.dry_run,
    };
    match args.format {
        Format::Json => print_json(&report)?,
        Format::Human => {
            let verb = if args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            let mut lines: Vec<String> = report
                .corrupt
                .iter()
                .map(|(path, reason)| format!("corrupt: {path}: {reason}"))
                .collect();
            lines.push(format!(
                "{verb} {} entries (least recently used), {} blobs, {} temporary files; \
                 {} → {} bytes, {} entries left",
                report.evicted.len(),
                report.blobs_removed,
                report.temps_removed,
                report.bytes_before,
                report.bytes_after,
                report.entries_after
            ));
            print_lines(&lines)?;
        }
    }
    Ok(Exit::Clean)
}

#[derive(Serialize)]
struct RunsGcReport {
    removed: Vec<String>,
    kept: usize,
    in_progress: usize,
    dry_run: bool,
}

fn runs_gc(args: &RunsGcArgs) -> Result<Exit> {
    let project = std::env::current_dir().context("cannot determine the current directory")?;
    let base = args
        .run_dir
        .as_ref()
        .map_or_else(|| default_runs_base(&project), |dir| project.join(dir));
    let retention = match (args.keep, args.older_than) {
        (None, None) => Retention::default(),
        (keep, age) => Retention {
            keep_runs: keep.and_then(|k| k.0),
            max_age: age.map(|a| a.0),
        },
    };
    let report = retention::prune(&base, &retention, args.dry_run)?;
    let report = RunsGcReport {
        removed: report
            .removed
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        kept: report.kept,
        in_progress: report.in_progress,
        dry_run: args.dry_run,
    };
    match args.format {
        Format::Json => print_json(&report)?,
        Format::Human => {
            let verb = if args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            let mut lines: Vec<String> = report
                .removed
                .iter()
                .map(|p| format!("{verb} {p}"))
                .collect();
            lines.push(format!(
                "{verb} {} run directories; kept {} ({} in progress); default retention keeps {DEFAULT_KEEP_RUNS}",
                report.removed.len(),
                report.kept,
                report.in_progress
            ));
            print_lines(&lines)?;
        }
    }
    Ok(Exit::Clean)
}
