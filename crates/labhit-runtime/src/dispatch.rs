//! The dispatch seam: where a ready stage's work leaves the
//! [`PipelineRunner`](crate::scheduler::stages::PipelineRunner).
//!
//! The runner does everything that belongs to the run: the plan, the workspace lock, the cache
//! decision, secrets, artifacts. What is left — running one step of the stage, an
//! extension's ([`StepRequest`]) or a `run:` script's ([`ExecutorInput`]) — it hands to a
//! [`Dispatcher`] together with a [`Dispatch`] naming the run, the stage and the attempt.
//! The wire inputs are the same whoever runs them: the extension reference, `with`, env and
//! deadline of a [`StepRequest`]; the command, cache decision, limits and workspace archive
//! of an [`ExecutorInput`].
//!
//! [`InProcess`] is today's behaviour and the default: the step runs on the runner's thread
//! through the [`Runtime`] or the [`Executor`]. Another dispatcher (a fleet of workers, say)
//! runs the same inputs elsewhere and must keep the runner's guarantees: the answer describes
//! the step exactly as [`InProcess`] would (same errors for the same failures), the
//! workspace afterwards holds the step's effect, and the cache decision is obeyed: with the
//! host's own snapshot store ([`Dispatch::snapshots`]), or with snapshots the dispatcher keeps
//! elsewhere, in which case it answers [`Dispatcher::find_snapshot`] (the runner decides
//! `hit` from its answer) and restores and commits them itself.

use std::path::Path;

use labhit_protocol::executor::{ExecutorInput, StepResult};
use labhit_protocol::ids::RunId;
use labhit_protocol::pipeline::{Stage, StageId};

use crate::error::StepError;
use crate::executor::{ExecContext, ExecError, Executor};
use crate::runtime::{LoadedExtension, Runtime, StepOutcome, StepRequest};
use crate::snapshot::{SnapshotError, SnapshotStore};
use labhit_protocol::ids::SnapshotRef;

/// Which step of which run a dispatcher is handed.
#[derive(Debug, Clone, Copy)]
pub struct Dispatch<'a> {
    /// The run.
    pub run_id: RunId,
    /// The stage.
    pub stage: &'a StageId,
    /// The stage as written (its `use`, `with` and `sandbox`).
    pub definition: &'a Stage,
    /// 1 for a stage's first step; 2 when the runner runs it again (a cache `hit` whose
    /// snapshot was unusable is retried as a miss). With the run and the stage, it names the
    /// step uniquely: a remote dispatcher derives its task id from the three.
    pub attempt: u32,
    /// The run's workspace on this host (the step's effect must end up here).
    pub workspace: &'a Path,
    /// The host's snapshot store, when caching is on: the one the cache decision was made
    /// against.
    pub snapshots: Option<&'a SnapshotStore>,
}

impl Dispatch<'_> {
    /// `run/stage/attempt`: the step's deterministic id.
    pub fn task_id(&self) -> String {
        format!("{}/{}/{}", self.run_id, self.stage, self.attempt)
    }
}

/// Runs the steps of ready stages. Shared by the runner's threads.
pub trait Dispatcher: Send + Sync {
    /// A short name for logs (`in-process`, `nats`).
    fn name(&self) -> &str;

    /// Runs `request` with the loaded extension `ext` (the stage's `use:`).
    fn extension(
        &self,
        dispatch: &Dispatch<'_>,
        runtime: &Runtime,
        ext: &LoadedExtension,
        request: StepRequest,
    ) -> Result<StepOutcome, StepError>;

    /// Whether a usable snapshot `tag` exists for this dispatcher's steps: the runner decides
    /// `hit` when it does, `miss_build_as` when it does not. The default asks the host's
    /// `store` (verifying the snapshot); a dispatcher whose steps keep their snapshots
    /// elsewhere (a fleet's object store) asks there. An error is logged by the runner and
    /// decides a miss.
    fn find_snapshot(
        &self,
        tag: &SnapshotRef,
        store: &SnapshotStore,
    ) -> Result<bool, SnapshotError> {
        match store.verify(tag) {
            Ok(_) => Ok(true),
            Err(SnapshotError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs the `run:` step `input` with `executor` in `ctx`, obeying `input.cache_lookup`.
    fn command(
        &self,
        dispatch: &Dispatch<'_>,
        executor: &dyn Executor,
        input: &ExecutorInput,
        ctx: &ExecContext<'_>,
    ) -> Result<StepResult, ExecError>;
}

/// Runs every step right here, on the calling thread: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

impl Dispatcher for InProcess {
    fn name(&self) -> &str {
        "in-process"
    }

    fn extension(
        &self,
        _dispatch: &Dispatch<'_>,
        runtime: &Runtime,
        ext: &LoadedExtension,
        request: StepRequest,
    ) -> Result<StepOutcome, StepError> {
        runtime.execute(ext, request)
    }

    fn command(
        &self,
        _dispatch: &Dispatch<'_>,
        executor: &dyn Executor,
        input: &ExecutorInput,
        ctx: &ExecContext<'_>,
    ) -> Result<StepResult, ExecError> {
        executor.execute(input, ctx)
    }
}
