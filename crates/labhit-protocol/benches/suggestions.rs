//! "Did you mean" on a hostile file: 10,000 stages, each waiting for a stage that does not
//! exist (about 358 KB). Every unknown reference asks for a suggestion among the 10,000
//! stage ids; the [`SuggestionBudget`] keeps the whole file linear (it once took minutes).
//!
//! * `check_unknown_references`: `pipeline::check` on the whole file;
//! * `nearest_among_10000`: one [`Suggestions::nearest`] question among 10,000 ids.
//!
//! Run with `cargo bench -p labhit-protocol --bench suggestions`.

use std::fmt::Write as _;
use std::sync::LazyLock;

use divan::{Bencher, black_box};
use labhit_protocol::diagnostic::{SuggestionBudget, Suggestions};
use labhit_protocol::pipeline::{CheckOptions, check};

fn main() {
    divan::main();
}

const STAGES: usize = 10_000;

static FILE: LazyLock<String> = LazyLock::new(|| {
    let mut text = String::from("engine: \"1\"\npipeline:\n  name: refs\n  stages:\n");
    for i in 0..STAGES {
        let _ = write!(
            text,
            "    stage-{i:05}:\n      run: make\n      after: [stage-{i:05}x]\n"
        );
    }
    text
});

static IDS: LazyLock<Vec<String>> =
    LazyLock::new(|| (0..STAGES).map(|i| format!("stage-{i:05}")).collect());

#[divan::bench(sample_count = 20)]
fn check_unknown_references(bencher: Bencher<'_, '_>) {
    let bytes = FILE.as_bytes();
    assert_eq!(
        check(bytes, &CheckOptions::default()).diagnostics.len(),
        STAGES
    );
    bencher.bench(|| check(black_box(bytes), &CheckOptions::default()));
}

#[divan::bench(sample_count = 50)]
fn nearest_among_10000(bencher: Bencher<'_, '_>) {
    let suggestions = Suggestions::new(IDS.iter().map(String::as_str));
    bencher.bench(|| {
        suggestions.nearest(
            black_box("stage-04242x"),
            &mut SuggestionBudget::new(usize::MAX),
        )
    });
}
