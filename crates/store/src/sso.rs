//! [`SsoStore`]: an organization's single sign-on (OpenID Connect) settings,
//! the sign-ins under way, and which provider identity is which member. The
//! protocol itself is the API's; this keeps what must outlive a request and
//! be the same on every replica.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_domain::*;

use crate::{NewUser, StoreResult, TenantScope, User};

/// An organization's single sign-on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoSettings {
    pub org_id: OrgId,
    /// Names the organization in `/auth/sso/{slug}`.
    pub slug: String,
    /// None: the platform's provider, which the operator configures.
    pub provider: Option<SsoProvider>,
    /// People whose verified address is at one of these domains become
    /// members at their first sign-in; empty: only existing members sign in.
    pub allowed_domains: Vec<String>,
    /// The role of a member made at their first sign-in.
    pub default_role: Role,
    /// Everyone but owners must sign in through the provider.
    pub required: bool,
    pub updated_at: DateTime<Utc>,
}

/// An organization's own OpenID provider and its client there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoProvider {
    pub issuer: String,
    pub client_id: String,
    /// The client secret, sealed with the organization's id as associated data.
    pub sealed_secret: Vec<u8>,
}

/// A sign-in sent to the provider and not yet back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoAttempt {
    /// SHA-256 of the `state` parameter: the row cannot be used by someone
    /// who reads the table.
    pub state_hash: String,
    pub org_id: OrgId,
    /// SHA-256 of the cookie set on the browser that started it.
    pub browser_hash: String,
    pub nonce: String,
    /// PKCE: what the code's challenge was made from.
    pub code_verifier: String,
    /// Answer with an API token instead of a console session.
    pub wants_token: bool,
    /// The console page to go to afterwards.
    pub next: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Who the provider says signed in.
#[derive(Clone, Debug)]
pub struct SsoIdentity {
    pub issuer: String,
    pub subject: String,
    /// Verified by the provider.
    pub email: Email,
}

/// How a sign-in found its member.
#[derive(Clone, Debug, PartialEq)]
pub enum SsoMember {
    /// By the identity they signed in with before.
    Known(User),
    /// By address, a member who had not signed in with this identity yet;
    /// the identity is theirs from now on.
    Linked(User),
    /// Made now, with the default role.
    Created(User),
}

impl SsoMember {
    pub fn user(self) -> User {
        match self {
            Self::Known(u) | Self::Linked(u) | Self::Created(u) => u,
        }
    }
}

#[async_trait]
pub trait SsoStore: Send + Sync {
    async fn sso_settings(&self, scope: &TenantScope) -> StoreResult<Option<SsoSettings>>;

    /// Replaces the organization's settings (audited). A slug another
    /// organization has is `Conflict(SlugTaken)`.
    async fn set_sso_settings(
        &self,
        scope: &TenantScope,
        settings: SsoSettings,
    ) -> StoreResult<SsoSettings>;

    /// Turns single sign-on off (audited): `NotFound` when it was off.
    async fn remove_sso_settings(&self, scope: &TenantScope) -> StoreResult<()>;

    /// The settings named by a sign-in link (unscoped: it finds the scope).
    async fn find_sso_by_slug(&self, slug: &str) -> StoreResult<Option<SsoSettings>>;

    /// Every organization's own provider secret, for `steward secrets reseal`.
    async fn sealed_sso_secrets(&self) -> StoreResult<Vec<(OrgId, Vec<u8>)>>;

    /// Replaces an organization's sealed secret if it is still `expected`.
    async fn replace_sso_secret(
        &self,
        org: OrgId,
        expected: &[u8],
        sealed: &[u8],
    ) -> StoreResult<bool>;

    /// Remembers a sign-in sent to the provider; forgets those expired.
    async fn begin_sso_attempt(&self, attempt: &SsoAttempt) -> StoreResult<()>;

    /// The sign-in whose state hashes to `state_hash`, removed in the same
    /// statement: a state is taken once, however many callbacks name it.
    async fn take_sso_attempt(&self, state_hash: &str) -> StoreResult<Option<SsoAttempt>>;

    /// The member `identity` signs in as, in one transaction: the member it
    /// signed in as before; else the member with its address, now linked to
    /// it; else, when `create` is given, a new member (audited). A member
    /// of another organization is `Conflict(OtherOrganization)`, a member
    /// linked to another identity of the same issuer is
    /// `Conflict(OtherIdentity)`, nobody and nothing to create `NotFound`.
    async fn sso_member(
        &self,
        scope: &TenantScope,
        identity: &SsoIdentity,
        create: Option<NewUser>,
    ) -> StoreResult<SsoMember>;
}
