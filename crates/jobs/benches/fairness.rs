//! Another organization's reply latency while one organization floods
//! ingestion, through the real worker (8 slots).
//!
//!   cargo bench -p steward-jobs --bench fairness
//!   STEWARD_TEST_POSTGRES_URL=$(scripts/postgres16) cargo bench -p steward-jobs --bench fairness
//!
//! Each reply is one `respond` job of organization B, enqueued when the one
//! before it is done; its latency runs from enqueue to done, and its work is
//! 5 ms of CPU. Each ingest is one `ingest` job of organization A costing
//! 200 ms of CPU on a blocking thread, as extraction does. B's replies alone
//! (the baseline), then with A's flood of 400 ingests queued first: with
//! fair shares, with fair shares and ingestion limited to one job per core
//! but one (`jobs.kind_concurrency`), and without shares.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use steward_domain::{JobKind, JobState, OrgId, Tier};
use steward_jobs::{JobError, JobHandler, Worker, WorkerSettings};
use steward_store::{Job, NewJob, Store};
use steward_testkit::seed::organization_with_chatbot;
use steward_testkit::{DbGuard, postgres_store, sqlite_store};

const REPLIES: usize = 60;
const FLOOD: i64 = 400;
const CONCURRENCY: usize = 8;

/// Burns `cost` of CPU on a blocking thread.
struct Work {
    cost: Duration,
}

#[async_trait]
impl JobHandler for Work {
    async fn run(&self, _job: &Job) -> Result<(), JobError> {
        let cost = self.cost;
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut x = 0u64;
            while started.elapsed() < cost {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))
    }
}

/// How the worker shares its slots in a run.
#[derive(Clone, Copy)]
enum Sharing {
    None,
    Fair,
    /// Fair, and ingestion at most one job per core but one.
    FairCoresForReplies,
}

fn settings(sharing: Sharing) -> WorkerSettings {
    let (org_share, reply_reserve) = match sharing {
        Sharing::None => (usize::MAX, 0),
        _ => WorkerSettings::fair_share(CONCURRENCY),
    };
    let mut kind_concurrency = HashMap::new();
    if let Sharing::FairCoresForReplies = sharing {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        kind_concurrency.insert(JobKind::Ingest, cores.saturating_sub(1).max(1));
    }
    WorkerSettings {
        concurrency: CONCURRENCY,
        kind_concurrency,
        org_share,
        reply_reserve,
        lease: Duration::from_secs(60),
        backoff_base: Duration::from_millis(10),
        poll_interval: Duration::from_millis(10),
        shutdown_grace: Duration::from_secs(30),
    }
}

async fn fresh(backend: &str) -> (Arc<dyn Store>, DbGuard) {
    match backend {
        "PostgreSQL" => postgres_store()
            .await
            .expect("STEWARD_TEST_POSTGRES_URL is set"),
        _ => sqlite_store().await.unwrap(),
    }
}

async fn enqueue(store: &Arc<dyn Store>, org: OrgId, kind: JobKind) -> Job {
    let job = NewJob {
        org_id: Some(org),
        ..NewJob::raw(kind, serde_json::json!({}), 3)
    };
    store.enqueue(job).await.unwrap().unwrap()
}

/// B's reply latencies in milliseconds, sorted, with A's flood queued first
/// when `flood` is set.
async fn measure(backend: &str, sharing: Sharing, flood: bool) -> Vec<f64> {
    let (store, _db) = fresh(backend).await;
    let (a, _) = organization_with_chatbot(&*store, "Flood", Tier::Free).await;
    let (b, _) = organization_with_chatbot(&*store, "Other", Tier::Free).await;
    if flood {
        for _ in 0..FLOOD {
            enqueue(&store, a.org_id(), JobKind::Ingest).await;
        }
    }
    let worker = Worker::new(store.clone(), settings(sharing))
        .handle(
            JobKind::Ingest,
            Work {
                cost: Duration::from_millis(200),
            },
        )
        .handle(
            JobKind::Respond,
            Work {
                cost: Duration::from_millis(5),
            },
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    if flood {
        // Let the flood take the slots it can before the first reply.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut latencies = Vec::with_capacity(REPLIES);
    for _ in 0..REPLIES {
        let started = Instant::now();
        let job = enqueue(&store, b.org_id(), JobKind::Respond).await;
        loop {
            let state = store.job(&b, job.id).await.unwrap().state;
            if state == JobState::Succeeded {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = stop.send(());
    running.abort();
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut backends = vec!["SQLite"];
    if std::env::var("STEWARD_TEST_POSTGRES_URL").is_ok() {
        backends.push("PostgreSQL");
    }
    println!(
        "{REPLIES} replies of one organization, one at a time; a flood is {FLOOD} ingests of 200 ms CPU by another; {CONCURRENCY} slots"
    );
    println!("| store | run | p50 ms | p99 ms | p99 / baseline p99 |");
    println!("|---|---|---:|---:|---:|");
    for backend in backends {
        let baseline = measure(backend, Sharing::Fair, false).await;
        let base_p99 = percentile(&baseline, 99);
        for (name, latencies) in [
            ("alone (baseline)", baseline.clone()),
            (
                "flood, fair shares",
                measure(backend, Sharing::Fair, true).await,
            ),
            (
                "flood, fair shares, ingest ≤ cores − 1",
                measure(backend, Sharing::FairCoresForReplies, true).await,
            ),
            (
                "flood, no shares",
                measure(backend, Sharing::None, true).await,
            ),
        ] {
            let p99 = percentile(&latencies, 99);
            println!(
                "| {backend} | {name} | {:.1} | {:.1} | {:.2} |",
                percentile(&latencies, 50),
                p99,
                p99 / base_p99
            );
        }
    }
}
