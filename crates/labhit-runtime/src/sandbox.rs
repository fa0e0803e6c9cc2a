//! The per-step sandbox: a fresh wasmtime [`Store`] whose data ([`StepHost`]) holds the WASI
//! context and the state of every host capability, plus the limits the manifest sets.
//!
//! * **Memory**: a [`StoreLimits`] (built with [`StoreLimitsBuilder`]) caps every linear
//!   memory at the manifest's `limits.memory`; growing beyond it fails (`memory.grow` returns
//!   -1) and is recorded, so a guest that then traps ends with
//!   [`StepFailure::MemoryLimit`](crate::StepFailure::MemoryLimit).
//! * **Deadline**: the engine's epoch advances every tick (see [`crate::engine`]). The store's
//!   epoch deadline is one tick ahead and an epoch-deadline callback runs on every tick: past
//!   the step's deadline it interrupts the guest, so a stuck guest stops at its deadline ± one
//!   tick. A guest blocked in a host wait (`wasi:io/poll`, `blocking-*` stream calls) is
//!   stopped at the same deadline by [`crate::host::poll`], which bounds every such wait.
//! * **Cancellation**: the same callback interrupts a guest that keeps running longer than
//!   the grace period after its [`Cancellation`] was set; [`crate::host::poll`] does the same
//!   for a guest that stays blocked in a host wait.
//! * One store per step: a trapped instance is never entered again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

use crate::cancellation::Cancellation;
use crate::host::secrets::SecretAccess;
use crate::logs::StepLog;

/// The data of a step's store.
pub struct StepHost {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: crate::host::http::HttpState,
    pub(crate) table: ResourceTable,
    pub(crate) log: Arc<StepLog>,
    pub(crate) secrets: SecretAccess,
    pub(crate) cancellation: Cancellation,
    pub(crate) limiter: StepLimiter,
    pub(crate) clock: StepClock,
    pub(crate) fs: crate::host::fs_guard::FsGuard,
}

/// Why the sandbox stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Interruption {
    #[error("the step ran past its deadline")]
    Deadline,
    #[error("the step was cancelled and kept running past the grace period")]
    Cancelled,
}

/// Deadline and cancellation bookkeeping of one step.
pub(crate) struct StepClock {
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    pub(crate) grace: Duration,
    pub(crate) interrupted: Option<Interruption>,
}

impl StepClock {
    pub(crate) fn new(timeout: Duration, grace: Duration) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            // A timeout too large for `Instant` means "practically never".
            deadline: now
                .checked_add(timeout)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600)),
            grace,
            interrupted: None,
        }
    }

    /// When the grace period of a cancellation ends: it starts when the flag was set, or
    /// when the step started if the flag was set before.
    pub(crate) fn grace_ends(&self, cancellation: &Cancellation) -> Option<Instant> {
        grace_ends(cancellation.cancelled_at()?, self.started, self.grace)
    }
}

/// When the grace period of a cancellation set `at` ends, for a step that `started` then.
pub(crate) fn grace_ends(at: Instant, started: Instant, grace: Duration) -> Option<Instant> {
    at.max(started).checked_add(grace)
}

/// The memory limit of a step: [`StoreLimits`] plus a record of refused growth.
pub(crate) struct StepLimiter {
    limits: StoreLimits,
    pub(crate) memory_refused: bool,
}

impl StepLimiter {
    pub(crate) fn new(memory_bytes: u64) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(memory_bytes).unwrap_or(usize::MAX))
            .table_elements(1_000_000)
            .instances(1_000)
            .tables(1_000)
            .memories(100)
            .build();
        Self {
            limits,
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for StepLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.memory_refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// A fresh store for one step, with its limiter, deadline and cancellation check installed.
pub(crate) fn new_store(engine: &Engine, host: StepHost) -> Store<StepHost> {
    let mut store = Store::new(engine, host);
    store.limiter(|host| &mut host.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let host = ctx.data_mut();
        let now = Instant::now();
        if now >= host.clock.deadline {
            host.clock.interrupted = Some(Interruption::Deadline);
            return Err(wasmtime::Error::new(Interruption::Deadline));
        }
        if host
            .clock
            .grace_ends(&host.cancellation)
            .is_some_and(|end| now >= end)
        {
            host.clock.interrupted = Some(Interruption::Cancelled);
            return Err(wasmtime::Error::new(Interruption::Cancelled));
        }
        Ok(UpdateDeadline::Continue(1))
    });
    store
}
