//! The output references of `with` (see [`super::refs`]), checked statically: each is well
//! formed (`invalid-output-ref`), names a stage upstream of the referring one through `after`,
//! transitively (`output-ref-not-upstream`), and an output that stage can report
//! (`undeclared-output`: a `run:` stage on the built-in executor reports none; with extension
//! manifests at hand, the output must be a property of the upstream extension's `outputs`
//! schema). Each diagnostic points at the reference itself, not the whole string, when the
//! string is written on one line without escapes.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use indexmap::IndexMap;

use super::model::Stage;
use super::parse::StageSite;
use super::refs::{self, OutputRef};
use super::yaml::{Node, NodeValue};
use crate::diagnostic::{Diagnostic, Position, Rule, Span, SuggestionBudget, Suggestions};
use crate::forms::StageId;
use crate::manifest::Manifest;

/// Checks every reference in every stage's `with`. `manifests` enable the declared-output
/// check against extension manifests.
pub(crate) fn check(
    sites: &IndexMap<StageId, StageSite<'_>>,
    manifests: Option<&[Manifest]>,
    diags: &mut Vec<Diagnostic>,
    budget: &mut SuggestionBudget,
) {
    let mut stage_names: Option<Suggestions<'_>> = None;
    let mut declared: HashMap<&str, Option<Declared<'_>>> = HashMap::new();
    for (id, site) in sites {
        if let Some(run) = site.run {
            check_script(sites, id, run, diags);
        }
        let Some(with) = site.with else { continue };
        let mut found = Vec::new();
        strings(with, &mut Vec::new(), &mut found);
        if found.is_empty() {
            continue;
        }
        let upstream = ancestors(sites, id);
        for (path, node, text) in found {
            let at = refs::path_text(&path);
            let template = match refs::parse(text) {
                Ok(t) => t,
                Err(e) => {
                    diags.push(
                        Diagnostic::error(
                            Rule::InvalidOutputRef,
                            sub_span(node, text, e.range.clone()),
                            format!("stage `{id}`: `{at}` has a malformed output reference: {e}"),
                        )
                        .with_help(e.help),
                    );
                    continue;
                }
            };
            for (reference, range) in template.references() {
                let span = sub_span(node, text, range.clone());
                let target = reference.stage.as_str();
                let Some((target_key, target_site)) = sites.get_key_value(target) else {
                    let mut diag = Diagnostic::error(
                        Rule::OutputRefNotUpstream,
                        span,
                        format!(
                            "stage `{id}`: `{at}` refers to stage `{target}`, which is not a stage of this pipeline"
                        ),
                    );
                    let near = stage_names
                        .get_or_insert_with(|| Suggestions::new(sites.keys().map(StageId::as_str)))
                        .nearest(target, budget);
                    if let Some(near) = near {
                        diag = diag.with_help(format!("did you mean `{near}`?"));
                    }
                    diags.push(diag);
                    continue;
                };
                if target == id.as_str() {
                    diags.push(
                        Diagnostic::error(
                            Rule::OutputRefNotUpstream,
                            span,
                            format!("stage `{id}`: `{at}` refers to an output of the stage itself"),
                        )
                        .with_help(
                            "a stage can use the outputs of the stages it comes `after` only",
                        ),
                    );
                    continue;
                }
                if !upstream.contains(target) {
                    diags.push(
                        Diagnostic::error(
                            Rule::OutputRefNotUpstream,
                            span,
                            format!(
                                "stage `{id}`: `{at}` refers to stage `{target}`, which is not upstream of `{id}`"
                            ),
                        )
                        .with_help(format!(
                            "add `{target}` to the `after` of `{id}` (or of a stage `{id}` waits for)"
                        )),
                    );
                    continue;
                }
                if target_site.uses.is_none() {
                    diags.push(
                        Diagnostic::error(
                            Rule::UndeclaredOutput,
                            span,
                            format!(
                                "stage `{id}`: `{at}` refers to output `{}` of stage `{target}`, a `run:` stage on the built-in executor, which reports no outputs",
                                reference.output
                            ),
                        )
                        .with_help("refer to a stage that `use`s an extension, or pass the value through a workspace file"),
                    );
                    continue;
                }
                let Some(manifests) = manifests else {
                    continue;
                };
                let known = declared
                    .entry(target_key.as_str())
                    .or_insert_with(|| declared_outputs(&target_site.parts, manifests));
                if let Some(known) = known
                    && let Some(diag) = undeclared(id, &at, reference, known, span, budget)
                {
                    diags.push(diag);
                }
            }
        }
    }
}

/// A reference written in the `run` script of stage `id`: never filled in (a script is
/// handed over as written), so an error naming the environment variable that carries the
/// output instead.
fn check_script(
    sites: &IndexMap<StageId, StageSite<'_>>,
    id: &StageId,
    run: &Node,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(script) = run.as_str() else { return };
    let found = refs::script_references(script);
    if found.is_empty() {
        return;
    }
    let upstream = ancestors(sites, id);
    for (reference, range) in found {
        let target = reference.stage.as_str();
        let var = refs::env_name(target, &reference.output);
        let help = if upstream.contains(target) {
            format!("use the environment variable instead: \"${var}\"")
        } else {
            format!(
                "use the environment variable \"${var}\", and add `{target}` to the `after` of `{id}`"
            )
        };
        diags.push(
            Diagnostic::error(
                Rule::InvalidOutputRef,
                script_span(run, script, range),
                format!(
                    "stage `{id}`: `run` has the output reference `{reference}`, which is never filled in in a script (no textual substitution: the shell would get it as written)"
                ),
            )
            .with_help(help),
        );
    }
}

/// Where `range` of a script is: [`sub_span`] for a script on one line; in a literal block
/// (`run: |`, one source line per line of the text, as the line count shows) the line and
/// column of the reference; else the whole script.
fn script_span(node: &Node, text: &str, range: Range<usize>) -> Span {
    let Span { start, end } = node.span;
    if start.line == end.line {
        return sub_span(node, text, range);
    }
    let breaks = u32::try_from(text.matches('\n').count()).unwrap_or(u32::MAX);
    let (Some(before), Some(inside)) = (text.get(..range.start), text.get(range.clone())) else {
        return node.span;
    };
    if breaks != end.line - start.line || inside.contains('\n') {
        return node.span;
    }
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = start
        .line
        .saturating_add(u32::try_from(before.matches('\n').count()).unwrap_or(u32::MAX));
    let count = |s: &str| u32::try_from(s.chars().count()).unwrap_or(u32::MAX);
    let column = start.column.saturating_add(count(&before[line_start..]));
    Span::new(
        Position::new(line, column),
        Position::new(line, column.saturating_add(count(inside))),
    )
}

/// The outputs an upstream stage's extension declares.
struct Declared<'m> {
    /// `category/name` and version, for messages.
    extension: String,
    /// The property names of its `outputs` schema, in order.
    names: Vec<&'m str>,
}

/// What the manifest of stage `target`'s extension declares; `None` when that is unknown
/// (no `use`, no matching manifest: reported elsewhere) or undocumented (no `outputs`
/// schema, or one without `properties`).
fn declared_outputs<'m>(target: &Stage, manifests: &'m [Manifest]) -> Option<Declared<'m>> {
    let reference = target.uses.as_ref()?;
    let manifest = super::extensions::resolve(reference, manifests).ok()?;
    let crate::Value::Object(properties) = manifest.outputs.as_ref()?.get("properties")? else {
        return None;
    };
    Some(Declared {
        extension: format!(
            "`{}` {}",
            manifest.qualified_name(),
            manifest.extension.version
        ),
        names: properties.keys().map(String::as_str).collect(),
    })
}

fn undeclared(
    id: &StageId,
    at: &str,
    reference: &OutputRef,
    known: &Declared<'_>,
    span: Span,
    budget: &mut SuggestionBudget,
) -> Option<Diagnostic> {
    let output = reference.output.as_str();
    if known.names.contains(&output) {
        return None;
    }
    let diag = Diagnostic::error(
        Rule::UndeclaredOutput,
        span,
        format!(
            "stage `{id}`: `{at}` refers to output `{output}` of stage `{}`, but extension {} declares no such output",
            reference.stage, known.extension
        ),
    );
    let near = Suggestions::new(known.names.iter().copied()).nearest(output, budget);
    Some(match near {
        Some(near) => diag.with_help(format!("did you mean `{near}`?")),
        None if known.names.is_empty() => diag.with_help("it declares no outputs"),
        None => diag.with_help(format!("it declares: {}", known.names.join(", "))),
    })
}

/// Every stage `id` waits for, directly or through others (cycles are harmless here).
fn ancestors<'s>(sites: &'s IndexMap<StageId, StageSite<'_>>, id: &StageId) -> HashSet<&'s str> {
    let mut seen = HashSet::new();
    let mut todo: Vec<&str> = sites
        .get(id.as_str())
        .map(|s| s.after.iter().map(|(a, _)| a.as_str()).collect())
        .unwrap_or_default();
    while let Some(next) = todo.pop() {
        let Some((_, key, site)) = sites.get_full(next) else {
            continue;
        };
        if seen.insert(key.as_str()) {
            todo.extend(site.after.iter().map(|(a, _)| a.as_str()));
        }
    }
    seen
}

/// Every string scalar among the values under `node`, with its path.
fn strings<'n>(
    node: &'n Node,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'n Node, &'n str)>,
) {
    match &node.value {
        NodeValue::Scalar(_) => {
            if let Some(text) = node.as_str() {
                out.push((path.clone(), node, text));
            }
        }
        NodeValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                strings(item, path, out);
                path.pop();
            }
        }
        NodeValue::Map(pairs) => {
            for (key, value) in pairs {
                path.push(key.as_str().unwrap_or("?").to_owned());
                strings(value, path, out);
                path.pop();
            }
        }
    }
}

/// The span of bytes `range` of the string `text` written at `node`: exact when the scalar
/// is on one line and its text is written verbatim (plain, or quoted without escapes), else
/// the whole scalar.
fn sub_span(node: &Node, text: &str, range: Range<usize>) -> Span {
    let Span { start, end } = node.span;
    if start.line != end.line || end.column < start.column {
        return node.span;
    }
    let width = end.column - start.column;
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    let offset = if width == chars {
        0
    } else if width == chars.saturating_add(2) {
        1
    } else {
        return node.span;
    };
    let column = |byte: usize| -> u32 {
        let before = text.get(..byte).map_or(0, |s| s.chars().count());
        start
            .column
            .saturating_add(offset)
            .saturating_add(u32::try_from(before).unwrap_or(u32::MAX))
    };
    Span::new(
        Position::new(start.line, column(range.start)),
        Position::new(start.line, column(range.end)),
    )
}
