//! Knowledge (owners and admins): a chatbot's documents — upload, list,
//! delete, and a look at what retrieval returns — and the organization's
//! strategic context, which grounds every one of its chatbots.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use steward_domain::{ChatbotId, CrawlId, CrawlStatus, DocumentSource, DocumentStatus};
use steward_knowledge::{AddError, Original, Passage, add_originals, label_from};
use steward_store::{Crawl, Document, NewCrawl, TenantScope};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::idempotency;
use crate::state::SharedState;

pub fn router(state: &SharedState) -> OpenApiRouter<SharedState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(upload))
        .layer(DefaultBodyLimit::max(
            state.config.knowledge.upload_limit_bytes(),
        ));
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(add_url))
        .routes(routes!(start_crawl))
        .routes(routes!(list_documents))
        .routes(routes!(delete_document))
        .routes(routes!(search))
        .routes(routes!(list_context, add_context))
        .routes(routes!(delete_context))
}

/// How retrieval searches: `full_text` until an embedder is configured.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetrievalMode {
    FullText,
    Hybrid,
}

fn retrieval_mode(state: &SharedState) -> RetrievalMode {
    if state.retriever.uses_vectors() {
        RetrievalMode::Hybrid
    } else {
        RetrievalMode::FullText
    }
}

impl DocumentList {
    fn new(state: &SharedState, documents: Vec<Document>, crawls: Vec<Crawl>) -> Self {
        Self {
            documents: documents.into_iter().map(Into::into).collect(),
            crawls: crawls.into_iter().map(Into::into).collect(),
            retrieval: retrieval_mode(state),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DocumentDto {
    id: uuid::Uuid,
    /// None for the organization's context.
    chatbot_id: Option<uuid::Uuid>,
    source: DocumentSource,
    /// The file's name or the page's address, as given; only a label.
    label: String,
    url: Option<String>,
    /// The format found from the content, once ingestion has looked.
    content_type: Option<String>,
    bytes: i64,
    status: DocumentStatus,
    /// Why ingestion failed.
    error: Option<String>,
    chunk_count: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Document> for DocumentDto {
    fn from(d: Document) -> Self {
        Self {
            id: d.id.as_uuid(),
            chatbot_id: d.chatbot_id.map(|c| c.as_uuid()),
            source: d.source,
            label: d.label,
            url: d.url,
            content_type: d.content_type,
            bytes: d.bytes,
            status: d.status,
            error: d.error,
            chunk_count: d.chunk_count,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DocumentList {
    documents: Vec<DocumentDto>,
    /// The chatbot's crawls and their progress, newest first (none for context).
    crawls: Vec<CrawlDto>,
    retrieval: RetrievalMode,
}

#[derive(Serialize, ToSchema)]
pub struct CrawlDto {
    id: uuid::Uuid,
    url: String,
    max_pages: i32,
    max_depth: i32,
    status: CrawlStatus,
    /// Pages fetched and added as documents (each is ingested on its own).
    pages_done: i32,
    pages_failed: i32,
    pages_queued: i32,
    bytes: i64,
    /// Why it failed, or where it stopped.
    note: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Crawl> for CrawlDto {
    fn from(c: Crawl) -> Self {
        Self {
            id: c.id.as_uuid(),
            url: c.root_url,
            max_pages: c.max_pages,
            max_depth: c.max_depth,
            status: c.status,
            pages_done: c.progress.pages_done,
            pages_failed: c.progress.pages_failed,
            pages_queued: c.progress.pages_queued,
            bytes: c.progress.bytes,
            note: c.progress.note,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// Stores originals and their documents.
async fn store_documents(
    state: &SharedState,
    scope: &TenantScope,
    chatbot: Option<ChatbotId>,
    files: Vec<(String, Bytes)>,
    source: DocumentSource,
) -> ApiResult<Vec<Document>> {
    let originals = files
        .into_iter()
        .map(|(label, bytes)| Original { label, bytes })
        .collect();
    let stored = add_originals(
        state.store.as_ref(),
        &state.blobs,
        scope,
        chatbot,
        source,
        originals,
        state.config.knowledge.ingest_attempts,
    )
    .await
    .map_err(|e| match e {
        AddError::Blobs(e) => ApiError::Unavailable(format!("the blob store: {e}")),
        AddError::Store(e) => e.into(),
    })?;
    state.jobs_enqueued.notify_one();
    Ok(stored)
}

/// The multipart form of an upload: every part is a file, whatever its name.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the handler reads the parts as they stream
struct UploadForm {
    file: Vec<Vec<u8>>,
}

/// Upload files to a chatbot's knowledge (multipart, one or many parts).
/// Text, Markdown, HTML, CSV, JSON, PDF and DOCX are read; the format is found from the
/// content. Each file becomes a document that is ingested in the background:
/// watch its `status`. A file too large, or too many files, refuses the whole
/// upload and keeps nothing. With an `Idempotency-Key`, the upload takes
/// effect once: its digest is taken as it streams in.
#[utoipa::path(post, path = "/chatbots/{id}/knowledge/upload", tag = "knowledge", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    request_body(content = UploadForm, content_type = "multipart/form-data", description = "one or more file parts"),
    responses((status = 201, body = DocumentList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn upload(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, axum::Json<DocumentList>)> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    let chatbot = ChatbotId::from(id);
    // Whose chatbot it is decides before what the body is.
    state.store.chatbot(&scope, chatbot).await?;
    let mut multipart =
        multipart.map_err(|e| ApiError::bad_request("invalid_multipart", e.body_text()))?;
    let limits = &state.config.knowledge;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::bad_request("invalid_multipart", e.body_text())
        }
    };
    let mut files = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        if files.len() == limits.max_files_per_upload {
            return Err(ApiError::unprocessable(
                "too_many_files",
                format!("at most {} files per upload", limits.max_files_per_upload),
            ));
        }
        let Some(file_name) = field.file_name() else {
            return Err(ApiError::unprocessable(
                "not_a_file",
                format!(
                    "part '{}' is not a file: send files with a file name (curl -F 'file=@notes.pdf')",
                    field.name().unwrap_or_default()
                ),
            ));
        };
        let label = label_from(Some(file_name));
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            if bytes.len() + chunk.len() > limits.max_file_bytes {
                return Err(ApiError::PayloadTooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.is_empty() {
            return Err(ApiError::unprocessable(
                "empty_file",
                format!("'{label}' is empty"),
            ));
        }
        files.push((label, Bytes::from(bytes)));
    }
    if files.is_empty() {
        return Err(ApiError::bad_request(
            "no_files",
            "the upload holds no file parts",
        ));
    }
    let answering = state.clone();
    idempotency::answer_from(StatusCode::CREATED, move |d: &Vec<Document>| {
        DocumentList::new(&answering, d.clone(), Vec::new())
    });
    let documents =
        store_documents(&state, &scope, Some(chatbot), files, DocumentSource::Upload).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(DocumentList::new(&state, documents, Vec::new())),
    ))
}

/// A URL a user gave, if it may be fetched at all (its form, and its address
/// when it is one).
pub(crate) fn checked_url(
    state: &SharedState,
    url: &str,
) -> ApiResult<steward_knowledge::fetch::Url> {
    let url = steward_domain::WebUrl::parse("url", url)
        .map_err(|e| ApiError::unprocessable("url_refused", e.to_string()))?;
    state
        .fetcher
        .check_url(url.as_str())
        .map_err(|e| ApiError::unprocessable("url_refused", e.to_string()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUrl {
    /// An http(s) address on the public internet (private networks only when
    /// `outbound.allow_private_networks` is set).
    #[schema(schema_with = crate::contract::web_url)]
    url: String,
}

/// Add a web page to a chatbot's knowledge. It is fetched and ingested in
/// the background; adding the same URL again fetches it again and replaces
/// its passages once the new ones are ready.
#[utoipa::path(post, path = "/chatbots/{id}/knowledge/url", tag = "knowledge", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = AddUrl,
    responses((status = 201, body = DocumentDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "not an http(s) URL, or an address that is never fetched", body = ErrorBody)))]
async fn add_url(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
    Json(body): Json<AddUrl>,
) -> ApiResult<(StatusCode, axum::Json<DocumentDto>)> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    let chatbot = ChatbotId::from(id);
    state.store.chatbot(&scope, chatbot).await?;
    let url = checked_url(&state, &body.url)?;
    idempotency::answer_from(StatusCode::CREATED, |d: &Document| {
        DocumentDto::from(d.clone())
    });
    let document = steward_knowledge::add_url(
        state.store.as_ref(),
        &scope,
        chatbot,
        &url,
        state.config.knowledge.ingest_attempts,
    )
    .await?;
    state.jobs_enqueued.notify_one();
    Ok((StatusCode::CREATED, axum::Json(document.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartCrawl {
    /// Where the crawl starts; it stays on this host.
    url: String,
    /// Pages to fetch at most: 1 to `knowledge.crawl_max_pages` (default 50).
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    max_pages: Option<i32>,
    /// Links to follow from the start page at most: 0 to
    /// `knowledge.crawl_max_depth` (default 3).
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    max_depth: Option<i32>,
}

/// Crawl a site into a chatbot's knowledge: in the background, one page at a
/// time, honouring robots.txt and reading sitemap.xml. Each page becomes a
/// document; `GET …/knowledge` shows the crawl's progress.
#[utoipa::path(post, path = "/chatbots/{id}/knowledge/crawl", tag = "knowledge", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = StartCrawl,
    responses((status = 201, body = CrawlDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn start_crawl(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
    Json(body): Json<StartCrawl>,
) -> ApiResult<(StatusCode, axum::Json<CrawlDto>)> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    let chatbot = ChatbotId::from(id);
    state.store.chatbot(&scope, chatbot).await?;
    let limits = &state.config.knowledge;
    let max_pages = body.max_pages.unwrap_or(50.min(limits.crawl_max_pages));
    let max_depth = body.max_depth.unwrap_or(3.min(limits.crawl_max_depth));
    if !(1..=limits.crawl_max_pages).contains(&max_pages) {
        return Err(ApiError::unprocessable(
            "invalid_max_pages",
            format!("max_pages must be between 1 and {}", limits.crawl_max_pages),
        ));
    }
    if !(0..=limits.crawl_max_depth).contains(&max_depth) {
        return Err(ApiError::unprocessable(
            "invalid_max_depth",
            format!("max_depth must be between 0 and {}", limits.crawl_max_depth),
        ));
    }
    let url = checked_url(&state, &body.url)?;
    let new = NewCrawl {
        id: CrawlId::new(),
        chatbot_id: chatbot,
        root_url: steward_knowledge::crawl::canonical(&url).to_string(),
        max_pages,
        max_depth,
    };
    idempotency::answer_from(StatusCode::CREATED, |c: &Crawl| CrawlDto::from(c.clone()));
    let crawl = state
        .store
        .add_crawl(&scope, new, limits.ingest_attempts.max(3))
        .await?;
    state.jobs_enqueued.notify_one();
    Ok((StatusCode::CREATED, axum::Json(crawl.into())))
}

/// A chatbot's documents with their ingestion status, newest first.
#[utoipa::path(get, path = "/chatbots/{id}/knowledge", tag = "knowledge", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = DocumentList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_documents(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<axum::Json<DocumentList>> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    state.store.chatbot(&scope, id.into()).await?;
    let documents = state.store.documents(&scope, Some(id.into())).await?;
    let crawls = state.store.crawls(&scope, id.into()).await?;
    Ok(axum::Json(DocumentList::new(&state, documents, crawls)))
}

/// Deletes a document, its passages and its original.
async fn remove(
    state: &SharedState,
    scope: &TenantScope,
    document: Document,
) -> ApiResult<StatusCode> {
    let deleted = state.store.delete_document(scope, document.id).await?;
    if let Some(key) = deleted.blob_key {
        // The document is gone either way; an orphaned blob is only space.
        if let Err(e) = state.blobs.delete(&key).await {
            tracing::warn!(error = %e, key, "could not delete a deleted document's original");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a document from a chatbot's knowledge, with its passages and original.
#[utoipa::path(delete, path = "/chatbots/{id}/knowledge/{doc_id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("doc_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_document(
    State(state): State<SharedState>,
    auth: Auth,
    Path((id, doc_id)): Path<(uuid::Uuid, uuid::Uuid)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    let document = state.store.document(&scope, doc_id.into()).await?;
    if document.chatbot_id != Some(id.into()) {
        return Err(ApiError::NotFound);
    }
    remove(&state, &scope, document).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The question, as a user would ask it (1 to 1000 characters).
    #[param(required = true, min_length = 1, max_length = 1000)]
    q: Option<String>,
    /// Passages to return: 1 to 50, default the number put into answers.
    #[param(minimum = 1, maximum = 50)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct PassageDto {
    document_id: uuid::Uuid,
    label: String,
    url: Option<String>,
    heading: String,
    text: String,
    /// Fused rank score: higher is better; comparable within one search only.
    score: f64,
}

impl From<Passage> for PassageDto {
    fn from(p: Passage) -> Self {
        Self {
            document_id: p.document_id.as_uuid(),
            label: p.label,
            url: p.url,
            heading: p.heading,
            text: p.text,
            score: p.score,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    retrieval: RetrievalMode,
    passages: Vec<PassageDto>,
}

/// What retrieval returns for a question: the passages an answer would be
/// grounded in (the chatbot's documents and the organization's context).
#[utoipa::path(get, path = "/chatbots/{id}/knowledge/search", tag = "knowledge", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), SearchQuery),
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn search(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<uuid::Uuid>,
    Query(query): Query<SearchQuery>,
) -> ApiResult<axum::Json<SearchResults>> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    state.store.chatbot(&scope, id.into()).await?;
    let q = query.q.unwrap_or_default();
    if q.trim().is_empty() || q.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q must hold 1 to 1000 characters",
        ));
    }
    let limit = match query.limit {
        None => state.config.knowledge.passages_per_answer,
        Some(n) if (1..=50).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "limit must be between 1 and 50",
            ));
        }
    };
    let passages = state
        .retriever
        .retrieve(&scope, id.into(), &q, limit)
        .await?;
    Ok(axum::Json(SearchResults {
        retrieval: retrieval_mode(&state),
        passages: passages.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddContext {
    /// 1 to 200 characters: how the document is cited.
    #[schema(schema_with = crate::contract::display_name)]
    title: String,
    /// The context itself: plain text or Markdown.
    #[schema(schema_with = crate::contract::document_text)]
    text: String,
}

/// The organization's strategic context documents, newest first.
#[utoipa::path(get, path = "/organizations/context", tag = "knowledge", security(("bearer" = [])),
    responses((status = 200, body = DocumentList), (status = 403, body = ErrorBody)))]
async fn list_context(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<DocumentList>> {
    auth.require_admin()?;
    let documents = state.store.documents(&auth.0.scope(), None).await?;
    Ok(axum::Json(DocumentList::new(&state, documents, Vec::new())))
}

/// Add a strategic context document (mission, priorities, policies): every
/// chatbot of the organization draws on it. Ingested in the background.
#[utoipa::path(post, path = "/organizations/context", tag = "knowledge", security(("bearer" = [])),
    request_body = AddContext,
    responses((status = 201, body = DocumentDto), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_context(
    State(state): State<SharedState>,
    auth: Auth,
    Json(body): Json<AddContext>,
) -> ApiResult<(StatusCode, axum::Json<DocumentDto>)> {
    auth.require_admin()?;
    let title = body.title.trim();
    if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_title",
            "title must hold 1 to 200 characters, without control characters",
        ));
    }
    if body.text.trim().is_empty() {
        return Err(ApiError::unprocessable("empty_text", "text is empty"));
    }
    let max = crate::contract::MAX_DOCUMENT_TEXT_CHARS;
    if body.text.chars().count() > max {
        return Err(ApiError::unprocessable(
            "text_too_long",
            format!("text must be at most {max} characters; upload a file for more"),
        ));
    }
    idempotency::answer_from(StatusCode::CREATED, |d: &Vec<Document>| {
        DocumentDto::from(d[0].clone())
    });
    let documents = store_documents(
        &state,
        &auth.0.scope(),
        None,
        vec![(title.to_owned(), Bytes::from(body.text))],
        DocumentSource::Context,
    )
    .await?;
    let document = documents.into_iter().next().expect("one document stored");
    Ok((StatusCode::CREATED, axum::Json(document.into())))
}

/// Remove a strategic context document.
#[utoipa::path(delete, path = "/organizations/context/{doc_id}", tag = "knowledge", security(("bearer" = [])),
    params(("doc_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_context(
    State(state): State<SharedState>,
    auth: Auth,
    Path(doc_id): Path<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    let document = state.store.document(&scope, doc_id.into()).await?;
    if document.chatbot_id.is_some() {
        return Err(ApiError::NotFound);
    }
    remove(&state, &scope, document).await
}
