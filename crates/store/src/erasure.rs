//! [`ErasureStore`]: a person erased for good. The erasure is recorded in a
//! ledger (here, and by the caller outside the backed-up data) before
//! anything is deleted, so an erasure cut short is finished by the next
//! call, and a restored backup is erased again (`steward_backup`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_domain::*;

use crate::{Job, NewJob, StoreResult, TenantScope};

/// One entry of the erasure ledger.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Erasure {
    pub org_id: OrgId,
    pub person_id: PersonId,
    pub erased_at: DateTime<Utc>,
}

/// What one erasure call deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// The person's keys: their memory is unreadable in every copy.
    pub keys: u64,
    pub facts: u64,
    /// Their messages, and every message of the conversations that were theirs.
    pub messages: u64,
    pub conversations: u64,
    /// Leads recorded in their conversations.
    pub leads: u64,
    /// Whether the person was still there to delete (with their handles and ratings).
    pub person: bool,
}

#[async_trait]
pub trait ErasureStore: Send + Sync {
    /// Audits an admin's request to erase `person` and enqueues `job`, the
    /// erasure, in one transaction; `NotFound` when there is no such person.
    async fn request_erasure(
        &self,
        scope: &TenantScope,
        person: PersonId,
        job: NewJob,
    ) -> StoreResult<Job>;

    /// Erases `person`: records the erasure in the ledger and destroys
    /// their keys in one transaction (audited the first time), then deletes
    /// their messages and the conversations that were theirs (replies
    /// included), the leads recorded in those, and the person with their
    /// handles and ratings, a batch at a time. Counters stay, as anonymous
    /// totals. Called again, it finishes what an earlier call left.
    async fn erase_person(&self, scope: &TenantScope, person: PersonId) -> StoreResult<Erased>;

    /// The ledger: every erasure of every organization, oldest first.
    async fn erasures(&self) -> StoreResult<Vec<Erasure>>;
}
