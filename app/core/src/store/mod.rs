//! Layer 2, store: the database and the document rows in it. Imports only the model.

pub mod after_write;
pub mod db;
pub mod document;
pub mod files;
pub mod generation;
pub(crate) mod sql;
pub mod visible;
