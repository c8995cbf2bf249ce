//! Data Streams: append-only byte streams fed by ingestion. The bytes live in the storage
//! engine ([`store`]) under `<data_dir>/streams/<uid>/`, never in a table row; the
//! document carries the metadata. This crate declares the type, its methods and view,
//! and the permission-checked functions the ingestion and HTTP layers append and read
//! through.

pub mod http;
pub mod msgpack;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use askama::Template;
use serde_json::{json, Value};
use wendelin_core::{
    Call, CoreError, CoreResult, Document, Host, MethodOutput, Module, Permission, Portal,
    PortalType, PropertyDef, PropertyType, Protected, User,
};

pub use store::{Durability, LocalStore, Prewrite, StoreError, StoreOptions, StreamStore};

/// The portal type name.
pub const DATA_STREAM: &str = "Data Stream";

/// Settings of the data plane, given once by the server at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// Storage engine knobs.
    pub store: StoreOptions,
    /// Largest read served into memory at once; larger reads must be ranged.
    pub max_read_bytes: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            store: StoreOptions::default(),
            max_read_bytes: 16 << 20,
        }
    }
}

static SETTINGS: OnceLock<StreamSettings> = OnceLock::new();
static STORES: OnceLock<Mutex<HashMap<PathBuf, Arc<LocalStore>>>> = OnceLock::new();

/// Sets the data plane's settings; the first call wins (call it before serving).
pub fn configure(settings: StreamSettings) {
    let _ = SETTINGS.set(settings);
}

/// The settings in effect.
pub fn settings() -> StreamSettings {
    SETTINGS.get().copied().unwrap_or_default()
}

/// The store of the portal's data directory (`<data_dir>/streams`), opened once per
/// process so every appender of a stream shares its lock and group commit.
pub fn store(host: &(impl Host + ?Sized)) -> CoreResult<Arc<LocalStore>> {
    let dir = host
        .data_dir()
        .ok_or_else(|| CoreError::Internal("the portal has no data directory".into()))?
        .join("streams");
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = stores.get(&dir) {
        return Ok(s.clone());
    }
    let s = LocalStore::open(&dir, settings().store).map_err(core_error)?;
    stores.insert(dir, s.clone());
    Ok(s)
}

/// Drops a deleted stream's segments (the kernel's delete hook; idempotent).
fn purge(portal: &Portal, uid: i64) -> CoreResult<()> {
    let id = u64::try_from(uid).map_err(|_| CoreError::Invalid(format!("bad uid {uid}")))?;
    store(portal)?.remove(id).map_err(core_error)
}

/// A storage error as a kernel error.
pub fn core_error(e: StoreError) -> CoreError {
    match e {
        StoreError::OffsetMismatch { .. } => CoreError::Conflict(e.to_string()),
        StoreError::Io(io) => CoreError::Io(io),
        other => CoreError::Internal(other.to_string()),
    }
}

/// The storage id of a Data Stream document.
pub fn stream_id(doc: &Document) -> u64 {
    u64::try_from(doc.uid).unwrap_or(0)
}

fn require_stream(doc: &Document) -> CoreResult<()> {
    if doc.portal_type == DATA_STREAM {
        Ok(())
    } else {
        Err(CoreError::NotFound(format!(
            "/{} is not a Data Stream",
            doc.path
        )))
    }
}

/// The Data Stream at `path` if `user` holds `permission` on it ([`Portal::checked`]).
pub fn checked(
    portal: &Portal,
    user: &User,
    path: &str,
    permission: Permission,
) -> CoreResult<Document> {
    portal.checked(user, path, DATA_STREAM, permission)
}

/// Appends `data` to the stream `doc` (already permission-checked by the caller through
/// [`checked`]); with `at`, only if the stream's size is `at`. Returns the new size.
pub fn append_checked(
    portal: &Portal,
    doc: &Document,
    data: &[u8],
    at: Option<u64>,
    mode: Durability,
) -> CoreResult<u64> {
    require_stream(doc)?;
    let size = store(portal)?
        .append(stream_id(doc), data, at, mode)
        .map_err(core_error)?;
    for listener in listeners() {
        listener(portal, doc, size);
    }
    Ok(size)
}

/// [`append_checked`] of a body prewritten while it arrived ([`LocalStore::prewrite`],
/// taken for the same stream `doc`); the caller checked the body ([`Prewrite::body`]).
pub fn append_prewritten_checked(
    portal: &Portal,
    doc: &Document,
    pre: Prewrite,
    mode: Durability,
) -> CoreResult<u64> {
    require_stream(doc)?;
    let size = store(portal)?
        .append_prewritten(pre, mode)
        .map_err(core_error)?;
    for listener in listeners() {
        listener(portal, doc, size);
    }
    Ok(size)
}

/// Told of every append, after it (the stream and its new size): how a module follows
/// streams without the stream module knowing it. It must return at once (no I/O).
pub type AppendListener = fn(&Portal, &Document, u64);

static LISTENERS: OnceLock<Mutex<Vec<AppendListener>>> = OnceLock::new();

/// Registers `listener` for every append of this process (once per listener).
pub fn on_append(listener: AppendListener) {
    let mut all = LISTENERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !all.iter().any(|l| std::ptr::fn_addr_eq(*l, listener)) {
        all.push(listener);
    }
}

fn listeners() -> Vec<AppendListener> {
    LISTENERS.get().map_or_else(Vec::new, |l| {
        l.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    })
}

/// Appends to the stream at `path` as `user` (permission *Modify portal content*).
pub fn append(
    portal: &Portal,
    user: &User,
    path: &str,
    data: &[u8],
    at: Option<u64>,
) -> CoreResult<u64> {
    let doc = checked(portal, user, path, Permission::ModifyPortalContent)?;
    append_checked(portal, &doc, data, at, Durability::Durable)
}

/// Committed size of a stream document, in O(1).
pub fn size_of(host: &(impl Host + ?Sized), doc: &Document) -> CoreResult<u64> {
    store(host)?.size(stream_id(doc)).map_err(core_error)
}

/// Up to `len` bytes from `start` of a stream document (permission checked by the caller).
pub fn read_checked(
    host: &(impl Host + ?Sized),
    doc: &Document,
    start: u64,
    len: u64,
) -> CoreResult<Vec<u8>> {
    let max = settings().max_read_bytes;
    if len > max {
        return Err(CoreError::BadRequest(format!(
            "reading {len} bytes at once is refused (the limit is {max}): read /{} by ranges, \
             e.g. GET /api/v1/{}/data with a Range header",
            doc.path, doc.path
        )));
    }
    let len = usize::try_from(len).map_err(|_| CoreError::BadRequest("range too large".into()))?;
    store(host)?
        .read(stream_id(doc), start, len)
        .map_err(core_error)
}

/// `readMsgpackChunkList(start, end)`: the complete msgpack values stored in
/// `[start, end)` (a value cut by `end` is left for the next call) and the offset to
/// continue from. `start` must be a value boundary (0 or a previous `next_offset`).
pub fn read_msgpack_chunk_list(
    host: &(impl Host + ?Sized),
    doc: &Document,
    start: u64,
    end: u64,
) -> CoreResult<(Vec<Value>, u64)> {
    let end = end.min(size_of(host, doc)?);
    if start >= end {
        return Ok((Vec::new(), start));
    }
    let bytes = read_checked(host, doc, start, end - start)?;
    let (values, used) = msgpack::decode_prefix(&bytes).map_err(CoreError::BadRequest)?;
    Ok((
        values.iter().map(msgpack::to_json).collect(),
        start + used as u64,
    ))
}

/// The data stream module: `data_stream_module` holding Data Stream documents.
pub fn module() -> Module {
    Module::new("data_stream")
        // `GET|PUT /api/v1/<stream>/data` (the bytes).
        .reserve_ids(&["data"])
        .folder("data_stream_module", "Data Streams", &[DATA_STREAM])
        .portal_type(
            PortalType::new(DATA_STREAM, "data_stream_module")
                .describe("Append-only bytes, e.g. sensor records ingested from fluentd")
                .on_delete(purge)
                .property(
                    PropertyDef::new("content_type", PropertyType::String)
                        .default_value(Value::from("application/octet-stream")),
                )
                .property(PropertyDef::new("version", PropertyType::String))
                .workflow("validation_workflow")
                .listbox_columns(&[
                    "title",
                    "reference",
                    "owner",
                    "validation_state",
                    "size",
                    "last_append",
                    "modification_date",
                ])
                // The tutorial's first check: how much each stream holds, and since when.
                .computed_column("size", "Size", |portal, doc| {
                    Ok(size_of(portal, doc)?.to_string())
                })
                .computed_column("last_append", "Last append", |portal, doc| {
                    Ok(last_append(portal, doc)?.unwrap_or_default())
                })
                .holds_file(size_of, |doc| format!("/api/v1/{}/data", doc.path))
                .accepts_upload(http::upload_limits, |portal, user, path, bytes, at| {
                    let doc = checked(portal, user, path, Permission::ModifyPortalContent)?;
                    let size = append_checked(portal, &doc, bytes, Some(at), Durability::Durable)?;
                    Ok((doc, size))
                })
                .method("getSize", |call: &mut Call<'_>| {
                    Ok(MethodOutput::Json(Value::from(size_of(
                        call.host,
                        call.context,
                    )?)))
                })
                .method(
                    "getLastAppendDate",
                    Protected::read(
                        Permission::AccessContentsInformation,
                        |call: &mut Call<'_>| {
                            Ok(MethodOutput::Json(
                                last_append(call.host, call.context)?
                                    .map_or(Value::Null, Value::from),
                            ))
                        },
                    ),
                )
                .method(
                    "readMsgpackChunkList",
                    Protected::read(
                        Permission::AccessContentsInformation,
                        |call: &mut Call<'_>| {
                            let start = offset_arg(call, "start")?.unwrap_or(0);
                            let end = match offset_arg(call, "end")? {
                                Some(e) => e,
                                None => size_of(call.host, call.context)?,
                            };
                            let (records, next) =
                                read_msgpack_chunk_list(call.host, call.context, start, end)?;
                            Ok(MethodOutput::Json(
                                json!({"records": records, "next_offset": next}),
                            ))
                        },
                    ),
                )
                .method(
                    "getData",
                    Protected::read(
                        Permission::AccessContentsInformation,
                        |call: &mut Call<'_>| {
                            let size = size_of(call.host, call.context)?;
                            let bytes = read_checked(call.host, call.context, 0, size)?;
                            Ok(MethodOutput::Json(Value::from(
                                String::from_utf8_lossy(&bytes).into_owned(),
                            )))
                        },
                    ),
                ),
        )
        .script("DataStream_view", |call: &mut Call<'_>| {
            let doc = call.context;
            let size = size_of(call.host, doc)?;
            // Checked on the call's own connection: no second transaction inside the call.
            let preview = if call.allowed(doc, Permission::AccessContentsInformation)? {
                read_checked(
                    call.host,
                    doc,
                    0,
                    size.min(256).min(settings().max_read_bytes),
                )?
            } else {
                Vec::new()
            };
            let (records, _) = msgpack::decode_prefix(&preview).unwrap_or_default();
            let page = DataStreamView {
                title: if doc.title.is_empty() {
                    doc.id.as_str()
                } else {
                    doc.title.as_str()
                },
                path: &doc.path,
                reference: doc.reference.as_deref().unwrap_or(""),
                description: &doc.description,
                size,
                last_append: last_append(call.host, doc)?.unwrap_or_default(),
                hex: hex_dump(&preview),
                text: String::from_utf8_lossy(&preview).into_owned(),
                records: records
                    .iter()
                    .take(10)
                    .map(|r| msgpack::to_json(r).to_string())
                    .collect(),
            };
            page.render()
                .map(MethodOutput::Html)
                .map_err(|e| CoreError::Internal(format!("DataStream_view failed: {e}")))
        })
}

fn offset_arg(call: &Call<'_>, name: &str) -> CoreResult<Option<u64>> {
    match call.args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| bad_offset(name)),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad_offset(name)),
        Some(_) => Err(bad_offset(name)),
    }
}

fn bad_offset(name: &str) -> CoreError {
    CoreError::BadRequest(format!("'{name}' must be a byte offset (an integer ≥ 0)"))
}

/// When the stream last grew, RFC 3339 (none when unknown).
pub fn last_append(host: &(impl Host + ?Sized), doc: &Document) -> CoreResult<Option<String>> {
    let t = store(host)?
        .last_append(stream_id(doc))
        .map_err(core_error)?;
    Ok(t.map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }))
}

fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x} ", i * 16));
        for b in line {
            out.push_str(&format!(" {b:02x}"));
        }
        out.push('\n');
    }
    out
}

#[derive(Template)]
#[template(path = "data_stream_view.html")]
struct DataStreamView<'a> {
    title: &'a str,
    path: &'a str,
    reference: &'a str,
    description: &'a str,
    size: u64,
    last_append: String,
    hex: String,
    text: String,
    records: Vec<String>,
}
