//! Builtins that change the shell itself: `exit`, `cd`, `pwd`, `export`, `unset`, `set`.

use std::fs;

use crate::fs::describe;
use crate::interp::Shell;
use crate::io::{Fds, Stop};
use crate::parse::is_name;
use crate::vars::quote;

/// `exit [n]`: ends the script with `n` (modulo 256), or with `$?`.
pub fn exit(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let status = match args.first() {
        None => sh.status,
        Some(arg) => match arg.parse::<i64>() {
            Ok(n) if n >= 0 => i32::try_from(n % 256).unwrap_or(0),
            _ => {
                sh.err(fds, &format!("exit: Illegal number: {arg}"))?;
                2
            }
        },
    };
    Err(Stop::Exit(status))
}

/// `cd [dir]`: changes the current directory, inside the workspace only.
pub fn cd(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let args: Vec<&String> = args
        .iter()
        .filter(|a| !matches!(a.as_str(), "-L" | "-P"))
        .collect();
    let target = match args.as_slice() {
        [] => match sh.vars.get("HOME") {
            Some(home) => home.to_owned(),
            None => {
                sh.err(fds, "cd: HOME not set")?;
                return Ok(1);
            }
        },
        [dir] if dir.as_str() == "-" => {
            sh.err(fds, "cd: `cd -` is not supported by this sandboxed shell")?;
            return Ok(1);
        }
        [dir] => (*dir).clone(),
        _ => {
            sh.err(fds, "cd: too many arguments")?;
            return Ok(1);
        }
    };
    let resolved = match sh.resolve(&target) {
        Ok(path) => path,
        Err(err) => {
            sh.err(fds, &format!("cd: {err}"))?;
            return Ok(1);
        }
    };
    match fs::metadata(sh.real(&resolved)) {
        Ok(meta) if meta.is_dir() => {
            sh.set_cwd(resolved);
            Ok(0)
        }
        Ok(_) => {
            sh.err(fds, &format!("cd: {target}: Not a directory"))?;
            Ok(1)
        }
        Err(err) => {
            sh.err(fds, &format!("cd: {target}: {}", describe(&err)))?;
            Ok(1)
        }
    }
}

/// `pwd`: the current directory as the script sees it (`/workspace/…`).
pub fn pwd(sh: &mut Shell<'_>, _args: &[String], fds: Fds) -> Result<i32, Stop> {
    let line = format!("{}\n", sh.cwd.guest());
    sh.out(fds, line.as_bytes())?;
    Ok(0)
}

/// `export [-p] [NAME[=value]…]`.
pub fn export(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let args: Vec<&String> = args.iter().filter(|a| a.as_str() != "-p").collect();
    if args.is_empty() {
        let listing: String = sh
            .vars
            .exported()
            .map(|(name, value)| match value {
                Some(value) => format!("export {name}={}\n", quote(value)),
                None => format!("export {name}\n"),
            })
            .collect();
        sh.out(fds, listing.as_bytes())?;
        return Ok(0);
    }
    let mut status = 0;
    for arg in args {
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        if is_name(name) {
            sh.vars.export(name, value);
        } else {
            sh.err(fds, &format!("export: {name}: bad variable name"))?;
            status = 1;
        }
    }
    Ok(status)
}

/// `unset [-v] NAME…`.
pub fn unset(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    let mut status = 0;
    for arg in args.iter().filter(|a| a.as_str() != "-v") {
        if arg == "-f" {
            // There are no functions to unset.
            continue;
        }
        if is_name(arg) {
            sh.vars.unset(arg);
        } else {
            sh.err(fds, &format!("unset: {arg}: bad variable name"))?;
            status = 1;
        }
    }
    Ok(status)
}

/// `set`: lists variables, or sets options `-e`, `-u`, `-x`, `-o errexit|nounset|xtrace|pipefail`
/// (`+` unsets them).
pub fn set(sh: &mut Shell<'_>, args: &[String], fds: Fds) -> Result<i32, Stop> {
    if args.is_empty() {
        let listing: String = sh
            .vars
            .all()
            .map(|(name, value)| format!("{name}={}\n", quote(value)))
            .collect();
        sh.out(fds, listing.as_bytes())?;
        return Ok(0);
    }
    let mut options = sh.options;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (on, cluster) = match (arg.strip_prefix('-'), arg.strip_prefix('+')) {
            (Some(rest), _) if !rest.is_empty() && rest != "-" => (true, rest),
            (_, Some(rest)) if !rest.is_empty() => (false, rest),
            _ => {
                sh.err(
                    fds,
                    &format!(
                        "set: {arg}: positional parameters are not supported by this sandboxed shell"
                    ),
                )?;
                return Ok(2);
            }
        };
        for c in cluster.chars() {
            let name = match c {
                'e' => "errexit".to_owned(),
                'u' => "nounset".to_owned(),
                'x' => "xtrace".to_owned(),
                'o' => match iter.next() {
                    Some(name) => name.clone(),
                    None => {
                        let listing = format!(
                            "errexit {}\nnounset {}\npipefail {}\nxtrace {}\n",
                            onoff(options.errexit),
                            onoff(options.nounset),
                            onoff(options.pipefail),
                            onoff(options.xtrace)
                        );
                        sh.out(fds, listing.as_bytes())?;
                        continue;
                    }
                },
                other => format!("{}{other}", if on { '-' } else { '+' }),
            };
            match name.as_str() {
                "errexit" => options.errexit = on,
                "nounset" => options.nounset = on,
                "xtrace" => options.xtrace = on,
                "pipefail" => options.pipefail = on,
                _ => {
                    sh.err(
                        fds,
                        &format!(
                            "set: {name}: unsupported option (this shell has -e, -u, -x, -o errexit, -o nounset, -o xtrace, -o pipefail)"
                        ),
                    )?;
                    return Ok(2);
                }
            }
        }
    }
    sh.options = options;
    Ok(0)
}

fn onoff(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
