//! `printf format [arg…]`: conversions `%s %b %c %d %i %u %x %X %o %%` with flags `-+ 0#`,
//! a width and a precision; escapes `\n \t \r \\ \a \b \f \v \"` and octal `\NNN`. As in sh,
//! the format is reused while arguments remain, and missing arguments are empty (or 0).

use crate::interp::Shell;
use crate::io::{Fds, MAX_BUFFER_BYTES, Stop};

/// What formatting produced: the bytes, whether `\c` asked to stop, and errors to report.
#[derive(Default)]
struct Formatted {
    out: Vec<u8>,
    stop: bool,
    errors: Vec<String>,
    fatal: bool,
}

/// A width or precision (`digits`, empty for none), refused above [`MAX_BUFFER_BYTES`]: no
/// conversion may make more text than the shell keeps in memory.
fn bounded(digits: &str, what: &str) -> Result<usize, String> {
    if digits.is_empty() {
        return Ok(0);
    }
    match digits.parse::<usize>() {
        Ok(n) if n <= MAX_BUFFER_BYTES => Ok(n),
        _ => Err(format!(
            "{what} {digits} is larger than the {} MiB this shell keeps in memory",
            MAX_BUFFER_BYTES >> 20
        )),
    }
}

/// `printf format [arg…]`.
pub fn printf(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let Some((format, args)) = args.split_first() else {
        sh.err(fds, "printf: usage: printf format [arg …]")?;
        return Ok(2);
    };
    let mut result = Formatted::default();
    let mut next = 0;
    loop {
        let before = next;
        format_once(format, args, &mut next, &mut result);
        if result.stop || result.fatal || next >= args.len() || next == before {
            break;
        }
    }
    sh.out(fds, &result.out)?;
    for error in &result.errors {
        sh.err(fds, &format!("printf: {error}"))?;
    }
    Ok(i32::from(!result.errors.is_empty()))
}

/// Processes `\` escapes of `chars` starting after the backslash at `*i`; `in_b` for `%b`
/// (where `\c` stops everything and octal is `\0NNN`).
fn escape(chars: &[char], i: &mut usize, out: &mut Vec<u8>, in_b: bool) -> bool {
    let Some(&c) = chars.get(*i) else {
        out.push(b'\\');
        return false;
    };
    *i += 1;
    let simple = match c {
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        '\\' => Some('\\'),
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'v' => Some('\x0b'),
        'e' => Some('\x1b'),
        '"' => Some('"'),
        '\'' => Some('\''),
        _ => None,
    };
    if let Some(s) = simple {
        push_char(out, s);
        return false;
    }
    if c == 'c' && in_b {
        return true;
    }
    if c.is_digit(8) {
        // `\NNN` in the format; `\0NNN` in `%b`.
        let mut digits = if in_b && c == '0' {
            String::new()
        } else {
            c.to_string()
        };
        let max = 3;
        while digits.len() < max {
            match chars.get(*i) {
                Some(d) if d.is_digit(8) => {
                    digits.push(*d);
                    *i += 1;
                }
                _ => break,
            }
        }
        let value = u32::from_str_radix(&digits, 8).unwrap_or(0);
        out.push(u8::try_from(value & 0xff).unwrap_or(0));
        return false;
    }
    out.push(b'\\');
    push_char(out, c);
    false
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// One pass over the format, consuming arguments from `*next`.
fn format_once(format: &str, args: &[String], next: &mut usize, result: &mut Formatted) {
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '\\' => {
                if escape(&chars, &mut i, &mut result.out, false) {
                    result.stop = true;
                    return;
                }
            }
            '%' => {
                if chars.get(i) == Some(&'%') {
                    i += 1;
                    result.out.push(b'%');
                    continue;
                }
                let start = i - 1;
                let mut flags = String::new();
                while let Some(&f) = chars.get(i).filter(|f| "-+ 0#".contains(**f)) {
                    flags.push(f);
                    i += 1;
                }
                let mut width = String::new();
                while let Some(&d) = chars.get(i).filter(|d| d.is_ascii_digit()) {
                    width.push(d);
                    i += 1;
                }
                let mut precision = None;
                if chars.get(i) == Some(&'.') {
                    i += 1;
                    let mut digits = String::new();
                    while let Some(&d) = chars.get(i).filter(|d| d.is_ascii_digit()) {
                        digits.push(d);
                        i += 1;
                    }
                    precision = match bounded(&digits, "precision") {
                        Ok(p) => Some(p),
                        Err(message) => {
                            result.errors.push(message);
                            result.fatal = true;
                            return;
                        }
                    };
                }
                let width = match bounded(&width, "width") {
                    Ok(w) => w,
                    Err(message) => {
                        result.errors.push(message);
                        result.fatal = true;
                        return;
                    }
                };
                let arg_len = args.get(*next).map_or(0, String::len);
                if result.out.len() + width.max(arg_len) > MAX_BUFFER_BYTES {
                    result.errors.push(format!(
                        "the output is larger than the {} MiB this shell keeps in memory",
                        MAX_BUFFER_BYTES >> 20
                    ));
                    result.fatal = true;
                    return;
                }
                let Some(&conv) = chars.get(i) else {
                    let spec: String = chars[start..].iter().collect();
                    result.errors.push(format!("{spec}: missing conversion"));
                    result.fatal = true;
                    return;
                };
                i += 1;
                let spec = Spec {
                    left: flags.contains('-'),
                    zero: flags.contains('0'),
                    plus: flags.contains('+'),
                    space: flags.contains(' '),
                    alt: flags.contains('#'),
                    width,
                    precision,
                };
                let arg = args.get(*next);
                let known = "sbcdiuxXo".contains(conv);
                if known && arg.is_some() {
                    *next += 1;
                }
                let arg = arg.map_or("", String::as_str);
                match conv {
                    's' => {
                        let text: String = match spec.precision {
                            Some(p) => arg.chars().take(p).collect(),
                            None => arg.to_owned(),
                        };
                        spec.pad(&mut result.out, &text);
                    }
                    'b' => {
                        let arg_chars: Vec<char> = arg.chars().collect();
                        let mut bytes = Vec::new();
                        let mut j = 0;
                        while let Some(&c) = arg_chars.get(j) {
                            j += 1;
                            if c == '\\' {
                                if escape(&arg_chars, &mut j, &mut bytes, true) {
                                    result.stop = true;
                                    break;
                                }
                            } else {
                                push_char(&mut bytes, c);
                            }
                        }
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        spec.pad(&mut result.out, &text);
                        if result.stop {
                            return;
                        }
                    }
                    'c' => {
                        let text: String = arg.chars().take(1).collect();
                        spec.pad(&mut result.out, &text);
                    }
                    'd' | 'i' | 'u' | 'x' | 'X' | 'o' => {
                        let n = match parse_int(arg) {
                            Ok(n) => n,
                            Err(n) => {
                                result.errors.push(format!("{arg}: invalid number"));
                                n
                            }
                        };
                        let (negative, digits) = match conv {
                            'd' | 'i' => (n < 0, n.unsigned_abs().to_string()),
                            'u' => (false, (n as u64).to_string()),
                            'x' => (false, format!("{:x}", n as u64)),
                            'X' => (false, format!("{:X}", n as u64)),
                            _ => (false, format!("{:o}", n as u64)),
                        };
                        let mut digits = digits;
                        if let Some(p) = spec.precision
                            && digits.len() < p
                        {
                            digits = "0".repeat(p - digits.len()) + &digits;
                        }
                        let prefix = if negative {
                            "-"
                        } else if spec.plus && matches!(conv, 'd' | 'i') {
                            "+"
                        } else if spec.space && matches!(conv, 'd' | 'i') {
                            " "
                        } else if spec.alt && n != 0 && conv == 'x' {
                            "0x"
                        } else if spec.alt && n != 0 && conv == 'X' {
                            "0X"
                        } else if spec.alt && conv == 'o' && !digits.starts_with('0') {
                            "0"
                        } else {
                            ""
                        };
                        spec.pad_number(&mut result.out, prefix, &digits);
                    }
                    other => {
                        let spec_text: String = chars[start..i].iter().collect();
                        let what = if "feEgGaA".contains(other) {
                            "floating-point conversions are not supported by this sandboxed shell"
                        } else {
                            "invalid conversion"
                        };
                        result.errors.push(format!("{spec_text}: {what}"));
                        result.fatal = true;
                        return;
                    }
                }
            }
            _ => push_char(&mut result.out, c),
        }
    }
}

/// A parsed conversion specification.
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alt: bool,
    width: usize,
    precision: Option<usize>,
}

impl Spec {
    fn pad(&self, out: &mut Vec<u8>, text: &str) {
        let len = text.chars().count();
        let fill = self.width.saturating_sub(len);
        if !self.left {
            out.extend(std::iter::repeat_n(b' ', fill));
        }
        out.extend_from_slice(text.as_bytes());
        if self.left {
            out.extend(std::iter::repeat_n(b' ', fill));
        }
    }

    fn pad_number(&self, out: &mut Vec<u8>, prefix: &str, digits: &str) {
        let len = prefix.len() + digits.len();
        let fill = self.width.saturating_sub(len);
        if self.zero && !self.left && self.precision.is_none() {
            out.extend_from_slice(prefix.as_bytes());
            out.extend(std::iter::repeat_n(b'0', fill));
            out.extend_from_slice(digits.as_bytes());
        } else {
            self.pad(out, &format!("{prefix}{digits}"));
        }
    }
}

/// An integer argument: decimal, `0x` hex, `0` octal, or `'c` (the character's code).
/// On error, the value of the valid prefix.
fn parse_int(arg: &str) -> Result<i64, i64> {
    let text = arg.trim();
    if text.is_empty() {
        return Ok(0);
    }
    if let Some(rest) = text.strip_prefix(['\'', '"']) {
        return Ok(rest.chars().next().map_or(0, |c| i64::from(u32::from(c))));
    }
    let (negative, body) = match text.strip_prefix('-') {
        Some(body) => (true, body),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (radix, digits) =
        if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, hex)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    let valid: String = digits.chars().take_while(|c| c.is_digit(radix)).collect();
    let value = match i64::from_str_radix(&valid, radix) {
        Ok(value) => value,
        Err(_) if valid.is_empty() => 0,
        // Out of range.
        Err(_) => return Err(if negative { i64::MIN } else { i64::MAX }),
    };
    let value = if negative { -value } else { value };
    if valid.len() == digits.len() && !digits.is_empty() {
        Ok(value)
    } else {
        Err(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(format: &str, args: &[&str]) -> (String, Vec<String>) {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let mut result = Formatted::default();
        let mut next = 0;
        loop {
            let before = next;
            format_once(format, &args, &mut next, &mut result);
            if result.stop || result.fatal || next >= args.len() || next == before {
                break;
            }
        }
        (String::from_utf8(result.out).unwrap(), result.errors)
    }

    #[test]
    fn widths_and_output_are_bounded() {
        for format in ["%999999999s", "%99999999999999999999999d", "%.99999999999s"] {
            let (out, errors) = fmt(format, &["x"]);
            assert!(out.is_empty(), "{format}");
            assert_eq!(errors.len(), 1, "{format}: {errors:?}");
            assert!(errors[0].contains("16 MiB"), "{format}: {errors:?}");
        }
        let (out, errors) = fmt("%9000000s", &["a", "b", "c"]);
        assert_eq!(out.len(), 9_000_000, "the first fits, the second would not");
        assert!(errors[0].contains("larger than the 16 MiB"), "{errors:?}");
    }

    #[test]
    fn conversions_flags_and_reuse() {
        assert_eq!(fmt("%s-%d\\n", &["a", "1", "b", "2"]).0, "a-1\nb-2\n");
        assert_eq!(
            fmt(
                "[%5s|%-5s|%05d|%x|%X|%o|%#x]",
                &["ab", "cd", "-42", "255", "255", "8", "255"]
            )
            .0,
            "[   ab|cd   |-0042|ff|FF|10|0xff]"
        );
        assert_eq!(
            fmt("%.2s %+d %i %c %%", &["abc", "5", "0x10", "xyz"]).0,
            "ab +5 16 x %"
        );
        assert_eq!(fmt("%s|%d|", &[]).0, "|0|");
        assert_eq!(fmt("%b", &["a\\tb\\0101\\c", "ignored"]).0, "a\tbA");
        assert_eq!(fmt("\\101\\\\", &[]).0, "A\\");
        assert_eq!(fmt("%d", &["'A"]).0, "65");
        assert_eq!(fmt("%.3d", &["7"]).0, "007");
    }

    #[test]
    fn errors_are_reported() {
        let (out, errors) = fmt("%d %d\\n", &["12abc", "3"]);
        assert_eq!(out, "12 3\n");
        assert_eq!(errors, vec!["12abc: invalid number"]);
        let (_, errors) = fmt("%f", &["1.5"]);
        assert!(errors[0].contains("floating-point"), "{errors:?}");
        let (_, errors) = fmt("%q", &["x"]);
        assert_eq!(errors, vec!["%q: invalid conversion"]);
    }
}
