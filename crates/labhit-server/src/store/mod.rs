//! The durable run store (SQLite, WAL, one writer with group commit).
