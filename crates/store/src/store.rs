//! The [`Store`] trait: every area's door ([`crate::AccountStore`],
//! [`crate::ChatbotStore`], [`crate::ChannelStore`]…) and what only a whole
//! store does (migrations, health, leadership, live events). Calls that act
//! inside an organization take a [`TenantScope`] and see nothing outside it.

use async_trait::async_trait;

use crate::{JobQueue, StoreResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[async_trait]
pub trait Store:
    crate::AccountStore
    + crate::ChatbotStore
    + crate::MessageStore
    + crate::PeopleStore
    + crate::MemoryStore
    + crate::PatternStore
    + crate::ErasureStore
    + crate::ExportStore
    + crate::FeedbackStore
    + crate::SkillStore
    + crate::SsoStore
    + crate::IdempotencyStore
    + JobQueue
    + crate::ChannelStore
    + crate::KnowledgeStore
    + crate::SearchStore
    + crate::OpsStore
    + crate::CatalogueStore
    + crate::ToolJournal
    + crate::LeadStore
    + crate::HandOffStore
    + crate::ToolServerStore
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

    // --- Live events ---

    /// Sends a live event to every subscriber: in this process, and on
    /// PostgreSQL in every process. Stored messages are announced by
    /// `add_message` itself, in its transaction.
    async fn publish_live(&self, event: crate::LiveEvent) -> StoreResult<()>;

    /// Live events from now on. On PostgreSQL this waits (briefly) until the
    /// process's listener is listening, so that no event published after the
    /// call returns is missed.
    async fn subscribe_live(&self) -> tokio::sync::broadcast::Receiver<crate::LiveEvent>;
}
