//! The files inside a backup, each sealed under the backup key ([`crypt`]):
//! a gzipped copy of the SQLite database or PostgreSQL's dump, and the blob
//! store as a gzipped tar of every object, keyed by its path. These run on
//! blocking threads; blob reads and writes go back to the async runtime one
//! object at a time, so memory holds one object, never the archive.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use steward_knowledge::Blobs;
use tokio::runtime::Handle;

use crate::BackupError;
use crate::crypt::{BackupKey, BackupKeys, Opening, Sealing};

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io(format!("{}: {e}", path.display()))
}

fn sealed_file(
    to: &Path,
    key: &BackupKey,
    context: &str,
) -> Result<Sealing<BufWriter<File>>, BackupError> {
    let out = File::create(to).map_err(io(to))?;
    Sealing::new(BufWriter::new(out), key, context).map_err(io(to))
}

fn finish_sealed(sealing: Sealing<BufWriter<File>>, path: &Path) -> Result<(), BackupError> {
    let file = sealing
        .finish()
        .map_err(io(path))?
        .into_inner()
        .map_err(|e| io(path)(e.into_error()))?;
    file.sync_all().map_err(io(path))
}

fn opened_file(
    from: &Path,
    keys: &BackupKeys,
    context: &str,
) -> Result<Opening<BufReader<File>>, BackupError> {
    let file = File::open(from).map_err(io(from))?;
    Opening::new(BufReader::new(file), keys, context)
}

/// Seals `from` into a new file `to`, synced; gzipped first with `gzip`.
pub fn seal_file(
    from: &Path,
    to: &Path,
    gzip: bool,
    key: &BackupKey,
    context: &str,
) -> Result<(), BackupError> {
    let mut source = BufReader::new(File::open(from).map_err(io(from))?);
    let sealing = sealed_file(to, key, context)?;
    let sealing = if gzip {
        let mut encoder = GzEncoder::new(sealing, Compression::default());
        std::io::copy(&mut source, &mut encoder).map_err(io(to))?;
        encoder.finish().map_err(io(to))?
    } else {
        let mut sealing = sealing;
        std::io::copy(&mut source, &mut sealing).map_err(io(to))?;
        sealing
    };
    finish_sealed(sealing, to)
}

/// Opens the sealed `from` into a new file `to`, synced; gunzipped with
/// `gzip`. A damaged, altered or truncated file fails.
pub fn open_file(
    from: &Path,
    to: &Path,
    gzip: bool,
    keys: &BackupKeys,
    context: &str,
) -> Result<(), BackupError> {
    let opened = opened_file(from, keys, context)?;
    let mut source: Box<dyn Read> = if gzip {
        Box::new(GzDecoder::new(opened))
    } else {
        Box::new(opened)
    };
    let mut out = BufWriter::new(File::create(to).map_err(io(to))?);
    std::io::copy(&mut source, &mut out)
        .map_err(|e| BackupError::Corrupt(format!("{context}: {e}")))?;
    out.flush().map_err(io(to))?;
    let file = out.into_inner().map_err(|e| io(to)(e.into_error()))?;
    file.sync_all().map_err(io(to))
}

/// Reads the sealed `from` to its end: whether every chunk opens.
pub fn authenticate(from: &Path, keys: &BackupKeys, context: &str) -> Result<(), BackupError> {
    let mut opened = opened_file(from, keys, context)?;
    std::io::copy(&mut opened, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| BackupError::Corrupt(format!("{context}: {e}")))
}

/// Objects written to, or read from, a blob archive.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlobTally {
    pub count: u64,
    pub bytes: u64,
}

/// Writes every object of `blobs` into the archive `to`. Objects deleted
/// while the archive is written are skipped (their documents went with them).
pub fn write_blobs(
    runtime: &Handle,
    blobs: &Blobs,
    keys: &[String],
    to: &Path,
    key: &BackupKey,
    context: &str,
) -> Result<BlobTally, BackupError> {
    let sealing = sealed_file(to, key, context)?;
    let mut archive = tar::Builder::new(GzEncoder::new(sealing, Compression::default()));
    let mut tally = BlobTally::default();
    for key in keys {
        let bytes = match runtime.block_on(blobs.get(key)) {
            Ok(bytes) => bytes,
            Err(steward_knowledge::BlobError::NotFound) => continue,
            Err(e) => return Err(BackupError::Blobs(format!("reading {key}: {e}"))),
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(0);
        archive
            .append_data(&mut header, key, bytes.as_ref())
            .map_err(io(to))?;
        tally.count += 1;
        tally.bytes += bytes.len() as u64;
    }
    let sealing = archive
        .into_inner()
        .and_then(GzEncoder::finish)
        .map_err(io(to))?;
    finish_sealed(sealing, to)?;
    Ok(tally)
}

/// Reads the archive `from` to its end, handing each object to `each`.
pub fn read_blobs(
    from: &Path,
    keys: &BackupKeys,
    context: &str,
    mut each: impl FnMut(&str, Vec<u8>) -> Result<(), BackupError>,
) -> Result<BlobTally, BackupError> {
    let corrupt = |e: std::io::Error| BackupError::Corrupt(format!("{context}: {e}"));
    let mut archive = tar::Archive::new(GzDecoder::new(opened_file(from, keys, context)?));
    let mut tally = BlobTally::default();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let key = entry
            .path()
            .map_err(corrupt)?
            .to_string_lossy()
            .into_owned();
        if !is_safe_key(&key) {
            return Err(BackupError::Corrupt(format!(
                "{context}: the archive holds an unsafe path '{key}'"
            )));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(corrupt)?;
        tally.count += 1;
        tally.bytes += bytes.len() as u64;
        each(&key, bytes)?;
    }
    // The tar ends before the gzip stream does: read on, so that the gzip
    // trailer and the last sealed chunk are checked too.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(corrupt)?;
    Ok(tally)
}

/// Keys Steward writes are relative paths of plain segments.
fn is_safe_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Flushes a directory entry (a rename or a new file in it) to disk.
pub fn sync_dir(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_keys_are_refused() {
        for key in ["", "/etc/passwd", "../x", "a/../../b", "a//b", "./a"] {
            assert!(!is_safe_key(key), "{key}");
        }
        assert!(is_safe_key("orgs/0190/documents/0191"));
    }
}
