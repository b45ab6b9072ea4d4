//! Backup files encrypted under the backup key (`backup.encryption_key`,
//! never the master key): AES-256-GCM in the STREAM construction, as age and
//! Tink use it, so that a file of any size is sealed and opened in 64 KiB
//! pieces without holding it in memory.
//!
//! A file is a header (magic, the key's id, a random salt) and then chunks of
//! 64 KiB of plaintext, each sealed with its own tag. The file's key is
//! derived from the backup key and the salt (HKDF-SHA256), so no two files
//! share a key; a chunk's nonce is its position and whether it is the last,
//! so chunks cannot be reordered, dropped or cut off at the end; and every
//! chunk's associated data names the backup and the file, so a file cannot be
//! swapped for one of another backup. A flipped byte anywhere fails.

use std::io::{self, Read, Write};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac};

use crate::BackupError;

const MAGIC: &[u8; 8] = b"STWDBAK1";
const KEY_ID_LEN: usize = 8;
const SALT_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + SALT_LEN;
const CHUNK: usize = 64 * 1024;
const TAG_LEN: usize = 16;

/// One backup key and its public id (the first 8 bytes of an HMAC of a fixed
/// text under the key: it names the key without revealing it).
#[derive(Clone)]
pub struct BackupKey {
    id: [u8; KEY_ID_LEN],
    raw: [u8; 32],
}

impl BackupKey {
    pub fn new(raw: [u8; 32]) -> Self {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &raw),
            b"steward backup key id",
        );
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&tag.as_ref()[..KEY_ID_LEN]);
        Self { id, raw }
    }

    /// The id, in hex, as the manifest and `backup list` show it.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    fn file_key(&self, salt: &[u8]) -> LessSafeKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&self.raw);
        let info = [b"steward backup file".as_slice()];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

/// The key new backups are sealed with, and the earlier ones a rotation
/// keeps for reading older backups.
#[derive(Clone)]
pub struct BackupKeys {
    current: BackupKey,
    previous: Vec<BackupKey>,
}

impl BackupKeys {
    pub fn new(current: BackupKey, previous: Vec<BackupKey>) -> Self {
        Self { current, previous }
    }

    pub fn current(&self) -> &BackupKey {
        &self.current
    }

    /// The key with this id, or an error that says which key is needed.
    pub fn find(&self, id: &str) -> Result<&BackupKey, BackupError> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id() == id)
            .ok_or_else(|| {
                BackupError::Key(format!(
                    "it is encrypted with the backup key whose id is {id}, which is neither backup.encryption_key (id {}) nor one of backup.previous_encryption_keys: configure the key it was made with",
                    self.current.id()
                ))
            })
    }
}

fn nonce(counter: u64, last: bool) -> Nonce {
    let mut bytes = [0u8; NONCE_LEN];
    bytes[3..11].copy_from_slice(&counter.to_be_bytes());
    bytes[11] = u8::from(last);
    Nonce::assume_unique_for_key(bytes)
}

fn associated_data(header: &[u8], context: &str) -> Vec<u8> {
    [header, context.as_bytes()].concat()
}

/// Seals everything written to it into `out`; [`Sealing::finish`] seals the
/// last chunk, without which the file does not open.
pub struct Sealing<W: Write> {
    out: W,
    key: LessSafeKey,
    aad: Vec<u8>,
    chunk: Vec<u8>,
    counter: u64,
}

impl<W: Write> Sealing<W> {
    /// `context` names the file (`{backup id}/{file name}`): it must be the
    /// same when the file is opened.
    pub fn new(mut out: W, key: &BackupKey, context: &str) -> io::Result<Self> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&key.id);
        let mut salt = [0u8; SALT_LEN];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| io::Error::other("no random source"))?;
        header.extend_from_slice(&salt);
        out.write_all(&header)?;
        Ok(Self {
            out,
            key: key.file_key(&salt),
            aad: associated_data(&header, context),
            chunk: Vec::with_capacity(CHUNK + TAG_LEN),
            counter: 0,
        })
    }

    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce(self.counter, last),
                Aad::from(&self.aad),
                &mut self.chunk,
            )
            .map_err(|_| io::Error::other("AES-GCM sealing failed"))?;
        self.chunk.extend_from_slice(tag.as_ref());
        let written = self.out.write_all(&self.chunk);
        // Cleared even when the write failed (a full disk): the file is
        // abandoned then, and nothing may be sealed under this nonce again.
        self.chunk.clear();
        self.counter += 1;
        written
    }

    /// Seals the last chunk and hands back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_chunk(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Sealing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A full chunk is sealed only once more follows: the last chunk is
        // sealed as the last by `finish`, even when it is full.
        if self.chunk.len() == CHUNK && !buf.is_empty() {
            self.seal_chunk(false)?;
        }
        let taken = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads the key id from a sealed file's header without opening it.
pub fn key_id_of(mut input: impl Read) -> io::Result<String> {
    let mut header = [0u8; HEADER_LEN];
    input.read_exact(&mut header).map_err(|_| not_sealed())?;
    if &header[..MAGIC.len()] != MAGIC {
        return Err(not_sealed());
    }
    Ok(hex::encode(&header[MAGIC.len()..MAGIC.len() + KEY_ID_LEN]))
}

fn not_sealed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "not an encrypted Steward backup file",
    )
}

fn damaged() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "does not open with its backup key: the file was damaged or altered",
    )
}

/// Opens a file [`Sealing`] wrote, failing at the first chunk that was
/// altered, and at the end if the last chunk is missing.
pub struct Opening<R: Read> {
    input: R,
    key: LessSafeKey,
    aad: Vec<u8>,
    /// Sealed bytes read ahead: a chunk, and one byte past it that tells
    /// whether it is the last.
    sealed: Vec<u8>,
    plain: Vec<u8>,
    read: usize,
    counter: u64,
    done: bool,
}

impl<R: Read> Opening<R> {
    pub fn new(mut input: R, keys: &BackupKeys, context: &str) -> Result<Self, BackupError> {
        let mut header = [0u8; HEADER_LEN];
        input
            .read_exact(&mut header)
            .map_err(|_| BackupError::Corrupt(format!("{context}: {}", not_sealed())))?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(BackupError::Corrupt(format!("{context}: {}", not_sealed())));
        }
        let key = keys.find(&hex::encode(&header[MAGIC.len()..MAGIC.len() + KEY_ID_LEN]))?;
        Ok(Self {
            input,
            key: key.file_key(&header[MAGIC.len() + KEY_ID_LEN..]),
            aad: associated_data(&header, context),
            sealed: Vec::with_capacity(CHUNK + TAG_LEN + 1),
            plain: Vec::new(),
            read: 0,
            counter: 0,
            done: false,
        })
    }

    fn open_chunk(&mut self) -> io::Result<()> {
        let want = CHUNK + TAG_LEN + 1;
        while self.sealed.len() < want {
            let had = self.sealed.len();
            self.sealed.resize(want, 0);
            let n = match self.input.read(&mut self.sealed[had..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    self.sealed.truncate(had);
                    return Err(e);
                }
            };
            self.sealed.truncate(had + n);
            if n == 0 {
                break;
            }
        }
        let last = self.sealed.len() < want;
        if self.sealed.len() < TAG_LEN {
            return Err(damaged());
        }
        let ahead = if last {
            Vec::new()
        } else {
            self.sealed.split_off(CHUNK + TAG_LEN)
        };
        let mut chunk = std::mem::replace(&mut self.sealed, ahead);
        let opened = self
            .key
            .open_in_place(nonce(self.counter, last), Aad::from(&self.aad), &mut chunk)
            .map_err(|_| damaged())?
            .len();
        chunk.truncate(opened);
        self.plain = chunk;
        self.read = 0;
        self.counter += 1;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for Opening<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.read == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.open_chunk()?;
        }
        let n = buf.len().min(self.plain.len() - self.read);
        buf[..n].copy_from_slice(&self.plain[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> BackupKeys {
        BackupKeys::new(BackupKey::new([7; 32]), vec![BackupKey::new([9; 32])])
    }

    fn seal(plain: &[u8], key: &BackupKey, context: &str) -> Vec<u8> {
        let mut sealing = Sealing::new(Vec::new(), key, context).unwrap();
        // In uneven writes, as a compressor makes them.
        for piece in plain.chunks(7001) {
            sealing.write_all(piece).unwrap();
        }
        sealing.finish().unwrap()
    }

    fn open(sealed: &[u8], keys: &BackupKeys, context: &str) -> Result<Vec<u8>, String> {
        let mut opening = Opening::new(sealed, keys, context).map_err(|e| e.to_string())?;
        let mut plain = Vec::new();
        opening.read_to_end(&mut plain).map_err(|e| e.to_string())?;
        Ok(plain)
    }

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn files_of_every_length_round_trip() {
        let keys = keys();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let plain = bytes(len);
            let sealed = seal(&plain, keys.current(), "b/f");
            let chunks = len.div_ceil(CHUNK).max(1);
            assert_eq!(sealed.len(), HEADER_LEN + len + chunks * TAG_LEN, "{len}");
            assert_eq!(open(&sealed, &keys, "b/f").unwrap(), plain, "{len}");
        }
    }

    #[test]
    fn a_previous_key_opens_what_it_sealed() {
        let keys = keys();
        let old = BackupKey::new([9; 32]);
        let sealed = seal(b"older backup", &old, "b/f");
        assert_eq!(key_id_of(sealed.as_slice()).unwrap(), old.id());
        assert_eq!(open(&sealed, &keys, "b/f").unwrap(), b"older backup");
        let only_new = BackupKeys::new(BackupKey::new([7; 32]), Vec::new());
        let refused = open(&sealed, &only_new, "b/f").unwrap_err();
        assert!(refused.contains(&old.id()), "{refused}");
        assert!(
            refused.contains("backup.previous_encryption_keys"),
            "{refused}"
        );
    }

    #[test]
    fn any_change_fails_to_open() {
        let keys = keys();
        let plain = bytes(2 * CHUNK + 100);
        let sealed = seal(&plain, keys.current(), "b/f");
        for at in [0, 9, HEADER_LEN, HEADER_LEN + CHUNK, sealed.len() - 1] {
            let mut flipped = sealed.clone();
            flipped[at] ^= 1;
            assert!(open(&flipped, &keys, "b/f").is_err(), "byte {at} flipped");
        }
        // Cut after a whole chunk: the rest looks complete but is not the last.
        let cut = &sealed[..HEADER_LEN + CHUNK + TAG_LEN];
        assert!(open(cut, &keys, "b/f").is_err(), "cut at a chunk boundary");
        let short = &sealed[..sealed.len() - 1];
        assert!(open(short, &keys, "b/f").is_err(), "one byte short");
        // Two chunks swapped.
        let first = HEADER_LEN..HEADER_LEN + CHUNK + TAG_LEN;
        let second = first.end..first.end + CHUNK + TAG_LEN;
        let mut swapped = sealed[..HEADER_LEN].to_vec();
        swapped.extend_from_slice(&sealed[second.clone()]);
        swapped.extend_from_slice(&sealed[first]);
        swapped.extend_from_slice(&sealed[second.end..]);
        assert!(open(&swapped, &keys, "b/f").is_err(), "chunks swapped");
        // The same file read as another backup's, or another file.
        assert!(open(&sealed, &keys, "other/f").is_err());
        assert!(open(b"plain text, not sealed", &keys, "b/f").is_err());
    }
}
