//! Response headers that keep browsers safe: the defaults every response carries, and
//! how bytes that users supplied (stream downloads, later images and web assets) are
//! served so that a browser never runs them as this site's content.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::HttpResponseBuilder;

/// The admin UI's policy: only this origin's scripts and styles (no inline code, no
/// `eval`), no plugins, never framed, forms posted only here. The one inline style
/// allowed is the empty one (its hash), which htmx applies while swapping.
pub const UI_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' \
'unsafe-hashes' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='; \
img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// The policy of user-supplied bytes: a sandboxed, script-less document of its own.
pub const USER_CONTENT_CSP: &str = "sandbox; default-src 'none'; frame-ancestors 'none'";

/// Headers added to every response that does not set them itself.
pub fn defaults() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::CONTENT_SECURITY_POLICY, UI_CSP))
        .add(("cross-origin-opener-policy", "same-origin"))
}

/// Middleware (`middleware::from_fn(server_timing)`): adds `Server-Timing: app;dur=<ms>`,
/// the milliseconds from the request's arrival in the app (before its extractors resolve
/// the session) to its response head, so that a benchmark can tell the server's time from
/// the client's and the network's. For a streamed body it is the time to the first byte.
pub async fn server_timing(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = std::time::Instant::now();
    let mut response = next.call(req).await?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("server-timing"), value);
    }
    Ok(response)
}

/// Types a browser shows without running anything of the file (with `nosniff`): served
/// inline. Everything else — HTML, SVG, XML, JavaScript, PDF, unknown types — is served
/// as an attachment.
const INLINE_TYPES: &[&str] = &[
    "text/plain",
    "text/csv",
    "application/json",
    "application/x-ndjson",
    "application/octet-stream",
    "application/x-msgpack",
    "application/x-npy",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "audio/wav",
    "audio/x-wav",
    "audio/mpeg",
    "audio/ogg",
    "video/mp4",
    "video/webm",
];

/// Sets Content-Type and the protective headers for bytes a user supplied, declared as
/// `declared` (a document's `content_type`, possibly anything). A type that does not parse
/// as a MIME type is served as `application/octet-stream`.
pub fn user_content(resp: &mut HttpResponseBuilder, declared: Option<&str>) {
    let parsed = declared
        .and_then(|d| d.trim().parse::<mime::Mime>().ok())
        .filter(|m| HeaderValue::from_str(m.as_ref()).is_ok());
    let (value, inline) = match parsed {
        Some(m) => {
            let essence = m.essence_str().to_ascii_lowercase();
            let inline = INLINE_TYPES.contains(&essence.as_str());
            (m.to_string(), inline)
        }
        None => ("application/octet-stream".to_owned(), true),
    };
    resp.insert_header((header::CONTENT_TYPE, value))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, USER_CONTENT_CSP));
    if !inline {
        resp.insert_header((header::CONTENT_DISPOSITION, "attachment"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actix_web::HttpResponse;

    fn served(declared: Option<&str>) -> (String, Option<String>, String) {
        let mut b = HttpResponse::Ok();
        user_content(&mut b, declared);
        let r = b.finish();
        let h = |n: header::HeaderName| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        (
            h(header::CONTENT_TYPE).unwrap(),
            h(header::CONTENT_DISPOSITION),
            h(header::CONTENT_SECURITY_POLICY).unwrap(),
        )
    }

    #[test]
    fn active_content_is_an_attachment_in_a_sandbox() {
        for t in [
            "text/html",
            "TEXT/HTML; charset=utf-8",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/javascript",
            "application/pdf",
            "text/xml",
            "application/x-unknown",
        ] {
            let (ct, disposition, csp) = served(Some(t));
            assert_eq!(disposition.as_deref(), Some("attachment"), "{t} → {ct}");
            assert!(csp.starts_with("sandbox"), "{csp}");
        }
        for t in ["text/plain; charset=utf-8", "image/png", "application/json"] {
            let (ct, disposition, _) = served(Some(t));
            assert_eq!(disposition, None, "{t}");
            assert_eq!(ct, t);
        }
        for bad in [
            None,
            Some("not a type"),
            Some("text/html\r\nX-Evil: 1"),
            Some(""),
        ] {
            let (ct, _, _) = served(bad);
            assert_eq!(ct, "application/octet-stream", "{bad:?}");
        }
    }
}
