//! The structured log stream of a step and the redaction of secret values.
//!
//! Everything a guest says — `log` calls, lines on stdout (level `info`) and stderr (level
//! `warn`) — becomes a [`LogEntry`] (run, stage, level, stream, timestamp, sequence) that is
//! handed to a [`LogSink`]. [`CollectingSink`] keeps entries in memory (tests, the CLI).
//!
//! Before an entry leaves the runtime, every secret value handed to the guest in this step is
//! replaced by [`REDACTED`], together with its common encodings (see [`Redactor`], in
//! `redact.rs`): in the message, the field keys and the field values. The same redaction
//! applies to step-error messages, step outputs and artifact paths. Output streams are split
//! into lines so that no secret is ever cut in two (`lines.rs`).
//!
//! Limits ([`LogLimits`]), applied after redaction so no partial secret survives a cut:
//!
//! * per entry: the message is cut at `max_message_bytes`; at most `max_fields_per_entry`
//!   fields are kept, each key cut at `max_field_key_bytes` and each value at
//!   `max_field_value_bytes`, and fields stop once the entry holds `max_entry_bytes`. A cut
//!   is marked in place (`… [truncated N bytes]`) and an entry that lost fields or had a key
//!   or value cut carries the field [`TRUNCATED_FIELD`] saying what was lost;
//! * per step: after `max_entries_per_step` entries or `max_bytes_per_step` bytes the rest of
//!   the step's output is dropped, and one `system` warning at the end of the step says how
//!   much was lost.

mod lines;
mod redact;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use labhit_protocol::ids::RunId;
use labhit_protocol::pipeline::StageId;
use labhit_protocol::run::{LogEntry, LogLevel, LogStream};

pub(crate) use lines::LineBuffer;
pub use redact::{MIN_SECRET_BYTES, REDACTED, Redactor, encoded_forms};

/// The field added to an entry whose fields were cut or dropped by [`LogLimits`].
pub const TRUNCATED_FIELD: &str = "labhit.truncated";

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

/// Bounds on what one step may log. Sizes are bytes of text (before JSON escaping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Longest message kept; longer ones are cut and marked. Also the length of the pieces
    /// a line of output without a newline is delivered in.
    pub max_message_bytes: usize,
    /// Most entries kept per step; later ones are dropped and counted.
    pub max_entries_per_step: u64,
    /// Most fields kept per entry; later ones are dropped and counted in
    /// [`TRUNCATED_FIELD`].
    pub max_fields_per_entry: usize,
    /// Longest field key kept; longer ones are cut and marked.
    pub max_field_key_bytes: usize,
    /// Longest field value kept; longer ones are cut and marked.
    pub max_field_value_bytes: usize,
    /// Most bytes of one entry (message, keys and values); fields that do not fit are
    /// dropped.
    pub max_entry_bytes: usize,
    /// Most bytes of all entries of one step; later entries are dropped and counted.
    pub max_bytes_per_step: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024,
            max_entries_per_step: 10_000,
            max_fields_per_entry: 32,
            max_field_key_bytes: 128,
            max_field_value_bytes: 4 * 1024,
            max_entry_bytes: 32 * 1024,
            max_bytes_per_step: 16 * 1024 * 1024,
        }
    }
}

/// A sink that redacts every entry (message, field keys and values) before passing it on.
pub struct RedactingSink {
    inner: Arc<dyn LogSink>,
    redactor: Redactor,
}

impl RedactingSink {
    /// Redacts with `redactor`, then hands entries to `inner`.
    pub fn new(inner: Arc<dyn LogSink>, redactor: Redactor) -> Self {
        Self { inner, redactor }
    }
}

impl LogSink for RedactingSink {
    fn emit(&self, mut entry: LogEntry) {
        self.redactor.redact_entry(&mut entry);
        self.inner.emit(entry);
    }
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
    /// Bytes of the entries delivered so far.
    bytes: u64,
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
        let limits = &self.limits;
        let message = bounded(&state.redactor, message, limits.max_message_bytes);
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
        let (fields, size) = bound_fields(&state.redactor, limits, message.len(), fields);
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        if state.bytes.saturating_add(size) > limits.max_bytes_per_step {
            state.dropped += 1;
            // Later, smaller entries are dropped too: the budget is spent.
            state.bytes = limits.max_bytes_per_step;
            return;
        }
        state.bytes += size;
        state.emitted += 1;
        let entry = LogEntry {
            run_id: self.run_id,
            sequence: self.cursor.next(),
            stage: self.stage.clone(),
            level,
            stream,
            timestamp: self.clock.now(),
            message,
            fields,
        };
        self.sink.emit(entry);
    }

    /// Appends `bytes` to the output stream `lines` and emits every line (or piece of a long
    /// line) that is complete, at `level` on `stream`. No secret is cut in two (see
    /// `logs/lines.rs`).
    pub(crate) fn write_lines(
        &self,
        lines: &mut LineBuffer,
        bytes: &[u8],
        level: LogLevel,
        stream: LogStream,
    ) {
        let ready = {
            let state = lock(&self.state);
            lines.push(bytes, &state.redactor)
        };
        for line in ready {
            self.emit_owned(level, stream, lossy(line), Vec::new());
        }
    }

    /// Emits what is left in `lines` (a last line without a newline).
    pub(crate) fn finish_lines(&self, lines: &mut LineBuffer, level: LogLevel, stream: LogStream) {
        let rest = lines.finish();
        if !rest.is_empty() {
            self.emit_owned(level, stream, lossy(rest), Vec::new());
        }
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
                    "{dropped} log entries of this step were dropped (limits: {} entries and {} \
                     bytes per step)",
                    self.limits.max_entries_per_step, self.limits.max_bytes_per_step
                ),
                fields: BTreeMap::new(),
            };
            self.sink.emit(entry);
        }
    }
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `text` redacted and cut to `max` bytes (marked). Text far beyond `max` is cut before it
/// is redacted (keeping every secret form that starts before `max` whole), so a huge
/// message costs no more than a long one.
fn bounded(redactor: &Redactor, text: String, max: usize) -> String {
    bounded_flag(redactor, text, max).0
}

/// Like [`bounded`]; also whether the text was cut.
fn bounded_flag(redactor: &Redactor, mut text: String, max: usize) -> (String, bool) {
    let keep = max.saturating_add(redactor.longest_form());
    let mut precut = 0;
    if text.len() > keep {
        let cut = floor_char_boundary(&text, keep);
        precut = text.len() - cut;
        text.truncate(cut);
    }
    let text = redactor.redact_owned(text);
    let cut = text.len() > max || precut > 0;
    (truncate(text, max, precut), cut)
}

/// The fields of one entry, redacted and bounded by `limits` (see the module docs), and the
/// size of the entry (`message_len` plus every key and value kept).
fn bound_fields(
    redactor: &Redactor,
    limits: &LogLimits,
    message_len: usize,
    fields: Vec<(String, String)>,
) -> (BTreeMap<String, String>, usize) {
    let mut size = message_len;
    let mut out = BTreeMap::new();
    if fields.is_empty() {
        return (out, size);
    }
    let total = fields.len();
    let (mut cut, mut dropped) = (0usize, 0usize);
    for (key, value) in fields {
        if out.len() >= limits.max_fields_per_entry {
            dropped = total - out.len();
            break;
        }
        let (key, key_cut) = bounded_flag(redactor, key, limits.max_field_key_bytes);
        let (value, value_cut) = bounded_flag(redactor, value, limits.max_field_value_bytes);
        cut += usize::from(key_cut) + usize::from(value_cut);
        if size + key.len() + value.len() > limits.max_entry_bytes {
            dropped = total - out.len();
            break;
        }
        size += key.len() + value.len();
        out.insert(key, value);
    }
    if dropped > 0 || cut > 0 {
        let note = format!(
            "{dropped} of {total} fields dropped, {cut} keys or values cut (limits: {} fields, \
             {}-byte keys, {}-byte values, {} bytes per entry)",
            limits.max_fields_per_entry,
            limits.max_field_key_bytes,
            limits.max_field_value_bytes,
            limits.max_entry_bytes
        );
        size += TRUNCATED_FIELD.len() + note.len();
        out.insert(TRUNCATED_FIELD.to_owned(), note);
    }
    (out, size)
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut cut = at.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// `text` cut to `max` bytes and marked with how many bytes were removed (`precut` bytes
/// were removed already).
fn truncate(mut text: String, max: usize, precut: usize) -> String {
    if text.len() <= max && precut == 0 {
        return text;
    }
    let cut = floor_char_boundary(&text, max);
    let removed = text.len() - cut + precut;
    text.truncate(cut);
    text.push_str(&format!(" … [truncated {removed} bytes]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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
                ..LogLimits::default()
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

    fn bounded_log(limits: LogLimits) -> (Arc<CollectingSink>, StepLog) {
        let sink = Arc::new(CollectingSink::new());
        let log = StepLog::new(
            RunId::from_uuid(uuid::Uuid::nil()),
            "s",
            sink.clone(),
            LogCursor::new(),
            limits,
        );
        (sink, log)
    }

    #[test]
    fn fields_are_bounded_in_number_key_value_and_entry_size() {
        let limits = LogLimits {
            max_fields_per_entry: 4,
            max_field_key_bytes: 8,
            max_field_value_bytes: 16,
            max_entry_bytes: 200,
            ..LogLimits::default()
        };
        let (sink, log) = bounded_log(limits);
        log.add_secret("hunter22");
        let many: Vec<(String, String)> = (0..1000)
            .map(|i| (format!("k{i:04}"), "v".repeat(10)))
            .collect();
        log.emit(LogLevel::Info, LogStream::Log, "many", many);
        let long = vec![("x".repeat(100) + "hunter22", "y".repeat(1000) + "hunter22")];
        log.emit(LogLevel::Info, LogStream::Log, "long", long);
        let entries = sink.entries();
        assert_eq!(entries[0].fields.len(), 5, "{:?}", entries[0].fields);
        assert!(
            entries[0].fields[TRUNCATED_FIELD].starts_with("996 of 1000 fields dropped"),
            "{:?}",
            entries[0].fields
        );
        let (key, value) = entries[1]
            .fields
            .iter()
            .find(|(k, _)| k.as_str() != TRUNCATED_FIELD)
            .expect("field");
        assert!(key.starts_with("xxxxxxxx … [truncated"), "{key}");
        assert!(value.starts_with(&"y".repeat(16)), "{value}");
        assert!(value.len() < 60, "{value}");
        assert!(
            entries[1].fields[TRUNCATED_FIELD].contains("2 keys or values cut"),
            "{:?}",
            entries[1].fields
        );
        for entry in &entries {
            let size: usize = entry.message.len()
                + entry
                    .fields
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            assert!(size <= 200 + 300, "{size}: {entry:?}");
        }
    }

    #[test]
    fn the_step_budget_drops_later_entries_and_says_so() {
        let limits = LogLimits {
            max_bytes_per_step: 1000,
            ..LogLimits::default()
        };
        let (sink, log) = bounded_log(limits);
        for _ in 0..100 {
            log.emit(LogLevel::Info, LogStream::Log, &"z".repeat(100), vec![]);
        }
        log.finish();
        let entries = sink.entries();
        assert_eq!(entries.len(), 11, "{entries:?}");
        let last = entries.last().expect("entries");
        assert_eq!(
            (last.level, last.stream),
            (LogLevel::Warn, LogStream::System)
        );
        assert!(
            last.message
                .starts_with("90 log entries of this step were dropped"),
            "{}",
            last.message
        );
    }

    #[test]
    fn a_huge_message_is_cut_before_redaction_without_leaking() {
        let (sink, log) = bounded_log(LogLimits {
            max_message_bytes: 10,
            ..LogLimits::default()
        });
        log.add_secret("hunter22");
        let text = format!("abcdefg{}{}", "hunter22", "q".repeat(100_000));
        log.emit(LogLevel::Info, LogStream::Log, &text, vec![]);
        let message = &sink.entries()[0].message;
        assert!(!message.contains("hunt"), "{message}");
        assert!(message.starts_with("abcdefg***"), "{message}");
        assert!(message.ends_with("[truncated 100000 bytes]"), "{message}");
    }
}
