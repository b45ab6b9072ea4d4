//! [`KnowledgeStore`], for every backend: documents, their ingestion and
//! crawls. How passages are stored and searched is each dialect's
//! ([`SqlBackend::insert_chunks`], [`crate::SearchStore`]).

use async_trait::async_trait;
use serde_json::{Value as Json, json};
use steward_domain::jobs::{CrawlArgs, IndexVectorsArgs, IngestArgs};
use steward_domain::{ChatbotId, CrawlId, CrawlStatus, DocumentId, DocumentStatus};

use crate::sql::{Db, Row, SqlBackend, audit, commit, commit_with, insert_job, rows, sql};
use crate::*;

/// Attempts of an `index_vectors` job: it fails only when the database
/// does, and a run again finds only what is still waiting.
const INDEX_VECTORS_ATTEMPTS: i32 = 10;

/// Reasons are for people to read: long ones are cut.
const MAX_REASON_CHARS: usize = 500;

fn reason(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}

async fn set_status(
    tx: &mut impl Db,
    scope: &TenantScope,
    id: DocumentId,
    status: DocumentStatus,
    error: Option<&str>,
) -> StoreResult<()> {
    let updated = tx
        .execute(
            sql(
                "UPDATE documents SET status = $1, error = $2, updated_at = $3
                 WHERE id = $4 AND org_id = $5",
            )
            .bind(status)
            .bind(error.map(reason))
            .bind(now())
            .bind(id)
            .bind(scope.org_id()),
        )
        .await?;
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

async fn document_in(
    db: &mut impl Db,
    scope: &TenantScope,
    id: DocumentId,
) -> StoreResult<Document> {
    let row = db
        .fetch_one(
            sql("SELECT * FROM documents WHERE id = $1 AND org_id = $2")
                .bind(id)
                .bind(scope.org_id()),
        )
        .await?;
    rows::document(&row)
}

async fn crawl_in(db: &mut impl Db, scope: &TenantScope, id: CrawlId) -> StoreResult<Crawl> {
    let row = db
        .fetch_one(
            sql("SELECT * FROM crawls WHERE id = $1 AND org_id = $2")
                .bind(id)
                .bind(scope.org_id()),
        )
        .await?;
    rows::crawl(&row)
}

/// Adds one document (or queues a known URL's again) in `tx`.
async fn add_document_in<B: SqlBackend>(
    tx: &mut B::Tx,
    scope: &TenantScope,
    new: NewDocument,
    ingest_attempts: i32,
) -> StoreResult<Document> {
    let org = scope.org_id();
    let at = now();
    if let Some(chatbot) = new.chatbot_id {
        tx.fetch_one(
            sql("SELECT 1 AS one FROM chatbots WHERE id = $1 AND org_id = $2")
                .bind(chatbot)
                .bind(org),
        )
        .await?;
    }
    let existing = match &new.url {
        Some(url) => tx
            .fetch_optional(
                sql("SELECT id FROM documents
                     WHERE org_id = $1 AND chatbot_id IS NOT DISTINCT FROM $2 AND url = $3")
                .bind(org)
                .bind(new.chatbot_id)
                .bind(url.as_str()),
            )
            .await?
            .map(|row| row.get::<DocumentId>("id"))
            .transpose()?,
        None => None,
    };
    let id = match existing {
        Some(id) => {
            set_status(tx, scope, id, DocumentStatus::Queued, None).await?;
            // The caller may have written the new original already.
            tx.execute(
                sql("UPDATE documents SET blob_key = coalesce($1, blob_key)
                     WHERE id = $2 AND org_id = $3")
                .bind(new.blob_key.as_deref())
                .bind(id)
                .bind(org),
            )
            .await?;
            audit(
                tx,
                scope,
                "document.refresh",
                &format!("document:{id}"),
                json!({ "url": new.url }),
            )
            .await?;
            id
        }
        None => {
            tx.execute(
                sql("INSERT INTO documents (id, org_id, chatbot_id, source, label, url, blob_key, bytes,
                                            status, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $9)")
                .bind(new.id)
                .bind(org)
                .bind(new.chatbot_id)
                .bind(new.source)
                .bind(new.label.as_str())
                .bind(new.url.as_deref())
                .bind(new.blob_key.as_deref())
                .bind(new.bytes)
                .bind(at),
            )
            .await?;
            audit(
                tx,
                scope,
                "document.create",
                &format!("document:{}", new.id),
                json!({ "chatbot_id": new.chatbot_id, "source": new.source, "label": new.label }),
            )
            .await?;
            new.id
        }
    };
    insert_job::<B>(
        tx,
        &NewJob::of(&IngestArgs { document_id: id }, ingest_attempts).for_org(org),
    )
    .await?;
    document_in(tx, scope, id).await
}

#[async_trait]
impl<B: SqlBackend> KnowledgeStore for B {
    async fn add_document(
        &self,
        scope: &TenantScope,
        new: NewDocument,
        ingest_attempts: i32,
    ) -> StoreResult<Document> {
        let mut tx = self.begin().await?;
        let document = add_document_in::<B>(&mut tx, scope, new, ingest_attempts).await?;
        commit_with::<B>(tx, &document).await?;
        Ok(document)
    }

    async fn add_documents(
        &self,
        scope: &TenantScope,
        new: Vec<NewDocument>,
        ingest_attempts: i32,
    ) -> StoreResult<Vec<Document>> {
        let mut tx = self.begin().await?;
        let mut documents = Vec::with_capacity(new.len());
        for new in new {
            documents.push(add_document_in::<B>(&mut tx, scope, new, ingest_attempts).await?);
        }
        commit_with::<B>(tx, &documents).await?;
        Ok(documents)
    }

    async fn documents(
        &self,
        scope: &TenantScope,
        chatbot: Option<ChatbotId>,
    ) -> StoreResult<Vec<Document>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT * FROM documents WHERE org_id = $1 AND chatbot_id IS NOT DISTINCT FROM $2
                     ORDER BY created_at DESC, id DESC")
                .bind(scope.org_id())
                .bind(chatbot),
            )
            .await?;
        found.iter().map(rows::document).collect()
    }

    async fn document(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<Document> {
        document_in(&mut self.read().await?, scope, id).await
    }

    async fn start_ingest(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        set_status(&mut tx, scope, id, DocumentStatus::Processing, None).await?;
        commit::<B>(tx).await
    }

    async fn finish_ingest(
        &self,
        scope: &TenantScope,
        id: DocumentId,
        ingested: Ingested,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let document = document_in(&mut tx, scope, id).await?;
        tx.execute(sql("DELETE FROM chunks WHERE document_id = $1").bind(id))
            .await?;
        let vectors_wait = B::insert_chunks(
            &mut tx,
            scope.org_id(),
            document.chatbot_id,
            id,
            &ingested.chunks,
        )
        .await?;
        if vectors_wait {
            let job = NewJob::of(
                &IndexVectorsArgs { document_id: id },
                INDEX_VECTORS_ATTEMPTS,
            );
            insert_job::<B>(&mut tx, &job.for_org(scope.org_id())).await?;
        }
        tx.execute(
            sql("UPDATE documents SET status = 'ready', error = NULL, content_type = $1, content_hash = $2,
                     chunk_count = $3, updated_at = $4, bytes = $5
                 WHERE id = $6 AND org_id = $7")
            .bind(ingested.content_type.as_str())
            .bind(ingested.content_hash.as_str())
            .bind(ingested.chunks.len() as i64)
            .bind(now())
            .bind(ingested.bytes)
            .bind(id)
            .bind(scope.org_id()),
        )
        .await?;
        commit::<B>(tx).await?;
        self.chunks_changed();
        Ok(())
    }

    async fn fail_ingest(
        &self,
        scope: &TenantScope,
        id: DocumentId,
        reason: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        set_status(&mut tx, scope, id, DocumentStatus::Failed, Some(reason)).await?;
        commit::<B>(tx).await
    }

    async fn delete_document(&self, scope: &TenantScope, id: DocumentId) -> StoreResult<Document> {
        let mut tx = self.begin().await?;
        let document = document_in(&mut tx, scope, id).await?;
        tx.execute(
            sql("DELETE FROM documents WHERE id = $1 AND org_id = $2")
                .bind(id)
                .bind(scope.org_id()),
        )
        .await?;
        audit(
            &mut tx,
            scope,
            "document.delete",
            &format!("document:{id}"),
            json!({ "chatbot_id": document.chatbot_id, "label": document.label }),
        )
        .await?;
        commit::<B>(tx).await?;
        self.chunks_changed();
        Ok(document)
    }

    async fn add_crawl(
        &self,
        scope: &TenantScope,
        new: NewCrawl,
        attempts: i32,
    ) -> StoreResult<Crawl> {
        let org = scope.org_id();
        let at = now();
        let mut tx = self.begin().await?;
        tx.fetch_one(
            sql("SELECT 1 AS one FROM chatbots WHERE id = $1 AND org_id = $2")
                .bind(new.chatbot_id)
                .bind(org),
        )
        .await?;
        tx.execute(
            sql("INSERT INTO crawls (id, org_id, chatbot_id, root_url, max_pages, max_depth, status, state,
                                     created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $8)")
            .bind(new.id)
            .bind(org)
            .bind(new.chatbot_id)
            .bind(new.root_url.as_str())
            .bind(new.max_pages)
            .bind(new.max_depth)
            .bind(json!({}))
            .bind(at),
        )
        .await?;
        audit(
            &mut tx,
            scope,
            "crawl.create",
            &format!("crawl:{}", new.id),
            json!({ "chatbot_id": new.chatbot_id, "url": new.root_url }),
        )
        .await?;
        insert_job::<B>(
            &mut tx,
            &NewJob::of(&CrawlArgs { crawl_id: new.id }, attempts).for_org(org),
        )
        .await?;
        let crawl = crawl_in(&mut tx, scope, new.id).await?;
        commit_with::<B>(tx, &crawl).await?;
        Ok(crawl)
    }

    async fn crawls(&self, scope: &TenantScope, chatbot: ChatbotId) -> StoreResult<Vec<Crawl>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql("SELECT * FROM crawls WHERE org_id = $1 AND chatbot_id = $2
                     ORDER BY created_at DESC, id DESC")
                .bind(scope.org_id())
                .bind(chatbot),
            )
            .await?;
        found.iter().map(rows::crawl).collect()
    }

    async fn crawl(&self, scope: &TenantScope, id: CrawlId) -> StoreResult<Crawl> {
        crawl_in(&mut self.read().await?, scope, id).await
    }

    async fn save_crawl(
        &self,
        scope: &TenantScope,
        id: CrawlId,
        status: CrawlStatus,
        progress: &CrawlProgress,
        state: &Json,
        next: Option<NewJob>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let updated = tx
            .execute(
                sql("UPDATE crawls SET status = $1, pages_done = $2, pages_failed = $3, pages_queued = $4,
                         bytes = $5, note = $6, state = $7, updated_at = $8
                     WHERE id = $9 AND org_id = $10")
                .bind(status)
                .bind(progress.pages_done)
                .bind(progress.pages_failed)
                .bind(progress.pages_queued)
                .bind(progress.bytes)
                .bind(progress.note.as_deref().map(reason))
                .bind(state)
                .bind(now())
                .bind(id)
                .bind(scope.org_id()),
            )
            .await?;
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(next) = next {
            insert_job::<B>(&mut tx, &next).await?;
        }
        commit::<B>(tx).await
    }
}
