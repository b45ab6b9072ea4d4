//! The shared statements on SQLite: ids as 16-byte blobs, times as
//! microseconds since the epoch, JSON as text.

use std::borrow::Cow;
use std::ops::DerefMut;

use sqlx::AssertSqlSafe;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row as _, Sqlite, SqliteConnection, Transaction};
use steward_domain::{ChatbotId, DocumentId, JobId, JobKind, OrgId};
use steward_store::sql::{Db, Kind, Row, SqlBackend, Statement, Value, WordIndex};
use steward_store::{Claimed, LiveEvent, NewChunk, StoreError, StoreResult};

use crate::{SqliteStore, from_micros, map_err, to_micros};

/// A row of SQLite's (owned, or borrowed by code not yet on the shared statements).
pub struct Record<R>(pub R);

impl<R: std::borrow::Borrow<SqliteRow> + Send + Sync> Row for Record<R> {
    fn read(&self, column: &str, kind: Kind) -> StoreResult<Value<'static>> {
        let row: &SqliteRow = self.0.borrow();
        let json = |text: Option<String>| {
            text.map(|t| serde_json::from_str(&t).map(Cow::Owned))
                .transpose()
                .map_err(|e| StoreError::Internal(format!("column {column}: {e}")))
        };
        Ok(match kind {
            Kind::Uuid => Value::Uuid(row.try_get(column).map_err(map_err)?),
            Kind::Text => Value::Text(
                row.try_get::<Option<String>, _>(column)
                    .map_err(map_err)?
                    .map(Cow::Owned),
            ),
            Kind::Int => Value::Int(row.try_get(column).map_err(map_err)?),
            Kind::Float => Value::Float(row.try_get(column).map_err(map_err)?),
            Kind::Bool => Value::Bool(row.try_get(column).map_err(map_err)?),
            Kind::Time => Value::Time(
                row.try_get::<Option<i64>, _>(column)
                    .map_err(map_err)?
                    .map(from_micros)
                    .transpose()?,
            ),
            Kind::Json => Value::Json(json(row.try_get(column).map_err(map_err)?)?),
            Kind::Bytes => Value::Bytes(
                row.try_get::<Option<Vec<u8>>, _>(column)
                    .map_err(map_err)?
                    .map(Cow::Owned),
            ),
        })
    }
}

/// A connection or transaction of SQLite's.
pub struct Conn<C>(pub C);

fn query<'q>(statement: &'q Statement<'_>) -> sqlx::query::Query<'q, Sqlite, SqliteArguments> {
    // The text is Steward's own (`steward_store::sql`); values are bound.
    let mut query = sqlx::query(AssertSqlSafe(statement.sql.clone()));
    for value in &statement.values {
        query = match value {
            Value::Uuid(v) => query.bind(*v),
            Value::Text(v) => query.bind(v.as_deref()),
            Value::Int(v) => query.bind(*v),
            Value::Float(v) => query.bind(*v),
            Value::Bool(v) => query.bind(*v),
            Value::Time(v) => query.bind(v.map(to_micros)),
            Value::Json(v) => query.bind(v.as_ref().map(|json| json.to_string())),
            Value::Bytes(v) => query.bind(v.as_deref()),
        };
    }
    query
}

impl<C: DerefMut<Target = SqliteConnection> + Send> Db for Conn<C> {
    type Row = Record<SqliteRow>;

    async fn execute(&mut self, statement: Statement<'_>) -> StoreResult<u64> {
        let done = query(&statement)
            .execute(&mut *self.0)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn fetch_all(&mut self, statement: Statement<'_>) -> StoreResult<Vec<Self::Row>> {
        let found = query(&statement)
            .fetch_all(&mut *self.0)
            .await
            .map_err(map_err)?;
        Ok(found.into_iter().map(Record).collect())
    }
}

impl SqlBackend for SqliteStore {
    const FOR_UPDATE: &'static str = "";
    const FOR_SHARE: &'static str = "";
    const COUNTER_SHARDS: u64 = 1;

    // FTS5's `messages_fts` (migration 0014): the organization's and the
    // conversation's own tokens in `scope` keep each search to its tenant.
    const WORDS: WordIndex = WordIndex {
        count:
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM messages_fts
                WHERE messages_fts MATCH ('scope : o' || lower(hex($1)) || ' AND ' || $2) LIMIT $3)",
        indexed: "c.id IN (SELECT conversation_id FROM messages_fts
                  WHERE messages_fts MATCH ('scope : o' || lower(hex($1)) || ' AND ' || $7))",
    };

    fn words_query(words: &[String], prefix: bool) -> String {
        // A phrase in the text column.
        let star = if prefix { " *" } else { "" };
        format!("text : \"{}\"{star}", words.join(" "))
    }

    // Times are integer microseconds since the epoch.
    type Tx = Conn<Transaction<'static, Sqlite>>;
    type Write = Conn<PoolConnection<Sqlite>>;
    type Read = Conn<PoolConnection<Sqlite>>;

    async fn begin(&self) -> StoreResult<Self::Tx> {
        Ok(Conn(self.begin_write().await?))
    }

    async fn write(&self) -> StoreResult<Self::Write> {
        Ok(Conn(self.writer.acquire().await.map_err(map_err)?))
    }

    async fn read(&self) -> StoreResult<Self::Read> {
        Ok(Conn(self.reader.acquire().await.map_err(map_err)?))
    }

    async fn purge_deleted_words(&self) -> StoreResult<()> {
        crate::words::purge_deleted(self).await
    }

    async fn commit_only(tx: Self::Tx) -> StoreResult<()> {
        tx.0.commit().await.map_err(map_err)
    }

    async fn insert_chunks(
        tx: &mut Self::Tx,
        org: OrgId,
        chatbot: Option<ChatbotId>,
        document: DocumentId,
        chunks: &[NewChunk],
    ) -> StoreResult<bool> {
        crate::knowledge::insert_chunks(tx, org, chatbot, document, chunks).await
    }

    fn chunks_changed(&self) {
        self.vectors.changed();
    }

    async fn claim_jobs(
        &self,
        worker: &str,
        done: &[JobId],
        kinds: &[JobKind],
        limit: u32,
        lease: chrono::Duration,
        except: &[OrgId],
    ) -> StoreResult<Claimed> {
        crate::queue::complete_and_claim(self, worker, done, kinds, limit, lease, except).await
    }

    /// Every subscriber of a SQLite store is in this process.
    fn live_committed(&self, event: LiveEvent) {
        let _ = self.live.send(event);
    }
}
