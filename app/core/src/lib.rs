//! The Wendelin object server kernel: portal types, documents, containment, relations,
//! acquisition-style dispatch and storage on SQLite or PostgreSQL.
//!
//! Invariants: the kernel names no module; modules describe themselves with
//! [`types::Module`] and `app/server` assembles the [`types::Registry`]. The kernel is five
//! layers, [`model`] → [`store`] → [`access`] → [`index`] → [`run`], and a file names only
//! its own layer and those below (checked by `layers.rs`); document writes reach the
//! higher layers through the after-write hooks ([`store::after_write`]).

pub mod access;
pub mod index;
pub mod model;
pub mod run;
pub mod store;

#[cfg(test)]
mod layers;

// The crate's public paths from before the layers, kept for the crates built on it.
pub use access::{security, users};
pub use index::{bulk, catalog, fulltext};
pub use model::{error, property, query, schema, types};
pub use run::{activity, base, dispatch, portal, workflow};
pub use store::{db, document, generation};

pub use dispatch::{Call, Host, Method, MethodOutput, Mutating, OwnTransactions, Protected, Step};
pub use document::{Document, DocumentPatch, NewDocument};
pub use error::{CoreError, CoreResult};
pub use portal::{Portal, Traversal};
pub use security::{Permission, User};
pub use types::{Module, PortalType, PropertyDef, PropertyType, Registry};
pub use workflow::{Transition, Workflow};
