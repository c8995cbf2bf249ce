//! What every module's HTTP routes share, written once: who is asking ([`auth::Auth`]),
//! the one error type and its mapping to HTTP ([`error::ServerError`]), running kernel
//! calls on the blocking pool ([`blocking`]), HTTP byte ranges ([`range`]), request
//! bodies within limits and back-pressure ([`body`]), the headers that keep browsers
//! safe ([`headers`]), and what a module declares to the server ([`module`]: routes,
//! commands, settings, services). The server (app/server) and the module crates build their
//! routes on it; it names no module.

pub mod auth;
pub mod body;
pub mod error;
pub mod headers;
pub mod module;
pub mod range;

pub use auth::{Auth, Via};
pub use error::ServerError;
pub use module::{CliCommand, Section, ServerModule};

/// Runs blocking kernel work (database, files) on actix's blocking pool, off the async
/// workers; a cancelled task is an internal error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, wendelin_core::CoreError> + Send + 'static,
) -> Result<T, ServerError> {
    on_pool(f).await
}

/// [`blocking`] for work that fails with the server's own errors (rendering, parsing).
pub async fn blocking_http<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    on_pool(f).await
}

async fn on_pool<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ServerError>
where
    T: Send + 'static,
    E: Into<ServerError> + Send + 'static,
{
    actix_web::web::block(f)
        .await
        .map_err(|e| ServerError::Internal(format!("blocking task failed: {e}")))?
        .map_err(Into::into)
}
