//! The parts of a `batch/v1` Job that LabHit emits, as typed structs (serialised with
//! Kubernetes' camelCase names). Only the fields we set exist here; this is not a client.

use std::collections::BTreeMap;

use serde::Serialize;

/// A `batch/v1` Job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Always `batch/v1`.
    pub api_version: &'static str,
    /// Always `Job`.
    pub kind: &'static str,
    /// Name, namespace, labels, annotations.
    pub metadata: ObjectMeta,
    /// The Job's spec.
    pub spec: JobSpec,
}

/// Object metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The object's name (a DNS-1123 label); absent on the pod template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The namespace; absent on the pod template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels (selectable): managed-by, run, stage, attempt.
    pub labels: BTreeMap<String, String>,
    /// Annotations: the exact identifiers labels could only carry sanitised.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A Job's spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Pod retries counted against the Job; LabHit retries are new attempts (new Jobs).
    pub backoff_limit: u32,
    /// The stage deadline, in seconds, for the whole Job.
    pub active_deadline_seconds: u64,
    /// How long a finished Job stays for the server to read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
    /// Which pod failures count.
    pub pod_failure_policy: PodFailurePolicy,
    /// The pod.
    pub template: PodTemplate,
}

/// `podFailurePolicy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodFailurePolicy {
    /// Checked in order; the first match decides.
    pub rules: Vec<PodFailurePolicyRule>,
}

/// One rule of a `podFailurePolicy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodFailurePolicyRule {
    /// `Ignore`, `FailJob`, `Count` (or `FailIndex`).
    pub action: &'static str,
    /// Match on the exit codes of a container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_exit_codes: Option<OnExitCodes>,
    /// Match on pod conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on_pod_conditions: Vec<OnPodCondition>,
}

/// `onExitCodes` of a pod failure rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnExitCodes {
    /// The container whose exit code is looked at.
    pub container_name: &'static str,
    /// `In` or `NotIn`.
    pub operator: &'static str,
    /// The exit codes.
    pub values: Vec<i32>,
}

/// `onPodConditions` entry of a pod failure rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnPodCondition {
    /// The condition type, e.g. `DisruptionTarget`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `True`.
    pub status: &'static str,
}

/// The pod template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodTemplate {
    /// Labels of every pod of the Job.
    pub metadata: ObjectMeta,
    /// The pod spec.
    pub spec: PodSpec,
}

/// A pod spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Always `Never` (required by `podFailurePolicy`).
    pub restart_policy: &'static str,
    /// `false`: a stage gets no Kubernetes API credentials.
    pub automount_service_account_token: bool,
    /// `false`: no environment variables describing other services.
    pub enable_service_links: bool,
    /// Copies the `labhit` binary from the worker image into the shared volume.
    pub init_containers: Vec<Container>,
    /// The stage's container.
    pub containers: Vec<Container>,
    /// The volumes the containers share.
    pub volumes: Vec<Volume>,
}

/// A container.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Its name within the pod.
    pub name: &'static str,
    /// The image reference.
    pub image: String,
    /// The command (entrypoint) it runs.
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Requests and limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Mounted volumes.
    pub volume_mounts: Vec<VolumeMount>,
}

/// An environment variable: a literal value or a reference to a Secret key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// A literal value (never a secret's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where the value comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// `valueFrom` of an environment variable.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A key of a Secret.
    pub secret_key_ref: SecretKeySelector,
}

/// `secretKeyRef`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretKeySelector {
    /// The Secret's name.
    pub name: String,
    /// The key in it.
    pub key: String,
    /// `false`: a missing key keeps the pod from starting.
    pub optional: bool,
}

/// Requests and limits of a container (quantities as Kubernetes writes them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceRequirements {
    /// What the scheduler reserves.
    pub requests: BTreeMap<&'static str, String>,
    /// What the kubelet enforces.
    pub limits: BTreeMap<&'static str, String>,
}

/// A mount of a volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The volume's name.
    pub name: &'static str,
    /// Where it is mounted.
    pub mount_path: &'static str,
}

/// A pod volume (only `emptyDir` is used).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Its name within the pod.
    pub name: &'static str,
    /// A scratch directory living as long as the pod.
    pub empty_dir: EmptyDir,
}

/// `emptyDir`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDir {
    /// Its size cap, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}
