//! Knowledge: documents (uploads, URLs, crawled pages, an organization's
//! strategic context), the chunks they are cut into, and full-text search over
//! those chunks.
//!
//! Rule: search takes a chatbot and a tenant scope and returns only chunks of
//! that organization's documents for that chatbot or for the whole
//! organization (its context). No call searches across organizations.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use steward_domain::{
    ChatbotId, CrawlId, CrawlStatus, DocumentId, DocumentSource, DocumentStatus, OrgId,
};

use crate::{NewJob, StoreResult, TenantScope};

/// At most this many words of a query are searched for.
pub const MAX_SEARCH_TERMS: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub id: DocumentId,
    pub org_id: OrgId,
    /// None: organization context, used by every chatbot of the organization.
    pub chatbot_id: Option<ChatbotId>,
    pub source: DocumentSource,
    /// What people see: a file's name, a page's URL or title. Never a path.
    pub label: String,
    /// The address of a URL or crawled document.
    pub url: Option<String>,
    /// Where the original is kept in the blob store.
    pub blob_key: Option<String>,
    pub bytes: i64,
    /// The type found by looking at the content (`text/markdown`, …), once known.
    pub content_type: Option<String>,
    /// SHA-256 of the original, hex, once known.
    pub content_hash: Option<String>,
    pub status: DocumentStatus,
    /// Why ingestion failed, in words for the person who gave the document.
    pub error: Option<String>,
    pub chunk_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct NewDocument {
    /// Chosen by the caller: the original is stored under it before the row is.
    pub id: DocumentId,
    pub chatbot_id: Option<ChatbotId>,
    pub source: DocumentSource,
    pub label: String,
    pub url: Option<String>,
    pub blob_key: Option<String>,
    pub bytes: i64,
}

/// A passage of a document, as ingestion cut it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChunk {
    /// The headings above the passage, outermost first, joined by " › ".
    pub heading: String,
    pub text: String,
    /// The passage's vector, when an embedder is configured.
    pub embedding: Option<Vec<f32>>,
}

/// What ingestion found, written in one transaction with the chunks.
#[derive(Clone, Debug)]
pub struct Ingested {
    /// Size of the original read (a fetched page's size is known only now).
    pub bytes: i64,
    pub content_type: String,
    pub content_hash: String,
    pub chunks: Vec<NewChunk>,
}

/// A chunk found by a search, with what is needed to cite it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkHit {
    pub document_id: DocumentId,
    /// Position of the chunk in its document, from 0.
    pub ordinal: i32,
    pub label: String,
    pub url: Option<String>,
    pub heading: String,
    pub text: String,
    /// Higher is better; comparable only within one search.
    pub score: f64,
}

/// A crawl of a site: its bounds, its progress, and where it is (`state`,
/// the crawler's own record of its frontier, kept so that a crawl survives
/// restarts).
#[derive(Clone, Debug, PartialEq)]
pub struct Crawl {
    pub id: CrawlId,
    pub org_id: OrgId,
    pub chatbot_id: ChatbotId,
    pub root_url: String,
    pub max_pages: i32,
    pub max_depth: i32,
    pub status: CrawlStatus,
    pub progress: CrawlProgress,
    pub state: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrawlProgress {
    /// Pages fetched and added as documents.
    pub pages_done: i32,
    /// Pages that could not be fetched or used.
    pub pages_failed: i32,
    /// Pages waiting to be fetched.
    pub pages_queued: i32,
    pub bytes: i64,
    /// Why the crawl failed, or where it stopped (a bound reached).
    pub note: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewCrawl {
    pub id: CrawlId,
    pub chatbot_id: ChatbotId,
    pub root_url: String,
    pub max_pages: i32,
    pub max_depth: i32,
}

#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    /// Stores a new document (queued) and its ingest job in one transaction.
    /// A chatbot must be the scope's; a document with the same URL (fetched
    /// or crawled) for the same chatbot is queued again instead (its chunks stay searchable until
    /// the new ones replace them), and that document is returned.
    async fn add_document(
        &self,
        scope: &TenantScope,
        new: NewDocument,
        ingest_attempts: i32,
    ) -> StoreResult<Document>;

    /// Stores new documents (no URLs), each queued with its ingest job, in one
    /// transaction: all of them or none.
    async fn add_documents(
        &self,
        scope: &TenantScope,
        new: Vec<NewDocument>,
        ingest_attempts: i32,
    ) -> StoreResult<Vec<Document>>;

    /// A chatbot's documents (None: the organization's context), newest first.
    async fn documents(
        &self,
        scope: &TenantScope,
        chatbot: Option<ChatbotId>,
    ) -> StoreResult<Vec<Document>>;

    async fn document(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<Document>;

    /// Marks a document as being ingested.
    async fn start_ingest(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<()>;

    /// Replaces the document's chunks with `ingested`'s, atomically, and marks
    /// it ready.
    async fn finish_ingest(
        &self,
        scope: &TenantScope,
        id: DocumentId,
        ingested: Ingested,
    ) -> StoreResult<()>;

    /// Marks the document failed with a reason; chunks it had stay.
    async fn fail_ingest(
        &self,
        scope: &TenantScope,
        id: DocumentId,
        reason: &str,
    ) -> StoreResult<()>;

    /// Deletes the document and its chunks; returns it, so that the caller
    /// can delete its original from the blob store.
    async fn delete_document(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<Document>;

    /// Stores a crawl (queued) and its first `crawl` job in one transaction.
    async fn add_crawl(
        &self,
        scope: &TenantScope,
        new: NewCrawl,
        attempts: i32,
    ) -> StoreResult<Crawl>;

    /// A chatbot's crawls, newest first.
    async fn crawls(&self, scope: &TenantScope, chatbot: ChatbotId) -> StoreResult<Vec<Crawl>>;

    async fn crawl(&self, scope: &TenantScope, id: CrawlId) -> StoreResult<Crawl>;

    /// Records a crawl's progress and state, and enqueues its next step (if
    /// any) in the same transaction.
    async fn save_crawl(
        &self,
        scope: &TenantScope,
        id: CrawlId,
        status: CrawlStatus,
        progress: &CrawlProgress,
        state: &Value,
        next: Option<NewJob>,
    ) -> StoreResult<()>;
}

/// Search over passages: each dialect its own (PostgreSQL's `tsvector` and
/// pgvector, SQLite's FTS5 and its in-memory vector codes).
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Makes vectors of this length searchable quickly (PostgreSQL: an HNSW
    /// index for them; SQLite searches exactly and needs nothing). Idempotent.
    async fn prepare_vectors(&self, dimensions: usize) -> StoreResult<()>;

    /// Puts up to `most` of the document's vectors that wait for the index
    /// into it, in one transaction; answers how many it put (0: none wait).
    /// PostgreSQL stores a document's vectors beside the index and queues
    /// an `index_vectors` job in [`KnowledgeStore::finish_ingest`], because
    /// putting a vector into an HNSW graph costs many times storing its
    /// passage; a waiting vector is searched exactly. SQLite has no index
    /// to wait for.
    async fn index_vectors(
        &self,
        scope: &TenantScope,
        document: DocumentId,
        most: u32,
    ) -> StoreResult<u64>;

    /// Chunks of the chatbot's and the organization's context documents whose
    /// vectors are nearest to `vector` (cosine), best first; score = cosine
    /// similarity.
    async fn search_vector(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        vector: &[f32],
        limit: u32,
    ) -> StoreResult<Vec<ChunkHit>>;

    /// Chunks of the chatbot's and the organization's context documents that
    /// match any of `terms` (see [`search_terms`]), best first.
    async fn search_text(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        terms: &[String],
        limit: u32,
    ) -> StoreResult<Vec<ChunkHit>>;
}

/// A vector as bytes (little-endian f32s), as SQLite keeps it.
pub fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Bytes back into a vector; None when they are not whole f32s.
pub fn vector_from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    bytes.len().is_multiple_of(4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// Cosine similarity; 0 for a zero vector.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// A vector as pgvector's text form, `[1,2,3]`.
pub fn vector_literal(vector: &[f32]) -> String {
    let parts: Vec<String> = vector.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// A full-text search ranks at most this many passages, unless fewer than
/// the results asked for would be ranked (see [`rarest_first`]).
pub const RANKED_AT_MOST: i64 = 2_000;

/// A question's words with how many of the searched passages hold each,
/// rarest first (words no passage holds dropped), and how many of them a
/// search ranks the passages of: taken rarest first while at most
/// [`RANKED_AT_MOST`] passages hold them in all, or while fewer than
/// `limit` do. A passage holding none of them holds only commoner words,
/// which weigh little; ranking every passage holding a common word is what
/// made a search cost hundreds of milliseconds at 100,000 passages.
pub fn rarest_first(mut words: Vec<(String, i64)>, limit: u32) -> (Vec<(String, i64)>, usize) {
    words.retain(|(_, holding)| *holding > 0);
    words.sort_by(|(a, x), (b, y)| x.cmp(y).then_with(|| a.cmp(b)));
    let (mut taken, mut ranked) = (0, 0);
    for (_, holding) in &words {
        if ranked >= i64::from(limit) && ranked + holding > RANKED_AT_MOST {
            break;
        }
        ranked += holding;
        taken += 1;
    }
    (words, taken)
}

/// The words of a query, lowercased, each letters and digits only (so that
/// no backend's query syntax can be reached through them), without repeats,
/// at most [`MAX_SEARCH_TERMS`].
pub fn search_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() || word.chars().count() > 64 {
            continue;
        }
        let word = word.to_lowercase();
        if !terms.contains(&word) {
            terms.push(word);
        }
        if terms.len() == MAX_SEARCH_TERMS {
            break;
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_syntax_never_reaches_the_backend() {
        assert_eq!(
            search_terms("Refund \"policy\" OR x* NEAR(a b) -- ; DROP TABLE 'é'"),
            vec![
                "refund", "policy", "or", "x", "near", "a", "b", "drop", "table", "é"
            ]
        );
        assert!(search_terms("  !!! ?? ").is_empty());
        assert_eq!(search_terms("a a A").len(), 1);
        assert_eq!(search_terms(&"w ".repeat(100)).len(), 1);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(search_terms(&many).len(), MAX_SEARCH_TERMS);
    }
}
