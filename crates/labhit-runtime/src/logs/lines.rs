//! [`LineBuffer`]: turns a byte stream (a guest's stdout or stderr, the output of a local
//! command) into log lines without ever cutting a secret in two.
//!
//! Bytes are split at `\n` (a trailing `\r` is dropped). A line longer than the buffer's
//! `max_line` is delivered in pieces of about `max_line` bytes. A piece is only cut once the
//! buffer holds `max_line + longest form - 1` bytes, so every occurrence of a secret form
//! that starts inside the piece is seen whole; the cut then moves to the start of an
//! occurrence it would split (or, for one that starts the piece, to its end), and back to a
//! UTF-8 character boundary. Each piece is redacted whole by the step's log. A secret that
//! itself contains `\n` is redacted line by line (see [`super::Redactor::add`]).

use super::Redactor;

/// Pending bytes of one output stream. Not thread-safe on its own: the owner locks it.
#[derive(Debug)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
    max_line: usize,
}

impl LineBuffer {
    /// A buffer that delivers lines of at most about `max_line` bytes (at least 1).
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            pending: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Appends `bytes`; returns the complete lines and pieces that are ready, in order.
    pub(crate) fn push(&mut self, bytes: &[u8], redactor: &Redactor) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + end];
            out.push(line.strip_suffix(b"\r").unwrap_or(line).to_vec());
            start += end + 1;
        }
        self.pending.drain(..start);
        let keep = redactor.longest_form().saturating_sub(1);
        while self.pending.len() >= self.max_line + keep {
            let cut = safe_cut(&self.pending, self.max_line, redactor);
            out.push(self.pending.drain(..cut).collect());
        }
        out
    }

    /// The last bytes, which had no newline (empty when there are none).
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        rest.strip_suffix(b"\r")
            .map_or(rest.clone(), <[u8]>::to_vec)
    }
}

/// Where to end a piece of `buf` near `max`: not inside an occurrence of a secret form and,
/// when possible, not inside a UTF-8 character. Always in `1..=buf.len()`.
fn safe_cut(buf: &[u8], max: usize, redactor: &Redactor) -> usize {
    let mut cut = max.min(buf.len());
    // Back to a character boundary (at most 3 continuation bytes), unless that empties it.
    let mut boundary = cut;
    while boundary > 0 && boundary > cut.saturating_sub(3) && is_continuation(buf, boundary) {
        boundary -= 1;
    }
    if boundary > 0 && !is_continuation(buf, boundary) {
        cut = boundary;
    }
    // Occurrences that start before the cut, merged where they overlap.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for form in redactor.forms() {
        let form = form.as_bytes();
        let from = cut.saturating_sub(form.len().saturating_sub(1));
        for start in from..cut {
            if buf[start..].starts_with(form) {
                spans.push((start, start + form.len()));
            }
        }
    }
    if spans.is_empty() {
        return cut;
    }
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start < last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    match merged
        .iter()
        .find(|(start, end)| *start < cut && cut < *end)
    {
        Some((0, end)) => (*end).min(buf.len()),
        Some((start, _)) => *start,
        None => cut,
    }
}

fn is_continuation(buf: &[u8], at: usize) -> bool {
    buf.get(at).is_some_and(|b| b & 0b1100_0000 == 0b1000_0000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(max: usize, secret: &str, writes: &[&[u8]]) -> Vec<String> {
        let mut redactor = Redactor::new();
        redactor.add(secret);
        let mut buffer = LineBuffer::new(max);
        let mut out: Vec<Vec<u8>> = Vec::new();
        for bytes in writes {
            out.extend(buffer.push(bytes, &redactor));
        }
        out.push(buffer.finish());
        out.iter()
            .map(|piece| redactor.redact(&String::from_utf8_lossy(piece)))
            .collect()
    }

    #[test]
    fn splits_lines_and_long_lines_into_pieces() {
        let got = pieces(8, "", &[b"one\r\ntw", b"o\nthree", b"0123456789"]);
        assert_eq!(got, ["one", "two", "three012", "3456789"]);
    }

    #[test]
    fn a_secret_across_every_cut_point_never_leaks() {
        let secret = "s3cr3t-ü-value";
        for max in 4..40 {
            for offset in 0..max + 2 {
                let text = format!("{}{secret}{}", "x".repeat(offset), "y".repeat(7));
                // Written whole and byte by byte: both must keep the secret together.
                let whole = pieces(max, secret, &[text.as_bytes()]);
                let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
                let single = pieces(max, secret, &bytes);
                for got in [whole, single] {
                    let joined = got.concat();
                    assert!(joined.contains("***"), "max {max} offset {offset}: {got:?}");
                    for piece in &got {
                        for part in ["s3cr", "r3t-", "-value", "ü-v"] {
                            assert!(!piece.contains(part), "max {max} offset {offset}: {got:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn encoded_forms_are_kept_together_too() {
        let secret = "hunter2-secret";
        let encoded = "aHVudGVyMi1zZWNyZXQ="; // standard base64
        for offset in 0..20 {
            let text = format!("{}{encoded}\n", "x".repeat(offset));
            let got = pieces(16, secret, &[text.as_bytes()]);
            assert!(got.concat().contains("***"), "{offset}: {got:?}");
            assert!(!got.concat().contains("aHVud"), "{offset}: {got:?}");
        }
    }

    #[test]
    fn a_buffer_full_of_overlapping_occurrences_still_makes_progress() {
        let got = pieces(4, "aaaa", &[&[b'a'; 64]]);
        assert!(got.iter().all(|p| !p.contains("aaaa")), "{got:?}");
    }
}
