//! Tests that the examples shown in the repository's documents are valid.
//!
//! The README's quick start runs `examples/pipeline.yaml`, and `extensions/README.md` shows
//! a complete manifest; both must stay valid as the formats evolve. The prepared SchemaStore
//! entry (`docs/schemastore/catalog.json`) must name schema files that exist.

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

    #[test]
    fn schemastore_entry_names_the_published_schemas() {
        let catalog: serde_json::Value =
            serde_json::from_str(&read("docs/schemastore/catalog.json")).expect("JSON");
        let prefix = "https://raw.githubusercontent.com/labhit/labhit-contracts/main/";
        let schemas = catalog["schemas"].as_array().expect("schemas");
        assert_eq!(schemas.len(), 2);
        let mut matched = Vec::new();
        for entry in schemas {
            let url = entry["url"].as_str().expect("url");
            let path = url
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{url} is not a raw file of the repository"));
            let schema: serde_json::Value =
                serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(schema.get("$schema").is_some(), "{path} is no JSON Schema");
            for pattern in entry["fileMatch"].as_array().expect("fileMatch") {
                matched.push(pattern.as_str().expect("string").to_owned());
            }
        }
        for file in [".labhit/pipeline.yaml", "extension.toml"] {
            assert!(matched.iter().any(|m| m == file), "{file} not matched");
        }
    }
}
