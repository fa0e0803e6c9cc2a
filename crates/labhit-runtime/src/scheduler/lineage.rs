//! The workspace a stage is entitled to see, for its cache key.
//!
//! A run has one live workspace, and stages that are not ordered by `after` (siblings) change
//! it in whatever order they happen to run. A cache key over the live workspace would depend
//! on that order: the second sibling's key would cover the first one's effect, and a later
//! run in which they finish the other way round would miss. So the key covers the
//! **lineage view** instead: the run's initial workspace with the effects of the stage's
//! ancestors (its `after` stages, theirs, and so on) applied in the order they happened,
//! never the effect of a stage it is not downstream of.
//!
//! [`Lineage`] records what it needs while the run goes on: the initial workspace (the
//! workspace before the first stage that may write, scanned under the exclusive workspace
//! lock, so no stage has changed it yet), every writing stage's [`Effect`] in the order the
//! lock serialised them, and each stage's ancestors. A stage's effect that could not be
//! scanned makes the view of every stage downstream of it an error: its key cannot be known.
//!
//! A stage that reads what a sibling wrote without coming `after` it is not keyed on it (its
//! result then depends on timing, and so would its cache entry): declare the `after`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use labhit_protocol::pipeline::StageId;

use crate::workspace::{Effect, WorkspaceManifest};

/// The lineage of one run's stages (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Lineage {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The workspace before any stage changed it.
    initial: Option<WorkspaceManifest>,
    /// Every writing stage's effect (or why it is unknown), in the order they happened.
    effects: Vec<(String, Result<Effect, String>)>,
    /// Every stage that started, with its ancestors.
    ancestors: BTreeMap<String, BTreeSet<String>>,
}

impl Lineage {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `stage`, which comes `after` those stages, started: its ancestors are
    /// they and theirs (they have all started before it).
    pub(crate) fn enter(&self, stage: &StageId, after: &[StageId]) {
        let mut state = self.state();
        let mut ancestors = BTreeSet::new();
        for parent in after {
            ancestors.insert(parent.to_string());
            if let Some(theirs) = state.ancestors.get(parent.as_str()) {
                ancestors.extend(theirs.iter().cloned());
            }
        }
        state.ancestors.insert(stage.to_string(), ancestors);
    }

    /// Records `live`, the workspace a writing stage found under the exclusive lock, as the
    /// initial workspace when no stage has written before it.
    pub(crate) fn before_write(&self, live: &WorkspaceManifest) {
        let mut state = self.state();
        if state.initial.is_none() {
            state.initial = Some(live.clone());
        }
    }

    /// Records the effect of the writing `stage`: the change from `before` (what it found)
    /// to `after` (what it left), or why `after` is unknown.
    pub(crate) fn wrote(
        &self,
        stage: &StageId,
        before: &WorkspaceManifest,
        after: Result<&WorkspaceManifest, String>,
    ) {
        let effect = after.map(|after| before.effect(after));
        self.state().effects.push((stage.to_string(), effect));
    }

    /// The workspace `stage` is entitled to see: the initial one with its ancestors' effects,
    /// in the order they happened. `live` stands for the initial workspace when nothing has
    /// been recorded yet (the caller scanned it under the exclusive lock, before writing).
    pub(crate) fn view(
        &self,
        stage: &StageId,
        live: &WorkspaceManifest,
    ) -> Result<WorkspaceManifest, String> {
        let state = self.state();
        let mut view = state.initial.clone().unwrap_or_else(|| live.clone());
        let Some(ancestors) = state.ancestors.get(stage.as_str()) else {
            return Ok(view);
        };
        for (writer, effect) in &state.effects {
            if !ancestors.contains(writer) {
                continue;
            }
            match effect {
                Ok(effect) => view.apply(effect),
                Err(why) => {
                    return Err(format!(
                        "the effect of upstream stage `{writer}` is unknown ({why})"
                    ));
                }
            }
        }
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StageId {
        StageId::new(s).expect("stage id")
    }

    fn scan(dir: &std::path::Path) -> WorkspaceManifest {
        WorkspaceManifest::scan(dir).expect("scan")
    }

    /// `make` writes; `a` and `b` come after it; `b` writes. Whatever the order of `a` and
    /// `b`, `a` sees `make`'s effect and never `b`'s; `c`, after `b`, sees both.
    #[test]
    fn a_view_has_the_ancestors_effects_and_no_siblings() {
        for b_first in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("input"), "x").expect("write");
            let lineage = Lineage::default();
            lineage.enter(&id("make"), &[]);
            let before = scan(dir.path());
            lineage.before_write(&before);
            std::fs::write(dir.path().join("made"), "m").expect("write");
            lineage.wrote(&id("make"), &before, Ok(&scan(dir.path())));
            let write_b = || {
                lineage.enter(&id("b"), &[id("make")]);
                let before = scan(dir.path());
                lineage.before_write(&before);
                std::fs::write(dir.path().join("b-wrote"), "b").expect("write");
                std::fs::remove_file(dir.path().join("input")).expect("rm");
                lineage.wrote(&id("b"), &before, Ok(&scan(dir.path())));
            };
            if b_first {
                write_b();
            }
            lineage.enter(&id("a"), &[id("make")]);
            let a = lineage.view(&id("a"), &scan(dir.path())).expect("view");
            if !b_first {
                write_b();
            }
            assert!(a.get("made").is_some() && a.get("input").is_some(), "{a:?}");
            assert!(a.get("b-wrote").is_none(), "b_first={b_first}: {a:?}");
            lineage.enter(&id("c"), &[id("b")]);
            let c = lineage.view(&id("c"), &scan(dir.path())).expect("view");
            assert_eq!(c, scan(dir.path()));
        }
    }

    #[test]
    fn an_unknown_upstream_effect_is_an_error_downstream_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lineage = Lineage::default();
        let live = scan(dir.path());
        lineage.enter(&id("make"), &[]);
        lineage.before_write(&live);
        lineage.wrote(&id("make"), &live, Err("permission denied".to_owned()));
        lineage.enter(&id("down"), &[id("make")]);
        let err = lineage.view(&id("down"), &live).expect_err("unknown");
        assert!(
            err.contains("`make`") && err.contains("permission denied"),
            "{err}"
        );
        lineage.enter(&id("other"), &[]);
        assert!(lineage.view(&id("other"), &live).is_ok());
    }
}
