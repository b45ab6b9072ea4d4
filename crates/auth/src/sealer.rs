//! Secrets at rest: AES-256-GCM under the master key, with a random 96-bit
//! nonce per value and the owning row's id as associated data, so a sealed
//! value opens only where it was written.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};

pub struct Sealer {
    key: RandomizedNonceKey,
    /// During a master-key rotation, the key being replaced: tried second
    /// when opening, never used to seal.
    previous: Option<RandomizedNonceKey>,
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be opened: wrong master key, wrong row, or damaged data")]
pub struct SealError;

impl Sealer {
    pub fn new(master_key: &[u8; 32]) -> Self {
        Self {
            key: aes_key(master_key),
            previous: None,
        }
    }

    /// Also opens what `previous` sealed (a rotation under way).
    pub fn with_previous(mut self, previous: Option<&[u8; 32]>) -> Self {
        self.previous = previous.map(aes_key);
        self
    }

    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        seal_with(&self.key, plaintext, context)
    }

    /// A new data key, and the key sealed under the master key to be stored
    /// (with `context`, its own id, as associated data).
    pub fn new_data_key(&self, context: &[u8]) -> (DataKey, Vec<u8>) {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).expect("the system's random source");
        let sealed = self.seal(&raw, context);
        (DataKey(aes_key(&raw)), sealed)
    }

    /// A stored data key, opened.
    pub fn open_data_key(&self, sealed: &[u8], context: &[u8]) -> Result<DataKey, SealError> {
        let raw: [u8; 32] = self
            .open(sealed, context)?
            .try_into()
            .map_err(|_| SealError)?;
        Ok(DataKey(aes_key(&raw)))
    }

    /// Opens with the master key, or else the previous one.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        open_with(&self.key, sealed, context).or_else(|e| match &self.previous {
            Some(previous) => open_with(previous, sealed, context),
            None => Err(e),
        })
    }

    /// Whether `sealed` opens with the master key itself (not the previous one).
    pub fn is_current(&self, sealed: &[u8], context: &[u8]) -> bool {
        open_with(&self.key, sealed, context).is_ok()
    }

    /// `sealed` under the master key: the second half of a key rotation.
    pub fn reseal(&self, sealed: &[u8], context: &[u8]) -> Reseal {
        if self.is_current(sealed, context) {
            return Reseal::Current;
        }
        match self.open(sealed, context) {
            Ok(plain) => Reseal::Sealed(self.seal(&plain, context)),
            Err(_) => Reseal::Unreadable,
        }
    }
}

/// A key of one owner's own (a person's, for their memory), itself kept
/// sealed under the master key: destroying the sealed copy makes whatever it
/// sealed unreadable, wherever that was copied to.
pub struct DataKey(RandomizedNonceKey);

impl DataKey {
    /// nonce ‖ ciphertext ‖ tag, as [`Sealer::seal`].
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        seal_with(&self.0, plaintext, context)
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        open_with(&self.0, sealed, context)
    }
}

/// What [`Sealer::reseal`] makes of a sealed value.
#[derive(Debug, PartialEq, Eq)]
pub enum Reseal {
    /// Already under the master key.
    Current,
    /// Sealed again under it; to be stored in place of the old.
    Sealed(Vec<u8>),
    /// Neither key opens it.
    Unreadable,
}

/// What a reseal of many values did, each named by its `Id`.
#[derive(Debug, PartialEq)]
pub struct Resealed<Id> {
    /// Sealed again under the current master key.
    pub resealed: usize,
    /// Already under it.
    pub current: usize,
    /// Changed while this ran: their new values are left as they are.
    pub changed: usize,
    /// Neither key opens them: these must be configured again.
    pub unreadable: Vec<Id>,
}

impl<Id: Copy + std::fmt::Display> Resealed<Id> {
    /// Seals each `(id, sealed)` again under `sealer`'s master key (the id as
    /// associated data), storing each new value with `replace`, which says
    /// whether the old one was still there.
    pub async fn run<E>(
        sealer: &Sealer,
        items: impl IntoIterator<Item = (Id, Vec<u8>)>,
        mut replace: impl AsyncFnMut(Id, &[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<Self, E> {
        let mut done = Self::default();
        for (id, sealed) in items {
            match sealer.reseal(&sealed, id.to_string().as_bytes()) {
                Reseal::Current => done.current += 1,
                Reseal::Unreadable => done.unreadable.push(id),
                Reseal::Sealed(new) => match replace(id, &sealed, &new).await? {
                    true => done.resealed += 1,
                    false => done.changed += 1,
                },
            }
        }
        Ok(done)
    }
}

impl<Id> Default for Resealed<Id> {
    fn default() -> Self {
        Self {
            resealed: 0,
            current: 0,
            changed: 0,
            unreadable: Vec::new(),
        }
    }
}

fn aes_key(key: &[u8; 32]) -> RandomizedNonceKey {
    RandomizedNonceKey::new(&AES_256_GCM, key).expect("a 32-byte AES key")
}

fn seal_with(key: &RandomizedNonceKey, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
    let mut sealed = plaintext.to_vec();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(context), &mut sealed)
        .expect("AES-GCM sealing does not fail for small inputs");
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&sealed);
    out
}

fn open_with(
    key: &RandomizedNonceKey,
    sealed: &[u8],
    context: &[u8],
) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN {
        return Err(SealError);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError)?;
    let mut buffer = ciphertext.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(context), &mut buffer)
        .map_err(|_| SealError)?;
    Ok(plain.to_vec())
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
    fn a_data_key_opens_only_its_own_and_only_through_the_master_key() {
        let sealer = Sealer::new(&[7; 32]);
        let (key, sealed_key) = sealer.new_data_key(b"key-1");
        let fact = key.seal(b"works in finance", b"fact-1");
        let reopened = sealer.open_data_key(&sealed_key, b"key-1").unwrap();
        assert_eq!(
            reopened.open(&fact, b"fact-1").unwrap(),
            b"works in finance"
        );
        assert!(
            reopened.open(&fact, b"fact-2").is_err(),
            "the context binds"
        );
        assert!(sealer.open_data_key(&sealed_key, b"key-2").is_err());
        assert!(
            Sealer::new(&[8; 32])
                .open_data_key(&sealed_key, b"key-1")
                .is_err()
        );
        let (other, _) = sealer.new_data_key(b"key-2");
        assert!(
            other.open(&fact, b"fact-1").is_err(),
            "another person's key"
        );
        assert!(
            sealer.open(&fact, b"fact-1").is_err(),
            "not the master key's"
        );
    }

    #[test]
    fn the_same_secret_seals_differently_each_time() {
        let sealer = Sealer::new(&[7; 32]);
        assert_ne!(sealer.seal(b"s", b"c"), sealer.seal(b"s", b"c"));
    }

    #[test]
    fn during_a_rotation_the_previous_key_opens_but_never_seals() {
        let old = Sealer::new(&[7; 32]);
        let sealed_before = old.seal(b"xoxb-token", b"channel-1");
        let rotating = Sealer::new(&[8; 32]).with_previous(Some(&[7; 32]));
        assert_eq!(
            rotating.open(&sealed_before, b"channel-1").unwrap(),
            b"xoxb-token"
        );
        assert!(!rotating.is_current(&sealed_before, b"channel-1"));
        let resealed = rotating.seal(b"xoxb-token", b"channel-1");
        assert!(rotating.is_current(&resealed, b"channel-1"));
        assert!(
            old.open(&resealed, b"channel-1").is_err(),
            "sealed with the new key"
        );
        assert!(
            rotating.open(&sealed_before, b"channel-2").is_err(),
            "the context still binds"
        );
    }
}
