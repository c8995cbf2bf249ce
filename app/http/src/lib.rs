//! What every module's HTTP routes share, written once: who is asking ([`auth::Auth`]),
//! the one error type and its mapping to HTTP ([`error::ServerError`]), running kernel
//! calls on the blocking pool ([`blocking`], and [`blocking_read`] for reads behind the
//! read gate), HTTP byte ranges ([`range`]), request bodies within limits and
//! back-pressure ([`body`]), the headers that keep browsers safe ([`headers`]), and what
//! a module declares to the server ([`module`]: routes, commands, settings, services).
//! The server (app/server) and the module crates build their
//! routes on it; it names no module.

pub mod auth;
pub mod body;
pub mod error;
pub mod flight;
pub mod headers;
pub mod module;
pub mod range;

pub use auth::{Auth, Via};
pub use error::ServerError;
pub use module::{CliCommand, Section, ServerModule};

use std::sync::OnceLock;

use wendelin_core::Portal;

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

/// Connections of the database pool that reads never take: writes (and the short reads
/// of authentication and the activity workers) always find one.
pub const KEPT_FOR_WRITES: u32 = 2;

/// How many reads [`blocking_read`] lets run at once for a pool of `pool_size`
/// connections on a machine of `cores` cores: all connections but [`KEPT_FOR_WRITES`],
/// and no more than the cores (at least two). Renders are CPU work: more of them at once
/// than there are cores only makes each slower and leaves a writer's request waiting for
/// a core behind them.
pub fn read_slots(pool_size: u32, cores: usize) -> usize {
    let connections = pool_size.saturating_sub(KEPT_FOR_WRITES).max(1) as usize;
    connections.min(cores.max(2))
}

/// The read gate: a fair (FIFO) semaphore of [`read_slots`] permits, sized by the first
/// portal that asks (a process serves one portal).
fn read_gate(portal: &Portal) -> &'static tokio::sync::Semaphore {
    static GATE: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    GATE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        tokio::sync::Semaphore::new(read_slots(portal.db.pool_size(), cores))
    })
}

/// [`blocking_http`] for read-only work (page renders, listings, catalog searches): at
/// most [`read_slots`] of them run at once, in the order they came; the others wait here,
/// on the async side, holding neither a blocking thread nor a database connection. Writes
/// use [`blocking`] / [`blocking_http`] and never wait for this gate, so a burst of reads
/// cannot take every connection of the pool and starve them.
pub async fn blocking_read<T: Send + 'static>(
    portal: &Portal,
    f: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    let permit = read_gate(portal)
        .acquire()
        .await
        .map_err(|e| ServerError::Internal(format!("read gate closed: {e}")))?;
    // The permit goes with the work: a request dropped while it runs (client gone) still
    // holds its connection until the work ends.
    on_pool(move || {
        let _permit = permit;
        f()
    })
    .await
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
