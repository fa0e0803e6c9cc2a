//! The repository registry against real git repositories in temporary directories.

use std::path::{Path, PathBuf};
use std::process::Command;

use labhit_server::repos::{
    CommitId, DEFAULT_MAX_FILE_BYTES, RepoError, RepoErrorKind, RepoSource, RepoSpec, Repos,
};

/// Runs git in `dir` with a fixed identity; panics with git's message on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A repository with two commits on `main`, a lightweight tag `v1` and an annotated tag
/// `v1-annotated` on the first, and a branch `feature` with a third commit.
struct Fixture {
    _temp: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    data: PathBuf,
    first: String,
    second: String,
    feature: String,
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn fixture() -> Fixture {
    let temp = tempfile::tempdir().expect("tempdir");
    let root = temp.path().canonicalize().expect("canonical");
    let repo = root.join("repo");
    let data = root.join("data");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "--quiet", "-b", "main"]);
    write(&repo.join(".labhit/pipeline.yaml"), "first\n");
    write(&repo.join("script.sh"), "#!/bin/sh\necho hi\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            repo.join("script.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("script.sh", repo.join("link")).expect("symlink");
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "--quiet", "-m", "first"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["tag", "v1"]);
    git(&repo, &["tag", "-a", "-m", "annotated", "v1-annotated"]);
    write(&repo.join(".labhit/pipeline.yaml"), "second\n");
    git(&repo, &["commit", "--quiet", "-am", "second"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["checkout", "--quiet", "-b", "feature"]);
    write(&repo.join(".labhit/pipeline.yaml"), "feature\n");
    git(&repo, &["commit", "--quiet", "-am", "feature"]);
    let feature = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["checkout", "--quiet", "main"]);
    Fixture {
        _temp: temp,
        root,
        repo,
        data,
        first,
        second,
        feature,
    }
}

fn spec(text: &str) -> RepoSpec {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn open(fx: &Fixture) -> Repos {
    Repos::open([spec(&format!("app={}", fx.repo.display()))], &fx.data).expect("open")
}

fn commit(text: &str) -> CommitId {
    CommitId::parse(text).expect("commit id")
}

#[test]
fn spec_parses_paths_and_supported_urls() {
    for (text, url) in [
        ("app=/srv/git/app", false),
        ("app=relative/dir", false),
        ("a.b_c-1=https://example.com/app.git", true),
        ("x=ssh://git@example.com/app.git", true),
        ("x=file:///srv/git/app", true),
        ("x=git@example.com:team/app.git", true),
    ] {
        let parsed = spec(text);
        assert_eq!(matches!(parsed.source, RepoSource::Url(_)), url, "{text}");
    }
}

#[test]
fn spec_errors_name_the_problem() {
    for (text, needle) in [
        ("no-equals-sign", "expected NAME=PATH or NAME=URL"),
        ("=/srv/app", "the repository name is empty"),
        ("bad/name=/srv/app", "must start with a letter or digit"),
        (".hidden=/srv/app", "must start with a letter or digit"),
        ("app=", "is empty"),
        ("app=--upload-pack=evil", "starts with `-`"),
        (
            "app=ftp://example.com/app.git",
            "scheme `ftp` is not supported",
        ),
        (
            "app=http://example.com/app.git",
            "scheme `http` is not supported",
        ),
        ("app=/srv/a\nb", "control character"),
    ] {
        let err = text.parse::<RepoSpec>().expect_err(text);
        let message = err.to_string();
        assert!(message.contains(needle), "{text}: {message}");
        assert!(message.starts_with("invalid --repo"), "{message}");
        assert_eq!(err.kind(), RepoErrorKind::InvalidArgument);
    }
    let long = format!("{}=/x", "a".repeat(65));
    assert!(long.parse::<RepoSpec>().is_err());
}

#[test]
fn open_refuses_missing_paths_non_repositories_and_duplicates() {
    let fx = fixture();
    let missing = Repos::open([spec("app=/does/not/exist")], &fx.data).expect_err("missing");
    assert!(
        matches!(missing, RepoError::PathUnreadable { .. }),
        "{missing}"
    );

    let plain = fx.root.join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    let err =
        Repos::open([spec(&format!("app={}", plain.display()))], &fx.data).expect_err("not a repo");
    assert!(matches!(err, RepoError::NotARepository { .. }), "{err}");

    // A subdirectory of a repository is not a repository of its own.
    let sub = fx.repo.join(".labhit");
    let err =
        Repos::open([spec(&format!("app={}", sub.display()))], &fx.data).expect_err("subdirectory");
    assert!(matches!(err, RepoError::NotARepository { .. }), "{err}");

    let twice = [
        spec(&format!("app={}", fx.repo.display())),
        spec(&format!("app={}", fx.repo.display())),
    ];
    let err = Repos::open(twice, &fx.data).expect_err("duplicate");
    assert!(matches!(err, RepoError::DuplicateName { .. }), "{err}");
}

#[test]
fn only_registered_repositories_are_served() {
    let fx = fixture();
    let repos = open(&fx);
    assert_eq!(repos.get("app").expect("by name").name().as_str(), "app");
    let by_path = repos
        .get(&fx.repo.display().to_string())
        .expect("by registered path");
    assert_eq!(by_path.name().as_str(), "app");
    for requested in ["other", "/etc", "../repo", "", "app/", "APP"] {
        let err = repos.get(requested).expect_err(requested);
        assert_eq!(err.kind(), RepoErrorKind::PermissionDenied, "{requested}");
        assert!(err.to_string().contains("registered: app"), "{err}");
    }
    // An unregistered repository on disk stays out of reach even though it exists.
    let other = fx.root.join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    git(&other, &["init", "--quiet"]);
    let err = repos
        .get(&other.display().to_string())
        .expect_err("unregistered path");
    assert_eq!(err.kind(), RepoErrorKind::PermissionDenied);
}

#[test]
fn resolves_branches_tags_full_refs_and_commit_ids() {
    let fx = fixture();
    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    for (git_ref, expected) in [
        ("main", &fx.second),
        ("feature", &fx.feature),
        ("HEAD", &fx.second),
        ("refs/heads/feature", &fx.feature),
        ("v1", &fx.first),
        ("v1-annotated", &fx.first),
        ("refs/tags/v1-annotated", &fx.first),
        (fx.first.as_str(), &fx.first),
        (&fx.first[..10], &fx.first),
        (&fx.first.to_ascii_uppercase(), &fx.first),
    ] {
        let resolved = repo
            .resolve(git_ref)
            .unwrap_or_else(|e| panic!("{git_ref}: {e}"));
        assert_eq!(resolved.as_str(), expected.as_str(), "{git_ref}");
    }
}

#[test]
fn a_resolved_ref_says_which_ref_it_was_never_guessed_from_the_name() {
    let fx = fixture();
    // A tag with the name of a branch, and one named like a branch.
    git(&fx.repo, &["tag", "feature", &fx.first]);
    git(&fx.repo, &["tag", "release/2", &fx.first]);
    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    for (git_ref, full, commit) in [
        ("main", Some("refs/heads/main"), &fx.second),
        ("HEAD", Some("refs/heads/main"), &fx.second),
        ("feature", Some("refs/heads/feature"), &fx.feature),
        ("refs/tags/feature", Some("refs/tags/feature"), &fx.first),
        ("release/2", Some("refs/tags/release/2"), &fx.first),
        ("v1-annotated", Some("refs/tags/v1-annotated"), &fx.first),
        (fx.first.as_str(), None, &fx.first),
        (&fx.first[..10], None, &fx.first),
    ] {
        let resolved = repo
            .resolve_ref(git_ref)
            .unwrap_or_else(|e| panic!("{git_ref}: {e}"));
        assert_eq!(resolved.full_ref.as_deref(), full, "{git_ref}");
        assert_eq!(resolved.commit.as_str(), commit.as_str(), "{git_ref}");
    }
}

#[test]
fn unknown_refs_are_not_found() {
    let fx = fixture();
    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    let tree = git(&fx.repo, &["rev-parse", "HEAD^{tree}"]);
    for git_ref in [
        "nope",
        "refs/heads/nope",
        "refs/tags/nope",
        "0000000000000000000000000000000000000000",
        "abcdef0",
        // A tree id is an object, but not a commit.
        tree.as_str(),
    ] {
        let err = repo.resolve(git_ref).expect_err(git_ref);
        assert_eq!(err.kind(), RepoErrorKind::NotFound, "{git_ref}: {err}");
        assert!(
            err.to_string().contains("not found in repository app"),
            "{err}"
        );
    }
}

#[test]
fn hostile_refs_are_invalid_arguments() {
    let fx = fixture();
    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    let long = "a".repeat(300);
    for git_ref in [
        "",
        "-h",
        "--upload-pack=touch /tmp/x",
        "--output=/tmp/x",
        "main..feature",
        "main~1",
        "main^",
        "HEAD:.labhit/pipeline.yaml",
        ":/first",
        "main@{0}",
        "@",
        "main^{tree}",
        "ma in",
        "main\n",
        "refs/heads/../x",
        "/main",
        "main/",
        "refs//heads/main",
        "a/.hidden",
        "x.lock",
        long.as_str(),
    ] {
        let err = repo.resolve(git_ref).expect_err(git_ref);
        assert_eq!(
            err.kind(),
            RepoErrorKind::InvalidArgument,
            "{git_ref:?}: {err}"
        );
        assert!(err.to_string().starts_with("invalid git ref"), "{err}");
    }
}

#[test]
fn reads_files_at_the_commit_not_the_working_tree() {
    let fx = fixture();
    // Uncommitted edits must not be seen.
    write(&fx.repo.join(".labhit/pipeline.yaml"), "uncommitted\n");
    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    let read = |commit_id: &str| {
        repo.read_file(
            &commit(commit_id),
            ".labhit/pipeline.yaml",
            DEFAULT_MAX_FILE_BYTES,
        )
        .expect("read")
    };
    assert_eq!(read(&fx.first), b"first\n");
    assert_eq!(read(&fx.second), b"second\n");
    assert_eq!(read(&fx.feature), b"feature\n");
}

#[test]
fn missing_files_directories_links_and_oversized_files_are_refused() {
    let fx = fixture();
    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    let at = commit(&fx.second);
    let err = repo
        .read_file(&at, ".labhit/other.yaml", DEFAULT_MAX_FILE_BYTES)
        .expect_err("missing");
    assert_eq!(err.kind(), RepoErrorKind::NotFound);
    assert!(
        err.to_string()
            .contains(".labhit/other.yaml does not exist"),
        "{err}"
    );
    let err = repo
        .read_file(&at, "script.sh/x", DEFAULT_MAX_FILE_BYTES)
        .expect_err("below a file");
    assert_eq!(err.kind(), RepoErrorKind::NotFound);

    let err = repo
        .read_file(&at, ".labhit", DEFAULT_MAX_FILE_BYTES)
        .expect_err("directory");
    assert!(err.to_string().contains("is a directory"), "{err}");
    #[cfg(unix)]
    {
        let err = repo
            .read_file(&at, "link", DEFAULT_MAX_FILE_BYTES)
            .expect_err("link");
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
    }
    let err = repo
        .read_file(&at, ".labhit/pipeline.yaml", 3)
        .expect_err("too large");
    assert_eq!(err.kind(), RepoErrorKind::FailedPrecondition);
    assert!(
        err.to_string()
            .contains("7 bytes, larger than the limit of 3"),
        "{err}"
    );
    // Exactly at the limit is fine.
    assert_eq!(
        repo.read_file(&at, ".labhit/pipeline.yaml", 7)
            .expect("at limit"),
        b"second\n"
    );
}

#[test]
fn hostile_paths_are_invalid_arguments() {
    let fx = fixture();
    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    let at = commit(&fx.second);
    for path in [
        "",
        "/etc/passwd",
        "../repo/.labhit/pipeline.yaml",
        ".labhit/../script.sh",
        "./script.sh",
        ".labhit//pipeline.yaml",
        ".labhit/",
        ".labhit\\pipeline.yaml",
        "a\0b",
        "*",
    ] {
        match repo.read_file(&at, path, DEFAULT_MAX_FILE_BYTES) {
            Err(err) if path == "*" => {
                // Literal pathspecs: `*` is a file name, not a glob.
                assert_eq!(err.kind(), RepoErrorKind::NotFound, "{err}");
            }
            Err(err) => {
                assert_eq!(
                    err.kind(),
                    RepoErrorKind::InvalidArgument,
                    "{path:?}: {err}"
                );
            }
            Ok(_) => panic!("{path:?} was read"),
        }
    }
}

#[test]
fn checkout_is_exactly_the_commit_and_leaves_the_repository_alone() {
    let fx = fixture();
    // Local state that must neither leak into the checkout nor be disturbed by it.
    write(&fx.repo.join(".labhit/pipeline.yaml"), "uncommitted\n");
    write(&fx.repo.join("untracked.txt"), "untracked\n");
    write(&fx.repo.join("staged.txt"), "staged\n");
    git(&fx.repo, &["add", "staged.txt"]);
    let status_before = git(&fx.repo, &["status", "--porcelain"]);
    let head_before = git(&fx.repo, &["rev-parse", "HEAD"]);
    let worktrees_before = git(&fx.repo, &["worktree", "list", "--porcelain"]);

    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    let dest = fx.data.join("runs/1/workspace");
    repo.checkout(&commit(&fx.first), &dest).expect("checkout");

    assert_eq!(
        std::fs::read_to_string(dest.join(".labhit/pipeline.yaml")).expect("read"),
        "first\n"
    );
    assert!(!dest.join("untracked.txt").exists());
    assert!(!dest.join("staged.txt").exists());
    assert!(!dest.join(".git").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dest.join("script.sh"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "executable bit kept: {mode:o}");
        assert!(
            std::fs::symlink_metadata(dest.join("link"))
                .expect("lstat")
                .file_type()
                .is_symlink()
        );
    }
    // No index file left next to the checkout.
    let leftovers: Vec<_> = std::fs::read_dir(dest.parent().expect("parent"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("workspace")]);

    assert_eq!(git(&fx.repo, &["status", "--porcelain"]), status_before);
    assert_eq!(git(&fx.repo, &["rev-parse", "HEAD"]), head_before);
    assert_eq!(
        git(&fx.repo, &["worktree", "list", "--porcelain"]),
        worktrees_before
    );
    assert_eq!(
        std::fs::read_to_string(fx.repo.join(".labhit/pipeline.yaml")).expect("read"),
        "uncommitted\n"
    );
}

#[test]
fn checkout_ignores_the_repositorys_sparse_checkout() {
    let fx = fixture();
    git(
        &fx.repo,
        &["sparse-checkout", "set", "--no-cone", "/.labhit/"],
    );
    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    let dest = fx.data.join("ws");
    repo.checkout(&commit(&fx.second), &dest).expect("checkout");
    assert!(dest.join("script.sh").exists());
}

#[test]
fn checkout_refuses_non_empty_and_in_repository_targets() {
    let fx = fixture();
    let repos = open(&fx);
    let repo = repos.get("app").expect("app");
    let at = commit(&fx.second);

    let busy = fx.data.join("busy");
    write(&busy.join("file"), "x");
    let err = repo.checkout(&at, &busy).expect_err("non-empty");
    assert!(err.to_string().contains("is not empty"), "{err}");

    for inside in [fx.repo.join("ws"), fx.repo.join(".git/ws"), fx.repo.clone()] {
        let err = repo.checkout(&at, &inside).expect_err("inside");
        assert!(
            matches!(err, RepoError::CheckoutTarget { .. }),
            "{}: {err}",
            inside.display()
        );
    }
    assert_eq!(git(&fx.repo, &["status", "--porcelain", "--ignored"]), "");
}

#[test]
fn url_repositories_are_mirrored_and_fetched_before_resolving() {
    let fx = fixture();
    let url = format!("file://{}", fx.repo.display());
    let repos = Repos::open([spec(&format!("remote={url}"))], &fx.data).expect("open");
    let repo = repos.get("remote").expect("remote");
    assert_eq!(repos.get(&url).expect("by url").name().as_str(), "remote");
    assert_eq!(repo.resolve("main").expect("main").as_str(), fx.second);
    assert!(fx.data.join("repos/remote.git/HEAD").exists());
    assert!(repo.git_dir().starts_with(&fx.data));

    // A new upstream commit is seen by the next resolve.
    write(&fx.repo.join(".labhit/pipeline.yaml"), "third\n");
    git(&fx.repo, &["commit", "--quiet", "-am", "third"]);
    let third = git(&fx.repo, &["rev-parse", "HEAD"]);
    let resolved = repo.resolve("main").expect("main again");
    assert_eq!(resolved.as_str(), third);
    assert_eq!(
        repo.read_file(&resolved, ".labhit/pipeline.yaml", DEFAULT_MAX_FILE_BYTES)
            .expect("read"),
        b"third\n"
    );
    let dest = fx.data.join("ws");
    repo.checkout(&resolved, &dest).expect("checkout");
    assert_eq!(
        std::fs::read_to_string(dest.join(".labhit/pipeline.yaml")).expect("read"),
        "third\n"
    );

    // A deleted upstream branch is pruned.
    git(&fx.repo, &["branch", "--quiet", "-D", "feature"]);
    let err = repo.resolve("feature").expect_err("pruned");
    assert_eq!(err.kind(), RepoErrorKind::NotFound, "{err}");

    let err = repo.resolve("HEAD").expect_err("remote HEAD");
    assert_eq!(err.kind(), RepoErrorKind::InvalidArgument, "{err}");
}

#[test]
fn unreachable_url_repositories_are_unavailable() {
    let fx = fixture();
    let url = format!("file://{}", fx.root.join("gone").display());
    let repos = Repos::open([spec(&format!("gone={url}"))], &fx.data).expect("open");
    let err = repos
        .get("gone")
        .expect("gone")
        .resolve("main")
        .expect_err("unreachable");
    assert_eq!(err.kind(), RepoErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().starts_with("cannot fetch repository gone"),
        "{err}"
    );
}
