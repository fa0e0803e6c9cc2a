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
//! * the content of the workspace the stage sees, as [`WorkspaceManifest::digest`];
//! * the parent snapshot and the keys of upstream stages, in the order given.
//!
//! Not in the key: the timeout and the cpu/memory limits (they decide whether a step
//! finishes, not what a successful step produces), run and step ids, timestamps.

use std::collections::BTreeMap;

use labhit_protocol::executor::CommandStep;
use labhit_protocol::ids::SnapshotRef;
use sha2::{Digest, Sha256};

use crate::workspace::{WorkspaceManifest, field, hex};

/// Version of the key derivation; changing what is hashed bumps it.
pub const KEY_FORMAT: &str = "labhit-cache-key/1";

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
    /// The workspace as the stage will see it when it starts.
    pub workspace: &'a WorkspaceManifest,
    /// The snapshot the step boots from, if any.
    pub parent_snapshot: Option<&'a SnapshotRef>,
    /// Cache keys (or other stable identities) of upstream stages.
    pub upstream: &'a [SnapshotRef],
}

/// The cache key of a `run:` stage as a snapshot tag, `labhit-cache:<sha256 hex>`.
pub fn cache_key(input: &CacheKeyInput<'_>) -> SnapshotRef {
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
    field(&mut hasher, b"workspace");
    field(&mut hasher, input.workspace.digest().as_bytes());
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
    SnapshotRef::new(format!("{TAG_PREFIX}{}", hex(&hasher.finalize())))
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
            }
        }

        fn key(&self) -> SnapshotRef {
            cache_key(&CacheKeyInput {
                executor: &self.executor,
                step: &self.step,
                env: &self.env,
                workspace: &self.workspace,
                parent_snapshot: self.parent.as_ref(),
                upstream: &self.upstream,
            })
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
}
