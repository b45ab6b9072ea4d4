//! The scaled-out store: PostgreSQL 16. Same behaviour as the SQLite store,
//! checked by the same conformance suite; where PostgreSQL runs transactions
//! side by side, the rows a rule depends on are locked first.

mod knowledge;
mod leader;
mod live;
mod messages;
mod notices;
mod ops;
mod queue;
mod rows;
mod sql;
mod store;
mod task_queue;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub use queue::VACUUM_AFTER_CLAIMS;
use steward_store::{StoreError, StoreResult};

pub struct PostgresStore {
    pool: PgPool,
    /// Live events as this process's listener receives them from PostgreSQL.
    live: tokio::sync::broadcast::Sender<steward_store::LiveEvent>,
    /// Whether the listener feeding `live` has been started.
    listening: std::sync::atomic::AtomicBool,
    /// Whether that listener is connected and listening right now.
    listener_ready: tokio::sync::watch::Sender<bool>,
    /// Sends the NOTIFYs of committed transactions.
    notifier: notices::Notifier,
    /// Stores messages that come at once together.
    batches: messages::MessageBatches,
    /// Keeps the claim index free of claimed jobs' entries.
    vacuum: queue::Vacuum,
}

/// A connection that sat idle is checked (a round trip) before it is handed
/// out, as one may have been cut meanwhile (a restarted server, a proxy's
/// idle timeout); one in steady use is not: sqlx's default checks every
/// time, which doubled the round trips of a statement run on its own.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

impl PostgresStore {
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("steward");
        let pool = pool_options(max_connections)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Ok(Self::with_pool(pool))
    }

    /// Connects on first use, so that a process can start (and report itself
    /// not ready) while the database is still down.
    pub fn connect_lazy(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("steward");
        let pool = pool_options(max_connections).connect_lazy_with(options);
        Ok(Self::with_pool(pool))
    }

    fn with_pool(pool: PgPool) -> Self {
        let (live, _) = tokio::sync::broadcast::channel(steward_store::LIVE_BUFFER);
        Self {
            notifier: notices::Notifier::new(pool.clone()),
            batches: messages::MessageBatches::new(pool.clone()),
            pool,
            live,
            listening: std::sync::atomic::AtomicBool::new(false),
            listener_ready: tokio::sync::watch::Sender::new(false),
            vacuum: queue::Vacuum::default(),
        }
    }
}

pub(crate) fn map_err(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(steward_store::Conflict::Duplicate)
        }
        // 57P01 admin shutdown, 53300 too many connections, 40001 serialization failure.
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| matches!(&*c, "57P01" | "53300" | "40001")) =>
        {
            StoreError::Unavailable(db.message().to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}
