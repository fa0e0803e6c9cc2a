//! The database schema and its versioned migrations.
//!
//! The schema version lives in SQLite's `user_version`; `application_id` marks the file as a
//! labhit run store. [`MIGRATIONS`] lists the steps in order: step `i` migrates from version
//! `i` to `i + 1`, and each step runs in its own transaction together with the version bump,
//! so a crash mid-migration leaves the previous version intact. A database whose version is
//! newer than the code knows is refused, never modified.
//!
//! Steps are only ever appended; a released step is never edited.

use std::path::Path;

use rusqlite::Connection;

use super::error::{Result, StoreError};

/// `application_id` of a labhit run store: the ASCII bytes `LbHt`.
pub(crate) const APPLICATION_ID: i32 = 0x4c62_4874;

/// One migration step: the SQL that brings the schema from the previous version to the next.
pub(crate) struct Migration {
    /// What the step does, for humans.
    #[allow(dead_code)]
    pub(crate) summary: &'static str,
    /// The statements, run in one transaction.
    pub(crate) sql: &'static str,
}

/// The migration steps in order; the schema version is the number of steps applied.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    summary: "runs, stages (with approvals) and log entries",
    sql: r#"
        -- `seq` orders runs by creation (newest first = highest seq) and keys the child tables.
        CREATE TABLE runs (
            seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
            id                  TEXT    NOT NULL UNIQUE,
            repository          TEXT    NOT NULL,
            git_ref             TEXT    NOT NULL,
            commit_id           TEXT,
            pipeline_path       TEXT    NOT NULL,
            pipeline_name       TEXT    NOT NULL,
            status              TEXT    NOT NULL,
            created_at          INTEGER NOT NULL,
            started_at          INTEGER,
            finished_at         INTEGER,
            idempotency_key     TEXT    UNIQUE,
            request_fingerprint TEXT,
            -- entries dropped past the log cap so far; the count is kept in the same
            -- transaction as the entries, so it survives a crash
            log_dropped         INTEGER NOT NULL DEFAULT 0,
            -- 1 once the run ended and its log is complete
            log_closed          INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX runs_by_repository ON runs (repository, seq);
        CREATE INDEX runs_by_status ON runs (status, seq);

        CREATE TABLE stages (
            run_seq     INTEGER NOT NULL REFERENCES runs (seq),
            position    INTEGER NOT NULL,
            stage_id    TEXT    NOT NULL,
            status      TEXT    NOT NULL,
            started_at  INTEGER,
            finished_at INTEGER,
            exit_code   INTEGER,
            reason      TEXT,
            outputs     TEXT    NOT NULL DEFAULT '{}',
            artifacts   TEXT    NOT NULL DEFAULT '[]',
            approved_by TEXT,
            approved_at INTEGER,
            PRIMARY KEY (run_seq, stage_id)
        ) WITHOUT ROWID;

        -- sequences are gapless per run from 0; rows are never updated or deleted
        CREATE TABLE log_entries (
            run_seq  INTEGER NOT NULL,
            sequence INTEGER NOT NULL,
            stage_id TEXT,
            level    TEXT    NOT NULL,
            stream   TEXT    NOT NULL,
            ts       INTEGER NOT NULL,
            message  TEXT    NOT NULL,
            fields   TEXT,
            PRIMARY KEY (run_seq, sequence)
        ) WITHOUT ROWID;
    "#,
}];

/// Brings the database at `path` (opened as `conn`) up to the version of `steps`, refusing a
/// file of another application or of a newer schema. Returns the version found before.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, steps: &[Migration]) -> Result<i64> {
    let supported = steps.len() as i64;
    let read = |conn: &Connection, pragma: &str| -> Result<i64> {
        conn.query_row(&format!("PRAGMA {pragma}"), [], |row| row.get(0))
            .map_err(StoreError::sqlite("reading the schema version"))
    };
    let app = read(conn, "application_id")?;
    let found = read(conn, "user_version")?;
    if app != 0 && app != i64::from(APPLICATION_ID) {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            found: app as i32,
        });
    }
    if app == 0 {
        // A file without our id is only adopted when it is empty (a fresh database).
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(StoreError::sqlite("inspecting a new database"))?;
        if tables != 0 || found != 0 {
            return Err(StoreError::NotAStore {
                path: path.to_owned(),
                found: 0,
            });
        }
    }
    if found > supported {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    for (index, step) in steps.iter().enumerate().skip(found.max(0) as usize) {
        let version = index as i64 + 1;
        let failed = |source| StoreError::Migration {
            path: path.to_owned(),
            version,
            source,
        };
        let tx = conn.transaction().map_err(failed)?;
        tx.execute_batch(step.sql).map_err(failed)?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {version};"
        ))
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[Migration] = &[
        Migration {
            summary: "one",
            sql: "CREATE TABLE a (x INTEGER);",
        },
        Migration {
            summary: "two",
            sql: "ALTER TABLE a ADD COLUMN y TEXT;",
        },
    ];

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_fresh_database_gets_every_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn, &path, STEPS).unwrap(), 0);
        assert_eq!(version(&conn), 2);
        conn.execute("INSERT INTO a (x, y) VALUES (1, 'b')", [])
            .unwrap();
    }

    #[test]
    fn an_older_database_gets_only_the_missing_steps_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &STEPS[..1]).unwrap();
        conn.execute("INSERT INTO a (x) VALUES (7)", []).unwrap();
        assert_eq!(migrate(&mut conn, &path, STEPS).unwrap(), 1);
        assert_eq!(version(&conn), 2);
        let (x, y): (i64, Option<String>) = conn
            .query_row("SELECT x, y FROM a", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!((x, y), (7, None));
        // Migrating again is a no-op.
        assert_eq!(migrate(&mut conn, &path, STEPS).unwrap(), 2);
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, STEPS).unwrap();
        let err = migrate(&mut conn, &path, &STEPS[..1]).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade labhit"), "{err}");
        assert_eq!(version(&conn), 2);
    }

    #[test]
    fn a_failing_step_leaves_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        let broken = [
            Migration {
                summary: "one",
                sql: STEPS[0].sql,
            },
            Migration {
                summary: "bad",
                sql: "CREATE TABLE b (z); SELECT * FROM nowhere;",
            },
        ];
        let err = migrate(&mut conn, &path, &broken).unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version: 2, .. }),
            "{err}"
        );
        assert_eq!(version(&conn), 1);
        let b: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(b, 0, "the failed step was rolled back");
    }

    #[test]
    fn a_foreign_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE other (x);").unwrap();
        let err = migrate(&mut conn, &path, STEPS).unwrap_err();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
        conn.execute_batch("PRAGMA application_id = 42;").unwrap();
        let err = migrate(&mut conn, &path, STEPS).unwrap_err();
        assert!(err.to_string().contains("not a labhit run store"), "{err}");
    }
}
