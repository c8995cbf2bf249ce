//! The stream storage engine: append-only segment files on the local disk, behind the
//! [`StreamStore`] trait so another backend (S3) can stand in later.
//!
//! Layout, per stream: `<root>/<id>/<start offset, 20 digits>.seg` segment files and a
//! `commit.log` of fixed 16-byte records (`end offset u64 LE`, `crc32 of it u32 LE`,
//! magic `u32 LE`) in 4096 preallocated slots (zeros until written; a full log is
//! replaced by a fresh one through rename). Durability protocol of one group commit: the
//! segment is fdatasync'd, then a commit record naming the end offset is written to the
//! next slot of `commit.log` and fdatasync'd (an overwrite: no size change to journal); only then are the appenders waiting for bytes up to that offset answered.
//! On open, the last valid commit record is the stream's size: bytes beyond it (a torn
//! tail left by a crash between write and commit) are truncated and segments starting
//! beyond it are deleted.
//!
//! Appends to one stream are serialised by a mutex held only while the bytes are copied
//! to the segment (never during fsync), so concurrent appenders queue behind one fsync
//! that covers all of them (group commit, leader/follower).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk failed.
    #[error("stream i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A conditional append named another offset than the stream's size.
    #[error("the stream holds {actual} bytes; an append at offset {expected} is refused")]
    OffsetMismatch {
        /// The offset the caller expected.
        expected: u64,
        /// The stream's size.
        actual: u64,
    },
    /// Files on disk contradict the commit log (lost data, manual edits).
    #[error("stream {0} is damaged: {1}")]
    Damaged(u64, String),
    /// An earlier fsync failed: the stream refuses writes until the server restarts.
    #[error("stream {0} refuses writes after a failed fsync: {1}")]
    Poisoned(u64, String),
}

/// Result of the storage engine.
pub type StoreResult<T> = Result<T, StoreError>;

/// When an append returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the bytes are on disk (fsync'd and committed): the caller may acknowledge.
    Durable,
    /// As soon as the bytes are written; a background flusher commits them within
    /// [`StoreOptions::flush_interval`]. For senders that asked for no acknowledgement.
    Lazy,
}

/// A byte-stream store: what the data plane needs from a backend.
pub trait StreamStore: Send + Sync {
    /// Committed size of stream `id` (0 when it was never written), in O(1) once open.
    fn size(&self, id: u64) -> StoreResult<u64>;
    /// Appends `data` at the end, or only if the stream's size is `at`; returns the new
    /// size. Appends to one stream never interleave.
    fn append(&self, id: u64, data: &[u8], at: Option<u64>, mode: Durability) -> StoreResult<u64>;
    /// Up to `len` committed bytes from `start`.
    fn read(&self, id: u64, start: u64, len: usize) -> StoreResult<Vec<u8>>;
    /// When the last append of this process happened (none after a restart until the
    /// next append; then the newest segment's modification time is used).
    fn last_append(&self, id: u64) -> StoreResult<Option<SystemTime>>;
    /// Deletes the stream's bytes.
    fn remove(&self, id: u64) -> StoreResult<()>;
}

/// Knobs of the local store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// A new segment file is started once the current one holds this many bytes.
    pub segment_bytes: u64,
    /// fsync before acknowledging (false: no fsync at all — kill -9 safe, power-loss
    /// unsafe; for benchmarks and throw-away data).
    pub fsync: bool,
    /// How often lazily appended bytes are committed.
    pub flush_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_bytes: 1 << 30,
            fsync: true,
            flush_interval: Duration::from_millis(100),
        }
    }
}

const COMMIT_RECORD: usize = 16;
const COMMIT_MAGIC: u32 = 0x5744_4c43; // "WDLC"
/// Record slots of a commit log. The file is written full of zeros once, so a commit
/// overwrites allocated blocks and its fdatasync needs no metadata (size) update.
const COMMIT_SLOTS: u64 = 4096;

/// Segment files on the local disk under one root directory.
pub struct LocalStore {
    root: PathBuf,
    options: StoreOptions,
    streams: Mutex<HashMap<u64, Arc<Stream>>>,
    flusher: OnceLock<()>,
    me: Weak<LocalStore>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

struct Stream {
    id: u64,
    dir: PathBuf,
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    commit_log: Mutex<Option<CommitLog>>,
    fsync: bool,
}

struct Writer {
    /// Start offsets of the segments, ascending; the last is being written.
    segments: Vec<u64>,
    current: Option<Arc<File>>,
    end: u64,
    last_append: Option<SystemTime>,
}

struct CommitLog {
    file: File,
    next_slot: u64,
}

struct SyncState {
    durable: u64,
    syncing: bool,
    poisoned: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a stream lock cannot leave the files half-updated in a way
    // the next commit would not repair (the writer's `end` moves only after a full write).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn segment_name(start: u64) -> String {
    format!("{start:020}.seg")
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl LocalStore {
    /// A store rooted at `root` (created when missing).
    pub fn open(root: &Path, options: StoreOptions) -> StoreResult<Arc<LocalStore>> {
        std::fs::create_dir_all(root)?;
        Ok(Arc::new_cyclic(|me| LocalStore {
            root: root.to_path_buf(),
            options,
            streams: Mutex::new(HashMap::new()),
            flusher: OnceLock::new(),
            me: me.clone(),
        }))
    }

    /// Where the files of stream `id` live.
    pub fn stream_dir(&self, id: u64) -> PathBuf {
        self.root.join(id.to_string())
    }

    fn stream(&self, id: u64) -> StoreResult<Arc<Stream>> {
        let mut streams = lock(&self.streams);
        if let Some(s) = streams.get(&id) {
            return Ok(s.clone());
        }
        let s = Arc::new(Stream::recover(
            id,
            self.stream_dir(id),
            self.options.fsync,
        )?);
        streams.insert(id, s.clone());
        Ok(s)
    }

    fn start_flusher(&self) {
        self.flusher.get_or_init(|| {
            let me = self.me.clone();
            let every = self.options.flush_interval;
            let spawned = std::thread::Builder::new()
                .name("stream-flusher".into())
                .spawn(move || loop {
                    std::thread::sleep(every);
                    let Some(store) = me.upgrade() else { return };
                    let streams: Vec<Arc<Stream>> =
                        lock(&store.streams).values().cloned().collect();
                    for s in streams {
                        let end = lock(&s.writer).end;
                        if let Err(e) = s.wait_durable(end) {
                            tracing::error!(stream = s.id, error = %e, "background commit failed");
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the stream flusher");
            }
        });
    }
}

impl StreamStore for LocalStore {
    fn size(&self, id: u64) -> StoreResult<u64> {
        Ok(lock(&self.stream(id)?.sync).durable)
    }

    fn append(&self, id: u64, data: &[u8], at: Option<u64>, mode: Durability) -> StoreResult<u64> {
        let stream = self.stream(id)?;
        let end = stream.write(data, at, self.options.segment_bytes)?;
        match mode {
            Durability::Durable => stream.wait_durable(end)?,
            Durability::Lazy => self.start_flusher(),
        }
        Ok(end)
    }

    fn read(&self, id: u64, start: u64, len: usize) -> StoreResult<Vec<u8>> {
        let stream = self.stream(id)?;
        let durable = lock(&stream.sync).durable;
        let stop = durable.min(start.saturating_add(len as u64));
        if start >= stop {
            return Ok(Vec::new());
        }
        let (segments, current) = {
            let w = lock(&stream.writer);
            (w.segments.clone(), w.current.clone())
        };
        let mut out = Vec::with_capacity(usize::try_from(stop - start).unwrap_or(0));
        let mut pos = start;
        while pos < stop {
            let i = segments.partition_point(|&s| s <= pos).saturating_sub(1);
            let seg_start = segments.get(i).copied().unwrap_or(0);
            let seg_stop = segments.get(i + 1).copied().unwrap_or(u64::MAX).min(stop);
            let n = usize::try_from(seg_stop - pos)
                .map_err(|_| StoreError::Damaged(id, "read range too large".into()))?;
            let mut buf = vec![0u8; n];
            let is_last = i + 1 == segments.len();
            match (&current, is_last) {
                (Some(f), true) => f.read_exact_at(&mut buf, pos - seg_start)?,
                _ => File::open(stream.dir.join(segment_name(seg_start)))?
                    .read_exact_at(&mut buf, pos - seg_start)?,
            }
            out.extend_from_slice(&buf);
            pos = seg_stop;
        }
        Ok(out)
    }

    fn last_append(&self, id: u64) -> StoreResult<Option<SystemTime>> {
        let stream = self.stream(id)?;
        let w = lock(&stream.writer);
        if w.last_append.is_some() || w.segments.is_empty() {
            return Ok(w.last_append);
        }
        let newest = stream
            .dir
            .join(segment_name(w.segments[w.segments.len() - 1]));
        Ok(std::fs::metadata(newest).and_then(|m| m.modified()).ok())
    }

    fn remove(&self, id: u64) -> StoreResult<()> {
        let stream = lock(&self.streams).remove(&id);
        if let Some(s) = stream {
            // Wait for writers in flight, then drop the files.
            let _w = lock(&s.writer);
        }
        let dir = self.stream_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
            sync_dir(&self.root)?;
        }
        Ok(())
    }
}

impl Stream {
    /// Opens a stream's files, truncating whatever lies beyond the last commit.
    fn recover(id: u64, dir: PathBuf, fsync: bool) -> StoreResult<Stream> {
        let mut segments = Vec::new();
        let mut committed = 0;
        let mut commit_log = None;
        if dir.exists() {
            let (end, next_slot) = read_commit_log(&dir.join("commit.log"))?;
            committed = end;
            for entry in std::fs::read_dir(&dir)? {
                let name = entry?.file_name();
                let name = name.to_string_lossy();
                if let Some(start) = name
                    .strip_suffix(".seg")
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    segments.push(start);
                }
            }
            segments.sort_unstable();
            // Segments that start beyond the commit hold only uncommitted bytes.
            while segments.len() > 1 && segments[segments.len() - 1] >= committed {
                if let Some(start) = segments.pop() {
                    std::fs::remove_file(dir.join(segment_name(start)))?;
                }
            }
            if let Some(&last) = segments.last() {
                let path = dir.join(segment_name(last));
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                let len = file.metadata()?.len();
                let want = committed.checked_sub(last).ok_or_else(|| {
                    StoreError::Damaged(
                        id,
                        format!("segment {last} starts beyond commit {committed}"),
                    )
                })?;
                if len < want {
                    return Err(StoreError::Damaged(
                        id,
                        format!(
                            "{} holds {len} bytes, {want} were committed",
                            path.display()
                        ),
                    ));
                }
                if len > want {
                    tracing::warn!(
                        stream = id,
                        torn = len - want,
                        "truncating an uncommitted tail"
                    );
                    file.set_len(want)?;
                    file.sync_all()?;
                }
            } else if committed > 0 {
                return Err(StoreError::Damaged(
                    id,
                    format!("{committed} bytes committed, no segment"),
                ));
            }
            commit_log = OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join("commit.log"))
                .ok()
                .map(|file| CommitLog { file, next_slot });
        }
        let current = match segments.last() {
            Some(&last) => Some(Arc::new(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(dir.join(segment_name(last)))?,
            )),
            None => None,
        };
        Ok(Stream {
            id,
            dir,
            writer: Mutex::new(Writer {
                segments,
                current,
                end: committed,
                last_append: None,
            }),
            sync: Mutex::new(SyncState {
                durable: committed,
                syncing: false,
                poisoned: None,
            }),
            synced: Condvar::new(),
            commit_log: Mutex::new(commit_log),
            fsync,
        })
    }

    /// Copies `data` to the end of the current segment; returns the new end.
    fn write(&self, data: &[u8], at: Option<u64>, segment_bytes: u64) -> StoreResult<u64> {
        if let Some(reason) = &lock(&self.sync).poisoned {
            return Err(StoreError::Poisoned(self.id, reason.clone()));
        }
        let mut w = lock(&self.writer);
        if let Some(expected) = at {
            if expected != w.end {
                return Err(StoreError::OffsetMismatch {
                    expected,
                    actual: w.end,
                });
            }
        }
        if data.is_empty() {
            return Ok(w.end);
        }
        let seg_start = w.segments.last().copied();
        let need_new = match seg_start {
            None => true,
            Some(s) => w.end - s >= segment_bytes && w.end > s,
        };
        if need_new {
            if let Some(old) = &w.current {
                // Later commits fsync only the current segment: finish this one first.
                if self.fsync {
                    old.sync_data()?;
                }
            }
            let fresh = w.segments.is_empty();
            if fresh {
                std::fs::create_dir_all(&self.dir)?;
                if let Some(parent) = self.dir.parent() {
                    sync_dir(parent)?;
                }
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(self.dir.join(segment_name(w.end)))?;
            sync_dir(&self.dir)?;
            let end = w.end;
            w.segments.push(end);
            w.current = Some(Arc::new(file));
        }
        let start = w.segments.last().copied().unwrap_or(0);
        let end = w.end;
        let file = w
            .current
            .clone()
            .ok_or_else(|| StoreError::Damaged(self.id, "no current segment".into()))?;
        if let Err(e) = file.write_all_at(data, end - start) {
            // Undo a partial write so the next append starts at the committed framing.
            let _ = file.set_len(end - start);
            return Err(e.into());
        }
        w.end = end + data.len() as u64;
        w.last_append = Some(SystemTime::now());
        Ok(w.end)
    }

    /// Returns once every byte below `end` is committed; one caller at a time runs the
    /// fsync for everybody waiting (group commit).
    fn wait_durable(&self, end: u64) -> StoreResult<()> {
        let mut s = lock(&self.sync);
        loop {
            if s.durable >= end {
                return Ok(());
            }
            if let Some(reason) = &s.poisoned {
                return Err(StoreError::Poisoned(self.id, reason.clone()));
            }
            if s.syncing {
                s = self
                    .synced
                    .wait(s)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            s.syncing = true;
            drop(s);
            let result = self.commit();
            s = lock(&self.sync);
            s.syncing = false;
            match result {
                Ok(committed) => s.durable = s.durable.max(committed),
                Err(e) => s.poisoned = Some(e.to_string()),
            }
            self.synced.notify_all();
        }
    }

    /// fsyncs the current segment and records its end in the commit log.
    fn commit(&self) -> StoreResult<u64> {
        let (file, end) = {
            let w = lock(&self.writer);
            (w.current.clone(), w.end)
        };
        let Some(file) = file else { return Ok(end) };
        if self.fsync {
            file.sync_data()?;
        }
        let mut log = lock(&self.commit_log);
        let record = commit_record(end);
        match log.as_mut() {
            Some(l) if l.next_slot < COMMIT_SLOTS => {
                l.file
                    .write_all_at(&record, l.next_slot * COMMIT_RECORD as u64)?;
                if self.fsync {
                    l.file.sync_data()?;
                }
                l.next_slot += 1;
            }
            // First commit, or the log is full: a fresh zeroed log holding this record
            // replaces it atomically.
            _ => {
                let tmp = self.dir.join("commit.log.tmp");
                let mut f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)?;
                let mut zeroed = vec![0u8; (COMMIT_SLOTS as usize) * COMMIT_RECORD];
                zeroed[..COMMIT_RECORD].copy_from_slice(&record);
                f.write_all(&zeroed)?;
                f.sync_all()?;
                std::fs::rename(&tmp, self.dir.join("commit.log"))?;
                sync_dir(&self.dir)?;
                *log = Some(CommitLog {
                    file: f,
                    next_slot: 1,
                });
            }
        }
        Ok(end)
    }
}

fn commit_record(end: u64) -> [u8; COMMIT_RECORD] {
    let mut r = [0u8; COMMIT_RECORD];
    r[..8].copy_from_slice(&end.to_le_bytes());
    let crc = crc32fast::hash(&r[..8]);
    r[8..12].copy_from_slice(&crc.to_le_bytes());
    r[12..].copy_from_slice(&COMMIT_MAGIC.to_le_bytes());
    r
}

/// The end offset in the last valid record of a commit log (0 when there is none) and
/// the slot after that record.
fn read_commit_log(path: &Path) -> StoreResult<(u64, u64)> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, COMMIT_SLOTS)),
        Err(e) => return Err(e.into()),
    }
    let whole = bytes.len() / COMMIT_RECORD * COMMIT_RECORD;
    for (slot, r) in bytes[..whole].chunks_exact(COMMIT_RECORD).enumerate().rev() {
        let mut end = [0u8; 8];
        end.copy_from_slice(&r[..8]);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&r[8..12]);
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&r[12..]);
        if u32::from_le_bytes(magic) == COMMIT_MAGIC
            && u32::from_le_bytes(crc) == crc32fast::hash(&r[..8])
        {
            return Ok((u64::from_le_bytes(end), slot as u64 + 1));
        }
    }
    Ok((0, COMMIT_SLOTS))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn opts(segment_bytes: u64) -> StoreOptions {
        StoreOptions {
            segment_bytes,
            ..StoreOptions::default()
        }
    }

    #[test]
    fn appends_read_back_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(10)).unwrap();
        let mut all = Vec::new();
        for i in 0..20u8 {
            let chunk = vec![i; usize::from(i % 7) + 1];
            all.extend_from_slice(&chunk);
            let end = store.append(7, &chunk, None, Durability::Durable).unwrap();
            assert_eq!(end, all.len() as u64);
        }
        assert_eq!(store.size(7).unwrap(), all.len() as u64);
        assert_eq!(store.read(7, 0, 10_000).unwrap(), all);
        assert_eq!(store.read(7, 5, 17).unwrap(), all[5..22]);
        let segs = std::fs::read_dir(store.stream_dir(7)).unwrap().count();
        assert!(segs > 3, "expected several segments, found {segs} files");
        // Reopened: same bytes.
        drop(store);
        let store = LocalStore::open(dir.path(), opts(10)).unwrap();
        assert_eq!(store.read(7, 0, 10_000).unwrap(), all);
        assert_eq!(store.size(8).unwrap(), 0);
    }

    #[test]
    fn torn_tail_is_truncated_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        store
            .append(1, b"hello ", None, Durability::Durable)
            .unwrap();
        store
            .append(1, b"world", None, Durability::Durable)
            .unwrap();
        let seg = store.stream_dir(1).join(segment_name(0));
        drop(store);
        // A crash after a write but before its commit leaves bytes beyond the commit.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"TORN").unwrap();
        // ...and a torn commit record.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join("1").join("commit.log"))
            .unwrap();
        log.write_all(&[1, 2, 3]).unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.size(1).unwrap(), 11);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), 11);
        let end = store.append(1, b"!", None, Durability::Durable).unwrap();
        assert_eq!(end, 12);
        assert_eq!(store.read(1, 0, 100).unwrap(), b"hello world!");
    }

    #[test]
    fn commit_log_rotates_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let quick = StoreOptions {
            fsync: false,
            ..opts(1 << 20)
        };
        let store = LocalStore::open(dir.path(), quick).unwrap();
        for _ in 0..COMMIT_SLOTS + 10 {
            store.append(5, b"ab", None, Durability::Durable).unwrap();
        }
        let log = store.stream_dir(5).join("commit.log");
        assert_eq!(
            std::fs::metadata(&log).unwrap().len(),
            COMMIT_SLOTS * COMMIT_RECORD as u64
        );
        drop(store);
        let store = LocalStore::open(dir.path(), quick).unwrap();
        assert_eq!(store.size(5).unwrap(), 2 * (COMMIT_SLOTS + 10));
    }

    #[test]
    fn conditional_append_refuses_wrong_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        store
            .append(2, b"abc", Some(0), Durability::Durable)
            .unwrap();
        let err = store
            .append(2, b"d", Some(2), Durability::Durable)
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::OffsetMismatch {
                expected: 2,
                actual: 3
            }
        ));
        assert_eq!(store.size(2).unwrap(), 3);
    }

    #[test]
    fn concurrent_appends_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(4096)).unwrap();
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let rec = vec![b'a' + t; 100];
                        store.append(3, &rec, None, Durability::Durable).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = store.read(3, 0, usize::MAX >> 1).unwrap();
        assert_eq!(all.len(), 8 * 50 * 100);
        for rec in all.chunks(100) {
            assert!(rec.iter().all(|&b| b == rec[0]), "interleaved record");
        }
    }

    #[test]
    fn lazy_appends_are_committed_by_the_flusher() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        store.append(4, b"xyz", None, Durability::Lazy).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.size(4).unwrap() < 3 {
            assert!(std::time::Instant::now() < deadline, "never committed");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(store);
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.read(4, 0, 10).unwrap(), b"xyz");
    }
}
