//! Contract version constants.
//!
//! The crate version, the WIT package version (`labhit:extension@X.Y.Z`) and
//! [`CONTRACT_VERSION`] always move together; a test keeps them in step.

/// Version of the LabHit contract these types describe (SemVer).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// The WIT package, with version, that extension components target.
pub const WIT_PACKAGE: &str = "labhit:extension@0.2.0";

/// The only pipeline file format version this crate understands (`engine: "1"`).
pub const ENGINE_FORMAT: &str = "1";

/// [`CONTRACT_VERSION`] parsed.
pub fn contract_version() -> semver::Version {
    semver::Version::new(0, 2, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_move_together() {
        assert_eq!(CONTRACT_VERSION, env!("CARGO_PKG_VERSION"));
        assert_eq!(contract_version().to_string(), CONTRACT_VERSION);
        assert_eq!(WIT_PACKAGE, format!("labhit:extension@{CONTRACT_VERSION}"));
    }
}
