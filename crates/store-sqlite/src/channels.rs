//! `ChannelStore` for SQLite.

use async_trait::async_trait;
use serde_json::{Value, json};
use steward_domain::{ChannelId, ChannelKind, ChatbotId, ConversationId, MessageId};
use steward_store::*;

use crate::store::{audit, commit};
use crate::{SqliteStore, map_err, rows, to_micros};

/// Errors are kept for the operator to read, not as a log: long ones are cut.
const MAX_ERROR_CHARS: usize = 500;

#[async_trait]
impl ChannelStore for SqliteStore {
    async fn create_channel(&self, scope: &TenantScope, new: NewChannel) -> StoreResult<Channel> {
        let org = scope.org_id().as_uuid();
        let at = now();
        let mut tx = self.write().await?;
        sqlx::query_scalar::<_, i64>("SELECT 1 FROM chatbots WHERE id = ? AND org_id = ?")
            .bind(new.chatbot_id.as_uuid())
            .bind(org)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO channels (id, org_id, chatbot_id, kind, name, settings, secrets, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(new.id.as_uuid())
        .bind(org)
        .bind(new.chatbot_id.as_uuid())
        .bind(new.kind.as_str())
        .bind(&new.name)
        .bind(new.settings.to_string())
        .bind(&new.sealed_secrets)
        .bind(to_micros(at))
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
            "SELECT * FROM channels WHERE org_id = ? AND chatbot_id = ? ORDER BY created_at, id",
        )
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.as_uuid())
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::channel).collect()
    }

    async fn channel(&self, scope: &TenantScope, id: ChannelId) -> StoreResult<Channel> {
        let found = sqlx::query("SELECT * FROM channels WHERE id = ? AND org_id = ?")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&self.reader)
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
            sqlx::query("DELETE FROM channels WHERE id = ? AND org_id = ? AND chatbot_id = ?")
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
        let found = sqlx::query("SELECT * FROM channels WHERE id = ?")
            .bind(id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        found.as_ref().map(rows::channel).transpose()
    }

    async fn all_channels(&self, kind: Option<ChannelKind>) -> StoreResult<Vec<Channel>> {
        let found = sqlx::query(
            "SELECT * FROM channels WHERE ?1 IS NULL OR kind = ?1 ORDER BY created_at, id",
        )
        .bind(kind.map(|k| k.as_str()))
        .fetch_all(&self.reader)
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
        let lookup =
            "SELECT id FROM conversations WHERE channel_id = ? AND external_key = ? AND org_id = ?";
        let existing: Option<uuid::Uuid> = sqlx::query_scalar(lookup)
            .bind(channel.id.as_uuid())
            .bind(external_key)
            .bind(org)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        if let Some(id) = existing {
            return Ok(id.into());
        }
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO conversations (id, org_id, chatbot_id, channel, channel_id, external_key, created_at)
             SELECT ?, org_id, chatbot_id, kind, id, ?, ? FROM channels WHERE id = ? AND org_id = ?
             ON CONFLICT DO NOTHING",
        )
        .bind(ConversationId::new().as_uuid())
        .bind(external_key)
        .bind(to_micros(now()))
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
        let at = to_micros(now());
        let query = match &event {
            ChannelEvent::Inbound => {
                sqlx::query("UPDATE channels SET last_inbound_at = ? WHERE id = ?").bind(at)
            }
            ChannelEvent::Outbound => {
                sqlx::query("UPDATE channels SET last_outbound_at = ? WHERE id = ?").bind(at)
            }
            ChannelEvent::Error(error) => sqlx::query(
                "UPDATE channels SET last_error = ?1, last_error_at = ?2,
                    error_window_count = CASE WHEN error_window_at > ?2 - ?3 THEN error_window_count + 1 ELSE 1 END,
                    error_window_at = CASE WHEN error_window_at > ?2 - ?3 THEN error_window_at ELSE ?2 END
                 WHERE id = ?4",
            )
            .bind(error.chars().take(MAX_ERROR_CHARS).collect::<String>())
            .bind(at)
            .bind(ERROR_WINDOW.num_microseconds().expect("an hour fits")),
        };
        query
            .bind(id.as_uuid())
            .execute(&self.writer)
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
        let updated = sqlx::query("UPDATE channels SET secrets = ? WHERE id = ? AND secrets = ?")
            .bind(sealed)
            .bind(id.as_uuid())
            .bind(expected)
            .execute(&self.writer)
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
        let updated = sqlx::query("UPDATE channels SET cursor = ? WHERE id = ? AND org_id = ?")
            .bind(cursor.to_string())
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn message(&self, scope: &TenantScope, id: MessageId) -> StoreResult<Message> {
        let found = sqlx::query("SELECT * FROM messages WHERE id = ? AND org_id = ?")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&self.reader)
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
            "SELECT part FROM deliveries WHERE message_id = ? AND org_id = ? ORDER BY part",
        )
        .bind(message.as_uuid())
        .bind(scope.org_id().as_uuid())
        .fetch_all(&self.reader)
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
             SELECT id, ?, org_id, ?, ? FROM messages WHERE id = ? AND org_id = ?
             ON CONFLICT DO NOTHING",
        )
        .bind(part)
        .bind(external_id)
        .bind(to_micros(now()))
        .bind(message.as_uuid())
        .bind(scope.org_id().as_uuid())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}
