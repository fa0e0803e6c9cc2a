//! Snapshot tests of the Job rendering over the stage inputs in `tests/data`: every file of
//! `ok/` renders (its manifest is the snapshot), every file of `bad/` is refused (its error
//! is the snapshot). An input is JSON: `run_id`, `pipeline`, `stage_id`, `attempt`, `stage`
//! (the stage as in a pipeline file) and optional `options` (`namespace`, `default_image`,
//! `worker_image`).

use labhit_k8s::{JobOptions, JobTarget, names, render, to_json};
use labhit_protocol::ids::RunId;
use labhit_protocol::pipeline::{Stage, StageId};
use serde_json::Value;

struct Input {
    run_id: RunId,
    pipeline: String,
    stage_id: StageId,
    attempt: u32,
    stage: Stage,
    options: JobOptions,
}

fn input(path: &std::path::Path) -> Input {
    let text = std::fs::read_to_string(path).expect("read the input");
    let json: Value = serde_json::from_str(&text).expect("input JSON");
    let field = |name: &str| json.get(name).cloned().unwrap_or(Value::Null);
    let mut options = JobOptions::default();
    if let Some(o) = json.get("options") {
        let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(ns) = text("namespace") {
            options.namespace = ns;
        }
        if let Some(image) = text("worker_image") {
            options.worker_image = image;
        }
        options.default_image = text("default_image");
    }
    Input {
        run_id: serde_json::from_value(field("run_id")).expect("run_id"),
        pipeline: field("pipeline").as_str().expect("pipeline").to_owned(),
        stage_id: serde_json::from_value(field("stage_id")).expect("stage_id"),
        attempt: u32::try_from(field("attempt").as_u64().expect("attempt")).expect("u32"),
        stage: serde_json::from_value(field("stage")).expect("stage"),
        options,
    }
}

fn rendered(input: &Input) -> Result<labhit_k8s::Job, labhit_k8s::RenderError> {
    let target = JobTarget {
        run_id: input.run_id,
        pipeline: &input.pipeline,
        stage_id: &input.stage_id,
        stage: &input.stage,
        attempt: input.attempt,
    };
    render(&target, &input.options)
}

#[test]
fn stages_render_into_jobs() {
    insta::glob!("data/ok/*.json", |path| {
        let input = input(path);
        let job = rendered(&input).expect("renders");
        let name = job.metadata.name.clone().expect("a name");
        assert!(names::is_dns_label(&name), "{name}");
        for value in job.metadata.labels.values() {
            assert!(names::label_value(value) == *value, "{value}");
        }
        let text = to_json(&job);
        // Secrets are references: no value of any kind besides the task id is inline.
        let json: Value = serde_json::from_str(&text).expect("json");
        let env = &json["spec"]["template"]["spec"]["containers"][0]["env"];
        for var in env.as_array().into_iter().flatten() {
            if var["name"] != "LABHIT_TASK" {
                assert!(var.get("value").is_none(), "{var}");
                assert!(var["valueFrom"]["secretKeyRef"].is_object(), "{var}");
            }
        }
        insta::assert_snapshot!(text);
    });
}

#[test]
fn bad_stages_are_typed_errors() {
    insta::glob!("data/bad/*.json", |path| {
        let input = input(path);
        let err = rendered(&input).expect_err("refused");
        insta::assert_snapshot!(format!("{err:?}\n{err}"));
    });
}

#[test]
fn job_names_are_stable_and_distinct_per_attempt() {
    let input = input(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/ok/image-and-resources.json"),
    );
    let first = rendered(&input).expect("renders");
    assert_eq!(rendered(&input).expect("renders"), first, "deterministic");
    let retry = Input {
        attempt: 2,
        ..input
    };
    let second = rendered(&retry).expect("renders");
    assert_ne!(second.metadata.name, first.metadata.name);
}
