//! Request-field checks that do not depend on any repository or stored run: each failure is
//! `INVALID_ARGUMENT` with a message naming the field, as `pipeline.proto` documents.

use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use tonic::Status;

/// The pipeline file used when a trigger names none.
pub const DEFAULT_PIPELINE_PATH: &str = ".labhit/pipeline.yaml";

/// The longest idempotency key the proto allows.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// The longest `repository`, `git_ref` or `pipeline_path` accepted.
pub const MAX_TEXT_FIELD: usize = 4096;

/// `INVALID_ARGUMENT` naming `field`.
pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("`{field}` {problem}"))
}

/// A required run id.
pub fn run_id(field: &str, text: &str) -> Result<RunId, Status> {
    if text.is_empty() {
        return Err(invalid(field, "is required: pass the id of a run (a UUID)"));
    }
    RunId::parse(text).map_err(|err| invalid(field, format_args!("is not a run id: {err}")))
}

/// A stage id (`^[a-z][a-z0-9_-]{0,62}$`).
pub fn stage_id(field: &str, text: &str) -> Result<StageId, Status> {
    if text.is_empty() {
        return Err(invalid(field, "is required: pass the id of a stage"));
    }
    StageId::new(text.to_owned())
        .map_err(|err| invalid(field, format_args!("is not a valid stage id: {err}")))
}

/// A required, bounded text field without NUL.
pub fn required_text<'a>(field: &str, text: &'a str) -> Result<&'a str, Status> {
    if text.is_empty() {
        return Err(invalid(field, "is required"));
    }
    if text.len() > MAX_TEXT_FIELD {
        return Err(invalid(
            field,
            format_args!(
                "is {} bytes long; the limit is {MAX_TEXT_FIELD}",
                text.len()
            ),
        ));
    }
    if text.contains('\0') {
        return Err(invalid(field, "contains a NUL character"));
    }
    Ok(text)
}

/// The pipeline path: relative, `/`-separated, no `..`, `.` or empty components.
pub fn pipeline_path(text: Option<&str>) -> Result<String, Status> {
    const FIELD: &str = "pipeline_path";
    let Some(text) = text else {
        return Ok(DEFAULT_PIPELINE_PATH.to_owned());
    };
    let text = required_text(FIELD, text)?;
    if text.starts_with('/') || text.contains('\\') || text.contains(':') {
        return Err(invalid(
            FIELD,
            format_args!(
                "`{text}` must be a path relative to the repository root with `/` separators"
            ),
        ));
    }
    if text
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid(
            FIELD,
            format_args!("`{text}` must not contain `..`, `.` or empty components"),
        ));
    }
    Ok(text.to_owned())
}

/// The optional idempotency key: 1 to 128 characters.
pub fn idempotency_key(key: Option<&str>) -> Result<Option<String>, Status> {
    const FIELD: &str = "idempotency_key";
    let Some(key) = key else { return Ok(None) };
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_IDEMPOTENCY_KEY {
        return Err(invalid(
            FIELD,
            format_args!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters long, not {chars}"),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The pre-approved stages: valid stage ids, sorted and without duplicates.
pub fn approved_stages(stages: &[String]) -> Result<Vec<StageId>, Status> {
    let mut out = Vec::with_capacity(stages.len());
    for (index, stage) in stages.iter().enumerate() {
        out.push(stage_id(&format!("approved_stages[{index}]"), stage)?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug, Status>) -> String {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_owned()
    }

    #[test]
    fn ids_name_their_field() {
        assert!(message(run_id("run_id", "")).starts_with("`run_id` is required"));
        assert!(message(run_id("run_id", "not-a-uuid")).starts_with("`run_id` is not a run id"));
        assert!(run_id("run_id", "0191b3c4-5d6e-7f80-91a2-b3c4d5e6f708").is_ok());
        assert!(message(stage_id("stage_id", "Build")).starts_with("`stage_id` is not a valid"));
        assert!(
            message(approved_stages(&["ok".into(), "No!".into()]))
                .starts_with("`approved_stages[1]`")
        );
    }

    #[test]
    fn pipeline_paths_stay_inside_the_repository() {
        assert_eq!(
            pipeline_path(None).ok().as_deref(),
            Some(DEFAULT_PIPELINE_PATH)
        );
        assert_eq!(
            pipeline_path(Some("ci/p.yaml")).ok().as_deref(),
            Some("ci/p.yaml")
        );
        for bad in [
            "/etc/passwd",
            "../x.yaml",
            "a/../../b",
            "a//b",
            "./a",
            "a\\b",
            "",
            "c:x",
        ] {
            assert!(
                message(pipeline_path(Some(bad))).starts_with("`pipeline_path`"),
                "{bad}"
            );
        }
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert_eq!(idempotency_key(None).ok(), Some(None));
        assert!(idempotency_key(Some(&"k".repeat(128))).is_ok());
        assert!(message(idempotency_key(Some(&"k".repeat(129)))).contains("not 129"));
        assert!(message(idempotency_key(Some(""))).contains("not 0"));
    }
}
