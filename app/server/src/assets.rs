//! Static assets compiled into the binary (no CDN, no dependency on the working directory).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const ASSETS: &[(&str, &str, &str)] = &[(
    "wendelin.css",
    "text/css; charset=utf-8",
    include_str!("../../../static/wendelin.css"),
)];

/// `GET /static/{file}`: only the names listed above exist, so no path from the user
/// ever reaches the filesystem.
pub async fn serve(file: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(name, _, _)| *name == file.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .body(*body),
        None => HttpResponse::NotFound().json(serde_json::json!({
            "error": {"code": "not_found", "message": format!("no static file {file}")}
        })),
    }
}
