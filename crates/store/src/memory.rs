//! [`MemoryStore`]: what people told an organization's assistants about
//! themselves, and how long its conversations are kept. The store keeps it sealed and never sees it in clear: each
//! fact is sealed under a key of its person's own, and each person's key is
//! sealed under the master key (see `steward_tools::memory`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_domain::*;

use crate::{Organization, StoreResult, TenantScope};

/// The audit action of a person's key sealed again under a new master key
/// (`steward secrets reseal`); each one is a key rotation.
pub const PERSON_KEY_RESEALED: &str = "person_key.resealed";

/// A person's key, sealed under the master key with its id as context.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonKey {
    pub id: PersonKeyId,
    pub sealed: Vec<u8>,
}

/// A fact as stored: sealed under the person's key `key_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedFact {
    pub id: FactId,
    pub key_id: PersonKeyId,
    pub sealed: Vec<u8>,
    /// The message it was learnt from.
    pub source_message_id: Option<MessageId>,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// The person's keys, oldest first (a merged person has several).
    async fn person_keys(
        &self,
        scope: &TenantScope,
        person: PersonId,
    ) -> StoreResult<Vec<PersonKey>>;

    /// Keeps a new key for the person; `NotFound` when there is no such person.
    async fn add_person_key(
        &self,
        scope: &TenantScope,
        person: PersonId,
        key: &PersonKey,
    ) -> StoreResult<()>;

    /// The person's facts, oldest first.
    async fn memory(&self, scope: &TenantScope, person: PersonId) -> StoreResult<Vec<SealedFact>>;

    /// Keeps `facts`, learnt from message `source`, in one transaction, and
    /// then only the newest `keep` of the person's facts. Nothing is kept
    /// (false) when facts from `source` are kept already (a retried job),
    /// or the organization's memory is off.
    async fn remember(
        &self,
        scope: &TenantScope,
        person: PersonId,
        source: MessageId,
        facts: &[SealedFact],
        keep: u32,
    ) -> StoreResult<bool>;

    /// Deletes one of the person's facts; `NotFound` when they have no such fact.
    async fn forget_fact(
        &self,
        scope: &TenantScope,
        person: PersonId,
        fact: FactId,
    ) -> StoreResult<()>;

    /// Deletes all the person's facts; how many there were.
    async fn forget_memory(&self, scope: &TenantScope, person: PersonId) -> StoreResult<u64>;

    /// Every person's key in every organization, for a master-key rotation.
    async fn all_person_keys(&self) -> StoreResult<Vec<PersonKey>>;

    /// Stores `sealed` as key `id` if it still holds `expected`, recorded in
    /// the audit log as [`PERSON_KEY_RESEALED`]; whether it did.
    async fn replace_person_key(
        &self,
        id: PersonKeyId,
        expected: &[u8],
        sealed: &[u8],
    ) -> StoreResult<bool>;

    /// Turns the organization's memory on or off (audited when it changes).
    /// Off deletes every fact of its people, a batch at a time, also when
    /// it was off already (so a call killed midway is finished by the next).
    async fn set_memory(&self, scope: &TenantScope, on: bool) -> StoreResult<Organization>;

    /// Sets how many days the organization keeps quiet conversations
    /// (None: for good); audited when it changes.
    async fn set_retention(
        &self,
        scope: &TenantScope,
        days: Option<i32>,
    ) -> StoreResult<Organization>;

    /// Deletes, in every organization that keeps conversations for a time,
    /// those whose last message from a person came more than its days
    /// before `at`, a batch per transaction; how many.
    async fn expire_conversations(&self, at: DateTime<Utc>) -> StoreResult<u64>;
}
