//! The stream storage engine: append-only segment files on the local disk, behind the
//! [`StreamStore`] trait so another backend (S3) can stand in later.
//!
//! Layout, per stream: `<root>/<id>/<start offset, 20 digits>.cseg` segment files. A
//! segment opens with a header of [`HEADER_SLOTS`] commit-record slots of 32 bytes
//! (zeros when the file is created), then the stream's bytes from `start`. A commit record
//! holds a sequence number, the committed end offset, the offset `from` which the bytes
//! of this commit start (within this segment), a crc32 of those bytes and a crc32 of the
//! record; record `seq` goes to slot `seq % HEADER_SLOTS`, so the header is a ring.
//!
//! Durability protocol of one group commit: the bytes are written to the segment, the
//! record naming the new end is written into the same file's header, and ONE fdatasync
//! covers both (one device flush per commit, the same as a plain write+fdatasync loop);
//! only then are the appenders waiting for bytes up to that end answered. Commits are
//! serialised, so when record `seq` reaches the disk at all, every commit before it was
//! wholly durable. Within one fdatasync the kernel may write the header before the bytes,
//! so on open the newest record is trusted only if its bytes are there: the file is long
//! enough and the crc32 of `from..end` matches; else (a crash during that fdatasync, never
//! acknowledged) the record before it is used. Bytes beyond the trusted end (a torn tail)
//! are truncated; a last segment without a trusted record (created, then the crash came
//! before its first commit) is deleted, and the segment before it is trusted up to its own
//! newest record. A segment other than the last is complete up to the next one's start:
//! it was fdatasync'd before the next one was created.
//!
//! Streams written by earlier versions have `<start>.seg` segments without a header and a
//! separate `commit.log` of 16-byte records (two flushes per commit). They are recovered
//! through that log, kept as they are, and the next append starts a `.cseg` segment at
//! the committed end; once that segment holds a commit, `commit.log` is removed.
//!
//! Appends to one stream are serialised by a mutex held only while the bytes are copied
//! to the segment (never during fsync), so concurrent appenders queue behind one fsync
//! that covers all of them (group commit, leader/follower).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use wendelin_core::store::files;

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
    /// Files on disk contradict the commit records (lost data, manual edits).
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
    /// Whether a [`Prewrite`] writes its body with `O_DIRECT` (with `fsync` only; where
    /// the file system refuses it, through the page cache as without). Off by default:
    /// see [`Direct`] for what it gains and costs.
    pub direct_writes: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_bytes: 1 << 30,
            fsync: true,
            flush_interval: Duration::from_millis(100),
            direct_writes: false,
        }
    }
}

/// Size of a commit record in a segment header.
const RECORD: usize = 32;
/// Commit-record slots at the head of a segment (a ring: record `seq` is in slot
/// `seq % HEADER_SLOTS`). Written as zeros when the segment is created, so a commit
/// overwrites allocated blocks.
const HEADER_SLOTS: u64 = 1024;
/// Bytes before a segment's data.
const HEADER: u64 = HEADER_SLOTS * RECORD as u64;
const COMMIT_MAGIC: u32 = 0x5744_4c43; // "WDLC"

/// Bytes of a [`Prewrite`] written before their writeback is started. Measured
/// (bench/ingest.py, 1 client, fast disk, 2026-12-07): no writeback before the commit
/// 0.39–0.40× of the fdatasync loop, 64 KiB 0.46–0.54×, 128 KiB 0.51–0.56×, 256 KiB
/// 0.51–0.54×, 512 KiB 0.50×: smaller runs kick the device too often, larger ones leave
/// too much to the commit's fdatasync.
const WRITEBACK_RUN: u64 = 256 << 10;

/// Bytes a direct [`Prewrite`] stages before it writes them (whole blocks; the rest of a
/// block waits for the next piece or the commit).
const DIRECT_RUN: usize = 256 << 10;

/// The block a direct write covers: its offsets and lengths are multiples of this.
const BLOCK: u64 = files::DIRECT_ALIGN as u64;

/// Appends without a [`Prewrite`] after one was overtaken.
const PREWRITE_COOLDOWN: u32 = 64;

/// Records of a `commit.log` written by earlier versions (16 bytes: end, crc, magic).
const LEGACY_RECORD: usize = 16;

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
    /// Sequence number of the newest commit record, and whether a legacy `commit.log`
    /// is still there to remove after the first commit in a `.cseg` segment.
    commits: Mutex<Commits>,
    fsync: bool,
    /// Appends between their write and their answer: a [`Prewrite`] is granted only when
    /// there are none (it would mostly be overtaken, its bytes written twice).
    in_flight: AtomicUsize,
    /// Set once the file system refused `O_DIRECT`: prewrites then go through the page
    /// cache.
    direct_refused: AtomicBool,
}

/// Counts an append in [`Stream::in_flight`] while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(n: &'a AtomicUsize) -> InFlight<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    /// Stream offset of its first byte.
    start: u64,
    /// Whether it is a headerless `.seg` of an earlier version (read-only).
    legacy: bool,
}

impl Seg {
    fn header(self) -> u64 {
        if self.legacy {
            0
        } else {
            HEADER
        }
    }

    fn path(self, dir: &Path) -> PathBuf {
        dir.join(if self.legacy {
            format!("{:020}.seg", self.start)
        } else {
            format!("{:020}.cseg", self.start)
        })
    }
}

struct Writer {
    /// The segments, ascending; the last is being written.
    segments: Vec<Seg>,
    current: Option<Arc<File>>,
    end: u64,
    last_append: Option<SystemTime>,
    /// crc32 of the bytes written since the last commit took its share (from
    /// `pending_from`, in the current segment).
    pending: crc32fast::Hasher,
    pending_from: u64,
    /// Bumped by every write and new segment: a [`Prewrite`] taken at another epoch
    /// has been overtaken.
    epoch: u64,
    /// The [`Prewrite`] holding the end, if any (its number).
    prewriter: Option<u64>,
    prewriters: u64,
    /// Appends to go before the next [`Prewrite`] is granted: set when one is overtaken
    /// (concurrent appenders: prewrites would mostly be written twice).
    prewrite_cooldown: u32,
    /// How far bytes were written in the current segment (stream offset): prewritten
    /// bytes of an abandoned body, or the zeros that pad a direct write to its block,
    /// may lie beyond `end` until overwritten.
    extent: u64,
    /// The current segment opened with `O_DIRECT`, once a prewrite asked for it.
    direct: Option<Arc<File>>,
    /// The bytes of the block holding `end` that lie before it, as the last direct
    /// prewrite left them (keyed by that `end`): the next one starts its first block
    /// with them instead of reading them back from the device.
    tail: Option<(u64, Vec<u8>)>,
}

struct Commits {
    seq: u64,
    legacy_log: bool,
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

/// A body written to the end of a stream while it arrives, before it is checked and
/// appended ([`LocalStore::prewrite`], [`Prewrite::piece`], [`LocalStore::append_prewritten`]):
/// the disk copies and starts writing it back during the receipt, so that the commit's
/// fdatasync finds little left to do. The bytes lie beyond the stream's end, where nothing
/// reads them, until the append moves the end over them; a body dropped or overtaken
/// leaves them as garbage that the next write overwrites (or recovery truncates: no
/// commit record covers them). Whoever else appends meanwhile overtakes the prewrite
/// (it never waits for a slow body): the body is then written again at the new end.
pub struct Prewrite {
    stream: Arc<Stream>,
    file: Arc<File>,
    seg_start: u64,
    number: u64,
    epoch: u64,
    base: u64,
    written: u64,
    /// Offset in the file up to which writeback was started.
    flushed: u64,
    crc: crc32fast::Hasher,
    lost: bool,
    body: Vec<u8>,
    /// The body's announced length.
    limit: usize,
    /// With [`StoreOptions::direct_writes`]: the body goes to the device in whole blocks.
    direct: Option<Direct>,
}

/// The `O_DIRECT` side of a [`Prewrite`] ([`StoreOptions::direct_writes`]). Measured on
/// the VMs this runs on (bench/ingest.py, bench/RESULTS.md, 2026-12-07 20:35–21:00 UTC):
/// the server's CPU per ingested MiB falls by ~25 % (no page-cache copy, no writeback
/// work), and a 1 MiB write+fdatasync loop goes 0.8–1.2× as fast with `O_DIRECT` on a
/// quiet machine (2.8× while a build used both cores); but one client's throughput is no
/// better (0.45–0.52× of the buffered loop against 0.46–0.59×): each write waits for
/// the device while the body's receipt waits for it, where the page cache's writeback
/// runs beside the receipt. Hence off by default.
struct Direct {
    file: Arc<File>,
    stage: files::StagingBuffer,
    /// Bytes in `stage`: the start of its first block (the stream's bytes before the
    /// body's first byte, or what the last write left of a block), then body bytes not
    /// yet written.
    staged: usize,
    /// File offset of `stage`'s first byte (a block boundary).
    at: u64,
}

// A direct write never covers the header: the data's first block starts after it.
const _: () = assert!(HEADER.is_multiple_of(BLOCK));

impl std::fmt::Debug for Prewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prewrite")
            .field("stream", &self.stream.id)
            .field("base", &self.base)
            .field("written", &self.written)
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl Prewrite {
    /// Whether this prewrite still holds the stream's end: nobody wrote since it began.
    fn holds_end(&self, w: &Writer) -> bool {
        w.prewriter == Some(self.number) && w.epoch == self.epoch && w.end == self.base
    }

    /// Takes the next piece of the body: kept, and written in place while this prewrite
    /// still holds the stream's end.
    pub fn piece(&mut self, piece: &[u8]) {
        self.body.extend_from_slice(piece);
        if self.lost || piece.is_empty() {
            return;
        }
        if self.body.len() > self.limit {
            // More than announced: the segment's room was judged for `limit` bytes.
            self.lost = true;
            return;
        }
        if self.direct.is_some() {
            self.stage(piece);
            return;
        }
        let at = HEADER + (self.base - self.seg_start) + self.written;
        {
            let mut w = lock(&self.stream.writer);
            if !self.holds_end(&w) {
                self.lost = true;
                return;
            }
            if self.file.write_all_at(piece, at).is_err() {
                // The append writes the body again and reports the error, if any.
                self.lost = true;
                return;
            }
            self.written += piece.len() as u64;
            w.extent = w.extent.max(self.base + self.written);
        }
        self.crc.update(piece);
        if self.stream.fsync {
            // Whole pages only (a page is written back once), and in runs of at least
            // WRITEBACK_RUN bytes: each start kicks the device.
            let upto = (at + piece.len() as u64) & !4095;
            if upto >= self.flushed + WRITEBACK_RUN {
                wendelin_core::store::files::start_writeback(
                    &self.file,
                    self.flushed,
                    upto - self.flushed,
                );
                self.flushed = upto;
            }
        }
    }

    /// The body so far.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Direct: copies `piece` behind the staged bytes, writing the whole blocks each
    /// time [`DIRECT_RUN`] bytes are staged.
    fn stage(&mut self, piece: &[u8]) {
        let mut rest = piece;
        while !rest.is_empty() {
            let Some(d) = self.direct.as_mut() else {
                return;
            };
            let n = (files::DIRECT_PIECE - d.staged).min(rest.len());
            d.stage.bytes_mut()[d.staged..d.staged + n].copy_from_slice(&rest[..n]);
            d.staged += n;
            rest = &rest[n..];
            if d.staged >= DIRECT_RUN {
                let stream = self.stream.clone();
                let mut w = lock(&stream.writer);
                if !self.write_staged(&mut w, false) {
                    self.lost = true;
                    return;
                }
            }
        }
        self.written += piece.len() as u64;
        self.crc.update(piece);
    }

    /// Direct: writes the staged whole blocks (`last`: all staged bytes, the last block
    /// padded with zeros), if this prewrite still holds the end; `w` is its stream's
    /// writer, locked. False when it no longer holds the end or the write failed.
    fn write_staged(&mut self, w: &mut Writer, last: bool) -> bool {
        if !self.holds_end(w) {
            return false;
        }
        let Some(d) = self.direct.as_mut() else {
            return false;
        };
        let align = files::DIRECT_ALIGN;
        let full = if last {
            d.staged.next_multiple_of(align)
        } else {
            d.staged / align * align
        };
        if full == 0 {
            return true;
        }
        d.stage.bytes_mut()[d.staged.min(full)..full].fill(0);
        // Counted before the write: a failed one may have left bytes there too.
        w.extent = w.extent.max(self.seg_start + (d.at + full as u64 - HEADER));
        if let Err(e) = d.file.write_all_at(&d.stage.bytes()[..full], d.at) {
            if files::direct_refused(&e) {
                self.stream.direct_refused.store(true, Ordering::Relaxed);
            }
            return false;
        }
        if !last {
            d.stage.bytes_mut().copy_within(full..d.staged, 0);
            d.staged -= full;
            d.at += full as u64;
        }
        true
    }
}

impl Drop for Prewrite {
    fn drop(&mut self) {
        let mut w = lock(&self.stream.writer);
        if w.prewriter == Some(self.number) {
            w.prewriter = None;
        }
    }
}

impl LocalStore {
    /// A [`Prewrite`] of a body of about `len` bytes at the end of stream `id`, when the
    /// stream is open, no other append to it is under way and its segment has room;
    /// otherwise `None` (the body is then appended as usual).
    pub fn prewrite(&self, id: u64, len: usize) -> Option<Prewrite> {
        let stream = lock(&self.streams).get(&id)?.clone();
        let (file, seg_start, number, epoch, base, direct, tail) = {
            let mut w = lock(&stream.writer);
            let seg = *w.segments.last()?;
            let file = w.current.clone()?;
            if seg.legacy
                || w.prewriter.is_some()
                || w.prewrite_cooldown > 0
                || stream.in_flight.load(Ordering::SeqCst) > 0
                || w.end - seg.start + len as u64 > self.options.segment_bytes
                || lock(&stream.sync).poisoned.is_some()
            {
                return None;
            }
            w.prewriters += 1;
            let number = w.prewriters;
            w.prewriter = Some(number);
            let direct = self.direct_file(&stream, &mut w, seg);
            let tail = w
                .tail
                .as_ref()
                .filter(|(at, _)| *at == w.end)
                .map(|(_, bytes)| bytes.clone());
            (file, seg.start, number, w.epoch, w.end, direct, tail)
        };
        let flushed = (HEADER + (base - seg_start)) & !4095;
        let direct = direct.and_then(|direct| {
            // The first block starts with the stream's bytes before the body: from the
            // last direct prewrite when it left them, else read back (they are
            // committed, or written by an append that holds no lock on them any more:
            // below the end, bytes never change).
            let start = HEADER + (base - seg_start);
            let at = start / BLOCK * BLOCK;
            let head = (start - at) as usize;
            let mut stage = files::StagingBuffer::take();
            match tail {
                Some(bytes) if bytes.len() == head => {
                    stage.bytes_mut()[..head].copy_from_slice(&bytes);
                }
                _ => file
                    .read_exact_at(&mut stage.bytes_mut()[..head], at)
                    .ok()?,
            }
            Some(Direct {
                file: direct,
                stage,
                staged: head,
                at,
            })
        });
        Some(Prewrite {
            stream,
            file,
            seg_start,
            number,
            epoch,
            base,
            written: 0,
            flushed,
            crc: crc32fast::Hasher::new(),
            lost: false,
            body: Vec::with_capacity(len),
            limit: len,
            direct,
        })
    }

    /// The `O_DIRECT` handle of `stream`'s current segment `seg` for a prewrite, opened
    /// on first use (`w` is the stream's writer, locked); `None` when direct writes are
    /// off or refused.
    fn direct_file(&self, stream: &Stream, w: &mut Writer, seg: Seg) -> Option<Arc<File>> {
        if !self.options.direct_writes
            || !self.options.fsync
            || stream.direct_refused.load(Ordering::Relaxed)
        {
            return None;
        }
        if let Some(file) = &w.direct {
            return Some(file.clone());
        }
        match files::open_direct(&seg.path(&stream.dir)) {
            Ok(Some(file)) => {
                let file = Arc::new(file);
                w.direct = Some(file.clone());
                Some(file)
            }
            Ok(None) => {
                stream.direct_refused.store(true, Ordering::Relaxed);
                None
            }
            Err(e) => {
                tracing::warn!(stream = stream.id, error = %e, "cannot open a segment for direct writes");
                None
            }
        }
    }

    /// Appends the body of `pre` (see [`Prewrite`]); returns the new size.
    pub fn append_prewritten(&self, pre: Prewrite, mode: Durability) -> StoreResult<u64> {
        let stream = pre.stream.clone();
        let _counted = InFlight::enter(&stream.in_flight);
        let end = stream.write_prewritten(pre, self.options.segment_bytes)?;
        match mode {
            Durability::Durable => stream.wait_durable(end)?,
            Durability::Lazy => self.start_flusher(),
        }
        Ok(end)
    }
}

impl StreamStore for LocalStore {
    fn size(&self, id: u64) -> StoreResult<u64> {
        Ok(lock(&self.stream(id)?.sync).durable)
    }

    fn append(&self, id: u64, data: &[u8], at: Option<u64>, mode: Durability) -> StoreResult<u64> {
        let stream = self.stream(id)?;
        let _counted = InFlight::enter(&stream.in_flight);
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
            let i = segments
                .partition_point(|s| s.start <= pos)
                .saturating_sub(1);
            let seg = segments
                .get(i)
                .copied()
                .ok_or_else(|| StoreError::Damaged(id, format!("no segment holds offset {pos}")))?;
            let seg_stop = segments.get(i + 1).map_or(u64::MAX, |s| s.start).min(stop);
            let n = usize::try_from(seg_stop - pos)
                .map_err(|_| StoreError::Damaged(id, "read range too large".into()))?;
            let mut buf = vec![0u8; n];
            let is_last = i + 1 == segments.len();
            let at = seg.header() + pos - seg.start;
            match (&current, is_last) {
                (Some(f), true) => f.read_exact_at(&mut buf, at)?,
                _ => File::open(seg.path(&stream.dir))?.read_exact_at(&mut buf, at)?,
            }
            out.extend_from_slice(&buf);
            pos = seg_stop;
        }
        Ok(out)
    }

    fn last_append(&self, id: u64) -> StoreResult<Option<SystemTime>> {
        let stream = self.stream(id)?;
        let w = lock(&stream.writer);
        let Some(newest) = w.segments.last() else {
            return Ok(w.last_append);
        };
        if w.last_append.is_some() {
            return Ok(w.last_append);
        }
        Ok(std::fs::metadata(newest.path(&stream.dir))
            .and_then(|m| m.modified())
            .ok())
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

/// A commit record found in a segment header.
#[derive(Debug, Clone, Copy)]
struct Record {
    slot: u64,
    seq: u64,
    end: u64,
    from: u64,
    crc: u32,
}

fn commit_record(seq: u64, end: u64, from: u64, crc: u32) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..8].copy_from_slice(&seq.to_le_bytes());
    r[8..16].copy_from_slice(&end.to_le_bytes());
    r[16..24].copy_from_slice(&from.to_le_bytes());
    r[24..28].copy_from_slice(&crc.to_le_bytes());
    let check = record_crc(&r[..28]);
    r[28..].copy_from_slice(&check.to_le_bytes());
    r
}

fn record_crc(body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&COMMIT_MAGIC.to_le_bytes());
    h.update(body);
    h.finalize()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// The well-formed records of a segment header (crc of the record checked; not yet
/// whether its bytes are there), newest first.
fn header_records(file: &File) -> StoreResult<Vec<Record>> {
    let mut header = vec![0u8; HEADER as usize];
    let len = file.metadata()?.len().min(HEADER) as usize;
    file.read_exact_at(&mut header[..len], 0)?;
    let mut found: Vec<Record> = header
        .chunks_exact(RECORD)
        .enumerate()
        .filter(|(_, r)| u32_at(r, 28) == record_crc(&r[..28]))
        .map(|(slot, r)| Record {
            slot: slot as u64,
            seq: u64_at(r, 0),
            end: u64_at(r, 8),
            from: u64_at(r, 16),
            crc: u32_at(r, 24),
        })
        .collect();
    found.sort_unstable_by_key(|r| std::cmp::Reverse(r.seq));
    Ok(found)
}

/// Whether the bytes `record` commits are in the segment `file` (starting at stream
/// offset `start`, `len` bytes long): a record may reach the disk before its bytes when
/// the crash comes during its fdatasync.
fn record_holds(file: &File, start: u64, len: u64, record: &Record) -> StoreResult<bool> {
    if record.from < start
        || record.from > record.end
        || HEADER + (record.end - start) > len
        || record.seq % HEADER_SLOTS != record.slot
    {
        return Ok(false);
    }
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = record.from;
    while pos < record.end {
        let n = (record.end - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], HEADER + pos - start)?;
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finalize() == record.crc)
}

/// Whether the bytes of `file` from `end` to its length `len` are the zeros a direct
/// prewrite pads its last block with (not a torn append).
fn padding(file: &File, end: u64, len: u64) -> StoreResult<bool> {
    if len - end >= BLOCK || end.next_multiple_of(BLOCK) != len {
        return Ok(false);
    }
    let mut extra = vec![0u8; (len - end) as usize];
    file.read_exact_at(&mut extra, end)?;
    Ok(extra.iter().all(|&b| b == 0))
}

impl Stream {
    /// Opens a stream's files, truncating whatever lies beyond the last commit.
    fn recover(id: u64, dir: PathBuf, fsync: bool) -> StoreResult<Stream> {
        let mut segments = Vec::new();
        let mut committed = 0;
        let mut seq = 0;
        let log_path = dir.join("commit.log");
        let legacy_log = log_path.exists();
        if dir.exists() {
            for entry in std::fs::read_dir(&dir)? {
                let name = entry?.file_name();
                let name = name.to_string_lossy();
                let (stem, legacy) = match (name.strip_suffix(".cseg"), name.strip_suffix(".seg")) {
                    (Some(stem), _) => (stem, false),
                    (None, Some(stem)) => (stem, true),
                    _ => continue,
                };
                if let Ok(start) = stem.parse::<u64>() {
                    segments.push(Seg { start, legacy });
                }
            }
            segments.sort_unstable_by_key(|s| (s.start, !s.legacy));
            // The newest segment with a record whose bytes are there sets the size.
            let mut trusted = None;
            while let Some(&last) = segments.last() {
                if last.legacy {
                    break;
                }
                let path = last.path(&dir);
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                let len = file.metadata()?.len();
                let records = header_records(&file)?;
                let mut rejected = Vec::new();
                for r in &records {
                    if record_holds(&file, last.start, len, r)? {
                        trusted = Some(*r);
                        break;
                    }
                    rejected.push(*r);
                }
                match trusted {
                    Some(r) => {
                        // Records of a commit that never finished: cleared, so that
                        // bytes appended later cannot be mistaken for theirs.
                        for bad in rejected.iter().filter(|b| b.seq > r.seq) {
                            file.write_all_at(&[0u8; RECORD], bad.slot * RECORD as u64)?;
                        }
                        let want = HEADER + (r.end - last.start);
                        if len > want {
                            if padding(&file, want, len)? {
                                tracing::debug!(stream = id, "dropping a direct write's padding");
                            } else {
                                tracing::warn!(
                                    stream = id,
                                    torn = len - want,
                                    "truncating an uncommitted tail"
                                );
                            }
                            file.set_len(want)?;
                        }
                        if len > want || !rejected.is_empty() {
                            file.sync_all()?;
                        }
                        committed = r.end;
                        seq = r.seq;
                        break;
                    }
                    None => {
                        // Created, then the crash came before its first commit.
                        tracing::warn!(
                            stream = id,
                            segment = last.start,
                            "removing a segment without a commit"
                        );
                        drop(file);
                        std::fs::remove_file(&path)?;
                        sync_dir(&dir)?;
                        segments.pop();
                    }
                }
            }
            if trusted.is_none() {
                committed = recover_legacy(id, &dir, &mut segments)?;
            }
            // A segment before the last is complete up to the next one's start.
            for pair in segments.windows(2) {
                let len = std::fs::metadata(pair[0].path(&dir))?.len();
                let want = pair[0].header() + (pair[1].start - pair[0].start);
                if len < want {
                    return Err(StoreError::Damaged(
                        id,
                        format!(
                            "segment {} holds {len} bytes, {want} expected",
                            pair[0].start
                        ),
                    ));
                }
            }
        }
        let current = match segments.last() {
            Some(&last) => Some(Arc::new(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(last.path(&dir))?,
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
                pending: crc32fast::Hasher::new(),
                pending_from: committed,
                epoch: 0,
                prewriter: None,
                prewriters: 0,
                prewrite_cooldown: 0,
                extent: committed,
                direct: None,
                tail: None,
            }),
            sync: Mutex::new(SyncState {
                durable: committed,
                syncing: false,
                poisoned: None,
            }),
            synced: Condvar::new(),
            commits: Mutex::new(Commits {
                seq,
                legacy_log: legacy_log && log_path.exists(),
            }),
            fsync,
            in_flight: AtomicUsize::new(0),
            direct_refused: AtomicBool::new(false),
        })
    }

    /// Copies `data` to the end of the current segment; returns the new end.
    fn write(&self, data: &[u8], at: Option<u64>, segment_bytes: u64) -> StoreResult<u64> {
        if let Some(reason) = &lock(&self.sync).poisoned {
            return Err(StoreError::Poisoned(self.id, reason.clone()));
        }
        // Outside the lock: the commit record's crc of these bytes.
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        let w = lock(&self.writer);
        self.write_locked(w, data, at, segment_bytes, crc)
    }

    /// [`Stream::write`] with the writer's lock held and the crc of `data` known.
    fn write_locked(
        &self,
        mut w: MutexGuard<'_, Writer>,
        data: &[u8],
        at: Option<u64>,
        segment_bytes: u64,
        crc: crc32fast::Hasher,
    ) -> StoreResult<u64> {
        // Whoever prewrites at the end is overtaken: it will write again after us.
        w.epoch += 1;
        if w.prewriter.take().is_some() {
            w.prewrite_cooldown = PREWRITE_COOLDOWN;
        } else {
            w.prewrite_cooldown = w.prewrite_cooldown.saturating_sub(1);
        }
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
        let need_new = match w.segments.last() {
            None => true,
            // A segment of an earlier version is only read: appends go to a new one.
            Some(s) if s.legacy => true,
            Some(s) => w.end - s.start >= segment_bytes && w.end > s.start,
        };
        if need_new {
            if let Some(old) = &w.current {
                if let Some(&last) = w.segments.last() {
                    if w.extent > w.end && !last.legacy {
                        // Prewritten bytes of an abandoned body: not part of the stream.
                        old.set_len(HEADER + (w.end - last.start))?;
                    }
                }
                // Later commits fsync only the current segment: finish this one first.
                if self.fsync {
                    old.sync_data()?;
                }
            }
            if w.segments.is_empty() {
                std::fs::create_dir_all(&self.dir)?;
                if let Some(parent) = self.dir.parent() {
                    sync_dir(parent)?;
                }
            }
            let seg = Seg {
                start: w.end,
                legacy: false,
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(seg.path(&self.dir))?;
            file.write_all_at(&vec![0u8; HEADER as usize], 0)?;
            sync_dir(&self.dir)?;
            w.segments.push(seg);
            w.current = Some(Arc::new(file));
            w.direct = None;
            w.pending = crc32fast::Hasher::new();
            w.pending_from = seg.start;
            w.extent = seg.start;
        }
        let seg = w
            .segments
            .last()
            .copied()
            .ok_or_else(|| StoreError::Damaged(self.id, "no current segment".into()))?;
        let end = w.end;
        let file = w
            .current
            .clone()
            .ok_or_else(|| StoreError::Damaged(self.id, "no current segment".into()))?;
        let at = HEADER + (end - seg.start);
        if let Err(e) = file.write_all_at(data, at) {
            // Undo a partial write so the next append starts at the committed framing.
            let _ = file.set_len(at);
            return Err(e.into());
        }
        w.pending.combine(&crc);
        w.end = end + data.len() as u64;
        w.extent = w.extent.max(w.end);
        w.tail = None;
        w.last_append = Some(SystemTime::now());
        Ok(w.end)
    }

    /// Appends the bytes of `pre`: when it still holds the end and wrote them all, they
    /// are already in place and only the end moves; else they are written as any append.
    fn write_prewritten(&self, mut pre: Prewrite, segment_bytes: u64) -> StoreResult<u64> {
        if let Some(reason) = &lock(&self.sync).poisoned {
            return Err(StoreError::Poisoned(self.id, reason.clone()));
        }
        let mut w = lock(&self.writer);
        let crc = std::mem::replace(&mut pre.crc, crc32fast::Hasher::new());
        let mut in_place = !pre.lost
            && pre.holds_end(&w)
            && pre.written == pre.body.len() as u64
            && !pre.body.is_empty();
        if in_place && pre.direct.is_some() {
            // The last block, padded: the zeros lie beyond the end, where nothing reads.
            in_place = pre.write_staged(&mut w, true);
        }
        if !in_place {
            drop(w);
            let mut crc = crc32fast::Hasher::new();
            crc.update(&pre.body);
            let w = lock(&self.writer);
            return self.write_locked(w, &pre.body, None, segment_bytes, crc);
        }
        w.epoch += 1;
        w.prewriter = None;
        w.pending.combine(&crc);
        w.end = pre.base + pre.written;
        w.extent = w.extent.max(w.end);
        w.tail = pre.direct.as_ref().map(|d| {
            let from = d.staged / files::DIRECT_ALIGN * files::DIRECT_ALIGN;
            (w.end, d.stage.bytes()[from..d.staged].to_vec())
        });
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

    /// Writes a commit record naming the current end into the current segment's header
    /// and fdatasyncs the segment: one flush makes the bytes and their record durable.
    /// Callers are serialised by [`Stream::wait_durable`].
    fn commit(&self) -> StoreResult<u64> {
        let (file, end, from, crc) = {
            let mut w = lock(&self.writer);
            let end = w.end;
            let (Some(file), Some(seg)) = (w.current.clone(), w.segments.last().copied()) else {
                return Ok(end);
            };
            if seg.legacy {
                // Recovered and untouched since: every append starts a `.cseg` first.
                return Ok(end);
            }
            let crc = std::mem::replace(&mut w.pending, crc32fast::Hasher::new()).finalize();
            let from = std::mem::replace(&mut w.pending_from, end);
            (file, end, from, crc)
        };
        let mut commits = lock(&self.commits);
        let seq = commits.seq + 1;
        let record = commit_record(seq, end, from, crc);
        file.write_all_at(&record, (seq % HEADER_SLOTS) * RECORD as u64)?;
        if self.fsync {
            file.sync_data()?;
        }
        commits.seq = seq;
        if commits.legacy_log {
            // The `.cseg` segments now say the size: the old log is no longer read.
            commits.legacy_log = false;
            if let Err(e) = std::fs::remove_file(self.dir.join("commit.log")) {
                tracing::warn!(stream = self.id, error = %e, "cannot remove the old commit.log");
            }
        }
        Ok(end)
    }
}

/// Recovery of the headerless `.seg` segments of earlier versions through their
/// `commit.log` (`segments` holds no `.cseg` with a commit): deletes segments that start
/// beyond the commit, truncates the last to it; returns the committed size. An empty
/// stream's files are removed altogether.
fn recover_legacy(id: u64, dir: &Path, segments: &mut Vec<Seg>) -> StoreResult<u64> {
    let log = dir.join("commit.log");
    let committed = read_commit_log(&log)?;
    // `.cseg` segments left here hold no commit (removed above); `.seg` segments that
    // start beyond the commit hold only uncommitted bytes.
    while segments.len() > 1 && segments[segments.len() - 1].start >= committed {
        if let Some(seg) = segments.pop() {
            std::fs::remove_file(seg.path(dir))?;
        }
    }
    if committed == 0 {
        for seg in segments.drain(..) {
            std::fs::remove_file(seg.path(dir))?;
        }
        if log.exists() {
            std::fs::remove_file(&log)?;
        }
        if dir.exists() {
            sync_dir(dir)?;
        }
        return Ok(0);
    }
    let Some(&last) = segments.last() else {
        return Err(StoreError::Damaged(
            id,
            format!("{committed} bytes committed, no segment"),
        ));
    };
    let path = last.path(dir);
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let len = file.metadata()?.len();
    let want = committed.checked_sub(last.start).ok_or_else(|| {
        StoreError::Damaged(
            id,
            format!("segment {} starts beyond commit {committed}", last.start),
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
    Ok(committed)
}

/// The end offset in the last valid record of a legacy commit log (0 when there is none).
fn read_commit_log(path: &Path) -> StoreResult<u64> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    }
    let whole = bytes.len() / LEGACY_RECORD * LEGACY_RECORD;
    for r in bytes[..whole].chunks_exact(LEGACY_RECORD).rev() {
        if u32_at(r, 12) == COMMIT_MAGIC && u32_at(r, 8) == crc32fast::hash(&r[..8]) {
            return Ok(u64_at(r, 0));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Prewrites through the page cache (the direct ones have tests of their own).
    fn opts(segment_bytes: u64) -> StoreOptions {
        StoreOptions {
            segment_bytes,
            direct_writes: false,
            ..StoreOptions::default()
        }
    }

    fn direct_opts(segment_bytes: u64) -> StoreOptions {
        StoreOptions {
            segment_bytes,
            direct_writes: true,
            ..StoreOptions::default()
        }
    }

    /// Whether the file system of `dir` takes `O_DIRECT` (tmpfs does not: the direct
    /// tests then check that prewrites fall back to the page cache).
    fn direct_taken(dir: &Path) -> bool {
        let probe = dir.join("probe");
        File::create(&probe).unwrap();
        let taken = files::open_direct(&probe).unwrap().is_some();
        std::fs::remove_file(&probe).unwrap();
        if !taken {
            eprintln!(
                "skipped: {} refuses O_DIRECT; the page-cache fallback is tested",
                dir.display()
            );
        }
        taken
    }

    /// A store with direct prewrites in a new directory, stream `id` holding `first`;
    /// and whether the directory takes `O_DIRECT`.
    fn direct_store(id: u64, first: &[u8]) -> (tempfile::TempDir, bool, Arc<LocalStore>) {
        let dir = tempfile::tempdir().unwrap();
        let direct = direct_taken(dir.path());
        let store = LocalStore::open(dir.path(), direct_opts(1 << 30)).unwrap();
        store.append(id, first, None, Durability::Durable).unwrap();
        (dir, direct, store)
    }

    /// `body` in pieces of sizes cycling from `first` (what sockets hand over: a byte,
    /// a few KiB, up to 128 KiB).
    fn pieces(body: &[u8], first: usize) -> Vec<&[u8]> {
        const SIZES: [usize; 6] = [1, 1000, 4096, 65_536, 131_072, 7];
        let mut out = Vec::new();
        let mut rest = body;
        let mut i = first;
        while !rest.is_empty() {
            let n = SIZES[i % SIZES.len()].min(rest.len());
            out.push(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        out
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

    fn cseg(store: &LocalStore, id: u64, start: u64) -> PathBuf {
        Seg {
            start,
            legacy: false,
        }
        .path(&store.stream_dir(id))
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
        let seg = cseg(&store, 1, 0);
        drop(store);
        // A crash after a write but before its commit leaves bytes beyond the commit...
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, b"TORN").unwrap();
        // ...and maybe a torn commit record (its crc fails).
        f.write_all_at(&[7u8; 20], 3 * RECORD as u64).unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.size(1).unwrap(), 11);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), HEADER + 11);
        let end = store.append(1, b"!", None, Durability::Durable).unwrap();
        assert_eq!(end, 12);
        assert_eq!(store.read(1, 0, 100).unwrap(), b"hello world!");
    }

    /// One fdatasync writes a commit's bytes and its record in any order: a crash during
    /// it may leave the record on disk without (all of) its bytes. Such a commit was never
    /// acknowledged: the record before it is used.
    #[test]
    fn a_record_whose_bytes_are_missing_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        store
            .append(1, b"first ", None, Durability::Durable)
            .unwrap();
        store
            .append(1, b"second", None, Durability::Durable)
            .unwrap();
        let seg = cseg(&store, 1, 0);
        drop(store);
        // The second commit's page never reached the disk: zeros where its bytes were.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0u8; 6], HEADER + 6).unwrap();
        drop(f);
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.size(1).unwrap(), 6);
        assert_eq!(store.read(1, 0, 100).unwrap(), b"first ");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), HEADER + 6);
        // The rejected record is cleared: bytes appended later (here the same ones)
        // are committed only by their own record.
        let f = OpenOptions::new().read(true).open(&seg).unwrap();
        assert_eq!(header_records(&f).unwrap().len(), 1);
        drop(f);
        drop(store);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(b"second", HEADER + 6).unwrap();
        drop(f);
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.size(1).unwrap(), 6);
        store
            .append(1, b"third", None, Durability::Durable)
            .unwrap();
        drop(store);
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.read(1, 0, 100).unwrap(), b"first third");
    }

    /// The record reached the disk, the file's new size did not (shorter than its end).
    #[test]
    fn a_record_beyond_the_file_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        store.append(2, b"abc", None, Durability::Durable).unwrap();
        store
            .append(2, b"defgh", None, Durability::Durable)
            .unwrap();
        let seg = cseg(&store, 2, 0);
        drop(store);
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(HEADER + 5)
            .unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.size(2).unwrap(), 3);
        assert_eq!(store.read(2, 0, 100).unwrap(), b"abc");
        assert_eq!(store.append(2, b"X", None, Durability::Durable).unwrap(), 4);
    }

    /// A segment created, then the crash before its first commit: it goes, and the one
    /// before it is trusted up to its own newest record.
    #[test]
    fn a_new_segment_without_a_commit_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(4)).unwrap();
        store.append(3, b"abcd", None, Durability::Durable).unwrap();
        store.append(3, b"ef", None, Durability::Lazy).unwrap();
        // Written, never committed (the flusher runs every 100 ms: crash "now").
        let second = cseg(&store, 3, 4);
        let first = cseg(&store, 3, 0);
        let header = std::fs::read(&second).unwrap()[..HEADER as usize].to_vec();
        drop(store);
        std::thread::sleep(Duration::from_millis(300));
        // Whatever the flusher did: put the segment back as it was before its commit.
        let f = OpenOptions::new().write(true).open(&second).unwrap();
        f.write_all_at(&vec![0u8; header.len()], 0).unwrap();
        drop(f);
        // The first segment's uncommitted tail (synced when the second was started).
        let mut f = OpenOptions::new().append(true).open(&first).unwrap();
        std::io::Write::write_all(&mut f, b"zz").unwrap();
        drop(f);
        let store = LocalStore::open(dir.path(), opts(4)).unwrap();
        assert_eq!(store.size(3).unwrap(), 4);
        assert!(!second.exists());
        assert_eq!(std::fs::metadata(&first).unwrap().len(), HEADER + 4);
        store.append(3, b"gh", None, Durability::Durable).unwrap();
        drop(store);
        let store = LocalStore::open(dir.path(), opts(4)).unwrap();
        assert_eq!(store.read(3, 0, 100).unwrap(), b"abcdgh");
    }

    #[test]
    fn the_record_ring_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let quick = StoreOptions {
            fsync: false,
            ..opts(1 << 20)
        };
        let store = LocalStore::open(dir.path(), quick).unwrap();
        for _ in 0..HEADER_SLOTS + 10 {
            store.append(5, b"ab", None, Durability::Durable).unwrap();
        }
        drop(store);
        let store = LocalStore::open(dir.path(), quick).unwrap();
        assert_eq!(store.size(5).unwrap(), 2 * (HEADER_SLOTS + 10));
        assert_eq!(
            store.append(5, b"c", None, Durability::Durable).unwrap(),
            2 * (HEADER_SLOTS + 10) + 1
        );
    }

    fn legacy_record(end: u64) -> [u8; LEGACY_RECORD] {
        let mut r = [0u8; LEGACY_RECORD];
        r[..8].copy_from_slice(&end.to_le_bytes());
        let crc = crc32fast::hash(&r[..8]);
        r[8..12].copy_from_slice(&crc.to_le_bytes());
        r[12..].copy_from_slice(&COMMIT_MAGIC.to_le_bytes());
        r
    }

    /// Streams of earlier versions (`.seg` without header and a `commit.log`): read as
    /// they are, appended to in a new `.cseg`, the log removed once that one commits.
    #[test]
    fn streams_of_the_old_layout_are_read_and_continued() {
        let dir = tempfile::tempdir().unwrap();
        let sdir = dir.path().join("6");
        std::fs::create_dir_all(&sdir).unwrap();
        std::fs::write(sdir.join(format!("{:020}.seg", 0)), b"0123456789").unwrap();
        std::fs::write(sdir.join(format!("{:020}.seg", 10)), b"abcdeTORN").unwrap();
        // A segment started after the last commit: uncommitted.
        std::fs::write(sdir.join(format!("{:020}.seg", 15)), b"xx").unwrap();
        let mut log = vec![0u8; 64 * LEGACY_RECORD];
        log[..LEGACY_RECORD].copy_from_slice(&legacy_record(10));
        log[LEGACY_RECORD..2 * LEGACY_RECORD].copy_from_slice(&legacy_record(15));
        std::fs::write(sdir.join("commit.log"), &log).unwrap();
        let store = LocalStore::open(dir.path(), opts(8)).unwrap();
        assert_eq!(store.size(6).unwrap(), 15);
        assert_eq!(store.read(6, 3, 10).unwrap(), b"3456789abc");
        assert_eq!(
            std::fs::metadata(sdir.join(format!("{:020}.seg", 10)))
                .unwrap()
                .len(),
            5
        );
        assert!(!sdir.join(format!("{:020}.seg", 15)).exists());
        assert!(sdir.join("commit.log").exists());
        store.append(6, b"XYZ", None, Durability::Durable).unwrap();
        assert!(!sdir.join("commit.log").exists());
        assert!(cseg(&store, 6, 15).exists());
        drop(store);
        let store = LocalStore::open(dir.path(), opts(8)).unwrap();
        assert_eq!(store.read(6, 0, 100).unwrap(), b"0123456789abcdeXYZ");
        assert_eq!(
            store.append(6, b"!", None, Durability::Durable).unwrap(),
            19
        );
    }

    #[test]
    fn a_prewritten_body_is_appended_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        // Only an open stream with a segment takes a prewrite.
        assert!(store.prewrite(8, 3).is_none());
        store.append(8, b"abc", None, Durability::Durable).unwrap();
        let mut pre = store.prewrite(8, 3).unwrap();
        assert!(store.prewrite(8, 3).is_none(), "one prewrite at a time");
        pre.piece(b"de");
        // Beyond the end: not readable yet.
        assert_eq!(store.read(8, 0, 100).unwrap(), b"abc");
        pre.piece(b"f");
        assert_eq!(pre.body(), b"def");
        assert_eq!(
            store.append_prewritten(pre, Durability::Durable).unwrap(),
            6
        );
        assert_eq!(store.read(8, 0, 100).unwrap(), b"abcdef");
        drop(store);
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.read(8, 0, 100).unwrap(), b"abcdef");
    }

    /// More bytes than announced: the prewrite gives up, the body is written whole.
    #[test]
    fn a_body_longer_than_announced_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        store.append(11, b"0", None, Durability::Durable).unwrap();
        let mut pre = store.prewrite(11, 2).unwrap();
        pre.piece(b"ab");
        pre.piece(b"cd");
        assert_eq!(
            store.append_prewritten(pre, Durability::Durable).unwrap(),
            5
        );
        assert_eq!(store.read(11, 0, 100).unwrap(), b"0abcd");
    }

    /// Another append while a body arrives overtakes it: the body is written again
    /// after it, whole.
    #[test]
    fn an_overtaken_prewrite_is_written_again_at_the_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        store.append(9, b"abc", None, Durability::Durable).unwrap();
        let mut pre = store.prewrite(9, 6).unwrap();
        pre.piece(b"XXXX");
        store.append(9, b"12", None, Durability::Durable).unwrap();
        pre.piece(b"YY");
        assert_eq!(
            store.append_prewritten(pre, Durability::Durable).unwrap(),
            11
        );
        assert_eq!(store.read(9, 0, 100).unwrap(), b"abc12XXXXYY");
        // Appenders meet on this stream: no prewrite for a while.
        assert!(store.prewrite(9, 1).is_none());
        for _ in 0..PREWRITE_COOLDOWN {
            store.append(9, b".", None, Durability::Durable).unwrap();
        }
        assert!(store.prewrite(9, 1).is_some());
        let size = 11 + u64::from(PREWRITE_COOLDOWN);
        assert_eq!(store.size(9).unwrap(), size);
        drop(store);
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.read(9, 0, 11).unwrap(), b"abc12XXXXYY");
        assert_eq!(store.size(9).unwrap(), size);
    }

    /// A body refused (or cut) after some of it was prewritten: its bytes lie beyond the
    /// end, are overwritten by the next append, and never become part of the stream.
    #[test]
    fn an_abandoned_prewrite_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        store.append(10, b"abc", None, Durability::Durable).unwrap();
        let mut pre = store.prewrite(10, 7).unwrap();
        pre.piece(b"garbage");
        drop(pre);
        assert_eq!(store.size(10).unwrap(), 3);
        store.append(10, b"Z", None, Durability::Durable).unwrap();
        assert_eq!(store.read(10, 0, 100).unwrap(), b"abcZ");
        let seg = cseg(&store, 10, 0);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), HEADER + 10);
        // A crash now: the tail beyond the commit goes.
        drop(store);
        let store = LocalStore::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(store.read(10, 0, 100).unwrap(), b"abcZ");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), HEADER + 4);
        // A new prewrite after a dropped one.
        let mut pre = store.prewrite(10, 2).unwrap();
        pre.piece(b"qq");
        drop(pre);
        drop(store);
        let store = LocalStore::open(dir.path(), opts(4)).unwrap();
        assert_eq!(store.size(10).unwrap(), 4);
        assert!(
            store.prewrite(10, 2).is_none(),
            "the segment is full: no prewrite"
        );
        store.append(10, b"w", None, Durability::Durable).unwrap();
        assert_eq!(store.read(10, 0, 100).unwrap(), b"abcZw");
    }

    /// Direct prewrites of bodies ending anywhere in a block, back to back (the next
    /// one starts from the block the last one left) and after page-cache appends (it
    /// reads the block's start back): the stream reads back exactly, in the same process
    /// and after a restart, which drops the zeros padding the last block.
    #[test]
    fn direct_prewrites_append_exactly_wherever_they_end() {
        let (dir, direct, store) = direct_store(20, b"x");
        let mut want = b"x".to_vec();
        let sizes = [
            1,
            4094,
            4095,
            4096,
            4097,
            DIRECT_RUN - 1,
            DIRECT_RUN,
            DIRECT_RUN + 4095,
            3 * DIRECT_RUN + 17,
            (1 << 20) + 123,
            (2 << 20) + 5,
            3,
        ];
        for (i, n) in sizes.into_iter().enumerate() {
            let body: Vec<u8> = (0..n).map(|k| (k * 7 + i * 13 + k / 4093) as u8).collect();
            let mut pre = store.prewrite(20, n).unwrap();
            assert_eq!(pre.direct.is_some(), direct, "body {i}: direct when taken");
            for piece in pieces(&body, i) {
                pre.piece(piece);
            }
            let size = store.append_prewritten(pre, Durability::Durable).unwrap();
            want.extend_from_slice(&body);
            assert_eq!(size, want.len() as u64);
            if i % 3 == 2 {
                store
                    .append(20, b"between", None, Durability::Durable)
                    .unwrap();
                want.extend_from_slice(b"between");
            }
            assert_eq!(store.read(20, 0, 16 << 20).unwrap(), want, "after body {i}");
        }
        let seg = cseg(&store, 20, 0);
        let mut pre = store.prewrite(20, 5).unwrap();
        pre.piece(b"tail!");
        store.append_prewritten(pre, Durability::Durable).unwrap();
        want.extend_from_slice(b"tail!");
        let len = std::fs::metadata(&seg).unwrap().len();
        if direct {
            assert_eq!(
                len,
                (HEADER + want.len() as u64).next_multiple_of(BLOCK),
                "padded"
            );
        }
        drop(store);
        let store = LocalStore::open(dir.path(), direct_opts(1 << 30)).unwrap();
        assert_eq!(store.read(20, 0, 16 << 20).unwrap(), want);
        let len = std::fs::metadata(&seg).unwrap().len();
        assert_eq!(
            len,
            HEADER + want.len() as u64,
            "the padding is dropped on open"
        );
    }

    /// A direct prewrite overtaken after it wrote blocks (another append writes at the
    /// end through the page cache, over the blocks it wrote): its body is written again
    /// after that append; and one dropped after writing blocks leaves nothing visible.
    #[test]
    fn direct_prewrites_overtaken_or_dropped_leave_the_stream_exact() {
        let (dir, direct, store) = direct_store(21, b"abc");
        let body: Vec<u8> = (0..DIRECT_RUN + 5000).map(|k| (k % 251) as u8).collect();
        let mut pre = store.prewrite(21, body.len()).unwrap();
        assert_eq!(pre.direct.is_some(), direct);
        let (first, second) = body.split_at(DIRECT_RUN + 100);
        pre.piece(first);
        store.append(21, b"12", None, Durability::Durable).unwrap();
        pre.piece(second);
        let size = store.append_prewritten(pre, Durability::Durable).unwrap();
        let mut want = b"abc12".to_vec();
        want.extend_from_slice(&body);
        assert_eq!(size, want.len() as u64);
        assert_eq!(store.read(21, 0, 1 << 20).unwrap(), want);

        let dots = [b'.'; PREWRITE_COOLDOWN as usize];
        for dot in dots.chunks(1) {
            store.append(21, dot, None, Durability::Durable).unwrap();
        }
        want.extend_from_slice(&dots);
        let mut pre = store.prewrite(21, body.len()).unwrap();
        pre.piece(&body[..DIRECT_RUN + 300]);
        drop(pre);
        assert_eq!(store.size(21).unwrap(), want.len() as u64);
        store.append(21, b"Z", None, Durability::Durable).unwrap();
        want.push(b'Z');
        assert_eq!(store.read(21, 0, 1 << 20).unwrap(), want);
        drop(store);
        let store = LocalStore::open(dir.path(), direct_opts(1 << 30)).unwrap();
        assert_eq!(store.read(21, 0, 1 << 20).unwrap(), want);
        let seg = cseg(&store, 21, 0);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            HEADER + want.len() as u64
        );
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
