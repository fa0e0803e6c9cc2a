//! Stage gates: `gate: {approval: required, policy: NAME}` decided before a stage starts.
//!
//! [`Gates::decide`] runs in this order and stops at the first denial:
//!
//! 1. **policy** (when named): judged by [`Policies::evaluate`] against the run's ref. A
//!    denial denies the stage; a policy with `require-approval = true` adds the need for an
//!    approval.
//! 2. **approval** (when `approval: required` or the policy requires one): granted when the
//!    stage was pre-approved (`--approve STAGE`, repeatable, or `--approve-all`); otherwise, if
//!    an [`Approver`] is available (the CLI installs its terminal prompt when stdin is a
//!    terminal, a server an [`Approvals`](crate::approval::Approvals) handle), the stage waits
//!    for it (status `waiting_for_approval`) and is denied when it refuses; otherwise the stage
//!    is **denied** — never silently run.
//!
//! Every decision comes back as a [`GateDecision`] with a reason sentence that the scheduler
//! logs and records in the stage's `reason`.

use std::collections::BTreeSet;
use std::sync::Arc;

use labhit_protocol::pipeline::{Approval, Gate};

pub use crate::approval::{Approver, Verdict};
use crate::cancellation::Cancellation;
use crate::policy::{GitRef, Policies};

/// Which stages were approved in advance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PreApproved {
    /// None (the default).
    #[default]
    Nothing,
    /// Every stage (`--approve-all`).
    All,
    /// These stages (`--approve STAGE`).
    Stages(BTreeSet<String>),
}

impl PreApproved {
    /// Whether `stage` was approved in advance.
    pub fn covers(&self, stage: &str) -> bool {
        match self {
            PreApproved::Nothing => false,
            PreApproved::All => true,
            PreApproved::Stages(stages) => stages.contains(stage),
        }
    }
}

/// The outcome of a stage's gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// The stage may run.
    Open {
        /// Why (empty for a stage without a gate).
        reason: String,
    },
    /// The stage must not run.
    Denied {
        /// Why.
        reason: String,
    },
    /// The run was cancelled while the gate waited for an approval.
    Cancelled,
}

impl GateDecision {
    /// Whether the stage may run.
    pub fn is_open(&self) -> bool {
        matches!(self, GateDecision::Open { .. })
    }

    /// The reason sentence.
    pub fn reason(&self) -> &str {
        match self {
            GateDecision::Open { reason } | GateDecision::Denied { reason } => reason,
            GateDecision::Cancelled => "cancelled while waiting for an approval",
        }
    }
}

/// Everything gates are decided with.
#[derive(Clone, Default)]
pub struct Gates {
    /// Stages approved in advance.
    pub approved: PreApproved,
    /// Who to ask (and wait for) when an approval is missing; `None` denies instead.
    pub approver: Option<Arc<dyn Approver>>,
    /// The policy file.
    pub policies: Option<Policies>,
    /// The ref the run is for (from `--ref` or git); `None` when unknown.
    pub git_ref: Option<GitRef>,
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gates")
            .field("approved", &self.approved)
            .field("approver", &self.approver.is_some())
            .field("policies", &self.policies)
            .field("git_ref", &self.git_ref)
            .finish()
    }
}

impl Gates {
    /// Gates that approve nothing, ask nobody and have no policy file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether deciding `gate` may wait for the approver (so the stage shows
    /// `waiting_for_approval`).
    pub fn may_wait(&self, stage: &str, gate: &Gate) -> bool {
        self.approver.is_some() && !self.approved.covers(stage) && gate.is_effective()
    }

    /// Decides the gate of `stage` (`None`: the stage has no gate). A wait for the approver
    /// ends early with [`GateDecision::Cancelled`] once `cancellation` goes true.
    pub fn decide(
        &self,
        stage: &str,
        gate: Option<&Gate>,
        cancellation: &Cancellation,
    ) -> GateDecision {
        let Some(gate) = gate.filter(|g| g.is_effective()) else {
            return GateDecision::Open {
                reason: String::new(),
            };
        };
        let mut reasons = Vec::new();
        let mut approval_why = (gate.approval == Some(Approval::Required))
            .then(|| "the gate requires an approval".to_owned());
        if let Some(name) = &gate.policy {
            let verdict = match &self.policies {
                Some(policies) => policies.evaluate(name.as_str(), self.git_ref.as_ref()),
                None => Policies::Missing {
                    path: crate::policy::DEFAULT_POLICY_FILE.into(),
                }
                .evaluate(name.as_str(), self.git_ref.as_ref()),
            };
            if !verdict.allowed {
                return GateDecision::Denied {
                    reason: verdict.reason,
                };
            }
            if verdict.requires_approval && approval_why.is_none() {
                approval_why = Some(format!("policy `{name}` requires an approval"));
            }
            reasons.push(verdict.reason);
        }
        if let Some(why) = approval_why {
            if self.approved.covers(stage) {
                let how = match self.approved {
                    PreApproved::All => "`--approve-all`".to_owned(),
                    _ => format!("`--approve {stage}`"),
                };
                reasons.push(format!("approved by {how}"));
            } else if let Some(approver) = &self.approver {
                match approver.wait(stage, &why, cancellation) {
                    Verdict::Approved { how } => reasons.push(format!("approved {how}")),
                    Verdict::Denied { reason } => return GateDecision::Denied { reason },
                    Verdict::Cancelled => return GateDecision::Cancelled,
                }
            } else {
                return GateDecision::Denied {
                    reason: format!(
                        "approval required but not given ({why}); pass `--approve {stage}` or \
                         `--approve-all`, or run on a terminal to be asked"
                    ),
                };
            }
        }
        GateDecision::Open {
            reason: reasons.join("; "),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::Policy;

    fn gate(approval: bool, policy: Option<&str>) -> Gate {
        Gate {
            approval: approval.then_some(Approval::Required),
            policy: policy.map(|p| p.parse().unwrap()),
        }
    }

    fn policies() -> Policies {
        Policies::from_map(BTreeMap::from([
            (
                "main-only".to_owned(),
                Policy {
                    branches: vec!["main".to_owned()],
                    allow: true,
                    ..Policy::default()
                },
            ),
            (
                "careful".to_owned(),
                Policy {
                    require_approval: true,
                    allow: true,
                    ..Policy::default()
                },
            ),
        ]))
    }

    struct Answer(Verdict);
    impl Approver for Answer {
        fn wait(&self, _stage: &str, _why: &str, _cancellation: &Cancellation) -> Verdict {
            self.0.clone()
        }
    }

    fn decide(gates: &Gates, stage: &str, gate: Option<&Gate>) -> GateDecision {
        gates.decide(stage, gate, &Cancellation::new())
    }

    #[test]
    fn no_gate_is_open() {
        assert!(decide(&Gates::new(), "a", None).is_open());
        assert!(decide(&Gates::new(), "a", Some(&Gate::default())).is_open());
    }

    #[test]
    fn approval_is_denied_unless_given() {
        let g = gate(true, None);
        let decision = decide(&Gates::new(), "deploy", Some(&g));
        assert!(!decision.is_open());
        assert!(
            decision.reason().contains("--approve deploy"),
            "{decision:?}"
        );

        let mut gates = Gates::new();
        gates.approved = PreApproved::Stages(BTreeSet::from(["deploy".to_owned()]));
        let decision = decide(&gates, "deploy", Some(&g));
        assert_eq!(
            decision,
            GateDecision::Open {
                reason: "approved by `--approve deploy`".to_owned()
            }
        );
        assert!(!decide(&gates, "other", Some(&g)).is_open());

        gates.approved = PreApproved::All;
        assert!(decide(&gates, "other", Some(&g)).is_open());
    }

    #[test]
    fn the_approver_decides() {
        let g = gate(true, None);
        let mut gates = Gates::new();
        gates.approver = Some(Arc::new(Answer(Verdict::Approved {
            how: "at the prompt".to_owned(),
        })));
        assert!(gates.may_wait("deploy", &g));
        assert_eq!(
            decide(&gates, "deploy", Some(&g)).reason(),
            "approved at the prompt"
        );
        gates.approver = Some(Arc::new(Answer(Verdict::Denied {
            reason: "approval refused".to_owned(),
        })));
        assert!(
            decide(&gates, "deploy", Some(&g))
                .reason()
                .contains("refused")
        );
        gates.approver = Some(Arc::new(Answer(Verdict::Cancelled)));
        assert_eq!(decide(&gates, "deploy", Some(&g)), GateDecision::Cancelled);
    }

    #[test]
    fn an_approval_never_bypasses_a_policy() {
        let approvals = crate::approval::Approvals::new();
        approvals.approve("deploy", "alice");
        let mut gates = Gates::new();
        gates.approver = Some(Arc::new(approvals));
        gates.policies = Some(policies());
        gates.git_ref = Some(GitRef::new("topic"));
        let decision = decide(&gates, "deploy", Some(&gate(true, Some("main-only"))));
        assert!(!decision.is_open(), "{decision:?}");
        gates.git_ref = Some(GitRef::new("main"));
        let decision = decide(&gates, "deploy", Some(&gate(true, Some("main-only"))));
        assert!(
            decision.reason().ends_with("approved by alice"),
            "{decision:?}"
        );
    }

    #[test]
    fn policies_are_checked_first() {
        let mut gates = Gates::new();
        gates.approved = PreApproved::All;
        gates.policies = Some(policies());
        gates.git_ref = Some(GitRef::new("main"));
        let g = gate(true, Some("main-only"));
        let decision = decide(&gates, "deploy", Some(&g));
        assert_eq!(
            decision.reason(),
            "policy `main-only` allows: branch `main` matches `main`; approved by `--approve-all`"
        );
        gates.git_ref = Some(GitRef::new("topic"));
        assert!(!decide(&gates, "deploy", Some(&g)).is_open());
        let unknown = gate(false, Some("who-knows"));
        assert!(!decide(&gates, "deploy", Some(&unknown)).is_open());
    }

    #[test]
    fn a_policy_can_require_approval() {
        let mut gates = Gates::new();
        gates.policies = Some(policies());
        let g = gate(false, Some("careful"));
        let decision = decide(&gates, "deploy", Some(&g));
        assert!(!decision.is_open());
        assert!(
            decision.reason().contains("policy `careful` requires"),
            "{decision:?}"
        );
    }

    #[test]
    fn no_policy_file_denies_policy_gates() {
        let g = gate(false, Some("main-only"));
        let decision = decide(&Gates::new(), "deploy", Some(&g));
        assert!(!decision.is_open());
        assert!(decision.reason().contains("does not exist"), "{decision:?}");
    }
}
