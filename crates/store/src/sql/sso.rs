//! [`SsoStore`], for every backend.

use async_trait::async_trait;
use serde_json::json;
use steward_domain::*;

use crate::sql::accounts::insert_user;
use crate::sql::{Db, Row, SqlBackend, Value, audit, commit, rows, sql};
use crate::*;

fn settings(row: &impl Row) -> StoreResult<SsoSettings> {
    let issuer: Option<String> = row.get("issuer")?;
    let provider = match issuer {
        Some(issuer) => Some(SsoProvider {
            issuer,
            client_id: row.get("client_id")?,
            sealed_secret: row.get("client_secret")?,
        }),
        None => None,
    };
    Ok(SsoSettings {
        org_id: row.get("org_id")?,
        slug: row.get("slug")?,
        provider,
        allowed_domains: serde_json::from_value(row.get("allowed_domains")?)
            .map_err(|e| StoreError::Internal(format!("sso_settings.allowed_domains: {e}")))?,
        default_role: row.get("default_role")?,
        required: row.get("required")?,
        updated_at: row.get("updated_at")?,
    })
}

fn attempt(row: &impl Row) -> StoreResult<SsoAttempt> {
    Ok(SsoAttempt {
        state_hash: row.get("state_hash")?,
        org_id: row.get("org_id")?,
        browser_hash: row.get("browser_hash")?,
        nonce: row.get("nonce")?,
        code_verifier: row.get("code_verifier")?,
        wants_token: row.get("wants_token")?,
        next: row.get("next")?,
        expires_at: row.get("expires_at")?,
    })
}

#[async_trait]
impl<B: SqlBackend> SsoStore for B {
    async fn sso_settings(&self, scope: &TenantScope) -> StoreResult<Option<SsoSettings>> {
        let row = self
            .read()
            .await?
            .fetch_optional(
                sql("SELECT * FROM sso_settings WHERE org_id = $1").bind(scope.org_id()),
            )
            .await?;
        row.as_ref().map(settings).transpose()
    }

    async fn set_sso_settings(
        &self,
        scope: &TenantScope,
        new: SsoSettings,
    ) -> StoreResult<SsoSettings> {
        let provider = new.provider.as_ref();
        let mut tx = self.begin().await?;
        let written = tx
            .fetch_one(
                sql(
                    "INSERT INTO sso_settings (org_id, slug, issuer, client_id, client_secret,
                                               allowed_domains, default_role, required, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (org_id) DO UPDATE SET
                         slug = excluded.slug, issuer = excluded.issuer,
                         client_id = excluded.client_id, client_secret = excluded.client_secret,
                         allowed_domains = excluded.allowed_domains,
                         default_role = excluded.default_role, required = excluded.required,
                         updated_at = excluded.updated_at
                     RETURNING *",
                )
                .bind(scope.org_id())
                .bind(new.slug.as_str())
                .bind(provider.map(|p| p.issuer.as_str()))
                .bind(provider.map(|p| p.client_id.as_str()))
                .bind(Value::Bytes(
                    provider.map(|p| p.sealed_secret.as_slice().into()),
                ))
                .bind(json!(new.allowed_domains))
                .bind(new.default_role)
                .bind(new.required)
                .bind(now()),
            )
            .await;
        let row = match written {
            Err(StoreError::Conflict(_)) => return Err(StoreError::Conflict(Conflict::SlugTaken)),
            other => other?,
        };
        let written = settings(&row)?;
        audit(
            &mut tx,
            scope,
            "sso.configured",
            &format!("organization:{}", scope.org_id()),
            json!({
                "slug": written.slug,
                "issuer": written.provider.as_ref().map(|p| p.issuer.as_str()),
                "allowed_domains": written.allowed_domains,
                "default_role": written.default_role.as_str(),
                "required": written.required,
            }),
        )
        .await?;
        commit::<B>(tx).await?;
        Ok(written)
    }

    async fn remove_sso_settings(&self, scope: &TenantScope) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let removed = tx
            .execute(sql("DELETE FROM sso_settings WHERE org_id = $1").bind(scope.org_id()))
            .await?;
        if removed == 0 {
            return Err(StoreError::NotFound);
        }
        audit(
            &mut tx,
            scope,
            "sso.removed",
            &format!("organization:{}", scope.org_id()),
            json!({}),
        )
        .await?;
        commit::<B>(tx).await
    }

    async fn find_sso_by_slug(&self, slug: &str) -> StoreResult<Option<SsoSettings>> {
        let row = self
            .read()
            .await?
            .fetch_optional(sql("SELECT * FROM sso_settings WHERE slug = $1").bind(slug))
            .await?;
        row.as_ref().map(settings).transpose()
    }

    async fn sealed_sso_secrets(&self) -> StoreResult<Vec<(OrgId, Vec<u8>)>> {
        let found = self
            .read()
            .await?
            .fetch_all(sql("SELECT org_id, client_secret FROM sso_settings
                 WHERE client_secret IS NOT NULL ORDER BY org_id"))
            .await?;
        found
            .iter()
            .map(|row| Ok((row.get("org_id")?, row.get("client_secret")?)))
            .collect()
    }

    async fn replace_sso_secret(
        &self,
        org: OrgId,
        expected: &[u8],
        sealed: &[u8],
    ) -> StoreResult<bool> {
        crate::sql::replace_sealed(
            self,
            ("sso_settings", "org_id", "client_secret"),
            org.into(),
            expected,
            sealed,
        )
        .await
    }

    async fn begin_sso_attempt(&self, a: &SsoAttempt) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        tx.execute(sql("DELETE FROM sso_attempts WHERE expires_at < $1").bind(now()))
            .await?;
        tx.execute(
            sql(
                "INSERT INTO sso_attempts (state_hash, org_id, browser_hash, nonce, code_verifier,
                                           wants_token, next, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(a.state_hash.as_str())
            .bind(a.org_id)
            .bind(a.browser_hash.as_str())
            .bind(a.nonce.as_str())
            .bind(a.code_verifier.as_str())
            .bind(a.wants_token)
            .bind(a.next.as_deref())
            .bind(a.expires_at),
        )
        .await?;
        commit::<B>(tx).await
    }

    async fn take_sso_attempt(&self, state_hash: &str) -> StoreResult<Option<SsoAttempt>> {
        let row = self
            .write()
            .await?
            .fetch_optional(
                sql("DELETE FROM sso_attempts WHERE state_hash = $1 RETURNING *").bind(state_hash),
            )
            .await?;
        row.as_ref().map(attempt).transpose()
    }

    async fn sso_member(
        &self,
        scope: &TenantScope,
        identity: &SsoIdentity,
        create: Option<NewUser>,
    ) -> StoreResult<SsoMember> {
        let mut tx = self.begin().await?;
        let known = tx
            .fetch_optional(
                sql(
                    "SELECT u.* FROM sso_identities i JOIN users u ON u.id = i.user_id
                     WHERE i.issuer = $1 AND i.subject = $2",
                )
                .bind(identity.issuer.as_str())
                .bind(identity.subject.as_str()),
            )
            .await?;
        if let Some(row) = known {
            let user = rows::user(&row)?;
            if user.org_id != scope.org_id() {
                return Err(StoreError::Conflict(Conflict::OtherOrganization));
            }
            return Ok(SsoMember::Known(user));
        }
        let by_address = tx
            .fetch_optional(
                sql("SELECT * FROM users WHERE email = $1").bind(identity.email.as_str()),
            )
            .await?;
        let member = match by_address {
            Some(row) => {
                let user = rows::user(&row)?;
                if user.org_id != scope.org_id() {
                    return Err(StoreError::Conflict(Conflict::OtherOrganization));
                }
                let other = tx
                    .fetch_optional(
                        sql("SELECT 1 AS one FROM sso_identities WHERE user_id = $1 AND issuer = $2")
                            .bind(user.id)
                            .bind(identity.issuer.as_str()),
                    )
                    .await?;
                if other.is_some() {
                    return Err(StoreError::Conflict(Conflict::OtherIdentity));
                }
                let themselves =
                    Principal::verified(user.org_id, Actor::User(user.id), user.role).scope();
                audit(
                    &mut tx,
                    &themselves,
                    "member.sso_linked",
                    &format!("user:{}", user.id),
                    json!({ "issuer": identity.issuer }),
                )
                .await?;
                SsoMember::Linked(user)
            }
            None => {
                let Some(new) = create else {
                    return Err(StoreError::NotFound);
                };
                let user = insert_user(&mut tx, scope.org_id(), &new, now()).await?;
                let themselves =
                    Principal::verified(user.org_id, Actor::User(user.id), user.role).scope();
                audit(
                    &mut tx,
                    &themselves,
                    "member.added",
                    &format!("user:{}", user.id),
                    json!({ "email": user.email, "role": user.role.as_str(), "via": "sso" }),
                )
                .await?;
                SsoMember::Created(user)
            }
        };
        let user = match &member {
            SsoMember::Known(u) | SsoMember::Linked(u) | SsoMember::Created(u) => u,
        };
        tx.execute(
            sql(
                "INSERT INTO sso_identities (issuer, subject, user_id, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(identity.issuer.as_str())
            .bind(identity.subject.as_str())
            .bind(user.id)
            .bind(now()),
        )
        .await?;
        commit::<B>(tx).await?;
        Ok(member)
    }
}
