//! A backup's manifest: what it holds, with each file's size and SHA-256,
//! and the id of the backup key its files are sealed under.
//! `manifest.json.sha256` holds the manifest's own digest, so a damaged
//! manifest is caught too. The manifest holds no data of anyone's, and is
//! not encrypted: `backup list` reads it without the key.

use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::BackupError;
use crate::archive;
use crate::crypt::BackupKeys;

pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_DIGEST: &str = "manifest.json.sha256";
/// Bumped when the layout changes; older Stewards refuse newer formats.
/// Format 2: files sealed under the backup key.
pub const FORMAT: u32 = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub steward_version: String,
    /// `sqlite` or `postgres`: a backup restores into the same kind.
    pub backend: String,
    /// The newest migration applied to the database when it was copied.
    pub schema_version: i64,
    /// The backup key the files are sealed under (its id, never the key).
    pub key_id: String,
    pub files: Vec<FileEntry>,
    /// Objects in the blob store, and their bytes before compression.
    pub blob_count: u64,
    pub blob_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    /// Every file's size on disk, manifest included.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Writes `manifest.json` and its digest into `folder`, synced.
    pub fn write(&self, folder: &Path) -> Result<(), BackupError> {
        let json = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        let digest = hex::encode(Sha256::digest(&json));
        write_synced(&folder.join(MANIFEST), &json)?;
        write_synced(
            &folder.join(MANIFEST_DIGEST),
            format!("{digest}  {MANIFEST}\n").as_bytes(),
        )
    }

    /// Reads the manifest in `folder`, refusing it unless its digest matches
    /// and its format is one this build reads.
    pub fn read(folder: &Path) -> Result<Self, BackupError> {
        let corrupt = |why: String| BackupError::Corrupt(format!("{}: {why}", folder.display()));
        let json = std::fs::read(folder.join(MANIFEST))
            .map_err(|e| corrupt(format!("{MANIFEST}: {e}")))?;
        let recorded = std::fs::read_to_string(folder.join(MANIFEST_DIGEST))
            .map_err(|e| corrupt(format!("{MANIFEST_DIGEST}: {e}")))?;
        let recorded = recorded.split_whitespace().next().unwrap_or("");
        if hex::encode(Sha256::digest(&json)) != recorded {
            return Err(corrupt(format!("{MANIFEST} does not match its SHA-256")));
        }
        let format = serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|m| m.get("format")?.as_u64());
        if format == Some(1) {
            return Err(BackupError::Mismatch(
                "backup format 1 was made before backups were encrypted, and this Steward reads only encrypted ones: restore it with the Steward that made it, then make a new backup".into(),
            ));
        }
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| corrupt(format!("{MANIFEST} is not a manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(BackupError::Mismatch(format!(
                "backup format {} is not {FORMAT}, the one this Steward reads",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// `{id}/{file}`: what a file's every sealed chunk names, so that it opens
    /// only as that file of this backup.
    pub fn context(&self, file: &str) -> String {
        format!("{}/{file}", self.id)
    }

    /// Checks every file's size and SHA-256 against the manifest, then that
    /// every chunk of it opens with the backup key: a file altered along
    /// with the manifest's digests is caught too.
    pub fn check_files(&self, folder: &Path, keys: &BackupKeys) -> Result<(), BackupError> {
        keys.find(&self.key_id)?;
        for entry in &self.files {
            let path = folder.join(&entry.name);
            let (bytes, sha256) = digest_file(&path)
                .map_err(|e| BackupError::Corrupt(format!("{}: {e}", path.display())))?;
            if bytes != entry.bytes {
                return Err(BackupError::Corrupt(format!(
                    "{} is {bytes} bytes, the manifest says {} (truncated?)",
                    entry.name, entry.bytes
                )));
            }
            if sha256 != entry.sha256 {
                return Err(BackupError::Corrupt(format!(
                    "{} does not match its SHA-256 in the manifest",
                    entry.name
                )));
            }
            archive::authenticate(&path, keys, &self.context(&entry.name))?;
        }
        Ok(())
    }
}

/// A file's size and SHA-256 (hex).
pub fn digest_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    let mut total = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        total += read as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write;
    let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}
