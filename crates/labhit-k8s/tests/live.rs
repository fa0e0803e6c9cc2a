//! Opt-in live suite against a real cluster. With `LABHIT_TEST_KUBECONFIG` set to a
//! kubeconfig path, every stage of `tests/data/ok` is rendered and handed to
//! `kubectl --kubeconfig PATH apply --dry-run=server` (in the namespace
//! `LABHIT_TEST_K8S_NAMESPACE`, default `default`): the API server validates each Job in full
//! (`podFailurePolicy`, quantities, names, labels) without creating it. Without the variable
//! the test prints why it did nothing and passes: no cluster is available where this runs.

use std::io::Write;
use std::process::{Command, Stdio};

use labhit_k8s::{JobOptions, JobTarget, render, to_json};
use labhit_protocol::ids::RunId;
use labhit_protocol::pipeline::{Stage, StageId};
use serde_json::Value;

#[test]
fn rendered_jobs_pass_server_side_validation() {
    let Some(kubeconfig) = std::env::var_os("LABHIT_TEST_KUBECONFIG") else {
        println!("skipped: LABHIT_TEST_KUBECONFIG is not set (no cluster to validate against)");
        return;
    };
    let namespace =
        std::env::var("LABHIT_TEST_K8S_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ok");
    let mut files: Vec<_> = std::fs::read_dir(&data)
        .expect("tests/data/ok")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for path in files {
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let run_id: RunId = serde_json::from_value(json["run_id"].clone()).expect("run_id");
        let stage_id: StageId = serde_json::from_value(json["stage_id"].clone()).expect("stage_id");
        let stage: Stage = serde_json::from_value(json["stage"].clone()).expect("stage");
        let options = JobOptions {
            namespace: namespace.clone(),
            default_image: Some("debian:12-slim".to_owned()),
            ..JobOptions::default()
        };
        let target = JobTarget {
            run_id,
            pipeline: json["pipeline"].as_str().expect("pipeline"),
            stage_id: &stage_id,
            stage: &stage,
            attempt: 1,
        };
        let manifest = to_json(&render(&target, &options).expect("renders"));
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "--dry-run=server", "-o", "name", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl on PATH (the live suite needs it)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifest.as_bytes())
            .expect("write the manifest");
        let out = child.wait_with_output().expect("kubectl");
        assert!(
            out.status.success(),
            "{}: the API server refused the Job: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
