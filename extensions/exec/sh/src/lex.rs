//! The lexer: script text → tokens (words with their quoting, operators, redirections,
//! newlines), pulled one at a time by the parser.
//!
//! It also reads here-document bodies (after the newline that ends the line of their `<<`)
//! and refuses, with a position, every construct this shell does not support that is visible
//! at the token level: command substitution, arithmetic, backgrounding, subshells, process
//! substitution, special parameters and unsupported redirections.

use std::fmt;

use crate::ast::{Param, ParamOp, Part, Pos, Word};

/// Deepest nesting of `${…}` inside `${…}`, and of `if`/`for` (checked by the parser).
pub const MAX_DEPTH: usize = 64;

/// Why a script cannot run: it is malformed, uses something unsupported, or is too big.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where the problem is.
    pub pos: Pos,
    /// What it is.
    pub kind: ParseErrorKind,
}

/// The kinds of [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A construct this shell refuses to run, with an optional hint.
    Unsupported {
        /// What the construct is, for example "command substitution `$(…)`".
        what: String,
        /// What to do instead, if there is something.
        hint: Option<String>,
    },
    /// Malformed input.
    Syntax(String),
}

impl ParseError {
    pub(crate) fn unsupported(pos: Pos, what: impl Into<String>) -> Self {
        Self {
            pos,
            kind: ParseErrorKind::Unsupported {
                what: what.into(),
                hint: None,
            },
        }
    }

    pub(crate) fn unsupported_hint(
        pos: Pos,
        what: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            pos,
            kind: ParseErrorKind::Unsupported {
                what: what.into(),
                hint: Some(hint.into()),
            },
        }
    }

    pub(crate) fn syntax(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            pos,
            kind: ParseErrorKind::Syntax(message.into()),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.pos)?;
        match &self.kind {
            ParseErrorKind::Unsupported { what, hint } => {
                write!(f, "{what} is not supported by this sandboxed shell")?;
                if let Some(hint) = hint {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            ParseErrorKind::Syntax(message) => write!(f, "syntax error: {message}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// An operator token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `;`
    Semi,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `|`
    Pipe,
}

/// The kind of a redirection operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirOp {
    /// `<`
    Read,
    /// `>` or `>|`
    Write,
    /// `>>`
    Append,
    /// `>&`
    DupOut,
}

/// A token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A word.
    Word(Word),
    /// An operator.
    Op(Op),
    /// A redirection operator, with its explicit file descriptor if any (`2>`).
    Redir(Option<u32>, RedirOp),
    /// `<<DELIM` (or `<<-`): the index its body will have in the script's here-documents.
    Heredoc(Option<u32>, usize),
    /// A newline.
    Newline,
    /// The end of the script.
    Eof,
}

/// A here-document waiting for its body (read after the next newline).
struct PendingHeredoc {
    pos: Pos,
    index: usize,
    delimiter: String,
    strip_tabs: bool,
    expand: bool,
}

/// The lexer; see the [module documentation](self).
pub struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
    pending: Vec<PendingHeredoc>,
    heredocs: Vec<Vec<Part>>,
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Whether `c` ends an unquoted word.
fn is_meta(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\r' | ';' | '&' | '|' | '<' | '>' | '(' | ')'
    )
}

/// Builds the parts of a word, merging adjacent literals of the same quoting.
#[derive(Default)]
struct Parts(Vec<Part>);

impl Parts {
    fn push_char(&mut self, c: char, quoted: bool) {
        if let Some(Part::Lit { text, quoted: q }) = self.0.last_mut()
            && *q == quoted
        {
            text.push(c);
            return;
        }
        self.0.push(Part::Lit {
            text: c.to_string(),
            quoted,
        });
    }

    /// Starts a quoted literal (unless one is open), so `''` and `""` make a word.
    fn push_quoted_empty(&mut self) {
        if let Some(Part::Lit { quoted: true, .. }) = self.0.last() {
            return;
        }
        self.0.push(Part::Lit {
            text: String::new(),
            quoted: true,
        });
    }
}

/// Where a `$…` or a `${…}` word appears: it decides what quotes mean inside.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Unquoted,
    Double,
    Heredoc,
}

impl Lexer {
    /// A lexer over `script`.
    pub fn new(script: &str) -> Self {
        Self::at(script, 1)
    }

    fn at(text: &str, line: u32) -> Self {
        Self {
            chars: text.chars().collect(),
            i: 0,
            line,
            col: 1,
            pending: Vec::new(),
            heredocs: Vec::new(),
        }
    }

    /// The here-document bodies read so far, by index.
    pub fn into_heredocs(self) -> Vec<Vec<Part>> {
        self.heredocs
    }

    /// The current position.
    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    /// Skips blanks, comments and backslash-newline continuations between tokens.
    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r') => {
                    self.bump();
                }
                Some('\\') if self.peek_at(1) == Some('\n') => {
                    self.bump();
                    self.bump();
                }
                Some('#') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    /// The next token.
    ///
    /// # Errors
    ///
    /// Malformed or unsupported input, with its position.
    pub fn next_token(&mut self) -> Result<(Pos, Tok), ParseError> {
        self.skip_blanks();
        let pos = self.pos();
        let Some(c) = self.peek() else {
            if let Some(pending) = self.pending.first() {
                return Err(ParseError::syntax(
                    pending.pos,
                    format!(
                        "here-document `{}` is not terminated (no line `{}` before the end of the script)",
                        pending.delimiter, pending.delimiter
                    ),
                ));
            }
            return Ok((pos, Tok::Eof));
        };
        let next = self.peek_at(1);
        let tok = match c {
            '\n' => {
                self.bump();
                self.read_heredoc_bodies()?;
                Tok::Newline
            }
            ';' => {
                if next == Some(';') {
                    return Err(ParseError::syntax(
                        pos,
                        "unexpected `;;` (only valid in `case`)",
                    ));
                }
                self.bump();
                Tok::Op(Op::Semi)
            }
            '&' => {
                if next == Some('&') {
                    self.bump();
                    self.bump();
                    Tok::Op(Op::And)
                } else if next == Some('>') {
                    return Err(ParseError::unsupported_hint(
                        pos,
                        "the bash redirection `&>`",
                        "write `> file 2>&1`",
                    ));
                } else {
                    return Err(ParseError::unsupported(
                        pos,
                        "running in the background with `&`",
                    ));
                }
            }
            '|' => {
                self.bump();
                match self.peek() {
                    Some('|') => {
                        self.bump();
                        Tok::Op(Op::Or)
                    }
                    Some('&') => {
                        return Err(ParseError::unsupported_hint(
                            pos,
                            "the bash pipe `|&`",
                            "write `2>&1 |`",
                        ));
                    }
                    _ => Tok::Op(Op::Pipe),
                }
            }
            '(' => {
                let after_name = self
                    .i
                    .checked_sub(1)
                    .and_then(|before| self.chars.get(before))
                    .is_some_and(|&c| is_name_char(c));
                return Err(if after_name || next == Some(')') {
                    ParseError::unsupported(pos, "a function definition `name() { … }`")
                } else if next == Some('(') {
                    ParseError::unsupported(pos, "the arithmetic command `(( … ))`")
                } else {
                    ParseError::unsupported(pos, "a subshell `( … )` (or a function definition)")
                });
            }
            ')' => return Err(ParseError::syntax(pos, "unexpected `)`")),
            '<' | '>' => self.redirection(pos, None)?,
            '0'..='9' => {
                // An io number: digits directly followed by `<` or `>`.
                let mut j = self.i;
                while self.chars.get(j).is_some_and(char::is_ascii_digit) {
                    j += 1;
                }
                if matches!(self.chars.get(j), Some('<' | '>')) {
                    let digits: String = self.chars[self.i..j].iter().collect();
                    for _ in self.i..j {
                        self.bump();
                    }
                    let fd = digits.parse::<u32>().unwrap_or(u32::MAX);
                    self.redirection(pos, Some(fd))?
                } else {
                    Tok::Word(self.word()?)
                }
            }
            _ => Tok::Word(self.word()?),
        };
        Ok((pos, tok))
    }

    /// A redirection operator at `pos` (the io number, if any, already read).
    fn redirection(&mut self, pos: Pos, fd: Option<u32>) -> Result<Tok, ParseError> {
        let c = self.bump();
        let next = self.peek();
        let op = match (c, next) {
            (Some('<'), Some('<')) => {
                self.bump();
                let strip_tabs = self.peek() == Some('-');
                if strip_tabs {
                    self.bump();
                }
                return self.heredoc(pos, fd, strip_tabs);
            }
            (Some('<'), Some('(')) | (Some('>'), Some('(')) => {
                return Err(ParseError::unsupported(
                    pos,
                    "process substitution `<(…)` / `>(…)`",
                ));
            }
            (Some('<'), Some('&')) => {
                return Err(ParseError::unsupported(pos, "the redirection `<&`"));
            }
            (Some('<'), Some('>')) => {
                return Err(ParseError::unsupported(pos, "the redirection `<>`"));
            }
            (Some('<'), _) => RedirOp::Read,
            (Some('>'), Some('>')) => {
                self.bump();
                RedirOp::Append
            }
            (Some('>'), Some('|')) => {
                self.bump();
                RedirOp::Write
            }
            (Some('>'), Some('&')) => {
                self.bump();
                RedirOp::DupOut
            }
            _ => RedirOp::Write,
        };
        Ok(Tok::Redir(fd, op))
    }

    /// `<<` or `<<-` at `pos`: reads the delimiter word and queues the body.
    fn heredoc(&mut self, pos: Pos, fd: Option<u32>, strip_tabs: bool) -> Result<Tok, ParseError> {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
        let word_pos = self.pos();
        if self.peek().is_none_or(is_meta) {
            return Err(ParseError::syntax(
                word_pos,
                "expected a here-document delimiter after `<<`",
            ));
        }
        let word = self.word()?;
        let mut delimiter = String::new();
        let mut expand = true;
        for part in &word.parts {
            match part {
                Part::Lit { text, quoted } => {
                    delimiter.push_str(text);
                    if *quoted {
                        expand = false;
                    }
                }
                Part::Param { .. } => {
                    return Err(ParseError::unsupported(
                        word_pos,
                        "a here-document delimiter with `$`",
                    ));
                }
            }
        }
        let index = self.heredocs.len();
        self.heredocs.push(Vec::new());
        self.pending.push(PendingHeredoc {
            pos,
            index,
            delimiter,
            strip_tabs,
            expand,
        });
        Ok(Tok::Heredoc(fd, index))
    }

    /// Reads the bodies of the pending here-documents, right after a newline.
    fn read_heredoc_bodies(&mut self) -> Result<(), ParseError> {
        for pending in std::mem::take(&mut self.pending) {
            let start_line = self.line;
            let mut body = String::new();
            let mut terminated = false;
            while self.peek().is_some() {
                let mut line = String::new();
                while let Some(c) = self.peek() {
                    self.bump();
                    if c == '\n' {
                        break;
                    }
                    line.push(c);
                }
                let line = if pending.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line.as_str()
                };
                if line.trim_end_matches('\r') == pending.delimiter {
                    terminated = true;
                    break;
                }
                body.push_str(line);
                body.push('\n');
            }
            if !terminated {
                return Err(ParseError::syntax(
                    pending.pos,
                    format!(
                        "here-document `{}` is not terminated (no line `{}` before the end of the script)",
                        pending.delimiter, pending.delimiter
                    ),
                ));
            }
            let parts = if pending.expand {
                let mut sub = Lexer::at(&body, start_line);
                sub.heredoc_parts()?
            } else if body.is_empty() {
                Vec::new()
            } else {
                vec![Part::Lit {
                    text: body,
                    quoted: true,
                }]
            };
            if let Some(slot) = self.heredocs.get_mut(pending.index) {
                *slot = parts;
            }
        }
        Ok(())
    }

    /// The parts of an expanding here-document body (the whole input of this lexer).
    fn heredoc_parts(&mut self) -> Result<Vec<Part>, ParseError> {
        let mut parts = Parts::default();
        while let Some(c) = self.peek() {
            let pos = self.pos();
            match c {
                '\\' => {
                    self.bump();
                    match self.peek() {
                        Some('\n') => {
                            self.bump();
                        }
                        Some(e @ ('$' | '`' | '\\')) => {
                            self.bump();
                            parts.push_char(e, true);
                        }
                        _ => parts.push_char('\\', true),
                    }
                }
                '$' => {
                    self.bump();
                    self.dollar(pos, Quoting::Heredoc, &mut parts, 0)?;
                }
                '`' => return Err(backtick(pos)),
                _ => {
                    self.bump();
                    parts.push_char(c, true);
                }
            }
        }
        Ok(parts.0)
    }

    /// An unquoted word (the first character is not a metacharacter).
    fn word(&mut self) -> Result<Word, ParseError> {
        let pos = self.pos();
        let mut parts = Parts::default();
        let mut first = true;
        let mut after_assign_eq = false;
        let mut seen_eq = false;
        while let Some(c) = self.peek() {
            if is_meta(c) {
                break;
            }
            let here = self.pos();
            if c == '~' && (first || after_assign_eq) {
                return Err(ParseError::unsupported_hint(
                    here,
                    "tilde expansion `~`",
                    "quote it ('~') for a literal tilde",
                ));
            }
            first = false;
            after_assign_eq = false;
            match c {
                '\\' => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(e) => parts.push_char(e, true),
                        None => parts.push_char('\\', true),
                    }
                }
                '\'' => {
                    self.bump();
                    self.single_quoted(here, &mut parts)?;
                }
                '"' => {
                    self.bump();
                    self.double_quoted(here, &mut parts, 0)?;
                }
                '$' => {
                    self.bump();
                    self.dollar(here, Quoting::Unquoted, &mut parts, 0)?;
                }
                '`' => return Err(backtick(here)),
                _ => {
                    self.bump();
                    if c == '=' && !seen_eq {
                        seen_eq = true;
                        // `NAME=~/x` would tilde-expand in sh.
                        after_assign_eq = parts.0.iter().all(|p| {
                            matches!(p, Part::Lit { text, quoted: false }
                                if text.chars().next().is_some_and(is_name_start)
                                    && text.chars().all(is_name_char))
                        });
                    }
                    parts.push_char(c, false);
                }
            }
        }
        Ok(Word {
            pos,
            parts: parts.0,
        })
    }

    /// After an opening `'` at `start`.
    fn single_quoted(&mut self, start: Pos, parts: &mut Parts) -> Result<(), ParseError> {
        // `''` still makes a quoted, empty word.
        parts.push_quoted_empty();
        loop {
            match self.bump() {
                None => return Err(ParseError::syntax(start, "unterminated single quote `'`")),
                Some('\'') => break,
                Some(c) => parts.push_char(c, true),
            }
        }
        Ok(())
    }

    /// After an opening `"` at `start`.
    fn double_quoted(
        &mut self,
        start: Pos,
        parts: &mut Parts,
        depth: usize,
    ) -> Result<(), ParseError> {
        // `""` still makes a quoted, empty word.
        parts.push_quoted_empty();
        loop {
            let here = self.pos();
            match self.bump() {
                None => return Err(ParseError::syntax(start, "unterminated double quote `\"`")),
                Some('"') => break,
                Some('\\') => match self.peek() {
                    Some('\n') => {
                        self.bump();
                    }
                    Some(e @ ('$' | '`' | '"' | '\\')) => {
                        self.bump();
                        parts.push_char(e, true);
                    }
                    _ => parts.push_char('\\', true),
                },
                Some('$') => self.dollar(here, Quoting::Double, parts, depth)?,
                Some('`') => return Err(backtick(here)),
                Some(c) => parts.push_char(c, true),
            }
        }
        Ok(())
    }

    /// After a `$` at `pos`.
    fn dollar(
        &mut self,
        pos: Pos,
        quoting: Quoting,
        parts: &mut Parts,
        depth: usize,
    ) -> Result<(), ParseError> {
        let quoted = quoting != Quoting::Unquoted;
        match self.peek() {
            Some('(') => Err(if self.peek_at(1) == Some('(') {
                ParseError::unsupported(pos, "arithmetic expansion `$((…))`")
            } else {
                ParseError::unsupported(pos, "command substitution `$(…)`")
            }),
            Some('{') => {
                self.bump();
                self.braced(pos, quoting, parts, depth)
            }
            Some('?') => {
                self.bump();
                parts.0.push(Part::Param {
                    param: Param::Status,
                    quoted,
                });
                Ok(())
            }
            Some(c) if is_name_start(c) => {
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|&c| is_name_char(c)) {
                    self.bump();
                    name.push(c);
                }
                parts.0.push(Part::Param {
                    param: Param::Var { name, op: None },
                    quoted,
                });
                Ok(())
            }
            Some('\'') if quoting == Quoting::Unquoted => {
                Err(ParseError::unsupported(pos, "ANSI-C quoting `$'…'`"))
            }
            Some(c @ ('0'..='9' | '@' | '*' | '#' | '$' | '!' | '-')) => {
                Err(special_parameter(pos, c))
            }
            _ => {
                parts.push_char('$', quoted);
                Ok(())
            }
        }
    }

    /// After `${` (the `$` at `pos`).
    fn braced(
        &mut self,
        pos: Pos,
        quoting: Quoting,
        parts: &mut Parts,
        depth: usize,
    ) -> Result<(), ParseError> {
        let quoted = quoting != Quoting::Unquoted;
        if depth >= MAX_DEPTH {
            return Err(ParseError::syntax(
                pos,
                format!("`${{…}}` nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let name = match self.peek() {
            Some('?') => {
                self.bump();
                None
            }
            Some(c) if is_name_start(c) => {
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|&c| is_name_char(c)) {
                    self.bump();
                    name.push(c);
                }
                Some(name)
            }
            Some('#') if self.peek_at(1) != Some('}') => {
                return Err(ParseError::unsupported(pos, "the string length `${#NAME}`"));
            }
            Some(c @ ('0'..='9' | '@' | '*' | '#' | '$' | '!' | '-')) => {
                return Err(special_parameter(pos, c));
            }
            Some(_) => return Err(ParseError::syntax(pos, "bad substitution")),
            None => return Err(ParseError::syntax(pos, "unterminated `${`")),
        };
        let op = match (self.peek(), self.peek_at(1)) {
            (Some('}'), _) => None,
            (Some(':'), Some('-')) => Some((ParamOp::Default { colon: true }, 2)),
            (Some(':'), Some('+')) => Some((ParamOp::Alternative { colon: true }, 2)),
            (Some('-'), _) => Some((ParamOp::Default { colon: false }, 1)),
            (Some('+'), _) => Some((ParamOp::Alternative { colon: false }, 1)),
            (Some(c @ (':' | '=' | '?' | '#' | '%' | '/' | '^' | ',')), next) => {
                let mut op = c.to_string();
                if let Some(n) = next.filter(|n| matches!(n, '=' | '?' | '#' | '%' | '/')) {
                    op.push(n);
                }
                return Err(ParseError::unsupported_hint(
                    pos,
                    format!("the parameter expansion `${{NAME{op}…}}`"),
                    "only `${NAME}`, `${NAME-word}`, `${NAME:-word}`, `${NAME+word}` and `${NAME:+word}` are",
                ));
            }
            (None, _) => return Err(ParseError::syntax(pos, "unterminated `${`")),
            (Some(_), _) => return Err(ParseError::syntax(pos, "bad substitution")),
        };
        let op = match op {
            None => None,
            Some((op, len)) => {
                for _ in 0..len {
                    self.bump();
                }
                Some((op, self.brace_word(pos, quoting, depth + 1)?))
            }
        };
        if self.bump() != Some('}') {
            return Err(ParseError::syntax(pos, "unterminated `${`"));
        }
        let param = match name {
            None if op.is_some() => {
                return Err(ParseError::unsupported(pos, "an operator on `${?}`"));
            }
            None => Param::Status,
            Some(name) => Param::Var { name, op },
        };
        parts.0.push(Part::Param { param, quoted });
        Ok(())
    }

    /// The word of `${NAME-word}`, up to (not including) the closing `}`.
    fn brace_word(
        &mut self,
        start: Pos,
        quoting: Quoting,
        depth: usize,
    ) -> Result<Vec<Part>, ParseError> {
        let quoted = quoting != Quoting::Unquoted;
        let mut parts = Parts::default();
        loop {
            let here = self.pos();
            match self.peek() {
                None => return Err(ParseError::syntax(start, "unterminated `${`")),
                Some('}') => break,
                Some('\\') => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(e) if !quoted || matches!(e, '$' | '`' | '"' | '\\' | '}') => {
                            parts.push_char(e, true);
                        }
                        Some(e) => {
                            parts.push_char('\\', true);
                            parts.push_char(e, true);
                        }
                        None => parts.push_char('\\', true),
                    }
                }
                Some('\'') if !quoted => {
                    self.bump();
                    self.single_quoted(here, &mut parts)?;
                }
                Some('"') if quoting != Quoting::Heredoc => {
                    self.bump();
                    self.double_quoted(here, &mut parts, depth)?;
                }
                Some('$') => {
                    self.bump();
                    self.dollar(here, quoting, &mut parts, depth)?;
                }
                Some('`') => return Err(backtick(here)),
                Some(c) => {
                    self.bump();
                    parts.push_char(c, quoted);
                }
            }
        }
        Ok(parts.0)
    }
}

fn backtick(pos: Pos) -> ParseError {
    ParseError::unsupported(pos, "command substitution with backquotes")
}

fn special_parameter(pos: Pos, c: char) -> ParseError {
    ParseError::unsupported_hint(
        pos,
        format!("the special parameter `${c}`"),
        "scripts have no positional parameters, and `$$`, `$!`, `$#`, `$@`, `$*`, `$-` and `$0` are not available",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(script: &str) -> Result<Vec<Tok>, ParseError> {
        let mut lexer = Lexer::new(script);
        let mut out = Vec::new();
        loop {
            let (_, tok) = lexer.next_token()?;
            if tok == Tok::Eof {
                return Ok(out);
            }
            out.push(tok);
        }
    }

    fn err(script: &str) -> String {
        match tokens(script) {
            Ok(tokens) => panic!("{script:?} lexed: {tokens:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn lit(text: &str, quoted: bool) -> Part {
        Part::Lit {
            text: text.to_owned(),
            quoted,
        }
    }

    fn word_parts(script: &str) -> Vec<Part> {
        match tokens(script).unwrap().into_iter().next() {
            Some(Tok::Word(word)) => word.parts,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quoting_and_escapes() {
        assert_eq!(
            word_parts(r#"a'b c'"d\$e\x"\*"#),
            vec![lit("a", false), lit("b cd$e\\x*", true)]
        );
        assert_eq!(word_parts("''"), vec![lit("", true)]);
        assert_eq!(
            word_parts("\"x$HOME${A:-'q'}\""),
            vec![
                lit("x", true),
                Part::Param {
                    param: Param::Var {
                        name: "HOME".into(),
                        op: None
                    },
                    quoted: true
                },
                Part::Param {
                    param: Param::Var {
                        name: "A".into(),
                        op: Some((ParamOp::Default { colon: true }, vec![lit("'q'", true)]))
                    },
                    quoted: true
                },
            ]
        );
        assert_eq!(word_parts("a$"), vec![lit("a$", false)]);
        assert_eq!(word_parts("con\\\ntinued"), vec![lit("continued", false)]);
    }

    #[test]
    fn operators_redirections_and_comments() {
        let toks = tokens("a&&b||c|d; # note\n2>&1 >>f <x >|y").unwrap();
        assert!(matches!(toks[1], Tok::Op(Op::And)));
        assert!(matches!(toks[3], Tok::Op(Op::Or)));
        assert!(matches!(toks[5], Tok::Op(Op::Pipe)));
        assert!(matches!(toks[7], Tok::Op(Op::Semi)));
        assert!(matches!(toks[8], Tok::Newline));
        assert!(matches!(toks[9], Tok::Redir(Some(2), RedirOp::DupOut)));
        assert!(matches!(toks[11], Tok::Redir(None, RedirOp::Append)));
        assert!(matches!(toks[13], Tok::Redir(None, RedirOp::Read)));
        assert!(matches!(toks[15], Tok::Redir(None, RedirOp::Write)));
        assert_eq!(toks.len(), 17);
    }

    #[test]
    fn heredocs_are_read_after_the_line() {
        let mut lexer = Lexer::new("cat <<A <<-'B'; echo\nx $V\nA\n\t\ty\n\tB\nnext");
        let mut toks = Vec::new();
        loop {
            let (_, tok) = lexer.next_token().unwrap();
            if tok == Tok::Eof {
                break;
            }
            toks.push(tok);
        }
        assert!(matches!(toks.last(), Some(Tok::Word(w)) if w.plain() == Some("next")));
        let heredocs = lexer.into_heredocs();
        assert_eq!(heredocs[1], vec![lit("y\n", true)]);
        assert_eq!(heredocs[0].len(), 3, "{:?}", heredocs[0]);
    }

    #[test]
    fn refusals_name_the_construct_and_position() {
        assert_eq!(
            err("echo $(date)"),
            "line 1:6: command substitution `$(…)` is not supported by this sandboxed shell"
        );
        assert_eq!(
            err("x\n  echo `date`"),
            "line 2:8: command substitution with backquotes is not supported by this sandboxed shell"
        );
        assert!(err("echo $((1+2))").starts_with("line 1:6: arithmetic expansion"));
        assert!(err("sleep 1 &").starts_with("line 1:9: running in the background"));
        assert!(err("(cd x)").starts_with("line 1:1: a subshell"));
        assert!(err("diff <(a) b").starts_with("line 1:6: process substitution"));
        assert!(err("echo $1").contains("special parameter `$1`"));
        assert!(err("echo ${#X}").contains("string length"));
        assert!(err("echo ${X:=y}").contains("`${NAME:=…}`"));
        assert!(err("echo ~/x").starts_with("line 1:6: tilde expansion"));
        assert!(err("X=~/x").starts_with("line 1:3: tilde expansion"));
        assert!(err("cmd &> log").contains("`&>`"));
        assert!(err("echo $'a'").contains("ANSI-C"));
    }

    #[test]
    fn unterminated_input_is_a_syntax_error_at_its_start() {
        assert_eq!(
            err("echo ok\necho 'abc\n"),
            "line 2:6: syntax error: unterminated single quote `'`"
        );
        assert_eq!(
            err("echo \"abc"),
            "line 1:6: syntax error: unterminated double quote `\"`"
        );
        assert!(
            err("cat <<EOF\nbody\n")
                .starts_with("line 1:5: syntax error: here-document `EOF` is not terminated")
        );
        assert!(err("echo ${A").contains("unterminated `${`"));
    }

    #[test]
    fn tilde_inside_a_word_is_literal() {
        assert_eq!(word_parts("a~b"), vec![lit("a~b", false)]);
        assert_eq!(word_parts("'~'"), vec![lit("~", true)]);
    }
}
