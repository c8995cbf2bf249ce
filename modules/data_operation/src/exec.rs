//! Running a Data Analysis: `DataAnalysis_executeDataOperation`, one bounded step per
//! activity, exactly once.
//!
//! A run of a built-in operation holds the analysis' run lock (a file, so that no other
//! run — another worker, `wendelin analysis run` — cuts or appends beside it) and runs in
//! three steps, never holding the database's write transaction while it computes:
//! 1. a short write transaction claims the Progress Indicator (a serial-checked write)
//!    and, when a refresh was asked for, starts it with the offset and state back to 0;
//! 2. outside any transaction, every output array is cut back to the rows the Progress
//!    Indicator records (rows a crashed or failed run appended after the last committed
//!    offset), at most `max_input_bytes` of new input is read from the recorded offset,
//!    computed, appended to the outputs and synced;
//! 3. a short write transaction checks that the Progress Indicator is still as claimed
//!    and records the new offset, the decoder's state and the outputs' rows.
//!
//! A crash anywhere before the last commit leaves the old offset and rows, and the next
//! run cuts and redoes: outputs are neither duplicated nor lost. While input remains the
//! run queues itself again (serialization tag: the analysis), so a backlog is worked
//! through in bounded steps and never holds a worker. A user Script as the operation may
//! write documents: its run is one write transaction.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use rmpv::ValueRef;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use wendelin_core::activity::{self, Activate};
use wendelin_core::db::{in_transaction, write_tx};
use wendelin_core::document::{self as docs};
use wendelin_core::{
    Call, CoreError, CoreResult, Document, DocumentPatch, Host, MethodOutput, User,
};
use wendelin_data_array::{DataArray, Dtype};
use wendelin_data_stream::msgpack;

use crate::spectrum::{self, Precision, Stft};
use crate::wav;
use crate::{settings, ANALYSIS_LINE, EXECUTE, PROGRESS_INDICATOR, REFRESH_WORKFLOW};

/// A line of an analysis with what it aggregates.
#[derive(Debug, Clone)]
pub struct Line {
    /// The line document; its id is the line's reference.
    pub doc: Document,
    /// Negative: input; positive: output.
    pub quantity: f64,
    /// Parameters (operation parameters, or a derived output's spec).
    pub parameters: Map<String, Value>,
    /// A view of a 2-D array: (axis, index).
    pub view: Option<(usize, u64)>,
    /// The Data Operation, on the operation line.
    pub operation: Option<String>,
    /// The documents aggregated.
    pub aggregates: Vec<Document>,
}

impl Line {
    /// The line's reference (its id).
    pub fn reference(&self) -> &str {
        &self.doc.id
    }

    fn aggregate_of(&self, portal_type: &str) -> Option<&Document> {
        self.aggregates
            .iter()
            .find(|d| d.portal_type == portal_type)
    }

    /// The Data Array of the line, if any.
    pub fn array(&self) -> Option<&Document> {
        self.aggregate_of(wendelin_data_array::PORTAL_TYPE)
    }

    /// The Data Stream of the line, if any.
    pub fn stream(&self) -> Option<&Document> {
        self.aggregate_of(wendelin_data_stream::DATA_STREAM)
    }
}

/// The lines of `analysis` (sub-documents of type Data Analysis Line), in creation order.
pub fn load_lines(
    conn: &mut wendelin_core::db::DbConnection,
    analysis: &Document,
) -> CoreResult<Vec<Line>> {
    let (children, _) = docs::children(conn, analysis.uid, None, 1000, 0)?;
    let mut lines = Vec::new();
    for doc in children
        .into_iter()
        .filter(|d| d.portal_type == ANALYSIS_LINE)
    {
        let props = doc.property_map()?;
        let mut rel = docs::relations_from(conn, doc.uid, None)?;
        let mut aggregates = Vec::new();
        for path in rel.remove("aggregate").unwrap_or_default() {
            aggregates.push(docs::get(conn, &path)?);
        }
        let operation = rel
            .remove("data_operation")
            .and_then(|p| p.into_iter().next());
        let view = match (
            props.get("view_axis").and_then(Value::as_u64),
            props.get("view_index").and_then(Value::as_u64),
        ) {
            (Some(a), Some(i)) => Some((usize::try_from(a).unwrap_or(usize::MAX), i)),
            _ => None,
        };
        lines.push(Line {
            quantity: props.get("quantity").and_then(Value::as_f64).unwrap_or(0.0),
            parameters: props
                .get("parameters")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            view,
            operation,
            aggregates,
            doc,
        });
    }
    Ok(lines)
}

/// What a Progress Indicator records besides its offset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// Rows of each output array (by line reference) as of the offset.
    pub rows: BTreeMap<String, u64>,
    /// Input bytes read but not yet used (a partial header or frame), hex.
    pub carry: String,
    /// How the stream is read: `raw` or `msgpack`, found on the first run.
    pub input_format: Option<String>,
    /// The WAV decoder's state.
    pub decoder: wav::Decoder,
    /// Per derived output, the source length it was computed for (whole-signal outputs).
    pub source_len: BTreeMap<String, u64>,
    /// Total input bytes processed.
    pub processed_bytes: u64,
    /// The last run: seconds it took.
    pub last_run_seconds: f64,
    /// Outputs whose computation failed in the last run, with the error.
    pub errors: BTreeMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> CoreResult<Vec<u8>> {
    (0..s.len() / 2)
        .map(|i| {
            u8::from_str_radix(s.get(2 * i..2 * i + 2).unwrap_or(""), 16)
                .map_err(|_| CoreError::Internal("a Progress Indicator's carry is damaged".into()))
        })
        .collect()
}

/// The output arrays a run writes, each known by its line reference.
struct Outputs<'a> {
    host: &'a dyn Host,
    lines: &'a [Line],
}

impl Outputs<'_> {
    fn line(&self, reference: &str) -> Option<&Line> {
        self.lines
            .iter()
            .find(|l| l.reference() == reference && l.quantity > 0.0)
    }

    fn dir(&self, reference: &str) -> CoreResult<Option<PathBuf>> {
        match self.line(reference).and_then(Line::array) {
            Some(doc) => Ok(Some(wendelin_data_array::array_dir(self.host, doc)?)),
            None => Ok(None),
        }
    }
}

fn missing(dir: &std::path::Path) -> bool {
    !dir.join("zarr.json").is_file()
}

/// Rows of the array in `dir` (0 when not created yet).
fn rows_of(dir: &std::path::Path) -> CoreResult<u64> {
    if missing(dir) {
        return Ok(0);
    }
    Ok(DataArray::with_reader(dir, |a| {
        Ok(a.shape().first().copied().unwrap_or(0))
    })?)
}

/// Where an output array stands before a step appends to it.
enum Prep {
    /// The line has no Data Array.
    NoArray,
    /// The array exists with the dtype and row shape asked.
    Ready(PathBuf),
    /// Its document's dtype/shape were just changed: nothing may be appended in this
    /// run (see [`prepare`]); the run queues itself again.
    Retyped,
}

/// Makes the output array of `line` exist with `dtype` and rows of `inner` shape.
///
/// Arrays are created from their document's properties by whoever uses them first (a
/// viewer too), so the properties must be committed before the array is created: when
/// they differ, this step only changes them, in a transaction of their own (`Retyped`),
/// and the next run creates the array. An array created with other properties while still
/// empty (e.g. by a viewer before the change) is made again.
fn prepare(
    call: &mut Call<'_>,
    line: &Line,
    dtype: &str,
    inner: &[u64],
    description: &str,
) -> CoreResult<Prep> {
    let Some(doc) = line.array() else {
        return Ok(Prep::NoArray);
    };
    let fresh = docs::get(call.conn, &doc.path)?;
    let props = fresh.property_map()?;
    let mut shape = vec![0u64];
    shape.extend_from_slice(inner);
    // The chunk size the line asks for (`chunk_bytes`), declared on the array's document
    // unless it already has a chunk shape (its own or one declared before).
    let chunk_shape: Option<Vec<u64>> = props
        .get("chunk_shape")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let asked = match (line.parameters.get("chunk_bytes"), &chunk_shape) {
        (Some(bytes), None) if !bytes.is_null() => Some(chunk_of(line, dtype, &shape, bytes)?),
        _ => None,
    };
    let declared = props.get("dtype").and_then(Value::as_str) == Some(dtype)
        && props.get("shape") == Some(&json!(shape))
        && asked.is_none();
    if !declared {
        let mut patch = json!({
            "serial": fresh.serial, "dtype": dtype, "shape": shape, "description": description,
        });
        if let Some(chunk) = asked {
            patch["chunk_shape"] = json!(chunk);
        }
        let patch = DocumentPatch::from_json(patch)?;
        let (registry, user) = (call.registry, call.user);
        write_tx(call.conn, |c| {
            docs::update(c, registry, &doc.path, patch, user)
        })?;
        return Ok(Prep::Retyped);
    }
    let dir = wendelin_data_array::array_dir(call.host, &fresh)?;
    if !missing(&dir) {
        let (same, chunks_as_declared, rows) = DataArray::with_reader(&dir, |a| {
            let same = a.dtype().name() == dtype && a.shape()[1..] == shape[1..];
            let chunks = match &chunk_shape {
                Some(c) => *c == a.chunk_shape()?,
                None => true,
            };
            Ok((same, chunks, a.shape().first().copied().unwrap_or(0)))
        })?;
        // An array with rows keeps its chunks whatever the document says now; an empty
        // one is made again with the declared ones.
        if same && (chunks_as_declared || rows > 0) {
            return Ok(Prep::Ready(dir));
        }
        if rows > 0 {
            return Err(CoreError::Invalid(format!(
                "the output /{} holds rows of another dtype or shape than {dtype} {shape:?}: \
                 reprocess the analysis from scratch",
                doc.path
            )));
        }
        std::fs::remove_dir_all(&dir)?;
    }
    wendelin_data_array::ensure(call.host, &fresh)?;
    Ok(Prep::Ready(dir))
}

/// The chunk shape of about `bytes` per chunk for the rows of `shape` (whole rows, the
/// first axis filling the rest), checked against the arrays' limit.
fn chunk_of(line: &Line, dtype: &str, shape: &[u64], bytes: &Value) -> CoreResult<Vec<u64>> {
    let max = wendelin_data_array::MAX_CHUNK_BYTES;
    let Some(bytes) = bytes.as_u64().filter(|b| (1..=max).contains(b)) else {
        return Err(CoreError::Invalid(format!(
            "the line '{}' asks for chunk_bytes {bytes}: give a number of bytes from 1 to {max}",
            line.reference()
        )));
    };
    let elem = Dtype::parse(dtype)?.size() as u64;
    Ok(wendelin_data_array::default_chunk_shape(shape, elem, bytes))
}

thread_local! {
    /// The new chunk files this thread's run appended without syncing them, synced at
    /// once before the run records its offset ([`sync_appended`]).
    static UNSYNCED: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Samples this thread's run appends to a 1-D output array, kept in memory for the
/// outputs derived from it in the same run (an STFT of a channel reads its new samples
/// from here instead of reading back the chunks just written, and while they are being
/// written: see [`Appending`]).
struct Fresh {
    dir: PathBuf,
    /// The first row these samples are (the array's rows before the run's append).
    first: u64,
    dtype: Dtype,
    /// The samples just before `first` (see [`prefix_start`]), read before the
    /// append started: the windows of a derived output that began in earlier runs.
    prefix: Vec<u8>,
    bytes: std::sync::Arc<Vec<u8>>,
}

impl Fresh {
    /// Rows of the array once the run's append is done.
    fn end(&self) -> u64 {
        self.first + self.bytes.len() as u64 / (self.dtype.size().max(1) as u64)
    }
}

/// Samples before a run's new ones kept with them ([`Fresh::prefix`]) for a derived
/// output whose next step is not known from its progress (a whole-signal rfft reads
/// from the array anyway).
const PREFIX_SAMPLES: u64 = 1 << 18;

/// Most samples before a run's new ones kept with them: an STFT's windows left from the
/// previous run (it ends on a chunk boundary of its rows) start a chunk of rows times
/// the hop plus a window before them at most; past this, they are read from the array.
const MAX_PREFIX_SAMPLES: u64 = 1 << 20;

/// STFT window and hop when its line gives none.
const DEFAULT_WINDOW: u64 = 4096;
const DEFAULT_HOP: u64 = 2048;

/// The first sample of the 1-D output `reference` (now `first` samples long) that the
/// outputs derived from it still need: where their next step starts (an STFT's next
/// window, an aggregate's next window), no earlier than [`MAX_PREFIX_SAMPLES`] before
/// `first`; `first` when nothing is derived from it.
fn prefix_start(lines: &[Line], reference: &str, progress: &Progress, first: u64) -> u64 {
    let mut from = first;
    for line in lines.iter().filter(|l| {
        l.quantity > 0.0 && l.parameters.get("of").and_then(Value::as_str) == Some(reference)
    }) {
        let p = &line.parameters;
        let done = progress.rows.get(line.reference()).copied().unwrap_or(0);
        let step = match param_str(p, "derive", "") {
            "stft" => param_u64(p, "hop").unwrap_or(DEFAULT_HOP),
            "aggregate" if !p.contains_key("time") => param_u64(p, "window").unwrap_or(1),
            _ => 0,
        };
        let needed = if step > 0 {
            done.saturating_mul(step)
        } else {
            first.saturating_sub(PREFIX_SAMPLES)
        };
        from = from.min(needed);
    }
    from.max(first.saturating_sub(MAX_PREFIX_SAMPLES))
}

/// Appends of a run still being written on threads of their own (the channels of a WAV
/// decode, while the STFT of one of them is computed from [`FRESH`]): per output line,
/// its rows after the append and the paths left unsynced. All are joined before the run
/// syncs and records its offset; the scope joins them on every other way out too, so no
/// write outlives the run (the next one cuts the arrays back).
type Appending<'scope> = Vec<(String, AppendThread<'scope, std::sync::Arc<Vec<u8>>>)>;

/// An append on a thread of a scope: the array's rows after it and the paths it left
/// unsynced, and the bytes it appended, handed back (an STFT reuses its buffers).
type AppendThread<'scope, B> =
    std::thread::ScopedJoinHandle<'scope, (CoreResult<(u64, Vec<PathBuf>)>, B)>;

/// [`append_rows`] on a thread of `scope` (its arguments owned or borrowed for the
/// scope); [`join_append`] takes its result.
fn spawn_append<'scope, B>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    dir: impl AsRef<std::path::Path> + Send + 'scope,
    dtype: &'static str,
    inner: impl AsRef<[u64]> + Send + 'scope,
    bytes: B,
) -> AppendThread<'scope, B>
where
    B: std::ops::Deref + Send + 'scope,
    B::Target: AsRef<[u8]>,
{
    scope.spawn(move || {
        let mut unsynced = Vec::new();
        let rows = append_listing(
            dir.as_ref(),
            dtype,
            inner.as_ref(),
            (*bytes).as_ref(),
            &mut unsynced,
        );
        (rows.map(|rows| (rows, unsynced)), bytes)
    })
}

/// Waits for an append of [`spawn_append`]: its paths join this thread's unsynced list
/// (the run's one sync); returns the array's rows after it, and the bytes appended.
fn join_append<B>(reference: &str, append: AppendThread<'_, B>) -> CoreResult<(u64, B)> {
    let (appended, bytes) = append
        .join()
        .map_err(|_| CoreError::Internal(format!("the append to '{reference}' panicked")))?;
    let (rows, unsynced) = appended?;
    UNSYNCED.with(|u| u.borrow_mut().extend(unsynced));
    Ok((rows, bytes))
}

/// The first `len` bytes of a buffer kept for reuse: an STFT's batch of rows, handed to
/// the thread that appends it and back.
struct Piece {
    buf: Vec<u8>,
    len: usize,
}

impl std::ops::Deref for Piece {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

thread_local! {
    static FRESH: std::cell::RefCell<Vec<Fresh>> = const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    /// The STFT's two piece buffers and its signal buffer, reused by the thread's next
    /// run: fresh ones cost the kernel's zeroing of every page, each run (6-8 % of a
    /// run's CPU in a profile).
    static STFT_BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>, Vec<f64>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Most bytes of rows in one piece an STFT appends (two such buffers per run: one being
/// computed, one being appended).
const STFT_PIECE_BYTES: usize = 8 << 20;

/// Largest STFT buffers a thread keeps between runs (bytes, all three together).
const KEPT_BUFFER_BYTES: usize = 64 << 20;

/// Makes durable what the run's appends left unsynced: one pass before the offset that
/// counts on those rows is written, instead of two syncs per chunk while appending.
fn sync_appended() -> CoreResult<()> {
    let paths = UNSYNCED.with(|u| std::mem::take(&mut *u.borrow_mut()));
    wendelin_data_array::sync_paths(&paths).map_err(CoreError::from)
}

fn append_rows(dir: &std::path::Path, dtype: &str, inner: &[u64], bytes: &[u8]) -> CoreResult<u64> {
    let mut unsynced = Vec::new();
    let grown = append_listing(dir, dtype, inner, bytes, &mut unsynced);
    UNSYNCED.with(|u| u.borrow_mut().extend(unsynced));
    grown
}

/// [`append_rows`] listing the paths it leaves unsynced in `unsynced` (any thread).
fn append_listing(
    dir: &std::path::Path,
    dtype: &str,
    inner: &[u64],
    bytes: &[u8],
    unsynced: &mut Vec<PathBuf>,
) -> CoreResult<u64> {
    let dtype = Dtype::parse(dtype)?;
    DataArray::with_writer(dir, |a| {
        let row: u64 = inner.iter().product::<u64>() * dtype.size() as u64;
        let n = (bytes.len() as u64).checked_div(row).unwrap_or(0);
        let mut shape = vec![n];
        shape.extend_from_slice(inner);
        let grown = a.append_deferred(dtype, &shape, bytes, unsynced)?;
        Ok(grown[0])
    })
    .map_err(CoreError::from)
}

/// Cuts the array in `dir` back to `rows` rows (what a crashed run appended goes).
fn cut(dir: &std::path::Path, rows: u64) -> CoreResult<()> {
    if missing(dir) {
        return Ok(());
    }
    DataArray::with_writer(dir, |a| {
        if a.shape().first().copied().unwrap_or(0) > rows {
            let mut shape = a.shape().to_vec();
            shape[0] = rows;
            a.resize(&shape)?;
        }
        Ok(())
    })
    .map_err(CoreError::from)
}

fn param_str<'a>(p: &'a Map<String, Value>, name: &str, default: &'a str) -> &'a str {
    p.get(name).and_then(Value::as_str).unwrap_or(default)
}

fn param_u64(p: &Map<String, Value>, name: &str) -> Option<u64> {
    p.get(name).and_then(Value::as_u64)
}

/// The operations computed in Rust: their runs compute outside any transaction.
const BUILT_IN: [&str; 5] = [
    "wav_decode",
    "records_to_columns",
    "rfft",
    "stft",
    "aggregate",
];

/// The run of one analysis (the method `DataAnalysis_executeDataOperation`), which
/// opens its own transactions (`OwnTransactions`): one run of an analysis at a time per
/// data directory (a lock file), then a short transaction that claims the Progress
/// Indicator, the computation outside any transaction, and a short one that records it.
/// A Script as the operation may write documents: its run is one transaction, as is a
/// run invoked from inside a transaction (a script's).
pub fn execute_method(call: &mut Call<'_>) -> CoreResult<MethodOutput> {
    let analysis = call.context.clone();
    if analysis.portal_type != crate::DATA_ANALYSIS {
        return Err(CoreError::BadRequest(format!(
            "/{} is not a Data Analysis",
            analysis.path
        )));
    }
    call.require_writable("run a Data Analysis")?;
    let nested = in_transaction(call.conn);
    let _running = lock_run(call.host, &analysis, nested)?;
    let script = operation_of(call.conn, &analysis)?;
    if script.as_deref().is_some_and(|s| BUILT_IN.contains(&s)) {
        return run(call, &analysis);
    }
    let Call {
        registry,
        user,
        context,
        holder,
        args,
        host,
        writable,
        ..
    } = *call;
    write_tx(call.conn, |conn| {
        run(
            &mut Call {
                registry,
                conn,
                user,
                context,
                holder,
                args,
                host,
                writable,
            },
            &analysis,
        )
    })
}

/// Holds the analysis' run lock (a file under the data directory, released by the
/// system when the process dies) until dropped: a second run of the analysis — another
/// worker, `wendelin analysis run` beside the server — waits for it instead of cutting
/// and appending beside this one. A run invoked inside a transaction does not wait
/// (the running one may be waiting for that transaction's write lock): it fails with a
/// conflict, to be retried.
fn lock_run(
    host: &dyn Host,
    analysis: &Document,
    nested: bool,
) -> CoreResult<Option<std::fs::File>> {
    let Some(data_dir) = host.data_dir() else {
        // No data directory, no arrays: nothing outside the database to protect.
        return Ok(None);
    };
    let path = run_lock_path(data_dir, analysis.uid);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    if !nested {
        file.lock()?;
        return Ok(Some(file));
    }
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(CoreError::Conflict(format!(
            "/{} is being run already; try again once that run ends",
            analysis.path
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Where the run lock of the analysis `uid` lives under the data directory.
fn run_lock_path(data_dir: &std::path::Path, uid: i64) -> std::path::PathBuf {
    data_dir
        .join("data_operation")
        .join("runs")
        .join(format!("{uid}.lock"))
}

/// Removes a deleted analysis' run lock file (the kernel's delete hook; idempotent). A
/// run still holding it keeps its open descriptor and fails when it records (the analysis
/// is gone); uids are never reused, so no later analysis meets the removed file.
pub(crate) fn purge_run_lock(portal: &wendelin_core::Portal, uid: i64) -> CoreResult<()> {
    let Some(data_dir) = portal.data_dir() else {
        return Ok(());
    };
    match std::fs::remove_file(run_lock_path(data_dir, uid)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => Ok(other?),
    }
}

/// The `script_id` of the analysis' Data Operation, when it has one.
fn operation_of(
    conn: &mut wendelin_core::db::DbConnection,
    analysis: &Document,
) -> CoreResult<Option<String>> {
    let lines = load_lines(conn, analysis)?;
    let Some(op_path) = lines.iter().find_map(|l| l.operation.clone()) else {
        return Ok(None);
    };
    let op = docs::get(conn, &op_path)?;
    Ok(op
        .property_map()?
        .get("script_id")
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// What a run claimed: the analysis as of its claim, and the Progress Indicator's serial
/// after it.
struct Claim {
    refresh: String,
    lines: Vec<Line>,
    pi_path: String,
    serial: i64,
    offset: u64,
    progress: Progress,
    op_path: String,
    script: String,
    params: Map<String, Value>,
}

/// The run's first transaction: reads the analysis (None when it is not started) and
/// claims its Progress Indicator (a serial-checked write the last one checks); a refresh
/// asked for starts here, its offset and state back to zero in the same transaction.
fn claim(
    conn: &mut wendelin_core::db::DbConnection,
    registry: &wendelin_core::types::Registry,
    user: &User,
    host: &dyn Host,
    analysis: &Document,
) -> CoreResult<Option<Claim>> {
    let states = docs::workflow_states(conn, analysis.uid)?;
    if states.get("data_analysis_workflow").map(String::as_str) != Some("started") {
        return Ok(None);
    }
    let mut refresh = states
        .get(REFRESH_WORKFLOW)
        .cloned()
        .unwrap_or_else(|| "current".into());
    let lines = load_lines(conn, analysis)?;
    let pi_path = lines
        .iter()
        .find_map(|l| l.aggregate_of(PROGRESS_INDICATOR))
        .map(|d| d.path.clone())
        .ok_or_else(|| {
            CoreError::Invalid(format!("/{} has no Progress Indicator line", analysis.path))
        })?;
    let op_line = lines
        .iter()
        .find(|l| l.operation.is_some())
        .ok_or_else(|| CoreError::Invalid(format!("/{} has no operation line", analysis.path)))?;
    let op_path = op_line.operation.clone().unwrap_or_default();
    let op_props = docs::get(conn, &op_path)?.property_map()?;
    let script = op_props
        .get("script_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut params = op_props
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    params.extend(op_line.parameters.clone());
    let seen = docs::get(conn, &pi_path)?;
    let mut claim = json!({
        "serial": seen.serial,
        "last_run": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    if refresh == "refresh_planned" {
        // From scratch, durably: a run that stops after this commit starts again from 0.
        claim["int_offset_index"] = json!(0);
        claim["state"] = serde_json::to_value(Progress::default())
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        host.fire_in(conn, user, &analysis.path, "start_refresh", &Map::new())?;
        refresh = "refresh_started".into();
    }
    let pi = docs::update(
        conn,
        registry,
        &pi_path,
        DocumentPatch::from_json(claim)?,
        user,
    )?;
    let pi_props = pi.property_map()?;
    let offset = pi_props
        .get("int_offset_index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let progress: Progress = pi_props
        .get("state")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    Ok(Some(Claim {
        refresh,
        lines,
        pi_path,
        serial: pi.serial,
        offset,
        progress,
        op_path,
        script,
        params,
    }))
}

/// Milliseconds spent in each phase of a run, logged at debug level.
struct Lap {
    last: Instant,
    phases: Vec<(&'static str, f64)>,
}

impl Lap {
    fn new() -> Self {
        Lap {
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Adds the time since the last mark to `phase` (phases marked again add up).
    fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        let ms = (now - self.last).as_secs_f64() * 1000.0;
        match self.phases.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += ms,
            None => self.phases.push((phase, ms)),
        }
        self.last = now;
    }
}

impl std::fmt::Display for Lap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, ms)) in self.phases.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={ms:.1}")?;
        }
        Ok(())
    }
}

/// One run: claim (a transaction), compute (none of its own), record (a transaction).
fn run(call: &mut Call<'_>, analysis: &Document) -> CoreResult<MethodOutput> {
    let started = Instant::now();
    let mut lap = Lap::new();
    tracing::debug!(analysis = %analysis.path, "analysis run starts");
    // What a failed run before this one appended is cut below, not synced.
    UNSYNCED.with(|u| u.borrow_mut().clear());
    FRESH.with(|f| f.borrow_mut().clear());
    let (registry, user, host) = (call.registry, call.user, call.host);
    let Some(claimed) = write_tx(call.conn, |c| claim(c, registry, user, host, analysis))? else {
        return Ok(MethodOutput::Json(
            json!({"ran": false, "why": "the analysis is not started"}),
        ));
    };
    lap.mark("claim");
    let Claim {
        refresh,
        lines,
        pi_path,
        serial,
        mut offset,
        mut progress,
        op_path,
        script,
        params,
    } = claimed;
    // Exactly once: nothing past what the committed offset accounts for.
    let outputs = Outputs {
        host: call.host,
        lines: &lines,
    };
    for line in lines.iter().filter(|l| l.quantity > 0.0) {
        if let Some(dir) = outputs.dir(line.reference())? {
            cut(
                &dir,
                progress.rows.get(line.reference()).copied().unwrap_or(0),
            )?;
        }
    }
    lap.mark("cut");
    let budget = settings().max_input_bytes.max(1);
    let before = offset;
    // The outputs' appends may go on in threads of this scope while the outputs derived
    // from them are computed; the scope joins them whatever happens.
    let more = std::thread::scope(|scope| -> CoreResult<bool> {
        let mut appending: Appending<'_> = Vec::new();
        let mut more = match script.as_str() {
            "wav_decode" => wav_decode(
                call,
                &lines,
                &params,
                &mut offset,
                &mut progress,
                budget,
                scope,
                &mut appending,
            )?,
            "records_to_columns" => {
                records_to_columns(call, &lines, &params, &mut offset, &mut progress, budget)?
            }
            "rfft" | "stft" | "aggregate" => {
                let mut spec = params.clone();
                spec.insert("derive".into(), Value::from(script.clone()));
                let out = param_str(&params, "out", "out").to_owned();
                derive(call, &lines, &out, &spec, &mut progress, budget)?
            }
            other => run_script(
                call,
                analysis,
                &lines,
                other,
                &params,
                &mut offset,
                &mut progress,
            )
            .map_err(|e| match e {
                CoreError::NotFound(m) => CoreError::Invalid(format!(
                    "the Data Operation /{op_path} runs '{other}', which is neither a built-in \
                     operation (wav_decode, records_to_columns, rfft, stft, aggregate) nor a \
                     Script found from /{}: {m}",
                    analysis.path
                )),
                e => e,
            })?,
        };
        lap.mark("operation");
        // Outputs computed from other lines, in line order; whole-signal spectra (rfft)
        // last. A spectrum is replaced, not appended: while input is left for a later run
        // (a backlog), the run that catches up computes it once, instead of every run
        // recomputing the whole signal.
        let is_rfft = |l: &&Line| param_str(&l.parameters, "derive", "") == "rfft";
        let derived: Vec<&Line> = lines
            .iter()
            .filter(|l| l.quantity > 0.0 && l.parameters.contains_key("derive"))
            .collect();
        let ordered = derived
            .iter()
            .filter(|l| !is_rfft(l))
            .chain(derived.iter().filter(|l| is_rfft(l)));
        for line in ordered {
            if more && is_rfft(line) {
                continue;
            }
            let spec = line.parameters.clone();
            // A derived output that fails (e.g. an rfft above the memory budget) keeps its
            // error and its recorded rows; the other outputs go on.
            match derive(call, &lines, line.reference(), &spec, &mut progress, budget) {
                Ok(m) => {
                    more |= m;
                    progress.errors.remove(line.reference());
                }
                Err(e @ (CoreError::Invalid(_) | CoreError::BadRequest(_))) => {
                    tracing::warn!(analysis = %analysis.path, output = line.reference(), error = %e, "derived output failed");
                    progress
                        .errors
                        .insert(line.reference().to_owned(), e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        lap.mark("derive");
        for (reference, append) in appending {
            let (rows, _) = join_append(&reference, append)?;
            progress.rows.insert(reference, rows);
        }
        lap.mark("join");
        Ok(more)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    progress.processed_bytes += offset - before;
    progress.last_run_seconds = elapsed;
    let rate = if elapsed > 0.0 {
        (offset - before) as f64 / elapsed
    } else {
        0.0
    };
    sync_appended()?;
    lap.mark("sync");
    FRESH.with(|f| f.borrow_mut().clear());
    let state = serde_json::to_value(&progress).map_err(|e| CoreError::Internal(e.to_string()))?;
    write_tx(call.conn, |c| {
        let fresh = docs::get(c, &pi_path)?;
        if fresh.serial != serial {
            // Someone else wrote the Progress Indicator since the claim: record nothing;
            // the next run cuts what this one appended and does it again.
            return Err(CoreError::Conflict(format!(
                "/{pi_path} changed while /{} ran; its next run does the step again",
                analysis.path
            )));
        }
        let patch = DocumentPatch::from_json(json!({
            "serial": fresh.serial,
            "int_offset_index": offset,
            "state": state,
            "last_run": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "bytes_per_second": rate,
        }))?;
        docs::update(c, registry, &pi_path, patch, user)?;
        if more {
            queue_run(c, user, &analysis.path, 0)?;
        } else if refresh == "refresh_started" {
            host.fire_in(c, user, &analysis.path, "finish_refresh", &Map::new())?;
        }
        Ok(())
    })?;
    lap.mark("record");
    tracing::debug!(analysis = %analysis.path, bytes = offset - before, phases = %lap, "analysis run");
    Ok(MethodOutput::Json(json!({
        "ran": true, "offset": offset, "more": more, "rows": progress.rows,
    })))
}

/// A user Script as the operation (Wendelin's script_id): called on the analysis with
/// one keyword argument per line reference — the path of what the line aggregates (a
/// list when several) — plus `offset` (the Progress Indicator's) and `parameters`. It
/// returns 1/0 (more to do or not) or `{"offset": n, "more": bool}`. Its outputs are
/// cut back at the next run like a built-in's, to the rows they had when it returned.
fn run_script(
    call: &mut Call<'_>,
    analysis: &Document,
    lines: &[Line],
    script: &str,
    params: &Map<String, Value>,
    offset: &mut u64,
    progress: &mut Progress,
) -> CoreResult<bool> {
    let mut args = Map::new();
    for line in lines {
        let paths: Vec<Value> = line
            .aggregates
            .iter()
            .map(|d| Value::from(d.path.clone()))
            .collect();
        let v = match paths.len() {
            0 => continue,
            1 => paths.into_iter().next().unwrap_or(Value::Null),
            _ => Value::Array(paths),
        };
        args.insert(line.reference().to_owned(), v);
    }
    args.insert("offset".into(), Value::from(*offset));
    args.insert("parameters".into(), Value::Object(params.clone()));
    let out = call.invoke(&analysis.path, script, &args)?;
    let value = match out {
        MethodOutput::Json(v) => v,
        MethodOutput::Html(_) | MethodOutput::Text(_) => Value::Null,
    };
    let more = match &value {
        Value::Object(o) => {
            if let Some(n) = o.get("offset").and_then(Value::as_u64) {
                *offset = n;
            }
            o.get("more").and_then(Value::as_bool).unwrap_or(false)
        }
        Value::Bool(b) => *b,
        v => v.as_i64().is_some_and(|n| n != 0),
    };
    for line in lines.iter().filter(|l| l.quantity > 0.0) {
        if let Some(doc) = line.array() {
            let dir = wendelin_data_array::array_dir(call.host, doc)?;
            progress
                .rows
                .insert(line.reference().to_owned(), rows_of(&dir)?);
        }
    }
    Ok(more)
}

/// Queues a run of the analysis at `path` as `user`, unless one is queued already.
pub fn queue_run(
    conn: &mut wendelin_core::db::DbConnection,
    user: &User,
    path: &str,
    delay_seconds: i64,
) -> CoreResult<bool> {
    if activity::is_queued(conn, path, EXECUTE)? {
        return Ok(false);
    }
    activity::activate(
        conn,
        user.login.as_deref().unwrap_or(""),
        path,
        EXECUTE,
        &Map::new(),
        &Activate {
            tag: Some(format!("data_analysis/{}", path.trim_matches('/'))),
            delay_seconds,
            max_attempts: 10,
            ..Activate::default()
        },
    )?;
    Ok(true)
}

/// The input stream line (the first input with a Data Stream).
fn input_stream(lines: &[Line]) -> CoreResult<&Document> {
    lines
        .iter()
        .filter(|l| l.quantity < 0.0)
        .find_map(Line::stream)
        .ok_or_else(|| {
            CoreError::Invalid("the analysis has no input line with a Data Stream".into())
        })
}

/// New payload bytes from the stream: raw bytes as they are, or the `field` of each
/// fluentd record (`[time, {field: bytes}]`). Returns the payload and the new offset
/// (always at a record boundary).
fn read_payload(
    host: &dyn Host,
    stream: &Document,
    offset: u64,
    budget: u64,
    progress: &mut Progress,
    field: &str,
) -> CoreResult<(Vec<u8>, u64, bool)> {
    let size = wendelin_data_stream::size_of(host, stream)?;
    if offset >= size {
        return Ok((Vec::new(), offset, false));
    }
    let max_read = wendelin_data_stream::settings().max_read_bytes;
    let mut len = budget.min(size - offset).min(max_read);
    let format = match progress.input_format.clone() {
        Some(f) => f,
        None => {
            let first = wendelin_data_stream::read_checked(host, stream, 0, 1)?;
            let f = if first.first() == Some(&b'R') {
                "raw"
            } else {
                "msgpack"
            };
            progress.input_format = Some(f.into());
            f.into()
        }
    };
    if format == "raw" {
        let bytes = wendelin_data_stream::read_checked(host, stream, offset, len)?;
        let end = offset + bytes.len() as u64;
        return Ok((bytes, end, end < size));
    }
    loop {
        let bytes = wendelin_data_stream::read_checked(host, stream, offset, len)?;
        let (values, used) = msgpack::decode_prefix(&bytes).map_err(CoreError::BadRequest)?;
        if used == 0 && !bytes.is_empty() {
            // One record longer than the budget: read it whole (within the stream's limit).
            if len < size - offset && len < max_read {
                len = (len * 2).min(size - offset).min(max_read);
                continue;
            }
            if offset + (bytes.len() as u64) < size {
                return Err(CoreError::Invalid(format!(
                    "a record of /{} at offset {offset} is longer than [data_stream] max_read_bytes",
                    stream.path
                )));
            }
            return Ok((Vec::new(), offset, false));
        }
        let mut payload = Vec::with_capacity(bytes.len());
        for v in &values {
            if let Some(data) = record_field(v, field) {
                payload.extend_from_slice(data);
            }
        }
        let end = offset + used as u64;
        return Ok((payload, end, end < size));
    }
}

/// The record of a fluentd entry `[time, record]` (or a bare map).
fn record_of<'a, 'b>(v: &'a ValueRef<'b>) -> Option<&'a Vec<(ValueRef<'b>, ValueRef<'b>)>> {
    match v {
        ValueRef::Array(a) if a.len() == 2 => match &a[1] {
            ValueRef::Map(m) => Some(m),
            _ => None,
        },
        ValueRef::Map(m) => Some(m),
        _ => None,
    }
}

fn record_field<'a>(v: &'a ValueRef<'a>, field: &str) -> Option<&'a [u8]> {
    record_of(v)?.iter().find_map(|(k, val)| match (k, val) {
        (ValueRef::String(k), ValueRef::Binary(b)) if k.as_str() == Some(field) => Some(*b),
        (ValueRef::String(k), ValueRef::String(s)) if k.as_str() == Some(field) => {
            Some(s.as_bytes())
        }
        _ => None,
    })
}

/// `wav_decode`: the stream's WAV samples into one array per channel (`channel_<n>`
/// lines) and/or one frames × channels array (a `frames` line). The channels are
/// appended on threads of `scope` (listed in `appending`, their rows recorded when the
/// run joins them), their samples kept in [`FRESH`] for the outputs derived from them.
#[allow(clippy::too_many_arguments)]
fn wav_decode<'scope>(
    call: &mut Call<'_>,
    lines: &[Line],
    params: &Map<String, Value>,
    offset: &mut u64,
    progress: &mut Progress,
    budget: u64,
    scope: &'scope std::thread::Scope<'scope, '_>,
    appending: &mut Appending<'scope>,
) -> CoreResult<bool> {
    let stream = input_stream(lines)?.clone();
    let field = param_str(params, "field", "data").to_owned();
    let (payload, end, more) = read_payload(call.host, &stream, *offset, budget, progress, &field)?;
    if end == *offset {
        return Ok(false);
    }
    let mut input = unhex(&progress.carry)?;
    if input.is_empty() {
        input = payload;
    } else {
        input.extend_from_slice(&payload);
        drop(payload);
    }
    let mut decoder = progress.decoder.clone();
    let mut decoded = decoder
        .step(&input)
        .map_err(|e| CoreError::Invalid(format!("/{} at offset {}: {e}", stream.path, *offset)))?;
    if let Some(w) = decoder.wav {
        let description = format!(
            "WAV {} Hz, {}, {} channels, from /{}",
            w.sample_rate,
            w.format.name(),
            w.channels,
            stream.path
        );
        let dtype = w.format.dtype();
        let ch = u64::from(w.channels);
        // Every output ready before anything is appended.
        let mut targets: Vec<(String, PathBuf, Vec<u64>)> = Vec::new();
        let mut retyped = false;
        for line in lines.iter().filter(|l| l.quantity > 0.0) {
            let reference = line.reference();
            let (inner, desc) = if reference == "frames" {
                (vec![ch], description.clone())
            } else if let Some(c) = reference
                .strip_prefix("channel_")
                .and_then(|c| c.parse::<u64>().ok())
                .filter(|c| *c < ch)
            {
                (Vec::new(), format!("{description}: channel {c}"))
            } else {
                continue;
            };
            match prepare(call, line, dtype, &inner, &desc)? {
                Prep::Ready(dir) => targets.push((reference.to_owned(), dir, inner)),
                Prep::Retyped => retyped = true,
                Prep::NoArray => {}
            }
        }
        if retyped {
            // The arrays' properties commit first; the samples come with the next run.
            return Ok(true);
        }
        for (reference, dir, inner) in targets.iter().filter(|t| t.0 == "frames") {
            let size = w.format.out_bytes();
            let n = usize::try_from(decoded.frames).unwrap_or(0);
            let mut interleaved = Vec::with_capacity(n * size * decoded.channels.len());
            for f in 0..n {
                for c in &decoded.channels {
                    interleaved.extend_from_slice(&c[f * size..(f + 1) * size]);
                }
            }
            let rows = append_rows(dir, dtype, inner, &interleaved)?;
            progress.rows.insert(reference.clone(), rows);
        }
        let dtype_of = Dtype::parse(dtype)?;
        let channels: Vec<std::sync::Arc<Vec<u8>>> = std::mem::take(&mut decoded.channels)
            .into_iter()
            .map(std::sync::Arc::new)
            .collect();
        for (reference, dir, inner) in targets.into_iter().filter(|t| t.0 != "frames") {
            let c = reference
                .strip_prefix("channel_")
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(0);
            let samples = channels.get(c).cloned().unwrap_or_default();
            // The samples before the new ones that a derived output may still need, read
            // now: the append below holds the array's lock until it is done.
            let first = rows_of(&dir)?;
            let from = prefix_start(lines, &reference, progress, first);
            let prefix = if from < first {
                DataArray::with_reader(&dir, |a| a.read_box(std::slice::from_ref(&(from..first))))?
            } else {
                Vec::new()
            };
            FRESH.with(|f| {
                f.borrow_mut().push(Fresh {
                    dir: dir.clone(),
                    first,
                    dtype: dtype_of,
                    prefix,
                    bytes: samples.clone(),
                });
            });
            appending.push((reference, spawn_append(scope, dir, dtype, inner, samples)));
        }
    }
    progress.decoder = decoder;
    progress.carry = hex(&input[decoded.used..]);
    *offset = end;
    Ok(more)
}

/// `records_to_columns`: fluentd records (msgpack `[time, record]`) into one float64
/// array per output line named after a numeric field, and an int64 nanosecond
/// `timestamp` array.
fn records_to_columns(
    call: &mut Call<'_>,
    lines: &[Line],
    _params: &Map<String, Value>,
    offset: &mut u64,
    progress: &mut Progress,
    budget: u64,
) -> CoreResult<bool> {
    let stream = input_stream(lines)?.clone();
    let size = wendelin_data_stream::size_of(call.host, &stream)?;
    if *offset >= size {
        return Ok(false);
    }
    let len = budget
        .min(size - *offset)
        .min(wendelin_data_stream::settings().max_read_bytes);
    let bytes = wendelin_data_stream::read_checked(call.host, &stream, *offset, len)?;
    let (values, used) = msgpack::decode_prefix(&bytes).map_err(CoreError::BadRequest)?;
    let fields: Vec<&Line> = lines
        .iter()
        .filter(|l| l.quantity > 0.0 && l.array().is_some() && !l.parameters.contains_key("derive"))
        .collect();
    let mut columns: Vec<Vec<u8>> = vec![Vec::new(); fields.len()];
    for v in &values {
        let time = match v {
            ValueRef::Array(a) if a.len() == 2 => time_ns(&a[0]),
            _ => None,
        };
        let record = record_of(v);
        for (line, col) in fields.iter().zip(columns.iter_mut()) {
            if line.reference() == "timestamp" {
                col.extend_from_slice(&time.unwrap_or(i64::MIN).to_le_bytes());
                continue;
            }
            let value = record
                .and_then(|r| {
                    r.iter().find_map(|(k, val)| match k {
                        ValueRef::String(k) if k.as_str() == Some(line.reference()) => number(val),
                        _ => None,
                    })
                })
                .unwrap_or(f64::NAN);
            col.extend_from_slice(&value.to_le_bytes());
        }
    }
    let mut targets = Vec::new();
    let mut retyped = false;
    for (line, col) in fields.iter().zip(&columns) {
        let dtype = if line.reference() == "timestamp" {
            "int64"
        } else {
            "float64"
        };
        let desc = format!("{} of /{}", line.reference(), stream.path);
        match prepare(call, line, dtype, &[], &desc)? {
            Prep::Ready(dir) => targets.push((line.reference().to_owned(), dir, dtype, col)),
            Prep::Retyped => retyped = true,
            Prep::NoArray => {}
        }
    }
    if retyped {
        return Ok(true);
    }
    for (reference, dir, dtype, col) in targets {
        let rows = append_rows(&dir, dtype, &[], col)?;
        progress.rows.insert(reference, rows);
    }
    *offset += used as u64;
    Ok(*offset < size && used > 0)
}

fn number(v: &ValueRef<'_>) -> Option<f64> {
    match v {
        ValueRef::Integer(i) => i.as_f64(),
        ValueRef::F32(f) => Some(f64::from(*f)),
        ValueRef::F64(f) => Some(*f),
        ValueRef::Boolean(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// Nanoseconds since the epoch of a fluentd time (EventTime, integer or float seconds).
fn time_ns(v: &ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Ext(0, d) if d.len() == 8 => {
            let s = i64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
            let n = i64::from(u32::from_be_bytes([d[4], d[5], d[6], d[7]]));
            Some(s * 1_000_000_000 + n)
        }
        ValueRef::Integer(i) => i.as_i64().map(|s| s.saturating_mul(1_000_000_000)),
        ValueRef::F64(f) => Some((f * 1e9).round() as i64),
        ValueRef::F32(f) => Some((f64::from(*f) * 1e9).round() as i64),
        _ => None,
    }
}

/// A 1-D signal read from a line's array (or the view of a 2-D one).
struct Signal {
    dir: PathBuf,
    view: Option<(usize, u64)>,
}

impl Signal {
    fn of(host: &dyn Host, lines: &[Line], reference: &str) -> CoreResult<Option<Signal>> {
        let line = lines
            .iter()
            .find(|l| l.reference() == reference)
            .ok_or_else(|| CoreError::Invalid(format!("no line '{reference}' to compute from")))?;
        let Some(doc) = line.array() else {
            return Ok(None);
        };
        let dir = wendelin_data_array::array_dir(host, doc)?;
        if missing(&dir) {
            return Ok(None);
        }
        Ok(Some(Signal {
            dir,
            view: line.view,
        }))
    }

    /// This run's samples of the signal, when it appends them (see [`FRESH`]).
    fn fresh<T>(&self, f: impl FnOnce(&Fresh) -> T) -> Option<T> {
        if self.view.is_some() {
            return None;
        }
        FRESH.with(|fresh| fresh.borrow().iter().find(|x| x.dir == self.dir).map(f))
    }

    fn len(&self) -> CoreResult<u64> {
        // Known without waiting for the append still writing them.
        if let Some(n) = self.fresh(Fresh::end) {
            return Ok(n);
        }
        Ok(DataArray::with_reader(&self.dir, |a| {
            let shape = a.shape();
            Ok(match self.view {
                Some((0, _)) => shape.get(1).copied().unwrap_or(0),
                _ => shape.first().copied().unwrap_or(0),
            })
        })?)
    }

    /// Bytes of one sample.
    fn sample_size(&self) -> CoreResult<u64> {
        if let Some(n) = self.fresh(|f| f.dtype.size() as u64) {
            return Ok(n);
        }
        Ok(DataArray::with_reader(&self.dir, |a| {
            Ok(a.dtype().size() as u64)
        })?)
    }

    /// Samples `[start, end)` as f64.
    fn read(&self, start: u64, end: u64) -> CoreResult<Vec<f64>> {
        let mut out = Vec::new();
        self.read_into(start, end, &mut out)?;
        Ok(out)
    }

    /// Samples `[start, end)` as f64 into `out` (cleared first): those this run appends
    /// and the ones just before them from memory ([`FRESH`]), the others from the array.
    fn read_into(&self, start: u64, end: u64, out: &mut Vec<f64>) -> CoreResult<()> {
        out.clear();
        let from_memory = self.fresh(|fresh| {
            let size = fresh.dtype.size().max(1) as u64;
            let held_before = fresh.prefix.len() as u64 / size;
            let base = fresh.first - held_before;
            // Past the run's samples, or wholly before what memory holds: from the array.
            if end > fresh.end() || start > end || end <= base {
                return None;
            }
            if start < base {
                if let Err(e) = self.read_stored(start, base, out) {
                    return Some(Err(e));
                }
            }
            out.reserve(usize::try_from(end - start.max(base)).unwrap_or(0));
            // [start, end) ∩ [base, first): from the prefix; ∩ [first, end): from the run's.
            let (a, b) = (start.max(base), end.min(fresh.first));
            if a < b {
                let at = usize::try_from((a - base) * size).ok()?;
                let to = usize::try_from((b - base) * size).ok()?;
                fresh.dtype.extend_f64(fresh.prefix.get(at..to)?, out);
            }
            let a = start.max(fresh.first);
            if a < end {
                let at = usize::try_from((a - fresh.first) * size).ok()?;
                let to = usize::try_from((end - fresh.first) * size).ok()?;
                fresh.dtype.extend_f64(fresh.bytes.get(at..to)?, out);
            }
            Some(Ok(()))
        });
        match from_memory.flatten() {
            Some(done) => done,
            None => {
                out.clear();
                self.read_stored(start, end, out)
            }
        }
    }

    /// Samples `[start, end)` as f64, read from the array, appended to `out`.
    fn read_stored(&self, start: u64, end: u64, out: &mut Vec<f64>) -> CoreResult<()> {
        let view = self.view;
        Ok(DataArray::with_reader(&self.dir, |a| {
            let shape = a.shape().to_vec();
            let ranges = match (view, shape.len()) {
                (None, 1) => std::iter::once(start..end).collect(),
                (Some((1, i)), 2) => vec![start..end, i..i + 1],
                (Some((0, i)), 2) => vec![i..i + 1, start..end],
                (v, n) => {
                    return Err(wendelin_data_array::ArrayError::BadRequest(format!(
                        "a signal is a 1-D array or a view (axis 0 or 1) of a 2-D one, \
                         not a {n}-D array with view {v:?}"
                    )))
                }
            };
            let dtype: Dtype = a.dtype();
            if dtype.is_complex() {
                return Err(wendelin_data_array::ArrayError::BadRequest(
                    "complex signals are not supported".into(),
                ));
            }
            let bytes = a.read_box(&ranges)?;
            out.reserve(bytes.len() / dtype.size());
            dtype.extend_f64(&bytes, out);
            Ok(())
        })?)
    }
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An output computed from another line's signal (`derive`: rfft, stft or aggregate).
/// Returns whether more remains to compute.
fn derive(
    call: &mut Call<'_>,
    lines: &[Line],
    out: &str,
    spec: &Map<String, Value>,
    progress: &mut Progress,
    budget: u64,
) -> CoreResult<bool> {
    let kind = param_str(spec, "derive", "");
    let of = param_str(spec, "of", "in").to_owned();
    let line = lines
        .iter()
        .find(|l| l.reference() == out && l.quantity > 0.0)
        .ok_or_else(|| CoreError::Invalid(format!("no output line '{out}'")))?
        .clone();
    let Some(signal) = Signal::of(call.host, lines, &of)? else {
        return Ok(false);
    };
    let n = signal.len()?;
    let done = progress.rows.get(out).copied().unwrap_or(0);
    let max_samples = (budget / 8).max(1);
    match kind {
        "rfft" => {
            let intact = match line.array() {
                Some(doc) => {
                    rows_of(&wendelin_data_array::array_dir(call.host, doc)?)?
                        == progress.rows.get(out).copied().unwrap_or(0)
                }
                None => true,
            };
            if (progress.source_len.get(out) == Some(&n) && intact) || n == 0 {
                return Ok(false);
            }
            // Input, transform and output: about three f64 copies of the signal.
            let need = n.saturating_mul(8 * 3);
            let limit = settings().memory_budget;
            if need > limit {
                return Err(CoreError::Invalid(format!(
                    "rfft of {n} samples needs about {need} bytes, more than [data_operation] \
                     memory_budget ({limit}): use stft for long signals"
                )));
            }
            let dir = match prepare(call, &line, "float64", &[], &format!("|rfft| of {of}"))? {
                Prep::Ready(dir) => dir,
                Prep::Retyped => return Ok(true),
                Prep::NoArray => return Ok(false),
            };
            let x = signal.read(0, n)?;
            let spectrum = spectrum::rfft_magnitude(&x);
            drop(x);
            cut(&dir, 0)?;
            let rows = append_rows(&dir, "float64", &[], &f64_bytes(&spectrum))?;
            progress.rows.insert(out.to_owned(), rows);
            progress.source_len.insert(out.to_owned(), n);
            Ok(false)
        }
        "stft" => {
            let s = Stft {
                window: usize::try_from(param_u64(spec, "window").unwrap_or(DEFAULT_WINDOW))
                    .unwrap_or(0),
                hop: usize::try_from(param_u64(spec, "hop").unwrap_or(DEFAULT_HOP)).unwrap_or(0),
                window_fn: serde_json::from_value(
                    spec.get("window_fn").cloned().unwrap_or(json!("hann")),
                )
                .map_err(|e| {
                    CoreError::Invalid(format!("stft window_fn: {e} (hann, hamming, rectangular)"))
                })?,
                scale: serde_json::from_value(
                    spec.get("scale").cloned().unwrap_or(json!("magnitude")),
                )
                .map_err(|e| CoreError::Invalid(format!("stft scale: {e} (magnitude, power)")))?,
            };
            s.check().map_err(CoreError::Invalid)?;
            let precision: Precision =
                serde_json::from_value(spec.get("dtype").cloned().unwrap_or(json!("float64")))
                    .map_err(|e| {
                        CoreError::Invalid(format!("stft dtype: {e} (float64, float32)"))
                    })?;
            let dtype = precision.dtype();
            let (w, h) = (s.window as u64, s.hop as u64);
            let start = done * h;
            if start + w > n {
                return Ok(false);
            }
            // Whole windows of at most the budget of input samples (at least one), in
            // batches of at most `max_samples` (an f64 copy of each batch's signal and
            // its rows in memory, not the whole run's).
            let per_run = (budget / signal.sample_size()?).max(max_samples);
            let windows_in = |samples: u64| (samples.saturating_sub(w) / h + 1).max(1);
            let avail = (n - start - w) / h + 1;
            let mut count = windows_in(per_run).min(avail);
            let batch = windows_in(max_samples);
            let bins = s.bins() as u64;
            let desc = format!(
                "stft of {of}: window {w}, hop {h}, {:?}, {:?}",
                s.window_fn, s.scale
            );
            let dir = match prepare(call, &line, dtype, &[bins], &desc)? {
                Prep::Ready(dir) => dir,
                Prep::Retyped => return Ok(true),
                Prep::NoArray => return Ok(false),
            };
            // A run of many rows ends on a chunk boundary, the rest left to the next run
            // (queued at once): its last chunk is then a new file, never rewritten (a
            // rewrite reads it back, writes it again and syncs it before its rename).
            let chunk = DataArray::with_reader(&dir, |a| {
                Ok(a.chunk_shape()?.first().copied().unwrap_or(1))
            })?
            .max(1);
            let aligned = (done + count) / chunk * chunk;
            if count >= 2 * chunk && aligned > done {
                count = aligned - done;
            }
            let threads = spectrum::threads();
            let row = usize::try_from(bins)
                .unwrap_or(usize::MAX)
                .saturating_mul(precision.size());
            // Rows are computed in batches (at most `batch` windows, and at most
            // STFT_PIECE_BYTES of rows) and appended in pieces that end on chunk
            // boundaries, each on a thread while the next piece is computed (the append,
            // written straight to the device, had taken as long as the FFTs, one after
            // the other): no chunk is written twice, but the first when the run starts
            // inside one. Two buffers of one piece each, whatever the run's size: the
            // memory does not grow with [data_operation] max_input_bytes. With chunks
            // larger than a piece, the run's rows are appended at once, at the end.
            let batch = batch
                .min(u64::try_from(STFT_PIECE_BYTES / row.max(1)).unwrap_or(u64::MAX))
                .max(1);
            let pipelined = batch >= chunk;
            let piece_rows = if pipelined {
                batch / chunk * chunk
            } else {
                count
            };
            let (first, second, mut x) =
                STFT_BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
            let computed = std::thread::scope(|scope| -> CoreResult<(u64, Vec<u8>, Vec<u8>)> {
                // Appends run one at a time, in order.
                let mut appending: Option<AppendThread<'_, Piece>> = None;
                let (mut cur, mut spare) = (first, second);
                let mut total = 0;
                let mut made = 0;
                let mut lap = Lap::new();
                while made < count {
                    let into_chunk = (done + made) % chunk;
                    let n = if pipelined && into_chunk > 0 {
                        chunk - into_chunk
                    } else {
                        piece_rows
                    }
                    .min(count - made);
                    let len = usize::try_from(n).unwrap_or(0) * row;
                    if cur.len() < len {
                        // Every byte of cur[..len] is written by windows_into below.
                        cur.resize(len, 0);
                    }
                    let mut at = 0;
                    while at < n {
                        let k = batch.min(n - at);
                        let from = start + (made + at) * h;
                        signal.read_into(from, from + (k - 1) * h + w, &mut x)?;
                        lap.mark("read");
                        let rows = usize::try_from(at).unwrap_or(0) * row
                            ..usize::try_from(at + k).unwrap_or(0) * row;
                        s.windows_into(&x, threads, precision, &mut cur[rows]);
                        lap.mark("fft");
                        at += k;
                    }
                    made += n;
                    if let Some(previous) = appending.take() {
                        let (rows, piece) = join_append(out, previous)?;
                        total = rows;
                        spare = piece.buf;
                    }
                    lap.mark("wait");
                    let piece = Piece {
                        buf: std::mem::replace(&mut cur, std::mem::take(&mut spare)),
                        len,
                    };
                    appending = Some(spawn_append(scope, &dir, dtype, [bins], piece));
                }
                if let Some(last) = appending.take() {
                    let (rows, piece) = join_append(out, last)?;
                    total = rows;
                    spare = piece.buf;
                }
                lap.mark("wait");
                tracing::debug!(output = out, rows = count, phases = %lap, "stft");
                Ok((total, cur, spare))
            });
            let (total, cur, spare) = computed?;
            if cur.capacity() + spare.capacity() + x.capacity() * 8 <= KEPT_BUFFER_BYTES {
                STFT_BUFFERS.with(|b| *b.borrow_mut() = (cur, spare, x));
            }
            progress.rows.insert(out.to_owned(), total);
            Ok(count < avail)
        }
        "aggregate" if spec.contains_key("time") => {
            aggregate_by_time(call, lines, &line, &signal, spec, progress, max_samples)
        }
        "aggregate" => {
            let w = param_u64(spec, "window").unwrap_or(1).max(1);
            let how = param_str(spec, "function", "mean").to_owned();
            let start = done * w;
            if start + w > n {
                return Ok(false);
            }
            let avail = (n - start) / w;
            let count = (max_samples / w).max(1).min(avail);
            let dir = match prepare(
                call,
                &line,
                "float64",
                &[],
                &format!("{how} of {of} per {w} samples"),
            )? {
                Prep::Ready(dir) => dir,
                Prep::Retyped => return Ok(true),
                Prep::NoArray => return Ok(false),
            };
            let x = signal.read(start, start + count * w)?;
            let mut vals = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
            for chunk in x.chunks_exact(usize::try_from(w).unwrap_or(1)) {
                vals.push(match how.as_str() {
                    "mean" => chunk.iter().sum::<f64>() / chunk.len() as f64,
                    "sum" => chunk.iter().sum(),
                    "min" => chunk.iter().copied().fold(f64::INFINITY, f64::min),
                    "max" => chunk.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    "count" => chunk.len() as f64,
                    other => {
                        return Err(CoreError::Invalid(format!(
                            "aggregate function '{other}' is unknown (mean, sum, min, max, count)"
                        )))
                    }
                });
            }
            let total = append_rows(&dir, "float64", &[], &f64_bytes(&vals))?;
            progress.rows.insert(out.to_owned(), total);
            Ok(count < avail)
        }
        other => Err(CoreError::Invalid(format!(
            "output '{out}': derive '{other}' is unknown (rfft, stft, aggregate)"
        ))),
    }
}

fn reduce(how: &str, x: &[f64]) -> CoreResult<f64> {
    Ok(match how {
        "mean" => x.iter().sum::<f64>() / x.len().max(1) as f64,
        "sum" => x.iter().sum(),
        "min" => x.iter().copied().fold(f64::INFINITY, f64::min),
        "max" => x.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "count" => x.len() as f64,
        other => {
            return Err(CoreError::Invalid(format!(
                "aggregate function '{other}' is unknown (mean, sum, min, max, count)"
            )))
        }
    })
}

/// `aggregate` per window of time: `time` names the line of int64 nanosecond timestamps
/// (as `records_to_columns` writes), `seconds` the window. Output rows `[window start in
/// seconds, value]`, one per window once a later sample shows it complete; the samples
/// of the open window are read again by the next run.
fn aggregate_by_time(
    call: &mut Call<'_>,
    lines: &[Line],
    line: &Line,
    signal: &Signal,
    spec: &Map<String, Value>,
    progress: &mut Progress,
    max_samples: u64,
) -> CoreResult<bool> {
    let out = line.reference();
    let of = param_str(spec, "of", "in");
    let how = param_str(spec, "function", "mean").to_owned();
    let period = spec
        .get("seconds")
        .and_then(Value::as_f64)
        .filter(|p| *p > 0.0)
        .ok_or_else(|| {
            CoreError::Invalid(format!("aggregate of '{out}' by time needs seconds > 0"))
        })?;
    let time_ref = param_str(spec, "time", "timestamp");
    let Some(times) = Signal::of(call.host, lines, time_ref)? else {
        return Ok(false);
    };
    let n = signal.len()?.min(times.len()?);
    let from = progress.source_len.get(out).copied().unwrap_or(0);
    if from >= n {
        return Ok(false);
    }
    let to = n.min(from + max_samples);
    let desc = format!("{how} of {of} per {period} s of {time_ref}: [start s, value]");
    let dir = match prepare(call, line, "float64", &[2], &desc)? {
        Prep::Ready(dir) => dir,
        Prep::Retyped => return Ok(true),
        Prep::NoArray => return Ok(false),
    };
    let x = signal.read(from, to)?;
    let t = times.read(from, to)?;
    let mut rows: Vec<f64> = Vec::new();
    let mut start = 0usize;
    let window = |ns: f64| (ns / 1e9 / period).floor();
    for i in 1..x.len() {
        if window(t[i]) != window(t[start]) {
            rows.push(window(t[start]) * period);
            rows.push(reduce(&how, &x[start..i])?);
            start = i;
        }
    }
    if rows.is_empty() && to < n {
        return Err(CoreError::Invalid(format!(
            "a window of '{out}' holds more than {max_samples} samples: raise \
             [data_operation] max_input_bytes or shorten the window"
        )));
    }
    let total = append_rows(&dir, "float64", &[2], &f64_bytes(&rows))?;
    progress.rows.insert(out.to_owned(), total);
    progress
        .source_len
        .insert(out.to_owned(), from + start as u64);
    Ok(to < n && !rows.is_empty())
}

/// Registry-free helper for the alarm: whether `doc` is in `state` of `workflow`.
pub fn in_state(
    conn: &mut wendelin_core::db::DbConnection,
    doc: &Document,
    workflow: &str,
    state: &str,
) -> CoreResult<bool> {
    Ok(docs::workflow_states(conn, doc.uid)?
        .get(workflow)
        .map(String::as_str)
        == Some(state))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wendelin_data_array::{Codec, CreateOptions};

    #[test]
    fn a_view_reads_one_column_of_a_2d_array() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let options = CreateOptions {
            dtype: Dtype::I16,
            shape: vec![0, 3],
            chunk_shape: Some(vec![4, 3]),
            shard_shape: None,
            codec: Codec::None,
            fill_value: None,
            dimension_names: None,
        };
        DataArray::create(&dir, &options).unwrap();
        let rows: Vec<i16> = (0..30).collect();
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(append_rows(&dir, "int16", &[3], &bytes).unwrap(), 10);
        let column = Signal {
            dir: dir.clone(),
            view: Some((1, 2)),
        };
        assert_eq!(column.len().unwrap(), 10);
        assert_eq!(column.read(3, 6).unwrap(), vec![11.0, 14.0, 17.0]);
        let row = Signal {
            dir: dir.clone(),
            view: Some((0, 1)),
        };
        assert_eq!(row.len().unwrap(), 3);
        assert_eq!(row.read(0, 3).unwrap(), vec![3.0, 4.0, 5.0]);
        // A 2-D array without a view is not a signal.
        assert!(Signal {
            dir: dir.clone(),
            view: None
        }
        .read(0, 1)
        .is_err());
        // Appending another dtype is refused, not reinterpreted.
        assert!(append_rows(&dir, "float64", &[3], &[0; 24]).is_err());
        // Cutting back drops the rows a crashed run appended.
        cut(&dir, 4).unwrap();
        assert_eq!(rows_of(&dir).unwrap(), 4);
    }

    /// A run's signal reads come from memory where it holds them (the samples it is
    /// appending and a prefix before them) and from the array elsewhere, whatever the
    /// range: wholly before the prefix (an STFT catching up from far behind: this
    /// range once overflowed a capacity computation and panicked the worker), across
    /// array, prefix and new samples, or inside the new ones. The new samples are not
    /// in the array here, so a read that went to the array for them would fail.
    #[test]
    fn a_signal_reads_any_range_across_the_array_and_the_runs_samples() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let options = CreateOptions {
            dtype: Dtype::I16,
            shape: vec![0],
            chunk_shape: Some(vec![16]),
            shard_shape: None,
            codec: Codec::None,
            fill_value: None,
            dimension_names: None,
        };
        DataArray::create(&dir, &options).unwrap();
        let le = |r: std::ops::Range<i16>| r.flat_map(i16::to_le_bytes).collect::<Vec<u8>>();
        assert_eq!(append_rows(&dir, "int16", &[], &le(0..100)).unwrap(), 100);
        FRESH.with(|f| {
            f.borrow_mut().push(Fresh {
                dir: dir.clone(),
                first: 100,
                dtype: Dtype::I16,
                prefix: le(60..100),
                bytes: std::sync::Arc::new(le(100..150)),
            })
        });
        let signal = Signal {
            dir: dir.clone(),
            view: None,
        };
        assert_eq!(signal.len().unwrap(), 150);
        let mut out = Vec::new();
        for (start, end) in [
            (0, 50),
            (0, 60),
            (50, 120),
            (59, 61),
            (70, 150),
            (100, 150),
            (120, 121),
            (0, 150),
        ] {
            signal.read_into(start, end, &mut out).unwrap();
            let want: Vec<f64> = (start..end).map(|v| v as f64).collect();
            assert_eq!(out, want, "samples [{start}, {end})");
        }
        FRESH.with(|f| f.borrow_mut().clear());
    }
}
