//! The `ingest` job: a document's original → format → text → passages →
//! indexed. A document that cannot be read ends `failed` with a reason for
//! the person who gave it; the job itself succeeds, because retrying would
//! read the same bytes the same way. Only an unreachable blob store or site is
//! retried. A URL's page is fetched (see [`crate::fetch`]) and kept as its
//! original, so that what was indexed can be looked at later.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use steward_config::KnowledgeConfig;
use steward_domain::DocumentSource;
use steward_domain::jobs::{IndexVectorsArgs, IngestArgs};
use steward_jobs::{JobError, JobHandler};
use steward_llm::Embeddings;
use steward_store::{Ingested, Job, Store, StoreError, TenantScope};

use crate::blobs::{BlobError, Blobs};
use crate::chunk::chunk;
use crate::extract::{Limits, extract};
use crate::fetch::{FetchError, Fetcher};
use crate::pdf::{PdfReader, ReadError, pieces};
use crate::sniff::{Format, sniff};

pub struct Ingest {
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub fetcher: Fetcher,
    /// Vectors for the passages, when configured.
    pub embedder: Option<Arc<Embeddings>>,
    pub pdf: PdfReader,
    pub limits: KnowledgeConfig,
}

/// Reads a document's bytes into passages, or says why it cannot. Parsing
/// is CPU work on untrusted bytes: PDF in a child process, the rest off the
/// async threads, where a panic in a parser fails the document, not the worker.
pub async fn prepare(
    bytes: bytes::Bytes,
    limits: &KnowledgeConfig,
    pdf: &PdfReader,
) -> Result<Ingested, ReadError> {
    let format = sniff(&bytes).map_err(ReadError::Unreadable)?;
    let read = Limits {
        max_bytes: limits.max_text_bytes,
        cpu: Duration::from_secs(limits.read_cpu_secs),
    };
    let limits = limits.clone();
    let pages = match format {
        Format::Pdf => Some(pdf.read(&bytes).await?),
        _ => None,
    };
    tokio::task::spawn_blocking(move || {
        let extracted = match pages {
            Some(pages) => pieces(&pages, read)?,
            None => extract(format, &bytes, read)?,
        };
        passages(&bytes, format, extracted, &limits)
    })
    .await
    .unwrap_or_else(|_| Err("the document could not be read (its parser failed)".into()))
    .map_err(ReadError::Unreadable)
}

fn passages(
    bytes: &[u8],
    format: Format,
    extracted: crate::extract::Extracted,
    limits: &KnowledgeConfig,
) -> Result<Ingested, String> {
    let chunks = chunk(
        &extracted.pieces,
        limits.chunk_chars,
        limits.chunk_overlap_chars,
    );
    if chunks.is_empty() {
        return Err("the document holds no text".into());
    }
    Ok(Ingested {
        bytes: bytes.len() as i64,
        content_type: format.media_type().to_owned(),
        content_hash: hex::encode(Sha256::digest(bytes)),
        chunks,
    })
}

#[async_trait]
impl JobHandler for Ingest {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let org = job
            .org_id
            .ok_or_else(|| JobError::Permanent("an ingest job names no organization".into()))?;
        let id = job.args::<IngestArgs>()?.document_id;
        let scope = TenantScope::for_job(org);
        let document = match self.store.document(&scope, id).await {
            Ok(document) => document,
            Err(StoreError::NotFound) => return Ok(()), // deleted meanwhile
            Err(e) => return Err(e.into()),
        };
        self.store.start_ingest(&scope, id).await?;
        let fail = |reason: String| async move {
            metrics::counter!("steward_knowledge_documents_total", "status" => "failed")
                .increment(1);
            tracing::info!(document = %id, %reason, "document failed");
            match self.store.fail_ingest(&scope, id, &reason).await {
                Ok(()) | Err(StoreError::NotFound) => Ok(()),
                Err(e) => Err(e.into()),
            }
        };

        let Some(key) = document.blob_key.clone() else {
            return fail("this document has no original to read".into()).await;
        };
        if let (DocumentSource::Url, Some(url)) = (document.source, &document.url) {
            // A page is fetched on every ingest: adding a URL again refreshes it.
            // (A crawled page was fetched by its crawl.)
            match self.fetcher.fetch(url).await {
                Ok(page) => {
                    if let Err(e) = self.blobs.put(&key, page.bytes).await {
                        return Err(JobError::Retryable(format!("blob store: {e}")));
                    }
                }
                Err(FetchError::Failed(why)) if job.attempts < job.max_attempts => {
                    return Err(JobError::Retryable(why));
                }
                // Out of reach on every attempt: the document says why, and
                // the job ends dead rather than `succeeded` (retried once the
                // site answers, it fetches again). A page that answered but
                // cannot be used is the document's news alone.
                Err(FetchError::Failed(why)) => {
                    fail(why.clone()).await?;
                    return Err(JobError::Permanent(why));
                }
                Err(e) => return fail(e.to_string()).await,
            }
        }
        let bytes = match self.blobs.get(&key).await {
            Ok(bytes) => bytes,
            Err(BlobError::NotFound) => {
                return fail("the original file is missing from storage".into()).await;
            }
            Err(BlobError::Unavailable(e)) if job.attempts < job.max_attempts => {
                return Err(JobError::Retryable(format!("blob store: {e}")));
            }
            Err(BlobError::Unavailable(e)) => {
                fail("the original file could not be read from storage".into()).await?;
                return Err(JobError::Permanent(format!("blob store: {e}")));
            }
        };

        match prepare(bytes, &self.limits, &self.pdf).await {
            Ok(mut ingested) => {
                if let Some(embedder) = &self.embedder {
                    self.embed(embedder, job, &mut ingested).await?;
                }
                let chunks = ingested.chunks.len() as u64;
                match self.store.finish_ingest(&scope, id, ingested).await {
                    Ok(()) | Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
                metrics::counter!("steward_knowledge_documents_total", "status" => "ready")
                    .increment(1);
                metrics::counter!("steward_knowledge_chunks_total").increment(chunks);
                tracing::info!(document = %id, chunks, "document ready");
                Ok(())
            }
            Err(ReadError::Retry(why)) if job.attempts < job.max_attempts => {
                Err(JobError::Retryable(why))
            }
            Err(ReadError::Retry(why) | ReadError::Unreadable(why)) => fail(why).await,
        }
    }
}

/// The `index_vectors` job: puts the vectors of a document's passages,
/// stored by its ingest, into the vector index, a batch per transaction, so
/// that a job stopped half way keeps what it did and its next attempt finds
/// only what still waits.
pub struct IndexVectors {
    pub store: Arc<dyn Store>,
}

/// Vectors a transaction puts into the index: about a second's work for
/// PostgreSQL's HNSW graph at 200,000 passages.
const VECTORS_PER_BATCH: u32 = 100;

#[async_trait]
impl JobHandler for IndexVectors {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let org = job.org_id.ok_or_else(|| {
            JobError::Permanent("an index_vectors job names no organization".into())
        })?;
        let document = job.args::<IndexVectorsArgs>()?.document_id;
        let scope = TenantScope::for_job(org);
        let mut indexed = 0;
        loop {
            let moved = self
                .store
                .index_vectors(&scope, document, VECTORS_PER_BATCH)
                .await?;
            if moved == 0 {
                break;
            }
            indexed += moved;
        }
        tracing::debug!(%document, indexed, "vectors indexed");
        Ok(())
    }
}

impl Ingest {
    /// Adds vectors to the passages. While the embedder fails, the job is
    /// retried; on its last attempt the document is indexed for full text
    /// alone rather than not at all.
    async fn embed(
        &self,
        embedder: &Embeddings,
        job: &Job,
        ingested: &mut Ingested,
    ) -> Result<(), JobError> {
        let texts: Vec<String> = ingested
            .chunks
            .iter()
            .map(|c| {
                if c.heading.is_empty() {
                    c.text.clone()
                } else {
                    format!("{}\n{}", c.heading, c.text)
                }
            })
            .collect();
        match embedder.embed(&texts).await {
            Ok(vectors) => {
                for (chunk, vector) in ingested.chunks.iter_mut().zip(vectors) {
                    chunk.embedding = Some(vector);
                }
                Ok(())
            }
            Err(e) if e.is_transient() && job.attempts < job.max_attempts => {
                Err(JobError::Retryable(e.to_string()))
            }
            Err(e) => {
                metrics::counter!("steward_embedding_errors_total").increment(1);
                tracing::warn!(error = %e, "document indexed for full text only: the embedder failed");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prepare_gives_typed_hashed_passages_or_a_reason() {
        let limits = KnowledgeConfig::default();
        // Never started: only PDF goes to the child.
        let pdf = PdfReader::new(
            "/nonexistent",
            [""; 0],
            crate::pdf::PdfLimits::from_config(&limits),
        );
        let ready = prepare(
            bytes::Bytes::from_static(b"# Hours\n\nOpen nine to five."),
            &limits,
            &pdf,
        )
        .await
        .unwrap();
        assert_eq!(ready.content_type, "text/markdown");
        assert_eq!(ready.content_hash.len(), 64);
        assert_eq!(ready.chunks[0].heading, "Hours");
        assert_eq!(ready.chunks[0].text, "Open nine to five.");
        let binary = prepare(
            bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n\0\0"),
            &limits,
            &pdf,
        )
        .await;
        assert!(matches!(binary, Err(ReadError::Unreadable(why)) if why.contains("binary")));
        let no_reader = prepare(bytes::Bytes::from_static(b"%PDF-1.4\n"), &limits, &pdf).await;
        assert!(matches!(no_reader, Err(ReadError::Retry(why)) if why.contains("could not start")));
    }
}
