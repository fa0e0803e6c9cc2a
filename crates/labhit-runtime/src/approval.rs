//! Approvals that arrive while a run is under way: the [`Approver`] seam and [`Approvals`],
//! the handle a server (or a test) approves stages through.
//!
//! A stage whose gate needs an approval that was not given in advance asks the run's
//! [`Approver`] (see [`crate::gates`]); the stage shows `waiting_for_approval` meanwhile. An
//! approver answers with a [`Verdict`]:
//!
//! * [`Approvals`] — waits until [`Approvals::approve`] is called for the stage (from any
//!   thread, through any clone of the handle), the run is cancelled, or the optional deadline
//!   passes (the stage is then denied and the reason says so). Several stages may wait at
//!   once; each is released on its own.
//! * the CLI's terminal prompt (`approve stage `deploy`? [y/N]`) is another implementation.
//!
//! An approval never bypasses a policy: [`crate::gates::Gates::decide`] judges the policy
//! before it asks, and a policy that denies ends the stage `denied` however it is approved.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::cancellation::Cancellation;

/// How often a waiting approver looks at the run's cancellation flag.
const POLL: Duration = Duration::from_millis(25);

/// An approver's answer for one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The stage may run (if its policy allows it).
    Approved {
        /// How, completing "approved …": `by alice`, `at the prompt`.
        how: String,
    },
    /// The stage must not run.
    Denied {
        /// Why, a full sentence fragment recorded as the stage's reason.
        reason: String,
    },
    /// The run was cancelled (or stopped by fail-fast) while the stage waited.
    Cancelled,
}

/// Decides whether a stage that needs an approval may run. Called from the scheduler's
/// worker threads; may block (a person is asked, a server waits for an RPC).
pub trait Approver: Send + Sync {
    /// Waits for the verdict on `stage`; `why` says what requires the approval. Must return
    /// [`Verdict::Cancelled`] soon after `cancellation` goes true.
    fn wait(&self, stage: &str, why: &str, cancellation: &Cancellation) -> Verdict;
}

/// Who approved a stage, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who approved (a token's name, a user).
    pub by: String,
    /// When the approval arrived.
    pub at: DateTime<Utc>,
}

/// Approvals given through a handle while the run is under way. Cheap to clone; clones share
/// the approvals. See the module documentation.
#[derive(Clone, Default)]
pub struct Approvals {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    deadline: Option<Duration>,
}

#[derive(Default)]
struct State {
    granted: BTreeMap<String, Grant>,
    waiting: BTreeSet<String>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Approvals")
            .field("granted", &state.granted)
            .field("waiting", &state.waiting)
            .field("deadline", &self.inner.deadline)
            .finish()
    }
}

impl Approvals {
    /// A handle without approvals; a stage waits until approved or the run is cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle whose stages are denied when no approval arrives within `deadline` of the
    /// moment they start waiting.
    pub fn with_deadline(deadline: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                deadline: Some(deadline),
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Approves `stage` on behalf of `by`. A stage waiting for it proceeds; a stage that has
    /// not asked yet will not wait when it does. Returns whether `stage` was waiting. The
    /// first approval of a stage is the one recorded.
    pub fn approve(&self, stage: &str, by: &str) -> bool {
        let mut state = self.lock();
        state
            .granted
            .entry(stage.to_owned())
            .or_insert_with(|| Grant {
                by: by.to_owned(),
                at: crate::scheduler::now(),
            });
        let waiting = state.waiting.contains(stage);
        drop(state);
        self.inner.changed.notify_all();
        waiting
    }

    /// The stages waiting for an approval right now, sorted.
    pub fn waiting(&self) -> Vec<String> {
        self.lock().waiting.iter().cloned().collect()
    }

    /// The approval of `stage`, if it was given.
    pub fn grant(&self, stage: &str) -> Option<Grant> {
        self.lock().granted.get(stage).cloned()
    }
}

impl Approver for Approvals {
    fn wait(&self, stage: &str, why: &str, cancellation: &Cancellation) -> Verdict {
        let until = self.inner.deadline.map(|d| (d, Instant::now() + d));
        let mut state = self.lock();
        state.waiting.insert(stage.to_owned());
        let verdict = loop {
            if let Some(grant) = state.granted.get(stage) {
                break Verdict::Approved {
                    how: format!("by {}", grant.by),
                };
            }
            if cancellation.is_cancelled() {
                break Verdict::Cancelled;
            }
            let mut wait = POLL;
            if let Some((deadline, until)) = until {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Verdict::Denied {
                        reason: format!(
                            "no approval arrived within the approval deadline of {} ({why})",
                            crate::scheduler::human(deadline)
                        ),
                    };
                }
                wait = wait.min(left);
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, wait)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        };
        state.waiting.remove(stage);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_given_in_advance_does_not_wait() {
        let approvals = Approvals::new();
        assert!(!approvals.approve("deploy", "alice"), "nobody waited");
        let verdict = approvals.wait("deploy", "why", &Cancellation::new());
        assert_eq!(
            verdict,
            Verdict::Approved {
                how: "by alice".to_owned()
            }
        );
        approvals.approve("deploy", "bob");
        assert_eq!(approvals.grant("deploy").expect("granted").by, "alice");
        assert!(approvals.waiting().is_empty());
    }

    #[test]
    fn a_deadline_denies_and_says_so() {
        let approvals = Approvals::with_deadline(Duration::from_millis(30));
        let verdict = approvals.wait(
            "deploy",
            "the gate requires an approval",
            &Cancellation::new(),
        );
        let Verdict::Denied { reason } = verdict else {
            panic!("{verdict:?}");
        };
        assert!(reason.contains("approval deadline of 30ms"), "{reason}");
        assert!(reason.contains("the gate requires an approval"), "{reason}");
    }

    #[test]
    fn cancellation_ends_the_wait() {
        let approvals = Approvals::new();
        let cancellation = Cancellation::new();
        let flag = cancellation.clone();
        let watcher = approvals.clone();
        let thread = std::thread::spawn(move || {
            // Cancel only once the stage is really waiting.
            while watcher.waiting().is_empty() {
                std::thread::yield_now();
            }
            flag.cancel();
        });
        assert_eq!(
            approvals.wait("deploy", "why", &cancellation),
            Verdict::Cancelled
        );
        thread.join().expect("canceller");
        assert!(approvals.waiting().is_empty());
    }
}
