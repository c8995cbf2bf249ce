//! `ArrayError`, this crate's one error type; it becomes a kernel [`CoreError`] at the
//! crate boundary, so the server maps it to HTTP like any other kernel error.

use wendelin_core::CoreError;

/// Anything an array operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ArrayError {
    /// The request is wrong (dtype or shape mismatch, region out of bounds, malformed npy);
    /// nothing was written.
    #[error("{0}")]
    BadRequest(String),
    /// The array's storage is missing.
    #[error("{0}")]
    NotFound(String),
    /// Storage or codec failure.
    #[error("array storage: {0}")]
    Storage(String),
    /// Local i/o.
    #[error("array i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ArrayError> for CoreError {
    fn from(e: ArrayError) -> CoreError {
        match e {
            ArrayError::BadRequest(m) => CoreError::BadRequest(m),
            ArrayError::NotFound(m) => CoreError::NotFound(m),
            ArrayError::Storage(m) => CoreError::Internal(m),
            ArrayError::Io(e) => CoreError::Io(e),
        }
    }
}

impl From<zarrs::array::ArrayError> for ArrayError {
    fn from(e: zarrs::array::ArrayError) -> ArrayError {
        ArrayError::Storage(e.to_string())
    }
}

impl From<zarrs::storage::StorageError> for ArrayError {
    fn from(e: zarrs::storage::StorageError) -> ArrayError {
        ArrayError::Storage(e.to_string())
    }
}

impl From<zarrs::array::ArrayCreateError> for ArrayError {
    fn from(e: zarrs::array::ArrayCreateError) -> ArrayError {
        ArrayError::Storage(e.to_string())
    }
}

/// Shorthand.
pub type ArrayResult<T> = Result<T, ArrayError>;
