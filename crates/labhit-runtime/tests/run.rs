//! The run API (`labhit_runtime::run`) as a server drives it: a workspace and run directory
//! the caller prepared, the shared snapshot cache, an external cancellation, approvals that
//! wait for a handle (or a deadline), the observer of stage states and the per-run log sink.
//!
//! Every stage is a real `run:` script run by the local executor in a real directory. Nothing
//! waits on time to decide anything: the tests wait on the observer's channel (with a deadline
//! so that a broken run fails the test instead of hanging it), and a stage that must still be
//! running when the test cancels it loops until a file appears that never does.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use labhit_protocol::pipeline::PipelineFile;
use labhit_protocol::run::{PipelineRun, RunStatus, StageRun, StageStatus};
use labhit_runtime::approval::Approvals;
use labhit_runtime::policy::{GitRef, Policies, Policy};
use labhit_runtime::run::{CacheSettings, RunError, RunPlace, RunRequest, prepare};
use labhit_runtime::scheduler::RunObserver;
use labhit_runtime::snapshot::SnapshotStore;
use labhit_runtime::{CollectingSink, MapSecrets, Redactor};

/// Long enough never to be hit by a working run.
const DEADLINE: Duration = Duration::from_secs(30);

/// A stage script that runs until the test cancels it.
const FOREVER: &str = "while [ ! -e never-created ]; do sleep 0.05; done";

fn pipeline(stages: &str) -> PipelineFile {
    let text = format!("engine: \"1\"\npipeline:\n  name: test\n  stages:\n{stages}");
    PipelineFile::from_yaml(&text).unwrap_or_else(|d| panic!("bad test pipeline: {d:?}\n{text}"))
}

/// What the observer saw, in order.
#[derive(Debug, Clone)]
enum Event {
    Started(PipelineRun),
    Stage(StageRun),
    Finished(PipelineRun),
}

struct Observer(Mutex<Sender<Event>>);

impl RunObserver for Observer {
    fn run_started(&self, run: &PipelineRun) {
        self.send(Event::Started(run.clone()));
    }
    fn stage_changed(&self, stage: &StageRun) {
        self.send(Event::Stage(stage.clone()));
    }
    fn run_finished(&self, run: &PipelineRun) {
        self.send(Event::Finished(run.clone()));
    }
}

impl Observer {
    /// Sends `event`; a test that stopped listening has failed already.
    fn send(&self, event: Event) {
        let _ = self.0.lock().expect("lock").send(event);
    }
}

/// A prepared workspace and run directory, like a server's checkout.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("checkout")).expect("checkout");
        std::fs::write(dir.path().join("checkout/input.txt"), "x\n").expect("input");
        Self { dir }
    }

    fn workspace(&self) -> std::path::PathBuf {
        self.dir.path().join("checkout")
    }

    fn run_dir(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("runs").join(name)
    }

    /// A request for `stages` in the prepared workspace, with an observer.
    fn request(&self, stages: &str, run_dir: &str) -> (RunRequest, Receiver<Event>) {
        let mut request = RunRequest::new(
            pipeline(stages),
            RunPlace::Prepared {
                workspace: self.workspace(),
                run_dir: self.run_dir(run_dir),
            },
        );
        request.jobs = 2;
        let (tx, rx) = channel();
        request.observer = Some(Arc::new(Observer(Mutex::new(tx))));
        (request, rx)
    }
}

/// Runs `request` on its own thread; the run comes back through the handle.
fn spawn(request: RunRequest) -> std::thread::JoinHandle<PipelineRun> {
    let prepared = prepare(request).expect("prepare");
    std::thread::spawn(move || prepared.execute())
}

/// Waits for the observer to report `stage` in `status`; returns that record.
fn wait_for(events: &Receiver<Event>, stage: &str, status: StageStatus) -> StageRun {
    loop {
        match events.recv_timeout(DEADLINE) {
            Ok(Event::Stage(run)) if run.stage.as_str() == stage && run.status == status => {
                return run;
            }
            Ok(_) => {}
            Err(e) => panic!("`{stage}` never became {status}: {e}"),
        }
    }
}

fn stage<'r>(run: &'r PipelineRun, id: &str) -> &'r StageRun {
    run.stage(id).unwrap_or_else(|| panic!("no stage {id}"))
}

#[test]
fn a_prepared_workspace_and_run_dir_are_used_and_the_snapshot_cache_is_shared() {
    let scene = Scene::new();
    let cache = tempfile::tempdir().expect("cache");
    let stages = "    build:\n      run: cat input.txt > built.txt\n";
    let run_once = |name: &str| {
        let (mut request, _events) = scene.request(stages, name);
        request.cache = CacheSettings {
            snapshots: Some(SnapshotStore::new(cache.path())),
            ..CacheSettings::default()
        };
        let prepared = prepare(request).expect("prepare");
        assert_eq!(prepared.workspace(), scene.workspace());
        assert_eq!(prepared.run_dir(), scene.run_dir(name));
        assert!(prepared.run_dir().is_dir(), "the run dir is created");
        prepared.execute()
    };
    let first = run_once("one");
    assert_eq!(first.status, RunStatus::Succeeded, "{first:#?}");
    assert_eq!(stage(&first, "build").status, StageStatus::Succeeded);
    assert_eq!(
        std::fs::read_to_string(scene.workspace().join("built.txt")).expect("built"),
        "x\n",
        "the stage ran in the caller's workspace"
    );
    // The same snapshot store: a second run of the same workspace content is a hit. The
    // workspace now holds built.txt, so restore the content the first run started from.
    std::fs::remove_file(scene.workspace().join("built.txt")).expect("reset");
    let second = run_once("two");
    assert_eq!(
        stage(&second, "build").status,
        StageStatus::Cached,
        "{second:#?}"
    );
}

#[test]
fn a_missing_prepared_workspace_is_an_error_naming_it() {
    let scene = Scene::new();
    let mut request = RunRequest::new(
        pipeline("    a: {run: \"true\"}\n"),
        RunPlace::Prepared {
            workspace: scene.dir.path().join("nowhere"),
            run_dir: scene.run_dir("r"),
        },
    );
    request.jobs = 1;
    let err = prepare(request).expect_err("no workspace");
    assert!(matches!(err, RunError::NoWorkspace { .. }), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn a_pre_approval_of_an_unknown_stage_is_refused_before_anything_is_made() {
    let scene = Scene::new();
    let (mut request, _events) = scene.request("    a: {run: \"true\"}\n", "r");
    request.approved =
        labhit_runtime::gates::PreApproved::Stages(["nope".to_owned()].into_iter().collect());
    let err = prepare(request).expect_err("unknown stage");
    assert!(
        matches!(&err, RunError::UnknownStage { stage } if stage == "nope"),
        "{err}"
    );
    assert!(!scene.run_dir("r").exists(), "nothing was created");
}

#[test]
fn an_external_cancellation_stops_running_stages_and_ends_the_run_cancelled() {
    let scene = Scene::new();
    let (request, events) = scene.request(
        &format!("    slow:\n      run: '{FOREVER}'\n    later:\n      after: slow\n      run: \"true\"\n"),
        "r",
    );
    let cancellation = request.cancellation.clone();
    let run = spawn(request);
    wait_for(&events, "slow", StageStatus::Running);
    cancellation.cancel();
    let run = run.join().expect("run thread");
    assert_eq!(run.status, RunStatus::Cancelled, "{run:#?}");
    assert_eq!(stage(&run, "slow").status, StageStatus::Cancelled);
    assert_ne!(stage(&run, "later").status, StageStatus::Succeeded);
}

#[test]
fn a_stage_waits_for_approval_until_the_handle_approves_it_and_the_observer_sees_each_state() {
    let scene = Scene::new();
    let (mut request, events) = scene.request(
        "    build:\n      run: echo built > out.txt\n    deploy:\n      after: build\n      gate: {approval: required}\n      run: cat out.txt\n",
        "r",
    );
    let approvals = Approvals::new();
    request.approver = Some(Arc::new(approvals.clone()));
    let run_id = request.run_id;
    let run = spawn(request);

    match events.recv_timeout(DEADLINE).expect("run started") {
        Event::Started(run) => {
            assert_eq!(run.id, run_id);
            assert_eq!(run.status, RunStatus::Running);
            assert!(run.stages.iter().all(|s| s.status == StageStatus::Queued));
        }
        other => panic!("first event: {other:?}"),
    }
    let built = wait_for(&events, "build", StageStatus::Succeeded);
    assert_eq!(built.exit_code, Some(0));
    assert!(built.started_at.is_some() && built.finished_at.is_some());
    wait_for(&events, "deploy", StageStatus::WaitingForApproval);
    // The observer may report the wait a moment before the stage asks the handle: an
    // approval that arrives in between is kept, so whether `approve` found it waiting does
    // not matter.
    approvals.approve("deploy", "alice");
    let running = wait_for(&events, "deploy", StageStatus::Running);
    assert!(running.started_at.is_some());
    let done = wait_for(&events, "deploy", StageStatus::Succeeded);
    assert!(done.finished_at.is_some());
    assert_eq!(done.reason.as_deref(), Some("approved by alice"));
    let Event::Finished(finished) = events.recv_timeout(DEADLINE).expect("run finished") else {
        panic!("the run's end comes last");
    };

    let run = run.join().expect("run thread");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(finished, run, "the observer sees the run that is returned");
    let grant = approvals.grant("deploy").expect("recorded");
    assert_eq!(grant.by, "alice");
}

#[test]
fn an_approval_deadline_denies_the_stage_and_says_so() {
    let scene = Scene::new();
    let (mut request, _events) = scene.request(
        "    deploy:\n      gate: {approval: required}\n      run: \"true\"\n    notify:\n      after: deploy\n      run: \"true\"\n",
        "r",
    );
    request.approver = Some(Arc::new(Approvals::with_deadline(Duration::from_millis(
        50,
    ))));
    let run = prepare(request).expect("prepare").execute();
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    let deploy = stage(&run, "deploy");
    assert_eq!(deploy.status, StageStatus::Denied);
    let reason = deploy.reason.clone().unwrap_or_default();
    assert!(reason.contains("approval deadline of 50ms"), "{reason}");
    assert_eq!(stage(&run, "notify").status, StageStatus::Skipped);
}

#[test]
fn cancelling_a_run_ends_a_stage_waiting_for_approval_cancelled() {
    let scene = Scene::new();
    let (mut request, events) = scene.request(
        "    deploy:\n      gate: {approval: required}\n      run: \"true\"\n",
        "r",
    );
    request.approver = Some(Arc::new(Approvals::new()));
    let cancellation = request.cancellation.clone();
    let run = spawn(request);
    wait_for(&events, "deploy", StageStatus::WaitingForApproval);
    cancellation.cancel();
    let run = run.join().expect("run thread");
    assert_eq!(run.status, RunStatus::Cancelled, "{run:#?}");
    assert_eq!(stage(&run, "deploy").status, StageStatus::Cancelled);
}

#[test]
fn policies_still_apply_to_an_approved_stage() {
    let scene = Scene::new();
    let (mut request, _events) = scene.request(
        "    deploy:\n      gate: {approval: required, policy: main-only}\n      run: \"true\"\n",
        "r",
    );
    let approvals = Approvals::new();
    approvals.approve("deploy", "alice");
    request.approver = Some(Arc::new(approvals));
    request.policies = Policies::from_map(BTreeMap::from([(
        "main-only".to_owned(),
        Policy {
            branches: vec!["main".to_owned()],
            allow: true,
            ..Policy::default()
        },
    )]));
    request.git_ref = Some(GitRef::new("topic"));
    let run = prepare(request).expect("prepare").execute();
    let deploy = stage(&run, "deploy");
    assert_eq!(deploy.status, StageStatus::Denied, "{run:#?}");
    assert!(
        deploy
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("main-only"),
        "{deploy:?}"
    );
}

#[test]
fn the_log_sink_gets_every_entry_numbered_and_redacted() {
    let scene = Scene::new();
    let (mut request, _events) = scene.request(
        "    show:\n      run: echo \"token is $DEPLOY_TOKEN\"\n      sandbox: {secrets: [DEPLOY_TOKEN]}\n",
        "r",
    );
    let secret = "s3cr3t-token-value";
    request.secrets = Arc::new(MapSecrets::from_iter([("DEPLOY_TOKEN", secret)]));
    let mut redactor = Redactor::new();
    redactor.add(secret);
    request.redactor = redactor;
    let sink = Arc::new(CollectingSink::new());
    request.log_sink = sink.clone();
    let run_id = request.run_id;
    let run = prepare(request).expect("prepare").execute();
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let entries = sink.entries();
    assert!(!entries.is_empty());
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.sequence, i as u64, "gapless, in order");
        assert_eq!(entry.run_id, run_id);
        assert!(!entry.message.contains(secret), "{entry:?}");
    }
    assert!(
        entries.iter().any(|e| e.message.contains("token is ***")),
        "{:#?}",
        sink.messages()
    );
}

/// The default environment is granted to every stage; the caller's is added to it.
#[test]
fn the_default_and_the_callers_environment_are_granted() {
    let scene = Scene::new();
    let (mut request, _events) = scene.request(
        "    env:\n      run: test \"$CI/$LABHIT/$LABHIT_PIPELINE/$EXTRA\" = true/1/test/yes\n",
        "r",
    );
    request.env.insert("EXTRA".to_owned(), "yes".to_owned());
    let run = prepare(request).expect("prepare").execute();
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
}

/// `writer` and `look` both come after `make`; `writer` writes a file, `look` is cacheable.
/// `look`'s key covers what `make` left, never `writer`'s effect: the run where `writer`
/// finished first hits the snapshot the run where `look` finished first committed. The order
/// is forced with an approval gate on the stage that must go second.
#[test]
fn a_stages_cache_key_does_not_depend_on_which_sibling_finished_first() {
    let cache = tempfile::tempdir().expect("cache");
    let stages = |gated: &str| {
        let gate = |stage: &str| match stage == gated {
            true => "      gate: {approval: required}\n",
            false => "",
        };
        format!(
            "    make:\n      run: echo made > made.txt\n    \
             writer:\n      after: make\n{}      run: echo wrote > wrote.txt\n    \
             look:\n      after: make\n{}      run: cat made.txt input.txt > seen.txt\n",
            gate("writer"),
            gate("look")
        )
    };
    let run = |scene: &Scene, gated: &str, first: &str| {
        let (mut request, events) = scene.request(&stages(gated), "r");
        request.cache = CacheSettings {
            snapshots: Some(SnapshotStore::new(cache.path())),
            ..CacheSettings::default()
        };
        let approvals = Approvals::new();
        request.approver = Some(Arc::new(approvals.clone()));
        let handle = spawn(request);
        // `first` ends (succeeded, or cached from the other run) before `gated` may start.
        loop {
            match events.recv_timeout(DEADLINE) {
                Ok(Event::Stage(s))
                    if s.stage.as_str() == first
                        && matches!(s.status, StageStatus::Succeeded | StageStatus::Cached) =>
                {
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("`{first}` never ended: {e}"),
            }
        }
        approvals.approve(gated, "test");
        handle.join().expect("run thread")
    };

    let look_first = Scene::new();
    let one = run(&look_first, "writer", "look");
    assert_eq!(one.status, RunStatus::Succeeded, "{one:#?}");
    assert_eq!(stage(&one, "look").status, StageStatus::Succeeded);

    let writer_first = Scene::new();
    let two = run(&writer_first, "look", "writer");
    assert_eq!(two.status, RunStatus::Succeeded, "{two:#?}");
    assert_eq!(
        stage(&two, "look").status,
        StageStatus::Cached,
        "`look`'s key must not cover its sibling's `wrote.txt`: {two:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(writer_first.workspace().join("seen.txt")).expect("seen"),
        "made\nx\n"
    );
    assert!(writer_first.workspace().join("wrote.txt").is_file());
}
