//! Processes that `run:` stages left behind outside their process group.
//!
//! The local executor kills a stage's process group when the stage ends, which takes
//! background jobs and double-forked children with it, but not a process that moved to a
//! session or group of its own (`setsid`, a daemon). `labhit run` therefore makes itself a
//! child subreaper ([`become_subreaper`], Linux `PR_SET_CHILD_SUBREAPER`): such a process,
//! once its parent exits, is reparented to labhit instead of init. When the run has ended no
//! stage command is running, so every child labhit still has is one of those (or the zombie
//! of one): [`reap`] kills each, with its process group when it leads one, and reaps it, round
//! after round until none is left (killing one hands its children to labhit in turn).
//!
//! Until then, orphans that exit stay zombies (they hold a process id, nothing else): reaping
//! them during the run would race with the executor waiting for its own children.

use std::path::Path;

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, getpgid, getpid};

/// Most rounds [`reap`] makes (a process that forks as fast as it is killed is not chased
/// forever).
const MAX_ROUNDS: usize = 64;

/// Makes this process the reaper of its orphaned descendants; whether that worked.
pub(crate) fn become_subreaper() -> bool {
    nix::sys::prctl::set_child_subreaper(true).is_ok()
}

/// Kills and reaps every child of this process; returns how many were still running.
pub(crate) fn reap() -> usize {
    let me = getpid();
    let mut killed = 0;
    for _ in 0..MAX_ROUNDS {
        let children = children_of(me);
        if children.is_empty() {
            break;
        }
        for (pid, zombie) in children {
            if !zombie {
                killed += 1;
                if getpgid(Some(pid)) == Ok(pid) {
                    let _ = killpg(pid, Signal::SIGKILL);
                }
                let _ = kill(pid, Signal::SIGKILL);
            }
            let _ = waitpid(pid, None);
        }
    }
    killed
}

/// The children of `parent` (and whether each is a zombie), from `/proc/<pid>/stat`.
fn children_of(parent: Pid) -> Vec<(Pid, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let (ppid, state) = stat(&entry.path())?;
            (ppid == parent.as_raw()).then(|| (Pid::from_raw(pid), state == 'Z'))
        })
        .collect()
}

/// The parent pid and state of the process whose `/proc` directory is `dir`.
fn stat(dir: &Path) -> Option<(i32, char)> {
    let text = std::fs::read_to_string(dir.join("stat")).ok()?;
    // `pid (comm) S ppid …`: comm may hold spaces and parentheses, so split at the last `)`.
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_of_this_process_is_read_from_proc() {
        let (ppid, state) = stat(Path::new("/proc/self")).expect("stat");
        assert_eq!(ppid, nix::unistd::getppid().as_raw());
        assert_ne!(state, 'Z');
    }
}
