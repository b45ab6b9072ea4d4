//! [`MessageStore`], for every backend.

use async_trait::async_trait;
use steward_domain::*;

use crate::sql::{Db, Row, SqlBackend, commit, insert_job, rows, sql};
use crate::*;

/// Newest first, strictly before the upper position, at or after `from`: one
/// range scan of `messages_history` whatever the page.
const HISTORY_PAGE: &str = "SELECT * FROM messages
     WHERE org_id = $1 AND chatbot_id = $2 AND (created_at, id) < ($3, $4) AND created_at >= $5
     ORDER BY created_at DESC, id DESC
     LIMIT $6";

#[async_trait]
impl<B: SqlBackend> MessageStore for B {
    async fn add_message(&self, scope: &TenantScope, new: NewMessage) -> StoreResult<Message> {
        let org = scope.org_id();
        let at = now();
        let mut tx = self.begin().await?;
        let status: ChatbotStatus = tx
            .fetch_one(
                sql("SELECT status FROM chatbots WHERE id = $1 AND org_id = $2")
                    .bind(new.chatbot_id)
                    .bind(org),
            )
            .await?
            .get("status")?;
        if new.role == MessageRole::User && status == ChatbotStatus::Paused {
            return Err(StoreError::Conflict(Conflict::ChatbotPaused));
        }
        let conversation_id = match new.conversation {
            ConversationChoice::Existing(id) => {
                tx.fetch_one(
                    sql("SELECT 1 AS one FROM conversations WHERE id = $1 AND org_id = $2 AND chatbot_id = $3")
                        .bind(id)
                        .bind(org)
                        .bind(new.chatbot_id),
                )
                .await?;
                id
            }
            ConversationChoice::Start(id) => {
                tx.execute(
                    sql(
                        "INSERT INTO conversations (id, org_id, chatbot_id, channel, created_at)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id)
                    .bind(org)
                    .bind(new.chatbot_id)
                    .bind(new.channel.as_str())
                    .bind(at),
                )
                .await?;
                id
            }
        };
        let message = Message {
            id: new.id,
            org_id: org,
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
        tx.execute(
            sql("INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel,
                                       external_id, answers, channel_id, meta, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
            .bind(message.id)
            .bind(org)
            .bind(message.chatbot_id)
            .bind(conversation_id)
            .bind(message.role)
            .bind(message.text.as_str())
            .bind(message.channel.as_str())
            .bind(message.external_id.as_deref())
            .bind(message.answers)
            .bind(message.channel_id)
            .bind(message.meta.as_ref())
            .bind(at),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(Conflict::DuplicateMessage),
            other => other,
        })?;
        let counted = i64::from(message.role == MessageRole::User);
        if counted > 0 || new.tokens > 0 {
            tx.execute(
                sql("INSERT INTO usage_counters (org_id, period, messages, tokens) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (org_id, period) DO UPDATE SET
                        messages = usage_counters.messages + excluded.messages,
                        tokens = usage_counters.tokens + excluded.tokens")
                .bind(org)
                .bind(usage_period(at))
                .bind(counted)
                .bind(new.tokens),
            )
            .await?;
        }
        if let Some(job) = &new.then {
            insert_job::<B>(&mut tx, job).await?;
        }
        let stored = LiveEvent {
            org_id: message.org_id,
            conversation_id: message.conversation_id,
            kind: LiveKind::Message {
                message_id: message.id,
            },
        };
        for notice in B::live_notices(&stored) {
            tx.execute(notice).await?;
        }
        commit::<B>(tx).await?;
        self.live_committed(stored);
        Ok(message)
    }

    async fn conversation_messages(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT * FROM (SELECT * FROM messages WHERE org_id = $1 AND conversation_id = $2
                         ORDER BY created_at DESC, id DESC LIMIT $3) AS latest
                     ORDER BY created_at, id")
                .bind(scope.org_id())
                .bind(conversation)
                .bind(i64::from(limit)),
            )
            .await?;
        found.iter().map(rows::message).collect()
    }

    async fn conversation_messages_after(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let mut db = self.read().await?;
        let found = match after {
            None => {
                db.fetch_all(
                    sql(
                        "SELECT * FROM messages WHERE org_id = $1 AND conversation_id = $2
                         ORDER BY created_at, id LIMIT $3",
                    )
                    .bind(scope.org_id())
                    .bind(conversation)
                    .bind(i64::from(limit)),
                )
                .await?
            }
            Some(after) => {
                let at: chrono::DateTime<chrono::Utc> = db
                    .fetch_one(
                        sql("SELECT created_at FROM messages
                             WHERE id = $1 AND org_id = $2 AND conversation_id = $3")
                        .bind(after)
                        .bind(scope.org_id())
                        .bind(conversation),
                    )
                    .await?
                    .get("created_at")?;
                db.fetch_all(
                    sql("SELECT * FROM messages
                         WHERE org_id = $1 AND conversation_id = $2 AND (created_at, id) > ($3, $4)
                         ORDER BY created_at, id LIMIT $5")
                    .bind(scope.org_id())
                    .bind(conversation)
                    .bind(at)
                    .bind(after)
                    .bind(i64::from(limit)),
                )
                .await?
            }
        };
        found.iter().map(rows::message).collect()
    }

    async fn history(
        &self,
        scope: &TenantScope,
        query: &HistoryQuery,
    ) -> StoreResult<Vec<Message>> {
        let (upper, from) = query.bounds();
        let found = self
            .read()
            .await?
            .fetch_all(
                sql(HISTORY_PAGE)
                    .bind(scope.org_id())
                    .bind(query.chatbot_id)
                    .bind(upper.created_at)
                    .bind(upper.id)
                    .bind(from)
                    .bind(i64::from(query.limit)),
            )
            .await?;
        found.iter().map(rows::message).collect()
    }

    async fn message_thread(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        message: MessageId,
        around: u32,
    ) -> StoreResult<(Message, Vec<Message>)> {
        let mut db = self.read().await?;
        let row = db
            .fetch_one(
                sql("SELECT * FROM messages WHERE id = $1 AND org_id = $2 AND chatbot_id = $3")
                    .bind(message)
                    .bind(scope.org_id())
                    .bind(chatbot),
            )
            .await?;
        let message = rows::message(&row)?;
        let neighbours = |text: &'static str| {
            sql(text)
                .bind(scope.org_id())
                .bind(message.conversation_id)
                .bind(message.created_at)
                .bind(message.id)
                .bind(i64::from(around))
        };
        let before = db
            .fetch_all(neighbours(
                "SELECT * FROM messages
                 WHERE org_id = $1 AND conversation_id = $2 AND (created_at, id) < ($3, $4)
                 ORDER BY created_at DESC, id DESC LIMIT $5",
            ))
            .await?;
        let after = db
            .fetch_all(neighbours(
                "SELECT * FROM messages
                 WHERE org_id = $1 AND conversation_id = $2 AND (created_at, id) > ($3, $4)
                 ORDER BY created_at, id LIMIT $5",
            ))
            .await?;
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
}
