//! The stage graph: rule 4 (`after` names existing stages, not itself, no cycles) and the
//! orderings tools need (topological layers).

use std::collections::HashMap;

use indexmap::IndexMap;

use super::model::Stages;
use super::parse::StageSite;
use crate::diagnostic::{Diagnostic, Rule, SuggestionBudget, Suggestions};
use crate::forms::StageId;

/// Checks the `after` edges recorded while parsing. "Did you mean" suggestions for unknown
/// stages come from the stage ids, prepared once, within `budget`.
pub(crate) fn check(
    sites: &IndexMap<StageId, StageSite<'_>>,
    diags: &mut Vec<Diagnostic>,
    budget: &mut SuggestionBudget,
) {
    let mut suggestions: Option<Suggestions<'_>> = None;
    let index: HashMap<&str, usize> = sites
        .keys()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    // Adjacency as indices: edges[i] = the stages stage i waits for (with the span of the entry).
    let mut edges: Vec<Vec<(usize, crate::Span)>> = vec![Vec::new(); sites.len()];
    for (i, (id, site)) in sites.iter().enumerate() {
        for (target, span) in &site.after {
            if target == id {
                diags.push(
                    Diagnostic::error(
                        Rule::SelfDependency,
                        *span,
                        format!("stage `{id}` lists itself in `after`"),
                    )
                    .with_help("remove it; a stage cannot wait for itself"),
                );
                continue;
            }
            match index.get(target.as_str()) {
                Some(&j) => edges[i].push((j, *span)),
                None => {
                    let mut diag = Diagnostic::error(
                        Rule::UnknownStage,
                        *span,
                        format!(
                            "stage `{id}` waits for `{target}`, which is not a stage of this pipeline"
                        ),
                    );
                    let near = suggestions
                        .get_or_insert_with(|| Suggestions::new(sites.keys().map(StageId::as_str)))
                        .nearest(target.as_str(), budget);
                    if let Some(near) = near {
                        diag = diag.with_help(format!("did you mean `{near}`?"));
                    }
                    diags.push(diag);
                }
            }
        }
    }
    for cycle in find_cycles(&edges) {
        let ids: Vec<&StageId> = cycle
            .iter()
            .map(|&(i, _)| sites.get_index(i).map(|(id, _)| id))
            .collect::<Option<_>>()
            .unwrap_or_default();
        let Some((&first, _)) = cycle.first().map(|(i, s)| (i, s)) else {
            continue;
        };
        let mut path: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        path.push(ids[0].as_str());
        let key = sites
            .get_index(first)
            .map(|(_, s)| s.key)
            .unwrap_or_else(crate::Span::file_start);
        let mut diag = Diagnostic::error(
            Rule::DependencyCycle,
            key,
            format!(
                "stages wait for each other in a cycle: {}",
                path.join(" -> ")
            ),
        )
        .with_help("remove one of the `after` entries of the cycle");
        for (i, edge_span) in &cycle {
            if let Some((id, _)) = sites.get_index(*i) {
                diag = diag.with_related(*edge_span, format!("`{id}` waits here"));
            }
        }
        diags.push(diag);
    }
}

/// Finds cycles with an iterative depth-first search (no recursion: 10,000-stage chains are
/// fine). Each cycle is the list of `(stage, span of its edge to the next stage)` in waiting
/// order; a stage is reported in at most one cycle.
fn find_cycles(edges: &[Vec<(usize, crate::Span)>]) -> Vec<Vec<(usize, crate::Span)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Gray,
        Black,
    }
    let mut color = vec![Color::White; edges.len()];
    let mut cycles = Vec::new();
    let mut in_cycle = vec![false; edges.len()];
    for start in 0..edges.len() {
        if color[start] != Color::White {
            continue;
        }
        // Stack of (node, next edge index); `path` mirrors it with the edge span taken.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        let mut path: Vec<(usize, crate::Span)> = Vec::new();
        color[start] = Color::Gray;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&(target, span)) = edges[node].get(*next) {
                *next += 1;
                match color[target] {
                    Color::White => {
                        color[target] = Color::Gray;
                        path.push((node, span));
                        stack.push((target, 0));
                    }
                    Color::Gray => {
                        // Back edge: the cycle is the path from `target` to `node`, then back.
                        let from = path
                            .iter()
                            .position(|&(n, _)| n == target)
                            .unwrap_or(path.len());
                        let mut cycle: Vec<(usize, crate::Span)> = path[from..].to_vec();
                        cycle.push((node, span));
                        if cycle.iter().all(|&(n, _)| !in_cycle[n]) {
                            for &(n, _) in &cycle {
                                in_cycle[n] = true;
                            }
                            cycles.push(cycle);
                        }
                    }
                    Color::Black => {}
                }
            } else {
                color[node] = Color::Black;
                stack.pop();
                path.pop();
            }
        }
    }
    cycles
}

/// Stages grouped in layers: every stage comes after all the stages it waits for, and each
/// layer holds the stages whose dependencies are all in earlier layers (file order within a
/// layer). `None` when the graph has a cycle or an unknown reference.
pub fn layers(stages: &Stages) -> Option<Vec<Vec<&StageId>>> {
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let mut waiting = vec![0usize; stages.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    for (i, (_, stage)) in stages.iter().enumerate() {
        for target in stage.after.iter() {
            let &j = index.get(target.as_str())?;
            waiting[i] += 1;
            dependents[j].push(i);
        }
    }
    let mut layer: Vec<usize> = (0..stages.len()).filter(|&i| waiting[i] == 0).collect();
    let mut out = Vec::new();
    let mut placed = 0;
    while !layer.is_empty() {
        placed += layer.len();
        let mut next = Vec::new();
        for &i in &layer {
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    next.push(d);
                }
            }
        }
        next.sort_unstable();
        out.push(
            layer
                .iter()
                .filter_map(|&i| stages.0.get_index(i).map(|(id, _)| id))
                .collect(),
        );
        layer = next;
    }
    (placed == stages.len()).then_some(out)
}
