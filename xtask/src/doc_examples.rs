//! Tests that the examples shown in the repository's documents are valid.
//!
//! The README's quick start runs `examples/pipeline.yaml`, and `extensions/README.md` shows
//! a complete manifest; both must stay valid as the formats evolve.

#[cfg(test)]
mod tests {
    use labhit_protocol::manifest::Manifest;
    use labhit_protocol::pipeline::{CheckOptions, check};

    fn read(path: &str) -> String {
        let full = crate::project_root().join(path);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
    }

    #[test]
    fn example_pipeline_is_valid() {
        let text = read("examples/pipeline.yaml");
        let checked = check(text.as_bytes(), &CheckOptions::default());
        assert!(checked.is_ok(), "{:#?}", checked.diagnostics);
        let keywords = ["use:", "after:", "with:", "sandbox:", "gate:", "run:"];
        for keyword in keywords {
            assert!(
                text.contains(keyword),
                "example pipeline does not use `{keyword}`"
            );
        }
    }

    #[test]
    fn manifest_in_extensions_readme_is_valid() {
        let text = read("extensions/README.md");
        let block = text
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("extensions/README.md has a ```toml block");
        let manifest = Manifest::from_toml(block).unwrap_or_else(|d| panic!("{d:#?}"));
        assert_eq!(manifest.qualified_name(), "util/checksum");
    }
}
