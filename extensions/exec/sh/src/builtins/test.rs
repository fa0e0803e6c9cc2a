//! `test expr` and `[ expr ]`: `-e -f -d -s` on workspace paths, `-z -n`, `=` and `!=` on
//! strings, `-eq -ne -lt -le -gt -ge` on integers, `!`, `-a`, `-o` and parentheses.
//!
//! Status 0 when true, 1 when false, 2 on a malformed expression (which also prints why).

use std::fs;

use crate::interp::Shell;
use crate::io::{Fds, Stop};

const UNARY: &[&str] = &["-e", "-f", "-d", "-s", "-z", "-n"];
const BINARY: &[&str] = &["=", "!=", "-eq", "-ne", "-lt", "-le", "-gt", "-ge"];
const UNSUPPORTED: &[&str] = &[
    "-r", "-w", "-x", "-L", "-h", "-p", "-S", "-b", "-c", "-g", "-u", "-k", "-t", "-O", "-G", "-N",
    "-nt", "-ot", "-ef", "==", "<", ">",
];

/// `test` (`bracket: false`) or `[` (which needs a final `]`).
pub fn test(sh: &mut Shell<'_>, args: &[String], fds: Fds, bracket: bool) -> Result<i32, Stop> {
    let name = if bracket { "[" } else { "test" };
    let args = if bracket {
        match args.split_last() {
            Some((last, rest)) if last == "]" => rest,
            _ => {
                sh.err(fds, "[: missing `]`")?;
                return Ok(2);
            }
        }
    } else {
        args
    };
    let mut eval = Eval { sh, args, pos: 0 };
    let result = if args.is_empty() {
        Ok(false)
    } else {
        eval.or()
    };
    let result = result.and_then(|value| match args.get(eval.pos) {
        None => Ok(value),
        Some(extra) => Err(format!("{extra}: unexpected operator")),
    });
    match result {
        Ok(value) => Ok(i32::from(!value)),
        Err(message) => {
            sh.err(fds, &format!("{name}: {message}"))?;
            Ok(2)
        }
    }
}

struct Eval<'a, 'b, 'c> {
    sh: &'a Shell<'c>,
    args: &'b [String],
    pos: usize,
}

impl Eval<'_, '_, '_> {
    fn peek(&self, ahead: usize) -> Option<&str> {
        self.args.get(self.pos + ahead).map(String::as_str)
    }

    fn remaining(&self) -> usize {
        self.args.len().saturating_sub(self.pos)
    }

    fn or(&mut self) -> Result<bool, String> {
        let mut value = self.and()?;
        while self.peek(0) == Some("-o") {
            self.pos += 1;
            let rhs = self.and()?;
            value = value || rhs;
        }
        Ok(value)
    }

    fn and(&mut self) -> Result<bool, String> {
        let mut value = self.not()?;
        while self.peek(0) == Some("-a") {
            self.pos += 1;
            let rhs = self.not()?;
            value = value && rhs;
        }
        Ok(value)
    }

    fn not(&mut self) -> Result<bool, String> {
        // `!` negates unless it is the left operand of a binary operator (`[ ! = x ]`).
        let binary_next =
            self.peek(1).is_some_and(|op| BINARY.contains(&op)) && self.remaining() >= 3;
        if self.peek(0) == Some("!") && !binary_next && self.remaining() >= 2 {
            self.pos += 1;
            return Ok(!self.not()?);
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<bool, String> {
        let Some(first) = self.peek(0).map(str::to_owned) else {
            return Err("argument expected".to_owned());
        };
        if let Some(op) = self.peek(1).map(str::to_owned)
            && self.remaining() >= 3
        {
            if BINARY.contains(&op.as_str()) {
                let rhs = self.peek(2).map(str::to_owned).unwrap_or_default();
                self.pos += 3;
                return binary(&first, &op, &rhs);
            }
            if op == "==" {
                return Err("`==` is not POSIX test syntax; use `=`".to_owned());
            }
            if UNSUPPORTED.contains(&op.as_str()) && !matches!(first.as_str(), "(" | "!") {
                return Err(format!(
                    "{op}: unsupported operator in this sandboxed shell"
                ));
            }
        }
        if first == "(" && self.remaining() >= 3 {
            self.pos += 1;
            let value = self.or()?;
            if self.peek(0) != Some(")") {
                return Err("closing paren expected".to_owned());
            }
            self.pos += 1;
            return Ok(value);
        }
        if self.remaining() >= 2 {
            if UNARY.contains(&first.as_str()) {
                let operand = self.peek(1).map(str::to_owned).unwrap_or_default();
                self.pos += 2;
                return self.unary(&first, &operand);
            }
            if UNSUPPORTED.contains(&first.as_str()) {
                return Err(format!(
                    "{first}: unsupported operator in this sandboxed shell"
                ));
            }
        }
        self.pos += 1;
        Ok(!first.is_empty())
    }

    fn unary(&self, op: &str, operand: &str) -> Result<bool, String> {
        match op {
            "-z" => return Ok(operand.is_empty()),
            "-n" => return Ok(!operand.is_empty()),
            _ => {}
        }
        let path = match self.sh.resolve(operand) {
            Ok(path) => path,
            Err(crate::fs::PathError::Empty) => return Ok(false),
            Err(err) => return Err(err.to_string()),
        };
        let meta = fs::metadata(self.sh.real(&path));
        Ok(match op {
            "-e" => meta.is_ok(),
            "-f" => meta.is_ok_and(|m| m.is_file()),
            "-d" => meta.is_ok_and(|m| m.is_dir()),
            _ => meta.is_ok_and(|m| m.len() > 0),
        })
    }
}

fn integer(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| format!("{text}: integer expression expected"))
}

fn binary(lhs: &str, op: &str, rhs: &str) -> Result<bool, String> {
    Ok(match op {
        "=" => lhs == rhs,
        "!=" => lhs != rhs,
        _ => {
            let (a, b) = (integer(lhs)?, integer(rhs)?);
            match op {
                "-eq" => a == b,
                "-ne" => a != b,
                "-lt" => a < b,
                "-le" => a <= b,
                "-gt" => a > b,
                _ => a >= b,
            }
        }
    })
}
