//! The job queue and leadership.

use chrono::Duration;
use serde_json::json;
use steward_domain::*;

use super::*;

// --- The job queue ---

fn job(kind: JobKind) -> NewJob {
    NewJob::raw(kind, json!({"n": 1}), 3)
}

const LEASE: Duration = Duration::seconds(30);

pub async fn jobs_are_claimed_leased_and_completed_once(store: S) {
    let queued = store
        .enqueue(job(JobKind::Maintenance))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued.state, JobState::Queued);
    assert_eq!(queued.attempts, 0);
    assert_eq!(queued.payload, json!({"n": 1}));

    let claimed = store
        .claim("w1", &[JobKind::Maintenance], 10, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let running = &claimed[0];
    assert_eq!(
        (running.id, running.state, running.attempts),
        (queued.id, JobState::Running, 1)
    );
    assert_eq!(running.locked_by.as_deref(), Some("w1"));
    assert!(running.lease_until.unwrap() > now() + Duration::seconds(20));
    assert!(
        store
            .claim("w2", &[JobKind::Maintenance], 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a leased job is nobody else's"
    );

    assert!(store.heartbeat(queued.id, "w1", LEASE).await.unwrap());
    assert!(
        !store.heartbeat(queued.id, "w2", LEASE).await.unwrap(),
        "only the holder extends a lease"
    );
    assert!(!store.complete(queued.id, "w2").await.unwrap());
    assert!(store.complete(queued.id, "w1").await.unwrap());
    assert!(
        !store.complete(queued.id, "w1").await.unwrap(),
        "completing twice does nothing"
    );
    assert!(
        store
            .claim("w2", &[JobKind::Maintenance], 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn completions_ride_on_the_next_claim(store: S) {
    let first = store
        .enqueue(job(JobKind::Classify))
        .await
        .unwrap()
        .unwrap();
    let second = store
        .enqueue(job(JobKind::Classify))
        .await
        .unwrap()
        .unwrap();
    let third = store
        .enqueue(job(JobKind::Classify))
        .await
        .unwrap()
        .unwrap();
    let claimed = store
        .claim("w1", &[JobKind::Classify], 2, LEASE)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );

    // Another worker's job, and one never claimed, are not this worker's to
    // complete; its own are, and the claim takes the next job.
    let stranger = JobId::new();
    let next = store
        .complete_and_claim("w2", &[first.id], &[JobKind::Classify], 5, LEASE, &[])
        .await
        .unwrap();
    assert!(next.completed.is_empty(), "w2 completes nothing of w1's");
    assert_eq!(
        next.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![third.id]
    );
    let next = store
        .complete_and_claim(
            "w1",
            &[first.id, second.id, stranger],
            &[JobKind::Classify],
            5,
            LEASE,
            &[],
        )
        .await
        .unwrap();
    let mut completed = next.completed.clone();
    completed.sort();
    let mut expected = vec![first.id, second.id];
    expected.sort();
    assert_eq!(completed, expected);
    assert!(next.jobs.is_empty(), "the third is w2's");
    for id in [first.id, second.id] {
        assert!(
            !store.complete(id, "w1").await.unwrap(),
            "already succeeded"
        );
    }

    // Completing alone: no kinds, nothing claimed.
    let alone = store
        .complete_and_claim("w2", &[third.id], &[], 0, LEASE, &[])
        .await
        .unwrap();
    assert_eq!(alone.completed, vec![third.id]);
    assert!(alone.jobs.is_empty());
    assert!(
        store.queue_stats().await.unwrap().is_empty(),
        "nothing left queued, running or failed"
    );
}

pub async fn claims_follow_priority_time_and_kind(store: S) {
    let low = store.enqueue(job(JobKind::Respond)).await.unwrap().unwrap();
    let high = store
        .enqueue(NewJob {
            priority: 10,
            ..job(JobKind::Respond)
        })
        .await
        .unwrap()
        .unwrap();
    let later = store
        .enqueue(NewJob {
            run_at: Some(now() + Duration::hours(1)),
            ..job(JobKind::Respond)
        })
        .await
        .unwrap()
        .unwrap();
    let other_kind = store.enqueue(job(JobKind::Deliver)).await.unwrap().unwrap();

    let first = store
        .claim("w", &[JobKind::Respond], 1, LEASE)
        .await
        .unwrap();
    assert_eq!(first[0].id, high.id, "higher priority first");
    let rest = store
        .claim("w", &[JobKind::Respond], 10, LEASE)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![low.id],
        "not before run_at, not other kinds"
    );
    let both = store
        .claim("w", &[JobKind::Deliver, JobKind::Respond], 10, LEASE)
        .await
        .unwrap();
    assert_eq!(
        both.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![other_kind.id]
    );
    assert!(store.claim("w", &[], 10, LEASE).await.unwrap().is_empty());
    let _ = later;
}

pub async fn dedupe_keys_enqueue_a_job_once(store: S) {
    let firing = NewJob {
        dedupe_key: Some("maintenance@2026-11-22T06:00Z".into()),
        ..job(JobKind::Maintenance)
    };
    assert!(store.enqueue(firing.clone()).await.unwrap().is_some());
    assert!(store.enqueue(firing.clone()).await.unwrap().is_none());
    let claimed = store
        .claim("w", &[JobKind::Maintenance], 10, LEASE)
        .await
        .unwrap();
    store.complete(claimed[0].id, "w").await.unwrap();
    assert!(
        store.enqueue(firing).await.unwrap().is_none(),
        "even after it ran"
    );
    assert!(
        store
            .enqueue(job(JobKind::Maintenance))
            .await
            .unwrap()
            .is_some(),
        "jobs without a key are never deduplicated"
    );
    assert!(
        store
            .enqueue(job(JobKind::Maintenance))
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn many_jobs_enqueue_at_once_in_their_order_and_once_per_key(store: S) {
    assert!(store.enqueue_many(Vec::new()).await.unwrap().is_empty());
    let earlier = NewJob {
        payload: json!({ "n": -3 }),
        dedupe_key: Some("page-3".into()),
        ..job(JobKind::Ingest)
    };
    assert!(store.enqueue(earlier).await.unwrap().is_some());
    // More than one statement's worth (500 rows), numbered in their payloads;
    // page 3's key was used before, and page 7's twice in this batch.
    let jobs: Vec<NewJob> = (0..1_203)
        .map(|n| NewJob {
            payload: json!({ "n": n }),
            dedupe_key: match n {
                3 => Some("page-3".into()),
                7 | 1_100 => Some("page-7".into()),
                _ => None,
            },
            priority: i32::from(n == 1_202),
            ..job(JobKind::Ingest)
        })
        .collect();
    let stored = store.enqueue_many(jobs).await.unwrap();
    let numbers: Vec<i64> = stored
        .iter()
        .map(|job| job.payload["n"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (0..1_203).filter(|n| *n != 3 && *n != 1_100).collect();
    assert_eq!(
        numbers, expected,
        "stored in the order given, repeated keys left out"
    );
    assert!(
        stored
            .iter()
            .all(|job| job.state == JobState::Queued && job.attempts == 0)
    );
    let first = store
        .claim("w", &[JobKind::Ingest], 3, LEASE)
        .await
        .unwrap();
    assert_eq!(
        first
            .iter()
            .map(|job| job.payload["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1_202, -3, 0],
        "claimed by priority, then in the order enqueued"
    );
    let stats = store.queue_stats().await.unwrap();
    let queued: i64 = stats
        .iter()
        .filter(|s| s.kind == JobKind::Ingest && s.state == JobState::Queued)
        .map(|s| s.count)
        .sum();
    assert_eq!(
        queued,
        1 + 1_201 - 3,
        "page 3's first job and the batch, less three claimed"
    );
}

pub async fn failed_attempts_retry_with_backoff_then_die(store: S) {
    let queued = store
        .enqueue(NewJob {
            max_attempts: 2,
            ..job(JobKind::Deliver)
        })
        .await
        .unwrap()
        .unwrap();
    let kinds = [JobKind::Deliver];
    store.claim("w", &kinds, 1, LEASE).await.unwrap();
    let later = now() + Duration::minutes(5);
    assert_eq!(
        store
            .fail(
                queued.id,
                "w",
                "503 from the channel",
                JobFailure::Retry { at: later }
            )
            .await
            .unwrap(),
        Some(JobState::Failed)
    );
    assert!(
        store.claim("w", &kinds, 1, LEASE).await.unwrap().is_empty(),
        "not before its retry time"
    );
    assert_eq!(
        store
            .fail(queued.id, "w", "again", JobFailure::Permanent)
            .await
            .unwrap(),
        None,
        "not running any more"
    );

    // Make it due now, as time passing would.
    let past = now() - Duration::seconds(1);
    let retried = store
        .enqueue(NewJob {
            max_attempts: 2,
            run_at: Some(past),
            ..job(JobKind::Deliver)
        })
        .await
        .unwrap()
        .unwrap();
    let claimed = store.claim("w", &kinds, 1, LEASE).await.unwrap();
    assert_eq!(claimed[0].id, retried.id);
    assert_eq!(
        store
            .fail(retried.id, "w", "first", JobFailure::Retry { at: past })
            .await
            .unwrap(),
        Some(JobState::Failed)
    );
    let again = store.claim("w", &kinds, 1, LEASE).await.unwrap();
    assert_eq!((again[0].id, again[0].attempts), (retried.id, 2));
    assert_eq!(again[0].last_error.as_deref(), Some("first"));
    assert_eq!(
        store
            .fail(retried.id, "w", "second", JobFailure::Retry { at: past })
            .await
            .unwrap(),
        Some(JobState::Dead),
        "out of attempts"
    );

    let permanent = store.enqueue(job(JobKind::Deliver)).await.unwrap().unwrap();
    store.claim("w", &kinds, 1, LEASE).await.unwrap();
    assert_eq!(
        store
            .fail(permanent.id, "w", &"x".repeat(5000), JobFailure::Permanent)
            .await
            .unwrap(),
        Some(JobState::Dead)
    );
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(
        stats
            .iter()
            .find(|s| s.state == JobState::Dead)
            .unwrap()
            .count,
        2
    );
}

pub async fn jobs_sharing_an_ordering_key_run_one_at_a_time_in_order(store: S) {
    let keyed = |key: &str| NewJob {
        ordering_key: Some(key.into()),
        ..job(JobKind::Respond)
    };
    let a1 = store
        .enqueue(keyed("conversation-a"))
        .await
        .unwrap()
        .unwrap();
    let a2 = store
        .enqueue(keyed("conversation-a"))
        .await
        .unwrap()
        .unwrap();
    let b1 = store
        .enqueue(keyed("conversation-b"))
        .await
        .unwrap()
        .unwrap();
    let kinds = [JobKind::Respond];

    let first = store.claim("w", &kinds, 10, LEASE).await.unwrap();
    let ids: Vec<_> = first.iter().map(|j| j.id).collect();
    assert_eq!(ids.len(), 2, "one per key: {ids:?}");
    assert!(ids.contains(&a1.id) && ids.contains(&b1.id));
    assert!(
        store
            .claim("w", &kinds, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a2 waits for a1"
    );

    // A failed a1 still holds up a2: order is kept across retries.
    store
        .fail(
            a1.id,
            "w",
            "transient",
            JobFailure::Retry {
                at: now() - Duration::seconds(1),
            },
        )
        .await
        .unwrap();
    let next = store.claim("w", &kinds, 10, LEASE).await.unwrap();
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a1.id]);
    store.complete(a1.id, "w").await.unwrap();
    let then = store.claim("w", &kinds, 10, LEASE).await.unwrap();
    assert_eq!(then.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a2.id]);

    // A dead job does not block its key for ever.
    let a3 = store
        .enqueue(keyed("conversation-a"))
        .await
        .unwrap()
        .unwrap();
    store
        .fail(a2.id, "w", "broken", JobFailure::Permanent)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim("w", &kinds, 10, LEASE)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect::<Vec<_>>(),
        vec![a3.id]
    );
}

pub async fn expired_leases_are_requeued_and_the_old_worker_loses_the_job(store: S) {
    let queued = store
        .enqueue(NewJob {
            max_attempts: 2,
            ..job(JobKind::Respond)
        })
        .await
        .unwrap()
        .unwrap();
    let kinds = [JobKind::Respond];
    // A lease that has already run out, as when a worker was killed.
    store
        .claim("dead-worker", &kinds, 1, Duration::milliseconds(-1))
        .await
        .unwrap();
    assert_eq!(store.requeue_expired().await.unwrap(), 1);
    assert_eq!(store.requeue_expired().await.unwrap(), 0);

    let taken_over = store.claim("w2", &kinds, 1, LEASE).await.unwrap();
    assert_eq!((taken_over[0].id, taken_over[0].attempts), (queued.id, 2));
    assert!(
        taken_over[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("lease expired")
    );
    assert!(
        !store.complete(queued.id, "dead-worker").await.unwrap(),
        "the old worker's result is refused"
    );
    assert!(
        !store
            .heartbeat(queued.id, "dead-worker", LEASE)
            .await
            .unwrap()
    );

    // Out of attempts when the lease runs out again: dead.
    store
        .heartbeat(queued.id, "w2", Duration::milliseconds(-1))
        .await
        .unwrap();
    assert_eq!(store.requeue_expired().await.unwrap(), 1);
    assert!(
        store
            .claim("w3", &kinds, 1, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(
        stats
            .iter()
            .find(|s| s.state == JobState::Dead)
            .map(|s| s.count),
        Some(1)
    );
}

pub async fn released_jobs_do_not_count_an_attempt(store: S) {
    let queued = store.enqueue(job(JobKind::Ingest)).await.unwrap().unwrap();
    store
        .claim("w", &[JobKind::Ingest], 1, LEASE)
        .await
        .unwrap();
    assert!(!store.release(queued.id, "other").await.unwrap());
    assert!(store.release(queued.id, "w").await.unwrap());
    let again = store
        .claim("w2", &[JobKind::Ingest], 1, LEASE)
        .await
        .unwrap();
    assert_eq!((again[0].id, again[0].attempts), (queued.id, 1));
}

pub async fn dead_jobs_are_retried_or_discarded_by_their_org_only(store: S) {
    let (a, _) = org(&store, "Alpha").await;
    let (b, _) = org(&store, "Beta").await;
    let kinds = [JobKind::Deliver];
    let mut dead = Vec::new();
    for _ in 0..2 {
        let queued = store
            .enqueue(NewJob {
                org_id: Some(a.org_id()),
                ..job(JobKind::Deliver)
            })
            .await
            .unwrap()
            .unwrap();
        store.claim("w", &kinds, 1, LEASE).await.unwrap();
        store
            .fail(queued.id, "w", "410 gone", JobFailure::Permanent)
            .await
            .unwrap();
        dead.push(queued.id);
    }
    let listed = store.list_jobs(&a, Some(JobState::Dead), 50).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].last_error.as_deref(), Some("410 gone"));
    assert!(store.list_jobs(&b, None, 50).await.unwrap().is_empty());
    assert!(
        store
            .list_jobs(&a, Some(JobState::Queued), 50)
            .await
            .unwrap()
            .is_empty()
    );
    assert_not_found(store.job(&b, dead[0]).await, "another org's job");
    assert_not_found(
        store.retry_dead_job(&b, dead[0]).await,
        "another org's retry",
    );
    assert_not_found(
        store.discard_dead_job(&b, dead[0]).await,
        "another org's discard",
    );

    let retried = store.retry_dead_job(&a, dead[0]).await.unwrap();
    assert_eq!((retried.state, retried.attempts), (JobState::Queued, 0));
    assert_not_found(
        store.retry_dead_job(&a, dead[0]).await,
        "only dead jobs are retried",
    );
    assert_eq!(
        store.claim("w", &kinds, 1, LEASE).await.unwrap()[0].id,
        dead[0]
    );
    store.discard_dead_job(&a, dead[1]).await.unwrap();
    assert_not_found(store.job(&a, dead[1]).await, "discarded");
    let actions: Vec<_> = store
        .list_audit(&a, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"job.retried".to_owned())
            && actions.contains(&"job.discarded".to_owned())
    );
}

pub async fn queue_stats_and_pruning(store: S) {
    let past = now() - Duration::minutes(2);
    store
        .enqueue(NewJob {
            run_at: Some(past),
            ..job(JobKind::Respond)
        })
        .await
        .unwrap();
    store.enqueue(job(JobKind::Respond)).await.unwrap();
    let done = store.enqueue(job(JobKind::Backup)).await.unwrap().unwrap();
    store
        .claim("w", &[JobKind::Backup], 1, LEASE)
        .await
        .unwrap();
    store.complete(done.id, "w").await.unwrap();

    let stats = store.queue_stats().await.unwrap();
    let respond = stats
        .iter()
        .find(|s| s.kind == JobKind::Respond && s.state == JobState::Queued)
        .unwrap();
    assert_eq!(respond.count, 2);
    assert_eq!(respond.oldest_run_at, Some(past));
    assert!(
        stats.iter().all(|s| s.state != JobState::Succeeded),
        "finished work is not queue depth"
    );

    assert_eq!(
        store
            .prune_finished_jobs(now() - Duration::hours(1))
            .await
            .unwrap(),
        0,
        "too recent"
    );
    assert_eq!(
        store
            .prune_finished_jobs(now() + Duration::seconds(1))
            .await
            .unwrap(),
        1,
        "only the finished job"
    );
    assert_eq!(
        store
            .queue_stats()
            .await
            .unwrap()
            .iter()
            .map(|s| s.count)
            .sum::<i64>(),
        2
    );
}

pub async fn concurrent_claims_hand_each_job_to_one_worker(store: S) {
    for _ in 0..60 {
        store.enqueue(job(JobKind::Classify)).await.unwrap();
    }
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim(&format!("w{w}"), &[JobKind::Classify], 3, LEASE)
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    for job in batch {
                        assert!(store.complete(job.id, &format!("w{w}")).await.unwrap());
                        mine.push(job.id);
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (60, 60), "every job once");
}

// --- Leadership ---

pub async fn one_holder_leads_at_a_time_and_a_dead_leader_is_replaced(store: S) {
    let ttl = Duration::milliseconds(300);
    let mut a = store
        .try_lead("scheduler", "a", ttl)
        .await
        .unwrap()
        .expect("nobody leads: a does");
    assert!(
        store
            .try_lead("scheduler", "b", ttl)
            .await
            .unwrap()
            .is_none(),
        "a leads"
    );
    let _other = store
        .try_lead("backups", "b", ttl)
        .await
        .unwrap()
        .expect("names are independent");
    assert!(a.still_leading().await.unwrap());
    a.resign().await;

    let b = store
        .try_lead("scheduler", "b", ttl)
        .await
        .unwrap()
        .expect("a resigned: b leads at once");
    assert!(
        store
            .try_lead("scheduler", "c", ttl)
            .await
            .unwrap()
            .is_none()
    );
    // b dies without resigning: its lease runs out, or its connection goes.
    drop(b);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut c = loop {
        if let Some(c) = store.try_lead("scheduler", "c", ttl).await.unwrap() {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nobody took over from a dead leader"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(c.still_leading().await.unwrap());
    c.resign().await;
}
