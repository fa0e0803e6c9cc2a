//! Parsing of `--repo NAME=PATH|URL`: the repository name and where its git data lives.
//!
//! Only the syntax is checked here; whether a path really is a git repository is checked when
//! the registry opens it (see [`super::Repos::open`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::RepoError;

/// The longest repository name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// A registered repository name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
///
/// Names are what clients send as `TriggerPipelineRequest.repository`; they are also used as
/// file names in the data dir, which is why the alphabet is this small.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoName(String);

impl RepoName {
    /// Checks `text` against the name syntax.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the repository name is empty".to_owned());
        }
        if text.len() > MAX_NAME_LEN {
            return Err(format!(
                "the repository name is {} bytes long, the limit is {MAX_NAME_LEN}",
                text.len()
            ));
        }
        let mut chars = text.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !first_ok || !rest_ok {
            return Err(format!(
                "the repository name {text:?} must start with a letter or digit and contain only letters, digits, `.`, `_` and `-`"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a registered repository's git data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSource {
    /// A repository (with a working tree, or bare) on the server's filesystem. Runs read its
    /// object database only, never its working tree or index.
    Path(PathBuf),
    /// A remote repository; the server keeps a bare mirror of it in the data dir and fetches
    /// it before resolving a ref.
    Url(String),
}

impl fmt::Display for RepoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => write!(f, "{}", path.display()),
            Self::Url(url) => f.write_str(url),
        }
    }
}

/// One `--repo NAME=PATH|URL` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// The name clients use.
    pub name: RepoName,
    /// Where the repository lives.
    pub source: RepoSource,
}

impl FromStr for RepoSpec {
    type Err = RepoError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| RepoError::InvalidSpec {
            spec: spec.to_owned(),
            reason,
        };
        let Some((name, value)) = spec.split_once('=') else {
            return Err(invalid(
                "expected NAME=PATH or NAME=URL, for example `app=/srv/git/app` or `app=https://example.com/app.git`".to_owned(),
            ));
        };
        let name = RepoName::parse(name).map_err(invalid)?;
        if value.is_empty() {
            return Err(invalid(format!("the path or URL after `{name}=` is empty")));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid(
                "the path or URL contains a control character".to_owned(),
            ));
        }
        if value.starts_with('-') {
            return Err(invalid(format!(
                "the path or URL {value:?} starts with `-`; write a path as `./{value}`"
            )));
        }
        let source = match classify(value) {
            Kind::Url => RepoSource::Url(value.to_owned()),
            Kind::Path => RepoSource::Path(PathBuf::from(value)),
            Kind::UnsupportedScheme(scheme) => {
                return Err(invalid(format!(
                    "the URL scheme `{scheme}` is not supported; use https://, ssh://, file://, user@host:path or a local path"
                )));
            }
        };
        Ok(Self { name, source })
    }
}

enum Kind<'a> {
    Url,
    Path,
    UnsupportedScheme(&'a str),
}

/// Tells URLs from paths: `scheme://…` is a URL (of a supported scheme or an error), the
/// scp-like `user@host:path` is an ssh URL, everything else a path.
fn classify(value: &str) -> Kind<'_> {
    if let Some((scheme, _)) = value.split_once("://") {
        let is_scheme = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if is_scheme {
            return match scheme {
                "https" | "ssh" | "file" => Kind::Url,
                other => Kind::UnsupportedScheme(other),
            };
        }
    }
    // scp-like: `user@host:path`, with no `/` before the `:` (git's own rule).
    if let Some((before, _)) = value.split_once(':')
        && before.contains('@')
        && !before.contains('/')
    {
        return Kind::Url;
    }
    Kind::Path
}
