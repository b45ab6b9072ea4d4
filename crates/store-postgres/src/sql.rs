//! The shared statements on PostgreSQL: every type is the database's own
//! (uuid, timestamptz, jsonb, bytea); integers and floats are read whatever
//! their width.

use std::borrow::Cow;
use std::ops::DerefMut;

use sqlx::AssertSqlSafe;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Column as _, PgConnection, Postgres, Row as _, Transaction, TypeInfo as _};
use steward_domain::{ChatbotId, DocumentId, JobId, JobKind, OrgId, PersonId};
use steward_store::sql::{Db, Kind, MessageWrite, Row, SqlBackend, Statement, Value, WordIndex};
use steward_store::{Claimed, LiveEvent, NewChunk, StoreResult};

use crate::notices::{Notices, Notifier};
use crate::{PostgresStore, map_err};

/// A row of PostgreSQL's (owned, or borrowed by code not yet on the shared statements).
pub struct Record<R>(pub R);

impl<R: std::borrow::Borrow<PgRow> + Send + Sync> Row for Record<R> {
    fn read(&self, column: &str, kind: Kind) -> StoreResult<Value<'static>> {
        let row: &PgRow = self.0.borrow();
        let type_name = || {
            row.try_column(column)
                .map(|c| c.type_info().name().to_owned())
                .map_err(map_err)
        };
        Ok(match kind {
            Kind::Uuid => Value::Uuid(row.try_get(column).map_err(map_err)?),
            Kind::Text => Value::Text(
                row.try_get::<Option<String>, _>(column)
                    .map_err(map_err)?
                    .map(Cow::Owned),
            ),
            Kind::Int => Value::Int(match type_name()?.as_str() {
                "INT2" => row
                    .try_get::<Option<i16>, _>(column)
                    .map_err(map_err)?
                    .map(i64::from),
                "INT4" => row
                    .try_get::<Option<i32>, _>(column)
                    .map_err(map_err)?
                    .map(i64::from),
                _ => row.try_get(column).map_err(map_err)?,
            }),
            Kind::Float => Value::Float(match type_name()?.as_str() {
                "FLOAT4" => row
                    .try_get::<Option<f32>, _>(column)
                    .map_err(map_err)?
                    .map(f64::from),
                _ => row.try_get(column).map_err(map_err)?,
            }),
            Kind::Bool => Value::Bool(row.try_get(column).map_err(map_err)?),
            Kind::Time => Value::Time(row.try_get(column).map_err(map_err)?),
            Kind::Json => Value::Json(
                row.try_get::<Option<serde_json::Value>, _>(column)
                    .map_err(map_err)?
                    .map(Cow::Owned),
            ),
            Kind::Bytes => Value::Bytes(
                row.try_get::<Option<Vec<u8>>, _>(column)
                    .map_err(map_err)?
                    .map(Cow::Owned),
            ),
        })
    }
}

/// A connection or transaction of PostgreSQL's.
pub struct Conn<C>(pub C);

fn query<'q>(statement: &'q Statement<'_>) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    // The text is Steward's own (`steward_store::sql`); values are bound.
    let mut query = sqlx::query(AssertSqlSafe(statement.sql.clone()));
    for value in &statement.values {
        query = match value {
            Value::Uuid(v) => query.bind(*v),
            Value::Text(v) => query.bind(v.as_deref()),
            Value::Int(v) => query.bind(*v),
            Value::Float(v) => query.bind(*v),
            Value::Bool(v) => query.bind(*v),
            Value::Time(v) => query.bind(*v),
            Value::Json(v) => query.bind(v.as_deref()),
            Value::Bytes(v) => query.bind(v.as_deref()),
        };
    }
    query
}

impl<C: DerefMut<Target = PgConnection> + Send> Db for Conn<C> {
    type Row = Record<PgRow>;

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

/// A write transaction and what it announces once committed
/// (`notices.rs`).
pub struct PgTx {
    conn: Conn<Transaction<'static, Postgres>>,
    notices: Notices,
    notifier: Notifier,
}

impl Db for PgTx {
    type Row = Record<PgRow>;

    async fn execute(&mut self, statement: Statement<'_>) -> StoreResult<u64> {
        self.conn.execute(statement).await
    }

    async fn fetch_all(&mut self, statement: Statement<'_>) -> StoreResult<Vec<Self::Row>> {
        self.conn.fetch_all(statement).await
    }
}

impl SqlBackend for PostgresStore {
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const FOR_SHARE: &'static str = " FOR SHARE";
    const COUNTER_SHARDS: u64 = 16;

    // The stored `words` and their GIN index `messages_words` (migration 0013).
    const WORDS: WordIndex = WordIndex {
        count: "SELECT COUNT(*) AS n FROM (SELECT 1 FROM messages
                WHERE org_id = $1 AND words @@ to_tsquery('simple', $2)
                LIMIT $3) matched",
        indexed: "c.id IN (SELECT m.conversation_id FROM messages m
                  WHERE m.org_id = $1 AND m.words @@ to_tsquery('simple', $7))",
    };

    fn words_query(words: &[String], prefix: bool) -> String {
        // Each word followed by the next.
        let star = if prefix { ":*" } else { "" };
        format!("{}{star}", words.join(" <-> "))
    }

    type Tx = PgTx;
    type Write = Conn<PoolConnection<Postgres>>;
    type Read = Conn<PoolConnection<Postgres>>;

    async fn begin(&self) -> StoreResult<Self::Tx> {
        Ok(PgTx {
            conn: Conn(self.begin_write().await?),
            notices: Vec::new(),
            notifier: self.notifier.clone(),
        })
    }

    async fn write(&self) -> StoreResult<Self::Write> {
        Ok(Conn(self.pool.acquire().await.map_err(map_err)?))
    }

    async fn read(&self) -> StoreResult<Self::Read> {
        Ok(Conn(self.pool.acquire().await.map_err(map_err)?))
    }

    /// The words are a column of the row: its index entries go with the
    /// row's dead version when it is vacuumed.
    async fn purge_deleted_words(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn commit_only(tx: Self::Tx) -> StoreResult<()> {
        tx.conn.0.commit().await.map_err(map_err)?;
        if !tx.notices.is_empty() {
            tx.notifier.send(tx.notices);
        }
        Ok(())
    }

    async fn add_message_in_one_call(
        &self,
        write: &MessageWrite<'_>,
    ) -> Option<StoreResult<Option<PersonId>>> {
        Some(crate::messages::add_message(self, write).await)
    }

    async fn insert_chunks(
        tx: &mut Self::Tx,
        org: OrgId,
        chatbot: Option<ChatbotId>,
        document: DocumentId,
        chunks: &[NewChunk],
    ) -> StoreResult<bool> {
        crate::knowledge::insert_chunks(&mut tx.conn.0, org, chatbot, document, chunks).await
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

    /// Delivered after the commit to every process's listener (see `live.rs`).
    fn announce_live(tx: &mut Self::Tx, event: &LiveEvent) {
        let payloads = crate::live::payloads(event);
        tx.notices
            .extend(payloads.into_iter().map(|p| (crate::live::CHANNEL, p)));
    }

    /// Delivered after the commit to every listening worker (see
    /// `watch_enqueued`); PostgreSQL sends a transaction's identical
    /// notices once.
    fn announce_enqueued(tx: &mut Self::Tx, kind: JobKind) {
        tx.notices
            .push((crate::queue::CHANNEL, kind.as_str().to_owned()));
    }
}
