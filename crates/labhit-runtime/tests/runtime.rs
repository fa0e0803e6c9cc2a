//! Runs real components through [`Runtime`]: the example extensions under `extensions/` and
//! the probe fixture (`tests/fixtures/probe`, one guest whose `with.mode` picks a behaviour).
//!
//! Guests are built by `labhit-guest-build` into the shared `target/guests` directory (cargo
//! makes a rebuild of an unchanged crate a no-op). Every test uses its own cache directory.
//! No test sleeps to synchronise: cancellation is triggered by the log line the guest emits
//! when it starts waiting, and deadlines are enforced by the runtime itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use labhit_guest_build::{Builder, Target};
use labhit_protocol::manifest::Manifest;
use labhit_protocol::run::{LogEntry, LogLevel, LogStream};
use labhit_runtime::logs::encoded_forms;
use labhit_runtime::{
    CacheOutcome, Cancellation, CollectingSink, LoadErrorKind, LoadedExtension, MapSecrets,
    Runtime, RuntimeConfig, SourceKind, StepError, StepFailure, StepOutcome, StepRequest,
};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn probe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe")
}

/// Builds `crate_dir` for `target` once per process and returns the component path.
fn build(crate_dir: &Path, target: Target) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<(PathBuf, &'static str), PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    built
        .entry((crate_dir.to_owned(), target.triple()))
        .or_insert_with(|| {
            Builder::for_workspace(&workspace_root())
                .build(crate_dir, target)
                .unwrap_or_else(|err| panic!("{err}"))
                .component
        })
        .clone()
}

fn manifest(text: &str) -> Manifest {
    Manifest::from_toml(text).unwrap_or_else(|d| panic!("invalid manifest: {d:?}"))
}

fn probe_manifest(filesystem: &str) -> Manifest {
    let text = std::fs::read_to_string(probe_dir().join("extension.toml")).expect("manifest");
    manifest(&text.replace(
        "filesystem = \"read-write\"",
        &format!("filesystem = \"{filesystem}\""),
    ))
}

struct Fixture {
    runtime: Runtime,
    _cache: tempfile::TempDir,
}

fn runtime_with(edit: impl FnOnce(&mut RuntimeConfig)) -> Fixture {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut config = RuntimeConfig::with_cache_dir(cache.path());
    edit(&mut config);
    Fixture {
        runtime: Runtime::new(config).expect("runtime"),
        _cache: cache,
    }
}

fn runtime() -> Fixture {
    runtime_with(|_| {})
}

fn probe(fixture: &Fixture, filesystem: &str) -> LoadedExtension {
    let path = build(&probe_dir(), Target::P2);
    fixture
        .runtime
        .load(&probe_manifest(filesystem), &path)
        .unwrap_or_else(|err| panic!("{err}"))
}

/// A request for `mode`, with a fresh workspace and a collecting sink.
struct Step {
    request: StepRequest,
    sink: Arc<CollectingSink>,
    workspace: tempfile::TempDir,
}

fn step(mode: &str) -> Step {
    let workspace = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(CollectingSink::new());
    let mut request = StepRequest::new("probe-stage");
    request.with = serde_json::json!({ "mode": mode }).into();
    request.workspace = Some(workspace.path().to_owned());
    request.log_sink = sink.clone();
    Step {
        request,
        sink,
        workspace,
    }
}

fn ok(result: Result<StepOutcome, StepError>) -> StepOutcome {
    result.unwrap_or_else(|err| panic!("step failed: {err}"))
}

fn expect_failure(result: Result<StepOutcome, StepError>) -> (StepError, StepFailure) {
    match result {
        Ok(outcome) => panic!("expected a failure, got {outcome:?}"),
        Err(err) => {
            let failure = (*err.failure).clone();
            (err, failure)
        }
    }
}

/// The next step on the same runtime still works.
fn still_works(fixture: &Fixture, extension: &LoadedExtension) {
    let step = step("noop");
    assert_eq!(
        ok(fixture.runtime.execute(extension, step.request)).exit_code,
        0
    );
}

// ---- example extensions -------------------------------------------------------------

fn example(path: &str) -> (Manifest, PathBuf) {
    let dir = workspace_root().join("extensions").join(path);
    let text = std::fs::read_to_string(dir.join("extension.toml")).expect("manifest");
    (manifest(&text), build(&dir, Target::P2))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn checksum_example_hashes_workspace_files() {
    let fixture = runtime();
    let (manifest, path) = example("util/checksum");
    let extension = fixture.runtime.load(&manifest, &path).expect("loads");
    let mut step = step("unused");
    std::fs::write(step.workspace.path().join("a.txt"), "alpha\n").expect("write");
    std::fs::write(step.workspace.path().join("b.txt"), "beta\n").expect("write");
    step.request.with =
        serde_json::json!({"patterns": ["*.txt"], "output": "dist/SHA256SUMS"}).into();
    let outcome = ok(fixture.runtime.execute(&extension, step.request));
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(outcome.outputs["files"], "2");
    assert_eq!(outcome.outputs["manifest"], "dist/SHA256SUMS");
    let sums = std::fs::read_to_string(step.workspace.path().join("dist/SHA256SUMS"))
        .expect("manifest written");
    assert!(
        sums.contains(&format!("{}  a.txt", sha256_hex(b"alpha\n"))),
        "{sums}"
    );
    assert_eq!(outcome.outputs["digest"], sha256_hex(sums.as_bytes()));
    assert_eq!(outcome.artifacts.len(), 1);
    assert_eq!(outcome.artifacts[0].path.as_str(), "dist/SHA256SUMS");
    assert_eq!(outcome.artifacts[0].size_bytes, sums.len() as u64);
}

#[test]
fn junit_example_reads_reports_on_a_read_only_workspace() {
    let fixture = runtime();
    let (manifest, path) = example("test/junit");
    let extension = fixture.runtime.load(&manifest, &path).expect("loads");
    let mut step = step("unused");
    std::fs::create_dir(step.workspace.path().join("reports")).expect("mkdir");
    std::fs::write(
        step.workspace.path().join("reports/unit.xml"),
        r#"<testsuite name="unit"><testcase name="a"/><testcase name="b"><failure message="boom"/></testcase><testcase name="c"><skipped/></testcase></testsuite>"#,
    )
    .expect("write");
    step.request.with = serde_json::json!({"reports": ["reports/*.xml"]}).into();
    let outcome = ok(fixture.runtime.execute(&extension, step.request));
    assert_eq!(outcome.exit_code, 1, "a failed test fails the stage");
    assert_eq!(outcome.outputs["tests"], "3");
    assert_eq!(outcome.outputs["passed"], "1");
    assert_eq!(outcome.outputs["failures"], "1");
    assert_eq!(outcome.outputs["skipped"], "1");
    assert!(
        step.sink
            .entries()
            .iter()
            .any(|e| e.level == LogLevel::Error && e.message.contains('b')),
        "the failed test is logged at error level: {:?}",
        step.sink.messages()
    );
}

#[test]
fn render_example_uses_a_declared_secret_without_logging_it() {
    let fixture = runtime();
    let (manifest, path) = example("deploy/render");
    let extension = fixture.runtime.load(&manifest, &path).expect("loads");
    let mut step = step("unused");
    step.request.with = serde_json::json!({
        "template": "app {{ name }} token={{ secret.DEPLOY_TOKEN }}\n",
        "output": "dist/app.txt",
        "values": {"name": "demo"},
    })
    .into();
    let token = "tok-3xampl3-value";
    step.request.secrets = Arc::new(
        [("DEPLOY_TOKEN", token)]
            .into_iter()
            .collect::<MapSecrets>(),
    );
    let outcome = ok(fixture.runtime.execute(&extension, step.request));
    let rendered =
        std::fs::read_to_string(step.workspace.path().join("dist/app.txt")).expect("rendered");
    assert_eq!(rendered, format!("app demo token={token}\n"));
    assert_eq!(outcome.outputs["output"], "dist/app.txt");
    assert_eq!(outcome.outputs["bytes"], rendered.len().to_string());
    assert!(
        outcome.artifacts.is_empty(),
        "a file with a secret is no artifact"
    );
    assert_no_secret(&step.sink.entries(), &[token.to_owned()]);
}

// ---- sandbox ---------------------------------------------------------------------------

#[test]
fn a_preview1_module_is_adapted_and_runs() {
    let fixture = runtime();
    let adapted = build(&probe_dir(), Target::P1);
    let core = PathBuf::from(
        adapted
            .to_string_lossy()
            .replace(".component.wasm", ".wasm"),
    );
    let bytes = std::fs::read(&core).expect("core module");
    assert_eq!(
        &bytes[4..8],
        [1, 0, 0, 0],
        "cargo's output is a core module"
    );
    let extension = fixture
        .runtime
        .load(&probe_manifest("read-write"), &core)
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(extension.source_kind(), SourceKind::Preview1Module);
    assert_eq!(
        extension.contract_version().to_string(),
        labhit_protocol::CONTRACT_VERSION
    );
    let step = step("write");
    let outcome = ok(fixture.runtime.execute(&extension, step.request));
    assert_eq!(outcome.outputs["write"], "ok");
}

#[test]
fn the_workspace_grant_is_enforced() {
    let fixture = runtime();

    let rw = probe(&fixture, "read-write");
    let step_rw = step("write");
    let outcome = ok(fixture.runtime.execute(&rw, step_rw.request));
    assert_eq!(outcome.outputs["write"], "ok");
    assert_eq!(
        std::fs::read(step_rw.workspace.path().join("probe.txt")).expect("written"),
        b"probe"
    );

    let ro = probe(&fixture, "read");
    let step_ro = step("write");
    let outcome = ok(fixture.runtime.execute(&ro, step_ro.request));
    assert!(
        outcome.outputs["write"].starts_with("refused"),
        "{:?}",
        outcome.outputs
    );
    assert!(!step_ro.workspace.path().join("probe.txt").exists());

    let none = probe(&fixture, "none");
    let mut step_none = step("env");
    step_none.request.workspace = None;
    let outcome = ok(fixture.runtime.execute(&none, step_none.request));
    assert!(
        outcome.outputs["root"].starts_with("error"),
        "{:?}",
        outcome.outputs
    );
    let step_none = step("write");
    let outcome = ok(fixture.runtime.execute(&none, step_none.request));
    assert!(
        outcome.outputs["write"].starts_with("refused"),
        "{:?}",
        outcome.outputs
    );
}

#[test]
fn a_granted_workspace_must_be_given() {
    let fixture = runtime();
    let extension = probe(&fixture, "read");
    let mut step = step("noop");
    step.request.workspace = None;
    let (err, failure) = expect_failure(fixture.runtime.execute(&extension, step.request));
    assert!(matches!(failure, StepFailure::Setup(_)), "{err}");
    assert!(err.to_string().contains("names no workspace"), "{err}");
}

#[test]
fn the_environment_is_exactly_what_is_granted() {
    let fixture = runtime();
    let extension = probe(&fixture, "read");
    let mut step = step("env");
    step.request.env = BTreeMap::from([
        ("CI".to_owned(), "true".to_owned()),
        ("GREETING".to_owned(), "hi".to_owned()),
    ]);
    let outcome = ok(fixture.runtime.execute(&extension, step.request));
    assert_eq!(outcome.outputs["env"], "CI=true,GREETING=hi");
    assert_eq!(outcome.outputs["args"], "0");
    // The host sets `initial-cwd` to `/workspace`, but Rust's std (wasi-libc) starts at `/`
    // whatever the host says, as the WIT warns; so only the workspace path is checked.
    assert_eq!(outcome.outputs["workspace"], "/workspace");
    assert!(
        outcome.outputs["root"].starts_with("error"),
        "`/` is not reachable: {:?}",
        outcome.outputs
    );
}

#[test]
fn secrets_are_served_only_by_declared_name() {
    let fixture = runtime();
    let extension = probe(&fixture, "none");
    let mut step = step("secrets");
    step.request.workspace = None;
    step.request.secrets = Arc::new(
        [("TOKEN", "abc"), ("OTHER", "must not leak")]
            .into_iter()
            .collect::<MapSecrets>(),
    );
    let outcome = ok(fixture.runtime.execute(&extension, step.request));
    assert_eq!(outcome.outputs["declared"], "granted 3 bytes");
    assert_eq!(outcome.outputs["undeclared"], "denied");
    assert_eq!(outcome.outputs["unset"], "not-found");
    assert_eq!(outcome.outputs["invalid"], "invalid-name");
}

fn assert_no_secret(entries: &[LogEntry], forms: &[String]) {
    for entry in entries {
        let texts = std::iter::once(&entry.message)
            .chain(entry.fields.keys())
            .chain(entry.fields.values());
        for text in texts {
            for form in forms {
                assert!(
                    !text.contains(form.as_str()),
                    "`{form}` leaked into a log entry: {entry:?}"
                );
            }
        }
    }
}

#[test]
fn secret_values_and_their_encodings_never_reach_the_log() {
    let fixture = runtime();
    let extension = probe(&fixture, "none");
    let secret = "p@ss w/rd+\"ü\"\\ä";
    let forms = encoded_forms(secret);
    assert!(forms.len() >= 8, "{forms:?}");
    for fail in [false, true] {
        let mut step = step("leak");
        step.request.workspace = None;
        step.request.with = serde_json::json!({"mode": "leak", "fail": fail}).into();
        step.request.secrets = Arc::new([("TOKEN", secret)].into_iter().collect::<MapSecrets>());
        step.request.env = forms
            .iter()
            .enumerate()
            .map(|(i, form)| (format!("PROBE_FORM_{i:02}"), form.clone()))
            .collect();
        let result = fixture.runtime.execute(&extension, step.request);
        let entries = step.sink.entries();
        assert_no_secret(&entries, &forms);
        let streams: Vec<LogStream> = entries.iter().map(|e| e.stream).collect();
        for stream in [LogStream::Log, LogStream::Stdout, LogStream::Stderr] {
            assert!(
                streams.contains(&stream),
                "{stream:?} captured: {entries:?}"
            );
        }
        let stdout = entries
            .iter()
            .find(|e| e.stream == LogStream::Stdout)
            .expect("stdout line");
        assert_eq!(stdout.level, LogLevel::Info);
        assert!(
            stdout.message.starts_with("stdout: *** | ***"),
            "{}",
            stdout.message
        );
        let stderr = entries
            .iter()
            .find(|e| e.stream == LogStream::Stderr)
            .expect("stderr line");
        assert_eq!(stderr.level, LogLevel::Warn);
        assert!(
            entries
                .iter()
                .any(|e| e.message == "partial line without newline: ***"),
            "the last partial line is delivered: {:?}",
            step.sink.messages()
        );
        let sequences: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
        assert_eq!(sequences, (0..entries.len() as u64).collect::<Vec<_>>());
        assert!(
            entries
                .iter()
                .all(|e| e.stage.as_ref().map(|s| s.as_str()) == Some("probe-stage"))
        );
        if fail {
            let (err, _) = expect_failure(result);
            let text = err.to_string();
            for form in &forms {
                assert!(
                    !text.contains(form.as_str()),
                    "`{form}` leaked into `{text}`"
                );
            }
            assert!(text.contains("failed with ***"), "{text}");
        } else {
            let outcome = ok(result);
            for form in &forms {
                assert!(!outcome.outputs["leak"].contains(form.as_str()));
            }
            assert_eq!(outcome.outputs["plain"], "visible");
        }
    }
}

#[test]
fn the_network_is_denied() {
    let fixture = runtime();
    let extension = probe(&fixture, "none");
    let mut step = step("net");
    step.request.workspace = None;
    let outcome = ok(fixture.runtime.execute(&extension, step.request));
    assert!(
        outcome.outputs["net"].starts_with("refused"),
        "{:?}",
        outcome.outputs
    );
}

// ---- failures are results --------------------------------------------------------------

#[test]
fn a_stuck_guest_stops_at_its_deadline() {
    let fixture = runtime();
    let extension = probe(&fixture, "none");
    let tick = fixture.runtime.config().epoch_tick;
    let mut step = step("loop");
    step.request.workspace = None;
    let timeout = Duration::from_millis(300);
    step.request.timeout = Some(timeout);
    let start = Instant::now();
    let (err, failure) = expect_failure(fixture.runtime.execute(&extension, step.request));
    let elapsed = start.elapsed();
    assert_eq!(failure, StepFailure::Timeout { timeout }, "{err}");
    assert!(elapsed >= timeout, "stopped early: {elapsed:?}");
    // One tick of precision, plus generous scheduling slack: CI runs every test binary in
    // parallel on 2 cores. The precision itself (± one tick) is what the epoch mechanism
    // guarantees; this bound only proves the guest was stopped, not left spinning.
    assert!(
        elapsed < timeout + tick + Duration::from_millis(1500),
        "stopped late: {elapsed:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("stage `probe-stage`: extension `test/probe@0.3.1` ran past its deadline"),
        "{text}"
    );
    still_works(&fixture, &extension);
}

#[test]
fn the_manifest_timeout_caps_the_stage_timeout() {
    let fixture = runtime();
    let mut manifest = probe_manifest("none");
    let text = std::fs::read_to_string(probe_dir().join("extension.toml")).expect("manifest");
    manifest.limits = self::manifest(&text.replace("timeout = \"1m\"", "timeout = \"1s\""))
        .limits
        .clone();
    let extension = fixture
        .runtime
        .load(&manifest, &build(&probe_dir(), Target::P2))
        .expect("loads");
    assert_eq!(extension.timeout(), Duration::from_secs(1));
    let mut step = step("loop");
    step.request.workspace = None;
    step.request.timeout = Some(Duration::from_secs(3600));
    let (_, failure) = expect_failure(fixture.runtime.execute(&extension, step.request));
    assert_eq!(
        failure,
        StepFailure::Timeout {
            timeout: Duration::from_secs(1)
        }
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let fixture = runtime();
    let extension = probe(&fixture, "none");
    assert_eq!(extension.memory_limit(), 32 << 20);
    let mut step = step("memory");
    step.request.workspace = None;
    let (err, failure) = expect_failure(fixture.runtime.execute(&extension, step.request));
    assert_eq!(
        failure,
        StepFailure::MemoryLimit { limit: 32 << 20 },
        "{err}"
    );
    still_works(&fixture, &extension);
}

#[test]
fn a_panic_keeps_its_message() {
    let fixture = runtime();
    let extension = probe(&fixture, "none");
    let mut step = step("panic");
    step.request.workspace = None;
    let (err, failure) = expect_failure(fixture.runtime.execute(&extension, step.request));
    assert_eq!(
        failure,
        StepFailure::Panic {
            message: "probe panicked".to_owned()
        },
        "{err}"
    );
    assert!(err.to_string().contains("test/probe@0.3.1"), "{err}");
    still_works(&fixture, &extension);
}

#[test]
fn exit_invalid_config_and_bad_artifacts_are_typed() {
    let fixture = runtime();
    let extension = probe(&fixture, "read-write");

    let (_, failure) = expect_failure(fixture.runtime.execute(&extension, step("exit").request));
    // `wasi:cli/exit` 0.2 carries only success or failure: a non-zero status has no code.
    assert_eq!(failure, StepFailure::Exit { status: None });

    let (err, failure) =
        expect_failure(fixture.runtime.execute(&extension, step("invalid").request));
    assert_eq!(
        failure,
        StepFailure::InvalidConfig("`mode` is invalid".to_owned())
    );
    assert_eq!(
        err.to_string(),
        "stage `probe-stage`: extension `test/probe@0.3.1` rejected its config: `mode` is invalid"
    );

    let (_, failure) = expect_failure(
        fixture
            .runtime
            .execute(&extension, step("escape-artifact").request),
    );
    assert!(
        matches!(failure, StepFailure::InvalidOutput(_)),
        "{failure:?}"
    );
    still_works(&fixture, &extension);
}

#[test]
fn outputs_are_checked_against_the_output_schema() {
    let fixture = runtime();
    let path = build(&probe_dir(), Target::P2);
    let with_outputs = |schema: &str| {
        let text = std::fs::read_to_string(probe_dir().join("extension.toml")).expect("manifest");
        manifest(&format!("{text}\n[outputs]\n{schema}\n"))
    };
    // `write` returns `{"write": "ok"}`.
    let matching = with_outputs(
        "type = \"object\"\nrequired = [\"write\"]\nproperties.write = { const = \"ok\" }",
    );
    let extension = fixture.runtime.load(&matching, &path).expect("load");
    let outcome = ok(fixture.runtime.execute(&extension, step("write").request));
    assert_eq!(outcome.outputs["write"], "ok");

    let strict = with_outputs("type = \"object\"\nrequired = [\"write\", \"files\"]");
    let extension = fixture.runtime.load(&strict, &path).expect("load");
    let (err, failure) = expect_failure(fixture.runtime.execute(&extension, step("write").request));
    assert!(matches!(failure, StepFailure::InvalidOutput(_)), "{err}");
    assert!(
        err.to_string().contains(
            "its outputs break the manifest's output schema: \"files\" is a required property"
        ),
        "{err}"
    );

    let broken = with_outputs("type = \"no-such-type\"");
    let err = fixture
        .runtime
        .load(&broken, &path)
        .expect_err("an invalid output schema is refused at load time");
    assert!(
        err.to_string()
            .contains("its manifest's `outputs` is not a valid JSON Schema"),
        "{err}"
    );
}

#[test]
fn cancellation_reaches_the_guest() {
    let fixture = runtime();
    let extension = probe(&fixture, "none");
    let mut step = step("spin");
    step.request.workspace = None;
    let cancel = Cancellation::new();
    step.request.cancellation = cancel.clone();
    // Cancel as soon as the guest says it is waiting for it.
    step.request.log_sink = Arc::new(move |entry: LogEntry| {
        if entry.message == "spinning" {
            cancel.cancel();
        }
    });
    let (err, failure) = expect_failure(fixture.runtime.execute(&extension, step.request));
    assert!(matches!(failure, StepFailure::Cancelled(_)), "{err}");
}

#[test]
fn a_guest_that_ignores_cancellation_is_interrupted_after_the_grace_period() {
    let fixture = runtime_with(|config| config.cancel_grace = Duration::from_millis(50));
    let extension = probe(&fixture, "none");
    let mut step = step("loop");
    step.request.workspace = None;
    let cancel = Cancellation::new();
    step.request.cancellation = cancel.clone();
    step.request.log_sink = Arc::new(move |entry: LogEntry| {
        if entry.message == "looping" {
            cancel.cancel();
        }
    });
    let (err, failure) = expect_failure(fixture.runtime.execute(&extension, step.request));
    assert_eq!(
        failure,
        StepFailure::Interrupted {
            grace: Duration::from_millis(50)
        },
        "{err}"
    );
    still_works(&fixture, &extension);
}

#[test]
fn steps_run_concurrently_on_one_runtime() {
    let fixture = runtime();
    let extension = probe(&fixture, "none");
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..25 {
                    let mut step = step(if i % 5 == 0 { "panic" } else { "noop" });
                    step.request.workspace = None;
                    let result = fixture.runtime.execute(&extension, step.request);
                    assert_eq!(result.is_ok(), i % 5 != 0);
                }
            });
        }
    });
}

// ---- loading ------------------------------------------------------------------------

#[test]
fn the_second_load_is_a_cache_hit_and_a_corrupt_entry_is_rebuilt() {
    let fixture = runtime();
    let path = build(&probe_dir(), Target::P2);
    let manifest = probe_manifest("none");
    let first = fixture.runtime.load(&manifest, &path).expect("loads");
    assert_eq!(first.cache_outcome(), &CacheOutcome::Miss);
    let second = fixture.runtime.load(&manifest, &path).expect("loads");
    assert_eq!(second.cache_outcome(), &CacheOutcome::Hit);

    let bytes = std::fs::read(&path).expect("component");
    let (artifact, _) = fixture
        .runtime
        .cache()
        .entry_paths(&bytes)
        .expect("enabled");
    let mut cached = std::fs::read(&artifact).expect("artifact");
    let middle = cached.len() / 2;
    cached[middle] ^= 0x55;
    std::fs::write(&artifact, &cached).expect("corrupt");
    let third = fixture.runtime.load(&manifest, &path).expect("loads");
    assert!(
        matches!(third.cache_outcome(), CacheOutcome::Rebuilt { .. }),
        "{:?}",
        third.cache_outcome()
    );
    let mut step = step("noop");
    step.request.workspace = None;
    ok(fixture.runtime.execute(&third, step.request));
    let fourth = fixture.runtime.load(&manifest, &path).expect("loads");
    assert_eq!(fourth.cache_outcome(), &CacheOutcome::Hit);
}

#[test]
fn malformed_files_are_refused_with_the_extension_named() {
    let fixture = runtime();
    let manifest = probe_manifest("none");
    let dir = tempfile::tempdir().expect("tempdir");
    let component = std::fs::read(build(&probe_dir(), Target::P2)).expect("component");
    type Expected = fn(&LoadErrorKind) -> bool;
    let cases: [(&str, Vec<u8>, Expected); 5] = [
        ("empty.wasm", Vec::new(), |k| {
            matches!(k, LoadErrorKind::NotWasm(_))
        }),
        ("script.wasm", b"#!/bin/sh\n".to_vec(), |k| {
            matches!(k, LoadErrorKind::NotWasm(_))
        }),
        (
            "truncated.wasm",
            component[..component.len() / 2].to_vec(),
            |k| matches!(k, LoadErrorKind::Compile(_)),
        ),
        ("core.wasm", b"\0asm\x01\0\0\0\xff".to_vec(), |k| {
            matches!(k, LoadErrorKind::Adapt(_))
        }),
        ("empty-module.wasm", b"\0asm\x01\0\0\0".to_vec(), |k| {
            matches!(k, LoadErrorKind::MissingExport { .. })
        }),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("write");
        let err = fixture.runtime.load(&manifest, &path).expect_err(name);
        assert!(expected(&err.kind), "{name}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("test/probe@0.3.1") && text.contains(name),
            "{text}"
        );
    }
    let missing = fixture
        .runtime
        .load(&manifest, &dir.path().join("missing.wasm"))
        .expect_err("missing");
    assert!(matches!(*missing.kind, LoadErrorKind::Read(_)), "{missing}");

    // Through `load_and_execute`, a load failure names the stage too.
    let (err, failure) = expect_failure(fixture.runtime.load_and_execute(
        &manifest,
        &dir.path().join("script.wasm"),
        StepRequest::new("deploy"),
    ));
    assert!(matches!(failure, StepFailure::Load(_)));
    assert!(
        err.to_string()
            .starts_with("stage `deploy`: extension `test/probe@0.3.1`"),
        "{err}"
    );
}

#[test]
fn a_manifest_contract_requirement_is_checked() {
    let fixture = runtime();
    let text = std::fs::read_to_string(probe_dir().join("extension.toml")).expect("manifest");
    let manifest = manifest(&text.replace("contract = \"^0.1\"", "contract = \"^0.2\""));
    let err = fixture
        .runtime
        .load(&manifest, &build(&probe_dir(), Target::P2))
        .expect_err("incompatible");
    assert!(
        matches!(*err.kind, LoadErrorKind::ManifestContract { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("labhit:extension@0.1.0"), "{err}");
}

#[test]
fn a_memory_limit_above_the_runtime_maximum_is_refused() {
    let fixture = runtime_with(|config| {
        config.max_memory_bytes = 16 << 20;
        config.default_memory_bytes = 16 << 20;
    });
    let err = fixture
        .runtime
        .load(&probe_manifest("none"), &build(&probe_dir(), Target::P2))
        .expect_err("too large");
    assert!(
        matches!(*err.kind, LoadErrorKind::MemoryLimitTooLarge { .. }),
        "{err}"
    );
}
