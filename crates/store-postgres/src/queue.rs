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
    // `claimable_jobs` (migration `claim_plan`) picks the jobs in the claim
    // index's order whatever the statistics say. The final join yields one
    // row even when nothing is claimed, to carry what was completed.
    const STATEMENT: &str = "WITH done AS (
            UPDATE jobs SET state = 'succeeded', lease_until = NULL, updated_at = $1
            WHERE id = ANY($6) AND locked_by = $4 AND state = 'running'
            RETURNING id),
         claimed AS (
            UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $3, locked_by = $4, updated_at = $1
            FROM claimable_jobs($1, $2, $5, $7) AS next(id) WHERE jobs.id = next.id
            RETURNING jobs.*)
         SELECT claimed.*, (SELECT array_agg(id) FROM done) AS completed
         FROM (SELECT 1) AS one LEFT JOIN claimed ON true";
    let rows = sqlx::query(STATEMENT)
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
        .bind(i32::try_from(limit).unwrap_or(i32::MAX))
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
