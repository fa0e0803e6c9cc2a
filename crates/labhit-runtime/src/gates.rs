//! Stage gates: `gate: {approval: required, policy: NAME}` decided before a stage starts.
//!
//! [`Gates::decide`] runs in this order and stops at the first denial:
//!
//! 1. **policy** (when named): judged by [`Policies::evaluate`] against the run's ref. A
//!    denial denies the stage; a policy with `require-approval = true` adds the need for an
//!    approval.
//! 2. **approval** (when `approval: required` or the policy requires one): granted when the
//!    stage was pre-approved (`--approve STAGE`, repeatable, or `--approve-all`); otherwise, if
//!    an [`ApprovalPrompt`] is available (the CLI installs one when stdin is a terminal), the
//!    stage waits for a person (status `waiting_for_approval`) and is denied on "no";
//!    otherwise the stage is **denied** — never silently run.
//!
//! Every decision comes back as a [`GateDecision`] with a reason sentence that the scheduler
//! logs and records in the stage's `reason`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use labhit_protocol::pipeline::{Approval, Gate};

use crate::policy::{GitRef, Policies};

/// Asks a person to approve a stage (e.g. a `y/N` prompt on a terminal).
pub trait ApprovalPrompt: Send + Sync {
    /// Asks whether `stage` may run; `why` says what requires the approval. `Ok(true)`
    /// approves; `Err` (e.g. stdin closed) denies with that message.
    fn ask(&self, stage: &str, why: &str) -> Result<bool, String>;
}

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
        }
    }
}

/// Everything gates are decided with.
#[derive(Clone, Default)]
pub struct Gates {
    /// Stages approved in advance.
    pub approved: PreApproved,
    /// Who to ask when an approval is missing; `None` denies instead.
    pub prompt: Option<Arc<dyn ApprovalPrompt>>,
    /// The policy file.
    pub policies: Option<Policies>,
    /// The ref the run is for (from `--ref` or git); `None` when unknown.
    pub git_ref: Option<GitRef>,
    /// Serialises prompts: one question on the terminal at a time.
    prompt_lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gates")
            .field("approved", &self.approved)
            .field("prompt", &self.prompt.is_some())
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

    /// Whether deciding `gate` may ask a person (so the stage shows `waiting_for_approval`).
    pub fn may_prompt(&self, stage: &str, gate: &Gate) -> bool {
        self.prompt.is_some() && !self.approved.covers(stage) && gate.is_effective()
    }

    /// Decides the gate of `stage` (`None`: the stage has no gate).
    pub fn decide(&self, stage: &str, gate: Option<&Gate>) -> GateDecision {
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
            } else if let Some(prompt) = &self.prompt {
                let answer = {
                    let _one_at_a_time = self
                        .prompt_lock
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    prompt.ask(stage, &why)
                };
                match answer {
                    Ok(true) => reasons.push("approved at the prompt".to_owned()),
                    Ok(false) => {
                        return GateDecision::Denied {
                            reason: format!("approval refused at the prompt ({why})"),
                        };
                    }
                    Err(e) => {
                        return GateDecision::Denied {
                            reason: format!("no approval: the prompt failed: {e} ({why})"),
                        };
                    }
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

    struct Answer(Result<bool, String>);
    impl ApprovalPrompt for Answer {
        fn ask(&self, _stage: &str, _why: &str) -> Result<bool, String> {
            self.0.clone()
        }
    }

    #[test]
    fn no_gate_is_open() {
        assert!(Gates::new().decide("a", None).is_open());
        assert!(Gates::new().decide("a", Some(&Gate::default())).is_open());
    }

    #[test]
    fn approval_is_denied_unless_given() {
        let g = gate(true, None);
        let decision = Gates::new().decide("deploy", Some(&g));
        assert!(!decision.is_open());
        assert!(
            decision.reason().contains("--approve deploy"),
            "{decision:?}"
        );

        let mut gates = Gates::new();
        gates.approved = PreApproved::Stages(BTreeSet::from(["deploy".to_owned()]));
        let decision = gates.decide("deploy", Some(&g));
        assert_eq!(
            decision,
            GateDecision::Open {
                reason: "approved by `--approve deploy`".to_owned()
            }
        );
        assert!(!gates.decide("other", Some(&g)).is_open());

        gates.approved = PreApproved::All;
        assert!(gates.decide("other", Some(&g)).is_open());
    }

    #[test]
    fn the_prompt_decides() {
        let g = gate(true, None);
        let mut gates = Gates::new();
        gates.prompt = Some(Arc::new(Answer(Ok(true))));
        assert!(gates.may_prompt("deploy", &g));
        assert!(gates.decide("deploy", Some(&g)).is_open());
        gates.prompt = Some(Arc::new(Answer(Ok(false))));
        assert!(
            gates
                .decide("deploy", Some(&g))
                .reason()
                .contains("refused")
        );
        gates.prompt = Some(Arc::new(Answer(Err("stdin closed".to_owned()))));
        assert!(!gates.decide("deploy", Some(&g)).is_open());
    }

    #[test]
    fn policies_are_checked_first() {
        let mut gates = Gates::new();
        gates.approved = PreApproved::All;
        gates.policies = Some(policies());
        gates.git_ref = Some(GitRef::new("main"));
        let g = gate(true, Some("main-only"));
        let decision = gates.decide("deploy", Some(&g));
        assert_eq!(
            decision.reason(),
            "policy `main-only` allows: branch `main` matches `main`; approved by `--approve-all`"
        );
        gates.git_ref = Some(GitRef::new("topic"));
        assert!(!gates.decide("deploy", Some(&g)).is_open());
        let unknown = gate(false, Some("who-knows"));
        assert!(!gates.decide("deploy", Some(&unknown)).is_open());
    }

    #[test]
    fn a_policy_can_require_approval() {
        let mut gates = Gates::new();
        gates.policies = Some(policies());
        let g = gate(false, Some("careful"));
        let decision = gates.decide("deploy", Some(&g));
        assert!(!decision.is_open());
        assert!(
            decision.reason().contains("policy `careful` requires"),
            "{decision:?}"
        );
    }

    #[test]
    fn no_policy_file_denies_policy_gates() {
        let g = gate(false, Some("main-only"));
        let decision = Gates::new().decide("deploy", Some(&g));
        assert!(!decision.is_open());
        assert!(decision.reason().contains("does not exist"), "{decision:?}");
    }
}
