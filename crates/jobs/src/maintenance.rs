//! The `maintenance` job: housekeeping the scheduler enqueues on a schedule.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use steward_store::{Job, Store};

use crate::{JobError, JobHandler};

/// Deletes succeeded and dead jobs older than `keep_finished`, idempotency
/// keys past their lifetime, signed-out sessions whose tokens expired and
/// the conversations organizations keep for a time only (their
/// `retention_days`), then refreshes the database's planner statistics.
/// (Exports of people's data have a sweep of their own, every few minutes.)
pub struct Maintenance {
    pub store: Arc<dyn Store>,
    pub keep_finished: Duration,
}

#[async_trait]
impl JobHandler for Maintenance {
    async fn run(&self, _job: &Job) -> Result<(), JobError> {
        let keep = chrono::Duration::from_std(self.keep_finished)
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        let pruned = self
            .store
            .prune_finished_jobs(steward_store::now() - keep)
            .await?;
        let keys = self
            .store
            .prune_idempotency_keys(steward_store::now() - steward_store::IDEMPOTENCY_KEY_LIFETIME)
            .await?;
        let sessions = self
            .store
            .prune_signed_out_sessions(steward_store::now())
            .await?;
        let conversations = self
            .store
            .expire_conversations(steward_store::now())
            .await?;
        tracing::info!(
            jobs = pruned,
            idempotency_keys = keys,
            signed_out_sessions = sessions,
            conversations,
            "maintenance: pruned finished jobs, expired idempotency keys, signed-out sessions and conversations past their retention"
        );
        self.store.analyze().await?;
        Ok(())
    }
}
