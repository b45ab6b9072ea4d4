//! [`PeopleStore`]: the people of an organization and the handles they are
//! known by. People are made as their messages arrive (see
//! [`crate::MessageStore::add_message`]) and as members are added; these
//! calls read, link and merge them.

use async_trait::async_trait;
use steward_domain::*;

use crate::{ConversationSummary, PeopleQuery, Person, StoreResult, TenantScope};

#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// The organization's people the query selects, newest first.
    async fn people(&self, scope: &TenantScope, query: &PeopleQuery) -> StoreResult<Vec<Person>>;

    /// One person of the organization, or `NotFound`.
    async fn person(&self, scope: &TenantScope, id: PersonId) -> StoreResult<Person>;

    /// The person a member account is.
    async fn member_person(&self, scope: &TenantScope, user: UserId) -> StoreResult<Person>;

    /// A person's latest `limit` conversations, newest first.
    async fn person_conversations(
        &self,
        scope: &TenantScope,
        id: PersonId,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>>;

    /// Makes `from` part of `into`: its handles, conversations and messages
    /// move, and `from` is no more (audited). Two people who each have a
    /// member account are `Conflict(BothMembers)`; a person merged with
    /// themself is `Conflict(SamePerson)`.
    async fn merge_people(
        &self,
        scope: &TenantScope,
        into: PersonId,
        from: PersonId,
    ) -> StoreResult<Person>;

    /// Gives `person` these handles: a handle nobody has is added, and the
    /// person who has one already is merged into `person` (as
    /// [`merge_people`](Self::merge_people), with its conflicts).
    async fn link_identities(
        &self,
        scope: &TenantScope,
        person: PersonId,
        identities: &[Identity],
    ) -> StoreResult<Person>;
}
