//! [`ChannelStore`], for every backend.

use async_trait::async_trait;
use serde_json::{Value as Json, json};
use steward_domain::{ChannelId, ChannelKind, ChatbotId, ConversationId, MessageId};

use crate::sql::{Db, Row, SqlBackend, audit, commit, commit_with, rows, sql};
use crate::*;

/// Errors are kept for the operator to read, not as a log: long ones are cut.
const MAX_ERROR_CHARS: usize = 500;

#[async_trait]
impl<B: SqlBackend> ChannelStore for B {
    async fn create_channel(&self, scope: &TenantScope, new: NewChannel) -> StoreResult<Channel> {
        let at = now();
        let mut tx = self.begin().await?;
        tx.fetch_one(
            sql("SELECT 1 AS one FROM chatbots WHERE id = $1 AND org_id = $2")
                .bind(new.chatbot_id)
                .bind(scope.org_id()),
        )
        .await?;
        tx.execute(
            sql("INSERT INTO channels (id, org_id, chatbot_id, kind, name, settings, secrets, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(new.id)
            .bind(scope.org_id())
            .bind(new.chatbot_id)
            .bind(new.kind)
            .bind(new.name.as_str())
            .bind(&new.settings)
            .bind(new.sealed_secrets.as_slice())
            .bind(at),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(Conflict::ChannelNameTaken),
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
        let created = Channel {
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
        };
        commit_with::<B>(tx, &created).await?;
        Ok(created)
    }

    async fn list_channels(
        &self,
        scope: &TenantScope,
        chatbot: Option<ChatbotId>,
    ) -> StoreResult<Vec<Channel>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql(
                    "SELECT * FROM channels WHERE org_id = $1 AND ($2 IS NULL OR chatbot_id = $2)
                     ORDER BY chatbot_id, created_at, id",
                )
                .bind(scope.org_id())
                .bind(chatbot),
            )
            .await?;
        found.iter().map(rows::channel).collect()
    }

    async fn channel(&self, scope: &TenantScope, id: ChannelId) -> StoreResult<Channel> {
        let found = self
            .read()
            .await?
            .fetch_one(
                sql("SELECT * FROM channels WHERE id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?;
        rows::channel(&found)
    }

    async fn delete_channel(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        id: ChannelId,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = tx
            .execute(
                sql("DELETE FROM channels WHERE id = $1 AND org_id = $2 AND chatbot_id = $3")
                    .bind(id)
                    .bind(scope.org_id())
                    .bind(chatbot),
            )
            .await?;
        if deleted == 0 {
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
        commit::<B>(tx).await
    }

    async fn find_channel(&self, id: ChannelId) -> StoreResult<Option<Channel>> {
        let found = self
            .read()
            .await?
            .fetch_optional(sql("SELECT * FROM channels WHERE id = $1").bind(id))
            .await?;
        found.as_ref().map(rows::channel).transpose()
    }

    async fn all_channels(&self, kind: Option<ChannelKind>) -> StoreResult<Vec<Channel>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT * FROM channels WHERE $1 IS NULL OR kind = $1 ORDER BY created_at, id")
                    .bind(kind.map(|k| k.as_str())),
            )
            .await?;
        found.iter().map(rows::channel).collect()
    }

    async fn find_channel_conversation(
        &self,
        scope: &TenantScope,
        channel: ChannelId,
        external_key: &str,
    ) -> StoreResult<Option<ConversationId>> {
        self.read()
            .await?
            .fetch_optional(
                sql("SELECT id FROM conversations WHERE channel_id = $1 AND external_key = $2 AND org_id = $3")
                    .bind(channel)
                    .bind(external_key)
                    .bind(scope.org_id()),
            )
            .await?
            .map(|row| row.get("id"))
            .transpose()
    }

    async fn record_channel_event(&self, id: ChannelId, event: ChannelEvent) -> StoreResult<()> {
        let at = now();
        let statement = match &event {
            ChannelEvent::Inbound => {
                sql("UPDATE channels SET last_inbound_at = $1 WHERE id = $2").bind(at)
            }
            ChannelEvent::Outbound => {
                sql("UPDATE channels SET last_outbound_at = $1 WHERE id = $2").bind(at)
            }
            ChannelEvent::Error(error) => sql(
                "UPDATE channels SET last_error = $1, last_error_at = $2,
                    error_window_count = CASE WHEN error_window_at > $3 THEN error_window_count + 1 ELSE 1 END,
                    error_window_at = CASE WHEN error_window_at > $3 THEN error_window_at ELSE $2 END
                 WHERE id = $4",
            )
            .bind(error.chars().take(MAX_ERROR_CHARS).collect::<String>())
            .bind(at)
            // A window still open started after this.
            .bind(at - ERROR_WINDOW),
        };
        self.write().await?.execute(statement.bind(id)).await?;
        Ok(())
    }

    async fn replace_channel_secrets(
        &self,
        id: ChannelId,
        expected: &[u8],
        sealed: &[u8],
    ) -> StoreResult<bool> {
        crate::sql::replace_sealed(
            self,
            ("channels", "id", "secrets"),
            id.into(),
            expected,
            sealed,
        )
        .await
    }

    async fn set_channel_cursor(
        &self,
        scope: &TenantScope,
        id: ChannelId,
        cursor: Json,
    ) -> StoreResult<()> {
        let updated = self
            .write()
            .await?
            .execute(
                sql("UPDATE channels SET cursor = $1 WHERE id = $2 AND org_id = $3")
                    .bind(cursor)
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?;
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn message(&self, scope: &TenantScope, id: MessageId) -> StoreResult<Message> {
        let found = self
            .read()
            .await?
            .fetch_one(
                sql(concat!(
                    select_message!(),
                    " FROM messages WHERE id = $1 AND org_id = $2"
                ))
                .bind(id)
                .bind(scope.org_id()),
            )
            .await?;
        rows::message(&found)
    }

    async fn delivered_parts(
        &self,
        scope: &TenantScope,
        message: MessageId,
    ) -> StoreResult<Vec<i32>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT part FROM deliveries WHERE message_id = $1 AND org_id = $2 ORDER BY part")
                    .bind(message)
                    .bind(scope.org_id()),
            )
            .await?;
        found.iter().map(|row| row.get("part")).collect()
    }

    async fn record_delivery(
        &self,
        scope: &TenantScope,
        message: MessageId,
        part: i32,
        external_id: Option<String>,
    ) -> StoreResult<()> {
        self.write()
            .await?
            .execute(
                sql(
                    "INSERT INTO deliveries (message_id, part, org_id, external_id, sent_at)
                     SELECT id, $1, org_id, $2, $3 FROM messages WHERE id = $4 AND org_id = $5
                     ON CONFLICT DO NOTHING",
                )
                .bind(part)
                .bind(external_id)
                .bind(now())
                .bind(message)
                .bind(scope.org_id()),
            )
            .await?;
        Ok(())
    }
}
