//! Backups: `steward backup create | list | verify | restore`, and the
//! nightly `backup` job.
//!
//! A backup is a folder named by its UTC start time
//! (`20261122T024000.123Z`) holding the database (SQLite: an online copy by
//! `VACUUM INTO`, gzipped; PostgreSQL: `pg_dump` custom format), the blob
//! store as a gzipped tar, and a manifest with each file's size and SHA-256. It is written under
//! `.incomplete-{id}` and renamed into place only when complete, so a failed
//! run (a full disk, say) leaves nothing half-made and the earlier backups
//! as they were. With `backup.s3_url` set, each backup is then copied to S3,
//! manifest last. Retention runs after each successful backup only.

mod archive;
pub mod copy;
mod manifest;
mod postgres;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_config::Config;
use steward_knowledge::Blobs;
use steward_store::{Backend, BackupRun, OpsStore, Store, StoreError, TableSize, now};
use steward_store_postgres::PostgresStore;
use steward_store_sqlite::SqliteStore;

pub use archive::BlobTally;
pub use manifest::{FileEntry, Manifest};

const SQLITE_FILE: &str = "database.sqlite.gz";
const POSTGRES_FILE: &str = "database.pgdump";
const BLOBS_FILE: &str = "blobs.tar.gz";
const INCOMPLETE: &str = ".incomplete-";
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
}

/// Where backups go and how long they stay.
pub struct Backups {
    dir: PathBuf,
    remote: Option<Blobs>,
    keep_count: u32,
    keep_days: u32,
    pg_dump: String,
    pg_restore: String,
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
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes a backup of the database at `database_url` (opened as `store`)
    /// and of `blobs`, records the run in the store (success or failure),
    /// then applies retention.
    pub async fn create(
        &self,
        store: &dyn Store,
        database_url: &str,
        blobs: &Blobs,
    ) -> Result<Manifest, BackupError> {
        let started_at = now();
        let id = self.new_id(started_at);
        tracing::info!(backup = %id, "backup started");
        let made = match self.make(&id, store, database_url, blobs).await {
            Ok(manifest) => self.copy_to_remote(&manifest).await.map(|()| manifest),
            Err(e) => Err(e),
        };
        let run = BackupRun {
            backup_id: id.clone(),
            started_at,
            finished_at: now(),
            succeeded: made.is_ok(),
            bytes: made.as_ref().map_or(0, Manifest::total_bytes),
            error: made.as_ref().err().map(ToString::to_string),
        };
        if let Err(e) = store.record_backup_run(&run).await {
            tracing::warn!(backup = %id, error = %e, "could not record the backup run");
        }
        match &made {
            Ok(manifest) => {
                tracing::info!(
                    backup = %id,
                    bytes = manifest.total_bytes(),
                    blobs = manifest.blob_count,
                    seconds = (run.finished_at - started_at).num_milliseconds() as f64 / 1000.0,
                    "backup made"
                );
                self.apply_retention().await;
            }
            Err(e) => tracing::error!(backup = %id, error = %e, "backup failed"),
        }
        made
    }

    /// A time-ordered id, unique in this folder.
    fn new_id(&self, at: DateTime<Utc>) -> String {
        let base = at.format(ID_FORMAT).to_string();
        let taken = |id: &str| {
            self.dir.join(id).exists() || self.dir.join(format!("{INCOMPLETE}{id}")).exists()
        };
        let mut id = base.clone();
        let mut n = 1;
        while taken(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }

    async fn make(
        &self,
        id: &str,
        store: &dyn Store,
        database_url: &str,
        blobs: &Blobs,
    ) -> Result<Manifest, BackupError> {
        use std::os::unix::fs::DirBuilderExt;
        let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", self.dir.display()));
        // Backups hold password hashes and sealed secrets: owner only.
        let mut private = std::fs::DirBuilder::new();
        private.mode(0o700);
        private.recursive(true).create(&self.dir).map_err(io)?;
        self.remove_abandoned();
        let staging = self.dir.join(format!("{INCOMPLETE}{id}"));
        private.recursive(false).create(&staging).map_err(io)?;
        let made = self
            .make_in(&staging, id, store, database_url, blobs)
            .await
            .and_then(|manifest| {
                let folder = self.dir.join(id);
                std::fs::rename(&staging, &folder).map_err(io)?;
                archive::sync_dir(&self.dir)?;
                Ok(manifest)
            });
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        made
    }

    async fn make_in(
        &self,
        staging: &Path,
        id: &str,
        store: &dyn Store,
        database_url: &str,
        blobs: &Blobs,
    ) -> Result<Manifest, BackupError> {
        let database_file = match store.backend() {
            Backend::Sqlite => {
                let raw = staging.join("database.sqlite");
                store.snapshot_to(&raw).await?;
                let gz = staging.join(SQLITE_FILE);
                let raw_copy = raw.clone();
                blocking(move || archive::gzip_file(&raw_copy, &gz)).await?;
                std::fs::remove_file(&raw)
                    .map_err(|e| BackupError::Io(format!("{}: {e}", raw.display())))?;
                SQLITE_FILE
            }
            Backend::Postgres => {
                postgres::dump(&self.pg_dump, database_url, &staging.join(POSTGRES_FILE)).await?;
                POSTGRES_FILE
            }
        };
        let schema_version = store.schema_version().await?;
        let keys = blobs
            .keys("")
            .await
            .map_err(|e| BackupError::Blobs(format!("listing: {e}")))?;
        let (runtime, reader, to) = (
            tokio::runtime::Handle::current(),
            blobs.clone(),
            staging.join(BLOBS_FILE),
        );
        let tally = blocking(move || archive::write_blobs(&runtime, &reader, &keys, &to)).await?;
        let mut files = Vec::new();
        for name in [database_file, BLOBS_FILE] {
            let path = staging.join(name);
            let (bytes, sha256) = manifest::digest_file(&path)
                .map_err(|e| BackupError::Io(format!("{}: {e}", path.display())))?;
            files.push(FileEntry {
                name: name.to_owned(),
                bytes,
                sha256,
            });
        }
        let manifest = Manifest {
            format: manifest::FORMAT,
            id: id.to_owned(),
            created_at: now(),
            steward_version: env!("CARGO_PKG_VERSION").to_owned(),
            backend: backend_name(store.backend()).to_owned(),
            schema_version,
            files,
            blob_count: tally.count,
            blob_bytes: tally.bytes,
        };
        manifest.write(staging)?;
        archive::sync_dir(staging)?;
        Ok(manifest)
    }

    /// Folders of runs that died (a killed process) more than a day ago.
    fn remove_abandoned(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < day_ago);
            if old && entry.file_name().to_string_lossy().starts_with(INCOMPLETE) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Uploads the backup's files to S3, the manifest's digest last: a copy
    /// without it is incomplete and never listed.
    async fn copy_to_remote(&self, manifest: &Manifest) -> Result<(), BackupError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let folder = self.dir.join(&manifest.id);
        let names = manifest
            .files
            .iter()
            .map(|f| f.name.as_str())
            .chain([manifest::MANIFEST, manifest::MANIFEST_DIGEST]);
        for name in names {
            remote
                .put_file(&format!("{}/{name}", manifest.id), &folder.join(name))
                .await
                .map_err(|e| {
                    BackupError::Remote(format!(
                        "{e}; the local copy {} is complete and kept",
                        folder.display()
                    ))
                })?;
        }
        Ok(())
    }

    /// Every backup, local and in S3, oldest first. Unfinished runs are not listed.
    pub async fn list(&self) -> Result<Vec<Listed>, BackupError> {
        let mut found: std::collections::BTreeMap<String, Listed> = Default::default();
        for id in self.local_ids()? {
            let manifest = Manifest::read(&self.dir.join(&id)).map_err(|e| e.to_string());
            found.insert(
                id.clone(),
                Listed {
                    id,
                    manifest,
                    local: true,
                    remote: false,
                },
            );
        }
        for id in self.remote_ids().await? {
            if let Some(listed) = found.get_mut(&id) {
                listed.remote = true;
                continue;
            }
            let manifest = self.remote_manifest(&id).await;
            found.insert(
                id.clone(),
                Listed {
                    id,
                    manifest,
                    local: false,
                    remote: true,
                },
            );
        }
        Ok(found.into_values().collect())
    }

    fn local_ids(&self) -> Result<Vec<String>, BackupError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BackupError::Io(format!("{}: {e}", self.dir.display()))),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Backups in S3 that have their manifest's digest (copied last).
    async fn remote_ids(&self) -> Result<Vec<String>, BackupError> {
        let Some(remote) = &self.remote else {
            return Ok(Vec::new());
        };
        let keys = remote
            .keys("")
            .await
            .map_err(|e| BackupError::Remote(format!("listing: {e}")))?;
        let mut ids: Vec<String> = keys
            .iter()
            .filter_map(|key| key.strip_suffix(&format!("/{}", manifest::MANIFEST_DIGEST)))
            .filter(|id| !id.contains('/'))
            .map(str::to_owned)
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn remote_manifest(&self, id: &str) -> Result<Manifest, String> {
        let remote = self.remote.as_ref().ok_or("no S3 configured")?;
        let bytes = remote
            .get(&format!("{id}/{}", manifest::MANIFEST))
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }

    /// The backup's local folder, fetching it from S3 first when only there.
    async fn folder(&self, pick: &Pick) -> Result<PathBuf, BackupError> {
        let id = match pick {
            Pick::Id(id) => id.clone(),
            Pick::Latest => self
                .list()
                .await?
                .pop()
                .map(|l| l.id)
                .ok_or_else(|| BackupError::NotFound("latest".into()))?,
        };
        if id.is_empty() || id.starts_with('.') || id.contains('/') {
            return Err(BackupError::NotFound(id));
        }
        let folder = self.dir.join(&id);
        if folder.is_dir() {
            return Ok(folder);
        }
        if !self.remote_ids().await?.contains(&id) {
            return Err(BackupError::NotFound(id));
        }
        let remote = self.remote.as_ref().expect("listed in S3");
        let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", self.dir.display()));
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let staging = self.dir.join(format!("{INCOMPLETE}fetch-{id}"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging).map_err(io)?;
        let fetched = async {
            for key in remote
                .keys(&id)
                .await
                .map_err(|e| BackupError::Remote(e.to_string()))?
            {
                let name = key.rsplit('/').next().unwrap_or_default();
                remote
                    .get_to_file(&key, &staging.join(name))
                    .await
                    .map_err(|e| BackupError::Remote(format!("fetching {key}: {e}")))?;
            }
            std::fs::rename(&staging, &folder).map_err(io)
        }
        .await;
        if fetched.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        fetched.map(|()| folder)
    }

    /// Checks every checksum, then restores the database into a scratch
    /// database (SQLite: a temporary file; PostgreSQL: `scratch_url`, or a
    /// database created for the purpose on the server at `admin_url`) and
    /// reads every table, and reads the blob archive to its end.
    pub async fn verify(
        &self,
        pick: &Pick,
        admin_url: &str,
        scratch_url: Option<&str>,
    ) -> Result<Verified, BackupError> {
        let folder = self.folder(pick).await?;
        let manifest = Manifest::read(&folder)?;
        manifest.check_files(&folder)?;
        let tables = match manifest.backend.as_str() {
            "sqlite" => self.trial_restore_sqlite(&folder, &manifest).await?,
            "postgres" => {
                let scratch = match scratch_url {
                    Some(url) => Scratch::Given(url.to_owned()),
                    None if is_postgres(admin_url) => {
                        Scratch::Made(postgres::ScratchDatabase::create(admin_url).await?)
                    }
                    None => {
                        return Err(BackupError::Invalid(
                            "a PostgreSQL backup is verified by restoring it into a scratch PostgreSQL database: pass --scratch URL".into(),
                        ));
                    }
                };
                let tables = self
                    .trial_restore_postgres(&folder, &manifest, scratch.url())
                    .await;
                if let Scratch::Made(made) = scratch {
                    made.drop().await;
                }
                tables?
            }
            other => return Err(BackupError::Corrupt(format!("unknown backend '{other}'"))),
        };
        let archive = folder.join(BLOBS_FILE);
        let blobs = blocking(move || archive::read_blobs(&archive, |_, _| Ok(()))).await?;
        if (blobs.count, blobs.bytes) != (manifest.blob_count, manifest.blob_bytes) {
            return Err(BackupError::Corrupt(format!(
                "the blob archive holds {} objects ({} bytes), the manifest says {} ({} bytes)",
                blobs.count, blobs.bytes, manifest.blob_count, manifest.blob_bytes
            )));
        }
        Ok(Verified {
            manifest,
            tables,
            blobs,
        })
    }

    async fn trial_restore_sqlite(
        &self,
        folder: &Path,
        manifest: &Manifest,
    ) -> Result<Vec<TableSize>, BackupError> {
        // Beside the backups, not in /tmp: a database may outgrow a tmpfs.
        let scratch = tempfile::Builder::new()
            .prefix(".verify-")
            .tempdir_in(&self.dir)
            .map_err(|e| BackupError::Io(format!("{}: {e}", self.dir.display())))?;
        let (from, to) = (folder.join(SQLITE_FILE), scratch.path().join("steward.db"));
        let file = to.clone();
        blocking(move || archive::gunzip_file(&from, &to)).await?;
        let store = SqliteStore::open_file(&file, 1).await?;
        let checked = check_restored(&store, manifest).await;
        Store::close(&store).await;
        checked
    }

    async fn trial_restore_postgres(
        &self,
        folder: &Path,
        manifest: &Manifest,
        url: &str,
    ) -> Result<Vec<TableSize>, BackupError> {
        postgres::restore(&self.pg_restore, &folder.join(POSTGRES_FILE), url).await?;
        let store = PostgresStore::connect(url, 2).await?;
        let checked = async {
            store.analyze().await?;
            check_restored(&store, manifest).await
        }
        .await;
        Store::close(&store).await;
        checked
    }

    /// Restores a backup into the database at `into` and, when given, its
    /// blobs into `blobs`. Refuses a damaged backup, one of the other
    /// backend or of a newer schema, and (without `force`) a target that
    /// holds data, before writing anything; then asks `confirm`.
    pub async fn restore(
        &self,
        pick: &Pick,
        into: &str,
        blobs: Option<&Blobs>,
        force: bool,
        confirm: impl FnOnce(&RestorePlan) -> bool,
    ) -> Result<RestorePlan, BackupError> {
        let folder = self.folder(pick).await?;
        let manifest = Manifest::read(&folder)?;
        manifest.check_files(&folder)?;
        let target = Target::parse(into)?;
        if manifest.backend != target.backend() {
            return Err(BackupError::Mismatch(format!(
                "backup {} is of a {} database; {} is {}: use `steward db copy` to move between them",
                manifest.id,
                manifest.backend,
                target.describe(),
                target.backend()
            )));
        }
        let (latest, holds_data) = target.inspect().await?;
        if manifest.schema_version > latest {
            return Err(BackupError::Mismatch(format!(
                "backup {} has schema version {}, newer than this Steward's {latest}: restore it with the Steward that made it ({})",
                manifest.id, manifest.schema_version, manifest.steward_version
            )));
        }
        if holds_data && !force {
            return Err(BackupError::Refused(format!(
                "{} holds data; restoring would replace it. Stop Steward and pass --force to replace it",
                target.describe()
            )));
        }
        let plan = RestorePlan {
            manifest,
            target: target.describe(),
            target_holds_data: holds_data,
            restores_blobs: blobs.is_some(),
        };
        if !confirm(&plan) {
            return Err(BackupError::Cancelled);
        }
        if let Some(blobs) = blobs {
            let (runtime, writer, archive) = (
                tokio::runtime::Handle::current(),
                blobs.clone(),
                folder.join(BLOBS_FILE),
            );
            blocking(move || {
                archive::read_blobs(&archive, |key, bytes| {
                    runtime
                        .block_on(writer.put(key, bytes.into()))
                        .map_err(|e| BackupError::Blobs(format!("writing {key}: {e}")))
                })
            })
            .await?;
        }
        match &target {
            Target::Sqlite(path) => restore_sqlite_file(&folder.join(SQLITE_FILE), path).await?,
            Target::Postgres(url) => {
                postgres::restore(&self.pg_restore, &folder.join(POSTGRES_FILE), url).await?;
                let store = PostgresStore::connect(url, 2).await?;
                let migrated = store.migrate().await;
                Store::close(&store).await;
                migrated?;
            }
        }
        tracing::info!(backup = %plan.manifest.id, target = %plan.target, "backup restored");
        Ok(plan)
    }

    /// Deletes backups beyond `keep_count` and older than `keep_days`,
    /// locally and in S3; the newest is always kept.
    async fn apply_retention(&self) {
        let cutoff = now() - chrono::Duration::days(i64::from(self.keep_days));
        let doomed = |ids: Vec<String>| -> Vec<String> {
            let count = ids.len();
            ids.into_iter()
                .enumerate()
                .filter(|(i, id)| {
                    let newest = *i + 1 == count;
                    let beyond_count = count - i > self.keep_count as usize;
                    let too_old = id_time(id).is_some_and(|at| at < cutoff);
                    !newest && (beyond_count || too_old)
                })
                .map(|(_, id)| id)
                .collect()
        };
        match self.local_ids() {
            Ok(ids) => {
                for id in doomed(ids) {
                    match std::fs::remove_dir_all(self.dir.join(&id)) {
                        Ok(()) => tracing::info!(backup = %id, "retention: deleted"),
                        Err(e) => {
                            tracing::warn!(backup = %id, error = %e, "retention: could not delete")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention: could not list local backups"),
        }
        let Some(remote) = &self.remote else {
            return;
        };
        match self.remote_ids().await {
            Ok(ids) => {
                for id in doomed(ids) {
                    let keys = remote.keys(&id).await.unwrap_or_default();
                    // The digest first: a half-deleted copy is then unlisted.
                    let mut keys: Vec<_> = keys.into_iter().collect();
                    keys.sort_by_key(|k| !k.ends_with(manifest::MANIFEST_DIGEST));
                    for key in keys {
                        if let Err(e) = remote.delete(&key).await {
                            tracing::warn!(%key, error = %e, "retention: could not delete from S3");
                        }
                    }
                    tracing::info!(backup = %id, "retention: deleted from S3");
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention: could not list backups in S3"),
        }
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

/// Reads every page of a restored database and checks its schema version.
async fn check_restored(
    store: &dyn Store,
    manifest: &Manifest,
) -> Result<Vec<TableSize>, BackupError> {
    store.check_integrity().await?;
    let version = store.schema_version().await?;
    if version != manifest.schema_version {
        return Err(BackupError::Corrupt(format!(
            "the restored database has schema version {version}, the manifest says {}",
            manifest.schema_version
        )));
    }
    Ok(store.table_sizes().await?)
}

enum Scratch {
    Given(String),
    Made(postgres::ScratchDatabase),
}

impl Scratch {
    fn url(&self) -> &str {
        match self {
            Scratch::Given(url) => url,
            Scratch::Made(made) => &made.url,
        }
    }
}

/// The database a restore writes to.
enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Target {
    fn parse(url: &str) -> Result<Self, BackupError> {
        if is_postgres(url) {
            return Ok(Target::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .filter(|path| !path.is_empty() && *path != ":memory:")
            .ok_or_else(|| {
                BackupError::Invalid(format!(
                    "--into '{url}' is not a database URL: use sqlite://PATH or postgres://…"
                ))
            })?;
        Ok(Target::Sqlite(PathBuf::from(path)))
    }

    fn backend(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
        }
    }

    /// Where, without a password.
    fn describe(&self) -> String {
        match self {
            Target::Sqlite(path) => path.display().to_string(),
            Target::Postgres(url) => url::Url::parse(url)
                .map(|mut u| {
                    let _ = u.set_password(None);
                    u.to_string()
                })
                .unwrap_or_else(|_| "the PostgreSQL database".into()),
        }
    }

    /// This build's newest schema version for the target's backend, and
    /// whether the target holds data.
    async fn inspect(&self) -> Result<(i64, bool), BackupError> {
        let store: Box<dyn Store> = match self {
            Target::Sqlite(path) if !path.exists() => {
                // Nothing to look at: ask a throwaway in-memory store for the version.
                let memory = SqliteStore::connect("sqlite::memory:", 1).await?;
                let latest = memory.latest_schema_version();
                Store::close(&memory).await;
                return Ok((latest, false));
            }
            Target::Sqlite(path) => Box::new(SqliteStore::open_file(path, 1).await?),
            Target::Postgres(url) => Box::new(PostgresStore::connect(url, 1).await?),
        };
        let found = async { Ok((store.latest_schema_version(), store.holds_data().await?)) }.await;
        store.close().await;
        found
    }
}

/// Replaces the SQLite file at `target` with the backup's copy: unpacked
/// beside it, checked and migrated, then renamed over it in one step.
async fn restore_sqlite_file(gz: &Path, target: &Path) -> Result<(), BackupError> {
    let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", target.display()));
    let folder = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(io)?;
    let staged = tempfile::Builder::new()
        .prefix(".restoring-")
        .tempdir_in(folder)
        .map_err(io)?;
    let file = staged.path().join("steward.db");
    let (from, to) = (gz.to_owned(), file.clone());
    blocking(move || archive::gunzip_file(&from, &to)).await?;
    let store = SqliteStore::open_file(&file, 1).await?;
    let ready = async {
        store.check_integrity().await?;
        store.migrate().await
    }
    .await;
    Store::close(&store).await;
    ready?;
    for suffix in ["-wal", "-shm"] {
        let mut side = target.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    std::fs::rename(&file, target).map_err(io)?;
    archive::sync_dir(folder)
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

    #[test]
    fn targets_are_parsed_from_database_urls() {
        assert!(matches!(
            Target::parse("sqlite:///var/lib/steward/steward.db?mode=rwc").unwrap(),
            Target::Sqlite(p) if p == Path::new("/var/lib/steward/steward.db")
        ));
        assert!(matches!(
            Target::parse("postgresql://u:p@db/steward").unwrap(),
            Target::Postgres(_)
        ));
        for bad in ["", "mysql://x", "sqlite::memory:", "sqlite://"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Target::parse("postgres://steward:secret@db:5432/steward")
                .unwrap()
                .describe(),
            "postgres://steward@db:5432/steward"
        );
    }
}
