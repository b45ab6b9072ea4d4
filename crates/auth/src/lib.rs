//! Credentials: password hashing, JWTs for people, API keys for machines, a
//! keyed signer for opaque tokens such as history cursors, and a sealer for
//! secrets at rest. No HTTP, no storage.

mod keys;
mod passwords;
mod sealer;
mod tokens;

pub use keys::{ApiKeyMaterial, Signer, generate_api_key, generate_password, hash_api_key};
pub use passwords::{HashingParams, PasswordHasher};
pub use sealer::{DataKey, Reseal, Resealed, SealError, Sealer};
pub use tokens::{Claims, TokenError, Tokens};
