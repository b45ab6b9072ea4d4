//! Messages stored together. The `add_messages` function (migrations
//! `add_messages`, `add_messages_looked_up`) stores a batch of messages in
//! one transaction, each as the shared statements of `add_message` would:
//! their refusals looked up in one statement and the rest written with one
//! statement per step, and adds to the shared counters once per batch.
//!
//! This process's messages are handed to one task, which sends whatever is
//! waiting as one batch while fewer than [`IN_FLIGHT`] batches are being
//! stored: a message that comes alone goes alone, at once; many at once
//! share a transaction and its commit (ARCHITECTURE.md, *Messages stored
//! together on PostgreSQL*).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use steward_domain::{ChannelId, ChatbotId, ConversationId, JobId, MessageId, OrgId, PersonId};
use steward_store::sql::{MessageWrite, live_message};
use steward_store::{Conflict, ConversationChoice, StoreError, StoreResult, claim_lost};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Semaphore, oneshot};

use crate::task_queue::TaskQueue;
use crate::{PostgresStore, map_err};

/// Most messages in one batch: batches of 32 were slower than batches of 16
/// (docs/PERFORMANCE.md, *Webhooks: concurrent messages stored together*).
const MOST_IN_A_BATCH: usize = 16;

/// Most batches being stored at once by one process: more were no faster.
const IN_FLIGHT: usize = 2;

pub(crate) async fn add_message(
    store: &PostgresStore,
    write: &MessageWrite<'_>,
) -> StoreResult<Option<PersonId>> {
    let together = store.batches.store(message_write(write), write.shard).await;
    let outcome = match together.as_ref().and_then(Stored::outcome) {
        Some(outcome) => outcome,
        // Its batch failed, or it failed in its batch for a reason only its
        // own error says (a deadlock with another batch, say): stored alone,
        // the error is the caller's.
        None => {
            if let Some(failed) = &together {
                tracing::debug!(state = ?failed.failed_state, "a message failed in its batch; storing it alone");
            }
            store_alone(&store.pool, message_write(write), write.shard)
                .await?
                .outcome()
                .unwrap_or_else(|| Err(StoreError::Internal("add_messages failed alone".into())))
        }
    };
    let (person, kinds) = outcome?;
    // Announced once committed, as every transaction's notices are.
    let new = write.new;
    let conversation = match new.conversation {
        ConversationChoice::Existing(id) | ConversationChoice::Start(id) => id,
    };
    let stored = live_message(write.org, conversation, new.id);
    let mut notices: Vec<(&'static str, String)> = crate::live::payloads(&stored)
        .into_iter()
        .map(|payload| (crate::live::CHANNEL, payload))
        .collect();
    notices.extend(kinds.into_iter().map(|kind| (crate::queue::CHANNEL, kind)));
    store.notifier.send(notices);
    Ok(person)
}

/// One message as `add_messages` reads it (the type `message_write`), as
/// JSON text. Written straight from the message, without building a
/// `serde_json::Value` first: that tree of maps and strings cost more than
/// anything else the server does for a webhook (docs/PERFORMANCE.md,
/// *Webhooks: a message written as JSON once*).
fn message_write(write: &MessageWrite<'_>) -> String {
    let new = write.new;
    let (conversation, start) = match new.conversation {
        ConversationChoice::Existing(id) => (id, false),
        ConversationChoice::Start(id) => (id, true),
    };
    let sender = new.sender.as_ref().map(|s| &s.identity);
    let fence = write.fence.as_ref();
    let answer = fence.and_then(|f| f.answer.as_ref());
    let message = MessageJson {
        org: write.org,
        chatbot: new.chatbot_id,
        conversation,
        start,
        conversation_key: new.conversation_key.as_deref(),
        id: new.id,
        role: new.role.as_str(),
        text: new.text.as_str(),
        channel: &new.channel,
        external_id: new.external_id.as_deref(),
        answers: new.answers,
        channel_id: new.channel_id,
        secrets: new.channel_secrets.as_deref().map(bytea),
        meta: new.meta.as_ref(),
        forwarded: new.forwarded,
        tokens: new.tokens,
        at: write.at,
        sender_kind: sender.map(|i| i.kind.as_str()),
        sender_handle: sender.map(|i| i.handle.as_str()),
        sender_name: write.sender_name,
        new_person: write.new_person,
        jobs: new
            .then
            .iter()
            .map(|job| JobJson {
                id: JobId::new(),
                org_id: job.org_id,
                kind: job.kind.as_str(),
                payload: &job.payload,
                priority: job.priority,
                run_at: job.run_at,
                max_attempts: job.max_attempts,
                ordering_key: job.ordering_key.as_deref(),
                dedupe_key: job.dedupe_key.as_deref(),
            })
            .collect(),
        day: write.day,
        week: write.week,
        period: &write.period,
        fence_caller: fence.map(|f| f.caller.as_str()),
        fence_key: fence.map(|f| f.key.as_str()),
        fence_token: fence.map(|f| f.token.as_str()),
        answer_status: answer.map(|a| a.status),
        answer_content_type: answer.and_then(|a| a.content_type.as_deref()),
        answer_body: answer.map(|a| bytea(&a.body)),
    };
    serde_json::to_string(&message).expect("a message serializes")
}

/// The fields of the type `message_write`, by name.
#[derive(Serialize)]
struct MessageJson<'a> {
    org: OrgId,
    chatbot: ChatbotId,
    conversation: ConversationId,
    start: bool,
    conversation_key: Option<&'a str>,
    id: MessageId,
    role: &'a str,
    text: &'a str,
    channel: &'a str,
    external_id: Option<&'a str>,
    answers: Option<MessageId>,
    channel_id: Option<ChannelId>,
    secrets: Option<String>,
    meta: Option<&'a Value>,
    forwarded: bool,
    tokens: i64,
    at: DateTime<Utc>,
    sender_kind: Option<&'a str>,
    sender_handle: Option<&'a str>,
    sender_name: Option<&'a str>,
    new_person: PersonId,
    jobs: Vec<JobJson<'a>>,
    day: i64,
    week: i64,
    period: &'a str,
    fence_caller: Option<&'a str>,
    fence_key: Option<&'a str>,
    fence_token: Option<&'a str>,
    answer_status: Option<u16>,
    answer_content_type: Option<&'a str>,
    answer_body: Option<String>,
}

/// A job of the message, as `add_messages` reads it from `jobs`.
#[derive(Serialize)]
struct JobJson<'a> {
    id: JobId,
    org_id: Option<OrgId>,
    kind: &'a str,
    payload: &'a Value,
    priority: i32,
    run_at: Option<DateTime<Utc>>,
    max_attempts: i32,
    ordering_key: Option<&'a str>,
    dedupe_key: Option<&'a str>,
}

/// Bytes in PostgreSQL's hex form, as a JSON string becomes a `bytea`.
fn bytea(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 + bytes.len() * 2);
    hex.push_str("\\x");
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// What `add_messages` answered for one message.
#[derive(sqlx::FromRow)]
struct Stored {
    place: i64,
    outcome: String,
    person: Option<uuid::Uuid>,
    job_kinds: Option<Vec<String>>,
    failed_state: Option<String>,
    failed_constraint: Option<String>,
}

type Outcome = StoreResult<(Option<PersonId>, Vec<String>)>;

impl Stored {
    /// The message's author and its jobs' kinds, or why nothing was stored;
    /// None for a failure only the message's own error explains.
    fn outcome(&self) -> Option<Outcome> {
        let refused = |e| Some(Err(e));
        match self.outcome.as_str() {
            "stored" => Some(Ok((
                self.person.map(PersonId::from_uuid),
                self.job_kinds.clone().unwrap_or_default(),
            ))),
            "channel_changed" => refused(StoreError::Conflict(Conflict::ChannelChanged)),
            "paused" => refused(StoreError::Conflict(Conflict::ChatbotPaused)),
            "not_found" => refused(StoreError::NotFound),
            "claim_lost" => refused(claim_lost()),
            "repeat" => refused(StoreError::Conflict(Conflict::DuplicateMessage)),
            "failed" if self.failed_state.as_deref() == Some(UNIQUE_VIOLATION) => {
                conflict_on(self.failed_constraint.as_deref()?).map(Err)
            }
            "failed" => None,
            other => refused(StoreError::Internal(format!(
                "add_messages answered {other}"
            ))),
        }
    }
}

const UNIQUE_VIOLATION: &str = "23505";

/// The conflict a unique violation of `constraint` means for a message.
fn conflict_on(constraint: &str) -> Option<StoreError> {
    match constraint {
        "conversations_external" => Some(StoreError::Conflict(Conflict::ConversationStarted)),
        c if c.starts_with("messages_") => Some(StoreError::Conflict(Conflict::DuplicateMessage)),
        _ => None,
    }
}

/// Stores `batch` in one call. With `alone`, a message's error fails the
/// call instead of answering 'failed'.
async fn add_messages(
    pool: &PgPool,
    batch: &[String],
    shard: i64,
    alone: bool,
) -> Result<Vec<Stored>, sqlx::Error> {
    let mut array = String::with_capacity(2 + batch.iter().map(|m| m.len() + 1).sum::<usize>());
    array.push('[');
    for (place, message) in batch.iter().enumerate() {
        if place > 0 {
            array.push(',');
        }
        array.push_str(message);
    }
    array.push(']');
    sqlx::query_as(
        "SELECT place, outcome, person, job_kinds, failed_state, failed_constraint
         FROM add_messages($1::jsonb, $2::smallint, $3)",
    )
    .bind(array)
    .bind(shard)
    .bind(alone)
    .fetch_all(pool)
    .await
}

/// Calls a message alone makes before its error is the caller's: a message
/// starting a conversation takes the conversation's key before its
/// author's row, so one alone can deadlock with a batch holding that author
/// and starting the same conversation later (one sender starting two
/// threads at once, one of them sent twice). PostgreSQL then rolls one of
/// them back whole, and that one is tried again.
const TRIES_ALONE: usize = 3;

/// A deadlock's victim, or a serialization failure: nothing was written.
fn worth_another_try(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// Stores one message in a call of its own, its error the caller's.
async fn store_alone(pool: &PgPool, message: String, shard: i64) -> StoreResult<Stored> {
    let mut tries = 1;
    let answered = loop {
        match add_messages(pool, std::slice::from_ref(&message), shard, true).await {
            Err(e) if tries < TRIES_ALONE && worth_another_try(&e) => {
                tracing::debug!(error = %e, "a message stored alone was rolled back; trying again");
                tries += 1;
            }
            answered => break answered,
        }
    }
    .map_err(|e| {
        let conflict = match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                db.constraint().and_then(conflict_on)
            }
            _ => None,
        };
        conflict.unwrap_or_else(|| map_err(e))
    })?;
    answered
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Internal("add_messages answered nothing".into()))
}

/// Messages waiting for the storing task.
pub(crate) struct MessageBatches {
    pool: PgPool,
    queue: TaskQueue<Waiting>,
}

struct Waiting {
    message: String,
    shard: i64,
    answer: oneshot::Sender<Stored>,
}

impl MessageBatches {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queue: TaskQueue::new(),
        }
    }

    /// What storing `message` in a batch did; None if its batch failed.
    async fn store(&self, message: String, shard: i64) -> Option<Stored> {
        let (answer, answered) = oneshot::channel();
        let waiting = Waiting {
            message,
            shard,
            answer,
        };
        let pool = self.pool.clone();
        self.queue
            .send(waiting, |queued| store_waiting(pool, queued));
        answered.await.ok()
    }
}

/// Takes what is waiting, up to [`MOST_IN_A_BATCH`], as one batch whenever
/// fewer than [`IN_FLIGHT`] are being stored.
async fn store_waiting(pool: PgPool, mut queued: UnboundedReceiver<Waiting>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = queued.recv().await {
        let Ok(turn) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MOST_IN_A_BATCH
            && let Ok(more) = queued.try_recv()
        {
            batch.push(more);
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            store_batch(&pool, batch).await;
            drop(turn);
        });
    }
}

/// Stores `batch` and answers each message. The batch's counters go to its
/// first message's shard. If the call fails, its transaction was rolled
/// back (or, the connection lost after its commit, a message it stored is
/// refused as a repeat when sent again): each message's answer is dropped,
/// and its caller stores it alone.
async fn store_batch(pool: &PgPool, batch: Vec<Waiting>) {
    let shard = batch[0].shard;
    let (messages, answers): (Vec<String>, Vec<oneshot::Sender<Stored>>) = batch
        .into_iter()
        .map(|waiting| (waiting.message, waiting.answer))
        .unzip();
    let mut answers: Vec<Option<_>> = answers.into_iter().map(Some).collect();
    match add_messages(pool, &messages, shard, false).await {
        Ok(stored) => {
            for stored in stored {
                let answer = usize::try_from(stored.place - 1)
                    .ok()
                    .and_then(|place| answers.get_mut(place)?.take());
                if let Some(answer) = answer {
                    let _ = answer.send(stored);
                }
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, messages = answers.len(), "a batch of messages failed; each is stored alone");
        }
    }
}

#[cfg(test)]
mod tests {
    use steward_domain::jobs::RespondArgs;
    use steward_domain::{MessageRole, MessageText};
    use steward_store::{NewJob, NewMessage};

    use super::*;

    /// The names of a composite type or column list in `sql`: the first
    /// word of each comma-separated field after `opening`, comments left out.
    fn fields(sql: &str, opening: &str) -> Vec<String> {
        let start = sql.find(opening).expect("the definition") + opening.len();
        let list = &sql[start..start + sql[start..].find(')').expect("its end")];
        list.lines()
            .map(|line| line.split("--").next().unwrap_or_default())
            .collect::<String>()
            .split(',')
            .map(|field| field.split_whitespace().next().expect("a name").to_owned())
            .collect()
    }

    fn keys(json: &Value) -> Vec<String> {
        let mut keys: Vec<String> = json
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// `add_messages` reads each message with `jsonb_populate_record`, which
    /// takes a misspelt or missing field for NULL without a word: the JSON
    /// written must name exactly the type's fields, and each job exactly the
    /// columns the function reads.
    #[test]
    fn a_message_is_written_with_exactly_the_fields_add_messages_reads() {
        let conversation = ConversationId::new();
        let new = NewMessage {
            id: MessageId::new(),
            chatbot_id: ChatbotId::new(),
            conversation: ConversationChoice::Start(conversation),
            role: MessageRole::User,
            text: MessageText::parse("text", "Is the shop open on Sunday? \"Yes\" \\ no").unwrap(),
            channel: "whatsapp".into(),
            external_id: Some("wamid.1".into()),
            answers: None,
            channel_id: Some(ChannelId::new()),
            channel_secrets: Some(vec![0x00, 0x7f, 0xab, 0xff]),
            meta: Some(serde_json::json!({ "to": "16505551234" })),
            tokens: 0,
            then: vec![NewJob::of(
                &RespondArgs {
                    chatbot_id: ChatbotId::new(),
                    conversation_id: conversation,
                },
                5,
            )],
            sender: None,
            forwarded: false,
            conversation_key: Some("16505551234".into()),
        };
        let write = MessageWrite {
            org: OrgId::new(),
            at: Utc::now(),
            new: &new,
            sender_name: Some("Ana"),
            new_person: PersonId::new(),
            day: 20_794,
            week: 2_971,
            period: "2026-12".into(),
            shard: 3,
            fence: None,
        };
        let json: Value = serde_json::from_str(&message_write(&write)).expect("JSON");

        let migration = include_str!("../migrations/0032_add_messages.sql");
        let mut expected = fields(migration, "CREATE TYPE message_write AS (");
        expected.sort();
        assert_eq!(keys(&json), expected);
        let function = include_str!("../migrations/0038_jobs_dedupe_partial.sql");
        let mut expected = fields(function, "jsonb_to_recordset(m.jobs) AS j(");
        expected.sort();
        assert_eq!(keys(&json["jobs"][0]), expected);

        assert_eq!(json["text"], "Is the shop open on Sunday? \"Yes\" \\ no");
        assert_eq!(json["secrets"], "\\x007fabff");
        assert_eq!(json["start"], true);
        assert_eq!(json["conversation"], conversation.to_string());
        assert_eq!(json["jobs"][0]["kind"], "respond");
    }
}
