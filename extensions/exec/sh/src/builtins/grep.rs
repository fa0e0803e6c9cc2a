//! `grep [-FqvcilnxE…] [-e pattern] pattern [file…]` with basic regular expressions limited
//! to `.`, `*`, `^`, `$`, bracket expressions and `\` escapes of special characters, or fixed
//! strings with `-F`. Anything else in a pattern (`\(`, `\{`, `\|`, `\+`, back-references) is
//! refused, never guessed at. Matching is linear in the line length.

use super::lines;
use crate::interp::Shell;
use crate::io::{Fds, Stop};
use crate::pattern::Class;

/// One element of a basic regular expression.
#[derive(Debug, Clone)]
enum Atom {
    Char(char),
    Any,
    Class(Class),
}

/// A compiled basic regular expression.
#[derive(Debug, Clone)]
struct Regex {
    items: Vec<(Atom, bool)>,
    start: bool,
    end: bool,
}

impl Regex {
    fn new(pattern: &str, ignore_case: bool) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut items: Vec<(Atom, bool)> = Vec::new();
        let mut i = 0;
        let start = chars.first() == Some(&'^');
        if start {
            i = 1;
        }
        let fold = |c: char| if ignore_case { lower(c) } else { c };
        while let Some(&c) = chars.get(i) {
            i += 1;
            let atom = match c {
                '$' if i == chars.len() => {
                    return Ok(Self {
                        items,
                        start,
                        end: true,
                    });
                }
                '.' => Atom::Any,
                '*' => match items.last_mut() {
                    Some((_, star)) => {
                        *star = true;
                        continue;
                    }
                    None => Atom::Char('*'),
                },
                '[' => {
                    let rest: Vec<(char, bool)> = chars[i..].iter().map(|&c| (c, false)).collect();
                    let Some((class, used)) = Class::parse(&rest) else {
                        return Err("unmatched `[`".to_owned());
                    };
                    i += used;
                    Atom::Class(class)
                }
                '\\' => match chars.get(i) {
                    None => return Err("trailing backslash".to_owned()),
                    Some(&e) => {
                        i += 1;
                        if matches!(e, '.' | '*' | '[' | ']' | '\\' | '^' | '$' | '/' | '-') {
                            Atom::Char(fold(e))
                        } else {
                            return Err(format!(
                                "`\\{e}` is not supported by this shell's grep (it knows `.`, `*`, `^`, `$`, `[…]` and `\\` before those; -F matches fixed strings)"
                            ));
                        }
                    }
                },
                _ => Atom::Char(fold(c)),
            };
            items.push((atom, false));
        }
        Ok(Self {
            items,
            start,
            end: false,
        })
    }

    fn atom_matches(atom: &Atom, c: char, ignore_case: bool) -> bool {
        match atom {
            Atom::Char(x) => *x == c,
            Atom::Any => true,
            Atom::Class(class) => {
                class.matches(c)
                    || (ignore_case
                        && (c.to_uppercase().any(|u| class.matches(u))
                            || c.to_lowercase().any(|l| class.matches(l))))
            }
        }
    }

    /// Whether the regex matches somewhere in `line` (already case-folded for `-i`).
    fn is_match(&self, line: &[char], ignore_case: bool) -> bool {
        let m = self.items.len();
        let closure = |set: &mut Vec<bool>| {
            for i in 0..m {
                if set[i] && self.items[i].1 {
                    set[i + 1] = true;
                }
            }
        };
        let mut current = vec![false; m + 1];
        current[0] = true;
        closure(&mut current);
        for &c in line {
            if current[m] && !self.end {
                return true;
            }
            let mut next = vec![false; m + 1];
            for i in 0..m {
                if current[i] && Self::atom_matches(&self.items[i].0, c, ignore_case) {
                    if self.items[i].1 {
                        next[i] = true;
                    } else {
                        next[i + 1] = true;
                    }
                }
            }
            if !self.start {
                next[0] = true;
            }
            closure(&mut next);
            current = next;
        }
        current[m]
    }
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// The patterns, compiled.
enum Matcher {
    Fixed(Vec<Vec<char>>),
    Regex(Vec<Regex>),
}

impl Matcher {
    fn is_match(&self, line: &[char], ignore_case: bool, whole: bool) -> bool {
        match self {
            Matcher::Fixed(patterns) => patterns.iter().any(|p| {
                if whole {
                    line == p.as_slice()
                } else {
                    p.is_empty() || line.windows(p.len()).any(|w| w == p.as_slice())
                }
            }),
            Matcher::Regex(regexes) => regexes.iter().any(|r| r.is_match(line, ignore_case)),
        }
    }
}

/// `grep`: prints the lines that match; status 0 when one did, 1 when none, 2 on error.
pub fn grep(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "grep", args, "FqvcilnxhHsGEe:");
    if opts.has('E') {
        sh.err(fds, "grep: -E (extended regular expressions) is not supported by this sandboxed shell; basic patterns (`.`, `*`, `^`, `$`, `[…]`) and -F are")?;
        return Ok(2);
    }
    let mut patterns: Vec<String> = opts.values('e').map(str::to_owned).collect();
    let mut operands = opts.operands.clone();
    if patterns.is_empty() {
        if operands.is_empty() {
            sh.err(
                fds,
                "grep: usage: grep [-FqvcilnxhHs] [-e pattern] pattern [file …]",
            )?;
            return Ok(2);
        }
        patterns.push(operands.remove(0));
    }
    let has = |c: char| opts.has(c);
    let ignore_case = has('i');
    // A pattern with newlines is several patterns, as in grep.
    let patterns: Vec<String> = patterns
        .iter()
        .flat_map(|p| p.split('\n').map(str::to_owned).collect::<Vec<_>>())
        .map(|p| {
            if ignore_case {
                p.chars().map(lower).collect()
            } else {
                p
            }
        })
        .collect();
    let matcher = if has('F') {
        Matcher::Fixed(patterns.iter().map(|p| p.chars().collect()).collect())
    } else {
        let mut regexes = Vec::new();
        for pattern in &patterns {
            let source = if has('x') {
                let inner = pattern.strip_prefix('^').unwrap_or(pattern);
                let inner = if inner.ends_with("\\$") {
                    inner
                } else {
                    inner.strip_suffix('$').unwrap_or(inner)
                };
                format!("^{inner}$")
            } else {
                pattern.clone()
            };
            match Regex::new(&source, ignore_case) {
                Ok(regex) => regexes.push(regex),
                Err(message) => {
                    sh.err(fds, &format!("grep: {message}"))?;
                    return Ok(2);
                }
            }
        }
        Matcher::Regex(regexes)
    };
    let names = (operands.len() > 1 && !has('h')) || has('H');
    let inputs = if operands.is_empty() {
        vec!["-".to_owned()]
    } else {
        operands
    };
    let mut selected_any = false;
    let mut error = false;
    let mut out = Vec::new();
    for operand in &inputs {
        let data = match super::read_operand(sh, fds, operand) {
            Ok(data) => data,
            Err(message) => {
                if !has('s') {
                    sh.err(fds, &format!("grep: {message}"))?;
                }
                error = true;
                continue;
            }
        };
        let display = if operand == "-" {
            "(standard input)"
        } else {
            operand.as_str()
        };
        let mut count = 0usize;
        for (number, line) in lines(&data).into_iter().enumerate() {
            let text = String::from_utf8_lossy(line);
            let chars: Vec<char> = if ignore_case {
                text.chars().map(lower).collect()
            } else {
                text.chars().collect()
            };
            let whole = has('x') && has('F');
            if matcher.is_match(&chars, ignore_case, whole) == has('v') {
                continue;
            }
            count += 1;
            selected_any = true;
            if has('q') {
                return Ok(0);
            }
            if has('c') || has('l') {
                continue;
            }
            if names {
                out.extend_from_slice(display.as_bytes());
                out.push(b':');
            }
            if has('n') {
                out.extend_from_slice(format!("{}:", number + 1).as_bytes());
            }
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        if has('l') && count > 0 {
            out.extend_from_slice(format!("{display}\n").as_bytes());
        } else if has('c') {
            let prefix = if names {
                format!("{display}:")
            } else {
                String::new()
            };
            out.extend_from_slice(format!("{prefix}{count}\n").as_bytes());
        }
    }
    sh.out(fds, &out)?;
    Ok(if error {
        2
    } else if selected_any {
        0
    } else {
        1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(pattern: &str, line: &str) -> bool {
        let chars: Vec<char> = line.chars().collect();
        Regex::new(pattern, false).unwrap().is_match(&chars, false)
    }

    #[test]
    fn basic_regular_expressions() {
        assert!(re("b", "abc"));
        assert!(re("^ab", "abc"));
        assert!(!re("^bc", "abc"));
        assert!(re("bc$", "abc"));
        assert!(!re("ab$", "abc"));
        assert!(re("a.c", "xabcx"));
        assert!(re("ab*c", "ac"));
        assert!(re("ab*c", "abbbc"));
        assert!(re("^[0-9][0-9]*$", "2024"));
        assert!(!re("^[0-9][0-9]*$", "20x4"));
        assert!(re("*a", "x*a"));
        assert!(re("1\\.2", "v1.2"));
        assert!(!re("1\\.2", "v1x2"));
        assert!(re("", "anything"));
        assert!(re("^$", ""));
        assert!(re("a$b", "a$b"));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(Regex::new("\\(a\\)", false).unwrap_err().contains("`\\(`"));
        assert!(Regex::new("a\\+", false).is_err());
        assert!(Regex::new("[abc", false).unwrap_err().contains("unmatched"));
        assert!(Regex::new("a\\", false).unwrap_err().contains("trailing"));
    }
}
