//! The embedded store: one SQLite file in WAL mode. Writes go through a pool of
//! one connection and take the write lock up front (`BEGIN IMMEDIATE`), so two
//! writers never deadlock upgrading a read lock; reads use a pool of their own
//! and never wait for writers. The write-ahead log is copied into the
//! database by a connection of its own (see [`checkpoint_in_background`]).

mod knowledge;
mod leader;
mod ops;
mod queue;
mod rows;
mod sql;
mod store;
mod vectors;
mod words;

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
    /// The connection that copies the write-ahead log into the database,
    /// and its task, stopped with the store.
    checkpointer: SqlitePool,
    checkpointing: AbortOnDrop,
}

/// How often the write-ahead log is copied into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The log's length (pages of 4 KiB) at which the writer copies it itself.
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
            .busy_timeout(Duration::from_secs(5))
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string());
        // A file does not drop a connection: no check (a round trip to the
        // connection's thread) each time one is handed out.
        let pool = |size: u32| {
            SqlitePoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire(false)
        };
        let writer = pool(1)
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        let reader = pool(readers.max(1))
            .connect_with(options.clone().read_only(true))
            .await
            .map_err(map_err)?;
        let checkpointer = pool(1).connect_with(options).await.map_err(map_err)?;
        let (live, _) = tokio::sync::broadcast::channel(steward_store::LIVE_BUFFER);
        Ok(Self {
            writer,
            reader,
            live,
            vectors: Default::default(),
            checkpointing: AbortOnDrop(tokio::spawn(checkpoint_in_background(
                checkpointer.clone(),
            ))),
            checkpointer,
        })
    }
}

/// Copies the write-ahead log into the database file every
/// `CHECKPOINT_EVERY`, from a connection of its own and without the write
/// lock (a PASSIVE checkpoint), so that the one writer connection seldom
/// does it inside a commit, where its copying and syncing kept every write
/// behind it waiting (at SQLite's default of 1,000 pages, it was most of
/// the slowest memory writes in docs/PERFORMANCE.md). The writer still
/// checkpoints at `WRITER_CHECKPOINT_PAGES`: that is what lets the log
/// start over rather than grow without end under a steady stream of
/// writes, which a copy from elsewhere never wholly catches up with.
async fn checkpoint_in_background(pool: SqlitePool) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "copying the SQLite write-ahead log failed; the writer will");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
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
