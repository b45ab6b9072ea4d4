//! [`ExportStore`]: exports of everything Steward holds about a person, and
//! the reads that gather it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_domain::*;

use crate::{Job, Lead, Message, NewJob, StoreResult, TenantScope};

/// An export of a person's data.
#[derive(Clone, Debug, PartialEq)]
pub struct Export {
    pub id: ExportId,
    pub org_id: OrgId,
    pub person_id: PersonId,
    /// Who asked (the audit log's actor).
    pub requested_by: String,
    pub state: ExportState,
    /// Where the zip is in the blob store, once ready.
    pub blob_key: Option<String>,
    pub bytes: Option<i64>,
    /// Why it failed.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// After it, the export is gone: refused, then deleted with its zip.
    pub expires_at: DateTime<Utc>,
}

/// A rating the person gave.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RatingGiven {
    pub message_id: MessageId,
    pub rating: Rating,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A skill a reply to the person loaded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SkillLoad {
    pub skill: String,
    pub version: i64,
    pub conversation_id: ConversationId,
    pub created_at: DateTime<Utc>,
}

/// What Steward holds about a person besides their handles, messages and memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PersonRecord {
    pub ratings: Vec<RatingGiven>,
    /// Leads recorded in the conversations that are theirs.
    pub leads: Vec<Lead>,
    pub skill_loads: Vec<SkillLoad>,
}

#[async_trait]
pub trait ExportStore: Send + Sync {
    /// Keeps a pending export `id` of `person`, expiring at `expires_at`,
    /// audits the request and enqueues `job` to write it, in one
    /// transaction; `NotFound` when there is no such person.
    async fn request_export(
        &self,
        scope: &TenantScope,
        person: PersonId,
        id: ExportId,
        expires_at: DateTime<Utc>,
        job: NewJob,
    ) -> StoreResult<(Export, Job)>;

    /// One export of the organization, expired or not; `NotFound` if none.
    async fn export(&self, scope: &TenantScope, id: ExportId) -> StoreResult<Export>;

    /// Marks a pending export ready (its zip's key and size) or failed
    /// (why); one no longer pending is left as it is (false).
    async fn finish_export(
        &self,
        scope: &TenantScope,
        id: ExportId,
        outcome: Result<(String, i64), String>,
    ) -> StoreResult<bool>;

    /// Every organization's exports that expired by `at`, for the sweep.
    async fn expired_exports(&self, at: DateTime<Utc>) -> StoreResult<Vec<Export>>;

    /// Deletes an export's row (its zip deleted before).
    async fn delete_export(&self, id: ExportId) -> StoreResult<()>;

    /// The person's messages and every message of the conversations that
    /// are theirs, in the order they were written, `limit` after `after`.
    async fn person_messages(
        &self,
        scope: &TenantScope,
        person: PersonId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;

    /// The person's ratings, the leads in their conversations and the
    /// skills replies to them loaded.
    async fn person_record(
        &self,
        scope: &TenantScope,
        person: PersonId,
    ) -> StoreResult<PersonRecord>;
}
