//! The durable job queue, one `jobs` table on either backend.
//!
//! Delivery is at least once: a job whose worker dies is handed out again once
//! its lease expires, so every job's side effects must be idempotent by key.
//! Jobs sharing an `ordering_key` run one at a time, oldest first; a dead job
//! no longer holds up the jobs behind it.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use steward_domain::{JobArgs, JobId, JobKind, JobState, OrgId};

use crate::{StoreResult, TenantScope};

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: JobId,
    /// None for the platform's own jobs (maintenance, backups).
    pub org_id: Option<OrgId>,
    pub kind: JobKind,
    pub payload: Value,
    pub state: JobState,
    /// Higher runs first.
    pub priority: i32,
    /// Not claimed before this time.
    pub run_at: DateTime<Utc>,
    /// Attempts started so far, the running one included.
    pub attempts: i32,
    pub max_attempts: i32,
    pub lease_until: Option<DateTime<Utc>>,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub ordering_key: Option<String>,
    pub dedupe_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct NewJob {
    pub org_id: Option<OrgId>,
    pub kind: JobKind,
    pub payload: Value,
    pub priority: i32,
    /// None: now.
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
    pub ordering_key: Option<String>,
    /// A job with a dedupe key already used is not enqueued again.
    pub dedupe_key: Option<String>,
}

impl NewJob {
    /// A job with these arguments: its kind, payload, ordering and unique
    /// keys all come from them.
    pub fn of<A: JobArgs>(args: &A, max_attempts: i32) -> Self {
        Self {
            org_id: None,
            kind: A::KIND,
            payload: serde_json::to_value(args).expect("job arguments serialize"),
            priority: 0,
            run_at: None,
            max_attempts,
            ordering_key: args.ordering_key(),
            dedupe_key: args.unique_key(),
        }
    }

    /// The job of an organization.
    pub fn for_org(self, org: OrgId) -> Self {
        Self {
            org_id: Some(org),
            ..self
        }
    }

    /// Not run before `run_at`.
    pub fn at(self, run_at: DateTime<Utc>) -> Self {
        Self {
            run_at: Some(run_at),
            ..self
        }
    }

    /// A job of any kind with any payload: for tests of the queue itself.
    /// Everything else enqueues typed arguments ([`NewJob::of`]).
    pub fn raw(kind: JobKind, payload: Value, max_attempts: i32) -> Self {
        Self {
            org_id: None,
            kind,
            payload,
            priority: 0,
            run_at: None,
            max_attempts,
            ordering_key: None,
            dedupe_key: None,
        }
    }
}

/// A job's payload that is not its kind's arguments.
#[derive(Debug, thiserror::Error)]
#[error("a {kind} job's arguments cannot be read: {reason}")]
pub struct ArgsError {
    pub kind: JobKind,
    pub reason: String,
}

impl Job {
    /// The job's arguments, as the type its kind is enqueued with.
    pub fn args<A: JobArgs>(&self) -> Result<A, ArgsError> {
        if self.kind != A::KIND {
            return Err(ArgsError {
                kind: self.kind,
                reason: format!("they are a {} job's", A::KIND),
            });
        }
        serde_json::from_value(self.payload.clone()).map_err(|e| ArgsError {
            kind: self.kind,
            reason: e.to_string(),
        })
    }
}

/// How an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobFailure {
    /// Try again at this time, while attempts remain.
    Retry { at: DateTime<Utc> },
    /// Retrying cannot help: dead at once.
    Permanent,
}

/// What [`JobQueue::complete_and_claim`] did.
#[derive(Clone, Debug, Default)]
pub struct Claimed {
    /// Those of the jobs handed back as done that were still the worker's
    /// (now succeeded); the others' leases had passed to another worker.
    pub completed: Vec<JobId>,
    /// The jobs now the worker's, highest priority and earliest first.
    pub jobs: Vec<Job>,
}

/// Jobs of one kind in one state, for the queue metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStat {
    pub kind: JobKind,
    pub state: JobState,
    pub count: i64,
    /// When the oldest of them became runnable (its `run_at`).
    pub oldest_run_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a job in a transaction of its own; `None` when its dedupe key was
    /// used before. (Jobs caused by a stored row, such as a reply to a message,
    /// are to be enqueued by the store call that writes the row, in its
    /// transaction: that outbox comes with the reply pipeline.)
    async fn enqueue(&self, job: NewJob) -> StoreResult<Option<Job>>;

    /// Adds many jobs in one transaction, hundreds of rows per statement: for
    /// whatever makes many jobs at once. Returns those stored, in the order
    /// given, leaving out any whose dedupe key was used before (or earlier
    /// in `jobs`).
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Job>>;

    /// Hands up to `limit` runnable jobs of `kinds` to `worker`, each leased until
    /// now + `lease`, attempts counted, highest priority and earliest first.
    async fn claim(
        &self,
        worker: &str,
        kinds: &[JobKind],
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<Job>> {
        self.claim_except(worker, kinds, limit, lease, &[]).await
    }

    /// The same, passing over the jobs of `except` (organizations that hold
    /// their share of the worker's slots already).
    async fn claim_except(
        &self,
        worker: &str,
        kinds: &[JobKind],
        limit: u32,
        lease: Duration,
        except: &[OrgId],
    ) -> StoreResult<Vec<Job>> {
        let claimed = self
            .complete_and_claim(worker, &[], kinds, limit, lease, except)
            .await?;
        Ok(claimed.jobs)
    }

    /// Marks `done` (jobs `worker` ran to success) succeeded and claims as
    /// [`Self::claim_except`] does, in one exchange with the database: a
    /// worker's completions and its next claim cost one round trip and one
    /// commit. A job this claim could take only once one of `done` is
    /// finished (behind it in its ordering key) waits for the next claim.
    async fn complete_and_claim(
        &self,
        worker: &str,
        done: &[JobId],
        kinds: &[JobKind],
        limit: u32,
        lease: Duration,
        except: &[OrgId],
    ) -> StoreResult<Claimed>;

    /// Extends a lease; false when the job is no longer this worker's.
    async fn heartbeat(&self, job: JobId, worker: &str, lease: Duration) -> StoreResult<bool>;

    /// Marks a job done; false when it was no longer this worker's.
    async fn complete(&self, job: JobId, worker: &str) -> StoreResult<bool>;

    /// Records a failed attempt: `failed` to be retried while attempts remain,
    /// `dead` otherwise. The state it ends in; None when it was no longer this worker's.
    async fn fail(
        &self,
        job: JobId,
        worker: &str,
        error: &str,
        failure: JobFailure,
    ) -> StoreResult<Option<JobState>>;

    /// Gives back a claimed job the worker did not start (at shutdown), without
    /// counting the attempt; false when it was no longer this worker's.
    async fn release(&self, job: JobId, worker: &str) -> StoreResult<bool>;

    /// Requeues running jobs whose lease expired (their worker stopped); jobs out
    /// of attempts go dead. Returns how many were requeued or buried.
    async fn requeue_expired(&self) -> StoreResult<u64>;

    /// One job of the organization.
    async fn job(&self, scope: &TenantScope, id: JobId) -> StoreResult<Job>;

    /// The organization's jobs, newest first, optionally in one state.
    async fn list_jobs(
        &self,
        scope: &TenantScope,
        state: Option<JobState>,
        limit: u32,
    ) -> StoreResult<Vec<Job>>;

    /// Puts a dead job back in the queue with fresh attempts; other states are `NotFound`.
    async fn retry_dead_job(&self, scope: &TenantScope, id: JobId) -> StoreResult<Job>;

    /// Deletes a dead job; other states are `NotFound`.
    async fn discard_dead_job(&self, scope: &TenantScope, id: JobId) -> StoreResult<()>;

    /// Counts per kind and state, for the queue metrics.
    async fn queue_stats(&self) -> StoreResult<Vec<QueueStat>>;

    /// Deletes succeeded and dead jobs last updated before `before`.
    async fn prune_finished_jobs(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use steward_domain::jobs::{DeliverArgs, IngestArgs};
    use steward_domain::{ConversationId, DocumentId, MessageId};

    use super::*;

    fn claimed(job: NewJob) -> Job {
        Job {
            id: JobId::new(),
            org_id: job.org_id,
            kind: job.kind,
            payload: job.payload,
            state: JobState::Running,
            priority: job.priority,
            run_at: crate::now(),
            attempts: 1,
            max_attempts: job.max_attempts,
            lease_until: None,
            locked_by: None,
            last_error: None,
            ordering_key: job.ordering_key,
            dedupe_key: job.dedupe_key,
            created_at: crate::now(),
            updated_at: crate::now(),
        }
    }

    #[test]
    fn a_job_gives_back_the_arguments_it_was_enqueued_with_or_says_why_not() {
        let args = DeliverArgs {
            message_id: MessageId::new(),
            conversation_id: Some(ConversationId::new()),
        };
        let job = NewJob::of(&args, 3).for_org(OrgId::new());
        assert_eq!(
            job.ordering_key,
            Some(format!("deliver:{}", args.conversation_id.unwrap()))
        );
        let job = claimed(job);
        assert_eq!(job.args::<DeliverArgs>().unwrap(), args);

        let wrong_kind = job.args::<IngestArgs>().unwrap_err().to_string();
        assert!(
            wrong_kind.contains("deliver job") && wrong_kind.contains("ingest"),
            "{wrong_kind}"
        );
        let garbled = claimed(NewJob::raw(JobKind::Ingest, json!({ "document": 7 }), 3));
        let error = garbled.args::<IngestArgs>().unwrap_err().to_string();
        assert!(error.contains("document_id"), "{error}");
        let ingest = IngestArgs {
            document_id: DocumentId::new(),
        };
        assert_eq!(
            claimed(NewJob::of(&ingest, 3))
                .args::<IngestArgs>()
                .unwrap(),
            ingest
        );
    }
}
