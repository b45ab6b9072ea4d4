//! Two schedulers on one store: one leads; when it dies without a word the
//! other takes over, and every firing is enqueued exactly once, none missed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use steward_domain::jobs::MaintenanceArgs;
use steward_domain::{JobKind, JobState};
use steward_jobs::{Schedule, Scheduler, SchedulerSettings};
use steward_store::Store;
use steward_testkit::any_store;
use tokio::sync::oneshot;

fn settings() -> SchedulerSettings {
    SchedulerSettings {
        lease: Duration::from_secs(1),
        tick: Duration::from_millis(100),
        catch_up: Duration::from_secs(30),
        max_attempts: 3,
    }
}

fn scheduler(store: &Arc<dyn Store>) -> Scheduler {
    let every_second = Schedule::new("tick", "* * * * * *", &MaintenanceArgs {}).unwrap();
    Scheduler::new(store.clone(), vec![every_second], settings())
}

async fn queued(store: &Arc<dyn Store>) -> i64 {
    store
        .queue_stats()
        .await
        .unwrap()
        .iter()
        .filter(|s| s.state == JobState::Queued)
        .map(|s| s.count)
        .sum()
}

async fn wait_for_more_than(store: &Arc<dyn Store>, count: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = queued(store).await;
        if now > count {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no firings after {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_neither_repeats_nor_misses_a_firing() {
    let (store, _db) = any_store().await;
    let first = tokio::spawn(scheduler(&store).run(std::future::pending()));
    // A new leader first enqueues the firings of the catch-up window, one a
    // second; wait until it is past them, so the crash below falls among live
    // firings rather than in the middle of the catch-up.
    let catch_up = settings().catch_up.as_secs() as i64;
    let led = wait_for_more_than(&store, catch_up).await;

    let (stop, stopped) = oneshot::channel::<()>();
    let second = tokio::spawn(scheduler(&store).run(async {
        let _ = stopped.await;
    }));
    let before_crash = wait_for_more_than(&store, led + 2).await;
    let crashed_at = Utc::now();
    first.abort(); // dies without resigning
    let _ = first.await;
    wait_for_more_than(&store, before_crash + 3).await;
    stop.send(()).unwrap();
    second.await.unwrap();

    let jobs = store
        .claim(
            "probe",
            &[JobKind::Maintenance],
            1000,
            chrono::Duration::seconds(30),
        )
        .await
        .unwrap();
    let mut fired: Vec<DateTime<Utc>> = jobs
        .iter()
        .map(|j| {
            let key = j.dedupe_key.as_deref().unwrap();
            DateTime::parse_from_rfc3339(key.strip_prefix("schedule:tick:").unwrap())
                .unwrap()
                .to_utc()
        })
        .collect();
    fired.sort();
    let distinct: std::collections::BTreeSet<_> = fired.iter().collect();
    assert_eq!(distinct.len(), fired.len(), "a firing was enqueued twice");
    for pair in fired.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "a firing was missed between {} and {}",
            pair[0],
            pair[1]
        );
    }
    assert!(
        fired.first().unwrap() < &crashed_at && fired.last().unwrap() > &crashed_at,
        "the window spans the hand-over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_resigns_so_another_leads_at_once() {
    let (store, _db) = any_store().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let first = tokio::spawn(scheduler(&store).run(async {
        let _ = stopped.await;
    }));
    wait_for_more_than(&store, 0).await;
    stop.send(()).unwrap();
    first.await.unwrap();
    let ttl = chrono::Duration::seconds(60);
    let next = store.try_lead("scheduler", "next", ttl).await.unwrap();
    assert!(
        next.is_some(),
        "leadership was given back, not left to expire"
    );
}
