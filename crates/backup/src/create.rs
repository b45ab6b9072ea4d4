//! Making a backup: the database and the blob store into a folder of their
//! own, renamed into place when complete; the copy to S3; retention.

use std::path::Path;

use chrono::{DateTime, Utc};
use steward_knowledge::Blobs;
use steward_store::{Backend, BackupRun, Store, now};

use crate::manifest::{self, FileEntry, Manifest};
use crate::{
    BLOBS_FILE, BackupError, Backups, ID_FORMAT, INCOMPLETE, OPENED, POSTGRES_FILE, SQLITE_FILE,
    VERIFYING, archive, backend_name, blocking, id_time, postgres,
};

impl Backups {
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
        let key = self.keys()?.current().clone();
        let key_id = key.id();
        let context = |file: &str| format!("{id}/{file}");
        // The plain copy lives in the owner-only staging folder only until
        // it is sealed.
        let (plain, database_file, gzip) = match store.backend() {
            Backend::Sqlite => {
                let plain = staging.join("database.sqlite");
                store.snapshot_to(&plain).await?;
                (plain, SQLITE_FILE, true)
            }
            Backend::Postgres => {
                let plain = staging.join("database.pgdump");
                postgres::dump(&self.pg_dump, database_url, &plain).await?;
                (plain, POSTGRES_FILE, false)
            }
        };
        let (from, to, sealing, file_context) = (
            plain.clone(),
            staging.join(database_file),
            key.clone(),
            context(database_file),
        );
        blocking(move || archive::seal_file(&from, &to, gzip, &sealing, &file_context)).await?;
        std::fs::remove_file(&plain)
            .map_err(|e| BackupError::Io(format!("{}: {e}", plain.display())))?;
        let schema_version = store.schema_version().await?;
        // Exports of people's data live for a day and hold memory in clear:
        // they are never copied into a backup.
        let objects: Vec<String> = blobs
            .keys("")
            .await
            .map_err(|e| BackupError::Blobs(format!("listing: {e}")))?
            .into_iter()
            .filter(|key| !key.starts_with(steward_knowledge::EXPORTS_PREFIX))
            .collect();
        let (runtime, reader, to, blobs_context) = (
            tokio::runtime::Handle::current(),
            blobs.clone(),
            staging.join(BLOBS_FILE),
            context(BLOBS_FILE),
        );
        let tally = blocking(move || {
            archive::write_blobs(&runtime, &reader, &objects, &to, &key, &blobs_context)
        })
        .await?;
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
            key_id,
            files,
            blob_count: tally.count,
            blob_bytes: tally.bytes,
        };
        manifest.write(staging)?;
        archive::sync_dir(staging)?;
        Ok(manifest)
    }

    /// Folders of runs that died (a killed process) more than a day ago:
    /// unfinished backups, and dumps opened for a restore or a verify (they
    /// are in clear).
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
            let name = entry.file_name().to_string_lossy().into_owned();
            let abandoned = [INCOMPLETE, OPENED, VERIFYING]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            if old && abandoned {
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
                    let mut keys = remote.keys(&id).await.unwrap_or_default();
                    // The digest first: a half-deleted copy is then unlisted.
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
