//! Identifiers that cross process boundaries: [`RunId`], [`StepId`], [`ArchiveId`] (UUIDs)
//! and [`SnapshotRef`] (an opaque string).
//!
//! The UUID ids are newtypes so one kind cannot be passed where another is expected. On the
//! wire each is exactly its inner value: JSON carries the hyphenated lowercase UUID string
//! (`"0b7c6a1e-3f52-4c8e-9d4a-5b6f7e8d9c0a"`), borsh carries the 16 raw bytes in RFC 9562
//! (big-endian) order, see [`crate::borsh_ext::uuid`]. A [`SnapshotRef`] is a plain string in
//! both encodings (borsh: `u32` little-endian byte length, then UTF-8 bytes).

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string that is not a UUID was given where an id was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a valid {kind} (expected a UUID such as `0b7c6a1e-3f52-4c8e-9d4a-5b6f7e8d9c0a`): {source}"
)]
pub struct ParseIdError {
    /// Which kind of id was being parsed (`run id`, `step id`, `archive id`).
    pub kind: &'static str,
    /// The rejected input.
    pub input: String,
    /// What the UUID parser objected to.
    #[source]
    pub source: uuid::Error,
}

/// Defines a UUID newtype with serde (transparent), borsh (16 bytes), schemars, `Display`
/// and `FromStr`.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, kind = $kind:literal, example = $example:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            Serialize, Deserialize, JsonSchema, BorshSerialize, BorshDeserialize,
        )]
        #[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
        #[serde(transparent)]
        #[schemars(example = &$example)]
        pub struct $name(
            #[borsh(
                serialize_with = "crate::borsh_ext::uuid::serialize",
                deserialize_with = "crate::borsh_ext::uuid::deserialize"
            )]
            #[cfg_attr(
                feature = "borsh-schema",
                borsh(schema(with_funcs(
                    declaration = "crate::borsh_ext::uuid::schema_declaration",
                    definitions = "crate::borsh_ext::uuid::schema_definitions"
                )))
            )]
            pub Uuid,
        );

        impl $name {
            /// Wraps a UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// Parses the hyphenated (or any other form the `uuid` crate accepts) string form.
            pub fn parse(s: &str) -> Result<Self, ParseIdError> {
                Uuid::parse_str(s).map(Self).map_err(|source| ParseIdError {
                    kind: $kind,
                    input: s.to_owned(),
                    source,
                })
            }
        }

        impl fmt::Display for $name {
            /// The hyphenated lowercase form, as in JSON.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, ParseIdError> {
                Self::parse(s)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

uuid_id! {
    /// The id of one pipeline run, assigned by the engine when the run is created. Unique
    /// per engine; every log entry and stage run of the run refers to it.
    RunId, kind = "run id", example = "0b7c6a1e-3f52-4c8e-9d4a-5b6f7e8d9c0a"
}

uuid_id! {
    /// The id of one step execution (one attempt at running a stage's work), assigned by the
    /// engine. A retried stage gets a new step id.
    StepId, kind = "step id", example = "5e3d2c1b-0a9f-4e8d-8c7b-6a5f4e3d2c1b"
}

uuid_id! {
    /// An opaque handle to the archive of the stage workspace that the host prepared for an
    /// executor. The executor fetches the archive's bytes from the host by this id; it has no
    /// meaning outside the host that issued it.
    ArchiveId, kind = "archive id", example = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
}

/// An opaque reference to a filesystem snapshot written by an executor, such as a container
/// image tag (`registry.example/cache/build@sha256:…`).
///
/// Only the executor that wrote a snapshot interprets its reference; hosts store, compare
/// and pass it back, never parse it. References should be non-empty.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[cfg_attr(feature = "borsh-schema", derive(borsh::BorshSchema))]
#[serde(transparent)]
#[schemars(example = &"labhit-cache/build:4f2a9c81")]
pub struct SnapshotRef(pub String);

impl SnapshotRef {
    /// Wraps a reference.
    pub fn new(reference: impl Into<String>) -> Self {
        Self(reference.into())
    }

    /// The reference as written by the executor.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SnapshotRef {
    type Err = std::convert::Infallible;

    /// Any string is a reference; parsing never fails.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl From<String> for SnapshotRef {
    fn from(reference: String) -> Self {
        Self(reference)
    }
}

impl From<&str> for SnapshotRef {
    fn from(reference: &str) -> Self {
        Self(reference.to_owned())
    }
}

impl AsRef<str> for SnapshotRef {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "0b7c6a1e-3f52-4c8e-9d4a-5b6f7e8d9c0a";

    #[test]
    fn display_and_parse_agree() {
        let id: RunId = TEXT.parse().unwrap();
        assert_eq!(id.to_string(), TEXT);
        assert_eq!(RunId::parse(&TEXT.to_uppercase()).unwrap(), id);
    }

    #[test]
    fn parse_error_names_the_kind() {
        let err = "nope".parse::<StepId>().unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("`nope` is not a valid step id"),
            "{message}"
        );
    }

    #[test]
    fn json_is_the_bare_uuid_string() {
        let id = ArchiveId::parse(TEXT).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{TEXT}\""));
        let snapshot = SnapshotRef::new("img:tag");
        assert_eq!(serde_json::to_string(&snapshot).unwrap(), "\"img:tag\"");
    }

    #[test]
    fn borsh_is_sixteen_raw_bytes() {
        let id = RunId::parse(TEXT).unwrap();
        let bytes = borsh::to_vec(&id).unwrap();
        assert_eq!(bytes, id.as_uuid().as_bytes());
        assert_eq!(borsh::from_slice::<RunId>(&bytes).unwrap(), id);
        assert!(borsh::from_slice::<RunId>(&bytes[..15]).is_err());
    }
}
