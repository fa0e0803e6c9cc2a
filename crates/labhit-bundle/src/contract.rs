//! The contract version a component targets, read from its export names before compiling.
//!
//! Every extension exports the interface `labhit:extension/pipeline-step@X.Y.Z`; `X.Y.Z` is
//! the version of the WIT package it was built against (see the package documentation of
//! `labhit-extension.wit`). [`export_names`] reads the names of the component's top-level
//! exports straight from its export sections (nested modules and components are skipped
//! unread), so this costs milliseconds whatever the size of the component.
//! [`is_compatible`] is the rule within one series: same major version, and for `0.x` the
//! same minor version. A host runs several series ([`SupportedContracts`]: one WIT version
//! per series it has bindings for), so the supported range is, for example, `>=0.1, <0.3`.

use wasmparser::{Chunk, Parser, Payload};

use crate::header::{self, Kind};

/// The export every extension provides, without its version.
pub const PIPELINE_STEP_EXPORT: &str = "labhit:extension/pipeline-step";

/// The contract export of a component: its full name and the version in it (`None` when
/// the name carries no version, or not a valid one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractExport {
    /// The full export name, for example `labhit:extension/pipeline-step@0.1.0`.
    pub name: String,
    /// The version in it.
    pub version: Option<semver::Version>,
}

/// Why a component's contract is not one this host can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The bytes are not a component whose exports can be read (not WebAssembly, a core
    /// module, or a malformed component); compiling it reports the problem in detail.
    #[error("cannot read the exports of the component: {0}")]
    Unreadable(String),
    /// The component does not export `labhit:extension/pipeline-step`.
    #[error(
        "the component does not export `{PIPELINE_STEP_EXPORT}` (its exports: {exports}); build it for the world `extension` of `{}`",
        labhit_protocol::WIT_PACKAGE
    )]
    MissingExport {
        /// The names it does export, as `` `name` `` joined with `, `, or `none`.
        exports: String,
    },
    /// The component targets a contract this host does not run.
    #[error(
        "the component targets contract {targets} (it exports `{export}`), but {}",
        rebuild_hint(supported)
    )]
    Incompatible {
        /// The version found in the export name, or `(unversioned)`.
        targets: String,
        /// The export name.
        export: String,
        /// The contract versions this host runs.
        supported: SupportedContracts,
    },
}

/// The contract versions a host runs: the WIT version of each series (`0.MINOR`, or
/// `MAJOR` from 1.0) it has bindings for, oldest first. A component runs when its contract
/// is in one of those series ([`is_compatible`]); the newest is the one to rebuild against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedContracts {
    hosted: &'static [semver::Version],
    newest: &'static semver::Version,
}

impl SupportedContracts {
    /// The host runs the series of each of `hosted` (oldest first, at least one).
    pub const fn new(hosted: &'static [semver::Version]) -> Self {
        match hosted.split_last() {
            Some((newest, _)) => Self { hosted, newest },
            None => panic!("a host supports at least one contract version"),
        }
    }

    /// The WIT version of each hosted series, oldest first.
    pub fn hosted(&self) -> &'static [semver::Version] {
        self.hosted
    }

    /// The newest contract version: what to build against.
    pub fn newest(&self) -> &'static semver::Version {
        self.newest
    }

    /// The hosted version whose series runs a component built for `targets`, if any.
    pub fn series_for(&self, targets: &semver::Version) -> Option<&'static semver::Version> {
        self.hosted.iter().rev().find(|h| is_compatible(targets, h))
    }

    /// The newest hosted version a manifest's `contract` requirement admits, if any.
    pub fn admitted_by(
        &self,
        requirement: &semver::VersionReq,
    ) -> Option<&'static semver::Version> {
        self.hosted.iter().rev().find(|h| requirement.matches(h))
    }
}

/// The range, for example `>=0.1, <0.3`.
impl std::fmt::Display for SupportedContracts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let oldest = self.hosted.first().unwrap_or(self.newest);
        let newest = self.newest;
        write!(f, ">={}.{}, ", oldest.major, oldest.minor)?;
        if newest.major == 0 {
            write!(f, "<0.{}", newest.minor + 1)
        } else {
            write!(f, "<{}", newest.major + 1)
        }
    }
}

/// The names of the top-level exports of `component`, read without validating or compiling
/// it. `Err` when the bytes are not a component or its sections cannot be parsed.
pub fn export_names(component: &[u8]) -> Result<Vec<String>, String> {
    match header::detect(component) {
        Ok(Kind::Component) => {}
        Ok(Kind::CoreModule) => return Err("it is a core module, not a component".to_owned()),
        Err(err) => return Err(format!("not a WebAssembly file: {err}")),
    }
    let mut parser = Parser::new(0);
    let mut offset = 0usize;
    let mut names = Vec::new();
    loop {
        let rest = component.get(offset..).unwrap_or_default();
        let (consumed, payload) = match parser.parse(rest, true) {
            Ok(Chunk::Parsed { consumed, payload }) => (consumed, payload),
            Ok(Chunk::NeedMoreData(_)) => return Err("the component is truncated".to_owned()),
            Err(err) => return Err(err.to_string()),
        };
        offset += consumed;
        match payload {
            // Nested modules and components are not ours to read: jump over them. The outer
            // parser continues at the section after them.
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => {
                offset = usize::try_from(unchecked_range.end)
                    .ok()
                    .filter(|&end| end <= component.len())
                    .ok_or_else(|| "a nested module extends past the end of the file".to_owned())?;
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    names.push(export.name.full_name().into_owned());
                }
            }
            Payload::End(_) => return Ok(names),
            _ => {}
        }
    }
}

/// The contract export of `component`, read from its export names before compiling.
pub fn read_contract_export(component: &[u8]) -> Result<ContractExport, ContractError> {
    let names = export_names(component).map_err(ContractError::Unreadable)?;
    contract_export_of(&names)
}

/// The contract export among `names` (the names a component exports).
pub fn contract_export_of(names: &[String]) -> Result<ContractExport, ContractError> {
    let found = names.iter().find(|name| {
        name.as_str() == PIPELINE_STEP_EXPORT
            || name
                .strip_prefix(PIPELINE_STEP_EXPORT)
                .is_some_and(|rest| rest.starts_with('@'))
    });
    let Some(name) = found else {
        return Err(ContractError::MissingExport {
            exports: if names.is_empty() {
                "none".to_owned()
            } else {
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        });
    };
    let version = name
        .split_once('@')
        .and_then(|(_, v)| semver::Version::parse(v).ok());
    Ok(ContractExport {
        name: name.clone(),
        version,
    })
}

/// Checks the contract export of `export` against `supported`; the version on success.
pub fn check_export(
    export: ContractExport,
    supported: &SupportedContracts,
) -> Result<semver::Version, ContractError> {
    match export.version {
        Some(version) if supported.series_for(&version).is_some() => Ok(version),
        other => Err(ContractError::Incompatible {
            targets: other.map_or_else(|| "(unversioned)".to_owned(), |v| v.to_string()),
            export: export.name,
            supported: *supported,
        }),
    }
}

/// Reads and checks the contract version of `component` against `supported`, without
/// compiling it.
pub fn check_contract(
    component: &[u8],
    supported: &SupportedContracts,
) -> Result<semver::Version, ContractError> {
    check_export(read_contract_export(component)?, supported)
}

/// Whether a component built for contract `targets` runs on a host implementing
/// `supported`: same major version and, while the major version is 0, same minor version.
pub fn is_compatible(targets: &semver::Version, supported: &semver::Version) -> bool {
    targets.major == supported.major && (supported.major > 0 || targets.minor == supported.minor)
}

/// What to do about a contract mismatch, for authors in any language: the supported range
/// and the WIT to rebuild against (`labhit-sdk` being the way for Rust).
pub fn rebuild_hint(supported: &SupportedContracts) -> String {
    format!(
        "this host runs components built for contract {supported}; rebuild the extension \
         against the labhit:extension WIT `labhit:extension@{newest}` (labhit-sdk {newest} for \
         Rust)",
        newest = supported.newest(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).expect("version")
    }

    static ONE: [semver::Version; 1] = [semver::Version::new(0, 1, 0)];
    const ONLY_0_1: SupportedContracts = SupportedContracts::new(&ONE);
    static TWO: [semver::Version; 2] =
        [semver::Version::new(0, 1, 0), semver::Version::new(0, 2, 0)];
    const BOTH: SupportedContracts = SupportedContracts::new(&TWO);

    /// A component whose export section names `names`. The reader only looks at the names,
    /// so the exported items are left undefined (a validator would refuse the component).
    fn component_exporting(names: &[&str]) -> Vec<u8> {
        use wasm_encoder_lite::*;
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        let mut exports = Vec::new();
        leb(&mut exports, names.len() as u32);
        for (index, name) in names.iter().enumerate() {
            exports.push(0x00);
            leb(&mut exports, name.len() as u32);
            exports.extend_from_slice(name.as_bytes());
            exports.push(0x05); // an instance
            leb(&mut exports, index as u32);
            exports.push(0x00); // no type ascription
        }
        section(&mut bytes, 11, &exports);
        bytes
    }

    mod wasm_encoder_lite {
        pub(super) fn leb(out: &mut Vec<u8>, mut n: u32) {
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    return;
                }
                out.push(byte | 0x80);
            }
        }
        pub(super) fn section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
            out.push(id);
            leb(out, body.len() as u32);
            out.extend_from_slice(body);
        }
    }

    #[test]
    fn reads_the_contract_from_export_names() {
        let bytes = component_exporting(&["labhit:extension/pipeline-step@0.1.3"]);
        let export = read_contract_export(&bytes).expect("reads");
        assert_eq!(export.name, "labhit:extension/pipeline-step@0.1.3");
        assert_eq!(check_contract(&bytes, &ONLY_0_1), Ok(v("0.1.3")));

        let wrong = component_exporting(&["labhit:extension/pipeline-step@9.0.0"]);
        let err = check_contract(&wrong, &ONLY_0_1).expect_err("wrong contract");
        let text = err.to_string();
        assert!(text.contains("targets contract 9.0.0"), "{text}");
        assert!(text.contains("built for contract >=0.1, <0.2"), "{text}");
        assert!(text.contains("labhit:extension WIT"), "{text}");
        assert!(text.contains("for Rust"), "{text}");

        let none = component_exporting(&["wasi:cli/run@0.2.0"]);
        assert_eq!(
            check_contract(&none, &ONLY_0_1),
            Err(ContractError::MissingExport {
                exports: "`wasi:cli/run@0.2.0`".into()
            })
        );
        let empty = b"\0asm\x0d\0\x01\0";
        assert!(matches!(
            check_contract(empty, &ONLY_0_1),
            Err(ContractError::MissingExport { exports }) if exports == "none"
        ));
    }

    #[test]
    fn unreadable_bytes_are_reported_not_guessed() {
        for bad in [
            &b"garbage"[..],
            b"\0asm\x01\0\0\0",
            b"\0asm\x0d\0\x01\0\x0b\x7f",
        ] {
            assert!(
                matches!(read_contract_export(bad), Err(ContractError::Unreadable(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn compatibility_follows_semver_for_0x() {
        assert!(is_compatible(&v("0.1.0"), &v("0.1.0")));
        assert!(is_compatible(&v("0.1.7"), &v("0.1.0")));
        assert!(!is_compatible(&v("0.2.0"), &v("0.1.0")));
        assert!(!is_compatible(&v("1.0.0"), &v("0.1.0")));
        assert!(is_compatible(&v("1.4.0"), &v("1.0.0")));
        assert!(!is_compatible(&v("2.0.0"), &v("1.0.0")));
    }

    #[test]
    fn a_host_of_several_series_runs_each_and_names_its_range() {
        assert_eq!(BOTH.to_string(), ">=0.1, <0.3");
        assert_eq!(ONLY_0_1.to_string(), ">=0.1, <0.2");
        static MAJOR: [semver::Version; 2] =
            [semver::Version::new(0, 9, 0), semver::Version::new(1, 2, 0)];
        assert_eq!(SupportedContracts::new(&MAJOR).to_string(), ">=0.9, <2");
        assert_eq!(BOTH.newest(), &v("0.2.0"));
        assert_eq!(BOTH.series_for(&v("0.1.0")), Some(&v("0.1.0")));
        assert_eq!(BOTH.series_for(&v("0.1.4")), Some(&v("0.1.0")));
        assert_eq!(BOTH.series_for(&v("0.2.0")), Some(&v("0.2.0")));
        for refused in ["0.3.0", "1.0.0", "0.0.9"] {
            assert_eq!(BOTH.series_for(&v(refused)), None, "{refused}");
            let bytes =
                component_exporting(&[&format!("labhit:extension/pipeline-step@{refused}")]);
            let err = check_contract(&bytes, &BOTH).expect_err(refused);
            assert!(
                err.to_string().contains("built for contract >=0.1, <0.3")
                    && err.to_string().contains("labhit:extension@0.2.0"),
                "{err}"
            );
        }
        let req = |s: &str| semver::VersionReq::parse(s).expect("req");
        assert_eq!(BOTH.admitted_by(&req("^0.1")), Some(&v("0.1.0")));
        assert_eq!(BOTH.admitted_by(&req(">=0.1, <0.3")), Some(&v("0.2.0")));
        assert_eq!(BOTH.admitted_by(&req("^0.3")), None);
    }
}
