//! Shell patterns (`*`, `?`, `[…]`) and pathname expansion of unquoted words against the
//! workspace.
//!
//! Quoted characters are always literal. As in sh, `*` and `?` never match `/`, a leading
//! `.` of a file name must be matched explicitly, matches are sorted (byte order, the C
//! locale), and a pattern that matches nothing is left as it was written.

use std::fs;
use std::path::Path;

use crate::fs::{WsPath, resolve};

/// Most paths one pattern may expand to.
pub const MAX_MATCHES: usize = 100_000;

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatChar {
    /// A literal character.
    Lit(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters.
    Star,
    /// `[…]`: one character of a set.
    Class(Class),
}

/// A bracket expression: `[abc]`, `[a-z]`, `[!x]`, `[^x]`, `[[:digit:]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    negated: bool,
    items: Vec<ClassItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClassItem {
    Char(char),
    Range(char, char),
    Named(Named),
}

/// A character class name of `[[:name:]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Alpha,
    Digit,
    Alnum,
    Upper,
    Lower,
    Space,
    Blank,
    Punct,
    Xdigit,
}

impl Named {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "alpha" => Self::Alpha,
            "digit" => Self::Digit,
            "alnum" => Self::Alnum,
            "upper" => Self::Upper,
            "lower" => Self::Lower,
            "space" => Self::Space,
            "blank" => Self::Blank,
            "punct" => Self::Punct,
            "xdigit" => Self::Xdigit,
            _ => return None,
        })
    }

    fn matches(self, c: char) -> bool {
        match self {
            Self::Alpha => c.is_alphabetic(),
            Self::Digit => c.is_ascii_digit(),
            Self::Alnum => c.is_alphanumeric(),
            Self::Upper => c.is_uppercase(),
            Self::Lower => c.is_lowercase(),
            Self::Space => c.is_whitespace(),
            Self::Blank => c == ' ' || c == '\t',
            Self::Punct => c.is_ascii_punctuation(),
            Self::Xdigit => c.is_ascii_hexdigit(),
        }
    }
}

impl Class {
    /// Whether `c` is in the set.
    pub fn matches(&self, c: char) -> bool {
        let hit = self.items.iter().any(|item| match item {
            ClassItem::Char(x) => *x == c,
            ClassItem::Range(lo, hi) => (*lo..=*hi).contains(&c),
            ClassItem::Named(named) => named.matches(c),
        });
        hit != self.negated
    }

    /// Parses a bracket expression from `chars` (each with its quoting) starting right after
    /// the `[`; answers the class and how many characters it used including the closing `]`,
    /// or `None` when there is no closing `]` (then `[` is an ordinary character).
    pub fn parse(chars: &[(char, bool)]) -> Option<(Class, usize)> {
        let mut i = 0;
        let mut negated = false;
        if let Some(('!' | '^', false)) = chars.first() {
            negated = true;
            i = 1;
        }
        let start = i;
        let mut items = Vec::new();
        loop {
            let (c, quoted) = *chars.get(i)?;
            if c == ']' && !quoted && i > start {
                return Some((Class { negated, items }, i + 1));
            }
            if c == '[' && !quoted && chars.get(i + 1) == Some(&(':', false)) {
                let rest = &chars[i + 2..];
                let end = rest
                    .windows(2)
                    .position(|w| w == [(':', false), (']', false)])?;
                let name: String = rest[..end].iter().map(|(c, _)| c).collect();
                items.push(ClassItem::Named(Named::parse(&name)?));
                i += 2 + end + 2;
                continue;
            }
            match (chars.get(i + 1), chars.get(i + 2)) {
                (Some(('-', false)), Some(&(hi, hq))) if hi != ']' || hq => {
                    items.push(ClassItem::Range(c, hi));
                    i += 3;
                }
                _ => {
                    items.push(ClassItem::Char(c));
                    i += 1;
                }
            }
        }
    }
}

/// Compiles `chars` (each with its quoting) into a pattern.
pub fn compile(chars: &[(char, bool)]) -> Vec<PatChar> {
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while let Some(&(c, quoted)) = chars.get(i) {
        i += 1;
        if quoted {
            out.push(PatChar::Lit(c));
            continue;
        }
        match c {
            '*' => out.push(PatChar::Star),
            '?' => out.push(PatChar::Any),
            '[' => match Class::parse(&chars[i..]) {
                Some((class, used)) => {
                    out.push(PatChar::Class(class));
                    i += used;
                }
                None => out.push(PatChar::Lit('[')),
            },
            _ => out.push(PatChar::Lit(c)),
        }
    }
    out
}

/// Whether the pattern has anything but literals.
pub fn is_pattern(pattern: &[PatChar]) -> bool {
    pattern.iter().any(|p| !matches!(p, PatChar::Lit(_)))
}

/// Whether `pattern` matches all of `text` (linear-time wildcard matching).
pub fn matches(pattern: &[PatChar], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let c = text[t];
        match pattern.get(p) {
            Some(PatChar::Star) => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(PatChar::Any) => {
                p += 1;
                t += 1;
                continue;
            }
            Some(PatChar::Lit(x)) if *x == c => {
                p += 1;
                t += 1;
                continue;
            }
            Some(PatChar::Class(class)) if class.matches(c) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|x| *x == PatChar::Star)
}

/// Why pathname expansion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooManyMatches;

/// Expands the word `chars` (each with its quoting) against the workspace at `root`, from the
/// directory `cwd`. Answers the sorted matches as the script would write them, or an empty
/// list when nothing matches or the word has no unquoted `*`, `?` or `[…]`.
///
/// # Errors
///
/// When more than [`MAX_MATCHES`] paths match.
pub fn expand_path(
    root: &Path,
    cwd: &WsPath,
    chars: &[(char, bool)],
) -> Result<Vec<String>, TooManyMatches> {
    let segments: Vec<&[(char, bool)]> = chars.split(|&(c, _)| c == '/').collect();
    let compiled: Vec<Vec<PatChar>> = segments.iter().map(|s| compile(s)).collect();
    let Some(first_glob) = compiled.iter().position(|p| is_pattern(p)) else {
        return Ok(Vec::new());
    };
    // The literal directory before the first pattern segment.
    let prefix: String = segments[..first_glob]
        .iter()
        .map(|s| s.iter().map(|(c, _)| *c).collect::<String>())
        .collect::<Vec<_>>()
        .join("/");
    let (base, written) = if first_glob == 0 {
        (cwd.clone(), String::new())
    } else {
        // `/*` resolves to nothing: only `/workspace/…` is reachable.
        match resolve(cwd, if prefix.is_empty() { "/" } else { &prefix }) {
            Ok(path) => (path, format!("{prefix}/")),
            Err(_) => return Ok(Vec::new()),
        }
    };
    let mut candidates = vec![(base, written)];
    let rest = &compiled[first_glob..];
    for (index, segment) in rest.iter().enumerate() {
        let last = index + 1 == rest.len();
        let mut next = Vec::new();
        if segment.is_empty() {
            // A trailing `/` (or `//`): keep directories only.
            for (path, mut written) in candidates {
                if path.real(root).is_dir() {
                    if !written.ends_with('/') {
                        written.push('/');
                    }
                    next.push((path, written));
                }
            }
            candidates = next;
            continue;
        }
        if !is_pattern(segment) {
            let name: String = segment
                .iter()
                .map(|p| match p {
                    PatChar::Lit(c) => *c,
                    _ => '?',
                })
                .collect();
            for (path, written) in candidates {
                if let Ok(joined) = resolve(&path, &name)
                    && (if last {
                        fs::symlink_metadata(joined.real(root)).is_ok()
                    } else {
                        joined.real(root).is_dir()
                    })
                {
                    let sep = if last { "" } else { "/" };
                    next.push((joined, format!("{written}{name}{sep}")));
                }
            }
            candidates = next;
            continue;
        }
        let dot_ok = matches!(segment.first(), Some(PatChar::Lit('.')));
        for (path, written) in candidates {
            let Ok(entries) = fs::read_dir(path.real(root)) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| (dot_ok || !name.starts_with('.')) && matches(segment, name))
                .collect();
            names.sort();
            for name in names {
                let joined = path.join(&name);
                if !last && !joined.real(root).is_dir() {
                    continue;
                }
                let sep = if last { "" } else { "/" };
                next.push((joined, format!("{written}{name}{sep}")));
                if next.len() > MAX_MATCHES {
                    return Err(TooManyMatches);
                }
            }
        }
        candidates = next;
    }
    let mut out: Vec<String> = candidates.into_iter().map(|(_, written)| written).collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(text: &str) -> Vec<PatChar> {
        compile(&text.chars().map(|c| (c, false)).collect::<Vec<_>>())
    }

    #[test]
    fn wildcards_and_classes() {
        assert!(matches(&pat("*.rs"), "main.rs"));
        assert!(!matches(&pat("*.rs"), "main.rsx"));
        assert!(matches(&pat("a*b*c"), "axxbyyc"));
        assert!(matches(&pat("?"), "é"));
        assert!(matches(&pat("[a-c]x"), "bx"));
        assert!(matches(&pat("[!a-c]x"), "dx"));
        assert!(!matches(&pat("[!a-c]x"), "ax"));
        assert!(matches(&pat("[]]"), "]"));
        assert!(matches(&pat("[[:digit:]]*"), "7up"));
        assert!(matches(&pat("[a"), "[a"));
        assert!(matches(&pat("*"), ""));
        assert!(!matches(&pat("?"), ""));
        // Quoted characters are literal.
        let quoted = compile(&[('*', true), ('.', false)]);
        assert!(matches(&quoted, "*."));
        assert!(!matches(&quoted, "a."));
        assert!(!is_pattern(&quoted));
    }

    #[test]
    fn many_stars_stay_linear() {
        let pattern = pat(&"a*".repeat(50));
        let text = "a".repeat(10_000) + "b";
        assert!(matches(&pattern, &text));
        assert!(!matches(&pat(&("a*".repeat(50) + "c")), &text));
    }
}
