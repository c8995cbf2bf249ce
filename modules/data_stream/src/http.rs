//! The Data Stream's HTTP routes and settings: `GET /api/v1/{stream}/data` (the bytes,
//! all or one `Range`, streamed from the segments) and `PUT /api/v1/{stream}/data` (a
//! resumable upload: `Content-Range`, appended only at the stream's size), and the
//! `[data_stream]` section of `wendelin.toml` ([`DataStreamConfig`]). [`DataStreamModule`]
//! declares them to the server.

use std::sync::OnceLock;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wendelin_core::types::UploadLimits;
use wendelin_core::{CoreError, Permission, Portal};
use wendelin_http::body::{read_body, BodyLimits};
use wendelin_http::range::{parse_content_range, parse_range, RangeError};
use wendelin_http::{blocking, Auth, Section, ServerError, ServerModule};

use crate::{Durability, StoreOptions, StreamSettings};

/// The `[data_stream]` section of `wendelin.toml`; each key is also set by
/// `WENDELIN_DATA_STREAM_<KEY>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataStreamConfig {
    /// A stream starts a new segment file past this many bytes.
    pub segment_bytes: u64,
    /// Largest stream read into memory at once; larger reads must be ranged.
    pub max_read_bytes: u64,
    /// fsync appended bytes before acknowledging them; false survives kill -9 but not a
    /// power loss.
    pub fsync: bool,
    /// Largest upload (`PUT …/data`, the UI's upload form), in bytes.
    pub max_upload_bytes: usize,
    /// Upload bytes being written at once above which uploads get 503 + Retry-After.
    pub max_inflight_bytes: usize,
    /// Ingested bodies written to the end of a stream while they arrive go to the
    /// device with `O_DIRECT` (with `fsync` only; where the file system refuses it, they
    /// go through the page cache): ~25 % less CPU per ingested MiB, no faster for one
    /// client on the VMs measured, and the bytes are not left in the page cache for the
    /// analyses that read them next.
    pub direct_writes: bool,
}

impl Default for DataStreamConfig {
    fn default() -> Self {
        DataStreamConfig {
            segment_bytes: 1 << 30,
            max_read_bytes: 16 << 20,
            fsync: true,
            max_upload_bytes: 64 << 20,
            max_inflight_bytes: 256 << 20,
            direct_writes: false,
        }
    }
}

static CONFIG: OnceLock<DataStreamConfig> = OnceLock::new();

/// Applies the section: the data plane's settings and the upload limits (the first call
/// wins; the server calls it before serving).
pub fn configure(config: DataStreamConfig) {
    crate::configure(StreamSettings {
        store: StoreOptions {
            segment_bytes: config.segment_bytes.max(1),
            fsync: config.fsync,
            direct_writes: config.direct_writes,
            ..Default::default()
        },
        max_read_bytes: config.max_read_bytes,
    });
    let _ = CONFIG.set(config);
}

/// The limits of uploads (`[data_stream] max_upload_bytes`).
pub fn upload_limits() -> UploadLimits {
    let c = CONFIG.get().copied().unwrap_or_default();
    UploadLimits {
        max_bytes: c.max_upload_bytes,
        max_inflight_bytes: c.max_inflight_bytes,
        setting: "[data_stream] max_upload_bytes",
    }
}

fn body_limits() -> BodyLimits {
    let l = upload_limits();
    BodyLimits {
        max_bytes: l.max_bytes,
        max_inflight_bytes: l.max_inflight_bytes,
        setting: l.setting,
    }
}

/// The Data Stream module as the server sees it: its data routes and `[data_stream]`.
pub struct DataStreamModule;

impl ServerModule for DataStreamModule {
    fn name(&self) -> &'static str {
        "data_stream"
    }

    fn settings(&self) -> Option<Section> {
        Some(Section::of::<DataStreamConfig>("data_stream", configure))
    }

    fn routes(&self, cfg: &mut web::ServiceConfig) {
        routes(cfg);
    }
}

/// Registers `GET|PUT /api/v1/{stream}/data`; must come before the generic
/// `/api/v1/{path}` routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/{path:.*}/data", web::get().to(download))
        .route("/api/v1/{path:.*}/data", web::put().to(upload));
}

/// A `Range: bytes=…` header as the first and last byte wanted: 400 when malformed or
/// several, 416 outside the stream.
fn stream_range(value: &str, size: u64) -> Result<(u64, u64), ServerError> {
    parse_range(value, size).map_err(|e| match e {
        RangeError::Unsatisfiable => ServerError::RangeNotSatisfiable(
            format!("the range '{value}' is outside the stream's {size} bytes"),
            size,
        ),
        RangeError::Several => {
            ServerError::BadRequest("only one byte range per request is served".into())
        }
        RangeError::Malformed => ServerError::BadRequest(format!(
            "malformed Range '{value}': use bytes=first-last, bytes=first- or bytes=-suffix"
        )),
    })
}

/// Bytes per read while streaming a download.
const DOWNLOAD_CHUNK: u64 = 1 << 20;

/// `GET /api/v1/{stream}/data`: the stream's bytes, all or one `Range`, streamed from
/// the segments (never the whole stream in memory).
async fn download(
    portal: web::Data<Portal>,
    path: web::Path<String>,
    req: HttpRequest,
    auth: Auth,
) -> Result<HttpResponse, ServerError> {
    let path = path.into_inner();
    let user = auth.user;
    let p = portal.clone();
    let (doc, size) = blocking(move || {
        let doc = crate::checked(&p, &user, &path, Permission::AccessContentsInformation)?;
        let size = crate::size_of(&p, &doc)?;
        Ok((doc, size))
    })
    .await?;
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, first, last) = match range {
        Some(r) => {
            let (a, b) = stream_range(&r, size)?;
            (StatusCode::PARTIAL_CONTENT, a, b)
        }
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let length = if size == 0 { 0 } else { last - first + 1 };
    let declared = doc
        .get("content_type")
        .ok()
        .flatten()
        .and_then(|v| v.as_str().map(str::to_owned));
    let mut resp = HttpResponse::build(status);
    wendelin_http::headers::user_content(&mut resp, declared.as_deref());
    resp.insert_header((header::ACCEPT_RANGES, "bytes"))
        .no_chunking(length);
    if status == StatusCode::PARTIAL_CONTENT {
        resp.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        ));
    }
    let end = first + length;
    let chunks = futures_util::stream::unfold(first, move |pos| {
        let portal = portal.clone();
        let doc = doc.clone();
        async move {
            if pos >= end {
                return None;
            }
            let n = (end - pos)
                .min(DOWNLOAD_CHUNK)
                .min(crate::settings().max_read_bytes.max(1));
            let read = blocking(move || crate::read_checked(&portal, &doc, pos, n)).await;
            let item = match read {
                Ok(bytes) if !bytes.is_empty() => Ok(web::Bytes::from(bytes)),
                Ok(_) => Err(actix_web::error::ErrorInternalServerError("stream shrank")),
                Err(e) => Err(actix_web::error::ErrorInternalServerError(e.to_string())),
            };
            let next = if item.is_ok() { pos + n } else { end };
            Some((item, next))
        }
    });
    Ok(resp.streaming(chunks))
}

/// 308 Resume Incomplete with the bytes held so far.
fn resume_incomplete(size: u64) -> HttpResponse {
    let mut r = HttpResponse::build(StatusCode::PERMANENT_REDIRECT);
    if size > 0 {
        r.insert_header((header::RANGE, format!("bytes=0-{}", size - 1)));
    }
    r.insert_header((header::CONTENT_LENGTH, "0")).finish()
}

/// `PUT /api/v1/{stream}/data` with `Content-Range: bytes a-b/total`: a resumable
/// upload, appended only at the stream's current size (else 409 with the size).
/// `Content-Range: bytes */*` asks how far the upload got (308 with `Range`). Without
/// Content-Range the body is the whole content of an empty stream.
async fn upload(
    portal: web::Data<Portal>,
    path: web::Path<String>,
    req: HttpRequest,
    auth: Auth,
    payload: web::Payload,
) -> Result<HttpResponse, ServerError> {
    let path = path.into_inner();
    let user = auth.user;
    let range = req
        .headers()
        .get(header::CONTENT_RANGE)
        .map(|v| {
            v.to_str()
                .map_err(|_| ServerError::BadRequest("Content-Range is not text".into()))
                .and_then(|v| parse_content_range(v).map_err(ServerError::BadRequest))
        })
        .transpose()?;
    let (p, u, pa) = (portal.clone(), user.clone(), path.clone());
    let (doc, size) = blocking(move || {
        let doc = crate::checked(&p, &u, &pa, Permission::ModifyPortalContent)?;
        let size = crate::size_of(&p, &doc)?;
        Ok((doc, size))
    })
    .await?;
    let (at, total) = match range {
        Some(None) => return Ok(resume_incomplete(size)),
        Some(Some((a, b, total))) => (a, total.map(|t| (t, b))),
        None => (0, None),
    };
    if at != size {
        return Err(ServerError::Core(CoreError::Conflict(format!(
            "the stream holds {size} bytes: resume the upload at byte {size}, not {at}"
        ))));
    }
    let (body, reservation) = read_body(&req, payload, &body_limits()).await?;
    if let Some(Some((a, b, _))) = range {
        if body.len() as u64 != b - a + 1 {
            return Err(ServerError::BadRequest(format!(
                "Content-Range announces {} bytes, the body has {}",
                b - a + 1,
                body.len()
            )));
        }
    }
    let new_size = blocking(move || {
        let _held = reservation;
        crate::append_checked(&portal, &doc, &body, Some(at), Durability::Durable)
    })
    .await?;
    match total {
        Some((t, _)) if new_size >= t => Ok(HttpResponse::Ok().json(json!({"size": new_size}))),
        Some(_) => Ok(resume_incomplete(new_size)),
        None if range.is_some() => Ok(resume_incomplete(new_size)),
        None => Ok(HttpResponse::Ok().json(json!({"size": new_size}))),
    }
}
