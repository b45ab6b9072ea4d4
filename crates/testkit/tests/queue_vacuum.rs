//! PostgreSQL's queue vacuums its table after every `VACUUM_AFTER_CLAIMS`
//! claimed jobs, so that the entries claimed jobs leave at the head of the
//! claim index do not pile up between autovacuum's visits. Runs when
//! STEWARD_TEST_POSTGRES_URL is set.

use std::time::{Duration, Instant};

use serde_json::json;
use steward_domain::JobKind;
use steward_store::{JobQueue, NewJob, Store};
use steward_store_postgres::{PostgresStore, VACUUM_AFTER_CLAIMS};
use steward_testkit::PostgresDatabase;

async fn vacuums(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'jobs'")
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_vacuum_the_queue_as_they_go() {
    let Some(database) = PostgresDatabase::create().await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    let store = PostgresStore::connect(&database.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();
    // Autovacuum, working on the table at that moment, would make the
    // vacuum looked for skip it.
    sqlx::query("ALTER TABLE jobs SET (autovacuum_enabled = off)")
        .execute(&db)
        .await
        .unwrap();
    let total = VACUUM_AFTER_CLAIMS as usize + 300;
    let jobs: Vec<NewJob> = (0..total)
        .map(|n| NewJob::raw(JobKind::Classify, json!({ "n": n }), 3))
        .collect();
    for some in jobs.chunks(1000) {
        store.enqueue_many(some.to_vec()).await.unwrap();
    }
    let lease = chrono::Duration::seconds(60);
    let mut claimed = 0;
    let mut done = Vec::new();
    while claimed < VACUUM_AFTER_CLAIMS as usize - 100 {
        let got = store
            .complete_and_claim("w", &done, &[JobKind::Classify], 100, lease, &[])
            .await
            .unwrap();
        claimed += got.jobs.len();
        done = got.jobs.iter().map(|j| j.id).collect();
    }
    // Not yet. Nothing to poll for: a vacuum started too early (a few
    // milliseconds on this table) would have been counted by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(vacuums(&db).await, 0, "vacuumed before its count");

    let got = store
        .complete_and_claim("w", &done, &[JobKind::Classify], 200, lease, &[])
        .await
        .unwrap();
    assert_eq!(got.jobs.len(), 200, "claims as before");
    let waited = Instant::now();
    while vacuums(&db).await == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "no vacuum after {} claimed jobs",
            claimed + 200
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The rest are claimed as ever.
    let rest = store
        .claim("w", &[JobKind::Classify], 1000, lease)
        .await
        .unwrap();
    assert_eq!(rest.len(), total - claimed - 200);
}
