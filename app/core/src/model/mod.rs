//! Layer 1, model: what things are — portal types, properties, the database schema, query
//! syntax, errors, and the method traits a portal type holds. Imports no other layer.

pub mod catalog_schema;
pub mod connection;
pub mod document;
pub mod error;
pub mod method;
pub mod permission;
pub mod property;
pub mod query;
pub mod schema;
pub mod types;
pub mod workflow;
