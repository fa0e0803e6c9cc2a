//! Runs well-behaved components through [`Runtime`]: the example extensions under
//! `extensions/` and the probe fixture (`tests/fixtures/probe`, one guest whose `with.mode`
//! picks a behaviour): preview1 adaptation, output schemas, concurrency, the compile cache.
//! Every hostile case (limits, the sandbox, bad components) is a row of `tests/hostile.rs`.
//!
//! Guests are built by `labhit-guest-build` into the shared `target/guests` directory (cargo
//! makes a rebuild of an unchanged crate a no-op). Every test uses its own cache directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use labhit_guest_build::{Builder, Target};
use labhit_protocol::manifest::Manifest;
use labhit_protocol::run::{LogEntry, LogLevel};
use labhit_runtime::{
    CacheOutcome, CollectingSink, LoadedExtension, MapSecrets, Runtime, RuntimeConfig, SourceKind,
    StepError, StepFailure, StepOutcome, StepRequest,
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

fn runtime() -> Fixture {
    let cache = tempfile::tempdir().expect("tempdir");
    Fixture {
        runtime: Runtime::new(RuntimeConfig::with_cache_dir(cache.path())).expect("runtime"),
        _cache: cache,
    }
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

// ---- adaptation ---------------------------------------------------------------------------

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

// ---- outputs and concurrency --------------------------------------------------------------

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

// ---- outbound HTTP (notify/webhook against a local server) -------------------------------

#[path = "runtime/http.rs"]
mod http;
