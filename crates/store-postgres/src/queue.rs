//! The claim and the enqueue notifications on PostgreSQL (the rest of
//! `JobQueue` is shared: `steward_store::sql`). Claims lock their rows with
//! `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on, or take,
//! each other's jobs.

use chrono::Duration;
use sqlx::Row;
use steward_domain::{JobId, JobKind, OrgId};
use steward_store::*;

use crate::{PostgresStore, map_err, rows};

/// `done` marked succeeded, and runnable jobs of `kinds` claimed for
/// `worker`, in one statement.
pub(crate) async fn complete_and_claim(
    store: &PostgresStore,
    worker: &str,
    done: &[JobId],
    kinds: &[JobKind],
    limit: u32,
    lease: Duration,
    except: &[OrgId],
) -> StoreResult<Claimed> {
    let at = now();
    // `next`: runnable, of the kinds asked for, and first in line for its
    // ordering key (no earlier unfinished job with the key, and none of them
    // running). The final join yields one row even when nothing is claimed,
    // to carry what was completed. The limit is written into the statement,
    // not bound: with `LIMIT $n` PostgreSQL's generic plan expects a tenth of
    // the table and is slow, so it planned every execution anew (about half
    // of the statement's time); with a number, each limit's prepared
    // statement settles on its generic plan.
    let statement = format!(
        "WITH done AS (
            UPDATE jobs SET state = 'succeeded', lease_until = NULL, updated_at = $1
            WHERE id = ANY($6) AND locked_by = $4 AND state = 'running'
            RETURNING id),
         next AS (
            SELECT j.id FROM jobs j
            WHERE j.state IN ('queued', 'failed') AND j.run_at <= $1
              AND j.kind = ANY($2)
              AND (j.org_id IS NULL OR NOT (j.org_id = ANY($5)))
              AND (j.ordering_key IS NULL OR NOT EXISTS (
                    SELECT 1 FROM jobs o
                    WHERE o.ordering_key = j.ordering_key AND o.id <> j.id
                      AND (o.state = 'running'
                           OR (o.state IN ('queued', 'failed') AND (o.created_at, o.id) < (j.created_at, j.id)))))
            ORDER BY j.priority DESC, j.run_at, j.created_at, j.id
            LIMIT {limit}
            FOR UPDATE SKIP LOCKED),
         claimed AS (
            UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $3, locked_by = $4, updated_at = $1
            FROM next WHERE jobs.id = next.id
            RETURNING jobs.*)
         SELECT claimed.*, (SELECT array_agg(id) FROM done) AS completed
         FROM (SELECT 1) AS one LEFT JOIN claimed ON true"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(at)
        .bind(
            kinds
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(at + lease)
        .bind(worker)
        .bind(except.iter().map(|o| o.as_uuid()).collect::<Vec<_>>())
        .bind(done.iter().map(|j| j.as_uuid()).collect::<Vec<_>>())
        .fetch_all(&store.pool)
        .await
        .map_err(map_err)?;
    let mut claimed = Claimed::default();
    for row in &rows {
        if claimed.completed.is_empty() {
            let completed: Option<Vec<uuid::Uuid>> = row.try_get("completed").map_err(map_err)?;
            claimed.completed = completed
                .unwrap_or_default()
                .into_iter()
                .map(JobId::from)
                .collect();
        }
        let id: Option<uuid::Uuid> = row.try_get("id").map_err(map_err)?;
        if id.is_some() {
            claimed.jobs.push(rows::job(row)?);
        }
    }
    Ok(claimed)
}

/// The notification channel every enqueue signals on.
pub(crate) const CHANNEL: &str = "steward_jobs";

/// Wakes `wake` on every enqueue notification, reconnecting after errors; the
/// worker's poll covers notifications missed meanwhile.
pub(crate) async fn watch_enqueued(pool: &sqlx::PgPool, wake: std::sync::Arc<tokio::sync::Notify>) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL).await?;
            // Enqueues notified before this listener was listening (at start,
            // or while it reconnected) reached no one: look once now.
            wake.notify_one();
            loop {
                listener.recv().await?;
                wake.notify_one();
            }
        };
        let result: Result<(), sqlx::Error> = listener.await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "lost the job notifications; polling until they are back");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
