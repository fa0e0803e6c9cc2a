//! Registered repositories: resolve refs, read files at a commit, isolated checkouts.
//!
//! The server runs only repositories registered with `--repo NAME=PATH|URL`
//! ([`RepoSpec`]); a client names one by its registered name (or by exactly the path or URL
//! it was registered with) and can never make the server open an arbitrary path
//! ([`RepoError::NotRegistered`], mapped to `PERMISSION_DENIED`).
//!
//! For a registered repository the server
//! 1. resolves a ref (a branch, a tag, a full ref or a commit id) to a full commit id
//!    ([`Repo::resolve`]); a URL repository is first fetched into a bare mirror in the data
//!    dir (`DATA/repos/NAME.git`);
//! 2. reads a file at that commit from git's object database ([`Repo::read_file`]),
//!    bounded in size;
//! 3. writes an isolated checkout of exactly that commit into a directory the caller names
//!    ([`Repo::checkout`]) through a private index file: the repository's HEAD, index,
//!    working tree and worktree list are never touched, and uncommitted changes in a local
//!    repository cannot leak into a run.
//!
//! Every operation runs `git` as a child process and blocks; async callers use
//! `tokio::task::spawn_blocking`. Each error has a [`RepoErrorKind`] that says which gRPC
//! status it stands for.

mod git;
mod spec;
mod syntax;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use labhit_runtime::fsio;

pub use spec::{MAX_NAME_LEN, RepoName, RepoSource, RepoSpec};
pub use syntax::{MAX_PATH_LEN, MAX_REF_LEN};

use git::Git;
use syntax::RefForm;

/// The default size limit of [`Repo::read_file`]: 1 MiB, far above any pipeline file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 20;

/// Which kind of failure a [`RepoError`] is, in terms of the gRPC status it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoErrorKind {
    /// A malformed argument (`INVALID_ARGUMENT`), or a bad `--repo` at startup.
    InvalidArgument,
    /// The repository is not registered (`PERMISSION_DENIED`).
    PermissionDenied,
    /// The ref or the file does not exist (`NOT_FOUND`).
    NotFound,
    /// The file exists but cannot be used (`FAILED_PRECONDITION`).
    FailedPrecondition,
    /// A remote repository could not be fetched (`UNAVAILABLE`).
    Unavailable,
    /// git or the filesystem failed unexpectedly (`INTERNAL`).
    Internal,
}

/// Errors of the repository registry.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A `--repo` argument is malformed.
    #[error("invalid --repo {spec:?}: {reason}")]
    InvalidSpec {
        /// The argument as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two `--repo` arguments use the same name.
    #[error("repository name {name:?} is registered twice; give each --repo a different NAME")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A `--repo NAME=PATH` path is not a git repository.
    #[error(
        "--repo {name}={path}: not a git repository (expected a work tree's top directory or a bare repository; create one with `git init`)"
    )]
    NotARepository {
        /// The repository name.
        name: String,
        /// The path as given.
        path: String,
    },
    /// A `--repo NAME=PATH` path cannot be read.
    #[error("--repo {name}={path}: {detail}")]
    PathUnreadable {
        /// The repository name.
        name: String,
        /// The path as given.
        path: String,
        /// The I/O error.
        detail: String,
    },
    /// The client asked for a repository that was not registered.
    #[error(
        "repository {requested:?} is not registered with this server (registered: {registered}); the server runs only repositories given with --repo NAME=PATH|URL"
    )]
    NotRegistered {
        /// What the client sent.
        requested: String,
        /// The registered names, comma-separated (`none` when there are none).
        registered: String,
    },
    /// The ref is not one of the accepted forms.
    #[error("invalid git ref {git_ref:?} for repository {repo}: {reason}")]
    InvalidRef {
        /// The repository name.
        repo: String,
        /// The ref as given.
        git_ref: String,
        /// Why it is refused.
        reason: String,
    },
    /// The ref does not name a commit of the repository.
    #[error(
        "git ref {git_ref:?} not found in repository {repo}: no branch, tag, full ref or unambiguous commit id of that name"
    )]
    RefNotFound {
        /// The repository name.
        repo: String,
        /// The ref as given.
        git_ref: String,
    },
    /// A file path is malformed.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// No file at that path in that commit.
    #[error("{path} does not exist in repository {repo} at commit {commit}")]
    FileNotFound {
        /// The repository name.
        repo: String,
        /// The commit id.
        commit: String,
        /// The path.
        path: String,
    },
    /// The path names a directory, symbolic link or submodule, not a regular file.
    #[error("{path} in repository {repo} at commit {commit} is a {what}, not a regular file")]
    NotAFile {
        /// The repository name.
        repo: String,
        /// The commit id.
        commit: String,
        /// The path.
        path: String,
        /// `directory`, `symbolic link` or `submodule`.
        what: &'static str,
    },
    /// The file is larger than the caller's limit.
    #[error(
        "{path} in repository {repo} at commit {commit} is {size} bytes, larger than the limit of {limit} bytes"
    )]
    FileTooLarge {
        /// The repository name.
        repo: String,
        /// The commit id.
        commit: String,
        /// The path.
        path: String,
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A URL repository could not be fetched.
    #[error("cannot fetch repository {repo} from {url}: {detail}")]
    FetchFailed {
        /// The repository name.
        repo: String,
        /// The URL.
        url: String,
        /// git's message.
        detail: String,
    },
    /// The checkout directory cannot be used.
    #[error("cannot check out into {path}: {reason}")]
    CheckoutTarget {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A git command failed unexpectedly.
    #[error("`{command}` failed: {detail}")]
    Git {
        /// The command line (shortened).
        command: String,
        /// git's message.
        detail: String,
    },
    /// A filesystem operation failed.
    #[error("{path}: {detail}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        detail: String,
    },
}

impl RepoError {
    /// Which gRPC status this error stands for.
    pub fn kind(&self) -> RepoErrorKind {
        match self {
            Self::InvalidSpec { .. }
            | Self::DuplicateName { .. }
            | Self::NotARepository { .. }
            | Self::PathUnreadable { .. }
            | Self::InvalidRef { .. }
            | Self::InvalidPath { .. } => RepoErrorKind::InvalidArgument,
            Self::NotRegistered { .. } => RepoErrorKind::PermissionDenied,
            Self::RefNotFound { .. } | Self::FileNotFound { .. } | Self::NotAFile { .. } => {
                RepoErrorKind::NotFound
            }
            Self::FileTooLarge { .. } => RepoErrorKind::FailedPrecondition,
            Self::FetchFailed { .. } => RepoErrorKind::Unavailable,
            Self::CheckoutTarget { .. } | Self::Git { .. } | Self::Io { .. } => {
                RepoErrorKind::Internal
            }
        }
    }
}

fn io_error(path: &Path, err: &std::io::Error) -> RepoError {
    RepoError::Io {
        path: path.to_owned(),
        detail: fsio::describe(err),
    }
}

/// What a git ref resolved to ([`Repo::resolve_ref`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRef {
    /// The commit.
    pub commit: CommitId,
    /// The full ref it was found as (`refs/heads/main`, `refs/tags/v1`); `None` for a
    /// commit id or a detached `HEAD`.
    pub full_ref: Option<String>,
}

/// A full commit id (40 or 64 lower-case hex digits) as `git` printed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitId(String);

impl CommitId {
    /// Checks that `text` is a full commit id.
    pub fn parse(text: &str) -> Option<Self> {
        let full = matches!(text.len(), 40 | 64)
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        full.then(|| Self(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The repositories a server may run, by name.
#[derive(Debug)]
pub struct Repos {
    repos: BTreeMap<RepoName, Arc<Repo>>,
}

impl Repos {
    /// Registers `specs`: local paths must be git repositories (checked now); URL
    /// repositories are mirrored under `DATA_DIR/repos/` on first use.
    pub fn open(
        specs: impl IntoIterator<Item = RepoSpec>,
        data_dir: &Path,
    ) -> Result<Self, RepoError> {
        let mut repos = BTreeMap::new();
        for spec in specs {
            if repos.contains_key(&spec.name) {
                return Err(RepoError::DuplicateName {
                    name: spec.name.to_string(),
                });
            }
            let repo = Repo::open(spec.clone(), data_dir)?;
            repos.insert(spec.name, Arc::new(repo));
        }
        Ok(Self { repos })
    }

    /// The repository a client asked for: by registered name, or by exactly the path or URL
    /// it was registered with. Anything else is [`RepoError::NotRegistered`].
    pub fn get(&self, requested: &str) -> Result<Arc<Repo>, RepoError> {
        if let Ok(name) = RepoName::parse(requested)
            && let Some(repo) = self.repos.get(&name)
        {
            return Ok(Arc::clone(repo));
        }
        if let Some(repo) = self.repos.values().find(|repo| repo.matches(requested)) {
            return Ok(Arc::clone(repo));
        }
        let registered = if self.repos.is_empty() {
            "none".to_owned()
        } else {
            self.repos
                .keys()
                .map(RepoName::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(RepoError::NotRegistered {
            requested: requested.to_owned(),
            registered,
        })
    }

    /// The registered repositories, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Repo>> {
        self.repos.values()
    }

    /// Whether no repository is registered.
    pub fn is_empty(&self) -> bool {
        self.repos.is_empty()
    }
}

/// One registered repository.
#[derive(Debug)]
pub struct Repo {
    name: RepoName,
    source: RepoSource,
    /// The path as given at registration (for [`Repos::get`] by path).
    given: String,
    /// The git directory every command runs against (the mirror for URL repositories).
    git_dir: PathBuf,
    /// Directories a checkout must never be written into: the registered path and git dir.
    protected: Vec<PathBuf>,
    /// Serialises fetches of the mirror.
    fetch_lock: Mutex<()>,
}

impl Repo {
    fn open(spec: RepoSpec, data_dir: &Path) -> Result<Self, RepoError> {
        let given = spec.source.to_string();
        match &spec.source {
            RepoSource::Path(path) => {
                let canonical =
                    std::fs::canonicalize(path).map_err(|e| RepoError::PathUnreadable {
                        name: spec.name.to_string(),
                        path: given.clone(),
                        detail: fsio::describe(&e),
                    })?;
                let Some(git_dir) = git::discover_git_dir(&canonical)? else {
                    return Err(RepoError::NotARepository {
                        name: spec.name.to_string(),
                        path: given,
                    });
                };
                Ok(Self {
                    name: spec.name,
                    protected: vec![canonical.clone(), git_dir.clone()],
                    source: RepoSource::Path(canonical),
                    given,
                    git_dir,
                    fetch_lock: Mutex::new(()),
                })
            }
            RepoSource::Url(_) => {
                let git_dir = data_dir.join("repos").join(format!("{}.git", spec.name));
                Ok(Self {
                    name: spec.name,
                    source: spec.source,
                    given,
                    protected: vec![git_dir.clone()],
                    git_dir,
                    fetch_lock: Mutex::new(()),
                })
            }
        }
    }

    fn matches(&self, requested: &str) -> bool {
        requested == self.given || requested == self.source.to_string()
    }

    /// The registered name.
    pub fn name(&self) -> &RepoName {
        &self.name
    }

    /// Where the repository lives (a canonical path, or the URL).
    pub fn source(&self) -> &RepoSource {
        &self.source
    }

    /// The git directory commands run against: the repository's own for a local path, the
    /// mirror in the data dir for a URL.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Resolves `git_ref` to a full commit id. Accepted forms: `HEAD` (local repositories
    /// only), a full ref (`refs/…`), a branch, a tag (annotated tags are peeled to their
    /// commit) or a commit id (full, or abbreviated to at least 4 unambiguous hex digits).
    /// Branches win over tags, tags over commit ids. A URL repository is fetched first.
    pub fn resolve(&self, git_ref: &str) -> Result<CommitId, RepoError> {
        self.resolve_ref(git_ref).map(|resolved| resolved.commit)
    }

    /// [`Repo::resolve`], also saying which ref `git_ref` turned out to be: a short name is
    /// `refs/heads/NAME` or `refs/tags/NAME` (whichever it resolved to, never guessed from the
    /// name), a full ref itself, `HEAD` the branch it points at; a commit id, or a detached
    /// `HEAD`, is no ref at all (`full_ref: None`).
    pub fn resolve_ref(&self, git_ref: &str) -> Result<ResolvedRef, RepoError> {
        let form =
            syntax::check_ref(git_ref).map_err(|reason| self.invalid_ref(git_ref, reason))?;
        if let RepoSource::Url(url) = &self.source {
            if form == RefForm::Head {
                return Err(self.invalid_ref(
                    git_ref,
                    format!("HEAD is not tracked for the remote repository {url}; name a branch, a tag or a commit id"),
                ));
            }
            self.fetch(url)?;
        }
        let head_branch = if form == RefForm::Head {
            let output = Git::new(&self.git_dir)
                .args(["symbolic-ref", "--quiet", "HEAD"])
                .run(200)?;
            let text = String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_owned();
            (output.success && text.starts_with("refs/heads/")).then_some(text)
        } else {
            None
        };
        let candidates: Vec<(String, bool)> = match form {
            RefForm::Head => vec![("HEAD".to_owned(), false)],
            RefForm::Full => vec![(git_ref.to_owned(), false)],
            RefForm::Short { hex } => {
                let mut list = vec![
                    (format!("refs/heads/{git_ref}"), false),
                    (format!("refs/tags/{git_ref}"), false),
                ];
                if hex {
                    list.push((git_ref.to_ascii_lowercase(), true));
                }
                list
            }
        };
        for (candidate, is_commit_id) in candidates {
            let output = Git::new(&self.git_dir)
                .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
                .args([format!("{candidate}^{{commit}}")])
                .run(200)?;
            if !output.success {
                continue;
            }
            let text = String::from_utf8_lossy(&output.stdout);
            let Some(commit) = CommitId::parse(text.trim_end()) else {
                return Err(RepoError::Git {
                    command: "git rev-parse".to_owned(),
                    detail: format!("unexpected output {:?}", text.trim_end()),
                });
            };
            // A hex name must be a prefix of the commit itself, not of a tag object or of
            // some other ref git's own lookup order found first.
            if is_commit_id && !commit.as_str().starts_with(&candidate) {
                continue;
            }
            let full_ref = if is_commit_id {
                None
            } else if candidate == "HEAD" {
                head_branch
            } else {
                Some(candidate)
            };
            return Ok(ResolvedRef { commit, full_ref });
        }
        Err(RepoError::RefNotFound {
            repo: self.name.to_string(),
            git_ref: git_ref.to_owned(),
        })
    }

    fn invalid_ref(&self, git_ref: &str, reason: String) -> RepoError {
        RepoError::InvalidRef {
            repo: self.name.to_string(),
            git_ref: git_ref.to_owned(),
            reason,
        }
    }

    /// Brings the mirror up to date with `url` (creating it on first use): branches and tags,
    /// pruning the ones deleted upstream.
    fn fetch(&self, url: &str) -> Result<(), RepoError> {
        let _guard = self
            .fetch_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fetch_failed = |detail: String| RepoError::FetchFailed {
            repo: self.name.to_string(),
            url: url.to_owned(),
            detail,
        };
        if !self.git_dir.join("HEAD").exists() {
            let parent = self.git_dir.parent().unwrap_or(&self.git_dir);
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, &e))?;
            Git::bare(parent)
                .args(["init", "--quiet", "--bare", "--"])
                .args([&self.git_dir])
                .run_ok(4096)?;
        }
        let output = Git::new(&self.git_dir)
            .args([
                "-c",
                "http.lowSpeedLimit=1000",
                "-c",
                "http.lowSpeedTime=60",
                "fetch",
                "--quiet",
                "--prune",
                "--no-write-fetch-head",
                "--",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ])
            .run(64 * 1024)?;
        if !output.success {
            return Err(fetch_failed(output.stderr));
        }
        Ok(())
    }

    /// Reads the regular file `path` (relative to the repository root, `/`-separated) at
    /// `commit` from git's object database, refusing files larger than `max_bytes`.
    pub fn read_file(
        &self,
        commit: &CommitId,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, RepoError> {
        syntax::check_path(path).map_err(|reason| RepoError::InvalidPath {
            path: path.to_owned(),
            reason,
        })?;
        let listing = Git::new(&self.git_dir)
            .args(["ls-tree", "-z", "--full-tree", commit.as_str(), "--", path])
            .run_ok(64 * 1024)?;
        let not_found = || RepoError::FileNotFound {
            repo: self.name.to_string(),
            commit: commit.to_string(),
            path: path.to_owned(),
        };
        // `<mode> SP <type> SP <object> TAB <path> NUL`
        let entry = listing
            .split(|b| *b == 0)
            .filter_map(|record| {
                let tab = record.iter().position(|b| *b == b'\t')?;
                let (meta, name) = record.split_at(tab);
                (&name[1..] == path.as_bytes()).then_some(meta)
            })
            .next()
            .ok_or_else(not_found)?;
        let meta = String::from_utf8_lossy(entry);
        let mut fields = meta.split(' ');
        let (mode, kind, object) = (fields.next(), fields.next(), fields.next());
        let what = match (mode, kind) {
            (Some("120000"), _) => Some("symbolic link"),
            (_, Some("tree")) => Some("directory"),
            (_, Some("commit")) => Some("submodule"),
            (_, Some("blob")) => None,
            _ => {
                return Err(RepoError::Git {
                    command: "git ls-tree".to_owned(),
                    detail: format!("unexpected entry {meta:?}"),
                });
            }
        };
        if let Some(what) = what {
            return Err(RepoError::NotAFile {
                repo: self.name.to_string(),
                commit: commit.to_string(),
                path: path.to_owned(),
                what,
            });
        }
        let object = object.ok_or_else(not_found)?;
        let size_text = Git::new(&self.git_dir)
            .args(["cat-file", "-s", object])
            .run_ok(64)?;
        let size: u64 = String::from_utf8_lossy(&size_text)
            .trim()
            .parse()
            .map_err(|_| RepoError::Git {
                command: "git cat-file -s".to_owned(),
                detail: "git printed no size".to_owned(),
            })?;
        if size > max_bytes {
            return Err(RepoError::FileTooLarge {
                repo: self.name.to_string(),
                commit: commit.to_string(),
                path: path.to_owned(),
                size,
                limit: max_bytes,
            });
        }
        Git::new(&self.git_dir)
            .args(["cat-file", "blob", object])
            .run_ok(max_bytes)
    }

    /// Writes the tree of `commit` into `dest`, which must not exist yet (or be an empty
    /// directory) and must lie outside the repository. Files keep their executable bit and
    /// symbolic links stay links; submodules are left as empty directories.
    ///
    /// A private index file next to `dest` (`DEST.labhit-index`, removed afterwards) is used,
    /// so the repository's own index, HEAD, working tree and worktree list are untouched.
    pub fn checkout(&self, commit: &CommitId, dest: &Path) -> Result<(), RepoError> {
        let target = |reason: String| RepoError::CheckoutTarget {
            path: dest.to_owned(),
            reason,
        };
        let Some(file_name) = dest.file_name() else {
            return Err(target("the directory has no name".to_owned()));
        };
        match std::fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(target("the directory is not empty".to_owned()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dest).map_err(|e| io_error(dest, &e))?;
            }
            Err(e) => return Err(io_error(dest, &e)),
        }
        let canonical = std::fs::canonicalize(dest).map_err(|e| io_error(dest, &e))?;
        if let Some(inside) = self
            .protected
            .iter()
            .find(|protected| canonical.starts_with(protected) || protected.starts_with(&canonical))
        {
            return Err(target(format!(
                "it overlaps the repository {} at {}; check out into the server's data dir",
                self.name,
                inside.display()
            )));
        }
        let mut index_name = file_name.to_owned();
        index_name.push(".labhit-index");
        let index = canonical.with_file_name(index_name);
        let result = self.checkout_with_index(commit, &canonical, &index);
        let _ = std::fs::remove_file(&index);
        result
    }

    fn checkout_with_index(
        &self,
        commit: &CommitId,
        dest: &Path,
        index: &Path,
    ) -> Result<(), RepoError> {
        // Sparse-checkout settings of the user's repository must not drop files.
        let work_tree_args = |git: Git| {
            git.env("GIT_INDEX_FILE", index)
                .args(["-c", "core.sparseCheckout=false", "--work-tree"])
                .args([dest])
        };
        work_tree_args(Git::new(&self.git_dir))
            .args(["read-tree", commit.as_str()])
            .run_ok(64 * 1024)?;
        work_tree_args(Git::new(&self.git_dir))
            .args(["checkout-index", "--all", "--force"])
            .run_ok(64 * 1024)?;
        Ok(())
    }
}
