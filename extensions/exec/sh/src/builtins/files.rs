//! File builtins working on the workspace: `cat`, `mkdir`, `rm`, `cp`, `mv`, `touch`, `ls`,
//! `tee`, `sha256sum`.
//!
//! Every path goes through [`Shell::resolve`], so nothing outside the workspace is named,
//! let alone touched: such an operand fails with a message and status 1 (`ls`: 2).

use std::fs::{self, File, OpenOptions};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::read_operand;
use crate::fs::{WsPath, describe};
use crate::interp::Shell;
use crate::io::{Fds, Stop};

/// Resolves `operand` for the builtin `name`, printing why it cannot be used.
fn resolve_or_report(
    sh: &mut Shell<'_>,
    fds: Fds,
    name: &str,
    operand: &str,
) -> Result<Option<WsPath>, Stop> {
    match sh.resolve(operand) {
        Ok(path) => Ok(Some(path)),
        Err(err) => {
            sh.err(fds, &format!("{name}: {err}"))?;
            Ok(None)
        }
    }
}

/// `cat [file…]`: concatenates files (`-` or none: stdin).
pub fn cat(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "cat", args, "u");
    let operands = if opts.operands.is_empty() {
        vec!["-".to_owned()]
    } else {
        opts.operands
    };
    let mut status = 0;
    for operand in &operands {
        match read_operand(sh, fds, operand) {
            Ok(data) => sh.out(fds, &data)?,
            Err(message) => {
                sh.err(fds, &format!("cat: {message}"))?;
                status = 1;
            }
        }
    }
    Ok(status)
}

/// `mkdir [-p] dir…`.
pub fn mkdir(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "mkdir", args, "p");
    if opts.operands.is_empty() {
        sh.err(fds, "mkdir: missing operand")?;
        return Ok(2);
    }
    let mut status = 0;
    for operand in &opts.operands {
        let Some(path) = resolve_or_report(sh, fds, "mkdir", operand)? else {
            status = 1;
            continue;
        };
        let real = sh.real(&path);
        let result = if opts.has('p') {
            if real.is_file() {
                Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
            } else {
                fs::create_dir_all(&real)
            }
        } else {
            fs::create_dir(&real)
        };
        if let Err(err) = result {
            sh.err(
                fds,
                &format!(
                    "mkdir: cannot create directory '{operand}': {}",
                    describe(&err)
                ),
            )?;
            status = 1;
        }
    }
    Ok(status)
}

/// `rm [-rf] path…`.
pub fn rm(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "rm", args, "rRf");
    let force = opts.has('f');
    let recursive = opts.has('r') || opts.has('R');
    if opts.operands.is_empty() && !force {
        sh.err(fds, "rm: missing operand")?;
        return Ok(2);
    }
    let mut status = 0;
    for operand in &opts.operands {
        let last = operand
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        if matches!(last, "." | "..") {
            sh.err(
                fds,
                &format!("rm: refusing to remove '.' or '..' directory: skipping '{operand}'"),
            )?;
            status = 1;
            continue;
        }
        let Some(path) = resolve_or_report(sh, fds, "rm", operand)? else {
            status = 1;
            continue;
        };
        if path.is_root() {
            sh.err(
                fds,
                &format!("rm: refusing to remove the workspace root '{operand}'"),
            )?;
            status = 1;
            continue;
        }
        let real = sh.real(&path);
        let result = match fs::symlink_metadata(&real) {
            Err(_) if force => Ok(()),
            Err(err) => Err(err),
            Ok(meta) if meta.is_dir() => {
                if recursive {
                    fs::remove_dir_all(&real)
                } else {
                    Err(std::io::Error::from(std::io::ErrorKind::IsADirectory))
                }
            }
            Ok(_) => fs::remove_file(&real),
        };
        if let Err(err) = result {
            sh.err(
                fds,
                &format!("rm: cannot remove '{operand}': {}", describe(&err)),
            )?;
            status = 1;
        }
    }
    Ok(status)
}

/// Where `source` goes for `cp`/`mv` with the operand `dest`: inside it when it is a
/// directory.
fn target(sh: &Shell<'_>, source: &WsPath, dest: &WsPath) -> WsPath {
    if sh.real(dest).is_dir() {
        dest.join(source.name())
    } else {
        dest.clone()
    }
}

/// The operands of `cp`/`mv` (as written and resolved) and the resolved destination.
type Operands = (Vec<(String, WsPath)>, WsPath);

/// The sources and destination of `cp`/`mv`, or the status after a usage error.
fn sources_and_dest(
    sh: &mut Shell<'_>,
    fds: Fds,
    name: &str,
    operands: &[String],
) -> Result<Result<Operands, i32>, Stop> {
    let Some((dest_operand, sources)) = operands.split_last() else {
        sh.err(fds, &format!("{name}: missing file operand"))?;
        return Ok(Err(2));
    };
    if sources.is_empty() {
        sh.err(
            fds,
            &format!("{name}: missing destination file operand after '{dest_operand}'"),
        )?;
        return Ok(Err(2));
    }
    let Some(dest) = resolve_or_report(sh, fds, name, dest_operand)? else {
        return Ok(Err(1));
    };
    if sources.len() > 1 && !sh.real(&dest).is_dir() {
        sh.err(
            fds,
            &format!("{name}: target '{dest_operand}' is not a directory"),
        )?;
        return Ok(Err(1));
    }
    let mut resolved = Vec::new();
    for source in sources {
        match resolve_or_report(sh, fds, name, source)? {
            Some(path) => resolved.push((source.clone(), path)),
            None => return Ok(Err(1)),
        }
    }
    Ok(Ok((resolved, dest)))
}

/// `cp [-r] source… dest`.
pub fn cp(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "cp", args, "rR");
    let recursive = opts.has('r') || opts.has('R');
    let (sources, dest) = match sources_and_dest(sh, fds, "cp", &opts.operands)? {
        Ok(found) => found,
        Err(status) => return Ok(status),
    };
    let mut status = 0;
    for (operand, source) in sources {
        let to = target(sh, &source, &dest);
        let message = match fs::metadata(sh.real(&source)) {
            Err(err) => Some(format!("cannot stat '{operand}': {}", describe(&err))),
            Ok(_) if source.is_root() => Some("cannot copy the workspace root".to_owned()),
            Ok(meta) if meta.is_dir() && !recursive => {
                Some(format!("-r not specified; omitting directory '{operand}'"))
            }
            Ok(meta) if meta.is_dir() => {
                if to.starts_with(&source) {
                    Some(format!(
                        "cannot copy a directory, '{operand}', into itself, '{}'",
                        to.relative()
                    ))
                } else {
                    copy_tree(sh, &source, &to)
                        .err()
                        .map(|(path, err)| format!("cannot copy to '{path}': {}", describe(&err)))
                }
            }
            Ok(_) => {
                if to == source {
                    Some(format!(
                        "'{operand}' and '{}' are the same file",
                        to.relative()
                    ))
                } else if sh.real(&to).is_dir() {
                    Some(format!(
                        "cannot overwrite directory '{}' with non-directory",
                        to.relative()
                    ))
                } else {
                    fs::copy(sh.real(&source), sh.real(&to)).err().map(|err| {
                        format!(
                            "cannot create regular file '{}': {}",
                            to.relative(),
                            describe(&err)
                        )
                    })
                }
            }
        };
        if let Some(message) = message {
            sh.err(fds, &format!("cp: {message}"))?;
            status = 1;
        }
    }
    Ok(status)
}

/// Copies the directory `from` to `to` recursively; on failure, the path and error.
fn copy_tree(sh: &Shell<'_>, from: &WsPath, to: &WsPath) -> Result<(), (String, std::io::Error)> {
    let mut work = vec![(from.clone(), to.clone())];
    while let Some((from, to)) = work.pop() {
        let fail = |err| (to.relative(), err);
        let real_to = sh.real(&to);
        if !real_to.is_dir() {
            fs::create_dir(&real_to).map_err(fail)?;
        }
        let mut entries: Vec<String> = fs::read_dir(sh.real(&from))
            .map_err(fail)?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect();
        entries.sort();
        for name in entries {
            let (src, dst) = (from.join(&name), to.join(&name));
            if sh.real(&src).is_dir() {
                work.push((src, dst));
            } else {
                fs::copy(sh.real(&src), sh.real(&dst)).map_err(|err| (dst.relative(), err))?;
            }
        }
    }
    Ok(())
}

/// `mv source… dest`.
pub fn mv(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "mv", args, "f");
    let (sources, dest) = match sources_and_dest(sh, fds, "mv", &opts.operands)? {
        Ok(found) => found,
        Err(status) => return Ok(status),
    };
    let mut status = 0;
    for (operand, source) in sources {
        let to = target(sh, &source, &dest);
        let message = match fs::symlink_metadata(sh.real(&source)) {
            Err(err) => Some(format!("cannot stat '{operand}': {}", describe(&err))),
            Ok(_) if source.is_root() => Some("cannot move the workspace root".to_owned()),
            Ok(_) if to == source => Some(format!(
                "'{operand}' and '{}' are the same file",
                to.relative()
            )),
            Ok(_) if to.starts_with(&source) => Some(format!(
                "cannot move '{operand}' to a subdirectory of itself, '{}'",
                to.relative()
            )),
            Ok(meta) if !meta.is_dir() && sh.real(&to).is_dir() => Some(format!(
                "cannot overwrite directory '{}' with non-directory",
                to.relative()
            )),
            Ok(_) => fs::rename(sh.real(&source), sh.real(&to)).err().map(|err| {
                format!(
                    "cannot move '{operand}' to '{}': {}",
                    to.relative(),
                    describe(&err)
                )
            }),
        };
        if let Some(message) = message {
            sh.err(fds, &format!("mv: {message}"))?;
            status = 1;
        }
    }
    Ok(status)
}

/// `touch [-c] file…`: creates missing files, updates the modification time of others.
pub fn touch(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "touch", args, "c");
    if opts.operands.is_empty() {
        sh.err(fds, "touch: missing file operand")?;
        return Ok(2);
    }
    let mut status = 0;
    for operand in &opts.operands {
        let Some(path) = resolve_or_report(sh, fds, "touch", operand)? else {
            status = 1;
            continue;
        };
        let real = sh.real(&path);
        let result = if real.exists() {
            File::open(&real).and_then(|file| file.set_modified(SystemTime::now()))
        } else if opts.has('c') {
            Ok(())
        } else {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&real)
                .map(drop)
        };
        if let Err(err) = result {
            sh.err(
                fds,
                &format!("touch: cannot touch '{operand}': {}", describe(&err)),
            )?;
            status = 1;
        }
    }
    Ok(status)
}

/// `ls [-aA1] [path…]`: names, one per line, sorted; directories list their entries.
pub fn ls(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "ls", args, "aA1");
    let operands = if opts.operands.is_empty() {
        vec![".".to_owned()]
    } else {
        opts.operands.clone()
    };
    let mut status = 0;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for operand in &operands {
        let path = match sh.resolve(operand) {
            Ok(path) => path,
            Err(err) => {
                sh.err(fds, &format!("ls: cannot access {err}"))?;
                status = 2;
                continue;
            }
        };
        match fs::metadata(sh.real(&path)) {
            Ok(meta) if meta.is_dir() => dirs.push((operand.clone(), path)),
            Ok(_) => files.push(operand.clone()),
            Err(err) => {
                sh.err(
                    fds,
                    &format!("ls: cannot access '{operand}': {}", describe(&err)),
                )?;
                status = 2;
            }
        }
    }
    files.sort();
    dirs.sort();
    let mut listing = String::new();
    for file in &files {
        listing.push_str(file);
        listing.push('\n');
    }
    let headers = operands.len() > 1;
    for (index, (operand, path)) in dirs.iter().enumerate() {
        let mut names: Vec<String> = match fs::read_dir(sh.real(path)) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| opts.has('a') || opts.has('A') || !name.starts_with('.'))
                .collect(),
            Err(err) => {
                sh.err(
                    fds,
                    &format!("ls: cannot open directory '{operand}': {}", describe(&err)),
                )?;
                status = 2;
                continue;
            }
        };
        if opts.has('a') {
            names.push(".".to_owned());
            names.push("..".to_owned());
        }
        names.sort();
        if headers {
            if index > 0 || !files.is_empty() {
                listing.push('\n');
            }
            listing.push_str(operand);
            listing.push_str(":\n");
        }
        for name in names {
            listing.push_str(&name);
            listing.push('\n');
        }
    }
    sh.out(fds, listing.as_bytes())?;
    Ok(status)
}

/// `tee [-a] [file…]`: copies stdin to stdout and to each file.
pub fn tee(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "tee", args, "a");
    let data = sh.io.read_all(fds);
    let mut status = 0;
    for operand in &opts.operands {
        let Some(path) = resolve_or_report(sh, fds, "tee", operand)? else {
            status = 1;
            continue;
        };
        let result = OpenOptions::new()
            .write(true)
            .create(true)
            .append(opts.has('a'))
            .truncate(!opts.has('a'))
            .open(sh.real(&path))
            .and_then(|mut file| std::io::Write::write_all(&mut file, &data));
        if let Err(err) = result {
            sh.err(fds, &format!("tee: {operand}: {}", describe(&err)))?;
            status = 1;
        }
    }
    sh.out(fds, &data)?;
    Ok(status)
}

/// `sha256sum [file…]`: `<hex>  <name>` per file (`-` or none: stdin).
pub fn sha256sum(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let opts = parse_opts!(sh, fds, "sha256sum", args, "");
    let operands = if opts.operands.is_empty() {
        vec!["-".to_owned()]
    } else {
        opts.operands
    };
    let mut status = 0;
    for operand in &operands {
        match read_operand(sh, fds, operand) {
            Ok(data) => {
                let digest = Sha256::digest(&data);
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                sh.out(fds, format!("{hex}  {operand}\n").as_bytes())?;
            }
            Err(message) => {
                sh.err(fds, &format!("sha256sum: {message}"))?;
                status = 1;
            }
        }
    }
    Ok(status)
}
