//! Queue throughput and latency through the real worker.
//!
//!   STEWARD_TEST_POSTGRES_URL=$(scripts/postgres16) cargo bench -p steward-jobs --bench queue
//!
//! Throughput: STEWARD_BENCH_JOBS (default 3000) no-op jobs are enqueued, then
//! one worker at concurrency 1, 8 and 32 runs them all, one job per handler
//! call, and at 8 and 32 again with a handler that takes as many jobs per
//! call as the concurrency (pg-boss's `batchSize`); jobs/s is jobs over the
//! time from the worker's start to the last completion. Latency: with the
//! worker idle and polling every 10 ms, 500 jobs are enqueued 2 ms apart and the
//! time from enqueue to the handler starting is recorded. Batch enqueue: the
//! same number of jobs through `enqueue_many`, 1,000 per call. With
//! STEWARD_BENCH_RESULTS=FILE the throughput figures are also appended to FILE
//! as JSON lines (`benches/peers/run` sets them beside the peers'). To measure
//! less: STEWARD_BENCH_BACKENDS=sqlite or =postgres, and STEWARD_BENCH_MODES
//! as concurrency x jobs per call, e.g. `8x1,32x32`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use steward_domain::JobKind;
use steward_jobs::{JobError, JobHandler, Worker, WorkerSettings};
use steward_store::{Job, NewJob};
use steward_testkit::bench::{Backend, record};

#[derive(Clone, Default)]
struct Noop {
    done: Arc<AtomicUsize>,
    waits: Arc<Mutex<Vec<f64>>>,
    /// Jobs per handler call (0 or 1: one at a time).
    batch: usize,
}

#[async_trait]
impl JobHandler for Noop {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let waited = steward_store::now() - job.created_at;
        self.waits
            .lock()
            .unwrap()
            .push(waited.num_microseconds().unwrap_or(0) as f64 / 1000.0);
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn batch_size(&self) -> usize {
        self.batch.max(1)
    }
}

fn settings(concurrency: usize, poll: Duration) -> WorkerSettings {
    WorkerSettings {
        concurrency,
        kind_concurrency: HashMap::new(),
        // The queue alone is measured: no fair-share limits.
        org_share: usize::MAX,
        reply_reserve: 0,
        lease: Duration::from_secs(30),
        backoff_base: Duration::from_millis(10),
        poll_interval: poll,
        shutdown_grace: Duration::from_secs(5),
    }
}

async fn run_until(worker: Worker, noop: &Noop, total: usize) -> Duration {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    while noop.done.load(Ordering::SeqCst) < total {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    let _ = stop.send(());
    task.await.unwrap();
    took
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("STEWARD_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    println!(
        "| backend | concurrency | jobs per handler call | jobs | enqueue (jobs/s, one at a time) | run (jobs/s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    // One job per handler call; then, as pg-boss's `batchSize`, as many as
    // the concurrency (jobs in flight) to one call.
    let modes = [(1, 1), (8, 1), (32, 1), (8, 8), (32, 32)];
    let chosen_modes = std::env::var("STEWARD_BENCH_MODES").unwrap_or_default();
    let modes = modes.into_iter().filter(|(concurrency, batch)| {
        chosen_modes.is_empty()
            || chosen_modes
                .split(',')
                .any(|m| m.trim() == format!("{concurrency}x{batch}"))
    });
    for backend in Backend::available() {
        let name = backend.name();
        for (concurrency, batch) in modes.clone() {
            let (store, _db) = backend.store().await;
            let enqueue_started = Instant::now();
            for n in 0..total {
                store
                    .enqueue(NewJob::raw(JobKind::Classify, json!({ "n": n }), 3))
                    .await
                    .unwrap();
            }
            let enqueue_rate = total as f64 / enqueue_started.elapsed().as_secs_f64();
            let noop = Noop {
                batch,
                ..Noop::default()
            };
            let worker = Worker::new(
                store.clone(),
                settings(concurrency, Duration::from_millis(10)),
            )
            .handle(JobKind::Classify, noop.clone());
            let took = run_until(worker, &noop, total).await;
            let run_rate = total as f64 / took.as_secs_f64();
            println!(
                "| {name} | {concurrency} | {batch} | {total} | {enqueue_rate:.0} | {run_rate:.0} |"
            );
            record(json!({
                "bench": "queue", "system": "Steward", "store": name, "batches": batch > 1,
                "concurrency": concurrency, "jobs": total, "enqueue": enqueue_rate, "run": run_rate,
            }));
        }
    }

    println!();
    println!("| backend | jobs | enqueue (jobs/s, 1,000 per `enqueue_many`) |");
    println!("|---|---:|---:|");
    for backend in Backend::available() {
        let name = backend.name();
        let (store, _db) = backend.store().await;
        let jobs: Vec<NewJob> = (0..total)
            .map(|n| NewJob::raw(JobKind::Classify, json!({ "n": n }), 3))
            .collect();
        let started = Instant::now();
        for some in jobs.chunks(1000) {
            store.enqueue_many(some.to_vec()).await.unwrap();
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        println!("| {name} | {total} | {rate:.0} |");
        record(json!({
            "bench": "batch-enqueue", "system": "Steward", "store": name, "jobs": total, "rate": rate,
        }));
    }

    println!();
    println!("| backend | poll interval | jobs | enqueue-to-start p50 (ms) | p99 (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for backend in Backend::available() {
        let name = backend.name();
        for poll in [Duration::from_millis(10), Duration::from_millis(1000)] {
            let (store, _db) = backend.store().await;
            let noop = Noop::default();
            let worker = Worker::new(store.clone(), settings(8, poll))
                .handle(JobKind::Classify, noop.clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(worker.run(async {
                let _ = stopped.await;
            }));
            let jobs = 500;
            for n in 0..jobs {
                store
                    .enqueue(NewJob::raw(JobKind::Classify, json!({ "n": n }), 3))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            while noop.done.load(Ordering::SeqCst) < jobs {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let _ = stop.send(());
            task.await.unwrap();
            let mut waits = noop.waits.lock().unwrap().clone();
            waits.sort_by(f64::total_cmp);
            println!(
                "| {name} | {} ms | {jobs} | {:.1} | {:.1} |",
                poll.as_millis(),
                percentile(&waits, 50),
                percentile(&waits, 99)
            );
        }
    }
}
