//! Adding a document with its original: the original goes to the blob store
//! first, then the document and its ingest job in one transaction; if that
//! fails, the original is deleted again.

use bytes::Bytes;
use steward_domain::{ChatbotId, DocumentId, DocumentSource};
use steward_store::{Document, NewDocument, Store, StoreError, TenantScope};

use crate::blobs::{BlobError, Blobs};

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Blobs(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Original {
    /// What people see: a file name, a title. Never used as a path.
    pub label: String,
    pub bytes: Bytes,
}

/// Keeps one original in the blob store and adds its document (see
/// [`add_originals`]).
pub async fn add_original(
    store: &dyn Store,
    blobs: &Blobs,
    scope: &TenantScope,
    chatbot: Option<ChatbotId>,
    source: DocumentSource,
    original: Original,
    ingest_attempts: i32,
) -> Result<Document, AddError> {
    let mut added = add_originals(
        store,
        blobs,
        scope,
        chatbot,
        source,
        vec![original],
        ingest_attempts,
    )
    .await?;
    Ok(added.remove(0))
}

/// Keeps the originals in the blob store, then adds their documents, each
/// queued for ingestion, in one transaction: all of them or none. The
/// originals of documents that were not added are deleted again.
pub async fn add_originals(
    store: &dyn Store,
    blobs: &Blobs,
    scope: &TenantScope,
    chatbot: Option<ChatbotId>,
    source: DocumentSource,
    originals: Vec<Original>,
    ingest_attempts: i32,
) -> Result<Vec<Document>, AddError> {
    let mut documents = Vec::with_capacity(originals.len());
    for original in originals {
        let id = DocumentId::new();
        let key = Blobs::document_key(scope.org_id(), id);
        let bytes = original.bytes.len() as i64;
        if let Err(e) = blobs.put(&key, original.bytes).await {
            forget(blobs, &documents).await;
            return Err(e.into());
        }
        documents.push(NewDocument {
            id,
            chatbot_id: chatbot,
            source,
            label: original.label,
            url: None,
            blob_key: Some(key),
            bytes,
        });
    }
    match store
        .add_documents(scope, documents.clone(), ingest_attempts)
        .await
    {
        Ok(added) => Ok(added),
        Err(e) => {
            forget(blobs, &documents).await;
            Err(e.into())
        }
    }
}

/// Deletes the originals of documents that were not added.
async fn forget(blobs: &Blobs, documents: &[NewDocument]) {
    for key in documents.iter().filter_map(|d| d.blob_key.as_deref()) {
        if let Err(e) = blobs.delete(key).await {
            tracing::warn!(error = %e, key, "could not delete an unused original");
        }
    }
}

/// Adds a page by its URL (checked already, see [`crate::fetch::Fetcher::check_url`]);
/// the ingest job fetches it. The same URL again re-queues its document.
pub async fn add_url(
    store: &dyn Store,
    scope: &TenantScope,
    chatbot: ChatbotId,
    url: &reqwest::Url,
    ingest_attempts: i32,
) -> Result<Document, StoreError> {
    let id = DocumentId::new();
    let new = NewDocument {
        id,
        chatbot_id: Some(chatbot),
        source: DocumentSource::Url,
        label: url.to_string(),
        url: Some(url.to_string()),
        blob_key: Some(Blobs::page_key(scope.org_id(), chatbot, url.as_str())),
        bytes: 0,
    };
    store.add_document(scope, new, ingest_attempts).await
}

/// A file's name as a label: no folders, no control characters, at most 200
/// characters.
pub fn label_from(name: Option<&str>) -> String {
    let base = name
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    match clean.trim() {
        "" | "." | ".." => "upload".to_owned(),
        label => label.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_labels_never_paths() {
        assert_eq!(label_from(Some("../../etc/passwd")), "passwd");
        assert_eq!(label_from(Some("C:\\Users\\x\\notes.md")), "notes.md");
        assert_eq!(label_from(Some("..")), "upload");
        assert_eq!(label_from(None), "upload");
        assert_eq!(label_from(Some("a\u{0}b\nc.txt")), "abc.txt");
        assert_eq!(label_from(Some(&"x".repeat(500))).len(), 200);
    }
}
