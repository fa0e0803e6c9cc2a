//! `util/checksum`: hashes the workspace files matching `patterns` and writes a checksum
//! manifest in the format of `sha256sum` (`<hex>  <path>` per line, paths relative to the
//! workspace, so `sha256sum -c dist/SHA256SUMS` checks it from the workspace root).
//!
//! Host imports used: the read-write workspace (read the files, write the manifest), `log`,
//! `cancellation`, outputs (`files`, `manifest`, `digest`) and an artifact (the manifest).

use std::fs::File;
use std::io::Read;

use labhit_sdk::{Context, Error, Extension, Input, Output, TypedOutputs, debug, info};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// The stage's `with`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Glob patterns of the files to hash.
    pub patterns: Vec<String>,
    /// The hash algorithm.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Where to write the manifest; `SHA256SUMS` or `SHA512SUMS` by default.
    #[serde(default)]
    pub output: Option<String>,
}

/// The named outputs: the source of the manifest's `[outputs]` (`labhit ext build` checks
/// one against the other).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Outputs {
    /// Number of files hashed.
    pub files: usize,
    /// Workspace path of the manifest written.
    pub manifest: String,
    /// Hash of the manifest itself, with the same algorithm.
    pub digest: String,
}

/// A supported hash algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// SHA-256 (the default).
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    fn default_output(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA256SUMS",
            Algorithm::Sha512 => "SHA512SUMS",
        }
    }

    fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Box::new(Sha512::new())),
        }
    }
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Box<Sha512>),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// The extension.
pub struct Checksum;

impl Extension for Checksum {
    type Config = Config;

    fn execute(ctx: &Context, input: Input<Config>) -> Result<Output, Error> {
        let config = input.config;
        if config.patterns.is_empty() {
            return Err(Error::invalid_config(
                "`patterns` is empty: name the files to hash",
            ));
        }
        let output = config
            .output
            .unwrap_or_else(|| config.algorithm.default_output().to_owned());
        // Resolve (and refuse) the output path before doing any work.
        ctx.path(&output)?;
        let output_rel = output.trim_start_matches("./");

        let files: Vec<String> = ctx
            .glob(&config.patterns)?
            .into_iter()
            .filter(|path| path != output_rel)
            .collect();
        if files.is_empty() {
            return Err(Error::failed(format!(
                "no workspace file matches {}",
                config.patterns.join(", ")
            )));
        }

        let mut manifest = String::new();
        let mut buf = vec![0u8; 64 * 1024];
        for path in &files {
            ctx.check_cancelled(&format!("hashing `{path}`"))?;
            let digest = hash_file(ctx, path, config.algorithm, &mut buf)?;
            debug!(ctx, "{digest}  {path}");
            manifest.push_str(&digest);
            manifest.push_str("  ");
            manifest.push_str(path);
            manifest.push('\n');
        }
        ctx.write(&output, &manifest)?;

        let mut hasher = config.algorithm.hasher();
        hasher.update(manifest.as_bytes());
        let digest = hasher.hex();
        let plural = if files.len() == 1 { "" } else { "s" };
        info!(ctx, "hashed {} file{plural} into {output}", files.len());
        let artifact = ctx.artifact(&output)?.with_mime("text/plain");
        Ok(Self::output(&Outputs {
            files: files.len(),
            manifest: artifact.path().to_owned(),
            digest,
        })?
        .artifact(artifact))
    }
}

impl TypedOutputs for Checksum {
    type Outputs = Outputs;
}

/// Hashes one workspace file in chunks, so large files never sit in memory whole.
fn hash_file(
    ctx: &Context,
    path: &str,
    algorithm: Algorithm,
    buf: &mut [u8],
) -> Result<String, Error> {
    let fail = |err: std::io::Error| Error::failed(format!("cannot read `{path}`: {err}"));
    let mut file = File::open(ctx.path(path)?).map_err(fail)?;
    let mut hasher = algorithm.hasher();
    loop {
        let n = file.read(buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.hex())
}

labhit_sdk::export_extension!(Checksum);

#[cfg(test)]
mod tests {
    use super::*;
    use labhit_sdk::testing::{MockHost, json};

    fn host() -> MockHost {
        labhit_sdk::mock_host!()
            .file("dist/app.txt", "hello from labhit\n")
            .file("dist/app.yaml", "name: labhit-example\n")
            .file("src/main.rs", "fn main() {}\n")
    }

    #[test]
    fn hashes_the_matching_files_like_the_example_pipeline() {
        let host = host();
        let out = host
            .run::<Checksum>(json!({
                "patterns": ["dist/**"], "algorithm": "sha256", "output": "dist/SHA256SUMS"
            }))
            .unwrap();
        let manifest = host.read("dist/SHA256SUMS");
        let lines: Vec<&str> = manifest.lines().collect();
        assert_eq!(lines.len(), 2, "{manifest}");
        assert!(lines[0].ends_with("  dist/app.txt"));
        assert!(lines[1].ends_with("  dist/app.yaml"));
        // `printf 'hello from labhit\n' | sha256sum`
        let expected = "cfc4774040819a81b9cfc09c6ba12c290f1d2abffc49b1c66f2009b4d0d4efbc";
        assert_eq!(lines[0], format!("{expected}  dist/app.txt"));

        assert!(out.is_success());
        assert_eq!(out.get("files"), Some("2"));
        assert_eq!(out.get("manifest"), Some("dist/SHA256SUMS"));
        assert_eq!(
            out.get("digest"),
            Some(hex(&Sha256::digest(manifest.as_bytes())).as_str())
        );
        let artifact = &out.artifacts()[0];
        assert_eq!(artifact.path(), "dist/SHA256SUMS");
        assert_eq!(artifact.mime(), "text/plain");
        assert_eq!(artifact.size(), manifest.len() as u64);
        assert!(host.logged("hashed 2 files into dist/SHA256SUMS"));

        // A second run does not hash its own earlier manifest.
        let again = host
            .run::<Checksum>(json!({"patterns": ["dist/**"], "output": "dist/SHA256SUMS"}))
            .unwrap();
        assert_eq!(again.get("files"), Some("2"));
    }

    #[test]
    fn sha512_and_default_output() {
        let host = host();
        let out = host
            .run::<Checksum>(json!({"patterns": ["**/*.rs"], "algorithm": "sha512"}))
            .unwrap();
        let manifest = host.read("SHA512SUMS");
        let expected = hex(&Sha512::digest(b"fn main() {}\n"));
        assert_eq!(manifest, format!("{expected}  src/main.rs\n"));
        assert_eq!(out.get("files"), Some("1"));
    }

    #[test]
    fn bad_config_names_the_field() {
        let host = host();
        let err = host
            .run::<Checksum>(json!({"patterns": ["dist/**"], "algorithm": "md5"}))
            .unwrap_err();
        assert_eq!(err.kind(), "invalid-config");
        assert!(err.message().contains("at `algorithm`"), "{err}");
        let err = host.run::<Checksum>(json!({"patterns": []})).unwrap_err();
        assert_eq!(err.kind(), "invalid-config");
        let err = host
            .run::<Checksum>(json!({"patterns": ["../etc/*"]}))
            .unwrap_err();
        assert!(err.message().contains("`..`"), "{err}");
        let err = host
            .run::<Checksum>(json!({"patterns": ["dist/**"], "output": "/tmp/x"}))
            .unwrap_err();
        assert!(err.message().contains("absolute"), "{err}");
    }

    #[test]
    fn nothing_matched_fails() {
        let err = host()
            .run::<Checksum>(json!({"patterns": ["*.tar.gz"]}))
            .unwrap_err();
        assert_eq!(err.kind(), "failed");
        assert!(err.message().contains("*.tar.gz"), "{err}");
    }

    #[test]
    fn needs_a_writable_workspace() {
        let host = host().filesystem(labhit_sdk::WorkspaceAccess::ReadOnly);
        let err = host
            .run::<Checksum>(json!({"patterns": ["dist/**"]}))
            .unwrap_err();
        assert!(err.message().contains("read-only"), "{err}");
        assert!(!host.path("SHA256SUMS").exists());
    }

    #[test]
    fn stops_when_cancelled() {
        let host = host().cancel_after(1);
        let err = host
            .run::<Checksum>(json!({"patterns": ["dist/**"]}))
            .unwrap_err();
        assert_eq!(err.kind(), "cancelled");
        assert_eq!(err.message(), "cancelled while hashing `dist/app.yaml`");
    }
}
