//! The builtin commands — the only commands this shell runs — and what they share: the
//! dispatch table, option parsing and error reporting.
//!
//! | module | builtins |
//! |---|---|
//! | [`shell`] | `:`, `true`, `false`, `exit`, `cd`, `pwd`, `export`, `unset`, `set` |
//! | [`files`] | `cat`, `mkdir`, `rm`, `cp`, `mv`, `touch`, `ls`, `tee`, `sha256sum` |
//! | [`text`] | `echo`, `wc`, `head`, `tail`, `sort`, `basename`, `dirname` |
//! | [`printf`] | `printf` |
//! | [`grep`] | `grep` |
//! | [`test`](mod@test) | `test`, `[` |
//!
//! A builtin writes its own errors to stderr as `name: message` and answers its exit status;
//! a usage error (unknown option, missing operand) is status 2.

/// Parses options with [`opts`], returning the usage status from the builtin on error.
macro_rules! parse_opts {
    ($sh:expr, $fds:expr, $name:expr, $args:expr, $allowed:expr) => {
        match $crate::builtins::opts($sh, $fds, $name, $args, $allowed)? {
            Ok(opts) => opts,
            Err(status) => return Ok(status),
        }
    };
}

pub mod files;
pub mod grep;
pub mod printf;
pub mod shell;
pub mod test;
pub mod text;

use crate::interp::Shell;
use crate::io::{Fds, Stop};

/// Every builtin, sorted: what `command not found` lists.
pub const NAMES: &[&str] = &[
    ":",
    "[",
    "basename",
    "cat",
    "cd",
    "cp",
    "dirname",
    "echo",
    "exit",
    "export",
    "false",
    "grep",
    "head",
    "ls",
    "mkdir",
    "mv",
    "printf",
    "pwd",
    "rm",
    "set",
    "sha256sum",
    "sort",
    "tail",
    "tee",
    "test",
    "touch",
    "true",
    "unset",
    "wc",
];

/// Runs the builtin `name`, or answers `None` when there is none of that name.
pub fn run(sh: &mut Shell<'_>, name: &str, args: &[String], fds: Fds) -> Option<Result<i32, Stop>> {
    Some(match name {
        ":" | "true" => Ok(0),
        "false" => Ok(1),
        "exit" => shell::exit(sh, args, fds),
        "cd" => shell::cd(sh, args, fds),
        "pwd" => shell::pwd(sh, args, fds),
        "export" => shell::export(sh, args, fds),
        "unset" => shell::unset(sh, args, fds),
        "set" => shell::set(sh, args, fds),
        "cat" => files::cat(sh, args, fds),
        "mkdir" => files::mkdir(sh, args, fds),
        "rm" => files::rm(sh, args, fds),
        "cp" => files::cp(sh, args, fds),
        "mv" => files::mv(sh, args, fds),
        "touch" => files::touch(sh, args, fds),
        "ls" => files::ls(sh, args, fds),
        "tee" => files::tee(sh, args, fds),
        "sha256sum" => files::sha256sum(sh, args, fds),
        "echo" => text::echo(sh, args, fds),
        "wc" => text::wc(sh, args, fds),
        "head" => text::head_tail(sh, args, fds, true),
        "tail" => text::head_tail(sh, args, fds, false),
        "sort" => text::sort(sh, args, fds),
        "basename" => text::basename(sh, args, fds),
        "dirname" => text::dirname(sh, args, fds),
        "printf" => printf::printf(sh, args, fds),
        "grep" => grep::grep(sh, args, fds),
        "test" => test::test(sh, args, fds, false),
        "[" => test::test(sh, args, fds, true),
        _ => return None,
    })
}

/// Parsed single-letter options and the operands after them.
#[derive(Debug, Default)]
pub struct Opts {
    flags: Vec<char>,
    /// Options that take an argument, with it, in order.
    values: Vec<(char, String)>,
    /// The operands, in order.
    pub operands: Vec<String>,
}

impl Opts {
    /// Whether the flag `c` was given.
    pub fn has(&self, c: char) -> bool {
        self.flags.contains(&c)
    }

    /// The arguments given to the option `c`, in order.
    pub fn values(&self, c: char) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(move |(o, _)| *o == c)
            .map(|(_, v)| v.as_str())
    }

    /// The last argument given to the option `c`.
    pub fn value(&self, c: char) -> Option<&str> {
        self.values(c).last()
    }
}

/// Parses `args` as POSIX utility arguments: option clusters (`-rf`) from `allowed` up to
/// the first operand or `--`; `-` alone is an operand. In `allowed`, a letter followed by
/// `:` takes an argument, as in `getopts`: the rest of its cluster (`-n5`) or the next
/// argument (`-n 5`).
///
/// # Errors
///
/// After printing `name: invalid option -- 'x'` or `name: option requires an argument --
/// 'x'`, status 2.
pub fn opts(
    sh: &mut Shell<'_>,
    fds: Fds,
    name: &str,
    args: &[String],
    allowed: &str,
) -> Result<Result<Opts, i32>, Stop> {
    let mut opts = Opts::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        match arg.strip_prefix('-') {
            Some(cluster) if !cluster.is_empty() => {
                let mut chars = cluster.chars();
                while let Some(c) = chars.next() {
                    let Some(at) = allowed.find(c).filter(|_| c != ':') else {
                        return usage(sh, fds, name, &format!("invalid option -- '{c}'"));
                    };
                    if allowed[at + c.len_utf8()..].starts_with(':') {
                        let rest: String = chars.by_ref().collect();
                        let value = if rest.is_empty() {
                            iter.next().cloned()
                        } else {
                            Some(rest)
                        };
                        let Some(value) = value else {
                            return usage(
                                sh,
                                fds,
                                name,
                                &format!("option requires an argument -- '{c}'"),
                            );
                        };
                        opts.values.push((c, value));
                    } else {
                        opts.flags.push(c);
                    }
                }
            }
            _ => {
                opts.operands.push(arg.clone());
                break;
            }
        }
    }
    opts.operands.extend(iter.cloned());
    Ok(Ok(opts))
}

/// Prints `name: message` and answers status 2, in the shape [`opts`] returns.
///
/// # Errors
///
/// When stderr cannot be written.
pub fn usage<T>(
    sh: &mut Shell<'_>,
    fds: Fds,
    name: &str,
    message: &str,
) -> Result<Result<T, i32>, Stop> {
    sh.err(fds, &format!("{name}: {message}"))?;
    Ok(Err(2))
}

/// Reads an input operand: `-` is stdin, anything else a workspace file.
///
/// # Errors
///
/// The message to print after `name: `.
pub fn read_operand(sh: &mut Shell<'_>, fds: Fds, operand: &str) -> Result<Vec<u8>, String> {
    if operand == "-" {
        Ok(sh.io.read_all(fds))
    } else {
        sh.read_file(operand)
    }
}

/// Splits text into lines without their `\n` (a final newline does not make an empty line).
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if data.ends_with(b"\n") || data.is_empty() {
        lines.pop();
    }
    lines
}
