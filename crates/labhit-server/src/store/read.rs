//! Queries: the run, its stages and approvals, pages of runs, batches of log entries, and the
//! conversions between columns and the `labhit_protocol::run` types.
//!
//! Every function takes a plain connection (a reader's, or the writer's inside its
//! transaction). Readers only ever see committed data: they are separate connections and
//! SQLite's WAL gives each read transaction one committed snapshot.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use labhit_protocol::executor::ArtifactRef;
use labhit_protocol::forms::StageId;
use labhit_protocol::ids::RunId;
use labhit_protocol::run::{
    LogEntry, LogLevel, LogStream, PipelineRun, RunStatus, StageRun, StageStatus,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::error::{Result, StoreError};
use super::model::{Approval, LogBatch, LogState, RunFilter, RunPage, RunRecord};

/// Timestamps are stored as integer nanoseconds since the Unix epoch (UTC).
pub(crate) fn to_nanos(at: DateTime<Utc>) -> Result<i64> {
    at.timestamp_nanos_opt()
        .ok_or(StoreError::TimestampOutOfRange { at })
}

/// The inverse of [`to_nanos`].
pub(crate) fn from_nanos(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

fn opt_time(nanos: Option<i64>) -> Option<DateTime<Utc>> {
    nanos.map(from_nanos)
}

/// Parses a stored enum spelling.
fn parse<T: FromStr>(what: &'static str, text: &str) -> Result<T> {
    text.parse().map_err(|_| StoreError::Corrupt {
        what,
        detail: format!("unknown value `{text}`"),
    })
}

fn stage_id(text: &str) -> Result<StageId> {
    StageId::new(text).map_err(|e| StoreError::Corrupt {
        what: "stage id",
        detail: e.to_string(),
    })
}

/// Parses a stored run id.
pub(crate) fn run_id(text: &str) -> Result<RunId> {
    RunId::parse(text).map_err(|e| StoreError::Corrupt {
        what: "run id",
        detail: e.to_string(),
    })
}

fn json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// The columns of `runs` every run query selects, in this order.
const RUN_COLUMNS: &str = "seq, id, pipeline_name, repository, git_ref, commit_id, status, \
     created_at, started_at, finished_at, pipeline_path, idempotency_key, log_dropped, log_closed";

/// A `runs` row before its stages are attached.
struct RunRow {
    seq: i64,
    run: PipelineRun,
    pipeline_path: String,
    idempotency_key: Option<String>,
    dropped: u64,
    closed: bool,
}

/// The raw columns of a `runs` row.
struct RawRun {
    seq: i64,
    id: String,
    pipeline: String,
    repository: String,
    git_ref: String,
    commit: Option<String>,
    status: String,
    created: i64,
    started: Option<i64>,
    finished: Option<i64>,
    pipeline_path: String,
    key: Option<String>,
    dropped: i64,
    closed: bool,
}

fn run_row(row: &Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        seq: row.get(0)?,
        id: row.get(1)?,
        pipeline: row.get(2)?,
        repository: row.get(3)?,
        git_ref: row.get(4)?,
        commit: row.get(5)?,
        status: row.get(6)?,
        created: row.get(7)?,
        started: row.get(8)?,
        finished: row.get(9)?,
        pipeline_path: row.get(10)?,
        key: row.get(11)?,
        dropped: row.get(12)?,
        closed: row.get(13)?,
    })
}

fn decode_run(raw: RawRun) -> Result<RunRow> {
    Ok(RunRow {
        seq: raw.seq,
        run: PipelineRun {
            id: run_id(&raw.id)?,
            pipeline: raw.pipeline,
            repository: raw.repository,
            git_ref: raw.git_ref,
            commit: raw.commit,
            status: parse("run status", &raw.status)?,
            created_at: from_nanos(raw.created),
            started_at: opt_time(raw.started),
            finished_at: opt_time(raw.finished),
            stages: Vec::new(),
        },
        pipeline_path: raw.pipeline_path,
        idempotency_key: raw.key,
        dropped: u64::try_from(raw.dropped).unwrap_or(0),
        closed: raw.closed,
    })
}

/// The stages of run `seq` in their topological order, with their approvals.
fn stages(conn: &Connection, seq: i64) -> Result<(Vec<StageRun>, BTreeMap<StageId, Approval>)> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT stage_id, status, started_at, finished_at, exit_code, reason, outputs, \
             artifacts, approved_by, approved_at FROM stages WHERE run_seq = ?1 ORDER BY position",
        )
        .map_err(StoreError::sqlite("reading stages"))?;
    let rows = stmt
        .query_map([seq], |row| {
            Ok((
                [
                    row.get::<_, String>(0)?,
                    row.get(1)?,
                    row.get(6)?,
                    row.get(7)?,
                ],
                [row.get::<_, Option<i64>>(2)?, row.get(3)?, row.get(9)?],
                row.get::<_, Option<i32>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(8)?,
            ))
        })
        .map_err(StoreError::sqlite("reading stages"))?;
    let mut out = Vec::new();
    let mut approvals = BTreeMap::new();
    for row in rows {
        let (
            [id, status, outputs, artifacts],
            [started, finished, approved_at],
            exit_code,
            reason,
            approved_by,
        ) = row.map_err(StoreError::sqlite("reading stages"))?;
        let stage = stage_id(&id)?;
        if let (Some(by), Some(at)) = (approved_by, approved_at) {
            approvals.insert(
                stage.clone(),
                Approval {
                    by,
                    at: from_nanos(at),
                },
            );
        }
        out.push(StageRun {
            stage,
            status: parse::<StageStatus>("stage status", &status)?,
            started_at: opt_time(started),
            finished_at: opt_time(finished),
            exit_code,
            reason,
            outputs: json::<BTreeMap<String, String>>("stage outputs", &outputs)?,
            artifacts: json::<Vec<ArtifactRef>>("stage artifacts", &artifacts)?,
        });
    }
    Ok((out, approvals))
}

/// The next sequence of run `seq`: one past its highest committed entry.
pub(crate) fn next_sequence(conn: &Connection, seq: i64) -> Result<u64> {
    let max: Option<i64> = conn
        .prepare_cached("SELECT max(sequence) FROM log_entries WHERE run_seq = ?1")
        .and_then(|mut s| s.query_row([seq], |row| row.get(0)))
        .map_err(StoreError::sqlite("reading the log length"))?;
    Ok(max.map_or(0, |m| m as u64 + 1))
}

fn find_row(conn: &Connection, clause: &str, value: &str) -> Result<Option<RunRow>> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE {clause} = ?1"
    ))
    .and_then(|mut s| s.query_row([value], run_row).optional())
    .map_err(StoreError::sqlite("reading a run"))?
    .map(decode_run)
    .transpose()
}

fn record(conn: &Connection, row: RunRow) -> Result<RunRecord> {
    let (stages, approvals) = stages(conn, row.seq)?;
    let next_sequence = next_sequence(conn, row.seq)?;
    let mut run = row.run;
    run.stages = stages;
    Ok(RunRecord {
        run,
        pipeline_path: row.pipeline_path,
        approvals,
        idempotency_key: row.idempotency_key,
        log: LogState {
            next_sequence,
            dropped: row.dropped,
            closed: row.closed,
        },
    })
}

/// The run `id` with its stages, approvals and log state; `None` if there is no such run.
pub(crate) fn run(conn: &Connection, id: RunId) -> Result<Option<RunRecord>> {
    match find_row(conn, "id", &id.to_string())? {
        Some(row) => record(conn, row).map(Some),
        None => Ok(None),
    }
}

/// The run created with idempotency key `key` and the fingerprint recorded with it.
pub(crate) fn run_by_key(conn: &Connection, key: &str) -> Result<Option<(RunRecord, String)>> {
    let Some(row) = find_row(conn, "idempotency_key", key)? else {
        return Ok(None);
    };
    let fingerprint: Option<String> = conn
        .query_row(
            "SELECT request_fingerprint FROM runs WHERE seq = ?1",
            [row.seq],
            |r| r.get(0),
        )
        .map_err(StoreError::sqlite("reading an idempotency key"))?;
    Ok(Some((record(conn, row)?, fingerprint.unwrap_or_default())))
}

/// The internal key (`runs.seq`) and status of run `id`.
pub(crate) fn run_key(conn: &Connection, id: RunId) -> Result<Option<(i64, RunStatus, bool)>> {
    let found: Option<(i64, String, bool)> = conn
        .prepare_cached("SELECT seq, status, log_closed FROM runs WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(StoreError::sqlite("reading a run"))?;
    found
        .map(|(seq, status, closed)| Ok((seq, parse("run status", &status)?, closed)))
        .transpose()
}

/// A cheap, stable hash of a filter, so a page token is only accepted with its own filter.
fn filter_hash(filter: &RunFilter) -> u64 {
    let mut statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!("{:?}|{}", filter.repository, statuses.join(","));
    for byte in text.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Page tokens: hex of `v1:<seq>:<filter hash>`. `seq` is the creation order of the last run
/// returned; runs created later have higher `seq`, so a token stays valid (and the pages
/// stay disjoint and complete) while new runs arrive.
fn encode_token(seq: i64, filter: &RunFilter) -> String {
    format!("v1:{seq}:{:016x}", filter_hash(filter))
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_token(token: &str, filter: &RunFilter) -> Result<i64> {
    let invalid = |reason| StoreError::InvalidPageToken {
        token: token.to_owned(),
        reason,
    };
    if !token.len().is_multiple_of(2) || token.len() > 128 {
        return Err(invalid("it was not issued by this server"));
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let text = bytes
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(invalid("it was not issued by this server"))?;
    let mut parts = text.split(':');
    let (Some("v1"), Some(seq), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("it was not issued by this server"));
    };
    let seq: i64 = seq
        .parse()
        .map_err(|_| invalid("it was not issued by this server"))?;
    if hash != format!("{:016x}", filter_hash(filter)) {
        return Err(invalid(
            "it was issued for a different repository or status filter",
        ));
    }
    Ok(seq)
}

/// One page of runs matching `filter`, newest first, after the run `page_token` points at.
pub(crate) fn list_runs(
    conn: &Connection,
    filter: &RunFilter,
    page_size: usize,
    page_token: Option<&str>,
) -> Result<RunPage> {
    let before = page_token
        .map(|t| decode_token(t, filter))
        .transpose()?
        .unwrap_or(i64::MAX);
    let page_size = page_size.max(1);
    let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE seq < ?1");
    let mut args: Vec<rusqlite::types::Value> = vec![before.into()];
    if let Some(repository) = &filter.repository {
        args.push(repository.clone().into());
        sql.push_str(&format!(" AND repository = ?{}", args.len()));
    }
    if !filter.statuses.is_empty() {
        let mut marks = Vec::new();
        for status in &filter.statuses {
            args.push(status.as_str().to_owned().into());
            marks.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND status IN ({})", marks.join(", ")));
    }
    args.push(i64::try_from(page_size + 1).unwrap_or(i64::MAX).into());
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{}", args.len()));
    let rows: Vec<RawRun> = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(rusqlite::params_from_iter(args), run_row)?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(StoreError::sqlite("listing runs"))?;
    let more = rows.len() > page_size;
    let mut runs = Vec::with_capacity(page_size);
    let mut last = None;
    for raw in rows.into_iter().take(page_size) {
        let row = decode_run(raw)?;
        last = Some(row.seq);
        runs.push(record(conn, row)?);
    }
    let next_page_token = match (more, last) {
        (true, Some(seq)) => Some(encode_token(seq, filter)),
        _ => None,
    };
    Ok(RunPage {
        runs,
        next_page_token,
    })
}

/// Up to `limit` committed entries of run `id` from `cursor` on (of `stage` only, if given).
pub(crate) fn read_logs(
    conn: &Connection,
    id: RunId,
    cursor: u64,
    stage: Option<&StageId>,
    limit: usize,
) -> Result<LogBatch> {
    let row = find_row(conn, "id", &id.to_string())?.ok_or(StoreError::RunNotFound { run: id })?;
    let next = next_sequence(conn, row.seq)?;
    let log = LogState {
        next_sequence: next,
        dropped: row.dropped,
        closed: row.closed,
    };
    if cursor > next {
        return Err(StoreError::CursorOutOfRange {
            run: id,
            cursor,
            next_sequence: next,
        });
    }
    let limit = limit.max(1) as u64;
    // Without a filter the log is gapless, so the window is exactly `limit` entries; with a
    // filter a bounded window is scanned so that one call never walks the whole log.
    let window = if stage.is_some() {
        limit.saturating_mul(16).max(4096)
    } else {
        limit
    };
    let end = cursor.saturating_add(window).min(next);
    let map = |row: &Row<'_>| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, Option<String>>(1)?,
            [row.get::<_, String>(2)?, row.get(3)?, row.get(5)?],
            row.get::<_, i64>(4)?,
            row.get::<_, Option<String>>(6)?,
        ))
    };
    const COLUMNS: &str = "sequence, stage_id, level, stream, ts, message, fields";
    let raw: Vec<_> = match stage {
        None => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM log_entries WHERE run_seq = ?1 AND sequence >= ?2 \
                 AND sequence < ?3 ORDER BY sequence"
            ))
            .and_then(|mut s| {
                s.query_map(params![row.seq, cursor as i64, end as i64], map)?
                    .collect::<rusqlite::Result<_>>()
            }),
        Some(stage) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM log_entries WHERE run_seq = ?1 AND sequence >= ?2 \
                 AND sequence < ?3 AND stage_id = ?4 ORDER BY sequence LIMIT ?5"
            ))
            .and_then(|mut s| {
                s.query_map(
                    params![
                        row.seq,
                        cursor as i64,
                        end as i64,
                        stage.as_str(),
                        limit as i64
                    ],
                    map,
                )?
                .collect::<rusqlite::Result<_>>()
            }),
    }
    .map_err(StoreError::sqlite("reading log entries"))?;
    let full = raw.len() as u64 == limit;
    let mut entries = Vec::with_capacity(raw.len());
    for (sequence, stage_text, [level, stream, message], ts, fields) in raw {
        entries.push(LogEntry {
            run_id: id,
            sequence: sequence as u64,
            stage: stage_text.as_deref().map(stage_id).transpose()?,
            level: parse::<LogLevel>("log level", &level)?,
            stream: parse::<LogStream>("log stream", &stream)?,
            timestamp: from_nanos(ts),
            message,
            fields: match fields {
                Some(text) => json("log entry fields", &text)?,
                None => BTreeMap::new(),
            },
        });
    }
    let next_cursor = match (stage, entries.last()) {
        (Some(_), Some(last)) if full => last.sequence + 1,
        _ => end,
    };
    Ok(LogBatch {
        entries,
        next_cursor,
        log,
    })
}
