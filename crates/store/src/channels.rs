//! Channels: where a chatbot's people reach it, and what the store keeps for
//! each one (its sealed secrets, its health, where polling stopped), the
//! conversations it opens, and the parts of replies already delivered.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use steward_domain::{
    ChannelId, ChannelKind, ChannelStatus, ChatbotId, ConversationId, MessageId, OrgId,
};

use crate::{Message, StoreResult, TenantScope};

/// Errors are counted in a window of this length (see [`ChannelHealth`]).
pub const ERROR_WINDOW: Duration = Duration::hours(1);

#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub id: ChannelId,
    pub org_id: OrgId,
    pub chatbot_id: ChatbotId,
    pub kind: ChannelKind,
    pub name: String,
    /// The configuration that may be shown (hosts, ids, base URLs).
    pub settings: Value,
    /// Tokens and passwords, sealed under the master key; opened only by the
    /// code that verifies a webhook or sends a reply.
    pub sealed_secrets: Vec<u8>,
    /// Where polling stopped (a mailbox's UID validity and last UID).
    pub cursor: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub health: ChannelHealth,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ChannelHealth {
    pub last_inbound_at: Option<DateTime<Utc>>,
    pub last_outbound_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Start of the current error window, and the errors counted in it.
    pub error_window_at: Option<DateTime<Utc>>,
    pub error_window_count: i64,
}

impl ChannelHealth {
    /// Errors in the current window (0 once it is over).
    pub fn recent_errors(&self, now: DateTime<Utc>) -> i64 {
        match self.error_window_at {
            Some(start) if now - start < ERROR_WINDOW => self.error_window_count,
            _ => 0,
        }
    }

    pub fn status(&self) -> ChannelStatus {
        let last_success = self.last_inbound_at.max(self.last_outbound_at);
        match (last_success, self.last_error_at) {
            (None, None) => ChannelStatus::Waiting,
            (success, Some(error)) if success.is_none_or(|s| s < error) => ChannelStatus::Failing,
            _ => ChannelStatus::Ok,
        }
    }
}

#[derive(Clone, Debug)]
pub struct NewChannel {
    /// Chosen by the caller: the secrets are sealed with it as associated data.
    pub id: ChannelId,
    pub chatbot_id: ChatbotId,
    pub kind: ChannelKind,
    pub name: String,
    pub settings: Value,
    pub sealed_secrets: Vec<u8>,
}

/// Something that happened on a channel, for its health.
#[derive(Clone, Debug)]
pub enum ChannelEvent {
    Inbound,
    Outbound,
    Error(String),
}

#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// A name taken on the chatbot is `Conflict("channel_name_taken")`; another
    /// organization's chatbot is `NotFound`.
    async fn create_channel(
        &self,
        scope: &TenantScope,
        channel: NewChannel,
    ) -> StoreResult<Channel>;

    /// A chatbot's channels, oldest first; with no chatbot, the
    /// organization's, by chatbot.
    async fn list_channels(
        &self,
        scope: &TenantScope,
        chatbot: Option<ChatbotId>,
    ) -> StoreResult<Vec<Channel>>;

    async fn channel(&self, scope: &TenantScope, id: ChannelId) -> StoreResult<Channel>;

    /// Its conversations stay, without the channel.
    async fn delete_channel(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        id: ChannelId,
    ) -> StoreResult<()>;

    /// Unscoped, for webhooks: the URL names the channel and its signature,
    /// checked with the channel's own secret, proves the caller.
    async fn find_channel(&self, id: ChannelId) -> StoreResult<Option<Channel>>;

    /// Every channel of every organization (of one kind, when given): for
    /// the health metrics and the mailbox poller.
    async fn all_channels(&self, kind: Option<ChannelKind>) -> StoreResult<Vec<Channel>>;

    /// Unscoped, for the operator's master-key rotation: replaces a
    /// channel's sealed secrets if they are still `expected` (so a channel
    /// reconfigured meanwhile keeps its new ones). False when they were not.
    async fn replace_channel_secrets(
        &self,
        id: ChannelId,
        expected: &[u8],
        sealed: &[u8],
    ) -> StoreResult<bool>;

    /// The conversation of one external user or thread on a channel, if
    /// they have written before. Their first message starts it
    /// (`NewMessage::conversation_key`).
    async fn find_channel_conversation(
        &self,
        scope: &TenantScope,
        channel: ChannelId,
        external_key: &str,
    ) -> StoreResult<Option<ConversationId>>;

    /// Counts an event in the channel's health; errors are kept short.
    async fn record_channel_event(&self, id: ChannelId, event: ChannelEvent) -> StoreResult<()>;

    async fn set_channel_cursor(
        &self,
        scope: &TenantScope,
        id: ChannelId,
        cursor: Value,
    ) -> StoreResult<()>;

    /// One message of the organization.
    async fn message(&self, scope: &TenantScope, id: MessageId) -> StoreResult<Message>;

    /// The parts of a reply already sent, by index.
    async fn delivered_parts(
        &self,
        scope: &TenantScope,
        message: MessageId,
    ) -> StoreResult<Vec<i32>>;

    /// Marks one part of a reply sent; marking it again changes nothing.
    async fn record_delivery(
        &self,
        scope: &TenantScope,
        message: MessageId,
        part: i32,
        external_id: Option<String>,
    ) -> StoreResult<()>;
}
