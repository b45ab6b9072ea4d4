//! The files inside a backup: a gzipped copy of the SQLite database, and the
//! blob store as a gzipped tar of every object, keyed by its path. These run
//! on blocking threads; blob reads and writes go back to the async runtime
//! one object at a time, so memory holds one object, never the archive.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use steward_knowledge::Blobs;
use tokio::runtime::Handle;

use crate::BackupError;

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io(format!("{}: {e}", path.display()))
}

/// Compresses `from` into a new file `to`, synced.
pub fn gzip_file(from: &Path, to: &Path) -> Result<(), BackupError> {
    let mut source = BufReader::new(File::open(from).map_err(io(from))?);
    let out = File::create(to).map_err(io(to))?;
    let mut encoder = GzEncoder::new(BufWriter::new(out), Compression::default());
    std::io::copy(&mut source, &mut encoder).map_err(io(to))?;
    finish(encoder, to)
}

/// Decompresses `from` into a new file `to`, synced. A damaged or truncated
/// archive fails (gzip checks its length and CRC at the end).
pub fn gunzip_file(from: &Path, to: &Path) -> Result<(), BackupError> {
    let mut decoder = GzDecoder::new(BufReader::new(File::open(from).map_err(io(from))?));
    let mut out = BufWriter::new(File::create(to).map_err(io(to))?);
    std::io::copy(&mut decoder, &mut out)
        .map_err(|e| BackupError::Corrupt(format!("{}: {e}", from.display())))?;
    let file = out.into_inner().map_err(|e| io(to)(e.into_error()))?;
    file.sync_all().map_err(io(to))
}

fn finish(encoder: GzEncoder<BufWriter<File>>, path: &Path) -> Result<(), BackupError> {
    let file = encoder
        .finish()
        .map_err(io(path))?
        .into_inner()
        .map_err(|e| io(path)(e.into_error()))?;
    file.sync_all().map_err(io(path))
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
) -> Result<BlobTally, BackupError> {
    let out = File::create(to).map_err(io(to))?;
    let mut archive =
        tar::Builder::new(GzEncoder::new(BufWriter::new(out), Compression::default()));
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
    let encoder = archive.into_inner().map_err(io(to))?;
    finish(encoder, to)?;
    Ok(tally)
}

/// Reads the archive `from` to its end, handing each object to `each`.
pub fn read_blobs(
    from: &Path,
    mut each: impl FnMut(&str, Vec<u8>) -> Result<(), BackupError>,
) -> Result<BlobTally, BackupError> {
    let corrupt = |e: std::io::Error| BackupError::Corrupt(format!("{}: {e}", from.display()));
    let file = File::open(from).map_err(io(from))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
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
                "{}: the archive holds an unsafe path '{key}'",
                from.display()
            )));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(corrupt)?;
        tally.count += 1;
        tally.bytes += bytes.len() as u64;
        each(&key, bytes)?;
    }
    // The tar ends before the gzip stream does: read on, so that the gzip
    // trailer (length and CRC) is checked too.
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
