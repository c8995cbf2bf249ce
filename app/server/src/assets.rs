//! Static assets compiled into the binary (no CDN, no dependency on the working directory).
//!
//! Pages link assets by a content-hashed name (`wendelin.3f…c1.css`, see [`url`]) served
//! as immutable, so a new build is fetched at once and an unchanged one never again. The
//! plain names stay reachable (revalidated each time) for older pages.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "wendelin.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/wendelin.css"),
    ),
    (
        "wendelin.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/wendelin.js"),
    ),
    (
        // htmx 2.0.11 (BSD-2-Clause), from the npm package htmx.org, dist/htmx.min.js.
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/htmx.min.js"),
    ),
    (
        // CodeMirror 5.65.21 (MIT, static/codemirror-LICENSE) with its modes for the
        // languages of `data-code` textareas; wendelin.js loads it where one is shown.
        "codemirror.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/codemirror.min.js"),
    ),
    (
        "codemirror.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/codemirror.css"),
    ),
];

/// FNV-1a: a content fingerprint for cache busting, not a security hash.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

struct Hashed {
    name: &'static str,
    hashed: String,
    url: String,
    etag: String,
}

fn hashed() -> &'static [Hashed] {
    static TABLE: OnceLock<Vec<Hashed>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(name, _, body)| {
                let hash = format!("{:016x}", fnv1a(body));
                let hashed = match name.rsplit_once('.') {
                    Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
                    None => format!("{name}.{hash}"),
                };
                Hashed {
                    name,
                    url: format!("/static/{hashed}"),
                    hashed,
                    etag: format!("\"{hash}\""),
                }
            })
            .collect()
    })
}

/// The cache-busted URL of a static file, e.g. `/static/wendelin.0123456789abcdef.css`.
pub fn url(name: &str) -> &'static str {
    hashed()
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.url.as_str())
        .unwrap_or("/static/missing")
}

/// `GET /static/{file}`: only the names listed above exist, so no path from the user
/// ever reaches the filesystem.
pub async fn serve(file: web::Path<String>, req: HttpRequest) -> HttpResponse {
    let file = file.into_inner();
    let table = hashed();
    for (i, (name, content_type, body)) in ASSETS.iter().enumerate() {
        let h = &table[i];
        let immutable = h.hashed == file;
        if !immutable && *name != file {
            continue;
        }
        let etag_matches = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == h.etag);
        let mut response = if etag_matches {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header((header::ETAG, h.etag.clone()))
            .insert_header((
                header::CACHE_CONTROL,
                if immutable {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                },
            ));
        if etag_matches {
            return response.finish();
        }
        return response.content_type(*content_type).body(*body);
    }
    HttpResponse::NotFound().json(serde_json::json!({
        "error": {"code": "not_found", "message": format!("no static file {file}")}
    }))
}
