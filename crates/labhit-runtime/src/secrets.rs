//! Where secret values come from: the [`SecretStore`] trait and its providers.
//!
//! A domain type, not wasmtime glue: the CLI fills a store, the scheduler and executors pass
//! it on, and the sandbox's `labhit:extension/secrets` import ([`crate::host::secrets`]) asks
//! it only for names the manifest declares.
//!
//! * [`EnvSecrets`]: the host environment variable `LABHIT_SECRET_<NAME>` (prefix
//!   configurable);
//! * [`DirSecrets`]: a directory with one file per secret, named exactly like the secret
//!   (`DEPLOY_TOKEN`), whose content is the value; one trailing `\n` (or `\r\n`) is removed.
//!   This is the layout of Kubernetes and Docker secret mounts. Each file is read through
//!   [`crate::fsio`]: a regular file of at most 1 MiB, never a FIFO that would block;
//! * [`MapSecrets`]: values in memory (tests, `labhit run --secret`, `--secrets-file`);
//! * [`NoSecrets`]: no value for any name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::fsio;

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("cannot read secret `{name}` from {source_name}: {message}")]
pub struct SecretStoreError {
    /// The secret asked for.
    pub name: String,
    /// The provider, for example `directory /run/secrets`.
    pub source_name: String,
    /// What went wrong.
    pub message: String,
}

/// Where secret values come from. Only asked for names the manifest declares.
pub trait SecretStore: Send + Sync {
    /// The value of the secret `name` (a valid, declared name), or `None` when this store has
    /// none.
    fn get(&self, name: &str) -> Result<Option<String>, SecretStoreError>;
}

/// No secrets at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

impl SecretStore for NoSecrets {
    fn get(&self, _name: &str) -> Result<Option<String>, SecretStoreError> {
        Ok(None)
    }
}

/// Secrets held in memory.
#[derive(Debug, Clone, Default)]
pub struct MapSecrets(BTreeMap<String, String>);

impl MapSecrets {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a secret.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.insert(name.into(), value.into());
        self
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for MapSecrets {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }
}

impl SecretStore for MapSecrets {
    fn get(&self, name: &str) -> Result<Option<String>, SecretStoreError> {
        Ok(self.0.get(name).cloned())
    }
}

/// Secrets from host environment variables `<prefix><NAME>`; the default prefix is
/// [`EnvSecrets::DEFAULT_PREFIX`].
#[derive(Debug, Clone)]
pub struct EnvSecrets {
    prefix: String,
}

impl EnvSecrets {
    /// The default prefix: `LABHIT_SECRET_`.
    pub const DEFAULT_PREFIX: &'static str = "LABHIT_SECRET_";

    /// Reads `LABHIT_SECRET_<NAME>`.
    pub fn new() -> Self {
        Self::with_prefix(Self::DEFAULT_PREFIX)
    }

    /// Reads `<prefix><NAME>`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
}

impl Default for EnvSecrets {
    fn default() -> Self {
        Self::new()
    }
}

impl SecretStore for EnvSecrets {
    fn get(&self, name: &str) -> Result<Option<String>, SecretStoreError> {
        let var = format!("{}{name}", self.prefix);
        match std::env::var(&var) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretStoreError {
                name: name.to_owned(),
                source_name: format!("environment variable `{var}`"),
                message: "the value is not valid UTF-8".to_owned(),
            }),
        }
    }
}

/// Secrets from a directory holding one file per secret (see the module documentation).
#[derive(Debug, Clone)]
pub struct DirSecrets {
    dir: PathBuf,
}

impl DirSecrets {
    /// Reads secrets from files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl SecretStore for DirSecrets {
    fn get(&self, name: &str) -> Result<Option<String>, SecretStoreError> {
        // Names are validated before any store is asked, so `name` is a plain file name.
        let path = self.dir.join(name);
        let error = |message: String| SecretStoreError {
            name: name.to_owned(),
            source_name: format!("directory `{}`", self.dir.display()),
            message,
        };
        match fsio::read(&path, fsio::Limit::SECRETS) {
            Ok(bytes) => {
                let mut value = String::from_utf8(bytes)
                    .map_err(|_| error("the file is not valid UTF-8".to_owned()))?;
                if value.ends_with('\n') {
                    value.pop();
                    if value.ends_with('\r') {
                        value.pop();
                    }
                }
                Ok(Some(value))
            }
            Err(fsio::ReadError::NotFound { .. }) => Ok(None),
            Err(err) => Err(error(err.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_provider_reads_one_file_per_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("TOKEN"), "abc\r\n").expect("write");
        let store = DirSecrets::new(dir.path());
        assert_eq!(store.get("TOKEN").expect("reads"), Some("abc".to_owned()));
        assert_eq!(store.get("MISSING").expect("reads"), None);
        std::fs::write(dir.path().join("BAD"), [0xff, 0xfe]).expect("write");
        assert!(store.get("BAD").is_err());
    }

    #[test]
    fn env_provider_uses_the_prefix() {
        // A prefix no other test or process uses; reading the host environment is all this
        // checks (setting variables is unsafe in edition 2024).
        let store = EnvSecrets::with_prefix("LABHIT_TEST_NO_SUCH_PREFIX_");
        assert_eq!(store.get("TOKEN").expect("reads"), None);
        let path = EnvSecrets::with_prefix("PAT");
        assert_eq!(path.get("H").expect("reads"), std::env::var("PATH").ok());
    }
}
