//! Decimation for charts: the minimum and maximum of each of `bins` consecutive runs of
//! a series along the first axis, so a chart `bins` pixels wide draws every peak of an
//! array of any length. The array is read slab by slab (at most [`SLAB_BYTES`] at once,
//! plus three numbers per bin), never whole. Used by `GET …/decimate` and meant for
//! server-side plots too.
//!
//! Wide bins come from summaries: the minimum and maximum of every [`BLOCK`] elements of
//! a chunk, computed by the append that writes the chunk (`after_append`, from the
//! appended bytes) or else when a decimation first reads the chunk, and kept in memory (at most
//! [`SUMMARY_BYTES`] per process) and in the array's directory (`SUMMARY_DIR`, 16 bytes
//! per 1,024 elements, so another or a restarted process reuses them; not for imported
//! arrays) while the chunk is unchanged — its file's identity
//! (device, inode, size, modification and change times) and its number of elements in
//! the array's shape are the same, and no write of this process touched the array since
//! ([`forget_rows`] and [`forget`], called by every append, write and resize for the
//! chunks they rewrite, before rewriting them; an append stores its new summaries after
//! its chunks and metadata, so a crash leaves no summary or one whose identity no longer
//! matches — never a stale one used). When each bin spans at least
//! [`MIN_BLOCKS_PER_BIN`] blocks, the bins' boundaries are moved to the nearest block
//! boundary (the returned `x` says where each bin starts) and only the partial blocks at
//! the series' two ends are read: a 100M-element series decimates from ~100k summaries
//! instead of 800 MB of elements. The result is still exact for the bins returned.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{ArrayError, ArrayResult};
use crate::region::{Dim, Region};
use crate::store::DataArray;

/// Elements of one block of a chunk's summary (along the first axis).
pub const BLOCK: u64 = 1024;
/// Bins at least this many blocks wide are computed from the summaries (their bounds
/// move by at most half a block, 1/16 of a bin).
pub const MIN_BLOCKS_PER_BIN: u64 = 8;
/// Bytes of summaries kept per process (16 bytes per block: 4G elements' worth).
pub const SUMMARY_BYTES: usize = 64 << 20;
/// Threads summarizing chunks at most.
pub const SUMMARY_WORKERS: usize = 4;

/// Most bins one decimation returns (a very wide chart is some thousands of pixels).
pub const MAX_BINS: usize = 100_000;

/// Bytes read from the array at once.
pub const SLAB_BYTES: usize = 4 << 20;

/// What [`decimate`] returns: for bin `b`, the elements `x[b]..x[b + 1]` (the last bin ends
/// at `stop`) have the minimum `min[b]` and the maximum `max[b]`, NaN when every element
/// of the bin is NaN. With fewer elements than bins asked, one bin per element: the
/// series at full resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Decimation {
    /// First index (along the first axis) of the series.
    pub start: u64,
    /// One past its last index.
    pub stop: u64,
    /// First index of each bin.
    pub x: Vec<u64>,
    /// Smallest value of each bin (NaN ignored).
    pub min: Vec<f64>,
    /// Largest value of each bin (NaN ignored).
    pub max: Vec<f64>,
}

impl Decimation {
    /// Little-endian float64: the `x` of every bin, then every `min`, then every `max`
    /// (3 × bins numbers).
    pub fn to_f64_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.x.len() * 24);
        #[allow(clippy::cast_precision_loss)]
        for v in self
            .x
            .iter()
            .map(|&x| x as f64)
            .chain(self.min.iter().copied())
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in &self.max {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// First index (relative to the series' start) of bin `b` of `bins` over `n` elements.
fn bin_start(b: u64, bins: u64, n: u64) -> u64 {
    // ceil(b·n / bins), in 128 bits: b·n may pass 2^64.
    let v = (u128::from(b) * u128::from(n)).div_ceil(u128::from(bins.max(1)));
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Decimates the series `array[start..stop, at…]` (the first axis, at the indices `at`
/// of the other axes, all 0 when `at` is empty) into at most `bins` bins. `stop` is
/// clipped to the array's length; complex arrays are refused.
pub fn decimate(
    array: &DataArray,
    start: u64,
    stop: Option<u64>,
    bins: usize,
    at: &[u64],
) -> ArrayResult<Decimation> {
    let shape = array.shape();
    let bad = |m: String| Err(ArrayError::BadRequest(m));
    if shape.is_empty() {
        return bad("a 0-dimensional array has no series to decimate".into());
    }
    if array.dtype().is_complex() {
        return bad("complex arrays have no minimum or maximum".into());
    }
    if bins == 0 || bins > MAX_BINS {
        return bad(format!("bins must be 1..={MAX_BINS}, not {bins}"));
    }
    if !at.is_empty() && at.len() != shape.len() - 1 {
        return bad(format!(
            "'at' gives {} indices but the array has {} axes after the first",
            at.len(),
            shape.len() - 1
        ));
    }
    let stop = stop.unwrap_or(shape[0]).min(shape[0]);
    if start > stop {
        return bad(format!("start {start} is past stop {stop}"));
    }
    let mut dims = vec![Dim {
        start,
        stop,
        step: 1,
        keep: true,
    }];
    for (axis, &len) in shape.iter().enumerate().skip(1) {
        let i = at.get(axis - 1).copied().unwrap_or(0);
        if i >= len {
            return bad(format!(
                "at: index {i} is outside axis {axis} of length {len}"
            ));
        }
        dims.push(Dim {
            start: i,
            stop: i + 1,
            step: 1,
            keep: false,
        });
    }
    let n = stop - start;
    let nb = (bins as u64).min(n);
    if n > 0 {
        let at_all: Vec<u64> = dims[1..].iter().map(|d| d.start).collect();
        if let Some(d) = summarized(array, start, stop, nb, &at_all)? {
            return Ok(d);
        }
    }
    let len = usize::try_from(nb).unwrap_or(MAX_BINS);
    let mut out = Decimation {
        start,
        stop,
        x: (0..nb).map(|b| start + bin_start(b, nb, n)).collect(),
        min: vec![f64::INFINITY; len],
        max: vec![f64::NEG_INFINITY; len],
    };
    if n == 0 {
        return Ok(out);
    }
    let dtype = array.dtype();
    let mut values = Vec::new();
    // Position (relative to start) of the next element, the current bin and its end.
    let (mut i, mut b, mut end) = (0u64, 0usize, bin_start(1, nb, n));
    array.read(&Region { dims }, SLAB_BYTES, |bytes| {
        values.clear();
        dtype.extend_f64(bytes, &mut values);
        let mut rest = values.as_slice();
        while !rest.is_empty() {
            let take = usize::try_from(end - i)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (lo, hi) = rest[..take]
                .iter()
                .fold((out.min[b], out.max[b]), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            out.min[b] = lo;
            out.max[b] = hi;
            rest = &rest[take..];
            i += take as u64;
            if i == end && b + 1 < len {
                b += 1;
                end = bin_start(b as u64 + 1, nb, n);
            }
        }
        Ok(())
    })?;
    no_value_is_nan(&mut out);
    Ok(out)
}

/// Bins that saw no value (only NaN: f64::min/max skip NaN) get NaN.
fn no_value_is_nan(out: &mut Decimation) {
    for (lo, hi) in out.min.iter_mut().zip(out.max.iter_mut()) {
        if *lo > *hi {
            *lo = f64::NAN;
            *hi = f64::NAN;
        }
    }
}

/// What a file is, as far as `stat` tells: any rewrite of a chunk (a new file renamed
/// over it, or a change in place) changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Identity {
    Absent,
    File {
        dev: u64,
        ino: u64,
        size: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
    },
}

fn identity(path: &Path) -> ArrayResult<Identity> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Identity::File {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Identity::Absent),
        Err(e) => Err(e.into()),
    }
}

/// The minimum and maximum of each block of one chunk's part of a series.
struct Summary {
    identity: Identity,
    /// The chunk's first element along the first axis, and its length there.
    first: u64,
    chunk: u64,
    /// Elements of the chunk inside the array's shape when it was summarized.
    rows: u64,
    min: Vec<f64>,
    max: Vec<f64>,
}

/// A series' chunk: the indices of the other axes, and the chunk's index along the first.
type ChunkKey = (Vec<u64>, u64);

#[derive(Default)]
struct Summaries {
    arrays: HashMap<PathBuf, HashMap<ChunkKey, Arc<Summary>>>,
    bytes: usize,
}

fn summaries() -> &'static Mutex<Summaries> {
    static S: OnceLock<Mutex<Summaries>> = OnceLock::new();
    S.get_or_init(Mutex::default)
}

fn weight(key: &ChunkKey, s: &Summary) -> usize {
    64 + key.0.len() * 8 + s.min.len() * 16
}

/// Directory of the summaries kept on disk, inside the array's directory (hidden: never
/// a Zarr key). Not written for imported arrays (a link to another program's directory).
const SUMMARY_DIR: &str = ".wendelin-summaries";

/// The file of chunk `k`'s summary of the series `at`.
fn summary_file(dir: &Path, at: &[u64], k: u64) -> PathBuf {
    let series = if at.is_empty() {
        "s".to_owned()
    } else {
        at.iter().map(u64::to_string).collect::<Vec<_>>().join("_")
    };
    dir.join(SUMMARY_DIR).join(series).join(k.to_string())
}

const MAGIC: &[u8; 8] = b"WSUMMAR1";

#[allow(clippy::cast_sign_loss, clippy::cast_possible_wrap)]
fn encode(s: &Summary) -> Vec<u8> {
    let id = match s.identity {
        Identity::Absent => [0u64; 8],
        Identity::File {
            dev,
            ino,
            size,
            mtime,
            ctime,
        } => [
            1,
            dev,
            ino,
            size,
            mtime.0 as u64,
            mtime.1 as u64,
            ctime.0 as u64,
            ctime.1 as u64,
        ],
    };
    let mut out = Vec::with_capacity(8 + 12 * 8 + s.min.len() * 16);
    out.extend_from_slice(MAGIC);
    for w in id
        .iter()
        .chain(&[s.first, s.chunk, s.rows, s.min.len() as u64])
    {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for v in s.min.iter().chain(&s.max) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[allow(clippy::cast_sign_loss, clippy::cast_possible_wrap)]
fn decode(bytes: &[u8]) -> Option<Summary> {
    let body = bytes.strip_prefix(MAGIC.as_slice())?;
    let word = |i: usize| -> Option<u64> {
        let b = body.get(i * 8..i * 8 + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    };
    let w: Vec<u64> = (0..12).map(word).collect::<Option<_>>()?;
    let identity = match w[0] {
        0 => Identity::Absent,
        1 => Identity::File {
            dev: w[1],
            ino: w[2],
            size: w[3],
            mtime: (w[4] as i64, w[5] as i64),
            ctime: (w[6] as i64, w[7] as i64),
        },
        _ => return None,
    };
    let n = usize::try_from(w[11]).ok()?;
    let values = body.get(12 * 8..)?;
    if values.len() != n.checked_mul(16)? {
        return None;
    }
    let floats: Vec<f64> = values
        .chunks_exact(8)
        .map(|c| c.try_into().map(f64::from_le_bytes))
        .collect::<Result<_, _>>()
        .ok()?;
    let (min, max) = floats.split_at(n);
    let s = Summary {
        identity,
        first: w[8],
        chunk: w[9],
        rows: w[10],
        min: min.to_vec(),
        max: max.to_vec(),
    };
    (s.rows.div_ceil(BLOCK) == w[11]).then_some(s)
}

/// Keeps a summary on disk (temporary file renamed over it); failures only cost the next
/// process a read of the chunk.
fn store_summary(dir: &Path, file: &Path, s: &Summary) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if std::fs::symlink_metadata(dir).map_or(true, |m| m.file_type().is_symlink()) {
        return;
    }
    let Some(parent) = file.parent() else {
        return;
    };
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = parent.join(format!(".tmp-{}-{n}", std::process::id()));
    let written = std::fs::create_dir_all(parent)
        .and_then(|()| std::fs::write(&tmp, encode(s)))
        .and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!(file = %file.display(), error = %e, "decimation summary not stored");
    }
}

/// Drops the summaries of the array in `dir`, in memory and on disk (its writers call it:
/// a rewritten chunk may get a recycled inode within the file system's clock tick).
pub fn forget(dir: &Path) {
    if let Ok(mut s) = summaries().lock() {
        if let Some(gone) = s.arrays.remove(dir) {
            let freed: usize = gone.iter().map(|(k, v)| weight(k, v)).sum();
            s.bytes = s.bytes.saturating_sub(freed);
        }
    }
    let _ = std::fs::remove_dir_all(dir.join(SUMMARY_DIR));
}

/// Drops the summaries of the chunks (of `c` elements along the first axis) of the array
/// in `dir` that hold elements of `from..to` along the first axis: what an append or a
/// region write rewrites.
pub fn forget_rows(dir: &Path, c: u64, from: u64, to: u64) {
    if to > from && c > 0 {
        if let Ok(series) = std::fs::read_dir(dir.join(SUMMARY_DIR)) {
            for entry in series.flatten() {
                for k in from / c..=(to - 1) / c {
                    let _ = std::fs::remove_file(entry.path().join(k.to_string()));
                }
            }
        }
    }
    let to = Some(to);
    if let Ok(mut s) = summaries().lock() {
        let mut freed = 0;
        if let Some(chunks) = s.arrays.get_mut(dir) {
            chunks.retain(|k, v| {
                let keep = v.first + v.chunk <= from || to.is_some_and(|t| v.first >= t);
                if !keep {
                    freed += weight(k, v);
                }
                keep
            });
        }
        s.bytes = s.bytes.saturating_sub(freed);
    }
}

/// Chunks of the array in `dir` whose summaries are kept.
#[cfg(test)]
fn kept(dir: &Path) -> usize {
    summaries()
        .lock()
        .map(|s| s.arrays.get(dir).map_or(0, HashMap::len))
        .unwrap_or(0)
}

fn remember(dir: &Path, key: ChunkKey, summary: Arc<Summary>) {
    let Ok(mut s) = summaries().lock() else {
        return;
    };
    let w = weight(&key, &summary);
    if s.bytes + w > SUMMARY_BYTES {
        // Over budget: start again (the summaries of the arrays charted now come back on
        // their next decimation).
        s.arrays.clear();
        s.bytes = 0;
    }
    let old = s
        .arrays
        .entry(dir.to_path_buf())
        .or_default()
        .insert(key.clone(), summary);
    s.bytes += w;
    if let Some(old) = old {
        s.bytes = s.bytes.saturating_sub(weight(&key, &old));
    }
}

/// The region of the series `at` from `start` to `stop` along the first axis.
fn series(start: u64, stop: u64, at: &[u64]) -> Region {
    let mut dims = vec![Dim {
        start,
        stop,
        step: 1,
        keep: true,
    }];
    dims.extend(at.iter().map(|&i| Dim {
        start: i,
        stop: i + 1,
        step: 1,
        keep: false,
    }));
    Region { dims }
}

/// Folds the elements `start..stop` of the series into `(lo, hi)`.
fn fold_raw(
    array: &DataArray,
    at: &[u64],
    start: u64,
    stop: u64,
    acc: (f64, f64),
) -> ArrayResult<(f64, f64)> {
    let mut acc = acc;
    if start >= stop {
        return Ok(acc);
    }
    let dtype = array.dtype();
    let mut values = Vec::new();
    array.read(&series(start, stop, at), SLAB_BYTES, |bytes| {
        values.clear();
        dtype.extend_f64(bytes, &mut values);
        acc = values
            .iter()
            .fold(acc, |(lo, hi), &v| (lo.min(v), hi.max(v)));
        Ok(())
    })?;
    Ok(acc)
}

/// The kept summary (in memory, else on disk) of chunk `k` (of `c` elements along the
/// first axis) of the series `at` of the array in `dir`, when it describes the chunk as it
/// is: the chunk's file has the identity `now` and `rows` elements inside the shape.
fn known_summary(
    dir: &Path,
    at: &[u64],
    k: u64,
    c: u64,
    rows: u64,
    now: Identity,
) -> Option<Arc<Summary>> {
    let key: ChunkKey = (at.to_vec(), k);
    let valid =
        |s: &Summary| s.identity == now && s.rows == rows && s.first == k * c && s.chunk == c;
    let in_memory = summaries()
        .lock()
        .ok()
        .and_then(|s| s.arrays.get(dir).and_then(|m| m.get(&key).cloned()));
    if let Some(s) = in_memory.filter(|s| valid(s)) {
        return Some(s);
    }
    let s = std::fs::read(summary_file(dir, at, k))
        .ok()
        .and_then(|b| decode(&b))
        .filter(valid)?;
    let s = Arc::new(s);
    remember(dir, key, s.clone());
    Some(s)
}

/// The summary of chunk `k` (of `c` elements along the first axis) of the series `at`.
fn chunk_summary(array: &DataArray, at: &[u64], k: u64, c: u64) -> ArrayResult<Arc<Summary>> {
    let shape = array.shape();
    let chunk = array.chunk_shape()?;
    let first = k * c;
    let rows = c.min(shape[0].saturating_sub(first));
    let mut indices = vec![k];
    indices.extend(at.iter().zip(&chunk[1..]).map(|(i, n)| *i / (*n).max(1)));
    let path = array.chunk_path(&indices);
    let before = identity(&path)?;
    if let Some(s) = known_summary(array.dir(), at, k, c, rows, before) {
        return Ok(s);
    }
    let key: ChunkKey = (at.to_vec(), k);
    let file = summary_file(array.dir(), at, k);
    let blocks = usize::try_from(rows.div_ceil(BLOCK)).unwrap_or(0);
    let mut summary = Summary {
        identity: before,
        first,
        chunk: c,
        rows,
        min: vec![f64::INFINITY; blocks],
        max: vec![f64::NEG_INFINITY; blocks],
    };
    let dtype = array.dtype();
    let mut values = Vec::new();
    let mut i = 0u64;
    array.read(&series(first, first + rows, at), SLAB_BYTES, |bytes| {
        values.clear();
        dtype.extend_f64(bytes, &mut values);
        let mut rest = values.as_slice();
        while !rest.is_empty() {
            let b = usize::try_from(i / BLOCK).unwrap_or(usize::MAX);
            let take = usize::try_from(BLOCK - i % BLOCK)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            if let (Some(lo), Some(hi)) = (summary.min.get_mut(b), summary.max.get_mut(b)) {
                (*lo, *hi) = rest[..take]
                    .iter()
                    .fold((*lo, *hi), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            }
            rest = &rest[take..];
            i += take as u64;
        }
        Ok(())
    })?;
    let summary = Arc::new(summary);
    // Kept only if the chunk did not change while it was read (another program's
    // in-place write to an imported array).
    if identity(&path)? == before {
        remember(array.dir(), key, summary.clone());
        store_summary(array.dir(), &file, &summary);
    }
    Ok(summary)
}

/// Most series (elements of one row: the product of the shape past the first axis) whose
/// summaries an append keeps up to date; wider arrays get theirs on their first
/// decimation, as before.
pub const MAX_MAINTAINED_SERIES: u64 = 16;

/// What an append needs, taken before it writes, to summarize the chunks it writes: the
/// kept summaries of the old rows of its first chunk (the array's partial tail chunk),
/// which the write is about to replace.
pub(crate) struct AppendSummaries {
    /// Rows before the append.
    old: u64,
    /// Chunk length along the first axis.
    c: u64,
    /// Every series (indices past the first axis) with its tail chunk's summary, if any.
    series: Vec<(Vec<u64>, Option<Arc<Summary>>)>,
}

/// Called by an append before it writes (see [`AppendSummaries`]); `None` when appends do
/// not maintain the array's summaries: 0-dimensional or complex, chunks shorter than a
/// block, more than [`MAX_MAINTAINED_SERIES`] series, or imported (a link to another
/// program's directory, which keeps no summaries on disk).
pub(crate) fn before_append(array: &DataArray) -> Option<AppendSummaries> {
    let shape = array.shape();
    let chunk = array.chunk_shape().ok()?;
    let (&old, inner) = shape.split_first()?;
    let c = *chunk.first()?;
    if array.dtype().is_complex()
        || c < BLOCK
        || inner.iter().product::<u64>() > MAX_MAINTAINED_SERIES
    {
        return None;
    }
    if std::fs::symlink_metadata(array.dir()).map_or(true, |m| m.file_type().is_symlink()) {
        return None;
    }
    let k = old / c;
    let mut series = Vec::new();
    let listed = crate::store::for_each_index(inner, |at| {
        let tail = if old % c == 0 {
            None
        } else {
            let mut indices = vec![k];
            indices.extend(at.iter().zip(&chunk[1..]).map(|(i, n)| *i / (*n).max(1)));
            let now = identity(&array.chunk_path(&indices))?;
            known_summary(array.dir(), at, k, c, old % c, now)
        };
        series.push((at.to_vec(), tail));
        Ok(())
    });
    listed.ok()?;
    Some(AppendSummaries { old, c, series })
}

/// Called by an append once its chunks and metadata are written, with the rows it
/// appended (`bytes`, C order, the array's dtype): stores the summaries of the chunks it
/// wrote, computed from these bytes and the tail chunk's summary taken by
/// [`before_append`] (a tail chunk without one is left to the next decimation), each
/// with the identity of the chunk's new file. Failures only leave chunks unsummarized.
pub(crate) fn after_append(array: &DataArray, plan: AppendSummaries, bytes: &[u8]) {
    let shape = array.shape();
    let (Some((&grown, inner)), Ok(chunk)) = (shape.split_first(), array.chunk_shape()) else {
        return;
    };
    let AppendSummaries { old, c, series } = plan;
    if grown <= old || c == 0 {
        return;
    }
    let dtype = array.dtype();
    let e = dtype.size();
    let Ok(row) = usize::try_from(inner.iter().product::<u64>()) else {
        return;
    };
    let strides = crate::store::strides(inner);
    let dir = array.dir();
    let (mut values, mut gathered) = (Vec::new(), Vec::new());
    for (at, tail) in series {
        let Ok(off) = usize::try_from(at.iter().zip(&strides).map(|(i, s)| i * s).sum::<u64>())
        else {
            return;
        };
        for k in old / c..=(grown - 1) / c {
            let first = k * c;
            let rows = c.min(grown - first);
            let blocks = usize::try_from(rows.div_ceil(BLOCK)).unwrap_or(0);
            let mut s = Summary {
                identity: Identity::Absent,
                first,
                chunk: c,
                rows,
                min: vec![f64::INFINITY; blocks],
                max: vec![f64::NEG_INFINITY; blocks],
            };
            if first < old {
                let Some(t) = tail.as_ref().filter(|t| t.min.len() <= blocks) else {
                    continue;
                };
                s.min[..t.min.len()].copy_from_slice(&t.min);
                s.max[..t.max.len()].copy_from_slice(&t.max);
            }
            // The appended rows of this chunk, block by block.
            let mut i = first.max(old);
            while i < first + rows {
                let b = (i - first) / BLOCK;
                let end = (first + (b + 1) * BLOCK).min(first + rows);
                let (Ok(r0), Ok(r1), Ok(b)) = (
                    usize::try_from(i - old),
                    usize::try_from(end - old),
                    usize::try_from(b),
                ) else {
                    return;
                };
                values.clear();
                if row == 1 {
                    let Some(part) = bytes.get(r0 * e..r1 * e) else {
                        return;
                    };
                    if let Some((blo, bhi)) = int_min_max(dtype, part) {
                        let (Some(lo), Some(hi)) = (s.min.get_mut(b), s.max.get_mut(b)) else {
                            return;
                        };
                        *lo = lo.min(blo);
                        *hi = hi.max(bhi);
                        i = end;
                        continue;
                    }
                    dtype.extend_f64(part, &mut values);
                } else {
                    gathered.clear();
                    for r in r0..r1 {
                        let p = (r * row + off) * e;
                        let Some(v) = bytes.get(p..p + e) else {
                            return;
                        };
                        gathered.extend_from_slice(v);
                    }
                    dtype.extend_f64(&gathered, &mut values);
                }
                let (Some(lo), Some(hi)) = (s.min.get_mut(b), s.max.get_mut(b)) else {
                    return;
                };
                // NaN compares false: skipped, as f64::min and f64::max skip it.
                for &v in &values {
                    if v < *lo {
                        *lo = v;
                    }
                    if v > *hi {
                        *hi = v;
                    }
                }
                i = end;
            }
            let mut indices = vec![k];
            indices.extend(at.iter().zip(&chunk[1..]).map(|(i, n)| *i / (*n).max(1)));
            let Ok(now) = identity(&array.chunk_path(&indices)) else {
                continue;
            };
            s.identity = now;
            store_summary(dir, &summary_file(dir, &at, k), &s);
            remember(dir, (at.clone(), k), Arc::new(s));
            crate::store::crash_point(crate::store::CrashAt::SummaryStored);
        }
    }
}

/// Least and greatest of the little-endian integers in `bytes` (an integer `dtype`, at
/// least one element) as f64, found among the integers themselves: a loop the compiler
/// vectorises, where converting each to f64 first and comparing did not (an append's
/// summaries had been 7 % of an analysis run's CPU). The same values as the f64 scan:
/// integers have no NaN and their conversion to f64 keeps their order. None for other
/// dtypes or no element.
fn int_min_max(dtype: crate::Dtype, bytes: &[u8]) -> Option<(f64, f64)> {
    use crate::Dtype as D;
    fn scan<const N: usize, T: Ord + Copy>(
        bytes: &[u8],
        from: impl Fn([u8; N]) -> T,
        to: impl Fn(T) -> f64,
    ) -> Option<(f64, f64)> {
        let mut values = bytes.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from(a)
        });
        let first = values.next()?;
        let (lo, hi) = values.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v)));
        Some((to(lo), to(hi)))
    }
    match dtype {
        D::I8 => scan::<1, i8>(bytes, i8::from_le_bytes, f64::from),
        D::U8 => scan::<1, u8>(bytes, u8::from_le_bytes, f64::from),
        D::I16 => scan::<2, i16>(bytes, i16::from_le_bytes, f64::from),
        D::U16 => scan::<2, u16>(bytes, u16::from_le_bytes, f64::from),
        D::I32 => scan::<4, i32>(bytes, i32::from_le_bytes, f64::from),
        D::U32 => scan::<4, u32>(bytes, u32::from_le_bytes, f64::from),
        #[allow(clippy::cast_precision_loss)]
        D::I64 => scan::<8, i64>(bytes, i64::from_le_bytes, |v| v as f64),
        #[allow(clippy::cast_precision_loss)]
        D::U64 => scan::<8, u64>(bytes, u64::from_le_bytes, |v| v as f64),
        _ => None,
    }
}

/// The summaries of chunks `from..to`, those not known yet computed by up to
/// [`SUMMARY_WORKERS`] threads (a cold 100M-element series reads 800 MB once).
fn all_summaries(
    array: &DataArray,
    at: &[u64],
    from: u64,
    to: u64,
    c: u64,
) -> ArrayResult<Vec<Arc<Summary>>> {
    let ks: Vec<u64> = (from..to).collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, SUMMARY_WORKERS);
    if workers == 1 || ks.len() < 8 {
        return ks.iter().map(|&k| chunk_summary(array, at, k, c)).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Mutex<Option<ArrayResult<Arc<Summary>>>>> =
        ks.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&k) = ks.get(i) else {
                    break;
                };
                let r = chunk_summary(array, at, k, c);
                let failed = r.is_err();
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(r);
                }
                if failed {
                    // The others stop at their next chunk.
                    next.store(ks.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(ArrayError::Storage("a summary was not computed".into())))
        })
        .collect()
}

/// The decimation of `start..stop` (not empty) into `nb` bins from the chunk summaries,
/// when its bins are wide enough (see the module's documentation); `None` otherwise.
fn summarized(
    array: &DataArray,
    start: u64,
    stop: u64,
    nb: u64,
    at: &[u64],
) -> ArrayResult<Option<Decimation>> {
    let n = stop - start;
    let c = array.chunk_shape()?[0];
    if nb == 0 || c < BLOCK || n / nb < MIN_BLOCKS_PER_BIN * BLOCK {
        return Ok(None);
    }
    // Block boundaries: k·c + j·BLOCK inside chunk k, and every chunk boundary.
    let split = |p: u64| (p / c * c, p % c);
    let nearest = |p: u64| {
        let (base, off) = split(p);
        base + ((off + BLOCK / 2) / BLOCK * BLOCK).min(c)
    };
    let above = |p: u64| {
        let (base, off) = split(p);
        base + (off.div_ceil(BLOCK) * BLOCK).min(c)
    };
    let below = |p: u64| {
        let (base, off) = split(p);
        base + off / BLOCK * BLOCK
    };
    let len = usize::try_from(nb).unwrap_or(MAX_BINS);
    let mut x = Vec::with_capacity(len);
    x.push(start);
    for b in 1..nb {
        let p = nearest(start + bin_start(b, nb, n));
        if x.last().is_some_and(|&last| p <= last) || p >= stop {
            return Ok(None);
        }
        x.push(p);
    }
    let mut out = Decimation {
        start,
        stop,
        x,
        min: vec![f64::INFINITY; len],
        max: vec![f64::NEG_INFINITY; len],
    };
    // The whole blocks lie in first..last; the elements before and after are read.
    let (first, last) = (above(start), below(stop));
    if first >= last {
        return Ok(None);
    }
    let (lo, hi) = fold_raw(array, at, start, first, (out.min[0], out.max[0]))?;
    (out.min[0], out.max[0]) = (lo, hi);
    let (lo, hi) = fold_raw(array, at, last, stop, (out.min[len - 1], out.max[len - 1]))?;
    (out.min[len - 1], out.max[len - 1]) = (lo, hi);
    let chunks = all_summaries(array, at, first / c, (last - 1) / c + 1, c)?;
    let mut b = 0usize;
    for (k, s) in (first / c..).zip(&chunks) {
        for (j, (lo, hi)) in s.min.iter().zip(&s.max).enumerate() {
            let block = k * c + j as u64 * BLOCK;
            if block < first {
                continue;
            }
            if block >= last {
                break;
            }
            while b + 1 < len && out.x[b + 1] <= block {
                b += 1;
            }
            out.min[b] = out.min[b].min(*lo);
            out.max[b] = out.max[b].max(*hi);
        }
    }
    no_value_is_nan(&mut out);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn integer_min_max_equals_the_f64_scan() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let bytes: Vec<u8> = (0..4096 * 8)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        use crate::Dtype as D;
        for dtype in [D::I8, D::U8, D::I16, D::U16, D::I32, D::U32, D::I64, D::U64] {
            for len in [1, 2, 3, 17, 4096] {
                let part = &bytes[..len * dtype.size()];
                let mut values = Vec::new();
                dtype.extend_f64(part, &mut values);
                let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(int_min_max(dtype, part), Some((lo, hi)), "{dtype:?} {len}");
            }
            assert_eq!(int_min_max(dtype, &[]), None);
        }
        assert_eq!(int_min_max(D::F64, &bytes[..8]), None);
    }

    #[test]
    fn bins_cover_the_series_in_order() {
        for n in [1u64, 2, 7, 10, 1000, 1001] {
            for bins in [1u64, 3, 7, 10, 64] {
                let nb = bins.min(n);
                let starts: Vec<u64> = (0..=nb).map(|b| bin_start(b, nb, n)).collect();
                assert_eq!(starts[0], 0);
                assert_eq!(*starts.last().unwrap(), n);
                assert!(
                    starts.windows(2).all(|w| w[0] < w[1]),
                    "{n} {bins} {starts:?}"
                );
            }
        }
        // b·n past 2^64 does not overflow.
        assert_eq!(bin_start(1, 2, u64::MAX), 1 << 63);
    }

    /// The reference: every bin's elements scanned one by one.
    fn naive(values: &[f64], start: u64, stop: u64, bins: u64) -> (Vec<u64>, Vec<f64>, Vec<f64>) {
        let n = stop - start;
        let nb = bins.min(n);
        let (mut x, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
        for b in 0..nb {
            let (s, e) = (bin_start(b, nb, n), bin_start(b + 1, nb, n));
            x.push(start + s);
            let part = &values[(start + s) as usize..(start + e) as usize];
            let finite: Vec<f64> = part.iter().copied().filter(|v| !v.is_nan()).collect();
            lo.push(finite.iter().copied().fold(f64::NAN, f64::min));
            hi.push(finite.iter().copied().fold(f64::NAN, f64::max));
        }
        (x, lo, hi)
    }

    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
    }

    /// A 1-D float64 array in `dir` holding `values`, in uncompressed chunks of `chunk`.
    fn f64_array(dir: &std::path::Path, values: &[f64], chunk: u64) -> DataArray {
        let options = crate::CreateOptions {
            dtype: crate::Dtype::F64,
            shape: vec![0],
            chunk_shape: Some(vec![chunk]),
            codec: crate::Codec::None,
            shard_shape: None,
            fill_value: None,
            dimension_names: None,
        };
        let mut array = DataArray::create(dir, &options).unwrap();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        array
            .append(crate::Dtype::F64, &[values.len() as u64], &bytes)
            .unwrap();
        array
    }

    #[test]
    fn matches_a_naive_scan_across_chunks_and_slabs() {
        let dir = tempfile::tempdir().unwrap();
        let n = 10_007u64;
        let values: Vec<f64> = (0..n)
            .map(|i| {
                if i % 997 == 13 {
                    f64::NAN
                } else {
                    ((i * 7919) % 1013) as f64 - 500.0
                }
            })
            .collect();
        let array = f64_array(dir.path(), &values, 333);
        for (start, stop, bins) in [
            (0, n, 1200),
            (0, n, 1),
            (5, 1005, 7),
            (100, 150, 1200),
            (0, n, 10_007),
            (9_000, n, 3),
        ] {
            let d = decimate(&array, start, Some(stop), bins as usize, &[]).unwrap();
            let (x, lo, hi) = naive(&values, start, stop, bins);
            assert_eq!(d.x, x, "{start}..{stop} / {bins}");
            assert!(same(&d.min, &lo), "{start}..{stop} / {bins}");
            assert!(same(&d.max, &hi), "{start}..{stop} / {bins}");
        }
        // Fewer elements than bins: the series itself.
        let d = decimate(&array, 100, Some(150), 1200, &[]).unwrap();
        assert_eq!(d.x.len(), 50);
        assert!(same(&d.min, &values[100..150]));
        // Refusals.
        assert!(decimate(&array, 0, None, 0, &[]).is_err());
        assert!(decimate(&array, 0, None, MAX_BINS + 1, &[]).is_err());
        assert!(decimate(&array, 20, Some(10), 5, &[]).is_err());
        assert!(decimate(&array, 0, None, 5, &[1]).is_err());
        let empty = decimate(&array, 5, Some(5), 10, &[]).unwrap();
        assert!(empty.x.is_empty());
    }

    /// The reference for bins starting at `x` (the last one ends at `stop`).
    fn naive_at(values: &[f64], x: &[u64], stop: u64) -> (Vec<f64>, Vec<f64>) {
        let (mut lo, mut hi) = (Vec::new(), Vec::new());
        for (b, &s) in x.iter().enumerate() {
            let e = x.get(b + 1).copied().unwrap_or(stop);
            let finite: Vec<f64> = values[s as usize..e as usize]
                .iter()
                .copied()
                .filter(|v| !v.is_nan())
                .collect();
            lo.push(finite.iter().copied().fold(f64::NAN, f64::min));
            hi.push(finite.iter().copied().fold(f64::NAN, f64::max));
        }
        (lo, hi)
    }

    #[test]
    fn wide_bins_come_from_block_summaries_and_follow_writes() {
        let dir = tempfile::tempdir().unwrap();
        let n = 200_003u64;
        let mut values: Vec<f64> = (0..n)
            .map(|i| {
                if (70_000..80_000).contains(&i) || i % 4099 == 7 {
                    f64::NAN
                } else {
                    ((i * 7919) % 100_003) as f64 - 50_000.0
                }
            })
            .collect();
        // Not a multiple of BLOCK: every chunk ends with a short block.
        let mut array = f64_array(dir.path(), &values, 5_000);
        // The append summarized every chunk it wrote (41, the last one of 3 elements),
        // before any decimation.
        assert_eq!(kept(dir.path()), 41, "summaries kept by the append");
        let check = |array: &DataArray, values: &[f64], start: u64, stop: u64, bins: usize| {
            let d = decimate(array, start, Some(stop), bins, &[]).unwrap();
            let nb = (bins as u64).min(stop - start);
            assert_eq!(d.x.len() as u64, nb);
            assert_eq!(d.x[0], start);
            // Bounds moved to block boundaries by at most half a block.
            for (b, &x) in d.x.iter().enumerate().skip(1) {
                let ideal = start + bin_start(b as u64, nb, stop - start);
                assert!(x.abs_diff(ideal) <= BLOCK / 2, "bin {b}: {x} vs {ideal}");
                assert!(x % 5_000 % BLOCK == 0, "bin {b} starts inside a block: {x}");
            }
            let (lo, hi) = naive_at(values, &d.x, stop);
            assert!(
                same(&d.min, &lo),
                "{start}..{stop} / {bins}: {:?} {lo:?}",
                d.min
            );
            assert!(same(&d.max, &hi), "{start}..{stop} / {bins}");
            d
        };
        for (start, stop, bins) in [(0, n, 10), (3, n - 5, 7), (12_345, 190_001, 20), (0, n, 24)] {
            check(&array, &values, start, stop, bins);
        }
        // The bins wholly NaN (70,000..80,000) have no value.
        let d = check(&array, &values, 60_000, 100_000, 4);
        assert!(d.min[1].is_nan() && d.max[1].is_nan(), "{d:?}");
        // Narrower bins are exact bins, as before.
        let d = decimate(&array, 0, Some(n), 1000, &[]).unwrap();
        assert_eq!(d.x[1], bin_start(1, 1000, n));
        // A write in the middle shows at once: summaries of rewritten chunks are not reused.
        let region = Region {
            dims: vec![Dim {
                start: 123_456,
                stop: 123_457,
                step: 1,
                keep: true,
            }],
        };
        let before = kept(dir.path());
        assert_eq!(before, 41, "the decimations used the append's summaries");
        let on_disk = |k: u64| summary_file(dir.path(), &[], k).is_file();
        assert!((0..41).all(on_disk), "the summaries are kept on disk too");
        // Another process (none in memory) finds them there, and the same bins.
        let memory_only = |dir: &Path| {
            if let Ok(mut s) = summaries().lock() {
                s.arrays.remove(dir);
            }
        };
        memory_only(dir.path());
        check(&array, &values, 0, n, 10);
        // Chunks 0..40 read from disk; the last one's 3 elements are read, not summarized.
        assert_eq!(kept(dir.path()), 40);
        array
            .write(&region, crate::Dtype::F64, &[1], &1e9f64.to_le_bytes())
            .unwrap();
        assert_eq!(
            kept(dir.path()),
            39,
            "only the written chunk's summary dropped"
        );
        assert!(!on_disk(24) && on_disk(23) && on_disk(25), "and its file");
        values[123_456] = 1e9;
        let d = check(&array, &values, 0, n, 10);
        assert_eq!(d.max.iter().copied().fold(f64::MIN, f64::max), 1e9);
        // An append grows the series and its last chunk's summary.
        let more: Vec<f64> = (0..30_000).map(|i| -1e6 - f64::from(i)).collect();
        let bytes: Vec<u8> = more.iter().flat_map(|v| v.to_le_bytes()).collect();
        let before = kept(dir.path());
        assert_eq!(before, 40, "chunk 24 summarized again; 40 only on disk");
        array.append(crate::Dtype::F64, &[30_000], &bytes).unwrap();
        assert_eq!(
            kept(dir.path()),
            before + 7,
            "the append summarizes chunks 40..=46 (40 from its 3 old rows' summary on disk)"
        );
        values.extend(&more);
        let d = check(&array, &values, 0, n + 30_000, 10);
        assert_eq!(d.min[9], -1e6 - 29_999.0);
        // Opened again (another reader), the same answer; from the files alone too.
        let again = DataArray::open(dir.path()).unwrap();
        check(&again, &values, 0, n + 30_000, 10);
        memory_only(dir.path());
        check(&again, &values, 0, n + 30_000, 10);
        // A resize along the first axis drops only the summaries of the chunks it cuts
        // or extends (here 45, cut at 229,003 and rewritten, and 46, erased); the series
        // reads right, shrunk and grown again (fill values).
        memory_only(dir.path());
        check(&again, &values, 0, n + 30_000, 10);
        let whole = kept(dir.path());
        assert_eq!(whole, 46, "chunks 0..=45 (46's 3 elements are read)");
        array.resize(&[n + 29_000]).unwrap();
        assert_eq!(kept(dir.path()), whole - 1);
        assert!(on_disk(44) && !on_disk(45) && !on_disk(46));
        check(&array, &values, 0, n + 29_000, 10);
        array.resize(&[n + 30_000]).unwrap();
        values[(n + 29_000) as usize..].fill(0.0);
        check(&array, &values, 0, n + 30_000, 10);
        let again = DataArray::open(dir.path()).unwrap();
        // A stale file (the chunk changed without this process knowing) is not used.
        std::fs::copy(
            summary_file(dir.path(), &[], 3),
            summary_file(dir.path(), &[], 4),
        )
        .unwrap();
        memory_only(dir.path());
        check(&again, &values, 0, n + 30_000, 10);
    }

    /// The summary of chunk `k` of the series `at` computed from the chunk's elements,
    /// ignoring any kept one.
    fn recomputed(array: &DataArray, at: &[u64], k: u64) -> Arc<Summary> {
        if let Ok(mut s) = summaries().lock() {
            s.arrays.remove(array.dir());
        }
        let _ = std::fs::remove_dir_all(array.dir().join(SUMMARY_DIR));
        chunk_summary(array, at, k, array.chunk_shape().unwrap()[0]).unwrap()
    }

    #[test]
    fn appends_keep_summaries_equal_to_those_computed_from_the_chunks() {
        // 1-D float64 with NaN, appended in pieces that end inside blocks and chunks.
        let dir = tempfile::tempdir().unwrap();
        let mut array = f64_array(dir.path(), &[], 3_000);
        let mut all: Vec<f64> = Vec::new();
        for (p, len) in [1u64, 1_023, 2, 5_000, 2_999, 17, 10_000, 4_096]
            .iter()
            .enumerate()
        {
            let piece: Vec<f64> = (0..*len)
                .map(|i| {
                    let g = all.len() as u64 + i;
                    if g % 1_777 == 5 {
                        f64::NAN
                    } else {
                        ((g * 7919 + p as u64) % 10_007) as f64 - 5_000.0
                    }
                })
                .collect();
            let bytes: Vec<u8> = piece.iter().flat_map(|v| v.to_le_bytes()).collect();
            array.append(crate::Dtype::F64, &[*len], &bytes).unwrap();
            all.extend(&piece);
        }
        let n = all.len() as u64;
        let chunks = n.div_ceil(3_000);
        assert_eq!(kept(dir.path()) as u64, chunks, "every chunk summarized");
        let kept_now = summaries().lock().unwrap().arrays.get(dir.path()).cloned();
        let kept_now = kept_now.unwrap();
        let maintained: Vec<Arc<Summary>> = (0..chunks)
            .map(|k| {
                assert!(
                    summary_file(dir.path(), &[], k).is_file(),
                    "chunk {k} on disk"
                );
                kept_now[&(vec![], k)].clone()
            })
            .collect();
        for (k, m) in maintained.iter().enumerate() {
            let r = recomputed(&array, &[], k as u64);
            assert_eq!((m.first, m.rows, m.identity), (r.first, r.rows, r.identity));
            assert!(same(&m.min, &r.min) && same(&m.max, &r.max), "chunk {k}");
        }
        // And the decimation from them is a brute-force min/max over the data.
        let d = decimate(&array, 0, None, 3, &[]).unwrap();
        let (lo, hi) = naive_at(&all, &d.x, n);
        assert!(same(&d.min, &lo) && same(&d.max, &hi), "{d:?}");

        // A 2-D int32 array: every column is a series, each summarized.
        let dir = tempfile::tempdir().unwrap();
        let options = crate::CreateOptions {
            dtype: crate::Dtype::I32,
            shape: vec![0, 3],
            chunk_shape: Some(vec![2_048, 2]),
            codec: crate::Codec::Zstd,
            shard_shape: None,
            fill_value: None,
            dimension_names: None,
        };
        let mut array = DataArray::create(dir.path(), &options).unwrap();
        let mut rows = 0i32;
        for len in [1_000i32, 3_000, 1, 2_500] {
            let v: Vec<i32> = (rows..rows + len)
                .flat_map(|i| [i, -i, (i * 7) % 1000])
                .collect();
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            array
                .append(crate::Dtype::I32, &[len as u64, 3], &bytes)
                .unwrap();
            rows += len;
        }
        assert_eq!(kept(dir.path()), 3 * 4, "3 columns × 4 chunks");
        let maintained = summaries().lock().unwrap().arrays.get(dir.path()).cloned();
        let maintained = maintained.unwrap();
        for at in [[0u64], [1], [2]] {
            for k in 0..4 {
                let m = &maintained[&(at.to_vec(), k)];
                let r = recomputed(&array, &at, k);
                assert_eq!((m.rows, m.identity), (r.rows, r.identity), "{at:?} {k}");
                assert!(same(&m.min, &r.min) && same(&m.max, &r.max), "{at:?} {k}");
            }
        }
    }

    #[test]
    fn a_column_of_a_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::CreateOptions {
            dtype: crate::Dtype::I32,
            shape: vec![0, 3],
            chunk_shape: Some(vec![10, 2]),
            codec: crate::Codec::None,
            shard_shape: None,
            fill_value: None,
            dimension_names: None,
        };
        let mut array = DataArray::create(dir.path(), &options).unwrap();
        let rows: Vec<i32> = (0..100).flat_map(|i| [i, -i, i * 2]).collect();
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        array.append(crate::Dtype::I32, &[100, 3], &bytes).unwrap();
        let d = decimate(&array, 0, None, 4, &[1]).unwrap();
        assert_eq!(d.x, vec![0, 25, 50, 75]);
        assert_eq!(d.min, vec![-24.0, -49.0, -74.0, -99.0]);
        assert_eq!(d.max, vec![0.0, -25.0, -50.0, -75.0]);
        assert!(decimate(&array, 0, None, 4, &[3]).is_err());
        assert!(decimate(&array, 0, None, 4, &[0, 0]).is_err());

        // Wide bins of a column, from the summaries of the column's chunks.
        let dir = tempfile::tempdir().unwrap();
        let options = crate::CreateOptions {
            chunk_shape: Some(vec![2048, 2]),
            ..options
        };
        let mut array = DataArray::create(dir.path(), &options).unwrap();
        let rows: Vec<i32> = (0..40_000).flat_map(|i| [i, -i, (i * 7) % 1000]).collect();
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        array
            .append(crate::Dtype::I32, &[40_000, 3], &bytes)
            .unwrap();
        let d = decimate(&array, 0, None, 2, &[2]).unwrap();
        assert_eq!(d.x, vec![0, 20_480]);
        assert_eq!(
            (d.min.clone(), d.max.clone()),
            (vec![0.0, 0.0], vec![999.0, 999.0])
        );
        let d = decimate(&array, 1, None, 2, &[1]).unwrap();
        assert_eq!(d.x, vec![1, 20_480]);
        assert_eq!(d.min, vec![-20_479.0, -39_999.0]);
        assert_eq!(d.max, vec![-1.0, -20_480.0]);
    }
}
