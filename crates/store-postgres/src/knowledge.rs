//! `KnowledgeStore` for PostgreSQL: documents, chunks and `tsvector` search.

use async_trait::async_trait;
use serde_json::Value;
use serde_json::json;
use steward_domain::jobs::{CrawlArgs, IngestArgs};
use steward_domain::{ChatbotId, CrawlId, CrawlStatus, DocumentId, DocumentStatus};
use steward_store::*;

use crate::queue::insert_job;
use crate::store::{Tx, audit, commit};
use crate::{PostgresStore, map_err, rows};

/// Reasons are for people to read: long ones are cut.
const MAX_REASON_CHARS: usize = 500;

async fn set_status(
    tx: &mut Tx,
    scope: &TenantScope,
    id: DocumentId,
    status: DocumentStatus,
    error: Option<&str>,
) -> StoreResult<()> {
    let updated = sqlx::query(
        "UPDATE documents SET status = $1, error = $2, updated_at = $3 WHERE id = $4 AND org_id = $5",
    )
    .bind(status.as_str())
    .bind(error.map(|e| e.chars().take(MAX_REASON_CHARS).collect::<String>()))
    .bind(now())
    .bind(id.as_uuid())
    .bind(scope.org_id().as_uuid())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

impl PostgresStore {
    async fn document_in(
        &self,
        tx: &mut Tx,
        scope: &TenantScope,
        id: DocumentId,
    ) -> StoreResult<Document> {
        let found = sqlx::query("SELECT * FROM documents WHERE id = $1 AND org_id = $2")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_err)?;
        rows::document(&found.ok_or(StoreError::NotFound)?)
    }
}

#[async_trait]
impl KnowledgeStore for PostgresStore {
    async fn add_document(
        &self,
        scope: &TenantScope,
        new: NewDocument,
        ingest_attempts: i32,
    ) -> StoreResult<Document> {
        let org = scope.org_id().as_uuid();
        let at = now();
        let mut tx = self.begin_write().await?;
        if let Some(chatbot) = new.chatbot_id {
            sqlx::query_scalar::<_, i32>("SELECT 1 FROM chatbots WHERE id = $1 AND org_id = $2")
                .bind(chatbot.as_uuid())
                .bind(org)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound)?;
        }
        let existing = match &new.url {
            Some(url) => sqlx::query_scalar::<_, uuid::Uuid>(
                "SELECT id FROM documents WHERE org_id = $1 AND chatbot_id IS NOT DISTINCT FROM $2 AND url = $3",
            )
            .bind(org)
            .bind(new.chatbot_id.map(|c| c.as_uuid()))
            .bind(url)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?,
            _ => None,
        };
        let id = match existing {
            Some(id) => {
                let id = DocumentId::from(id);
                set_status(&mut tx, scope, id, DocumentStatus::Queued, None).await?;
                // The caller may have written the new original already.
                sqlx::query("UPDATE documents SET blob_key = coalesce($1, blob_key) WHERE id = $2 AND org_id = $3")
                    .bind(&new.blob_key)
                    .bind(id.as_uuid())
                    .bind(org)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                audit(
                    &mut tx,
                    scope,
                    "document.refresh",
                    &format!("document:{id}"),
                    json!({ "url": new.url }),
                )
                .await?;
                id
            }
            None => {
                sqlx::query(
                    "INSERT INTO documents (id, org_id, chatbot_id, source, label, url, blob_key, bytes, status, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10)",
                )
                .bind(new.id.as_uuid())
                .bind(org)
                .bind(new.chatbot_id.map(|c| c.as_uuid()))
                .bind(new.source.as_str())
                .bind(&new.label)
                .bind(&new.url)
                .bind(&new.blob_key)
                .bind(new.bytes)
                .bind(at)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                audit(
                    &mut tx,
                    scope,
                    "document.create",
                    &format!("document:{}", new.id),
                    json!({ "chatbot_id": new.chatbot_id, "source": new.source, "label": new.label }),
                )
                .await?;
                new.id
            }
        };
        insert_job(
            &mut tx,
            &NewJob::of(&IngestArgs { document_id: id }, ingest_attempts).for_org(scope.org_id()),
        )
        .await?;
        let document = self.document_in(&mut tx, scope, id).await?;
        commit(tx).await?;
        Ok(document)
    }

    async fn documents(
        &self,
        scope: &TenantScope,
        chatbot: Option<ChatbotId>,
    ) -> StoreResult<Vec<Document>> {
        let found = sqlx::query(
            "SELECT * FROM documents WHERE org_id = $1 AND chatbot_id IS NOT DISTINCT FROM $2
             ORDER BY created_at DESC, id DESC",
        )
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.map(|c| c.as_uuid()))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::document).collect()
    }

    async fn document(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<Document> {
        let found = sqlx::query("SELECT * FROM documents WHERE id = $1 AND org_id = $2")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        rows::document(&found.ok_or(StoreError::NotFound)?)
    }

    async fn start_ingest(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        set_status(&mut tx, scope, id, DocumentStatus::Processing, None).await?;
        commit(tx).await
    }

    async fn finish_ingest(
        &self,
        scope: &TenantScope,
        id: DocumentId,
        ingested: Ingested,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let document = self.document_in(&mut tx, scope, id).await?;
        sqlx::query("DELETE FROM chunks WHERE document_id = $1")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        // One statement for all chunks, however many.
        let ordinals: Vec<i32> = (0..ingested.chunks.len() as i32).collect();
        let (headings, texts): (Vec<&str>, Vec<&str>) = ingested
            .chunks
            .iter()
            .map(|c| (c.heading.as_str(), c.text.as_str()))
            .unzip();
        let vectors: Vec<Option<String>> = ingested
            .chunks
            .iter()
            .map(|c| c.embedding.as_deref().map(vector_literal))
            .collect();
        sqlx::query(
            "INSERT INTO chunks (org_id, chatbot_id, document_id, ordinal, heading, text, embedding)
             SELECT $1, $2, $3, o, h, t, e::vector
             FROM UNNEST($4::int[], $5::text[], $6::text[], $7::text[]) AS u (o, h, t, e)",
        )
        .bind(scope.org_id().as_uuid())
        .bind(document.chatbot_id.map(|c| c.as_uuid()))
        .bind(id.as_uuid())
        .bind(&ordinals)
        .bind(&headings)
        .bind(&texts)
        .bind(&vectors)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "UPDATE documents SET status = 'ready', error = NULL, content_type = $1, content_hash = $2,
                 chunk_count = $3, updated_at = $4, bytes = $7
             WHERE id = $5 AND org_id = $6",
        )
        .bind(&ingested.content_type)
        .bind(&ingested.content_hash)
        .bind(ingested.chunks.len() as i64)
        .bind(now())
        .bind(id.as_uuid())
        .bind(scope.org_id().as_uuid())
        .bind(ingested.bytes)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        commit(tx).await
    }

    async fn fail_ingest(
        &self,
        scope: &TenantScope,
        id: DocumentId,
        reason: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        set_status(&mut tx, scope, id, DocumentStatus::Failed, Some(reason)).await?;
        commit(tx).await
    }

    async fn delete_document(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<Document> {
        let mut tx = self.begin_write().await?;
        let document = self.document_in(&mut tx, scope, id).await?;
        sqlx::query("DELETE FROM documents WHERE id = $1 AND org_id = $2")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        audit(
            &mut tx,
            scope,
            "document.delete",
            &format!("document:{id}"),
            json!({ "chatbot_id": document.chatbot_id, "label": document.label }),
        )
        .await?;
        commit(tx).await?;
        Ok(document)
    }

    async fn add_crawl(
        &self,
        scope: &TenantScope,
        new: NewCrawl,
        attempts: i32,
    ) -> StoreResult<Crawl> {
        let org = scope.org_id().as_uuid();
        let at = now();
        let mut tx = self.begin_write().await?;
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM chatbots WHERE id = $1 AND org_id = $2")
            .bind(new.chatbot_id.as_uuid())
            .bind(org)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO crawls (id, org_id, chatbot_id, root_url, max_pages, max_depth, status, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', '{}', $7, $7)",
        )
        .bind(new.id.as_uuid())
        .bind(org)
        .bind(new.chatbot_id.as_uuid())
        .bind(&new.root_url)
        .bind(new.max_pages)
        .bind(new.max_depth)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        audit(
            &mut tx,
            scope,
            "crawl.create",
            &format!("crawl:{}", new.id),
            json!({ "chatbot_id": new.chatbot_id, "url": new.root_url }),
        )
        .await?;
        insert_job(
            &mut tx,
            &NewJob::of(&CrawlArgs { crawl_id: new.id }, attempts).for_org(scope.org_id()),
        )
        .await?;
        commit(tx).await?;
        self.crawl(scope, new.id).await
    }

    async fn crawls(&self, scope: &TenantScope, chatbot: ChatbotId) -> StoreResult<Vec<Crawl>> {
        let found = sqlx::query(
            "SELECT * FROM crawls WHERE org_id = $1 AND chatbot_id = $2 ORDER BY created_at DESC, id DESC",
        )
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::crawl).collect()
    }

    async fn crawl(&self, scope: &TenantScope, id: CrawlId) -> StoreResult<Crawl> {
        let found = sqlx::query("SELECT * FROM crawls WHERE id = $1 AND org_id = $2")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        rows::crawl(&found.ok_or(StoreError::NotFound)?)
    }

    async fn save_crawl(
        &self,
        scope: &TenantScope,
        id: CrawlId,
        status: CrawlStatus,
        progress: &CrawlProgress,
        state: &Value,
        next: Option<NewJob>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE crawls SET status = $1, pages_done = $2, pages_failed = $3, pages_queued = $4, bytes = $5,
                 note = $6, state = $7, updated_at = $8
             WHERE id = $9 AND org_id = $10",
        )
        .bind(status.as_str())
        .bind(progress.pages_done)
        .bind(progress.pages_failed)
        .bind(progress.pages_queued)
        .bind(progress.bytes)
        .bind(progress.note.as_ref().map(|n| n.chars().take(MAX_REASON_CHARS).collect::<String>()))
        .bind(state)
        .bind(now())
        .bind(id.as_uuid())
        .bind(scope.org_id().as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(next) = next {
            insert_job(&mut tx, &next).await?;
        }
        commit(tx).await
    }

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
