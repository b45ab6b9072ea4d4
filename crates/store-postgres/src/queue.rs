//! `JobQueue` for PostgreSQL. Claims lock their rows with `FOR UPDATE SKIP
//! LOCKED`, so concurrent workers never wait on, or take, each other's jobs.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use steward_domain::{JobId, JobKind, JobState, OrgId};
use steward_store::*;

use crate::store::{Tx, audit, commit};
use crate::{PostgresStore, map_err, rows};

/// Errors are kept for the operator, not as a log: long ones are cut.
const MAX_ERROR_CHARS: usize = 2000;

#[async_trait]
impl JobQueue for PostgresStore {
    async fn enqueue(&self, job: NewJob) -> StoreResult<Option<Job>> {
        let mut tx = self.begin_write().await?;
        let inserted = insert_job(&mut tx, &job).await?;
        commit(tx).await?;
        Ok(inserted)
    }

    async fn claim_except(
        &self,
        worker: &str,
        kinds: &[JobKind],
        limit: u32,
        lease: Duration,
        except: &[OrgId],
    ) -> StoreResult<Vec<Job>> {
        let at = now();
        // Runnable, of the kinds asked for, and first in line for its ordering key:
        // no earlier unfinished job with the key, and none of them running.
        let claimed = sqlx::query(
            "WITH next AS (
                SELECT j.id FROM jobs j
                WHERE j.state IN ('queued', 'failed') AND j.run_at <= $1
                  AND j.kind = ANY($2)
                  AND (j.org_id IS NULL OR NOT (j.org_id = ANY($6)))
                  AND (j.ordering_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM jobs o
                        WHERE o.ordering_key = j.ordering_key AND o.id <> j.id
                          AND (o.state = 'running'
                               OR (o.state IN ('queued', 'failed') AND (o.created_at, o.id) < (j.created_at, j.id)))))
                ORDER BY j.priority DESC, j.run_at, j.created_at, j.id
                LIMIT $3
                FOR UPDATE SKIP LOCKED)
             UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $4, locked_by = $5, updated_at = $1
             FROM next WHERE jobs.id = next.id
             RETURNING jobs.*",
        )
        .bind(at)
        .bind(kinds.iter().map(|k| k.as_str().to_owned()).collect::<Vec<_>>())
        .bind(i64::from(limit))
        .bind(at + lease)
        .bind(worker)
        .bind(except.iter().map(|o| o.as_uuid()).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut jobs = claimed
            .iter()
            .map(rows::job)
            .collect::<StoreResult<Vec<_>>>()?;
        jobs.sort_by(|a, b| {
            (b.priority, a.run_at, a.created_at, a.id).cmp(&(
                a.priority,
                b.run_at,
                b.created_at,
                b.id,
            ))
        });
        Ok(jobs)
    }

    async fn heartbeat(&self, job: JobId, worker: &str, lease: Duration) -> StoreResult<bool> {
        let at = now();
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1, updated_at = $2 WHERE id = $3 AND locked_by = $4 AND state = 'running'",
        )
        .bind(at + lease)
        .bind(at)
        .bind(job.as_uuid())
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete(&self, job: JobId, worker: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', lease_until = NULL, updated_at = $1
             WHERE id = $2 AND locked_by = $3 AND state = 'running'",
        )
        .bind(now())
        .bind(job.as_uuid())
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn fail(
        &self,
        job: JobId,
        worker: &str,
        error: &str,
        failure: JobFailure,
    ) -> StoreResult<Option<JobState>> {
        let (permanent, retry_at) = match failure {
            JobFailure::Permanent => (true, now()),
            JobFailure::Retry { at } => (false, at),
        };
        let state: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET
                state = CASE WHEN $1 OR attempts >= max_attempts THEN 'dead' ELSE 'failed' END,
                run_at = CASE WHEN $2 OR attempts >= max_attempts THEN run_at ELSE $3 END,
                last_error = $4, lease_until = NULL, locked_by = NULL, updated_at = $5
             WHERE id = $6 AND locked_by = $7 AND state = 'running'
             RETURNING state",
        )
        .bind(permanent)
        .bind(permanent)
        .bind(retry_at)
        .bind(error.chars().take(MAX_ERROR_CHARS).collect::<String>())
        .bind(now())
        .bind(job.as_uuid())
        .bind(worker)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        state
            .map(|s| s.parse().map_err(StoreError::Internal))
            .transpose()
    }

    async fn release(&self, job: JobId, worker: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL, locked_by = NULL, updated_at = $1
             WHERE id = $2 AND locked_by = $3 AND state = 'running'",
        )
        .bind(now())
        .bind(job.as_uuid())
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn requeue_expired(&self) -> StoreResult<u64> {
        let at = now();
        let done = sqlx::query(
            "UPDATE jobs SET
                state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'failed' END,
                last_error = 'lease expired: the worker stopped or lost contact',
                lease_until = NULL, locked_by = NULL, run_at = $1, updated_at = $2
             WHERE state = 'running' AND lease_until < $3",
        )
        .bind(at)
        .bind(at)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn job(&self, scope: &TenantScope, id: JobId) -> StoreResult<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1 AND org_id = $2")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        rows::job(&row)
    }

    async fn list_jobs(
        &self,
        scope: &TenantScope,
        state: Option<JobState>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let found = sqlx::query(
            "SELECT * FROM jobs WHERE org_id = $1 AND ($2 IS NULL OR state = $3)
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(scope.org_id().as_uuid())
        .bind(state.map(|s| s.as_str()))
        .bind(state.map(|s| s.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::job).collect()
    }

    async fn retry_dead_job(&self, scope: &TenantScope, id: JobId) -> StoreResult<Job> {
        let at = now();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $2
             WHERE id = $3 AND org_id = $4 AND state = 'dead' RETURNING *",
        )
        .bind(at)
        .bind(at)
        .bind(id.as_uuid())
        .bind(scope.org_id().as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let job = rows::job(&row)?;
        audit(
            &mut tx,
            scope,
            "job.retried",
            &format!("job:{id}"),
            serde_json::json!({ "kind": job.kind.as_str() }),
        )
        .await?;
        commit(tx).await?;
        Ok(job)
    }

    async fn discard_dead_job(&self, scope: &TenantScope, id: JobId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let kind: String = sqlx::query_scalar(
            "DELETE FROM jobs WHERE id = $1 AND org_id = $2 AND state = 'dead' RETURNING kind",
        )
        .bind(id.as_uuid())
        .bind(scope.org_id().as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        audit(
            &mut tx,
            scope,
            "job.discarded",
            &format!("job:{id}"),
            serde_json::json!({ "kind": kind }),
        )
        .await?;
        commit(tx).await
    }

    async fn queue_stats(&self) -> StoreResult<Vec<QueueStat>> {
        let found: Vec<(String, String, i64, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT kind, state, count(*), min(run_at) FROM jobs WHERE state <> 'succeeded' GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found
            .into_iter()
            .map(|(kind, state, count, oldest)| {
                Ok(QueueStat {
                    kind: kind.parse().map_err(StoreError::Internal)?,
                    state: state.parse().map_err(StoreError::Internal)?,
                    count,
                    oldest_run_at: oldest,
                })
            })
            .collect()
    }

    async fn prune_finished_jobs(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE state IN ('succeeded', 'dead') AND updated_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

/// Inserts a job inside `tx`; None when its dedupe key was used before.
pub(crate) async fn insert_job(tx: &mut Tx, job: &NewJob) -> StoreResult<Option<Job>> {
    let at = now();
    let row = sqlx::query(
        "INSERT INTO jobs (id, org_id, kind, payload, state, priority, run_at, max_attempts, ordering_key, dedupe_key, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING *",
    )
    .bind(JobId::new().as_uuid())
    .bind(job.org_id.map(|o| o.as_uuid()))
    .bind(job.kind.as_str())
    .bind(&job.payload)
    .bind(job.priority)
    .bind(job.run_at.unwrap_or(at))
    .bind(job.max_attempts)
    .bind(&job.ordering_key)
    .bind(&job.dedupe_key)
    .bind(at)
    .bind(at)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    if row.is_some() {
        // Delivered at commit to every listening worker (see watch_enqueued).
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(job.kind.as_str())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
    }
    row.as_ref().map(rows::job).transpose()
}

/// The notification channel every enqueue signals on.
const CHANNEL: &str = "steward_jobs";

/// Wakes `wake` on every enqueue notification, reconnecting after errors; the
/// worker's poll covers notifications missed meanwhile.
pub(crate) async fn watch_enqueued(pool: &sqlx::PgPool, wake: std::sync::Arc<tokio::sync::Notify>) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL).await?;
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
