//! Pins the Rust shape of both generated bindings, `labhit_wit::guest` and
//! `labhit_wit::host`.
//!
//! Every generated type is built field by field and every case matched exhaustively, and
//! every generated function is named with its full signature. A change to the WIT contract,
//! or to `wit-bindgen`/wasmtime that changes what authors and engines compile against
//! (a renamed field, a new case, a different parameter or ownership), makes this file fail
//! to compile. Changes to the WIT itself also show up in the reviewed snapshot of
//! `tests/wit.rs`; this file covers what the generators make of it.

/// Builds one value of every generated type of a face and matches every case, so that the
/// set of fields and cases is exactly the one written here. `$face` is `guest` or `host`.
macro_rules! surface {
    ($face:ident) => {
        mod $face {
            use labhit_wit::$face::labhit::extension::log::Level;
            use labhit_wit::$face::labhit::extension::secrets::SecretError;
            use labhit_wit::$face::labhit::extension::types::{
                Artifact, CacheDecision, Command, SnapshotRef, StepError, StepInput, StepOutput,
                Uuid, WorkspaceAccess,
            };

            fn command() -> Command {
                Command {
                    script: String::from("make"),
                    image: Some(String::from("rust:1.95-slim")),
                    timeout_ms: Some(60_000_u64),
                    cpu_millicores: Some(500_u32),
                    memory_bytes: Some(1_u64 << 30),
                    cache: CacheDecision::MissBuildAs(SnapshotRef::from("tag")),
                    parent_snapshot: None::<SnapshotRef>,
                }
            }

            pub(crate) fn input() -> StepInput {
                StepInput {
                    run_id: Uuid::from("67e55044-10b1-426f-9247-bb680e5fe0c8"),
                    stage_id: String::from("build"),
                    step_id: Uuid::from("67e55044-10b1-426f-9247-bb680e5fe0c9"),
                    use_ref: String::from("exec/oci"),
                    config: String::from("{}"),
                    env: Vec::<(String, String)>::new(),
                    workspace: String::from("/workspace"),
                    workspace_access: WorkspaceAccess::ReadWrite,
                    command: Some(command()),
                }
            }

            pub(crate) fn output() -> StepOutput {
                StepOutput {
                    exit_code: 0_i32,
                    outputs: vec![(String::from("k"), String::from("v"))],
                    artifacts: vec![Artifact {
                        path: String::from("a.txt"),
                        mime: String::from("text/plain"),
                        size: 1_u64,
                    }],
                    committed_snapshot: Some(SnapshotRef::from("tag")),
                }
            }

            pub(crate) fn cases() -> Vec<&'static str> {
                let mut names = Vec::new();
                for access in [
                    WorkspaceAccess::None,
                    WorkspaceAccess::ReadOnly,
                    WorkspaceAccess::ReadWrite,
                ] {
                    names.push(match access {
                        WorkspaceAccess::None => "none",
                        WorkspaceAccess::ReadOnly => "read-only",
                        WorkspaceAccess::ReadWrite => "read-write",
                    });
                }
                for decision in [
                    CacheDecision::Hit(String::new()),
                    CacheDecision::MissBuildAs(String::new()),
                    CacheDecision::MissNoCommit,
                ] {
                    names.push(match decision {
                        CacheDecision::Hit(_) => "hit",
                        CacheDecision::MissBuildAs(_) => "miss-build-as",
                        CacheDecision::MissNoCommit => "miss-no-commit",
                    });
                }
                for error in [
                    StepError::InvalidConfig(String::new()),
                    StepError::Failed(String::new()),
                    StepError::Cancelled(String::new()),
                    StepError::Internal(String::new()),
                ] {
                    names.push(match error {
                        StepError::InvalidConfig(_) => "invalid-config",
                        StepError::Failed(_) => "failed",
                        StepError::Cancelled(_) => "cancelled",
                        StepError::Internal(_) => "internal",
                    });
                }
                for error in [
                    SecretError::NotFound,
                    SecretError::Denied,
                    SecretError::InvalidName,
                ] {
                    names.push(match error {
                        SecretError::NotFound => "not-found",
                        SecretError::Denied => "denied",
                        SecretError::InvalidName => "invalid-name",
                    });
                }
                for level in [
                    Level::Trace,
                    Level::Debug,
                    Level::Info,
                    Level::Warn,
                    Level::Error,
                ] {
                    names.push(match level {
                        Level::Trace => "trace",
                        Level::Debug => "debug",
                        Level::Info => "info",
                        Level::Warn => "warn",
                        Level::Error => "error",
                    });
                }
                names
            }
        }
    };
}

surface!(guest);
surface!(host);

/// The guest face: the imports are plain functions and the export is a trait.
mod guest_functions {
    use labhit_wit::guest::exports::labhit::extension::pipeline_step::Guest;
    use labhit_wit::guest::labhit::extension::types::{StepError, StepInput, StepOutput};
    use labhit_wit::guest::labhit::extension::{cancellation, log, secrets};

    pub(crate) const LOG: fn(log::Level, &str, &[(String, String)]) = log::log;
    pub(crate) const SECRET: fn(&str) -> Result<String, secrets::SecretError> = secrets::get;
    pub(crate) const CANCELLED: fn() -> bool = cancellation::is_cancelled;

    /// An implementation of the export, with its exact signature.
    pub(crate) struct Echo;

    impl Guest for Echo {
        fn execute(input: StepInput) -> Result<StepOutput, StepError> {
            Ok(StepOutput {
                exit_code: 0,
                outputs: vec![(String::from("stage"), input.stage_id)],
                artifacts: Vec::new(),
                committed_snapshot: None,
            })
        }
    }
}

/// The host face: one trait per imported interface, the world struct and its export.
mod host_functions {
    use labhit_wit::host::Extension;
    use labhit_wit::host::exports::labhit::extension::pipeline_step::Guest as PipelineStep;
    use labhit_wit::host::labhit::extension::types::{StepError, StepInput, StepOutput};
    use labhit_wit::host::labhit::extension::{cancellation, log, secrets, types};
    use wasmtime::component::{HasSelf, Linker};
    use wasmtime::{AsContextMut, Engine};

    /// Implements every host trait with the exact signatures the bindings require.
    pub(crate) struct Host;

    impl types::Host for Host {}

    impl log::Host for Host {
        fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
            let _ = (level, message, fields);
        }
    }

    impl secrets::Host for Host {
        fn get(&mut self, name: String) -> Result<String, secrets::SecretError> {
            let _ = name;
            Err(secrets::SecretError::Denied)
        }
    }

    impl cancellation::Host for Host {
        fn is_cancelled(&mut self) -> bool {
            false
        }
    }

    /// `execute` as an engine calls it.
    pub(crate) fn execute<S: AsContextMut<Data = Host>>(
        step: &PipelineStep,
        store: S,
        input: &StepInput,
    ) -> wasmtime::Result<Result<StepOutput, StepError>> {
        step.call_execute(store, input)
    }

    /// The export accessor of the world.
    pub(crate) fn pipeline_step(extension: &Extension) -> &PipelineStep {
        extension.labhit_extension_pipeline_step()
    }

    /// Links the LabHit imports for a store whose data is [`Host`].
    pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<Host>> {
        let mut linker = Linker::new(engine);
        Extension::add_to_linker::<Host, HasSelf<Host>>(&mut linker, |host| host)?;
        Ok(linker)
    }
}

#[test]
fn both_faces_have_the_same_cases() {
    let expected = [
        "none",
        "read-only",
        "read-write",
        "hit",
        "miss-build-as",
        "miss-no-commit",
        "invalid-config",
        "failed",
        "cancelled",
        "internal",
        "not-found",
        "denied",
        "invalid-name",
        "trace",
        "debug",
        "info",
        "warn",
        "error",
    ];
    assert_eq!(guest::cases(), expected);
    assert_eq!(host::cases(), expected);
}

#[test]
fn both_faces_carry_the_same_data() {
    // The two faces are distinct types of the same shape; the conversions go through the
    // protocol types, so a round trip guest -> protocol -> host preserves everything.
    use labhit_wit::convert::{StepOutcome, StepSpec};
    let spec = StepSpec::try_from(guest::input()).expect("guest input converts");
    let host_input = labhit_wit::host::labhit::extension::types::StepInput::try_from(&spec)
        .expect("host input converts");
    assert_eq!(host_input, host::input());
    let outcome = StepOutcome::try_from(guest::output()).expect("guest output converts");
    assert_eq!(
        labhit_wit::host::labhit::extension::types::StepOutput::from(outcome),
        host::output()
    );
}

#[test]
fn host_functions_link() {
    let engine = wasmtime::Engine::default();
    host_functions::linker(&engine).expect("the LabHit imports link");
    // The function items exist with the signatures above.
    let _ = (
        host_functions::execute::<&mut wasmtime::Store<host_functions::Host>>,
        host_functions::pipeline_step,
        guest_functions::LOG,
        guest_functions::SECRET,
        guest_functions::CANCELLED,
    );
    let output = <guest_functions::Echo as labhit_wit::guest::exports::labhit::extension::pipeline_step::Guest>::execute(guest::input())
        .expect("echo succeeds");
    assert_eq!(output.outputs, [("stage".to_owned(), "build".to_owned())]);
}
