//! [`JobQueue`], for every backend; the claim is each backend's own
//! ([`SqlBackend::claim_jobs`]).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use steward_domain::{JobId, JobKind, JobState, OrgId};

use crate::sql::{Db, Row, SqlBackend, audit, commit, commit_with, rows, sql};
use crate::*;

/// Errors are kept for the operator, not as a log: long ones are cut.
const MAX_ERROR_CHARS: usize = 2000;

#[async_trait]
impl<B: SqlBackend> JobQueue for B {
    async fn enqueue(&self, job: NewJob) -> StoreResult<Option<Job>> {
        let mut tx = self.begin().await?;
        let inserted = insert_job::<B>(&mut tx, &job).await?;
        commit::<B>(tx).await?;
        Ok(inserted)
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Job>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let mut stored = Vec::with_capacity(jobs.len());
        for some in jobs.chunks(JOBS_PER_INSERT) {
            stored.extend(insert_jobs::<B>(&mut tx, some).await?);
        }
        commit::<B>(tx).await?;
        Ok(stored)
    }

    async fn complete_and_claim(
        &self,
        worker: &str,
        done: &[JobId],
        kinds: &[JobKind],
        limit: u32,
        lease: Duration,
        except: &[OrgId],
    ) -> StoreResult<Claimed> {
        let mut claimed = self
            .claim_jobs(worker, done, kinds, limit, lease, except)
            .await?;
        claimed.jobs.sort_by(|a, b| {
            (b.priority, a.run_at, a.created_at, a.id).cmp(&(
                a.priority,
                b.run_at,
                b.created_at,
                b.id,
            ))
        });
        Ok(claimed)
    }

    async fn heartbeat(&self, job: JobId, worker: &str, lease: Duration) -> StoreResult<bool> {
        let at = now();
        let done = self
            .write()
            .await?
            .execute(
                sql("UPDATE jobs SET lease_until = $1, updated_at = $2
                     WHERE id = $3 AND locked_by = $4 AND state = 'running'")
                .bind(at + lease)
                .bind(at)
                .bind(job)
                .bind(worker),
            )
            .await?;
        Ok(done == 1)
    }

    async fn complete(&self, job: JobId, worker: &str) -> StoreResult<bool> {
        let done = self
            .write()
            .await?
            .execute(
                sql(
                    "UPDATE jobs SET state = 'succeeded', lease_until = NULL, updated_at = $1
                     WHERE id = $2 AND locked_by = $3 AND state = 'running'",
                )
                .bind(now())
                .bind(job)
                .bind(worker),
            )
            .await?;
        Ok(done == 1)
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
        let state = self
            .write()
            .await?
            .fetch_optional(
                sql("UPDATE jobs SET
                        state = CASE WHEN $1 OR attempts >= max_attempts THEN 'dead' ELSE 'failed' END,
                        run_at = CASE WHEN $1 OR attempts >= max_attempts THEN run_at ELSE $2 END,
                        last_error = $3, lease_until = NULL, locked_by = NULL, updated_at = $4
                     WHERE id = $5 AND locked_by = $6 AND state = 'running'
                     RETURNING state")
                .bind(permanent)
                .bind(retry_at)
                .bind(error.chars().take(MAX_ERROR_CHARS).collect::<String>())
                .bind(now())
                .bind(job)
                .bind(worker),
            )
            .await?;
        state.map(|row| row.get("state")).transpose()
    }

    async fn release(&self, job: JobId, worker: &str) -> StoreResult<bool> {
        let done = self
            .write()
            .await?
            .execute(
                sql(
                    "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL,
                        locked_by = NULL, updated_at = $1
                     WHERE id = $2 AND locked_by = $3 AND state = 'running'",
                )
                .bind(now())
                .bind(job)
                .bind(worker),
            )
            .await?;
        Ok(done == 1)
    }

    async fn requeue_expired(&self) -> StoreResult<u64> {
        self.write()
            .await?
            .execute(
                sql("UPDATE jobs SET
                        state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'failed' END,
                        last_error = 'lease expired: the worker stopped or lost contact',
                        lease_until = NULL, locked_by = NULL, run_at = $1, updated_at = $1
                     WHERE state = 'running' AND lease_until < $1")
                .bind(now()),
            )
            .await
    }

    async fn job(&self, scope: &TenantScope, id: JobId) -> StoreResult<Job> {
        let row = self
            .read()
            .await?
            .fetch_one(
                sql("SELECT * FROM jobs WHERE id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?;
        rows::job(&row)
    }

    async fn list_jobs(
        &self,
        scope: &TenantScope,
        state: Option<JobState>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql(
                    "SELECT * FROM jobs WHERE org_id = $1 AND ($2 IS NULL OR state = $2)
                     ORDER BY created_at DESC, id DESC LIMIT $3",
                )
                .bind(scope.org_id())
                .bind(state.map(|s| s.as_str()))
                .bind(i64::from(limit)),
            )
            .await?;
        found.iter().map(rows::job).collect()
    }

    async fn retry_dead_job(&self, scope: &TenantScope, id: JobId) -> StoreResult<Job> {
        let at = now();
        let mut tx = self.begin().await?;
        let row = tx
            .fetch_one(
                sql(
                    "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1
                     WHERE id = $2 AND org_id = $3 AND state = 'dead' RETURNING *",
                )
                .bind(at)
                .bind(id)
                .bind(scope.org_id()),
            )
            .await?;
        let job = rows::job(&row)?;
        audit(
            &mut tx,
            scope,
            "job.retried",
            &format!("job:{id}"),
            serde_json::json!({ "kind": job.kind.as_str() }),
        )
        .await?;
        commit_with::<B>(tx, &job).await?;
        Ok(job)
    }

    async fn discard_dead_job(&self, scope: &TenantScope, id: JobId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let row = tx
            .fetch_one(
                sql("DELETE FROM jobs WHERE id = $1 AND org_id = $2 AND state = 'dead' RETURNING kind")
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?;
        let kind: String = row.get("kind")?;
        audit(
            &mut tx,
            scope,
            "job.discarded",
            &format!("job:{id}"),
            serde_json::json!({ "kind": kind }),
        )
        .await?;
        commit::<B>(tx).await
    }

    async fn queue_stats(&self) -> StoreResult<Vec<QueueStat>> {
        let found = self
            .read()
            .await?
            .fetch_all(sql(
                "SELECT kind, state, count(*) AS count, min(run_at) AS oldest FROM jobs
                 WHERE state <> 'succeeded' GROUP BY kind, state ORDER BY kind, state",
            ))
            .await?;
        found
            .iter()
            .map(|row| {
                Ok(QueueStat {
                    kind: row.get("kind")?,
                    state: row.get("state")?,
                    count: row.get("count")?,
                    oldest_run_at: row.get("oldest")?,
                })
            })
            .collect()
    }

    async fn prune_finished_jobs(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.write()
            .await?
            .execute(
                sql("DELETE FROM jobs WHERE state IN ('succeeded', 'dead') AND updated_at < $1")
                    .bind(before),
            )
            .await
    }
}

/// Rows in one INSERT of [`insert_jobs`]: 9 values each, well under
/// SQLite's 32,766 and PostgreSQL's 65,535 placeholders.
const JOBS_PER_INSERT: usize = 500;

/// Inserts a job in `tx`, the transaction of what caused it; None when its
/// dedupe key was used before.
pub async fn insert_job<B: SqlBackend>(tx: &mut B::Tx, job: &NewJob) -> StoreResult<Option<Job>> {
    Ok(insert_jobs::<B>(tx, std::slice::from_ref(job)).await?.pop())
}

/// Inserts up to [`JOBS_PER_INSERT`] jobs in `tx` in one statement; returns
/// those stored, in the order given, leaving out any whose dedupe key was
/// used before (or earlier in `jobs`).
async fn insert_jobs<B: SqlBackend>(tx: &mut B::Tx, jobs: &[NewJob]) -> StoreResult<Vec<Job>> {
    let at = now();
    let rows = (0..jobs.len())
        .map(|i| {
            let n = 2 + 9 * i;
            format!(
                "(${}, ${}, ${}, ${}, 'queued', ${}, ${}, ${}, ${}, ${}, $1, $1)",
                n,
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    // The conflict target names PostgreSQL's index of keyed jobs by its
    // predicate (migration `jobs_dedupe_partial`); SQLite's UNIQUE column
    // matches it as well.
    let mut statement = sql(format!(
        "INSERT INTO jobs (id, org_id, kind, payload, state, priority, run_at, max_attempts,
                           ordering_key, dedupe_key, created_at, updated_at)
         VALUES {rows}
         ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
         RETURNING *"
    ))
    .bind(at);
    let ids: Vec<JobId> = jobs.iter().map(|_| JobId::new()).collect();
    for (job, id) in jobs.iter().zip(&ids) {
        statement = statement
            .bind(*id)
            .bind(job.org_id)
            .bind(job.kind)
            .bind(&job.payload)
            .bind(job.priority)
            .bind(job.run_at.unwrap_or(at))
            .bind(job.max_attempts)
            .bind(job.ordering_key.as_deref())
            .bind(job.dedupe_key.as_deref());
    }
    let mut stored = tx
        .fetch_all(statement)
        .await?
        .iter()
        .map(rows::job)
        .collect::<StoreResult<Vec<_>>>()?;
    // RETURNING keeps no promised order.
    let given: std::collections::HashMap<JobId, usize> =
        ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    stored.sort_by_key(|job| given.get(&job.id).copied());
    let mut kinds: Vec<JobKind> = stored.iter().map(|job| job.kind).collect();
    kinds.sort_by_key(|kind| kind.as_str());
    kinds.dedup();
    for kind in kinds {
        B::announce_enqueued(tx, kind);
    }
    Ok(stored)
}
