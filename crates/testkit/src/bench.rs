//! What the benchmarks share: the stores they measure, and what they
//! measured, for `benches/peers/run` to set beside its peers.
//!
//! When `STEWARD_BENCH_RESULTS` names a file, each figure is appended to it as
//! one JSON line; otherwise nothing is written (the benchmark's own table is
//! what a person reads).

use std::io::Write;
use std::sync::Arc;

use steward_store::Store;

use crate::DbGuard;

#[derive(Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// SQLite always; PostgreSQL when STEWARD_TEST_POSTGRES_URL is set. To
    /// measure one, STEWARD_BENCH_BACKENDS=sqlite or =postgres.
    pub fn available() -> Vec<Backend> {
        let chosen = std::env::var("STEWARD_BENCH_BACKENDS").unwrap_or_default();
        let wanted = |name: &str| chosen.is_empty() || chosen.split(',').any(|c| c.trim() == name);
        let mut backends = Vec::new();
        if wanted("sqlite") {
            backends.push(Backend::Sqlite);
        }
        if wanted("postgres") && std::env::var(crate::POSTGRES_URL_ENV).is_ok_and(|u| !u.is_empty())
        {
            backends.push(Backend::Postgres);
        }
        backends
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// A migrated, empty store of this backend.
    pub async fn store(self) -> (Arc<dyn Store>, DbGuard) {
        let store = match self {
            Backend::Sqlite => crate::sqlite_store().await,
            Backend::Postgres => crate::postgres_store().await,
        };
        store.expect("the backend is available")
    }
}

pub const RESULTS_ENV: &str = "STEWARD_BENCH_RESULTS";

/// Appends `figure` as one line to the results file, when one is named.
pub fn record(figure: serde_json::Value) {
    let Some(path) = std::env::var_os(RESULTS_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.to_string_lossy()));
    writeln!(file, "{figure}").expect("write a benchmark result");
}
