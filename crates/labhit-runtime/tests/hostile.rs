//! The runtime's hostile cases, as one table: every way a guest (or its manifest, its
//! component file or its input) tries to break a limit or the sandbox ends its step with the
//! typed error its row names, or with the guest reporting that the host refused; nothing
//! outside the workspace changes; and the next step on the same [`Runtime`] succeeds.
//!
//! A row ([`Case`]) names the guest and its manifest edits, the runtime settings, the step
//! (`with`, workspace, env, secrets, timeout, cancellation) and the expected outcome: a
//! failure kind ([`StepFailure::code`]) with message fragments and optionally the exact
//! failure, a load error, or outputs. [`drive`] runs every row the same way. `table!` turns
//! the rows into one `#[test]` each, so they run in parallel. The scenes that need more (RSS
//! over a thousand failures, a pipeline whose later `run:` stage writes a planted link) are
//! functions after the table, built from the same helpers.
//!
//! Guests: `tests/fixtures/hostile/` (see its README: an SDK extension whose `with.mode`
//! picks the misbehaviour, a component built against contract 9.0.0, one that exports
//! nothing, and the `extension.toml` of each scenario in `manifests/`) and
//! `tests/fixtures/probe` (raw bindings; each mode checks one promise of the host). They are
//! built by `labhit-guest-build` into `target/guests`; compiled components are cached in
//! `CARGO_TARGET_TMPDIR`, so only the first test process pays for compilation.
//!
//! No test sleeps: deadlines are enforced by the runtime's epoch ticker, cancellation is
//! triggered by the log line a guest emits when it starts waiting, and every loop in a guest
//! is stopped by a limit.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use labhit_guest_build::{Builder, Target};
use labhit_protocol::manifest::Manifest;
use labhit_protocol::run::{LogEntry, LogLevel, LogStream};
use labhit_runtime::logs::{LogSink, encoded_forms};
use labhit_runtime::{
    Cancellation, CollectingSink, LoadErrorKind, LoadedExtension, MapSecrets, Runtime,
    RuntimeConfig, StepError, StepFailure, StepOutcome, StepRequest, TRUNCATED_FIELD,
};
use serde_json::{Value, json};

// ---- guests ----------------------------------------------------------------------------

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures_dir() -> PathBuf {
    crate_dir().join("tests/fixtures")
}

/// Builds the fixture crate `fixtures/<name>` once per process; the component's path.
fn built(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    built
        .entry(name.to_owned())
        .or_insert_with(|| {
            Builder::for_workspace(&crate_dir().join("../.."))
                .build(&fixtures_dir().join(name), Target::P2)
                .unwrap_or_else(|err| panic!("building fixture `{name}`: {err}"))
                .component
        })
        .clone()
}

/// The guest a row runs.
#[derive(Clone, Copy, Debug)]
enum Guest {
    /// `fixtures/hostile/guest` (an SDK extension) with `fixtures/hostile/manifests/<name>.toml`.
    Hostile(&'static str),
    /// `fixtures/probe` (raw bindings) with its `extension.toml`.
    Probe,
}

impl Guest {
    fn manifest_text(self) -> String {
        let path = match self {
            Guest::Hostile(name) => fixtures_dir().join(format!("hostile/manifests/{name}.toml")),
            Guest::Probe => fixtures_dir().join("probe/extension.toml"),
        };
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn component(self) -> PathBuf {
        match self {
            Guest::Hostile(_) => built("hostile/guest"),
            Guest::Probe => built("probe"),
        }
    }

    /// A step a healthy runtime runs to completion, and an output it then reports.
    fn healthy_step(self) -> (Value, Option<(&'static str, &'static str)>) {
        match self {
            Guest::Hostile(_) => (json!({"mode": "log", "count": 2}), Some(("logged", "2"))),
            Guest::Probe => (json!({"mode": "noop"}), None),
        }
    }
}

/// The component file a row hands to the runtime.
#[derive(Clone, Copy)]
enum Component {
    /// The row's guest.
    Guest,
    /// Another fixture crate, by its path under `fixtures/`.
    Fixture(&'static str),
    /// A file of this name holding these bytes.
    File(&'static str, fn() -> Vec<u8>),
    /// A file that does not exist.
    Missing,
}

// ---- rows ------------------------------------------------------------------------------

/// When the step's cancellation is set.
#[derive(Clone, Copy)]
enum Cancel {
    Never,
    /// Before the step starts.
    Before,
    /// When the guest logs exactly this message (it is about to block or spin).
    OnLog(&'static str),
}

/// What an output must look like.
#[derive(Clone, Copy, Debug)]
enum Is {
    Eq(&'static str),
    StartsWith(&'static str),
}

/// The outcome a row expects.
enum Expect {
    /// The step fails with this kind ([`StepFailure::code`]), with exactly this failure when
    /// one is given, and its message contains every fragment.
    Fails {
        kind: &'static str,
        exactly: Option<StepFailure>,
        says: &'static [&'static str],
    },
    /// The step succeeds (exit code 0) with these outputs among its outputs.
    Succeeds(&'static [(&'static str, Is)]),
    /// `Runtime::load` refuses the component with the kind `is` accepts (named `kind`), and
    /// its message contains every fragment.
    LoadFails {
        kind: &'static str,
        is: fn(&LoadErrorKind) -> bool,
        says: &'static [&'static str],
    },
}

fn fails(kind: &'static str, says: &'static [&'static str]) -> Expect {
    Expect::Fails {
        kind,
        exactly: None,
        says,
    }
}

fn fails_with(failure: StepFailure, says: &'static [&'static str]) -> Expect {
    Expect::Fails {
        kind: failure.code(),
        exactly: Some(failure),
        says,
    }
}

/// One hostile scenario.
struct Case {
    guest: Guest,
    /// `(from, to)` replacements in the guest's manifest text; each must match.
    edits: &'static [(&'static str, &'static str)],
    /// Changes to the runtime's settings.
    config: fn(&mut RuntimeConfig),
    component: Component,
    /// Load through `Runtime::load_and_execute` instead of `load` then `execute`.
    load_in_step: bool,
    with: Value,
    /// The step is given the scene's workspace.
    workspace: bool,
    /// Prepares the scene before the step.
    scene: fn(&Scene),
    env: Vec<(String, String)>,
    secrets: Vec<(&'static str, String)>,
    timeout: Option<Duration>,
    cancel: Cancel,
    /// How long the step may take, from its start.
    took: Option<Range<Duration>>,
    expect: Expect,
    /// `(stream, fragment)`: some log entry on that stream contains the fragment.
    logs: &'static [(LogStream, &'static str)],
    /// `(path in the workspace, content)` after the step; `None`: no such entry.
    files: &'static [(&'static str, Option<&'static str>)],
    /// Text found in none of the outputs, the error and the log.
    never: Vec<String>,
    /// Checks beyond the table's columns.
    check: fn(&Ran<'_>),
}

impl Case {
    fn on(guest: Guest, with: Value) -> Self {
        Self {
            guest,
            edits: &[],
            config: |_| {},
            component: Component::Guest,
            load_in_step: false,
            with,
            workspace: true,
            scene: |_| {},
            env: Vec::new(),
            secrets: Vec::new(),
            timeout: None,
            cancel: Cancel::Never,
            took: None,
            expect: Expect::Succeeds(&[]),
            logs: &[],
            files: &[],
            never: Vec::new(),
            check: |_| {},
        }
    }

    /// The hostile guest with `manifests/hostile.toml` (read-write, secret `DECLARED`,
    /// 32 MiB, 1 s).
    fn hostile(with: Value) -> Self {
        Self::on(Guest::Hostile("hostile"), with)
    }

    /// The probe guest in `mode` (read-write, secrets `TOKEN` and `EMPTY`, 32 MiB, 1 min).
    fn probe(mode: &str) -> Self {
        Self::on(Guest::Probe, json!({ "mode": mode }))
    }
}

// ---- the driver ------------------------------------------------------------------------

/// A run directory `<dir>/run/workspace` beside a file `<dir>/outside` that no step may
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

/// A runtime with the row's settings and the row's (edited) manifest.
struct Harness {
    runtime: Runtime,
    guest: Guest,
    manifest: Manifest,
    /// The guest's manifest without the row's edits.
    plain: Manifest,
}

fn parse(text: &str) -> Manifest {
    Manifest::from_toml(text).unwrap_or_else(|d| panic!("invalid manifest: {d:?}\n{text}"))
}

impl Harness {
    fn new(guest: Guest, edits: &[(&str, &str)], config: fn(&mut RuntimeConfig)) -> Self {
        let plain = guest.manifest_text();
        let mut text = plain.clone();
        for (from, to) in edits {
            assert!(
                text.contains(from),
                "the manifest edit `{from}` matches nothing"
            );
            text = text.replacen(from, to, 1);
        }
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-cache");
        let mut settings = RuntimeConfig::with_cache_dir(cache);
        config(&mut settings);
        Self {
            runtime: Runtime::new(settings).expect("the runtime starts"),
            guest,
            manifest: parse(&text),
            plain: parse(&plain),
        }
    }

    /// The row's guest with the row's manifest.
    fn load(&self) -> LoadedExtension {
        self.runtime
            .load(&self.manifest, &self.guest.component())
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// `category/name@version` of the row's manifest.
    fn id(&self) -> String {
        let identity = &self.manifest.extension;
        format!(
            "{}/{}@{}",
            identity.category, identity.name, identity.version
        )
    }

    fn component_path(&self, component: Component, scene: &Scene) -> PathBuf {
        match component {
            Component::Guest => self.guest.component(),
            Component::Fixture(name) => built(name),
            Component::File(name, bytes) => {
                let path = scene.dir.path().join(name);
                std::fs::write(&path, bytes()).expect("write");
                path
            }
            Component::Missing => scene.dir.path().join("missing.wasm"),
        }
    }

    /// A step of stage `hostile` in the scene's workspace, its log collected in the sink.
    fn request(&self, scene: &Scene, with: Value) -> (StepRequest, Arc<CollectingSink>) {
        let sink = Arc::new(CollectingSink::new());
        let mut request = StepRequest::new("hostile");
        request.with = with.into();
        request.workspace = Some(scene.workspace());
        request.log_sink = sink.clone();
        (request, sink)
    }

    /// The runtime is still healthy: an ordinary step of the guest succeeds on it.
    fn next_step_succeeds(&self, extension: &LoadedExtension) {
        let scene = Scene::new();
        let (with, output) = self.guest.healthy_step();
        let (request, _) = self.request(&scene, with);
        let outcome = self
            .runtime
            .execute(extension, request)
            .unwrap_or_else(|err| panic!("the next step fails: {err}"));
        assert_eq!(outcome.exit_code, 0, "{outcome:?}");
        if let Some((key, value)) = output {
            assert_eq!(outcome.outputs[key], value, "{outcome:?}");
        }
    }

    /// The guest with its unedited manifest.
    fn load_plain(&self) -> LoadedExtension {
        self.runtime
            .load(&self.plain, &self.guest.component())
            .unwrap_or_else(|err| panic!("{err}"))
    }
}

/// A step the driver ran, for a row's own checks.
struct Ran<'a> {
    harness: &'a Harness,
    extension: Option<&'a LoadedExtension>,
    scene: &'a Scene,
    result: Result<StepOutcome, StepError>,
    logs: Vec<LogEntry>,
}

impl Ran<'_> {
    fn error(&self) -> &StepError {
        self.result.as_ref().expect_err("the row expects a failure")
    }

    /// Runs the row's extension again in the same workspace.
    fn again(&self, with: Value) -> Result<StepOutcome, StepError> {
        let (request, _) = self.harness.request(self.scene, with);
        let extension = self.extension.expect("a loaded extension");
        self.harness.runtime.execute(extension, request)
    }
}

/// Checks that the error names stage, extension and version; the error itself.
fn named_error<'a>(harness: &Harness, result: &'a Result<StepOutcome, StepError>) -> &'a StepError {
    let err = match result {
        Ok(outcome) => panic!("expected a step error, got {outcome:?}"),
        Err(err) => err,
    };
    let text = err.to_string();
    let prefix = format!("stage `hostile`: extension `{}`", harness.id());
    assert!(
        text.starts_with(&prefix),
        "the error names stage, extension and version ({prefix}): {text}"
    );
    err
}

fn drive(case: Case) {
    let harness = Harness::new(case.guest, case.edits, case.config);
    let scene = Scene::new();
    (case.scene)(&scene);
    let path = harness.component_path(case.component, &scene);

    if let Expect::LoadFails { kind, is, says } = &case.expect {
        let err = harness
            .runtime
            .load(&harness.manifest, &path)
            .expect_err("the component must not load");
        assert!(is(&err.kind), "expected a {kind} load error: {err}");
        let text = err.to_string();
        let prefix = format!("cannot load extension `{}`", harness.id());
        assert!(text.starts_with(&prefix), "{prefix}: {text}");
        for part in *says {
            assert!(text.contains(part), "`{part}` is not in: {text}");
        }
        harness.next_step_succeeds(&harness.load_plain());
        return;
    }

    let extension = (!case.load_in_step).then(|| {
        harness
            .runtime
            .load(&harness.manifest, &path)
            .unwrap_or_else(|err| panic!("{err}"))
    });
    let (mut request, sink) = harness.request(&scene, case.with);
    if !case.workspace {
        request.workspace = None;
    }
    request.env = case.env.into_iter().collect();
    request.secrets = Arc::new(case.secrets.into_iter().collect::<MapSecrets>());
    request.timeout = case.timeout;
    let cancellation = Cancellation::new();
    request.cancellation = cancellation.clone();
    match case.cancel {
        Cancel::Never => {}
        Cancel::Before => cancellation.cancel(),
        Cancel::OnLog(line) => {
            let collect = sink.clone();
            request.log_sink = Arc::new(move |entry: LogEntry| {
                if entry.message == line {
                    cancellation.cancel();
                }
                collect.emit(entry);
            });
        }
    }

    let start = Instant::now();
    let result = match &extension {
        Some(extension) => harness.runtime.execute(extension, request),
        None => harness
            .runtime
            .load_and_execute(&harness.manifest, &path, request),
    };
    let elapsed = start.elapsed();
    let logs = sink.take();

    let reported = match &case.expect {
        Expect::Fails {
            kind,
            exactly,
            says,
        } => {
            let err = named_error(&harness, &result);
            assert_eq!(err.failure.code(), *kind, "{err}");
            if let Some(failure) = exactly {
                assert_eq!(&*err.failure, failure, "{err}");
            }
            let text = err.to_string();
            for part in *says {
                assert!(text.contains(part), "`{part}` is not in: {text}");
            }
            text
        }
        Expect::Succeeds(expected) => {
            let outcome = match &result {
                Ok(outcome) => outcome,
                Err(err) => panic!("expected the step to succeed: {err}"),
            };
            assert_eq!(outcome.exit_code, 0, "{outcome:?}");
            for (key, is) in *expected {
                let value = outcome
                    .outputs
                    .get(*key)
                    .unwrap_or_else(|| panic!("no output `{key}`: {:?}", outcome.outputs));
                let matches = match is {
                    Is::Eq(want) => value == want,
                    Is::StartsWith(want) => value.starts_with(want),
                };
                assert!(matches, "output `{key}` = {value:?}, expected {is:?}");
            }
            // Raw text, not `Debug` (which escapes quotes, backslashes and non-ASCII).
            outcome
                .outputs
                .iter()
                .flat_map(|(k, v)| [k.as_str(), v.as_str()])
                .collect::<Vec<_>>()
                .join("\n")
        }
        Expect::LoadFails { .. } => unreachable!("handled above"),
    };
    if let Some(range) = &case.took {
        assert!(
            range.contains(&elapsed),
            "the step took {elapsed:?}, expected {range:?}"
        );
    }
    for (stream, part) in case.logs {
        assert!(
            logs.iter()
                .any(|e| e.stream == *stream && e.message.contains(part)),
            "no {stream:?} entry contains `{part}`: {logs:?}"
        );
    }
    for (file, content) in case.files {
        let path = scene.workspace().join(file);
        match content {
            Some(content) => assert_eq!(
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}")),
                *content
            ),
            None => assert!(
                std::fs::symlink_metadata(&path).is_err(),
                "`{file}` exists in the workspace"
            ),
        }
    }
    let logged = logs.iter().flat_map(|e| {
        std::iter::once(e.message.as_str())
            .chain(e.fields.keys().map(String::as_str))
            .chain(e.fields.values().map(String::as_str))
    });
    let everything = std::iter::once(reported.as_str())
        .chain(logged)
        .collect::<Vec<_>>()
        .join("\n");
    for text in &case.never {
        assert!(
            !everything.contains(text.as_str()),
            "`{text}` leaked into the outputs, the error or the log: {everything}"
        );
    }
    assert_eq!(
        scene.outside(),
        "untouched",
        "a file outside the workspace changed"
    );
    (case.check)(&Ran {
        harness: &harness,
        extension: extension.as_ref(),
        scene: &scene,
        result,
        logs,
    });
    let next = extension.unwrap_or_else(|| harness.load_plain());
    harness.next_step_succeeds(&next);
}

/// One `#[test]` per row, each run by [`drive`].
macro_rules! table {
    ($($(#[doc = $doc:literal])* $name:ident: $case:expr;)*) => {
        $(
            $(#[doc = $doc])*
            #[test]
            fn $name() {
                drive($case);
            }
        )*
    };
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A secret and the parts of it that must never be seen.
const LEAK_PROBE: &str = "Zq7-leak-probe-secret-value";
const LEAK_PARTS: [&str; 4] = [LEAK_PROBE, "Zq7-leak", "probe-secret", "secret-value"];

/// A secret whose raw, base64, URL and JSON forms all differ.
const ENCODED: &str = "p@ss w/rd+\"ü\"\\ä";

fn forms() -> Vec<String> {
    let forms = encoded_forms(ENCODED);
    assert!(forms.len() >= 8, "{forms:?}");
    forms
}

/// The probe's `leak` mode: the secret and its encodings as env values, `fail` or not.
fn leak_case(fail: bool) -> Case {
    let all = forms();
    Case {
        with: json!({"mode": "leak", "fail": fail}),
        workspace: false,
        edits: NO_FILESYSTEM,
        secrets: vec![("TOKEN", ENCODED.to_owned())],
        env: all
            .iter()
            .enumerate()
            .map(|(i, form)| (format!("PROBE_FORM_{i:02}"), form.clone()))
            .collect(),
        never: all,
        logs: &[
            (LogStream::Log, "log: *** | ***"),
            (LogStream::Stdout, "stdout: *** | ***"),
            (LogStream::Stderr, "stderr: *** | ***"),
            (LogStream::Stdout, "partial line without newline: ***"),
        ],
        expect: if fail {
            fails("failed", &["failed with *** | ***"])
        } else {
            Expect::Succeeds(&[
                ("plain", Is::Eq("visible")),
                ("leak", Is::StartsWith("*** | ***")),
            ])
        },
        check: |ran| {
            let stdout = ran
                .logs
                .iter()
                .find(|e| e.stream == LogStream::Stdout)
                .expect("a stdout entry");
            assert!(
                stdout.message.starts_with("stdout: *** | ***"),
                "{stdout:?}"
            );
            assert!(
                ran.logs
                    .iter()
                    .any(|e| e.message == "partial line without newline: ***"),
                "the last partial line is delivered whole: {:?}",
                ran.logs
            );
            let level = |stream| {
                ran.logs
                    .iter()
                    .find(|e| e.stream == stream)
                    .map(|e| e.level)
            };
            assert_eq!(level(LogStream::Stdout), Some(LogLevel::Info));
            assert_eq!(level(LogStream::Stderr), Some(LogLevel::Warn));
            let sequences: Vec<u64> = ran.logs.iter().map(|e| e.sequence).collect();
            assert_eq!(sequences, (0..ran.logs.len() as u64).collect::<Vec<_>>());
            assert!(
                ran.logs
                    .iter()
                    .all(|e| e.stage.as_ref().map(|s| s.as_str()) == Some("hostile")),
                "every entry names the stage"
            );
        },
        ..Case::probe("leak")
    }
}

/// The probe's manifest granting no filesystem, or only reading it.
const NO_FILESYSTEM: &[(&str, &str)] = &[("filesystem = \"read-write\"", "filesystem = \"none\"")];
const READ_ONLY: &[(&str, &str)] = &[("filesystem = \"read-write\"", "filesystem = \"read\"")];

/// The hostile manifest with `limits` lines added and a timeout long enough for a busy
/// machine (the limits, not the deadline, must stop these guests).
const DISK_16MI: &[(&str, &str)] = &[("timeout = \"1s\"", "timeout = \"60s\"\ndisk = \"16Mi\"")];
const FILES_1000: &[(&str, &str)] = &[("timeout = \"1s\"", "timeout = \"60s\"\nfiles = 1000")];

/// A later step must not find what the guest left: the file must be at most 16 MiB.
fn at_most_16mi(ran: &Ran<'_>) {
    let size = std::fs::metadata(ran.scene.workspace().join("big"))
        .expect("file")
        .len();
    assert!(size <= 16 << 20, "{size} bytes written");
}

/// The workspace holds no link `a`, and a later local `run:` stage writing `a` writes inside.
fn later_stage_writes_inside(ran: &Ran<'_>) {
    assert!(std::fs::symlink_metadata(ran.scene.workspace().join("a")).is_err());
    assert_eq!(
        later_local_stage_writes_a(&ran.scene.workspace()).exit_code,
        0
    );
    assert_eq!(ran.scene.outside(), "untouched");
    assert_eq!(
        std::fs::read_to_string(ran.scene.workspace().join("a")).expect("a"),
        "pwned\n"
    );
}

/// The guest's escaping link was refused: reported in the log, never created.
fn planted_link_refused(ran: &Ran<'_>) {
    assert!(
        ran.logs
            .iter()
            .any(|e| e.message.contains("`a` -> `") && e.message.contains("refused")),
        "the attempt is in the step's log: {:?}",
        ran.logs
    );
    later_stage_writes_inside(ran);
}

table! {
    // --- deadlines, sleeping in the host, cancellation ---

    /// Deadline ± one tick (10 ms), plus generous slack for a loaded CI machine: the bound
    /// only proves the guest was stopped, not left spinning.
    an_infinite_loop_stops_at_its_deadline: Case {
        timeout: Some(ms(300)),
        took: Some(ms(300)..ms(1810)),
        expect: fails_with(
            StepFailure::Timeout { timeout: ms(300) },
            &["ran past its deadline of 300ms and was stopped"],
        ),
        ..Case::hostile(json!({"mode": "loop"}))
    };
    /// One hour in `wasi:io/poll`: without a bounded wait the test would hang for that hour.
    a_guest_asleep_in_the_host_stops_at_its_deadline: Case {
        timeout: Some(ms(300)),
        took: Some(ms(300)..Duration::from_secs(30)),
        logs: &[(LogStream::Log, "sleeping")],
        expect: fails_with(StepFailure::Timeout { timeout: ms(300) }, &["300ms"]),
        ..Case::hostile(json!({"mode": "sleep", "count": 3600}))
    };
    the_manifest_timeout_caps_a_longer_stage_timeout: Case {
        timeout: Some(Duration::from_secs(3600)),
        check: |ran| {
            let extension = ran.extension.expect("loaded");
            assert_eq!(extension.timeout(), Duration::from_secs(1));
        },
        took: Some(Duration::from_secs(1)..Duration::from_secs(30)),
        expect: fails_with(
            StepFailure::Timeout { timeout: Duration::from_secs(1) },
            &["deadline of 1s"],
        ),
        ..Case::hostile(json!({"mode": "loop"}))
    };
    a_guest_asleep_in_the_host_is_interrupted_after_the_cancel_grace_period: Case {
        config: |c| c.cancel_grace = ms(100),
        cancel: Cancel::OnLog("sleeping"),
        took: Some(ms(100)..Duration::from_secs(30)),
        expect: fails_with(
            StepFailure::Interrupted { grace: ms(100) },
            &["interrupted after a grace period of 100ms"],
        ),
        ..Case::hostile(json!({"mode": "sleep", "count": 3600}))
    };
    a_step_cancelled_before_it_starts_gets_the_whole_grace_period: Case {
        config: |c| c.cancel_grace = ms(100),
        cancel: Cancel::Before,
        took: Some(ms(100)..Duration::from_secs(30)),
        expect: fails_with(StepFailure::Interrupted { grace: ms(100) }, &["100ms"]),
        ..Case::hostile(json!({"mode": "sleep", "count": 3600}))
    };
    a_looping_guest_that_ignores_cancellation_is_interrupted_after_the_grace_period: Case {
        config: |c| c.cancel_grace = ms(50),
        cancel: Cancel::OnLog("looping"),
        took: Some(ms(50)..Duration::from_secs(30)),
        expect: fails_with(StepFailure::Interrupted { grace: ms(50) }, &["50ms"]),
        ..Case::probe("loop")
    };
    cancellation_reaches_a_guest_that_polls_for_it: Case {
        cancel: Cancel::OnLog("spinning"),
        expect: fails("cancelled", &["stopped after cancellation: stopped after "]),
        ..Case::probe("spin")
    };

    // --- memory, stack, panics, exits, config, outputs ---

    a_memory_bomb_hits_the_memory_limit: Case {
        expect: fails_with(
            StepFailure::MemoryLimit { limit: 32 << 20 },
            &["exceeded its memory limit of 33554432 bytes"],
        ),
        check: |ran| assert_eq!(ran.extension.expect("loaded").memory_limit(), 32 << 20),
        ..Case::hostile(json!({"mode": "memory-bomb"}))
    };
    /// The probe asks with `try_reserve` and aborts when refused, as an ordinary program.
    a_guest_that_aborts_when_memory_is_refused_hits_the_memory_limit: Case {
        expect: fails_with(StepFailure::MemoryLimit { limit: 32 << 20 }, &["33554432 bytes"]),
        ..Case::probe("memory")
    };
    deep_recursion_traps_with_a_stack_overflow: Case {
        expect: fails("trap", &["trapped: ", "call stack exhausted"]),
        ..Case::hostile(json!({"mode": "recurse"}))
    };
    a_panic_keeps_its_message: Case {
        expect: fails_with(
            StepFailure::Panic { message: "hostile guest panicked on purpose".to_owned() },
            &["panicked: hostile guest panicked on purpose"],
        ),
        logs: &[(LogStream::Log, "hostile guest panicked on purpose")],
        ..Case::hostile(json!({"mode": "panic"}))
    };
    /// Rust's std on wasm32-wasip2 turns `exit(n)` into WASI 0.2 `exit(err)` for any n != 0:
    /// the code is lost in the guest, and the host must not invent one.
    exit_3_is_a_failure_without_a_code: Case {
        expect: fails_with(StepFailure::Exit { status: None }, &["with a failure status"]),
        ..Case::hostile(json!({"mode": "process-exit", "count": 3}))
    };
    exit_1_is_a_failure_without_a_code: Case {
        expect: fails_with(StepFailure::Exit { status: None }, &["with a failure status"]),
        ..Case::hostile(json!({"mode": "process-exit", "count": 1}))
    };
    exit_42_is_a_failure_without_a_code: Case {
        expect: fails_with(StepFailure::Exit { status: None }, &["with a failure status"]),
        ..Case::hostile(json!({"mode": "process-exit", "count": 42}))
    };
    exit_0_instead_of_returning_fails_with_status_0: Case {
        expect: fails_with(StepFailure::Exit { status: Some(0) }, &["`wasi:cli/exit`"]),
        ..Case::hostile(json!({"mode": "process-exit", "count": 0}))
    };
    an_unknown_mode_is_invalid_config: Case {
        expect: fails_with(
            StepFailure::InvalidConfig("unknown mode `unheard-of`".to_owned()),
            &["stage `hostile`: extension `test/hostile@0.1.0` rejected its config: \
               unknown mode `unheard-of`"],
        ),
        ..Case::hostile(json!({"mode": "unheard-of"}))
    };
    a_config_without_mode_is_invalid_config: Case {
        expect: fails("invalid-config", &["rejected its config: ", "mode"]),
        ..Case::hostile(json!({"count": 1}))
    };
    an_artifact_that_does_not_exist_is_an_invalid_output: Case {
        expect: fails("invalid-output", &["returned an invalid step output: ", "missing.txt"]),
        ..Case::probe("escape-artifact")
    };

    // --- the filesystem boundary ---

    dot_dot_escapes_are_refused: Case {
        expect: Expect::Succeeds(&[(
            "refused",
            Is::StartsWith("/workspace/../../../../etc/passwd: "),
        )]),
        ..Case::hostile(json!({"mode": "escape-dotdot"}))
    };
    absolute_paths_outside_the_workspace_are_refused: Case {
        expect: Expect::Succeeds(&[("refused", Is::StartsWith("/etc/passwd: "))]),
        ..Case::hostile(json!({"mode": "escape-absolute"}))
    };
    a_file_symlink_leading_outside_the_workspace_is_refused: Case {
        scene: links_to_outside,
        expect: Expect::Succeeds(&[("refused", Is::StartsWith("/workspace/file-link: "))]),
        ..Case::hostile(json!({"mode": "escape-symlink", "path": "file-link"}))
    };
    a_directory_symlink_leading_outside_the_workspace_is_refused: Case {
        scene: links_to_outside,
        expect: Expect::Succeeds(&[("refused", Is::StartsWith("/workspace/dir-link/outside: "))]),
        ..Case::hostile(json!({"mode": "escape-symlink", "path": "dir-link/outside"}))
    };
    a_read_write_grant_lets_the_guest_write: Case {
        expect: Expect::Succeeds(&[("write", Is::Eq("ok"))]),
        files: &[("probe.txt", Some("probe"))],
        ..Case::probe("write")
    };
    a_read_grant_refuses_writes: Case {
        edits: READ_ONLY,
        expect: Expect::Succeeds(&[("write", Is::StartsWith("refused"))]),
        files: &[("probe.txt", None)],
        ..Case::probe("write")
    };
    a_read_only_workspace_refuses_std_fs_writes: Case {
        expect: Expect::Succeeds(&[("refused", Is::StartsWith("Operation not permitted"))]),
        files: &[("written.txt", None)],
        ..Case::on(Guest::Hostile("hostile-readonly"), json!({"mode": "write"}))
    };
    /// The control of the row above: the same guest writes when the manifest grants it.
    a_read_write_workspace_lets_the_same_guest_write: Case {
        expect: fails_with(StepFailure::Failed("wrote to a read-only workspace".to_owned()), &[]),
        files: &[("written.txt", Some("data"))],
        ..Case::hostile(json!({"mode": "write"}))
    };
    no_filesystem_grant_refuses_writes_to_a_given_workspace: Case {
        edits: NO_FILESYSTEM,
        expect: Expect::Succeeds(&[("write", Is::StartsWith("refused"))]),
        files: &[("probe.txt", None)],
        ..Case::probe("write")
    };
    no_filesystem_grant_reaches_no_root: Case {
        edits: NO_FILESYSTEM,
        workspace: false,
        expect: Expect::Succeeds(&[("root", Is::StartsWith("error"))]),
        ..Case::probe("env")
    };
    a_granted_workspace_must_be_given: Case {
        edits: READ_ONLY,
        workspace: false,
        expect: fails("setup", &["could not be started: ", "names no workspace"]),
        ..Case::probe("noop")
    };
    /// The host sets `initial-cwd` to `/workspace`, but Rust's std (wasi-libc) starts at `/`
    /// whatever the host says, as the WIT warns; so only the workspace path is checked.
    the_environment_is_exactly_what_is_granted: Case {
        edits: READ_ONLY,
        env: vec![("CI".into(), "true".into()), ("GREETING".into(), "hi".into())],
        expect: Expect::Succeeds(&[
            ("env", Is::Eq("CI=true,GREETING=hi")),
            ("args", Is::Eq("0")),
            ("workspace", Is::Eq("/workspace")),
            ("root", Is::StartsWith("error")),
        ]),
        ..Case::probe("env")
    };
    the_network_is_denied: Case {
        edits: NO_FILESYSTEM,
        workspace: false,
        expect: Expect::Succeeds(&[("net", Is::StartsWith("refused"))]),
        ..Case::probe("net")
    };

    // --- secrets ---

    an_undeclared_secret_is_denied_even_when_the_store_has_it: Case {
        secrets: vec![("UNDECLARED", "would-leak".into()), ("DECLARED", "fine".into())],
        expect: Expect::Succeeds(&[("secret", Is::Eq("Denied"))]),
        never: vec!["would-leak".into()],
        ..Case::hostile(json!({"mode": "secret", "name": "UNDECLARED"}))
    };
    an_invalid_secret_name_is_refused: Case {
        expect: Expect::Succeeds(&[("secret", Is::Eq("InvalidName"))]),
        ..Case::hostile(json!({"mode": "secret", "name": "bad name"}))
    };
    a_declared_secret_without_a_value_is_not_found: Case {
        expect: Expect::Succeeds(&[("secret", Is::Eq("NotFound"))]),
        ..Case::hostile(json!({"mode": "secret", "name": "DECLARED"}))
    };
    secrets_are_served_only_by_declared_name: Case {
        edits: NO_FILESYSTEM,
        workspace: false,
        secrets: vec![("TOKEN", "abc".into()), ("OTHER", "must not leak".into())],
        expect: Expect::Succeeds(&[
            ("declared", Is::Eq("granted 3 bytes")),
            ("undeclared", Is::Eq("denied")),
            ("unset", Is::Eq("not-found")),
            ("invalid", Is::Eq("invalid-name")),
        ]),
        ..Case::probe("secrets")
    };
    a_secret_is_redacted_from_logs_stdout_and_errors: Case {
        secrets: vec![("DECLARED", "s3cr3t-value".into())],
        expect: fails_with(
            StepFailure::Failed("failing with ***".to_owned()),
            &["failed: failing with ***"],
        ),
        logs: &[(LogStream::Log, "the secret is ***"), (LogStream::Stdout, "stdout says ***")],
        never: vec!["s3cr3t-value".into()],
        ..Case::hostile(json!({"mode": "echo-secret", "name": "DECLARED"}))
    };
    /// Artifact paths stay raw in the outcome (the workspace file has that name); they are
    /// redacted where runs record them (`summary::collect_artifacts`, `redact_run`).
    a_secret_never_leaks_through_a_succeeding_step_in_any_form: Case {
        secrets: vec![("DECLARED", LEAK_PROBE.into())],
        expect: Expect::Succeeds(&[("***", Is::Eq("name")), ("from-file", Is::Eq("***"))]),
        never: LEAK_PARTS.iter().map(|p| p.to_string()).collect(),
        ..Case::hostile(json!({"mode": "leak-secret", "name": "DECLARED", "count": 0}))
    };
    a_secret_never_leaks_through_a_failing_step_in_any_form: Case {
        secrets: vec![("DECLARED", LEAK_PROBE.into())],
        expect: fails_with(StepFailure::Failed("failing with ***".to_owned()), &["***"]),
        never: LEAK_PARTS.iter().map(|p| p.to_string()).collect(),
        ..Case::hostile(json!({"mode": "leak-secret", "name": "DECLARED", "count": 1}))
    };
    a_secret_and_its_encodings_never_reach_the_log_of_a_succeeding_step: leak_case(false);
    a_secret_and_its_encodings_never_reach_the_log_or_error_of_a_failing_step: leak_case(true);

    // --- the log ---

    /// A low cap keeps the flood (twice the cap) well inside the fixture's 1 s deadline even
    /// in a debug build on a loaded machine; the mechanism is the same at any cap.
    a_log_flood_is_capped_and_the_step_finishes: Case {
        config: |c| c.log_limits.max_entries_per_step = 500,
        expect: Expect::Succeeds(&[("logged", Is::Eq("1000"))]),
        check: |ran| {
            let kept = ran.logs.len();
            assert!(kept <= 501, "{kept} entries kept, limit 500");
            let last = ran.logs.last().expect("entries");
            assert_eq!(last.stream, LogStream::System, "{last:?}");
        },
        ..Case::hostile(json!({"mode": "log-flood", "count": 1000}))
    };
    /// 10 calls of 400 fields, each key 300+ bytes and each value 8000 bytes: about 33 MB of
    /// fields, which all reached the sink before fields were bounded.
    log_fields_are_bounded_per_entry_and_per_step: Case {
        config: |c| c.log_limits.max_bytes_per_step = 200 * 1024,
        expect: Expect::Succeeds(&[("logged", Is::Eq("10"))]),
        logs: &[(LogStream::System, "were dropped")],
        check: |ran| {
            let limits = ran.harness.runtime.config().log_limits;
            let mut total = 0;
            for entry in &ran.logs {
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
                    entry.fields.keys().all(|k| k.len() <= limits.max_field_key_bytes + 40),
                    "{:?}",
                    entry.fields.keys().collect::<Vec<_>>()
                );
            }
            assert!(total <= 200 * 1024 + 64 * 1024, "the step wrote {total} bytes of log");
            let fields = &ran.logs[0].fields;
            assert!(
                fields[TRUNCATED_FIELD].contains("fields dropped"),
                "truncation is marked: {fields:?}"
            );
            let last = ran.logs.last().expect("entries");
            assert_eq!(last.stream, LogStream::System, "{last:?}");
        },
        ..Case::hostile(json!({"mode": "log-fields", "count": 10}))
    };

    // --- components and manifests that must not load ---

    garbage_bytes_are_not_a_component: Case {
        guest: Guest::Hostile("garbage"),
        component: Component::File("garbage.wasm", || {
            b"#!/bin/sh\nrm -rf / # not wasm at all\n".to_vec()
        }),
        expect: Expect::LoadFails {
            kind: "not-wasm",
            is: |k| matches!(k, LoadErrorKind::NotWasm(_)),
            says: &["garbage.wasm", "not a WebAssembly file"],
        },
        ..Case::hostile(Value::Null)
    };
    an_empty_file_is_not_a_component: Case {
        guest: Guest::Hostile("garbage"),
        component: Component::File("empty.wasm", Vec::new),
        expect: Expect::LoadFails {
            kind: "not-wasm",
            is: |k| matches!(k, LoadErrorKind::NotWasm(_)),
            says: &["empty.wasm"],
        },
        ..Case::hostile(Value::Null)
    };
    a_truncated_component_is_malformed_not_a_crash: Case {
        guest: Guest::Hostile("garbage"),
        component: Component::File("truncated.wasm", || {
            let bytes = std::fs::read(built("hostile/guest")).expect("component");
            bytes[..bytes.len() / 2].to_vec()
        }),
        expect: Expect::LoadFails {
            kind: "compile",
            is: |k| matches!(k, LoadErrorKind::Compile(_)),
            says: &["truncated.wasm", "malformed component"],
        },
        ..Case::hostile(Value::Null)
    };
    a_broken_core_module_cannot_be_adapted: Case {
        guest: Guest::Hostile("garbage"),
        component: Component::File("core.wasm", || b"\0asm\x01\0\0\0\xff".to_vec()),
        expect: Expect::LoadFails {
            kind: "adapt",
            is: |k| matches!(k, LoadErrorKind::Adapt(_)),
            says: &["core.wasm", "cannot adapt"],
        },
        ..Case::hostile(Value::Null)
    };
    an_empty_core_module_misses_the_export: Case {
        guest: Guest::Hostile("garbage"),
        component: Component::File("empty-module.wasm", || b"\0asm\x01\0\0\0".to_vec()),
        expect: Expect::LoadFails {
            kind: "missing-export",
            is: |k| matches!(k, LoadErrorKind::MissingExport { .. }),
            says: &["empty-module.wasm", "labhit:extension/pipeline-step"],
        },
        ..Case::hostile(Value::Null)
    };
    a_missing_component_file_is_a_read_error: Case {
        component: Component::Missing,
        expect: Expect::LoadFails {
            kind: "read",
            is: |k| matches!(k, LoadErrorKind::Read(_)),
            says: &["missing.wasm", "cannot read the file"],
        },
        ..Case::hostile(Value::Null)
    };
    a_component_that_is_not_wasm_fails_its_stage_when_loaded_in_the_step: Case {
        guest: Guest::Hostile("garbage"),
        component: Component::File("script.wasm", || b"#!/bin/sh\n".to_vec()),
        load_in_step: true,
        expect: fails(
            "load",
            &["could not be loaded: not a WebAssembly file", "script.wasm"],
        ),
        ..Case::hostile(json!({"mode": "noop"}))
    };
    a_wrong_contract_version_is_refused_before_running: Case {
        guest: Guest::Hostile("wrong-contract"),
        component: Component::Fixture("hostile/wrong-contract"),
        expect: Expect::LoadFails {
            kind: "incompatible-contract",
            is: |k| match k {
                LoadErrorKind::IncompatibleContract { targets, .. } => targets == "9.0.0",
                _ => false,
            },
            says: &["9.0.0", ">=0.1, <0.3", "labhit:extension@0.2.0", "rebuild"],
        },
        ..Case::hostile(Value::Null)
    };
    a_component_without_the_export_is_refused: Case {
        guest: Guest::Hostile("missing-export"),
        component: Component::Fixture("hostile/missing-export"),
        expect: Expect::LoadFails {
            kind: "missing-export",
            is: |k| matches!(k, LoadErrorKind::MissingExport { .. }),
            says: &["labhit:extension/pipeline-step"],
        },
        ..Case::hostile(Value::Null)
    };
    a_manifest_contract_requirement_the_component_breaks_is_refused: Case {
        edits: &[("contract = \"^0.2\"", "contract = \"^0.3\"")],
        expect: Expect::LoadFails {
            kind: "manifest-contract",
            is: |k| matches!(k, LoadErrorKind::ManifestContract { .. }),
            says: &["labhit:extension@0.2.0"],
        },
        ..Case::hostile(Value::Null)
    };
    // A real 0.1 component (checked in under compat/) beside a manifest that says `^0.2`,
    // and a 0.2 component beside one that says `^0.1`: this host runs both contracts, but
    // the manifest must describe the component.
    a_0_1_component_beside_a_manifest_requiring_0_2_is_refused: Case {
        component: Component::File("checksum-0.1.wasm", || {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../compat/0.1.0/components/util/checksum/checksum.wasm"
            );
            std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
        }),
        expect: Expect::LoadFails {
            kind: "contract-mismatch",
            is: |k| match k {
                LoadErrorKind::ContractMismatch {
                    requirement,
                    targets,
                    ..
                } => requirement.to_string() == "^0.2" && targets.to_string() == "0.1.0",
                _ => false,
            },
            says: &[
                "requires `contract = \"^0.2\"`",
                "targets contract 0.1.0",
                "labhit:extension/pipeline-step@0.1.0",
                "set `contract = \"^0.1\"`",
                "rebuild the component",
            ],
        },
        ..Case::hostile(Value::Null)
    };
    a_0_2_component_beside_a_manifest_requiring_0_1_is_refused: Case {
        edits: &[("contract = \"^0.2\"", "contract = \"^0.1\"")],
        expect: Expect::LoadFails {
            kind: "contract-mismatch",
            is: |k| matches!(k, LoadErrorKind::ContractMismatch { .. }),
            says: &[
                "requires `contract = \"^0.1\"`",
                "targets contract 0.2.0",
                "set `contract = \"^0.2\"`",
            ],
        },
        ..Case::hostile(Value::Null)
    };
    a_manifest_that_admits_only_contract_0_1_may_not_ask_for_network: Case {
        edits: &[
            ("contract = \"^0.2\"", "contract = \"^0.1\""),
            ("secrets = [\"DECLARED\"]", "secrets = [\"DECLARED\"]\nnetwork = [\"example.com\"]"),
        ],
        expect: Expect::LoadFails {
            kind: "capability-needs-contract",
            is: |k| matches!(
                k,
                LoadErrorKind::CapabilityNeedsContract { capability: "network", .. }
            ),
            says: &["capabilities.network", "contract 0.2 capability", "^0.1", "^0.2"],
        },
        ..Case::hostile(Value::Null)
    };
    a_manifest_network_request_with_a_0_2_contract_loads: Case {
        edits: &[("secrets = [\"DECLARED\"]", "secrets = [\"DECLARED\"]\nnetwork = [\"example.com\"]")],
        expect: Expect::Succeeds(&[]),
        ..Case::hostile(json!({"mode": "noop"}))
    };
    a_memory_limit_above_the_runtime_maximum_is_refused: Case {
        edits: &[("memory = \"32Mi\"", "memory = \"2Gi\"")],
        expect: Expect::LoadFails {
            kind: "memory-limit-too-large",
            is: |k| matches!(k, LoadErrorKind::MemoryLimitTooLarge { .. }),
            says: &[],
        },
        ..Case::hostile(Value::Null)
    };

    // --- planted links, disk and file limits (issue 9, items 2 and 9) ---

    a_planted_link_up_and_out_is_refused_reported_and_never_followed: Case {
        expect: fails_with(
            StepFailure::EscapeAttempt { path: "a".into(), target: "../../outside".into() },
            &["leads outside the workspace"],
        ),
        check: planted_link_refused,
        ..Case::hostile(json!({"mode": "plant-link", "path": "../../outside", "name": "a"}))
    };
    a_planted_link_out_through_a_subdirectory_is_refused: Case {
        expect: fails_with(
            StepFailure::EscapeAttempt { path: "a".into(), target: "sub/../../../outside".into() },
            &["leads outside the workspace"],
        ),
        check: planted_link_refused,
        ..Case::hostile(json!({"mode": "plant-link", "path": "sub/../../../outside", "name": "a"}))
    };
    a_planted_absolute_link_is_refused: Case {
        expect: fails_with(
            StepFailure::EscapeAttempt { path: "a".into(), target: "/etc/passwd".into() },
            &["leads outside the workspace"],
        ),
        check: planted_link_refused,
        ..Case::hostile(json!({"mode": "plant-link", "path": "/etc/passwd", "name": "a"}))
    };
    a_link_that_stays_inside_is_allowed: Case {
        expect: Expect::Succeeds(&[("planted", Is::Eq("/workspace/a"))]),
        ..Case::hostile(json!({"mode": "plant-link", "path": "sub/../inside.txt", "name": "a"}))
    };
    a_link_renamed_to_where_it_escapes_is_removed_and_reported: Case {
        expect: fails(
            "workspace-escape",
            &["symbolic link `a` -> `../../outside` (resolves outside the workspace)"],
        ),
        logs: &[(LogStream::System, "`a` -> `../../outside`")],
        check: |ran| {
            let StepFailure::Trespass { found } = &*ran.error().failure else {
                panic!("expected a trespass: {}", ran.error());
            };
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].path, "a");
            later_stage_writes_inside(ran);
        },
        ..Case::hostile(json!({"mode": "plant-link-rename", "path": "../../outside", "name": "a"}))
    };
    /// 2 GiB asked for, through streams.
    a_guest_cannot_fill_the_disk_past_limits_disk: Case {
        edits: DISK_16MI,
        expect: fails_with(
            StepFailure::DiskLimit { limit: 16 << 20 },
            &["disk limit of 16Mi", "`limits.disk`"],
        ),
        check: at_most_16mi,
        ..Case::hostile(json!({"mode": "disk-fill", "count": 2048, "name": "big"}))
    };
    /// A sparse file of 1 TiB through `set-size`.
    a_guest_cannot_grow_a_sparse_file_past_limits_disk: Case {
        edits: DISK_16MI,
        expect: fails_with(
            StepFailure::DiskLimit { limit: 16 << 20 },
            &["disk limit of 16Mi", "`limits.disk`"],
        ),
        check: at_most_16mi,
        ..Case::hostile(json!({"mode": "disk-sparse", "count": 1 << 20, "name": "big"}))
    };
    writes_within_limits_disk_succeed: Case {
        edits: DISK_16MI,
        expect: Expect::Succeeds(&[("written", Is::Eq("8"))]),
        ..Case::hostile(json!({"mode": "disk-fill", "count": 8, "name": "ok"}))
    };
    a_guest_cannot_create_more_entries_than_limits_files: Case {
        edits: FILES_1000,
        expect: fails_with(StepFailure::FileLimit { limit: 1000 }, &["`limits.files`"]),
        check: |ran| {
            let created = std::fs::read_dir(ran.scene.workspace().join("many"))
                .expect("dir")
                .count();
            assert!(created < 1000, "{created} files created");
            // Rewriting the same files creates nothing new.
            let outcome = ran
                .again(json!({"mode": "many-files", "count": 900, "name": "many"}))
                .unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(outcome.outputs["created"], "900");
        },
        ..Case::hostile(json!({"mode": "many-files", "count": 100_000, "name": "many"}))
    };
}

/// `<workspace>/file-link -> <dir>/outside` and `<workspace>/dir-link -> <dir>`.
fn links_to_outside(scene: &Scene) {
    let workspace = scene.workspace();
    std::os::unix::fs::symlink(
        scene.dir.path().join("outside"),
        workspace.join("file-link"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(scene.dir.path(), workspace.join("dir-link")).expect("symlink");
}

// ---- scenes beyond one step ------------------------------------------------------------

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
    let harness = Harness::new(Guest::Hostile("hostile"), &[], |_| {});
    let extension = harness.load();
    let scene = Scene::new();
    let fail = |n: usize| {
        for _ in 0..n {
            // The default sink: a collecting one would grow by design.
            let mut request = StepRequest::new("hostile");
            request.with = json!({"mode": "panic"}).into();
            request.workspace = Some(scene.workspace());
            let err = harness
                .runtime
                .execute(&extension, request)
                .expect_err("panics");
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
    harness.next_step_succeeds(&extension);
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

    let harness = Harness::new(Guest::Hostile("hostile"), &[], |_| {});
    let extension = harness.load();
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
        runner.runtime = Some(harness.runtime.clone());
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
    harness.next_step_succeeds(&extension);
}
