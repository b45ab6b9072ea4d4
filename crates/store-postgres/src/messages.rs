//! A message in one call: the `add_message` function (migration
//! `add_message`) does in one round trip what the shared statements do in
//! eleven, which a webhook's intake waited on in turn.

use steward_domain::{JobId, PersonId};
use steward_store::sql::{MessageWrite, live_message};
use steward_store::{Conflict, ConversationChoice, StoreError, StoreResult, claim_lost};

use crate::{PostgresStore, map_err};

pub(crate) async fn add_message(
    store: &PostgresStore,
    write: &MessageWrite<'_>,
) -> StoreResult<Option<PersonId>> {
    let new = write.new;
    let (conversation, starts) = match new.conversation {
        ConversationChoice::Existing(id) => (id, false),
        ConversationChoice::Start(id) => (id, true),
    };
    let jobs: Vec<serde_json::Value> = new
        .then
        .iter()
        .map(|job| {
            serde_json::json!({
                "id": JobId::new(),
                "org_id": job.org_id,
                "kind": job.kind.as_str(),
                "payload": job.payload,
                "priority": job.priority,
                "run_at": job.run_at,
                "max_attempts": job.max_attempts,
                "ordering_key": job.ordering_key,
                "dedupe_key": job.dedupe_key,
            })
        })
        .collect();
    let sender = new.sender.as_ref().map(|s| &s.identity);
    let fence = write.fence.as_ref();
    let answer = fence.and_then(|f| f.answer.as_ref());
    let row: (String, Option<uuid::Uuid>, Option<Vec<String>>) = sqlx::query_as(
        "SELECT outcome, person_id, job_kinds FROM add_message(
            $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
            $17, $18, $19, $20, $21, $22, $23, $24, $25, $26::smallint, $27, $28, $29, $30,
            $31, $32)",
    )
    .bind(write.org.as_uuid())
    .bind(new.chatbot_id.as_uuid())
    .bind(conversation.as_uuid())
    .bind(starts)
    .bind(new.conversation_key.as_deref())
    .bind(new.id.as_uuid())
    .bind(new.role.as_str())
    .bind(new.text.as_str())
    .bind(new.channel.as_str())
    .bind(new.external_id.as_deref())
    .bind(new.answers.map(|id| id.as_uuid()))
    .bind(new.channel_id.map(|id| id.as_uuid()))
    .bind(new.channel_secrets.as_deref())
    .bind(new.meta.as_ref())
    .bind(new.forwarded)
    .bind(new.tokens)
    .bind(write.at)
    .bind(sender.map(|i| i.kind.as_str()))
    .bind(sender.map(|i| i.handle.as_str()))
    .bind(write.sender_name)
    .bind(write.new_person.as_uuid())
    .bind(serde_json::Value::Array(jobs))
    .bind(write.day)
    .bind(write.week)
    .bind(write.period.as_str())
    .bind(write.shard)
    .bind(fence.map(|f| f.caller.as_str()))
    .bind(fence.map(|f| f.key.as_str()))
    .bind(fence.map(|f| f.token.as_str()))
    .bind(answer.map(|a| i64::from(a.status)))
    .bind(answer.and_then(|a| a.content_type.as_deref()))
    .bind(answer.map(|a| a.body.as_slice()))
    .fetch_one(&store.pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => match db.constraint() {
            Some("conversations_external") => StoreError::Conflict(Conflict::ConversationStarted),
            Some(c) if c.starts_with("messages_") => {
                StoreError::Conflict(Conflict::DuplicateMessage)
            }
            _ => map_err(e),
        },
        _ => map_err(e),
    })?;
    let (outcome, person, kinds) = row;
    match outcome.as_str() {
        "stored" => {}
        "channel_changed" => return Err(StoreError::Conflict(Conflict::ChannelChanged)),
        "paused" => return Err(StoreError::Conflict(Conflict::ChatbotPaused)),
        "not_found" => return Err(StoreError::NotFound),
        "claim_lost" => return Err(claim_lost()),
        other => {
            return Err(StoreError::Internal(format!(
                "add_message answered {other}"
            )));
        }
    }
    // Announced once committed, as every transaction's notices are.
    let stored = live_message(write.org, conversation, new.id);
    let mut notices: Vec<(&'static str, String)> = crate::live::payloads(&stored)
        .into_iter()
        .map(|payload| (crate::live::CHANNEL, payload))
        .collect();
    notices.extend(
        kinds
            .unwrap_or_default()
            .into_iter()
            .map(|kind| (crate::queue::CHANNEL, kind)),
    );
    store.notifier.send(notices);
    Ok(person.map(PersonId::from_uuid))
}
