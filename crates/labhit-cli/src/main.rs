//! The `labhit` command.

fn main() {}
