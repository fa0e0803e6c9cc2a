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
//!
//! Output is bounded whatever the file and the positions: any line and column (0, past the
//! end of the line or of the file, `u32::MAX`) renders without panicking; a snippet shows at
//! most [`CONTEXT`] characters on each side of the marked span, and marks at most
//! [`MAX_MARK`] characters, with `…` where the line was cut; messages are cut at
//! [`MAX_TEXT`] characters; a diagnostic shows at most [`MAX_RELATED`] related places.
//! [`MAX_RENDERED`] bounds how many diagnostics a command prints with snippets.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use labhit_protocol::{Diagnostic, Severity, Span};
use unicode_width::UnicodeWidthChar as _;

/// Tab stops in snippets.
pub(crate) const TAB_WIDTH: usize = 4;
/// Characters of context shown on each side of the marked span.
pub(crate) const CONTEXT: usize = 100;
/// Most characters marked under a snippet (a longer span is marked up to here).
pub(crate) const MAX_MARK: usize = 100;
/// Most characters of a message, note or help line (more is cut, ending in `…`).
pub(crate) const MAX_TEXT: usize = 1_000;
/// Most related places shown per diagnostic.
pub(crate) const MAX_RELATED: usize = 10;
/// Most diagnostics a command prints in human form; the rest are counted.
pub(crate) const MAX_RENDERED: usize = 100;
/// Characters between two checkpoints of a long non-ASCII line.
const STRIDE: usize = 1024;

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
    lines: Vec<Line<'a>>,
}

/// One line, indexed so that a column maps to a byte offset without scanning the whole line
/// (a one-line file of megabytes is common for generated JSON).
struct Line<'a> {
    text: &'a str,
    /// Number of characters.
    chars: usize,
    /// For a non-ASCII line: the byte offset of every [`STRIDE`]th character.
    checkpoints: Vec<usize>,
}

impl<'a> Line<'a> {
    fn new(text: &'a str) -> Self {
        if text.is_ascii() {
            return Self {
                text,
                chars: text.len(),
                checkpoints: Vec::new(),
            };
        }
        let mut checkpoints = Vec::new();
        let mut chars = 0;
        for (i, (at, _)) in text.char_indices().enumerate() {
            if i % STRIDE == 0 {
                checkpoints.push(at);
            }
            chars = i + 1;
        }
        Self {
            text,
            chars,
            checkpoints,
        }
    }

    /// The byte offset of character `index` (clamped to the end of the line).
    fn byte(&self, index: usize) -> usize {
        if index >= self.chars {
            return self.text.len();
        }
        if self.checkpoints.is_empty() {
            return index;
        }
        let from = self.checkpoints.get(index / STRIDE).copied().unwrap_or(0);
        self.text
            .get(from..)
            .and_then(|rest| rest.char_indices().nth(index % STRIDE))
            .map_or(self.text.len(), |(at, _)| from + at)
    }

    /// Characters `from..to` (clamped).
    fn slice(&self, from: usize, to: usize) -> &'a str {
        let (start, end) = (self.byte(from), self.byte(to));
        self.text.get(start..end.max(start)).unwrap_or_default()
    }
}

impl<'a> Source<'a> {
    /// Splits `text` at `\n`, `\r\n` and lone `\r`, the line breaks diagnostics count.
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            lines: labhit_protocol::diagnostic::lines(text)
                .map(Line::new)
                .collect(),
        }
    }

    fn line(&self, number: u32) -> Option<&Line<'a>> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.lines.get(index)
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
    let related = &diag.related[..diag.related.len().min(MAX_RELATED)];
    let numbers =
        std::iter::once(diag.span.start.line).chain(related.iter().map(|r| r.span.start.line));
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
    for related in related {
        let _ = writeln!(
            out,
            "{location}{path}:{}:{}:{location:#} {note}note{note:#}: {}",
            related.span.start.line,
            related.span.start.column,
            clean(&related.message),
        );
        snippet(out, styles, source, related.span, width, '-', note);
    }
    if let Some(more) = diag
        .related
        .len()
        .checked_sub(MAX_RELATED)
        .filter(|&n| n > 0)
    {
        let _ = writeln!(
            out,
            "{:width$} {gutter}={gutter:#} {note}note{note:#}: {more} more related place{} not shown",
            "",
            if more == 1 { "" } else { "s" }
        );
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

/// The numbered source line of `span` with the span marked by `mark` characters; only a
/// window of the line around the span is shown (see the module documentation).
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
    let to_index = |column: u32| {
        usize::try_from(column)
            .unwrap_or(usize::MAX)
            .saturating_sub(1)
            .min(line.chars)
    };
    let start = to_index(span.start.column);
    let end = if span.end.line > span.start.line {
        line.chars
    } else if span.end.line == span.start.line {
        to_index(span.end.column).max(start)
    } else {
        start
    };
    let end = end.min(start.saturating_add(MAX_MARK));
    let from = start.saturating_sub(CONTEXT);
    let to = end.saturating_add(CONTEXT).min(line.chars);
    let (mut shown, cells) = layout(line.slice(from, to));
    let cut_before = if from > 0 { "…" } else { "" };
    if to < line.chars {
        shown.push('…');
    }
    let cell = |index: usize| {
        cells
            .get(index.saturating_sub(from))
            .copied()
            .unwrap_or_default()
    };
    let offset = cell(start) + cut_before.chars().count();
    let length = cell(end).saturating_sub(cell(start)).max(1);
    let marks: String = std::iter::repeat_n(mark, length).collect();
    let pad = " ".repeat(offset);
    let _ = writeln!(out, "{:width$} {gutter}|{gutter:#}", "");
    let _ = writeln!(
        out,
        "{gutter}{:>width$} |{gutter:#} {cut_before}{}",
        span.start.line,
        shown.trim_end()
    );
    let _ = writeln!(
        out,
        "{:width$} {gutter}|{gutter:#} {pad}{style}{marks}{style:#}",
        ""
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

/// Text from the file (keys, values) made safe for a terminal: control characters escaped,
/// cut at [`MAX_TEXT`] characters.
fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    let text = clip(text, MAX_TEXT);
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
        text
    }
}

/// `text` cut to `max` characters, ending in `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((at, _)) => {
            let kept: &str = text.get(..at).unwrap_or_default();
            format!("{kept}…").into()
        }
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
    fn the_snippet_is_the_diagnostic_line_whatever_the_line_breaks() {
        let diag = Diagnostic::error(Rule::UnknownKey, span(2, 3, 7), "unknown key `afer`");
        for text in [
            "a:\n  afer: x\nb: 1\n",
            "a:\r\n  afer: x\r\nb: 1",
            "a:\r  afer: x\rb: 1\r",
        ] {
            let out = render(text, &diag);
            assert!(
                out.contains("2 |   afer: x\n  |   ^^^^\n"),
                "{text:?}: {out}"
            );
            assert!(!out.contains("b: 1"), "{text:?}: {out}");
        }
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
    fn far_columns_and_long_lines_are_clipped_around_the_caret() {
        // One line of 200,000 characters with the problem at column 150,000 (past u16::MAX).
        let mut line = "a".repeat(149_999);
        line.push_str("TYPO");
        line.push_str(&"b".repeat(50_000 - 4));
        let diag = Diagnostic::error(Rule::UnknownKey, span(1, 150_000, 150_004), "typo");
        let out = render(&line, &diag);
        assert!(out.len() < 1_000, "{} bytes", out.len());
        let shown = format!("1 | …{}TYPO{}…\n", "a".repeat(CONTEXT), "b".repeat(CONTEXT));
        assert!(out.contains(&shown), "{out}");
        let caret = format!("  | {}^^^^\n", " ".repeat(CONTEXT + 1));
        assert!(out.contains(&caret), "{out}");
        // A span to the end of a long line marks at most MAX_MARK characters.
        let wide = Diagnostic::error(Rule::Syntax, span(1, 1, u32::MAX), "all");
        let out = render(&line, &wide);
        assert!(
            out.contains(&format!("  | {}\n", "^".repeat(MAX_MARK))),
            "{out}"
        );
    }

    #[test]
    fn long_multibyte_lines_map_columns_through_checkpoints() {
        let line: String = "é日\tx".repeat(10_000);
        let source = Source::new(&line);
        let indexed = source.line(1).expect("a line");
        assert_eq!(indexed.chars, 40_000);
        for index in [0, 1, 2, 3, 1023, 1024, 1025, 39_999, 40_000, 99_999] {
            let expected = line
                .char_indices()
                .nth(index)
                .map_or(line.len(), |(at, _)| at);
            assert_eq!(indexed.byte(index), expected, "character {index}");
        }
    }

    #[test]
    fn messages_and_related_places_are_bounded() {
        let mut diag = Diagnostic::error(Rule::DependencyCycle, span(1, 1, 2), "x".repeat(50_000))
            .with_help("h".repeat(50_000));
        for _ in 0..1_000 {
            diag = diag.with_related(span(1, 1, 2), "r".repeat(50_000));
        }
        let out = render("a: b", &diag);
        assert!(out.len() < 20_000, "{} bytes", out.len());
        assert!(out.contains("990 more related places not shown"), "{out}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any source and any positions: no panic, and the output stays within a bound that
        /// does not depend on the size of the source.
        #[test]
        fn never_panics_and_stays_bounded(
            source in proptest::string::string_regex("(?s)(.|\t|\r\n|日|é|\u{301}|\u{1b}|[a-z]{300}){0,60}").expect("regex"),
            positions in proptest::collection::vec(
                (proptest::prop_oneof![0..4u32, proptest::prelude::Just(u32::MAX), proptest::prelude::any::<u32>()],
                 proptest::prop_oneof![0..400u32, proptest::prelude::Just(65_536u32), proptest::prelude::Just(u32::MAX), proptest::prelude::any::<u32>()]),
                4,
            ),
            message in ".{0,2000}",
        ) {
            let at = |i: usize| Position::new(positions[i].0, positions[i].1);
            let diag = Diagnostic::error(Rule::Syntax, Span::new(at(0), at(1)), message.clone())
                .with_related(Span::new(at(2), at(3)), message)
                .with_help("h");
            let out = render(&source, &diag);
            // Header, two snippets of at most 2 * CONTEXT + MAX_MARK characters (4 bytes and
            // 2 cells each at most), messages of at most MAX_TEXT characters (escaped: 10
            // bytes each at most).
            let snippet = 3 * (2 * CONTEXT + MAX_MARK + 40) * 8;
            let bound = 2 * (MAX_TEXT * 10 + 100) + 2 * snippet + 200;
            proptest::prop_assert!(out.len() <= bound, "{} > {bound}", out.len());
        }
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
