//! The worker loop. It claims only as many jobs as it has free slots (overall
//! and per kind; a job, alone or in a batch, holds one), runs each job in a
//! task of its own (or each batch, for a handler that takes batches) beside a
//! heartbeat that keeps the leases, and records the outcome: a failure at
//! once, a success with the next claim (one statement marks every finished
//! job done and claims more). It also sweeps expired leases, so a job whose
//! worker died is taken over by another. On shutdown it stops claiming, lets
//! running jobs finish within a grace period, and gives back the rest.
//!
//! Slots are shared fairly: replies (`respond`, `deliver`) are claimed first
//! and have slots of their own that background work never takes, and no
//! organization's jobs hold more than its share of the slots, so one tenant's
//! flood of ingestion or crawls cannot keep another's replies waiting.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use steward_domain::{JobId, JobKind, JobState, OrgId};
use steward_store::{Job, JobFailure, Store, StoreError};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::retry_delay;

/// Why a job's attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Worth another attempt later (a timeout, a 503, a 429).
    Retryable(String),
    /// Worth another attempt, but not before this long (a 429's `retry-after`).
    RetryableAfter(String, Duration),
    /// Another attempt would fail the same way (bad payload, 4xx): dead at once.
    Permanent(String),
}

/// The one retry policy for the store's errors, whichever job meets them: a
/// database out of reach, or failing in a way it may not the next time, is
/// worth another attempt (attempts are bounded); a row that is gone or a
/// change that conflicts with what is stored fails the same way every time.
/// A handler that expects a row may be gone matches `NotFound` itself first.
impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Internal(_) => Self::Retryable(e.to_string()),
            StoreError::NotFound | StoreError::Conflict(_) => Self::Permanent(e.to_string()),
        }
    }
}

/// A payload that is not its kind's arguments will never read: dead at once.
impl From<steward_store::ArgsError> for JobError {
    fn from(e: steward_store::ArgsError) -> Self {
        Self::Permanent(e.to_string())
    }
}

/// Runs jobs of one kind. Jobs are delivered at least once: a handler must make
/// its side effects idempotent (by a key derived from the job).
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, job: &Job) -> Result<(), JobError>;

    /// Most jobs handed to one call of [`JobHandler::run_batch`]; above 1,
    /// the worker gives the jobs of one claim to this handler in batches
    /// (each job still holds a slot of its own).
    fn batch_size(&self) -> usize {
        1
    }

    /// Runs several jobs of the kind at once: one outcome per job, in their
    /// order. By default, one after another.
    async fn run_batch(&self, jobs: &[Job]) -> Vec<Result<(), JobError>> {
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            outcomes.push(self.run(job).await);
        }
        outcomes
    }
}

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub kind_concurrency: HashMap<JobKind, usize>,
    /// Most slots one organization's jobs may hold at once.
    pub org_share: usize,
    /// Slots kept for replies: other kinds together never hold more than
    /// `concurrency - reply_reserve`.
    pub reply_reserve: usize,
    pub lease: Duration,
    pub backoff_base: Duration,
    pub poll_interval: Duration,
    /// How long running jobs may finish after shutdown is asked for.
    pub shutdown_grace: Duration,
}

pub struct Worker {
    id: String,
    store: Arc<dyn Store>,
    handlers: HashMap<JobKind, Arc<dyn JobHandler>>,
    settings: WorkerSettings,
    wake: Arc<Notify>,
}

impl WorkerSettings {
    /// The fair-share defaults for `concurrency` slots: half of them at most
    /// for one organization, a quarter kept for replies.
    pub fn fair_share(concurrency: usize) -> (usize, usize) {
        (concurrency.div_ceil(2).max(1), concurrency / 4)
    }
}

/// Replies: what a person is waiting for.
fn is_reply(kind: JobKind) -> bool {
    matches!(kind, JobKind::Respond | JobKind::Deliver)
}

/// What runs now: by task, and counted by kind and by organization.
/// A job that holds a slot: its id, kind and organization.
type Held = (JobId, JobKind, Option<OrgId>);

#[derive(Default)]
struct Slots {
    /// The jobs each task runs (one, or a batch).
    by_task: HashMap<tokio::task::Id, Vec<Held>>,
    /// Jobs running, in all.
    running: usize,
    per_kind: HashMap<JobKind, usize>,
    per_org: HashMap<OrgId, usize>,
}

impl Slots {
    fn start(&mut self, task: tokio::task::Id, jobs: Vec<Held>) {
        for &(_, kind, org) in &jobs {
            self.running += 1;
            *self.per_kind.entry(kind).or_default() += 1;
            if let Some(org) = org {
                *self.per_org.entry(org).or_default() += 1;
            }
        }
        self.by_task.insert(task, jobs);
    }

    /// Frees the task's slots; the jobs it ran, with their kinds.
    fn finish(&mut self, task: tokio::task::Id) -> Vec<(JobId, JobKind)> {
        let jobs = self.by_task.remove(&task).unwrap_or_default();
        for &(_, kind, org) in &jobs {
            self.running -= 1;
            *self.per_kind.entry(kind).or_default() -= 1;
            if let Some(org) = org
                && let Some(n) = self.per_org.get_mut(&org)
            {
                *n -= 1;
                if *n == 0 {
                    self.per_org.remove(&org);
                }
            }
        }
        jobs.into_iter().map(|(job, kind, _)| (job, kind)).collect()
    }

    /// Takes a finished task's outcome: its jobs that succeeded go to `done`.
    fn finished(
        &mut self,
        outcome: Result<(tokio::task::Id, Vec<JobId>), tokio::task::JoinError>,
        done: &mut Vec<(JobId, JobKind)>,
    ) {
        let (task, succeeded) = match outcome {
            Ok((task, succeeded)) => (task, succeeded),
            Err(e) => (e.id(), Vec::new()),
        };
        for (job, kind) in self.finish(task) {
            if succeeded.contains(&job) {
                done.push((job, kind));
            }
        }
    }

    /// Running jobs that are not replies.
    fn background(&self) -> usize {
        self.per_kind
            .iter()
            .filter(|(kind, _)| !is_reply(**kind))
            .map(|(_, n)| n)
            .sum()
    }

    fn org_count(&self, org: Option<OrgId>) -> usize {
        org.and_then(|o| self.per_org.get(&o).copied()).unwrap_or(0)
    }
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, settings: WorkerSettings) -> Self {
        let id = crate::holder_id("worker");
        Self {
            id,
            store,
            handlers: HashMap::new(),
            settings,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Runs jobs of `kind` with `handler`.
    pub fn handle(mut self, kind: JobKind, handler: impl JobHandler) -> Self {
        self.handlers.insert(kind, Arc::new(handler));
        self
    }

    /// Looks for jobs at once whenever `signal` is notified (an enqueue in this process).
    pub fn wake_on(mut self, signal: Arc<Notify>) -> Self {
        self.wake = signal;
        self
    }

    /// Runs until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let lease = chrono::Duration::from_std(self.settings.lease)
            .unwrap_or(chrono::Duration::seconds(60));
        // Each task answers the jobs of its slots that succeeded.
        let mut running: JoinSet<Vec<JobId>> = JoinSet::new();
        let mut slots = Slots::default();
        // Jobs whose handler succeeded, marked done with the next claim.
        let mut done: Vec<(JobId, JobKind)> = Vec::new();
        let mut sweep = tokio::time::interval(self.settings.lease / 2);
        // Other processes' enqueues wake this worker too, where the store can tell.
        let store = self.store.clone();
        let wake = self.wake.clone();
        let watcher = tokio::spawn(async move { store.watch_enqueued(wake).await });
        tracing::info!(worker = %self.id, kinds = ?self.handlers.keys().collect::<Vec<_>>(), "worker started");

        loop {
            self.claim_into(&mut running, &mut slots, lease, &mut done)
                .await;
            tokio::select! {
                () = &mut shutdown => break,
                Some(first) = running.join_next_with_id(), if !running.is_empty() => {
                    // Gather every job that has finished too, so that under load one
                    // claim fills several slots (and marks them all done) at once.
                    slots.finished(first, &mut done);
                    while let Some(more) = running.try_join_next_with_id() {
                        slots.finished(more, &mut done);
                    }
                }
                _ = sweep.tick() => match self.store.requeue_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(jobs = n, "requeued jobs whose worker stopped"),
                    Err(e) => tracing::warn!(error = %e, "could not sweep expired leases"),
                },
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }

        watcher.abort();
        tracing::info!(worker = %self.id, running = slots.running, "worker stopping: no new jobs; finishing running ones");
        let drained = tokio::time::timeout(self.settings.shutdown_grace, async {
            while let Some(finished) = running.join_next_with_id().await {
                slots.finished(finished, &mut done);
            }
        })
        .await;
        self.complete(&mut done, lease).await;
        if !done.is_empty() {
            tracing::warn!(
                jobs = done.len(),
                "could not mark finished jobs done; they may run again"
            );
        }
        if drained.is_err() {
            running.abort_all();
            for (job, _, _) in slots.by_task.values().flatten() {
                match self.store.release(*job, &self.id).await {
                    Ok(true) => {
                        tracing::warn!(job_id = %job, "gave back a job that did not finish in time")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(job_id = %job, error = %e, "could not give back a job; its lease will expire")
                    }
                }
            }
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    /// Claims jobs for the free slots, replies first, kind by kind, passing
    /// over organizations at their share, and starts them. The jobs in `done`
    /// are marked succeeded by the first claim (or on their own when no kind
    /// has a free slot); on a store error they stay in `done` for the next try.
    async fn claim_into(
        &self,
        running: &mut JoinSet<Vec<JobId>>,
        slots: &mut Slots,
        lease: chrono::Duration,
        done: &mut Vec<(JobId, JobKind)>,
    ) {
        let mut kinds: Vec<JobKind> = self.handlers.keys().copied().collect();
        kinds.sort_by_key(|kind| (!is_reply(*kind), kind.as_str()));
        let settings = &self.settings;
        for kind in kinds {
            // A claim that marks jobs done cannot see a job queued behind one
            // of them in its ordering key: when it came back short, claim again.
            loop {
                let free = self.free_slots(kind, slots);
                if free == 0 {
                    break;
                }
                let at_share: Vec<OrgId> = slots
                    .per_org
                    .iter()
                    .filter(|(_, n)| **n >= settings.org_share)
                    .map(|(org, _)| *org)
                    .collect();
                let handed_back = std::mem::take(done);
                let ids: Vec<JobId> = handed_back.iter().map(|(job, _)| *job).collect();
                let claimed = match self
                    .store
                    .complete_and_claim(&self.id, &ids, &[kind], free as u32, lease, &at_share)
                    .await
                {
                    Ok(claimed) => claimed,
                    Err(e) => {
                        tracing::warn!(error = %e, kind = %kind, "could not claim jobs");
                        *done = handed_back;
                        break;
                    }
                };
                count_completions(&handed_back, &claimed.completed);
                let again = !handed_back.is_empty() && claimed.jobs.len() < free;
                let mut admitted = Vec::with_capacity(claimed.jobs.len());
                let mut per_org: HashMap<OrgId, usize> = HashMap::new();
                for job in claimed.jobs {
                    // One claim may bring more of an organization's jobs than its
                    // share leaves room for: those go back, no attempt counted.
                    if let Some(org) = job.org_id {
                        let taken = per_org.entry(org).or_default();
                        if slots.org_count(Some(org)) + *taken >= settings.org_share {
                            if let Err(e) = self.store.release(job.id, &self.id).await {
                                tracing::warn!(job_id = %job.id, error = %e, "could not give back a job over its organization's share; its lease will expire");
                            }
                            continue;
                        }
                        *taken += 1;
                    }
                    admitted.push(job);
                }
                let handler = &self.handlers[&kind];
                let batch_size = handler.batch_size().max(1);
                while !admitted.is_empty() {
                    let rest = admitted.split_off(batch_size.min(admitted.len()));
                    let jobs = std::mem::replace(&mut admitted, rest);
                    let task = Execution {
                        store: self.store.clone(),
                        worker: self.id.clone(),
                        handler: handler.clone(),
                        lease: self.settings.lease,
                        backoff_base: self.settings.backoff_base,
                    };
                    let held = jobs.iter().map(|j| (j.id, j.kind, j.org_id)).collect();
                    let handle = if let [job] = jobs.as_slice() {
                        let org = job.org_id.map(|o| o.to_string()).unwrap_or_default();
                        let span = tracing::info_span!("job", job_id = %job.id, kind = %kind, org_id = %org, attempt = job.attempts);
                        running.spawn(task.run(jobs).instrument(span))
                    } else {
                        let span = tracing::info_span!("jobs", kind = %kind, batch = jobs.len());
                        running.spawn(task.run(jobs).instrument(span))
                    };
                    slots.start(handle.id(), held);
                }
                if !again {
                    break;
                }
            }
        }
        self.complete(done, lease).await;
    }

    /// Slots a claim of `kind` may fill now: free ones, less those kept for
    /// replies (for other kinds), within the kind's own limit.
    fn free_slots(&self, kind: JobKind, slots: &Slots) -> usize {
        let settings = &self.settings;
        let mut free = settings.concurrency.saturating_sub(slots.running);
        if !is_reply(kind) {
            let background_slots = settings.concurrency.saturating_sub(settings.reply_reserve);
            free = free.min(background_slots.saturating_sub(slots.background()));
        }
        let kind_limit = settings
            .kind_concurrency
            .get(&kind)
            .copied()
            .unwrap_or(settings.concurrency);
        free.min(kind_limit.saturating_sub(slots.per_kind.get(&kind).copied().unwrap_or(0)))
    }

    /// Marks `done` succeeded, claiming nothing; on a store error they stay
    /// in `done`.
    async fn complete(&self, done: &mut Vec<(JobId, JobKind)>, lease: chrono::Duration) {
        if done.is_empty() {
            return;
        }
        let ids: Vec<JobId> = done.iter().map(|(job, _)| *job).collect();
        match self
            .store
            .complete_and_claim(&self.id, &ids, &[], 0, lease, &[])
            .await
        {
            Ok(claimed) => count_completions(&std::mem::take(done), &claimed.completed),
            Err(e) => {
                tracing::warn!(error = %e, jobs = ids.len(), "could not mark jobs done; trying again")
            }
        }
    }
}

/// Counts the outcome of jobs handed back as done: succeeded, or their lease
/// had passed to another worker.
fn count_completions(handed_back: &[(JobId, JobKind)], completed: &[JobId]) {
    for (job, kind) in handed_back {
        let outcome = if completed.contains(job) {
            "succeeded"
        } else {
            "lease_lost"
        };
        metrics::counter!("steward_jobs_total", "kind" => kind.as_str(), "outcome" => outcome)
            .increment(1);
    }
}

/// One attempt at one job.
struct Execution {
    store: Arc<dyn Store>,
    worker: String,
    handler: Arc<dyn JobHandler>,
    lease: Duration,
    backoff_base: Duration,
}

impl Execution {
    /// The jobs whose handler succeeded: the worker marks them done with its
    /// next claim (one statement for both). Failures are recorded here.
    async fn run(self, jobs: Vec<Job>) -> Vec<JobId> {
        let started = Instant::now();
        let outcomes = tokio::select! {
            outcomes = self.call(&jobs) => Some(outcomes),
            () = self.keep_leases(&jobs) => None,
        };
        let kind = jobs.first().map_or("", |job| job.kind.as_str());
        metrics::histogram!("steward_job_duration_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        let Some(outcomes) = outcomes else {
            tracing::warn!(
                jobs = jobs.len(),
                "lease lost: another worker may run this; stopped"
            );
            metrics::counter!("steward_jobs_total", "kind" => kind, "outcome" => "lease_lost")
                .increment(jobs.len() as u64);
            return Vec::new();
        };
        let mut succeeded = Vec::with_capacity(jobs.len());
        for (job, outcome) in jobs.iter().zip(outcomes) {
            match outcome {
                Ok(()) => succeeded.push(job.id),
                Err(error) => {
                    let outcome = self.record_failure(job, &error).await;
                    metrics::counter!("steward_jobs_total", "kind" => kind, "outcome" => outcome)
                        .increment(1);
                }
            }
        }
        succeeded
    }

    /// One outcome per job: one job to `run`, more to `run_batch`.
    async fn call(&self, jobs: &[Job]) -> Vec<Result<(), JobError>> {
        if let [job] = jobs {
            return vec![self.handler.run(job).await];
        }
        let mut outcomes = self.handler.run_batch(jobs).await;
        // A handler that answered for fewer jobs than it was given: the
        // others are tried again.
        outcomes.resize_with(jobs.len(), || {
            Err(JobError::Retryable(
                "the batch handler gave no outcome for this job".into(),
            ))
        });
        outcomes.truncate(jobs.len());
        outcomes
    }

    /// Records a failed attempt: retried later or dead. The outcome's label.
    async fn record_failure(&self, job: &Job, error: &JobError) -> &'static str {
        let retry_at = |at_least: Duration| {
            let delay = retry_delay(self.backoff_base, job.attempts).max(at_least);
            JobFailure::Retry {
                at: steward_store::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
            }
        };
        let (message, failure) = match error {
            JobError::Retryable(message) => (message, retry_at(Duration::ZERO)),
            JobError::RetryableAfter(message, hint) => (message, retry_at(*hint)),
            JobError::Permanent(message) => (message, JobFailure::Permanent),
        };
        match self
            .store
            .fail(job.id, &self.worker, message, failure)
            .await
        {
            Ok(Some(JobState::Dead)) => {
                tracing::error!(job_id = %job.id, error = %message, "job is dead: moved to the dead-letter list");
                "dead"
            }
            Ok(Some(_)) => {
                tracing::warn!(job_id = %job.id, error = %message, "job failed; will retry");
                "retried"
            }
            Ok(None) => "lease_lost",
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = %e, "could not record the failure; the lease will expire");
                "store_error"
            }
        }
    }

    /// Renews every job's lease every third of it; returns only when one is
    /// lost (the whole call stops: its jobs run again once their leases end).
    async fn keep_leases(&self, jobs: &[Job]) {
        let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(60));
        loop {
            tokio::time::sleep(self.lease / 3).await;
            for job in jobs {
                match self.store.heartbeat(job.id, &self.worker, lease).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // A passing database error: keep working; the next beat may succeed.
                    Err(e) => tracing::warn!(job_id = %job.id, error = %e, "heartbeat failed"),
                }
            }
        }
    }
}
