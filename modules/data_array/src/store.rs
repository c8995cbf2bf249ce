//! One Zarr v3 array in a directory, read and written with `zarrs`.
//!
//! Atomicity, from a reader's view and across a crash:
//! - every key (chunk or `zarr.json`) is replaced whole: [`AtomicStore`] writes the new
//!   bytes to a temporary key, syncs them, renames it over the old key and syncs the
//!   directory, so a key holds its old or its new bytes, never a torn mix;
//! - an append writes the tail chunks first (the old elements inside them unchanged) and
//!   `zarr.json` with the grown shape last: a reader that saw the old shape never reads past
//!   it, and a crash before the metadata rename leaves the old array (the new tail elements
//!   sit beyond the old shape, invisible);
//! - writers hold an exclusive `flock` on `<dir>/.wendelin.lock` (across threads and
//!   processes); the server's readers (region reads, reductions) hold it shared, so a
//!   region write spanning several chunks is seen whole or not at all by them. A crash in the
//!   middle of such a region write leaves each chunk old or new (documented limit).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;
use zarrs::array::{Array, ArrayBuilder, ArrayBytes, ArraySubset, FillValueMetadata};
use zarrs::filesystem::FilesystemStore;
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    store_set_partial_many, AtomicRenameStorageTraits, Bytes, ListableStorageTraits, MaybeBytes,
    MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits, StorageError, StoreKey,
    StoreKeys, StoreKeysPrefixes, StorePrefix, WritableStorageTraits,
};

use crate::dtype::Dtype;
use crate::error::{ArrayError, ArrayResult};
use crate::npy::element_count;
use crate::region::Region;

/// Default target size of one chunk, in bytes.
pub const DEFAULT_CHUNK_BYTES: u64 = 1 << 20;
/// Largest chunk accepted, in bytes (a chunk is decoded whole in memory).
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;
const LOCK_FILE: &str = ".wendelin.lock";
const TMP_MARK: &str = ".wtmp";

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

/// A zarrs store whose writes replace keys atomically (temporary key, sync, rename, sync
/// of the directory); reads and listings go straight to the filesystem store.
#[derive(Debug)]
pub struct AtomicStore {
    inner: FilesystemStore,
    counter: AtomicU64,
}

impl AtomicStore {
    /// A store rooted at `dir` (created when missing).
    pub fn new(dir: &Path) -> ArrayResult<AtomicStore> {
        std::fs::create_dir_all(dir)?;
        let inner = FilesystemStore::new(dir).map_err(|e| ArrayError::Storage(e.to_string()))?;
        Ok(AtomicStore {
            inner,
            counter: AtomicU64::new(0),
        })
    }
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
        let tmp = StoreKey::new(format!(
            "{}{TMP_MARK}{}-{n}",
            key.as_str(),
            std::process::id()
        ))?;
        // The filesystem store syncs the file before returning.
        self.inner.set(&tmp, value)?;
        self.inner.rename(&tmp, key)?;
        let path = self.inner.key_to_fspath(key);
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
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
        let array = Array::new_with_metadata(store, "/", metadata)?;
        array.store_metadata()?;
        Ok(DataArray {
            dir: dir.to_path_buf(),
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
        let array = Array::open(store, "/")?;
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
        let _lock = DirLock::take(dir, false)?;
        let array = DataArray::open(dir)?;
        f(&array)
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
        let mut grown = shape.clone();
        grown[0] += rows_shape[0];
        self.array.set_shape(grown.clone())?;
        let mut start = vec![0; shape.len()];
        start[0] = shape[0];
        let subset = ArraySubset::new_with_start_shape(start, rows_shape)
            .map_err(|e| ArrayError::Storage(e.to_string()))?;
        self.array
            .store_array_subset(&subset, ArrayBytes::new_flen(bytes))?;
        crash_point();
        self.array.store_metadata()?;
        Ok(grown)
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
        let subset = ArraySubset::new_with_ranges(
            &region
                .dims
                .iter()
                .map(|d| d.start..d.stop)
                .collect::<Vec<_>>(),
        );
        self.array
            .store_array_subset(&subset, ArrayBytes::new_flen(bytes))?;
        Ok(())
    }

    /// Changes the shape. Growing exposes fill values; shrinking erases the chunks past the
    /// new shape and resets the cut part of boundary chunks to the fill value (after the
    /// metadata, so a crash leaves a readable array either way).
    pub fn resize(&mut self, new_shape: &[u64]) -> ArrayResult<()> {
        let old = self.shape().to_vec();
        if new_shape.len() != old.len() {
            return Err(ArrayError::BadRequest(format!(
                "resize to {new_shape:?} changes the number of dimensions of {old:?}"
            )));
        }
        self.array.set_shape(new_shape.to_vec())?;
        self.array.store_metadata()?;
        if new_shape.iter().zip(&old).all(|(n, o)| n >= o) {
            return Ok(());
        }
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

    /// Reads a whole chunk's stored bytes into `buf` when they are its elements as they are
    /// (codec chain `bytes`, little-endian, no transformer), so a reduction skips the
    /// decoder; `buf` is reused from chunk to chunk because a fresh multi-MiB buffer costs
    /// a page fault per 4 KiB, as much as the copy itself. Returns false when the chunk is
    /// encoded, not whole, or absent (fill value).
    pub fn raw_chunk_into(
        &self,
        ranges: &[std::ops::Range<u64>],
        buf: &mut Vec<u8>,
    ) -> ArrayResult<bool> {
        use std::os::unix::fs::FileExt;
        if !self.raw_codecs()? {
            return Ok(false);
        }
        let chunk = self.chunk_shape()?;
        let whole = ranges
            .iter()
            .zip(&chunk)
            .all(|(r, c)| r.start % c == 0 && r.end - r.start == *c);
        if !whole {
            return Ok(false);
        }
        let indices: Vec<u64> = ranges
            .iter()
            .zip(&chunk)
            .map(|(r, c)| r.start / c)
            .collect();
        let key = self.array.chunk_key(&indices);
        let expected = element_count(&chunk).unwrap_or(0) * self.dtype.size() as u64;
        let file = match File::open(self.dir.join(key.as_str())) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if file.metadata()?.len() != expected {
            return Ok(false);
        }
        let len =
            usize::try_from(expected).map_err(|_| ArrayError::Storage("chunk too large".into()))?;
        buf.resize(len, 0);
        file.read_exact_at(buf, 0)?;
        Ok(true)
    }

    fn raw_codecs(&self) -> ArrayResult<bool> {
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

    /// The elements of a box, C order.
    pub fn read_box(&self, ranges: &[std::ops::Range<u64>]) -> ArrayResult<Vec<u8>> {
        let subset = ArraySubset::new_with_ranges(ranges);
        let bytes: ArrayBytes<'static> = self.array.retrieve_array_subset(&subset)?;
        Ok(bytes
            .into_fixed()
            .map_err(|e| ArrayError::Storage(e.to_string()))?
            .into_owned())
    }

    /// Reads one stored key (`zarr.json` or a chunk key) as the Zarr store holds it; `None`
    /// when absent. Only plain keys are served: no hidden files, no `..`, no temporary files.
    pub fn store_key(dir: &Path, key: &str) -> ArrayResult<Option<Vec<u8>>> {
        let valid = !key.is_empty()
            && !key.contains(TMP_MARK)
            && key.split('/').all(|part| {
                !part.is_empty()
                    && !part.starts_with('.')
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            });
        if !valid {
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

    /// Every chunk's box within `ranges`, for chunk-by-chunk processing.
    pub fn chunk_boxes(
        &self,
        ranges: &[std::ops::Range<u64>],
    ) -> ArrayResult<Vec<Vec<std::ops::Range<u64>>>> {
        let chunk = self.chunk_shape()?;
        let first: Vec<u64> = ranges
            .iter()
            .zip(&chunk)
            .map(|(r, c)| r.start / c)
            .collect();
        let last: Vec<u64> = ranges
            .iter()
            .zip(&chunk)
            .map(|(r, c)| r.end.div_ceil(*c))
            .collect();
        let counts: Vec<u64> = first
            .iter()
            .zip(&last)
            .map(|(f, l)| l.saturating_sub(*f))
            .collect();
        let mut boxes = Vec::new();
        for_each_index(&counts, |idx| {
            let b: Vec<_> = idx
                .iter()
                .zip(&first)
                .zip(&chunk)
                .zip(ranges)
                .map(|(((i, f), c), r)| ((i + f) * c).max(r.start)..((i + f + 1) * c).min(r.end))
                .collect();
            boxes.push(b);
            Ok(())
        })?;
        Ok(boxes)
    }
}

/// Test failpoint: with `WENDELIN_TEST_CRASH_BEFORE_ARRAY_METADATA=1` in its environment,
/// the process dies (SIGABRT, no unwinding, no cleanup) after an append's chunks are
/// written and before its metadata is, which is the crash the atomicity scheme must survive.
fn crash_point() {
    static CRASH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *CRASH
        .get_or_init(|| std::env::var_os("WENDELIN_TEST_CRASH_BEFORE_ARRAY_METADATA").is_some())
    {
        std::process::abort();
    }
}

fn build_metadata(o: &CreateOptions) -> ArrayResult<zarrs::array::ArrayMetadata> {
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
    let mut builder = ArrayBuilder::new(o.shape.clone(), chunk, o.dtype.name(), fill);
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
