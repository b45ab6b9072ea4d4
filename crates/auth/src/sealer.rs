//! Secrets at rest: AES-256-GCM under the master key, with a random 96-bit
//! nonce per value and the owning row's id as associated data, so a sealed
//! value opens only where it was written.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};

pub struct Sealer {
    key: RandomizedNonceKey,
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be opened: wrong master key, wrong row, or damaged data")]
pub struct SealError;

impl Sealer {
    pub fn new(master_key: &[u8; 32]) -> Self {
        Self {
            key: RandomizedNonceKey::new(&AES_256_GCM, master_key).expect("a 32-byte AES key"),
        }
    }

    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut sealed = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(context), &mut sealed)
            .expect("AES-GCM sealing does not fail for small inputs");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError)?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .map_err(|_| SealError)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_its_key_and_context() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal(b"xoxb-token", b"channel-1");
        assert!(!sealed.windows(10).any(|w| w == b"xoxb-token"));
        assert_eq!(sealer.open(&sealed, b"channel-1").unwrap(), b"xoxb-token");
        assert!(sealer.open(&sealed, b"channel-2").is_err());
        assert!(Sealer::new(&[8; 32]).open(&sealed, b"channel-1").is_err());
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(sealer.open(&flipped, b"channel-1").is_err());
        assert!(sealer.open(&sealed[..5], b"channel-1").is_err());
    }

    #[test]
    fn the_same_secret_seals_differently_each_time() {
        let sealer = Sealer::new(&[7; 32]);
        assert_ne!(sealer.seal(b"s", b"c"), sealer.seal(b"s", b"c"));
    }
}
