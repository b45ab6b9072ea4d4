//! One SQL body for both backends. A statement is written once, with the
//! `$1`-style placeholders that PostgreSQL and SQLite (through sqlx) both
//! read, and bound with [`Value`]s of our own; rows are read back the same
//! way. Each backend says how its dialect stores an id, a time or JSON (a
//! [`Db`] and a [`Row`] of its own) and how a write transaction begins and
//! commits ([`SqlBackend`]). Every area written here is implemented once for
//! every backend; what differs for real (the claim, full-text and vector
//! search, leadership, LISTEN/NOTIFY, catalogue queries) stays in each
//! backend's crate.
//!
//! Why not sqlx generic over its `Database`: its bounds for every bound type
//! and executor spread into every signature; and not `sqlx::Any`: it knows
//! no ids, times or JSON. Binding through one small enum costs a vector per
//! statement, nothing next to the round trip.

use std::borrow::Cow;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use steward_domain::*;
use uuid::Uuid;

use crate::idempotency::{Fence, keyed_request_fence};
use crate::{StoreError, StoreResult, TenantScope, claim_lost, now};

/// `SELECT` of the columns [`rows::message`] reads, to `concat!` with the
/// rest of a statement: never `*`, which on PostgreSQL also reads each
/// message's stored words.
macro_rules! select_message {
    () => {
        "SELECT id, org_id, chatbot_id, conversation_id, role, text, channel, external_id,
                answers, channel_id, meta, forwarded, person_id, created_at"
    };
}

pub(crate) mod accounts;
mod channels;
mod chatbots;
mod erasure;
mod export;
pub(crate) mod feedback;
mod idempotency;
mod knowledge;
mod memory;
pub(crate) mod messages;
mod ops;
pub(crate) mod patterns;
mod people;
mod queue;
pub mod rows;
pub(crate) mod skills;
mod sso;
mod tools;

pub use messages::{MessageWrite, SCAN_WINDOW, WORD_INDEX_READ_LIMIT, live_message};
pub use queue::insert_job;

/// A value bound to a statement or read from a row; `None` is NULL of that type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Uuid(Option<Uuid>),
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
    Float(Option<f64>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Json(Option<Cow<'a, Json>>),
    Bytes(Option<Cow<'a, [u8]>>),
}

/// The type a column is read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    Text,
    Int,
    Float,
    Bool,
    Time,
    Json,
    Bytes,
}

/// A statement and the values of its placeholders, in order.
#[derive(Clone, Debug)]
pub struct Statement<'a> {
    pub sql: Cow<'static, str>,
    pub values: Vec<Value<'a>>,
}

/// A statement to bind values to.
pub fn sql<'a>(text: impl Into<Cow<'static, str>>) -> Statement<'a> {
    Statement {
        sql: text.into(),
        values: Vec::new(),
    }
}

impl<'a> Statement<'a> {
    /// Binds the next placeholder.
    pub fn bind(mut self, value: impl Into<Value<'a>>) -> Self {
        self.values.push(value.into());
        self
    }
}

/// A row, read column by column as the dialect stores it.
pub trait Row: Send + Sync {
    fn read(&self, column: &str, kind: Kind) -> StoreResult<Value<'static>>;

    /// A column as `T` (an `Option` for a column that may be NULL).
    fn get<T: FromValue>(&self, column: &str) -> StoreResult<T>
    where
        Self: Sized,
    {
        T::from_value(self.read(column, T::KIND)?)
            .map_err(|why| StoreError::Internal(format!("column {column}: {why}")))
    }
}

/// A connection or transaction that runs statements.
pub trait Db: Send {
    type Row: Row;

    /// Runs a statement; how many rows it changed.
    fn execute(
        &mut self,
        statement: Statement<'_>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    fn fetch_all(
        &mut self,
        statement: Statement<'_>,
    ) -> impl Future<Output = StoreResult<Vec<Self::Row>>> + Send;

    /// The row a statement finds, if any (statements that may find several
    /// are read with [`Db::fetch_all`]).
    fn fetch_optional(
        &mut self,
        statement: Statement<'_>,
    ) -> impl Future<Output = StoreResult<Option<Self::Row>>> + Send {
        async move { Ok(self.fetch_all(statement).await?.into_iter().next()) }
    }

    /// The one row, or `NotFound`.
    fn fetch_one(
        &mut self,
        statement: Statement<'_>,
    ) -> impl Future<Output = StoreResult<Self::Row>> + Send {
        async move {
            self.fetch_optional(statement)
                .await?
                .ok_or(StoreError::NotFound)
        }
    }
}

/// Statements on the word index of messages' text, read when few messages
/// match (see `list_conversations`). In each, `$1` is the organization and
/// the query is made by [`SqlBackend::words_query`].
pub struct WordIndex {
    /// `n`: how many of the organization's messages hold the words (query
    /// `$2`), counting no further than `$3`.
    pub count: &'static str,
    /// True when conversation `c` holds one of the organization's messages
    /// that hold the words (query `$7`), read from the index.
    pub indexed: &'static str,
}

/// What each backend supplies to run the shared statements.
pub trait SqlBackend: Send + Sync + 'static {
    /// Appended to a SELECT to lock its rows until the transaction ends
    /// (PostgreSQL's ` FOR UPDATE`); empty where a write transaction holds
    /// the whole database (SQLite).
    const FOR_UPDATE: &'static str;

    /// Appended to a SELECT to keep its rows from changing until the
    /// transaction ends, while letting others read and share-lock them
    /// (PostgreSQL's ` FOR SHARE`); empty on SQLite.
    const FOR_SHARE: &'static str;

    /// How many rows each counter that many writers add to (an
    /// organization's month of usage, a chatbot's day) is split into. A
    /// PostgreSQL row updated by a transaction stays locked until it commits,
    /// so one row would make an organization's messages commit one at a
    /// time; SQLite has one writer anyway (1).
    const COUNTER_SHARDS: u64;

    /// The word index of messages' text, which the conversation list's text
    /// filter reads.
    const WORDS: WordIndex;

    /// The index's query for `words` (lowercase, letters and digits only,
    /// at least one): the words in that order, the last one a beginning
    /// when `prefix` (else the whole word).
    fn words_query(words: &[String], prefix: bool) -> String;

    /// A write transaction.
    type Tx: Db;
    /// A connection for one write statement, committed on its own.
    type Write: Db;
    /// A connection for reads.
    type Read: Db;

    /// Begins a write transaction (SQLite takes the write lock at once).
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;

    /// A connection for writes that are one statement each. They pass no
    /// idempotency fence: they record what happened to the platform (a
    /// channel's health, a delivery), never a request's effect.
    fn write(&self) -> impl Future<Output = StoreResult<Self::Write>> + Send;

    /// A connection for reads (SQLite's readers never wait for the writer).
    fn read(&self) -> impl Future<Output = StoreResult<Self::Read>> + Send;

    /// Rewrites the word index without the words of deleted messages, where
    /// deleting a row leaves them in it (SQLite's FTS5 marks a deleted
    /// message's entries deleted, and they stay in its pages until merged),
    /// a short transaction at a time. After an erasure or a retention run,
    /// so that what they deleted leaves no word behind.
    fn purge_deleted_words(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Commits, nothing more: write transactions end with [`commit`].
    fn commit_only(tx: Self::Tx) -> impl Future<Output = StoreResult<()>> + Send;

    /// Completes `done` and hands runnable jobs to `worker` (see
    /// [`crate::JobQueue::complete_and_claim`]): each dialect claims its own way.
    fn claim_jobs(
        &self,
        worker: &str,
        done: &[JobId],
        kinds: &[JobKind],
        limit: u32,
        lease: chrono::Duration,
        except: &[OrgId],
    ) -> impl Future<Output = StoreResult<crate::Claimed>> + Send;

    /// Stores a document's passages, in the transaction that replaces them;
    /// true when their vectors wait for [`crate::SearchStore::index_vectors`].
    fn insert_chunks(
        tx: &mut Self::Tx,
        org: OrgId,
        chatbot: Option<ChatbotId>,
        document: DocumentId,
        chunks: &[crate::NewChunk],
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Stores a message with everything its transaction writes in one call,
    /// where the backend has one (PostgreSQL's `add_messages` function: one
    /// round trip instead of eleven, shared with the messages that come at
    /// the same time), answering its author's person; None
    /// where the shared statements of [`crate::MessageStore::add_message`]
    /// do it (SQLite, in process, where a statement costs no round trip).
    /// Announcing the message to other processes is the backend's part.
    fn add_message_in_one_call(
        &self,
        write: &messages::MessageWrite<'_>,
    ) -> impl Future<Output = Option<StoreResult<Option<PersonId>>>> + Send {
        let _ = write;
        async { None }
    }

    /// Called once passages were replaced or deleted (SQLite drops the
    /// vector codes it keeps in memory).
    fn chunks_changed(&self) {}

    /// Announces a stored message to other processes once `tx` commits
    /// (PostgreSQL's NOTIFY); nothing where every subscriber is in this
    /// process.
    fn announce_live(tx: &mut Self::Tx, event: &crate::LiveEvent) {
        let _ = (tx, event);
    }

    /// Called once a stored message's transaction committed (SQLite
    /// announces it to the subscribers of this process here).
    fn live_committed(&self, event: crate::LiveEvent) {
        let _ = event;
    }

    /// Tells workers in other processes of a job enqueued in `tx` once it
    /// commits (PostgreSQL's NOTIFY); nothing where there are none.
    fn announce_enqueued(tx: &mut Self::Tx, kind: JobKind) {
        let _ = (tx, kind);
    }
}

/// Every write transaction ends here, so that a keyed request's writes are
/// fenced by its claim (see [`crate::KeyedRequest`]).
/// Runs `statement`, which deletes at most `batch` rows, a transaction at a
/// time until it deletes fewer: no deletion holds its locks for long. How
/// many rows it deleted in all.
pub(crate) async fn delete_in_batches<B: SqlBackend>(
    store: &B,
    batch: u64,
    statement: impl Fn() -> Statement<'static>,
) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let mut tx = store.begin().await?;
        let deleted = tx.execute(statement()).await?;
        commit::<B>(tx).await?;
        total += deleted;
        if deleted < batch {
            return Ok(total);
        }
    }
}

/// The write of a master-key rotation: stores `sealed` in `table.column` of
/// row `id` only if it still holds `expected` (one changed meanwhile is
/// left as it is); whether it did.
pub(crate) async fn replace_sealed<B: SqlBackend>(
    store: &B,
    (table, key, column): (&str, &str, &str),
    id: Value<'static>,
    expected: &[u8],
    sealed: &[u8],
) -> StoreResult<bool> {
    let statement = format!("UPDATE {table} SET {column} = $1 WHERE {key} = $2 AND {column} = $3");
    let updated = store
        .write()
        .await?
        .execute(sql(statement).bind(sealed).bind(id).bind(expected))
        .await?;
    Ok(updated == 1)
}

pub async fn commit<B: SqlBackend>(tx: B::Tx) -> StoreResult<()> {
    commit_with::<B>(tx, &()).await
}

/// [`commit`] for a write that creates or changes `record`, from which a
/// keyed request may build its response, so that it commits with the write.
pub async fn commit_with<B: SqlBackend>(
    mut tx: B::Tx,
    record: &(dyn std::any::Any + Sync),
) -> StoreResult<()> {
    if let Some(fence) = keyed_request_fence(record) {
        pass_fence(&mut tx, &fence).await?;
    }
    B::commit_only(tx).await
}

/// Marks the claim as having taken effect (with its response, when set), if
/// the claim still holds this request's token; otherwise the write is refused.
async fn pass_fence(tx: &mut impl Db, fence: &Fence) -> StoreResult<()> {
    let statement = match &fence.answer {
        Some(answer) => sql(
            "UPDATE idempotency_keys SET took_effect = $1, status = $2, content_type = $3, body = $4
             WHERE caller = $5 AND key = $6 AND token = $7",
        )
        .bind(true)
        .bind(i64::from(answer.status))
        .bind(answer.content_type.as_deref())
        .bind(answer.body.as_slice()),
        None => sql(
            "UPDATE idempotency_keys SET took_effect = $1 WHERE caller = $2 AND key = $3 AND token = $4",
        )
        .bind(true),
    };
    let held = tx
        .execute(
            statement
                .bind(fence.caller.as_str())
                .bind(fence.key.as_str())
                .bind(fence.token.as_str()),
        )
        .await?;
    if held == 0 {
        return Err(claim_lost());
    }
    Ok(())
}

/// Writes an audit entry in the transaction of the change it records.
pub async fn audit(
    tx: &mut impl Db,
    scope: &TenantScope,
    action: &str,
    target: &str,
    details: Json,
) -> StoreResult<()> {
    tx.execute(
        sql(
            "INSERT INTO audit_log (id, org_id, actor, action, target, details, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(AuditId::new())
        .bind(scope.org_id())
        .bind(scope.actor().to_string())
        .bind(action)
        .bind(target)
        .bind(details)
        .bind(now()),
    )
    .await?;
    Ok(())
}

/// A value read back as a Rust type.
pub trait FromValue: Sized {
    const KIND: Kind;
    fn from_value(value: Value<'static>) -> Result<Self, String>;
}

impl<T: FromValue> FromValue for Option<T> {
    const KIND: Kind = T::KIND;
    fn from_value(value: Value<'static>) -> Result<Self, String> {
        let null = matches!(
            value,
            Value::Uuid(None)
                | Value::Text(None)
                | Value::Int(None)
                | Value::Float(None)
                | Value::Bool(None)
                | Value::Time(None)
                | Value::Json(None)
                | Value::Bytes(None)
        );
        if null {
            Ok(None)
        } else {
            T::from_value(value).map(Some)
        }
    }
}

macro_rules! primitive {
    ($type:ty, $kind:ident, $value:pat => $out:expr, $from:ident => $into:expr) => {
        impl FromValue for $type {
            const KIND: Kind = Kind::$kind;
            fn from_value(value: Value<'static>) -> Result<Self, String> {
                match value {
                    Value::$kind(Some($value)) => Ok($out),
                    Value::$kind(None) => Err("is NULL".into()),
                    other => Err(format!("is not {:?}: {other:?}", Kind::$kind)),
                }
            }
        }
        impl<'a> From<$type> for Value<'a> {
            fn from($from: $type) -> Self {
                Value::$kind(Some($into))
            }
        }
        impl<'a> From<Option<$type>> for Value<'a> {
            fn from(value: Option<$type>) -> Self {
                Value::$kind(value.map(|$from| $into))
            }
        }
    };
}

primitive!(Uuid, Uuid, v => v, v => v);
primitive!(String, Text, v => v.into_owned(), v => Cow::Owned(v));
primitive!(i64, Int, v => v, v => v);
primitive!(f64, Float, v => v, v => v);
primitive!(bool, Bool, v => v, v => v);
primitive!(DateTime<Utc>, Time, v => v, v => v);
primitive!(Json, Json, v => v.into_owned(), v => Cow::Owned(v));
primitive!(Vec<u8>, Bytes, v => v.into_owned(), v => Cow::Owned(v));

impl FromValue for i32 {
    const KIND: Kind = Kind::Int;
    fn from_value(value: Value<'static>) -> Result<Self, String> {
        i64::from_value(value)?
            .try_into()
            .map_err(|_| "is out of range for i32".to_owned())
    }
}

impl<'a> From<i32> for Value<'a> {
    fn from(value: i32) -> Self {
        Value::Int(Some(value.into()))
    }
}

impl<'a> From<Option<i32>> for Value<'a> {
    fn from(value: Option<i32>) -> Self {
        Value::Int(value.map(Into::into))
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Value::Text(Some(Cow::Borrowed(value)))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(value: Option<&'a str>) -> Self {
        Value::Text(value.map(Cow::Borrowed))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(value: &'a String) -> Self {
        Value::Text(Some(Cow::Borrowed(value)))
    }
}

impl<'a> From<&'a Json> for Value<'a> {
    fn from(value: &'a Json) -> Self {
        Value::Json(Some(Cow::Borrowed(value)))
    }
}

impl<'a> From<Option<&'a Json>> for Value<'a> {
    fn from(value: Option<&'a Json>) -> Self {
        Value::Json(value.map(Cow::Borrowed))
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(value: &'a [u8]) -> Self {
        Value::Bytes(Some(Cow::Borrowed(value)))
    }
}

impl<'a> From<Option<&'a [u8]>> for Value<'a> {
    fn from(value: Option<&'a [u8]>) -> Self {
        Value::Bytes(value.map(Cow::Borrowed))
    }
}

/// Ids are stored as UUIDs.
macro_rules! ids {
    ($($id:ty),*) => {$(
        impl FromValue for $id {
            const KIND: Kind = Kind::Uuid;
            fn from_value(value: Value<'static>) -> Result<Self, String> {
                Uuid::from_value(value).map(Into::into)
            }
        }
        impl<'a> From<$id> for Value<'a> {
            fn from(id: $id) -> Self {
                Value::Uuid(Some(id.as_uuid()))
            }
        }
        impl<'a> From<Option<$id>> for Value<'a> {
            fn from(id: Option<$id>) -> Self {
                Value::Uuid(id.map(|id| id.as_uuid()))
            }
        }
    )*};
}

ids!(
    ApiKeyId,
    AuditId,
    ChannelId,
    ChatbotId,
    ConversationId,
    CrawlId,
    DocumentId,
    ExportId,
    FactId,
    JobId,
    LeadId,
    MessageId,
    OrgId,
    PersonId,
    PersonKeyId,
    SkillId,
    ToolCallId,
    ToolServerId,
    UserId
);

/// The small enums are stored by name.
macro_rules! names {
    ($($name:ty),*) => {$(
        impl FromValue for $name {
            const KIND: Kind = Kind::Text;
            fn from_value(value: Value<'static>) -> Result<Self, String> {
                String::from_value(value)?.parse()
            }
        }
        impl<'a> From<$name> for Value<'a> {
            fn from(name: $name) -> Self {
                Value::Text(Some(Cow::Borrowed(name.as_str())))
            }
        }
    )*};
}

names!(
    ChannelKind,
    ChannelStatus,
    ChatbotStatus,
    CrawlStatus,
    DocumentSource,
    DocumentStatus,
    ExportState,
    IdentityKind,
    JobKind,
    JobState,
    MessageRole,
    Rating,
    Role,
    Tier,
    ToolCallStatus
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_their_types_and_nulls_as_none() {
        let id = ChatbotId::new();
        assert_eq!(ChatbotId::from_value(Value::from(id)).unwrap(), id);
        assert_eq!(
            Option::<ChatbotId>::from_value(Value::from(None::<ChatbotId>)).unwrap(),
            None
        );
        assert!(ChatbotId::from_value(Value::Uuid(None)).is_err());
        assert_eq!(
            ChannelKind::from_value(Value::from(ChannelKind::Slack)).unwrap(),
            ChannelKind::Slack
        );
        assert!(ChannelKind::from_value(Value::from("carrier pigeon")).is_err());
        assert_eq!(i32::from_value(Value::Int(Some(7))).unwrap(), 7);
        assert!(i32::from_value(Value::Int(Some(i64::MAX))).is_err());
        assert!(String::from_value(Value::Int(Some(1))).is_err());
    }
}
