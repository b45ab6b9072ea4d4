//! Passages on SQLite: stored with their vectors as bytes, searched with
//! FTS5 and with vector codes kept in memory (`vectors.rs`). Documents and
//! crawls are shared (`steward_store::sql`).

use async_trait::async_trait;
use serde_json::json;
use steward_domain::{ChatbotId, DocumentId, OrgId};
use steward_store::sql::{Db, sql};
use steward_store::*;

use crate::vectors::{Codes, Key, Stamp};
use crate::{SqliteStore, map_err, rows};

/// Candidates re-scored exactly per passage wanted.
const RESCORE: usize = 4;

/// One statement per passage: SQLite runs them in its own process. Their
/// vectors wait for nothing (there is no index to put them in).
pub(crate) async fn insert_chunks(
    tx: &mut impl Db,
    org: OrgId,
    chatbot: Option<ChatbotId>,
    document: DocumentId,
    chunks: &[NewChunk],
) -> StoreResult<bool> {
    for (ordinal, chunk) in chunks.iter().enumerate() {
        tx.execute(
            sql("INSERT INTO chunks (org_id, chatbot_id, document_id, ordinal, heading, text, embedding)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(org)
            .bind(chatbot)
            .bind(document)
            .bind(ordinal as i64)
            .bind(chunk.heading.as_str())
            .bind(chunk.text.as_str())
            .bind(chunk.embedding.as_deref().map(vector_bytes)),
        )
        .await?;
    }
    Ok(false)
}

#[async_trait]
impl SearchStore for SqliteStore {
    async fn prepare_vectors(&self, _dimensions: usize) -> StoreResult<()> {
        Ok(())
    }

    async fn index_vectors(
        &self,
        _scope: &TenantScope,
        _document: DocumentId,
        _most: u32,
    ) -> StoreResult<u64> {
        Ok(0)
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
        // Each term quoted (terms are letters and digits only), within this
        // organization's passages for this chatbot or its context.
        let within = format!(
            "scope : \"o{}\" AND (scope : \"b{}\" OR scope : \"context\") AND {{heading text}} : ",
            scope.org_id().as_uuid().simple(),
            chatbot.as_uuid().simple()
        );
        // How many of those passages hold each word (the index counts them
        // without reading a passage), so that only the rarest words'
        // passages are ranked: any of those words may match.
        let mut reader = self.reader.acquire().await.map_err(map_err)?;
        let mut words = Vec::with_capacity(terms.len());
        for term in terms {
            let holding: i64 =
                sqlx::query_scalar("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?")
                    .bind(format!("{within}\"{term}\""))
                    .fetch_one(&mut *reader)
                    .await
                    .map_err(map_err)?;
            words.push((term.clone(), holding));
        }
        let (words, taken) = rarest_first(words, limit);
        if taken == 0 {
            return Ok(Vec::new());
        }
        let rarest = words[..taken]
            .iter()
            .map(|(t, _)| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR ");
        let query = format!("{within}({rarest})");
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
        .fetch_all(&mut *reader)
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
