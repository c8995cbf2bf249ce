//! The kernel's one error type. Every fallible kernel function returns [`CoreError`];
//! `app/server` maps its kinds to HTTP statuses in a single place (`server::error`).

/// What went wrong in the kernel, by kind, so callers can map it to a status.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The named object does not exist (or must look as if it did not).
    #[error("not found: {0}")]
    NotFound(String),
    /// A write was based on a stale serial, or a uniqueness rule was broken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request was understood but its content breaks the schema.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The request itself is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A method exists but cannot be called this way.
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// No credentials, or wrong ones.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Known user, missing permission (or a workflow guard said no).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Too many failed logins: wait this many seconds.
    #[error("too many attempts: {0}")]
    Throttled(String, u64),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// No database connection could be had.
    #[error("database connection error: {0}")]
    Pool(String),
    /// Migrations could not be applied.
    #[error("migration error: {0}")]
    Migration(String),
    /// Local files could not be read or written.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A bug or an unexpected state; the message is for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// Maps unique-constraint violations to [`CoreError::Conflict`] with a readable message.
    pub(crate) fn from_write(err: diesel::result::Error, what: &str) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match err {
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                CoreError::Conflict(format!("{what} already exists ({})", info.message()))
            }
            Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                CoreError::Invalid(format!(
                    "{what} refers to a missing object ({})",
                    info.message()
                ))
            }
            other => CoreError::Database(other),
        }
    }
}

/// Kernel result alias.
pub type CoreResult<T> = Result<T, CoreError>;
