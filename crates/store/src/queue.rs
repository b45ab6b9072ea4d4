//! The durable job queue, one `jobs` table on either backend.
//!
//! Delivery is at least once: a job whose worker dies is handed out again once
//! its lease expires, so every job's side effects must be idempotent by key.
//! Jobs sharing an `ordering_key` run one at a time, oldest first; a dead job
//! no longer holds up the jobs behind it.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use steward_domain::{
    ChatbotId, ConversationId, CrawlId, DocumentId, JobId, JobKind, JobState, MessageId, OrgId,
};

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
    pub fn new(kind: JobKind, payload: Value, max_attempts: i32) -> Self {
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

    /// Answer a conversation's unanswered messages. One conversation's
    /// replies are written one at a time, in order; the payload names the
    /// conversation, not a message, because one reply answers every message
    /// still unanswered.
    pub fn respond(
        org: OrgId,
        chatbot: ChatbotId,
        conversation: ConversationId,
        max_attempts: i32,
    ) -> Self {
        Self {
            org_id: Some(org),
            ordering_key: Some(format!("conversation:{conversation}")),
            ..Self::new(
                JobKind::Respond,
                serde_json::json!({ "chatbot_id": chatbot, "conversation_id": conversation }),
                max_attempts,
            )
        }
    }

    /// Read a document, cut it into chunks and index them. One document is
    /// ingested at a time, so a re-queued URL never races its earlier run.
    pub fn ingest(org: OrgId, document: DocumentId, max_attempts: i32) -> Self {
        Self {
            org_id: Some(org),
            ordering_key: Some(format!("document:{document}")),
            ..Self::new(
                JobKind::Ingest,
                serde_json::json!({ "document_id": document }),
                max_attempts,
            )
        }
    }

    /// The next step of a crawl, at `run_at` (politeness between requests).
    /// One step of a crawl runs at a time.
    pub fn crawl(
        org: OrgId,
        crawl: CrawlId,
        run_at: Option<DateTime<Utc>>,
        max_attempts: i32,
    ) -> Self {
        Self {
            org_id: Some(org),
            run_at,
            ordering_key: Some(format!("crawl:{crawl}")),
            ..Self::new(
                JobKind::Crawl,
                serde_json::json!({ "crawl_id": crawl }),
                max_attempts,
            )
        }
    }

    /// Send a stored reply through its channel. One conversation's replies
    /// are sent one at a time, in order, apart from the writing of the next.
    pub fn deliver(
        org: OrgId,
        conversation: ConversationId,
        reply: MessageId,
        max_attempts: i32,
    ) -> Self {
        Self {
            org_id: Some(org),
            ordering_key: Some(format!("deliver:{conversation}")),
            ..Self::new(
                JobKind::Deliver,
                serde_json::json!({ "message_id": reply }),
                max_attempts,
            )
        }
    }
}

/// A notice Steward mails to an account holder from the operator's SMTP
/// server: the payload of a `notice` job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notice {
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl NewJob {
    /// Mail a notice. `dedupe_key` keeps one notice from going out more than
    /// once (for example, once per address per hour).
    pub fn notice(notice: &Notice, dedupe_key: String, max_attempts: i32) -> Self {
        Self {
            dedupe_key: Some(dedupe_key),
            ..Self::new(
                JobKind::Notice,
                serde_json::to_value(notice).expect("a notice serializes"),
                max_attempts,
            )
        }
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
    ) -> StoreResult<Vec<Job>>;

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
