//! The kernel's after-write hooks, in the order they run (see [`crate::store::after_write`]):
//! initial workflow states first (security depends on them), then the security set (which
//! the catalog counts and the full-text index filter by), the catalog columns, the
//! full-text outbox, and the activity that purges a deleted document's data.

use crate::store::after_write::{self, Hook};

const KERNEL: &[Hook] = &[
    crate::run::workflow::after_write,
    crate::access::security::after_write,
    crate::index::catalog::after_write,
    crate::index::fulltext::after_write,
    crate::run::activity::after_write,
];

/// Registers the kernel's hooks (idempotent); [`crate::run::portal::Portal::open`] calls it.
pub fn register() {
    after_write::register(KERNEL);
}
