//! The claim on SQLite (the rest of `JobQueue` is shared: `steward_store::sql`).
//! The single writer connection serializes claims, so a job is never handed
//! to two workers.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::{Row, SqliteConnection};
use steward_domain::{JobId, JobKind, OrgId};
use steward_store::*;

use crate::{SqliteStore, map_err, rows, to_micros};

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

/// `done` marked succeeded, and runnable jobs of `kinds` claimed for
/// `worker`, in one transaction (a claim alone is one statement).
pub(crate) async fn complete_and_claim(
    store: &SqliteStore,
    worker: &str,
    done: &[JobId],
    kinds: &[JobKind],
    limit: u32,
    lease: Duration,
    except: &[OrgId],
) -> StoreResult<Claimed> {
    let at = now();
    if done.is_empty() {
        let mut writer = store.writer.acquire().await.map_err(map_err)?;
        let jobs = claim(&mut writer, worker, kinds, limit, at, lease, except).await?;
        return Ok(Claimed {
            completed: Vec::new(),
            jobs,
        });
    }
    let mut tx = store.begin_write().await?;
    let ids = vec!["?"; done.len()].join(", ");
    let statement = format!(
        "UPDATE jobs SET state = 'succeeded', lease_until = NULL, updated_at = ?
         WHERE id IN ({ids}) AND locked_by = ? AND state = 'running'
         RETURNING id"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(to_micros(at));
    for job in done {
        query = query.bind(job.as_uuid());
    }
    let rows = query
        .bind(worker)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
    let completed = rows
        .iter()
        .map(|row| {
            Ok(JobId::from(
                row.try_get::<uuid::Uuid, _>("id").map_err(map_err)?,
            ))
        })
        .collect::<StoreResult<_>>()?;
    let jobs = claim(&mut tx, worker, kinds, limit, at, lease, except).await?;
    tx.commit().await.map_err(map_err)?;
    Ok(Claimed { completed, jobs })
}

/// Runnable jobs of `kinds`, claimed for `worker`.
async fn claim(
    writer: &mut SqliteConnection,
    worker: &str,
    kinds: &[JobKind],
    limit: u32,
    at: DateTime<Utc>,
    lease: Duration,
    except: &[OrgId],
) -> StoreResult<Vec<Job>> {
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
    .fetch_all(&mut *writer)
    .await
    .map_err(map_err)?;
    claimed.iter().map(rows::job).collect()
}
