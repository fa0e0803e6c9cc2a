//! [`Redactor`]: replaces secret values, and their common encodings, with [`REDACTED`].
//!
//! One redactor type serves every place where text leaves a run towards the user: log
//! entries (message, field keys and values: [`Redactor::redact_entry`]), step errors, step
//! outputs and artifact paths, and the run summary ([`crate::summary::redact_run`]).
//!
//! Limits, documented in `SECURITY.md`: a value shorter than [`MIN_SECRET_BYTES`] is still
//! redacted here (front ends refuse such secrets instead, since redacting them garbles every
//! message); a multi-line value is also redacted line by line, except lines shorter than
//! [`MIN_SECRET_BYTES`]; base64 is recognised only as a whole encoding of the value.

use labhit_protocol::run::LogEntry;

/// What a secret value is replaced with.
pub const REDACTED: &str = "***";

/// The shortest secret value front ends accept (`labhit run`, `labhit ext run`), in bytes.
/// Shorter values would turn up by chance in ordinary text and make every message
/// unreadable once redacted (`e***tension`), so they are refused with a usage error. The same
/// bound applies to the lines of a multi-line secret that are redacted on their own.
pub const MIN_SECRET_BYTES: usize = 4;

/// Replaces secret values, and their common encodings, with [`REDACTED`].
///
/// For each secret the forms replaced are: the value itself; standard and URL-safe base64,
/// each padded and unpadded; percent-encoding (RFC 3986, upper- and lower-case hex, and the
/// form encoding with `+` for spaces); the JSON string escape (as `serde_json` writes it, and
/// with every non-ASCII character as `\uXXXX`). Longer forms are replaced first. Base64 is
/// matched only as a whole encoding of the value: the value embedded at an arbitrary offset of
/// a larger base64 text is not recognised.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Every form of every secret, longest first.
    patterns: Vec<String>,
}

impl Redactor {
    /// A redactor that knows no secret.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no secret is known.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Adds a secret value (an empty value is ignored). A value with line breaks is also
    /// added line by line (lines of at least [`MIN_SECRET_BYTES`]), because output is split
    /// into lines before it is redacted.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut values = vec![secret];
        if secret.contains('\n') {
            values.extend(
                secret
                    .split('\n')
                    .map(|line| line.strip_suffix('\r').unwrap_or(line))
                    .filter(|line| line.len() >= MIN_SECRET_BYTES),
            );
        }
        for value in values {
            for form in encoded_forms(value) {
                if !self.patterns.contains(&form) {
                    self.patterns.push(form);
                }
            }
        }
        self.patterns
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// Adds every secret of `other`.
    pub fn extend(&mut self, other: &Redactor) {
        for pattern in &other.patterns {
            if !self.patterns.contains(pattern) {
                self.patterns.push(pattern.clone());
            }
        }
        self.patterns
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// The length in bytes of the longest form of any secret (0 when none is known): a
    /// stream split into pieces keeps this many bytes minus one together so that no form is
    /// cut in two (see `logs::lines`).
    pub fn longest_form(&self) -> usize {
        self.patterns.first().map_or(0, String::len)
    }

    /// Every form of every secret, longest first.
    pub(crate) fn forms(&self) -> &[String] {
        &self.patterns
    }

    /// Redacts a log entry in place: its message, every field key and every field value.
    pub fn redact_entry(&self, entry: &mut LogEntry) {
        if self.is_empty() {
            return;
        }
        entry.message = self.redact_owned(std::mem::take(&mut entry.message));
        if !entry.fields.is_empty() {
            entry.fields = std::mem::take(&mut entry.fields)
                .into_iter()
                .map(|(k, v)| (self.redact_owned(k), self.redact_owned(v)))
                .collect();
        }
    }

    /// `text` with every known form of every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        self.redact_owned(text.to_owned())
    }

    /// Like [`Redactor::redact`], reusing `text`'s allocation when nothing matches.
    pub fn redact_owned(&self, mut text: String) -> String {
        if self.patterns.is_empty() {
            return text;
        }
        for pattern in &self.patterns {
            if text.contains(pattern.as_str()) {
                text = text.replace(pattern.as_str(), REDACTED);
            }
        }
        text
    }
}

/// Every form of `secret` that [`Redactor`] replaces (the value first).
pub fn encoded_forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut forms = vec![secret.to_owned()];
    for (alphabet, pad) in [
        (BASE64_STANDARD, true),
        (BASE64_STANDARD, false),
        (BASE64_URL_SAFE, true),
        (BASE64_URL_SAFE, false),
    ] {
        forms.push(base64(bytes, alphabet, pad));
    }
    forms.push(percent_encode(bytes, true, false));
    forms.push(percent_encode(bytes, false, false));
    forms.push(percent_encode(bytes, true, true));
    let json = serde_json::to_string(secret).unwrap_or_default();
    forms.push(json.trim_matches('"').to_owned());
    forms.push(json_ascii_escape(secret));
    forms.retain(|f| !f.is_empty());
    let mut unique = Vec::with_capacity(forms.len());
    for form in forms {
        if !unique.contains(&form) {
            unique.push(form);
        }
    }
    unique
}

const BASE64_STANDARD: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL_SAFE: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                let index = ((n >> (18 - 6 * i)) & 0x3f) as usize;
                out.push(char::from(alphabet[index]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn percent_encode(bytes: &[u8], upper: bool, form: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else if form && b == b' ' {
            out.push('+');
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn json_ascii_escape(secret: &str) -> String {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let inner = json.trim_matches('"');
    let mut out = String::with_capacity(inner.len());
    for c in inner.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t/va+lue ü?";

    fn redactor() -> Redactor {
        let mut r = Redactor::new();
        r.add(SECRET);
        r
    }

    fn check(form: &str) {
        assert_ne!(form, "");
        let text = format!("before {form} after");
        assert_eq!(
            redactor().redact(&text),
            "before *** after",
            "form {form:?}"
        );
    }

    #[test]
    fn redacts_the_value() {
        check(SECRET);
    }

    #[test]
    fn redacts_standard_base64_padded_and_unpadded() {
        // Checked against `printf '%s' 's3cr3t/va+lue ü?' | base64`.
        check("czNjcjN0L3ZhK2x1ZSDDvD8=");
        check("czNjcjN0L3ZhK2x1ZSDDvD8");
    }

    #[test]
    fn redacts_url_safe_base64_padded_and_unpadded() {
        let mut r = Redactor::new();
        r.add("\u{fb}\u{ff}?>");
        // bytes c3 bb c3 bf 3f 3e: standard `w7vDvz8+`, URL-safe `w7vDvz8-`.
        assert_eq!(r.redact("x w7vDvz8- y"), "x *** y");
        assert_eq!(r.redact("x w7vDvz8+ y"), "x *** y");
        let mut r = Redactor::new();
        r.add("??>");
        // bytes 3f 3f 3e: standard `Pz8+`, URL-safe `Pz8-`; `?>` alone pads.
        assert_eq!(r.redact("Pz8- Pz8+"), "*** ***");
        check(&base64(SECRET.as_bytes(), BASE64_URL_SAFE, true));
        check(&base64(SECRET.as_bytes(), BASE64_URL_SAFE, false));
    }

    #[test]
    fn base64_matches_known_vectors() {
        for (input, padded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes(), BASE64_STANDARD, true), padded);
            assert_eq!(
                base64(input.as_bytes(), BASE64_STANDARD, false),
                padded.trim_end_matches('=')
            );
        }
    }

    #[test]
    fn redacts_url_encodings() {
        check("s3cr3t%2Fva%2Blue%20%C3%BC%3F");
        check("s3cr3t%2fva%2blue%20%c3%bc%3f");
        check("s3cr3t%2Fva%2Blue+%C3%BC%3F");
    }

    #[test]
    fn redacts_json_escapes() {
        let mut r = Redactor::new();
        r.add("a\"b\\c\nd");
        assert_eq!(r.redact(r#"{"k":"a\"b\\c\nd"}"#), r#"{"k":"***"}"#);
        check("s3cr3t/va+lue \\u00fc?");
    }

    #[test]
    fn longer_forms_win_and_empty_secrets_are_ignored() {
        let mut r = Redactor::new();
        r.add("");
        assert!(r.is_empty());
        r.add("ab");
        r.add("abcd");
        assert_eq!(r.redact("abcd ab"), "*** ***");
    }

    #[test]
    fn multi_line_secrets_are_redacted_line_by_line_too() {
        let mut r = Redactor::new();
        r.add("-----BEGIN KEY-----\r\nAAAAbbbbCCCC\nxy\n");
        assert_eq!(r.redact("line AAAAbbbbCCCC end"), "line *** end");
        assert_eq!(r.redact("-----BEGIN KEY-----"), "***");
        // Lines shorter than the minimum are not redacted on their own.
        assert_eq!(r.redact("xy"), "xy");
    }

    #[test]
    fn entries_are_redacted_in_message_keys_and_values() {
        let mut entry = LogEntry::example();
        entry.message = "m hunter22".to_owned();
        entry.fields = [("hunter22-key".to_owned(), "v aHVudGVyMjI=".to_owned())].into();
        let mut r = Redactor::new();
        r.add("hunter22");
        r.redact_entry(&mut entry);
        assert_eq!(entry.message, "m ***");
        assert_eq!(entry.fields["***-key"], "v ***");
        assert_eq!(r.longest_form(), "aHVudGVyMjI=".len());
    }
}
