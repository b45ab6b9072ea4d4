//! `Store` for PostgreSQL. Every tenant-owned query filters on `org_id`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Postgres, Transaction};
use steward_domain::*;
use steward_store::*;
use uuid::Uuid;

use crate::{PostgresStore, map_err, rows};

pub(crate) type Tx = Transaction<'static, Postgres>;

impl PostgresStore {
    pub(crate) async fn begin_write(&self) -> StoreResult<Tx> {
        self.pool.begin().await.map_err(map_err)
    }
}

/// Every write transaction ends here, so a keyed request's writes are fenced
/// by its claim (see `steward_store::KeyedRequest`).
pub(crate) async fn commit(mut tx: Tx) -> StoreResult<()> {
    if let Some(fence) = keyed_request_fence() {
        pass_fence(&mut tx, &fence).await?;
    }
    tx.commit().await.map_err(map_err)
}

/// Marks the claim as having taken effect (with its response, when set), if
/// the claim still holds this request's token; otherwise the write is refused.
/// The row lock it takes orders this commit against a takeover of the claim.
async fn pass_fence(tx: &mut Tx, fence: &Fence) -> StoreResult<()> {
    let held = match &fence.answer {
        Some(answer) => sqlx::query(
            "UPDATE idempotency_keys SET took_effect = true, status = $4, content_type = $5, body = $6
             WHERE caller = $1 AND key = $2 AND token = $3",
        )
        .bind(&fence.caller)
        .bind(&fence.key)
        .bind(&fence.token)
        .bind(i32::from(answer.status))
        .bind(&answer.content_type)
        .bind(&answer.body),
        None => sqlx::query(
            "UPDATE idempotency_keys SET took_effect = true WHERE caller = $1 AND key = $2 AND token = $3",
        )
        .bind(&fence.caller)
        .bind(&fence.key)
        .bind(&fence.token),
    }
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    if held.rows_affected() == 0 {
        return Err(claim_lost());
    }
    Ok(())
}

pub(crate) async fn audit(
    tx: &mut Tx,
    scope: &TenantScope,
    action: &str,
    target: &str,
    details: Value,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, org_id, actor, action, target, details, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(AuditId::new().as_uuid())
    .bind(scope.org_id().as_uuid())
    .bind(scope.actor().to_string())
    .bind(action)
    .bind(target)
    .bind(details)
    .bind(now())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn insert_user(
    tx: &mut Tx,
    org: OrgId,
    user: &NewUser,
    at: DateTime<Utc>,
) -> StoreResult<User> {
    let id = UserId::new();
    let inserted = sqlx::query(
        "INSERT INTO users (id, org_id, email, name, role, password_hash, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.as_uuid())
    .bind(org.as_uuid())
    .bind(user.email.as_str())
    .bind(user.name.as_ref().map(|n| n.as_str()))
    .bind(user.role.as_str())
    .bind(&user.password_hash)
    .bind(at)
    .execute(&mut **tx)
    .await;
    match inserted.map_err(map_err) {
        Err(StoreError::Conflict { .. }) => Err(StoreError::conflict(
            "email_taken",
            "a user with this email already exists",
        )),
        Err(e) => Err(e),
        Ok(_) => Ok(User {
            id,
            org_id: org,
            email: user.email.as_str().to_owned(),
            name: user.name.as_ref().map(|n| n.as_str().to_owned()),
            role: user.role,
            created_at: at,
        }),
    }
}

/// Locks the organization row first: two concurrent demotions of the last two
/// owners would otherwise both see "another owner remains".
async fn member_role(tx: &mut Tx, scope: &TenantScope, user: UserId) -> StoreResult<Role> {
    sqlx::query("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE")
        .bind(scope.org_id().as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1 AND org_id = $2")
        .bind(user.as_uuid())
        .bind(scope.org_id().as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
    role.parse().map_err(StoreError::Internal)
}

async fn owner_count(tx: &mut Tx, scope: &TenantScope) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT count(*) FROM users WHERE org_id = $1 AND role = 'owner'")
        .bind(scope.org_id().as_uuid())
        .fetch_one(&mut **tx)
        .await
        .map_err(map_err)
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        crate::ops::MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    /// The advisory lock lasts as long as its connection: no TTL, no holder name.
    async fn try_lead(
        &self,
        name: &str,
        _holder: &str,
        _ttl: chrono::Duration,
    ) -> StoreResult<Option<Box<dyn Leadership>>> {
        self.advisory_lock(name).await
    }

    async fn watch_enqueued(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        crate::queue::watch_enqueued(&self.pool, wake).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn connections_active(&self) -> u32 {
        self.pool.size().saturating_sub(self.pool.num_idle() as u32)
    }

    fn connections_max(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    async fn analyze(&self) -> StoreResult<()> {
        sqlx::query("ANALYZE")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

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
            created_at: at,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO organizations (id, name, tier, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(organization.id.as_uuid())
        .bind(&organization.name)
        .bind(organization.tier.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let user = insert_user(&mut tx, organization.id, &owner, at).await?;
        commit(tx).await?;
        Ok((organization, user))
    }

    async fn find_login(&self, email: &Email) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok((
                rows::user(&r)?,
                sqlx::Row::try_get(&r, "password_hash").map_err(map_err)?,
            ))
        })
        .transpose()
    }

    async fn find_user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn find_organizations(&self, id_or_name: &str) -> StoreResult<Vec<Organization>> {
        let id = Uuid::parse_str(id_or_name).ok();
        let found = sqlx::query(
            "SELECT * FROM organizations WHERE id = $1 OR name = $2 ORDER BY created_at",
        )
        .bind(id)
        .bind(id_or_name)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::organization).collect()
    }

    async fn organization(&self, scope: &TenantScope) -> StoreResult<Organization> {
        let row = sqlx::query("SELECT * FROM organizations WHERE id = $1")
            .bind(scope.org_id().as_uuid())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        rows::organization(&row)
    }

    async fn set_tier(&self, scope: &TenantScope, tier: Tier) -> StoreResult<Organization> {
        let mut tx = self.begin_write().await?;
        let before: String =
            sqlx::query_scalar("SELECT tier FROM organizations WHERE id = $1 FOR UPDATE")
                .bind(scope.org_id().as_uuid())
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        let row = sqlx::query("UPDATE organizations SET tier = $1 WHERE id = $2 RETURNING *")
            .bind(tier.as_str())
            .bind(scope.org_id().as_uuid())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let details = serde_json::json!({ "from": before, "to": tier.as_str() });
        audit(
            &mut tx,
            scope,
            "billing.tier_changed",
            &format!("organization:{}", scope.org_id()),
            details,
        )
        .await?;
        commit(tx).await?;
        rows::organization(&row)
    }

    async fn request_tier(&self, scope: &TenantScope, tier: Tier) -> StoreResult<Organization> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT * FROM organizations WHERE id = $1")
            .bind(scope.org_id().as_uuid())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let organization = rows::organization(&row)?;
        let details =
            serde_json::json!({ "from": organization.tier.as_str(), "to": tier.as_str() });
        audit(
            &mut tx,
            scope,
            "billing.change_requested",
            &format!("organization:{}", scope.org_id()),
            details,
        )
        .await?;
        commit(tx).await?;
        Ok(organization)
    }

    async fn usage(&self, scope: &TenantScope, period: &str) -> StoreResult<Usage> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT messages, tokens FROM usage_counters WHERE org_id = $1 AND period = $2",
        )
        .bind(scope.org_id().as_uuid())
        .bind(period)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        let (messages, tokens) = row.unwrap_or((0, 0));
        Ok(Usage {
            period: period.to_owned(),
            messages,
            tokens,
        })
    }

    async fn list_audit(&self, scope: &TenantScope, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let found = sqlx::query(
            "SELECT * FROM audit_log WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(scope.org_id().as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::audit).collect()
    }

    async fn list_members(&self, scope: &TenantScope) -> StoreResult<Vec<User>> {
        let found = sqlx::query("SELECT * FROM users WHERE org_id = $1 ORDER BY created_at, id")
            .bind(scope.org_id().as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        found.iter().map(rows::user).collect()
    }

    async fn add_member(&self, scope: &TenantScope, user: NewUser) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let created = insert_user(&mut tx, scope.org_id(), &user, now()).await?;
        let details = serde_json::json!({ "email": created.email, "role": created.role.as_str() });
        audit(
            &mut tx,
            scope,
            "member.added",
            &format!("user:{}", created.id),
            details,
        )
        .await?;
        commit(tx).await?;
        Ok(created)
    }

    async fn set_member_role(
        &self,
        scope: &TenantScope,
        user: UserId,
        role: Role,
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let before = member_role(&mut tx, scope, user).await?;
        if before == Role::Owner && role != Role::Owner && owner_count(&mut tx, scope).await? <= 1 {
            return Err(StoreError::conflict(
                "last_owner",
                "an organization keeps at least one owner",
            ));
        }
        let row =
            sqlx::query("UPDATE users SET role = $1 WHERE id = $2 AND org_id = $3 RETURNING *")
                .bind(role.as_str())
                .bind(user.as_uuid())
                .bind(scope.org_id().as_uuid())
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        let details = serde_json::json!({ "from": before.as_str(), "to": role.as_str() });
        audit(
            &mut tx,
            scope,
            "member.role_changed",
            &format!("user:{user}"),
            details,
        )
        .await?;
        commit(tx).await?;
        rows::user(&row)
    }

    async fn remove_member(&self, scope: &TenantScope, user: UserId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let role = member_role(&mut tx, scope, user).await?;
        if role == Role::Owner && owner_count(&mut tx, scope).await? <= 1 {
            return Err(StoreError::conflict(
                "last_owner",
                "an organization keeps at least one owner",
            ));
        }
        // Their keys die with their membership.
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE org_id = $2 AND created_by = $3 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(scope.org_id().as_uuid())
        .bind(user.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("DELETE FROM users WHERE id = $1 AND org_id = $2")
            .bind(user.as_uuid())
            .bind(scope.org_id().as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        audit(
            &mut tx,
            scope,
            "member.removed",
            &format!("user:{user}"),
            serde_json::json!({ "role": role.as_str() }),
        )
        .await?;
        commit(tx).await
    }

    async fn create_api_key(&self, scope: &TenantScope, key: NewApiKey) -> StoreResult<ApiKey> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO api_keys (id, org_id, name, prefix, role, key_hash, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        )
        .bind(ApiKeyId::new().as_uuid())
        .bind(scope.org_id().as_uuid())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(key.role.as_str())
        .bind(&key.key_hash)
        .bind(now())
        .bind(key.created_by.map(|u| u.as_uuid()))
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let created = rows::api_key(&row)?;
        let details = serde_json::json!({ "name": created.name, "role": created.role.as_str() });
        audit(
            &mut tx,
            scope,
            "api_key.created",
            &format!("api_key:{}", created.id),
            details,
        )
        .await?;
        commit(tx).await?;
        Ok(created)
    }

    async fn list_api_keys(&self, scope: &TenantScope) -> StoreResult<Vec<ApiKey>> {
        let found = sqlx::query("SELECT * FROM api_keys WHERE org_id = $1 ORDER BY created_at, id")
            .bind(scope.org_id().as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        found.iter().map(rows::api_key).collect()
    }

    async fn revoke_api_key(&self, scope: &TenantScope, id: ApiKeyId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND org_id = $3 AND revoked_at IS NULL")
            .bind(now())
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if revoked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        audit(
            &mut tx,
            scope,
            "api_key.revoked",
            &format!("api_key:{id}"),
            Value::Null,
        )
        .await?;
        commit(tx).await
    }

    async fn list_chatbots(
        &self,
        scope: &TenantScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<(Vec<Chatbot>, u64)> {
        let org = scope.org_id().as_uuid();
        let found = sqlx::query(
            "SELECT * FROM chatbots WHERE org_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        )
        .bind(org)
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM chatbots WHERE org_id = $1")
            .bind(org)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok((
            found
                .iter()
                .map(rows::chatbot)
                .collect::<StoreResult<_>>()?,
            total as u64,
        ))
    }

    async fn create_chatbot(
        &self,
        scope: &TenantScope,
        chatbot: NewChatbot,
    ) -> StoreResult<Chatbot> {
        let at = now();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO chatbots (id, org_id, name, system_prompt, temperature, model, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        )
        .bind(ChatbotId::new().as_uuid())
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.name.as_str())
        .bind(chatbot.system_prompt.as_str())
        .bind(chatbot.temperature.value())
        .bind(chatbot.model.as_ref().map(|m| m.as_str()))
        .bind(chatbot.status.as_str())
        .bind(at)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        commit(tx).await?;
        rows::chatbot(&row)
    }

    async fn chatbot(&self, scope: &TenantScope, id: ChatbotId) -> StoreResult<Chatbot> {
        let row = sqlx::query("SELECT * FROM chatbots WHERE id = $1 AND org_id = $2")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        rows::chatbot(&row)
    }

    async fn update_chatbot(
        &self,
        scope: &TenantScope,
        id: ChatbotId,
        patch: ChatbotPatch,
    ) -> StoreResult<Chatbot> {
        // One statement: each column keeps its value unless the patch names it.
        let (set_model, model) = match &patch.model {
            Some(model) => (true, model.as_ref().map(|m| m.as_str().to_owned())),
            None => (false, None),
        };
        let row = sqlx::query(
            "UPDATE chatbots SET
                name = coalesce($1, name),
                system_prompt = coalesce($2, system_prompt),
                temperature = coalesce($3, temperature),
                model = CASE WHEN $4 THEN $5 ELSE model END,
                status = coalesce($6, status),
                updated_at = $7
             WHERE id = $8 AND org_id = $9 RETURNING *",
        )
        .bind(patch.name.as_ref().map(|n| n.as_str()))
        .bind(patch.system_prompt.as_ref().map(|p| p.as_str()))
        .bind(patch.temperature.map(|t| t.value()))
        .bind(set_model)
        .bind(model)
        .bind(patch.status.map(|s| s.as_str()))
        .bind(now())
        .bind(id.as_uuid())
        .bind(scope.org_id().as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        rows::chatbot(&row)
    }

    async fn delete_chatbot(&self, scope: &TenantScope, id: ChatbotId) -> StoreResult<()> {
        let deleted = sqlx::query("DELETE FROM chatbots WHERE id = $1 AND org_id = $2")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if deleted.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn integrations(&self, scope: &TenantScope) -> StoreResult<Vec<IntegrationState>> {
        let found = sqlx::query(
            "SELECT i.id, i.name, i.description, o.config, o.enabled_at
             FROM integrations i
             LEFT JOIN org_integrations o ON o.integration_id = i.id AND o.org_id = $1
             ORDER BY i.position",
        )
        .bind(scope.org_id().as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::integration_state).collect()
    }

    async fn enable_integration(
        &self,
        scope: &TenantScope,
        id: &str,
        config: Value,
    ) -> StoreResult<IntegrationState> {
        let mut tx = self.begin_write().await?;
        let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM integrations WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        if known.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO org_integrations (org_id, integration_id, config, enabled_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id, integration_id) DO UPDATE SET config = excluded.config",
        )
        .bind(scope.org_id().as_uuid())
        .bind(id)
        .bind(config)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        audit(
            &mut tx,
            scope,
            "integration.enabled",
            &format!("integration:{id}"),
            Value::Null,
        )
        .await?;
        let row = sqlx::query(
            "SELECT i.id, i.name, i.description, o.config, o.enabled_at
             FROM integrations i JOIN org_integrations o ON o.integration_id = i.id
             WHERE o.org_id = $1 AND i.id = $2",
        )
        .bind(scope.org_id().as_uuid())
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        commit(tx).await?;
        rows::integration_state(&row)
    }

    async fn disable_integration(&self, scope: &TenantScope, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let deleted =
            sqlx::query("DELETE FROM org_integrations WHERE org_id = $1 AND integration_id = $2")
                .bind(scope.org_id().as_uuid())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        audit(
            &mut tx,
            scope,
            "integration.disabled",
            &format!("integration:{id}"),
            Value::Null,
        )
        .await?;
        commit(tx).await
    }

    async fn add_message(&self, scope: &TenantScope, new: NewMessage) -> StoreResult<Message> {
        let org = scope.org_id().as_uuid();
        let at = now();
        let mut tx = self.begin_write().await?;
        let status: String =
            sqlx::query_scalar("SELECT status FROM chatbots WHERE id = $1 AND org_id = $2")
                .bind(new.chatbot_id.as_uuid())
                .bind(org)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound)?;
        if new.role == MessageRole::User && status == ChatbotStatus::Paused.as_str() {
            return Err(StoreError::conflict(
                "chatbot_paused",
                "this chatbot is paused and takes no messages",
            ));
        }
        let conversation_id = match new.conversation {
            ConversationChoice::Existing(id) => {
                let found: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM conversations WHERE id = $1 AND org_id = $2 AND chatbot_id = $3",
                )
                .bind(id.as_uuid())
                .bind(org)
                .bind(new.chatbot_id.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                found.ok_or(StoreError::NotFound)?;
                id
            }
            ConversationChoice::Start(id) => {
                sqlx::query("INSERT INTO conversations (id, org_id, chatbot_id, channel, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(id.as_uuid())
                    .bind(org)
                    .bind(new.chatbot_id.as_uuid())
                    .bind(&new.channel)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                id
            }
        };
        let message = Message {
            id: new.id,
            org_id: scope.org_id(),
            chatbot_id: new.chatbot_id,
            conversation_id,
            role: new.role,
            text: new.text.into_inner(),
            channel: new.channel,
            external_id: new.external_id,
            answers: new.answers,
            channel_id: new.channel_id,
            meta: new.meta,
            created_at: at,
        };
        sqlx::query(
            "INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel, external_id, answers, channel_id, meta, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(message.id.as_uuid())
        .bind(org)
        .bind(message.chatbot_id.as_uuid())
        .bind(conversation_id.as_uuid())
        .bind(message.role.as_str())
        .bind(&message.text)
        .bind(&message.channel)
        .bind(&message.external_id)
        .bind(message.answers.map(|m| m.as_uuid()))
        .bind(message.channel_id.map(|c| c.as_uuid()))
        .bind(&message.meta)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match map_err(e) {
            StoreError::Conflict { .. } => StoreError::conflict("duplicate_message", "this message was already received"),
            other => other,
        })?;
        let counted = i64::from(message.role == MessageRole::User);
        if counted > 0 || new.tokens > 0 {
            sqlx::query(
                "INSERT INTO usage_counters (org_id, period, messages, tokens) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (org_id, period) DO UPDATE SET
                    messages = usage_counters.messages + excluded.messages,
                    tokens = usage_counters.tokens + excluded.tokens",
            )
            .bind(org)
            .bind(usage_period(at))
            .bind(counted)
            .bind(new.tokens)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        if let Some(job) = &new.then {
            crate::queue::insert_job(&mut tx, job).await?;
        }
        let announced = LiveEvent {
            org_id: message.org_id,
            conversation_id: message.conversation_id,
            kind: LiveKind::Message {
                message_id: message.id,
            },
        };
        crate::live::notify_in(&mut tx, &announced).await?;
        commit(tx).await?;
        Ok(message)
    }

    async fn conversation_messages(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let found = sqlx::query(
            "SELECT * FROM (SELECT * FROM messages WHERE org_id = $1 AND conversation_id = $2
                 ORDER BY created_at DESC, id DESC LIMIT $3) AS latest
             ORDER BY created_at, id",
        )
        .bind(scope.org_id().as_uuid())
        .bind(conversation.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::message).collect()
    }

    async fn conversation_messages_after(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let org = scope.org_id().as_uuid();
        let found = match after {
            None => sqlx::query(
                "SELECT * FROM messages WHERE org_id = $1 AND conversation_id = $2 ORDER BY created_at, id LIMIT $3",
            )
            .bind(org)
            .bind(conversation.as_uuid())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?,
            Some(after) => {
                let at: DateTime<Utc> = sqlx::query_scalar(
                    "SELECT created_at FROM messages WHERE id = $1 AND org_id = $2 AND conversation_id = $3",
                )
                .bind(after.as_uuid())
                .bind(org)
                .bind(conversation.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound)?;
                sqlx::query(
                    "SELECT * FROM messages WHERE org_id = $1 AND conversation_id = $2 AND (created_at, id) > ($3, $4)
                     ORDER BY created_at, id LIMIT $5",
                )
                .bind(org)
                .bind(conversation.as_uuid())
                .bind(at)
                .bind(after.as_uuid())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?
            }
        };
        found.iter().map(rows::message).collect()
    }

    async fn publish_live(&self, event: LiveEvent) -> StoreResult<()> {
        crate::live::notify(&self.pool, &event).await
    }

    async fn subscribe_live(&self) -> tokio::sync::broadcast::Receiver<LiveEvent> {
        self.ensure_listening();
        let receiver = self.live.subscribe();
        self.wait_listening().await;
        receiver
    }

    async fn history(
        &self,
        scope: &TenantScope,
        query: &HistoryQuery,
    ) -> StoreResult<Vec<Message>> {
        let (upper, from) = query.bounds();
        let found = sqlx::query(HISTORY_PAGE)
            .bind(scope.org_id().as_uuid())
            .bind(query.chatbot_id.as_uuid())
            .bind(upper.created_at)
            .bind(upper.id.as_uuid())
            .bind(from)
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        found.iter().map(rows::message).collect()
    }

    async fn message_thread(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        message: MessageId,
        around: u32,
    ) -> StoreResult<(Message, Vec<Message>)> {
        let row =
            sqlx::query("SELECT * FROM messages WHERE id = $1 AND org_id = $2 AND chatbot_id = $3")
                .bind(message.as_uuid())
                .bind(scope.org_id().as_uuid())
                .bind(chatbot.as_uuid())
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
        let message = rows::message(&row)?;
        let neighbours = |sql: &'static str| {
            sqlx::query(sql)
                .bind(scope.org_id().as_uuid())
                .bind(message.conversation_id.as_uuid())
                .bind(message.created_at)
                .bind(message.id.as_uuid())
                .bind(i64::from(around))
                .fetch_all(&self.pool)
        };
        let before = neighbours(
            "SELECT * FROM messages WHERE org_id = $1 AND conversation_id = $2 AND (created_at, id) < ($3, $4)
             ORDER BY created_at DESC, id DESC LIMIT $5",
        )
        .await
        .map_err(map_err)?;
        let after = neighbours(
            "SELECT * FROM messages WHERE org_id = $1 AND conversation_id = $2 AND (created_at, id) > ($3, $4)
             ORDER BY created_at, id LIMIT $5",
        )
        .await
        .map_err(map_err)?;
        let mut thread = before
            .iter()
            .rev()
            .map(rows::message)
            .collect::<StoreResult<Vec<_>>>()?;
        thread.push(message.clone());
        for row in &after {
            thread.push(rows::message(row)?);
        }
        Ok((message, thread))
    }

    async fn idempotency_start(
        &self,
        key: &IdempotencyKey,
        stale_before: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<IdempotencyStart> {
        let token = Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (caller, key, org_id, request_hash, created_at, token) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (caller, key) DO NOTHING",
        )
        .bind(&key.caller)
        .bind(&key.key)
        .bind(key.org_id.map(|o| o.as_uuid()))
        .bind(&key.request_hash)
        .bind(now())
        .bind(&token)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if claimed.rows_affected() == 1 {
            tx.commit().await.map_err(map_err)?;
            return Ok(IdempotencyStart::Started(token));
        }
        // Locked, so a fenced write of the claim's holder commits either
        // before this decision (and is seen) or after the takeover (and fails).
        let existing =
            sqlx::query("SELECT * FROM idempotency_keys WHERE caller = $1 AND key = $2 FOR UPDATE")
                .bind(&key.caller)
                .bind(&key.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        let outcome = existing
            .map(|row| rows::stored_claim(&row))
            .transpose()?
            .and_then(|claim| key.decide(claim, stale_before, expired_before));
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
        sqlx::query(
            "INSERT INTO idempotency_keys (caller, key, org_id, request_hash, created_at, token) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (caller, key) DO UPDATE SET
                org_id = excluded.org_id, request_hash = excluded.request_hash, status = NULL,
                content_type = NULL, body = NULL, created_at = excluded.created_at,
                token = excluded.token, took_effect = false",
        )
        .bind(&key.caller)
        .bind(&key.key)
        .bind(key.org_id.map(|o| o.as_uuid()))
        .bind(&key.request_hash)
        .bind(now())
        .bind(&token)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(IdempotencyStart::Started(token))
    }

    async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        token: &str,
        response: &StoredResponse,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, content_type = $2, body = $3
             WHERE caller = $4 AND key = $5 AND token = $6 AND status IS NULL",
        )
        .bind(i32::from(response.status))
        .bind(&response.content_type)
        .bind(&response.body)
        .bind(&key.caller)
        .bind(&key.key)
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn idempotency_abandon(&self, key: &IdempotencyKey, token: &str) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys
             WHERE caller = $1 AND key = $2 AND token = $3 AND status IS NULL AND NOT took_effect",
        )
        .bind(&key.caller)
        .bind(&key.key)
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}

/// Newest first, strictly before the upper position, at or after `from`: one
/// range scan of `messages_history` whatever the page.
const HISTORY_PAGE: &str = "SELECT * FROM messages
     WHERE org_id = $1 AND chatbot_id = $2 AND (created_at, id) < ($3, $4) AND created_at >= $5
     ORDER BY created_at DESC, id DESC
     LIMIT $6";
