//! What a benchmark measured, for `benches/peers/run` to set beside its peers.
//!
//! When `STEWARD_BENCH_RESULTS` names a file, each figure is appended to it as
//! one JSON line; otherwise nothing is written (the benchmark's own table is
//! what a person reads).

use std::io::Write;

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
