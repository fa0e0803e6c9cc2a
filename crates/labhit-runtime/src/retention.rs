//! Retention of run directories: how many finished runs stay on disk, and the lock that
//! marks a run as in progress so that nothing prunes it.
//!
//! # What is a run directory
//!
//! A directory directly under the runs base (`.labhit/runs` by default) whose name is a run
//! id (a UUID) and that holds at least one of [`RUN_LOCK_FILE`], `summary.json` or
//! `log.jsonl`. Anything else in the base — a file, a symbolic link, a directory with
//! another name or with none of these files — is never touched.
//!
//! # In progress
//!
//! A run holds [`RunLock`] for its whole life: an exclusive lock on `<run-dir>/run.lock`,
//! taken *before* the workspace is copied. The lock file is created and locked under a
//! temporary name in the base and renamed into the run directory, so no other process ever
//! sees the lock file unlocked while the run lives. The kernel releases the lock when the
//! process ends, however it ends: a run killed with SIGKILL counts as finished. A run
//! directory whose lock is held is never removed.
//!
//! # Policy
//!
//! [`Retention`] has two limits, each optional: `keep_runs` (only the newest N runs stay)
//! and `max_age` (runs that started longer ago go). A finished run is removed when it breaks
//! either limit; runs in progress count towards `keep_runs` but are never removed. "Newest" is by start time: the time written into `run.lock`, else the
//! directory's modification time (runs from before the lock existed). The default
//! ([`Retention::default`]) keeps the [`DEFAULT_KEEP_RUNS`] newest runs and has no age limit.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use labhit_protocol::ids::RunId;

use crate::snapshot::StoreLease;

/// The lock file a run holds in its run directory while it is in progress.
pub const RUN_LOCK_FILE: &str = "run.lock";

/// How many finished runs the default retention keeps.
pub const DEFAULT_KEEP_RUNS: usize = 10;

/// Why run directories could not be listed, locked or removed. Names the path at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// A file system operation failed.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The runs base exists but is not a directory.
    #[error("the runs directory `{}` is not a directory: remove it or pass another `--run-dir`", path.display())]
    NotADirectory {
        /// The base.
        path: PathBuf,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RetentionError + use<> {
    let path = path.to_owned();
    move |source| RetentionError::Io {
        action,
        path,
        source,
    }
}

/// Which finished runs stay (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep only the newest N finished runs; `None`: no limit on the count.
    pub keep_runs: Option<usize>,
    /// Remove runs that started longer ago than this; `None`: no limit on the age.
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    /// Keep the [`DEFAULT_KEEP_RUNS`] newest runs, whatever their age.
    fn default() -> Self {
        Self {
            keep_runs: Some(DEFAULT_KEEP_RUNS),
            max_age: None,
        }
    }
}

impl Retention {
    /// Keeps every run.
    pub const KEEP_ALL: Self = Self {
        keep_runs: None,
        max_age: None,
    };
}

/// Parses an age such as `7d`, `36h`, `90m`, `1h30m` or `45s` (days, or hours, minutes and
/// seconds in that order).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    if let Some(days) = text.strip_suffix('d')
        && !days.is_empty()
        && days.len() <= 6
        && days.bytes().all(|b| b.is_ascii_digit())
    {
        let days: u64 = days.parse().map_err(|e| format!("`{text}`: {e}"))?;
        return Ok(Duration::from_secs(days * 86_400));
    }
    text.parse::<labhit_protocol::forms::DurationSpec>()
        .map(|d| d.to_std())
        .map_err(|_| {
            format!("`{text}` is not an age (expected days like `7d`, or `36h`, `90m`, `1h30m`)")
        })
}

/// The lock of a run in progress (see the module docs). Released when dropped.
#[derive(Debug)]
pub struct RunLock {
    run_dir: PathBuf,
    _file: fs::File,
}

impl RunLock {
    /// Creates `<base>/<run_id>/` with a held `run.lock` in it (the start time inside).
    pub fn acquire(base: &Path, run_id: RunId) -> Result<Self, RetentionError> {
        check_base(base, true)?;
        let run_dir = base.join(run_id.to_string());
        let temp = base.join(format!(".{run_id}.lock.tmp"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_err("create", &temp))?;
        let locked = file
            .try_lock()
            .map_err(io::Error::from)
            .and_then(|()| writeln!(file, "{}", unix_nanos(SystemTime::now())))
            .map_err(io_err("lock", &temp))
            .and_then(|()| fs::create_dir(&run_dir).map_err(io_err("create", &run_dir)))
            .and_then(|()| {
                let lock = run_dir.join(RUN_LOCK_FILE);
                fs::rename(&temp, &lock).map_err(io_err("create", &lock))
            });
        if let Err(e) = locked {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        Ok(Self {
            run_dir,
            _file: file,
        })
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }
}

/// What keeps a run live on disk while it is held: its [`RunLock`] (no pruning removes its
/// run directory) and its [`StoreLease`] on the snapshot store (garbage collection leaves
/// what the run may be writing or restoring alone). [`crate::run::prepare`] takes both;
/// [`crate::run::PreparedRun::take_guard`] hands them to the caller. Released when dropped.
#[derive(Debug, Default)]
pub struct RunGuard {
    pub(crate) lock: Option<RunLock>,
    pub(crate) lease: Option<StoreLease>,
}

impl RunGuard {
    /// Releases the lease on the snapshot store (before the run collects its garbage), and
    /// keeps the run lock.
    pub fn release_cache(&mut self) {
        self.lease = None;
    }

    /// The run directory the lock is in, if the run has one of its own.
    pub fn run_dir(&self) -> Option<&Path> {
        self.lock.as_ref().map(RunLock::run_dir)
    }
}

fn unix_nanos(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Checks that `base` is a directory (creating it when `create`); `Ok(false)` when it is
/// missing and not created.
fn check_base(base: &Path, create: bool) -> Result<bool, RetentionError> {
    match fs::metadata(base) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(_) => Err(RetentionError::NotADirectory {
            path: base.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            fs::create_dir_all(base).map_err(io_err("create", base))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("read", base)(e)),
    }
}

/// One run directory found under a base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    /// The run id (the directory's name).
    pub id: RunId,
    /// The directory.
    pub path: PathBuf,
    /// When the run started (see the module docs).
    pub started: SystemTime,
    /// Whether a live process holds its lock.
    pub in_progress: bool,
}

/// Every run directory under `base` (see the module docs), oldest first. A missing base has
/// none.
pub fn list_runs(base: &Path) -> Result<Vec<RunDir>, RetentionError> {
    if !check_base(base, false)? {
        return Ok(Vec::new());
    }
    let mut runs = Vec::new();
    for item in fs::read_dir(base).map_err(io_err("read", base))? {
        let item = item.map_err(io_err("read", base))?;
        let Some(id) = item.file_name().to_str().and_then(|n| RunId::parse(n).ok()) else {
            continue;
        };
        let path = item.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_dir() => meta,
            // Gone meanwhile, a link or a file: not a run directory.
            _ => continue,
        };
        let lock_path = path.join(RUN_LOCK_FILE);
        let has = |name: &str| fs::symlink_metadata(path.join(name)).is_ok_and(|m| m.is_file());
        let has_lock = has(RUN_LOCK_FILE);
        if !has_lock && !has(crate::summary::SUMMARY_FILE) && !has(crate::summary::LOG_FILE) {
            continue;
        }
        let (started, in_progress) = if has_lock {
            lock_state(&lock_path)?
        } else {
            (None, false)
        };
        runs.push(RunDir {
            id,
            path,
            started: started
                .or_else(|| meta.modified().ok())
                .unwrap_or(UNIX_EPOCH),
            in_progress,
        });
    }
    runs.sort_by(|a, b| (a.started, a.path.as_path()).cmp(&(b.started, b.path.as_path())));
    Ok(runs)
}

/// The start time written in a lock file, and whether its lock is held.
fn lock_state(path: &Path) -> Result<(Option<SystemTime>, bool), RetentionError> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, false)),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let held = match file.try_lock_shared() {
        Ok(()) => false,
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", path)(e)),
    };
    let started = fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(|nanos| UNIX_EPOCH + Duration::from_nanos(nanos));
    Ok((started, held))
}

/// What [`prune`] did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Run directories removed (or to remove), oldest first.
    pub removed: Vec<PathBuf>,
    /// Run directories kept.
    pub kept: usize,
    /// Of those kept, how many are in progress.
    pub in_progress: usize,
}

/// Removes the runs under `base` that `retention` does not keep (see the module docs); with
/// `dry_run` only reports them. `keep_runs` counts runs in progress too (a run pruning
/// after itself keeps `keep_runs - 1` finished ones), but a run in progress is never
/// removed, whatever the limits.
pub fn prune(
    base: &Path,
    retention: &Retention,
    dry_run: bool,
) -> Result<PruneReport, RetentionError> {
    let runs = list_runs(base)?;
    let now = SystemTime::now();
    let mut report = PruneReport::default();
    for (newer, run) in runs.iter().rev().enumerate() {
        if run.in_progress {
            report.kept += 1;
            report.in_progress += 1;
            continue;
        }
        let too_many = retention.keep_runs.is_some_and(|keep| newer >= keep);
        let too_old = retention
            .max_age
            .is_some_and(|age| now.duration_since(run.started).is_ok_and(|d| d > age));
        if (too_many || too_old) && (dry_run || remove_run(run)?) {
            report.removed.push(run.path.clone());
        } else {
            report.kept += 1;
        }
    }
    report.removed.reverse();
    Ok(report)
}

/// Removes one finished run directory, checking again that it has not started meanwhile
/// (its lock held); `Ok(false)` when it has.
fn remove_run(run: &RunDir) -> Result<bool, RetentionError> {
    let lock = run.path.join(RUN_LOCK_FILE);
    if fs::symlink_metadata(&lock).is_ok() && lock_state(&lock)?.1 {
        return Ok(false);
    }
    // A workspace made with `git worktree add` stays registered in its repository until
    // `git worktree prune` there; its files go either way.
    match fs::remove_dir_all(&run.path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // A stage may have left read-only directories: make them writable and retry.
            make_dirs_writable(&run.path);
            fs::remove_dir_all(&run.path).map_err(io_err("remove", &run.path))?;
            Ok(true)
        }
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &run.path)(e)),
        _ => Ok(true),
    }
}

/// Adds owner `rwx` to every directory under `dir` (links are not followed); best effort.
fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.file_type().is_dir() {
        return;
    }
    let _ = fs::set_permissions(
        dir,
        fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
    );
    if let Ok(items) = fs::read_dir(dir) {
        for item in items.flatten() {
            make_dirs_writable(&item.path());
        }
    }
}
