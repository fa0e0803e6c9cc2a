//! What a restarted server does about the runs its predecessor left on the fleet.
//!
//! The server's run store marks every run left in flight as interrupted when it opens (the
//! run ends `failed`, its running stage with the reason `interrupted: …`); nothing re-adopts
//! such a run. Its tasks may still be on the fleet: one running on a worker, others queued in
//! the work-queue stream. [`abandon_runs`] publishes, for each such run, an [`Abandoned`] on
//! `labhit.cancel.<run>` in the events stream, where it stays: a worker running a task of the
//! run stops it, and a worker that pulls one later acknowledges it without running anything.
//! Their replies and log lines land in the events stream, where nobody listens for them (a
//! new server never dispatches under a dead run's id), so they cannot reach another run.

use labhit_protocol::ids::RunId;

use crate::setup::{Fleet, FleetError, nats};
use crate::wire::{Abandoned, run_cancel_subject};

/// The reason workers give for a task of a run the server abandoned.
pub const ABANDONED_REASON: &str =
    "the run was interrupted by a restart of its server; its tasks are cancelled";

/// Cancels every task of `runs` on the fleet (see the module documentation); returns once
/// the events stream has stored each cancellation.
pub async fn abandon_runs(fleet: &Fleet, runs: &[RunId]) -> Result<(), FleetError> {
    let payload = serde_json::to_vec(&Abandoned {
        reason: ABANDONED_REASON.to_owned(),
    })
    .map_err(|source| FleetError::Malformed {
        subject: "labhit.cancel".to_owned(),
        source,
    })?;
    for run in runs {
        let subject = run_cancel_subject(*run);
        fleet
            .js
            .publish(subject.clone(), payload.clone().into())
            .await
            .map_err(nats(format!("cancelling the tasks of run {run}")))?
            .await
            .map_err(nats(format!("cancelling the tasks of run {run}")))?;
    }
    Ok(())
}
