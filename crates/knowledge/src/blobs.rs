//! The blob store: where originals are kept, behind `object_store` so that a
//! local folder and S3 are one interface. Keys are made by Steward from ids
//! (`orgs/{org}/documents/{id}`), never from a name a user chose.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use steward_domain::{DocumentId, OrgId};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no such blob")]
    NotFound,
    #[error("blob store: {0}")]
    Unavailable(String),
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound,
            other => BlobError::Unavailable(other.to_string()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
}

impl Blobs {
    /// A local folder, created if missing.
    pub fn local(folder: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(folder)
            .map_err(|e| BlobError::Unavailable(format!("{}: {e}", folder.display())))?;
        let store = LocalFileSystem::new_with_prefix(folder)?.with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// From `storage.url` (`file:///PATH`), or `blobs/` in the data dir when unset.
    pub fn from_config(url: Option<&str>, data_dir: &Path) -> Result<Self, BlobError> {
        match url {
            None => Self::local(&data_dir.join("blobs")),
            Some(url) => match url.strip_prefix("file://") {
                Some(path) if path.starts_with('/') => Self::local(Path::new(path)),
                _ => Err(BlobError::Unavailable(format!(
                    "storage.url '{url}' is not supported: use file:///PATH"
                ))),
            },
        }
    }

    /// Where a document's original is kept.
    pub fn document_key(org: OrgId, document: DocumentId) -> String {
        format!("orgs/{org}/documents/{document}")
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.store
            .put(&Key::from(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        Ok(self.store.get(&Key::from(key)).await?.bytes().await?)
    }

    /// Deletes a blob; one already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_and_deleting_twice_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::from_config(None, dir.path()).unwrap();
        let key = Blobs::document_key(OrgId::new(), DocumentId::new());
        blobs
            .put(&key, Bytes::from_static(b"\x00binary\xff"))
            .await
            .unwrap();
        assert_eq!(&blobs.get(&key).await.unwrap()[..], b"\x00binary\xff");
        assert!(dir.path().join("blobs").join(&key).is_file());
        blobs.delete(&key).await.unwrap();
        blobs.delete(&key).await.unwrap();
        assert!(matches!(blobs.get(&key).await, Err(BlobError::NotFound)));
        assert!(Blobs::from_config(Some("s3://bucket"), dir.path()).is_err());
        assert!(Blobs::from_config(Some("file://relative"), dir.path()).is_err());
    }
}
