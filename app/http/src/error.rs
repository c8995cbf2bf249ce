//! The server's one error type and the single place errors become HTTP responses.
//!
//! Kernel errors ([`wendelin_core::CoreError`]) arrive wrapped in [`ServerError::Core`];
//! every handler returns `Result<_, ServerError>`, and [`ResponseError`] below maps
//! kinds to statuses and renders the JSON envelope `{"error": {"code", "message"}}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use wendelin_core::CoreError;

/// Anything a handler or a CLI command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// From the kernel.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Bad configuration or command-line use.
    #[error("configuration error: {0}")]
    Config(String),
    /// A request the server cannot make sense of.
    #[error("{0}")]
    BadRequest(String),
    /// Local i/o at start-up.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A request body above a limit.
    #[error("{0}")]
    TooLarge(String),
    /// A body in a format the endpoint does not take.
    #[error("{0}")]
    Unsupported(String),
    /// Back-pressure: try again after this many seconds.
    #[error("{0}")]
    Busy(String, u64),
    /// A Range outside the stream (its size is given).
    #[error("{0}")]
    RangeNotSatisfiable(String, u64),
    /// A method the resource does not answer; the second field is its `Allow` header.
    #[error("{0}")]
    MethodNotAllowed(String, String),
    /// A blocking task was cancelled.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            ServerError::Core(e) => match e {
                CoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                CoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                CoreError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
                CoreError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                CoreError::MethodNotAllowed(_) => {
                    (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
                }
                CoreError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
                CoreError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
                CoreError::Throttled(..) => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
                CoreError::Pool(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                CoreError::Database(_)
                | CoreError::Migration(_)
                | CoreError::Io(_)
                | CoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            ServerError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServerError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ServerError::Unsupported(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ServerError::Busy(..) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ServerError::MethodNotAllowed(..) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ServerError::RangeNotSatisfiable(..) => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ServerError::Config(_) | ServerError::Io(_) | ServerError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl ResponseError for ServerError {
    fn status_code(&self) -> StatusCode {
        self.code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.code();
        let message = if status.is_server_error() && !matches!(self, ServerError::Busy(..)) {
            // Details of server faults go to the log, not to the client.
            tracing::error!(error = %self, "request failed");
            "the server failed to handle the request; see its log".to_owned()
        } else {
            match self {
                ServerError::Core(e) => strip_kind(e),
                other => other.to_string(),
            }
        };
        let mut response = HttpResponse::build(status);
        match self {
            ServerError::Core(CoreError::Throttled(_, seconds)) => {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
            ServerError::Core(CoreError::Pool(_)) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ServerError::MethodNotAllowed(_, allow) => {
                response.insert_header((header::ALLOW, allow.as_str()));
            }
            // A data-changing method called with GET: it answers POST.
            ServerError::Core(CoreError::MethodNotAllowed(_)) => {
                response.insert_header((header::ALLOW, "POST"));
            }
            ServerError::Busy(_, seconds) => {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
            ServerError::RangeNotSatisfiable(_, size) => {
                response.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            ServerError::Core(CoreError::Unauthorized(_)) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer, Basic realm=\"wendelin\""));
            }
            _ => {}
        }
        response.json(json!({"error": {"code": code, "message": message}}))
    }
}

/// The message a client is shown for a 4xx error (the UI shows it on its error pages).
pub fn public_message(e: &ServerError) -> String {
    match e {
        ServerError::Core(e) => strip_kind(e),
        other => other.to_string(),
    }
}

/// The kernel's message without its "kind: " prefix (the code says the kind).
fn strip_kind(e: &CoreError) -> String {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((_, rest)) => rest.to_owned(),
        None => text,
    }
}
