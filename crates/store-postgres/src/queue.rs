//! The claim and the enqueue notifications on PostgreSQL (the rest of
//! `JobQueue` is shared: `steward_store::sql`). Claims lock their rows with
//! `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on, or take,
//! each other's jobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    // The function (migration `claim_generic_plan`) keeps its plans, and
    // `claimable_jobs` (migration `claim_plan`) picks the jobs in the claim
    // index's order whatever the statistics say. One row comes back even
    // when nothing is claimed, to carry what was completed.
    const STATEMENT: &str =
        "SELECT completed, (job).* FROM complete_and_claim($1, $2, $3, $4, $5, $6, $7)";
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
    store.vacuum.claimed(&store.pool, claimed.jobs.len() as u64);
    Ok(claimed)
}

/// Jobs claimed by this process after which it vacuums `jobs`. At 100,000
/// queued jobs, every 5,000 ran the queue bench as fast as every 2,000 did;
/// every 2,000 also vacuumed a burst of 3,000 midway, and slowed it by a
/// tenth at concurrency 1 (docs/PERFORMANCE.md, *The claim index kept
/// clean*).
pub const VACUUM_AFTER_CLAIMS: u64 = 5_000;

/// Vacuums `jobs` after every `VACUUM_AFTER_CLAIMS` claimed jobs. A claim
/// moves its jobs out of the claim index (`jobs_claim_order`, runnable jobs
/// only), and the entries they leave at its head stay there, marked dead, until
/// a vacuum removes them: every claim steps over all of them. Autovacuum comes
/// too seldom for a queue (each database once a minute at most, and only after
/// a fifth of the table changed): at 100,000 queued jobs a claim read 146
/// pages of the index after 20,000 claims, 4 after a vacuum of 31 ms.
/// SQLite needs none of this: its B-trees drop an entry when it is deleted.
#[derive(Default)]
pub(crate) struct Vacuum {
    claimed: AtomicU64,
    running: Arc<AtomicBool>,
}

impl Vacuum {
    /// Counts `jobs` claimed, and starts a vacuum in the background when
    /// their number crosses a multiple of `VACUUM_AFTER_CLAIMS`.
    fn claimed(&self, pool: &sqlx::PgPool, jobs: u64) {
        let before = self.claimed.fetch_add(jobs, Ordering::Relaxed);
        if (before + jobs) / VACUUM_AFTER_CLAIMS == before / VACUUM_AFTER_CLAIMS
            || self.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let running = self.running.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            // SKIP_LOCKED: another process's vacuum (or autovacuum) is on it.
            // INDEX_CLEANUP ON: dead entries in a large table's indexes would
            // otherwise be left when few of its pages hold dead rows.
            let vacuum = "VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON, PARALLEL 0) jobs";
            if let Err(e) = sqlx::raw_sql(vacuum).execute(&pool).await {
                tracing::warn!(error = %e, "could not vacuum the job queue");
            }
            running.store(false, Ordering::Release);
        });
    }
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
