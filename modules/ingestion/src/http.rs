//! Ingestion over HTTP: the fluent-plugin-wendelin compatibility path
//! `POST /erp5/portal_ingestion_policies/{policy}/ingest?reference={tag}`, the native
//! `POST /api/v1/ingest/{policy}/{tag}` (fluentd out_http: msgpack, NDJSON, JSON array,
//! gzip) and `addIngestionPolicy`; the `[ingestion]` section of `wendelin.toml`
//! ([`IngestionConfig`]), `wendelin ingestion add`, and the Forward listener started by
//! `wendelin serve`. Bodies are read and checked completely before anything is appended;
//! a 204/200 is sent only once the bytes are durable. [`IngestionModule`] declares it all
//! to the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wendelin_core::{CoreError, Portal, User};
use wendelin_data_stream::{msgpack, Durability, Prewrite};
use wendelin_http::body::{
    content_length, content_type, read_body, too_large, BodyLimits, Reservation,
};
use wendelin_http::{blocking, Auth, CliCommand, Section, ServerError, ServerModule, Via};

use crate::{Ingested, Operation, Payload, PolicySpec, Route, Routes, ROUTE_CAPACITY, ROUTE_TTL};

/// The `[ingestion]` section of `wendelin.toml`; each key is also set by
/// `WENDELIN_INGESTION_<KEY>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestionConfig {
    /// Largest ingestion request body (after decompression), and largest Forward
    /// message, in bytes.
    pub max_body_bytes: usize,
    /// Ingestion bytes in flight above which requests get 503 + Retry-After.
    pub max_inflight_bytes: usize,
    /// Fluentd Forward protocol listener, e.g. `127.0.0.1:24224`; empty: off.
    pub forward: String,
    /// Shared key of the Forward handshake; required on non-loopback addresses.
    pub forward_shared_key: String,
    /// Ingestion Policy receiving Forward traffic; empty: the tag's first part names it.
    pub forward_policy: String,
    /// Login that Forward traffic is ingested as.
    pub forward_user: String,
    /// A Forward connection that sends nothing, or cannot be written to, for this many
    /// seconds is closed.
    pub forward_idle_timeout_secs: u64,
    /// Seconds a Forward client has to finish the HELO/PING/PONG handshake.
    pub forward_handshake_timeout_secs: u64,
    /// Forward connections served at once; more are closed at accept.
    pub forward_max_connections: usize,
    /// A prewritten body's piece is written on the event loop as it arrives; once such a
    /// write takes longer than this many milliseconds (the kernel made it wait), bodies
    /// are written on the blocking pool for [`SLOW_SPELL`]; 0: always on the blocking
    /// pool.
    pub prewrite_slow_ms: u64,
}

impl Default for IngestionConfig {
    fn default() -> Self {
        IngestionConfig {
            max_body_bytes: 64 << 20,
            max_inflight_bytes: 256 << 20,
            forward: String::new(),
            forward_shared_key: String::new(),
            forward_policy: String::new(),
            forward_user: "manager".into(),
            forward_idle_timeout_secs: 60,
            forward_handshake_timeout_secs: 10,
            forward_max_connections: 512,
            prewrite_slow_ms: 20,
        }
    }
}

static CONFIG: OnceLock<IngestionConfig> = OnceLock::new();

/// Applies the section (the first call wins; the server calls it before serving).
pub fn configure(config: IngestionConfig) {
    let _ = CONFIG.set(config);
}

/// The settings in effect.
pub fn settings() -> IngestionConfig {
    CONFIG.get().cloned().unwrap_or_default()
}

/// The limits of ingestion bodies (`[ingestion] max_body_bytes`, after gzip).
fn ingest_limits() -> BodyLimits {
    let c = CONFIG.get();
    let d = IngestionConfig::default();
    BodyLimits {
        max_bytes: c.map_or(d.max_body_bytes, |c| c.max_body_bytes),
        max_inflight_bytes: c.map_or(d.max_inflight_bytes, |c| c.max_inflight_bytes),
        setting: "[ingestion] max_body_bytes",
    }
}

/// The ingestion module as the server sees it: its routes, `[ingestion]`,
/// `wendelin ingestion add` and the Forward listener.
pub struct IngestionModule;

impl ServerModule for IngestionModule {
    fn name(&self) -> &'static str {
        "ingestion"
    }

    fn settings(&self) -> Option<Section> {
        Some(Section::of::<IngestionConfig>("ingestion", configure))
    }

    fn routes(&self, cfg: &mut web::ServiceConfig) {
        routes(cfg);
    }

    fn commands(&self) -> Vec<CliCommand> {
        vec![CliCommand::of::<IngestionCli>(|portal, cli| {
            match cli.action {
                IngestionAction::Add {
                    name,
                    product,
                    operation,
                    tag_parser,
                    accepted_logins,
                } => {
                    let spec = PolicySpec {
                        name,
                        product,
                        operation,
                        tag_parser,
                        accepted_logins,
                    };
                    let out = crate::provision(portal, &User::system(), &spec)?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&out)
                            .map_err(|e| ServerError::Internal(e.to_string()))?
                    );
                    Ok(())
                }
            }
        })]
    }

    /// The Forward listener, when `[ingestion] forward` names an address.
    fn start(&self, portal: &Portal) -> Result<(), ServerError> {
        let config = settings();
        if config.forward.is_empty() {
            return Ok(());
        }
        let listener = crate::forward::bind(&config)?;
        crate::forward::spawn(listener, portal.clone(), &config)?;
        Ok(())
    }
}

/// Provision data ingestion.
#[derive(Debug, clap::Parser)]
#[command(name = "ingestion")]
struct IngestionCli {
    /// What to do.
    #[command(subcommand)]
    action: IngestionAction,
}

/// Ingestion sub-commands.
#[derive(Debug, clap::Subcommand)]
enum IngestionAction {
    /// Create an Ingestion Policy with its Data Product, Data Supply and Data Operation.
    Add {
        /// Id and reference of the policy: fluentd posts to
        /// /erp5/portal_ingestion_policies/NAME/ingest.
        name: String,
        /// Reference of the Data Product the tags feed (default: NAME).
        #[arg(long)]
        product: Option<String>,
        /// append (the raw msgpack bytes) or json-lines (one JSON object per record).
        #[arg(long, default_value = "append")]
        operation: String,
        /// default (tag sensor.product → reference sensor, product product) or whole.
        #[arg(long, default_value = "default")]
        tag_parser: String,
        /// A login the policy accepts data from (repeatable); besides them, only users
        /// who may modify the policy (Managers, its Assignors) may ingest through it.
        #[arg(long = "accept")]
        accepted_logins: Vec<String>,
    },
}

/// Registers the ingestion routes (before the generic API routes).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/erp5/portal_ingestion_policies/{policy}/ingest",
        web::post().to(compat_ingest),
    )
    .route(
        "/erp5/portal_ingestion_policies/{policy}/ingest",
        web::route().to(not_post),
    )
    .route(
        "/api/v1/ingest/{policy}/{tag}",
        web::post().to(native_ingest),
    )
    .route(
        "/api/v1/portal_ingestion_policies/addIngestionPolicy",
        web::post().to(add_policy),
    );
}

/// Ingestion needs machine credentials: a session cookie would let any web page a
/// logged-in user visits post data (form posts skip the CSRF header).
fn ingesting_user(auth: Auth) -> Result<User, ServerError> {
    match auth.via {
        Via::Anonymous => Err(ServerError::Core(CoreError::Unauthorized(
            "ingestion needs credentials: HTTP Basic (user, password) or a bearer API token".into(),
        ))),
        Via::Session { .. } => Err(ServerError::Core(CoreError::Unauthorized(
            "ingestion takes HTTP Basic or bearer credentials, not a session cookie".into(),
        ))),
        Via::Token | Via::Basic => Ok(auth.user),
    }
}

/// A msgpack body, checked completely so that nothing of a malformed one is stored.
fn msgpack_payload(bytes: Vec<u8>) -> Result<Payload, ServerError> {
    check_msgpack(&bytes)?;
    Ok(Payload::Msgpack(bytes))
}

fn check_msgpack(bytes: &[u8]) -> Result<(), ServerError> {
    if bytes.is_empty() {
        return Err(ServerError::BadRequest("the request body is empty".into()));
    }
    msgpack::validate(bytes).map_err(ServerError::BadRequest)?;
    Ok(())
}

/// The routes the HTTP paths resolved (and checked), kept per user, policy and tag for
/// [`ROUTE_TTL`]: the lock is held for a lookup or a resolution, never for an append.
fn http_routes() -> &'static Mutex<Routes> {
    static ROUTES: OnceLock<Mutex<Routes>> = OnceLock::new();
    ROUTES.get_or_init(|| Mutex::new(Routes::cached(ROUTE_TTL, ROUTE_CAPACITY)))
}

/// For a raw msgpack body (no Content-Encoding, a Content-Length) stored as posted on a
/// route resolved within [`ROUTE_TTL`], a [`Prewrite`] at the stream's end: the body is
/// then written to the segment while it arrives, so the disk works during the receipt
/// and the commit's fdatasync finds it mostly written back. `None` (the usual path) when
/// the route is not kept, the stream is not open, or another body holds its end.
fn prewrite_for(
    portal: &Portal,
    user: &User,
    policy: &str,
    tag: &str,
    req: &HttpRequest,
) -> Option<(Route, Prewrite)> {
    let encoded = req
        .headers()
        .get(actix_web::http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let declared = content_length(req)?;
    if encoded || declared == 0 || declared > ingest_limits().max_bytes {
        return None;
    }
    let route = http_routes().lock().ok()?.peek(user, policy, tag)?;
    if route.operation != Operation::Append {
        return None;
    }
    let store = wendelin_data_stream::store(portal).ok()?;
    let pre = store.prewrite(wendelin_data_stream::stream_id(&route.stream), declared)?;
    Some((route, pre))
}

/// Bytes of a prewritten body handed at once to a blocking thread to be written (and
/// checked) while writes are slow ([`writes_are_slow`]).
const PREWRITE_BATCH: usize = 256 << 10;

/// How long prewrites stay off the event loop after a slow piece write
/// ([`IngestionConfig::prewrite_slow_ms`]).
const SLOW_SPELL: Duration = Duration::from_secs(10);

/// When a prewrite's piece write last took longer than
/// [`IngestionConfig::prewrite_slow_ms`] (milliseconds since [`epoch`]; 0: never).
static LAST_SLOW_WRITE: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A piece write slower than this leaves the event loop (`None`: every one does).
fn slow_write() -> Option<Duration> {
    let ms = CONFIG
        .get()
        .map_or(IngestionConfig::default().prewrite_slow_ms, |c| {
            c.prewrite_slow_ms
        });
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Whether a piece write was slow within the last [`SLOW_SPELL`]: the pieces of new
/// bodies are then written on the blocking pool rather than on the event loop.
fn writes_are_slow() -> bool {
    let last = LAST_SLOW_WRITE.load(Ordering::Relaxed);
    last != 0 && now_ms().saturating_sub(last) < SLOW_SPELL.as_millis() as u64
}

/// A [`Prewrite`] and the msgpack check of what it took so far, moved between the event
/// loop and the blocking thread that writes its batches.
type Prewriting = (Prewrite, msgpack::Validator);

/// Writes `pieces` through the prewrite and feeds them to the check.
fn prewrite_pieces(state: &mut Prewriting, pieces: &[web::Bytes]) {
    for piece in pieces {
        state.1.feed(piece);
        state.0.piece(piece);
    }
}

/// [`read_body`] into a [`Prewrite`] (same limits and in-flight reservation), then the
/// append, answered once durable; the msgpack check runs on each piece as it comes, so
/// only the commit is left once the last byte is in. Each piece (what one read of the
/// socket gave, up to ~128 KiB) is written as it arrives, on the event loop: that write
/// into the page cache costs less than handing it to another thread (measured: 1-client
/// throughput fell from 0.48× to 0.42× of the fdatasync loop with every body on the
/// blocking pool; handing every piece over a channel to one blocking thread that writes
/// and checks it, then commits, measured 0.46–0.49× against 0.46–0.52× in 4 pairs).
/// A write that waits for the kernel (dirty-page throttling) would stall every other
/// connection of this worker, though: once one took longer than
/// [`IngestionConfig::prewrite_slow_ms`], bodies are written in batches of
/// [`PREWRITE_BATCH`] on the blocking pool (one batch at a time, in order) for
/// [`SLOW_SPELL`]. A body refused (malformed, too large, cut) leaves its prewritten
/// bytes beyond the stream's end, never in it.
async fn ingest_prewritten(
    portal: web::Data<Portal>,
    req: &HttpRequest,
    payload: web::Payload,
    route: Route,
    pre: Prewrite,
) -> Result<Ingested, ServerError> {
    type Writing = actix_web::rt::task::JoinHandle<Prewriting>;
    /// The prewrite, once the batch in flight (if any) is written.
    async fn settle(
        idle: &mut Option<Prewriting>,
        writing: &mut Option<Writing>,
    ) -> Result<Prewriting, ServerError> {
        match (writing.take(), idle.take()) {
            (Some(job), _) => job
                .await
                .map_err(|e| ServerError::Internal(format!("a body write failed: {e}"))),
            (None, Some(state)) => Ok(state),
            (None, None) => Err(ServerError::Internal("the prewrite is gone".into())),
        }
    }
    let limits = ingest_limits();
    let reservation =
        Reservation::take(content_length(req).unwrap_or(0), limits.max_inflight_bytes)?;
    let mut payload = payload;
    let slow = slow_write();
    let mut offload = slow.is_none() || writes_are_slow();
    let mut idle: Option<Prewriting> = Some((pre, msgpack::Validator::new()));
    let mut writing: Option<Writing> = None;
    let mut batch: Vec<web::Bytes> = Vec::new();
    let (mut batched, mut received) = (0usize, 0usize);
    while let Some(piece) = futures_util::StreamExt::next(&mut payload).await {
        let piece = piece.map_err(|e| {
            ServerError::BadRequest(format!("the request body could not be read: {e}"))
        })?;
        received += piece.len();
        if received > limits.max_bytes {
            return Err(too_large(received, &limits));
        }
        if !offload {
            if let Some((pre, check)) = idle.as_mut() {
                check.feed(&piece);
                let started = Instant::now();
                pre.piece(&piece);
                let took = started.elapsed();
                if slow.is_some_and(|slow| took > slow) {
                    if !writes_are_slow() {
                        tracing::info!(
                            ms = took.as_millis() as u64,
                            bytes = piece.len(),
                            "a prewrite waited for the disk: bodies are written off the event loop for 10 s"
                        );
                    }
                    LAST_SLOW_WRITE.store(now_ms().max(1), Ordering::Relaxed);
                    offload = true;
                }
                continue;
            }
        }
        batched += piece.len();
        batch.push(piece);
        if batched >= PREWRITE_BATCH {
            let mut state = settle(&mut idle, &mut writing).await?;
            let full = std::mem::take(&mut batch);
            batched = 0;
            writing = Some(actix_web::rt::task::spawn_blocking(move || {
                prewrite_pieces(&mut state, &full);
                state
            }));
        }
    }
    let mut state = settle(&mut idle, &mut writing).await?;
    blocking(move || {
        let _held = reservation;
        prewrite_pieces(&mut state, &batch);
        let (pre, check) = state;
        if pre.body().is_empty() {
            return Err(CoreError::BadRequest("the request body is empty".into()));
        }
        if !check.finish() {
            // The message that locates the fault (the streaming check only says no).
            msgpack::validate(pre.body()).map_err(CoreError::BadRequest)?;
            return Err(CoreError::BadRequest(
                "malformed msgpack: the body is not a sequence of complete values".into(),
            ));
        }
        crate::ingest_prewritten(&portal, route, pre, Durability::Durable)
    })
    .await
}

/// A JSON body: one array of records, one object, or NDJSON (one object per line).
fn json_payload(bytes: &[u8]) -> Result<Payload, ServerError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ServerError::BadRequest(format!("the JSON body is not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(records)) => Ok(Payload::Records(records)),
            Ok(_) => Err(ServerError::BadRequest(
                "a JSON body must be an array of records".into(),
            )),
            Err(e) => Err(ServerError::BadRequest(format!(
                "malformed JSON array: {e}"
            ))),
        };
    }
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            ServerError::BadRequest(format!("malformed JSON on line {}: {e}", i + 1))
        })?;
        records.push(v);
    }
    if records.is_empty() {
        return Err(ServerError::BadRequest(
            "the request body holds no record".into(),
        ));
    }
    Ok(Payload::Records(records))
}

/// `application/x-www-form-urlencoded` decoded to raw bytes (a percent-encoded field
/// may hold binary msgpack, which a UTF-8 form parser would corrupt).
fn form_field(body: &[u8], name: &str) -> Option<Vec<u8>> {
    fn decode(part: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < part.len() => {
                    let hex = std::str::from_utf8(&part[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        out
    }
    body.split(|&b| b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |&b| b == b'=');
        let key = decode(kv.next().unwrap_or_default());
        (key == name.as_bytes()).then(|| decode(kv.next().unwrap_or_default()))
    })
}

/// Query of the compatibility path.
#[derive(Debug, Deserialize)]
struct CompatQuery {
    reference: Option<String>,
}

async fn not_post() -> Result<HttpResponse, ServerError> {
    Err(ServerError::BadRequest(
        "ingestion takes POST: POST <policy>/ingest?reference=<tag> with the fluentd chunk as body"
            .into(),
    ))
}

/// `POST /erp5/portal_ingestion_policies/{policy}/ingest?reference={tag}`: what
/// fluent-plugin-wendelin sends (raw msgpack, or the form field `data_chunk` of
/// versions ≤ 0.3). Answers 204 once the bytes are durable.
async fn compat_ingest(
    portal: web::Data<Portal>,
    policy: web::Path<String>,
    req: HttpRequest,
    auth: Auth,
    payload: web::Payload,
) -> Result<HttpResponse, ServerError> {
    let user = ingesting_user(auth)?;
    let query: CompatQuery = web::Query::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ServerError::BadRequest(format!("bad query string: {e}")))?;
    let tag = query.reference.ok_or_else(|| {
        ServerError::BadRequest(
            "the query parameter 'reference' (the fluentd tag) is missing".into(),
        )
    })?;
    let form = content_type(&req) == "application/x-www-form-urlencoded";
    if !form {
        if let Some((route, pre)) = prewrite_for(&portal, &user, policy.as_str(), &tag, &req) {
            ingest_prewritten(portal, &req, payload, route, pre).await?;
            return Ok(HttpResponse::NoContent().finish());
        }
    }
    let (body, reservation) = read_body(&req, payload, &ingest_limits()).await?;
    let bytes = if form {
        form_field(&body, "data_chunk")
            .ok_or_else(|| ServerError::BadRequest("the form has no field 'data_chunk'".into()))?
    } else {
        body
    };
    let payload = msgpack_payload(bytes)?;
    ingest_durably(portal, user, policy.into_inner(), tag, payload, reservation).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/ingest/{policy}/{tag}`: fluentd out_http and other clients; msgpack,
/// NDJSON or a JSON array, optionally gzip-compressed. Answers 200 with the stream's
/// path and size once the bytes are durable.
async fn native_ingest(
    portal: web::Data<Portal>,
    params: web::Path<(String, String)>,
    req: HttpRequest,
    auth: Auth,
    payload: web::Payload,
) -> Result<HttpResponse, ServerError> {
    let user = ingesting_user(auth)?;
    let (policy, tag) = params.into_inner();
    let kind = content_type(&req);
    let raw = matches!(
        kind.as_str(),
        "application/x-msgpack" | "application/msgpack" | "application/octet-stream" | ""
    );
    if raw {
        if let Some((route, pre)) = prewrite_for(&portal, &user, &policy, &tag, &req) {
            let done = ingest_prewritten(portal, &req, payload, route, pre).await?;
            return Ok(HttpResponse::Ok().json(json!({
                "stream": done.stream, "appended": done.bytes, "size": done.size,
            })));
        }
    }
    let (body, reservation) = read_body(&req, payload, &ingest_limits()).await?;
    let payload = match kind.as_str() {
        "application/x-msgpack" | "application/msgpack" | "application/octet-stream" | "" => {
            msgpack_payload(body)?
        }
        "application/json" | "application/x-ndjson" | "application/jsonlines"
        | "application/x-jsonlines" => json_payload(&body)?,
        other => {
            return Err(ServerError::Unsupported(format!(
                "Content-Type '{other}' is not taken: send application/x-msgpack, application/x-ndjson or application/json"
            )))
        }
    };
    let done = ingest_durably(portal, user, policy, tag, payload, reservation).await?;
    Ok(HttpResponse::Ok().json(json!({
        "stream": done.stream, "appended": done.bytes, "size": done.size,
    })))
}

/// Ingests a checked body through [`crate::ingest`] on the blocking pool, resolving the
/// route afresh, and answers once it is durable; the body's in-flight reservation is
/// held until then. Both HTTP routes end here.
async fn ingest_durably(
    portal: web::Data<Portal>,
    user: User,
    policy: String,
    tag: String,
    payload: Payload,
    reservation: Reservation,
) -> Result<Ingested, ServerError> {
    blocking(move || {
        let _held = reservation;
        // Resolved (and checked) at most every ROUTE_TTL per user, policy and tag.
        let route = http_routes()
            .lock()
            .map_err(|_| CoreError::Internal("the ingestion route cache is poisoned".into()))?
            .get(&portal, &user, &policy, &tag)?;
        crate::ingest_to(&portal, route, payload, Durability::Durable)
    })
    .await
}

/// Body of `addIngestionPolicy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPolicy {
    name: String,
    product: Option<String>,
    operation: Option<String>,
    tag_parser: Option<String>,
    #[serde(default)]
    accepted_logins: Vec<String>,
}

/// `POST /api/v1/portal_ingestion_policies/addIngestionPolicy`: provisions a policy with
/// its product, supply and operation (the UI action; `wendelin ingestion add` on the CLI).
async fn add_policy(
    portal: web::Data<Portal>,
    auth: Auth,
    body: web::Json<AddPolicy>,
) -> Result<HttpResponse, ServerError> {
    let b = body.into_inner();
    let spec = PolicySpec {
        name: b.name,
        product: b.product,
        operation: b.operation.unwrap_or_else(|| "append".into()),
        tag_parser: b.tag_parser.unwrap_or_else(|| "default".into()),
        accepted_logins: b.accepted_logins,
    };
    let user = auth.user;
    let out = blocking(move || crate::provision(&portal, &user, &spec)).await?;
    Ok(HttpResponse::Created().json(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn form_fields_keep_binary_bytes() {
        assert_eq!(
            form_field(b"a=1&data_chunk=%92%01%FF+x", "data_chunk").unwrap(),
            vec![0x92, 1, 0xff, b' ', b'x']
        );
        assert_eq!(
            form_field(b"data_chunk=%4", "data_chunk").unwrap(),
            b"%4".to_vec()
        );
        assert!(form_field(b"x=1", "data_chunk").is_none());
    }
}
