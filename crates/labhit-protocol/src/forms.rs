//! Validated scalar forms shared by the pipeline file, the manifest and the run model:
//! identifiers, extension references, durations, byte sizes and CPU amounts.
//!
//! Each form is parsed in exactly one place ([`FromStr`] or a `parse` function) that the YAML
//! walker, serde and borsh all go through, and each publishes the JSON Schema fragment that
//! says the same thing, so the schema and the Rust validator cannot disagree.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::diagnostic::Rule;

/// Why a scalar does not have the required form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FormError {
    /// The rule the value breaks (`invalid-value`, `version-req` or `out-of-range`).
    pub rule: Rule,
    /// What is wrong with it.
    pub message: String,
}

impl FormError {
    /// The same error with `context` (what the value is) in front of the message.
    #[must_use]
    pub fn context(self, context: &str) -> Self {
        Self {
            rule: self.rule,
            message: format!("{context}: {}", self.message),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self {
            rule: Rule::InvalidValue,
            message: message.into(),
        }
    }
}

/// `^[a-z][a-z0-9_-]{0,62}$` (stage ids, policy names; also the manifest's category and
/// name without `_`).
fn is_identifier(s: &str, allow_underscore: bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 63
        && chars.all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-'
                || (allow_underscore && c == '_')
        })
}

/// Defines a string newtype validated by `$check`, with serde, borsh and schemars.
macro_rules! validated_string {
    (
        $(#[$doc:meta])*
        $name:ident, pattern = $pattern:literal, what = $what:literal,
        description = $description:literal, example = $example:literal, check = $check:expr
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The JSON Schema `pattern` of this form.
            pub const PATTERN: &'static str = $pattern;

            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, FormError> {
                let s = s.into();
                let check: fn(&str) -> bool = $check;
                if check(&s) {
                    Ok(Self(s))
                } else {
                    Err(FormError::invalid(format!(
                        concat!("`{}` is not a valid ", $what, " (expected {})"),
                        s, $pattern
                    )))
                }
            }

            /// The string itself.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = FormError;
            fn from_str(s: &str) -> Result<Self, FormError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <String as Deserialize>::deserialize(deserializer)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl BorshSerialize for $name {
            fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
                BorshSerialize::serialize(&self.0, writer)
            }
        }

        impl BorshDeserialize for $name {
            fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
                let s = String::deserialize_reader(reader)?;
                Self::new(s).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            }
        }

        #[cfg(feature = "borsh-schema")]
        impl borsh::BorshSchema for $name {
            /// A struct with one unnamed `String` field: encoded as the string itself.
            fn add_definitions_recursively(
                definitions: &mut std::collections::BTreeMap<
                    borsh::schema::Declaration,
                    borsh::schema::Definition,
                >,
            ) {
                let fields = borsh::schema::Fields::UnnamedFields(vec![
                    <String as borsh::BorshSchema>::declaration(),
                ]);
                borsh::schema::add_definition(
                    <Self as borsh::BorshSchema>::declaration(),
                    borsh::schema::Definition::Struct { fields },
                    definitions,
                );
                <String as borsh::BorshSchema>::add_definitions_recursively(definitions);
            }

            fn declaration() -> borsh::schema::Declaration {
                stringify!($name).into()
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $description,
                    "examples": [$example],
                })
            }
        }
    };
}

validated_string! {
    /// The id of a stage: the key under `pipeline.stages`, referenced by `after`.
    StageId, pattern = "^[a-z][a-z0-9_-]{0,62}$", what = "stage id",
    description = "A stage id: lowercase letters, digits, `_` and `-`, starting with a letter.",
    example = "build", check = |s| is_identifier(s, true)
}

validated_string! {
    /// The name of a named gate policy (`gate.policy`).
    PolicyName, pattern = "^[a-z][a-z0-9_-]{0,62}$", what = "policy name",
    description = "The name of a gate policy the engine evaluates.",
    example = "production-deploy", check = |s| is_identifier(s, true)
}

validated_string! {
    /// The `category` or `name` half of an extension's identity.
    ExtensionIdent, pattern = "^[a-z][a-z0-9-]{0,62}$", what = "extension category or name",
    description = "An extension category or name: lowercase letters, digits and `-`, starting with a letter.",
    example = "source", check = |s| is_identifier(s, false)
}

validated_string! {
    /// The name of a pipeline: 1–100 of `[A-Za-z0-9._-]`, starting alphanumeric.
    PipelineName, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", what = "pipeline name",
    description = "A pipeline name: 1 to 100 of letters, digits, `.`, `_` and `-`, starting with a letter or digit.",
    example = "my-pipeline",
    check = |s| {
        s.len() <= 100
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    }
}

/// A `use` reference: `category/name`, optionally `@<semver requirement>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UseRef {
    /// Extension category, e.g. `source`.
    pub category: ExtensionIdent,
    /// Extension name, e.g. `git`.
    pub name: ExtensionIdent,
    /// Required version; `None` accepts any version.
    pub version: Option<semver::VersionReq>,
}

impl UseRef {
    /// The JSON Schema `pattern` of a reference (the requirement itself is checked by semver).
    pub const PATTERN: &'static str = "^[a-z][a-z0-9-]{0,62}/[a-z][a-z0-9-]{0,62}(@.+)?$";

    /// `category/name` without the requirement.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.category, self.name)
    }
}

impl fmt::Display for UseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.category, self.name)?;
        if let Some(req) = &self.version {
            write!(f, "@{req}")?;
        }
        Ok(())
    }
}

impl FromStr for UseRef {
    type Err = FormError;

    fn from_str(s: &str) -> Result<Self, FormError> {
        let (path, req) = match s.split_once('@') {
            Some((path, req)) => (path, Some(req)),
            None => (s, None),
        };
        let shape = || {
            FormError::invalid(format!(
                "`{s}` is not an extension reference (expected `category/name` or `category/name@<version requirement>`)"
            ))
        };
        let (category, name) = path.split_once('/').ok_or_else(shape)?;
        let category = ExtensionIdent::new(category).map_err(|_| shape())?;
        let name = ExtensionIdent::new(name).map_err(|_| shape())?;
        let version = match req {
            None => None,
            Some("") => return Err(shape()),
            Some(req) => Some(semver::VersionReq::parse(req).map_err(|e| FormError {
                rule: Rule::VersionReq,
                message: format!("`{req}` in `{s}` is not a semver requirement: {e}"),
            })?),
        };
        Ok(Self {
            category,
            name,
            version,
        })
    }
}

/// Implements serde (as a string), borsh (as a string) and `JsonSchema` for a form with
/// `FromStr` + `Display`.
macro_rules! string_form {
    ($name:ident, $schema:expr) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <String as Deserialize>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl BorshSerialize for $name {
            fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
                BorshSerialize::serialize(&self.to_string(), writer)
            }
        }

        impl BorshDeserialize for $name {
            fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
                let s = String::deserialize_reader(reader)?;
                s.parse()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

string_form!(
    UseRef,
    json_schema!({
        "type": "string",
        "pattern": UseRef::PATTERN,
        "description": "The extension a stage runs: `category/name`, optionally `@<semver requirement>`.",
        "examples": ["source/git", "deploy/kubernetes@^1.2"],
    })
);

/// A duration written as hours, minutes and seconds, e.g. `90s`, `30m`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationSpec {
    seconds: u64,
}

impl DurationSpec {
    /// The JSON Schema `pattern`: at least one non-zero part, each part 1–6 digits.
    /// Written without lookahead, so RE2-based validators accept it: one alternative per part
    /// that holds the non-zero digit.
    pub const PATTERN: &'static str = "^(?:(?:[1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|0{2}[1-9][0-9]{0,3}|0{3}[1-9][0-9]{0,2}|0{4}[1-9][0-9]{0,1}|0{5}[1-9])h(?:[0-9]{1,6}m)?(?:[0-9]{1,6}s)?|(?:[0-9]{1,6}h)?(?:[1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|0{2}[1-9][0-9]{0,3}|0{3}[1-9][0-9]{0,2}|0{4}[1-9][0-9]{0,1}|0{5}[1-9])m(?:[0-9]{1,6}s)?|(?:[0-9]{1,6}h)?(?:[0-9]{1,6}m)?(?:[1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|0{2}[1-9][0-9]{0,3}|0{3}[1-9][0-9]{0,2}|0{4}[1-9][0-9]{0,1}|0{5}[1-9])s)$";

    /// A duration of `seconds` (must be positive).
    pub fn from_secs(seconds: u64) -> Result<Self, FormError> {
        if seconds == 0 {
            return Err(FormError::invalid("a duration must be longer than zero"));
        }
        Ok(Self { seconds })
    }

    /// Total seconds.
    pub fn as_secs(&self) -> u64 {
        self.seconds
    }

    /// As a `std::time::Duration`.
    pub fn to_std(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }
}

impl fmt::Display for DurationSpec {
    /// Canonical form, e.g. `1h30m`, `45s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (
            self.seconds / 3600,
            self.seconds / 60 % 60,
            self.seconds % 60,
        );
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || self.seconds == 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl FromStr for DurationSpec {
    type Err = FormError;

    fn from_str(s: &str) -> Result<Self, FormError> {
        let bad = || {
            FormError::invalid(format!(
                "`{s}` is not a duration (expected hours, minutes and seconds like `90s`, `30m` or `1h30m`)"
            ))
        };
        let mut rest = s;
        let mut total: u64 = 0;
        let mut last_unit = 0; // enforces the order h, m, s
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 6 {
                return Err(bad());
            }
            let (number, tail) = rest.split_at(digits);
            let mut tail_chars = tail.chars();
            let (unit, scale) = match tail_chars.next() {
                Some('h') => (1, 3600),
                Some('m') => (2, 60),
                Some('s') => (3, 1),
                _ => return Err(bad()),
            };
            if unit <= last_unit {
                return Err(bad());
            }
            last_unit = unit;
            let value: u64 = number.parse().map_err(|_| bad())?;
            total += value * scale; // ≤ 999999 * 3600 * 3: no overflow
            rest = tail_chars.as_str();
        }
        if s.is_empty() {
            return Err(bad());
        }
        Self::from_secs(total).map_err(|_| FormError::invalid(format!("duration `{s}` is zero")))
    }
}

string_form!(
    DurationSpec,
    json_schema!({
        "type": "string",
        "pattern": DurationSpec::PATTERN,
        "description": "A positive duration in hours, minutes and seconds, in that order.",
        "examples": ["90s", "30m", "1h30m"],
    })
);

/// An amount of memory in bytes, written as an integer or with a binary (`Ki`, `Mi`, `Gi`,
/// `Ti`) or decimal (`K`, `M`, `G`, `T`) suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize {
    bytes: u64,
}

impl ByteSize {
    /// The JSON Schema `pattern` of the string form.
    /// 1–15 digits, not all zero, written without lookahead (RE2-based validators accept it):
    /// one alternative per count of leading zeros.
    pub const PATTERN: &'static str = "^(?:[1-9][0-9]{0,14}|0[1-9][0-9]{0,13}|0{2}[1-9][0-9]{0,12}|0{3}[1-9][0-9]{0,11}|0{4}[1-9][0-9]{0,10}|0{5}[1-9][0-9]{0,9}|0{6}[1-9][0-9]{0,8}|0{7}[1-9][0-9]{0,7}|0{8}[1-9][0-9]{0,6}|0{9}[1-9][0-9]{0,5}|0{10}[1-9][0-9]{0,4}|0{11}[1-9][0-9]{0,3}|0{12}[1-9][0-9]{0,2}|0{13}[1-9][0-9]{0,1}|0{14}[1-9])(?:Ki|Mi|Gi|Ti|K|M|G|T)?$";

    /// A size of `bytes` (must be positive).
    pub fn from_bytes(bytes: u64) -> Result<Self, FormError> {
        if bytes == 0 {
            return Err(FormError::invalid("a size must be larger than zero"));
        }
        Ok(Self { bytes })
    }

    /// Bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl fmt::Display for ByteSize {
    /// The shortest exact binary form, e.g. `4Gi`, `1536Mi`, `1000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, scale) in [
            ("Ti", 1u64 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if self.bytes.is_multiple_of(scale) {
                return write!(f, "{}{suffix}", self.bytes / scale);
            }
        }
        write!(f, "{}", self.bytes)
    }
}

impl FromStr for ByteSize {
    type Err = FormError;

    fn from_str(s: &str) -> Result<Self, FormError> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (number, suffix) = s.split_at(digits);
        let scale: Option<u64> = match suffix {
            "" => Some(1),
            "Ki" => Some(1 << 10),
            "Mi" => Some(1 << 20),
            "Gi" => Some(1 << 30),
            "Ti" => Some(1 << 40),
            "K" => Some(1_000),
            "M" => Some(1_000_000),
            "G" => Some(1_000_000_000),
            "T" => Some(1_000_000_000_000),
            _ => None,
        };
        let Some(scale) = scale.filter(|_| (1..=15).contains(&digits)) else {
            return Err(FormError::invalid(format!(
                "`{s}` is not a byte size (expected bytes or a number with Ki, Mi, Gi, Ti, K, M, G or T, e.g. `512Mi`)"
            )));
        };
        let number: u64 = number
            .parse()
            .map_err(|_| FormError::invalid(format!("`{s}` is not a byte size")))?;
        let bytes = number.checked_mul(scale).ok_or_else(|| FormError {
            rule: Rule::OutOfRange,
            message: format!("size `{s}` does not fit in 64 bits"),
        })?;
        Self::from_bytes(bytes).map_err(|_| FormError::invalid(format!("size `{s}` is zero")))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bytes(u64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Bytes(b) => ByteSize::from_bytes(b),
            Repr::Text(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl BorshSerialize for ByteSize {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.bytes, writer)
    }
}

impl BorshDeserialize for ByteSize {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let bytes = u64::deserialize_reader(reader)?;
        Self::from_bytes(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An amount of memory: bytes, or a number with a binary (Ki, Mi, Gi, Ti) or decimal (K, M, G, T) suffix.",
            // One branch per type (see `Cpu`): messages name the rule the value breaks.
            "type": ["integer", "string"],
            "if": { "type": "string" },
            "then": { "pattern": ByteSize::PATTERN },
            "else": { "minimum": 1, "maximum": u64::MAX },
            "examples": ["4Gi", "512Mi", 1073741824],
        })
    }
}

/// An amount of CPU in cores: a positive number, or millicores written like `500m`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Cpu {
    cores: f64,
}

impl Cpu {
    /// The JSON Schema `pattern` of the millicore form.
    pub const PATTERN: &'static str = "^[1-9][0-9]{0,8}m$";

    /// A CPU amount of `cores` (finite and positive).
    pub fn from_cores(cores: f64) -> Result<Self, FormError> {
        if cores.is_finite() && cores > 0.0 {
            Ok(Self { cores })
        } else {
            Err(FormError::invalid(format!(
                "cpu must be a number greater than zero or millicores like `500m`, not `{cores}`"
            )))
        }
    }

    /// Cores (`500m` is `0.5`).
    pub fn cores(&self) -> f64 {
        self.cores
    }
}

impl FromStr for Cpu {
    type Err = FormError;

    fn from_str(s: &str) -> Result<Self, FormError> {
        let bad = || {
            FormError::invalid(format!(
                "`{s}` is not a cpu amount (expected a number of cores like `2` or `0.5`, or millicores like `500m`)"
            ))
        };
        let millis = s.strip_suffix('m').ok_or_else(bad)?;
        let valid = !millis.is_empty()
            && millis.len() <= 9
            && !millis.starts_with('0')
            && millis.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return Err(bad());
        }
        let millis: u32 = millis.parse().map_err(|_| bad())?;
        Self::from_cores(f64::from(millis) / 1000.0)
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cores)
    }
}

impl Serialize for Cpu {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.cores)
    }
}

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Cores(f64),
            Millis(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Cores(c) => Cpu::from_cores(c),
            Repr::Millis(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl BorshSerialize for Cpu {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.cores, writer)
    }
}

impl BorshDeserialize for Cpu {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let cores = f64::deserialize_reader(reader)?;
        Self::from_cores(cores).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl JsonSchema for Cpu {
    fn schema_name() -> Cow<'static, str> {
        "Cpu".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "CPU in cores: a number greater than zero, or millicores like `500m`.",
            // `if`/`then`/`else` on the type instead of `oneOf`, so a validator's message
            // names the rule the value breaks (`-1 is less than or equal to 0`), not every
            // branch (`-1 is not of type string`).
            "type": ["number", "string"],
            "if": { "type": "string" },
            "then": { "pattern": Cpu::PATTERN },
            "else": { "exclusiveMinimum": 0 },
            "examples": [2, 0.5, "500m"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(StageId::new("build_2-x").is_ok());
        for bad in ["", "Build", "2build", "-x", "a b", &"a".repeat(64)] {
            assert!(StageId::new(bad).is_err(), "{bad:?}");
        }
        assert!(ExtensionIdent::new("a_b").is_err());
        assert!(PipelineName::new("My.pipe-1").is_ok());
        assert!(PipelineName::new(".x").is_err());
        assert!(PipelineName::new("a".repeat(101)).is_err());
    }

    #[test]
    fn use_refs() {
        let r: UseRef = "deploy/kubernetes@^1.2".parse().unwrap();
        assert_eq!(r.qualified_name(), "deploy/kubernetes");
        assert_eq!(r.to_string(), "deploy/kubernetes@^1.2");
        assert!("source/git".parse::<UseRef>().unwrap().version.is_none());
        for bad in ["git", "a/b/c", "A/b", "a/b@"] {
            assert_eq!(
                bad.parse::<UseRef>().unwrap_err().rule,
                Rule::InvalidValue,
                "{bad}"
            );
        }
        assert_eq!(
            "a/b@>>1".parse::<UseRef>().unwrap_err().rule,
            Rule::VersionReq
        );
    }

    #[test]
    fn durations() {
        assert_eq!("90s".parse::<DurationSpec>().unwrap().as_secs(), 90);
        assert_eq!("1h30m".parse::<DurationSpec>().unwrap().as_secs(), 5400);
        assert_eq!(
            "1h30m".parse::<DurationSpec>().unwrap().to_string(),
            "1h30m"
        );
        assert_eq!("90s".parse::<DurationSpec>().unwrap().to_string(), "1m30s");
        for bad in [
            "", "0s", "0h0m", "10", "5x", "30s1m", "1m1m", "1234567s", "-1s", " 1s",
        ] {
            assert!(bad.parse::<DurationSpec>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!("4Gi".parse::<ByteSize>().unwrap().bytes(), 4 << 30);
        assert_eq!("2K".parse::<ByteSize>().unwrap().bytes(), 2000);
        assert_eq!("1536Mi".parse::<ByteSize>().unwrap().to_string(), "1536Mi");
        assert_eq!(
            "999999999999999Ti".parse::<ByteSize>().unwrap_err().rule,
            Rule::OutOfRange
        );
        for bad in ["", "0", "4GB", "Gi", "4 Gi", "-1"] {
            assert_eq!(
                bad.parse::<ByteSize>().unwrap_err().rule,
                Rule::InvalidValue,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cpus() {
        assert_eq!("500m".parse::<Cpu>().unwrap().cores(), 0.5);
        assert!(Cpu::from_cores(0.0).is_err());
        assert!(Cpu::from_cores(f64::NAN).is_err());
        for bad in ["0m", "05m", "m", "1.5m", "2"] {
            assert!(bad.parse::<Cpu>().is_err(), "{bad:?}");
        }
    }
}
