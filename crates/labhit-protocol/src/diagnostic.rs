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

    /// The position just past the last character of `prefix` (the text before it).
    pub fn after(prefix: &str) -> Self {
        let line = prefix.matches('\n').count() + 1;
        let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self::new(
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        )
    }

    /// The position of byte `offset` of `source` (clamped to its end; an offset inside a
    /// character counts from that character's start).
    pub fn at_byte(source: &str, offset: usize) -> Self {
        let mut end = offset.min(source.len());
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        Self::after(&source[..end])
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
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

/// The nearest candidate to `word` by edit distance, if it is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = strsim::jaro_winkler(word, candidate);
        let close = strsim::damerau_levenshtein(word, candidate) <= 2.max(candidate.len() / 3);
        if (score > 0.8 || close) && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
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
        assert_eq!(did_you_mean("completely-different", keys), None);
    }
}
