//! Conversions between the host types of older contract minors and the newest (feature
//! `host`), so a host that runs several minors sees one type set.
//!
//! Contract minors are additive (see the package documentation of `labhit-extension.wit`):
//! what an older guest receives is the newest input without what was added since, and what
//! it returns means the same in the newest types. Each conversion is therefore total:
//! newest → older for what the host hands the guest ([`StepInput`](new::StepInput)), older →
//! newest for what the guest hands back (output, error, log level) and newest → older for
//! what a host import answers (secret errors).

use crate::host::labhit::extension as new;
use crate::host::v0_1::labhit::extension as v0_1;

impl From<&new::types::StepInput> for v0_1::types::StepInput {
    fn from(input: &new::types::StepInput) -> Self {
        let new::types::StepInput {
            run_id,
            stage_id,
            step_id,
            use_ref,
            config,
            env,
            workspace,
            workspace_access,
            command,
        } = input;
        Self {
            run_id: run_id.clone(),
            stage_id: stage_id.clone(),
            step_id: step_id.clone(),
            use_ref: use_ref.clone(),
            config: config.clone(),
            env: env.clone(),
            workspace: workspace.clone(),
            workspace_access: (*workspace_access).into(),
            command: command.as_ref().map(Into::into),
        }
    }
}

impl From<new::types::WorkspaceAccess> for v0_1::types::WorkspaceAccess {
    fn from(access: new::types::WorkspaceAccess) -> Self {
        match access {
            new::types::WorkspaceAccess::None => Self::None,
            new::types::WorkspaceAccess::ReadOnly => Self::ReadOnly,
            new::types::WorkspaceAccess::ReadWrite => Self::ReadWrite,
        }
    }
}

impl From<&new::types::Command> for v0_1::types::Command {
    fn from(command: &new::types::Command) -> Self {
        let new::types::Command {
            script,
            image,
            timeout_ms,
            cpu_millicores,
            memory_bytes,
            cache,
            parent_snapshot,
        } = command;
        Self {
            script: script.clone(),
            image: image.clone(),
            timeout_ms: *timeout_ms,
            cpu_millicores: *cpu_millicores,
            memory_bytes: *memory_bytes,
            cache: cache.into(),
            parent_snapshot: parent_snapshot.clone(),
        }
    }
}

impl From<&new::types::CacheDecision> for v0_1::types::CacheDecision {
    fn from(decision: &new::types::CacheDecision) -> Self {
        match decision {
            new::types::CacheDecision::Hit(tag) => Self::Hit(tag.clone()),
            new::types::CacheDecision::MissBuildAs(tag) => Self::MissBuildAs(tag.clone()),
            new::types::CacheDecision::MissNoCommit => Self::MissNoCommit,
        }
    }
}

impl From<v0_1::types::StepOutput> for new::types::StepOutput {
    fn from(output: v0_1::types::StepOutput) -> Self {
        let v0_1::types::StepOutput {
            exit_code,
            outputs,
            artifacts,
            committed_snapshot,
        } = output;
        Self {
            exit_code,
            outputs,
            artifacts: artifacts.into_iter().map(Into::into).collect(),
            committed_snapshot,
        }
    }
}

impl From<v0_1::types::Artifact> for new::types::Artifact {
    fn from(artifact: v0_1::types::Artifact) -> Self {
        let v0_1::types::Artifact { path, mime, size } = artifact;
        Self { path, mime, size }
    }
}

impl From<v0_1::types::StepError> for new::types::StepError {
    fn from(error: v0_1::types::StepError) -> Self {
        match error {
            v0_1::types::StepError::InvalidConfig(m) => Self::InvalidConfig(m),
            v0_1::types::StepError::Failed(m) => Self::Failed(m),
            v0_1::types::StepError::Cancelled(m) => Self::Cancelled(m),
            v0_1::types::StepError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<v0_1::log::Level> for new::log::Level {
    fn from(level: v0_1::log::Level) -> Self {
        match level {
            v0_1::log::Level::Trace => Self::Trace,
            v0_1::log::Level::Debug => Self::Debug,
            v0_1::log::Level::Info => Self::Info,
            v0_1::log::Level::Warn => Self::Warn,
            v0_1::log::Level::Error => Self::Error,
        }
    }
}

impl From<new::secrets::SecretError> for v0_1::secrets::SecretError {
    fn from(error: new::secrets::SecretError) -> Self {
        match error {
            new::secrets::SecretError::NotFound => Self::NotFound,
            new::secrets::SecretError::Denied => Self::Denied,
            new::secrets::SecretError::InvalidName => Self::InvalidName,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(command: Option<new::types::Command>) -> new::types::StepInput {
        new::types::StepInput {
            run_id: "0195f0c4-0000-7000-8000-000000000001".into(),
            stage_id: "build".into(),
            step_id: "0195f0c4-0000-7000-8000-000000000002".into(),
            use_ref: "util/checksum@^0.1".into(),
            config: r#"{"patterns":["*"]}"#.into(),
            env: vec![("CI".into(), "true".into())],
            workspace: "/workspace".into(),
            workspace_access: new::types::WorkspaceAccess::ReadWrite,
            command,
        }
    }

    #[test]
    fn the_input_keeps_every_field() {
        let old = v0_1::types::StepInput::from(&input(None));
        assert_eq!(
            old,
            v0_1::types::StepInput {
                run_id: "0195f0c4-0000-7000-8000-000000000001".into(),
                stage_id: "build".into(),
                step_id: "0195f0c4-0000-7000-8000-000000000002".into(),
                use_ref: "util/checksum@^0.1".into(),
                config: r#"{"patterns":["*"]}"#.into(),
                env: vec![("CI".into(), "true".into())],
                workspace: "/workspace".into(),
                workspace_access: v0_1::types::WorkspaceAccess::ReadWrite,
                command: None,
            }
        );
        for (cache, expected) in [
            (
                new::types::CacheDecision::Hit("a".into()),
                v0_1::types::CacheDecision::Hit("a".into()),
            ),
            (
                new::types::CacheDecision::MissBuildAs("b".into()),
                v0_1::types::CacheDecision::MissBuildAs("b".into()),
            ),
            (
                new::types::CacheDecision::MissNoCommit,
                v0_1::types::CacheDecision::MissNoCommit,
            ),
        ] {
            let command = new::types::Command {
                script: "make".into(),
                image: Some("alpine".into()),
                timeout_ms: Some(5),
                cpu_millicores: Some(500),
                memory_bytes: Some(1 << 20),
                cache,
                parent_snapshot: Some("p".into()),
            };
            let old = v0_1::types::StepInput::from(&input(Some(command)));
            assert_eq!(
                old.command,
                Some(v0_1::types::Command {
                    script: "make".into(),
                    image: Some("alpine".into()),
                    timeout_ms: Some(5),
                    cpu_millicores: Some(500),
                    memory_bytes: Some(1 << 20),
                    cache: expected,
                    parent_snapshot: Some("p".into()),
                })
            );
        }
        for (access, expected) in [
            (
                new::types::WorkspaceAccess::None,
                v0_1::types::WorkspaceAccess::None,
            ),
            (
                new::types::WorkspaceAccess::ReadOnly,
                v0_1::types::WorkspaceAccess::ReadOnly,
            ),
            (
                new::types::WorkspaceAccess::ReadWrite,
                v0_1::types::WorkspaceAccess::ReadWrite,
            ),
        ] {
            assert_eq!(v0_1::types::WorkspaceAccess::from(access), expected);
        }
    }

    #[test]
    fn the_output_and_errors_mean_the_same() {
        let old = v0_1::types::StepOutput {
            exit_code: 3,
            outputs: vec![("digest".into(), "abc".into())],
            artifacts: vec![v0_1::types::Artifact {
                path: "out/app.tar".into(),
                mime: "application/x-tar".into(),
                size: 42,
            }],
            committed_snapshot: Some("s".into()),
        };
        assert_eq!(
            new::types::StepOutput::from(old),
            new::types::StepOutput {
                exit_code: 3,
                outputs: vec![("digest".into(), "abc".into())],
                artifacts: vec![new::types::Artifact {
                    path: "out/app.tar".into(),
                    mime: "application/x-tar".into(),
                    size: 42,
                }],
                committed_snapshot: Some("s".into()),
            }
        );
        for (old, new) in [
            (
                v0_1::types::StepError::InvalidConfig("a".into()),
                new::types::StepError::InvalidConfig("a".into()),
            ),
            (
                v0_1::types::StepError::Failed("b".into()),
                new::types::StepError::Failed("b".into()),
            ),
            (
                v0_1::types::StepError::Cancelled("c".into()),
                new::types::StepError::Cancelled("c".into()),
            ),
            (
                v0_1::types::StepError::Internal("d".into()),
                new::types::StepError::Internal("d".into()),
            ),
        ] {
            assert_eq!(new::types::StepError::from(old), new);
        }
        for (old, new) in [
            (v0_1::log::Level::Trace, new::log::Level::Trace),
            (v0_1::log::Level::Debug, new::log::Level::Debug),
            (v0_1::log::Level::Info, new::log::Level::Info),
            (v0_1::log::Level::Warn, new::log::Level::Warn),
            (v0_1::log::Level::Error, new::log::Level::Error),
        ] {
            assert_eq!(new::log::Level::from(old), new);
        }
        for (new, old) in [
            (
                new::secrets::SecretError::NotFound,
                v0_1::secrets::SecretError::NotFound,
            ),
            (
                new::secrets::SecretError::Denied,
                v0_1::secrets::SecretError::Denied,
            ),
            (
                new::secrets::SecretError::InvalidName,
                v0_1::secrets::SecretError::InvalidName,
            ),
        ] {
            assert_eq!(v0_1::secrets::SecretError::from(new), old);
        }
    }
}
