//! The state behind `labhit run`'s progress line (`[12/40] running: a, b, c +5 · 1 waiting
//! for approval`), kept incrementally.
//!
//! The line is redrawn after every log line and status change, so neither updating nor
//! drawing may look at every stage: [`Progress::update`] adjusts counters and the set of
//! running stages in `O(log n)`, [`Progress::line`] names at most [`MAX_NAMES`] running
//! stages. (It used to count over all stages per redraw: 4,000 stages took 53 s on a
//! terminal against 19 s piped.)

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};

use anstyle::Style;
use labhit_protocol::run::StageStatus;

use crate::printable::printable;

/// Most running stages the line names; the rest are counted (`+5`).
pub(crate) const MAX_NAMES: usize = 3;

/// Every stage's status and the counts the line shows.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    order: Vec<String>,
    index: HashMap<String, usize>,
    statuses: Vec<StageStatus>,
    done: usize,
    waiting: usize,
    /// Positions in `order` of the running stages.
    running: BTreeSet<usize>,
    /// Stages [`Progress::line`] has looked at, over its life (the cost, for tests).
    visited: Cell<u64>,
}

impl Progress {
    /// Every stage queued, in `order` (the pipeline file's).
    pub(crate) fn new(order: Vec<String>) -> Self {
        let index = order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        Self {
            statuses: vec![StageStatus::Queued; order.len()],
            order,
            index,
            ..Self::default()
        }
    }

    /// Records that stage `id` is now `status`.
    pub(crate) fn update(&mut self, id: &str, status: StageStatus) {
        let Some(&i) = self.index.get(id) else {
            return;
        };
        let old = std::mem::replace(&mut self.statuses[i], status);
        for (s, delta) in [(old, false), (status, true)] {
            let count = |n: &mut usize| *n = if delta { *n + 1 } else { n.saturating_sub(1) };
            if s.is_terminal() {
                count(&mut self.done);
            }
            if s == StageStatus::WaitingForApproval {
                count(&mut self.waiting);
            }
        }
        if status == StageStatus::Running {
            self.running.insert(i);
        } else {
            self.running.remove(&i);
        }
    }

    /// The status of each stage, by id.
    pub(crate) fn statuses(&self) -> HashMap<String, StageStatus> {
        self.order
            .iter()
            .cloned()
            .zip(self.statuses.iter().copied())
            .collect()
    }

    /// The progress line (no newline).
    pub(crate) fn line(&self) -> String {
        let bold = Style::new().bold();
        let mut line = format!("{bold}[{}/{}]{bold:#}", self.done, self.order.len());
        if !self.running.is_empty() {
            let names: Vec<&str> = self
                .running
                .iter()
                .take(MAX_NAMES)
                .map(|&i| self.order[i].as_str())
                .collect();
            self.visited
                .set(self.visited.get() + names.len() as u64 + 1);
            line.push_str(&format!(" running: {}", printable(&names.join(", "))));
            if self.running.len() > names.len() {
                line.push_str(&format!(" +{}", self.running.len() - names.len()));
            }
        }
        if self.waiting > 0 {
            line.push_str(&format!(" · {} waiting for approval", self.waiting));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(progress: &Progress) -> String {
        anstream::adapter::strip_str(&progress.line()).to_string()
    }

    #[test]
    fn counts_follow_the_statuses() {
        let mut p = Progress::new(["a", "b", "c", "d", "e"].map(str::to_owned).to_vec());
        assert_eq!(plain(&p), "[0/5]");
        for id in ["a", "b", "c", "d", "e"] {
            p.update(id, StageStatus::Running);
        }
        assert_eq!(plain(&p), "[0/5] running: a, b, c +2");
        p.update("a", StageStatus::Succeeded);
        p.update("b", StageStatus::Failed);
        p.update("c", StageStatus::WaitingForApproval);
        assert_eq!(plain(&p), "[2/5] running: d, e · 1 waiting for approval");
        p.update("c", StageStatus::Denied);
        p.update("unknown", StageStatus::Running);
        assert_eq!(plain(&p), "[3/5] running: d, e");
        assert_eq!(p.statuses()["c"], StageStatus::Denied);
    }

    /// The cost of a redraw does not grow with the number of stages: a 4,000-stage run with
    /// a redraw after every status change looks at a bounded number of stages per redraw.
    #[test]
    fn a_redraw_costs_the_same_for_many_stages() {
        let n = 4_000;
        let ids: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let mut p = Progress::new(ids.clone());
        let mut redraws = 0u64;
        for id in &ids {
            for status in [StageStatus::Running, StageStatus::Succeeded] {
                p.update(id, status);
                let _ = p.line();
                redraws += 1;
            }
        }
        // Half the stages still running at once, to make the old per-redraw scan expensive.
        for id in ids.iter().take(n / 2) {
            p.update(id, StageStatus::Running);
            let _ = p.line();
            redraws += 1;
        }
        assert!(
            p.visited.get() <= redraws * (MAX_NAMES as u64 + 1),
            "{} stages looked at for {redraws} redraws",
            p.visited.get()
        );
        assert!(plain(&p).ends_with(&format!("+{}", n / 2 - MAX_NAMES)));
    }
}
