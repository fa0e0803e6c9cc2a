//! Renders one `run:` stage of a LabHit run into a Kubernetes `batch/v1` Job manifest, the
//! way `sandbox.image` and `sandbox.resources` are meant to be honoured on a cluster (see
//! `docs/scale-out.md`, "Kubernetes"). Pure data: no Kubernetes client, no I/O; the minimal
//! typed structs of the fields we emit are in [`model`].
//!
//! The pod: an init container copies the `labhit` binary out of the worker image into a
//! shared volume; the stage's container runs the stage's image with that binary as its
//! entrypoint (`labhit worker --task RUN/STAGE/ATTEMPT`), which fetches the workspace,
//! runs the script, ships the logs and the result back and exits with the script's code.
//! Secrets are `secretKeyRef`s into the run's Secret, never values: a [`JobTarget`] has no
//! way to carry one.

pub mod error;
pub mod image;
pub mod model;
pub mod names;

use std::collections::BTreeMap;

use labhit_protocol::ids::RunId;
use labhit_protocol::pipeline::{Stage, StageId};

pub use error::RenderError;
pub use model::Job;
use model::{
    Container, EmptyDir, EnvVar, EnvVarSource, JobSpec, ObjectMeta, OnExitCodes, OnPodCondition,
    PodFailurePolicy, PodFailurePolicyRule, PodSpec, PodTemplate, ResourceRequirements,
    SecretKeySelector, Volume, VolumeMount,
};

/// Label and annotation prefix.
pub const PREFIX: &str = "labhit.dev/";
/// Name of the stage's container (what `podFailurePolicy` looks at).
pub const STAGE_CONTAINER: &str = "stage";
/// Where the `labhit` binary is in the stage's container.
pub const LABHIT_BIN: &str = "/labhit/bin/labhit";
/// Where the (static) `labhit` binary is in the worker image, which also has `cp`.
pub const WORKER_BIN: &str = "/usr/local/bin/labhit";

/// Which stage of which run, and which attempt: a Job's identity.
#[derive(Debug, Clone, Copy)]
pub struct JobTarget<'a> {
    /// The run.
    pub run_id: RunId,
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The stage id.
    pub stage_id: &'a StageId,
    /// The stage as written (its output references are never in `run`).
    pub stage: &'a Stage,
    /// 1 for the first attempt; a retry is a new Job.
    pub attempt: u32,
}

impl JobTarget<'_> {
    /// `RUN/STAGE/ATTEMPT`, the task id a worker reports under (the server de-duplicates by it).
    pub fn task_id(&self) -> String {
        format!("{}/{}/{}", self.run_id, self.stage_id, self.attempt)
    }
}

/// Cluster-side settings of the rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOptions {
    /// Namespace of the Jobs.
    pub namespace: String,
    /// The image holding the `labhit` binary (copied into every stage pod).
    pub worker_image: String,
    /// Image of a `run:` stage without `sandbox.image`; `None`: such a stage is an error.
    pub default_image: Option<String>,
    /// URL the in-pod worker reaches the server's NATS at.
    pub nats_url: String,
    /// Deadline of a stage without `sandbox.timeout`, in seconds.
    pub default_timeout_secs: u64,
    /// `ttlSecondsAfterFinished` of every Job.
    pub ttl_after_finished_secs: Option<u32>,
    /// Accepted `sandbox.resources.cpu`, in millicores.
    pub cpu_millis: (u64, u64),
    /// Accepted `sandbox.resources.memory`, in bytes.
    pub memory_bytes: (u64, u64),
    /// Size cap of the workspace volume, as a quantity.
    pub workspace_size_limit: Option<String>,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            namespace: "labhit".to_owned(),
            worker_image: "ghcr.io/labhit/labhit:0.2.0".to_owned(),
            default_image: None,
            nats_url: "nats://labhit-nats:4222".to_owned(),
            default_timeout_secs: 3600,
            ttl_after_finished_secs: Some(3600),
            cpu_millis: (1, 64_000),
            memory_bytes: (4 << 20, 256 << 30),
            workspace_size_limit: None,
        }
    }
}

/// The name of the Secret holding run `run`'s secrets (the server creates it before the
/// first Job of the run and deletes it after the last; each key is a secret's name).
pub fn secret_name(run: RunId) -> String {
    format!("labhit-run-{run}")
}

/// The Job of `target`. See the crate documentation.
pub fn render(target: &JobTarget<'_>, options: &JobOptions) -> Result<Job, RenderError> {
    let stage_id = target.stage_id.as_str();
    let stage = target.stage;
    let err_stage = || stage_id.to_owned();
    if !names::is_dns_label(&options.namespace) {
        return Err(RenderError::Namespace {
            namespace: options.namespace.clone(),
        });
    }
    if stage.run.is_none() {
        return Err(RenderError::NotAScript { stage: err_stage() });
    }
    let sandbox = stage.sandbox.clone().unwrap_or_default();
    let image = sandbox
        .image
        .clone()
        .or_else(|| options.default_image.clone())
        .ok_or_else(|| RenderError::NoImage { stage: err_stage() })?;
    for candidate in [&image, &options.worker_image] {
        if let Some(reason) = image::problem(candidate) {
            return Err(RenderError::Image {
                stage: err_stage(),
                image: candidate.clone(),
                reason,
            });
        }
    }
    let resources = match &sandbox.resources {
        None => None,
        Some(r) => Some(resources(stage_id, r, options)?),
    };

    let run = target.run_id.to_string();
    let task = target.task_id();
    let mut labels = BTreeMap::new();
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "labhit".to_owned(),
    );
    labels.insert(format!("{PREFIX}run-id"), run.clone());
    labels.insert(format!("{PREFIX}stage"), names::label_value(stage_id));
    labels.insert(format!("{PREFIX}attempt"), target.attempt.to_string());
    labels.insert(
        format!("{PREFIX}pipeline"),
        names::label_value(target.pipeline),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(format!("{PREFIX}task"), task.clone());
    annotations.insert(format!("{PREFIX}pipeline"), target.pipeline.to_owned());
    annotations.insert(format!("{PREFIX}stage"), stage_id.to_owned());

    let secret = secret_name(target.run_id);
    let mut env = vec![EnvVar {
        name: "LABHIT_TASK".to_owned(),
        value: Some(task.clone()),
        value_from: None,
    }];
    env.extend(sandbox.secrets.iter().map(|name| EnvVar {
        name: name.as_str().to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: SecretKeySelector {
                name: secret.clone(),
                key: name.as_str().to_owned(),
                optional: false,
            },
        }),
    }));

    let bin = VolumeMount {
        name: "labhit-bin",
        mount_path: "/labhit/bin",
    };
    let workspace = VolumeMount {
        name: "workspace",
        mount_path: "/workspace",
    };
    let timeout = sandbox
        .timeout
        .as_ref()
        .map_or(options.default_timeout_secs, |t| t.as_secs());
    Ok(Job {
        api_version: "batch/v1",
        kind: "Job",
        metadata: ObjectMeta {
            name: Some(names::job_name(
                &["labhit", target.pipeline, stage_id],
                &task,
            )),
            namespace: Some(options.namespace.clone()),
            labels: labels.clone(),
            annotations,
        },
        spec: JobSpec {
            backoff_limit: 0,
            active_deadline_seconds: timeout.max(1),
            ttl_seconds_after_finished: options.ttl_after_finished_secs,
            pod_failure_policy: PodFailurePolicy {
                rules: vec![
                    // Drained node, preemption, eviction: not the script's fault; the pod is
                    // replaced without counting against `backoffLimit`.
                    PodFailurePolicyRule {
                        action: "Ignore",
                        on_exit_codes: None,
                        on_pod_conditions: vec![OnPodCondition {
                            kind: "DisruptionTarget",
                            status: "True",
                        }],
                    },
                    // The script failed (its exit code, reported by the worker): final.
                    PodFailurePolicyRule {
                        action: "FailJob",
                        on_exit_codes: Some(OnExitCodes {
                            container_name: STAGE_CONTAINER,
                            operator: "NotIn",
                            values: vec![0],
                        }),
                        on_pod_conditions: Vec::new(),
                    },
                ],
            },
            template: PodTemplate {
                metadata: ObjectMeta {
                    name: None,
                    namespace: None,
                    labels,
                    annotations: BTreeMap::new(),
                },
                spec: PodSpec {
                    restart_policy: "Never",
                    automount_service_account_token: false,
                    enable_service_links: false,
                    init_containers: vec![Container {
                        name: "labhit",
                        image: options.worker_image.clone(),
                        command: vec![
                            "cp".to_owned(),
                            WORKER_BIN.to_owned(),
                            LABHIT_BIN.to_owned(),
                        ],
                        env: Vec::new(),
                        resources: None,
                        volume_mounts: vec![bin.clone()],
                    }],
                    containers: vec![Container {
                        name: STAGE_CONTAINER,
                        image,
                        command: vec![
                            LABHIT_BIN.to_owned(),
                            "worker".to_owned(),
                            "--task".to_owned(),
                            task,
                            "--nats".to_owned(),
                            options.nats_url.clone(),
                            "--workspace".to_owned(),
                            workspace.mount_path.to_owned(),
                        ],
                        env,
                        resources,
                        volume_mounts: vec![bin, workspace],
                    }],
                    volumes: vec![
                        Volume {
                            name: "labhit-bin",
                            empty_dir: EmptyDir { size_limit: None },
                        },
                        Volume {
                            name: "workspace",
                            empty_dir: EmptyDir {
                                size_limit: options.workspace_size_limit.clone(),
                            },
                        },
                    ],
                },
            },
        },
    })
}

/// The manifest as pretty JSON (what `kubectl apply -f` reads).
pub fn to_json(job: &Job) -> String {
    // The model holds strings, integers and booleans only: serialising cannot fail.
    serde_json::to_string_pretty(job).unwrap_or_default()
}

/// Requests equal to limits (a stage gets what it asked for, and no more).
fn resources(
    stage: &str,
    r: &labhit_protocol::pipeline::Resources,
    options: &JobOptions,
) -> Result<ResourceRequirements, RenderError> {
    let mut amounts = BTreeMap::new();
    if let Some(cpu) = r.cpu {
        // Rounded up to whole millicores, the finest unit Kubernetes keeps.
        let millis = (cpu.cores() * 1000.0).ceil();
        let millis = if millis >= u64::MAX as f64 {
            u64::MAX
        } else {
            millis as u64
        };
        let (min, max) = options.cpu_millis;
        if !(min..=max).contains(&millis) {
            return Err(RenderError::Cpu {
                stage: stage.to_owned(),
                millis,
                min,
                max,
            });
        }
        amounts.insert("cpu", format!("{millis}m"));
    }
    if let Some(memory) = r.memory {
        let bytes = memory.bytes();
        let (min, max) = options.memory_bytes;
        if !(min..=max).contains(&bytes) {
            return Err(RenderError::Memory {
                stage: stage.to_owned(),
                bytes,
                min,
                max,
            });
        }
        amounts.insert("memory", memory_quantity(bytes));
    }
    Ok(ResourceRequirements {
        requests: amounts.clone(),
        limits: amounts,
    })
}

/// `bytes` in the largest binary unit that divides it (`256Mi`), else plain bytes.
fn memory_quantity(bytes: u64) -> String {
    for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}
