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
