//! Word expansion: parameters (`$NAME`, `${NAME}`, `${NAME:-word}`, `$?`, …), quote removal
//! and pathname expansion, turning a [`Word`] into the fields a command receives.
//!
//! Unlike POSIX sh, the results of unquoted expansions are **not** split into fields at
//! blanks: `$FILES` is one argument even when it contains spaces. They are still subject to
//! pathname expansion, and a word made only of unquoted expansions that are empty disappears,
//! as in sh (`echo $UNSET x` prints `x`).

use std::fmt;
use std::path::Path;

use crate::ast::{Param, ParamOp, Part, Word};
use crate::fs::WsPath;
use crate::pattern;
use crate::vars::Vars;

/// Largest expanded word or variable value, in bytes. With the pipeline buffers of
/// [`io`](crate::io) it keeps the shell well inside the manifest's 64 MiB of memory.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// Why a word cannot be expanded; the script stops with status 2, as sh does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `set -u` is on and the variable is unset.
    Unset(String),
    /// The result would be longer than [`MAX_VALUE_BYTES`].
    TooLong,
    /// A pattern matches more than [`pattern::MAX_MATCHES`] paths.
    TooManyMatches,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unset(name) => write!(f, "{name}: parameter not set"),
            ExpandError::TooLong => write!(
                f,
                "an expansion is longer than {} MiB",
                MAX_VALUE_BYTES >> 20
            ),
            ExpandError::TooManyMatches => write!(
                f,
                "a pattern matches more than {} paths",
                pattern::MAX_MATCHES
            ),
        }
    }
}

/// What expansion needs to know about the shell.
#[derive(Debug, Clone, Copy)]
pub struct Expander<'a> {
    /// The variables.
    pub vars: &'a Vars,
    /// `$?`.
    pub status: i32,
    /// `set -u`: an unset variable is an error.
    pub nounset: bool,
    /// The real workspace directory, for pathname expansion.
    pub root: &'a Path,
    /// The current directory.
    pub cwd: &'a WsPath,
}

/// Expanded text in pieces, each quoted or not.
#[derive(Default)]
struct Pieces {
    pieces: Vec<(String, bool)>,
    len: usize,
    any_quoted: bool,
}

impl Pieces {
    fn push(&mut self, text: &str, quoted: bool) -> Result<(), ExpandError> {
        self.any_quoted |= quoted;
        self.len += text.len();
        if self.len > MAX_VALUE_BYTES {
            return Err(ExpandError::TooLong);
        }
        if !text.is_empty() {
            self.pieces.push((text.to_owned(), quoted));
        }
        Ok(())
    }

    fn text(&self) -> String {
        self.pieces.iter().map(|(text, _)| text.as_str()).collect()
    }

    fn has_unquoted_pattern(&self) -> bool {
        self.pieces
            .iter()
            .any(|(text, quoted)| !quoted && text.contains(['*', '?', '[']))
    }

    fn chars(&self) -> Vec<(char, bool)> {
        self.pieces
            .iter()
            .flat_map(|(text, quoted)| text.chars().map(move |c| (c, *quoted)))
            .collect()
    }
}

impl Expander<'_> {
    fn parts(&self, parts: &[Part], out: &mut Pieces) -> Result<(), ExpandError> {
        for part in parts {
            match part {
                Part::Lit { text, quoted } => out.push(text, *quoted)?,
                Part::Param { param, quoted } => self.param(param, *quoted, out)?,
            }
        }
        Ok(())
    }

    fn param(&self, param: &Param, quoted: bool, out: &mut Pieces) -> Result<(), ExpandError> {
        let (name, op) = match param {
            Param::Status => return out.push(&self.status.to_string(), quoted),
            Param::Var { name, op } => (name, op),
        };
        let value = self.vars.get(name);
        match op {
            None => match value {
                Some(value) => out.push(value, quoted),
                None if self.nounset => Err(ExpandError::Unset(name.clone())),
                None => out.push("", quoted),
            },
            Some((ParamOp::Default { colon }, word)) => match value {
                Some(value) if !(*colon && value.is_empty()) => out.push(value, quoted),
                _ => {
                    out.push("", quoted)?;
                    self.parts(word, out)
                }
            },
            Some((ParamOp::Alternative { colon }, word)) => {
                out.push("", quoted)?;
                match value {
                    Some(value) if !(*colon && value.is_empty()) => self.parts(word, out),
                    _ => Ok(()),
                }
            }
        }
    }

    /// The fields of `word`: none for an empty unquoted expansion, the sorted matches of an
    /// unquoted pattern that matches, otherwise the text with quotes removed.
    ///
    /// # Errors
    ///
    /// As [`ExpandError`].
    pub fn fields(&self, word: &Word) -> Result<Vec<String>, ExpandError> {
        let mut pieces = Pieces::default();
        self.parts(&word.parts, &mut pieces)?;
        if pieces.pieces.is_empty() && !pieces.any_quoted {
            return Ok(Vec::new());
        }
        if pieces.has_unquoted_pattern() {
            let matches = pattern::expand_path(self.root, self.cwd, &pieces.chars())
                .map_err(|_| ExpandError::TooManyMatches)?;
            if !matches.is_empty() {
                return Ok(matches);
            }
        }
        Ok(vec![pieces.text()])
    }

    /// The text of `parts` with quotes removed, without pathname expansion (assignments,
    /// redirection targets, here-documents).
    ///
    /// # Errors
    ///
    /// As [`ExpandError`].
    pub fn text(&self, parts: &[Part]) -> Result<String, ExpandError> {
        let mut pieces = Pieces::default();
        self.parts(parts, &mut pieces)?;
        Ok(pieces.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Command;
    use crate::parse::parse;

    fn words(script: &str) -> Vec<Word> {
        let script = parse(script).unwrap();
        match &script.body[0].first.commands[0] {
            Command::Simple(simple) => simple.words.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn expand(vars: &Vars, script: &str) -> Result<Vec<String>, ExpandError> {
        let cwd = WsPath::root();
        let root = std::env::temp_dir().join("labhit-sh-expand-none");
        let expander = Expander {
            vars,
            status: 3,
            nounset: false,
            root: &root,
            cwd: &cwd,
        };
        let mut out = Vec::new();
        for word in words(script) {
            out.extend(expander.fields(&word)?);
        }
        Ok(out)
    }

    #[test]
    fn parameters_and_quotes() {
        let vars = Vars::from_env([("A", "x y"), ("E", "")]);
        assert_eq!(
            expand(
                &vars,
                r#"echo $A "$A" '$A' ${A}z $? "${B:-d $A}" ${E:-e} ${E-e} ${A:+alt} ${B+alt}"#
            )
            .unwrap(),
            vec!["echo", "x y", "x y", "$A", "x yz", "3", "d x y", "e", "alt"]
        );
    }

    #[test]
    fn empty_unquoted_words_disappear_but_quoted_ones_stay() {
        let vars = Vars::default();
        assert_eq!(
            expand(&vars, r#"echo $U "" "$U" ${U}"#).unwrap(),
            vec!["echo", "", ""]
        );
    }

    #[test]
    fn unmatched_patterns_stay_literal() {
        let vars = Vars::from_env([("P", "*.none")]);
        assert_eq!(
            expand(&vars, r#"echo *.none "$P" $P [x"#).unwrap(),
            vec!["echo", "*.none", "*.none", "*.none", "[x"]
        );
    }

    #[test]
    fn nounset_names_the_variable() {
        let vars = Vars::default();
        let cwd = WsPath::root();
        let root = Path::new("/nonexistent");
        let expander = Expander {
            vars: &vars,
            status: 0,
            nounset: true,
            root,
            cwd: &cwd,
        };
        let word = &words("echo $MISSING")[1];
        assert_eq!(
            expander.fields(word).unwrap_err().to_string(),
            "MISSING: parameter not set"
        );
        assert_eq!(
            expander.fields(&words("echo ${MISSING:-ok}")[1]).unwrap(),
            vec!["ok"]
        );
    }
}
