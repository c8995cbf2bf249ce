//! The Wendelin object server kernel: portal types, documents, containment, relations,
//! acquisition-style dispatch and storage on SQLite or PostgreSQL.
//!
//! Invariant: the kernel names no module; modules describe themselves with
//! [`types::Module`] and `app/server` assembles the [`types::Registry`].

pub mod activity;
pub mod base;
pub mod bulk;
pub mod catalog;
pub mod db;
pub mod dispatch;
pub mod document;
pub mod error;
pub mod fulltext;
pub mod generation;
pub mod portal;
pub mod property;
pub mod query;
pub mod schema;
pub mod security;
pub mod types;
pub mod users;
pub mod workflow;

pub use dispatch::{Call, Method, MethodOutput, Mutating, Protected, Step};
pub use document::{Document, DocumentPatch, NewDocument};
pub use error::{CoreError, CoreResult};
pub use portal::{Portal, Traversal};
pub use security::{Permission, User};
pub use types::{Module, PortalType, PropertyDef, PropertyType, Registry};
pub use workflow::{Transition, Workflow};
