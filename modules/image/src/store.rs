//! Where an Image's bytes live: `<data_dir>/images/<uid>/<sha256>` (the original, named by
//! its content) and `<data_dir>/images/<uid>/derived/<sha256>-<conversion>.<ext>` (each
//! conversion, computed once). Each document has its own directory: a document's
//! `sha256` property names a file only inside its own directory, so a property edited by
//! hand can never reach another document's bytes, and a purge is one directory removal
//! (no reference counting across documents). Every file is written to a temporary name,
//! fsynced, renamed into place and its directory fsynced, so a reader sees a whole file
//! or none. Replacements and purges of one document take its lock,
//! `<data_dir>/images/<uid>.lock` (an exclusive `flock`, so two processes on one data
//! directory take turns too).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::web::Bytes;
use sha2::{Digest, Sha256};
use wendelin_core::{CoreError, CoreResult, Host};

/// The directory of one Image document's files.
pub fn doc_dir(host: &(impl Host + ?Sized), uid: i64) -> CoreResult<PathBuf> {
    let root = host
        .data_dir()
        .ok_or_else(|| CoreError::Internal("the portal has no data directory".into()))?;
    Ok(root.join("images").join(uid.to_string()))
}

/// A document's lock, held until dropped.
pub struct DocLock {
    _file: File,
    path: PathBuf,
}

/// Takes the exclusive lock of the document whose directory is `dir` (waits for it).
pub fn lock(dir: &Path) -> io::Result<DocLock> {
    let path = dir.with_extension("lock");
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(io::Error::from)?;
    Ok(DocLock { _file: file, path })
}

/// The SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `s` is a SHA-256 in lowercase hex (what names files; anything else is refused
/// before it reaches a path).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The original's file of a document.
pub fn original_path(dir: &Path, sha: &str) -> CoreResult<PathBuf> {
    if !is_sha256(sha) {
        return Err(CoreError::Internal(format!("'{sha}' is not a SHA-256")));
    }
    Ok(dir.join(sha))
}

/// The file of a conversion (`key` is built by the module: `[a-z0-9-]` only).
pub fn derived_path(dir: &Path, sha: &str, key: &str, ext: &str) -> CoreResult<PathBuf> {
    if !is_sha256(sha) {
        return Err(CoreError::Internal(format!("'{sha}' is not a SHA-256")));
    }
    Ok(dir.join("derived").join(format!("{sha}-{key}.{ext}")))
}

static TEMP: AtomicU64 = AtomicU64::new(0);

/// Files being computed in this process: each with its computer's lock and, once
/// computed, the bytes (served to those who waited while the file is being written).
static FLIGHTS: Mutex<BTreeMap<PathBuf, Arc<Mutex<Option<Bytes>>>>> = Mutex::new(BTreeMap::new());

/// The right to compute the file `path` in this process (single flight): identical
/// conversions asked at once wait for the first one's result instead of each decoding
/// the source. Freed on drop (once the file is written).
pub struct Flight {
    path: PathBuf,
    entry: Arc<Mutex<Option<Bytes>>>,
}

impl Flight {
    /// The file at `path`, computed by `compute` when no file holds it yet, once per
    /// process however many ask at once; `true` when this call computed it. The file is
    /// written after the bytes are returned (atomically, by a thread of its own): who asks
    /// meanwhile is served the same bytes from memory, who asks after reads the file.
    pub fn run<E: From<io::Error>>(
        path: &Path,
        compute: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<(Bytes, bool), E> {
        let flight = {
            let mut map = FLIGHTS.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = map.entry(path.to_path_buf()).or_default().clone();
            Flight {
                path: path.to_path_buf(),
                entry,
            }
        };
        let bytes = {
            let mut slot = flight.entry.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(bytes) = slot.as_ref() {
                return Ok((bytes.clone(), false));
            }
            if let Some(bytes) = read(path)? {
                return Ok((Bytes::from(bytes), false));
            }
            let bytes = Bytes::from(compute()?);
            *slot = Some(bytes.clone());
            bytes
        };
        let written = bytes.clone();
        // The fsyncs (milliseconds) are not the asker's wait; the flight (and so the
        // bytes in memory) lasts until the file is in place.
        std::thread::spawn(move || {
            if let Err(e) = write_atomic(&flight.path, &written) {
                tracing::warn!(
                    "a conversion could not be kept at {}: {e} (computed again next time)",
                    flight.path.display()
                );
            }
            drop(flight);
        });
        Ok((bytes, true))
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut map = FLIGHTS.lock().unwrap_or_else(PoisonError::into_inner);
        // Entries are cloned under the map's lock only: 2 holders (the map and this one)
        // means no one else waits for it.
        if Arc::strong_count(&self.entry) == 2 {
            map.remove(&self.path);
        }
    }
}

/// Writes `bytes` at `path`: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a file path without a directory"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Reads a file, `None` when it does not exist.
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes every original and conversion of the document but those of `keep` (after a
/// replacement has been committed); leftovers of failed uploads go too.
pub fn keep_only(dir: &Path, keep: &str) -> io::Result<()> {
    let prefix = format!("{keep}-");
    for (sub, is_kept) in [
        (
            dir.to_path_buf(),
            &(|n: &str| n == keep) as &dyn Fn(&str) -> bool,
        ),
        (dir.join("derived"), &|n: &str| n.starts_with(&prefix)),
    ] {
        let entries = match fs::read_dir(&sub) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Dot-files are temporary files of writers in flight (conversions write
            // without the lock); a crash's leftovers go with the directory.
            if entry.file_type()?.is_file() && !name.starts_with('.') && !is_kept(&name) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Removes a deleted document's directory and lock file (idempotent), under its lock:
/// an upload that waited for it then finds the document gone before writing anything.
pub fn remove(dir: &Path) -> io::Result<()> {
    let held = lock(dir)?;
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    match fs::remove_file(&held.path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn atomic_writes_and_cleanup() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("images").join("7");
        let a = sha256_hex(b"a");
        let b = sha256_hex(b"b");
        assert!(is_sha256(&a) && !is_sha256("../x") && !is_sha256(&a.to_uppercase()));
        write_atomic(&original_path(&dir, &a).unwrap(), b"a").unwrap();
        write_atomic(&original_path(&dir, &b).unwrap(), b"b").unwrap();
        write_atomic(&derived_path(&dir, &a, "w1-h1-png", "png").unwrap(), b"x").unwrap();
        write_atomic(&derived_path(&dir, &b, "w1-h1-png", "png").unwrap(), b"y").unwrap();
        let tmp = dir.join(".tmp-in-flight");
        fs::write(&tmp, b"t").unwrap();
        {
            let _held = lock(&dir).unwrap();
            keep_only(&dir, &b).unwrap();
        }
        assert!(tmp.exists(), "a writer's temporary file is left alone");
        assert_eq!(read(&original_path(&dir, &a).unwrap()).unwrap(), None);
        assert_eq!(
            read(&original_path(&dir, &b).unwrap()).unwrap().unwrap(),
            b"b"
        );
        let derived: Vec<_> = fs::read_dir(dir.join("derived")).unwrap().collect();
        assert_eq!(derived.len(), 1);
        remove(&dir).unwrap();
        remove(&dir).unwrap();
        assert!(!dir.exists());
        assert!(!dir.with_extension("lock").exists());
    }
}
