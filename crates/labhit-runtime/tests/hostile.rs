//! Hostile guests: every way a stranger's extension can misbehave ends its step with a typed
//! error (or, for sandbox escapes, with the guest reporting that the host refused), and the
//! next step on the same [`Runtime`] succeeds.
//!
//! The guests live in `tests/fixtures/hostile/` (see its README): one SDK extension whose
//! `with.mode` picks the misbehaviour, a component built against contract 9.0.0, and one
//! that exports nothing; `manifests/` holds the `extension.toml` of each scenario. They are
//! built by `labhit-guest-build` into `target/guests`. Compiled components are cached in
//! `CARGO_TARGET_TMPDIR`, so only the first test process pays for compilation.
//!
//! No test sleeps: deadlines are enforced by the runtime's epoch ticker, and every loop in
//! a guest is stopped by a limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use labhit_guest_build::{Builder, Target};
use labhit_protocol::manifest::Manifest;
use labhit_protocol::run::LogStream;
use labhit_runtime::{
    Cancellation, CollectingSink, LoadErrorKind, LoadedExtension, MapSecrets, Runtime,
    RuntimeConfig, StepError, StepFailure, StepOutcome, StepRequest, TRUNCATED_FIELD,
};
use serde_json::json;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures_dir() -> PathBuf {
    crate_dir().join("tests/fixtures/hostile")
}

/// The built components, once per test process.
struct Components {
    hostile: PathBuf,
    wrong_contract: PathBuf,
    missing_export: PathBuf,
}

fn components() -> &'static Components {
    static BUILT: OnceLock<Components> = OnceLock::new();
    BUILT.get_or_init(|| {
        let builder = Builder::for_workspace(&crate_dir().join("../.."));
        let build = |name: &str| {
            builder
                .build(&fixtures_dir().join(name), Target::P2)
                .unwrap_or_else(|err| panic!("building fixture `{name}`: {err}"))
                .component
        };
        Components {
            hostile: build("guest"),
            wrong_contract: build("wrong-contract"),
            missing_export: build("missing-export"),
        }
    })
}

fn manifest(name: &str) -> Manifest {
    let path = fixtures_dir()
        .join("manifests")
        .join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Manifest::from_toml(&text).unwrap_or_else(|d| panic!("{}: {d:?}", path.display()))
}

fn runtime() -> Runtime {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-cache");
    Runtime::new(RuntimeConfig::with_cache_dir(cache)).expect("the runtime starts")
}

fn load(runtime: &Runtime, manifest_name: &str) -> LoadedExtension {
    runtime
        .load(&manifest(manifest_name), &components().hostile)
        .unwrap_or_else(|err| panic!("{err}"))
}

/// A step of the hostile guest in `workspace`, with `with` and logs collected in `sink`.
fn request(workspace: &Path, with: serde_json::Value, sink: &Arc<CollectingSink>) -> StepRequest {
    let mut request = StepRequest::new("hostile");
    request.with = with.into();
    request.workspace = Some(workspace.to_owned());
    request.log_sink = sink.clone();
    request
}

fn run(
    runtime: &Runtime,
    extension: &LoadedExtension,
    with: serde_json::Value,
) -> (
    Result<StepOutcome, StepError>,
    Vec<labhit_protocol::run::LogEntry>,
) {
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let result = runtime.execute(extension, request(workspace.path(), with, &sink));
    (result, sink.take())
}

fn expect_error(result: Result<StepOutcome, StepError>) -> StepError {
    match result {
        Ok(outcome) => panic!("expected a step error, got {outcome:?}"),
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.starts_with("stage `hostile`: extension `test/hostile"),
                "the error names stage and extension: {text}"
            );
            assert!(
                text.contains("@0.1.0"),
                "the error names the version: {text}"
            );
            err
        }
    }
}

fn expect_output(result: Result<StepOutcome, StepError>) -> BTreeMap<String, String> {
    match result {
        Ok(outcome) => {
            assert_eq!(outcome.exit_code, 0, "{outcome:?}");
            outcome.outputs
        }
        Err(err) => panic!("expected the step to succeed: {err}"),
    }
}

/// The runtime is still healthy: a no-op step on it succeeds.
fn next_step_succeeds(runtime: &Runtime, extension: &LoadedExtension) {
    let (result, _) = run(runtime, extension, json!({"mode": "log", "count": 2}));
    assert_eq!(expect_output(result)["logged"], "2");
}

#[test]
fn an_infinite_loop_stops_at_its_deadline() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let mut step = request(workspace.path(), json!({"mode": "loop"}), &sink);
    step.timeout = Some(Duration::from_millis(200));
    let start = Instant::now();
    let err = expect_error(runtime.execute(&extension, step));
    let elapsed = start.elapsed();
    assert_eq!(
        *err.failure,
        StepFailure::Timeout {
            timeout: Duration::from_millis(200)
        }
    );
    assert!(
        err.to_string().contains("ran past its deadline of 200ms"),
        "{err}"
    );
    // Deadline ± one tick (10 ms), plus generous slack for a loaded CI machine.
    assert!(
        elapsed >= Duration::from_millis(200),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "stopped late: {elapsed:?}"
    );
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn a_guest_asleep_in_the_host_stops_at_its_deadline() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    // One hour in `wasi:io/poll`: without a bounded wait the test would hang for that hour.
    let mut step = request(
        workspace.path(),
        json!({"mode": "sleep", "count": 3600}),
        &sink,
    );
    step.timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let err = expect_error(runtime.execute(&extension, step));
    let elapsed = start.elapsed();
    assert_eq!(
        *err.failure,
        StepFailure::Timeout {
            timeout: Duration::from_millis(300)
        },
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_millis(300),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "stopped late: {elapsed:?}"
    );
    assert!(sink.messages().iter().any(|m| m == "sleeping"));
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn a_guest_asleep_in_the_host_is_interrupted_after_the_cancel_grace_period() {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-cache");
    let config = RuntimeConfig {
        cancel_grace: Duration::from_millis(100),
        ..RuntimeConfig::with_cache_dir(cache)
    };
    let runtime = Runtime::new(config).expect("the runtime starts");
    let extension = load(&runtime, "hostile");
    let workspace = tempfile::tempdir().expect("tempdir");
    let cancel = Cancellation::new();
    let mut step = request(
        workspace.path(),
        json!({"mode": "sleep", "count": 3600}),
        &Arc::new(CollectingSink::new()),
    );
    step.cancellation = cancel.clone();
    // Cancel once the guest says it is about to block.
    step.log_sink = Arc::new(move |entry: labhit_protocol::run::LogEntry| {
        if entry.message == "sleeping" {
            cancel.cancel();
        }
    });
    let err = expect_error(runtime.execute(&extension, step));
    assert_eq!(
        *err.failure,
        StepFailure::Interrupted {
            grace: Duration::from_millis(100)
        },
        "{err}"
    );
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn a_step_cancelled_before_it_starts_gets_the_whole_grace_period() {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-cache");
    let config = RuntimeConfig {
        cancel_grace: Duration::from_millis(100),
        ..RuntimeConfig::with_cache_dir(cache)
    };
    let runtime = Runtime::new(config).expect("the runtime starts");
    let extension = load(&runtime, "hostile");
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let mut step = request(
        workspace.path(),
        json!({"mode": "sleep", "count": 3600}),
        &sink,
    );
    let cancel = Cancellation::new();
    cancel.cancel();
    step.cancellation = cancel;
    let start = Instant::now();
    let err = expect_error(runtime.execute(&extension, step));
    assert_eq!(
        *err.failure,
        StepFailure::Interrupted {
            grace: Duration::from_millis(100)
        },
        "{err}"
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[test]
fn a_guest_that_exits_is_reported_with_the_status_it_sent() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    // Rust's std on wasm32-wasip2 turns `exit(n)` into WASI 0.2 `exit(err)` for any n != 0:
    // the code is lost in the guest, and the host must not invent one.
    for (status, expected) in [(3, None), (0, Some(0)), (1, None), (42, None)] {
        let (result, _) = run(
            &runtime,
            &extension,
            json!({"mode": "process-exit", "count": status}),
        );
        let err = expect_error(result);
        assert_eq!(
            *err.failure,
            StepFailure::Exit { status: expected },
            "{err}"
        );
        if expected.is_none() {
            assert!(err.to_string().contains("with a failure status"), "{err}");
        }
    }
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn the_manifest_timeout_caps_a_longer_stage_timeout() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    assert_eq!(extension.timeout(), Duration::from_secs(1));
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let mut step = request(workspace.path(), json!({"mode": "loop"}), &sink);
    step.timeout = Some(Duration::from_secs(3600));
    let err = expect_error(runtime.execute(&extension, step));
    assert_eq!(
        *err.failure,
        StepFailure::Timeout {
            timeout: Duration::from_secs(1)
        }
    );
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    assert_eq!(extension.memory_limit(), 32 << 20);
    let (result, _) = run(&runtime, &extension, json!({"mode": "memory-bomb"}));
    let err = expect_error(result);
    assert_eq!(*err.failure, StepFailure::MemoryLimit { limit: 32 << 20 });
    assert!(
        err.to_string()
            .contains("exceeded its memory limit of 33554432 bytes"),
        "{err}"
    );
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn deep_recursion_traps_with_a_stack_overflow() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let (result, _) = run(&runtime, &extension, json!({"mode": "recurse"}));
    let err = expect_error(result);
    match &*err.failure {
        StepFailure::Trap { trap, .. } => {
            assert!(trap.contains("call stack exhausted"), "{trap}");
        }
        other => panic!("expected a stack overflow trap, got {other:?}"),
    }
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn a_panic_keeps_its_message() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let (result, logs) = run(&runtime, &extension, json!({"mode": "panic"}));
    let err = expect_error(result);
    match &*err.failure {
        StepFailure::Panic { message } => {
            assert!(
                message.contains("hostile guest panicked on purpose"),
                "{message}"
            );
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(
        logs.iter()
            .any(|e| e.message.contains("hostile guest panicked on purpose")),
        "the panic is in the log: {logs:?}"
    );
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn config_the_guest_rejects_is_invalid_config() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let (result, _) = run(&runtime, &extension, json!({"mode": "unheard-of"}));
    let err = expect_error(result);
    assert_eq!(
        *err.failure,
        StepFailure::InvalidConfig("unknown mode `unheard-of`".to_owned())
    );
    let (result, _) = run(&runtime, &extension, json!({"count": 1}));
    match *expect_error(result).failure {
        StepFailure::InvalidConfig(message) => assert!(message.contains("mode"), "{message}"),
        other => panic!("expected invalid config, got {other:?}"),
    }
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn dot_dot_escapes_are_refused() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let (result, _) = run(&runtime, &extension, json!({"mode": "escape-dotdot"}));
    let refused = &expect_output(result)["refused"];
    assert!(refused.starts_with("/workspace/../"), "{refused}");
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn absolute_paths_outside_the_workspace_are_refused() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let (result, _) = run(&runtime, &extension, json!({"mode": "escape-absolute"}));
    let refused = &expect_output(result)["refused"];
    assert!(refused.starts_with("/etc/passwd: "), "{refused}");
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn symlinks_leading_outside_the_workspace_are_refused() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.txt"), "outside the sandbox").expect("write");
    let workspace = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        workspace.path().join("file-link"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(outside.path(), workspace.path().join("dir-link")).expect("symlink");
    for path in ["file-link", "dir-link/secret.txt"] {
        let sink = Arc::new(CollectingSink::new());
        let step = request(
            workspace.path(),
            json!({"mode": "escape-symlink", "path": path}),
            &sink,
        );
        let outputs = expect_output(runtime.execute(&extension, step));
        assert!(
            outputs["refused"].starts_with(&format!("/workspace/{path}: ")),
            "{outputs:?}"
        );
    }
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn undeclared_secrets_are_denied() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let mut secrets = MapSecrets::new();
    secrets
        .insert("UNDECLARED", "would-leak")
        .insert("DECLARED", "fine");
    let mut step = request(
        workspace.path(),
        json!({"mode": "secret", "name": "UNDECLARED"}),
        &sink,
    );
    step.secrets = Arc::new(secrets);
    let outputs = expect_output(runtime.execute(&extension, step));
    assert_eq!(outputs["secret"], "Denied");
    let (result, _) = run(
        &runtime,
        &extension,
        json!({"mode": "secret", "name": "bad name"}),
    );
    assert_eq!(expect_output(result)["secret"], "InvalidName");
    let (result, _) = run(
        &runtime,
        &extension,
        json!({"mode": "secret", "name": "DECLARED"}),
    );
    assert_eq!(
        expect_output(result)["secret"],
        "NotFound",
        "no store value in this step"
    );
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn secret_values_are_redacted_from_logs_outputs_and_errors() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let mut secrets = MapSecrets::new();
    secrets.insert("DECLARED", "s3cr3t-value");
    let mut step = request(
        workspace.path(),
        json!({"mode": "echo-secret", "name": "DECLARED"}),
        &sink,
    );
    step.secrets = Arc::new(secrets);
    let err = expect_error(runtime.execute(&extension, step));
    assert_eq!(
        *err.failure,
        StepFailure::Failed("failing with ***".to_owned())
    );
    let logs = sink.take();
    assert!(
        logs.iter().any(|e| e.message == "the secret is ***"),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|e| e.stream == LogStream::Stdout && e.message == "stdout says ***"),
        "{logs:?}"
    );
    assert!(!format!("{logs:?}{err}").contains("s3cr3t-value"));
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn writes_to_a_read_only_workspace_are_refused() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile-readonly");
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let outputs = expect_output(runtime.execute(
        &extension,
        request(workspace.path(), json!({"mode": "write"}), &sink),
    ));
    assert!(!outputs["refused"].is_empty());
    assert!(
        !workspace.path().join("written.txt").exists(),
        "nothing was written"
    );
    // The same guest may write when the manifest grants read-write.
    let writer = load(&runtime, "hostile");
    let (result, _) = run(&runtime, &writer, json!({"mode": "write"}));
    match *expect_error(result).failure {
        StepFailure::Failed(message) => assert_eq!(message, "wrote to a read-only workspace"),
        other => panic!("expected the write to succeed, got {other:?}"),
    }
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn a_log_flood_is_capped_and_the_step_finishes() {
    // A low cap keeps the flood (twice the cap) well inside the fixture's 1 s deadline even
    // in a debug build on a loaded machine; the mechanism is the same at any cap.
    let mut config = RuntimeConfig::with_cache_dir(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-cache"),
    );
    config.log_limits.max_entries_per_step = 500;
    let runtime = Runtime::new(config).expect("the runtime starts");
    let extension = load(&runtime, "hostile");
    let limit = runtime.config().log_limits.max_entries_per_step;
    let count = limit * 2;
    let (result, logs) = run(
        &runtime,
        &extension,
        json!({"mode": "log-flood", "count": count}),
    );
    assert_eq!(expect_output(result)["logged"], count.to_string());
    let kept = u64::try_from(logs.len()).expect("fits");
    assert!(kept <= limit + 1, "{kept} entries kept, limit {limit}");
    let last = logs.last().expect("entries");
    assert_eq!(last.stream, LogStream::System, "{last:?}");
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn log_fields_are_bounded_per_entry_and_per_step() {
    // 10 calls of 400 fields, each key 300+ bytes and each value 8000 bytes: about 33 MB of
    // fields, which all reached the sink before fields were bounded.
    let mut config = RuntimeConfig::with_cache_dir(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-cache"),
    );
    config.log_limits.max_bytes_per_step = 200 * 1024;
    let limits = config.log_limits;
    let runtime = Runtime::new(config).expect("the runtime starts");
    let extension = load(&runtime, "hostile");
    let (result, logs) = run(
        &runtime,
        &extension,
        json!({"mode": "log-fields", "count": 10}),
    );
    assert_eq!(expect_output(result)["logged"], "10");
    let mut total = 0;
    for entry in &logs {
        let line = serde_json::to_string(entry).expect("json");
        total += line.len() + 1;
        // The entry's text is bounded; JSON adds quotes, commas and the envelope.
        assert!(
            line.len() <= limits.max_entry_bytes + 4096,
            "one log.jsonl line is {} bytes",
            line.len()
        );
        assert!(entry.fields.len() <= limits.max_fields_per_entry + 1);
        assert!(
            entry
                .fields
                .keys()
                .all(|k| k.len() <= limits.max_field_key_bytes + 40),
            "{:?}",
            entry.fields.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        total <= 200 * 1024 + 64 * 1024,
        "the step wrote {total} bytes of log"
    );
    let fields = &logs[0].fields;
    assert!(
        fields[TRUNCATED_FIELD].contains("fields dropped"),
        "truncation is marked: {fields:?}"
    );
    let last = logs.last().expect("entries");
    assert_eq!(last.stream, LogStream::System, "{last:?}");
    assert!(last.message.contains("were dropped"), "{last:?}");
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn a_secret_never_leaks_through_a_step_in_any_form() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let secret = "Zq7-leak-probe-secret-value";
    for count in [0, 1] {
        let workspace = tempfile::tempdir().expect("tempdir");
        let sink = Arc::new(CollectingSink::new());
        let mut step = request(
            workspace.path(),
            json!({"mode": "leak-secret", "name": "DECLARED", "count": count}),
            &sink,
        );
        step.secrets = Arc::new([("DECLARED", secret)].into_iter().collect::<MapSecrets>());
        let result = runtime.execute(&extension, step);
        let logs = sink.take();
        // Artifact paths stay raw in the outcome (the workspace file has that name); they
        // are redacted where runs record them (`summary::collect_artifacts`, `redact_run`).
        let reported = match &result {
            Ok(outcome) => format!("{:?} exit {}", outcome.outputs, outcome.exit_code),
            Err(err) => err.to_string(),
        };
        let text = format!("{reported} {logs:?}");
        for part in [secret, "Zq7-leak", "probe-secret", "secret-value"] {
            assert!(!text.contains(part), "`{part}` leaked: {text}");
        }
        assert!(text.contains("***"), "{text}");
        if count == 0 {
            let outputs = expect_output(result);
            assert_eq!(outputs["***"], "name");
            assert_eq!(outputs["from-file"], "***");
        } else {
            let err = expect_error(result);
            assert_eq!(
                *err.failure,
                StepFailure::Failed("failing with ***".to_owned())
            );
        }
    }
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn garbage_bytes_are_not_a_component() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"#!/bin/sh\nrm -rf / # not wasm at all\n").expect("write");
    let err = runtime
        .load(&manifest("garbage"), &garbage)
        .expect_err("garbage must not load");
    assert!(matches!(*err.kind, LoadErrorKind::NotWasm(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot load extension `test/garbage@0.1.0`"),
        "{err}"
    );
    // A truncated component is malformed, not a crash.
    let bytes = std::fs::read(&components().hostile).expect("component");
    std::fs::write(&garbage, &bytes[..bytes.len() / 2]).expect("write");
    let err = runtime
        .load(&manifest("garbage"), &garbage)
        .expect_err("a truncated component must not load");
    assert!(matches!(*err.kind, LoadErrorKind::Compile(_)), "{err}");
    next_step_succeeds(&runtime, &load(&runtime, "hostile"));
}

#[test]
fn a_wrong_contract_version_is_refused_before_running() {
    let runtime = runtime();
    let err = runtime
        .load(&manifest("wrong-contract"), &components().wrong_contract)
        .expect_err("contract 9.0.0 must be refused");
    match &*err.kind {
        LoadErrorKind::IncompatibleContract { targets, .. } => assert_eq!(targets, "9.0.0"),
        other => panic!("expected an incompatible contract, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("test/wrong-contract@0.1.0"), "{text}");
    assert!(text.contains("9.0.0") && text.contains("0.1.0"), "{text}");
    assert!(text.contains("rebuild"), "says what to do: {text}");
    next_step_succeeds(&runtime, &load(&runtime, "hostile"));
}

#[test]
fn a_component_without_the_export_is_refused() {
    let runtime = runtime();
    let err = runtime
        .load(&manifest("missing-export"), &components().missing_export)
        .expect_err("no export");
    assert!(
        matches!(*err.kind, LoadErrorKind::MissingExport { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("labhit:extension/pipeline-step"),
        "{err}"
    );
    next_step_succeeds(&runtime, &load(&runtime, "hostile"));
}

/// Resident set size of this process in bytes, from `/proc/self/statm`.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[test]
fn a_thousand_failing_steps_leave_host_memory_flat() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let workspace = tempfile::tempdir().expect("tempdir");
    let fail = |n: usize| {
        for _ in 0..n {
            let mut step = StepRequest::new("hostile");
            step.with = json!({"mode": "panic"}).into();
            step.workspace = Some(workspace.path().to_owned());
            let err = runtime.execute(&extension, step).expect_err("panics");
            assert!(matches!(*err.failure, StepFailure::Panic { .. }), "{err}");
        }
    };
    fail(200);
    let before = rss_bytes();
    fail(1000);
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    eprintln!("RSS {before} -> {after} bytes over 1000 failing steps");
    assert!(
        growth < 8 << 20,
        "RSS grew by {growth} bytes over 1000 failing steps ({before} -> {after})"
    );
    next_step_succeeds(&runtime, &extension);
}

// --- The workspace boundary and the disk and file limits (issue 9, items 2 and 9) ---

/// The hostile manifest with `limits` lines added and a timeout long enough for a busy
/// machine (the limits, not the deadline, must stop these guests).
fn manifest_with(extra_limits: &str) -> Manifest {
    let path = fixtures_dir().join("manifests/hostile.toml");
    let text = std::fs::read_to_string(&path).expect("manifest");
    let text = text.replace(
        "timeout = \"1s\"",
        &format!("timeout = \"60s\"\n{extra_limits}"),
    );
    Manifest::from_toml(&text).unwrap_or_else(|d| panic!("{d:?}"))
}

/// A run directory `<dir>/run/workspace` beside a file `<dir>/outside` that no stage may
/// touch; `../../outside` from the workspace root names it.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("run/workspace")).expect("mkdir");
        std::fs::write(dir.path().join("outside"), "untouched").expect("write");
        Self { dir }
    }
    fn workspace(&self) -> PathBuf {
        self.dir.path().join("run/workspace")
    }
    fn outside(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("outside")).expect("outside")
    }
}

/// Runs `echo pwned > a` with the local executor in `workspace`, as a later `run:` stage.
fn later_local_stage_writes_a(workspace: &Path) -> labhit_protocol::executor::StepResult {
    use labhit_protocol::executor::{CacheDecision, CommandStep, ExecutorInput};
    use labhit_runtime::executor::{ExecContext, Executor, LocalExecutor};
    let store_dir = tempfile::tempdir().expect("tempdir");
    let executor = LocalExecutor::new(labhit_runtime::snapshot::SnapshotStore::new(
        store_dir.path(),
    ));
    let stage = labhit_protocol::pipeline::StageId::new("later").expect("stage id");
    let input = ExecutorInput {
        step: CommandStep::new("echo pwned > a"),
        workspace_archive_id: labhit_protocol::ids::ArchiveId(uuid::Uuid::nil()),
        env: BTreeMap::new(),
        workdir: "/workspace".to_owned(),
        run_id: labhit_protocol::ids::RunId(uuid::Uuid::nil()),
        step_id: labhit_protocol::ids::StepId(uuid::Uuid::nil()),
        cache_lookup: CacheDecision::MissNoCommit,
        parent_snapshot: None,
    };
    executor
        .execute(&input, &ExecContext::new(&stage, workspace))
        .expect("the later stage runs")
}

#[test]
fn a_planted_escaping_link_is_refused_reported_and_never_followed() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    for target in ["../../outside", "sub/../../../outside", "/etc/passwd"] {
        let scene = Scene::new();
        let sink = Arc::new(CollectingSink::new());
        let step = request(
            &scene.workspace(),
            json!({"mode": "plant-link", "path": target, "name": "a"}),
            &sink,
        );
        let err = expect_error(runtime.execute(&extension, step));
        assert_eq!(
            *err.failure,
            StepFailure::EscapeAttempt {
                path: "a".into(),
                target: target.into()
            },
            "{err}"
        );
        assert!(
            err.to_string().contains("leads outside the workspace"),
            "{err}"
        );
        assert!(
            sink.messages()
                .iter()
                .any(|m| m.contains("`a` -> `") && m.contains("refused")),
            "the attempt is in the step's log: {:?}",
            sink.messages()
        );
        assert!(std::fs::symlink_metadata(scene.workspace().join("a")).is_err());
        assert_eq!(later_local_stage_writes_a(&scene.workspace()).exit_code, 0);
        assert_eq!(scene.outside(), "untouched", "{target}");
    }
    // A link that stays inside is still allowed.
    let scene = Scene::new();
    let sink = Arc::new(CollectingSink::new());
    let step = request(
        &scene.workspace(),
        json!({"mode": "plant-link", "path": "sub/../inside.txt", "name": "a"}),
        &sink,
    );
    assert!(expect_output(runtime.execute(&extension, step)).contains_key("planted"));
    next_step_succeeds(&runtime, &extension);
}

#[test]
fn a_link_renamed_to_where_it_escapes_is_removed_and_reported() {
    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    let scene = Scene::new();
    let sink = Arc::new(CollectingSink::new());
    let step = request(
        &scene.workspace(),
        json!({"mode": "plant-link-rename", "path": "../../outside", "name": "a"}),
        &sink,
    );
    let err = expect_error(runtime.execute(&extension, step));
    let StepFailure::Trespass { found } = &*err.failure else {
        panic!("expected a trespass: {err}");
    };
    assert_eq!(found.len(), 1, "{err}");
    assert_eq!(found[0].path, "a");
    assert!(
        err.to_string()
            .contains("symbolic link `a` -> `../../outside` (resolves outside the workspace)"),
        "{err}"
    );
    assert_eq!(err.failure.code(), "workspace-escape");
    assert!(std::fs::symlink_metadata(scene.workspace().join("a")).is_err());
    assert!(
        sink.messages()
            .iter()
            .any(|m| m.contains("`a` -> `../../outside`")),
        "{:?}",
        sink.messages()
    );
    assert_eq!(later_local_stage_writes_a(&scene.workspace()).exit_code, 0);
    assert_eq!(scene.outside(), "untouched");
}

#[test]
fn a_guest_cannot_fill_the_disk_past_limits_disk() {
    let runtime = runtime();
    let extension = runtime
        .load(&manifest_with("disk = \"16Mi\""), &components().hostile)
        .expect("load");
    // 2 GiB asked for, through streams; then a sparse file of 1 TiB through set-size.
    for (mode, count) in [("disk-fill", 2048), ("disk-sparse", 1 << 20)] {
        let workspace = tempfile::tempdir().expect("tempdir");
        let sink = Arc::new(CollectingSink::new());
        let step = request(
            workspace.path(),
            json!({"mode": mode, "count": count, "name": "big"}),
            &sink,
        );
        let err = expect_error(runtime.execute(&extension, step));
        assert_eq!(
            *err.failure,
            StepFailure::DiskLimit { limit: 16 << 20 },
            "{mode}: {err}"
        );
        assert!(err.to_string().contains("disk limit of 16Mi"), "{err}");
        assert!(err.to_string().contains("`limits.disk`"), "{err}");
        let size = std::fs::metadata(workspace.path().join("big"))
            .expect("file")
            .len();
        assert!(size <= 16 << 20, "{mode}: {size} bytes written");
    }
    // Within the limit, the same guest succeeds.
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let step = request(
        workspace.path(),
        json!({"mode": "disk-fill", "count": 8, "name": "ok"}),
        &sink,
    );
    assert_eq!(
        expect_output(runtime.execute(&extension, step))["written"],
        "8"
    );
}

#[test]
fn a_guest_cannot_create_more_entries_than_limits_files() {
    let runtime = runtime();
    let extension = runtime
        .load(&manifest_with("files = 1000"), &components().hostile)
        .expect("load");
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let step = request(
        workspace.path(),
        json!({"mode": "many-files", "count": 100_000, "name": "many"}),
        &sink,
    );
    let err = expect_error(runtime.execute(&extension, step));
    assert_eq!(
        *err.failure,
        StepFailure::FileLimit { limit: 1000 },
        "{err}"
    );
    assert!(err.to_string().contains("`limits.files`"), "{err}");
    let created = std::fs::read_dir(workspace.path().join("many"))
        .expect("dir")
        .count();
    assert!(created < 1000, "{created} files created");
    // Rewriting the same files creates nothing new.
    let step = request(
        workspace.path(),
        json!({"mode": "many-files", "count": 900, "name": "many"}),
        &sink,
    );
    assert_eq!(
        expect_output(runtime.execute(&extension, step))["created"],
        "900"
    );
}

/// The acceptance scenario of issue 9: a sandboxed stage of a pipeline tries to plant
/// `a -> ../../outside` (directly, and by renaming a link), a later `run:` stage writes `a`.
/// The attempt is reported in the run, and no stage writes outside the run's workspace.
#[test]
fn acceptance_a_planted_link_is_reported_and_no_later_stage_writes_outside() {
    use labhit_protocol::pipeline::PipelineFile;
    use labhit_protocol::run::{RunStatus, StageStatus};
    use labhit_runtime::executor::LocalExecutor;
    use labhit_runtime::scheduler::stages::{PipelineRunner, StagePlan};
    use labhit_runtime::scheduler::{RunInfo, RunLog, Scheduler, SchedulerOptions};

    let runtime = runtime();
    let extension = load(&runtime, "hostile");
    for mode in ["plant-link", "plant-link-rename"] {
        let scene = Scene::new();
        let text = format!(
            "engine: \"1\"\npipeline:\n  name: t\n  stages:\n    plant:\n      use: test/hostile\n      \
             with: {{mode: {mode}, path: ../../outside, name: a}}\n    write:\n      \
             after: plant\n      run: echo pwned > a\n"
        );
        let file = PipelineFile::from_yaml(&text).unwrap_or_else(|d| panic!("{d:?}"));
        let store = tempfile::tempdir().expect("tempdir");
        let mut runner = PipelineRunner::new(scene.workspace(), scene.dir.path().join("run"));
        runner.runtime = Some(runtime.clone());
        runner.plans.insert(
            "plant".into(),
            StagePlan::Extension(Box::new(extension.clone())),
        );
        runner.plans.insert(
            "write".into(),
            StagePlan::Command(Arc::new(LocalExecutor::new(
                labhit_runtime::snapshot::SnapshotStore::new(store.path()),
            ))),
        );
        let sink = Arc::new(CollectingSink::new());
        let log = RunLog::new(labhit_runtime::scheduler::new_run_id(), sink.clone());
        let run = Scheduler::new(SchedulerOptions::default()).run(
            &file,
            &runner,
            &log,
            RunInfo::default(),
        );
        assert_eq!(run.status, RunStatus::Failed, "{mode}: {run:#?}");
        let plant = run.stage("plant").expect("plant");
        assert_eq!(plant.status, StageStatus::Failed, "{mode}");
        let reason = plant.reason.clone().unwrap_or_default();
        assert!(
            reason.contains("`a` -> `../../outside`") && reason.contains("[workspace-escape]"),
            "{mode}: {reason}"
        );
        assert!(
            sink.messages()
                .iter()
                .any(|m| m.contains("`a` -> `../../outside`")),
            "{mode}: the attempt is in the run's log"
        );
        assert!(std::fs::symlink_metadata(scene.workspace().join("a")).is_err());
        // Whatever runs next in this workspace writes inside it.
        assert_eq!(later_local_stage_writes_a(&scene.workspace()).exit_code, 0);
        assert_eq!(scene.outside(), "untouched", "{mode}");
        assert_eq!(
            std::fs::read_to_string(scene.workspace().join("a")).expect("a"),
            "pwned\n"
        );
    }
}
