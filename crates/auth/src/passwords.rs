//! argon2id password hashing, off the async runtime and bounded in parallelism:
//! each hash holds `memory_kib` of memory for its duration.

use std::sync::Arc;

use argon2::password_hash::PasswordHasher as _;
use argon2::password_hash::PasswordVerifier as _;
use argon2::{Algorithm, Argon2, Params, Version};
use steward_domain::Password;
use tokio::sync::Semaphore;

#[derive(Clone, Copy, Debug)]
pub struct HashingParams {
    pub memory_kib: u32,
    pub iterations: u32,
    /// How many hashes may run at once.
    pub concurrency: usize,
}

impl Default for HashingParams {
    /// OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            concurrency: 2,
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Verified against when no user exists, so a login for an unknown email
    /// costs as much as one for a known email.
    decoy: Arc<str>,
}

impl PasswordHasher {
    pub fn new(settings: HashingParams) -> Result<Self, String> {
        let params = Params::new(settings.memory_kib, settings.iterations, 1, None)
            .map_err(|e| e.to_string())?;
        let decoy = argon(&params)
            .hash_password(b"decoy password for unknown users")
            .map_err(|e| e.to_string())?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            decoy: decoy.into(),
        })
    }

    /// A PHC string (`$argon2id$v=19$…`).
    pub async fn hash(&self, password: &Password) -> Result<String, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let params = self.params.clone();
        let password = password.expose().to_owned();
        tokio::task::spawn_blocking(move || {
            argon(&params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Whether `password` matches `hash`; with no hash, spends the same effort
    /// and answers false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = hash.is_some();
        let hash = hash
            .map(str::to_owned)
            .unwrap_or_else(|| self.decoy.to_string());
        let password = password.to_owned();
        let params = self.params.clone();
        let matched = tokio::task::spawn_blocking(move || {
            argon(&params)
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(HashingParams {
            memory_kib: 64,
            iterations: 1,
            concurrency: 2,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = cheap();
        let password = Password::parse("password", "Correct-Horse-9").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(hasher.verify("Correct-Horse-9", Some(&hash)).await);
        assert!(!hasher.verify("correct-horse-9", Some(&hash)).await);
        assert!(
            !hasher
                .verify("Correct-Horse-9", Some("not a phc string"))
                .await
        );
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        assert!(
            !cheap()
                .verify("decoy password for unknown users", None)
                .await
        );
    }
}
