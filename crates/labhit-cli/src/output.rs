//! Diagnostics for tools: the JSON document `labhit validate --format json` prints.
//!
//! ```json
//! {
//!   "files": [
//!     {"path": "p.yaml", "kind": "pipeline", "ok": false, "error": null,
//!      "diagnostics": [DIAGNOSTIC, …]}
//!   ],
//!   "diagnostics": [DIAGNOSTIC, …],
//!   "errors": 1, "warnings": 0, "fatal": 0
//! }
//! ```
//!
//! `DIAGNOSTIC` is flat, so a tool needs no nesting to place it: `file`, `line`, `column`,
//! `end_line`, `end_column` (1-based, columns in Unicode characters, end exclusive), `rule`
//! (the stable code), `severity` (`error` | `warning`), `message`, `help` (string or `null`)
//! and `related` (`file`, `line`, `column`, `end_line`, `end_column`, `message`). The
//! top-level `diagnostics` repeats every file's diagnostics in one list, in file order.
//! A file that could not be read has `ok: false` and its reason in `error`.
//!
//! The document is bounded whatever the input: each file lists at most
//! [`MAX_JSON_DIAGNOSTICS`] diagnostics (its `omitted` field, present only when non-zero,
//! counts the rest, as does the top-level `omitted`), each diagnostic at most
//! [`MAX_JSON_RELATED`] related places (`omitted_related` counts the rest), and messages
//! are cut at `render::MAX_TEXT` characters, ending in `…`. `errors` and `warnings` always
//! count every diagnostic.

use std::borrow::Cow;

use labhit_protocol::{Diagnostic, Severity, Span};
use serde::Serialize;

use crate::render::{MAX_TEXT, clip};
use crate::validate::FileReport;

/// Most diagnostics listed per file.
pub(crate) const MAX_JSON_DIAGNOSTICS: usize = 1_000;
/// Most related places listed per diagnostic.
pub(crate) const MAX_JSON_RELATED: usize = 100;

/// The whole document.
#[derive(Debug, Serialize)]
pub(crate) struct Report<'a> {
    files: Vec<File<'a>>,
    diagnostics: Vec<JsonDiagnostic<'a>>,
    errors: usize,
    warnings: usize,
    fatal: usize,
    #[serde(skip_serializing_if = "is_zero")]
    omitted: usize,
}

#[derive(Debug, Serialize)]
struct File<'a> {
    path: &'a str,
    kind: &'static str,
    ok: bool,
    error: Option<&'a str>,
    diagnostics: Vec<JsonDiagnostic<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    omitted: usize,
}

#[derive(Debug, Clone, Serialize)]
struct JsonDiagnostic<'a> {
    file: &'a str,
    #[serde(flatten)]
    at: At,
    rule: &'static str,
    severity: Severity,
    message: Cow<'a, str>,
    help: Option<Cow<'a, str>>,
    related: Vec<JsonRelated<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    omitted_related: usize,
}

#[derive(Debug, Clone, Serialize)]
struct JsonRelated<'a> {
    file: &'a str,
    #[serde(flatten)]
    at: At,
    message: Cow<'a, str>,
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's signature")]
fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, Serialize)]
struct At {
    line: u32,
    column: u32,
    end_line: u32,
    end_column: u32,
}

impl From<Span> for At {
    fn from(span: Span) -> Self {
        Self {
            line: span.start.line,
            column: span.start.column,
            end_line: span.end.line,
            end_column: span.end.column,
        }
    }
}

fn diagnostic<'a>(file: &'a str, diag: &'a Diagnostic) -> JsonDiagnostic<'a> {
    JsonDiagnostic {
        file,
        at: diag.span.into(),
        rule: diag.rule.code(),
        severity: diag.severity,
        message: clip(&diag.message, MAX_TEXT),
        help: diag.help.as_deref().map(|h| clip(h, MAX_TEXT)),
        related: diag
            .related
            .iter()
            .take(MAX_JSON_RELATED)
            .map(|r| JsonRelated {
                file,
                at: r.span.into(),
                message: clip(&r.message, MAX_TEXT),
            })
            .collect(),
        omitted_related: diag.related.len().saturating_sub(MAX_JSON_RELATED),
    }
}

/// The document for a set of file reports.
pub(crate) fn report(reports: &[FileReport]) -> Report<'_> {
    let files: Vec<File<'_>> = reports
        .iter()
        .map(|r| File {
            path: &r.path,
            kind: r.kind.as_str(),
            ok: r.is_ok(),
            error: r.fatal.as_deref(),
            diagnostics: r
                .diagnostics
                .iter()
                .take(MAX_JSON_DIAGNOSTICS)
                .map(|d| diagnostic(&r.path, d))
                .collect(),
            omitted: r.diagnostics.len().saturating_sub(MAX_JSON_DIAGNOSTICS),
        })
        .collect();
    Report {
        diagnostics: files
            .iter()
            .flat_map(|f| f.diagnostics.iter().cloned())
            .collect(),
        errors: reports.iter().map(|r| r.count(Severity::Error)).sum(),
        warnings: reports.iter().map(|r| r.count(Severity::Warning)).sum(),
        fatal: reports.iter().filter(|r| r.fatal.is_some()).count(),
        omitted: files.iter().map(|f| f.omitted).sum(),
        files,
    }
}
