//! After-write hooks: how a document write reaches what depends on it — security sets,
//! catalog columns, the full-text outbox, the activity queue — without the store naming
//! those higher layers.
//!
//! Invariant: every write of a document row ([`crate::store::document`]) and every change
//! of its security set calls [`notify`], which runs the registered hooks in order, on the
//! same connection and so inside the writer's transaction; a hook's error fails the write
//! (and rolls the transaction back). The list is the kernel's own, registered once by the
//! run layer when a portal opens (`run::hooks`); bulk creation (`index::bulk`) writes the
//! same rows in batches instead.

use std::sync::OnceLock;

use crate::model::connection::DbConnection;
use crate::model::document::Document;
use crate::model::error::{CoreError, CoreResult};
use crate::model::permission::User;
use crate::model::types::Registry;

/// What was written.
#[derive(Debug, Clone, Copy)]
pub enum Written<'a> {
    /// A document was inserted, with its relations and its creator's Owner role.
    Created {
        /// The new document.
        doc: &'a Document,
    },
    /// A document's fields or properties changed.
    Updated {
        /// The document as it is now.
        doc: &'a Document,
        /// The document as it was before the change.
        before: &'a Document,
    },
    /// A workflow transition moved the document to another state.
    StateChanged {
        /// The document as it is now.
        doc: &'a Document,
    },
    /// The document's security set changed (who may View it).
    Viewers {
        /// The document.
        uid: i64,
    },
    /// A relation of `source` to `target` is being stored by `writer`; a hook may refuse
    /// it (the relation's old targets are already gone).
    Relation {
        /// Who writes it.
        writer: &'a User,
        /// The relation's name.
        name: &'a str,
        /// The document the relation points to.
        target: &'a Document,
    },
    /// A document is being deleted (a deleted document's sub-documents each get one).
    Deleted {
        /// Its uid, never reused.
        uid: i64,
        /// Its portal type.
        portal_type: &'a str,
        /// Its path.
        path: &'a str,
    },
}

/// A hook: runs after each write, in the writer's transaction.
pub type Hook = fn(&mut DbConnection, &Registry, &Written<'_>) -> CoreResult<()>;

static HOOKS: OnceLock<&'static [Hook]> = OnceLock::new();

/// Registers the hooks, in the order they run. The first registration wins: the list is
/// the kernel's, the same for every portal of the process.
pub fn register(hooks: &'static [Hook]) {
    HOOKS.get_or_init(|| hooks);
}

/// Runs every hook on `written`, in order; the first error fails the write.
pub fn notify(
    conn: &mut DbConnection,
    registry: &Registry,
    written: Written<'_>,
) -> CoreResult<()> {
    let hooks = HOOKS.get().ok_or_else(|| {
        CoreError::Internal("after-write hooks are not registered: open a Portal first".into())
    })?;
    for hook in hooks.iter() {
        hook(conn, registry, &written)?;
    }
    Ok(())
}
