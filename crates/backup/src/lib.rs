//! Backups: `steward backup create | list | verify | restore`, and the
//! nightly `backup` job.
//!
//! A backup is a folder named by its UTC start time
//! (`20261122T024000.123Z`) holding the database (SQLite: an online copy by
//! `VACUUM INTO`, gzipped; PostgreSQL: `pg_dump` custom format), the blob
//! store as a gzipped tar, each sealed under the backup key ([`crypt`]), and
//! a manifest with each file's size and SHA-256. It is written under
//! `.incomplete-{id}` and renamed into place only when complete, so a failed
//! run (a full disk, say) leaves nothing half-made and the earlier backups
//! as they were. With `backup.s3_url` set, each backup is then copied to S3,
//! manifest last. Retention runs after each successful backup only.
//!
//! A restore re-applies the erasure ledger before it returns ([`erasure`]).

mod archive;
pub mod copy;
mod create;
pub mod crypt;
mod erasure;
mod manifest;
mod postgres;
mod restore;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_config::Config;
use steward_knowledge::Blobs;
use steward_store::{Backend, Store, StoreError, TableSize};

pub use archive::BlobTally;
use crypt::{BackupKey, BackupKeys};
pub use erasure::{EraseJob, erase};
pub use manifest::{FileEntry, Manifest, digest_file};

const SQLITE_FILE: &str = "database.sqlite.gz.enc";
const POSTGRES_FILE: &str = "database.pgdump.enc";
const BLOBS_FILE: &str = "blobs.tar.gz.enc";
const INCOMPLETE: &str = ".incomplete-";
/// Where a restore or verify opens a PostgreSQL dump for `pg_restore`.
const OPENED: &str = ".opened-";
/// Where `verify` restores a backup to try it.
const VERIFYING: &str = ".verify-";
/// UTC to the millisecond, so that ids sort in the order backups were made.
const ID_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(String),
    #[error("the backup is damaged: {0}")]
    Corrupt(String),
    #[error("the backup does not fit: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Tool(String),
    #[error("blob store: {0}")]
    Blobs(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("no backup '{0}' here or in S3")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the backup key does not fit: {0}")]
    Key(String),
    #[error("copying the backup to S3 failed: {0}")]
    Remote(String),
    #[error("cancelled: nothing was changed")]
    Cancelled,
}

/// Which backup a command means.
#[derive(Clone, Debug)]
pub enum Pick {
    Latest,
    Id(String),
}

/// A backup found by `list`: where it is, and its manifest unless unreadable.
#[derive(Debug)]
pub struct Listed {
    pub id: String,
    pub manifest: Result<Manifest, String>,
    pub local: bool,
    pub remote: bool,
}

/// What `verify` found.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    /// Rows per table in the trial restore.
    pub tables: Vec<TableSize>,
    pub blobs: BlobTally,
}

/// What a restore is about to do, for the operator to confirm.
#[derive(Debug)]
pub struct RestorePlan {
    pub manifest: Manifest,
    pub target: String,
    pub target_holds_data: bool,
    pub restores_blobs: bool,
    /// People the restored database held whom a ledger says were erased:
    /// erased again before the restore returned.
    pub erased_again: usize,
}

/// Where backups go and how long they stay.
pub struct Backups {
    dir: PathBuf,
    remote: Option<Blobs>,
    keep_count: u32,
    keep_days: u32,
    pg_dump: String,
    pg_restore: String,
    /// Unset, backups are neither made nor read (the erasure ledger and the
    /// list work without it).
    keys: Option<BackupKeys>,
}

impl Backups {
    pub fn from_config(config: &Config) -> Result<Self, BackupError> {
        let backup = &config.backup;
        let remote = backup
            .s3_url
            .as_deref()
            .map(|url| Blobs::at(url, &config.storage))
            .transpose()
            .map_err(|e| BackupError::Invalid(format!("backup.s3_url: {e}")))?;
        let key = |name: &'static str, secret: &steward_config::Secret| {
            steward_config::key_bytes(name, secret)
                .map(BackupKey::new)
                .map_err(|e| BackupError::Invalid(e.to_string()))
        };
        let keys = match &backup.encryption_key {
            Some(current) => Some(BackupKeys::new(
                key("backup.encryption_key", current)?,
                backup
                    .previous_encryption_keys
                    .iter()
                    .map(|k| key("backup.previous_encryption_keys", k))
                    .collect::<Result<_, _>>()?,
            )),
            None => None,
        };
        Ok(Self {
            dir: backup
                .dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("backups")),
            remote,
            keep_count: backup.keep_count.max(1),
            keep_days: backup.keep_days,
            pg_dump: backup.pg_dump.clone(),
            pg_restore: backup.pg_restore.clone(),
            keys,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn keys(&self) -> Result<&BackupKeys, BackupError> {
        self.keys.as_ref().ok_or_else(|| {
            BackupError::Key(
                "backup.encryption_key is not set: backups are encrypted under it (openssl rand -base64 32)".into(),
            )
        })
    }
}

/// The time a backup id names (`20261122T024000.123Z`, maybe with `-2`).
fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, ID_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BackupError::Io(format!("a backup task failed: {e}")))?
}

/// The `backup` job: the scheduler enqueues it nightly (`scheduler.backup_cron`).
pub struct BackupJob {
    pub backups: Arc<Backups>,
    pub store: Arc<dyn Store>,
    pub database_url: String,
    pub blobs: Blobs,
}

#[async_trait]
impl steward_jobs::JobHandler for BackupJob {
    async fn run(&self, _job: &steward_store::Job) -> Result<(), steward_jobs::JobError> {
        self.backups
            .create(self.store.as_ref(), &self.database_url, &self.blobs)
            .await
            .map(|_| ())
            .map_err(|e| steward_jobs::JobError::Retryable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_time() {
        let at = id_time("20261122T024000.123Z").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-22T02:40:00.123+00:00");
        assert_eq!(id_time("20261122T024000.123Z-2"), Some(at));
        assert_eq!(
            at.format(ID_FORMAT).to_string(),
            "20261122T024000.123Z",
            "ids round-trip"
        );
        assert_eq!(id_time("not-a-backup"), None);
    }
}
