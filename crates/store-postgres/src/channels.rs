//! `ChannelStore` for PostgreSQL.

use async_trait::async_trait;
use serde_json::{Value, json};
use steward_domain::{ChannelId, ChannelKind, ChatbotId, ConversationId, MessageId};
use steward_store::*;

use crate::store::{audit, commit};
use crate::{PostgresStore, map_err, rows};

/// Errors are kept for the operator to read, not as a log: long ones are cut.
const MAX_ERROR_CHARS: usize = 500;

#[async_trait]
impl ChannelStore for PostgresStore {
    async fn create_channel(&self, scope: &TenantScope, new: NewChannel) -> StoreResult<Channel> {
        let org = scope.org_id().as_uuid();
        let at = now();
        let mut tx = self.write().await?;
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM chatbots WHERE id = $1 AND org_id = $2")
            .bind(new.chatbot_id.as_uuid())
            .bind(org)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO channels (id, org_id, chatbot_id, kind, name, settings, secrets, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new.id.as_uuid())
        .bind(org)
        .bind(new.chatbot_id.as_uuid())
        .bind(new.kind.as_str())
        .bind(&new.name)
        .bind(&new.settings)
        .bind(&new.sealed_secrets)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match map_err(e) {
            StoreError::Conflict { .. } => StoreError::conflict(
                "channel_name_taken",
                "this chatbot already has a channel with that name",
            ),
            other => other,
        })?;
        audit(
            &mut tx,
            scope,
            "channel.create",
            &format!("channel:{}", new.id),
            json!({ "chatbot_id": new.chatbot_id, "kind": new.kind, "name": new.name }),
        )
        .await?;
        commit(tx).await?;
        Ok(Channel {
            id: new.id,
            org_id: scope.org_id(),
            chatbot_id: new.chatbot_id,
            kind: new.kind,
            name: new.name,
            settings: new.settings,
            sealed_secrets: new.sealed_secrets,
            cursor: None,
            created_at: at,
            health: ChannelHealth::default(),
        })
    }

    async fn list_channels(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
    ) -> StoreResult<Vec<Channel>> {
        let found = sqlx::query(
            "SELECT * FROM channels WHERE org_id = $1 AND chatbot_id = $2 ORDER BY created_at, id",
        )
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::channel).collect()
    }

    async fn channel(&self, scope: &TenantScope, id: ChannelId) -> StoreResult<Channel> {
        let found = sqlx::query("SELECT * FROM channels WHERE id = $1 AND org_id = $2")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        rows::channel(&found.ok_or(StoreError::NotFound)?)
    }

    async fn delete_channel(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        id: ChannelId,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let deleted =
            sqlx::query("DELETE FROM channels WHERE id = $1 AND org_id = $2 AND chatbot_id = $3")
                .bind(id.as_uuid())
                .bind(scope.org_id().as_uuid())
                .bind(chatbot.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        audit(
            &mut tx,
            scope,
            "channel.delete",
            &format!("channel:{id}"),
            json!({ "chatbot_id": chatbot }),
        )
        .await?;
        commit(tx).await
    }

    async fn find_channel(&self, id: ChannelId) -> StoreResult<Option<Channel>> {
        let found = sqlx::query("SELECT * FROM channels WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        found.as_ref().map(rows::channel).transpose()
    }

    async fn all_channels(&self, kind: Option<ChannelKind>) -> StoreResult<Vec<Channel>> {
        let found = sqlx::query(
            "SELECT * FROM channels WHERE $1::text IS NULL OR kind = $1 ORDER BY created_at, id",
        )
        .bind(kind.map(|k| k.as_str()))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::channel).collect()
    }

    async fn channel_conversation(
        &self,
        scope: &TenantScope,
        channel: &Channel,
        external_key: &str,
    ) -> StoreResult<ConversationId> {
        let org = scope.org_id().as_uuid();
        let lookup = "SELECT id FROM conversations WHERE channel_id = $1 AND external_key = $2 AND org_id = $3";
        let existing: Option<uuid::Uuid> = sqlx::query_scalar(lookup)
            .bind(channel.id.as_uuid())
            .bind(external_key)
            .bind(org)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        if let Some(id) = existing {
            return Ok(id.into());
        }
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO conversations (id, org_id, chatbot_id, channel, channel_id, external_key, created_at)
             SELECT $1, org_id, chatbot_id, kind, id, $2, $3 FROM channels WHERE id = $4 AND org_id = $5
             ON CONFLICT DO NOTHING",
        )
        .bind(ConversationId::new().as_uuid())
        .bind(external_key)
        .bind(now())
        .bind(channel.id.as_uuid())
        .bind(org)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let id: Option<uuid::Uuid> = sqlx::query_scalar(lookup)
            .bind(channel.id.as_uuid())
            .bind(external_key)
            .bind(org)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        commit(tx).await?;
        id.map(Into::into).ok_or(StoreError::NotFound)
    }

    async fn record_channel_event(&self, id: ChannelId, event: ChannelEvent) -> StoreResult<()> {
        let at = now();
        let query = match &event {
            ChannelEvent::Inbound => {
                sqlx::query("UPDATE channels SET last_inbound_at = $1 WHERE id = $2").bind(at)
            }
            ChannelEvent::Outbound => {
                sqlx::query("UPDATE channels SET last_outbound_at = $1 WHERE id = $2").bind(at)
            }
            ChannelEvent::Error(error) => sqlx::query(
                "UPDATE channels SET last_error = $1, last_error_at = $2,
                    error_window_count = CASE WHEN error_window_at > $2 - $3::interval THEN error_window_count + 1 ELSE 1 END,
                    error_window_at = CASE WHEN error_window_at > $2 - $3::interval THEN error_window_at ELSE $2 END
                 WHERE id = $4",
            )
            .bind(error.chars().take(MAX_ERROR_CHARS).collect::<String>())
            .bind(at)
            .bind(format!("{} seconds", ERROR_WINDOW.num_seconds())),
        };
        query
            .bind(id.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn replace_channel_secrets(
        &self,
        id: ChannelId,
        expected: &[u8],
        sealed: &[u8],
    ) -> StoreResult<bool> {
        let updated =
            sqlx::query("UPDATE channels SET secrets = $1 WHERE id = $2 AND secrets = $3")
                .bind(sealed)
                .bind(id.as_uuid())
                .bind(expected)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(updated.rows_affected() == 1)
    }

    async fn set_channel_cursor(
        &self,
        scope: &TenantScope,
        id: ChannelId,
        cursor: Value,
    ) -> StoreResult<()> {
        let updated = sqlx::query("UPDATE channels SET cursor = $1 WHERE id = $2 AND org_id = $3")
            .bind(&cursor)
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn message(&self, scope: &TenantScope, id: MessageId) -> StoreResult<Message> {
        let found = sqlx::query("SELECT * FROM messages WHERE id = $1 AND org_id = $2")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        rows::message(&found.ok_or(StoreError::NotFound)?)
    }

    async fn delivered_parts(
        &self,
        scope: &TenantScope,
        message: MessageId,
    ) -> StoreResult<Vec<i32>> {
        sqlx::query_scalar(
            "SELECT part FROM deliveries WHERE message_id = $1 AND org_id = $2 ORDER BY part",
        )
        .bind(message.as_uuid())
        .bind(scope.org_id().as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn record_delivery(
        &self,
        scope: &TenantScope,
        message: MessageId,
        part: i32,
        external_id: Option<String>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO deliveries (message_id, part, org_id, external_id, sent_at)
             SELECT id, $1, org_id, $2, $3 FROM messages WHERE id = $4 AND org_id = $5
             ON CONFLICT DO NOTHING",
        )
        .bind(part)
        .bind(external_id)
        .bind(now())
        .bind(message.as_uuid())
        .bind(scope.org_id().as_uuid())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}
