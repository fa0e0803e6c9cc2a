//! Bounds on the named outputs of a step ([`OutputLimits`]).
//!
//! Outputs are small values for the summary and for later stages (a version, a digest, a
//! URL); large data belongs in a workspace file reported as an artifact. A step whose outputs
//! break a bound fails with `invalid-output` and a message naming the output and the limit:
//! nothing is cut silently, and `summary.json` stays small whatever a guest reports.

use std::collections::BTreeMap;

/// Bounds on the outputs of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Most outputs per step.
    pub max_outputs: usize,
    /// Longest output name, in bytes.
    pub max_name_bytes: usize,
    /// Longest output value, in bytes.
    pub max_value_bytes: usize,
    /// Most bytes of all names and values together.
    pub max_total_bytes: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            max_outputs: 256,
            max_name_bytes: 128,
            max_value_bytes: 64 * 1024,
            max_total_bytes: 1024 * 1024,
        }
    }
}

impl OutputLimits {
    /// Checks `outputs` against the limits; the message says which output breaks which one.
    pub fn check(&self, outputs: &BTreeMap<String, String>) -> Result<(), String> {
        let hint = "write large data to a workspace file and report it as an artifact";
        if outputs.len() > self.max_outputs {
            return Err(format!(
                "it reported {} outputs, more than the limit of {}; {hint}",
                outputs.len(),
                self.max_outputs
            ));
        }
        let mut total = 0usize;
        for (name, value) in outputs {
            if name.len() > self.max_name_bytes {
                return Err(format!(
                    "output name `{}` is {} bytes long, more than the limit of {} bytes",
                    clip(name),
                    name.len(),
                    self.max_name_bytes
                ));
            }
            if value.len() > self.max_value_bytes {
                return Err(format!(
                    "output `{}` is {} bytes long, more than the limit of {} bytes; {hint}",
                    clip(name),
                    value.len(),
                    self.max_value_bytes
                ));
            }
            total += name.len() + value.len();
        }
        if total > self.max_total_bytes {
            return Err(format!(
                "its outputs are {total} bytes long together, more than the limit of {} bytes; \
                 {hint}",
                self.max_total_bytes
            ));
        }
        Ok(())
    }
}

/// The first 40 characters of `name`, marked when cut.
fn clip(name: &str) -> String {
    match name.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_is_enforced_and_named() {
        let limits = OutputLimits {
            max_outputs: 2,
            max_name_bytes: 4,
            max_value_bytes: 8,
            max_total_bytes: 14,
        };
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(limits.check(&map(&[("a", "1"), ("b", "2")])), Ok(()));
        let too_many = limits.check(&map(&[("a", ""), ("b", ""), ("c", "")]));
        assert!(too_many.unwrap_err().contains("3 outputs"));
        let long_name = limits.check(&map(&[(&"n".repeat(100), "")]));
        assert!(long_name.unwrap_err().contains("100 bytes long"));
        let long_value = limits.check(&map(&[("v", "123456789")])).unwrap_err();
        assert!(
            long_value.starts_with("output `v` is 9 bytes long"),
            "{long_value}"
        );
        let total = limits.check(&map(&[("aaaa", "12345678"), ("b", "12")]));
        assert!(total.unwrap_err().contains("15 bytes long together"));
    }
}
