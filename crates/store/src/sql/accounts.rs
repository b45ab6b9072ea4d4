//! [`AccountStore`], for every backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};
use steward_domain::*;
use uuid::Uuid;

use crate::sql::{Db, Row, SqlBackend, audit, commit, commit_with, rows, sql};
use crate::*;

#[async_trait]
impl<B: SqlBackend> AccountStore for B {
    async fn create_organization(
        &self,
        org: NewOrganization,
        owner: NewUser,
    ) -> StoreResult<(Organization, User)> {
        let at = now();
        let organization = Organization {
            id: OrgId::new(),
            name: org.name.into_inner(),
            tier: org.tier,
            memory: true,
            retention_days: None,
            created_at: at,
        };
        let mut tx = self.begin().await?;
        tx.execute(
            sql("INSERT INTO organizations (id, name, tier, created_at) VALUES ($1, $2, $3, $4)")
                .bind(organization.id)
                .bind(organization.name.as_str())
                .bind(organization.tier)
                .bind(at),
        )
        .await?;
        let user = insert_user(&mut tx, organization.id, &owner, at).await?;
        commit::<B>(tx).await?;
        Ok((organization, user))
    }

    async fn find_login(&self, email: &Email) -> StoreResult<Option<(User, String)>> {
        let row = self
            .read()
            .await?
            .fetch_optional(sql("SELECT * FROM users WHERE email = $1").bind(email.as_str()))
            .await?;
        row.map(|row| Ok((rows::user(&row)?, row.get("password_hash")?)))
            .transpose()
    }

    async fn find_user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row = self
            .read()
            .await?
            .fetch_optional(sql("SELECT * FROM users WHERE id = $1").bind(id))
            .await?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn find_user_session(
        &self,
        id: UserId,
        session: Option<Uuid>,
    ) -> StoreResult<Option<(User, bool)>> {
        let row = self
            .read()
            .await?
            .fetch_optional(
                sql("SELECT u.*, EXISTS (SELECT 1 FROM signed_out_sessions s
                                         WHERE s.session_id = $2) AS signed_out
                     FROM users u WHERE u.id = $1")
                .bind(id)
                .bind(session),
            )
            .await?;
        row.map(|row| Ok((rows::user(&row)?, row.get("signed_out")?)))
            .transpose()
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        let row = self
            .read()
            .await?
            .fetch_optional(
                sql("SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                    .bind(key_hash),
            )
            .await?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn find_organizations(&self, id_or_name: &str) -> StoreResult<Vec<Organization>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT * FROM organizations WHERE id = $1 OR name = $2 ORDER BY created_at")
                    .bind(Uuid::parse_str(id_or_name).ok())
                    .bind(id_or_name),
            )
            .await?;
        found.iter().map(rows::organization).collect()
    }

    async fn list_organizations(&self) -> StoreResult<Vec<Organization>> {
        let found = self
            .read()
            .await?
            .fetch_all(sql("SELECT * FROM organizations ORDER BY created_at, id"))
            .await?;
        found.iter().map(rows::organization).collect()
    }

    async fn any_organization(&self) -> StoreResult<bool> {
        let found = self
            .read()
            .await?
            .fetch_optional(sql("SELECT 1 AS one FROM organizations LIMIT 1"))
            .await?;
        Ok(found.is_some())
    }

    async fn organization(&self, scope: &TenantScope) -> StoreResult<Organization> {
        let row = self
            .read()
            .await?
            .fetch_one(sql("SELECT * FROM organizations WHERE id = $1").bind(scope.org_id()))
            .await?;
        rows::organization(&row)
    }

    async fn set_tier(&self, scope: &TenantScope, tier: Tier) -> StoreResult<Organization> {
        let mut tx = self.begin().await?;
        let before: String = tx
            .fetch_one(
                sql(format!(
                    "SELECT tier FROM organizations WHERE id = $1{}",
                    B::FOR_UPDATE
                ))
                .bind(scope.org_id()),
            )
            .await?
            .get("tier")?;
        let row = tx
            .fetch_one(
                sql("UPDATE organizations SET tier = $1 WHERE id = $2 RETURNING *")
                    .bind(tier)
                    .bind(scope.org_id()),
            )
            .await?;
        audit(
            &mut tx,
            scope,
            "billing.tier_changed",
            &format!("organization:{}", scope.org_id()),
            json!({ "from": before, "to": tier.as_str() }),
        )
        .await?;
        commit::<B>(tx).await?;
        rows::organization(&row)
    }

    async fn request_tier(&self, scope: &TenantScope, tier: Tier) -> StoreResult<Organization> {
        let mut tx = self.begin().await?;
        let row = tx
            .fetch_one(sql("SELECT * FROM organizations WHERE id = $1").bind(scope.org_id()))
            .await?;
        let organization = rows::organization(&row)?;
        audit(
            &mut tx,
            scope,
            "billing.change_requested",
            &format!("organization:{}", scope.org_id()),
            json!({ "from": organization.tier.as_str(), "to": tier.as_str() }),
        )
        .await?;
        commit::<B>(tx).await?;
        Ok(organization)
    }

    async fn count_tokens(&self, scope: &TenantScope, tokens: i64) -> StoreResult<()> {
        let mut write = self.write().await?;
        crate::sql::messages::count_usage::<B>(&mut write, scope.org_id(), now(), 0, tokens).await
    }

    async fn usage(&self, scope: &TenantScope, period: &str) -> StoreResult<Usage> {
        let row = self
            .read()
            .await?
            .fetch_optional(
                sql(
                    "SELECT CAST(SUM(messages) AS BIGINT) AS messages, CAST(SUM(tokens) AS BIGINT) AS tokens
                     FROM usage_counters WHERE org_id = $1 AND period = $2
                     GROUP BY org_id",
                )
                .bind(scope.org_id())
                .bind(period),
            )
            .await?;
        let (messages, tokens) = match row {
            Some(row) => (row.get("messages")?, row.get("tokens")?),
            None => (0, 0),
        };
        Ok(Usage {
            period: period.to_owned(),
            messages,
            tokens,
        })
    }

    async fn list_audit(
        &self,
        scope: &TenantScope,
        before: Option<AuditId>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>> {
        let mut db = self.read().await?;
        let mut upper = (crate::records::end_of_time(), Uuid::max());
        if let Some(before) = before {
            let at: DateTime<Utc> = db
                .fetch_one(
                    sql("SELECT created_at FROM audit_log WHERE id = $1 AND org_id = $2")
                        .bind(before)
                        .bind(scope.org_id()),
                )
                .await?
                .get("created_at")?;
            upper = (at, before.as_uuid());
        }
        let found = db
            .fetch_all(
                sql(
                    "SELECT * FROM audit_log WHERE org_id = $1 AND (created_at, id) < ($2, $3)
                     ORDER BY created_at DESC, id DESC LIMIT $4",
                )
                .bind(scope.org_id())
                .bind(upper.0)
                .bind(upper.1)
                .bind(i64::from(limit)),
            )
            .await?;
        found.iter().map(rows::audit).collect()
    }

    async fn list_members(&self, scope: &TenantScope) -> StoreResult<Vec<User>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT * FROM users WHERE org_id = $1 ORDER BY created_at, id")
                    .bind(scope.org_id()),
            )
            .await?;
        found.iter().map(rows::user).collect()
    }

    async fn add_member(&self, scope: &TenantScope, user: NewUser) -> StoreResult<User> {
        let mut tx = self.begin().await?;
        let created = insert_user(&mut tx, scope.org_id(), &user, now()).await?;
        audit(
            &mut tx,
            scope,
            "member.added",
            &format!("user:{}", created.id),
            json!({ "email": created.email, "role": created.role.as_str() }),
        )
        .await?;
        commit_with::<B>(tx, &created).await?;
        Ok(created)
    }

    async fn set_member_role(
        &self,
        scope: &TenantScope,
        user: UserId,
        role: Role,
    ) -> StoreResult<User> {
        let mut tx = self.begin().await?;
        let before = member_role::<B>(&mut tx, scope, user).await?;
        if before == Role::Owner && role != Role::Owner && owner_count(&mut tx, scope).await? <= 1 {
            return Err(last_owner());
        }
        let row = tx
            .fetch_one(
                sql("UPDATE users SET role = $1 WHERE id = $2 AND org_id = $3 RETURNING *")
                    .bind(role)
                    .bind(user)
                    .bind(scope.org_id()),
            )
            .await?;
        audit(
            &mut tx,
            scope,
            "member.role_changed",
            &format!("user:{user}"),
            json!({ "from": before.as_str(), "to": role.as_str() }),
        )
        .await?;
        commit::<B>(tx).await?;
        rows::user(&row)
    }

    async fn remove_member(&self, scope: &TenantScope, user: UserId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let role = member_role::<B>(&mut tx, scope, user).await?;
        if role == Role::Owner && owner_count(&mut tx, scope).await? <= 1 {
            return Err(last_owner());
        }
        // Their keys die with their membership.
        tx.execute(
            sql("UPDATE api_keys SET revoked_at = $1
                 WHERE org_id = $2 AND created_by = $3 AND revoked_at IS NULL")
            .bind(now())
            .bind(scope.org_id())
            .bind(user),
        )
        .await?;
        tx.execute(
            sql("DELETE FROM users WHERE id = $1 AND org_id = $2")
                .bind(user)
                .bind(scope.org_id()),
        )
        .await?;
        audit(
            &mut tx,
            scope,
            "member.removed",
            &format!("user:{user}"),
            json!({ "role": role.as_str() }),
        )
        .await?;
        commit::<B>(tx).await
    }

    async fn set_password(
        &self,
        scope: &TenantScope,
        user: UserId,
        password_hash: &str,
        one_time: bool,
    ) -> StoreResult<User> {
        let mut tx = self.begin().await?;
        let row = tx
            .fetch_optional(
                sql(
                    "UPDATE users SET password_hash = $1, must_change_password = $2,
                            session_generation = session_generation + 1
                     WHERE id = $3 AND org_id = $4 RETURNING *",
                )
                .bind(password_hash)
                .bind(one_time)
                .bind(user)
                .bind(scope.org_id()),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let action = if one_time {
            "member.password_reset"
        } else {
            "member.password_changed"
        };
        audit(&mut tx, scope, action, &format!("user:{user}"), json!({})).await?;
        let user = rows::user(&row)?;
        commit_with::<B>(tx, &user).await?;
        Ok(user)
    }

    async fn sign_out_session(
        &self,
        scope: &TenantScope,
        user: UserId,
        session: Uuid,
        expires: DateTime<Utc>,
    ) -> StoreResult<()> {
        let signed_out = self
            .write()
            .await?
            .execute(
                sql(
                    "INSERT INTO signed_out_sessions (session_id, user_id, expires_at)
                     SELECT $1, id, $2 FROM users WHERE id = $3 AND org_id = $4
                     ON CONFLICT (session_id) DO NOTHING",
                )
                .bind(session)
                .bind(expires)
                .bind(user)
                .bind(scope.org_id()),
            )
            .await?;
        if signed_out == 0 {
            // Signed out already, or no such member of this organization.
            let member = self.find_user(user).await?;
            if member.is_none_or(|m| m.org_id != scope.org_id()) {
                return Err(StoreError::NotFound);
            }
        }
        Ok(())
    }

    async fn create_api_key(&self, scope: &TenantScope, key: NewApiKey) -> StoreResult<ApiKey> {
        let mut tx = self.begin().await?;
        let row = tx
            .fetch_one(
                sql("INSERT INTO api_keys (id, org_id, name, prefix, role, key_hash, created_at, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *")
                .bind(ApiKeyId::new())
                .bind(scope.org_id())
                .bind(key.name.as_str())
                .bind(key.prefix.as_str())
                .bind(key.role)
                .bind(key.key_hash.as_str())
                .bind(now())
                .bind(key.created_by),
            )
            .await?;
        let created = rows::api_key(&row)?;
        audit(
            &mut tx,
            scope,
            "api_key.created",
            &format!("api_key:{}", created.id),
            json!({ "name": created.name, "role": created.role.as_str() }),
        )
        .await?;
        commit_with::<B>(tx, &created).await?;
        Ok(created)
    }

    async fn list_api_keys(&self, scope: &TenantScope) -> StoreResult<Vec<ApiKey>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT * FROM api_keys WHERE org_id = $1 ORDER BY created_at, id")
                    .bind(scope.org_id()),
            )
            .await?;
        found.iter().map(rows::api_key).collect()
    }

    async fn revoke_api_key(&self, scope: &TenantScope, id: ApiKeyId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let revoked = tx
            .execute(
                sql("UPDATE api_keys SET revoked_at = $1
                     WHERE id = $2 AND org_id = $3 AND revoked_at IS NULL")
                .bind(now())
                .bind(id)
                .bind(scope.org_id()),
            )
            .await?;
        if revoked == 0 {
            return Err(StoreError::NotFound);
        }
        audit(
            &mut tx,
            scope,
            "api_key.revoked",
            &format!("api_key:{id}"),
            Json::Null,
        )
        .await?;
        commit::<B>(tx).await
    }
}

fn last_owner() -> StoreError {
    StoreError::Conflict(Conflict::LastOwner)
}

pub(crate) async fn insert_user(
    tx: &mut impl Db,
    org: OrgId,
    user: &NewUser,
    at: DateTime<Utc>,
) -> StoreResult<User> {
    let id = UserId::new();
    let inserted = tx
        .execute(
            sql(
                "INSERT INTO users (id, org_id, email, name, role, password_hash, created_at,
                                    must_change_password)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(org)
            .bind(user.email.as_str())
            .bind(user.name.as_ref().map(|n| n.as_str()))
            .bind(user.role)
            .bind(user.password_hash.as_str())
            .bind(at)
            .bind(user.must_change_password),
        )
        .await;
    match inserted {
        Err(StoreError::Conflict(_)) => return Err(StoreError::Conflict(Conflict::EmailTaken)),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let user = User {
        id,
        org_id: org,
        email: user.email.as_str().to_owned(),
        name: user.name.as_ref().map(|n| n.as_str().to_owned()),
        role: user.role,
        created_at: at,
        must_change_password: user.must_change_password,
        session_generation: 0,
    };
    crate::sql::people::add_member_person(tx, &user).await?;
    Ok(user)
}

/// A member's role. Where rows can be locked, the organization's row is
/// locked first: two concurrent demotions of the last two owners would
/// otherwise both see "another owner remains" (SQLite's write transaction
/// holds the whole database already).
async fn member_role<B: SqlBackend>(
    tx: &mut impl Db,
    scope: &TenantScope,
    user: UserId,
) -> StoreResult<Role> {
    if !B::FOR_UPDATE.is_empty() {
        tx.execute(
            sql(format!(
                "SELECT 1 AS one FROM organizations WHERE id = $1{}",
                B::FOR_UPDATE
            ))
            .bind(scope.org_id()),
        )
        .await?;
    }
    tx.fetch_one(
        sql("SELECT role FROM users WHERE id = $1 AND org_id = $2")
            .bind(user)
            .bind(scope.org_id()),
    )
    .await?
    .get("role")
}

async fn owner_count(tx: &mut impl Db, scope: &TenantScope) -> StoreResult<i64> {
    tx.fetch_one(
        sql("SELECT count(*) AS owners FROM users WHERE org_id = $1 AND role = 'owner'")
            .bind(scope.org_id()),
    )
    .await?
    .get("owners")
}
