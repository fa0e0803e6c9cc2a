//! Diagnostics for people: `path:line:col: error[rule]: message`, then the source line with
//! the span underlined, related places as `note:` lines with their own snippet, and `help:`.
//!
//! ```text
//! pipeline.yaml:9:7: error[unknown-key]: unknown key `afer` in stage `build`
//!   |
//! 9 |       afer: fetch
//!   |       ^^^^
//!   = help: did you mean `after`?
//! ```
//!
//! Spans count Unicode scalar values (1-based), as the library reports them. The snippet is
//! laid out in terminal cells: tabs expand to the next multiple of [`TAB_WIDTH`], wide
//! characters (CJK, most emoji) take two cells, combining marks none, and control characters
//! are shown as `�` so that a file cannot drive the terminal. Colors come from `anstyle`;
//! with colors off every style renders as nothing.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use labhit_protocol::{Diagnostic, Severity, Span};
use unicode_width::UnicodeWidthChar as _;

/// Tab stops in snippets.
pub(crate) const TAB_WIDTH: usize = 4;

/// The styles of one output stream; all plain when colors are off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Styles {
    location: Style,
    error: Style,
    warning: Style,
    message: Style,
    note: Style,
    help: Style,
    gutter: Style,
}

impl Styles {
    /// Colored styles when `color`, plain ones otherwise.
    pub(crate) fn new(color: bool) -> Self {
        if !color {
            let plain = Style::new();
            return Self {
                location: plain,
                error: plain,
                warning: plain,
                message: plain,
                note: plain,
                help: plain,
                gutter: plain,
            };
        }
        let bold = Style::new().bold();
        Self {
            location: bold,
            error: bold.fg_color(Some(AnsiColor::Red.into())),
            warning: bold.fg_color(Some(AnsiColor::Yellow.into())),
            message: bold,
            note: bold.fg_color(Some(AnsiColor::Cyan.into())),
            help: bold.fg_color(Some(AnsiColor::Cyan.into())),
            gutter: bold.fg_color(Some(AnsiColor::Blue.into())),
        }
    }

    fn severity(&self, severity: Severity) -> Style {
        match severity {
            Severity::Error => self.error,
            Severity::Warning => self.warning,
        }
    }
}

/// The source of one file, split into lines once, for snippets.
pub(crate) struct Source<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Source<'a> {
    /// Splits `text` on `\n`; a `\r` before it is dropped.
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            lines: text
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect(),
        }
    }

    fn line(&self, number: u32) -> Option<&'a str> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.lines.get(index).copied()
    }
}

/// Appends one diagnostic of the file at `path`, followed by an empty line.
pub(crate) fn diagnostic(
    out: &mut String,
    styles: &Styles,
    path: &str,
    source: &Source<'_>,
    diag: &Diagnostic,
) {
    let Styles {
        location,
        message,
        note,
        help,
        gutter,
        ..
    } = *styles;
    let level = styles.severity(diag.severity);
    let numbers =
        std::iter::once(diag.span.start.line).chain(diag.related.iter().map(|r| r.span.start.line));
    let width = numbers.max().unwrap_or(1).to_string().len();
    let _ = writeln!(
        out,
        "{location}{path}:{}:{}:{location:#} {level}{}[{}]{level:#}{message}: {}{message:#}",
        diag.span.start.line,
        diag.span.start.column,
        diag.severity,
        diag.rule.code(),
        clean(&diag.message),
    );
    snippet(out, styles, source, diag.span, width, '^', level);
    for related in &diag.related {
        let _ = writeln!(
            out,
            "{location}{path}:{}:{}:{location:#} {note}note{note:#}: {}",
            related.span.start.line,
            related.span.start.column,
            clean(&related.message),
        );
        snippet(out, styles, source, related.span, width, '-', note);
    }
    if let Some(text) = &diag.help {
        let _ = writeln!(
            out,
            "{:width$} {gutter}={gutter:#} {help}help{help:#}: {}",
            "",
            clean(text)
        );
    }
    out.push('\n');
}

/// The numbered source line of `span` with the span marked by `mark` characters.
fn snippet(
    out: &mut String,
    styles: &Styles,
    source: &Source<'_>,
    span: Span,
    width: usize,
    mark: char,
    style: Style,
) {
    let Some(line) = source.line(span.start.line) else {
        return;
    };
    let gutter = styles.gutter;
    let (shown, cells) = layout(line);
    let chars = cells.len() - 1;
    let to_index = |column: u32| {
        usize::try_from(column)
            .unwrap_or(usize::MAX)
            .saturating_sub(1)
            .min(chars)
    };
    let start = to_index(span.start.column);
    let end = if span.end.line > span.start.line {
        chars
    } else if span.end.line == span.start.line {
        to_index(span.end.column)
    } else {
        start
    };
    let from = cells[start];
    let length = cells[end.max(start)].saturating_sub(from).max(1);
    let marks: String = std::iter::repeat_n(mark, length).collect();
    let _ = writeln!(out, "{:width$} {gutter}|{gutter:#}", "");
    let _ = writeln!(
        out,
        "{gutter}{:>width$} |{gutter:#} {}",
        span.start.line,
        shown.trim_end()
    );
    let _ = writeln!(
        out,
        "{:width$} {gutter}|{gutter:#} {:from$}{style}{marks}{style:#}",
        "", ""
    );
}

/// A source line as shown (tabs expanded, control characters replaced) and the cell offset of
/// each character; the last entry is the width of the whole line.
fn layout(line: &str) -> (String, Vec<usize>) {
    let mut shown = String::with_capacity(line.len());
    let mut cells = Vec::with_capacity(line.len() + 1);
    let mut at = 0;
    for c in line.chars() {
        cells.push(at);
        if c == '\t' {
            let next = (at / TAB_WIDTH + 1) * TAB_WIDTH;
            shown.extend(std::iter::repeat_n(' ', next - at));
            at = next;
        } else {
            match c.width() {
                Some(w) if !c.is_control() => {
                    shown.push(c);
                    at += w;
                }
                _ => {
                    shown.push('\u{FFFD}');
                    at += 1;
                }
            }
        }
    }
    cells.push(at);
    (shown, cells)
}

/// Text from the file (keys, values) made safe for a terminal: control characters escaped.
fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// `2 errors in 1 file`, `1 error and 3 warnings in 2 files`; `None` when there is nothing.
pub(crate) fn summary(errors: usize, warnings: usize, files: usize) -> Option<String> {
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let problems = match (errors, warnings) {
        (0, 0) => return None,
        (e, 0) => count(e, "error"),
        (0, w) => count(w, "warning"),
        (e, w) => format!("{} and {}", count(e, "error"), count(w, "warning")),
    };
    Some(format!("{problems} in {}", count(files, "file")))
}

#[cfg(test)]
mod tests {
    use labhit_protocol::{Position, Rule};

    use super::*;

    fn render(text: &str, diag: &Diagnostic) -> String {
        let mut out = String::new();
        diagnostic(
            &mut out,
            &Styles::new(false),
            "p.yaml",
            &Source::new(text),
            diag,
        );
        out
    }

    fn span(line: u32, start: u32, end: u32) -> Span {
        Span::new(Position::new(line, start), Position::new(line, end))
    }

    #[test]
    fn underlines_the_span() {
        let diag = Diagnostic::error(Rule::UnknownKey, span(2, 3, 7), "unknown key `afer`")
            .with_help("did you mean `after`?");
        assert_eq!(
            render("a:\n  afer: x\n", &diag),
            "p.yaml:2:3: error[unknown-key]: unknown key `afer`\n  |\n2 |   afer: x\n  |   ^^^^\n  = help: did you mean `after`?\n\n"
        );
    }

    #[test]
    fn tabs_and_wide_characters_keep_the_caret_aligned() {
        // `\t` expands to cell 4, `日本` takes four cells and `:` one: `x` (column 5) is at cell 9.
        let diag = Diagnostic::error(Rule::Syntax, span(1, 5, 6), "here");
        let out = render("\t日本:x", &diag);
        assert!(out.contains("1 |     日本:x\n  |          ^\n"), "{out}");
        // A combining accent takes no cell: `x` (column 5) is at cell 3.
        let diag = Diagnostic::error(Rule::Syntax, span(1, 5, 6), "here");
        let out = render("e\u{301}: x", &diag);
        assert!(out.contains("  |    ^\n"), "{out}");
    }

    #[test]
    fn points_and_spans_past_the_line() {
        let point = Diagnostic::error(Rule::Syntax, Span::point(Position::new(1, 3)), "p");
        assert!(render("ab", &point).ends_with("  |   ^\n\n"));
        let multi = Diagnostic::error(
            Rule::Syntax,
            Span::new(Position::new(1, 2), Position::new(3, 1)),
            "m",
        );
        assert!(render("abc\nd\n", &multi).contains("  |  ^^\n"));
        let missing = Diagnostic::error(Rule::Syntax, span(9, 1, 2), "gone");
        assert_eq!(render("a", &missing), "p.yaml:9:1: error[syntax]: gone\n\n");
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let diag = Diagnostic::error(Rule::UnknownKey, span(1, 1, 2), "key `\u{1b}[31m`");
        let out = render("\u{1b}[31m: 1", &diag);
        assert!(!out.contains('\u{1b}'), "{out:?}");
    }

    #[test]
    fn summaries() {
        assert_eq!(summary(2, 0, 1).as_deref(), Some("2 errors in 1 file"));
        assert_eq!(
            summary(1, 3, 2).as_deref(),
            Some("1 error and 3 warnings in 2 files")
        );
        assert_eq!(summary(0, 1, 1).as_deref(), Some("1 warning in 1 file"));
        assert_eq!(summary(0, 0, 0), None);
    }
}
