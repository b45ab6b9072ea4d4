//! Test support shared by every crate's tests: a fresh, migrated database per
//! test on either backend, and (in [`app`]) Steward itself on port 0.
//!
//! PostgreSQL tests run when `STEWARD_TEST_POSTGRES_URL` names a server (any
//! database on it; each test creates and drops its own). When it is unset they
//! are skipped; when it is set and the server cannot be reached they fail.

pub mod app;
pub mod bench;
pub mod digest;
pub mod docx;
pub mod embedder;
pub mod model;
pub mod pdf;
pub mod providers;
pub mod seed;

use std::sync::Arc;

use sqlx::Connection;
use steward_store::Store;
use steward_store_postgres::PostgresStore;
use steward_store_sqlite::SqliteStore;

pub const POSTGRES_URL_ENV: &str = "STEWARD_TEST_POSTGRES_URL";

/// Keeps a test database alive; dropping it removes the database.
pub enum DbGuard {
    Sqlite(tempfile::TempDir),
    Postgres(PostgresDatabase),
}

/// A fresh SQLite store in a temporary folder.
pub async fn sqlite_store() -> Option<(Arc<dyn Store>, DbGuard)> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SqliteStore::open_file(&dir.path().join("steward.db"), 4)
        .await
        .expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    Some((Arc::new(store), DbGuard::Sqlite(dir)))
}

/// A fresh PostgreSQL store in a database of its own, or None when no server is configured.
pub async fn postgres_store() -> Option<(Arc<dyn Store>, DbGuard)> {
    let database = PostgresDatabase::create().await?;
    let store = PostgresStore::connect(&database.url, 8)
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrate PostgreSQL");
    Some((Arc::new(store), DbGuard::Postgres(database)))
}

/// The store the API tests use: PostgreSQL when configured, SQLite otherwise.
pub async fn any_store() -> (Arc<dyn Store>, DbGuard) {
    match postgres_store().await {
        Some(found) => found,
        None => sqlite_store().await.expect("SQLite always works"),
    }
}

/// A database created for one test on the configured server.
pub struct PostgresDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PostgresDatabase {
    pub async fn create() -> Option<Self> {
        let admin_url = std::env::var(POSTGRES_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = format!("steward_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("{POSTGRES_URL_ENV} is set but PostgreSQL is unreachable: {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = with_database(&admin_url, &name);
        Some(Self {
            url,
            admin_url,
            name,
        })
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // Drop runs outside any runtime we may block: use a thread of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// The same server URL naming another database.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    // postgres://user@host:port/db → replace the path; no path → append one.
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_replace_the_path_and_keep_the_query() {
        assert_eq!(
            with_database("postgres://u@h:5/postgres", "t1"),
            "postgres://u@h:5/t1"
        );
        assert_eq!(
            with_database("postgres://u@h:5", "t1"),
            "postgres://u@h:5/t1"
        );
        assert_eq!(
            with_database("postgres://u@h/x?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
    }
}
