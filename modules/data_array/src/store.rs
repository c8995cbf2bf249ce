//! One Zarr v3 array in a directory, read and written with `zarrs`.
//!
//! Atomicity, from a reader's view and across a crash:
//! - every key (chunk or `zarr.json`) is replaced whole: [`AtomicStore`] writes the new
//!   bytes to a temporary file in `<dir>/.wtmp/`, syncs them, renames it over the old key
//!   and syncs the directory, so a key holds its old or its new bytes, never a torn mix
//!   (the next writer removes temporary files a crash left); one exception: an append to
//!   an array whose chunks are stored raw writes the rows that fill the partly filled
//!   last chunk into its file in place (`append_in_place`) — bytes past the shape only,
//!   which no reader reads before the new metadata, so the rows already there are never
//!   touched;
//! - an append writes the tail chunks first (the old elements inside them unchanged) and
//!   `zarr.json` with the grown shape last: a reader that saw the old shape never reads past
//!   it, and a crash before the metadata rename leaves the old array (the new tail elements
//!   sit beyond the old shape, invisible);
//! - writers hold an exclusive `flock` on `<dir>/.wendelin.lock` (across threads and
//!   processes); the server's readers (region reads, reductions) hold it shared, so a
//!   region write spanning several chunks is seen whole or not at all by them;
//! - a region write spanning several chunks goes through a redo journal: every new key is
//!   staged as a synced file under `<dir>/.txn/<id>/`, then a `COMMITTED` manifest (staged
//!   file → key, keys to erase) is created by rename — the commit point — and only then are
//!   the staged files renamed into place and the journal removed. Whoever opens the array
//!   next re-applies a committed journal (idempotent) and deletes an uncommitted one, so a
//!   crash at any point leaves the whole old or the whole new region. Single-chunk writes
//!   and appends keep the direct path (one key rename, or chunks then `zarr.json`);
//! - `append_deferred` (analysis runs) renames its *new* keys into place unsynced and lists
//!   them; the caller makes them durable with one `sync_paths` before the commit that
//!   counts on them (a process crash loses nothing: the page cache survives it).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use zarrs::array::{Array, ArrayBuilder, ArrayBytes, ArraySubset, FillValueMetadata};
use zarrs::filesystem::FilesystemStore;
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    store_set_partial_many, Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator,
    OffsetBytesIterator, ReadableStorageTraits, StorageError, StoreKey, StoreKeys,
    StoreKeysPrefixes, StorePrefix, WritableStorageTraits,
};

use crate::dtype::Dtype;
use crate::error::{ArrayError, ArrayResult};
use crate::npy::element_count;
use crate::region::Region;

/// Default target size of one chunk, in bytes.
pub const DEFAULT_CHUNK_BYTES: u64 = 1 << 20;
/// Largest chunk accepted, in bytes (a chunk is decoded whole in memory).
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;
/// Largest shard accepted, in bytes (a write into a shard rewrites it whole in memory).
pub const MAX_SHARD_BYTES: u64 = 256 << 20;
/// Most dimensions an array may have (numpy's limit).
pub const MAX_DIMS: usize = 32;
/// Most elements an array may have (2^50: a pebibyte of bytes).
pub const MAX_ELEMENTS: u64 = 1 << 50;
/// Most chunks an array's grid may have (2^32).
pub const MAX_CHUNKS: u64 = 1 << 32;
const LOCK_FILE: &str = ".wendelin.lock";
/// Marks the temporary keys of earlier versions (written next to their key): never served.
const TMP_MARK: &str = ".wtmp";
/// Directory of the temporary files of single-key writes, each renamed over its key once
/// synced. Whoever takes the writer lock next removes what a crashed writer left there.
const TMP_DIR: &str = ".wtmp";
/// Directory of the redo journals of multi-chunk writes.
const TXN_DIR: &str = ".txn";
/// Name of a journal's commit marker (its manifest).
const COMMITTED: &str = "COMMITTED";
/// Present while a shrinking resize resets what lies past the new shape: holds the shape
/// before it (JSON). Written before the new metadata and removed after the reset, so a
/// crash in between is finished by the next opening ([`recover`]): old values past the
/// new shape never reappear when the array grows again.
const RESIZE_MARK: &str = ".wendelin-resize";

/// Compression of chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Raw little-endian bytes.
    None,
    /// zstd, level 3.
    Zstd,
}

impl Codec {
    /// Parses `none` or `zstd`.
    pub fn parse(name: &str) -> ArrayResult<Codec> {
        match name {
            "" | "none" => Ok(Codec::None),
            "zstd" => Ok(Codec::Zstd),
            other => Err(ArrayError::BadRequest(format!(
                "unknown codec '{other}'; expected none or zstd"
            ))),
        }
    }
}

/// What a new array is made of.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Element type.
    pub dtype: Dtype,
    /// Initial shape.
    pub shape: Vec<u64>,
    /// Chunk shape; default: about [`DEFAULT_CHUNK_BYTES`] per chunk.
    pub chunk_shape: Option<Vec<u64>>,
    /// Chunk compression.
    pub codec: Codec,
    /// When set, chunks are grouped into shards of this shape (a multiple of the chunk
    /// shape), one stored key per shard (Zarr's `sharding_indexed` codec): fewer, larger
    /// files for arrays of many small chunks.
    pub shard_shape: Option<Vec<u64>>,
    /// Fill value in Zarr v3 JSON form; default zero (false for bool).
    pub fill_value: Option<Value>,
    /// Optional names of the dimensions.
    pub dimension_names: Option<Vec<String>>,
}

/// A chunk shape of about `target` bytes: trailing dimensions kept whole while they fit,
/// the first axis (the one that grows by appends) sized to fill the rest.
pub fn default_chunk_shape(shape: &[u64], elem: u64, target: u64) -> Vec<u64> {
    let mut left = (target / elem.max(1)).max(1);
    let mut chunk = vec![1; shape.len()];
    for d in (0..shape.len()).rev() {
        let n = if d == 0 {
            left
        } else {
            shape[d].clamp(1, left)
        };
        chunk[d] = n.max(1);
        left = (left / chunk[d]).max(1);
    }
    chunk
}

/// A zarrs store whose writes replace keys atomically (temporary file, sync, rename, sync
/// of the directory); reads and listings go straight to the filesystem store.
#[derive(Debug)]
pub struct AtomicStore {
    inner: FilesystemStore,
    counter: AtomicU64,
    root: PathBuf,
    /// The open journal, when writes are being staged.
    txn: Mutex<Option<Txn>>,
    /// When set, new keys are written unsynced and listed here (see
    /// [`DataArray::append_deferred`]).
    deferred: Mutex<Option<Vec<PathBuf>>>,
}

/// Writes staged for one multi-key transaction.
#[derive(Debug, Default)]
struct Txn {
    dir: PathBuf,
    /// Staged file name → key, in staging order.
    staged: Vec<(String, String)>,
    /// Keys to erase.
    erased: Vec<String>,
}

impl AtomicStore {
    /// A store rooted at `dir` (created when missing).
    pub fn new(dir: &Path) -> ArrayResult<AtomicStore> {
        std::fs::create_dir_all(dir)?;
        let inner = FilesystemStore::new(dir).map_err(|e| ArrayError::Storage(e.to_string()))?;
        Ok(AtomicStore {
            inner,
            counter: AtomicU64::new(0),
            root: dir.to_path_buf(),
            txn: Mutex::new(None),
            deferred: Mutex::new(None),
        })
    }

    fn deferred(&self) -> Result<std::sync::MutexGuard<'_, Option<Vec<PathBuf>>>, StorageError> {
        self.deferred
            .lock()
            .map_err(|_| StorageError::Other("a writer of this array panicked".into()))
    }

    fn journal(&self) -> Result<std::sync::MutexGuard<'_, Option<Txn>>, StorageError> {
        self.txn
            .lock()
            .map_err(|_| StorageError::Other("a writer of this array panicked".into()))
    }

    /// Starts staging every write and erase into a new journal (see the module docs).
    fn begin(&self) -> ArrayResult<()> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .root
            .join(TXN_DIR)
            .join(format!("{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut guard = self.journal()?;
        *guard = Some(Txn {
            dir,
            ..Txn::default()
        });
        Ok(())
    }

    /// Drops the journal being staged, whose writes never become visible.
    fn abort(&self) {
        if let Ok(mut guard) = self.txn.lock() {
            if let Some(txn) = guard.take() {
                let _ = std::fs::remove_dir_all(&txn.dir);
            }
        }
    }

    /// Commits the journal being staged (manifest renamed into place), then applies it.
    fn commit(&self) -> ArrayResult<()> {
        let Some(txn) = self.journal()?.take() else {
            return Ok(());
        };
        let manifest = serde_json::json!({ "staged": txn.staged, "erased": txn.erased });
        let tmp = txn.dir.join("manifest.tmp");
        std::fs::write(&tmp, manifest.to_string())?;
        File::open(&tmp)?.sync_all()?;
        File::open(&txn.dir)?.sync_all()?;
        crash_point(CrashAt::TxnStaged);
        std::fs::rename(&tmp, txn.dir.join(COMMITTED))?;
        File::open(&txn.dir)?.sync_all()?;
        apply_journal(&self.root, &txn.dir)
    }
}

/// Makes durable the files and directories [`DataArray::append_deferred`] listed: each
/// file `fdatasync`'d, each directory `fsync`'d, from up to [`SYNC_THREADS`] threads at
/// once (the file system joins concurrent syncs into one journal commit and device
/// flush, where one thread would pay them one after the other). Per path, not `syncfs`:
/// a file system-wide sync also waits for every other process's dirty pages (a build
/// beside the server made a run's sync take a second). The files were written to the
/// device directly, or had their writeback started, when they were written
/// ([`wendelin_core::store::files::write_new`]), so little is left to wait for here.
/// Paths gone since (cut away by a later resize) are skipped.
pub fn sync_paths(paths: &[PathBuf]) -> ArrayResult<()> {
    let mut unique: Vec<&PathBuf> = paths.iter().collect();
    unique.sort();
    unique.dedup();
    let threads = unique.len().min(SYNC_THREADS);
    if threads <= 1 {
        return unique.into_iter().try_for_each(|p| sync_path(p));
    }
    let next = AtomicU64::new(0);
    let results: Vec<ArrayResult<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = usize::try_from(i).ok().and_then(|i| unique.get(i)) else {
                        return Ok(());
                    };
                    sync_path(path)?;
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(ArrayError::Storage("a sync thread panicked".into())))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// Threads [`sync_paths`] syncs from: they wait on the device, not the CPU.
const SYNC_THREADS: usize = 8;

/// `fdatasync` of a file, `fsync` of a directory; nothing for a path that is gone.
fn sync_path(path: &Path) -> ArrayResult<()> {
    match File::open(path) {
        Ok(f) if f.metadata()?.is_dir() => Ok(f.sync_all()?),
        Ok(f) => Ok(f.sync_data()?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Renames a committed journal's staged files over their keys, erases its erased keys and
/// removes it. Idempotent: a staged file already renamed is skipped, so re-applying after a
/// crash in the middle finishes the job.
fn apply_journal(root: &Path, txn_dir: &Path) -> ArrayResult<()> {
    let text = std::fs::read_to_string(txn_dir.join(COMMITTED))?;
    let manifest: Value = serde_json::from_str(&text)
        .map_err(|e| ArrayError::Storage(format!("bad journal {}: {e}", txn_dir.display())))?;
    let mut parents = std::collections::BTreeSet::new();
    let staged = manifest
        .get("staged")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, pair) in staged.iter().enumerate() {
        let (Some(name), Some(key)) = (
            pair.get(0).and_then(Value::as_str),
            pair.get(1).and_then(Value::as_str),
        ) else {
            return Err(ArrayError::Storage(format!(
                "bad journal entry in {}",
                txn_dir.display()
            )));
        };
        let from = txn_dir.join(name);
        let to = root.join(key);
        if !from.exists() {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
            parents.insert(parent.to_path_buf());
        }
        std::fs::rename(&from, &to)?;
        if i == 0 && staged.len() > 1 {
            crash_point(CrashAt::TxnApplying);
        }
    }
    for key in manifest
        .get("erased")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        match std::fs::remove_file(root.join(key)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    for parent in &parents {
        File::open(parent)?.sync_all()?;
    }
    std::fs::remove_dir_all(txn_dir)?;
    // The empty journal directory goes too, so readers see no recovery to do.
    let _ = std::fs::remove_dir(root.join(TXN_DIR));
    File::open(root)?.sync_all()?;
    Ok(())
}

/// Finishes what a crash interrupted in `dir`: committed journals are applied, others
/// deleted; a shrinking resize gets its reset done. The caller holds the exclusive lock.
fn recover(dir: &Path) -> ArrayResult<()> {
    if dir.join(TXN_DIR).exists() || dir.join(RESIZE_MARK).exists() {
        crate::decimate::forget(dir);
    }
    sweep_tmp(dir)?;
    recover_journals(dir)?;
    recover_resize(dir)
}

/// Removes the temporary files a crashed writer left in [`TMP_DIR`]; the caller holds the
/// exclusive lock, so no live writer owns any of them.
fn sweep_tmp(dir: &Path) -> ArrayResult<()> {
    for path in entries_of(&dir.join(TMP_DIR))? {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// The paths in directory `dir`, sorted; none when it does not exist.
fn entries_of(dir: &Path) -> ArrayResult<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    Ok(paths)
}

/// Applies the committed journals in `dir`, deletes the others.
fn recover_journals(dir: &Path) -> ArrayResult<()> {
    let txns = dir.join(TXN_DIR);
    for txn in entries_of(&txns)? {
        if txn.join(COMMITTED).is_file() {
            apply_journal(dir, &txn)?;
        } else {
            std::fs::remove_dir_all(&txn)?;
        }
    }
    let _ = std::fs::remove_dir(&txns);
    Ok(())
}

/// Finishes a shrinking resize that a crash interrupted after its new metadata.
fn recover_resize(dir: &Path) -> ArrayResult<()> {
    let mark = dir.join(RESIZE_MARK);
    let from = match std::fs::read(&mark) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let old: Vec<u64> = serde_json::from_slice(&from).map_err(|e| {
        ArrayError::Storage(format!(
            "unreadable {} in {}: {e}",
            RESIZE_MARK,
            dir.display()
        ))
    })?;
    let mut array = DataArray::open(dir)?;
    if old.len() == array.shape().len() {
        array.reset_past_shape(&old)?;
    }
    std::fs::remove_file(&mark)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

impl ReadableStorageTraits for AtomicStore {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        self.inner.get_partial_many(key, byte_ranges)
    }

    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.inner.get(key)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.inner.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

impl WritableStorageTraits for AtomicStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let staging = self.journal()?.as_ref().map(|t| t.dir.clone());
        if let Some(dir) = staging {
            let name = format!("{n}");
            let path = dir.join(&name);
            wendelin_core::store::files::write_new(&path, &value)?.sync_all()?;
            if let Some(txn) = self.journal()?.as_mut() {
                txn.staged.push((name, key.as_str().to_string()));
            }
            return Ok(());
        }
        let tmp_dir = self.root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp_dir)?;
        let tmp = tmp_dir.join(format!("{}-{n}", std::process::id()));
        let path = self.inner.key_to_fspath(key);
        // A new key (no file to replace) may wait for the caller's one sync; a key that
        // replaces another is synced before its rename, so it is old or new, never torn.
        let deferring = self.deferred()?.is_some();
        let defer = deferring && !path.exists();
        // Written around the page cache when large (its writeback was the bound of an
        // analysis' appends), else with its writeback started.
        let file = wendelin_core::store::files::write_new(&tmp, &value)?;
        if !defer {
            file.sync_all()?;
        }
        drop(file);
        crash_point(CrashAt::KeyWritten);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&tmp, &path)?;
        if defer {
            if let Some(list) = self.deferred()?.as_mut() {
                list.push(path.clone());
                // The directories between the key and the root got new entries.
                let mut dir = path.parent();
                while let Some(d) = dir.filter(|d| d.starts_with(&self.root)) {
                    list.push(d.to_path_buf());
                    dir = d.parent();
                }
            }
        } else if let Some(parent) = path.parent() {
            if deferring {
                // The key is whole (synced before the rename); the rename itself is made
                // durable by the caller's one sync, like the new keys.
                if let Some(list) = self.deferred()?.as_mut() {
                    list.push(parent.to_path_buf());
                }
            } else {
                File::open(parent)?.sync_all()?;
            }
        }
        Ok(())
    }

    fn set_partial_many(
        &self,
        key: &StoreKey,
        offset_values: OffsetBytesIterator,
    ) -> Result<(), StorageError> {
        store_set_partial_many(self, key, offset_values)
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        if let Some(txn) = self.journal()?.as_mut() {
            txn.erased.push(key.as_str().to_string());
            return Ok(());
        }
        self.inner.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

impl ListableStorageTraits for AtomicStore {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.inner.list()
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        self.inner.list_prefix(prefix)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        self.inner.list_dir(prefix)
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        self.inner.size_prefix(prefix)
    }
}

/// A lock on an array directory, released when dropped.
#[derive(Debug)]
pub struct DirLock(File);

impl DirLock {
    fn take(dir: &Path, exclusive: bool) -> ArrayResult<DirLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        if exclusive {
            file.lock()?;
        } else {
            file.lock_shared()?;
        }
        Ok(DirLock(file))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first is only quicker.
        let _ = self.0.unlock();
    }
}

/// A Zarr v3 array stored in a directory.
pub struct DataArray {
    dir: PathBuf,
    store: Arc<AtomicStore>,
    array: Array<AtomicStore>,
    dtype: Dtype,
}

impl std::fmt::Debug for DataArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataArray")
            .field("dir", &self.dir)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape())
            .finish()
    }
}

impl DataArray {
    /// Creates the array in `dir` (which must not hold one yet).
    pub fn create(dir: &Path, options: &CreateOptions) -> ArrayResult<DataArray> {
        if dir.join("zarr.json").exists() {
            return Err(ArrayError::BadRequest(format!(
                "an array already exists in {}",
                dir.display()
            )));
        }
        let metadata = build_metadata(options)?;
        let store = Arc::new(AtomicStore::new(dir)?);
        let _lock = DirLock::take(dir, true)?;
        // Checked again under the lock: two creators that both found no array must not
        // both write one (the second would replace the metadata of rows the first
        // appended meanwhile).
        if dir.join("zarr.json").exists() {
            return Err(ArrayError::BadRequest(format!(
                "an array already exists in {}",
                dir.display()
            )));
        }
        crate::decimate::forget(dir);
        let array = Array::new_with_metadata(store.clone(), "/", metadata)?;
        array.store_metadata()?;
        Ok(DataArray {
            dir: dir.to_path_buf(),
            store,
            array,
            dtype: options.dtype,
        })
    }

    /// Opens the array in `dir`.
    pub fn open(dir: &Path) -> ArrayResult<DataArray> {
        if !dir.join("zarr.json").is_file() {
            return Err(ArrayError::NotFound(format!(
                "no Zarr v3 array (zarr.json) in {}",
                dir.display()
            )));
        }
        let store = Arc::new(AtomicStore::new(dir)?);
        let array = Array::open(store.clone(), "/")?;
        let metadata = serde_json::to_value(array.metadata())
            .map_err(|e| ArrayError::Storage(e.to_string()))?;
        let name = metadata
            .get("data_type")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ArrayError::BadRequest(format!(
                    "the array in {} has a data type this server does not support",
                    dir.display()
                ))
            })?;
        let dtype = Dtype::parse(name)?;
        Ok(DataArray {
            dir: dir.to_path_buf(),
            store,
            array,
            dtype,
        })
    }

    /// Runs `f` on the freshly opened array under the exclusive writer lock.
    pub fn with_writer<T>(
        dir: &Path,
        f: impl FnOnce(&mut DataArray) -> ArrayResult<T>,
    ) -> ArrayResult<T> {
        if !dir.join("zarr.json").is_file() {
            return Err(ArrayError::NotFound(format!(
                "no array in {}",
                dir.display()
            )));
        }
        let _lock = DirLock::take(dir, true)?;
        recover(dir)?;
        let mut array = DataArray::open(dir)?;
        f(&mut array)
    }

    /// Runs `f` on the freshly opened array under the shared reader lock: no write of
    /// this server happens meanwhile.
    pub fn with_reader<T>(
        dir: &Path,
        f: impl FnOnce(&DataArray) -> ArrayResult<T>,
    ) -> ArrayResult<T> {
        if !dir.join("zarr.json").is_file() {
            return Err(ArrayError::NotFound(format!(
                "no array in {}",
                dir.display()
            )));
        }
        DataArray::recover_if_needed(dir)?;
        let _lock = DirLock::take(dir, false)?;
        let array = DataArray::open(dir)?;
        f(&array)
    }

    /// Finishes (committed) or discards (uncommitted) the journal of a multi-chunk write
    /// that a crash interrupted, under the exclusive lock; nothing to do in the usual case.
    pub fn recover_if_needed(dir: &Path) -> ArrayResult<()> {
        if dir.join(TXN_DIR).exists() || dir.join(RESIZE_MARK).exists() {
            let _lock = DirLock::take(dir, true)?;
            recover(dir)?;
        }
        Ok(())
    }

    /// The directory holding the array.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Current shape.
    pub fn shape(&self) -> &[u64] {
        self.array.shape()
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The regular chunk shape (for a sharded array: the shard shape).
    pub fn chunk_shape(&self) -> ArrayResult<Vec<u64>> {
        let zeros = vec![0; self.shape().len()];
        Ok(self
            .array
            .chunk_shape(&zeros)?
            .iter()
            .map(|n| n.get())
            .collect())
    }

    /// The array's `zarr.json` as JSON.
    pub fn metadata(&self) -> ArrayResult<Value> {
        serde_json::to_value(self.array.metadata()).map_err(|e| ArrayError::Storage(e.to_string()))
    }

    fn check_dtype(&self, dtype: Dtype) -> ArrayResult<()> {
        if dtype != self.dtype {
            return Err(ArrayError::BadRequest(format!(
                "dtype mismatch: the array holds {} but the data is {}",
                self.dtype.name(),
                dtype.name()
            )));
        }
        Ok(())
    }

    /// Appends `bytes` (C order, little-endian, `dtype`, shape `data_shape`) along the first
    /// axis; returns the new shape. Only the chunks covering the new rows are written, then
    /// the metadata.
    pub fn append(
        &mut self,
        dtype: Dtype,
        data_shape: &[u64],
        bytes: &[u8],
    ) -> ArrayResult<Vec<u64>> {
        self.check_dtype(dtype)?;
        let shape = self.shape().to_vec();
        if shape.is_empty() {
            return Err(ArrayError::BadRequest(
                "cannot append to a 0-dimensional array".into(),
            ));
        }
        let rows_shape: Vec<u64> = if data_shape.len() + 1 == shape.len()
            && data_shape == &shape[1..]
        {
            std::iter::once(1)
                .chain(data_shape.iter().copied())
                .collect()
        } else if data_shape.len() == shape.len() && data_shape[1..] == shape[1..] {
            data_shape.to_vec()
        } else {
            return Err(ArrayError::BadRequest(format!(
                "shape mismatch: appending {data_shape:?} to an array of shape {shape:?} needs shape [n, {}]",
                shape[1..].iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            )));
        };
        check_len(dtype, &rows_shape, bytes)?;
        if rows_shape[0] == 0 {
            return Ok(shape);
        }
        // The tail chunk's summary, before the write replaces the chunk (and forget_rows
        // its summary): the new summaries are computed from it and the appended bytes.
        let summaries = crate::decimate::before_append(self);
        let chunk = self.chunk_shape()?;
        crate::decimate::forget_rows(
            &self.dir,
            chunk[0],
            shape[0],
            shape[0].saturating_add(rows_shape[0]),
        );
        let mut grown = shape.clone();
        grown[0] += rows_shape[0];
        check_extent(&grown, &chunk)?;
        self.array.set_shape(grown.clone())?;
        let in_place = self.append_in_place(&shape, &chunk, rows_shape[0], bytes)?;
        if in_place < rows_shape[0] {
            let row = bytes.len() as u64 / rows_shape[0];
            let mut start = vec![0; shape.len()];
            start[0] = shape[0] + in_place;
            let mut rest = rows_shape;
            rest[0] -= in_place;
            let subset = ArraySubset::new_with_start_shape(start, rest)
                .map_err(|e| ArrayError::Storage(e.to_string()))?;
            let from = usize::try_from(in_place * row)
                .map_err(|_| ArrayError::Storage("append larger than memory".into()))?;
            self.array
                .store_array_subset(&subset, ArrayBytes::new_flen(&bytes[from..]))?;
        }
        crash_point(CrashAt::AppendMetadata);
        self.array.store_metadata()?;
        if let Some(plan) = summaries {
            crate::decimate::after_append(self, plan, bytes);
        }
        Ok(grown)
    }

    /// The first of `rows` appended rows (`bytes`, C order) that fall in the partly filled
    /// chunk at the end of `shape`, written straight into that chunk's file; returns how
    /// many (0: none, the append stores them all through zarrs). Only where a chunk's
    /// stored bytes are its elements ([`DataArray::raw_codecs`]), a chunk holds whole
    /// rows (its trailing dimensions are the array's) and the chunk is a plain file of the
    /// full size. Only bytes past the shape are written: a reader never reads them before
    /// the new metadata, and the rows already there are never rewritten, so a crash
    /// cannot tear them — where zarrs would read the chunk back, write it whole to a new
    /// file and sync it before its rename (a run of an analysis appending a few samples
    /// rewrote a 1 MiB chunk each time). The bytes are synced with the new chunks: by the
    /// caller's one sync for [`DataArray::append_deferred`], here otherwise.
    fn append_in_place(
        &self,
        shape: &[u64],
        chunk: &[u64],
        rows: u64,
        bytes: &[u8],
    ) -> ArrayResult<u64> {
        let Some(&c0) = chunk.first() else {
            return Ok(0);
        };
        let into = shape[0] % c0.max(1);
        if into == 0 || chunk[1..] != shape[1..] || !self.raw_codecs()? {
            return Ok(0);
        }
        let start = shape[0] - into;
        let ranges: Vec<std::ops::Range<u64>> = std::iter::once(start..start + c0)
            .chain(shape[1..].iter().map(|&d| 0..d))
            .collect();
        let Some(file) = self.raw_chunk_file(&ranges, true)? else {
            return Ok(0);
        };
        let n = rows.min(c0 - into);
        let row = bytes.len() as u64 / rows;
        let len = usize::try_from(n * row)
            .map_err(|_| ArrayError::Storage("append larger than memory".into()))?;
        file.write_all_at(&bytes[..len], into * row)?;
        let indices: Vec<u64> = std::iter::once(start / c0)
            .chain(shape[1..].iter().map(|_| 0))
            .collect();
        let path = self.chunk_path(&indices);
        match self.store.deferred()?.as_mut() {
            Some(list) => list.push(path),
            None => file.sync_data()?,
        }
        Ok(n)
    }

    /// [`DataArray::append`] whose new chunks (keys with no file yet, all past the old
    /// shape) are renamed into place unsynced, their paths and directories added to
    /// `unsynced` for one [`sync_paths`] before whatever commit counts on them: a run of
    /// many appends then waits for the disk once instead of twice per chunk. Keys it
    /// replaces (the boundary chunk, `zarr.json`) are synced before their rename, so each
    /// holds its old or its new bytes; their directory is listed too. Until that sync, a
    /// machine crash (not a process crash) may leave new chunks empty past a shape the
    /// metadata already shows; the caller cuts the array back to what it committed.
    pub fn append_deferred(
        &mut self,
        dtype: Dtype,
        data_shape: &[u64],
        bytes: &[u8],
        unsynced: &mut Vec<PathBuf>,
    ) -> ArrayResult<Vec<u64>> {
        *self.store.deferred()? = Some(Vec::new());
        let result = self.append(dtype, data_shape, bytes);
        if let Some(list) = self.store.deferred()?.take() {
            unsynced.extend(list);
        }
        result
    }

    /// Writes `bytes` into `region` (no steps; its shape, with or without the dimensions
    /// given as single indices, must equal `data_shape`).
    pub fn write(
        &self,
        region: &Region,
        dtype: Dtype,
        data_shape: &[u64],
        bytes: &[u8],
    ) -> ArrayResult<()> {
        self.check_dtype(dtype)?;
        if data_shape != region.out_shape().as_slice()
            && data_shape != region.full_shape().as_slice()
        {
            return Err(ArrayError::BadRequest(format!(
                "shape mismatch: the region has shape {:?} but the data has shape {data_shape:?}",
                region.out_shape()
            )));
        }
        check_len(dtype, &region.full_shape(), bytes)?;
        if region.full_shape().contains(&0) {
            return Ok(());
        }
        match region.dims.first() {
            Some(d) => {
                crate::decimate::forget_rows(&self.dir, self.chunk_shape()?[0], d.start, d.end());
            }
            None => crate::decimate::forget(&self.dir),
        }
        let subset = ArraySubset::new_with_ranges(
            &region
                .dims
                .iter()
                .map(|d| d.start..d.stop)
                .collect::<Vec<_>>(),
        );
        let ranges: Vec<_> = region.dims.iter().map(|d| d.start..d.stop).collect();
        if self.chunk_grid(&ranges)?.len() <= 1 {
            // One chunk: one atomic key replacement is enough.
            self.array
                .store_array_subset(&subset, ArrayBytes::new_flen(bytes))?;
            return Ok(());
        }
        self.store.begin()?;
        match self
            .array
            .store_array_subset(&subset, ArrayBytes::new_flen(bytes))
        {
            Ok(()) => self.store.commit(),
            Err(e) => {
                self.store.abort();
                Err(e.into())
            }
        }
    }

    /// Changes the shape. Growing exposes fill values; shrinking erases the chunks past the
    /// new shape and resets the cut part of boundary chunks to the fill value (after the
    /// metadata, so readers see the old or the new shape; a crash before the reset is
    /// finished on the next opening, see [`RESIZE_MARK`]).
    pub fn resize(&mut self, new_shape: &[u64]) -> ArrayResult<()> {
        let old = self.shape().to_vec();
        if new_shape.len() != old.len() {
            return Err(ArrayError::BadRequest(format!(
                "resize to {new_shape:?} changes the number of dimensions of {old:?}"
            )));
        }
        check_extent(new_shape, &self.chunk_shape()?)?;
        match (old.split_first(), new_shape.split_first()) {
            // Along the first axis only: the chunks wholly inside both shapes keep their
            // files and rows, so their summaries stay valid.
            (Some((&o, o_rest)), Some((&n, n_rest))) if o_rest == n_rest => {
                crate::decimate::forget_rows(&self.dir, self.chunk_shape()?[0], o.min(n), o.max(n));
            }
            _ => crate::decimate::forget(&self.dir),
        }
        let shrinks = new_shape.iter().zip(&old).any(|(n, o)| n < o);
        let mark = StoreKey::new(RESIZE_MARK).map_err(|e| ArrayError::Storage(e.to_string()))?;
        if shrinks {
            let from = serde_json::to_vec(&old).map_err(|e| ArrayError::Storage(e.to_string()))?;
            self.store.set(&mark, from.into())?;
        }
        self.array.set_shape(new_shape.to_vec())?;
        self.array.store_metadata()?;
        if !shrinks {
            return Ok(());
        }
        crash_point(CrashAt::ResizeReset);
        self.reset_past_shape(&old)?;
        self.store.erase(&mark)?;
        Ok(())
    }

    /// Resets to the fill value whatever lies past the current shape in the chunks of the
    /// grid of `old` (a larger shape): chunks wholly past it are erased, boundary chunks
    /// rewritten. Idempotent.
    fn reset_past_shape(&mut self, old: &[u64]) -> ArrayResult<()> {
        let new_shape = self.shape().to_vec();
        let new_shape = new_shape.as_slice();
        // Chunks that held old elements but are no longer wholly inside the new shape.
        let chunk = self.chunk_shape()?;
        let grid: Vec<u64> = old
            .iter()
            .zip(&chunk)
            .map(|(s, c)| s.div_ceil(*c))
            .collect();
        for_each_index(&grid, |idx| {
            let inside = idx
                .iter()
                .zip(&chunk)
                .zip(new_shape)
                .all(|((i, c), n)| (i + 1) * c <= *n);
            if inside {
                return Ok(());
            }
            let disjoint = idx
                .iter()
                .zip(&chunk)
                .zip(new_shape)
                .any(|((i, c), n)| i * c >= *n);
            if disjoint {
                self.array.erase_chunk(idx)?;
                return Ok(());
            }
            // Keep the part inside the new shape; rewrite the chunk from fill values.
            let ranges: Vec<_> = idx
                .iter()
                .zip(&chunk)
                .zip(new_shape)
                .map(|((i, c), n)| i * c..((i + 1) * c).min(*n))
                .collect();
            let keep = ArraySubset::new_with_ranges(&ranges);
            let bytes: ArrayBytes<'static> = self.array.retrieve_array_subset(&keep)?;
            let fill = self.array.fill_value().as_ne_bytes().to_vec();
            let chunk_elems = element_count(&chunk).unwrap_or(0);
            let mut full: Vec<u8> =
                Vec::with_capacity(usize::try_from(chunk_elems).unwrap_or(0) * fill.len());
            for _ in 0..chunk_elems {
                full.extend_from_slice(&fill);
            }
            let kept = bytes
                .into_fixed()
                .map_err(|e| ArrayError::Storage(e.to_string()))?;
            let keep_shape: Vec<u64> = ranges.iter().map(|r| r.end - r.start).collect();
            copy_box(&kept, &keep_shape, &mut full, &chunk, fill.len());
            self.array.store_chunk(idx, ArrayBytes::new_flen(full))?;
            Ok(())
        })
    }

    /// Reads `region` and hands its elements (C order, little-endian) to `sink` in slabs of
    /// at most about `budget` bytes along the first axis, so a large read is never whole in
    /// memory.
    pub fn read(
        &self,
        region: &Region,
        budget: usize,
        mut sink: impl FnMut(&[u8]) -> ArrayResult<()>,
    ) -> ArrayResult<()> {
        let elem = self.dtype.size() as u64;
        if region.dims.is_empty() {
            let bytes = self.read_box(&[])?;
            return sink(&bytes);
        }
        if region.full_shape().contains(&0) {
            return Ok(());
        }
        let first = region.dims[0];
        let row_bytes = region.dims[1..]
            .iter()
            .map(|d| d.end() - d.start)
            .product::<u64>()
            * elem;
        let rows_per_slab = (budget as u64 / row_bytes.max(1) / first.step).max(1);
        let n = first.len();
        let mut i = 0;
        while i < n {
            let take = rows_per_slab.min(n - i);
            let mut slab = region.clone();
            slab.dims[0] = crate::region::Dim {
                start: first.start + i * first.step,
                stop: first.start + (i + take - 1) * first.step + 1,
                step: first.step,
                keep: true,
            };
            let boxed: Vec<std::ops::Range<u64>> =
                slab.dims.iter().map(|d| d.start..d.end()).collect();
            let raw = self.read_box(&boxed)?;
            if slab.contiguous() {
                sink(&raw)?;
            } else {
                let box_shape: Vec<u64> = boxed.iter().map(|r| r.end - r.start).collect();
                let steps: Vec<u64> = slab.dims.iter().map(|d| d.step).collect();
                sink(&gather(
                    &raw,
                    &box_shape,
                    &steps,
                    &slab.full_shape(),
                    elem as usize,
                ))?;
            }
            i += take;
        }
        Ok(())
    }

    /// The file holding the whole chunk `ranges` when its stored bytes are its elements as
    /// they are (see [`DataArray::raw_codecs`]), opened for writing too with `write`;
    /// `None` when the box is not a whole chunk, the chunk is absent (fill value), its size
    /// is not the chunk's, or the array is imported (a link).
    fn raw_chunk_file(
        &self,
        ranges: &[std::ops::Range<u64>],
        write: bool,
    ) -> ArrayResult<Option<File>> {
        // An imported array is a link to a directory that other programs (zarr-python)
        // may rewrite in place: its chunks are read, never mapped (see map_chunk_file).
        if std::fs::symlink_metadata(&self.dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Ok(None);
        }
        let chunk = self.chunk_shape()?;
        let whole = ranges.len() == chunk.len()
            && ranges
                .iter()
                .zip(&chunk)
                .all(|(r, c)| r.start % c == 0 && r.end - r.start == *c);
        if !whole {
            return Ok(None);
        }
        let indices: Vec<u64> = ranges
            .iter()
            .zip(&chunk)
            .map(|(r, c)| r.start / c)
            .collect();
        let key = self.array.chunk_key(&indices);
        let expected = element_count(&chunk).unwrap_or(0) * self.dtype.size() as u64;
        let file = match File::options()
            .read(true)
            .write(write)
            .open(self.dir.join(key.as_str()))
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if expected == 0 || file.metadata()?.len() != expected {
            return Ok(None);
        }
        Ok(Some(file))
    }

    /// Maps a whole unencoded chunk read-only, so a reduction reads its elements straight
    /// from the page cache without copying them; `None` as for [`Self::raw_chunk_file`].
    /// The caller must have checked [`DataArray::raw_codecs`].
    pub fn map_raw_chunk(
        &self,
        ranges: &[std::ops::Range<u64>],
    ) -> ArrayResult<Option<memmap2::Mmap>> {
        let Some(file) = self.raw_chunk_file(ranges, false)? else {
            return Ok(None);
        };
        let map = map_chunk_file(&file)?;
        read_in_large_folios(&map);
        Ok(Some(map))
    }

    /// Reads the whole chunk `ranges` into the page cache unless it is there already, the
    /// way [`Self::map_raw_chunk`] does (large folios), and returns when it is read: the
    /// reduction's prefetch thread calls it for the chunks the workers take next. Does
    /// nothing for chunks that are not plain files.
    pub fn prefetch_raw_chunk(&self, ranges: &[std::ops::Range<u64>]) {
        let Ok(Some(file)) = self.raw_chunk_file(ranges, false) else {
            return;
        };
        if let Ok(map) = map_chunk_file(&file) {
            read_in_large_folios(&map);
        }
    }

    /// True when every chunk's stored bytes are its elements as they are: codec chain
    /// `bytes` alone, little-endian (on a little-endian machine), no storage transformer.
    pub fn raw_codecs(&self) -> ArrayResult<bool> {
        let meta = self.metadata()?;
        let codecs = meta.get("codecs").and_then(Value::as_array);
        let plain = codecs.is_some_and(|c| {
            c.len() == 1
                && c[0].get("name").and_then(Value::as_str) == Some("bytes")
                && c[0]
                    .pointer("/configuration/endian")
                    .and_then(Value::as_str)
                    .is_none_or(|e| e == "little")
        });
        let transformers = meta
            .get("storage_transformers")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        Ok(plain && !transformers && cfg!(target_endian = "little"))
    }

    /// The file of the chunk (for a sharded array, the shard) at `indices` of the grid.
    pub fn chunk_path(&self, indices: &[u64]) -> PathBuf {
        self.dir.join(self.array.chunk_key(indices).as_str())
    }

    /// The elements of a box, C order.
    pub fn read_box(&self, ranges: &[std::ops::Range<u64>]) -> ArrayResult<Vec<u8>> {
        let subset = ArraySubset::new_with_ranges(ranges);
        let bytes: ArrayBytes<'static> = self.array.retrieve_array_subset(&subset)?;
        Ok(bytes
            .into_fixed()
            .map_err(|e| ArrayError::Storage(e.to_string()))?
            .into_owned())
    }

    /// Whether `key` may name a stored key: `/`-separated parts of ASCII letters, digits,
    /// `.`, `_` and `-`, none empty or starting with `.` (so no `..`, no hidden or
    /// absolute path), and no temporary file. Such a key is always a relative path
    /// below the array's directory.
    pub fn valid_store_key(key: &str) -> bool {
        !key.is_empty()
            && !key.contains(TMP_MARK)
            && key.split('/').all(|part| {
                !part.is_empty()
                    && !part.starts_with('.')
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            })
    }

    /// Reads one stored key (`zarr.json` or a chunk key) as the Zarr store holds it; `None`
    /// when absent. Only plain keys are served: no hidden files, no `..`, no temporary files.
    pub fn store_key(dir: &Path, key: &str) -> ArrayResult<Option<Vec<u8>>> {
        if !Self::valid_store_key(key) {
            // Readers probe keys of other formats (`.zarray`, `.zattrs`): they are absent.
            return Ok(None);
        }
        let path = dir.join(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // A prefix ("c/0") is a directory: not a key.
            Err(_) if path.is_dir() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The chunks that `ranges` (one per dimension) touch, each clipped to the ranges,
    /// as a grid computed on demand: a region over billions of chunks costs no memory.
    pub fn chunk_grid(&self, ranges: &[std::ops::Range<u64>]) -> ArrayResult<ChunkGrid> {
        ChunkGrid::new(ranges, &self.chunk_shape()?)
    }
}

/// Reads a mapped chunk into the page cache and maps it. Hints only: a failure costs
/// speed, never correctness. HugePage lets the kernel read a cold chunk into large folios
/// (readahead or fadvise WILLNEED fill small ones), so a later, warm pass maps it with a
/// few faults instead of thousands — measured 4× faster warm sums on this kernel
/// (bench/RESULTS.md, 2026-11-26); PopulateRead then reads and maps it in one call.
fn read_in_large_folios(map: &memmap2::Mmap) {
    let _ = map.advise(memmap2::Advice::HugePage);
    let _ = map.advise(memmap2::Advice::PopulateRead);
}

/// Maps a chunk file read-only. One of the two places of the workspace that use `unsafe`
/// (with [`wendelin_core::store::files::start_writeback`]).
#[allow(unsafe_code)]
fn map_chunk_file(file: &File) -> ArrayResult<memmap2::Mmap> {
    // SAFETY: a mapping is only sound while nobody changes or truncates the file under it.
    // Chunk files are never truncated, and changed in place only by `append_in_place`
    // (bytes past the shape), which holds the array's exclusive flock, while every mapping
    // lives under its shared flock (reductions run inside `with_reader`): no mapping sees
    // that write. Every other write of this server (AtomicStore::set, the transaction
    // journal) writes a new file and renames it over the key, so an existing mapping keeps
    // the old inode's bytes, immutable until unmapped; erasing a chunk unlinks it, which
    // also leaves the inode alive while mapped. Only a process outside this
    // server writing or truncating the file in place would break this (SIGBUS on a
    // truncated page, torn values on a rewrite): the data directory is the server's alone
    // (ARCHITECTURE.md, "Data Arrays").
    // Not MAP_POPULATE: measured slower here (its page walk costs more than the kernel's
    // fault-around, 16 pages per fault, while the sum reads the map in order).
    let map = unsafe { memmap2::MmapOptions::new().map(file) }?;
    Ok(map)
}

/// Where a test failpoint may kill the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashAt {
    /// After a single-key write's temporary file is synced, before its rename
    /// (`WENDELIN_TEST_CRASH_IN_ARRAY_KEY=1`).
    KeyWritten,
    /// After an append's chunks, before its `zarr.json`
    /// (`WENDELIN_TEST_CRASH_BEFORE_ARRAY_METADATA=1`).
    AppendMetadata,
    /// After a journal's files are staged, before its commit marker
    /// (`WENDELIN_TEST_CRASH_IN_ARRAY_TXN=staged`).
    TxnStaged,
    /// After the first of several renames of a committed journal
    /// (`WENDELIN_TEST_CRASH_IN_ARRAY_TXN=applying`).
    TxnApplying,
    /// After a shrinking resize's new `zarr.json`, before the chunks past the new shape
    /// are reset (`WENDELIN_TEST_CRASH_IN_ARRAY_RESIZE=1`).
    ResizeReset,
    /// After an append stored its first chunk summary, before the others
    /// (`WENDELIN_TEST_CRASH_IN_ARRAY_SUMMARIES=1`).
    SummaryStored,
}

/// Test failpoints: the process dies (SIGABRT, no unwinding, no cleanup) at `at` when the
/// environment asks for it — the crashes the atomicity schemes must survive.
pub(crate) fn crash_point(at: CrashAt) {
    type Asked = (bool, Option<String>, bool, bool, bool);
    static CRASH: std::sync::OnceLock<Asked> = std::sync::OnceLock::new();
    let (meta, txn, resize, key, summary) = CRASH.get_or_init(|| {
        (
            std::env::var_os("WENDELIN_TEST_CRASH_BEFORE_ARRAY_METADATA").is_some(),
            std::env::var("WENDELIN_TEST_CRASH_IN_ARRAY_TXN").ok(),
            std::env::var_os("WENDELIN_TEST_CRASH_IN_ARRAY_RESIZE").is_some(),
            std::env::var_os("WENDELIN_TEST_CRASH_IN_ARRAY_KEY").is_some(),
            std::env::var_os("WENDELIN_TEST_CRASH_IN_ARRAY_SUMMARIES").is_some(),
        )
    });
    let hit = match at {
        CrashAt::KeyWritten => *key,
        CrashAt::AppendMetadata => *meta,
        CrashAt::TxnStaged => txn.as_deref() == Some("staged"),
        CrashAt::TxnApplying => txn.as_deref() == Some("applying"),
        CrashAt::ResizeReset => *resize,
        CrashAt::SummaryStored => *summary,
    };
    if hit {
        std::process::abort();
    }
}

/// Checks that `options` make a storable array (what [`DataArray::create`] would refuse),
/// without creating anything.
pub fn check_options(options: &CreateOptions) -> ArrayResult<()> {
    build_metadata(options).map(|_| ())
}

/// Refuses shapes past [`MAX_DIMS`], [`MAX_ELEMENTS`] or, with chunks of `chunk`,
/// [`MAX_CHUNKS`]: an array of 2^100 elements is not a request to honour, and loops over
/// chunks must stay countable.
fn check_extent(shape: &[u64], chunk: &[u64]) -> ArrayResult<()> {
    if shape.len() > MAX_DIMS {
        return Err(ArrayError::BadRequest(format!(
            "an array has at most {MAX_DIMS} dimensions, not {}",
            shape.len()
        )));
    }
    if element_count(shape).is_none_or(|n| n > MAX_ELEMENTS) {
        return Err(ArrayError::BadRequest(format!(
            "shape {shape:?} has more than {MAX_ELEMENTS} (2^50) elements"
        )));
    }
    let chunks = shape
        .iter()
        .zip(chunk)
        .try_fold(1u64, |n, (s, c)| n.checked_mul(s.div_ceil((*c).max(1))));
    if chunks.is_none_or(|n| n > MAX_CHUNKS) {
        return Err(ArrayError::BadRequest(format!(
            "shape {shape:?} in chunks of {chunk:?} makes more than {MAX_CHUNKS} (2^32) chunks: choose larger chunks"
        )));
    }
    Ok(())
}

fn build_metadata(o: &CreateOptions) -> ArrayResult<zarrs::array::ArrayMetadata> {
    if o.shape.len() > MAX_DIMS {
        return Err(ArrayError::BadRequest(format!(
            "an array has at most {MAX_DIMS} dimensions, not {}",
            o.shape.len()
        )));
    }
    let elem = o.dtype.size() as u64;
    let chunk = match &o.chunk_shape {
        Some(c) => {
            if c.len() != o.shape.len() || c.contains(&0) {
                return Err(ArrayError::BadRequest(format!(
                    "chunk_shape {c:?} must have one positive size per dimension of shape {:?}",
                    o.shape
                )));
            }
            c.clone()
        }
        None => default_chunk_shape(&o.shape, elem, DEFAULT_CHUNK_BYTES),
    };
    let chunk_bytes = element_count(&chunk).and_then(|n| n.checked_mul(elem));
    if chunk_bytes.is_none_or(|b| b > MAX_CHUNK_BYTES) {
        return Err(ArrayError::BadRequest(format!(
            "chunk_shape {chunk:?} makes chunks over {} MiB",
            MAX_CHUNK_BYTES >> 20
        )));
    }
    check_extent(&o.shape, &chunk)?;
    if let Some(names) = &o.dimension_names {
        if names.len() != o.shape.len() {
            return Err(ArrayError::BadRequest(format!(
                "{} dimension names for {} dimensions",
                names.len(),
                o.shape.len()
            )));
        }
    }
    let fill = match &o.fill_value {
        Some(v) => serde_json::from_value::<FillValueMetadata>(v.clone())
            .map_err(|e| ArrayError::BadRequest(format!("bad fill_value {v}: {e}")))?,
        None => default_fill(o.dtype),
    };
    let grid = match &o.shard_shape {
        None => chunk.clone(),
        Some(shard) => {
            let fits = shard.len() == chunk.len()
                && shard.iter().zip(&chunk).all(|(s, c)| *s > 0 && s % c == 0);
            if !fits {
                return Err(ArrayError::BadRequest(format!(
                    "shard_shape {shard:?} must be a multiple of chunk_shape {chunk:?} in every dimension"
                )));
            }
            let shard_bytes = element_count(shard).and_then(|n| n.checked_mul(elem));
            if shard_bytes.is_none_or(|b| b > MAX_SHARD_BYTES) {
                return Err(ArrayError::BadRequest(format!(
                    "shard_shape {shard:?} makes shards over {} MiB",
                    MAX_SHARD_BYTES >> 20
                )));
            }
            shard.clone()
        }
    };
    let mut builder = ArrayBuilder::new(o.shape.clone(), grid, o.dtype.name(), fill);
    if o.shard_shape.is_some() {
        builder.subchunk_shape(chunk);
    }
    if o.codec == Codec::Zstd {
        builder.bytes_to_bytes_codecs(vec![Arc::new(zarrs::array::codec::ZstdCodec::new(
            3, false,
        ))]);
    }
    if let Some(names) = &o.dimension_names {
        builder.dimension_names(Some(names.clone()));
    }
    let metadata = builder
        .build_metadata()
        .map_err(|e| ArrayError::BadRequest(format!("invalid array: {e}")))?;
    Ok(zarrs::array::ArrayMetadata::V3(metadata))
}

fn default_fill(dtype: Dtype) -> FillValueMetadata {
    let json = match dtype {
        Dtype::Bool => Value::Bool(false),
        Dtype::F32 | Dtype::F64 => Value::from(0.0),
        Dtype::C64 | Dtype::C128 => serde_json::json!([0.0, 0.0]),
        _ => Value::from(0),
    };
    serde_json::from_value(json).unwrap_or_else(|_| FillValueMetadata::from(0u8))
}

fn check_len(dtype: Dtype, shape: &[u64], bytes: &[u8]) -> ArrayResult<()> {
    let expected = element_count(shape).and_then(|n| n.checked_mul(dtype.size() as u64));
    if expected != Some(bytes.len() as u64) {
        return Err(ArrayError::BadRequest(format!(
            "the data holds {} bytes but shape {shape:?} of {} needs {}",
            bytes.len(),
            dtype.name(),
            expected.map_or("more than 2^64".to_owned(), |n| n.to_string())
        )));
    }
    Ok(())
}

/// Calls `f` with every index of a grid of `counts`, C order.
pub fn for_each_index(
    counts: &[u64],
    mut f: impl FnMut(&[u64]) -> ArrayResult<()>,
) -> ArrayResult<()> {
    if counts.contains(&0) {
        return Ok(());
    }
    let mut idx = vec![0u64; counts.len()];
    loop {
        f(&idx)?;
        let mut d = counts.len();
        loop {
            if d == 0 {
                return Ok(());
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < counts[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Copies a C-order box of `src_shape` into the corner of a C-order `dst` of `dst_shape`.
fn copy_box(src: &[u8], src_shape: &[u64], dst: &mut [u8], dst_shape: &[u64], elem: usize) {
    if src_shape.is_empty() {
        dst[..elem].copy_from_slice(&src[..elem]);
        return;
    }
    let last = src_shape.len() - 1;
    let run = usize::try_from(src_shape[last]).unwrap_or(0) * elem;
    let mut src_off = 0;
    let outer: Vec<u64> = src_shape[..last].to_vec();
    let dst_strides = strides(dst_shape);
    let _ = for_each_index(&outer, |idx| {
        let off: u64 = idx.iter().zip(&dst_strides).map(|(i, s)| i * s).sum();
        let off = usize::try_from(off).unwrap_or(0) * elem;
        dst[off..off + run].copy_from_slice(&src[src_off..src_off + run]);
        src_off += run;
        Ok(())
    });
}

/// Element strides of a C-order shape.
pub fn strides(shape: &[u64]) -> Vec<u64> {
    let mut s = vec![1u64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Picks every `steps[d]`-th element of a C-order box.
fn gather(src: &[u8], box_shape: &[u64], steps: &[u64], out_shape: &[u64], elem: usize) -> Vec<u8> {
    let st = strides(box_shape);
    let mut out = Vec::with_capacity(
        usize::try_from(element_count(out_shape).unwrap_or(0)).unwrap_or(0) * elem,
    );
    let _ = for_each_index(out_shape, |idx| {
        let off: u64 = idx
            .iter()
            .zip(steps)
            .zip(&st)
            .map(|((i, step), s)| i * step * s)
            .sum();
        let off = usize::try_from(off).unwrap_or(0) * elem;
        out.extend_from_slice(&src[off..off + elem]);
        Ok(())
    });
    out
}

/// The chunks a region touches, in C order, each clipped to the region; box `i` is
/// computed from `i` (see [`DataArray::chunk_grid`]).
#[derive(Debug, Clone)]
pub struct ChunkGrid {
    ranges: Vec<std::ops::Range<u64>>,
    chunk: Vec<u64>,
    first: Vec<u64>,
    counts: Vec<u64>,
    len: u64,
}

impl ChunkGrid {
    fn new(ranges: &[std::ops::Range<u64>], chunk: &[u64]) -> ArrayResult<ChunkGrid> {
        if ranges.len() != chunk.len() || chunk.contains(&0) {
            return Err(ArrayError::BadRequest(format!(
                "{} ranges for {} dimensions",
                ranges.len(),
                chunk.len()
            )));
        }
        let first: Vec<u64> = ranges.iter().zip(chunk).map(|(r, c)| r.start / c).collect();
        let counts: Vec<u64> = ranges
            .iter()
            .zip(chunk)
            .zip(&first)
            .map(|((r, c), f)| r.end.div_ceil(*c).saturating_sub(*f))
            .collect();
        let len = counts
            .iter()
            .try_fold(1u64, |n, c| n.checked_mul(*c))
            .ok_or_else(|| ArrayError::BadRequest("the region has too many chunks".into()))?;
        Ok(ChunkGrid {
            ranges: ranges.to_vec(),
            chunk: chunk.to_vec(),
            first,
            counts,
            len,
        })
    }

    /// How many chunks the region touches.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region touches no chunk.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Box `i` (C order): per dimension, the part of chunk `i` inside the region.
    pub fn get(&self, i: u64) -> Option<Vec<std::ops::Range<u64>>> {
        if i >= self.len {
            return None;
        }
        let mut rest = i;
        let mut b = vec![0..0; self.counts.len()];
        for d in (0..self.counts.len()).rev() {
            let k = rest % self.counts[d] + self.first[d];
            rest /= self.counts[d];
            let c = self.chunk[d];
            let r = &self.ranges[d];
            b[d] = (k * c).max(r.start)..((k + 1) * c).min(r.end);
        }
        Some(b)
    }

    /// Every box, in C order.
    pub fn iter(&self) -> impl Iterator<Item = Vec<std::ops::Range<u64>>> + '_ {
        (0..self.len).filter_map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_deferred_append_lists_only_the_chunks_it_creates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let options = CreateOptions {
            dtype: Dtype::I16,
            shape: vec![0],
            chunk_shape: Some(vec![4]),
            shard_shape: None,
            codec: Codec::None,
            fill_value: None,
            dimension_names: None,
        };
        DataArray::create(&dir, &options).unwrap();
        let bytes: Vec<u8> = (0..10i16).flat_map(i16::to_le_bytes).collect();
        let mut unsynced = Vec::new();
        let mut a = DataArray::open(&dir).unwrap();
        a.append_deferred(Dtype::I16, &[3], &bytes[..6], &mut unsynced)
            .unwrap();
        // Chunk 0 is new: listed with its directories; zarr.json replaced, not listed.
        assert!(unsynced.iter().any(|p| p.ends_with("c/0")), "{unsynced:?}");
        assert!(unsynced.contains(&dir));
        assert!(!unsynced.iter().any(|p| p.ends_with("zarr.json")));
        unsynced.clear();
        // Rows 3..10: chunk 0 is filled in place (listed for the one sync), chunks 1 and
        // 2 are new.
        a.append_deferred(Dtype::I16, &[7], &bytes[6..], &mut unsynced)
            .unwrap();
        let mut files: Vec<_> = unsynced.iter().filter(|p| p.is_file()).collect();
        files.sort();
        files.dedup();
        assert_eq!(files.len(), 3, "{unsynced:?}");
        assert!(unsynced.iter().any(|p| p.ends_with("c/0")));
        sync_paths(&unsynced).unwrap();
        // A path cut away meanwhile is skipped.
        sync_paths(&[dir.join("c/9")]).unwrap();
        drop(a);
        let back =
            DataArray::with_reader(&dir, |a| a.read_box(std::slice::from_ref(&(0..10)))).unwrap();
        assert_eq!(back, bytes);
        // A plain append afterwards syncs as always (nothing left deferred).
        let mut a = DataArray::open(&dir).unwrap();
        a.append(Dtype::I16, &[1], &bytes[..2]).unwrap();
        assert!(a.store.deferred().unwrap().is_none());
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    /// An append fills the partly filled last chunk of a raw array in its file, leaving
    /// the rows there untouched; compressed chunks, and chunks that do not hold whole
    /// rows, are replaced whole as before. Every way reads back the same elements.
    #[test]
    fn appends_fill_the_last_raw_chunk_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let ways = [
            ("raw", vec![4, 3], Codec::None, true),
            ("zstd", vec![4, 3], Codec::Zstd, false),
            ("wider", vec![4, 4], Codec::None, false),
        ];
        let rows: Vec<u8> = (0..30i32).flat_map(i32::to_le_bytes).collect();
        for (name, chunk, codec, in_place) in ways {
            let dir = tmp.path().join(name);
            let options = CreateOptions {
                dtype: Dtype::I32,
                shape: vec![0, 3],
                chunk_shape: Some(chunk),
                shard_shape: None,
                codec,
                fill_value: None,
                dimension_names: None,
            };
            DataArray::create(&dir, &options).unwrap();
            let mut a = DataArray::open(&dir).unwrap();
            a.append(Dtype::I32, &[2, 3], &rows[..24]).unwrap();
            let chunk0 = dir.join("c/0/0");
            let before = inode(&chunk0);
            // Rows 2..10: two fill chunk 0, then chunks 1 and 2.
            assert_eq!(
                a.append(Dtype::I32, &[8, 3], &rows[24..]).unwrap(),
                vec![10, 3]
            );
            assert_eq!(inode(&chunk0) == before, in_place, "{name}");
            let back = a.read_box(&[0..10, 0..3]).unwrap();
            assert_eq!(back, rows, "{name}");
            drop(a);
            let back = DataArray::with_reader(&dir, |a| a.read_box(&[0..10, 0..3])).unwrap();
            assert_eq!(back, rows, "{name} reopened");
        }
    }
}
