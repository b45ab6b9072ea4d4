//! Secrets: redacted when printed; generated once into the data dir for
//! development, required explicitly in production.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Config;

/// A configured secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{key} is required when STEWARD_ENV=production: set it in the config file or as {env}")]
    Missing {
        key: &'static str,
        env: &'static str,
    },
    #[error("{key} is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot keep secrets in {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

const JWT_MIN_BYTES: usize = 32;

/// The secrets [`ensure_secrets`] filled in from the data folder, by key.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeptSecrets {
    /// Generated on this start into `<data_dir>/secrets/`.
    pub generated: Vec<&'static str>,
    /// Read from `<data_dir>/secrets/`, generated on an earlier start.
    pub read: Vec<&'static str>,
}

/// Fills in missing secrets (from, or newly into, `<data_dir>/secrets/`) and
/// checks the given ones; says which it filled in, and how.
pub fn ensure_secrets(config: &mut Config) -> Result<KeptSecrets, SecretsError> {
    let dir = config.data_dir.join("secrets");
    let mut kept = KeptSecrets::default();
    let keep = |key: &'static str, file: &str, kept: &mut KeptSecrets| {
        let (secret, generated) = load_or_create(&dir, file)?;
        if generated {
            kept.generated.push(key);
        } else {
            kept.read.push(key);
        }
        Ok::<_, SecretsError>(secret)
    };
    if config.auth.jwt_secret.is_none() {
        if config.is_production() {
            return Err(SecretsError::Missing {
                key: "auth.jwt_secret",
                env: "STEWARD_AUTH__JWT_SECRET",
            });
        }
        config.auth.jwt_secret = Some(keep("auth.jwt_secret", "jwt_secret", &mut kept)?);
    }
    if config.secrets.master_key.is_none() {
        if config.is_production() {
            return Err(SecretsError::Missing {
                key: "secrets.master_key",
                env: "STEWARD_SECRETS__MASTER_KEY",
            });
        }
        config.secrets.master_key = Some(keep("secrets.master_key", "master_key", &mut kept)?);
    }
    if config.backup.encryption_key.is_none() {
        if config.is_production() {
            return Err(SecretsError::Missing {
                key: "backup.encryption_key",
                env: "STEWARD_BACKUP__ENCRYPTION_KEY",
            });
        }
        config.backup.encryption_key =
            Some(keep("backup.encryption_key", "backup_key", &mut kept)?);
    }
    let jwt = config.auth.jwt_secret.as_ref().expect("filled in above");
    if jwt.expose().len() < JWT_MIN_BYTES {
        return Err(SecretsError::Invalid {
            key: "auth.jwt_secret",
            reason: format!("must be at least {JWT_MIN_BYTES} characters"),
        });
    }
    master_key_bytes(config)?;
    previous_master_key_bytes(config)?;
    let backup = &config.backup;
    key_bytes(
        "backup.encryption_key",
        backup.encryption_key.as_ref().expect("filled in above"),
    )?;
    for previous in &backup.previous_encryption_keys {
        key_bytes("backup.previous_encryption_keys", previous)?;
    }
    Ok(kept)
}

/// The 32-byte master encryption key (configured as base64).
pub fn master_key_bytes(config: &Config) -> Result<[u8; 32], SecretsError> {
    let key = config
        .secrets
        .master_key
        .as_ref()
        .ok_or(SecretsError::Invalid {
            key: "secrets.master_key",
            reason: "not set".into(),
        })?;
    key_bytes("secrets.master_key", key)
}

/// The key a rotation replaces, when one is under way.
pub fn previous_master_key_bytes(config: &Config) -> Result<Option<[u8; 32]>, SecretsError> {
    config
        .secrets
        .previous_master_key
        .as_ref()
        .map(|key| key_bytes("secrets.previous_master_key", key))
        .transpose()
}

/// A 32-byte key configured as base64, or why it is not one.
pub fn key_bytes(name: &'static str, key: &Secret) -> Result<[u8; 32], SecretsError> {
    let invalid = |reason: &str| SecretsError::Invalid {
        key: name,
        reason: reason.into(),
    };
    let bytes = STANDARD
        .decode(key.expose().trim())
        .map_err(|_| invalid("must be base64 (openssl rand -base64 32)"))?;
    bytes
        .try_into()
        .map_err(|_| invalid("must decode to exactly 32 bytes (openssl rand -base64 32)"))
}

/// 32 random bytes, base64, kept in a file only its owner can read; true
/// when generated now. Processes starting together on one data folder (a
/// worker and a scheduler, say) agree on one value: each writes its own
/// candidate in full, then links it into place, which only the first
/// manages; the others read that one.
fn load_or_create(dir: &Path, name: &str) -> Result<(Secret, bool), SecretsError> {
    let path = dir.join(name);
    let io = |source| SecretsError::Io {
        path: path.display().to_string(),
        source,
    };
    let read = || {
        fs::read_to_string(&path)
            .map(|kept| Secret(kept.trim().to_owned()))
            .map_err(io)
    };
    if path.exists() {
        return Ok((read()?, false));
    }
    fs::create_dir_all(dir).map_err(io)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let value = STANDARD.encode(bytes);
    // Named by other random bytes than the secret's: a name may be logged.
    let candidate = dir.join(format!(".{name}.{:016x}", rand::random::<u64>()));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)?;
        file.write_all(value.as_bytes())?;
        file.sync_all()?;
        fs::hard_link(&candidate, &path)
    })();
    let _ = fs::remove_file(&candidate);
    match written {
        Ok(()) => Ok((Secret(value), true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((read()?, false)),
        Err(e) => Err(io(e)),
    }
}
