//! Who is acting, and on which tenant.
//!
//! Rule: a [`TenantScope`] is made only from a [`Principal`] that the API's
//! authentication produced, or by the operator's CLI for an organization it
//! named. Every tenant-owned store call takes one and filters by its org, so a
//! cross-tenant read cannot be written by accident.

use std::fmt;

use steward_domain::{ApiKeyId, ChannelId, OrgId, Role, UserId};

/// Who performed an action, as written to the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    ApiKey(ApiKeyId),
    /// The operator, through the `steward` CLI.
    Operator,
    /// A background job working for the organization that caused it.
    Worker,
    /// A webhook whose signature the channel's own secret verified.
    Channel(ChannelId),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::ApiKey(id) => write!(f, "api_key:{id}"),
            Actor::Operator => f.write_str("operator"),
            Actor::Worker => f.write_str("worker"),
            Actor::Channel(id) => write!(f, "channel:{id}"),
        }
    }
}

/// An authenticated caller: a person (by JWT) or a machine (by API key).
#[derive(Clone, Debug)]
pub struct Principal {
    org_id: OrgId,
    actor: Actor,
    role: Role,
    /// A person signed in with a one-time password, who may do nothing but
    /// change it.
    must_change_password: bool,
    /// The member an API key acts for: the one who made it.
    key_maker: Option<UserId>,
}

impl Principal {
    /// Only the API's authentication calls this, after verifying a token or key
    /// and re-reading the user or key from the store.
    pub fn verified(org_id: OrgId, actor: Actor, role: Role) -> Self {
        Self {
            org_id,
            actor,
            role,
            must_change_password: false,
            key_maker: None,
        }
    }

    /// The same caller, an API key that `maker` made.
    pub fn made_by(self, maker: Option<UserId>) -> Self {
        Self {
            key_maker: maker,
            ..self
        }
    }

    /// The same caller, who must change a one-time password first.
    pub fn must_change_password(self, must: bool) -> Self {
        Self {
            must_change_password: must,
            ..self
        }
    }

    pub fn password_change_required(&self) -> bool {
        self.must_change_password
    }

    pub fn org_id(&self) -> OrgId {
        self.org_id
    }

    pub fn actor(&self) -> Actor {
        self.actor
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn user_id(&self) -> Option<UserId> {
        match self.actor {
            Actor::User(id) => Some(id),
            _ => None,
        }
    }

    /// The member whose words this caller's messages are: the signed-in
    /// user, or the maker of the API key.
    pub fn member(&self) -> Option<UserId> {
        self.user_id().or(self.key_maker)
    }

    pub fn scope(&self) -> TenantScope {
        TenantScope {
            org_id: self.org_id,
            actor: self.actor,
        }
    }
}

/// The tenant a store call is confined to, and who is acting in it.
#[derive(Clone, Copy, Debug)]
pub struct TenantScope {
    org_id: OrgId,
    actor: Actor,
}

impl TenantScope {
    /// For the operator's CLI, which names the organization explicitly.
    pub fn for_operator(org_id: OrgId) -> Self {
        Self {
            org_id,
            actor: Actor::Operator,
        }
    }

    /// For a job, which acts for the organization recorded on it when it was enqueued.
    pub fn for_job(org_id: OrgId) -> Self {
        Self {
            org_id,
            actor: Actor::Worker,
        }
    }

    /// For a webhook, once the signature has been verified with the secret of
    /// the channel the URL names: it acts in that channel's organization.
    pub fn for_channel(channel: &crate::Channel) -> Self {
        Self {
            org_id: channel.org_id,
            actor: Actor::Channel(channel.id),
        }
    }

    pub fn org_id(&self) -> OrgId {
        self.org_id
    }

    pub fn actor(&self) -> Actor {
        self.actor
    }
}
