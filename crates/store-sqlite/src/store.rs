//! `Store` for SQLite. Every tenant-owned query filters on `org_id`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Sqlite, Transaction};
use steward_domain::*;
use steward_store::*;
use uuid::Uuid;

use crate::{SqliteStore, map_err, rows, to_micros};

pub(crate) type Tx = Transaction<'static, Sqlite>;

impl SqliteStore {
    pub(crate) async fn begin_write(&self) -> StoreResult<Tx> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)
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
async fn pass_fence(tx: &mut Tx, fence: &Fence) -> StoreResult<()> {
    let held = match &fence.answer {
        Some(answer) => sqlx::query(
            "UPDATE idempotency_keys SET took_effect = 1, status = ?, content_type = ?, body = ?
             WHERE caller = ? AND key = ? AND token = ?",
        )
        .bind(i64::from(answer.status))
        .bind(&answer.content_type)
        .bind(&answer.body),
        None => sqlx::query(
            "UPDATE idempotency_keys SET took_effect = 1 WHERE caller = ? AND key = ? AND token = ?",
        ),
    }
    .bind(&fence.caller)
    .bind(&fence.key)
    .bind(&fence.token)
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
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(AuditId::new().as_uuid())
    .bind(scope.org_id().as_uuid())
    .bind(scope.actor().to_string())
    .bind(action)
    .bind(target)
    .bind(details.to_string())
    .bind(to_micros(now()))
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<()> {
        crate::ops::MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn try_lead(
        &self,
        name: &str,
        holder: &str,
        ttl: chrono::Duration,
    ) -> StoreResult<Option<Box<dyn Leadership>>> {
        self.lease(name, holder, ttl).await
    }

    async fn watch_enqueued(&self, _wake: std::sync::Arc<tokio::sync::Notify>) {}

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn connections_active(&self) -> u32 {
        let busy = |pool: &sqlx::SqlitePool| pool.size().saturating_sub(pool.num_idle() as u32);
        busy(&self.writer) + busy(&self.reader)
    }

    fn connections_max(&self) -> u32 {
        self.writer.options().get_max_connections() + self.reader.options().get_max_connections()
    }

    async fn analyze(&self) -> StoreResult<()> {
        sqlx::query("PRAGMA optimize")
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn add_message(&self, scope: &TenantScope, new: NewMessage) -> StoreResult<Message> {
        let org = scope.org_id().as_uuid();
        let at = now();
        let mut tx = self.begin_write().await?;
        let status: String =
            sqlx::query_scalar("SELECT status FROM chatbots WHERE id = ? AND org_id = ?")
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
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT 1 FROM conversations WHERE id = ? AND org_id = ? AND chatbot_id = ?",
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
                sqlx::query("INSERT INTO conversations (id, org_id, chatbot_id, channel, created_at) VALUES (?, ?, ?, ?, ?)")
                    .bind(id.as_uuid())
                    .bind(org)
                    .bind(new.chatbot_id.as_uuid())
                    .bind(&new.channel)
                    .bind(to_micros(at))
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(message.meta.as_ref().map(|m| m.to_string()))
        .bind(to_micros(at))
        .execute(&mut *tx)
        .await
        .map_err(|e| match map_err(e) {
            StoreError::Conflict { .. } => StoreError::conflict("duplicate_message", "this message was already received"),
            other => other,
        })?;
        let counted = i64::from(message.role == MessageRole::User);
        if counted > 0 || new.tokens > 0 {
            sqlx::query(
                "INSERT INTO usage_counters (org_id, period, messages, tokens) VALUES (?, ?, ?, ?)
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
        commit(tx).await?;
        let _ = self.live.send(LiveEvent {
            org_id: message.org_id,
            conversation_id: message.conversation_id,
            kind: LiveKind::Message {
                message_id: message.id,
            },
        });
        Ok(message)
    }

    async fn conversation_messages(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let found = sqlx::query(
            "SELECT * FROM (SELECT * FROM messages WHERE org_id = ? AND conversation_id = ?
                 ORDER BY created_at DESC, id DESC LIMIT ?)
             ORDER BY created_at, id",
        )
        .bind(scope.org_id().as_uuid())
        .bind(conversation.as_uuid())
        .bind(limit)
        .fetch_all(&self.reader)
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
                "SELECT * FROM messages WHERE org_id = ? AND conversation_id = ? ORDER BY created_at, id LIMIT ?",
            )
            .bind(org)
            .bind(conversation.as_uuid())
            .bind(limit)
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?,
            Some(after) => {
                let at: i64 = sqlx::query_scalar(
                    "SELECT created_at FROM messages WHERE id = ? AND org_id = ? AND conversation_id = ?",
                )
                .bind(after.as_uuid())
                .bind(org)
                .bind(conversation.as_uuid())
                .fetch_optional(&self.reader)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound)?;
                sqlx::query(
                    "SELECT * FROM messages WHERE org_id = ? AND conversation_id = ? AND (created_at, id) > (?, ?)
                     ORDER BY created_at, id LIMIT ?",
                )
                .bind(org)
                .bind(conversation.as_uuid())
                .bind(at)
                .bind(after.as_uuid())
                .bind(limit)
                .fetch_all(&self.reader)
                .await
                .map_err(map_err)?
            }
        };
        found.iter().map(rows::message).collect()
    }

    async fn publish_live(&self, event: LiveEvent) -> StoreResult<()> {
        let _ = self.live.send(event);
        Ok(())
    }

    async fn subscribe_live(&self) -> tokio::sync::broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
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
            .bind(to_micros(upper.created_at))
            .bind(upper.id.as_uuid())
            .bind(to_micros(from))
            .bind(query.limit)
            .fetch_all(&self.reader)
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
            sqlx::query("SELECT * FROM messages WHERE id = ? AND org_id = ? AND chatbot_id = ?")
                .bind(message.as_uuid())
                .bind(scope.org_id().as_uuid())
                .bind(chatbot.as_uuid())
                .fetch_one(&self.reader)
                .await
                .map_err(map_err)?;
        let message = rows::message(&row)?;
        let neighbours = |sql: &'static str| {
            sqlx::query(sql)
                .bind(scope.org_id().as_uuid())
                .bind(message.conversation_id.as_uuid())
                .bind(to_micros(message.created_at))
                .bind(message.id.as_uuid())
                .bind(around)
                .fetch_all(&self.reader)
        };
        let before = neighbours(
            "SELECT * FROM messages WHERE org_id = ? AND conversation_id = ? AND (created_at, id) < (?, ?)
             ORDER BY created_at DESC, id DESC LIMIT ?",
        )
        .await
        .map_err(map_err)?;
        let after = neighbours(
            "SELECT * FROM messages WHERE org_id = ? AND conversation_id = ? AND (created_at, id) > (?, ?)
             ORDER BY created_at, id LIMIT ?",
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
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query("SELECT * FROM idempotency_keys WHERE caller = ? AND key = ?")
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
        let token = Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO idempotency_keys (caller, key, org_id, request_hash, created_at, token) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (caller, key) DO UPDATE SET
                org_id = excluded.org_id, request_hash = excluded.request_hash, status = NULL,
                content_type = NULL, body = NULL, created_at = excluded.created_at,
                token = excluded.token, took_effect = 0",
        )
        .bind(&key.caller)
        .bind(&key.key)
        .bind(key.org_id.map(|o| o.as_uuid()))
        .bind(&key.request_hash)
        .bind(to_micros(now()))
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
            "UPDATE idempotency_keys SET status = ?, content_type = ?, body = ?
             WHERE caller = ? AND key = ? AND token = ? AND status IS NULL",
        )
        .bind(i64::from(response.status))
        .bind(&response.content_type)
        .bind(&response.body)
        .bind(&key.caller)
        .bind(&key.key)
        .bind(token)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn idempotency_abandon(&self, key: &IdempotencyKey, token: &str) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys
             WHERE caller = ? AND key = ? AND token = ? AND status IS NULL AND took_effect = 0",
        )
        .bind(&key.caller)
        .bind(&key.key)
        .bind(token)
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}

/// Newest first, strictly before the upper position, at or after `from`: one
/// range scan of `messages_history` whatever the page.
const HISTORY_PAGE: &str = "SELECT * FROM messages
     WHERE org_id = ? AND chatbot_id = ? AND (created_at, id) < (?, ?) AND created_at >= ?
     ORDER BY created_at DESC, id DESC
     LIMIT ?";
