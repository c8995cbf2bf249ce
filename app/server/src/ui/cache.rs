//! Rendered UI pages, kept per session and request and reused while the database's change
//! generation ([`wendelin_core::generation`]) is the one read before they were rendered.
//!
//! Why it is safe:
//! - never shows what the user may not see: the key holds the session (so the same user,
//!   CSRF token and login in the chrome), the user's global roles and groups as resolved
//!   for this request, and the exact path and query; a page is only ever served to the
//!   session it was rendered for;
//! - never stale after a committed change: every change a page can show (documents,
//!   relations, local roles, workflow states and history, users, groups, security sets)
//!   bumps the generation in its own transaction, in whichever process. The generation is
//!   read before the page is rendered, so a page is tagged with a generation no newer than
//!   the data it shows, and any later commit makes it miss;
//! - only pages computed from the database alone are cached: no full-text search (the
//!   index follows commits by about a second), no module tabs (their data lives outside
//!   the database, e.g. a stream's size), nothing shown with a one-time flash message.
//!
//! The cache is bounded ([`MAX_ENTRIES`] pages, [`MAX_BYTES`] in total; full means
//! emptied) and process-local.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;

/// Pages kept at most.
pub const MAX_ENTRIES: usize = 4096;
/// Bytes of pages kept at most.
pub const MAX_BYTES: usize = 64 << 20;

/// A rendered page and the generation it was rendered at.
#[derive(Clone)]
pub struct Page {
    /// Change generation read before rendering.
    pub generation: i64,
    /// Response status.
    pub status: StatusCode,
    /// HTML.
    pub body: Bytes,
    /// Canonical URL for htmx's address bar, if any.
    pub url: Option<String>,
}

#[derive(Default)]
struct Inner {
    pages: HashMap<String, Page>,
    bytes: usize,
}

fn inner() -> &'static Mutex<Inner> {
    static CACHE: OnceLock<Mutex<Inner>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The cache key of a request: session, the user's roles and groups, path and query.
pub fn key(session_token: &str, user: &wendelin_core::User, path: &str, query: &str) -> String {
    let roles: Vec<&str> = user.roles.iter().map(String::as_str).collect();
    format!(
        "{session_token}\n{}\n{}\n{path}\n{query}",
        roles.join(","),
        user.groups.join(",")
    )
}

/// The page kept for `key` if it was rendered at `generation`.
pub fn lookup(key: &str, generation: i64) -> Option<Page> {
    let cache = inner().lock().ok()?;
    cache
        .pages
        .get(key)
        .filter(|p| p.generation == generation)
        .cloned()
}

/// Keeps `page` for `key` (replacing an older one).
pub fn store(key: String, page: Page) {
    let Ok(mut cache) = inner().lock() else {
        return;
    };
    let size = page.body.len() + key.len();
    if size > MAX_BYTES / 16 {
        return;
    }
    if cache.pages.len() >= MAX_ENTRIES || cache.bytes + size > MAX_BYTES {
        cache.pages.clear();
        cache.bytes = 0;
    }
    if let Some(old) = cache.pages.insert(key.clone(), page) {
        cache.bytes = cache.bytes.saturating_sub(old.body.len() + key.len());
    }
    cache.bytes += size;
}

/// Drops every page of a session (at logout).
pub fn forget_session(session_token: &str) {
    if let Ok(mut cache) = inner().lock() {
        let prefix = format!("{session_token}\n");
        cache.pages.retain(|k, _| !k.starts_with(&prefix));
        cache.bytes = cache
            .pages
            .iter()
            .map(|(k, p)| k.len() + p.body.len())
            .sum();
    }
}
