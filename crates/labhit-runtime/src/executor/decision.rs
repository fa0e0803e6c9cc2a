//! The host's side of a cache decision on the stage workspace, shared by every executor whose
//! command works in that workspace: the built-in [`LocalExecutor`](super::LocalExecutor) and
//! executor extensions (which see it as `/workspace`).
//!
//! The snapshot store belongs to the host, so snapshots work the same whoever runs the
//! command:
//!
//! * `hit{tag}`: the snapshot is verified and restored into the workspace before the executor
//!   does anything. The local executor then skips the command. An extension is still called,
//!   with `hit`, and must report success without a commit (for it the restored workspace *is*
//!   the snapshot it boots from).
//! * `miss_build_as{tag}`: the workspace is scanned before the command (or the runner's scan,
//!   [`ExecContext::start_manifest`], is reused). Only when the executor reports success
//!   *and* the commit of `tag` is the workspace's change committed as `tag`. A failed step
//!   never commits.
//! * `miss_no_commit`: the store is not touched.
//!
//! A snapshot that cannot be restored or committed is an [`ExecError::Snapshot`]; the runner
//! retries a broken `hit` as a miss.
//!
//! Around all of it the workspace boundary is checked ([`crate::boundary::Guard`]): after a
//! restore, after the executor (whatever its result) and before a commit, every link the
//! step added that is absolute or leads outside the workspace, and every special file, is
//! removed and the step fails with [`ExecError::Boundary`].

use labhit_protocol::executor::{CacheDecision, ExecutorInput, StepResult};
use labhit_protocol::ids::SnapshotRef;
use labhit_protocol::run::{LogLevel, LogStream};

use super::{ExecContext, ExecError};
use crate::boundary::{BoundaryError, Guard};
use crate::logs::StepLog;
use crate::snapshot::{SnapshotError, SnapshotStore};
use crate::workspace::WorkspaceManifest;

/// What the executor does once the host has done its part of a `hit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnHit {
    /// Nothing: the step succeeds without running anything (the local executor).
    Skip,
    /// Call the executor anyway, which must answer with success and no commit (an extension:
    /// the contract has it acknowledge the decision).
    Call,
}

/// Carries out `input.cache_lookup` around `run`, which runs the command (or, for
/// [`OnHit::Call`], acknowledges the hit) and reports the executor's [`StepResult`], already
/// checked against the decision.
pub(crate) fn obey(
    store: &SnapshotStore,
    input: &ExecutorInput,
    ctx: &ExecContext<'_>,
    log: &StepLog,
    on_hit: OnHit,
    run: impl FnOnce() -> Result<StepResult, ExecError>,
) -> Result<StepResult, ExecError> {
    // A missing workspace is the executor's to report.
    let guard = match ctx.workspace.is_dir() {
        true => Some(Guard::start(ctx.workspace).map_err(|e| boundary_error(ctx, log, e))?),
        false => None,
    };
    let guard = guard.as_ref();
    // The answer stands unless the step left something behind; that wins.
    let checked = |result| check(guard, ctx, log, result);
    match &input.cache_lookup {
        CacheDecision::Hit { tag } => {
            if ctx.cancellation.is_cancelled() {
                return Err(ExecError::Cancelled {
                    stage: ctx.stage.as_str().to_owned(),
                });
            }
            let info = check(
                guard,
                ctx,
                log,
                store
                    .restore(tag, ctx.workspace)
                    .map_err(snapshot_error(ctx, tag)),
            )?;
            log.emit(
                LogLevel::Info,
                LogStream::System,
                &format!(
                    "cache hit: restored snapshot `{tag}` ({} entries written, {} deleted); command skipped",
                    info.changed, info.deleted
                ),
                Vec::new(),
            );
            match on_hit {
                OnHit::Skip => Ok(StepResult::success(Vec::new())),
                OnHit::Call => checked(run()),
            }
        }
        CacheDecision::MissBuildAs { tag } => {
            let scanned;
            let before = match ctx.start_manifest {
                Some(manifest) => manifest,
                None => {
                    scanned = scan(ctx)?;
                    &scanned
                }
            };
            let result = checked(run())?;
            if !result.is_success() || result.committed_snapshot.as_ref() != Some(tag) {
                return Ok(result);
            }
            let after = scan(ctx)?;
            let info = store
                .commit_scanned(tag, ctx.workspace, before, &after)
                .map_err(snapshot_error(ctx, tag))?;
            log.emit(
                LogLevel::Info,
                LogStream::System,
                &format!(
                    "committed snapshot `{tag}` ({} entries written, {} deleted, {} bytes)",
                    info.changed, info.deleted, info.bytes
                ),
                Vec::new(),
            );
            Ok(result)
        }
        CacheDecision::MissNoCommit => checked(run()),
    }
}

/// Scans the workspace, with the runner's digest index when there is one.
fn scan(ctx: &ExecContext<'_>) -> Result<WorkspaceManifest, ExecError> {
    let scanned = match ctx.digests {
        Some(digests) => WorkspaceManifest::scan_indexed(
            ctx.workspace,
            &mut digests.lock().unwrap_or_else(|p| p.into_inner()),
        ),
        None => WorkspaceManifest::scan(ctx.workspace),
    };
    scanned.map_err(|source| ExecError::Workspace {
        stage: ctx.stage.as_str().to_owned(),
        source,
    })
}

/// `result`, unless the boundary check after it finds something (which it removes).
fn check<T>(
    guard: Option<&Guard>,
    ctx: &ExecContext<'_>,
    log: &StepLog,
    result: Result<T, ExecError>,
) -> Result<T, ExecError> {
    if let Some(guard) = guard {
        guard.check().map_err(|e| boundary_error(ctx, log, e))?;
    }
    result
}

/// The boundary failure of the step, logged.
fn boundary_error(ctx: &ExecContext<'_>, log: &StepLog, source: BoundaryError) -> ExecError {
    let err = ExecError::Boundary {
        stage: ctx.stage.as_str().to_owned(),
        source,
    };
    log.emit(
        LogLevel::Error,
        LogStream::System,
        &err.to_string(),
        Vec::new(),
    );
    err
}

fn snapshot_error(
    ctx: &ExecContext<'_>,
    tag: &SnapshotRef,
) -> impl FnOnce(SnapshotError) -> ExecError {
    let stage = ctx.stage.as_str().to_owned();
    let tag = tag.clone();
    move |source| ExecError::Snapshot { stage, tag, source }
}
