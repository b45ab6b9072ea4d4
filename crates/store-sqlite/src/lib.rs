//! The embedded store: one SQLite file in WAL mode. Writes go through a pool of
//! one connection and take the write lock up front (`BEGIN IMMEDIATE`), so two
//! writers never deadlock upgrading a read lock; reads use a pool of their own
//! and never wait for writers.

mod knowledge;
mod leader;
mod ops;
mod queue;
mod rows;
mod sql;
mod store;
mod vectors;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use steward_store::{StoreError, StoreResult};

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Live events: one process holds every subscriber of a SQLite store.
    live: tokio::sync::broadcast::Sender<steward_store::LiveEvent>,
    vectors: std::sync::Arc<vectors::VectorCache>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`).
    pub async fn connect(url: &str, readers: u32) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid SQLite URL: {e}")))?;
        Self::open(options, readers).await
    }

    /// Opens (creating if missing) the database file at `path`.
    pub async fn open_file(path: &Path, readers: u32) -> StoreResult<Self> {
        Self::open(SqliteConnectOptions::new().filename(path), readers).await
    }

    async fn open(options: SqliteConnectOptions, readers: u32) -> StoreResult<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await
            .map_err(map_err)?;
        let (live, _) = tokio::sync::broadcast::channel(steward_store::LIVE_BUFFER);
        Ok(Self {
            writer,
            reader,
            live,
            vectors: Default::default(),
        })
    }
}

pub(crate) fn map_err(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(err.to_string())
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(steward_store::Conflict::Duplicate)
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "5" || c == "6") => {
            // SQLITE_BUSY / SQLITE_LOCKED after the busy timeout.
            StoreError::Unavailable(db.message().to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}

pub(crate) fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Internal(format!("timestamp out of range: {micros}")))
}
