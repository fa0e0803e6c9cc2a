//! Text from guests, `run:` scripts and files made safe for a terminal.
//!
//! A log line, an output value, an error message or a stage reason may carry terminal control
//! sequences: `ESC ]52;…` writes the clipboard, cursor movement or a bare `\r` overwrites a
//! line already printed (a forged "succeeded"), bidi overrides reorder what is shown.
//! [`printable`] renders every such character visibly instead: C0 controls except `\t`
//! (`\r`, `\n`, `\e`, `\x07`, …), DEL (`\x7f`), C1 controls (`\u{9b}`, …) and the Unicode
//! bidi controls (`\u{202e}`, …). Every printer that puts untrusted text on the terminal goes
//! through it; `log.jsonl` and `summary.json` keep the raw text (JSON escapes it).
//!
//! JSON printed to stdout goes through [`json`]: `serde_json` escapes C0 controls but not DEL,
//! C1 or bidi controls, which [`json`] writes as `\uXXXX` escapes — the same JSON value, safe
//! on a terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as is.
fn is_unsafe(c: char) -> bool {
    match c {
        '\t' => false,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        // Bidi controls: ALM, LRM, RLM, embeddings and overrides, isolates.
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            true
        }
        _ => false,
    }
}

/// `text` with every control character rendered visibly (see the module docs); borrowed
/// when there is none.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_unsafe(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// `value` as pretty JSON with every character [`printable`] would escape written as a
/// `\uXXXX` escape (they can only occur inside strings, where that is the same value).
pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    // serde_json escapes every C0 control inside strings: a raw `\n` is layout.
    let unsafe_in_json = |c: char| c != '\n' && is_unsafe(c);
    let text = serde_json::to_string_pretty(value)?;
    if !text.chars().any(unsafe_in_json) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_in_json(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `value` as compact JSON on one line (for JSON Lines output), escaped like [`json`].
pub(crate) fn json_line<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    // Compact output has no layout newline: every unsafe character is inside a string.
    let text = serde_json::to_string(value)?;
    if !text.chars().any(is_unsafe) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{json, json_line, printable};

    #[test]
    fn json_lines_are_one_line_and_mean_the_same() {
        let value = serde_json::json!({"k": "a\u{7f}b\u{202e}c\nd"});
        let text = json_line(&value).expect("json");
        assert!(
            !text.contains('\n') && !text.chars().any(super::is_unsafe),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid json");
        assert_eq!(back, value);
    }

    #[test]
    fn json_escapes_what_serde_json_leaves_raw_and_means_the_same() {
        let value = serde_json::json!({"k\u{9b}": "a\u{7f}b\u{202e}c\u{1b}d\te"});
        let text = json(&value).expect("json");
        assert!(
            !text.chars().any(|c| c != '\n' && super::is_unsafe(c)),
            "{text}"
        );
        assert!(
            text.contains(r"\u009b") && text.contains(r"\u202e"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid json");
        assert_eq!(back, value);
    }

    #[test]
    fn controls_are_rendered_visibly() {
        let cases = [
            ("plain text", "plain text"),
            ("tab\tstays", "tab\tstays"),
            ("a\rsucceeded", "a\\rsucceeded"),
            ("two\nlines", "two\\nlines"),
            ("\u{1b}]52;c;aGk=\u{7}", "\\e]52;c;aGk=\\x07"),
            ("\u{1b}[2K\u{1b}[1A", "\\e[2K\\e[1A"),
            ("del\u{7f}", "del\\x7f"),
            ("csi\u{9b}31m", "csi\\u{9b}31m"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("\u{2066}iso\u{2069}", "\\u{2066}iso\\u{2069}"),
            ("ünïcödé ✓", "ünïcödé ✓"),
        ];
        for (input, want) in cases {
            assert_eq!(printable(input), want, "{input:?}");
        }
    }

    #[test]
    fn no_control_character_survives() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let text = format!("x{c}y");
            let shown = printable(&text);
            assert!(
                shown
                    .chars()
                    .all(|c| c == '\t' || !(c.is_control() || super::is_unsafe(c))),
                "{c:?} -> {shown:?}"
            );
        }
    }
}
