//! The parser: tokens → [`Script`], recursive descent over the grammar this shell supports
//! (lists, `&&`/`||`, `!`, pipelines, simple commands with assignments and redirections,
//! `if` and `for`).
//!
//! Everything is parsed before anything runs, so a script that uses an unsupported construct
//! anywhere (`while`, `case`, functions, brace groups, …) is refused as a whole, with the
//! line and column of the first one.

use crate::ast::{
    AndOr, Assignment, Command, Connector, ForCommand, IfCommand, List, Pipeline, Pos, Redirect,
    RedirectKind, Script, SimpleCommand, Word,
};
use crate::lex::{Lexer, MAX_DEPTH, Op, ParseError, RedirOp, Tok};

/// The largest script accepted, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 1 << 20;

/// Parses a whole script.
///
/// # Errors
///
/// The first syntax error or unsupported construct, with its position.
pub fn parse(script: &str) -> Result<Script, ParseError> {
    if script.len() > MAX_SCRIPT_BYTES {
        return Err(ParseError::syntax(
            Pos { line: 1, col: 1 },
            format!(
                "the script is {} bytes, more than the {} KiB this shell accepts",
                script.len(),
                MAX_SCRIPT_BYTES / 1024
            ),
        ));
    }
    let mut parser = Parser {
        lexer: Lexer::new(script),
        peeked: None,
        depth: 0,
    };
    let body = parser.list(&[])?;
    let (pos, tok) = parser.next()?;
    if tok != Tok::Eof {
        return Err(unexpected(pos, &tok));
    }
    Ok(Script {
        body,
        heredocs: parser.lexer.into_heredocs(),
    })
}

/// Keywords this shell refuses at the start of a command, with what they are.
const REFUSED_KEYWORDS: &[(&str, &str)] = &[
    ("while", "the `while` loop"),
    ("until", "the `until` loop"),
    ("case", "`case`"),
    ("function", "a function definition"),
    ("select", "`select`"),
    ("{", "a brace group `{ … }`"),
    ("}", "a brace group `{ … }`"),
    ("[[", "the bash test `[[ … ]]`"),
];

/// Words that end a list in some context; a stray one is a syntax error.
const RESERVED: &[&str] = &["then", "elif", "else", "fi", "do", "done"];

struct Parser {
    lexer: Lexer,
    peeked: Option<(Pos, Tok)>,
    depth: usize,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(word) => match word.plain() {
            Some(text) => format!("`{text}`"),
            None => "a word".to_owned(),
        },
        Tok::Op(Op::Semi) => "`;`".to_owned(),
        Tok::Op(Op::And) => "`&&`".to_owned(),
        Tok::Op(Op::Or) => "`||`".to_owned(),
        Tok::Op(Op::Pipe) => "`|`".to_owned(),
        Tok::Redir(..) | Tok::Heredoc(..) => "a redirection".to_owned(),
        Tok::Newline => "a newline".to_owned(),
        Tok::Eof => "the end of the script".to_owned(),
    }
}

fn unexpected(pos: Pos, tok: &Tok) -> ParseError {
    ParseError::syntax(pos, format!("unexpected {}", describe(tok)))
}

/// Whether `word` is a valid variable name.
pub(crate) fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl Parser {
    fn peek(&mut self) -> Result<&(Pos, Tok), ParseError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        match &self.peeked {
            Some(peeked) => Ok(peeked),
            None => Err(ParseError::syntax(self.lexer.pos(), "internal lexer state")),
        }
    }

    fn next(&mut self) -> Result<(Pos, Tok), ParseError> {
        match self.peeked.take() {
            Some(peeked) => Ok(peeked),
            None => self.lexer.next_token(),
        }
    }

    /// The plain text of the next token if it is an unquoted literal word.
    fn peek_plain(&mut self) -> Result<Option<String>, ParseError> {
        Ok(match &self.peek()?.1 {
            Tok::Word(word) => word.plain().map(str::to_owned),
            _ => None,
        })
    }

    fn skip_newlines(&mut self) -> Result<(), ParseError> {
        while self.peek()?.1 == Tok::Newline {
            self.next()?;
        }
        Ok(())
    }

    /// Expects the keyword `word` next.
    fn keyword(&mut self, word: &str, context: &str) -> Result<(), ParseError> {
        let (pos, tok) = self.next()?;
        match &tok {
            Tok::Word(w) if w.plain() == Some(word) => Ok(()),
            _ => Err(ParseError::syntax(
                pos,
                format!("expected `{word}` {context}, found {}", describe(&tok)),
            )),
        }
    }

    /// Commands until the end of the script or one of the keywords `stop`.
    fn list(&mut self, stop: &[&str]) -> Result<List, ParseError> {
        let mut items = Vec::new();
        loop {
            self.skip_newlines()?;
            if self.peek()?.1 == Tok::Eof {
                break;
            }
            if let Some(word) = self.peek_plain()?
                && stop.contains(&word.as_str())
            {
                break;
            }
            items.push(self.and_or()?);
            match &self.peek()?.1 {
                Tok::Op(Op::Semi) | Tok::Newline => {
                    self.next()?;
                }
                Tok::Eof => break,
                _ => {
                    if let Some(word) = self.peek_plain()?
                        && stop.contains(&word.as_str())
                    {
                        break;
                    }
                    let (pos, tok) = self.next()?;
                    return Err(unexpected(pos, &tok));
                }
            }
        }
        Ok(items)
    }

    /// A non-empty list ending at one of `stop`, for the part of a compound command named
    /// `what`.
    fn body(&mut self, stop: &[&str], what: &str) -> Result<List, ParseError> {
        let list = self.list(stop)?;
        if list.is_empty() {
            let (pos, tok) = self.next()?;
            return Err(ParseError::syntax(
                pos,
                format!("expected a command in {what}, found {}", describe(&tok)),
            ));
        }
        Ok(list)
    }

    fn and_or(&mut self) -> Result<AndOr, ParseError> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let connector = match self.peek()?.1 {
                Tok::Op(Op::And) => Connector::And,
                Tok::Op(Op::Or) => Connector::Or,
                _ => break,
            };
            self.next()?;
            self.skip_newlines()?;
            rest.push((connector, self.pipeline()?));
        }
        Ok(AndOr { first, rest })
    }

    fn pipeline(&mut self) -> Result<Pipeline, ParseError> {
        let pos = self.peek()?.0;
        let negated = self.peek_plain()?.as_deref() == Some("!");
        if negated {
            self.next()?;
        }
        let mut commands = vec![self.command()?];
        while self.peek()?.1 == Tok::Op(Op::Pipe) {
            self.next()?;
            self.skip_newlines()?;
            commands.push(self.command()?);
        }
        Ok(Pipeline {
            pos,
            negated,
            commands,
        })
    }

    fn command(&mut self) -> Result<Command, ParseError> {
        let pos = self.peek()?.0;
        let command = match self.peek_plain()?.as_deref() {
            Some("if") => self.nested(pos, Self::if_command)?,
            Some("for") => self.nested(pos, Self::for_command)?,
            Some(word) => {
                if let Some((_, what)) = REFUSED_KEYWORDS.iter().find(|(k, _)| *k == word) {
                    return Err(ParseError::unsupported(pos, *what));
                }
                if RESERVED.contains(&word) || word == "!" {
                    return Err(ParseError::syntax(pos, format!("unexpected `{word}`")));
                }
                return self.simple(pos).map(Command::Simple);
            }
            None => return self.simple(pos).map(Command::Simple),
        };
        let mut redirects = Vec::new();
        while let Some(redirect) = self.redirection()? {
            redirects.push(redirect);
        }
        Ok(if redirects.is_empty() {
            command
        } else {
            Command::Redirected(Box::new(command), redirects)
        })
    }

    /// The redirection (or here-document) at the current token, consumed; `None` when the
    /// token is something else.
    fn redirection(&mut self) -> Result<Option<Redirect>, ParseError> {
        let (p, tok) = self.peek()?.clone();
        match tok {
            Tok::Redir(fd, op) => {
                self.next()?;
                self.redirect(p, fd, op).map(Some)
            }
            Tok::Heredoc(fd, index) => {
                self.next()?;
                if fd.is_some_and(|fd| fd != 0) {
                    return Err(ParseError::unsupported(
                        p,
                        "a here-document on a descriptor other than 0",
                    ));
                }
                Ok(Some(Redirect {
                    pos: p,
                    fd: 0,
                    kind: RedirectKind::Heredoc(index),
                }))
            }
            _ => Ok(None),
        }
    }

    /// Parses a compound command one nesting level deeper.
    fn nested(
        &mut self,
        pos: Pos,
        parse: fn(&mut Self) -> Result<Command, ParseError>,
    ) -> Result<Command, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(ParseError::syntax(
                pos,
                format!("`if`/`for` nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.depth += 1;
        let command = parse(self);
        self.depth -= 1;
        command
    }

    fn if_command(&mut self) -> Result<Command, ParseError> {
        self.next()?; // `if`
        let mut branches = Vec::new();
        let mut otherwise = None;
        loop {
            let condition = self.body(&["then"], "the condition of `if`")?;
            self.keyword("then", "after the condition of `if`")?;
            let body = self.body(&["elif", "else", "fi"], "`then`")?;
            branches.push((condition, body));
            let (pos, tok) = self.next()?;
            match &tok {
                Tok::Word(w) if w.plain() == Some("elif") => {}
                Tok::Word(w) if w.plain() == Some("else") => {
                    otherwise = Some(self.body(&["fi"], "`else`")?);
                    self.keyword("fi", "to close `if`")?;
                    break;
                }
                Tok::Word(w) if w.plain() == Some("fi") => break,
                _ => {
                    return Err(ParseError::syntax(
                        pos,
                        format!("expected `fi` to close `if`, found {}", describe(&tok)),
                    ));
                }
            }
        }
        Ok(Command::If(IfCommand {
            branches,
            otherwise,
        }))
    }

    fn for_command(&mut self) -> Result<Command, ParseError> {
        let (pos, _) = self.next()?; // `for`
        let (name_pos, tok) = self.next()?;
        let name = match &tok {
            Tok::Word(w) => match w.plain() {
                Some(name) if is_name(name) => name.to_owned(),
                _ => {
                    return Err(ParseError::syntax(
                        name_pos,
                        "expected a variable name after `for`",
                    ));
                }
            },
            _ => return Err(unexpected(name_pos, &tok)),
        };
        self.skip_newlines()?;
        let (in_pos, tok) = self.next()?;
        match &tok {
            Tok::Word(w) if w.plain() == Some("in") => {}
            Tok::Word(w) if w.plain() == Some("do") => {
                return Err(ParseError::unsupported_hint(
                    in_pos,
                    "`for NAME` without `in` (positional parameters)",
                    "write `for NAME in WORDS…`",
                ));
            }
            Tok::Op(Op::Semi) => {
                return Err(ParseError::unsupported_hint(
                    in_pos,
                    "`for NAME` without `in` (positional parameters)",
                    "write `for NAME in WORDS…`",
                ));
            }
            _ => {
                return Err(ParseError::syntax(
                    in_pos,
                    format!("expected `in` after `for {name}`, found {}", describe(&tok)),
                ));
            }
        }
        let mut words = Vec::new();
        loop {
            let (p, tok) = self.next()?;
            match tok {
                Tok::Word(word) => words.push(word),
                Tok::Op(Op::Semi) | Tok::Newline => break,
                other => return Err(unexpected(p, &other)),
            }
        }
        self.skip_newlines()?;
        self.keyword("do", "in `for`")?;
        let body = self.body(&["done"], "the body of `for`")?;
        self.keyword("done", "to close `for`")?;
        Ok(Command::For(ForCommand {
            pos,
            name,
            words,
            body,
        }))
    }

    fn simple(&mut self, pos: Pos) -> Result<SimpleCommand, ParseError> {
        let mut command = SimpleCommand {
            pos,
            assignments: Vec::new(),
            words: Vec::new(),
            redirects: Vec::new(),
        };
        loop {
            let (p, tok) = self.peek()?.clone();
            match tok {
                Tok::Word(word) => {
                    self.next()?;
                    if command.words.is_empty()
                        && let Some(assignment) = assignment(&word)
                    {
                        command.assignments.push(assignment);
                        continue;
                    }
                    if command.words.is_empty() && !command.assignments.is_empty() {
                        return Err(ParseError::unsupported_hint(
                            p,
                            "an assignment before a command (`NAME=value command`)",
                            "assign on a line of its own, or `export NAME=value`",
                        ));
                    }
                    command.words.push(word);
                }
                Tok::Redir(..) | Tok::Heredoc(..) => {
                    if let Some(redirect) = self.redirection()? {
                        command.redirects.push(redirect);
                    }
                }
                _ => break,
            }
        }
        if command.words.is_empty()
            && command.assignments.is_empty()
            && command.redirects.is_empty()
        {
            let (p, tok) = self.next()?;
            return Err(unexpected(p, &tok));
        }
        Ok(command)
    }

    fn redirect(&mut self, pos: Pos, fd: Option<u32>, op: RedirOp) -> Result<Redirect, ParseError> {
        let fd = fd.unwrap_or(if op == RedirOp::Read { 0 } else { 1 });
        let allowed = if op == RedirOp::Read {
            fd == 0
        } else {
            fd == 1 || fd == 2
        };
        if !allowed {
            return Err(ParseError::unsupported_hint(
                pos,
                format!("redirecting file descriptor {fd}"),
                "only 0 (`<`), 1 (`>`) and 2 (`2>`) exist",
            ));
        }
        let (p, tok) = self.next()?;
        let Tok::Word(word) = tok else {
            return Err(ParseError::syntax(
                p,
                format!(
                    "expected a file name after the redirection, found {}",
                    describe(&tok)
                ),
            ));
        };
        let kind = match op {
            RedirOp::Read => RedirectKind::Read(word),
            RedirOp::Write => RedirectKind::Write(word),
            RedirOp::Append => RedirectKind::Append(word),
            RedirOp::DupOut => match word.plain() {
                Some("1") => RedirectKind::Dup(1),
                Some("2") => RedirectKind::Dup(2),
                _ => {
                    return Err(ParseError::unsupported_hint(
                        pos,
                        "this `>&` redirection",
                        "only `>&1`, `>&2`, `2>&1` and `1>&2` are",
                    ));
                }
            },
        };
        Ok(Redirect { pos, fd, kind })
    }
}

/// `NAME=value` as an assignment, when the word starts with a valid unquoted name and `=`.
fn assignment(word: &Word) -> Option<Assignment> {
    let (first, rest) = word.parts.split_first()?;
    let crate::ast::Part::Lit {
        text,
        quoted: false,
    } = first
    else {
        return None;
    };
    let (name, value) = text.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let mut parts = Vec::new();
    if !value.is_empty() {
        parts.push(crate::ast::Part::Lit {
            text: value.to_owned(),
            quoted: false,
        });
    }
    parts.extend(rest.iter().cloned());
    Some(Assignment {
        name: name.to_owned(),
        value: Word {
            pos: word.pos,
            parts,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(script: &str) -> String {
        match parse(script) {
            Ok(script) => panic!("parsed: {script:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn parses_lists_pipelines_and_compound_commands() {
        let script = parse(
            "# build\nA=1\nif ! test -f x && true; then\n  echo a | cat > out 2>&1\nelif false; then :; else echo b; fi\nfor f in a 'b c'; do echo \"$f\"; done\n",
        )
        .unwrap();
        assert_eq!(script.body.len(), 3);
        let Command::Simple(assign) = &script.body[0].first.commands[0] else {
            panic!()
        };
        assert_eq!(assign.assignments[0].name, "A");
        assert_eq!(assign.pos, Pos { line: 2, col: 1 });
        let Command::If(cond) = &script.body[1].first.commands[0] else {
            panic!()
        };
        assert_eq!(cond.branches.len(), 2);
        assert!(cond.branches[0].0[0].first.negated);
        assert_eq!(cond.branches[0].0[0].rest.len(), 1);
        let Command::Simple(echo) = &cond.branches[0].1[0].first.commands[0] else {
            panic!()
        };
        assert_eq!(echo.pos, Pos { line: 4, col: 3 });
        assert_eq!(cond.branches[0].1[0].first.commands.len(), 2);
        assert!(cond.otherwise.is_some());
        let Command::For(each) = &script.body[2].first.commands[0] else {
            panic!()
        };
        assert_eq!((each.name.as_str(), each.words.len()), ("f", 2));
        assert_eq!(each.pos, Pos { line: 6, col: 1 });
    }

    #[test]
    fn redirections_are_parsed_with_their_fd() {
        let script = parse("cat <in >out 2>>err\necho x >&2").unwrap();
        let Command::Simple(cat) = &script.body[0].first.commands[0] else {
            panic!()
        };
        let fds: Vec<u32> = cat.redirects.iter().map(|r| r.fd).collect();
        assert_eq!(fds, vec![0, 1, 2]);
        assert!(matches!(cat.redirects[2].kind, RedirectKind::Append(_)));
        let Command::Simple(echo) = &script.body[1].first.commands[0] else {
            panic!()
        };
        assert_eq!(echo.redirects[0].kind, RedirectKind::Dup(2));
    }

    #[test]
    fn refuses_unsupported_constructs_with_positions() {
        assert_eq!(
            err("echo a\nwhile true; do :; done"),
            "line 2:1: the `while` loop is not supported by this sandboxed shell"
        );
        assert!(err("case x in a) ;; esac").starts_with("line 1:1: `case`"));
        assert!(err("f() { :; }").starts_with("line 1:2: a function definition"));
        assert!(err("{ echo; }").starts_with("line 1:1: a brace group"));
        assert!(err("until false; do :; done").contains("`until` loop"));
        assert!(err("function f { :; }").contains("function definition"));
        assert!(err("[[ -f x ]]").contains("[[ … ]]"));
        assert!(err("FOO=1 make").starts_with("line 1:7: an assignment before a command"));
        assert!(err("for x; do :; done").contains("without `in`"));
        let script = parse("for f in a b; do echo $f; done > log 2>&1").expect("parses");
        let Command::Redirected(inner, redirects) = &script.body[0].first.commands[0] else {
            panic!("{script:?}");
        };
        assert!(matches!(**inner, Command::For(_)));
        assert_eq!(redirects.len(), 2);
        assert!(err("echo 3>x").contains("file descriptor 3"));
        assert!(err("echo >&3").contains("`>&` redirection"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        assert_eq!(
            err("if true; then\n  echo\n"),
            "line 3:1: syntax error: expected `fi` to close `if`, found the end of the script"
        );
        assert_eq!(
            err("if true; then fi"),
            "line 1:15: syntax error: expected a command in `then`, found `fi`"
        );
        assert_eq!(err("; echo"), "line 1:1: syntax error: unexpected `;`");
        assert_eq!(
            err("echo |"),
            "line 1:7: syntax error: unexpected the end of the script"
        );
        assert_eq!(err("fi"), "line 1:1: syntax error: unexpected `fi`");
        assert!(err("echo >").contains("expected a file name"));
        assert!(err("for 1x in a; do :; done").contains("variable name"));
    }

    #[test]
    fn limits_size_and_nesting() {
        let deep = "if true; then ".repeat(MAX_DEPTH + 1);
        assert!(err(&deep).contains("nested deeper than 64 levels"));
        let big = "#".repeat(MAX_SCRIPT_BYTES + 1);
        assert!(err(&big).contains("more than the 1024 KiB"));
    }

    #[test]
    fn keywords_are_plain_words_as_arguments() {
        let script = parse("echo if then fi done '{' }").unwrap();
        let Command::Simple(echo) = &script.body[0].first.commands[0] else {
            panic!()
        };
        assert_eq!(echo.words.len(), 7);
        // A quoted keyword is not a keyword.
        assert_eq!(
            err("'if' true; then :; fi"),
            "line 1:12: syntax error: unexpected `then`"
        );
    }
}
