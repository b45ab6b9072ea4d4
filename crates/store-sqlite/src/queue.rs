//! `JobQueue` for SQLite. The single writer connection serializes claims, so a
//! job is never handed to two workers.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use steward_domain::{JobId, JobKind, JobState, OrgId};
use steward_store::*;

use crate::store::{Tx, audit, commit};
use crate::{SqliteStore, map_err, rows, to_micros};

/// Errors are kept for the operator, not as a log: long ones are cut.
const MAX_ERROR_CHARS: usize = 2000;

fn kinds_json(kinds: &[JobKind]) -> String {
    Value::from(kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()).to_string()
}

/// Organization ids as JSON strings of SQLite's `hex()` of their 16-byte blobs.
fn orgs_json(orgs: &[OrgId]) -> String {
    Value::from(
        orgs.iter()
            .map(|o| o.as_uuid().simple().to_string().to_uppercase())
            .collect::<Vec<_>>(),
    )
    .to_string()
}

#[async_trait]
impl JobQueue for SqliteStore {
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
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = ?, locked_by = ?, updated_at = ?
             WHERE id IN (
                SELECT j.id FROM jobs j
                WHERE j.state IN ('queued', 'failed') AND j.run_at <= ?
                  AND j.kind IN (SELECT value FROM json_each(?))
                  AND (j.org_id IS NULL OR hex(j.org_id) NOT IN (SELECT value FROM json_each(?)))
                  AND (j.ordering_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM jobs o
                        WHERE o.ordering_key = j.ordering_key AND o.id <> j.id
                          AND (o.state = 'running'
                               OR (o.state IN ('queued', 'failed') AND (o.created_at, o.id) < (j.created_at, j.id)))))
                ORDER BY j.priority DESC, j.run_at, j.created_at, j.id
                LIMIT ?)
             RETURNING *",
        )
        .bind(to_micros(at + lease))
        .bind(worker)
        .bind(to_micros(at))
        .bind(to_micros(at))
        .bind(kinds_json(kinds))
        .bind(orgs_json(except))
        .bind(limit)
        .fetch_all(&self.writer)
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
            "UPDATE jobs SET lease_until = ?, updated_at = ? WHERE id = ? AND locked_by = ? AND state = 'running'",
        )
        .bind(to_micros(at + lease))
        .bind(to_micros(at))
        .bind(job.as_uuid())
        .bind(worker)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete(&self, job: JobId, worker: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', lease_until = NULL, updated_at = ?
             WHERE id = ? AND locked_by = ? AND state = 'running'",
        )
        .bind(to_micros(now()))
        .bind(job.as_uuid())
        .bind(worker)
        .execute(&self.writer)
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
                state = CASE WHEN ? OR attempts >= max_attempts THEN 'dead' ELSE 'failed' END,
                run_at = CASE WHEN ? OR attempts >= max_attempts THEN run_at ELSE ? END,
                last_error = ?, lease_until = NULL, locked_by = NULL, updated_at = ?
             WHERE id = ? AND locked_by = ? AND state = 'running'
             RETURNING state",
        )
        .bind(permanent)
        .bind(permanent)
        .bind(to_micros(retry_at))
        .bind(error.chars().take(MAX_ERROR_CHARS).collect::<String>())
        .bind(to_micros(now()))
        .bind(job.as_uuid())
        .bind(worker)
        .fetch_optional(&self.writer)
        .await
        .map_err(map_err)?;
        state
            .map(|s| s.parse().map_err(StoreError::Internal))
            .transpose()
    }

    async fn release(&self, job: JobId, worker: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL, locked_by = NULL, updated_at = ?
             WHERE id = ? AND locked_by = ? AND state = 'running'",
        )
        .bind(to_micros(now()))
        .bind(job.as_uuid())
        .bind(worker)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn requeue_expired(&self) -> StoreResult<u64> {
        let at = to_micros(now());
        let done = sqlx::query(
            "UPDATE jobs SET
                state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'failed' END,
                last_error = 'lease expired: the worker stopped or lost contact',
                lease_until = NULL, locked_by = NULL, run_at = ?, updated_at = ?
             WHERE state = 'running' AND lease_until < ?",
        )
        .bind(at)
        .bind(at)
        .bind(at)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn job(&self, scope: &TenantScope, id: JobId) -> StoreResult<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ? AND org_id = ?")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_one(&self.reader)
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
            "SELECT * FROM jobs WHERE org_id = ? AND (? IS NULL OR state = ?)
             ORDER BY created_at DESC, id DESC LIMIT ?",
        )
        .bind(scope.org_id().as_uuid())
        .bind(state.map(|s| s.as_str()))
        .bind(state.map(|s| s.as_str()))
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::job).collect()
    }

    async fn retry_dead_job(&self, scope: &TenantScope, id: JobId) -> StoreResult<Job> {
        let at = to_micros(now());
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?, updated_at = ?
             WHERE id = ? AND org_id = ? AND state = 'dead' RETURNING *",
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
            "DELETE FROM jobs WHERE id = ? AND org_id = ? AND state = 'dead' RETURNING kind",
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
        let found: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT kind, state, count(*), min(run_at) FROM jobs WHERE state <> 'succeeded' GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        found
            .into_iter()
            .map(|(kind, state, count, oldest)| {
                Ok(QueueStat {
                    kind: kind.parse().map_err(StoreError::Internal)?,
                    state: state.parse().map_err(StoreError::Internal)?,
                    count,
                    oldest_run_at: oldest.map(crate::from_micros).transpose()?,
                })
            })
            .collect()
    }

    async fn prune_finished_jobs(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM jobs WHERE state IN ('succeeded', 'dead') AND updated_at < ?")
                .bind(to_micros(before))
                .execute(&self.writer)
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
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING *",
    )
    .bind(JobId::new().as_uuid())
    .bind(job.org_id.map(|o| o.as_uuid()))
    .bind(job.kind.as_str())
    .bind(job.payload.to_string())
    .bind(job.priority)
    .bind(to_micros(job.run_at.unwrap_or(at)))
    .bind(job.max_attempts)
    .bind(&job.ordering_key)
    .bind(&job.dedupe_key)
    .bind(to_micros(at))
    .bind(to_micros(at))
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    row.as_ref().map(rows::job).transpose()
}
