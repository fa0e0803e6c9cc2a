//! Conversions between the `labhit.v1` wire messages ([`crate::v1`]) and the run model of
//! `labhit-protocol` ([`labhit_protocol::run`]).
//!
//! Model to wire is infallible ([`From`], so [`TryFrom`] with [`std::convert::Infallible`]):
//! every model value has a wire form. Wire to model is [`TryFrom`] and checks what protobuf
//! cannot: ids are UUIDs, stage ids and artifact paths have their required form, required
//! timestamps are present and in range, and status enums are set and known. A failure is a
//! [`ConvertError`] naming the offending field by its path in the message
//! (`stages[1].artifacts[0].path`).
//!
//! `StageRun.approved_by` and `StageRun.approved_at` exist only on the wire: model to wire
//! leaves them unset (a server that records approvals fills them in, using [`timestamp`]),
//! and wire to model drops them.
//!
//! Two enums are lenient because the proto documents a meaning for their zero value:
//! `LOG_LEVEL_UNSPECIFIED` reads as [`LogLevel::Info`] and `LOG_STREAM_UNSPECIFIED` as
//! [`LogStream::Log`]. An unspecified run or stage status is an error.

use chrono::{DateTime, Utc};
use labhit_protocol::executor::{ArtifactPath, ArtifactPathError, ArtifactRef};
use labhit_protocol::ids::{ParseIdError, RunId};
use labhit_protocol::pipeline::{FormError, StageId};
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};
use prost_types::Timestamp;

use crate::v1;

/// The largest valid `Timestamp.nanos`.
const MAX_NANOS: u32 = 999_999_999;

/// A wire message that cannot be converted to the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {kind}")]
pub struct ConvertError {
    /// The path of the offending field within the converted message, such as
    /// `stages[1].status`; for a bare enum conversion, the proto enum's name (`RunStatus`).
    pub field: String,
    /// What is wrong with it.
    pub kind: ConvertErrorKind,
}

/// What is wrong with the field a [`ConvertError`] names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertErrorKind {
    /// A required message field (a timestamp) is not set.
    #[error("required field is not set")]
    Missing,
    /// An enum is at its `*_UNSPECIFIED` zero value where the contract requires a value.
    #[error("must not be `{0}`")]
    Unspecified(&'static str),
    /// An enum holds a number this version of the contract does not define.
    #[error("{value} is not a known `{enum_name}` value")]
    UnknownEnumValue {
        /// The proto enum's name.
        enum_name: &'static str,
        /// The number received.
        value: i32,
    },
    /// A timestamp outside the range `DateTime<Utc>` and protobuf both allow, or with
    /// `nanos` outside `0..=999_999_999`.
    #[error("timestamp {seconds}s + {nanos}ns is out of range")]
    TimestampOutOfRange {
        /// `Timestamp.seconds` as received.
        seconds: i64,
        /// `Timestamp.nanos` as received.
        nanos: i32,
    },
    /// A run id that is not a UUID.
    #[error(transparent)]
    RunId(#[from] ParseIdError),
    /// A stage id that does not match `^[a-z][a-z0-9_-]{0,62}$`.
    #[error(transparent)]
    StageId(#[from] FormError),
    /// An artifact path that is absolute, escapes the workspace or is malformed.
    #[error(transparent)]
    ArtifactPath(#[from] ArtifactPathError),
}

impl ConvertError {
    /// An error of `kind` at `field`.
    pub fn new(field: impl Into<String>, kind: ConvertErrorKind) -> Self {
        Self {
            field: field.into(),
            kind,
        }
    }

    /// Prefixes the field path with `parent` (`artifacts[0]` + `path` → `artifacts[0].path`).
    fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

impl From<ConvertError> for tonic::Status {
    /// `INVALID_ARGUMENT` with the error as message: what a server answers when a request
    /// field does not convert. (A server whose own stored data fails to convert should answer
    /// `INTERNAL` instead.)
    fn from(err: ConvertError) -> Self {
        tonic::Status::invalid_argument(err.to_string())
    }
}

/// Shorthand for the conversion result.
type Result<T, E = ConvertError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------
// Scalars: ids, timestamps

fn run_id(field: &str, text: &str) -> Result<RunId> {
    RunId::parse(text).map_err(|err| ConvertError::new(field, err.into()))
}

fn stage_id(field: &str, text: String) -> Result<StageId> {
    StageId::new(text).map_err(|err| ConvertError::new(field, err.into()))
}

/// Converts a model time to a protobuf `Timestamp`. A leap second (chrono's nanos of
/// `1_000_000_000..`) is clamped to the last nanosecond of the second before it.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    let nanos = at.timestamp_subsec_nanos().min(MAX_NANOS);
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(nanos).unwrap_or(i32::MAX),
    }
}

fn date_time(field: &str, at: Timestamp) -> Result<DateTime<Utc>> {
    let out_of_range = || {
        ConvertError::new(
            field,
            ConvertErrorKind::TimestampOutOfRange {
                seconds: at.seconds,
                nanos: at.nanos,
            },
        )
    };
    let nanos = u32::try_from(at.nanos)
        .ok()
        .filter(|nanos| *nanos <= MAX_NANOS)
        .ok_or_else(out_of_range)?;
    DateTime::from_timestamp(at.seconds, nanos).ok_or_else(out_of_range)
}

fn required_date_time(field: &str, at: Option<Timestamp>) -> Result<DateTime<Utc>> {
    let at = at.ok_or_else(|| ConvertError::new(field, ConvertErrorKind::Missing))?;
    date_time(field, at)
}

fn optional_date_time(field: &str, at: Option<Timestamp>) -> Result<Option<DateTime<Utc>>> {
    at.map(|at| date_time(field, at)).transpose()
}

// ---------------------------------------------------------------------------------------
// Enums

/// Defines `From<model> for wire` and `TryFrom<wire> for model` for a fieldless enum pair,
/// plus `$decode`, which reads the raw `i32` of a message field.
///
/// `unspecified` is what the wire's zero value means: an error, or a model variant.
macro_rules! enum_conversions {
    (
        $model:ident <=> $wire:ident, name = $name:literal, decode = $decode:ident,
        unspecified = $unspecified:expr,
        { $($variant:ident),+ $(,)? }
    ) => {
        impl From<$model> for v1::$wire {
            fn from(value: $model) -> Self {
                match value {
                    $($model::$variant => v1::$wire::$variant,)+
                }
            }
        }

        impl TryFrom<v1::$wire> for $model {
            type Error = ConvertError;

            fn try_from(value: v1::$wire) -> Result<Self> {
                $decode($name, value.into())
            }
        }

        /// Decodes the raw value of an enum field named `field`.
        fn $decode(field: &str, value: i32) -> Result<$model> {
            let unspecified: Result<$model, ConvertErrorKind> = $unspecified;
            match v1::$wire::try_from(value) {
                Ok(v1::$wire::Unspecified) => {
                    unspecified.map_err(|kind| ConvertError::new(field, kind))
                }
                $(Ok(v1::$wire::$variant) => Ok($model::$variant),)+
                Err(_) => Err(ConvertError::new(
                    field,
                    ConvertErrorKind::UnknownEnumValue { enum_name: $name, value },
                )),
            }
        }
    };
}

enum_conversions!(RunStatus <=> RunStatus, name = "RunStatus", decode = run_status,
    unspecified = Err(ConvertErrorKind::Unspecified("RUN_STATUS_UNSPECIFIED")),
    { Queued, Running, Succeeded, Failed, Cancelled }
);

enum_conversions!(StageStatus <=> StageStatus, name = "StageStatus", decode = stage_status,
    unspecified = Err(ConvertErrorKind::Unspecified("STAGE_STATUS_UNSPECIFIED")),
    {
        Queued, WaitingForApproval, Running, Succeeded, Failed, Skipped, Cached, Cancelled,
        Denied,
    }
);

enum_conversions!(LogLevel <=> LogLevel, name = "LogLevel", decode = log_level,
    unspecified = Ok(LogLevel::Info),
    { Trace, Debug, Info, Warn, Error }
);

enum_conversions!(LogStream <=> LogStream, name = "LogStream", decode = log_stream,
    unspecified = Ok(LogStream::Log),
    { Log, Stdout, Stderr, System }
);

// ---------------------------------------------------------------------------------------
// Messages

/// Converts every item of a repeated field, naming a failing item `field[index]`.
fn each<W, M>(field: &str, items: Vec<W>) -> Result<Vec<M>>
where
    M: TryFrom<W, Error = ConvertError>,
{
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            M::try_from(item).map_err(|err| err.within(&format!("{field}[{index}]")))
        })
        .collect()
}

impl From<ArtifactRef> for v1::ArtifactRef {
    fn from(artifact: ArtifactRef) -> Self {
        Self {
            path: artifact.path.as_str().to_owned(),
            mime: artifact.mime,
            size_bytes: artifact.size_bytes,
        }
    }
}

impl TryFrom<v1::ArtifactRef> for ArtifactRef {
    type Error = ConvertError;

    fn try_from(artifact: v1::ArtifactRef) -> Result<Self> {
        Ok(Self {
            path: ArtifactPath::new(artifact.path)
                .map_err(|err| ConvertError::new("path", err.into()))?,
            mime: artifact.mime,
            size_bytes: artifact.size_bytes,
        })
    }
}

impl From<StageRun> for v1::StageRun {
    fn from(stage: StageRun) -> Self {
        Self {
            stage_id: stage.stage.as_str().to_owned(),
            status: v1::StageStatus::from(stage.status).into(),
            started_at: stage.started_at.map(timestamp),
            finished_at: stage.finished_at.map(timestamp),
            exit_code: stage.exit_code,
            reason: stage.reason,
            outputs: stage.outputs,
            artifacts: stage.artifacts.into_iter().map(Into::into).collect(),
            // Proto-only approval facts: the model does not carry them; a server that
            // records approvals sets them after converting.
            approved_by: None,
            approved_at: None,
        }
    }
}

impl TryFrom<v1::StageRun> for StageRun {
    type Error = ConvertError;

    fn try_from(stage: v1::StageRun) -> Result<Self> {
        Ok(Self {
            stage: stage_id("stage_id", stage.stage_id)?,
            status: stage_status("status", stage.status)?,
            started_at: optional_date_time("started_at", stage.started_at)?,
            finished_at: optional_date_time("finished_at", stage.finished_at)?,
            exit_code: stage.exit_code,
            reason: stage.reason,
            outputs: stage.outputs,
            artifacts: each("artifacts", stage.artifacts)?,
        })
    }
}

impl From<PipelineRun> for v1::PipelineRun {
    fn from(run: PipelineRun) -> Self {
        Self {
            id: run.id.to_string(),
            pipeline_name: run.pipeline,
            repository: run.repository,
            git_ref: run.git_ref,
            commit: run.commit,
            status: v1::RunStatus::from(run.status).into(),
            created_at: Some(timestamp(run.created_at)),
            started_at: run.started_at.map(timestamp),
            finished_at: run.finished_at.map(timestamp),
            stages: run.stages.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<v1::PipelineRun> for PipelineRun {
    type Error = ConvertError;

    fn try_from(run: v1::PipelineRun) -> Result<Self> {
        Ok(Self {
            id: run_id("id", &run.id)?,
            pipeline: run.pipeline_name,
            repository: run.repository,
            git_ref: run.git_ref,
            commit: run.commit,
            status: run_status("status", run.status)?,
            created_at: required_date_time("created_at", run.created_at)?,
            started_at: optional_date_time("started_at", run.started_at)?,
            finished_at: optional_date_time("finished_at", run.finished_at)?,
            stages: each("stages", run.stages)?,
        })
    }
}

impl From<LogEntry> for v1::LogEntry {
    fn from(entry: LogEntry) -> Self {
        Self {
            run_id: entry.run_id.to_string(),
            sequence: entry.sequence,
            stage_id: entry.stage.map(|stage| stage.as_str().to_owned()),
            level: v1::LogLevel::from(entry.level).into(),
            stream: v1::LogStream::from(entry.stream).into(),
            timestamp: Some(timestamp(entry.timestamp)),
            message: entry.message,
            fields: entry.fields,
        }
    }
}

impl TryFrom<v1::LogEntry> for LogEntry {
    type Error = ConvertError;

    fn try_from(entry: v1::LogEntry) -> Result<Self> {
        Ok(Self {
            run_id: run_id("run_id", &entry.run_id)?,
            sequence: entry.sequence,
            stage: entry
                .stage_id
                .map(|stage| stage_id("stage_id", stage))
                .transpose()?,
            level: log_level("level", entry.level)?,
            stream: log_stream("stream", entry.stream)?,
            timestamp: required_date_time("timestamp", entry.timestamp)?,
            message: entry.message,
            fields: entry.fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_round_trip<M, W>(model: M)
    where
        M: Clone + PartialEq + std::fmt::Debug + Into<W> + TryFrom<W, Error = ConvertError>,
    {
        let wire: W = model.clone().into();
        assert_eq!(M::try_from(wire), Ok(model));
    }

    /// Converts `wire` and returns the error's field path and message.
    fn check_error<W, M>(wire: W) -> (String, String)
    where
        M: TryFrom<W, Error = ConvertError> + std::fmt::Debug,
    {
        match M::try_from(wire) {
            Ok(model) => panic!("expected a conversion error, got {model:?}"),
            Err(err) => (err.field.clone(), err.to_string()),
        }
    }

    fn wire_run() -> v1::PipelineRun {
        PipelineRun::example().into()
    }

    fn wire_entry() -> v1::LogEntry {
        LogEntry::example().into()
    }

    #[test]
    fn examples_round_trip() {
        check_round_trip::<_, v1::PipelineRun>(PipelineRun::example());
        check_round_trip::<_, v1::StageRun>(StageRun::example());
        check_round_trip::<_, v1::ArtifactRef>(ArtifactRef::example());
        check_round_trip::<_, v1::LogEntry>(LogEntry::example());
    }

    #[test]
    fn every_variant_round_trips() {
        for &status in RunStatus::ALL {
            check_round_trip::<_, v1::RunStatus>(status);
        }
        for &status in StageStatus::ALL {
            check_round_trip::<_, v1::StageStatus>(status);
        }
        for &level in LogLevel::ALL {
            check_round_trip::<_, v1::LogLevel>(level);
        }
        for &stream in LogStream::ALL {
            check_round_trip::<_, v1::LogStream>(stream);
        }
    }

    #[test]
    fn sparse_values_round_trip() {
        let mut run = PipelineRun::example();
        run.commit = None;
        run.started_at = None;
        run.finished_at = None;
        run.stages = vec![StageRun::queued(StageId::new("deploy").expect("valid id"))];
        check_round_trip::<_, v1::PipelineRun>(run);

        let mut entry = LogEntry::example();
        entry.stage = None;
        entry.fields.insert("step".to_owned(), "compile".to_owned());
        check_round_trip::<_, v1::LogEntry>(entry);
    }

    #[test]
    fn wire_fields_carry_the_model_values() {
        let run = wire_run();
        assert_eq!(run.id, "0b7c6a1e-3f52-4c8e-9d4a-5b6f7e8d9c0a");
        assert_eq!(run.status(), v1::RunStatus::Running);
        assert_eq!(
            run.created_at,
            Some(Timestamp {
                seconds: 1_740_830_400,
                nanos: 0
            })
        );
        assert_eq!(run.stages[0].stage_id, "build");
        assert_eq!(run.stages[0].status(), v1::StageStatus::Succeeded);
        assert_eq!(run.stages[0].artifacts[0].path, "target/release/app.tar.gz");
        let entry = wire_entry();
        assert_eq!(entry.sequence, 42);
        assert_eq!(entry.level(), v1::LogLevel::Info);
        assert_eq!(entry.stream(), v1::LogStream::Stdout);
    }

    #[test]
    fn bad_run_id() {
        let mut run = wire_run();
        run.id = "not-a-uuid".to_owned();
        let (field, message) = check_error::<_, PipelineRun>(run);
        assert_eq!(field, "id");
        assert!(
            message.starts_with("`id`: `not-a-uuid` is not a valid run id"),
            "{message}"
        );

        let mut entry = wire_entry();
        entry.run_id = String::new();
        assert_eq!(check_error::<_, LogEntry>(entry).0, "run_id");
    }

    #[test]
    fn bad_stage_id() {
        let mut run = wire_run();
        run.stages[0].stage_id = "Build".to_owned();
        let (field, message) = check_error::<_, PipelineRun>(run);
        assert_eq!(field, "stages[0].stage_id");
        assert_eq!(
            message,
            "`stages[0].stage_id`: `Build` is not a valid stage id (expected ^[a-z][a-z0-9_-]{0,62}$)"
        );

        let mut entry = wire_entry();
        entry.stage_id = Some("no spaces".to_owned());
        assert_eq!(check_error::<_, LogEntry>(entry).0, "stage_id");
    }

    #[test]
    fn bad_artifact_path() {
        let mut run = wire_run();
        run.stages[0].artifacts[0].path = "../escape".to_owned();
        let (field, message) = check_error::<_, PipelineRun>(run);
        assert_eq!(field, "stages[0].artifacts[0].path");
        assert!(message.contains("`..` component"), "{message}");
    }

    #[test]
    fn unspecified_status() {
        let mut run = wire_run();
        run.status = v1::RunStatus::Unspecified.into();
        assert_eq!(
            check_error::<_, PipelineRun>(run).1,
            "`status`: must not be `RUN_STATUS_UNSPECIFIED`"
        );

        let mut run = wire_run();
        run.stages[0].status = v1::StageStatus::Unspecified.into();
        assert_eq!(
            check_error::<_, PipelineRun>(run).1,
            "`stages[0].status`: must not be `STAGE_STATUS_UNSPECIFIED`"
        );

        assert_eq!(
            check_error::<_, RunStatus>(v1::RunStatus::Unspecified).1,
            "`RunStatus`: must not be `RUN_STATUS_UNSPECIFIED`"
        );
    }

    #[test]
    fn unknown_enum_value() {
        let mut run = wire_run();
        run.status = 42;
        assert_eq!(
            check_error::<_, PipelineRun>(run).1,
            "`status`: 42 is not a known `RunStatus` value"
        );

        let mut entry = wire_entry();
        entry.stream = -1;
        assert_eq!(
            check_error::<_, LogEntry>(entry).1,
            "`stream`: -1 is not a known `LogStream` value"
        );
    }

    #[test]
    fn unspecified_log_level_and_stream_have_defaults() {
        let mut entry = wire_entry();
        entry.level = v1::LogLevel::Unspecified.into();
        entry.stream = v1::LogStream::Unspecified.into();
        let entry = LogEntry::try_from(entry).expect("lenient enums");
        assert_eq!(entry.level, LogLevel::Info);
        assert_eq!(entry.stream, LogStream::Log);
    }

    #[test]
    fn missing_timestamp() {
        let mut run = wire_run();
        run.created_at = None;
        assert_eq!(
            check_error::<_, PipelineRun>(run).1,
            "`created_at`: required field is not set"
        );

        let mut entry = wire_entry();
        entry.timestamp = None;
        assert_eq!(check_error::<_, LogEntry>(entry).0, "timestamp");
    }

    #[test]
    fn timestamp_out_of_range() {
        let mut run = wire_run();
        run.stages[0].finished_at = Some(Timestamp {
            seconds: 0,
            nanos: -1,
        });
        assert_eq!(
            check_error::<_, PipelineRun>(run).1,
            "`stages[0].finished_at`: timestamp 0s + -1ns is out of range"
        );

        for nanos in [1_000_000_000, i32::MAX] {
            let mut run = wire_run();
            run.started_at = Some(Timestamp { seconds: 0, nanos });
            assert_eq!(check_error::<_, PipelineRun>(run).0, "started_at");
        }

        let mut entry = wire_entry();
        entry.timestamp = Some(Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        });
        assert_eq!(check_error::<_, LogEntry>(entry).0, "timestamp");
    }

    #[test]
    fn leap_second_is_clamped() {
        let leap = DateTime::from_timestamp(1_483_228_799, 1_500_000_000).expect("leap second");
        assert_eq!(
            timestamp(leap),
            Timestamp {
                seconds: 1_483_228_799,
                nanos: 999_999_999
            }
        );
    }

    #[test]
    fn errors_become_invalid_argument() {
        let err = ConvertError::new("run_id", ConvertErrorKind::Missing);
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "`run_id`: required field is not set");
    }
}
