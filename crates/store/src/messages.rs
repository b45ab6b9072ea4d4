//! [`MessageStore`]: conversations and their messages.

use async_trait::async_trait;
use steward_domain::*;

use crate::{
    Activity, ConversationQuery, ConversationSummary, HistoryQuery, Message, NewMessage,
    StoreResult, TenantScope,
};

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores a message (opening a conversation when none is given) and counts
    /// it in the month's usage, in one transaction. Returns the message as
    /// stored. A conversation of another chatbot is `NotFound`.
    async fn add_message(&self, scope: &TenantScope, message: NewMessage) -> StoreResult<Message>;

    /// The latest `limit` messages of a conversation, oldest first.
    async fn conversation_messages(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;

    /// A conversation's messages after `after` (all when None), oldest first,
    /// at most `limit`. An unknown `after` (or another org's) is `NotFound`.
    async fn conversation_messages_after(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;

    /// A page of a chatbot's messages, newest first.
    async fn history(&self, scope: &TenantScope, query: &HistoryQuery)
    -> StoreResult<Vec<Message>>;

    /// One message of a chatbot and up to `around` messages either side of it
    /// in its conversation, oldest first (the message included).
    async fn message_thread(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        message: MessageId,
        around: u32,
    ) -> StoreResult<(Message, Vec<Message>)>;

    /// The organization's conversations the query selects, newest first.
    async fn list_conversations(
        &self,
        scope: &TenantScope,
        query: &ConversationQuery,
    ) -> StoreResult<Vec<ConversationSummary>>;

    /// One conversation of the organization, or `NotFound`.
    async fn conversation(
        &self,
        scope: &TenantScope,
        id: ConversationId,
    ) -> StoreResult<ConversationSummary>;

    /// How the organization's assistants were used from the start of
    /// `first_day` (UTC), and by how many people today and this week (as of
    /// `now`). Read from counters kept as messages are stored, never by
    /// scanning messages.
    async fn activity(
        &self,
        scope: &TenantScope,
        first_day: chrono::NaiveDate,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Activity>;
}
