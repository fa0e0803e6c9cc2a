//! Generator: the tonic/prost stubs of `proto/labhit/v1/pipeline.proto`.
//!
//! The proto is compiled in-process with `protox` (pure Rust, so no system `protoc` is
//! needed), handed to `tonic-prost-build` as a `FileDescriptorSet`, and the resulting
//! `labhit.v1.rs` is checked in as `crates/labhit-proto/src/gen/labhit.v1.rs` so consumers of
//! `labhit-proto` need no build script and no proto toolchain at all.

use std::path::Path;

use anyhow::{Context, Result};

use super::{GeneratedFile, HEADER};

/// The proto include root, relative to the workspace root.
const PROTO_ROOT: &str = "proto";
/// The compiled proto file, relative to [`PROTO_ROOT`].
const PROTO_FILE: &str = "labhit/v1/pipeline.proto";
/// The file `tonic-prost-build` writes for package `labhit.v1`.
const PACKAGE_FILE: &str = "labhit.v1.rs";
/// Where the stubs are checked in, relative to the workspace root.
const OUTPUT: &str = "crates/labhit-proto/src/gen/labhit.v1.rs";

/// Returns the generated Rust stubs of the `labhit.v1` package.
pub(crate) fn generate(root: &Path) -> Result<Vec<GeneratedFile>> {
    let proto_root = root.join(PROTO_ROOT);
    let fds = protox::compile([PROTO_FILE], [&proto_root])
        .map_err(|err| anyhow::anyhow!("{err:?}"))
        .with_context(|| format!("compiling {}", proto_root.join(PROTO_FILE).display()))?;

    let out_dir = tempfile::tempdir().context("creating a temporary output directory")?;
    tonic_prost_build::configure()
        .out_dir(out_dir.path())
        .build_client(true)
        .build_server(true)
        // Transport helpers (`connect`) would tie the contract crate to tonic's transport
        // feature; callers build a `Channel` themselves and pass it to `new`.
        .build_transport(false)
        .emit_rerun_if_changed(false)
        // Ordered maps: deterministic encoding and iteration, and a direct match for the
        // `BTreeMap`s of the run model.
        .btree_map(".")
        .compile_fds(fds)
        .context("generating Rust code with tonic-prost-build")?;

    let generated_path = out_dir.path().join(PACKAGE_FILE);
    let generated = std::fs::read_to_string(&generated_path)
        .with_context(|| format!("reading {}", generated_path.display()))?;

    let mut contents = format!("// {HEADER}\n// Source: {PROTO_ROOT}/{PROTO_FILE}\n");
    contents.push_str(&generated);
    Ok(vec![GeneratedFile::new(OUTPUT, contents)])
}
