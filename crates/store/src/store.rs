//! The [`Store`] trait: every area's door ([`crate::AccountStore`],
//! [`crate::ChatbotStore`], [`crate::ChannelStore`]…) and what only a whole
//! store does (migrations, health, leadership, live events). Calls that act
//! inside an organization take a [`TenantScope`] and see nothing outside it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_domain::*;

use crate::{
    HistoryQuery, IdempotencyKey, IdempotencyStart, JobQueue, Message, NewMessage, StoreResult,
    StoredResponse, TenantScope,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[async_trait]
pub trait Store:
    crate::AccountStore
    + crate::ChatbotStore
    + JobQueue
    + crate::ChannelStore
    + crate::KnowledgeStore
    + crate::OpsStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;

    /// Applies pending migrations; safe to call on every start.
    async fn migrate(&self) -> StoreResult<()>;

    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Connections in use right now, for the `steward_db_connections_active` gauge.
    fn connections_active(&self) -> u32;

    /// The most connections this process may open (`steward_db_connections_max`).
    fn connections_max(&self) -> u32;

    /// Refreshes the query planner's statistics (PostgreSQL `ANALYZE`, which
    /// full-text ranking also reads; SQLite `PRAGMA optimize`). The
    /// maintenance job runs it; autovacuum does too as PostgreSQL tables grow.
    async fn analyze(&self) -> StoreResult<()>;

    /// Closes the connections gracefully (SQLite checkpoints its WAL).
    async fn close(&self);

    /// Notifies `wake` whenever any process enqueues a job, until the returned
    /// future is dropped. PostgreSQL listens for the notification every enqueue
    /// sends; SQLite has none (one process: the in-process signal and polling
    /// serve) and returns at once.
    async fn watch_enqueued(&self, wake: std::sync::Arc<tokio::sync::Notify>);

    /// Leadership of `name` for `holder`, or None while another holder has it.
    /// `ttl` is how long a lease outlives a holder that stops renewing (SQLite).
    async fn try_lead(
        &self,
        name: &str,
        holder: &str,
        ttl: chrono::Duration,
    ) -> StoreResult<Option<Box<dyn crate::Leadership>>>;

    // --- Conversations and messages ---

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

    /// Sends a live event to every subscriber: in this process, and on
    /// PostgreSQL in every process. Stored messages are announced by
    /// `add_message` itself, in its transaction.
    async fn publish_live(&self, event: crate::LiveEvent) -> StoreResult<()>;

    /// Live events from now on. On PostgreSQL this waits (briefly) until the
    /// process's listener is listening, so that no event published after the
    /// call returns is missed.
    async fn subscribe_live(&self) -> tokio::sync::broadcast::Receiver<crate::LiveEvent>;

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

    // --- Idempotency keys (see `idempotency.rs`) ---

    /// Claims a key under a fresh token, or reports what became of it. A claim
    /// with no effect older than `stale_before` is taken over (its request died
    /// or timed out; it can no longer commit); a settled one older than
    /// `expired_before` is forgotten and claimed afresh.
    async fn idempotency_start(
        &self,
        key: &IdempotencyKey,
        stale_before: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<IdempotencyStart>;

    /// Records the response of the request holding `token`, unless one was
    /// recorded with its effect.
    async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        token: &str,
        response: &StoredResponse,
    ) -> StoreResult<()>;

    /// Releases a claim whose request failed unexpectedly before any effect,
    /// so a retry may run. A claim that took effect stays.
    async fn idempotency_abandon(&self, key: &IdempotencyKey, token: &str) -> StoreResult<()>;
}
