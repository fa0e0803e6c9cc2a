//! [`Cancellation`]: the flag an engine sets to stop a run, a stage or a step.
//!
//! A domain type, not wasmtime glue: the scheduler, the executors and the sandbox all hold
//! clones of one flag. Setting it is permanent and remembers *when* it happened, so every
//! holder measures the same grace period. Besides the flag it can be awaited
//! ([`Cancellation::cancelled`]): the sandbox races every blocking host wait of a guest
//! against it (see [`crate::host::poll`]), so a guest asleep in `wasi:io/poll` is stopped as
//! promptly as a guest that keeps running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::Notify;

/// A cancellation flag shared between the engine and one or more steps. Once set it stays
/// set. Cheap to clone; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancellation(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    flag: AtomicBool,
    at: OnceLock<Instant>,
    notify: Notify,
}

impl Cancellation {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag: every holder of a clone sees it, and every task waiting in
    /// [`Cancellation::cancelled`] wakes up. Setting it again changes nothing.
    pub fn cancel(&self) {
        let _ = self.0.at.set(Instant::now());
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// When the flag was first set, if it was.
    pub fn cancelled_at(&self) -> Option<Instant> {
        if self.is_cancelled() {
            self.0.at.get().copied()
        } else {
            None
        }
    }

    /// Completes once the flag is set (at once if it already is).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registers interest before the check, so a `cancel` in between is not missed.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_its_time() {
        let a = Cancellation::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        assert_eq!(b.cancelled_at(), None);
        a.cancel();
        assert!(b.is_cancelled());
        let at = b.cancelled_at().expect("set");
        a.cancel();
        assert_eq!(
            b.cancelled_at(),
            Some(at),
            "a second cancel keeps the first time"
        );
    }

    #[test]
    fn waiters_wake_on_cancel_from_another_thread() {
        let flag = Cancellation::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let setter = flag.clone();
        let thread = std::thread::spawn(move || setter.cancel());
        rt.block_on(flag.cancelled());
        thread.join().expect("setter thread");
        assert!(flag.is_cancelled());
        // Already set: completes at once.
        rt.block_on(flag.cancelled());
    }
}
