//! Request bodies read whole within a limit (gzip undone, the limit applying after it),
//! with back-pressure: a process-wide count of body bytes being handled, past which new
//! requests get 503 + `Retry-After`.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::http::header;
use actix_web::{web, HttpRequest};

use crate::error::ServerError;

/// How large a body may be, and how many body bytes may be in flight at once.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body, after decompression.
    pub max_bytes: usize,
    /// Body bytes handled at once before new requests are refused with 503.
    pub max_inflight_bytes: usize,
    /// The option that sets `max_bytes`, named in errors.
    pub setting: &'static str,
}

/// Bytes of bodies being handled now, for back-pressure.
static INFLIGHT: AtomicUsize = AtomicUsize::new(0);

/// A share of the in-flight bytes, given back when dropped.
pub struct Reservation(usize);

impl Reservation {
    /// Reserves `n` bytes, or refuses with 503 when the server is already busy (one
    /// request is always let through, however large, so progress is guaranteed).
    pub fn take(n: usize, limit: usize) -> Result<Reservation, ServerError> {
        let before = INFLIGHT.fetch_add(n, Ordering::AcqRel);
        if before > 0 && before + n > limit {
            INFLIGHT.fetch_sub(n, Ordering::AcqRel);
            return Err(ServerError::Busy(
                format!(
                    "the server is writing {before} bytes of ingested data (limit {limit}); retry later"
                ),
                1,
            ));
        }
        Ok(Reservation(n))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        INFLIGHT.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// The request's media type (`type/subtype`, lower case, without parameters), or "".
pub fn content_type(req: &HttpRequest) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// The request's `Content-Length`, when it has a valid one.
pub fn content_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// The 413 of a body of `n` bytes over `limits`.
pub fn too_large(n: usize, limits: &BodyLimits) -> ServerError {
    ServerError::TooLarge(format!(
        "the request body ({n} bytes) is larger than {} ({}): send smaller chunks",
        limits.setting, limits.max_bytes
    ))
}

/// Reads the whole body within `limits`, gunzipping `Content-Encoding: gzip`; the
/// reservation for back-pressure is taken before reading when the length is known.
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limits: &BodyLimits,
) -> Result<(Vec<u8>, Reservation), ServerError> {
    let limit = limits.max_bytes;
    let declared = content_length(req);
    if let Some(n) = declared {
        if n > limit {
            return Err(too_large(n, limits));
        }
    }
    let mut reservation = Reservation::take(declared.unwrap_or(0), limits.max_inflight_bytes)?;
    // Read into one buffer sized from Content-Length: no regrowth copies of large bodies.
    let mut body = Vec::with_capacity(declared.unwrap_or(64 * 1024));
    let mut payload = payload;
    while let Some(piece) = futures_util::StreamExt::next(&mut payload).await {
        let piece = piece.map_err(|e| {
            ServerError::BadRequest(format!("the request body could not be read: {e}"))
        })?;
        if body.len() + piece.len() > limit {
            return Err(too_large(body.len() + piece.len(), limits));
        }
        body.extend_from_slice(&piece);
    }
    if declared.is_none() {
        reservation = Reservation::take(body.len(), limits.max_inflight_bytes)?;
    }
    let gzip = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let bytes = match gzip.as_deref() {
        None | Some("identity") => body,
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ServerError::BadRequest(format!("the gzip body is corrupt: {e}")))?;
            if out.len() > limit {
                return Err(ServerError::TooLarge(format!(
                    "the body decompresses to more than {limit} bytes ({})",
                    limits.setting
                )));
            }
            out
        }
        Some(other) => {
            return Err(ServerError::Unsupported(format!(
                "Content-Encoding '{other}' is not supported: send gzip or no encoding"
            )))
        }
    };
    Ok((bytes, reservation))
}
