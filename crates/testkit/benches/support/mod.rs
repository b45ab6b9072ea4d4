//! What the benches of this crate share: a fresh database on either backend,
//! and latency measured as a client on one keep-alive connection sees it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_store::Store;
use steward_testkit::{DbGuard, PostgresDatabase};

pub use steward_testkit::bench::Backend;

/// Where a seed writes its rows directly.
pub enum Seedable {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// A migrated, empty database.
pub async fn database(backend: Backend) -> (Arc<dyn Store>, DbGuard, Seedable) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("steward.db");
            let store = steward_store_sqlite::SqliteStore::open_file(&path, 4)
                .await
                .unwrap();
            store.migrate().await.unwrap();
            (
                Arc::new(store),
                DbGuard::Sqlite(dir),
                Seedable::Sqlite(path),
            )
        }
        Backend::Postgres => {
            let database = PostgresDatabase::create().await.unwrap();
            let store = steward_store_postgres::PostgresStore::connect(&database.url, 8)
                .await
                .unwrap();
            store.migrate().await.unwrap();
            let url = database.url.clone();
            (
                Arc::new(store),
                DbGuard::Postgres(database),
                Seedable::Postgres(url),
            )
        }
    }
}

pub fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().expect("a number"))
        .collect()
}

/// `requests` timings of the request `make` builds, after a tenth as many
/// to warm up, sorted. Every response must be a success.
pub async fn measure(make: impl Fn() -> reqwest::RequestBuilder, requests: usize) -> Vec<Duration> {
    for _ in 0..requests / 10 {
        make().send().await.unwrap().bytes().await.unwrap();
    }
    let mut timings = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let response = make().send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.unwrap();
        timings.push(started.elapsed());
    }
    timings.sort();
    timings
}

pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "| p50 | p99 | mean |" of sorted timings, in milliseconds.
pub fn latency_cells(timings: &[Duration]) -> String {
    format!(
        "{:.2} | {:.2} | {:.2}",
        ms(percentile(timings, 50)),
        ms(percentile(timings, 99)),
        ms(timings.iter().sum::<Duration>() / timings.len() as u32),
    )
}
