//! [`InputGlob`]: a workspace-relative glob of the files a `run:` stage reads
//! (`sandbox.inputs`), validated in one place and matched the same way by every host.
//!
//! Syntax: `/`-separated segments relative to the workspace root. In a segment, `*` matches
//! any run of characters and `?` one character (neither matches `/`); a segment that is
//! exactly `**` matches any number of segments, none included. Nothing else is special:
//! `[`, `]`, `{`, `}` and `\` are refused, so a pattern never means something other than it
//! seems. Refused as well: an empty pattern, a leading `/`, empty segments (`a//b`, a
//! trailing `/`), and `.` or `..` segments.
//!
//! A path is **selected** by a glob when the glob matches the path or one of its parent
//! directories: `src` selects everything under `src/`, `package-lock.json` one file,
//! `**/*.rs` every Rust file.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::forms::FormError;

/// A validated glob of workspace-relative paths (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InputGlob(String);

/// Characters an [`InputGlob`] refuses.
const RESERVED: [char; 5] = ['[', ']', '{', '}', '\\'];

impl InputGlob {
    /// The JSON Schema `pattern` of a glob (the segment rules are checked by [`InputGlob::new`]).
    pub const PATTERN: &'static str = "^[^/\\[\\]{}\\\\][^\\[\\]{}\\\\]*$";

    /// Validates a glob.
    pub fn new(s: impl Into<String>) -> Result<Self, FormError> {
        let s = s.into();
        let problem = if s.is_empty() {
            Some("it is empty".to_owned())
        } else if s.starts_with('/') {
            Some("it is absolute; globs are relative to the workspace root".to_owned())
        } else if let Some(c) = s.chars().find(|c| RESERVED.contains(c)) {
            Some(format!(
                "`{c}` is not supported (only `*`, `?` and `**` are special)"
            ))
        } else if s.split('/').any(str::is_empty) {
            Some("it has an empty segment (`//` or a trailing `/`)".to_owned())
        } else if s.split('/').any(|seg| seg == "." || seg == "..") {
            Some("it has a `.` or `..` segment".to_owned())
        } else {
            None
        };
        match problem {
            Some(why) => Err(FormError {
                rule: crate::diagnostic::Rule::InvalidValue,
                message: format!("`{s}` is not a valid input glob: {why}"),
            }),
            None => Ok(Self(s)),
        }
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the glob matches `path` (`/`-separated, relative) exactly.
    pub fn matches(&self, path: &str) -> bool {
        let pattern: Vec<&str> = self.0.split('/').collect();
        let path: Vec<&str> = path.split('/').collect();
        match_segments(&pattern, &path)
    }

    /// Whether `path` is selected: the glob matches it or one of its parent directories.
    pub fn selects(&self, path: &str) -> bool {
        let pattern: Vec<&str> = self.0.split('/').collect();
        let segments: Vec<&str> = path.split('/').collect();
        (1..=segments.len()).any(|n| match_segments(&pattern, &segments[..n]))
    }
}

/// Matches whole segments, `**` standing for any number of them. Dynamic programming over
/// (pattern, path) positions: linear in their product, whatever the number of `**`.
fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    // reach[j]: the first `i` pattern segments can match the first `j` path segments.
    let mut reach = vec![false; path.len() + 1];
    reach[0] = true;
    for segment in pattern {
        let mut next = vec![false; path.len() + 1];
        if *segment == "**" {
            let mut any = false;
            for j in 0..=path.len() {
                any |= reach[j];
                next[j] = any;
            }
        } else {
            for j in 1..=path.len() {
                next[j] = reach[j - 1] && match_segment(segment, path[j - 1]);
            }
        }
        reach = next;
    }
    reach[path.len()]
}

/// Matches one segment with `*` and `?` (backtracking to the last `*` only: linear-ish).
fn match_segment(pattern: &str, text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

impl fmt::Display for InputGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InputGlob {
    type Err = FormError;
    fn from_str(s: &str) -> Result<Self, FormError> {
        Self::new(s)
    }
}

impl Serialize for InputGlob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for InputGlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        InputGlob::new(<String as Deserialize>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl BorshSerialize for InputGlob {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.0, w)
    }
}

impl BorshDeserialize for InputGlob {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        InputGlob::new(String::deserialize_reader(r)?)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.message))
    }
}

impl JsonSchema for InputGlob {
    fn schema_name() -> Cow<'static, str> {
        "InputGlob".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": InputGlob::PATTERN,
            "description": "A workspace-relative glob: `*` and `?` within a segment, `**` for any \
                            number of segments; selects what it matches and everything under it. \
                            No `[`, `]`, `{`, `}`, `\\`, empty, `.` or `..` segments.",
            "examples": ["package-lock.json", "src", "**/*.rs"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> InputGlob {
        InputGlob::new(s).expect("valid glob")
    }

    #[test]
    fn segments_stars_and_double_stars() {
        assert!(glob("package.json").matches("package.json"));
        assert!(!glob("package.json").matches("a/package.json"));
        assert!(glob("*.rs").matches("main.rs"));
        assert!(!glob("*.rs").matches("src/main.rs"));
        assert!(glob("**/*.rs").matches("main.rs"));
        assert!(glob("**/*.rs").matches("a/b/c.rs"));
        assert!(glob("src/**").matches("src/a/b"));
        assert!(glob("a/**/b").matches("a/b"));
        assert!(glob("a/**/b").matches("a/x/y/b"));
        assert!(glob("?.txt").matches("a.txt"));
        assert!(!glob("?.txt").matches("ab.txt"));
        assert!(glob("a*b*c").matches("aXXbYYc"));
        assert!(!glob("a*b*c").matches("aXXbYY"));
        assert!(glob("é*").matches("été"));
    }

    #[test]
    fn selects_includes_everything_under_a_match() {
        assert!(glob("src").selects("src"));
        assert!(glob("src").selects("src/a/b.c"));
        assert!(!glob("src").selects("srcs/a"));
        assert!(!glob("src/a").selects("src"));
        assert!(glob("**/*.lock").selects("x/Cargo.lock"));
    }

    #[test]
    fn malformed_globs_are_refused_with_the_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("a//b", "empty segment"),
            ("src/", "empty segment"),
            ("../x", "`..`"),
            ("./x", "`.`"),
            ("[ab].c", "`[`"),
            ("{a,b}", "`{`"),
            ("a\\*", "`\\`"),
        ] {
            let err = InputGlob::new(bad).expect_err(bad);
            assert!(err.message.contains(why), "{bad}: {}", err.message);
        }
    }
}
