//! The per-run `tokio::sync::watch` channels through which committed progress is published.
//!
//! A channel exists only while somebody subscribed to its run. The writer publishes after
//! each commit into the channels of the runs the batch touched; a subscriber to a run without
//! a channel creates one from a committed read, under the same lock the writer publishes
//! under, so no commit can fall between the read and the first published value.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use labhit_protocol::ids::RunId;
use tokio::sync::watch;

use super::error::Result;
use super::model::Progress;

/// The channels, by run.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    channels: Mutex<HashMap<RunId, watch::Sender<Progress>>>,
}

impl Watches {
    /// Publishes committed progress (called by the writer after a commit).
    pub(crate) fn publish(&self, progress: &[(RunId, Progress)]) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        for (run, p) in progress {
            if let Some(tx) = channels.get(run) {
                tx.send_if_modified(|old| {
                    let changed = old != p;
                    *old = *p;
                    changed
                });
                if p.closed && tx.receiver_count() == 0 {
                    channels.remove(run);
                }
            }
        }
    }

    /// A receiver of `run`'s progress; `read` gives the committed progress when the run has
    /// no channel yet (it runs under the lock).
    pub(crate) fn subscribe(
        &self,
        run: RunId,
        read: impl FnOnce() -> Result<Progress>,
    ) -> Result<watch::Receiver<Progress>> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = channels.get(&run) {
            return Ok(tx.subscribe());
        }
        let progress = read()?;
        // Forget channels of ended runs nobody watches any more.
        channels.retain(|_, tx| tx.receiver_count() > 0 || !tx.borrow().closed);
        let (tx, rx) = watch::channel(progress);
        channels.insert(run, tx);
        Ok(rx)
    }
}
