//! Output references: how a stage's `with` uses the named outputs of an earlier stage.
//!
//! # Syntax
//!
//! Inside any **string value** of `with` (at any depth; never in keys),
//! `${{ stages.<stage>.outputs.<name> }}` stands for the output `<name>` that stage
//! `<stage>` reported. It may be the whole string or part of a longer one
//! (`"sha256 ${{ stages.checksum.outputs.digest }}"`); spaces inside the braces are optional.
//! `<stage>` is a stage id, `<name>` 1–128 of `[A-Za-z0-9_-]`. The filled-in value is always
//! a string (outputs are strings).
//!
//! `$${{` is the escape: it stands for a literal `${{` and starts no reference. Any other
//! `$` or `}}` is literal.
//!
//! # Rules
//!
//! `labhit validate` checks every reference ([`super::check`]): the syntax
//! (`invalid-output-ref`), that the stage is upstream of the referring one through `after`
//! (`output-ref-not-upstream`) and, when the manifests are known, that its extension declares
//! the output (`undeclared-output`). The runner fills them in with [`fill_with`] just before
//! the stage starts, from the outputs the upstream stage recorded.
//!
//! `run:` scripts never see a reference filled in: only `with` is read for them, and the
//! script text is handed to the executor exactly as written (no script injection). A script
//! gets the outputs of the stages upstream of it through `after` as **environment
//! variables** instead, named by [`env_name`] (`LABHIT_OUTPUT_CHECKSUM__DIGEST`), which the
//! shell expands as data, never as code. A reference written in a script is reported by the
//! validator ([`script_references`]), with the variable to use.

use std::ops::Range;

use crate::forms::StageId;
use crate::value::{Map, Value};

/// Where a reference starts.
pub const OPEN: &str = "${{";
/// Where a reference ends.
pub const CLOSE: &str = "}}";
/// The escape of a literal [`OPEN`].
pub const ESCAPED_OPEN: &str = "$${{";
/// Longest output name, in bytes (the runtime's default bound on output names).
pub const MAX_OUTPUT_NAME_BYTES: usize = 128;

/// One reference: output `output` of stage `stage`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputRef {
    /// The stage that reports the output.
    pub stage: StageId,
    /// The output's name.
    pub output: String,
}

impl std::fmt::Display for OutputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "${{{{ stages.{}.outputs.{} }}}}",
            self.stage, self.output
        )
    }
}

/// A piece of a parsed string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text (escapes already undone).
    Text(String),
    /// A reference, with the byte range of its `${{ … }}` in the source string.
    Ref(OutputRef, Range<usize>),
}

/// A string of `with`, split into literal text and references.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// The pieces, in order; neighbouring texts are merged.
    pub pieces: Vec<Piece>,
}

/// A malformed reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RefSyntaxError {
    /// Byte range of the offending part of the string.
    pub range: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

impl Template {
    /// The references, in order, with their byte ranges.
    pub fn references(&self) -> impl Iterator<Item = (&OutputRef, &Range<usize>)> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Ref(r, range) => Some((r, range)),
            Piece::Text(_) => None,
        })
    }

    /// The string with every reference replaced by what `lookup` gives; the first reference
    /// `lookup` has no value for is the error.
    pub fn render<'v>(
        &self,
        mut lookup: impl FnMut(&OutputRef) -> Option<&'v str>,
    ) -> Result<String, OutputRef> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Ref(r, _) => out.push_str(lookup(r).ok_or_else(|| r.clone())?),
            }
        }
        Ok(out)
    }
}

/// Parses one string value. Never panics, linear in the length of `text`.
pub fn parse(text: &str) -> Result<Template, RefSyntaxError> {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut literal = String::new();
    let mut rest_at = 0;
    while let Some(found) = text[rest_at..].find('$') {
        let at = rest_at + found;
        let tail = &text[at..];
        if tail.starts_with(ESCAPED_OPEN) {
            literal.push_str(&text[rest_at..at]);
            literal.push_str(OPEN);
            rest_at = at + ESCAPED_OPEN.len();
        } else if tail.starts_with(OPEN) {
            literal.push_str(&text[rest_at..at]);
            let inner_at = at + OPEN.len();
            let Some(close) = text[inner_at..].find(CLOSE) else {
                return Err(RefSyntaxError {
                    range: at..text.len(),
                    message: "`${{` is not closed by `}}`".to_owned(),
                    help: "write `${{ stages.<stage>.outputs.<name> }}`, or `$${{` for a literal `${{`"
                        .to_owned(),
                });
            };
            let end = inner_at + close + CLOSE.len();
            let reference = reference(&text[inner_at..inner_at + close], at..end)?;
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Ref(reference, at..end));
            rest_at = end;
        } else {
            literal.push_str(&text[rest_at..=at]);
            rest_at = at + 1;
        }
    }
    literal.push_str(&text[rest_at..]);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(Template { pieces })
}

/// The inside of `${{ … }}` (found at `range`) as a reference.
fn reference(inner: &str, range: Range<usize>) -> Result<OutputRef, RefSyntaxError> {
    let written = inner.trim();
    let shape_help = "write `${{ stages.<stage>.outputs.<name> }}`, or `$${{` for a literal `${{`";
    let err = |message: String| RefSyntaxError {
        range: range.clone(),
        message,
        help: shape_help.to_owned(),
    };
    let clip = |s: &str| -> String {
        match s.char_indices().nth(60) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s.to_owned(),
        }
    };
    if written.is_empty() {
        return Err(err("empty reference `${{ }}`".to_owned()));
    }
    let parts: Vec<&str> = written.split('.').collect();
    let [first, stage, third, output] = parts.as_slice() else {
        return Err(err(format!(
            "`{}` is not an output reference",
            clip(written)
        )));
    };
    if *first != "stages" || *third != "outputs" {
        return Err(err(format!(
            "`{}` is not an output reference",
            clip(written)
        )));
    }
    let stage = StageId::new(*stage).map_err(|e| RefSyntaxError {
        range: range.clone(),
        message: e.to_string(),
        help: "stage ids are lowercase letters, digits, `_` and `-`, starting with a letter"
            .to_owned(),
    })?;
    let valid_name = !output.is_empty()
        && output.len() <= MAX_OUTPUT_NAME_BYTES
        && output
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_name {
        return Err(RefSyntaxError {
            range,
            message: format!("`{}` is not an output name", clip(output)),
            help: format!(
                "output names are 1-{MAX_OUTPUT_NAME_BYTES} of `A-Z`, `a-z`, `0-9`, `_` and `-`"
            ),
        });
    }
    Ok(OutputRef {
        stage,
        output: (*output).to_owned(),
    })
}

/// Prefix of the environment variables that hand upstream outputs to `run:` scripts.
pub const ENV_PREFIX: &str = "LABHIT_OUTPUT_";

/// The environment variable through which a `run:` script sees output `output` of stage
/// `stage`: [`ENV_PREFIX`], the stage id, `__`, the output name, both upper-cased with every
/// `-` written `_` (`checksum`, `digest` → `LABHIT_OUTPUT_CHECKSUM__DIGEST`). Names that
/// differ only there meet in one variable; the runner then sets neither and says so.
pub fn env_name(stage: &str, output: &str) -> String {
    let part = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '-' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect()
    };
    format!("{ENV_PREFIX}{}__{}", part(stage), part(output))
}

/// The well-formed references written in a `run:` script, with their byte ranges. A script
/// is never filled in, so each is a mistake the validator reports (with [`env_name`] as the
/// fix); text between `${{` and `}}` that is not a reference is the script's own business.
pub fn script_references(script: &str) -> Vec<(OutputRef, Range<usize>)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = script[from..].find(OPEN) {
        let at = from + found;
        let inner_at = at + OPEN.len();
        let Some(close) = script[inner_at..].find(CLOSE) else {
            break;
        };
        let end = inner_at + close + CLOSE.len();
        match reference(&script[inner_at..inner_at + close], at..end) {
            Ok(r) => {
                out.push((r, at..end));
                from = end;
            }
            Err(_) => from = inner_at,
        }
    }
    out
}

/// Where a problem is inside `with`: the keys and indices leading to the string.
pub type ValuePath = Vec<String>;

/// Writes a path as `with.a.b.0`.
pub fn path_text(path: &[String]) -> String {
    let mut out = String::from("with");
    for token in path {
        out.push('.');
        out.push_str(token);
    }
    out
}

/// Every string value of `with` (keys excluded) with its path, depth first in key order.
pub fn strings(with: &Map) -> Vec<(ValuePath, &str)> {
    let mut out = Vec::new();
    let mut stack: Vec<(ValuePath, &Value)> = with
        .iter()
        .rev()
        .map(|(k, v)| (vec![k.clone()], v))
        .collect();
    while let Some((path, value)) = stack.pop() {
        match value {
            Value::String(s) => out.push((path, s.as_str())),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    let mut p = path.clone();
                    p.push(i.to_string());
                    stack.push((p, item));
                }
            }
            Value::Object(map) => {
                for (k, v) in map.iter().rev() {
                    let mut p = path.clone();
                    p.push(k.clone());
                    stack.push((p, v));
                }
            }
            _ => {}
        }
    }
    out
}

/// Every reference in `with`, with the path of the string it is in (malformed strings are
/// skipped: the validator reports them).
pub fn references(with: &Map) -> Vec<(ValuePath, OutputRef)> {
    strings(with)
        .into_iter()
        .filter_map(|(path, s)| parse(s).ok().map(|t| (path, t)))
        .flat_map(|(path, t)| {
            t.references()
                .map(|(r, _)| (path.clone(), r.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Why [`fill_with`] could not fill a `with`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// A string holds a malformed reference.
    #[error("`{}` has a malformed output reference: {error}", path_text(.path))]
    Syntax {
        /// Where.
        path: ValuePath,
        /// What.
        error: RefSyntaxError,
    },
    /// The referenced stage did not report the output.
    #[error(
        "`{}` refers to output `{}` of stage `{}`, which that stage did not report",
        path_text(.path), .reference.output, .reference.stage
    )]
    Missing {
        /// Where.
        path: ValuePath,
        /// The reference without a value.
        reference: OutputRef,
    },
}

/// `with` with every reference filled in by `lookup` and every `$${{` turned into `${{`.
pub fn fill_with<'v>(
    with: &Map,
    mut lookup: impl FnMut(&OutputRef) -> Option<&'v str>,
) -> Result<Map, FillError> {
    fn fill<'v>(
        value: &Value,
        path: &mut ValuePath,
        lookup: &mut dyn FnMut(&OutputRef) -> Option<&'v str>,
    ) -> Result<Value, FillError> {
        Ok(match value {
            Value::String(s) => {
                let template = parse(s).map_err(|error| FillError::Syntax {
                    path: path.clone(),
                    error,
                })?;
                Value::String(template.render(&mut *lookup).map_err(|reference| {
                    FillError::Missing {
                        path: path.clone(),
                        reference,
                    }
                })?)
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    out.push(fill(item, path, lookup)?);
                    path.pop();
                }
                Value::Array(out)
            }
            Value::Object(map) => Value::Object(fill_map(map, path, lookup)?),
            other => other.clone(),
        })
    }
    fn fill_map<'v>(
        map: &Map,
        path: &mut ValuePath,
        lookup: &mut dyn FnMut(&OutputRef) -> Option<&'v str>,
    ) -> Result<Map, FillError> {
        let mut out = Map::new();
        for (k, v) in map {
            path.push(k.clone());
            out.insert(k.clone(), fill(v, path, lookup)?);
            path.pop();
        }
        Ok(out)
    }
    fill_map(with, &mut Vec::new(), &mut lookup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(stage: &str, output: &str) -> OutputRef {
        OutputRef {
            stage: StageId::new(stage).unwrap(),
            output: output.to_owned(),
        }
    }

    #[test]
    fn env_names_upper_case_and_separate_stage_from_output() {
        assert_eq!(
            env_name("checksum", "digest"),
            "LABHIT_OUTPUT_CHECKSUM__DIGEST"
        );
        assert_eq!(
            env_name("test-report", "Exit-code"),
            "LABHIT_OUTPUT_TEST_REPORT__EXIT_CODE"
        );
    }

    #[test]
    fn script_references_find_only_well_formed_ones() {
        let script = "echo ${{ stages.checksum.outputs.digest }} ${{ matrix.os }} \\
                      ${{stages.a.outputs.b}} ${{ unclosed";
        let found: Vec<_> = script_references(script)
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(found, vec![r("checksum", "digest"), r("a", "b")]);
        assert!(script_references("${{ ${{ stages.a.outputs.b }}").len() == 1);
        assert!(script_references("echo \"${digest}\"").is_empty());
    }

    #[test]
    fn whole_and_embedded_references() {
        let t = parse("${{ stages.checksum.outputs.digest }}").unwrap();
        assert_eq!(t.pieces, vec![Piece::Ref(r("checksum", "digest"), 0..37)]);
        let t =
            parse("sha ${{stages.a.outputs.x-1}} and ${{  stages.b_2.outputs.Y_z  }}!").unwrap();
        let refs: Vec<_> = t.references().map(|(r, _)| r.clone()).collect();
        assert_eq!(refs, vec![r("a", "x-1"), r("b_2", "Y_z")]);
        let text = t
            .render(|r| Some(if r.stage.as_str() == "a" { "1" } else { "2" }))
            .unwrap();
        assert_eq!(text, "sha 1 and 2!");
    }

    #[test]
    fn the_escape_is_a_literal_and_other_dollars_stay() {
        let t = parse("$${{ stages.a.outputs.x }} costs $5 }} $").unwrap();
        assert_eq!(t.references().count(), 0);
        assert_eq!(
            t.render(|_| None).unwrap(),
            "${{ stages.a.outputs.x }} costs $5 }} $"
        );
        let t = parse("$$${{ stages.a.outputs.x }}").unwrap();
        assert_eq!(
            t.render(|_| Some("v")).unwrap(),
            "$${{ stages.a.outputs.x }}"
        );
        let t = parse("$ ${{ stages.a.outputs.x }}").unwrap();
        assert_eq!(t.render(|_| Some("v")).unwrap(), "$ v");
    }

    #[test]
    fn malformed_references_say_what_and_where() {
        let cases = [
            ("x ${{ stages.a.outputs.b", 2..24, "not closed"),
            ("${{ }}", 0..6, "empty reference"),
            ("${{ steps.a.outputs.b }}", 0..24, "not an output reference"),
            ("${{ stages.a.b }}", 0..17, "not an output reference"),
            ("${{ stages.A.outputs.b }}", 0..25, "not a valid stage id"),
            ("${{ stages.a.outputs.b c }}", 0..27, "not an output name"),
            ("${{ stages.a.outputs. }}", 0..24, "not an output name"),
        ];
        for (text, range, want) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.range, range, "{text}");
            assert!(err.message.contains(want), "{text}: {}", err.message);
        }
    }

    #[test]
    fn fill_replaces_nested_strings_and_names_what_is_missing() {
        let with: Map = serde_json::from_value::<Value>(serde_json::json!({
            "values": {"d": "${{ stages.c.outputs.digest }}", "n": 3},
            "list": ["a", "$${{ x }}"],
        }))
        .map(|v| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        })
        .unwrap();
        let filled = fill_with(&with, |r| (r.output == "digest").then_some("abc")).unwrap();
        assert_eq!(
            Value::Object(filled).to_json(),
            serde_json::json!({"values": {"d": "abc", "n": 3}, "list": ["a", "${{ x }}"]})
        );
        let err = fill_with(&with, |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`with.values.d` refers to output `digest` of stage `c`, which that stage did not report"
        );
        assert_eq!(
            references(&with),
            vec![(vec!["values".to_owned(), "d".to_owned()], r("c", "digest"))]
        );
    }
}
