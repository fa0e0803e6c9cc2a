//! [`ExtensionExecutor`]: a WebAssembly extension that declares the `executor` capability
//! runs `run:` scripts.
//!
//! The stage's command, the host's cache decision and the parent snapshot travel to the guest
//! in `step-input.command` (built by the runtime from an [`ExecutorCommand`]); the guest's
//! `step-output` comes back as a [`StepResult`], checked against the decision
//! ([`StepResult::validate`]): a failed step never commits, and a successful `miss_build_as`
//! must commit to the decided tag.
//! The extension runs in the runtime's sandbox (its manifest's limits, filesystem scope and
//! secrets), with the stage workspace preopened as the manifest grants.
//!
//! # Snapshots
//!
//! The command runs in the stage workspace (`/workspace` in the guest), so with
//! [`ExtensionExecutor::with_snapshots`] the host keeps its snapshots, exactly as for the
//! local executor: on `hit` it restores the snapshot into the workspace and then calls the
//! guest with `hit` (which skips the command and reports success without a commit); after a
//! successful `miss_build_as` that reports the commit, it records the workspace's change as
//! the decided tag. Without a store the decision is passed through untouched, for an
//! executor that keeps snapshots of a filesystem of its own (a container, a VM).

use std::sync::Arc;

use labhit_protocol::Value;
use labhit_protocol::executor::{ExecutorInput, StepResult};
use labhit_wit::convert::ExecutorCommand;

use super::decision::{self, OnHit};
use super::{ExecContext, ExecError, Executor};
use crate::logs::{LogSink, RedactingSink, Redactor};
use crate::runtime::{LoadedExtension, Runtime, StepRequest};
use crate::snapshot::SnapshotStore;

/// An extension used as the executor of `run:` stages (`use: X` + `run:`).
#[derive(Debug, Clone)]
pub struct ExtensionExecutor {
    runtime: Runtime,
    extension: LoadedExtension,
    use_ref: String,
    with: Value,
    snapshots: Option<SnapshotStore>,
}

/// The extension does not declare the `executor` capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "extension `{extension}@{version}` does not declare the `executor` capability, so it cannot run `run:` scripts"
)]
pub struct NotAnExecutor {
    /// `category/name` of the extension.
    pub extension: String,
    /// Its version.
    pub version: semver::Version,
}

impl ExtensionExecutor {
    /// Wraps `extension`, refusing one whose manifest does not declare `executor`.
    pub fn new(runtime: Runtime, extension: LoadedExtension) -> Result<Self, NotAnExecutor> {
        if !extension.manifest().capabilities.executor {
            return Err(NotAnExecutor {
                extension: extension.name().to_owned(),
                version: extension.version().clone(),
            });
        }
        Ok(Self {
            runtime,
            extension,
            use_ref: String::new(),
            with: Value::Null,
            snapshots: None,
        })
    }

    /// Sets the stage's `use` as written and its `with` config, passed to the guest.
    pub fn with_config(mut self, use_ref: impl Into<String>, with: Value) -> Self {
        self.use_ref = use_ref.into();
        self.with = with;
        self
    }

    /// Keeps the snapshots of `hit` and `miss_build_as` decisions in `store`, the host's
    /// store (see the module documentation). Without it the guest keeps its own.
    pub fn with_snapshots(mut self, store: SnapshotStore) -> Self {
        self.snapshots = Some(store);
        self
    }

    /// The host's snapshot store, when the host keeps this executor's snapshots.
    pub fn snapshots(&self) -> Option<&SnapshotStore> {
        self.snapshots.as_ref()
    }

    /// The wrapped extension.
    pub fn extension(&self) -> &LoadedExtension {
        &self.extension
    }
}

impl Executor for ExtensionExecutor {
    fn name(&self) -> String {
        format!(
            "extension:{}@{}",
            self.extension.name(),
            self.extension.version()
        )
    }

    fn sandboxed(&self) -> bool {
        true
    }

    fn contract(&self) -> Option<semver::Version> {
        Some(self.extension.contract_version().clone())
    }

    fn called_on_hit(&self) -> bool {
        true
    }

    fn execute(
        &self,
        input: &ExecutorInput,
        ctx: &ExecContext<'_>,
    ) -> Result<StepResult, ExecError> {
        ctx.check_input(input)?;
        if ctx.cancellation.is_cancelled() {
            return Err(ExecError::Cancelled {
                stage: ctx.stage.as_str().to_owned(),
            });
        }
        let Some(store) = &self.snapshots else {
            return self.call(input, ctx);
        };
        let log = ctx.step_log(input);
        let result = decision::obey(store, input, ctx, &log, OnHit::Call, || {
            self.call(input, ctx)
        });
        log.finish();
        result
    }
}

impl ExtensionExecutor {
    /// Calls the guest with `input` and checks its answer against the decision.
    fn call(&self, input: &ExecutorInput, ctx: &ExecContext<'_>) -> Result<StepResult, ExecError> {
        let stage = || ctx.stage.as_str().to_owned();
        let log_sink: Arc<dyn LogSink> = if ctx.secret_values.is_empty() {
            Arc::clone(&ctx.log)
        } else {
            let mut redactor = Redactor::new();
            for secret in &ctx.secret_values {
                redactor.add(secret);
            }
            Arc::new(RedactingSink::new(Arc::clone(&ctx.log), redactor))
        };
        let mut request = StepRequest::new(ctx.stage.as_str());
        request.run_id = input.run_id;
        request.step_id = input.step_id;
        request.use_ref = self.use_ref.clone();
        request.with = ctx.with.unwrap_or(&self.with).clone();
        request.env = input.env.clone();
        request.workspace = Some(ctx.workspace.to_owned());
        request.timeout = ctx.deadline(input);
        request.secrets = Arc::clone(&ctx.secrets);
        request.log_sink = log_sink;
        request.log_cursor = ctx.log_cursor.clone();
        request.cancellation = ctx.cancellation.clone();
        request.command = Some(ExecutorCommand::from_executor_input(input));
        let outcome = self.runtime.execute(&self.extension, request)?;
        ctx.outputs.extend(outcome.outputs);
        let refused = |message: String| ExecError::Refused {
            stage: stage(),
            message: format!(
                "executor extension `{}@{}` broke the executor contract: {message}",
                self.extension.name(),
                self.extension.version()
            ),
        };
        let result = StepResult::new(
            outcome.exit_code,
            outcome.committed_snapshot,
            outcome.artifacts,
        )
        .map_err(|e| refused(e.to_string()))?;
        result
            .validate(&input.cache_lookup)
            .map_err(|e| refused(e.to_string()))?;
        Ok(result)
    }
}
