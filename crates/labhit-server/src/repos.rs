//! Registered repositories: resolve refs, read files at a commit, isolated checkouts.
