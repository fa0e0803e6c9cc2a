//! Diagnostics: what a parser or validator says about a file, and where.
//!
//! Every problem carries a stable [`Rule`] code, a message, a [`Span`] (1-based line and
//! column, start and end), related locations (the other place of a duplicate key, say) and an
//! optional help line ("did you mean `after`?"). Tools render them; `labhit validate` prints
//! `path:line:col: error[rule]: message` with a snippet, or JSON.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A place in a source file: 1-based line and column (columns count Unicode scalar values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1.
    pub column: u32,
}

impl Position {
    /// A position from a 1-based line and column.
    pub const fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }

    /// The position just past the last character of `prefix` (the text before it). A line
    /// ends at `\n`, `\r\n` or a lone `\r` (see [`lines`]); a `\r` that ends `prefix` counts
    /// as a line break ([`Position::at_byte`] looks at what follows it).
    pub fn after(prefix: &str) -> Self {
        let bytes = prefix.as_bytes();
        let mut line: usize = 1;
        let mut line_start = 0;
        // `\r` and `\n` are ASCII: in UTF-8 they never occur inside another character.
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\r' => {
                    line += 1;
                    line_start = i + 1;
                }
                b'\n' => {
                    // The `\n` of `\r\n` ends the line its `\r` already ended.
                    if i == 0 || bytes[i - 1] != b'\r' {
                        line += 1;
                    }
                    line_start = i + 1;
                }
                _ => {}
            }
        }
        let column = prefix[line_start..].chars().count() + 1;
        Self::new(
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        )
    }

    /// The position of byte `offset` of `source` (clamped to its end; an offset inside a
    /// character counts from that character's start). The `\n` of a `\r\n` is where its `\r`
    /// is: one line break, one column just past the line's last character, so every position
    /// names a character of [`lines`] or the end of one.
    pub fn at_byte(source: &str, offset: usize) -> Self {
        let mut end = offset.min(source.len());
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        let prefix = &source[..end];
        match prefix.strip_suffix('\r') {
            Some(before) if source[end..].starts_with('\n') => Self::after(before),
            _ => Self::after(prefix),
        }
    }
}

/// The lines of `text` without their line breaks: a line ends at `\n`, at `\r\n` or at a
/// lone `\r` (YAML's line breaks; old Mac files end lines with `\r`), the same breaks
/// [`Position`] counts, so line `n` of a [`Span`] is item `n - 1`. Text that ends with a
/// break ends with an empty line, as [`str::split`] does.
pub fn lines(text: &str) -> Lines<'_> {
    Lines { rest: Some(text) }
}

/// The iterator of [`lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.find(['\r', '\n']) {
            None => {
                self.rest = None;
                Some(rest)
            }
            Some(at) => {
                let next = if rest[at..].starts_with("\r\n") {
                    at + 2
                } else {
                    at + 1
                };
                self.rest = Some(&rest[next..]);
                Some(&rest[..at])
            }
        }
    }
}

/// A range in a source file; `end` is exclusive and may equal `start` for a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First character.
    pub start: Position,
    /// One past the last character.
    pub end: Position,
}

impl Span {
    /// A span from its two ends.
    pub const fn new(start: Position, end: Position) -> Self {
        Self { start, end }
    }

    /// An empty span at one position.
    pub const fn point(at: Position) -> Self {
        Self { start: at, end: at }
    }

    /// The span of the whole first line, for file-level problems.
    pub const fn file_start() -> Self {
        Self::point(Position::new(1, 1))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.start.line, self.start.column)
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file is invalid.
    Error,
    /// The file is valid but probably not what was meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, schema: $schema:ident; )*) => {
        /// The stable code of every check. Codes never change meaning; new checks get new codes.
        /// Non-exhaustive: a new check is a new variant, added within a minor release, so a
        /// `match` outside this crate needs a `_` arm.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum Rule {
            $( $(#[$doc])* #[serde(rename = $code)] $variant, )*
        }

        impl Rule {
            /// Every rule, in documentation order.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            /// The stable code, e.g. `unknown-key`.
            pub const fn code(self) -> &'static str {
                match self { $(Rule::$variant => $code,)* }
            }

            /// What the JSON Schema of the file can say about this rule.
            pub const fn schema_coverage(self) -> SchemaCoverage {
                match self { $(Rule::$variant => SchemaCoverage::$schema,)* }
            }

            /// Looks a rule up by its code.
            pub fn from_code(code: &str) -> Option<Rule> {
                match code { $($code => Some(Rule::$variant),)* _ => None }
            }
        }
    };
}

/// Whether a JSON Schema can express a rule, which decides how the schema and the Rust
/// validator are compared on a file that breaks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaCoverage {
    /// The schema rejects every file that breaks this rule.
    Judged,
    /// The schema cannot see this rule (references between stages, cycles, manifests):
    /// the file's JSON may still pass the schema.
    Blind,
    /// The file cannot be turned into JSON at all (bad YAML, duplicate or non-string keys,
    /// oversized input), so the schema has nothing to judge.
    NoJson,
}

rules! {
    /// The file is not well-formed YAML (or TOML), or not UTF-8.
    Syntax = "syntax", schema: NoJson;
    /// The input is larger, deeper or expands further than the parser allows.
    InputLimit = "input-limit", schema: NoJson;
    /// Rule 6: a mapping has the same key twice.
    DuplicateKey = "duplicate-key", schema: NoJson;
    /// Rule 6: a mapping key is not a string (e.g. inside `with`).
    NonStringKey = "non-string-key", schema: NoJson;
    /// Rule 1: a key that the format does not define.
    UnknownKey = "unknown-key", schema: Judged;
    /// A required key is absent.
    MissingKey = "missing-key", schema: Judged;
    /// A value has the wrong type (a list where a mapping belongs, …).
    InvalidType = "invalid-type", schema: Judged;
    /// A value has the right type but a wrong form (pattern, enum member, range).
    InvalidValue = "invalid-value", schema: Judged;
    /// Rule 2: `engine` is not the string `"1"`.
    EngineVersion = "engine-version", schema: Judged;
    /// The pipeline declares no stages.
    NoStages = "no-stages", schema: Judged;
    /// Rule 3: a stage has neither `use` nor `run`, or `with` without `use`.
    StageShape = "stage-shape", schema: Judged;
    /// Rule 4: an `after` entry names the same stage twice.
    DuplicateAfter = "duplicate-after", schema: Judged;
    /// Rule 5: a `gate` requires neither approval nor a policy.
    EmptyGate = "empty-gate", schema: Judged;
    /// Rule 4: an `after` entry names a stage that does not exist.
    UnknownStage = "unknown-stage", schema: Blind;
    /// Rule 4: a stage lists itself in `after`.
    SelfDependency = "self-dependency", schema: Blind;
    /// Rule 4: the stage graph has a cycle.
    DependencyCycle = "dependency-cycle", schema: Blind;
    /// A semver requirement in a `use` reference does not parse.
    VersionReq = "version-req", schema: Blind;
    /// A number is too large to represent (memory quantities, durations).
    OutOfRange = "out-of-range", schema: Blind;
    /// Rule 7: `use` names an extension no manifest provides.
    UnknownExtension = "unknown-extension", schema: Blind;
    /// Rule 7: no available version of the extension satisfies the requirement.
    ExtensionVersion = "extension-version", schema: Blind;
    /// Rule 7: `with` does not satisfy the extension's input schema.
    InputSchema = "input-schema", schema: Blind;
    /// Rule 7: `run` together with `use` needs an extension with the `executor` capability.
    NotAnExecutor = "not-an-executor", schema: Blind;
    /// An extension manifest is invalid (beyond TOML syntax and unknown keys).
    InvalidManifest = "invalid-manifest", schema: Blind;
    /// A string in `with` holds a malformed output reference (`${{ … }}`).
    InvalidOutputRef = "invalid-output-ref", schema: Blind;
    /// An output reference names a stage that does not exist or is not upstream through
    /// `after`.
    OutputRefNotUpstream = "output-ref-not-upstream", schema: Blind;
    /// An output reference names an output the stage cannot report (a `run:` stage on the
    /// built-in executor; an output its extension's manifest does not declare).
    UndeclaredOutput = "undeclared-output", schema: Blind;
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A secondary location that explains a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Related {
    /// Where.
    pub span: Span,
    /// What is there, e.g. "first defined here".
    pub message: String,
}

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Which check failed.
    pub rule: Rule,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong, naming the thing (`stage \`build\``, key, value).
    pub message: String,
    /// Where it is wrong.
    pub span: Span,
    /// Other places that explain it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
    /// How to fix it, when we can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error-level diagnostic.
    pub fn error(rule: Rule, span: Span, message: impl Into<String>) -> Self {
        Self {
            rule,
            severity: Severity::Error,
            message: message.into(),
            span,
            related: Vec::new(),
            help: None,
        }
    }

    /// Adds a help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a related location.
    #[must_use]
    pub fn with_related(mut self, span: Span, message: impl Into<String>) -> Self {
        self.related.push(Related {
            span,
            message: message.into(),
        });
        self
    }

    /// `true` for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `line:col: error[rule]: message` (callers prepend the path).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}[{}]: {}",
            self.span, self.severity, self.rule, self.message
        )
    }
}

/// How much work "did you mean" may do for one file: a number of candidate comparisons.
/// Once it is spent, later problems get no suggestion (they are still reported), so a file
/// with thousands of misspelled names is checked in linear time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuggestionBudget {
    left: usize,
    spent: usize,
}

impl SuggestionBudget {
    /// Comparisons allowed by [`SuggestionBudget::default`]: 100,000 (a few milliseconds).
    pub const DEFAULT_COMPARISONS: usize = 100_000;

    /// A budget of `comparisons` candidate comparisons.
    pub const fn new(comparisons: usize) -> Self {
        Self {
            left: comparisons,
            spent: 0,
        }
    }

    /// How many comparisons were made so far.
    pub const fn spent(&self) -> usize {
        self.spent
    }

    fn take(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.spent += 1;
        true
    }
}

impl Default for SuggestionBudget {
    fn default() -> Self {
        Self::new(Self::DEFAULT_COMPARISONS)
    }
}

/// The names a misspelling may have meant, prepared once per scope (the stage ids of a file,
/// the keys of a mapping, the installed extensions) and asked with [`Suggestions::nearest`].
///
/// A candidate is close enough when its Jaro-Winkler similarity to the word is above 0.8 or
/// its optimal-string-alignment distance (insertions, deletions, substitutions and swaps of
/// neighbours) is at most `max(2, candidate length / 3)`; the most similar close candidate
/// wins (the first given on a tie). To keep the work bounded, only candidates between half
/// and twice the word's length (± 2) are compared, the edit distance stops as soon as it
/// exceeds its bound, words and candidates longer than [`Suggestions::MAX_CHARS`] characters
/// are never compared, and every comparison spends a [`SuggestionBudget`].
#[derive(Debug, Clone, Default)]
pub struct Suggestions<'a> {
    /// Distinct candidates: characters, text and position given; sorted by length.
    candidates: Vec<(Vec<char>, &'a str, usize)>,
}

impl<'a> Suggestions<'a> {
    /// Longest word or candidate considered, in characters.
    pub const MAX_CHARS: usize = 128;

    /// Prepares `candidates` (duplicates and over-long names dropped).
    pub fn new(candidates: impl IntoIterator<Item = &'a str>) -> Self {
        let mut seen = std::collections::HashSet::new();
        let mut candidates: Vec<(Vec<char>, &'a str, usize)> = candidates
            .into_iter()
            .filter(|c| c.len() <= Self::MAX_CHARS * 4 && seen.insert(*c))
            .enumerate()
            .map(|(i, c)| (c.chars().collect::<Vec<char>>(), c, i))
            .filter(|(chars, _, _)| chars.len() <= Self::MAX_CHARS)
            .collect();
        candidates.sort_by_key(|(chars, _, _)| chars.len());
        Self { candidates }
    }

    /// The candidate nearest to `word`, if one is close enough to be a typo; each
    /// comparison spends one unit of `budget`. When the budget runs out before every
    /// fitting candidate was compared, the answer is `None` (never a second-best guess).
    pub fn nearest(&self, word: &str, budget: &mut SuggestionBudget) -> Option<&'a str> {
        if word.len() > Self::MAX_CHARS * 4 {
            return None;
        }
        let chars: Vec<char> = word.chars().collect();
        let n = chars.len();
        if n > Self::MAX_CHARS {
            return None;
        }
        let shortest = (n / 2).saturating_sub(2);
        let longest = n * 2 + 2;
        let first = self
            .candidates
            .partition_point(|(c, _, _)| c.len() < shortest);
        let mut best: Option<(f64, usize, &'a str)> = None;
        for (candidate, text, index) in &self.candidates[first..] {
            if candidate.len() > longest {
                break;
            }
            if !budget.take() {
                return None;
            }
            let score = strsim::jaro_winkler(word, text);
            let close = score > 0.8 || {
                let bound = 2.max(candidate.len() / 3);
                osa_distance_within(&chars, candidate, bound).is_some()
            };
            let better = best.is_none_or(|(s, i, _)| score > s || (score == s && *index < i));
            if close && better {
                best = Some((score, *index, text));
            }
        }
        best.map(|(_, _, text)| text)
    }
}

/// The optimal-string-alignment distance of `a` and `b` when it is at most `bound`, in
/// `O(bound * len)` time: only a band of the table is filled, and the search stops as soon
/// as a whole row exceeds the bound.
fn osa_distance_within(a: &[char], b: &[char], bound: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > bound {
        return None;
    }
    let over = bound + 1;
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![over; width];
    let mut previous: Vec<usize> = (0..width).map(|j| j.min(over)).collect();
    let mut current: Vec<usize> = vec![over; width];
    for i in 1..=a.len() {
        current.fill(over);
        current[0] = i.min(over);
        let mut row_min = current[0];
        let low = i.saturating_sub(bound).max(1);
        let high = (i + bound).min(b.len());
        for j in low..=high {
            let substitution = previous[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut value = substitution.min(previous[j] + 1).min(current[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                value = value.min(before[j - 2] + 1);
            }
            current[j] = value.min(over);
            row_min = row_min.min(current[j]);
        }
        if row_min > bound {
            return None;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    let distance = previous[b.len()];
    (distance <= bound).then_some(distance)
}

/// The nearest candidate to `word` by edit distance, if it is close enough to be a typo (see
/// [`Suggestions`]; this prepares the candidates for one question and uses a default
/// [`SuggestionBudget`]; a caller asking many questions builds a [`Suggestions`] once).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    Suggestions::new(candidates).nearest(word, &mut SuggestionBudget::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for rule in Rule::ALL {
            assert!(seen.insert(rule.code()), "duplicate code {}", rule.code());
            assert_eq!(Rule::from_code(rule.code()), Some(*rule));
            let json = serde_json::to_string(rule).unwrap();
            assert_eq!(json, format!("\"{}\"", rule.code()));
        }
    }

    /// Rule codes are documented in the CHANGELOG (the release that introduced each):
    /// every code must appear there, in backticks.
    #[test]
    fn every_rule_code_is_documented_in_the_changelog() {
        let changelog = include_str!("../../../CHANGELOG.md");
        let missing: Vec<&str> = Rule::ALL
            .iter()
            .map(|r| r.code())
            .filter(|code| !changelog.contains(&format!("`{code}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "rule codes missing from CHANGELOG.md: {missing:?}"
        );
    }

    #[test]
    fn positions_from_text() {
        assert_eq!(Position::after(""), Position::new(1, 1));
        assert_eq!(Position::after("ab\ncé"), Position::new(2, 3));
        assert_eq!(Position::at_byte("ab\ncé", 4), Position::new(2, 2));
        assert_eq!(
            Position::at_byte("ab\ncé", 5),
            Position::new(2, 2),
            "inside `é`"
        );
        assert_eq!(Position::at_byte("ab", 99), Position::new(1, 3));
    }

    #[test]
    fn suggestions() {
        let keys = ["use", "after", "with", "sandbox", "gate", "run"];
        assert_eq!(did_you_mean("afer", keys), Some("after"));
        assert_eq!(did_you_mean("sandbx", keys), Some("sandbox"));
        assert_eq!(did_you_mean("uses", keys), Some("use"));
        assert_eq!(
            did_you_mean("atfer", keys),
            Some("after"),
            "a swap is one edit"
        );
        assert_eq!(did_you_mean("completely-different", keys), None);
        assert_eq!(did_you_mean("", keys), None);
        assert_eq!(did_you_mean("x", [""]), Some(""));
        assert_eq!(did_you_mean(&"a".repeat(10_000), keys), None);
    }

    #[test]
    fn bounded_distance_agrees_with_the_full_one() {
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "abc",
            "acb",
            "kitten",
            "sitting",
            "build",
            "biuld",
            "deploy",
            "delpoy",
            "日本語",
            "日語本",
            "stage-0001",
            "stage-1000",
        ];
        for a in words {
            for b in words {
                let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
                let full = strsim::osa_distance(a, b);
                for bound in 0..6 {
                    let expected = (full <= bound).then_some(full);
                    assert_eq!(
                        osa_distance_within(&ac, &bc, bound),
                        expected,
                        "{a:?} {b:?} within {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_candidates_of_a_fitting_length_are_compared() {
        // Names of every length from 1 to 120: a 10-character word is compared with names of
        // 3 to 22 characters only.
        let names: Vec<String> = (1..=120).map(|n| "x".repeat(n)).collect();
        let suggestions = Suggestions::new(names.iter().map(String::as_str));
        let mut budget = SuggestionBudget::default();
        assert_eq!(
            suggestions.nearest("xxxxxxxxxy", &mut budget),
            Some("xxxxxxxxx")
        );
        assert_eq!(budget.spent(), 20, "compared {} names", budget.spent());
    }

    #[test]
    fn a_spent_budget_stops_the_search() {
        let names: Vec<String> = (0..1_000).map(|i| format!("stage-{i:04}")).collect();
        let suggestions = Suggestions::new(names.iter().map(String::as_str));
        let mut budget = SuggestionBudget::new(2_500);
        let mut answered = 0;
        for i in 0..1_000 {
            if suggestions
                .nearest(&format!("stgae-{i:04}"), &mut budget)
                .is_some()
            {
                answered += 1;
            }
        }
        assert_eq!(budget.spent(), 2_500);
        assert_eq!(answered, 2, "the questions the budget covers are answered");
        assert_eq!(
            suggestions.nearest("stage-0001", &mut budget),
            None,
            "nothing once spent"
        );
    }
}
