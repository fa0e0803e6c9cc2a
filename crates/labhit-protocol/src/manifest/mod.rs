//! The extension manifest (`extension.toml`): identity, capabilities, limits and I/O schemas
//! of one extension, read from TOML.
//!
//! Capabilities are denied unless declared: no filesystem, no secrets, no executor, no
//! network. [`Manifest::from_toml`] parses and validates, answering every problem with a
//! [`Diagnostic`] that has a line and column.

use std::borrow::Cow;
use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::diagnostic::{Diagnostic, Position, Rule, Span};
use crate::forms::{ByteSize, DurationSpec, ExtensionIdent};
use crate::value::{Map, Value};

pub mod network;

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// A parsed, validated `extension.toml`.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, BorshSerialize, BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
#[schemars(title = "LabHit extension manifest", example = example_manifest())]
pub struct Manifest {
    /// Who the extension is and where its component is.
    pub extension: Identity,
    /// What the extension may do. Everything not declared is denied.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Limits the host enforces on each execution.
    #[serde(default)]
    pub limits: Limits,
    /// JSON Schema of the stage's `with` object. Absent: any object is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub inputs: Option<Map>,
    /// JSON Schema of the outputs the extension reports. Absent: outputs are undocumented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub outputs: Option<Map>,
}

fn example_manifest() -> serde_json::Value {
    serde_json::json!({
        "extension": {
            "category": "util", "name": "checksum", "version": "0.1.0", "contract": "^0.2",
            "description": "Hash workspace files and write a checksum manifest",
            "component": "checksum.wasm"
        },
        "capabilities": { "filesystem": "read-write", "secrets": [], "executor": false },
        "limits": { "memory": "64Mi", "timeout": "5m", "disk": "512Mi", "files": 10000 },
        "inputs": {
            "type": "object",
            "properties": { "patterns": { "type": "array", "items": { "type": "string" } } },
            "required": ["patterns"],
            "additionalProperties": false
        }
    })
}

/// The identity of an extension.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, BorshSerialize, BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Category, e.g. `source`, `build`, `deploy`: the first half of `use: category/name`.
    pub category: ExtensionIdent,
    /// Name within the category: the second half of `use: category/name`.
    pub name: ExtensionIdent,
    /// Version of the extension (SemVer).
    #[serde(with = "semver_serde")]
    #[schemars(
        with = "String",
        regex(pattern = r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"),
        example = "1.2.0"
    )]
    #[borsh(
        serialize_with = "crate::borsh_ext::version::serialize",
        deserialize_with = "crate::borsh_ext::version::deserialize"
    )]
    pub version: semver::Version,
    /// The versions of the LabHit extension contract (the WIT package) this extension works
    /// with, as a SemVer requirement, e.g. `^0.2`.
    #[schemars(with = "String", example = "^0.2")]
    #[borsh(
        serialize_with = "crate::borsh_ext::version_req::serialize",
        deserialize_with = "crate::borsh_ext::version_req::deserialize"
    )]
    pub contract: semver::VersionReq,
    /// One line saying what the extension does.
    #[schemars(length(min = 1, max = 300))]
    pub description: String,
    /// Path of the WebAssembly component, relative to the manifest, e.g. `checksum.wasm`.
    #[schemars(regex(pattern = r"^[^/\\].*\.wasm$"))]
    pub component: String,
}

mod semver_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &semver::Version, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<semver::Version, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        semver::Version::parse(&s).map_err(|e| {
            serde::de::Error::custom(format_args!("`{s}` is not a semver version: {e}"))
        })
    }
}

/// What an extension may do. Each capability is denied unless declared.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Access to the stage workspace, preopened at `/workspace`.
    #[serde(default)]
    pub filesystem: FilesystemAccess,
    /// Names of the secrets the extension may read; any other name is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretName>,
    /// The extension may run `run:` scripts (it is an executor).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executor: bool,
    /// Destinations the extension may send HTTP requests to (`wasi:http/outgoing-handler`);
    /// empty means no network at all. Entry forms: `host` (that name on the default ports
    /// 80 and 443), `host:port` (that port only), `*.suffix` or `*.suffix:port` (every name
    /// ending in `.suffix`, not `suffix` itself), and IP literals (`203.0.113.7:8080`,
    /// `[2001:db8::1]:8080`). Names are matched lowercase without a trailing dot; non-ASCII
    /// names must be written in punycode (`xn--…`). A host name entry never reaches a
    /// loopback, private, link-local or otherwise special address, even if it resolves to
    /// one (`localhost` listed is still refused): only an IP literal entry naming that
    /// address does. Hosts that do not implement networking deny every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<String>,
}

impl Capabilities {
    /// The parsed `network` allow-list; the error names the index of the first bad entry.
    pub fn allow_list(&self) -> Result<network::AllowList, (usize, network::HostError)> {
        network::AllowList::parse(&self.network)
    }
}

/// Workspace access granted to an extension.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(rename_all = "kebab-case")]
#[borsh(use_discriminant = false)]
pub enum FilesystemAccess {
    /// No filesystem at all (the default).
    #[default]
    None,
    /// The workspace, read-only.
    Read,
    /// The workspace, read and write.
    ReadWrite,
}

impl fmt::Display for FilesystemAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilesystemAccess::None => "none",
            FilesystemAccess::Read => "read",
            FilesystemAccess::ReadWrite => "read-write",
        })
    }
}

/// A secret name: `^[A-Z_][A-Z0-9_]{0,127}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

impl SecretName {
    /// The JSON Schema `pattern` of a secret name.
    pub const PATTERN: &'static str = "^[A-Z_][A-Z0-9_]{0,127}$";

    /// Validates a secret name.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        let ok = s.len() <= 128
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Self(s))
        } else {
            Err(format!(
                "`{s}` is not a valid secret name (expected {})",
                Self::PATTERN
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SecretName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SecretName::new(<String as Deserialize>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl BorshSerialize for SecretName {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.0, w)
    }
}

impl BorshDeserialize for SecretName {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        SecretName::new(String::deserialize_reader(r)?)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl JsonSchema for SecretName {
    fn schema_name() -> Cow<'static, str> {
        "SecretName".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": SecretName::PATTERN,
            "description": "A secret name: upper-case letters, digits and `_`.",
            "examples": ["DEPLOY_TOKEN"],
        })
    }
}

/// Per-execution limits. Hosts apply their defaults to what is not set.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most linear memory the component may use; the reference host's default is `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Longest one execution may run; the reference host's default is `10m`. A stage's
    /// `sandbox.timeout` may only shorten it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Most bytes one execution may add to the workspace (growth of file sizes, never
    /// credited back by deleting or truncating); the reference host's default is `1Gi`.
    /// Writes past it fail with `insufficient-space` and the step fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<ByteSize>,
    /// Most files, directories and links one execution may create in the workspace (deleting
    /// does not give any back); the reference host's default is `100000`. Creations past it
    /// fail with `quota` and the step fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub files: Option<std::num::NonZeroU64>,
}

impl Manifest {
    /// `category/name`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.extension.category, self.extension.name)
    }

    /// Parses and validates a manifest from TOML bytes.
    pub fn from_toml_bytes(source: &[u8]) -> Result<Manifest, Vec<Diagnostic>> {
        if source.len() > MAX_MANIFEST_BYTES {
            return Err(vec![Diagnostic::error(
                Rule::InputLimit,
                Span::file_start(),
                format!(
                    "manifest is {} bytes, more than the limit of {MAX_MANIFEST_BYTES}",
                    source.len()
                ),
            )]);
        }
        let text = std::str::from_utf8(source).map_err(|e| {
            // The bytes before the first invalid one are valid UTF-8 by construction.
            let prefix = std::str::from_utf8(&source[..e.valid_up_to()]).unwrap_or_default();
            let at = Position::after(prefix);
            vec![Diagnostic::error(
                Rule::Syntax,
                Span::point(at),
                "manifest is not valid UTF-8",
            )]
        })?;
        Self::from_toml(text)
    }

    /// Parses and validates a manifest from TOML text.
    pub fn from_toml(source: &str) -> Result<Manifest, Vec<Diagnostic>> {
        let manifest: Manifest = toml::from_str(source).map_err(|e| {
            let span = e.span().map_or_else(Span::file_start, |r| {
                Span::new(
                    Position::at_byte(source, r.start),
                    Position::at_byte(source, r.end),
                )
            });
            let message = e.message().trim_end().to_owned();
            let rule = if message.starts_with("unknown field") {
                Rule::UnknownKey
            } else if message.starts_with("missing field") {
                Rule::MissingKey
            } else if message.starts_with("invalid type") {
                Rule::InvalidType
            } else if e.span().is_some() && message.contains("duplicate key") {
                Rule::DuplicateKey
            } else {
                Rule::InvalidManifest
            };
            vec![Diagnostic::error(
                rule,
                span,
                format!("invalid extension manifest: {message}"),
            )]
        })?;
        let problems = manifest.problems();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(problems
                .into_iter()
                .map(|problem| {
                    let span = locate(source, problem.key, problem.index);
                    Diagnostic::error(Rule::InvalidManifest, span, problem.message)
                })
                .collect())
        }
    }

    /// Checks that go beyond the shape: component path, I/O schemas, network entries.
    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let component = &self.extension.component;
        let path = std::path::Path::new(component);
        let escapes = path.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if component.is_empty() || escapes || component.contains('\\') {
            out.push(Problem::at(
                &["extension", "component"],
                format!(
                    "`extension.component` is `{component}`; it must be a relative path inside the extension's directory"
                ),
            ));
        } else if !component.ends_with(".wasm") {
            out.push(Problem::at(
                &["extension", "component"],
                format!("`extension.component` is `{component}`; it must name a `.wasm` file"),
            ));
        }
        if self.extension.description.trim().is_empty() {
            out.push(Problem::at(
                &["extension", "description"],
                "`extension.description` is empty; say in one line what the extension does".into(),
            ));
        }
        if let Some(Value::String(t)) = self.inputs.as_ref().and_then(|schema| schema.get("type"))
            && t != "object"
        {
            out.push(Problem::at(
                &["inputs", "type"],
                format!("`inputs` must describe an object (`type = \"object\"`), not `{t}`"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, secret) in self.capabilities.secrets.iter().enumerate() {
            if !seen.insert(secret) {
                out.push(Problem {
                    key: &["capabilities", "secrets"],
                    index: Some(index),
                    message: format!(
                        "secret `{secret}` is declared twice in `capabilities.secrets`"
                    ),
                });
            }
        }
        for (index, entry) in self.capabilities.network.iter().enumerate() {
            if let Err(err) = network::NetworkEntry::parse(entry) {
                out.push(Problem {
                    key: &["capabilities", "network"],
                    index: Some(index),
                    message: format!(
                        "`capabilities.network` entry `{entry}` is not `host`, `host:port`, `*.suffix` or an IP literal: {err}"
                    ),
                });
            }
        }
        out
    }

    /// The input schema as JSON, or `None` when the manifest declares none.
    pub fn inputs_schema(&self) -> Option<serde_json::Value> {
        self.inputs
            .as_ref()
            .map(|m| Value::Object(m.clone()).to_json())
    }

    /// The output schema as JSON, or `None` when the manifest declares none.
    pub fn outputs_schema(&self) -> Option<serde_json::Value> {
        self.outputs
            .as_ref()
            .map(|m| Value::Object(m.clone()).to_json())
    }
}

/// A problem past the TOML shape, with the key it is about.
struct Problem {
    /// The dotted key, as table names: `["extension", "component"]`.
    key: &'static [&'static str],
    /// The element of the array at `key`, when the problem is about one.
    index: Option<usize>,
    message: String,
}

impl Problem {
    fn at(key: &'static [&'static str], message: String) -> Self {
        Self {
            key,
            index: None,
            message,
        }
    }
}

/// Where the value at `key` (and `index` of it, for an array) is written in `source`: the
/// deepest part of the path that is found, or the start of the file.
fn locate(source: &str, key: &[&str], index: Option<usize>) -> Span {
    use toml::de::{DeTable, DeValue};
    let Ok(document) = DeTable::parse(source) else {
        return Span::file_start();
    };
    let to_span = |range: std::ops::Range<usize>| {
        Span::new(
            Position::at_byte(source, range.start),
            Position::at_byte(source, range.end),
        )
    };
    let mut table = document.get_ref();
    let mut found = None;
    for (depth, part) in key.iter().enumerate() {
        let Some(value) = table
            .iter()
            .find(|(name, _)| name.get_ref().as_ref() == *part)
            .map(|(_, value)| value)
        else {
            break;
        };
        found = Some(value.span());
        match value.get_ref() {
            DeValue::Table(inner) if depth + 1 < key.len() => table = inner,
            DeValue::Array(items) if depth + 1 == key.len() => {
                if let Some(item) = index.and_then(|i| items.get(i)) {
                    found = Some(item.span());
                }
            }
            _ => {}
        }
    }
    found.map_or_else(Span::file_start, to_span)
}

#[cfg(test)]
mod tests;
