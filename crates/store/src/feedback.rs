//! [`FeedbackStore`]: what people thought of replies. One rating per person
//! and reply; a second replaces the first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_domain::*;

use crate::{Sender, StoreResult, TenantScope};

#[derive(Clone, Debug, PartialEq)]
pub struct Feedback {
    pub message_id: MessageId,
    pub person_id: PersonId,
    pub chatbot_id: ChatbotId,
    pub rating: Rating,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a rating changed: whether it is counted anew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rated {
    /// The person's first rating of this reply.
    New,
    /// Up became down or down up.
    Changed,
    /// The same rating again (a replayed reaction, a repeated click); only
    /// the comment may have changed.
    Same,
}

#[async_trait]
pub trait FeedbackStore: Send + Sync {
    /// Records `rater`'s rating of a reply (the rater is found or made as a
    /// message's author is). Another organization's message is `NotFound`;
    /// a person's message is `Conflict(NotAReply)`.
    async fn rate_reply(
        &self,
        scope: &TenantScope,
        reply: MessageId,
        rater: &Sender,
        rating: Rating,
        comment: Option<String>,
    ) -> StoreResult<(Feedback, Rated)>;

    /// Takes back `rater`'s rating of a reply (only if it is `only`, when
    /// given): whether there was one.
    async fn withdraw_rating(
        &self,
        scope: &TenantScope,
        reply: MessageId,
        rater: &Sender,
        only: Option<Rating>,
    ) -> StoreResult<bool>;

    /// The ratings of one reply of the organization, oldest first; an
    /// unknown message (or another organization's) is `NotFound`.
    async fn reply_feedback(
        &self,
        scope: &TenantScope,
        reply: MessageId,
    ) -> StoreResult<Vec<Feedback>>;

    /// The reply Steward sent on `channel` whose part the provider calls
    /// `external_id` (what a reaction names).
    async fn delivered_reply(
        &self,
        scope: &TenantScope,
        channel: ChannelId,
        external_id: &str,
    ) -> StoreResult<Option<MessageId>>;
}
