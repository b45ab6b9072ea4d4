//! Passages on PostgreSQL: stored in one statement per document, searched
//! with `tsvector` and pgvector. Documents and crawls are shared
//! (`steward_store::sql`).

use async_trait::async_trait;
use steward_domain::{ChatbotId, DocumentId, OrgId};
use steward_store::*;

use crate::{PostgresStore, map_err, rows};

/// One statement for all of a document's passages, however many.
pub(crate) async fn insert_chunks(
    tx: &mut sqlx::PgConnection,
    org: OrgId,
    chatbot: Option<ChatbotId>,
    document: DocumentId,
    chunks: &[NewChunk],
) -> StoreResult<()> {
    let ordinals: Vec<i32> = (0..chunks.len() as i32).collect();
    let (headings, texts): (Vec<&str>, Vec<&str>) = chunks
        .iter()
        .map(|c| (c.heading.as_str(), c.text.as_str()))
        .unzip();
    let vectors: Vec<Option<String>> = chunks
        .iter()
        .map(|c| c.embedding.as_deref().map(vector_literal))
        .collect();
    sqlx::query(
        "INSERT INTO chunks (org_id, chatbot_id, document_id, ordinal, heading, text, embedding)
         SELECT $1, $2, $3, o, h, t, e::vector
         FROM UNNEST($4::int[], $5::text[], $6::text[], $7::text[]) AS u (o, h, t, e)",
    )
    .bind(org.as_uuid())
    .bind(chatbot.map(|c| c.as_uuid()))
    .bind(document.as_uuid())
    .bind(&ordinals)
    .bind(&headings)
    .bind(&texts)
    .bind(&vectors)
    .execute(tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl SearchStore for PostgresStore {
    async fn prepare_vectors(&self, dimensions: usize) -> StoreResult<()> {
        // One index per vector length: pgvector indexes only typed columns.
        // Only an integer is formatted into the statement.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE INDEX IF NOT EXISTS chunks_embedding_{dimensions} ON chunks
             USING hnsw ((embedding::vector({dimensions})) vector_cosine_ops)
             WHERE embedding_dims = {dimensions}"
        )))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn search_vector(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        vector: &[f32],
        limit: u32,
    ) -> StoreResult<Vec<ChunkHit>> {
        let dims = vector.len();
        // The HNSW index finds the nearest vectors of every tenant and the
        // filter keeps this one's; when that leaves too few (a small tenant
        // among large ones), the same query runs exactly (`+ 0` keeps the
        // planner off the index) over this tenant's rows.
        // Only an integer and a constant are formatted into the statement.
        let query = |exact: bool| {
            sqlx::AssertSqlSafe(format!(
                "SELECT d.id AS document_id, c.ordinal, d.label, d.url, c.heading, c.text,
                        (1 - (c.embedding::vector({dims}) <=> $1::vector({dims})))::float8 AS score
                 FROM chunks c JOIN documents d ON d.id = c.document_id
                 WHERE c.embedding_dims = {dims} AND c.org_id = $2
                   AND (c.chatbot_id = $3 OR c.chatbot_id IS NULL)
                 ORDER BY (c.embedding::vector({dims}) <=> $1::vector({dims})){}
                 LIMIT $4",
                if exact { " + 0" } else { "" }
            ))
        };
        let literal = vector_literal(vector);
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SET LOCAL hnsw.ef_search = 200")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let mut found = sqlx::query(query(false))
            .bind(&literal)
            .bind(scope.org_id().as_uuid())
            .bind(chatbot.as_uuid())
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        if found.len() < limit as usize {
            found = sqlx::query(query(true))
                .bind(&literal)
                .bind(scope.org_id().as_uuid())
                .bind(chatbot.as_uuid())
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        found.iter().map(rows::chunk_hit).collect()
    }

    async fn search_text(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        terms: &[String],
        limit: u32,
    ) -> StoreResult<Vec<ChunkHit>> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // Terms are letters and digits only, so they are safe in tsquery
        // syntax; any may match.
        let query = terms.join(" | ");
        // ts_rank_cd rewards terms close together; headings weigh more
        // (weight A) through the vector itself.
        let found = sqlx::query(
            "SELECT d.id AS document_id, c.ordinal, d.label, d.url, c.heading, c.text,
                    ts_rank_cd(c.search, q)::float8 AS score
             FROM chunks c
             JOIN documents d ON d.id = c.document_id,
                  to_tsquery('english', $1) q
             WHERE c.search @@ q AND c.org_id = $2 AND (c.chatbot_id = $3 OR c.chatbot_id IS NULL)
             ORDER BY score DESC, c.id
             LIMIT $4",
        )
        .bind(query)
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::chunk_hit).collect()
    }
}
