//! Random secrets: API keys (stored as SHA-256 only), one-time passwords, and a
//! keyed HMAC signer for opaque values handed to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new API key: show `key` once; store `prefix` and `hash`.
pub struct ApiKeyMaterial {
    pub key: String,
    pub prefix: String,
    pub hash: String,
}

const API_KEY_PREFIX: &str = "stw_";

pub fn generate_api_key() -> ApiKeyMaterial {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    ApiKeyMaterial {
        prefix: key[..API_KEY_PREFIX.len() + 8].to_owned(),
        hash: hash_api_key(&key),
        key,
    }
}

/// A key carries 256 random bits, so a fast hash suffices (no brute force to slow).
pub fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// A password for a new member to change: 20 characters from several classes.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let mut out = String::with_capacity(23);
    for group in 0..4 {
        if group > 0 {
            out.push('-');
        }
        for _ in 0..5 {
            out.push(ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Signs and checks values that leave the server and must come back unchanged.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// A signer for one purpose, keyed from a master secret so that a value
    /// signed for one purpose is not valid for another.
    pub fn derive(master: &[u8], purpose: &str) -> Self {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(master).expect("HMAC takes any key size");
        mac.update(purpose.as_bytes());
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    /// `payload` followed by a 16-byte tag, base64url.
    pub fn seal(&self, payload: &[u8]) -> String {
        let mut out = payload.to_vec();
        out.extend_from_slice(&self.tag(payload)[..16]);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The payload, if `sealed` was made by [`seal`](Self::seal) with this key.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let split = raw.len().checked_sub(16)?;
        let (payload, tag) = raw.split_at(split);
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        Some(payload.to_vec())
    }

    /// A MAC of `payload`, base64url: a token only this key can make.
    pub fn mac(&self, payload: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.tag(payload))
    }

    fn tag(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_random_prefixed_and_hashed() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with("stw_") && a.key.len() == 4 + 43);
        assert!(a.key.starts_with(&a.prefix));
        assert_eq!(a.hash, hash_api_key(&a.key));
        assert_eq!(a.hash.len(), 64);
    }

    #[test]
    fn generated_passwords_meet_the_policy() {
        for _ in 0..50 {
            let password = generate_password();
            assert!(
                steward_domain::Password::parse("password", password.clone()).is_ok(),
                "{password}"
            );
        }
    }

    #[test]
    fn sealed_values_open_only_unchanged_and_under_the_same_purpose() {
        let signer = Signer::derive(b"master", "cursor");
        let sealed = signer.seal(b"payload");
        assert_eq!(signer.open(&sealed).as_deref(), Some(&b"payload"[..]));
        assert_eq!(Signer::derive(b"master", "other").open(&sealed), None);
        assert_eq!(Signer::derive(b"another", "cursor").open(&sealed), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        raw[0] ^= 1;
        assert_eq!(signer.open(&URL_SAFE_NO_PAD.encode(raw)), None);
        assert_eq!(signer.open("short"), None);
        assert_eq!(signer.open("!!not base64!!"), None);
        assert_eq!(signer.open(""), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a client sends as a cursor, opening it never panics and
        /// yields nothing unless it was sealed by this signer.
        #[test]
        fn arbitrary_input_never_opens(input in any::<String>()) {
            let signer = Signer::derive(b"master", "cursor");
            prop_assert_eq!(signer.open(&input), None);
        }

        #[test]
        fn every_payload_round_trips_and_any_flipped_bit_is_refused(payload in proptest::collection::vec(any::<u8>(), 0..64), bit in 0usize..512) {
            let signer = Signer::derive(b"master", "cursor");
            let sealed = signer.seal(&payload);
            prop_assert_eq!(signer.open(&sealed), Some(payload.clone()));
            let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
            let bit = bit % (raw.len() * 8);
            raw[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(signer.open(&URL_SAFE_NO_PAD.encode(raw)), None);
        }
    }
}
