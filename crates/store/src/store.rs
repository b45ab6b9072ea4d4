//! The [`Store`] trait. Calls that act inside an organization take a
//! [`TenantScope`] and see nothing outside it; the few unscoped calls are the
//! ones that establish who a caller is (registration, login, token checks) or
//! serve the operator's CLI.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use steward_domain::*;

use crate::{
    ApiKey, AuditEntry, Chatbot, ChatbotPatch, HistoryQuery, IdempotencyKey, IdempotencyStart,
    IntegrationState, JobQueue, Message, NewApiKey, NewChatbot, NewMessage, NewOrganization,
    NewUser, Organization, StoreResult, StoredResponse, TenantScope, Usage, User,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[async_trait]
pub trait Store:
    JobQueue + crate::ChannelStore + crate::KnowledgeStore + crate::OpsStore + Send + Sync + 'static
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

    // --- Establishing who a caller is (unscoped) ---

    /// Creates an organization and its first user in one transaction.
    /// A taken email is `Conflict("email_taken")`.
    async fn create_organization(
        &self,
        org: NewOrganization,
        owner: NewUser,
    ) -> StoreResult<(Organization, User)>;

    /// The user and password hash for a login attempt.
    async fn find_login(&self, email: &Email) -> StoreResult<Option<(User, String)>>;

    /// The user a verified token names, as stored now (role changes apply at once).
    async fn find_user(&self, id: UserId) -> StoreResult<Option<User>>;

    /// An unrevoked API key by the hash of its secret.
    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;

    /// For the operator's CLI, which may name an organization by id or name.
    async fn find_organizations(&self, id_or_name: &str) -> StoreResult<Vec<Organization>>;

    // --- The organization ---

    async fn organization(&self, scope: &TenantScope) -> StoreResult<Organization>;

    /// Changes the tier and writes the audit log. The operator's call (the
    /// CLI): an organization's admins only request a change.
    async fn set_tier(&self, scope: &TenantScope, tier: Tier) -> StoreResult<Organization>;

    /// Records an admin's request for another tier in the audit log, for the
    /// operator to act on; the tier stays as it is.
    async fn request_tier(&self, scope: &TenantScope, tier: Tier) -> StoreResult<Organization>;

    async fn usage(&self, scope: &TenantScope, period: &str) -> StoreResult<Usage>;

    async fn list_audit(&self, scope: &TenantScope, limit: u32) -> StoreResult<Vec<AuditEntry>>;

    // --- Members ---

    async fn list_members(&self, scope: &TenantScope) -> StoreResult<Vec<User>>;

    /// A taken email is `Conflict("email_taken")`.
    async fn add_member(&self, scope: &TenantScope, user: NewUser) -> StoreResult<User>;

    /// Refuses to leave the organization without an owner (`Conflict("last_owner")`).
    async fn set_member_role(
        &self,
        scope: &TenantScope,
        user: UserId,
        role: Role,
    ) -> StoreResult<User>;

    /// Refuses to remove the last owner.
    async fn remove_member(&self, scope: &TenantScope, user: UserId) -> StoreResult<()>;

    // --- API keys ---

    async fn create_api_key(&self, scope: &TenantScope, key: NewApiKey) -> StoreResult<ApiKey>;

    async fn list_api_keys(&self, scope: &TenantScope) -> StoreResult<Vec<ApiKey>>;

    /// Revoking twice is `NotFound` the second time.
    async fn revoke_api_key(&self, scope: &TenantScope, id: ApiKeyId) -> StoreResult<()>;

    // --- Chatbots ---

    /// A page ordered by creation, oldest first, and the total count.
    async fn list_chatbots(
        &self,
        scope: &TenantScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<(Vec<Chatbot>, u64)>;

    async fn create_chatbot(
        &self,
        scope: &TenantScope,
        chatbot: NewChatbot,
    ) -> StoreResult<Chatbot>;

    async fn chatbot(&self, scope: &TenantScope, id: ChatbotId) -> StoreResult<Chatbot>;

    async fn update_chatbot(
        &self,
        scope: &TenantScope,
        id: ChatbotId,
        patch: ChatbotPatch,
    ) -> StoreResult<Chatbot>;

    /// Deletes the chatbot with its conversations and messages.
    async fn delete_chatbot(&self, scope: &TenantScope, id: ChatbotId) -> StoreResult<()>;

    // --- Integrations ---

    async fn integrations(&self, scope: &TenantScope) -> StoreResult<Vec<IntegrationState>>;

    /// Enables (or reconfigures) an integration of the catalogue; unknown ids are `NotFound`.
    async fn enable_integration(
        &self,
        scope: &TenantScope,
        id: &str,
        config: Value,
    ) -> StoreResult<IntegrationState>;

    /// Disabling one that is not enabled is `NotFound`.
    async fn disable_integration(&self, scope: &TenantScope, id: &str) -> StoreResult<()>;

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
