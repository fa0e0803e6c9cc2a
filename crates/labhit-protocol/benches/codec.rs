//! Borsh versus JSON for the message a host sends most: [`ExecutorInput`].
//!
//! Run with `cargo bench -p labhit-protocol --bench codec`. The input is realistic: a
//! multi-line script, about twenty environment variables, a cache decision and a parent
//! snapshot.

use std::collections::BTreeMap;

use divan::{Bencher, black_box};
use labhit_protocol::codec::{from_borsh, from_json, to_borsh, to_json};
use labhit_protocol::executor::{CacheDecision, CommandStep, ExecutorInput};
use labhit_protocol::ids::SnapshotRef;

fn main() {
    let input = input();
    let borsh_len = to_borsh(&input).map_or(0, |b| b.len());
    let json_len = to_json(&input).map_or(0, |t| t.len());
    eprintln!("ExecutorInput: {borsh_len} bytes of borsh, {json_len} bytes of JSON");
    divan::main();
}

/// A build step of a mid-sized Rust project.
fn input() -> ExecutorInput {
    let mut input = ExecutorInput::example();
    input.step = CommandStep {
        script: "set -eu\n\
                 rustup show active-toolchain\n\
                 cargo fetch --locked\n\
                 cargo build --release --locked --workspace\n\
                 cargo test --release --locked --workspace -- --nocapture\n\
                 mkdir -p dist\n\
                 tar -czf dist/app.tar.gz -C target/release app\n\
                 sha256sum dist/app.tar.gz > dist/app.tar.gz.sha256\n"
            .to_owned(),
        shell: Some(vec![
            "bash".to_owned(),
            "-eo".to_owned(),
            "pipefail".to_owned(),
            "-c".to_owned(),
        ]),
        ..CommandStep::example()
    };
    input.env = (0..20)
        .map(|i| {
            (
                format!("LABHIT_VAR_{i:02}"),
                format!("value-{i}-{}", "x".repeat(i * 3)),
            )
        })
        .chain([
            ("CARGO_TERM_COLOR".to_owned(), "never".to_owned()),
            ("RUSTFLAGS".to_owned(), "-C target-cpu=x86-64-v2".to_owned()),
        ])
        .collect::<BTreeMap<_, _>>();
    input.cache_lookup = CacheDecision::MissBuildAs {
        tag: SnapshotRef::new("registry.example/labhit-cache/app-build:sha256-4f2a9c81d0e3b7a6"),
    };
    input.parent_snapshot = Some(SnapshotRef::new(
        "registry.example/labhit-cache/app-fetch:sha256-77c0e1d2a9b8c7d6",
    ));
    input
}

#[divan::bench]
fn borsh_encode(bencher: Bencher<'_, '_>) {
    let input = input();
    bencher.bench_local(|| to_borsh(black_box(&input)));
}

#[divan::bench]
fn json_encode(bencher: Bencher<'_, '_>) {
    let input = input();
    bencher.bench_local(|| to_json(black_box(&input)));
}

#[divan::bench]
fn borsh_decode(bencher: Bencher<'_, '_>) {
    let bytes = to_borsh(&input()).unwrap_or_default();
    bencher.bench_local(|| from_borsh::<ExecutorInput>(black_box(&bytes)));
}

#[divan::bench]
fn json_decode(bencher: Bencher<'_, '_>) {
    let text = to_json(&input()).unwrap_or_default();
    bencher.bench_local(|| from_json::<ExecutorInput>(black_box(&text)));
}

/// `borsh::from_slice` without the codec's position tracking, to show what it costs.
#[divan::bench]
fn borsh_decode_untracked(bencher: Bencher<'_, '_>) {
    let bytes = to_borsh(&input()).unwrap_or_default();
    bencher.bench_local(|| borsh::from_slice::<ExecutorInput>(black_box(&bytes)));
}
