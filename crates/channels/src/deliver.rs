//! The `deliver` job: sends a stored reply through its channel, split into the
//! parts the channel takes. Each part sent is recorded before the next is
//! tried, so a retried job sends only what is still unsent.
//!
//! The one window left: the process dying after the provider accepted a part
//! and before the record is written. That part is sent again on retry; none of
//! the providers offers an idempotency key for sending that would close it
//! (the generic webhook gets one: `Idempotency-Key`).

use std::sync::Arc;

use async_trait::async_trait;
use steward_auth::Sealer;
use steward_domain::jobs::DeliverArgs;
use steward_jobs::{JobError, JobHandler};
use steward_store::{ChannelEvent, Job, Store, StoreError, TenantScope};

use crate::config::ChannelConfig;
use crate::inbound::Route;
use crate::send::{Part, SendError, Sender, part_limit};
use crate::split::split;

pub struct Deliver {
    pub store: Arc<dyn Store>,
    pub sealer: Arc<Sealer>,
    pub sender: Sender,
}

#[async_trait]
impl JobHandler for Deliver {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let org = job.org_id.ok_or_else(|| {
            JobError::Permanent("a deliver job belongs to an organization".into())
        })?;
        let scope = TenantScope::for_job(org);
        let reply = job.args::<DeliverArgs>()?.message_id;
        let reply = self.store.message(&scope, reply).await?;
        let Some(channel_id) = reply.channel_id else {
            tracing::info!(message = %reply.id, "reply has no channel (removed since): nothing to deliver");
            return Ok(());
        };
        let channel = match self.store.channel(&scope, channel_id).await {
            Ok(channel) => channel,
            Err(StoreError::NotFound) => {
                tracing::info!(message = %reply.id, "the reply's channel was removed: nothing to deliver");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let config = ChannelConfig::open(&channel, &self.sealer)
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        let answered = reply
            .answers
            .ok_or_else(|| JobError::Permanent("the reply names no message it answers".into()))?;
        let meta = self.store.message(&scope, answered).await?.meta;
        let route = Route::from_meta(channel.kind, meta.unwrap_or_default()).map_err(|e| {
            JobError::Permanent(format!("the message answered has no route back: {e}"))
        })?;

        let parts = split(&reply.text, part_limit(channel.kind));
        let sent = self.store.delivered_parts(&scope, reply.id).await?;
        for (index, text) in parts.iter().enumerate() {
            let index_i32 = i32::try_from(index).expect("few parts");
            if sent.contains(&index_i32) {
                continue;
            }
            let part = Part {
                message_id: reply.id,
                index,
                count: parts.len(),
                text,
            };
            match self.sender.send(&config, &route, part).await {
                Ok(external_id) => {
                    self.store
                        .record_delivery(&scope, reply.id, index_i32, external_id)
                        .await?;
                    crate::count_message(channel.kind, "outbound");
                }
                Err(error) => {
                    let _ = self
                        .store
                        .record_channel_event(channel.id, ChannelEvent::Error(error.to_string()))
                        .await;
                    metrics::counter!("steward_channel_send_errors_total", "channel" => channel.kind.as_str())
                        .increment(1);
                    return Err(job_error(error));
                }
            }
        }
        let _ = self
            .store
            .record_channel_event(channel.id, ChannelEvent::Outbound)
            .await;
        Ok(())
    }
}

/// How a failed send ends a job: retried (not before the provider's hint),
/// or dead.
pub(crate) fn job_error(error: SendError) -> JobError {
    match error {
        SendError::Retry {
            reason,
            after: Some(after),
        } => JobError::RetryableAfter(reason, after),
        SendError::Retry {
            reason,
            after: None,
        } => JobError::Retryable(reason),
        SendError::Permanent(reason) => JobError::Permanent(reason),
    }
}
