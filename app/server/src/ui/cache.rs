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
//! The cache is bounded ([`MAX_ENTRIES`] pages expected, [`MAX_BYTES`] in total;
//! quick_cache evicts the coldest pages past that) and process-local.

use std::sync::OnceLock;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;

/// Pages expected at most (sizes the cache's table).
pub const MAX_ENTRIES: usize = 4096;
/// Bytes of pages (and their keys) kept at most.
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

/// A page weighs its bytes and its key's.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, Page> for Weight {
    fn weight(&self, key: &String, page: &Page) -> u64 {
        (key.len() + page.body.len()) as u64
    }
}

type Pages = quick_cache::sync::Cache<String, Page, Weight>;

/// Shards of the page cache: each holds a quarter of [`MAX_BYTES`], so any page
/// [`store`] accepts fits in its shard whatever the number of cores.
const SHARDS: usize = 4;

fn pages() -> &'static Pages {
    static CACHE: OnceLock<Pages> = OnceLock::new();
    CACHE.get_or_init(|| {
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(MAX_ENTRIES)
            .weight_capacity(MAX_BYTES as u64)
            .shards(SHARDS)
            .build();
        match options {
            Ok(options) => Pages::with_options(
                options,
                Weight,
                quick_cache::DefaultHashBuilder::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            // Not reached: every option above is set.
            Err(_) => Pages::with_weighter(MAX_ENTRIES, MAX_BYTES as u64, Weight),
        }
    })
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
    pages().get(key).filter(|p| p.generation == generation)
}

/// Keeps `page` for `key` (replacing an older one); a page bigger than a sixteenth of the
/// cache is not kept.
pub fn store(key: String, page: Page) {
    if page.body.len() + key.len() > MAX_BYTES / 16 {
        return;
    }
    pages().insert(key, page);
}

/// Drops every page of a session (at logout).
pub fn forget_session(session_token: &str) {
    let prefix = format!("{session_token}\n");
    pages().retain(|k, _| !k.starts_with(&prefix));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(generation: i64, bytes: usize) -> Page {
        Page {
            generation,
            status: StatusCode::OK,
            body: Bytes::from(vec![b'x'; bytes]),
            url: None,
        }
    }

    #[test]
    fn pages_count_for_their_generation_and_session_only() {
        let user = wendelin_core::User::authenticated("alice", ["Author".to_owned()], vec![]);
        let a = key("session-a", &user, "/ui/x", "");
        let b = key("session-b", &user, "/ui/x", "");
        store(a.clone(), page(7, 100));
        store(b.clone(), page(7, 100));
        assert!(lookup(&a, 7).is_some());
        assert!(lookup(&a, 8).is_none(), "a later generation misses");
        forget_session("session-a");
        assert!(lookup(&a, 7).is_none(), "logout drops the session's pages");
        assert!(lookup(&b, 7).is_some(), "other sessions keep theirs");
        let huge = key("session-c", &user, "/ui/x", "");
        store(huge.clone(), page(7, MAX_BYTES / 16 + 1));
        assert!(
            lookup(&huge, 7).is_none(),
            "a page over a sixteenth is not kept"
        );
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let user = wendelin_core::User::authenticated("bob", ["Author".to_owned()], vec![]);
        // Twice the budget in 1 MiB pages: the cache keeps at most its budget.
        let n = (2 * MAX_BYTES) >> 20;
        for i in 0..n {
            store(
                key("session-d", &user, &format!("/ui/{i}"), ""),
                page(1, 1 << 20),
            );
        }
        assert!(
            pages().weight() <= MAX_BYTES as u64,
            "{} bytes kept",
            pages().weight()
        );
        let last = key("session-d", &user, &format!("/ui/{}", n - 1), "");
        assert!(lookup(&last, 1).is_some(), "the newest page is kept");
    }
}
