//! Host-side cache keys of `run:` stages.
//!
//! The runner computes a [`cache_key`] for every cacheable `run:` stage just before it runs,
//! looks the key up in the [`SnapshotStore`](crate::snapshot::SnapshotStore), and sends
//! `hit{key}` when a verified snapshot exists, `miss_build_as{key}` otherwise (or
//! `miss_no_commit` under `--no-cache`).
//!
//! The key is a sha256 over everything that can change the stage's effect, each field
//! length-prefixed so fields cannot run into each other:
//!
//! * a format version ([`KEY_FORMAT`]);
//! * the executor's name (`local`, `extension:ci/shell@1.2.0`);
//! * the script and the full shell command line (the default `sh -e -c` spelled out);
//! * the image (`sandbox.image`), or its absence;
//! * every granted environment variable, name and value, sorted by name (secret values
//!   included: changing a secret may change the result; only their hash enters the key);
//! * the content of the workspace the stage is entitled to see, as
//!   [`WorkspaceManifest::key_digest`]: every entry, or only those its declared inputs
//!   (`sandbox.inputs`) select, and the globs themselves; with the content of files that
//!   symbolic links outside the workspace reach (a link to an outside directory makes the key
//!   an error: it cannot be covered). The runner passes the run's initial workspace with the
//!   effects of the stage's `after` ancestors applied, never the live workspace, so a
//!   sibling that happened to finish first is not in the key (`scheduler::lineage`);
//! * the stage's `with` as filled in when it starts (output references replaced), as
//!   canonical JSON (keys sorted), or its absence: it configures an executor extension;
//! * the parent snapshot and the keys of upstream stages, in the order given.
//!
//! Not in the key: the timeout and the cpu/memory limits (they decide whether a step
//! finishes, not what a successful step produces), run and step ids, timestamps.

use std::collections::BTreeMap;

use labhit_protocol::executor::CommandStep;
use labhit_protocol::glob::InputGlob;
use labhit_protocol::ids::SnapshotRef;
use sha2::{Digest, Sha256};

use crate::workspace::{WorkspaceError, WorkspaceManifest, field, hex};

/// Version of the key derivation; changing what is hashed bumps it.
pub const KEY_FORMAT: &str = "labhit-cache-key/4";

/// Prefix of every cache tag: a key is `labhit-cache:<64 hex digits>`.
pub const TAG_PREFIX: &str = "labhit-cache:";

/// Everything a `run:` stage's cache key covers.
#[derive(Debug, Clone, Copy)]
pub struct CacheKeyInput<'a> {
    /// [`Executor::name`](crate::executor::Executor::name) of the executor that will run it.
    pub executor: &'a str,
    /// The command (script, shell, image).
    pub step: &'a CommandStep,
    /// The environment granted to the step.
    pub env: &'a BTreeMap<String, String>,
    /// The workspace the stage is entitled to see: what its `after` stages produced.
    pub workspace: &'a WorkspaceManifest,
    /// The stage's declared inputs (`sandbox.inputs`); `None`: the whole workspace.
    pub inputs: Option<&'a [InputGlob]>,
    /// The stage's `with`, filled in (`use` + `run` stages); `None` without one.
    pub with: Option<&'a labhit_protocol::Value>,
    /// The snapshot the step boots from, if any.
    pub parent_snapshot: Option<&'a SnapshotRef>,
    /// Cache keys (or other stable identities) of upstream stages.
    pub upstream: &'a [SnapshotRef],
}

/// The cache key of a `run:` stage as a snapshot tag, `labhit-cache:<sha256 hex>`; an error
/// when the workspace holds content the key cannot cover (see
/// [`WorkspaceManifest::key_digest`]).
pub fn cache_key(input: &CacheKeyInput<'_>) -> Result<SnapshotRef, WorkspaceError> {
    let mut hasher = Sha256::new();
    field(&mut hasher, KEY_FORMAT.as_bytes());
    field(&mut hasher, b"executor");
    field(&mut hasher, input.executor.as_bytes());
    field(&mut hasher, b"script");
    field(&mut hasher, input.step.script.as_bytes());
    field(&mut hasher, b"shell");
    let argv = input.step.argv();
    let shell = &argv[..argv.len() - 1];
    hasher.update((shell.len() as u64).to_le_bytes());
    for arg in shell {
        field(&mut hasher, arg.as_bytes());
    }
    field(&mut hasher, b"image");
    match &input.step.image {
        Some(image) => {
            hasher.update([1]);
            field(&mut hasher, image.as_bytes());
        }
        None => hasher.update([0]),
    }
    field(&mut hasher, b"env");
    hasher.update((input.env.len() as u64).to_le_bytes());
    for (name, value) in input.env {
        field(&mut hasher, name.as_bytes());
        field(&mut hasher, value.as_bytes());
    }
    field(&mut hasher, b"inputs");
    match input.inputs {
        Some(globs) => {
            hasher.update([1]);
            hasher.update((globs.len() as u64).to_le_bytes());
            for glob in globs {
                field(&mut hasher, glob.as_str().as_bytes());
            }
        }
        None => hasher.update([0]),
    }
    field(&mut hasher, b"workspace");
    field(
        &mut hasher,
        input.workspace.key_digest(input.inputs)?.as_bytes(),
    );
    field(&mut hasher, b"with");
    match input.with {
        Some(with) => {
            hasher.update([1]);
            // `Value::to_json` builds objects from sorted maps: the text is canonical.
            field(&mut hasher, with.to_json().to_string().as_bytes());
        }
        None => hasher.update([0]),
    }
    field(&mut hasher, b"parent");
    match input.parent_snapshot {
        Some(parent) => {
            hasher.update([1]);
            field(&mut hasher, parent.as_ref().as_bytes());
        }
        None => hasher.update([0]),
    }
    field(&mut hasher, b"upstream");
    hasher.update((input.upstream.len() as u64).to_le_bytes());
    for key in input.upstream {
        field(&mut hasher, key.as_ref().as_bytes());
    }
    Ok(SnapshotRef::new(format!(
        "{TAG_PREFIX}{}",
        hex(&hasher.finalize())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Edit = Box<dyn Fn(&mut Fixture)>;

    struct Fixture {
        step: CommandStep,
        env: BTreeMap<String, String>,
        workspace: WorkspaceManifest,
        parent: Option<SnapshotRef>,
        upstream: Vec<SnapshotRef>,
        executor: String,
        inputs: Option<Vec<InputGlob>>,
        with: Option<labhit_protocol::Value>,
    }

    impl Fixture {
        fn new(dir: &std::path::Path) -> Self {
            Self {
                step: CommandStep::new("make all"),
                env: BTreeMap::from([("CI".to_owned(), "true".to_owned())]),
                workspace: WorkspaceManifest::scan(dir).expect("scan"),
                parent: None,
                upstream: Vec::new(),
                executor: "local".to_owned(),
                inputs: None,
                with: None,
            }
        }

        fn key(&self) -> SnapshotRef {
            cache_key(&CacheKeyInput {
                executor: &self.executor,
                step: &self.step,
                env: &self.env,
                workspace: &self.workspace,
                inputs: self.inputs.as_deref(),
                with: self.with.as_ref(),
                parent_snapshot: self.parent.as_ref(),
                upstream: &self.upstream,
            })
            .expect("key")
        }
    }

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.txt"), "alpha").expect("write");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/main.c"), "int main;").expect("write");
        dir
    }

    #[test]
    fn same_inputs_same_key() {
        let dir = workspace();
        let a = Fixture::new(dir.path()).key();
        let b = Fixture::new(dir.path()).key();
        assert_eq!(a, b);
        assert!(a.as_ref().starts_with(TAG_PREFIX), "{a}");
        assert_eq!(a.as_ref().len(), TAG_PREFIX.len() + 64);
    }

    #[test]
    fn every_input_changes_the_key() {
        let dir = workspace();
        let base = Fixture::new(dir.path()).key();
        let changes: Vec<(&str, Edit)> = vec![
            ("script", Box::new(|f| f.step.script.push(' '))),
            (
                "shell",
                Box::new(|f| f.step.shell = Some(vec!["bash".into(), "-c".into()])),
            ),
            (
                "image",
                Box::new(|f| f.step.image = Some("alpine:3".into())),
            ),
            (
                "env value",
                Box::new(|f| {
                    f.env.insert("CI".into(), "false".into());
                }),
            ),
            (
                "env name",
                Box::new(|f| {
                    f.env.insert("X".into(), String::new());
                }),
            ),
            (
                "executor",
                Box::new(|f| f.executor = "extension:ci/shell@1.0.0".into()),
            ),
            (
                "parent",
                Box::new(|f| f.parent = Some(SnapshotRef::new("p"))),
            ),
            (
                "upstream",
                Box::new(|f| f.upstream.push(SnapshotRef::new("u"))),
            ),
            (
                "with",
                Box::new(|f| f.with = Some(labhit_protocol::Value::Object(Default::default()))),
            ),
            (
                "inputs",
                Box::new(|f| f.inputs = Some(vec![InputGlob::new("src").expect("glob")])),
            ),
        ];
        for (what, change) in changes {
            let mut fixture = Fixture::new(dir.path());
            change(&mut fixture);
            assert_ne!(
                fixture.key(),
                base,
                "changing the {what} must change the key"
            );
        }
    }

    #[test]
    fn a_changed_with_changes_the_key() {
        let dir = workspace();
        let mut fixture = Fixture::new(dir.path());
        let with = |level: u64| {
            let json = serde_json::json!({"artifacts": ["release/*"], "level": level});
            Some(labhit_protocol::Value::from_json(&json))
        };
        fixture.with = with(1);
        let a = fixture.key();
        assert_eq!(fixture.key(), a);
        fixture.with = with(2);
        assert_ne!(fixture.key(), a, "a different `with`");
    }

    #[test]
    fn workspace_content_and_mode_change_the_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = workspace();
        let base = Fixture::new(dir.path()).key();
        std::fs::write(dir.path().join("src/main.c"), "int main();").expect("write");
        let edited = Fixture::new(dir.path()).key();
        assert_ne!(edited, base);
        std::fs::set_permissions(
            dir.path().join("a.txt"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        let chmodded = Fixture::new(dir.path()).key();
        assert_ne!(chmodded, edited);
        std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
        assert_ne!(Fixture::new(dir.path()).key(), chmodded);
    }

    #[test]
    fn the_timeout_does_not_change_the_key() {
        let dir = workspace();
        let base = Fixture::new(dir.path()).key();
        let mut fixture = Fixture::new(dir.path());
        fixture.step.timeout_secs = Some(60);
        assert_eq!(fixture.key(), base);
    }

    #[test]
    fn declared_inputs_narrow_the_key() {
        let dir = workspace();
        let mut fixture = Fixture::new(dir.path());
        fixture.inputs = Some(vec![InputGlob::new("src").expect("glob")]);
        let base = fixture.key();
        std::fs::write(dir.path().join("a.txt"), "unrelated edit").expect("write");
        fixture.workspace = WorkspaceManifest::scan(dir.path()).expect("scan");
        assert_eq!(fixture.key(), base, "a file outside the inputs changed");
        std::fs::write(dir.path().join("src/main.c"), "int main(void);").expect("write");
        fixture.workspace = WorkspaceManifest::scan(dir.path()).expect("scan");
        assert_ne!(fixture.key(), base, "a declared input changed");
    }

    #[test]
    fn content_behind_outside_links_is_in_the_key_or_refused() {
        let dir = workspace();
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().join("config");
        std::fs::write(&target, "v1").expect("write");
        std::os::unix::fs::symlink(&target, dir.path().join("config")).expect("symlink");
        let base = Fixture::new(dir.path()).key();
        std::fs::write(&target, "v2").expect("write");
        assert_ne!(Fixture::new(dir.path()).key(), base);

        std::os::unix::fs::symlink(outside.path(), dir.path().join("shared")).expect("symlink");
        let fixture = Fixture::new(dir.path());
        let err = cache_key(&CacheKeyInput {
            executor: "local",
            step: &fixture.step,
            env: &fixture.env,
            workspace: &fixture.workspace,
            inputs: None,
            with: None,
            parent_snapshot: None,
            upstream: &[],
        })
        .expect_err("an outside directory cannot be covered");
        let message = err.to_string();
        assert!(
            message.contains("`shared` is a symbolic link") && message.contains("a directory"),
            "{message}"
        );
    }
}
