//! Glob patterns over workspace-relative paths, and the workspace walk that uses them.
//!
//! A small, dependency-free matcher, so extensions that take file patterns in their `with`
//! (`patterns: ["dist/**"]`) all read them the same way and stay small once built to wasm.
//!
//! | syntax | matches |
//! |---|---|
//! | `*` | any run of characters inside one path segment (not `/`) |
//! | `?` | one character other than `/` |
//! | `**` | as a whole segment: zero or more segments; trailing, one or more (`dist/**` is every file under `dist`) |
//! | `[abc]`, `[a-z]`, `[!a-z]` | one character of (or, with `!` or `^`, not of) the set |
//! | `{a,b}` | either alternative (`*.{yml,yaml}`); may nest |
//! | `\x` | the character `x` literally |
//!
//! Paths use `/` as separator and are relative to the workspace; a leading `./` in a pattern
//! is ignored. Dot files are matched like any other file. Patterns that are absolute or go
//! up with `..` are refused, since nothing outside the workspace is reachable anyway.

use std::fmt;
use std::fs;
use std::path::Path;

/// Most alternatives one pattern may expand to through `{a,b}` groups.
const MAX_ALTERNATIVES: usize = 256;

/// A compiled glob pattern.
///
/// ```
/// use labhit_sdk::glob::Glob;
///
/// let glob = Glob::new("reports/**/*.xml").unwrap();
/// assert!(glob.is_match("reports/unit.xml"));
/// assert!(glob.is_match("reports/it/db.xml"));
/// assert!(!glob.is_match("reports/unit.json"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    alternatives: Vec<Vec<Segment>>,
}

/// Why a pattern is not a valid glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    pattern: String,
    reason: String,
}

impl GlobError {
    fn new(pattern: &str, reason: impl Into<String>) -> Self {
        Self {
            pattern: pattern.to_owned(),
            reason: reason.into(),
        }
    }

    /// The pattern that was refused.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid glob `{}`: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for GlobError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: zero or more whole segments.
    AnyDepth,
    /// One segment made of tokens.
    Tokens(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Compiles `pattern`.
    ///
    /// # Errors
    ///
    /// When the pattern is empty, absolute, contains a `..` segment, has an unclosed `[` or
    /// `{`, or expands to too many alternatives.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        let mut trimmed = pattern;
        while let Some(rest) = trimmed.strip_prefix("./") {
            trimmed = rest;
        }
        if trimmed.is_empty() {
            return Err(GlobError::new(pattern, "the pattern is empty"));
        }
        if trimmed.starts_with('/') {
            return Err(GlobError::new(
                pattern,
                "patterns are relative to the workspace; remove the leading `/`",
            ));
        }
        let mut alternatives = Vec::new();
        for expanded in expand_braces(pattern, trimmed)? {
            let mut segments = Vec::new();
            for part in expanded
                .split('/')
                .filter(|part| !part.is_empty() && *part != ".")
            {
                if part == ".." {
                    return Err(GlobError::new(
                        pattern,
                        "`..` would leave the workspace, which is not reachable",
                    ));
                }
                if part == "**" {
                    if segments.last() != Some(&Segment::AnyDepth) {
                        segments.push(Segment::AnyDepth);
                    }
                } else {
                    segments.push(Segment::Tokens(tokenize(pattern, part)?));
                }
            }
            alternatives.push(segments);
        }
        Ok(Self {
            source: pattern.to_owned(),
            alternatives,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the workspace-relative `path` (with `/` separators) matches.
    pub fn is_match(&self, path: &str) -> bool {
        let parts = split_path(path);
        self.alternatives
            .iter()
            .any(|segments| match_segments(segments, &parts, false))
    }

    /// Whether some path inside the directory `dir` could match, so a walk must enter it.
    fn may_match_below(&self, dir: &[&str]) -> bool {
        self.alternatives
            .iter()
            .any(|segments| match_segments(segments, dir, true))
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn split_path(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect()
}

/// Expands `{a,b}` groups (nested ones too) into plain patterns.
fn expand_braces(original: &str, pattern: &str) -> Result<Vec<String>, GlobError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut open = None;
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' => {
                // Skip a character class: braces inside it are literal.
                if let Some(end) = class_end(&chars, i) {
                    i = end;
                }
            }
            '{' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let start = open.unwrap_or(0);
                    let prefix: String = chars[..start].iter().collect();
                    let suffix: String = chars[i + 1..].iter().collect();
                    let mut out = Vec::new();
                    for alternative in split_top_level(&chars[start + 1..i]) {
                        let joined = format!("{prefix}{alternative}{suffix}");
                        for expanded in expand_braces(original, &joined)? {
                            out.push(expanded);
                            if out.len() > MAX_ALTERNATIVES {
                                return Err(GlobError::new(
                                    original,
                                    format!("expands to more than {MAX_ALTERNATIVES} patterns"),
                                ));
                            }
                        }
                    }
                    return Ok(out);
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return Err(GlobError::new(original, "`{` is never closed"));
    }
    Ok(vec![pattern.to_owned()])
}

/// Splits the inside of a `{...}` group at its top-level commas.
fn split_top_level(inner: &[char]) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0usize;
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        match c {
            '\\' if i + 1 < inner.len() => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                    last.push(inner[i + 1]);
                }
                i += 2;
                continue;
            }
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(String::new());
                i += 1;
                continue;
            }
            _ => {}
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
        i += 1;
    }
    parts
}

/// The index of the `]` closing the class that opens at `start`, if it is closed.
fn class_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if matches!(chars.get(i), Some('!' | '^')) {
        i += 1;
    }
    // A `]` right after the opening (and negation) is a literal member.
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            ']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn tokenize(original: &str, segment: &str) -> Result<Vec<Token>, GlobError> {
    let chars: Vec<char> = segment.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let Some(&c) = chars.get(i + 1) else {
                    return Err(GlobError::new(original, "a trailing `\\` escapes nothing"));
                };
                tokens.push(Token::Literal(c));
                i += 2;
            }
            '?' => {
                tokens.push(Token::AnyChar);
                i += 1;
            }
            '*' => {
                // `***` and the like are one star inside a segment.
                if tokens.last() != Some(&Token::Star) {
                    tokens.push(Token::Star);
                }
                i += 1;
            }
            '[' => {
                let Some(end) = class_end(&chars, i) else {
                    return Err(GlobError::new(original, "`[` is never closed"));
                };
                let mut j = i + 1;
                let negated = matches!(chars[j], '!' | '^');
                if negated {
                    j += 1;
                }
                let mut ranges = Vec::new();
                while j < end {
                    let mut lo = chars[j];
                    if lo == '\\' && j + 1 < end {
                        j += 1;
                        lo = chars[j];
                    }
                    if j + 2 < end && chars[j + 1] == '-' {
                        let hi = chars[j + 2];
                        if hi < lo {
                            return Err(GlobError::new(
                                original,
                                format!("the range `{lo}-{hi}` is reversed"),
                            ));
                        }
                        ranges.push((lo, hi));
                        j += 3;
                    } else {
                        ranges.push((lo, lo));
                        j += 1;
                    }
                }
                tokens.push(Token::Class { negated, ranges });
                i = end + 1;
            }
            c => {
                tokens.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    Ok(tokens)
}

/// Matches path segments against pattern segments. In `prefix` mode, `path` is a directory
/// and the answer is whether something below it could match.
fn match_segments(pattern: &[Segment], path: &[&str], prefix: bool) -> bool {
    match pattern.split_first() {
        None => path.is_empty() && !prefix,
        Some((Segment::AnyDepth, rest)) => {
            if prefix {
                return true;
            }
            if rest.is_empty() {
                // A trailing `**` is everything below, not the directory itself.
                return !path.is_empty();
            }
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..], false))
        }
        Some((Segment::Tokens(tokens), rest)) => match path.split_first() {
            None => prefix,
            Some((first, others)) => {
                let chars: Vec<char> = first.chars().collect();
                match_tokens(tokens, &chars) && match_segments(rest, others, prefix)
            }
        },
    }
}

/// Matches one segment; iterative with single-star backtracking, linear in practice.
fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    let (mut t, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while s < text.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, s));
                t += 1;
                continue;
            }
            Some(token) if token_matches(token, text[s]) => {
                t += 1;
                s += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_t, star_s)) => {
                t = star_t + 1;
                s = star_s + 1;
                star = Some((star_t, star_s + 1));
            }
            None => return false,
        }
    }
    tokens[t.min(tokens.len())..]
        .iter()
        .all(|token| *token == Token::Star)
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::AnyChar => true,
        Token::Star => false,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
        }
    }
}

/// Every regular file under `root` whose root-relative path matches one of `globs`, as sorted,
/// `/`-separated relative paths. Symbolic links to files are followed; symbolic links to
/// directories are not entered.
pub(crate) fn walk(root: &Path, globs: &[Glob]) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let file_type = entry.file_type()?;
            let mut parts: Vec<&str> = rel.iter().map(String::as_str).collect();
            parts.push(&name);
            let is_file = if file_type.is_symlink() {
                fs::metadata(entry.path()).is_ok_and(|meta| meta.is_file())
            } else {
                file_type.is_file()
            };
            if file_type.is_dir() {
                if globs.iter().any(|glob| glob.may_match_below(&parts)) {
                    let mut below = rel.clone();
                    below.push(name.clone());
                    stack.push((entry.path(), below));
                }
            } else if is_file {
                let path = parts.join("/");
                if globs.iter().any(|glob| glob.is_match(&path)) {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(pattern, path, expected)` rows.
    const CASES: &[(&str, &str, bool)] = &[
        ("dist/**", "dist/app.txt", true),
        ("dist/**", "dist/a/b/c.txt", true),
        ("dist/**", "dist", false),
        ("dist/**", "distx/a", false),
        ("**/*.xml", "unit.xml", true),
        ("**/*.xml", "a/b/unit.xml", true),
        ("reports/*.xml", "reports/unit.xml", true),
        ("reports/*.xml", "reports/it/unit.xml", false),
        ("reports/*.xml", "reports/.xml", true),
        ("*.txt", "a.txt", true),
        ("*.txt", "dir/a.txt", false),
        ("a?c", "abc", true),
        ("a?c", "a/c", false),
        ("[ab]*", "beta", true),
        ("[!ab]*", "beta", false),
        ("[^ab]*", "gamma", true),
        ("file[0-9].log", "file7.log", true),
        ("file[0-9].log", "filex.log", false),
        ("[]]x", "]x", true),
        ("*.{yml,yaml}", "ci.yaml", true),
        ("*.{yml,yaml}", "ci.yml", true),
        ("*.{yml,yaml}", "ci.json", false),
        ("{src,tests/{unit,it}}/*.rs", "tests/it/a.rs", true),
        ("{src,tests/{unit,it}}/*.rs", "tests/e2e/a.rs", false),
        ("./dist/*", "dist/a", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        ("**", "anything/at/all", true),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("*a*b*", "xxaxxbxx", true),
        ("*a*b*", "xxbxxaxx", false),
        ("ünï*", "ünïcode", true),
    ];

    #[test]
    fn matches_the_table() {
        for (pattern, path, expected) in CASES {
            let glob = Glob::new(pattern).unwrap();
            assert_eq!(glob.is_match(path), *expected, "{pattern} vs {path}");
        }
    }

    #[test]
    fn refuses_bad_patterns() {
        for (pattern, reason) in [
            ("", "empty"),
            ("/etc/*", "leading `/`"),
            ("../x", "`..`"),
            ("a/[bc", "`[` is never closed"),
            ("a{b,c", "`{` is never closed"),
            ("[z-a]", "reversed"),
            ("a\\", "escapes nothing"),
        ] {
            let err = Glob::new(pattern).unwrap_err();
            assert!(err.to_string().contains(reason), "{pattern}: {err}");
        }
        let bomb = "{a,b}".repeat(10);
        assert!(Glob::new(&bomb).is_err());
    }

    #[test]
    fn prunes_directories() {
        let glob = Glob::new("reports/*.xml").unwrap();
        assert!(glob.may_match_below(&["reports"]));
        assert!(!glob.may_match_below(&["dist"]));
        assert!(!glob.may_match_below(&["reports", "deep"]));
        assert!(Glob::new("**/x").unwrap().may_match_below(&["a", "b"]));
    }

    #[test]
    fn long_stars_stay_fast() {
        let glob = Glob::new("*a*a*a*a*a*a*a*a*b").unwrap();
        let text = "a".repeat(200);
        assert!(!glob.is_match(&text));
    }
}
