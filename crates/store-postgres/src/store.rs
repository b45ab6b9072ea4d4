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
