//! Ending `labhit run` when signals interrupt it: who writes `summary.json`, and what it says.
//!
//! Normally the main thread writes the summary once the scheduler returns
//! ([`Shutdown::finish`]). On a second signal the listener thread kills the running stages
//! and then gives the main thread [`FORCE_WAIT`] to get there; if it does not (a stage that
//! will not stop), the listener writes the summary itself from the stage statuses it knows,
//! every unfinished stage `cancelled`, the run `cancelled`, flushes the log and exits
//! ([`Shutdown::force`]). One lock makes sure only one of them writes.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use labhit_protocol::run::{PipelineRun, RunStatus, StageStatus};
use nix::sys::signal::Signal;

/// How long the second signal waits for the run to end by itself before labhit writes the
/// summary from what it knows and exits.
pub(crate) const FORCE_WAIT: Duration = Duration::from_secs(3);

/// Shared by the main thread and the signal listener.
#[derive(Default)]
pub(crate) struct Shutdown {
    signal: OnceLock<Signal>,
    written: Mutex<bool>,
    changed: Condvar,
}

impl Shutdown {
    /// Records the first signal received.
    pub(crate) fn record(&self, signal: Signal) {
        let _ = self.signal.set(signal);
    }

    /// The first signal received, if any.
    pub(crate) fn signal(&self) -> Option<Signal> {
        self.signal.get().copied()
    }

    /// The main thread: runs `write` (the summary and the log's last entries) unless the
    /// listener already did, and tells the listener.
    pub(crate) fn finish<T>(&self, write: impl FnOnce() -> T) -> T {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let out = write();
        *written = true;
        self.changed.notify_all();
        out
    }

    /// The listener, after a second signal: waits up to `wait` for [`Shutdown::finish`]; if
    /// the main thread did not get there, runs `emergency` (write the summary, flush the log)
    /// and exits with `code`.
    pub(crate) fn force(&self, wait: Duration, code: u8, emergency: impl FnOnce()) {
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let (written, _) = self
            .changed
            .wait_timeout_while(written, wait, |done| !*done)
            .unwrap_or_else(|p| p.into_inner());
        if *written {
            return;
        }
        emergency();
        // The lock is still held: the main thread cannot start a second summary.
        std::process::exit(i32::from(code));
    }
}

/// The run as far as labhit knows it when it stops at once: `skeleton` (the run's identity and
/// its stages, queued) with the statuses the scheduler reported; every stage not yet ended is
/// `cancelled` with `reason`, and the run is `cancelled`.
pub(crate) fn interrupted_run(
    mut skeleton: PipelineRun,
    statuses: &HashMap<String, StageStatus>,
    reason: &str,
) -> PipelineRun {
    let now = labhit_runtime::scheduler::now();
    for stage in &mut skeleton.stages {
        let status = statuses
            .get(stage.stage.as_str())
            .copied()
            .unwrap_or(StageStatus::Queued);
        if status.is_terminal() {
            stage.status = status;
        } else {
            stage.status = StageStatus::Cancelled;
            stage.reason = Some(reason.to_owned());
            stage.finished_at = Some(now);
        }
    }
    skeleton.status = RunStatus::Cancelled;
    skeleton.finished_at = Some(now);
    skeleton
}

#[cfg(test)]
mod tests {
    use labhit_protocol::pipeline::StageId;
    use labhit_protocol::run::StageRun;

    use super::*;

    #[test]
    fn unfinished_stages_end_cancelled_and_finished_ones_keep_their_status() {
        let mut skeleton = PipelineRun::example();
        skeleton.stages = ["a", "b", "c"]
            .iter()
            .map(|id| StageRun::queued(StageId::new(*id).expect("id")))
            .collect();
        let statuses = HashMap::from([
            ("a".to_owned(), StageStatus::Succeeded),
            ("b".to_owned(), StageStatus::Running),
        ]);
        let run = interrupted_run(skeleton, &statuses, "interrupted");
        assert_eq!(run.status, RunStatus::Cancelled);
        let got: Vec<StageStatus> = run.stages.iter().map(|s| s.status).collect();
        assert_eq!(
            got,
            [
                StageStatus::Succeeded,
                StageStatus::Cancelled,
                StageStatus::Cancelled
            ]
        );
        assert_eq!(run.stages[1].reason.as_deref(), Some("interrupted"));
    }
}
