//! Loads real components with the `host` bindings and calls `execute`.
//!
//! Each component is built by `labhit-guest-build` (the same code `cargo xtask extensions`
//! runs) into the shared `target/guests` directory, so repeated runs reuse cargo's cache and
//! never wait on the main target directory. Each step runs in a fresh store with WASI p2
//! (the workspace preopened at `/workspace` in a temporary directory, the granted
//! environment, captured stdout and stderr) and a small in-test implementation of the
//! LabHit host imports (declared secrets, captured logs, a cancellation flag).
//!
//! Covered: the `minimal` fixture of this crate (`tests/fixtures/minimal`, written against
//! `labhit_wit::guest` directly) built for `wasm32-wasip2` and through the preview1 adapter
//! from `wasm32-wasip1`, and every example extension under `extensions/` of the workspace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use labhit_guest_build::{Builder, Target};
use labhit_protocol::ids::{RunId, StepId};
use labhit_protocol::manifest::FilesystemAccess;
use labhit_protocol::{Value, executor::StepResult};
use labhit_wit::convert::{StepOutcome, StepSpec};
use labhit_wit::host::Extension;
use labhit_wit::host::labhit::extension::{cancellation, log, secrets, types};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// One `log.log` call: level, message, fields.
type LogEntry = (log::Level, String, Vec<(String, String)>);

/// The store data of one step: WASI plus the LabHit host imports.
struct StepHost {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Secrets the manifest declares, with the value the engine has (`None`: not found).
    secrets: BTreeMap<String, Option<String>>,
    logs: Vec<LogEntry>,
    cancelled: bool,
}

impl WasiView for StepHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StepHost {}

impl log::Host for StepHost {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        self.logs.push((level, message, fields));
    }
}

impl secrets::Host for StepHost {
    fn get(&mut self, name: String) -> Result<String, secrets::SecretError> {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(secrets::SecretError::InvalidName);
        }
        match self.secrets.get(&name) {
            None => Err(secrets::SecretError::Denied),
            Some(None) => Err(secrets::SecretError::NotFound),
            Some(Some(value)) => Ok(value.clone()),
        }
    }
}

impl cancellation::Host for StepHost {
    fn is_cancelled(&mut self) -> bool {
        self.cancelled
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::default)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn builder() -> Builder {
    Builder::for_workspace(&workspace_root())
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minimal")
}

/// Builds (once per process) and compiles the fixture for `target`.
fn fixture(target: Target) -> Component {
    static BUILT: OnceLock<std::sync::Mutex<BTreeMap<&'static str, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let path = {
        let mut built = built.lock().expect("lock");
        built
            .entry(target.triple())
            .or_insert_with(|| {
                builder()
                    .build(&fixture_dir(), target)
                    .unwrap_or_else(|err| panic!("{err}"))
                    .component
            })
            .clone()
    };
    Component::from_file(engine(), &path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// What a step left behind.
struct Run {
    result: wasmtime::Result<Result<types::StepOutput, types::StepError>>,
    host: StepHost,
    stdout: String,
    stderr: String,
}

/// Runs one step of `component` in a fresh store, the way a host does.
fn run(
    component: &Component,
    spec: &StepSpec,
    workspace: &Path,
    secrets: &[(&str, Option<&str>)],
) -> Run {
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut wasi = WasiCtx::builder();
    wasi.stdout(stdout.clone()).stderr(stderr.clone());
    let env: Vec<(&String, &String)> = spec.env.iter().collect();
    wasi.envs(&env);
    match spec.workspace_access {
        FilesystemAccess::None => {}
        FilesystemAccess::Read => {
            wasi.preopened_dir(workspace, "/workspace", FsPerms::ReadOnly)
                .expect("preopen");
        }
        FilesystemAccess::ReadWrite => {
            wasi.preopened_dir(workspace, "/workspace", FsPerms::ReadWrite)
                .expect("preopen");
        }
    }
    let host = StepHost {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        secrets: secrets
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.map(str::to_owned)))
            .collect(),
        logs: Vec::new(),
        cancelled: false,
    };
    let mut linker = Linker::<StepHost>::new(engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi links");
    Extension::add_to_linker::<_, HasSelf<_>>(&mut linker, |host| host).expect("labhit links");
    let mut store = Store::new(engine(), host);
    let extension =
        Extension::instantiate(&mut store, component, &linker).expect("component instantiates");
    let input = types::StepInput::try_from(spec).expect("step input converts");
    let result = extension
        .labhit_extension_pipeline_step()
        .call_execute(&mut store, &input);
    Run {
        result,
        host: store.into_data(),
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
    }
}

fn spec(use_ref: &str, with: serde_json::Value, access: FilesystemAccess) -> StepSpec {
    let mut spec = StepSpec::new(
        RunId::from_uuid(uuid_from(1)),
        StepId::from_uuid(uuid_from(2)),
        "greet",
        use_ref,
    );
    spec.with = Value::from(with);
    spec.workspace_access = access;
    spec.env = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
    spec
}

fn uuid_from(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c0 + n)
}

fn ok(run: Run) -> (StepOutcome, Run) {
    let output = match &run.result {
        Ok(Ok(output)) => output.clone(),
        Ok(Err(err)) => panic!("step error {err:?}; stderr: {}", run.stderr),
        Err(trap) => panic!("trap {trap:?}; stderr: {}", run.stderr),
    };
    (
        StepOutcome::try_from(output).expect("valid step output"),
        run,
    )
}

fn check_minimal(target: Target) {
    let component = fixture(target);
    let workspace = tempfile::tempdir().expect("tempdir");
    std::fs::write(workspace.path().join("input.txt"), "world\n").expect("write");

    // Success: every host import used, a file written, an artifact and outputs returned.
    let spec = spec(
        "test/minimal",
        serde_json::json!({}),
        FilesystemAccess::ReadWrite,
    );
    let (outcome, first) = ok(run(
        &component,
        &spec,
        workspace.path(),
        &[("TOKEN", Some("s3cret"))],
    ));
    assert_eq!(outcome.result.exit_code, 0);
    assert_eq!(outcome.outputs["token"], "6 bytes");
    assert_eq!(outcome.outputs["other"], "denied");
    assert_eq!(outcome.outputs["env"], "GREETING=hi");
    assert_eq!(outcome.outputs["std-env"], "hi");
    let greeting = "hello world from greet\n";
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("out/greeting.txt")).expect("written"),
        greeting
    );
    assert_eq!(
        outcome.result.artifacts[0].path.as_str(),
        "out/greeting.txt"
    );
    assert_eq!(
        outcome.result.artifacts[0].size_bytes,
        greeting.len() as u64
    );
    assert_eq!(
        first.host.logs,
        [(
            log::Level::Info,
            "hello from greet".to_owned(),
            vec![("use".to_owned(), "test/minimal".to_owned())]
        )]
    );
    assert_eq!(first.stdout, "");

    // A failing exit code is an output, not an error.
    let spec = self::spec(
        "test/minimal",
        serde_json::json!({"fail": true}),
        FilesystemAccess::ReadWrite,
    );
    let (outcome, _) = ok(run(&component, &spec, workspace.path(), &[("TOKEN", None)]));
    assert_eq!(
        outcome.result,
        StepResult {
            exit_code: 3,
            ..outcome.result.clone()
        }
    );
    assert!(!outcome.result.is_success());
    assert_eq!(outcome.outputs["token"], "not-found");

    // A read-only workspace refuses the write.
    let spec = self::spec(
        "test/minimal",
        serde_json::json!({}),
        FilesystemAccess::Read,
    );
    let run_ro = run(&component, &spec, workspace.path(), &[]);
    match run_ro.result {
        Ok(Err(types::StepError::Failed(message))) => {
            assert!(
                message.starts_with("cannot write out/greeting.txt"),
                "{message}"
            );
        }
        other => panic!("expected step-error.failed, got {other:?}"),
    }

    // No filesystem at all: not even the input can be read.
    let spec = self::spec(
        "test/minimal",
        serde_json::json!({}),
        FilesystemAccess::None,
    );
    match run(&component, &spec, workspace.path(), &[]).result {
        Ok(Err(types::StepError::Failed(message))) => {
            assert!(message.starts_with("cannot read input.txt"), "{message}");
        }
        other => panic!("expected step-error.failed, got {other:?}"),
    }

    // A step error.
    let spec = self::spec(
        "test/minimal",
        serde_json::json!({"error": true}),
        FilesystemAccess::ReadWrite,
    );
    assert_eq!(
        run(&component, &spec, workspace.path(), &[])
            .result
            .expect("no trap"),
        Err(types::StepError::Failed("fixture asked to fail".to_owned()))
    );

    // A panic traps; its message reached stderr.
    let spec = self::spec(
        "test/minimal",
        serde_json::json!({"panic": true}),
        FilesystemAccess::ReadWrite,
    );
    let panicked = run(&component, &spec, workspace.path(), &[]);
    assert!(panicked.result.is_err(), "a panic traps");
    assert!(
        panicked.stderr.contains("fixture asked to panic"),
        "stderr: {}",
        panicked.stderr
    );
}

#[test]
fn minimal_fixture_runs_as_a_p2_component() {
    check_minimal(Target::P2);
}

#[test]
fn minimal_fixture_runs_as_an_adapted_p1_module() {
    check_minimal(Target::P1);
}

#[test]
fn components_export_the_contract_version() {
    let component = fixture(Target::P2);
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    let (package, version) = labhit_protocol::WIT_PACKAGE
        .split_once('@')
        .expect("versioned");
    assert_eq!(exports, [format!("{package}/pipeline-step@{version}")]);

    // `labhit_guest_build::contract_version` (the check bundles go through) reads the same.
    for target in [Target::P2, Target::P1] {
        let built = builder()
            .build(&fixture_dir(), target)
            .unwrap_or_else(|err| panic!("{err}"));
        let bytes = std::fs::read(&built.component).expect("component readable");
        assert_eq!(
            labhit_guest_build::contract_version(&bytes)
                .expect("a contract version")
                .to_string(),
            labhit_protocol::CONTRACT_VERSION,
            "{target}"
        );
    }
}

/// An example extension of the workspace, built for `wasm32-wasip2` and compiled.
struct Example {
    extension: labhit_guest_build::Extension,
    component: Component,
}

fn example(id: &str) -> Example {
    let extensions =
        labhit_guest_build::discover(&workspace_root().join("extensions")).expect("manifests");
    let extension = extensions
        .into_iter()
        .find(|ext| ext.id() == id)
        .unwrap_or_else(|| panic!("no extension {id} under extensions/"));
    let built = builder()
        .build(&extension.dir, Target::P2)
        .unwrap_or_else(|err| panic!("{err}"));
    // The bundle `cargo xtask extensions` writes: it checks the exported contract version
    // against the manifest.
    let out = tempfile::tempdir().expect("tempdir");
    let bundle = extension
        .bundle(&built.component, out.path())
        .unwrap_or_else(|err| panic!("{err}"));
    let component = Component::from_file(
        engine(),
        bundle.join(&extension.manifest.extension.component),
    )
    .expect("compiles");
    Example {
        extension,
        component,
    }
}

impl Example {
    /// Runs a step with the grants of the manifest: its filesystem access, and its declared
    /// secrets with the values in `values` (a declared secret without a value is not found).
    fn run(&self, with: serde_json::Value, workspace: &Path, values: &[(&str, &str)]) -> Run {
        let caps = &self.extension.manifest.capabilities;
        let mut spec = spec(&self.extension.id(), with, caps.filesystem);
        spec.stage_id = "example".to_owned();
        let secrets: Vec<(&str, Option<&str>)> = caps
            .secrets
            .iter()
            .map(|name| {
                let value = values
                    .iter()
                    .find(|(n, _)| *n == name.as_str())
                    .map(|(_, v)| *v);
                (name.as_str(), value)
            })
            .collect();
        run(&self.component, &spec, workspace, &secrets)
    }
}

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn every_example_extension_is_covered() {
    let ids: Vec<String> = labhit_guest_build::discover(&workspace_root().join("extensions"))
        .expect("manifests")
        .iter()
        .map(labhit_guest_build::Extension::id)
        .collect();
    assert_eq!(
        ids,
        // notify/webhook imports `wasi:http`, which this test host does not link: its
        // end-to-end tests (against a local server) are labhit-runtime's
        // `tests/runtime/http.rs`.
        [
            "deploy/render",
            "exec/sh",
            "notify/webhook",
            "test/junit",
            "util/checksum"
        ],
        "add a test for the new example extension to tests/host.rs"
    );
}

#[test]
fn example_exec_sh() {
    use labhit_protocol::executor::{CacheDecision, CommandStep};
    use labhit_protocol::ids::SnapshotRef;
    use labhit_wit::convert::ExecutorCommand;

    let ext = example("exec/sh");
    let ws = tempfile::tempdir().expect("tempdir");
    write(ws.path(), "dist/app.txt", "hello\n");
    let caps = &ext.extension.manifest.capabilities;
    assert!(caps.executor, "exec/sh declares the executor capability");
    let with_command = |script: &str, cache: CacheDecision| {
        let mut spec = spec(
            &ext.extension.id(),
            serde_json::json!({"artifacts": ["release/*"]}),
            caps.filesystem,
        );
        spec.command = Some(ExecutorCommand {
            step: CommandStep::new(script),
            cache,
            parent_snapshot: None,
        });
        run(&ext.component, &spec, ws.path(), &[])
    };

    // A miss runs the script in /workspace with the granted env and commits the decided tag.
    let tag = SnapshotRef::new("labhit-cache:host-test");
    let (outcome, run) = ok(with_command(
        "mkdir -p release\ncp dist/app.txt release/\necho \"$GREETING\" > release/greeting",
        CacheDecision::MissBuildAs { tag: tag.clone() },
    ));
    assert_eq!(outcome.result.exit_code, 0, "{:?}", run.host.logs);
    assert_eq!(outcome.result.committed_snapshot.as_ref(), Some(&tag));
    assert_eq!(outcome.outputs["commands"], "3");
    let paths: Vec<&str> = outcome
        .result
        .artifacts
        .iter()
        .map(|a| a.path.as_str())
        .collect();
    assert_eq!(paths, ["release/app.txt", "release/greeting"]);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("release/greeting")).expect("written"),
        "hi\n"
    );

    // A failing script is a non-zero exit code without a snapshot, not a step error.
    let (outcome, _) = ok(with_command(
        "cat missing.txt",
        CacheDecision::MissBuildAs { tag },
    ));
    assert_eq!(outcome.result.exit_code, 1);
    assert_eq!(outcome.result.committed_snapshot, None);

    // A hit skips the script.
    let (outcome, _) = ok(with_command(
        "rm -r release",
        CacheDecision::Hit {
            tag: SnapshotRef::new("labhit-cache:host-test"),
        },
    ));
    assert_eq!(outcome.result.exit_code, 0);
    assert_eq!(outcome.outputs["commands"], "0");
    assert!(ws.path().join("release/app.txt").is_file());
}

#[test]
fn example_util_checksum() {
    let ext = example("util/checksum");
    let ws = tempfile::tempdir().expect("tempdir");
    write(ws.path(), "dist/app.txt", "hello from labhit\n");
    write(ws.path(), "dist/app.yaml", "name: app\n");
    write(ws.path(), "src/main.rs", "fn main() {}\n");
    let (outcome, run) = ok(ext.run(
        serde_json::json!({"patterns": ["dist/**"], "output": "dist/SHA256SUMS"}),
        ws.path(),
        &[],
    ));
    let manifest = std::fs::read_to_string(ws.path().join("dist/SHA256SUMS")).expect("written");
    assert_eq!(
        manifest.lines().next(),
        Some("cfc4774040819a81b9cfc09c6ba12c290f1d2abffc49b1c66f2009b4d0d4efbc  dist/app.txt")
    );
    assert_eq!(manifest.lines().count(), 2, "{manifest}");
    assert_eq!(outcome.result.exit_code, 0);
    assert_eq!(outcome.outputs["files"], "2");
    assert_eq!(outcome.outputs["manifest"], "dist/SHA256SUMS");
    assert_eq!(outcome.result.artifacts.len(), 1);
    assert_eq!(outcome.result.artifacts[0].path.as_str(), "dist/SHA256SUMS");
    assert_eq!(
        outcome.result.artifacts[0].size_bytes,
        manifest.len() as u64
    );
    assert!(
        run.host
            .logs
            .iter()
            .any(|(_, message, _)| message.contains("hashed 2 files")),
        "{:?}",
        run.host.logs
    );

    // Bad config is refused as invalid-config.
    let bad = ext.run(
        serde_json::json!({"patterns": ["dist/**"], "algorithm": "md5"}),
        ws.path(),
        &[],
    );
    assert!(
        matches!(bad.result, Ok(Err(types::StepError::InvalidConfig(_)))),
        "{:?}",
        bad.result
    );
}

#[test]
fn example_test_junit() {
    let ext = example("test/junit");
    let ws = tempfile::tempdir().expect("tempdir");
    write(
        ws.path(),
        "reports/unit.xml",
        r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="core" tests="3">
  <testcase classname="core" name="parses"/>
  <testcase classname="core" name="validates"/>
  <testcase classname="core" name="renders"><skipped/></testcase>
</testsuite>
"#,
    );
    let (outcome, _) = ok(ext.run(
        serde_json::json!({"reports": ["reports/*.xml"]}),
        ws.path(),
        &[],
    ));
    assert_eq!(outcome.result.exit_code, 0);
    assert_eq!(outcome.outputs["tests"], "3");
    assert_eq!(outcome.outputs["passed"], "2");
    assert_eq!(outcome.outputs["skipped"], "1");
    assert_eq!(
        outcome.result.artifacts[0].path.as_str(),
        "reports/unit.xml"
    );

    // A failed test fails the stage with a non-zero exit, outputs and artifacts still there.
    write(
        ws.path(),
        "reports/it.xml",
        r#"<testsuite name="db"><testcase classname="db" name="migrates"><failure message="expected 3 &lt; 2"/></testcase></testsuite>"#,
    );
    let (outcome, run) = ok(ext.run(
        serde_json::json!({"reports": ["reports/*.xml"]}),
        ws.path(),
        &[],
    ));
    assert_eq!(outcome.result.exit_code, 1);
    assert_eq!(outcome.outputs["failures"], "1");
    assert_eq!(outcome.result.artifacts.len(), 2);
    assert!(
        run.host
            .logs
            .iter()
            .any(|(level, message, _)| *level == log::Level::Error
                && message.contains("db.migrates")),
        "{:?}",
        run.host.logs
    );
    // The workspace is read-only: nothing was written.
    let mut files: Vec<_> = std::fs::read_dir(ws.path().join("reports"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    files.sort();
    assert_eq!(files, ["it.xml", "unit.xml"]);
}

#[test]
fn example_deploy_render() {
    let ext = example("deploy/render");
    let ws = tempfile::tempdir().expect("tempdir");
    let (outcome, _) = ok(ext.run(
        serde_json::json!({
            "template": "app {{ name }} ({{ env }})",
            "output": "dist/deploy.txt",
            "values": {"name": "labhit-example", "env": "staging"}
        }),
        ws.path(),
        &[],
    ));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("dist/deploy.txt")).expect("written"),
        "app labhit-example (staging)"
    );
    assert_eq!(outcome.outputs["bytes"], "28");
    assert_eq!(outcome.result.artifacts[0].path.as_str(), "dist/deploy.txt");

    // A declared secret is served by the host and lands in the file, not in the logs.
    let token = "tok-9f8e7d6c5b4a";
    write(
        ws.path(),
        "deploy/app.tmpl",
        "token: {{ secret.DEPLOY_TOKEN }}\n",
    );
    let (outcome, run) = ok(ext.run(
        serde_json::json!({"template-file": "deploy/app.tmpl", "output": "out/app.yaml"}),
        ws.path(),
        &[("DEPLOY_TOKEN", token)],
    ));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out/app.yaml")).expect("written"),
        format!("token: {token}\n")
    );
    assert!(outcome.result.artifacts.is_empty());
    assert!(
        !format!("{:?} {:?} {}", run.host.logs, outcome, run.stderr).contains(token),
        "the secret leaked"
    );

    // A declared secret the engine has no value for is an error of the step.
    let missing = ext.run(
        serde_json::json!({"template-file": "deploy/app.tmpl", "output": "out/app.yaml"}),
        ws.path(),
        &[],
    );
    assert!(matches!(missing.result, Ok(Err(_))), "{:?}", missing.result);
}
