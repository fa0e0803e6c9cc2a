//! The dispatch seam (`labhit_runtime::dispatch`): every stage's step goes through the run's
//! dispatcher with a deterministic `run/stage/attempt` id, the default runs it in-process, and
//! the runner honours whatever the dispatcher answers.
//!
//! Real `run:` scripts on the local executor in real directories.

use std::sync::{Arc, Mutex};

use labhit_protocol::executor::{ExecutorInput, StepResult};
use labhit_protocol::pipeline::PipelineFile;
use labhit_protocol::run::{RunStatus, StageStatus};
use labhit_runtime::dispatch::{Dispatch, Dispatcher, InProcess};
use labhit_runtime::executor::{ExecContext, ExecError, Executor};
use labhit_runtime::run::{CacheSettings, RunPlace, RunRequest, prepare};
use labhit_runtime::snapshot::SnapshotStore;
use labhit_runtime::{LoadedExtension, Runtime, StepError, StepOutcome, StepRequest};

fn pipeline(stages: &str) -> PipelineFile {
    let text = format!("engine: \"1\"\npipeline:\n  name: test\n  stages:\n{stages}");
    PipelineFile::from_yaml(&text).unwrap_or_else(|d| panic!("bad test pipeline: {d:?}\n{text}"))
}

const STAGES: &str = "    make:\n      run: echo made > made.txt\n    \
                      copy:\n      after: make\n      run: cp made.txt copied.txt\n";

/// Runs every step in-process and records what it was handed; refuses the stages named in
/// `refuse`.
#[derive(Default)]
struct Recording {
    seen: Mutex<Vec<(String, String)>>,
    refuse: Vec<&'static str>,
}

impl Dispatcher for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    fn extension(
        &self,
        dispatch: &Dispatch<'_>,
        runtime: &Runtime,
        ext: &LoadedExtension,
        request: StepRequest,
    ) -> Result<StepOutcome, StepError> {
        InProcess.extension(dispatch, runtime, ext, request)
    }

    fn command(
        &self,
        dispatch: &Dispatch<'_>,
        executor: &dyn Executor,
        input: &ExecutorInput,
        ctx: &ExecContext<'_>,
    ) -> Result<StepResult, ExecError> {
        self.seen
            .lock()
            .expect("lock")
            .push((dispatch.task_id(), input.step.script.clone()));
        if self.refuse.contains(&dispatch.stage.as_str()) {
            return Err(ExecError::Refused {
                stage: dispatch.stage.to_string(),
                message: "no worker can run it".to_owned(),
            });
        }
        InProcess.command(dispatch, executor, input, ctx)
    }
}

fn request(dir: &std::path::Path, dispatcher: Arc<dyn Dispatcher>) -> RunRequest {
    let workspace = dir.join("checkout");
    std::fs::create_dir_all(&workspace).expect("checkout");
    let mut request = RunRequest::new(
        pipeline(STAGES),
        RunPlace::Prepared {
            workspace,
            run_dir: dir.join("run"),
        },
    );
    request.cache = CacheSettings {
        snapshots: Some(SnapshotStore::new(dir.join("snapshots"))),
        ..CacheSettings::default()
    };
    request.dispatcher = dispatcher;
    request
}

#[test]
fn every_step_goes_through_the_runs_dispatcher_with_a_deterministic_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = Arc::new(Recording::default());
    let prepared = prepare(request(dir.path(), recording.clone())).expect("prepare");
    let run_id = prepared.run_id();
    let workspace = prepared.workspace().to_owned();
    let run = prepared.execute();
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(
        std::fs::read_to_string(workspace.join("copied.txt")).expect("copied.txt"),
        "made\n"
    );
    let seen = recording.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [
            (
                format!("{run_id}/make/1"),
                "echo made > made.txt".to_owned()
            ),
            (
                format!("{run_id}/copy/1"),
                "cp made.txt copied.txt".to_owned()
            ),
        ]
    );
}

#[test]
fn the_default_dispatcher_runs_in_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workspace = dir.path().join("checkout");
    std::fs::create_dir_all(&workspace).expect("checkout");
    let request = RunRequest::new(
        pipeline(STAGES),
        RunPlace::Prepared {
            workspace: workspace.clone(),
            run_dir: dir.path().join("run"),
        },
    );
    assert_eq!(request.dispatcher.name(), "in-process");
    let run = prepare(request).expect("prepare").execute();
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert!(workspace.join("copied.txt").is_file());
}

#[test]
fn a_dispatchers_refusal_fails_the_stage_with_its_reason_and_skips_downstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = Arc::new(Recording {
        refuse: vec!["make"],
        ..Recording::default()
    });
    let prepared = prepare(request(dir.path(), recording.clone())).expect("prepare");
    let workspace = prepared.workspace().to_owned();
    let run = prepared.execute();
    assert_eq!(run.status, RunStatus::Failed);
    let make = &run.stages[0];
    assert_eq!(make.status, StageStatus::Failed);
    let reason = make.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("no worker can run it"), "{reason}");
    assert_eq!(run.stages[1].status, StageStatus::Skipped);
    assert!(!workspace.join("made.txt").exists(), "the refused step ran");
    assert_eq!(recording.seen.lock().expect("lock").len(), 1);
}
