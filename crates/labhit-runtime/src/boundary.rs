//! The workspace boundary: no step, snapshot restore or executor may leave in a stage
//! workspace a symbolic link that is absolute or resolves outside it, nor a special file.
//!
//! Why: the sandbox never follows such a link, but the next local `run:` stage (unsandboxed)
//! does, so a guest that plants `out.txt -> ../../../../tmp/victim` would have a later stage
//! write outside the run; a FIFO makes a later step's `open()` block in a system call no
//! deadline can stop.
//!
//! # What counts
//!
//! * a **symbolic link** whose target is absolute, or which resolves outside the workspace.
//!   Resolution starts in the link's own directory and walks the target's components: `..`
//!   goes up, a component that is itself a link inside the workspace is followed (so
//!   `up -> .` plus `l -> up/..` is caught, which a purely lexical check would miss), up to
//!   40 links deep (the kernel's own limit: a longer chain cannot be followed at all);
//! * a **special file**: a FIFO, a socket, a block or character device.
//!
//! # Who checks, and the user's own links
//!
//! [`Guard::start`] records the escaping links present before a step; [`Guard::check`]
//! scans again after it, removes every special file and every escaping link that is new or
//! changed (a different target, or a target that now resolves elsewhere), and reports them
//! as a [`Trespass`] list. So the links that were in the user's project when the workspace
//! was copied stay (they are the user's own, for example `.venv/bin/python ->
//! /usr/bin/python3`), while no step can add one: by induction every escaping link in a
//! workspace is the user's. The sandboxed runtime runs it around every step with a writable
//! workspace, and the host's side of a cache decision around every executor (the local one
//! included) and every snapshot restore.
//!
//! One walk per scan, `lstat`-class calls only (`read_dir` file types, `readlink`, and an
//! `lstat` per component of each link target); nothing is opened but directories.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// How many links deep a target is followed before it counts as unresolvable.
const MAX_HOPS: usize = 40;

/// One entry that breaks the workspace boundary, by workspace-relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trespass {
    /// The workspace-relative path (`/`-separated).
    pub path: String,
    /// What is wrong with it.
    pub kind: TrespassKind,
}

/// What makes an entry a [`Trespass`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrespassKind {
    /// A symbolic link with an absolute target.
    AbsoluteLink {
        /// The target, verbatim.
        target: String,
    },
    /// A symbolic link that resolves outside the workspace.
    EscapingLink {
        /// The target, verbatim.
        target: String,
    },
    /// A FIFO, socket or device.
    SpecialFile {
        /// `fifo`, `socket`, `block device` or `character device`.
        kind: &'static str,
    },
}

impl fmt::Display for Trespass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TrespassKind::AbsoluteLink { target } => write!(
                f,
                "symbolic link `{}` -> `{target}` (an absolute target)",
                self.path
            ),
            TrespassKind::EscapingLink { target } => write!(
                f,
                "symbolic link `{}` -> `{target}` (resolves outside the workspace)",
                self.path
            ),
            TrespassKind::SpecialFile { kind } => write!(f, "{kind} `{}`", self.path),
        }
    }
}

/// Where a link target leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Inside the workspace, at this relative path (`""` is the workspace itself).
    Inside(String),
    /// Absolute, or above the workspace: the resolved path (`/abs/...` or `../x`).
    Outside(String),
    /// A chain of links longer than the kernel follows: nothing can be reached through it.
    TooDeep,
}

/// Resolves `target`, the target of a link in the workspace directory `link_dir`
/// (workspace-relative, `/`-separated, `""` for the root), following links inside `root`.
pub fn resolve(root: &Path, link_dir: &str, target: &str) -> Resolution {
    let mut stack: Vec<String> = split(link_dir).map(str::to_owned).collect();
    let mut pending: Vec<String> = Vec::new();
    if target.starts_with('/') {
        return Resolution::Outside(target.to_owned());
    }
    push_front(&mut pending, target);
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    let mut rest = vec!["..".to_owned()];
                    rest.extend(pending.into_iter().rev());
                    return Resolution::Outside(rest.join("/"));
                }
            }
            name => {
                stack.push(name.to_owned());
                let full = root.join(stack.join("/"));
                let Ok(meta) = fs::symlink_metadata(&full) else {
                    continue;
                };
                if !meta.file_type().is_symlink() {
                    continue;
                }
                hops += 1;
                if hops > MAX_HOPS {
                    return Resolution::TooDeep;
                }
                let Ok(next) = fs::read_link(&full) else {
                    continue;
                };
                let next = next.to_string_lossy().into_owned();
                if next.starts_with('/') {
                    return Resolution::Outside(next);
                }
                stack.pop();
                push_front(&mut pending, &next);
            }
        }
    }
    Resolution::Inside(stack.join("/"))
}

/// Whether a link at workspace path `link` with `target` escapes by its text alone: an
/// absolute target, or more `..` than the link's directory is deep at some point. Used where
/// there is no tree to look at (a stored snapshot).
pub fn escapes_lexically(link: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut depth = split(link).count().saturating_sub(1);
    for part in split(target) {
        match part {
            "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|p| !p.is_empty())
}

/// Puts the components of `path` in front of `pending` (a stack: its last element is next).
fn push_front(pending: &mut Vec<String>, path: &str) {
    pending.extend(path.split('/').rev().map(str::to_owned));
}

/// The escaping links of a tree, with what each resolves to.
type Baseline = BTreeMap<String, (String, Resolution)>;

/// Scans `root` once and reports every [`Trespass`] in it.
pub fn scan(root: &Path) -> io::Result<Vec<Trespass>> {
    let mut found = Vec::new();
    walk(root, root, "", &mut |path, kind| {
        found.push(Trespass { path, kind });
    })?;
    Ok(found)
}

fn baseline(root: &Path) -> io::Result<Baseline> {
    let mut links = Baseline::new();
    walk(root, root, "", &mut |path, kind| {
        if let TrespassKind::AbsoluteLink { target } | TrespassKind::EscapingLink { target } = kind
        {
            let resolution = resolve(root, parent(&path), &target);
            links.insert(path, (target, resolution));
        }
    })?;
    Ok(links)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    found: &mut dyn FnMut(String, TrespassKind),
) -> io::Result<()> {
    let read = fs::read_dir(dir).map_err(|e| annotate(e, dir))?;
    for item in read {
        let item = item.map_err(|e| annotate(e, dir))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let file_type = item.file_type().map_err(|e| annotate(e, &item.path()))?;
        if file_type.is_dir() {
            walk(root, &item.path(), &rel, found)?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(item.path()).map_err(|e| annotate(e, &item.path()))?;
            let target = target.to_string_lossy().into_owned();
            match resolve(root, parent(&rel), &target) {
                Resolution::Outside(_) if target.starts_with('/') => {
                    found(rel, TrespassKind::AbsoluteLink { target });
                }
                Resolution::Outside(_) => found(rel, TrespassKind::EscapingLink { target }),
                Resolution::Inside(_) | Resolution::TooDeep => {}
            }
        } else if !file_type.is_file() {
            let kind = if file_type.is_fifo() {
                "fifo"
            } else if file_type.is_socket() {
                "socket"
            } else if file_type.is_block_device() {
                "block device"
            } else {
                "character device"
            };
            found(rel, TrespassKind::SpecialFile { kind });
        }
    }
    Ok(())
}

fn annotate(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("`{}`: {err}", path.display()))
}

/// Why a workspace failed its boundary check after a step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoundaryError {
    /// The step left entries that break the boundary; they were removed.
    #[error("left {} in the workspace (removed; a step may only create links that stay inside the workspace, and no special files)", list(.0))]
    Trespass(Vec<Trespass>),
    /// The workspace could not be scanned.
    #[error("could not be checked for links leading outside the workspace: {0}")]
    Io(#[source] io::Error),
}

/// `a, b and c`.
pub(crate) fn list(found: &[Trespass]) -> String {
    let items: Vec<String> = found.iter().map(ToString::to_string).collect();
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => items.join(""),
    }
}

/// The boundary check around one step (see the module docs).
#[derive(Debug)]
pub struct Guard {
    root: PathBuf,
    before: Baseline,
}

impl Guard {
    /// Records the escaping links present in `root` before the step.
    pub fn start(root: &Path) -> Result<Self, BoundaryError> {
        Ok(Self {
            root: root.to_owned(),
            before: baseline(root).map_err(BoundaryError::Io)?,
        })
    }

    /// Scans `root` after the step; removes what the step added that breaks the boundary and
    /// reports it. May be called more than once (each time against the state at the start).
    pub fn check(&self) -> Result<(), BoundaryError> {
        let found = scan(&self.root).map_err(BoundaryError::Io)?;
        let mut trespasses = Vec::new();
        for trespass in found {
            let known = match &trespass.kind {
                TrespassKind::AbsoluteLink { target } | TrespassKind::EscapingLink { target } => {
                    self.before.get(&trespass.path).is_some_and(|(was, how)| {
                        was == target && *how == resolve(&self.root, parent(&trespass.path), target)
                    })
                }
                TrespassKind::SpecialFile { .. } => false,
            };
            if known {
                continue;
            }
            let full = self.root.join(&trespass.path);
            fs::remove_file(&full)
                .or_else(|e| match e.kind() {
                    io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .map_err(|e| BoundaryError::Io(annotate(e, &full)))?;
            trespasses.push(trespass);
        }
        if trespasses.is_empty() {
            Ok(())
        } else {
            Err(BoundaryError::Trespass(trespasses))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        dir
    }

    #[test]
    fn lexical_escapes() {
        for (link, target, escapes) in [
            ("l", "x", false),
            ("l", "../x", true),
            ("a/l", "../x", false),
            ("a/l", "../../x", true),
            ("a/b/l", "../../x/../y", false),
            ("a/l", "x/../../../y", true),
            ("l", "/etc/passwd", true),
            ("l", "./././x", false),
        ] {
            assert_eq!(
                escapes_lexically(link, target),
                escapes,
                "{link} -> {target}"
            );
        }
    }

    #[test]
    fn resolution_follows_links_inside_the_workspace() {
        let dir = tree();
        let root = dir.path();
        assert_eq!(
            resolve(root, "a", "b/c"),
            Resolution::Inside("a/b/c".into())
        );
        assert_eq!(
            resolve(root, "a", "../../x"),
            Resolution::Outside("../x".into())
        );
        // `up -> .` is harmless, but `l -> up/..` through it leaves the workspace although
        // it looks inside to a lexical check.
        symlink(".", root.join("up")).expect("link");
        assert!(!escapes_lexically("l", "up/.."));
        assert!(matches!(resolve(root, "", "up/.."), Resolution::Outside(_)));
        symlink("l2", root.join("l1")).expect("link");
        symlink("l1", root.join("l2")).expect("link");
        assert_eq!(resolve(root, "", "l1"), Resolution::TooDeep);
    }

    #[test]
    fn a_guard_removes_new_trespasses_and_keeps_the_users_own_links() {
        let dir = tree();
        let root = dir.path();
        symlink("/usr/bin/env", root.join("user-abs")).expect("link");
        symlink("../outside", root.join("user-rel")).expect("link");
        symlink("b", root.join("a/inside")).expect("link");
        let guard = Guard::start(root).expect("start");
        symlink("../../outside", root.join("a/planted")).expect("link");
        symlink("/etc/passwd", root.join("a/b/abs")).expect("link");
        // A link of the user's that now leads elsewhere is not the user's link any more.
        fs::remove_file(root.join("user-rel")).expect("rm");
        symlink("../../other", root.join("user-rel")).expect("link");
        let fifo = root.join("a/fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        let err = guard.check().expect_err("trespasses are reported");
        let BoundaryError::Trespass(found) = &err else {
            panic!("{err}");
        };
        let paths: Vec<&str> = found.iter().map(|t| t.path.as_str()).collect();
        assert_eq!(paths.len(), 4, "{err}");
        for path in ["a/planted", "a/b/abs", "user-rel", "a/fifo"] {
            assert!(paths.contains(&path), "{path} in {err}");
            assert!(
                fs::symlink_metadata(root.join(path)).is_err(),
                "{path} removed"
            );
        }
        assert!(
            err.to_string()
                .contains("symbolic link `a/planted` -> `../../outside`"),
            "{err}"
        );
        for kept in ["user-abs", "a/inside"] {
            assert!(fs::symlink_metadata(root.join(kept)).is_ok(), "{kept} kept");
        }
        // Nothing new: a clean pass.
        Guard::start(root).expect("start").check().expect("clean");
    }

    #[test]
    fn a_renamed_link_is_judged_where_it_lands() {
        let dir = tree();
        let root = dir.path();
        symlink("../../x", root.join("a/b/ok")).expect("link");
        let guard = Guard::start(root).expect("start");
        fs::rename(root.join("a/b/ok"), root.join("moved")).expect("rename");
        let err = guard.check().expect_err("the moved link escapes");
        assert!(err.to_string().contains("`moved` -> `../../x`"), "{err}");
    }

    #[test]
    fn a_scan_of_ten_thousand_files_is_one_cheap_walk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in 0..100 {
            let sub = root.join(format!("d{d}"));
            fs::create_dir(&sub).expect("mkdir");
            for f in 0..100 {
                fs::write(sub.join(format!("f{f}")), "x").expect("write");
            }
            symlink(format!("f{d}"), sub.join("link")).expect("link");
        }
        let start = std::time::Instant::now();
        let guard = Guard::start(root).expect("start");
        guard.check().expect("clean");
        let elapsed = start.elapsed();
        eprintln!("boundary: two scans of 10,100 files and 100 links took {elapsed:?}");
        // Linear and lstat-only: far below this even on a loaded machine.
        assert!(elapsed < std::time::Duration::from_secs(10), "{elapsed:?}");
    }
}
