//! The errors an extension returns from `execute`, and the errors of reading a secret.
//!
//! [`Error`] mirrors the WIT `step-error` variant one to one, so what an extension returns is
//! what the host reports; [`SecretError`] mirrors `secrets.secret-error`.

use std::fmt;

/// Why a step could not produce an [`Output`](crate::Output). Every case ends the stage as
/// failed; the message is shown to the pipeline author (lowercase, no trailing period, with
/// secret values redacted by the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The stage's `with` (or the command) is unusable; the message names the offending key.
    /// Retrying the same input cannot succeed.
    InvalidConfig(String),
    /// The step ran and failed for a reason the pipeline author should see.
    Failed(String),
    /// The extension noticed cancellation and stopped; the message says how far it got.
    Cancelled(String),
    /// A bug or an unexpected condition inside the extension itself.
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidConfig`].
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    /// An [`Error::Failed`].
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }

    /// An [`Error::Cancelled`].
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::Cancelled(message.into())
    }

    /// An [`Error::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidConfig(m) | Self::Failed(m) | Self::Cancelled(m) | Self::Internal(m) => m,
        }
    }

    /// The WIT name of the kind: `invalid-config`, `failed`, `cancelled` or `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "invalid-config",
            Self::Failed(_) => "failed",
            Self::Cancelled(_) => "cancelled",
            Self::Internal(_) => "internal",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for Error {}

/// Why [`Context::secret`](crate::Context::secret) returned no value. The host checks in this
/// order: the name's form, then the manifest's declaration, then whether a value exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretError {
    /// Declared in `extension.toml`, but the engine has no value for it in this run.
    NotFound,
    /// Not declared in `extension.toml`'s `capabilities.secrets`, so the host refuses it.
    Denied,
    /// Not a valid secret name (`^[A-Z_][A-Z0-9_]{0,127}$`).
    InvalidName,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "the secret has no value in this run",
            Self::Denied => "the secret is not declared in the extension manifest",
            Self::InvalidName => "not a valid secret name",
        })
    }
}

impl std::error::Error for SecretError {}
