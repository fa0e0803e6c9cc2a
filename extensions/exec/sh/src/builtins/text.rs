//! Text builtins: `echo`, `wc`, `head`, `tail`, `sort`, `basename`, `dirname`.

use std::cmp::Ordering;

use super::{lines, read_operand};
use crate::interp::Shell;
use crate::io::{Fds, Stop};

/// `echo [-n] [arg…]`: the arguments separated by spaces. Backslashes are printed as they
/// are (use `printf` for escapes); `-n` (first arguments only) omits the newline.
pub fn echo(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let mut newline = true;
    let mut rest = args;
    while let Some((first, tail)) = rest.split_first() {
        if first != "-n" {
            break;
        }
        newline = false;
        rest = tail;
    }
    let mut text = rest.join(" ");
    if newline {
        text.push('\n');
    }
    sh.out(fds, text.as_bytes())?;
    Ok(0)
}

/// The inputs of a filter: the operands, or stdin (`-`) when there are none.
fn inputs(operands: Vec<String>) -> Vec<String> {
    if operands.is_empty() {
        vec!["-".to_owned()]
    } else {
        operands
    }
}

/// `wc [-lwmc] [file…]`: counts lines, words, characters, bytes.
pub fn wc(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "wc", args, "lwmc");
    let mut which: Vec<char> = ['l', 'w', 'm', 'c']
        .into_iter()
        .filter(|c| opts.has(*c))
        .collect();
    if which.is_empty() {
        which = vec!['l', 'w', 'c'];
    }
    let named = !opts.operands.is_empty();
    let many = opts.operands.len() > 1;
    let mut totals = [0usize; 4];
    let mut status = 0;
    let mut report = String::new();
    for operand in inputs(opts.operands) {
        let data = match read_operand(sh, fds, &operand) {
            Ok(data) => data,
            Err(message) => {
                sh.err(fds, &format!("wc: {message}"))?;
                status = 1;
                continue;
            }
        };
        let text = String::from_utf8_lossy(&data);
        let counts = [
            data.iter().filter(|&&b| b == b'\n').count(),
            text.split_whitespace().count(),
            text.chars().count(),
            data.len(),
        ];
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
        report.push_str(&format_counts(&which, &counts));
        if named {
            report.push(' ');
            report.push_str(&operand);
        }
        report.push('\n');
    }
    if many {
        report.push_str(&format_counts(&which, &totals));
        report.push_str(" total\n");
    }
    sh.out(fds, report.as_bytes())?;
    Ok(status)
}

fn format_counts(which: &[char], counts: &[usize; 4]) -> String {
    which
        .iter()
        .map(|c| {
            let index = match c {
                'l' => 0,
                'w' => 1,
                'm' => 2,
                _ => 3,
            };
            counts[index].to_string()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `head [-n N] [file…]` (`head`) or `tail [-n [+]N] [file…]`; `-N` is `-n N`.
pub fn head_tail(sh: &mut Shell<'_>, args: &[String], fds: Fds, head: bool) -> Result<i32, Stop> {
    let name = if head { "head" } else { "tail" };
    // `-N` is the historical form of `-n N`.
    let mut args = args.to_vec();
    let mut i = 0;
    while let Some(cluster) = args.get(i).and_then(|arg| arg.strip_prefix('-')) {
        if cluster.is_empty() || cluster == "-" {
            break;
        }
        if cluster.bytes().all(|b| b.is_ascii_digit()) {
            args[i] = format!("-n{cluster}");
        } else if cluster == "n" {
            i += 1; // its argument
        }
        i += 1;
    }
    let opts = parse_opts!(sh, fds, name, &args, "n:");
    let count = opts.value('n').map(str::to_owned);
    let operands = opts.operands;
    let count = count.unwrap_or_else(|| "10".to_owned());
    let (from_start, digits) = match count.strip_prefix('+') {
        Some(digits) if !head => (true, digits),
        _ => (false, count.as_str()),
    };
    let Ok(n) = digits.parse::<usize>() else {
        sh.err(fds, &format!("{name}: invalid number of lines: '{count}'"))?;
        return Ok(2);
    };
    let headers = operands.len() > 1;
    let mut status = 0;
    for (index, operand) in inputs(operands).iter().enumerate() {
        let data = match read_operand(sh, fds, operand) {
            Ok(data) => data,
            Err(message) => {
                sh.err(fds, &format!("{name}: cannot open {message}"))?;
                status = 1;
                continue;
            }
        };
        if headers {
            let sep = if index > 0 { "\n" } else { "" };
            sh.out(fds, format!("{sep}==> {operand} <==\n").as_bytes())?;
        }
        let all: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
        let chosen = if head {
            &all[..n.min(all.len())]
        } else if from_start {
            &all[n.saturating_sub(1).min(all.len())..]
        } else {
            &all[all.len().saturating_sub(n)..]
        };
        sh.out(fds, &chosen.concat())?;
    }
    Ok(status)
}

/// The numeric prefix of a line for `sort -n` (leading blanks, `-`, digits, `.digits`).
fn numeric_key(line: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_start();
    let mut end = 0;
    let bytes = text.as_bytes();
    if bytes.first() == Some(&b'-') {
        end = 1;
    }
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    if bytes.get(end) == Some(&b'.') {
        end += 1;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    text[..end].parse().unwrap_or(0.0)
}

/// `sort [-nru] [file…]`: sorts lines bytewise (the C locale), or by numeric prefix.
pub fn sort(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "sort", args, "nru");
    let mut data = Vec::new();
    for operand in inputs(opts.operands.clone()) {
        match read_operand(sh, fds, &operand) {
            Ok(mut bytes) => {
                if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                    bytes.push(b'\n');
                }
                data.extend(bytes);
            }
            Err(message) => {
                sh.err(fds, &format!("sort: cannot read: {message}"))?;
                return Ok(2);
            }
        }
    }
    let numeric = opts.has('n');
    let key = |a: &[u8], b: &[u8]| -> Ordering {
        if numeric {
            numeric_key(a).total_cmp(&numeric_key(b))
        } else {
            a.cmp(b)
        }
    };
    let mut sorted = lines(&data);
    sorted.sort_by(|a, b| {
        let order = key(a, b).then_with(|| a.cmp(b));
        if opts.has('r') {
            order.reverse()
        } else {
            order
        }
    });
    if opts.has('u') {
        sorted.dedup_by(|a, b| key(a, b) == Ordering::Equal);
    }
    let mut out = Vec::with_capacity(data.len());
    for line in sorted {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    sh.out(fds, &out)?;
    Ok(0)
}

/// `basename string [suffix]`.
pub fn basename(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let (path, suffix) = match args {
        [path] => (path, None),
        [path, suffix] => (path, Some(suffix)),
        [] => {
            sh.err(fds, "basename: missing operand")?;
            return Ok(2);
        }
        [_, _, extra, ..] => {
            sh.err(fds, &format!("basename: extra operand '{extra}'"))?;
            return Ok(2);
        }
    };
    let trimmed = path.trim_end_matches('/');
    let mut name = if trimmed.is_empty() && !path.is_empty() {
        "/"
    } else {
        trimmed.rsplit('/').next().unwrap_or(trimmed)
    };
    if let Some(suffix) = suffix
        && name != suffix.as_str()
        && let Some(stripped) = name.strip_suffix(suffix.as_str())
    {
        name = stripped;
    }
    sh.out(fds, format!("{name}\n").as_bytes())?;
    Ok(0)
}

/// `dirname string`.
pub fn dirname(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let [path] = args else {
        sh.err(fds, "dirname: expected exactly one operand")?;
        return Ok(2);
    };
    let trimmed = path.trim_end_matches('/');
    let dir = if trimmed.is_empty() {
        if path.starts_with('/') { "/" } else { "." }
    } else {
        match trimmed.rfind('/') {
            None => ".",
            Some(at) => {
                let parent = trimmed[..at].trim_end_matches('/');
                if parent.is_empty() { "/" } else { parent }
            }
        }
    };
    sh.out(fds, format!("{dir}\n").as_bytes())?;
    Ok(0)
}
