//! What every provider's webhook check is made of: an HMAC-SHA256 over the raw
//! body bytes as received, compared in constant time, and for the schemes
//! that sign a timestamp, a window that refuses replays. Each provider's
//! module says which headers carry what.

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Signed timestamps older or newer than this are refused (replays).
const TIMESTAMP_WINDOW_SECS: i64 = 5 * 60;

/// Why a webhook was refused. Deliberately vague towards the caller.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unauthorized {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature does not match")]
    Mismatch,
    #[error("the signed timestamp is outside the allowed window")]
    Stale,
    /// A bearer token that is not the provider's, or not for this channel.
    #[error("the token is refused: {0}")]
    Token(String),
    /// The provider's signing keys could not be fetched: not the caller's
    /// fault, so it is asked to send again later.
    #[error("the provider's signing keys are out of reach: {0}")]
    Unverifiable(String),
}

/// A header's value, when it is there and readable.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Hex HMAC-SHA256 of the parts, in order, under `secret`.
pub(crate) fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key size");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// `given` is `expected`, compared in constant time.
pub(crate) fn matches(given: &str, expected: &str) -> Result<(), Unauthorized> {
    let same =
        given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
    if same {
        Ok(())
    } else {
        Err(Unauthorized::Mismatch)
    }
}

/// A shared token compared as it is.
pub(crate) fn token(secret_token: &str, given: Option<&str>) -> Result<(), Unauthorized> {
    matches(given.ok_or(Unauthorized::Missing)?, secret_token)
}

/// A signature over a timestamp and the body: both present, the timestamp
/// fresh, and the signature the one `expected` computes for it.
pub(crate) fn timestamped(
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: DateTime<Utc>,
    expected: impl FnOnce(&str) -> String,
) -> Result<(), Unauthorized> {
    let signature = signature.ok_or(Unauthorized::Missing)?;
    let timestamp = timestamp.ok_or(Unauthorized::Missing)?;
    let at: i64 = timestamp.trim().parse().map_err(|_| Unauthorized::Stale)?;
    if (now.timestamp() - at).abs() > TIMESTAMP_WINDOW_SECS {
        return Err(Unauthorized::Stale);
    }
    matches(signature, &expected(timestamp))
}
