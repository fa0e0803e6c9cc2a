//! Workspace setup and cache-key benchmarks (work in progress).

fn main() {}
