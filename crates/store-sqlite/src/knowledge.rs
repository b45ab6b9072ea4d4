//! `KnowledgeStore` for SQLite: documents, chunks and FTS5 search.

use async_trait::async_trait;
use serde_json::Value;
use serde_json::json;
use steward_domain::jobs::{CrawlArgs, IngestArgs};
use steward_domain::{ChatbotId, CrawlId, CrawlStatus, DocumentId, DocumentStatus};
use steward_store::*;

use crate::queue::insert_job;
use crate::store::{Tx, audit, commit};
use crate::vectors::{Codes, Key, Stamp};
use crate::{SqliteStore, map_err, rows, to_micros};

/// Candidates re-scored exactly per passage wanted.
const RESCORE: usize = 4;

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
        "UPDATE documents SET status = ?, error = ?, updated_at = ? WHERE id = ? AND org_id = ?",
    )
    .bind(status.as_str())
    .bind(error.map(|e| e.chars().take(MAX_REASON_CHARS).collect::<String>()))
    .bind(to_micros(now()))
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

impl SqliteStore {
    async fn document_in(
        &self,
        tx: &mut Tx,
        scope: &TenantScope,
        id: DocumentId,
    ) -> StoreResult<Document> {
        let found = sqlx::query("SELECT * FROM documents WHERE id = ? AND org_id = ?")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_err)?;
        rows::document(&found.ok_or(StoreError::NotFound)?)
    }
}

#[async_trait]
impl KnowledgeStore for SqliteStore {
    async fn add_document(
        &self,
        scope: &TenantScope,
        new: NewDocument,
        ingest_attempts: i32,
    ) -> StoreResult<Document> {
        let org = scope.org_id().as_uuid();
        let at = to_micros(now());
        let mut tx = self.begin_write().await?;
        if let Some(chatbot) = new.chatbot_id {
            sqlx::query_scalar::<_, i64>("SELECT 1 FROM chatbots WHERE id = ? AND org_id = ?")
                .bind(chatbot.as_uuid())
                .bind(org)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound)?;
        }
        let existing = match &new.url {
            Some(url) => sqlx::query_scalar::<_, uuid::Uuid>(
                "SELECT id FROM documents WHERE org_id = ? AND chatbot_id IS ? AND url = ?",
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
                sqlx::query("UPDATE documents SET blob_key = coalesce(?, blob_key) WHERE id = ? AND org_id = ?")
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
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
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
            "SELECT * FROM documents WHERE org_id = ? AND chatbot_id IS ?
             ORDER BY created_at DESC, id DESC",
        )
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.map(|c| c.as_uuid()))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::document).collect()
    }

    async fn document(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<Document> {
        let found = sqlx::query("SELECT * FROM documents WHERE id = ? AND org_id = ?")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&self.reader)
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
        sqlx::query("DELETE FROM chunks WHERE document_id = ?")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        for (ordinal, chunk) in ingested.chunks.iter().enumerate() {
            sqlx::query(
                "INSERT INTO chunks (org_id, chatbot_id, document_id, ordinal, heading, text, embedding)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(scope.org_id().as_uuid())
            .bind(document.chatbot_id.map(|c| c.as_uuid()))
            .bind(id.as_uuid())
            .bind(ordinal as i64)
            .bind(&chunk.heading)
            .bind(&chunk.text)
            .bind(chunk.embedding.as_deref().map(vector_bytes))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        sqlx::query(
            "UPDATE documents SET status = 'ready', error = NULL, content_type = ?, content_hash = ?,
                 chunk_count = ?, updated_at = ?, bytes = ?
             WHERE id = ? AND org_id = ?",
        )
        .bind(&ingested.content_type)
        .bind(&ingested.content_hash)
        .bind(ingested.chunks.len() as i64)
        .bind(to_micros(now()))
        .bind(ingested.bytes)
        .bind(id.as_uuid())
        .bind(scope.org_id().as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        commit(tx).await?;
        self.vectors.changed();
        Ok(())
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
        sqlx::query("DELETE FROM documents WHERE id = ? AND org_id = ?")
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
        self.vectors.changed();
        Ok(document)
    }

    async fn add_crawl(
        &self,
        scope: &TenantScope,
        new: NewCrawl,
        attempts: i32,
    ) -> StoreResult<Crawl> {
        let org = scope.org_id().as_uuid();
        let at = to_micros(now());
        let mut tx = self.begin_write().await?;
        sqlx::query_scalar::<_, i64>("SELECT 1 FROM chatbots WHERE id = ? AND org_id = ?")
            .bind(new.chatbot_id.as_uuid())
            .bind(org)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO crawls (id, org_id, chatbot_id, root_url, max_pages, max_depth, status, state, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, 'queued', '{}', ?, ?)",
        )
        .bind(new.id.as_uuid())
        .bind(org)
        .bind(new.chatbot_id.as_uuid())
        .bind(&new.root_url)
        .bind(new.max_pages)
        .bind(new.max_depth)
        .bind(at)
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
            "SELECT * FROM crawls WHERE org_id = ? AND chatbot_id = ? ORDER BY created_at DESC, id DESC",
        )
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.as_uuid())
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::crawl).collect()
    }

    async fn crawl(&self, scope: &TenantScope, id: CrawlId) -> StoreResult<Crawl> {
        let found = sqlx::query("SELECT * FROM crawls WHERE id = ? AND org_id = ?")
            .bind(id.as_uuid())
            .bind(scope.org_id().as_uuid())
            .fetch_optional(&self.reader)
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
            "UPDATE crawls SET status = ?, pages_done = ?, pages_failed = ?, pages_queued = ?, bytes = ?,
                 note = ?, state = ?, updated_at = ?
             WHERE id = ? AND org_id = ?",
        )
        .bind(status.as_str())
        .bind(progress.pages_done)
        .bind(progress.pages_failed)
        .bind(progress.pages_queued)
        .bind(progress.bytes)
        .bind(progress.note.as_ref().map(|n| n.chars().take(MAX_REASON_CHARS).collect::<String>()))
        .bind(state.to_string())
        .bind(to_micros(now()))
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

    async fn prepare_vectors(&self, _dimensions: usize) -> StoreResult<()> {
        Ok(())
    }

    async fn search_vector(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        vector: &[f32],
        limit: u32,
    ) -> StoreResult<Vec<ChunkHit>> {
        let org = scope.org_id().as_uuid();
        let codes = self.vector_codes(org, chatbot, vector.len()).await?;
        // The codes pick candidates; their stored vectors decide the order.
        let candidates = codes.nearest(vector, limit as usize * RESCORE);
        let found = sqlx::query(
            // CROSS JOIN keeps the candidates as the outer loop: otherwise
            // SQLite may walk the organization's chunks and look each up in
            // the JSON (92 ms instead of 2 at 10,000 passages).
            "SELECT d.id AS document_id, c.ordinal, d.label, d.url, c.heading, c.text,
                    c.embedding, c.seq, 0.0 AS score
             FROM json_each(?) AS hits
             CROSS JOIN chunks c ON c.seq = hits.value
             JOIN documents d ON d.id = c.document_id
             WHERE c.org_id = ?",
        )
        .bind(json!(candidates.iter().map(|(_, seq)| *seq).collect::<Vec<_>>()).to_string())
        .bind(org)
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        let mut scored = Vec::with_capacity(found.len());
        for row in &found {
            let bytes: Vec<u8> = sqlx::Row::try_get(row, "embedding").map_err(map_err)?;
            let seq: i64 = sqlx::Row::try_get(row, "seq").map_err(map_err)?;
            let score = vector_from_bytes(&bytes).map_or(0.0, |stored| cosine(vector, &stored));
            let mut hit = rows::chunk_hit(row)?;
            hit.score = score;
            scored.push((hit, seq));
        }
        scored.sort_by(|a, b| b.0.score.total_cmp(&a.0.score).then(a.1.cmp(&b.1)));
        Ok(scored
            .into_iter()
            .take(limit as usize)
            .map(|(hit, _)| hit)
            .collect())
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
        // Each term quoted (terms are letters and digits only), any may match,
        // within this organization's passages for this chatbot or its context.
        let terms = terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR ");
        let query = format!(
            "scope : \"o{}\" AND (scope : \"b{}\" OR scope : \"context\") AND {{heading text}} : ({terms})",
            scope.org_id().as_uuid().simple(),
            chatbot.as_uuid().simple()
        );
        // The index finds and ranks; headings weigh twice as much as passages.
        // The org filter again after it is a second line of defence.
        let found = sqlx::query(
            "WITH hits AS MATERIALIZED (
                 SELECT rowid AS seq, -bm25(chunks_fts, 2.0, 1.0, 0.0) AS score
                 FROM chunks_fts WHERE chunks_fts MATCH ?
                 ORDER BY score DESC LIMIT ?
             )
             SELECT d.id AS document_id, c.ordinal, d.label, d.url, c.heading, c.text, hits.score
             FROM hits
             JOIN chunks c ON c.seq = hits.seq
             JOIN documents d ON d.id = c.document_id
             WHERE c.org_id = ? AND (c.chatbot_id = ? OR c.chatbot_id IS NULL)
             ORDER BY hits.score DESC, c.seq",
        )
        .bind(query)
        .bind(i64::from(limit))
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.as_uuid())
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::chunk_hit).collect()
    }
}

impl SqliteStore {
    /// The 8-bit codes of a chatbot's vectors of `dims` values (its own and
    /// its organization's context), from the cache while its documents are
    /// unchanged (see `vectors.rs`), else read and kept.
    async fn vector_codes(
        &self,
        org: uuid::Uuid,
        chatbot: ChatbotId,
        dims: usize,
    ) -> StoreResult<std::sync::Arc<Codes>> {
        let key = Key {
            org,
            chatbot: chatbot.as_uuid(),
            dims,
        };
        let generation = self.vectors.generation();
        let (documents, passages, last_change): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(chunk_count), 0), coalesce(max(updated_at), 0)
             FROM documents WHERE org_id = ? AND (chatbot_id = ? OR chatbot_id IS NULL)",
        )
        .bind(org)
        .bind(chatbot.as_uuid())
        .fetch_one(&self.reader)
        .await
        .map_err(map_err)?;
        let stamp = Stamp {
            generation,
            documents,
            passages,
            last_change,
        };
        if let Some(codes) = self.vectors.get(&key, &stamp) {
            return Ok(codes);
        }
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT c.seq, c.embedding FROM chunks c
             WHERE c.org_id = ? AND (c.chatbot_id = ? OR c.chatbot_id IS NULL)
               AND length(c.embedding) = ?",
        )
        .bind(org)
        .bind(chatbot.as_uuid())
        .bind((dims * 4) as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        let mut codes = Codes::new(dims);
        for (seq, bytes) in rows {
            if let Some(stored) = vector_from_bytes(&bytes) {
                codes.push(seq, &stored);
            }
        }
        let codes = std::sync::Arc::new(codes);
        self.vectors.put(key, stamp, codes.clone());
        Ok(codes)
    }
}
