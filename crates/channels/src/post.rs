//! The `post` job: a text one of Steward's own tools posts to the
//! organization's people through one of its channels, outside any
//! conversation with the assistant (a new lead, a conversation handed off).
//! Slack channels post with their bot to a conversation id; Teams channels
//! into a conversation by its route (a greeting when the bot is added); no
//! other kind posts.
//!
//! As with a delivery, the one window left is the process dying after Slack
//! accepted the post and before the job is marked done: the post is made
//! again (Slack takes no idempotency key).

use std::sync::Arc;

use async_trait::async_trait;
use steward_auth::Sealer;
use steward_domain::jobs::PostArgs;
use steward_jobs::{JobError, JobHandler};
use steward_store::{ChannelEvent, Job, Store, StoreError, TenantScope};

use crate::config::ChannelConfig;
use crate::deliver::job_error;
use crate::send::Sender;
use crate::{slack, teams};

pub struct Post {
    pub store: Arc<dyn Store>,
    pub sealer: Arc<Sealer>,
    pub sender: Sender,
}

#[async_trait]
impl JobHandler for Post {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let org = job
            .org_id
            .ok_or_else(|| JobError::Permanent("a post job belongs to an organization".into()))?;
        let scope = TenantScope::for_job(org);
        let post = job.args::<PostArgs>()?;
        let channel = match self.store.channel(&scope, post.channel_id).await {
            Ok(channel) => channel,
            Err(StoreError::NotFound) => {
                return Err(JobError::Permanent(
                    "the channel to post through was removed".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let config = ChannelConfig::open(&channel, &self.sealer)
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        let posted = match &config {
            ChannelConfig::Slack(c) => {
                slack::post_message(&self.sender, c, &post.to, None, &post.text).await
            }
            ChannelConfig::Teams(c) => {
                let route: teams::Route = serde_json::from_str(&post.to)
                    .map_err(|e| JobError::Permanent(format!("not a Teams route: {e}")))?;
                teams::post(&self.sender, c, &route, &post.text).await
            }
            _ => {
                return Err(JobError::Permanent(format!(
                    "a {} channel does not post: only Slack and Teams channels do",
                    channel.kind
                )));
            }
        };
        match posted {
            Ok(_) => {
                crate::count_message(channel.kind, "outbound");
                let _ = self
                    .store
                    .record_channel_event(channel.id, ChannelEvent::Outbound)
                    .await;
                Ok(())
            }
            Err(error) => {
                let _ = self
                    .store
                    .record_channel_event(channel.id, ChannelEvent::Error(error.to_string()))
                    .await;
                Err(job_error(error))
            }
        }
    }
}
