//! Helpers for the data planes' files (stream segments, array chunks), which live beside
//! the database and follow the same rule: durable only after an fsync/fdatasync.

use std::fs::File;

/// Starts writing back `len` bytes of `file`'s dirty pages from `offset` (`len` 0: to the
/// end) without waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so the device works
/// while the caller receives or computes what comes next and the later fdatasync finds
/// the bytes mostly written. Not a durability step (no metadata, no device flush): that
/// remains the caller's fdatasync. A hint only: an error is ignored.
///
/// The one place of the workspace's own code besides the array module's read-only chunk
/// map that uses `unsafe`: rustix has no wrapper for this call.
#[allow(unsafe_code)]
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open
    // for as long as `file` is borrowed, which outlasts the call.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

/// Files at least this large are written around the page cache by [`write_new`].
pub const DIRECT_MIN_BYTES: usize = 64 << 10;

/// The alignment `O_DIRECT` asks of offsets, lengths and buffers: a page, which covers
/// the 512-byte and 4 KiB logical blocks of the devices it runs on.
pub const DIRECT_ALIGN: usize = 4096;

/// Bytes of a [`StagingBuffer`]: what [`write_new`] copies per direct write.
pub const DIRECT_PIECE: usize = 1 << 20;

/// A page-aligned buffer of [`DIRECT_PIECE`] bytes for `O_DIRECT` writes, taken from a
/// pool shared by all threads and given back when dropped (an analysis run appends from
/// short-lived threads, and ingestion takes one per body: a fresh buffer each time would
/// cost the kernel's zeroing of its pages). At most [`STAGING_KEPT`] are kept.
pub struct StagingBuffer {
    raw: Vec<u8>,
    at: usize,
}

static STAGING: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Buffers the [`StagingBuffer`] pool keeps between uses.
const STAGING_KEPT: usize = 8;

impl StagingBuffer {
    /// A buffer from the pool, or a new zeroed one. Its bytes are whatever the last user
    /// left: callers write before they read.
    pub fn take() -> StagingBuffer {
        let kept = STAGING.lock().ok().and_then(|mut b| b.pop());
        let raw = kept.unwrap_or_else(|| vec![0; DIRECT_PIECE + DIRECT_ALIGN]);
        // Never beyond the slack: an offset that cannot align leaves the buffer
        // unaligned, and the direct write refuses it (its callers then write buffered).
        let at = raw.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        StagingBuffer { raw, at }
    }

    /// The [`DIRECT_PIECE`] aligned bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.raw[self.at..self.at + DIRECT_PIECE]
    }

    /// The [`DIRECT_PIECE`] aligned bytes, to fill.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.at..self.at + DIRECT_PIECE]
    }
}

impl Drop for StagingBuffer {
    fn drop(&mut self) {
        if let Ok(mut kept) = STAGING.lock() {
            if kept.len() < STAGING_KEPT {
                kept.push(std::mem::take(&mut self.raw));
            }
        }
    }
}

/// Whether an error is the file system's or device's refusal of `O_DIRECT` (tmpfs at
/// open, an alignment it does not take at write): the caller writes through the page
/// cache instead.
pub fn direct_refused(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Opens the existing file `path` for writing with `O_DIRECT` (`None` where the file
/// system refuses it). Its writes must be aligned to [`DIRECT_ALIGN`] in offset, length
/// and memory ([`StagingBuffer`]); they reach the device before they return, and, as
/// any write, are durable only after an fdatasync.
pub fn open_direct(path: &std::path::Path) -> std::io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if direct_refused(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates (or truncates) `path` holding `bytes`, for a caller that then makes it durable
/// (fdatasync) before relying on it. A file of [`DIRECT_MIN_BYTES`] or more is written
/// with `O_DIRECT`: the device gets it straight from an aligned buffer, in 1 MiB writes,
/// the last one padded to the block and the file then cut to its length. On the VMs this
/// runs on, a stream of new ~1 MiB files written through the page cache and synced per
/// batch went out at ~330 MiB/s, the same files written directly at ~720–860 MiB/s
/// (bench/RESULTS.md, 2026-12-07): the kernel's writeback, not the device, was the
/// bound. Where the file system refuses `O_DIRECT` (tmpfs) or the alignment, the file is
/// written through the page cache and its writeback started ([`start_writeback`]).
/// Returns the open file (for the caller's sync).
pub fn write_new(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<File> {
    use std::io::Write;
    if bytes.len() >= DIRECT_MIN_BYTES {
        if let Some(file) = write_direct(path, bytes)? {
            return Ok(file);
        }
    }
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    start_writeback(&file, 0, 0);
    Ok(file)
}

/// [`write_new`] with `O_DIRECT`; `None` when the file system or device refuses it
/// (nothing is left half-written that the buffered write would not replace: it
/// truncates).
fn write_direct(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<Option<File>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if direct_refused(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buffer = StagingBuffer::take();
    let aligned = buffer.bytes_mut();
    for piece in bytes.chunks(DIRECT_PIECE) {
        let padded = piece.len().next_multiple_of(DIRECT_ALIGN);
        aligned[..piece.len()].copy_from_slice(piece);
        aligned[piece.len()..padded].fill(0);
        match file.write_all(&aligned[..padded]) {
            Ok(()) => {}
            Err(e) if direct_refused(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    file.set_len(bytes.len() as u64)?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Sizes around the thresholds and the piece and block boundaries: each file reads
    /// back exactly (length and bytes), directly written or not, and a rewrite of a
    /// longer file leaves nothing of it beyond the new length.
    #[test]
    fn a_new_file_holds_exactly_its_bytes_whatever_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunk");
        let sizes = [
            0,
            1,
            DIRECT_MIN_BYTES - 1,
            DIRECT_MIN_BYTES,
            DIRECT_MIN_BYTES + 1,
            DIRECT_PIECE - 1,
            DIRECT_PIECE,
            DIRECT_PIECE + 1,
            1_049_088, // 64 rows of 2049 float64 bins: an STFT chunk
            3 * DIRECT_PIECE + 4095,
            5,
        ];
        for (i, n) in sizes.into_iter().enumerate() {
            let bytes: Vec<u8> = (0..n).map(|k| (k * 31 + i * 7 + k / 4099) as u8).collect();
            let file = write_new(&path, &bytes).unwrap();
            file.sync_all().unwrap();
            drop(file);
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "a file of {n} bytes");
        }
    }
}
