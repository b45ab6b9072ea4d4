//! What the operator's tools ask of a store: backup runs (which the metrics
//! report), housekeeping, table sizes, and the schema's version.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreResult;

/// One attempt at `steward backup create`, recorded whether it worked or not,
/// so that every API replica can report the latest of each in its metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupRun {
    /// The backup's id (its UTC start time); a failed run's would-be id.
    pub backup_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub succeeded: bool,
    /// The backup's compressed size; 0 for a failed run.
    pub bytes: u64,
    pub error: Option<String>,
}

/// The latest successful and the latest failed backup run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackupStatus {
    pub last_success: Option<BackupRun>,
    pub last_failure: Option<BackupRun>,
}

/// One table's size. `rows` is exact on SQLite and the planner's estimate on
/// PostgreSQL (counting a large table there is a full scan).
#[derive(Clone, Debug, PartialEq)]
pub struct TableSize {
    pub table: String,
    pub rows: u64,
    /// On disk, indexes included.
    pub bytes: u64,
}

/// One organization's activity, for the Business dashboard.
#[derive(Clone, Debug, PartialEq)]
pub struct OrgActivity {
    pub org_id: steward_domain::OrgId,
    pub name: String,
    pub tier: steward_domain::Tier,
    pub members: u64,
    /// Conversations with a message from a person in the window: on a
    /// channel that is one per person; on the API and web chat, per session.
    pub active_conversations: u64,
    /// Messages people sent, and replies written, in the window.
    pub user_messages: u64,
    pub replies: u64,
    /// Replies that loaded a skill in the last 7 days (the day counters'
    /// week: today and the six days before).
    pub replies_with_skills: u64,
    /// This month's usage counters (what billing tiers limit).
    pub month_messages: u64,
    pub month_tokens: u64,
    /// People who wrote today, in the last 7 days and in the last 30 (each
    /// window ending today).
    pub people_day: u64,
    pub people_week: u64,
    pub people_month: u64,
    /// Ratings of replies held now.
    pub rated_up: u64,
    pub rated_down: u64,
    /// Every message from people ever counted, per channel kind: (kind,
    /// direct, forwarded).
    pub messages: Vec<(String, u64, u64)>,
    /// Every activation of each of its skills, by name.
    pub skill_activations: Vec<(String, u64)>,
    /// Every answered message labelled for insights, per first-level
    /// category (numbers only).
    pub patterns: Vec<(String, u64)>,
}

/// A table or column name as an SQL identifier, quoted the way both SQLite
/// and PostgreSQL read it. For names from the database's own catalogue,
/// never from input.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[async_trait]
pub trait OpsStore: Send + Sync {
    async fn record_backup_run(&self, run: &BackupRun) -> StoreResult<()>;

    async fn backup_status(&self) -> StoreResult<BackupStatus>;

    /// Deletes idempotency keys created before `before` (requests older than
    /// a key's lifetime can no longer be replayed anyway).
    async fn prune_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Forgets signed-out sessions whose tokens expired before `before`.
    async fn prune_signed_out_sessions(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Each organization's activity since `since`, its usage in the
    /// `period` (e.g. "2026-11"), the people who wrote in the day, week and
    /// month up to `today`, its ratings and its messages by channel: the
    /// Business dashboard's figures.
    async fn org_activity(
        &self,
        since: DateTime<Utc>,
        period: &str,
        today: chrono::NaiveDate,
    ) -> StoreResult<Vec<OrgActivity>>;

    /// Audit log entries since `since` (None: ever), by action, across
    /// organizations.
    async fn audit_actions(&self, since: Option<DateTime<Utc>>) -> StoreResult<Vec<(String, u64)>>;

    /// Whether the database holds an organization (every tenant's row hangs
    /// off one; migrations seed only catalogues): restoring or copying into
    /// such a database needs the operator's explicit consent.
    async fn holds_data(&self) -> StoreResult<bool>;
}

/// What only the database's own catalogue knows (its tables, its schema
/// version), and the copies and checks each database makes its own way.
#[async_trait]
pub trait CatalogueStore: Send + Sync {
    /// Steward's tables (not the database's own), by name.
    async fn table_names(&self) -> StoreResult<Vec<String>>;

    /// Every table of Steward's schema, by name.
    async fn table_sizes(&self) -> StoreResult<Vec<TableSize>>;

    /// The newest migration applied to this database (0 when none is).
    async fn schema_version(&self) -> StoreResult<i64>;

    /// The newest migration this build knows.
    fn latest_schema_version(&self) -> i64;

    /// SQLite: writes a consistent copy of the whole database to `path` while
    /// others keep writing (`VACUUM INTO`). PostgreSQL is copied by `pg_dump`
    /// instead and answers `Unsupported`.
    async fn snapshot_to(&self, path: &std::path::Path) -> StoreResult<()>;

    /// Reads every page (SQLite `PRAGMA integrity_check`; PostgreSQL counts
    /// every table) and fails on damage.
    async fn check_integrity(&self) -> StoreResult<()>;
}
