//! The erasure ledger outside the backed-up data, and the `erase` job.
//!
//! An erasure is recorded in the database's own ledger (`erasures`), which
//! backups carry, and here, beside the backups: one small file per erased
//! person in `.erasures/` of the backup folder and, with `backup.s3_url`
//! set, in S3. A backup made before an erasure does not hold it; restoring
//! one re-applies every erasure of both ledgers before the restore returns,
//! so the restored database never serves an erased person.

use std::sync::Arc;

use async_trait::async_trait;
use steward_domain::jobs::EraseArgs;
use steward_jobs::{JobError, JobHandler};
use steward_store::{Erased, Erasure, Job, Store, TenantScope};

use crate::{BackupError, Backups};

/// Where the ledger's entries are, locally and in S3.
const LEDGER: &str = ".erasures";

impl Backups {
    /// Records `erasure` in the ledger beside the backups (before anything
    /// is erased, so that a restore re-applies an erasure cut short).
    pub async fn record_erasure(&self, erasure: &Erasure) -> Result<(), BackupError> {
        let name = format!("{}.{}.json", erasure.org_id, erasure.person_id);
        let bytes = serde_json::to_vec(erasure).expect("an erasure serializes");
        let folder = self.dir.join(LEDGER);
        let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", folder.display()));
        std::fs::create_dir_all(&folder).map_err(io)?;
        let staged = folder.join(format!(".{name}"));
        std::fs::write(&staged, &bytes).map_err(io)?;
        std::fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&staged, folder.join(&name)).map_err(io)?;
        crate::archive::sync_dir(&folder)?;
        if let Some(remote) = &self.remote {
            remote
                .put(&format!("{LEDGER}/{name}"), bytes.into())
                .await
                .map_err(|e| BackupError::Remote(format!("recording an erasure: {e}")))?;
        }
        Ok(())
    }

    /// Every erasure the ledger beside the backups holds, here and in S3.
    pub async fn recorded_erasures(&self) -> Result<Vec<Erasure>, BackupError> {
        let mut found = Vec::new();
        let folder = self.dir.join(LEDGER);
        let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", folder.display()));
        match std::fs::read_dir(&folder) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') || !name.ends_with(".json") {
                        continue;
                    }
                    found.push(parse(&std::fs::read(entry.path()).map_err(io)?, &name)?);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(remote) = &self.remote {
            let unreachable = |e| BackupError::Remote(format!("reading the erasure ledger: {e}"));
            for key in remote
                .keys(&format!("{LEDGER}/"))
                .await
                .map_err(unreachable)?
            {
                let bytes = remote.get(&key).await.map_err(unreachable)?;
                found.push(parse(&bytes, &key)?);
            }
        }
        found.sort();
        found.dedup_by(|a, b| (a.org_id, a.person_id) == (b.org_id, b.person_id));
        Ok(found)
    }
}

fn parse(bytes: &[u8], name: &str) -> Result<Erasure, BackupError> {
    serde_json::from_slice(bytes)
        .map_err(|e| BackupError::Corrupt(format!("the erasure ledger's {name}: {e}")))
}

/// Erases a person: records it beside the backups first, then in the
/// database (which records it in its own ledger, then deletes).
pub async fn erase(
    store: &dyn Store,
    backups: &Backups,
    scope: &TenantScope,
    person: steward_domain::PersonId,
) -> Result<Erased, BackupError> {
    let erasure = Erasure {
        org_id: scope.org_id(),
        person_id: person,
        erased_at: steward_store::now(),
    };
    backups.record_erasure(&erasure).await?;
    let erased = store.erase_person(scope, person).await?;
    metrics::counter!("steward_key_operations_total", "operation" => "destroy")
        .increment(erased.keys);
    tracing::info!(%person, messages = erased.messages, conversations = erased.conversations, keys = erased.keys, "person erased");
    Ok(erased)
}

/// Re-applies both ledgers to a restored database: every erasure it holds
/// itself and every one recorded beside the backups; how many people were
/// still there to erase.
pub(crate) async fn reapply(store: &dyn Store, backups: &Backups) -> Result<usize, BackupError> {
    let mut ledger = backups.recorded_erasures().await?;
    ledger.extend(store.erasures().await?);
    ledger.sort();
    ledger.dedup_by(|a, b| (a.org_id, a.person_id) == (b.org_id, b.person_id));
    let mut erased = 0;
    for erasure in ledger {
        let scope = TenantScope::for_operator(erasure.org_id);
        if store.erase_person(&scope, erasure.person_id).await?.person {
            erased += 1;
        }
    }
    Ok(erased)
}

/// The `erase` job: an admin's `DELETE /api/v1/people/{id}`.
pub struct EraseJob {
    pub store: Arc<dyn Store>,
    pub backups: Arc<Backups>,
}

#[async_trait]
impl JobHandler for EraseJob {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let org = job
            .org_id
            .ok_or_else(|| JobError::Permanent("an erase job names no organization".into()))?;
        let EraseArgs { person_id } = job.args()?;
        erase(
            self.store.as_ref(),
            &self.backups,
            &TenantScope::for_job(org),
            person_id,
        )
        .await
        .map(|_| ())
        .map_err(|e| JobError::Retryable(e.to_string()))
    }
}
