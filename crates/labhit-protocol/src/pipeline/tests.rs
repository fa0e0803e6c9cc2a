//! Unit tests of the pipeline checker; the data-driven corpus lives in `tests/`.

use super::*;
use crate::diagnostic::{Position, Rule, SuggestionBudget};

fn rules(src: &str) -> Vec<(Rule, u32, u32)> {
    check(src.as_bytes(), &CheckOptions::default())
        .diagnostics
        .iter()
        .map(|d| (d.rule, d.span.start.line, d.span.start.column))
        .collect()
}

const GOOD: &str = r#"engine: "1"
pipeline:
  name: demo
  stages:
    fetch:
      use: source/git@^1
      with: {depth: 1}
    build:
      after: fetch
      run: make
      sandbox:
        image: rust:1.95-slim
        resources: {cpu: 2, memory: 4Gi}
        timeout: 30m
    deploy:
      after: [build]
      use: deploy/kubernetes
      gate: {approval: required, policy: production-deploy}
"#;

#[test]
fn a_valid_file_builds_the_model() {
    let file = PipelineFile::from_yaml(GOOD).unwrap();
    let stages = &file.pipeline.stages;
    assert_eq!(stages.len(), 3);
    let build = stages.get("build").unwrap();
    assert_eq!(build.after.0[0].as_str(), "fetch");
    let sandbox = build.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.timeout.unwrap().as_secs(), 1800);
    assert_eq!(
        sandbox.resources.as_ref().unwrap().memory.unwrap().bytes(),
        4 << 30
    );
    assert_eq!(layers(stages).unwrap().len(), 3);
}

#[test]
fn every_problem_is_reported_at_once() {
    let src = GOOD
        .replace("after: fetch", "afer: fetch")
        .replace("engine: \"1\"", "engine: 1")
        .replace("approval: required, ", "");
    assert_eq!(
        rules(&src),
        vec![(Rule::EngineVersion, 1, 9), (Rule::UnknownKey, 9, 7)]
    );
    let d = &check(src.as_bytes(), &CheckOptions::default()).diagnostics;
    assert_eq!(d[1].help.as_deref(), Some("did you mean `after`?"));
    assert_eq!(d[0].help.as_deref(), Some("quote it: `engine: \"1\"`"));
}

#[test]
fn cycles_are_reported_as_paths() {
    let src = "engine: \"1\"\npipeline:\n  name: c\n  stages:\n    a: {run: x, after: c}\n    b: {run: x, after: a}\n    c: {run: x, after: b}\n";
    let checked = check(src.as_bytes(), &CheckOptions::default());
    assert_eq!(checked.diagnostics.len(), 1);
    let d = &checked.diagnostics[0];
    assert_eq!(d.rule, Rule::DependencyCycle);
    assert!(d.message.ends_with("a -> c -> b -> a"), "{}", d.message);
    assert_eq!(d.span.start, Position::new(5, 5));
}

#[test]
fn long_chains_do_not_overflow() {
    let mut src =
        String::from("engine: \"1\"\npipeline:\n  name: chain\n  stages:\n    s0: {run: x}\n");
    for i in 1..20_000 {
        src.push_str(&format!("    s{i}: {{run: x, after: s{}}}\n", i - 1));
    }
    let checked = check(src.as_bytes(), &CheckOptions::default());
    assert!(checked.is_ok(), "{:?}", checked.diagnostics.first());
    assert_eq!(
        layers(&checked.pipeline.unwrap().pipeline.stages)
            .unwrap()
            .len(),
        20_000
    );
}

/// 10,000 stages, each waiting for a stage that does not exist (about 358 KB), as the
/// review's probe: "did you mean" once compared every reference with every stage.
fn unknown_references(stages: usize) -> String {
    use std::fmt::Write as _;
    let mut text = String::from("engine: \"1\"\npipeline:\n  name: refs\n  stages:\n");
    for i in 0..stages {
        let _ = write!(
            text,
            "    stage-{i:05}:\n      run: make\n      after: [stage-{i:05}x]\n"
        );
    }
    text
}

#[test]
fn did_you_mean_work_is_bounded_per_file() {
    let text = unknown_references(10_000);
    let mut diagnostics = Vec::new();
    let tree = yaml::load(text.as_bytes(), &Limits::default(), &mut diagnostics)
        .flatten()
        .unwrap();
    let mut budget = SuggestionBudget::default();
    let walked = parse::walk(Some(&tree), &mut diagnostics, &mut budget);
    graph::check(&walked.sites, &mut diagnostics, &mut budget);
    let unknown: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.rule == Rule::UnknownStage)
        .collect();
    assert_eq!(unknown.len(), 10_000, "every reference is still reported");
    // Without bounds this is 10,000 x 10,000 comparisons.
    assert!(
        budget.spent() <= SuggestionBudget::DEFAULT_COMPARISONS,
        "{} comparisons",
        budget.spent()
    );
    assert_eq!(
        unknown[0].help.as_deref(),
        Some("did you mean `stage-00000`?"),
        "the first references still get a suggestion"
    );
    assert!(
        unknown.iter().filter(|d| d.help.is_some()).count() >= 5,
        "a handful are answered before the budget is spent"
    );
    // The whole check on the same file.
    let checked = check(text.as_bytes(), &CheckOptions::default());
    assert_eq!(checked.diagnostics.len(), 10_000);
}

#[test]
fn sandbox_inputs_are_validated_globs() {
    let with_inputs = |inputs: &str| {
        GOOD.replace(
            "        timeout: 30m\n",
            &format!("        timeout: 30m\n        {inputs}\n"),
        )
    };
    let file = PipelineFile::from_yaml(&with_inputs("inputs: [Cargo.lock, \"src/**\"]")).unwrap();
    let sandbox = file.pipeline.stages.get("build").unwrap().sandbox.clone();
    let inputs = sandbox.unwrap().inputs.unwrap();
    assert_eq!(inputs[0].as_str(), "Cargo.lock");
    assert!(inputs[1].selects("src/a/b.rs"));
    // Absent: the whole workspace.
    let file = PipelineFile::from_yaml(GOOD).unwrap();
    assert_eq!(
        file.pipeline
            .stages
            .get("build")
            .unwrap()
            .sandbox
            .as_ref()
            .unwrap()
            .inputs,
        None
    );

    for (bad, rule, message) in [
        ("inputs: [\"../x\"]", Rule::InvalidValue, "`..` segment"),
        ("inputs: [/etc]", Rule::InvalidValue, "absolute"),
        ("inputs: [a, a]", Rule::InvalidValue, "twice"),
        ("inputs: src", Rule::InvalidType, "a list of globs"),
        ("input: [src]", Rule::UnknownKey, "unknown key `input`"),
    ] {
        let d = check(with_inputs(bad).as_bytes(), &CheckOptions::default()).diagnostics;
        assert_eq!(d.len(), 1, "{bad}: {d:?}");
        assert_eq!(d[0].rule, rule, "{bad}: {d:?}");
        assert!(d[0].message.contains(message), "{bad}: {}", d[0].message);
        if bad.starts_with("input:") {
            assert_eq!(d[0].help.as_deref(), Some("did you mean `inputs`?"));
        }
    }

    let on_use = GOOD.replace(
        "      with: {depth: 1}\n",
        "      with: {depth: 1}\n      sandbox: {inputs: [src]}\n",
    );
    let d = check(on_use.as_bytes(), &CheckOptions::default()).diagnostics;
    assert!(
        d.iter()
            .any(|d| d.rule == Rule::StageShape
                && d.message.contains("`sandbox.inputs` but no `run`")),
        "{d:?}"
    );
}
