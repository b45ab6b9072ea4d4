//! The blob store: where originals are kept, behind `object_store` so that a
//! local folder and S3 are one interface. Keys are made by Steward from ids
//! (`orgs/{org}/documents/{id}`), never from a name a user chose.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use steward_config::StorageConfig;
use steward_domain::{ChatbotId, DocumentId, OrgId};

/// Where exports of people's data are kept: they live for a day and hold
/// memory in clear, so backups leave them out.
pub const EXPORTS_PREFIX: &str = "exports/";

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

    /// From `storage.url`: `file:///PATH`, `s3://BUCKET[/PREFIX]`, or
    /// `blobs/` in the data dir when unset.
    pub fn from_config(storage: &StorageConfig, data_dir: &Path) -> Result<Self, BlobError> {
        match storage.url.as_deref() {
            Some(url) => Self::at(url, storage),
            None => Self::local(&data_dir.join("blobs")),
        }
    }

    /// The store `url` names (`file:///PATH` or `s3://BUCKET[/PREFIX]`), with
    /// the `storage.s3_*` settings for S3.
    pub fn at(url: &str, storage: &StorageConfig) -> Result<Self, BlobError> {
        if let Some(path) = url.strip_prefix("file://")
            && path.starts_with('/')
        {
            return Self::local(Path::new(path));
        }
        match url
            .strip_prefix("s3://")
            .map(|rest| rest.split_once('/').unwrap_or((rest, "")))
        {
            Some((bucket, prefix)) if !bucket.is_empty() => Self::s3(storage, bucket, prefix),
            _ => Err(BlobError::Unavailable(format!(
                "storage.url '{url}' is not supported: use file:///PATH or s3://BUCKET[/PREFIX]"
            ))),
        }
    }

    /// An S3 bucket (or an S3-compatible one at `s3_endpoint`). Settings
    /// left unset come from the usual `AWS_*` variables, then the instance's
    /// or pod's role. Requests give up within seconds rather than the
    /// client's default minutes: an upload waits on them.
    fn s3(storage: &StorageConfig, bucket: &str, prefix: &str) -> Result<Self, BlobError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Some(endpoint) = &storage.s3_endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &storage.s3_region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &storage.s3_access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &storage.s3_secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        let s3 = builder.build()?;
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(Self { store })
    }

    /// Where an uploaded document's original is kept.
    pub fn document_key(org: OrgId, document: DocumentId) -> String {
        format!("orgs/{org}/documents/{document}")
    }

    /// Where a web page's latest copy is kept: one key per chatbot and URL,
    /// as there is one document per chatbot and URL, so that whoever fetches
    /// the page (a crawl, or adding the URL) writes where its document reads.
    pub fn page_key(org: OrgId, chatbot: ChatbotId, url: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(url.as_bytes()));
        format!("orgs/{org}/pages/{chatbot}/{digest}")
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

    /// Every key under `prefix` (all when empty), sorted.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        use futures::TryStreamExt;
        let prefix = (!prefix.is_empty()).then(|| Key::from(prefix));
        let mut keys: Vec<String> = self
            .store
            .list(prefix.as_ref())
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// Streams a local file to `key` in parts, so a large file never sits in
    /// memory. Nothing is left at `key` when it fails.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<(), BlobError> {
        use tokio::io::AsyncWriteExt;
        let io = |e: std::io::Error| BlobError::Unavailable(format!("{}: {e}", file.display()));
        let mut source = tokio::fs::File::open(file).await.map_err(io)?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), Key::from(key));
        if let Err(e) = tokio::io::copy(&mut source, &mut writer).await {
            let _ = writer.abort().await;
            return Err(BlobError::Unavailable(format!("uploading {key}: {e}")));
        }
        // A failed completion leaves no object: S3 assembles parts only then.
        writer
            .shutdown()
            .await
            .map_err(|e| BlobError::Unavailable(format!("uploading {key}: {e}")))
    }

    /// Streams `key` into a new local file.
    pub async fn get_to_file(&self, key: &str, file: &Path) -> Result<(), BlobError> {
        use futures::TryStreamExt;
        use tokio::io::AsyncWriteExt;
        let io = |e: std::io::Error| BlobError::Unavailable(format!("{}: {e}", file.display()));
        let mut stream = self.store.get(&Key::from(key)).await?.into_stream();
        let mut out = tokio::fs::File::create(file).await.map_err(io)?;
        while let Some(chunk) = stream.try_next().await? {
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.sync_all().await.map_err(io)?;
        Ok(())
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
        let blobs = Blobs::from_config(&StorageConfig::default(), dir.path()).unwrap();
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
        for url in ["file://relative", "s3://", "gs://bucket"] {
            let storage = StorageConfig {
                url: Some(url.into()),
                ..StorageConfig::default()
            };
            assert!(Blobs::from_config(&storage, dir.path()).is_err(), "{url}");
        }
    }
}
