//! The worker against a real store: SQLite, or PostgreSQL when
//! STEWARD_TEST_POSTGRES_URL is set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use steward_domain::{JobKind, JobState, OrgId, Tier};
use steward_jobs::{JobError, JobHandler, Worker, WorkerSettings};
use steward_store::{Job, NewJob, Store};
use steward_testkit::{DbGuard, any_store};
use tokio::sync::{Semaphore, oneshot};

fn settings(concurrency: usize) -> WorkerSettings {
    WorkerSettings {
        concurrency,
        kind_concurrency: HashMap::new(),
        org_share: WorkerSettings::fair_share(concurrency).0,
        reply_reserve: WorkerSettings::fair_share(concurrency).1,
        lease: Duration::from_secs(3),
        backoff_base: Duration::from_millis(5),
        poll_interval: Duration::from_millis(10),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Records what ran, how many ran at once, and waits at a gate when asked to.
#[derive(Clone, Default)]
struct Recorder {
    ran: Arc<Mutex<Vec<(i64, i32)>>>,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    gate: Option<Arc<Semaphore>>,
    /// Fail the first N attempts of every job: retryably, or permanently.
    fail_first: i32,
    permanent: bool,
}

#[async_trait]
impl JobHandler for Recorder {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let running = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(running, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        tokio::task::yield_now().await;
        self.ran
            .lock()
            .unwrap()
            .push((job.payload["n"].as_i64().unwrap(), job.attempts));
        self.now.fetch_sub(1, Ordering::SeqCst);
        match (job.attempts <= self.fail_first, self.permanent) {
            (false, _) => Ok(()),
            (true, false) => Err(JobError::Retryable(format!(
                "attempt {} failed",
                job.attempts
            ))),
            (true, true) => Err(JobError::Permanent("bad payload".into())),
        }
    }
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

fn start(worker: Worker) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task,
    }
}

async fn enqueue(
    store: &Arc<dyn Store>,
    kind: JobKind,
    n: i64,
    max_attempts: i32,
    ordering_key: Option<&str>,
) {
    let job = NewJob {
        ordering_key: ordering_key.map(str::to_owned),
        ..NewJob::raw(kind, json!({ "n": n }), max_attempts)
    };
    store.enqueue(job).await.unwrap().unwrap();
}

/// Polls `condition` until it holds, failing after a deadline.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn count(store: &Arc<dyn Store>, state: JobState) -> i64 {
    store
        .queue_stats()
        .await
        .unwrap()
        .iter()
        .filter(|s| s.state == state)
        .map(|s| s.count)
        .sum()
}

async fn setup() -> (Arc<dyn Store>, DbGuard) {
    any_store().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_runs_once_and_completes() {
    let (store, _db) = setup().await;
    for n in 0..30 {
        enqueue(&store, JobKind::Classify, n, 3, None).await;
    }
    let recorder = Recorder::default();
    let worker =
        start(Worker::new(store.clone(), settings(4)).handle(JobKind::Classify, recorder.clone()));
    eventually("30 jobs ran", || recorder.ran.lock().unwrap().len() == 30).await;
    worker.stop().await;
    let mut ran: Vec<i64> = recorder
        .ran
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    ran.sort();
    assert_eq!(ran, (0..30).collect::<Vec<_>>(), "each once");
    assert!(
        store.queue_stats().await.unwrap().is_empty(),
        "nothing left queued, running or failed"
    );
}

/// Starts `jobs` jobs of `kind` behind a closed gate and returns how many ran at
/// once at most, after checking that exactly `expected` were claimed.
async fn peak_concurrency(
    limits: WorkerSettings,
    kind: JobKind,
    jobs: i64,
    expected: usize,
) -> usize {
    let (store, _db) = setup().await;
    for n in 0..jobs {
        enqueue(&store, kind, n, 3, None).await;
    }
    let gate = Arc::new(Semaphore::new(0));
    let recorder = Recorder {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let worker = start(Worker::new(store.clone(), limits).handle(kind, recorder.clone()));
    eventually("the limit is reached", || {
        recorder.now.load(Ordering::SeqCst) == expected
    })
    .await;
    assert_eq!(
        count(&store, JobState::Running).await,
        expected as i64,
        "no more claimed than may run"
    );
    gate.add_permits(1000);
    eventually("all ran", || {
        recorder.ran.lock().unwrap().len() == jobs as usize
    })
    .await;
    worker.stop().await;
    recorder.most.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_limited_overall() {
    assert_eq!(
        peak_concurrency(settings(3), JobKind::Respond, 10, 3).await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_limited_per_kind() {
    let mut limits = settings(8);
    limits.kind_concurrency.insert(JobKind::Ingest, 2);
    assert_eq!(peak_concurrency(limits, JobKind::Ingest, 6, 2).await, 2);
}

/// Takes jobs in batches of up to four, recording each call's jobs; job 3
/// fails its first attempt.
/// A job's number and attempt.
type Ran = (i64, i32);

#[derive(Clone, Default)]
struct Batches {
    calls: Arc<Mutex<Vec<Vec<Ran>>>>,
}

#[async_trait]
impl JobHandler for Batches {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        self.run_batch(std::slice::from_ref(job)).await.remove(0)
    }

    fn batch_size(&self) -> usize {
        4
    }

    async fn run_batch(&self, jobs: &[Job]) -> Vec<Result<(), JobError>> {
        let ran = jobs
            .iter()
            .map(|job| (job.payload["n"].as_i64().unwrap(), job.attempts));
        self.calls.lock().unwrap().push(ran.clone().collect());
        ran.map(|(n, attempt)| match (n, attempt) {
            (3, 1) => Err(JobError::Retryable("job 3 fails once".into())),
            _ => Ok(()),
        })
        .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_handler_gets_a_claims_jobs_in_batches_and_each_job_succeeds_or_fails_alone() {
    let (store, _db) = setup().await;
    for n in 0..10 {
        enqueue(&store, JobKind::Respond, n, 3, None).await;
    }
    let batches = Batches::default();
    // Ten queued, eight slots: one claim of eight, two batches of four.
    let worker =
        start(Worker::new(store.clone(), settings(8)).handle(JobKind::Respond, batches.clone()));
    eventually_empty(&store).await;
    worker.stop().await;
    let calls = batches.calls.lock().unwrap().clone();
    assert!(
        calls.iter().all(|call| (1..=4).contains(&call.len())),
        "{calls:?}"
    );
    assert_eq!(
        calls[..2].iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 4],
        "{calls:?}"
    );
    let mut ran: Vec<Ran> = calls.into_iter().flatten().collect();
    ran.sort();
    let mut expected: Vec<Ran> = (0..10).map(|n| (n, 1)).collect();
    expected.push((3, 2));
    expected.sort();
    assert_eq!(
        ran, expected,
        "each once, and job 3 again after its failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried_until_they_succeed() {
    let (store, _db) = setup().await;
    enqueue(&store, JobKind::Deliver, 1, 5, None).await;
    let flaky = Recorder {
        fail_first: 2,
        ..Default::default()
    };
    let worker =
        start(Worker::new(store.clone(), settings(2)).handle(JobKind::Deliver, flaky.clone()));
    eventually("the third attempt ran", || {
        flaky.ran.lock().unwrap().len() == 3
    })
    .await;
    eventually_empty(&store).await;
    worker.stop().await;
    assert_eq!(*flaky.ran.lock().unwrap(), vec![(1, 1), (1, 2), (1, 3)]);
}

async fn eventually_empty(store: &Arc<dyn Store>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !store.queue_stats().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "jobs still pending");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_and_exhausted_attempts_end_dead() {
    let (store, _db) = setup().await;
    enqueue(&store, JobKind::Deliver, 1, 5, None).await;
    enqueue(&store, JobKind::Export, 2, 3, None).await;
    let broken = Recorder {
        fail_first: 99,
        permanent: true,
        ..Default::default()
    };
    let failing = Recorder {
        fail_first: 99,
        ..Default::default()
    };
    let worker = start(
        Worker::new(store.clone(), settings(2))
            .handle(JobKind::Deliver, broken.clone())
            .handle(JobKind::Export, failing.clone()),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(&store, JobState::Dead).await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "jobs did not die");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.stop().await;
    assert_eq!(
        broken.ran.lock().unwrap().len(),
        1,
        "a permanent error is not retried"
    );
    assert_eq!(
        failing.ran.lock().unwrap().len(),
        3,
        "retried until max_attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_with_one_ordering_key_never_overlap_keep_their_order_and_follow_at_once() {
    let (store, _db) = setup().await;
    for n in 0..12 {
        enqueue(&store, JobKind::Respond, n, 3, Some("conversation-1")).await;
    }
    let recorder = Recorder::default();
    // Neither polling nor the lease sweep comes within the test: each job is
    // claimed as the one before it is marked done.
    let mut busy = settings(8);
    busy.poll_interval = Duration::from_secs(3600);
    busy.lease = Duration::from_secs(3600);
    let worker = start(Worker::new(store.clone(), busy).handle(JobKind::Respond, recorder.clone()));
    eventually("12 jobs ran", || recorder.ran.lock().unwrap().len() == 12).await;
    worker.stop().await;
    assert_eq!(recorder.most.load(Ordering::SeqCst), 1, "one at a time");
    let order: Vec<i64> = recorder
        .ran
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(order, (0..12).collect::<Vec<_>>(), "in the order enqueued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_left_by_a_dead_worker_is_taken_over() {
    let (store, _db) = setup().await;
    enqueue(&store, JobKind::Respond, 7, 3, None).await;
    // Claimed by a worker that died at once: its lease has already run out.
    let ghost = store
        .claim(
            "ghost",
            &[JobKind::Respond],
            1,
            chrono::Duration::milliseconds(-1),
        )
        .await
        .unwrap();
    assert_eq!(ghost.len(), 1);
    let recorder = Recorder::default();
    let worker =
        start(Worker::new(store.clone(), settings(2)).handle(JobKind::Respond, recorder.clone()));
    eventually("the orphaned job ran", || {
        recorder.ran.lock().unwrap().len() == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(
        *recorder.ran.lock().unwrap(),
        vec![(7, 2)],
        "second attempt, by the live worker"
    );
    assert!(!store.complete(ghost[0].id, "ghost").await.unwrap());
}

/// Kills its worker as its handler succeeds: the worker task is aborted
/// before it can send the claim that would mark the job done.
struct KillsItsWorker {
    recorder: Recorder,
    worker: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

#[async_trait]
impl JobHandler for KillsItsWorker {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        self.recorder.run(job).await?;
        // An aborted task is dropped at its next poll, which this task's end
        // would cause: the worker never runs again, as if its process died.
        self.worker.lock().unwrap().take().unwrap().abort();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_success_and_its_next_claim_leaves_the_job_to_run_once_more() {
    let (store, _db) = setup().await;
    enqueue(&store, JobKind::Respond, 7, 3, None).await;
    // Closed until the handler can reach its worker's handle.
    let gate = Arc::new(Semaphore::new(0));
    let recorder = Recorder {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let handler = KillsItsWorker {
        recorder: recorder.clone(),
        worker: Arc::default(),
    };
    let killed = handler.worker.clone();
    let dying = tokio::spawn(
        Worker::new(store.clone(), settings(2))
            .handle(JobKind::Respond, handler)
            .run(std::future::pending()),
    );
    *killed.lock().unwrap() = Some(dying.abort_handle());
    // One pass for the dying worker's attempt, one for the survivor's.
    gate.add_permits(2);
    assert!(dying.await.unwrap_err().is_cancelled());
    assert_eq!(*recorder.ran.lock().unwrap(), vec![(7, 1)]);
    assert_eq!(
        count(&store, JobState::Running).await,
        1,
        "the success was never recorded: the job is still leased to the dead worker"
    );

    // Another worker takes it over when the lease runs out (3 s), runs it
    // once more, and records that.
    let survivor =
        start(Worker::new(store.clone(), settings(2)).handle(JobKind::Respond, recorder.clone()));
    eventually_empty(&store).await;
    survivor.stop().await;
    assert_eq!(
        *recorder.ran.lock().unwrap(),
        vec![(7, 1), (7, 2)],
        "at least once: run again after the lease, and no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_jobs_finish() {
    let (store, _db) = setup().await;
    enqueue(&store, JobKind::Backup, 1, 3, None).await;
    let gate = Arc::new(Semaphore::new(0));
    let recorder = Recorder {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let worker =
        start(Worker::new(store.clone(), settings(2)).handle(JobKind::Backup, recorder.clone()));
    eventually("the job started", || {
        recorder.now.load(Ordering::SeqCst) == 1
    })
    .await;
    let stopping = tokio::spawn(worker.stop());
    gate.add_permits(1);
    stopping.await.unwrap();
    assert_eq!(recorder.ran.lock().unwrap().len(), 1);
    assert!(
        store.queue_stats().await.unwrap().is_empty(),
        "it completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_back_jobs_that_do_not_finish_in_time() {
    let (store, _db) = setup().await;
    enqueue(&store, JobKind::Crawl, 1, 3, None).await;
    let stuck = Recorder {
        gate: Some(Arc::new(Semaphore::new(0))),
        ..Default::default()
    };
    let mut quick = settings(2);
    quick.shutdown_grace = Duration::from_millis(100);
    let worker = start(Worker::new(store.clone(), quick).handle(JobKind::Crawl, stuck.clone()));
    eventually("the job started", || stuck.now.load(Ordering::SeqCst) == 1).await;
    worker.stop().await;
    let again = store
        .claim("next", &[JobKind::Crawl], 1, chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "given back, not left leased");
    assert_eq!(
        again[0].attempts, 1,
        "the unfinished attempt was not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_signal_wakes_an_idle_worker_without_waiting_for_its_poll() {
    let (store, _db) = setup().await;
    let mut idle = settings(2);
    // Neither polling nor the lease sweep would find the job within the test.
    idle.poll_interval = Duration::from_secs(3600);
    idle.lease = Duration::from_secs(3600);
    let signal = Arc::new(tokio::sync::Notify::new());
    let recorder = Recorder::default();
    let worker = start(
        Worker::new(store.clone(), idle)
            .handle(JobKind::Respond, recorder.clone())
            .wake_on(signal.clone()),
    );
    // A first job, found by the worker's first look, shows it has looked: after
    // it, the worker sits idle until its poll, an hour away.
    enqueue(&store, JobKind::Respond, 0, 3, None).await;
    eventually("the first job ran", || {
        recorder.ran.lock().unwrap().len() == 1
    })
    .await;
    enqueue(&store, JobKind::Respond, 1, 3, None).await;
    signal.notify_one();
    eventually("the signalled job ran", || {
        recorder.ran.lock().unwrap().len() == 2
    })
    .await;
    worker.stop().await;
}

/// PostgreSQL only: a job enqueued by another process (another pool) wakes an
/// idle worker through LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_enqueue_wakes_an_idle_worker_on_postgres() {
    let Some(database) = steward_testkit::PostgresDatabase::create().await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    let connect = || steward_store_postgres::PostgresStore::connect(&database.url, 4);
    let here: Arc<dyn Store> = Arc::new(connect().await.unwrap());
    here.migrate().await.unwrap();
    let elsewhere: Arc<dyn Store> = Arc::new(connect().await.unwrap());
    let mut idle = settings(2);
    idle.poll_interval = Duration::from_secs(3600);
    idle.lease = Duration::from_secs(3600);
    let recorder = Recorder::default();
    let worker = start(Worker::new(here.clone(), idle).handle(JobKind::Respond, recorder.clone()));
    // The first job is found by the worker's first look; the second only by a wake-up.
    enqueue(&elsewhere, JobKind::Respond, 0, 3, None).await;
    eventually("the first job ran", || {
        recorder.ran.lock().unwrap().len() == 1
    })
    .await;
    enqueue(&elsewhere, JobKind::Respond, 1, 3, None).await;
    eventually("the job enqueued elsewhere ran", || {
        recorder.ran.lock().unwrap().len() == 2
    })
    .await;
    worker.stop().await;
}

/// Fails retryably with a hint of how long to wait.
struct Throttled;

#[async_trait]
impl JobHandler for Throttled {
    async fn run(&self, _job: &Job) -> Result<(), JobError> {
        Err(JobError::RetryableAfter(
            "429 from the provider".into(),
            Duration::from_secs(120),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_hint_delays_the_next_attempt_beyond_the_backoff() {
    let (store, _db) = setup().await;
    enqueue(&store, JobKind::Respond, 1, 5, None).await;
    let before = steward_store::now();
    let worker = start(Worker::new(store.clone(), settings(1)).handle(JobKind::Respond, Throttled));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let waiting = loop {
        let stats = store.queue_stats().await.unwrap();
        if let Some(failed) = stats.iter().find(|s| s.state == JobState::Failed) {
            break failed.oldest_run_at.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not fail"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    worker.stop().await;
    // The backoff alone would be milliseconds; the hint asked for two minutes.
    assert!(
        waiting >= before + chrono::Duration::seconds(119),
        "retry at {waiting}, failed at {before}"
    );
}

/// Whose job started, and of which kind.
type Started = Arc<Mutex<Vec<(Option<OrgId>, JobKind)>>>;

/// Holds every job it starts until the test lets them go, noting whose it was.
#[derive(Clone)]
struct Held {
    started: Started,
    release: Arc<Semaphore>,
}

#[async_trait]
impl JobHandler for Held {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        self.started.lock().unwrap().push((job.org_id, job.kind));
        self.release.acquire().await.unwrap().forget();
        Ok(())
    }
}

/// The starvation the hostile test found: one organization queues a flood of
/// slow ingestion and replies, and holds every slot. With fair shares it holds
/// at most its share, background work never takes the slots kept for
/// replies, and another organization's reply starts while the flood still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organizations_flood_leaves_room_for_another_organizations_reply() {
    let (store, _db) = setup().await;
    let (flood, _) =
        steward_testkit::seed::organization_with_chatbot(&*store, "Flood", Tier::Free).await;
    let (other, _) =
        steward_testkit::seed::organization_with_chatbot(&*store, "Other", Tier::Free).await;
    let enqueue_for = |org: OrgId, kind: JobKind, n: i64| {
        let store = store.clone();
        async move {
            let job = NewJob {
                org_id: Some(org),
                ..NewJob::raw(kind, json!({ "n": n }), 3)
            };
            store.enqueue(job).await.unwrap().unwrap();
        }
    };
    for n in 0..20 {
        enqueue_for(flood.org_id(), JobKind::Ingest, n).await;
    }
    for n in 0..6 {
        enqueue_for(flood.org_id(), JobKind::Respond, 100 + n).await;
    }
    let held = Held {
        started: Arc::default(),
        release: Arc::new(Semaphore::new(0)),
    };
    let concurrency = 8;
    let (share, _) = WorkerSettings::fair_share(concurrency);
    let worker = start(
        Worker::new(store.clone(), settings(concurrency))
            .handle(JobKind::Ingest, held.clone())
            .handle(JobKind::Respond, held.clone()),
    );
    let started = held.started.clone();
    eventually("the flood fills its share", || {
        started.lock().unwrap().len() == share
    })
    .await;

    enqueue_for(other.org_id(), JobKind::Respond, 999).await;
    eventually("the other organization's reply starts", || {
        started
            .lock()
            .unwrap()
            .contains(&(Some(other.org_id()), JobKind::Respond))
    })
    .await;
    let flood_running = started
        .lock()
        .unwrap()
        .iter()
        .filter(|(org, _)| *org == Some(flood.org_id()))
        .count();
    assert_eq!(
        flood_running, share,
        "the flood holds no more than its share"
    );

    held.release.add_permits(1000);
    eventually("every job is done", || started.lock().unwrap().len() == 27).await;
    worker.stop().await;
}

/// Background work alone never takes the slots kept for replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_leaves_the_reply_slots_free() {
    let (store, _db) = setup().await;
    let held = Held {
        started: Arc::default(),
        release: Arc::new(Semaphore::new(0)),
    };
    // Platform jobs (no organization): only the reply reserve limits them.
    for n in 0..12 {
        enqueue(&store, JobKind::Ingest, n, 3, None).await;
    }
    let mut settings = settings(8);
    settings.org_share = 8;
    settings.reply_reserve = 3;
    let worker = start(
        Worker::new(store.clone(), settings)
            .handle(JobKind::Ingest, held.clone())
            .handle(JobKind::Respond, held.clone()),
    );
    let started = held.started.clone();
    eventually("background work fills its slots", || {
        started.lock().unwrap().len() == 5
    })
    .await;
    enqueue(&store, JobKind::Respond, 99, 3, None).await;
    eventually("the reply starts", || started.lock().unwrap().len() == 6).await;
    assert_eq!(
        started.lock().unwrap().last(),
        Some(&(None, JobKind::Respond))
    );
    held.release.add_permits(1000);
    eventually("every job is done", || started.lock().unwrap().len() == 13).await;
    worker.stop().await;
}
