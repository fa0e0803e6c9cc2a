//! Named gate policies: the policy file (`.labhit/policies.toml`) and how a policy judges the
//! git ref a run is for.
//!
//! A stage's `gate: {policy: NAME}` names a policy of this file. The file is TOML; each table
//! `[policies.NAME]` is one policy, every key optional:
//!
//! ```toml
//! [policies.main-only]
//! description = "deploy from main only"
//! branches = ["main", "release/*"]   # the run's branch must match one of these
//! refs = ["refs/tags/v*"]            # ... or the run's full ref one of these
//! require-approval = true            # also needs an approval (`--approve STAGE`, a prompt)
//! allow = true                       # `false` denies every stage that names the policy
//! ```
//!
//! A policy **allows** a stage when `allow` is not `false` and, if `branches` or `refs` is
//! given, the run's ref matches at least one pattern of either list. With neither list, every
//! ref matches. Patterns are glob-ish: `*` matches any run of characters except `/`, `**`
//! matches anything (also `/`), `?` one character other than `/`; everything else is literal.
//! `branches` patterns are matched against the branch name (`main` for `refs/heads/main`),
//! `refs` patterns against the full ref (`refs/heads/main`, `refs/tags/v1.0`). A ref given
//! without `refs/` (`--ref main`, or what `git rev-parse --abbrev-ref HEAD` prints) is taken as
//! a branch name; a detached `HEAD` has no branch and matches only `refs` patterns such as
//! `HEAD`.
//!
//! Denied by default: a gate naming a policy that the file does not define is denied, and
//! when the file is missing or unreadable every policy gate is denied; the reason says which.
//! Unknown keys are errors, so a misspelled condition never silently allows.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fsio;

/// Where the policy file lives, relative to the project directory.
pub const DEFAULT_POLICY_FILE: &str = ".labhit/policies.toml";

/// One named policy (a `[policies.NAME]` table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// What the policy is for, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Branch-name patterns the run's ref may match.
    #[serde(default)]
    pub branches: Vec<String>,
    /// Full-ref patterns the run's ref may match.
    #[serde(default)]
    pub refs: Vec<String>,
    /// Whether a stage under this policy also needs an approval.
    #[serde(default)]
    pub require_approval: bool,
    /// `false` denies every stage that names the policy; defaults to `true`.
    #[serde(default = "yes")]
    pub allow: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    #[serde(default)]
    policies: BTreeMap<String, Policy>,
}

/// The git ref a run is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// The ref as given or detected (`main`, `refs/tags/v1`, `HEAD`).
    pub name: String,
}

impl GitRef {
    /// Wraps a ref name (trimmed).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into().trim().to_owned(),
        }
    }

    /// The branch name: `main` for `main` or `refs/heads/main`; `None` for other full refs
    /// (`refs/tags/…`) and for a detached `HEAD`.
    pub fn branch(&self) -> Option<&str> {
        if let Some(branch) = self.name.strip_prefix("refs/heads/") {
            Some(branch)
        } else if self.name.starts_with("refs/") || self.name == "HEAD" || self.name.is_empty() {
            None
        } else {
            Some(&self.name)
        }
    }

    /// The full ref: `refs/heads/main` for the branch `main`, the name itself otherwise.
    pub fn full(&self) -> String {
        if self.name.starts_with("refs/") || self.name == "HEAD" || self.name.is_empty() {
            self.name.clone()
        } else {
            format!("refs/heads/{}", self.name)
        }
    }

    /// Asks `git rev-parse --abbrev-ref HEAD` in `dir`; `None` when git is missing or `dir`
    /// is not a git work tree.
    pub fn detect(dir: &Path) -> Option<GitRef> {
        let output = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "--abbrev-ref", "HEAD"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let name = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !name.trim().is_empty()).then(|| GitRef::new(name))
    }
}

impl fmt::Display for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The policies available to a run: the parsed file, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policies {
    /// The file was read.
    Loaded {
        /// Where it was read from.
        path: PathBuf,
        /// Its policies by name.
        policies: BTreeMap<String, Policy>,
    },
    /// There is no policy file: every policy gate is denied.
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file could not be read or parsed: every policy gate is denied.
    Invalid {
        /// Where it was read from.
        path: PathBuf,
        /// What is wrong with it.
        error: String,
    },
}

/// What a policy says about a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict {
    /// Whether the policy lets the stage run (perhaps after an approval).
    pub allowed: bool,
    /// Whether an approval is needed as well.
    pub requires_approval: bool,
    /// Why, for the log and the summary.
    pub reason: String,
}

impl Policies {
    /// Reads the policy file at `path`; a missing file is [`Policies::Missing`], an unreadable
    /// or invalid one [`Policies::Invalid`].
    ///
    /// The file is read with [`fsio::read`]: a FIFO, a device or a directory in its place, or
    /// a file over [`fsio::Limit::POLICY`] (1 MiB), is invalid and never read whole.
    pub fn load(path: &Path) -> Policies {
        match fsio::read_to_string(path, fsio::Limit::POLICY) {
            Ok(text) => Policies::parse(path, &text),
            Err(fsio::ReadError::NotFound { .. }) => Policies::Missing {
                path: path.to_owned(),
            },
            Err(e) => Policies::Invalid {
                path: path.to_owned(),
                error: e.to_string(),
            },
        }
    }

    /// Parses policy-file text; `path` is recorded for messages.
    pub fn parse(path: &Path, text: &str) -> Policies {
        match toml::from_str::<FileRepr>(text) {
            Ok(file) => Policies::Loaded {
                path: path.to_owned(),
                policies: file.policies,
            },
            Err(e) => Policies::Invalid {
                path: path.to_owned(),
                error: e.to_string().trim().replace('\n', " "),
            },
        }
    }

    /// Policies given directly (tests, embedding engines).
    pub fn from_map(policies: BTreeMap<String, Policy>) -> Policies {
        Policies::Loaded {
            path: PathBuf::from("<memory>"),
            policies,
        }
    }

    /// Judges policy `name` for a run of `git_ref` (`None`: the ref is unknown, which only a
    /// policy without `branches` and `refs` allows).
    pub fn evaluate(&self, name: &str, git_ref: Option<&GitRef>) -> PolicyVerdict {
        let deny = |reason: String| PolicyVerdict {
            allowed: false,
            requires_approval: false,
            reason,
        };
        let policies = match self {
            Policies::Loaded { policies, .. } => policies,
            Policies::Missing { path } => {
                return deny(format!(
                    "policy `{name}` denied: the policy file `{}` does not exist",
                    path.display()
                ));
            }
            Policies::Invalid { path, error } => {
                return deny(format!(
                    "policy `{name}` denied: the policy file `{}` is invalid: {error}",
                    path.display()
                ));
            }
        };
        let Some(policy) = policies.get(name) else {
            let known: Vec<&str> = policies.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "it defines none".to_owned()
            } else {
                format!("it defines {}", known.join(", "))
            };
            return deny(format!(
                "policy `{name}` denied: unknown policy ({}; {known})",
                self.path().display()
            ));
        };
        if !policy.allow {
            return deny(format!("policy `{name}` denied: it sets `allow = false`"));
        }
        let matched = if policy.branches.is_empty() && policy.refs.is_empty() {
            Some("it has no ref conditions".to_owned())
        } else if let Some(git_ref) = git_ref {
            let branch = git_ref.branch().and_then(|b| {
                policy
                    .branches
                    .iter()
                    .find(|p| glob_match(p, b))
                    .map(|p| format!("branch `{b}` matches `{p}`"))
            });
            let full = git_ref.full();
            branch.or_else(|| {
                policy
                    .refs
                    .iter()
                    .find(|p| glob_match(p, &full))
                    .map(|p| format!("ref `{full}` matches `{p}`"))
            })
        } else {
            None
        };
        match matched {
            Some(why) => PolicyVerdict {
                allowed: true,
                requires_approval: policy.require_approval,
                reason: format!(
                    "policy `{name}` allows: {why}{}",
                    if policy.require_approval {
                        "; it requires an approval"
                    } else {
                        ""
                    }
                ),
            },
            None => {
                let mut wanted = Vec::new();
                if !policy.branches.is_empty() {
                    wanted.push(format!("branches {}", policy.branches.join(", ")));
                }
                if !policy.refs.is_empty() {
                    wanted.push(format!("refs {}", policy.refs.join(", ")));
                }
                let what = match git_ref {
                    Some(r) => format!("ref `{r}`"),
                    None => "the run's ref is unknown (pass `--ref`)".to_owned(),
                };
                deny(format!(
                    "policy `{name}` denied: {what} matches none of {}",
                    wanted.join(" or ")
                ))
            }
        }
    }

    /// The path of the file (read, missing or invalid).
    pub fn path(&self) -> &Path {
        match self {
            Policies::Loaded { path, .. }
            | Policies::Missing { path }
            | Policies::Invalid { path, .. } => path,
        }
    }
}

/// Glob-ish matching: `**` anything, `*` anything but `/`, `?` one character but `/`.
///
/// Time is proportional to the pattern's length times the text's, whatever the pattern: it
/// walks the pattern once, keeping the set of text positions the pattern so far can end at
/// (backtracking over every `*` was exponential in their number, so one policy pattern could
/// hang `labhit run`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // `ends[j]`: the pattern read so far matches `t[..j]`.
    let mut ends = vec![false; t.len() + 1];
    ends[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; t.len() + 1];
        match p[i] {
            '*' if p.get(i + 1) == Some(&'*') => {
                let mut reached = false;
                for (j, slot) in next.iter_mut().enumerate() {
                    reached |= ends[j];
                    *slot = reached;
                }
                i += 2;
            }
            '*' => {
                let mut reached = false;
                for (j, slot) in next.iter_mut().enumerate() {
                    if j > 0 && t[j - 1] == '/' {
                        reached = false;
                    }
                    reached |= ends[j];
                    *slot = reached;
                }
                i += 1;
            }
            c => {
                for (j, &ch) in t.iter().enumerate() {
                    let fits = if c == '?' { ch != '/' } else { ch == c };
                    next[j + 1] = ends[j] && fits;
                }
                i += 1;
            }
        }
        if !next.contains(&true) {
            return false;
        }
        ends = next;
    }
    ends[t.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Policies {
        Policies::parse(Path::new(".labhit/policies.toml"), text)
    }

    const TEXT: &str = r#"
[policies.main-only]
branches = ["main"]

[policies.releases]
branches = ["release/*"]
refs = ["refs/tags/v*"]
require-approval = true

[policies.never]
allow = false

[policies.anything]
"#;

    #[test]
    fn globs() {
        assert!(glob_match("main", "main"));
        assert!(!glob_match("main", "main2"));
        assert!(glob_match("release/*", "release/1.0"));
        assert!(!glob_match("release/*", "release/1/x"));
        assert!(glob_match("release/**", "release/1/x"));
        assert!(glob_match("v?.*", "v1.2"));
        assert!(glob_match("*", "feature"));
        assert!(!glob_match("*", "a/b"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("**", ""));
        assert!(glob_match("a/**/c", "a/b/x/c"));
        assert!(glob_match("***", "a/b"));
        assert!(!glob_match("?", "/"));
        assert!(!glob_match("?", ""));
        assert!(glob_match("r*/*", "release/1"));
        assert!(!glob_match("r*", "release/1"));
    }

    /// Found while writing the `policy` fuzz target: backtracking made a pattern with a few
    /// stars take seconds against a 40-character branch name (17 characters took 9 s, each
    /// further `*a` about 30 times longer), so a policy file could hang `labhit run`.
    #[test]
    fn many_stars_match_in_linear_time() {
        // On a thread, so that a regression fails the test instead of hanging it.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let text = "a".repeat(400);
            for star in ["*", "**"] {
                let pattern = format!("{}b", format!("{star}a").repeat(60));
                let matched = (
                    glob_match(&pattern, &text),
                    glob_match(&pattern[..pattern.len() - 1], &text),
                );
                let _ = done.send((star, matched));
            }
        });
        for _ in 0..2 {
            // The walk takes well under a millisecond; backtracking took years.
            let (star, matched) = finished
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("glob matching with many stars did not finish");
            assert_eq!(matched, (false, true), "{star}");
        }
    }

    /// The linear-time matcher agrees with the definition (a backtracking reference) on every
    /// short pattern and text over a small alphabet.
    #[test]
    fn matcher_agrees_with_the_definition() {
        fn reference(p: &[char], t: &[char]) -> bool {
            match p.first() {
                None => t.is_empty(),
                Some('*') if p.get(1) == Some(&'*') => {
                    (0..=t.len()).any(|i| reference(&p[2..], &t[i..]))
                }
                Some('*') => (0..=t.len())
                    .take_while(|&i| i == 0 || t[i - 1] != '/')
                    .any(|i| reference(&p[1..], &t[i..])),
                Some('?') => t.first().is_some_and(|c| *c != '/') && reference(&p[1..], &t[1..]),
                Some(c) => t.first() == Some(c) && reference(&p[1..], &t[1..]),
            }
        }
        fn words(alphabet: &[char], max: usize) -> Vec<String> {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        }
        let patterns = words(&['a', '/', '*', '?'], 4);
        let texts = words(&['a', 'b', '/'], 4);
        for p in &patterns {
            let pc: Vec<char> = p.chars().collect();
            for t in &texts {
                let tc: Vec<char> = t.chars().collect();
                assert_eq!(glob_match(p, t), reference(&pc, &tc), "{p:?} vs {t:?}");
            }
        }
    }

    #[test]
    fn refs() {
        assert_eq!(GitRef::new("main").branch(), Some("main"));
        assert_eq!(GitRef::new("refs/heads/main").branch(), Some("main"));
        assert_eq!(GitRef::new("refs/tags/v1").branch(), None);
        assert_eq!(GitRef::new("HEAD").branch(), None);
        assert_eq!(GitRef::new("main").full(), "refs/heads/main");
    }

    #[test]
    fn branch_policy() {
        let p = file(TEXT);
        let v = p.evaluate("main-only", Some(&GitRef::new("main")));
        assert!(v.allowed && !v.requires_approval, "{v:?}");
        assert_eq!(
            v.reason,
            "policy `main-only` allows: branch `main` matches `main`"
        );
        let v = p.evaluate("main-only", Some(&GitRef::new("refs/heads/main")));
        assert!(v.allowed);
        let v = p.evaluate("main-only", Some(&GitRef::new("feature/x")));
        assert!(!v.allowed);
        assert_eq!(
            v.reason,
            "policy `main-only` denied: ref `feature/x` matches none of branches main"
        );
        let v = p.evaluate("main-only", None);
        assert!(!v.allowed);
        assert!(v.reason.contains("unknown"), "{}", v.reason);
    }

    #[test]
    fn refs_and_approval() {
        let p = file(TEXT);
        let v = p.evaluate("releases", Some(&GitRef::new("refs/tags/v1.2")));
        assert!(v.allowed && v.requires_approval, "{v:?}");
        let v = p.evaluate("releases", Some(&GitRef::new("release/1.2")));
        assert!(v.allowed && v.requires_approval, "{v:?}");
        assert!(!p.evaluate("releases", Some(&GitRef::new("main"))).allowed);
    }

    #[test]
    fn denied_by_default() {
        let p = file(TEXT);
        let v = p.evaluate("never", Some(&GitRef::new("main")));
        assert!(!v.allowed);
        assert!(v.reason.contains("allow = false"));
        let v = p.evaluate("nope", Some(&GitRef::new("main")));
        assert!(!v.allowed);
        assert!(v.reason.contains("unknown policy"), "{}", v.reason);
        assert!(p.evaluate("anything", None).allowed);

        let missing = Policies::load(Path::new("/nonexistent/labhit/policies.toml"));
        assert!(matches!(missing, Policies::Missing { .. }));
        let v = missing.evaluate("main-only", Some(&GitRef::new("main")));
        assert!(!v.allowed && v.reason.contains("does not exist"), "{v:?}");
    }

    #[test]
    fn invalid_files_deny() {
        let p = file("[policies.x]\nbranch = [\"main\"]\n");
        assert!(matches!(p, Policies::Invalid { .. }), "{p:?}");
        let v = p.evaluate("x", Some(&GitRef::new("main")));
        assert!(!v.allowed && v.reason.contains("invalid"), "{v:?}");
    }

    #[cfg(unix)]
    #[test]
    fn special_and_oversized_files_are_invalid_and_never_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.toml");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let zero = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let big = dir.path().join("big.toml");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        for (path, reason) in [
            (&fifo, "is a FIFO, not a regular file"),
            (&zero, "is a character device, not a regular file"),
            (
                &big,
                "is 2147483648 bytes, more than the limit of 1 MiB for a policy file",
            ),
        ] {
            let loaded = Policies::load(path);
            let Policies::Invalid { error, .. } = &loaded else {
                panic!("{loaded:?}");
            };
            assert!(error.contains(reason), "{error}");
            assert!(!loaded.evaluate("x", None).allowed);
        }
    }
}
