//! [`ChatbotStore`], for every backend.

use async_trait::async_trait;
use serde_json::Value as Json;
use steward_domain::*;

use crate::sql::{Db, Row, SqlBackend, audit, commit, commit_with, rows, sql};
use crate::*;

/// An organization's integrations with the catalogue's description of each.
const INTEGRATIONS: &str = "SELECT i.id, i.name, i.description, o.config, o.enabled_at
     FROM integrations i
     LEFT JOIN org_integrations o ON o.integration_id = i.id AND o.org_id = $1";

#[async_trait]
impl<B: SqlBackend> ChatbotStore for B {
    async fn list_chatbots(
        &self,
        scope: &TenantScope,
        limit: u32,
        offset: u64,
    ) -> StoreResult<(Vec<Chatbot>, u64)> {
        let mut db = self.read().await?;
        let found = db
            .fetch_all(
                sql("SELECT * FROM chatbots WHERE org_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3")
                    .bind(scope.org_id())
                    .bind(i64::from(limit))
                    .bind(i64::try_from(offset).unwrap_or(i64::MAX)),
            )
            .await?;
        let total: i64 = db
            .fetch_one(
                sql("SELECT count(*) AS total FROM chatbots WHERE org_id = $1")
                    .bind(scope.org_id()),
            )
            .await?
            .get("total")?;
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
        let mut tx = self.begin().await?;
        let row = tx
            .fetch_one(
                sql("INSERT INTO chatbots (id, org_id, name, system_prompt, temperature, model, status,
                                           created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING *")
                .bind(ChatbotId::new())
                .bind(scope.org_id())
                .bind(chatbot.name.as_str())
                .bind(chatbot.system_prompt.as_str())
                .bind(chatbot.temperature.value())
                .bind(chatbot.model.as_ref().map(|m| m.as_str()))
                .bind(chatbot.status)
                .bind(at),
            )
            .await?;
        let created = rows::chatbot(&row)?;
        commit_with::<B>(tx, &created).await?;
        Ok(created)
    }

    async fn chatbot(&self, scope: &TenantScope, id: ChatbotId) -> StoreResult<Chatbot> {
        let row = self
            .read()
            .await?
            .fetch_one(
                sql("SELECT * FROM chatbots WHERE id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?;
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
            Some(model) => (true, model.as_ref().map(|m| m.as_str())),
            None => (false, None),
        };
        let tools = patch.tools.as_ref().map(|tools| Json::from(tools.clone()));
        let skills = patch
            .skills
            .as_ref()
            .map(|skills| Json::from(skills.clone()));
        let row = self
            .write()
            .await?
            .fetch_one(
                sql("UPDATE chatbots SET
                        name = coalesce($1, name),
                        system_prompt = coalesce($2, system_prompt),
                        temperature = coalesce($3, temperature),
                        model = CASE WHEN $4 THEN $5 ELSE model END,
                        status = coalesce($6, status),
                        tools = coalesce($10, tools),
                        skills = coalesce($11, skills),
                        updated_at = $7
                     WHERE id = $8 AND org_id = $9 RETURNING *")
                .bind(patch.name.as_ref().map(|n| n.as_str()))
                .bind(patch.system_prompt.as_ref().map(|p| p.as_str()))
                .bind(patch.temperature.map(|t| t.value()))
                .bind(set_model)
                .bind(model)
                .bind(patch.status.map(|s| s.as_str()))
                .bind(now())
                .bind(id)
                .bind(scope.org_id())
                .bind(tools.as_ref())
                .bind(skills.as_ref()),
            )
            .await?;
        rows::chatbot(&row)
    }

    async fn delete_chatbot(&self, scope: &TenantScope, id: ChatbotId) -> StoreResult<()> {
        let deleted = self
            .write()
            .await?
            .execute(
                sql("DELETE FROM chatbots WHERE id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn integrations(&self, scope: &TenantScope) -> StoreResult<Vec<IntegrationState>> {
        let found = self
            .read()
            .await?
            .fetch_all(sql(format!("{INTEGRATIONS} ORDER BY i.position")).bind(scope.org_id()))
            .await?;
        found.iter().map(rows::integration_state).collect()
    }

    async fn enable_integration(
        &self,
        scope: &TenantScope,
        id: &str,
        config: Json,
    ) -> StoreResult<IntegrationState> {
        let mut tx = self.begin().await?;
        tx.fetch_one(sql("SELECT 1 AS one FROM integrations WHERE id = $1").bind(id))
            .await?;
        tx.execute(
            sql(
                "INSERT INTO org_integrations (org_id, integration_id, config, enabled_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (org_id, integration_id) DO UPDATE SET config = excluded.config",
            )
            .bind(scope.org_id())
            .bind(id)
            .bind(config)
            .bind(now()),
        )
        .await?;
        audit(
            &mut tx,
            scope,
            "integration.enabled",
            &format!("integration:{id}"),
            Json::Null,
        )
        .await?;
        let row = tx
            .fetch_one(
                sql(format!("{INTEGRATIONS} WHERE i.id = $2"))
                    .bind(scope.org_id())
                    .bind(id),
            )
            .await?;
        let enabled = rows::integration_state(&row)?;
        commit_with::<B>(tx, &enabled).await?;
        Ok(enabled)
    }

    async fn disable_integration(&self, scope: &TenantScope, id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = tx
            .execute(
                sql("DELETE FROM org_integrations WHERE org_id = $1 AND integration_id = $2")
                    .bind(scope.org_id())
                    .bind(id),
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        audit(
            &mut tx,
            scope,
            "integration.disabled",
            &format!("integration:{id}"),
            Json::Null,
        )
        .await?;
        commit::<B>(tx).await
    }
}
