//! `POST /ui/<path>/+upload`: the edit form's file upload without JavaScript, for any
//! type that takes uploads (`PortalType::accepts_upload`, declared by its module with its
//! limits and what appends). The form (`multipart/form-data`) sends `csrf_token`, then
//! `at` (the size the page showed), then `file`; its bytes are appended at `at`, so two
//! people appending from pages they loaded at the same size cannot interleave (the second
//! gets a conflict). With JavaScript, `wendelin.js` sends the same bytes with a `PUT` to
//! the module's endpoint.

use actix_multipart::{Field, Multipart};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use wendelin_core::{CoreError, Portal};

use super::{finish, session_of, Flash, Out, Session};
use crate::auth::Auth;
use crate::error::ServerError;
use wendelin_http::body::{content_length, too_large, BodyLimits, Reservation};

/// Bytes a text field of the form (`csrf_token`, `at`) may have.
const MAX_TEXT_FIELD: usize = 1024;

pub async fn ui_upload(
    req: HttpRequest,
    portal: web::Data<Portal>,
    auth: Result<Auth, ServerError>,
    tail: web::Path<String>,
    form: Multipart,
) -> HttpResponse {
    let session = match session_of(auth, &req) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let result = upload(&req, portal, &session, tail.into_inner(), form).await;
    finish(result, &session)
}

async fn upload(
    req: &HttpRequest,
    portal: web::Data<Portal>,
    s: &Session,
    path: String,
    mut form: Multipart,
) -> Result<Out, ServerError> {
    // The document's type says whether it takes uploads, and how large.
    let (p, user, pa) = (portal.clone(), s.user.clone(), path.clone());
    let upload = wendelin_http::blocking(move || {
        let doc = p.get(&user, &pa)?;
        p.registry
            .portal_type(&doc.portal_type)
            .and_then(|t| t.upload.clone())
            .ok_or_else(|| CoreError::NotFound(format!("/{} takes no file upload", doc.path)))
    })
    .await?;
    let l = (upload.limits)();
    let limits = BodyLimits {
        max_bytes: l.max_bytes,
        max_inflight_bytes: l.max_inflight_bytes,
        setting: l.setting,
    };
    let limit = limits.max_bytes;
    let declared = content_length(req);
    // The file is at most the request minus the other fields and the boundaries.
    if let Some(n) = declared.filter(|n| *n > limit.saturating_add(64 * 1024)) {
        return Err(too_large(n, &limits));
    }
    let _reservation = Reservation::take(declared.unwrap_or(limit), limits.max_inflight_bytes)?;
    let (mut token, mut at, mut bytes) = (None, None, None);
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| bad_form(&e))?;
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "csrf_token" => token = Some(text(&mut field).await?),
            "at" => {
                let t = text(&mut field).await?;
                at = Some(t.trim().parse::<u64>().map_err(|_| {
                    ServerError::BadRequest(format!("'at' must be a byte offset, not '{t}'"))
                })?);
            }
            "file" => {
                // Nothing of the file is read before the form is known to be ours.
                s.check_csrf_token(token.as_deref())?;
                let mut body = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| bad_form(&e))?;
                    if body.len() + chunk.len() > limit {
                        return Err(too_large(body.len() + chunk.len(), &limits));
                    }
                    body.extend_from_slice(&chunk);
                }
                bytes = Some(body);
            }
            _ => while field.next().await.is_some() {},
        }
    }
    s.check_csrf_token(token.as_deref())?;
    let at = at.ok_or_else(|| ServerError::BadRequest("the form has no 'at' field".into()))?;
    let body = bytes
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ServerError::BadRequest("choose a file that is not empty".into()))?;
    let user = s.user.clone();
    wendelin_http::blocking_http(move || {
        let (doc, size) = (upload.append)(&portal, &user, &path, &body, at)?;
        Ok(Out::Redirect(
            format!("/ui/{}/+module", doc.path),
            Some(Flash::ok(format!(
                "Appended {} bytes; it now holds {size}.",
                body.len()
            ))),
        ))
    })
    .await
}

/// A small text field's value.
async fn text(field: &mut Field) -> Result<String, ServerError> {
    let mut value = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| bad_form(&e))?;
        if value.len() + chunk.len() > MAX_TEXT_FIELD {
            return Err(ServerError::BadRequest(format!(
                "the form field '{}' is longer than {MAX_TEXT_FIELD} bytes",
                field.name().unwrap_or_default()
            )));
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value)
        .map_err(|_| ServerError::BadRequest("a form field is not UTF-8 text".into()))
}

fn bad_form(e: &dyn std::fmt::Display) -> ServerError {
    ServerError::BadRequest(format!("the upload form could not be read: {e}"))
}
