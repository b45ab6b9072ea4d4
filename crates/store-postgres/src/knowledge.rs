//! Passages on PostgreSQL: stored in one statement per document, searched
//! with `tsvector` and pgvector. Documents and crawls are shared
//! (`steward_store::sql`).

use async_trait::async_trait;
use sqlx::Row;
use steward_domain::{ChatbotId, DocumentId, OrgId};
use steward_store::*;

use crate::{PostgresStore, map_err, rows};

/// One statement for all of a document's passages, however many; their
/// vectors wait beside the index (`waiting_vectors`) for the
/// `index_vectors` job. Answers whether any do.
pub(crate) async fn insert_chunks(
    tx: &mut sqlx::PgConnection,
    org: OrgId,
    chatbot: Option<ChatbotId>,
    document: DocumentId,
    chunks: &[NewChunk],
) -> StoreResult<bool> {
    let ordinals: Vec<i32> = (0..chunks.len() as i32).collect();
    let (headings, texts): (Vec<&str>, Vec<&str>) = chunks
        .iter()
        .map(|c| (c.heading.as_str(), c.text.as_str()))
        .unzip();
    let vectors: Vec<Option<String>> = chunks
        .iter()
        .map(|c| c.embedding.as_deref().map(vector_literal))
        .collect();
    let waiting = sqlx::query(
        "WITH stored AS (
             INSERT INTO chunks (org_id, chatbot_id, document_id, ordinal, heading, text)
             SELECT $1, $2, $3, o, h, t
             FROM UNNEST($4::int[], $5::text[], $6::text[]) AS u (o, h, t)
             RETURNING id, ordinal)
         INSERT INTO waiting_vectors (chunk_id, org_id, chatbot_id, document_id, embedding)
         SELECT s.id, $1, $2, $3, v.e::vector
         FROM stored s JOIN UNNEST($4::int[], $7::text[]) AS v (o, e) ON v.o = s.ordinal
         WHERE v.e IS NOT NULL",
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
    .map_err(map_err)?
    .rows_affected();
    Ok(waiting > 0)
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

    async fn index_vectors(
        &self,
        scope: &TenantScope,
        document: DocumentId,
        most: u32,
    ) -> StoreResult<u64> {
        // Setting `embedding` puts the row into the HNSW index (its
        // `embedding_dims` then matches the index's predicate).
        let moved = sqlx::query(
            "WITH moved AS (
                 DELETE FROM waiting_vectors
                 WHERE chunk_id IN (SELECT chunk_id FROM waiting_vectors
                                    WHERE document_id = $1 AND org_id = $2
                                    ORDER BY chunk_id LIMIT $3
                                    FOR UPDATE SKIP LOCKED)
                 RETURNING chunk_id, embedding)
             UPDATE chunks c SET embedding = m.embedding FROM moved m WHERE c.id = m.chunk_id",
        )
        .bind(document.as_uuid())
        .bind(scope.org_id().as_uuid())
        .bind(i64::from(most))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(moved.rows_affected())
    }

    async fn search_vector(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        vector: &[f32],
        limit: u32,
    ) -> StoreResult<Vec<ChunkHit>> {
        let dims = vector.len();
        // The HNSW index finds the nearest indexed vectors of every tenant
        // and the filter keeps this one's; when that leaves too few (a small
        // tenant among large ones), the same query runs exactly (`+ 0` keeps
        // the planner off the index) over this tenant's rows. Vectors still
        // waiting for the index are always compared exactly.
        // Only an integer and a constant are formatted into the statement.
        let query = |exact: bool| {
            sqlx::AssertSqlSafe(format!(
                "SELECT d.id AS document_id, c.ordinal, d.label, d.url, c.heading, c.text,
                        (1 - n.distance)::float8 AS score,
                        count(*) FILTER (WHERE n.indexed) OVER () AS indexed
                 FROM ((SELECT c.id, c.embedding::vector({dims}) <=> $1::vector({dims}) AS distance,
                               true AS indexed
                        FROM chunks c
                        WHERE c.embedding_dims = {dims} AND c.org_id = $2
                          AND (c.chatbot_id = $3 OR c.chatbot_id IS NULL)
                        ORDER BY (c.embedding::vector({dims}) <=> $1::vector({dims})){exact}
                        LIMIT $4)
                       UNION ALL
                       (SELECT w.chunk_id, w.embedding::vector({dims}) <=> $1::vector({dims}),
                               false
                        FROM waiting_vectors w
                        WHERE w.org_id = $2 AND (w.chatbot_id = $3 OR w.chatbot_id IS NULL)
                          AND vector_dims(w.embedding) = {dims}
                        ORDER BY 2
                        LIMIT $4)) n
                 JOIN chunks c ON c.id = n.id
                 JOIN documents d ON d.id = c.document_id
                 ORDER BY n.distance
                 LIMIT $4",
                exact = if exact { " + 0" } else { "" }
            ))
        };
        let literal = vector_literal(vector);
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SET LOCAL hnsw.ef_search = 200")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let search = |exact: bool| {
            sqlx::query(query(exact))
                .bind(&literal)
                .bind(scope.org_id().as_uuid())
                .bind(chatbot.as_uuid())
                .bind(i64::from(limit))
        };
        let mut found = search(false).fetch_all(&mut *tx).await.map_err(map_err)?;
        let indexed = found.first().map_or(0, |r| r.get::<i64, _>("indexed"));
        // The index found fewer of this tenant's passages than asked for,
        // whatever waiting ones add: it may have passed theirs by.
        if indexed < i64::from(limit) {
            found = search(true).fetch_all(&mut *tx).await.map_err(map_err)?;
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
        // How many of the searched passages hold each of the question's
        // words (stemmed as the index stems them), and how many there are.
        let counted = sqlx::query(
            "SELECT q.lexeme, coalesce(sum(w.passages), 0)::int8 AS holding,
                    (SELECT coalesce(sum(s.passages), 0) FROM passage_scopes s
                     WHERE s.org_id = $2 AND (s.chatbot_id = $3 OR s.chatbot_id IS NULL))::int8 AS searched
             FROM (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', $1))) q
             LEFT JOIN passage_words w ON w.lexeme = q.lexeme AND w.org_id = $2
                  AND (w.chatbot_id = $3 OR w.chatbot_id IS NULL)
             GROUP BY q.lexeme",
        )
        .bind(terms.join(" "))
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut words = Vec::with_capacity(counted.len());
        let mut searched = 0;
        for row in &counted {
            let (lexeme, holding): (String, i64) = (row.get("lexeme"), row.get("holding"));
            searched = row.get("searched");
            words.push((lexeme, holding));
        }
        let Some(plan) = RankPlan::new(words, searched, limit) else {
            return Ok(Vec::new());
        };
        // Each word's rank (occurrences, with diminishing returns, headings
        // counting twice) weighed by its rarity, summed: BM25's shape with
        // PostgreSQL's own ranking per word.
        let found = sqlx::query(
            "SELECT d.id AS document_id, c.ordinal, d.label, d.url, c.heading, c.text, r.score
             FROM (SELECT c.id,
                          (SELECT sum(x.weight * ts_rank('{0.5,0.5,0.5,1.0}', c.search, x.word))
                           FROM unnest($5::tsquery[], $6::float8[]) AS x (word, weight))::float8 AS score
                   FROM chunks c
                   WHERE c.search @@ $1::tsquery AND c.org_id = $2
                     AND (c.chatbot_id = $3 OR c.chatbot_id IS NULL)
                   ORDER BY score DESC, c.id
                   LIMIT $4) r
             JOIN chunks c ON c.id = r.id
             JOIN documents d ON d.id = c.document_id
             ORDER BY r.score DESC, c.id",
        )
        .bind(plan.candidates)
        .bind(scope.org_id().as_uuid())
        .bind(chatbot.as_uuid())
        .bind(i64::from(limit))
        .bind(plan.words)
        .bind(plan.weights)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        found.iter().map(rows::chunk_hit).collect()
    }
}

/// What one full-text search asks of PostgreSQL.
#[derive(Debug, PartialEq)]
struct RankPlan {
    /// The passages ranked: those holding any of the rarest words
    /// ([`rarest_first`]).
    candidates: String,
    /// Every word found in the passages, as a query of its own...
    words: Vec<String>,
    /// ...and its weight: BM25's inverse document frequency.
    weights: Vec<f64>,
}

impl RankPlan {
    /// From each word and how many passages hold it, of `searched`, for
    /// `limit` results; None when no passage holds any word.
    fn new(words: Vec<(String, i64)>, searched: i64, limit: u32) -> Option<Self> {
        let (words, taken) = rarest_first(words, limit);
        if taken == 0 {
            return None;
        }
        let n = searched as f64;
        let weights = words
            .iter()
            .map(|(_, holding)| {
                let df = *holding as f64;
                (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
            })
            .collect();
        let words: Vec<String> = words.iter().map(|(lexeme, _)| quoted(lexeme)).collect();
        Some(Self {
            candidates: words[..taken].join(" | "),
            words,
            weights,
        })
    }
}

/// A lexeme as a query of its own: quoted, its quotes and backslashes
/// doubled, so that no character in it is query syntax.
fn quoted(lexeme: &str) -> String {
    format!("'{}'", lexeme.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(words: &[(&str, i64)], searched: i64) -> Option<RankPlan> {
        RankPlan::new(
            words.iter().map(|(w, n)| (w.to_string(), *n)).collect(),
            searched,
            10,
        )
    }

    #[test]
    fn a_small_collection_ranks_every_passage_holding_any_word() {
        let plan = plan(&[("refund", 3), ("polici", 5), ("unseen", 0)], 20).unwrap();
        assert_eq!(plan.candidates, "'refund' | 'polici'");
        assert_eq!(plan.words, ["'refund'", "'polici'"]);
        assert!(
            plan.weights[0] > plan.weights[1],
            "the rarer word weighs more"
        );
    }

    #[test]
    fn common_words_weigh_in_but_bring_no_candidates_of_their_own() {
        let plan = plan(
            &[
                ("the", 90_000),
                ("invoic", 1_500),
                ("vat", 400),
                ("order", 30_000),
            ],
            100_000,
        )
        .unwrap();
        assert_eq!(plan.candidates, "'vat' | 'invoic'");
        assert_eq!(plan.words, ["'vat'", "'invoic'", "'order'", "'the'"]);
        assert!(plan.weights.windows(2).all(|w| w[0] > w[1]));
        assert!(plan.weights[3] > 0.0);
    }

    #[test]
    fn commoner_words_bring_candidates_while_there_are_too_few_for_the_results() {
        let too_few = plan(&[("custom", 2), ("duti", 5), ("parcel", 2_500)], 2_510).unwrap();
        assert_eq!(too_few.candidates, "'custom' | 'duti' | 'parcel'");
        let enough = plan(&[("custom", 2), ("duti", 8), ("parcel", 2_500)], 2_510).unwrap();
        assert_eq!(enough.candidates, "'custom' | 'duti'");
    }

    #[test]
    fn the_rarest_word_is_a_candidate_however_common() {
        let plan = plan(&[("reset", 40_000), ("password", 30_000)], 100_000).unwrap();
        assert_eq!(plan.candidates, "'password'");
    }

    #[test]
    fn no_passage_holding_any_word_is_no_search() {
        assert_eq!(plan(&[("zzz", 0)], 100), None);
        assert_eq!(plan(&[], 100), None);
    }

    #[test]
    fn a_lexeme_cannot_become_query_syntax() {
        assert_eq!(quoted("it's"), "'it''s'");
        assert_eq!(quoted("a\\' | b"), "'a\\\\'' | b'");
    }
}
