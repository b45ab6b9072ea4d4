//! [`AccountStore`]: organizations, their members and API keys, and the
//! lookups that establish who a caller is. Those lookups take no tenant
//! scope (they find the scope); the API's authentication and the operator's
//! CLI are their only callers.

use async_trait::async_trait;
use steward_domain::*;

use crate::{
    ApiKey, AuditEntry, NewApiKey, NewOrganization, NewUser, Organization, StoreResult,
    TenantScope, Usage, User,
};

#[async_trait]
pub trait AccountStore: Send + Sync {
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

    /// [`find_user`](Self::find_user), and whether `session` (a token's) was
    /// signed out, in one read: what every request's authentication asks.
    async fn find_user_session(
        &self,
        id: UserId,
        session: Option<uuid::Uuid>,
    ) -> StoreResult<Option<(User, bool)>>;

    /// An unrevoked API key by the hash of its secret.
    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;

    /// For the operator's CLI, which may name an organization by id or name.
    async fn find_organizations(&self, id_or_name: &str) -> StoreResult<Vec<Organization>>;

    /// Every organization, oldest first: the operator's list.
    async fn list_organizations(&self) -> StoreResult<Vec<Organization>>;

    /// Whether any organization exists (the first run has not happened yet
    /// when none does).
    async fn any_organization(&self) -> StoreResult<bool>;

    // --- The organization ---

    async fn organization(&self, scope: &TenantScope) -> StoreResult<Organization>;

    /// Changes the tier and writes the audit log. The operator's call (the
    /// CLI): an organization's admins only request a change.
    async fn set_tier(&self, scope: &TenantScope, tier: Tier) -> StoreResult<Organization>;

    /// Records an admin's request for another tier in the audit log, for the
    /// operator to act on; the tier stays as it is.
    async fn request_tier(&self, scope: &TenantScope, tier: Tier) -> StoreResult<Organization>;

    async fn usage(&self, scope: &TenantScope, period: &str) -> StoreResult<Usage>;

    /// Adds `tokens` a model call spent outside a reply (learning memory,
    /// labelling a message) to this month's usage.
    async fn count_tokens(&self, scope: &TenantScope, tokens: i64) -> StoreResult<()>;

    /// The organization's audit entries, newest first: up to `limit` of those
    /// older than the entry `before` (`NotFound` when it is not one of theirs).
    async fn list_audit(
        &self,
        scope: &TenantScope,
        before: Option<AuditId>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>>;

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

    /// Replaces a member's password (audited) and signs out every token
    /// issued before: the user as it is now. `one_time`: someone else chose
    /// it, so it must be changed at the next sign-in.
    async fn set_password(
        &self,
        scope: &TenantScope,
        user: UserId,
        password_hash: &str,
        one_time: bool,
    ) -> StoreResult<User>;

    /// Signs out one session of a member: a token naming `session` no longer
    /// signs in (other sessions are untouched). Remembered until `expires`,
    /// when its token expires anyway; signing out twice is no error.
    async fn sign_out_session(
        &self,
        scope: &TenantScope,
        user: UserId,
        session: uuid::Uuid,
        expires: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()>;

    // --- API keys ---

    async fn create_api_key(&self, scope: &TenantScope, key: NewApiKey) -> StoreResult<ApiKey>;

    async fn list_api_keys(&self, scope: &TenantScope) -> StoreResult<Vec<ApiKey>>;

    /// Revoking twice is `NotFound` the second time.
    async fn revoke_api_key(&self, scope: &TenantScope, id: ApiKeyId) -> StoreResult<()>;
}
