//! Generator: the tonic/prost stubs of `proto/labhit/v1/pipeline.proto`.
//!
//! The proto is compiled in-process with `protox` (pure Rust, so no system `protoc` is
//! needed), handed to `tonic-prost-build` as a `FileDescriptorSet`, and the resulting
//! `labhit.v1.rs` is checked in as `crates/labhit-proto/src/gen/labhit.v1.rs` so consumers of
//! `labhit-proto` need no build script and no proto toolchain at all.
//!
//! The same compilation is also written out as an encoded `FileDescriptorSet` (the contract
//! plus `google/protobuf/timestamp.proto`, with source info so reflection clients see the
//! documentation), checked in as `crates/labhit-proto/src/gen/labhit.v1.fds.bin`: the
//! server's reflection service serves it (`labhit_proto::FILE_DESCRIPTOR_SET`).

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
/// Where the encoded descriptor set is checked in, relative to the workspace root.
const DESCRIPTOR_SET: &str = "crates/labhit-proto/src/gen/labhit.v1.fds.bin";

/// Returns the generated Rust stubs of the `labhit.v1` package.
pub(crate) fn generate(root: &Path) -> Result<Vec<GeneratedFile>> {
    let proto_root = root.join(PROTO_ROOT);
    let compile_error = || format!("compiling {}", proto_root.join(PROTO_FILE).display());
    let mut compiler = protox::Compiler::new([&proto_root])
        .map_err(|err| anyhow::anyhow!("{err:?}"))
        .with_context(compile_error)?;
    compiler.include_imports(true).include_source_info(true);
    compiler
        .open_files([PROTO_FILE])
        .map_err(|err| anyhow::anyhow!("{err:?}"))
        .with_context(compile_error)?;
    let encoded = compiler.encode_file_descriptor_set();
    let fds = compiler.file_descriptor_set();

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
    Ok(vec![
        GeneratedFile::new(OUTPUT, contents),
        GeneratedFile::new(DESCRIPTOR_SET, encoded),
    ])
}
