//! Finding backups (here and in S3), verifying them by a trial restore, and
//! restoring them.

use std::path::{Path, PathBuf};

use steward_knowledge::Blobs;
use steward_store::{CatalogueStore, Store, TableSize};
use steward_store_postgres::PostgresStore;
use steward_store_sqlite::SqliteStore;

use crate::crypt::BackupKeys;
use crate::manifest::{self, Manifest};
use crate::{
    BLOBS_FILE, BackupError, Backups, INCOMPLETE, Listed, POSTGRES_FILE, Pick, RestorePlan,
    SQLITE_FILE, Verified, archive, blocking, is_postgres, postgres,
};

impl Backups {
    /// Every backup, local and in S3, oldest first. Unfinished runs are not
    /// listed; with S3 unreachable, the local ones are (and a warning logged).
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
        let remote = self.remote_ids().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "backups in S3 are not listed");
            Vec::new()
        });
        for id in remote {
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

    pub(crate) fn local_ids(&self) -> Result<Vec<String>, BackupError> {
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
    pub(crate) async fn remote_ids(&self) -> Result<Vec<String>, BackupError> {
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
        manifest.check_files(&folder, self.keys()?)?;
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
        let (archive, keys, context) = (
            folder.join(BLOBS_FILE),
            self.keys()?.clone(),
            manifest.context(BLOBS_FILE),
        );
        let blobs =
            blocking(move || archive::read_blobs(&archive, &keys, &context, |_, _| Ok(()))).await?;
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
            .prefix(crate::VERIFYING)
            .tempdir_in(&self.dir)
            .map_err(|e| BackupError::Io(format!("{}: {e}", self.dir.display())))?;
        let (from, to) = (folder.join(SQLITE_FILE), scratch.path().join("steward.db"));
        let file = to.clone();
        let (keys, context) = (self.keys()?.clone(), manifest.context(SQLITE_FILE));
        blocking(move || archive::open_file(&from, &to, true, &keys, &context)).await?;
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
        let (_opened, dump) = self.opened_dump(folder, manifest).await?;
        postgres::restore(&self.pg_restore, &dump, url).await?;
        let store = PostgresStore::connect(url, 2).await?;
        let checked = async {
            store.analyze().await?;
            check_restored(&store, manifest).await
        }
        .await;
        Store::close(&store).await;
        checked
    }

    /// The PostgreSQL dump opened into an owner-only folder beside the
    /// backups, for pg_restore (which needs a file it can seek in); gone
    /// when the folder is dropped.
    async fn opened_dump(
        &self,
        folder: &Path,
        manifest: &Manifest,
    ) -> Result<(tempfile::TempDir, PathBuf), BackupError> {
        let opened = tempfile::Builder::new()
            .prefix(crate::OPENED)
            .tempdir_in(&self.dir)
            .map_err(|e| BackupError::Io(format!("{}: {e}", self.dir.display())))?;
        let dump = opened.path().join("database.pgdump");
        let (from, to, keys, context) = (
            folder.join(POSTGRES_FILE),
            dump.clone(),
            self.keys()?.clone(),
            manifest.context(POSTGRES_FILE),
        );
        blocking(move || archive::open_file(&from, &to, false, &keys, &context)).await?;
        Ok((opened, dump))
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
        manifest.check_files(&folder, self.keys()?)?;
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
        let mut plan = RestorePlan {
            manifest,
            target: target.describe(),
            target_holds_data: holds_data,
            restores_blobs: blobs.is_some(),
            erased_again: 0,
        };
        if !confirm(&plan) {
            return Err(BackupError::Cancelled);
        }
        if let Some(blobs) = blobs {
            let (runtime, writer, archive, keys, context) = (
                tokio::runtime::Handle::current(),
                blobs.clone(),
                folder.join(BLOBS_FILE),
                self.keys()?.clone(),
                plan.manifest.context(BLOBS_FILE),
            );
            blocking(move || {
                archive::read_blobs(&archive, &keys, &context, |key, bytes| {
                    runtime
                        .block_on(writer.put(key, bytes.into()))
                        .map_err(|e| BackupError::Blobs(format!("writing {key}: {e}")))
                })
            })
            .await?;
        }
        let store: Box<dyn Store> = match &target {
            Target::Sqlite(path) => {
                let opened = Opened {
                    file: folder.join(SQLITE_FILE),
                    keys: self.keys()?.clone(),
                    context: plan.manifest.context(SQLITE_FILE),
                };
                restore_sqlite_file(opened, path).await?;
                Box::new(SqliteStore::open_file(path, 1).await?)
            }
            Target::Postgres(url) => {
                let (_opened, dump) = self.opened_dump(&folder, &plan.manifest).await?;
                postgres::restore(&self.pg_restore, &dump, url).await?;
                let store = PostgresStore::connect(url, 2).await?;
                if let Err(e) = store.migrate().await {
                    Store::close(&store).await;
                    return Err(e.into());
                }
                Box::new(store)
            }
        };
        // Erased people stay erased, whatever the backup held.
        let erased = crate::erasure::reapply(store.as_ref(), self).await;
        store.close().await;
        plan.erased_again = erased?;
        tracing::info!(backup = %plan.manifest.id, target = %plan.target, erased_again = plan.erased_again, "backup restored");
        Ok(plan)
    }
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
                return Ok((SqliteStore::schema_version_of_this_build(), false));
            }
            Target::Sqlite(path) => Box::new(SqliteStore::open_file(path, 1).await?),
            Target::Postgres(url) => Box::new(PostgresStore::connect(url, 1).await?),
        };
        let found = async { Ok((store.latest_schema_version(), store.holds_data().await?)) }.await;
        store.close().await;
        found
    }
}

/// A sealed file of a backup, and what opens it.
struct Opened {
    file: PathBuf,
    keys: BackupKeys,
    context: String,
}

/// Replaces the SQLite file at `target` with the backup's copy: unpacked
/// beside it, checked and migrated, then renamed over it in one step.
async fn restore_sqlite_file(sealed: Opened, target: &Path) -> Result<(), BackupError> {
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
    let to = file.clone();
    blocking(move || archive::open_file(&sealed.file, &to, true, &sealed.keys, &sealed.context))
        .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
