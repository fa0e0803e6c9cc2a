//! The syntax tree of a script: lists, pipelines, commands and words, each command and word
//! with the position where it starts in the script.

use std::fmt;

/// A position in the script: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A parsed script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// The top-level commands, in order.
    pub body: List,
    /// The bodies of the here-documents, indexed by [`RedirectKind::Heredoc`].
    pub heredocs: Vec<Vec<Part>>,
}

/// Commands separated by `;` or newlines.
pub type List = Vec<AndOr>;

/// Pipelines joined by `&&` and `||`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndOr {
    /// The first pipeline.
    pub first: Pipeline,
    /// The following pipelines, each with the operator before it.
    pub rest: Vec<(Connector, Pipeline)>,
}

/// `&&` or `||`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    /// `&&`: run the next pipeline when this one succeeded.
    And,
    /// `||`: run the next pipeline when this one failed.
    Or,
}

/// Commands joined by `|`, optionally negated with `!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Where the pipeline starts.
    pub pos: Pos,
    /// Whether it starts with `!`.
    pub negated: bool,
    /// The commands, at least one.
    pub commands: Vec<Command>,
}

/// One command of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Assignments, words and redirections.
    Simple(SimpleCommand),
    /// `if … then … elif … else … fi`.
    If(IfCommand),
    /// `for NAME in … do … done`.
    For(ForCommand),
    /// An `if` or `for` with redirections after its `fi` / `done`, which apply to every
    /// command inside it (`for f in *; do …; done > list.txt`).
    Redirected(Box<Command>, Vec<Redirect>),
}

/// A simple command: `NAME=value` assignments or a command with arguments, plus
/// redirections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// Where the command starts.
    pub pos: Pos,
    /// `NAME=value` words (only in a command without a command name).
    pub assignments: Vec<Assignment>,
    /// The command name and its arguments.
    pub words: Vec<Word>,
    /// The redirections, in order.
    pub redirects: Vec<Redirect>,
}

/// `NAME=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The variable name.
    pub name: String,
    /// The value (never glob-expanded).
    pub value: Word,
}

/// `if`: the condition/body pairs of `if` and each `elif`, and the `else` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfCommand {
    /// `(condition, body)` of `if` then of each `elif`.
    pub branches: Vec<(List, List)>,
    /// The `else` body.
    pub otherwise: Option<List>,
}

/// `for NAME in WORDS; do BODY; done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForCommand {
    /// Where `for` is.
    pub pos: Pos,
    /// The loop variable.
    pub name: String,
    /// The words to iterate over (expanded when the loop starts).
    pub words: Vec<Word>,
    /// The body.
    pub body: List,
}

/// A word: the concatenation of its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// Where the word starts.
    pub pos: Pos,
    /// The parts, in order.
    pub parts: Vec<Part>,
}

impl Word {
    /// The word's text when it is a single unquoted literal (how keywords are recognized).
    pub fn plain(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [
                Part::Lit {
                    text,
                    quoted: false,
                },
            ] => Some(text),
            _ => None,
        }
    }
}

/// A piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text; `quoted` text is never glob-expanded.
    Lit {
        /// The text, quotes and escapes removed.
        text: String,
        /// Whether it was quoted or escaped.
        quoted: bool,
    },
    /// A parameter expansion.
    Param {
        /// Which parameter.
        param: Param,
        /// Whether it appeared inside double quotes.
        quoted: bool,
    },
}

/// The parameter of a `$` expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// `$?`: the status of the last command.
    Status,
    /// `$NAME`, `${NAME}`, or `${NAME<op>word}`.
    Var {
        /// The variable name.
        name: String,
        /// `-`, `:-`, `+` or `:+` with its word.
        op: Option<(ParamOp, Vec<Part>)>,
    },
}

/// The operator of `${NAME<op>word}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamOp {
    /// `${NAME-word}` (`colon: false`) or `${NAME:-word}` (`colon: true`): the word when
    /// NAME is unset (or, with the colon, empty).
    Default {
        /// `:-` rather than `-`.
        colon: bool,
    },
    /// `${NAME+word}` or `${NAME:+word}`: the word when NAME is set (and, with the colon,
    /// not empty), otherwise nothing.
    Alternative {
        /// `:+` rather than `+`.
        colon: bool,
    },
}

/// A redirection of a simple command, or of a whole `if` / `for`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Where it starts.
    pub pos: Pos,
    /// The file descriptor it redirects: 0, 1 or 2.
    pub fd: u32,
    /// What it does.
    pub kind: RedirectKind,
}

/// What a redirection does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectKind {
    /// `< file`.
    Read(Word),
    /// `> file` (also `>|`).
    Write(Word),
    /// `>> file`.
    Append(Word),
    /// `>&1`, `2>&1`, `>&2`: make the fd a copy of this one.
    Dup(u32),
    /// `<<DELIM`: the index of the body in [`Script::heredocs`].
    Heredoc(usize),
}
