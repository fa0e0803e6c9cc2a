//! On-disk cache of compiled components.
//!
//! Compiling a component takes tens of milliseconds; loading a precompiled artifact takes a
//! fraction of one. Entries live in the cache directory (see [`default_dir`]):
//!
//! ```text
//! <dir>/<engine fingerprint>/<sha256 of the .wasm file>.cwasm   the compiled artifact
//! <dir>/<engine fingerprint>/<sha256 of the .wasm file>.json    its record
//! ```
//!
//! The engine fingerprint hashes wasmtime's version, [`Engine::precompile_compatibility_hash`]
//! (every setting that changes compiled code) and this cache's format version, so a changed
//! engine never even looks at old entries. The record states the format, the key, the
//! fingerprint, and the size and CRC-32 checksum of the artifact. Before an artifact is
//! handed to wasmtime it is read in full and its size and checksum are compared with the
//! record; any mismatch (corrupt, truncated, foreign or half-written entry) is reported in
//! [`CacheOutcome::Rebuilt`], the entry is recompiled and rewritten. (The checksum guards
//! against accidents, not against someone who can write the cache directory: such a person
//! could rewrite the record as well, whatever hash it held. A CRC keeps a cached start well
//! under a millisecond; a sha256 of the artifact alone cost about 0.25 ms.) Both files are written to
//! a temporary name and renamed into place, so readers never see a partial file. A cache
//! directory that cannot be written is not an error: the component is compiled and used, and
//! the problem is reported in the outcome's notes.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Version of the entry layout; part of the fingerprint.
const FORMAT: u32 = 2;

/// The environment variable that overrides the default cache directory.
pub const CACHE_DIR_ENV: &str = "LABHIT_CACHE_DIR";

/// What the cache did for one load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A verified artifact was loaded; nothing was compiled.
    Hit,
    /// There was no entry: the component was compiled (and stored, unless a note says
    /// otherwise).
    Miss,
    /// An entry existed but was not trusted (the reason says why); the component was compiled
    /// again and the entry rewritten.
    Rebuilt {
        /// Why the entry was refused.
        reason: String,
    },
    /// The cache is disabled: the component was compiled.
    Disabled,
}

/// How a compiled component was obtained (the component itself went to the caller's
/// `accept`).
pub(crate) struct Loaded {
    pub(crate) outcome: CacheOutcome,
    /// Problems that did not stop the load (an entry that could not be written, ...).
    pub(crate) notes: Vec<String>,
}

/// The cache of one engine.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    fingerprint: String,
}

/// The default cache directory: `$LABHIT_CACHE_DIR`, else `$XDG_CACHE_HOME/labhit/components`,
/// else `~/.cache/labhit/components`; `None` when none of these can be determined.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("labhit").join("components"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|home| {
            PathBuf::from(home)
                .join(".cache")
                .join("labhit")
                .join("components")
        })
}

/// The fingerprint of `engine`'s compilation settings (16 hex digits).
pub fn engine_fingerprint(engine: &Engine) -> String {
    // SipHash with fixed keys: stable for one build of this crate, which is all a cache
    // key needs (a different build only misses).
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    FORMAT.hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl ComponentCache {
    /// A cache in `dir` (`None`: disabled) for `engine`.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            fingerprint: engine_fingerprint(engine),
        }
    }

    /// The directory holding this engine's entries, if the cache is enabled.
    pub fn entries_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(&self.fingerprint))
    }

    /// The artifact and record paths of the entry for `source` (the bytes of the `.wasm`
    /// file as found on disk).
    pub fn entry_paths(&self, source: &[u8]) -> Option<(PathBuf, PathBuf)> {
        let key = sha256_hex(source);
        self.entries_dir().map(|dir| {
            (
                dir.join(format!("{key}.cwasm")),
                dir.join(format!("{key}.json")),
            )
        })
    }

    /// Loads the compiled form of `source` from the cache, or compiles the component that
    /// `prepare` makes from it (adapting a core module, for instance, and checking what can
    /// be checked before compiling) and stores it. `accept` judges the compiled component
    /// (contract, links); a freshly compiled component is stored only when it accepts it, so
    /// the cache never holds the artifact of a component the caller rejected.
    pub(crate) fn load_or_compile<'a, T, E>(
        &self,
        engine: &Engine,
        source: &'a [u8],
        prepare: impl FnOnce() -> Result<std::borrow::Cow<'a, [u8]>, E>,
        compile_error: impl FnOnce(wasmtime::Error) -> E,
        accept: impl FnOnce(&Component) -> Result<T, E>,
    ) -> Result<(Loaded, T), E> {
        let Some(dir) = self.entries_dir() else {
            let bytes = prepare()?;
            let component = Component::new(engine, &bytes).map_err(compile_error)?;
            let accepted = accept(&component)?;
            return Ok((
                Loaded {
                    outcome: CacheOutcome::Disabled,
                    notes: Vec::new(),
                },
                accepted,
            ));
        };
        let key = sha256_hex(source);
        let artifact_path = dir.join(format!("{key}.cwasm"));
        let record_path = dir.join(format!("{key}.json"));
        let outcome = match self.read_entry(engine, &key, &artifact_path, &record_path) {
            Lookup::Hit(component) => {
                let accepted = accept(&component)?;
                return Ok((
                    Loaded {
                        outcome: CacheOutcome::Hit,
                        notes: Vec::new(),
                    },
                    accepted,
                ));
            }
            Lookup::Absent => CacheOutcome::Miss,
            Lookup::Refused(reason) => CacheOutcome::Rebuilt { reason },
        };
        let bytes = prepare()?;
        let component = Component::new(engine, &bytes).map_err(compile_error)?;
        let accepted = accept(&component)?;
        let mut notes = Vec::new();
        if let Err(problem) = self.write_entry(&component, &key, &dir, &artifact_path, &record_path)
        {
            notes.push(problem);
        }
        Ok((Loaded { outcome, notes }, accepted))
    }

    fn read_entry(
        &self,
        engine: &Engine,
        key: &str,
        artifact_path: &Path,
        record_path: &Path,
    ) -> Lookup {
        let record = match std::fs::read(record_path) {
            Ok(record) => record,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Lookup::Absent;
            }
            Err(err) => return Lookup::Refused(format!("cannot read the cache record: {err}")),
        };
        let record: serde_json::Value = match serde_json::from_slice(&record) {
            Ok(record) => record,
            Err(err) => return Lookup::Refused(format!("the cache record is not JSON: {err}")),
        };
        let field = |name: &str| record.get(name).cloned().unwrap_or(serde_json::Value::Null);
        if field("format") != serde_json::json!(FORMAT)
            || field("key") != serde_json::json!(key)
            || field("engine") != serde_json::json!(self.fingerprint)
        {
            return Lookup::Refused(
                "the cache record belongs to another component, engine or format".into(),
            );
        }
        let (Some(size), Some(checksum)) = (
            field("artifact_size").as_u64(),
            field("artifact_crc32").as_u64(),
        ) else {
            return Lookup::Refused(
                "the cache record lacks the artifact's size or checksum".into(),
            );
        };
        let artifact = match std::fs::read(artifact_path) {
            Ok(artifact) => artifact,
            Err(err) => return Lookup::Refused(format!("cannot read the cached artifact: {err}")),
        };
        if artifact.len() as u64 != size {
            return Lookup::Refused(format!(
                "the cached artifact has {} bytes, its record says {size} (truncated or replaced)",
                artifact.len()
            ));
        }
        if u64::from(crc32fast::hash(&artifact)) != checksum {
            return Lookup::Refused("the cached artifact does not match its checksum".into());
        }
        drop(artifact);
        match deserialize_verified(engine, artifact_path) {
            Ok(component) => Lookup::Hit(component),
            Err(err) => Lookup::Refused(format!("wasmtime refused the cached artifact: {err}")),
        }
    }

    fn write_entry(
        &self,
        component: &Component,
        key: &str,
        dir: &Path,
        artifact_path: &Path,
        record_path: &Path,
    ) -> Result<(), String> {
        let artifact = component
            .serialize()
            .map_err(|err| format!("cannot serialize the compiled component: {err}"))?;
        std::fs::create_dir_all(dir).map_err(|err| {
            format!(
                "cannot create the cache directory `{}`: {err}",
                dir.display()
            )
        })?;
        let record = serde_json::json!({
            "format": FORMAT,
            "key": key,
            "engine": self.fingerprint,
            "wasmtime": env!("CARGO_PKG_VERSION"),
            "artifact_size": artifact.len() as u64,
            "artifact_crc32": crc32fast::hash(&artifact),
        });
        write_atomic(artifact_path, &artifact)?;
        write_atomic(record_path, record.to_string().as_bytes())
    }
}

enum Lookup {
    Hit(Component),
    Absent,
    Refused(String),
}

/// Maps a verified artifact file as a component.
#[allow(unsafe_code)]
fn deserialize_verified(engine: &Engine, artifact: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize_file` trusts the file to be an artifact produced by
    // `Component::serialize`/`Engine::precompile_component` of a compatible wasmtime, because
    // it maps it as executable code, and trusts it not to change while mapped. The file is
    // one this runtime wrote: it lives in this runtime's own cache directory, under a
    // fingerprint of this engine's configuration, and the caller has just read it in full
    // and compared its size and checksum with the record this runtime wrote next to it after
    // serializing the component. So corruption, truncation, a half-written file or an entry
    // of another component or engine is refused before this call. Entries are only ever
    // replaced by an atomic rename (never written in place), so a file that is mapped is
    // never modified; a rename between the check and the mapping can only install another
    // complete artifact for the same key and engine. wasmtime additionally checks its own
    // header (version, target, configuration) and refuses a mismatch.
    unsafe { Component::deserialize_file(engine, artifact) }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|err| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write the cache entry `{}`: {err}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// The smallest component: the preamble only.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        Engine::default()
    }

    fn load(cache: &ComponentCache, engine: &Engine, source: &[u8]) -> Loaded {
        cache
            .load_or_compile(
                engine,
                source,
                || Ok::<_, String>(Cow::Borrowed(source)),
                |e| e.to_string(),
                |_| Ok(()),
            )
            .expect("loads")
            .0
    }

    #[test]
    fn miss_then_hit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine();
        let cache = ComponentCache::new(&engine, Some(dir.path().to_owned()));
        assert_eq!(
            load(&cache, &engine, EMPTY_COMPONENT).outcome,
            CacheOutcome::Miss
        );
        let second = load(&cache, &engine, EMPTY_COMPONENT);
        assert_eq!(second.outcome, CacheOutcome::Hit);
        assert!(second.notes.is_empty());
        // No temporary file is left behind.
        let entries = std::fs::read_dir(cache.entries_dir().expect("enabled"))
            .expect("dir")
            .count();
        assert_eq!(entries, 2);
    }

    #[test]
    fn a_rejected_component_is_not_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine();
        let cache = ComponentCache::new(&engine, Some(dir.path().to_owned()));
        let mut prepared = false;
        let err = cache
            .load_or_compile(
                &engine,
                EMPTY_COMPONENT,
                || {
                    prepared = true;
                    Ok::<_, String>(Cow::Borrowed(EMPTY_COMPONENT))
                },
                |e| e.to_string(),
                |_| Err::<(), _>("rejected".to_owned()),
            )
            .err();
        assert_eq!(err.as_deref(), Some("rejected"));
        assert!(prepared);
        let (artifact, record) = cache.entry_paths(EMPTY_COMPONENT).expect("enabled");
        assert!(!artifact.exists() && !record.exists(), "nothing stored");
        // A refusal before compiling (in `prepare`) stores nothing either.
        let err = cache
            .load_or_compile(
                &engine,
                EMPTY_COMPONENT,
                || Err::<Cow<'_, [u8]>, _>("refused early".to_owned()),
                |e| e.to_string(),
                |_| Ok(()),
            )
            .err();
        assert_eq!(err.as_deref(), Some("refused early"));
        assert!(!artifact.exists() && !record.exists(), "nothing stored");
    }

    #[test]
    fn corrupt_and_truncated_artifacts_are_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine();
        let cache = ComponentCache::new(&engine, Some(dir.path().to_owned()));
        load(&cache, &engine, EMPTY_COMPONENT);
        let (artifact, _) = cache.entry_paths(EMPTY_COMPONENT).expect("enabled");

        let mut bytes = std::fs::read(&artifact).expect("artifact");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&artifact, &bytes).expect("corrupt");
        match load(&cache, &engine, EMPTY_COMPONENT).outcome {
            CacheOutcome::Rebuilt { reason } => assert!(reason.contains("checksum"), "{reason}"),
            other => panic!("expected a rebuild, got {other:?}"),
        }
        assert_eq!(
            load(&cache, &engine, EMPTY_COMPONENT).outcome,
            CacheOutcome::Hit
        );

        let bytes = std::fs::read(&artifact).expect("artifact");
        std::fs::write(&artifact, &bytes[..bytes.len() / 3]).expect("truncate");
        match load(&cache, &engine, EMPTY_COMPONENT).outcome {
            CacheOutcome::Rebuilt { reason } => assert!(reason.contains("truncated"), "{reason}"),
            other => panic!("expected a rebuild, got {other:?}"),
        }
        assert_eq!(
            load(&cache, &engine, EMPTY_COMPONENT).outcome,
            CacheOutcome::Hit
        );
    }

    fn other_entry(cache: &ComponentCache, engine: &Engine, source: &[u8]) {
        cache
            .load_or_compile(
                engine,
                source,
                || Ok::<_, String>(Cow::Borrowed(EMPTY_COMPONENT)),
                |e| e.to_string(),
                |_| Ok(()),
            )
            .expect("loads");
    }

    #[test]
    fn foreign_entries_are_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine();
        let cache = ComponentCache::new(&engine, Some(dir.path().to_owned()));
        load(&cache, &engine, EMPTY_COMPONENT);
        let (artifact, record) = cache.entry_paths(EMPTY_COMPONENT).expect("enabled");

        // The entry of another source file, copied over this one's entry.
        let other: &[u8] = b"another source file";
        other_entry(&cache, &engine, other);
        let (other_artifact, other_record) = cache.entry_paths(other).expect("enabled");
        std::fs::copy(other_artifact, &artifact).expect("copy");
        std::fs::copy(other_record, &record).expect("copy");
        match load(&cache, &engine, EMPTY_COMPONENT).outcome {
            CacheOutcome::Rebuilt { reason } => {
                assert!(reason.contains("another component"), "{reason}")
            }
            other => panic!("expected a rebuild, got {other:?}"),
        }

        // Bytes that are not an artifact at all, with a record that vouches for them.
        let junk = b"definitely not a compiled component";
        std::fs::write(&artifact, junk).expect("junk");
        let key = sha256_hex(EMPTY_COMPONENT);
        let record_json = serde_json::json!({
            "format": FORMAT, "key": key, "engine": cache.fingerprint,
            "artifact_size": junk.len(), "artifact_crc32": crc32fast::hash(junk),
        });
        std::fs::write(&record, record_json.to_string()).expect("record");
        match load(&cache, &engine, EMPTY_COMPONENT).outcome {
            CacheOutcome::Rebuilt { reason } => assert!(reason.contains("wasmtime"), "{reason}"),
            other => panic!("expected a rebuild, got {other:?}"),
        }
        assert_eq!(
            load(&cache, &engine, EMPTY_COMPONENT).outcome,
            CacheOutcome::Hit
        );

        // A record that is not JSON.
        std::fs::write(&record, "{").expect("record");
        assert!(matches!(
            load(&cache, &engine, EMPTY_COMPONENT).outcome,
            CacheOutcome::Rebuilt { .. }
        ));
    }

    #[test]
    fn engines_with_other_settings_use_other_entries() {
        let plain = engine();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let epoch = Engine::new(&config).expect("engine");
        assert_ne!(engine_fingerprint(&plain), engine_fingerprint(&epoch));
        assert_eq!(engine_fingerprint(&plain), engine_fingerprint(&engine()));
    }

    #[test]
    fn an_unwritable_cache_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").expect("write");
        let engine = engine();
        let cache = ComponentCache::new(&engine, Some(file));
        let loaded = load(&cache, &engine, EMPTY_COMPONENT);
        assert_eq!(loaded.outcome, CacheOutcome::Miss);
        assert_eq!(loaded.notes.len(), 1, "{:?}", loaded.notes);
    }

    #[test]
    fn a_disabled_cache_compiles() {
        let engine = engine();
        let cache = ComponentCache::new(&engine, None);
        assert_eq!(
            load(&cache, &engine, EMPTY_COMPONENT).outcome,
            CacheOutcome::Disabled
        );
    }
}
