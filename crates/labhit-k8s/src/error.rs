//! Why a stage cannot become a Job: every case names the stage and the fix.

/// A stage that cannot be rendered as a Kubernetes Job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The stage has no `run` script: extension (`use:`) stages run on the worker fleet.
    #[error(
        "stage `{stage}` has no `run` script: only `run:` stages become Kubernetes Jobs; extension stages run on `labhit worker`"
    )]
    NotAScript {
        /// The stage id.
        stage: String,
    },
    /// Neither `sandbox.image` nor a default image.
    #[error(
        "stage `{stage}` has no `sandbox.image` and no default image is configured; add `sandbox.image`"
    )]
    NoImage {
        /// The stage id.
        stage: String,
    },
    /// `sandbox.image` (or the worker image) is not an image reference.
    #[error("stage `{stage}`: `{image}` is not a container image reference: {reason}")]
    Image {
        /// The stage id.
        stage: String,
        /// The image as written.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `sandbox.resources.cpu` outside what the cluster accepts.
    #[error(
        "stage `{stage}`: `sandbox.resources.cpu` is {millis}m, outside {min}m..={max}m; change it or raise the limit"
    )]
    Cpu {
        /// The stage id.
        stage: String,
        /// The requested amount in millicores (rounded up).
        millis: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// `sandbox.resources.memory` outside what the cluster accepts.
    #[error(
        "stage `{stage}`: `sandbox.resources.memory` is {bytes} bytes, outside {min}..={max}; change it or raise the limit"
    )]
    Memory {
        /// The stage id.
        stage: String,
        /// The requested bytes.
        bytes: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// The namespace is not a DNS-1123 label.
    #[error(
        "namespace `{namespace}` is not a DNS-1123 label (1-63 of a-z, 0-9, `-`, alphanumeric at both ends)"
    )]
    Namespace {
        /// The namespace as given.
        namespace: String,
    },
}
