//! NOTIFYs sent once their transaction has committed. A NOTIFY inside a
//! transaction takes a lock for the whole PostgreSQL cluster at commit and
//! holds it through the commit's flush to disk, so every transaction that
//! announced something would commit one at a time (ARCHITECTURE.md,
//! *Announcements follow the commit*). One task per process sends them,
//! whatever is waiting in one statement, so the writer does not wait for
//! them and many commits' notices share one.

use sqlx::PgPool;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::task_queue::TaskQueue;

/// NOTIFY channels and payloads.
pub(crate) type Notices = Vec<(&'static str, String)>;

#[derive(Clone)]
pub(crate) struct Notifier {
    pool: PgPool,
    queue: TaskQueue<Notices>,
}

impl Notifier {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queue: TaskQueue::new(),
        }
    }

    /// Hands committed `notices` to the sending task.
    pub(crate) fn send(&self, notices: Notices) {
        let pool = self.pool.clone();
        self.queue
            .send(notices, |waiting| send_waiting(pool, waiting));
    }
}

/// Sends notices as they come, all that are waiting in one statement. A
/// failure is logged, not retried: notices are wake-ups, and a worker finds
/// its jobs at its next poll, a subscriber the messages when it next reads.
async fn send_waiting(pool: PgPool, mut waiting: UnboundedReceiver<Notices>) {
    while let Some(mut notices) = waiting.recv().await {
        while let Ok(more) = waiting.try_recv() {
            notices.extend(more);
        }
        let (channels, payloads): (Vec<&str>, Vec<String>) = notices.into_iter().unzip();
        // The statement's own commit holds the same lock; it records nothing
        // that must survive a crash, so it does not wait for the disk.
        // (PostgreSQL sends a transaction's identical notices once.)
        let sent = sqlx::query(
            "SELECT pg_notify(c, p)
             FROM (SELECT set_config('synchronous_commit', 'off', true)) AS unflushed,
                  unnest($1::text[], $2::text[]) AS n(c, p)",
        )
        .bind(channels)
        .bind(payloads)
        .execute(&pool)
        .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "notices of committed writes were not sent");
        }
    }
}
