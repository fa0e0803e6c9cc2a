//! Helpers shared by the fuzz targets in `fuzz_targets/`: the invariants every diagnostic must
//! keep, whatever file it is about.
//!
//! The targets themselves are small: each feeds the fuzzer's bytes to one entry point and
//! calls these checks on what comes back, so a broken invariant is a crash like a panic.

use labhit_protocol::{Diagnostic, Position};

/// The length in characters of every line of a file, to check positions against.
#[derive(Debug)]
pub struct Lines {
    /// Characters on each line, without its line break; there is always at least one line
    /// (the one after the last break, where the end of the file is).
    lengths: Vec<u32>,
}

impl Lines {
    /// Splits `bytes` (decoded lossily: invalid UTF-8 becomes one replacement character per
    /// bad sequence, and parsers only report positions in the valid prefix) into lines. LF,
    /// CRLF and a lone CR each end a line: the one convention of every position labhit
    /// reports (the YAML scanner's, and `Position::after` / `at_byte` for every other file).
    /// Written here on its own rather than calling `labhit_protocol::diagnostic::lines`, so
    /// the check does not trust the code it checks.
    pub fn new(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let mut lengths = Vec::new();
        let mut current = 0u32;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\n' => {
                    lengths.push(current);
                    current = 0;
                }
                '\r' => {
                    chars.next_if_eq(&'\n');
                    lengths.push(current);
                    current = 0;
                }
                _ => current = current.saturating_add(1),
            }
        }
        lengths.push(current);
        Self { lengths }
    }

    /// Whether `at` is a place in the file: a character of a line, or just past its end.
    pub fn contains(&self, at: Position) -> bool {
        let Some(index) = at.line.checked_sub(1) else {
            return false;
        };
        let Some(&length) = usize::try_from(index)
            .ok()
            .and_then(|i| self.lengths.get(i))
        else {
            return false;
        };
        at.column >= 1 && at.column <= length.saturating_add(1)
    }
}

/// Panics (which the fuzzer reports as a crash) unless every span of every diagnostic, related
/// locations included, starts and ends inside the file as `lines` splits it, does not end
/// before it starts, and the diagnostic has a message.
pub fn assert_diagnostics_inside(diagnostics: &[Diagnostic], lines: &Lines) {
    for d in diagnostics {
        let spans = std::iter::once(d.span).chain(d.related.iter().map(|r| r.span));
        for span in spans {
            assert!(
                lines.contains(span.start) && lines.contains(span.end),
                "span {}:{}-{}:{} outside the file: {}",
                span.start.line,
                span.start.column,
                span.end.line,
                span.end.column,
                describe(d)
            );
            assert!(
                span.start <= span.end,
                "span ends before it starts: {}",
                describe(d)
            );
        }
        assert!(!d.message.is_empty(), "empty message for rule {}", d.rule);
    }
}

/// `line:col-line:col [rule] message` of a diagnostic, for assertion messages.
pub fn describe(d: &Diagnostic) -> String {
    let (start, end) = (d.span.start, d.span.end);
    format!(
        "{}:{}-{}:{} [{}] {}",
        start.line, start.column, end.line, end.column, d.rule, d.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_break_convention() {
        let yaml = Lines::new(b"ab\r\ncd\re\n");
        assert_eq!(yaml.lengths, [2, 2, 1, 0]);
        assert!(yaml.contains(Position::new(1, 3)));
        assert!(!yaml.contains(Position::new(1, 4)));
        assert!(!yaml.contains(Position::new(5, 1)));
        assert!(!yaml.contains(Position::new(0, 1)));
        assert!(!yaml.contains(Position::new(1, 0)));
    }
}
