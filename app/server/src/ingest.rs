//! Ingestion over HTTP: the fluent-plugin-wendelin compatibility path
//! `POST /erp5/portal_ingestion_policies/{policy}/ingest?reference={tag}`, the native
//! `POST /api/v1/ingest/{policy}/{tag}` (fluentd out_http: msgpack, NDJSON, JSON array,
//! gzip), provisioning, and Data Stream download (Range) and resumable upload
//! (`PUT` + `Content-Range`). Bodies are read and checked completely before anything is
//! appended; a 204/200 is sent only once the bytes are durable.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use wendelin_core::{CoreError, Permission, Portal, User};
use wendelin_data_stream::{msgpack, Durability};
use wendelin_ingestion::{Payload, PolicySpec};

use wendelin_http::blocking;
use wendelin_http::body::{content_type, read_body, BodyLimits};
use wendelin_http::range::{parse_content_range, parse_range, RangeError};

use crate::auth::{Auth, Via};
use crate::config::Config;
use crate::error::ServerError;

/// Registers the ingestion and stream-data routes (before the generic API routes).
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
    )
    .route("/api/v1/{path:.*}/data", web::get().to(download))
    .route("/api/v1/{path:.*}/data", web::put().to(upload));
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

/// The limits of ingestion bodies (`ingest_max_body_bytes`, after gzip).
pub(crate) fn ingest_limits(config: &Config) -> BodyLimits {
    BodyLimits {
        max_bytes: config.ingest_max_body_bytes,
        max_inflight_bytes: config.ingest_max_inflight_bytes,
        setting: "ingest_max_body_bytes",
    }
}

/// A msgpack body, checked completely so that nothing of a malformed one is stored.
fn msgpack_payload(bytes: Vec<u8>) -> Result<Payload, ServerError> {
    if bytes.is_empty() {
        return Err(ServerError::BadRequest("the request body is empty".into()));
    }
    msgpack::validate(&bytes).map_err(ServerError::BadRequest)?;
    Ok(Payload::Msgpack(bytes))
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
    config: web::Data<Config>,
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
    let (body, reservation) = read_body(&req, payload, &ingest_limits(&config)).await?;
    let bytes = if content_type(&req) == "application/x-www-form-urlencoded" {
        form_field(&body, "data_chunk")
            .ok_or_else(|| ServerError::BadRequest("the form has no field 'data_chunk'".into()))?
    } else {
        body
    };
    let payload = msgpack_payload(bytes)?;
    let policy = policy.into_inner();
    blocking(move || {
        let _held = reservation;
        wendelin_ingestion::ingest(&portal, &user, &policy, &tag, &payload, Durability::Durable)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/ingest/{policy}/{tag}`: fluentd out_http and other clients; msgpack,
/// NDJSON or a JSON array, optionally gzip-compressed. Answers 200 with the stream's
/// path and size once the bytes are durable.
async fn native_ingest(
    portal: web::Data<Portal>,
    config: web::Data<Config>,
    params: web::Path<(String, String)>,
    req: HttpRequest,
    auth: Auth,
    payload: web::Payload,
) -> Result<HttpResponse, ServerError> {
    let user = ingesting_user(auth)?;
    let (policy, tag) = params.into_inner();
    let kind = content_type(&req);
    let (body, reservation) = read_body(&req, payload, &ingest_limits(&config)).await?;
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
    let done = blocking(move || {
        let _held = reservation;
        wendelin_ingestion::ingest(&portal, &user, &policy, &tag, &payload, Durability::Durable)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "stream": done.stream, "appended": done.bytes, "size": done.size,
    })))
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
    let out = blocking(move || wendelin_ingestion::provision(&portal, &user, &spec)).await?;
    Ok(HttpResponse::Created().json(out))
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
        let doc =
            wendelin_data_stream::checked(&p, &user, &path, Permission::AccessContentsInformation)?;
        let size = wendelin_data_stream::size_of(&p, &doc)?;
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
    crate::headers::user_content(&mut resp, declared.as_deref());
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
                .min(wendelin_data_stream::settings().max_read_bytes.max(1));
            let read =
                blocking(move || wendelin_data_stream::read_checked(&portal, &doc, pos, n)).await;
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
    config: web::Data<Config>,
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
        let doc = wendelin_data_stream::checked(&p, &u, &pa, Permission::ModifyPortalContent)?;
        let size = wendelin_data_stream::size_of(&p, &doc)?;
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
    let (body, reservation) = read_body(&req, payload, &ingest_limits(&config)).await?;
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
        wendelin_data_stream::append_checked(&portal, &doc, &body, Some(at), Durability::Durable)
    })
    .await?;
    match total {
        Some((t, _)) if new_size >= t => Ok(HttpResponse::Ok().json(json!({"size": new_size}))),
        Some(_) => Ok(resume_incomplete(new_size)),
        None if range.is_some() => Ok(resume_incomplete(new_size)),
        None => Ok(HttpResponse::Ok().json(json!({"size": new_size}))),
    }
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
