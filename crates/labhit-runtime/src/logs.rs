//! The structured log stream of a step and the redaction of secret values.
//!
//! Everything a guest says — `log` calls, lines on stdout (level `info`) and stderr (level
//! `warn`) — becomes a [`LogEntry`] (run, stage, level, stream, timestamp, sequence) that is
//! handed to a [`LogSink`]. [`CollectingSink`] keeps entries in memory (tests, the CLI).
//!
//! Before an entry leaves the runtime, every secret value handed to the guest in this step is
//! replaced by [`REDACTED`], together with its common encodings (see [`Redactor`]). The same
//! redaction applies to step-error messages and step outputs.
//!
//! Limits ([`LogLimits`]): a message longer than `max_message_bytes` is cut (after
//! redaction, so no partial secret survives) and marked; after `max_entries_per_step` entries
//! the rest of the step's output is dropped and one `system` entry says how much was lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use labhit_protocol::ids::RunId;
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::{LogEntry, LogLevel, LogStream};

/// What a secret value is replaced with.
pub const REDACTED: &str = "***";

/// Receives the log entries of steps. Called from the thread that runs the step, in
/// sequence order for one step; must not block for long.
pub trait LogSink: Send + Sync {
    /// Takes one entry (already redacted).
    fn emit(&self, entry: LogEntry);
}

impl<F: Fn(LogEntry) + Send + Sync> LogSink for F {
    fn emit(&self, entry: LogEntry) {
        self(entry)
    }
}

/// A sink that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl LogSink for NullSink {
    fn emit(&self, _entry: LogEntry) {}
}

/// A sink that keeps every entry in memory, in arrival order.
#[derive(Debug, Default)]
pub struct CollectingSink {
    entries: Mutex<Vec<LogEntry>>,
}

impl CollectingSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the entries received so far.
    pub fn entries(&self) -> Vec<LogEntry> {
        lock(&self.entries).clone()
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<String> {
        lock(&self.entries)
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }

    /// Removes and returns the entries received so far.
    pub fn take(&self) -> Vec<LogEntry> {
        std::mem::take(&mut *lock(&self.entries))
    }
}

impl LogSink for CollectingSink {
    fn emit(&self, entry: LogEntry) {
        lock(&self.entries).push(entry);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a sink must not poison the log of every later step.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The sequence counter of a run's log stream. Clones share the counter, so every step of
/// one run that is given a clone numbers its entries in one sequence.
#[derive(Debug, Clone, Default)]
pub struct LogCursor(Arc<AtomicU64>);

impl LogCursor {
    /// A cursor whose first entry gets sequence 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cursor whose first entry gets sequence `next`.
    pub fn starting_at(next: u64) -> Self {
        Self(Arc::new(AtomicU64::new(next)))
    }

    /// The sequence the next entry will get.
    pub fn peek(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// Bounds on what one step may log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Longest message kept, in bytes; longer ones are cut and marked.
    pub max_message_bytes: usize,
    /// Most entries kept per step; later ones are dropped and counted.
    pub max_entries_per_step: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024,
            max_entries_per_step: 10_000,
        }
    }
}

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

    /// Adds a secret value (an empty value is ignored).
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        for form in encoded_forms(secret) {
            if !self.patterns.contains(&form) {
                self.patterns.push(form);
            }
        }
        self.patterns
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// `text` with every known form of every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        self.redact_owned(text.to_owned())
    }

    /// Like [`Redactor::redact`], reusing `text`'s allocation when nothing matches.
    pub fn redact_owned(&self, mut text: String) -> String {
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

/// The log of one step: numbering, redaction, limits, delivery. Shared by the `log` import
/// and the stdout/stderr streams of the step.
pub(crate) struct StepLog {
    run_id: RunId,
    stage: Option<StageId>,
    sink: Arc<dyn LogSink>,
    cursor: LogCursor,
    limits: LogLimits,
    clock: StepClock,
    state: Mutex<StepLogState>,
}

/// Timestamps for one step: the wall clock read once at the start plus monotonic time since,
/// which is cheaper per entry than converting `SystemTime` each time and never goes backwards
/// within a step.
struct StepClock {
    wall: chrono::DateTime<chrono::Utc>,
    start: std::time::Instant,
}

impl StepClock {
    fn new() -> Self {
        Self {
            wall: chrono::DateTime::from(std::time::SystemTime::now()),
            start: std::time::Instant::now(),
        }
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::TimeDelta::from_std(self.start.elapsed())
            .ok()
            .and_then(|elapsed| self.wall.checked_add_signed(elapsed))
            .unwrap_or(self.wall)
    }
}

#[derive(Default)]
struct StepLogState {
    redactor: Redactor,
    emitted: u64,
    dropped: u64,
    last_error: Option<String>,
    panic: Option<String>,
    /// The previous stderr line started a Rust panic report (`... panicked at file:line:col:`).
    panic_header: bool,
}

impl StepLog {
    pub(crate) fn new(
        run_id: RunId,
        stage: &str,
        sink: Arc<dyn LogSink>,
        cursor: LogCursor,
        limits: LogLimits,
    ) -> Self {
        Self {
            run_id,
            stage: StageId::new(stage).ok(),
            sink,
            cursor,
            limits,
            clock: StepClock::new(),
            state: Mutex::new(StepLogState::default()),
        }
    }

    /// Remembers a secret value handed to the guest: from now on it is redacted.
    pub(crate) fn add_secret(&self, value: &str) {
        lock(&self.state).redactor.add(value);
    }

    /// `text` with every secret handed out so far redacted.
    pub(crate) fn redact(&self, text: &str) -> String {
        lock(&self.state).redactor.redact(text)
    }

    /// The last message logged at error level, redacted.
    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.state).last_error.clone()
    }

    /// The panic message the guest reported (SDK log line or Rust's stderr report), redacted.
    pub(crate) fn panic_message(&self) -> Option<String> {
        lock(&self.state).panic.clone()
    }

    /// Emits one entry: redacts, truncates, numbers and delivers it (or counts it dropped).
    pub(crate) fn emit(
        &self,
        level: LogLevel,
        stream: LogStream,
        message: &str,
        fields: Vec<(String, String)>,
    ) {
        self.emit_owned(level, stream, message.to_owned(), fields);
    }

    /// Like [`StepLog::emit`], taking the message by value (no copy when nothing is
    /// redacted).
    pub(crate) fn emit_owned(
        &self,
        level: LogLevel,
        stream: LogStream,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        let mut state = lock(&self.state);
        let over_limit = state.emitted >= self.limits.max_entries_per_step;
        if over_limit && level != LogLevel::Error && stream != LogStream::Stderr {
            // Dropped, and not needed for the failure report: skip the work.
            state.dropped += 1;
            return;
        }
        let message = state.redactor.redact_owned(message);
        if stream == LogStream::Stderr {
            if state.panic_header {
                state.panic = Some(message.clone());
                state.panic_header = false;
            } else if message.contains(" panicked at ") {
                state.panic_header = true;
            }
        }
        if level == LogLevel::Error {
            if let Some(rest) = message.strip_prefix("extension panicked: ") {
                state.panic = Some(rest.to_owned());
            }
            state.last_error = Some(message.clone());
        }
        if over_limit {
            state.dropped += 1;
            return;
        }
        state.emitted += 1;
        let fields: BTreeMap<String, String> = if fields.is_empty() {
            BTreeMap::new()
        } else {
            fields
                .into_iter()
                .map(|(k, v)| {
                    (
                        state.redactor.redact_owned(k),
                        truncate(
                            state.redactor.redact_owned(v),
                            self.limits.max_message_bytes,
                        ),
                    )
                })
                .collect()
        };
        let entry = LogEntry {
            run_id: self.run_id,
            sequence: self.cursor.next(),
            stage: self.stage.clone(),
            level,
            stream,
            timestamp: self.clock.now(),
            message: truncate(message, self.limits.max_message_bytes),
            fields,
        };
        self.sink.emit(entry);
    }

    /// Ends the step's log: reports entries dropped over the limit.
    pub(crate) fn finish(&self) {
        let dropped = {
            let mut state = lock(&self.state);
            std::mem::take(&mut state.dropped)
        };
        if dropped > 0 {
            let entry = LogEntry {
                run_id: self.run_id,
                sequence: self.cursor.next(),
                stage: self.stage.clone(),
                level: LogLevel::Warn,
                stream: LogStream::System,
                timestamp: self.clock.now(),
                message: format!(
                    "{dropped} log entries of this step were dropped (limit: {} entries per step)",
                    self.limits.max_entries_per_step
                ),
                fields: BTreeMap::new(),
            };
            self.sink.emit(entry);
        }
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let removed = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!(" … [truncated {removed} bytes]"));
    text
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
    fn step_log_redacts_numbers_and_limits() {
        let sink = Arc::new(CollectingSink::new());
        let log = StepLog::new(
            RunId::from_uuid(uuid::Uuid::nil()),
            "build",
            sink.clone(),
            LogCursor::starting_at(7),
            LogLimits {
                max_message_bytes: 12,
                max_entries_per_step: 2,
            },
        );
        log.add_secret("hunter2");
        log.emit(
            LogLevel::Info,
            LogStream::Log,
            "pw hunter2",
            vec![("k".into(), "aHVudGVyMg==".into())],
        );
        log.emit(
            LogLevel::Warn,
            LogStream::Stderr,
            "a very long line indeed",
            vec![],
        );
        log.emit(LogLevel::Warn, LogStream::Stderr, "dropped", vec![]);
        log.finish();
        let entries = sink.entries();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].message, "pw ***");
        assert_eq!(entries[0].fields["k"], "***");
        assert_eq!(entries[0].sequence, 7);
        assert_eq!(
            entries[0].stage.as_ref().map(StageId::as_str),
            Some("build")
        );
        assert_eq!(entries[1].message, "a very long  … [truncated 11 bytes]");
        assert_eq!(entries[2].stream, LogStream::System);
        assert!(
            entries[2].message.starts_with("1 log entries"),
            "{}",
            entries[2].message
        );
        assert_eq!(entries[2].sequence, 9);
    }

    #[test]
    fn step_log_remembers_panics_and_errors() {
        let log = StepLog::new(
            RunId::from_uuid(uuid::Uuid::nil()),
            "x",
            Arc::new(NullSink),
            LogCursor::new(),
            LogLimits::default(),
        );
        log.emit(
            LogLevel::Error,
            LogStream::Log,
            "extension panicked: boom",
            vec![],
        );
        assert_eq!(log.panic_message().as_deref(), Some("boom"));
        assert_eq!(
            log.last_error().as_deref(),
            Some("extension panicked: boom")
        );
        log.emit(
            LogLevel::Warn,
            LogStream::Stderr,
            "thread '<unnamed>' panicked at src/lib.rs:1:2:",
            vec![],
        );
        log.emit(LogLevel::Warn, LogStream::Stderr, "other message", vec![]);
        assert_eq!(log.panic_message().as_deref(), Some("other message"));
    }
}
