//! Rendered UI pages, kept per session and request and reused while the database's change
//! generation ([`wendelin_core::generation`]) is the one read before they were rendered;
//! and the single flight that renders a page once for all the requests that miss it
//! together.
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
//! Single flight ([`single_flight`]): requests that miss the same key at the same
//! generation wait for one render and share it, instead of each rendering the page at
//! once after every write (a stampede that took every database connection). Sharing
//! keeps the rules above: the key is the cache key (same session, roles, groups, path and
//! query) and the generation is the one each request read itself, so a shared page is
//! exactly what the request would have rendered. A live page ([`super::Out::Live`], shown
//! in part from data outside the database, which moves no generation) is shared only with
//! the requests that arrived before its render started, so it never predates a request;
//! it is never kept. The `X-Page-Cache` header says `hit`, `shared` or `miss` (rendered
//! for this request).
//!
//! The cache is bounded ([`MAX_ENTRIES`] pages expected, [`MAX_BYTES`] in total;
//! quick_cache evicts the coldest pages past that) and process-local.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use tokio::sync::watch;
use wendelin_core::Portal;

use super::Out;
use crate::error::ServerError;

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

/// Where a page came from: the `X-Page-Cache` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From the page cache.
    Hit,
    /// Rendered once for several requests, this one among those that waited.
    Shared,
    /// Rendered for this request.
    Miss,
}

impl Source {
    /// The header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hit => "hit",
            Source::Shared => "shared",
            Source::Miss => "miss",
        }
    }
}

/// What a flight ends with.
#[derive(Clone)]
enum Outcome {
    /// Still rendering.
    Pending,
    /// A page for every waiter; a `live` one only for those that came before its render
    /// started (the others take the flight's successor).
    Page { page: Page, live: bool },
    /// Nothing to share (an error page, a redirect, a status other than 200): each waiter
    /// renders its own.
    Own,
    /// The leader went away before rendering (its request was dropped): waiters try again.
    Abandoned,
}

/// One render for a key and generation: in progress, or (a live page's successor) waiting
/// for one of its waiters to claim it.
struct Flight {
    /// Someone leads it (every flight is created claimed, except a successor).
    claimed: AtomicBool,
    /// Set by the leader right before its render reads anything.
    started: AtomicBool,
    /// Waiters that joined after the render started (counted under the map's lock).
    late: AtomicUsize,
    /// The flight the late waiters take when the page is live (created at publication).
    next: OnceLock<Arc<Flight>>,
    outcome: watch::Sender<Outcome>,
}

impl Flight {
    fn new(claimed: bool) -> Arc<Flight> {
        Arc::new(Flight {
            claimed: AtomicBool::new(claimed),
            started: AtomicBool::new(false),
            late: AtomicUsize::new(0),
            next: OnceLock::new(),
            outcome: watch::Sender::new(Outcome::Pending),
        })
    }
}

type FlightKey = (String, i64);

/// Flights kept in the map at most before the successors nobody claimed (their waiters
/// all went away) are dropped.
const MAX_FLIGHTS: usize = 1024;

fn flights() -> &'static Mutex<HashMap<FlightKey, Arc<Flight>>> {
    static FLIGHTS: OnceLock<Mutex<HashMap<FlightKey, Arc<Flight>>>> = OnceLock::new();
    FLIGHTS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock_flights() -> std::sync::MutexGuard<'static, HashMap<FlightKey, Arc<Flight>>> {
    // The map is consistent after any panic (one insert or remove), so a poisoned lock is
    // still usable.
    flights().lock().unwrap_or_else(|e| e.into_inner())
}

/// The leader's hold on its flight: [`Lead::publish`] ends it; dropped unpublished (the
/// request went away before the render ran), it ends the flight as abandoned.
struct Lead {
    key: FlightKey,
    flight: Arc<Flight>,
    done: bool,
}

impl Lead {
    fn start(&self) {
        self.flight.started.store(true, Ordering::SeqCst);
    }

    /// Ends the flight with `outcome` and wakes its waiters.
    fn publish(mut self, outcome: Outcome) {
        self.end(outcome);
    }

    /// Takes the flight out of the map — a request arriving from now on finds the page
    /// kept, or starts a flight of its own — except for a live page that waiters joined
    /// too late for: its successor takes the flight's place, and those waiters take it.
    fn end(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        {
            let mut map = lock_flights();
            let current = map
                .get(&self.key)
                .is_none_or(|f| Arc::ptr_eq(f, &self.flight));
            let live = matches!(outcome, Outcome::Page { live: true, .. });
            let successor = (live && self.flight.late.load(Ordering::SeqCst) > 0)
                .then(|| self.flight.next.get_or_init(|| Flight::new(false)).clone());
            match successor {
                Some(next) if current => {
                    map.insert(self.key.clone(), next);
                }
                Some(_) => {}
                None if current => {
                    map.remove(&self.key);
                }
                None => {}
            }
        }
        self.flight.outcome.send_replace(outcome);
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.end(Outcome::Abandoned);
    }
}

/// A request's part in a flight.
enum Part {
    /// Found kept after all (rendered and kept since the request's own lookup).
    Kept(Page),
    /// Renders the page for everyone.
    Lead(Lead),
    /// Waits for another request's render; `late`: the render had begun when it joined.
    Wait(Arc<Flight>, bool),
}

/// Leads `flight` if nobody does yet.
fn claim(flight: &Arc<Flight>, key: &FlightKey) -> Option<Lead> {
    (!flight.claimed.swap(true, Ordering::SeqCst)).then(|| Lead {
        key: key.clone(),
        flight: flight.clone(),
        done: false,
    })
}

fn join(key: &FlightKey) -> Part {
    let mut map = lock_flights();
    // Under the lock: a leader keeps its page before it removes its flight, so a request
    // that finds no flight finds the page, if it was kept.
    if let Some(page) = lookup(&key.0, key.1) {
        return Part::Kept(page);
    }
    if let Some(flight) = map.get(key).cloned() {
        if let Some(lead) = claim(&flight, key) {
            return Part::Lead(lead);
        }
        let late = flight.started.load(Ordering::SeqCst);
        if late {
            flight.late.fetch_add(1, Ordering::SeqCst);
        }
        return Part::Wait(flight, late);
    }
    if map.len() >= MAX_FLIGHTS {
        map.retain(|_, f| f.claimed.load(Ordering::SeqCst));
    }
    let flight = Flight::new(true);
    map.insert(key.clone(), flight.clone());
    Part::Lead(Lead {
        key: key.clone(),
        flight,
        done: false,
    })
}

/// The part of a waiter that joined `flight` too late for its live page: in its successor,
/// which was created after the waiter came, so whose render is fresh for it.
fn follow(flight: &Flight, key: &FlightKey) -> Part {
    match flight.next.get() {
        Some(next) => match claim(next, key) {
            Some(lead) => Part::Lead(lead),
            None => Part::Wait(next.clone(), false),
        },
        None => join(key),
    }
}

/// Flights a request takes part in at most (successors, retries after an abandoned
/// flight) before it renders on its own.
const MAX_TRIES: usize = 4;

/// Serves a cacheable page that missed the cache ([`lookup`]) for `key` at `generation`:
/// the first request renders it with `render` behind the read gate
/// ([`wendelin_http::blocking_read`]) and keeps it (unless it is live); the requests that
/// miss the same key and generation meanwhile wait and take the same page (see the
/// module's documentation).
pub async fn single_flight(
    portal: &Portal,
    key: String,
    generation: i64,
    render: impl FnOnce() -> Result<Out, ServerError> + Send + 'static,
) -> (Result<Out, ServerError>, Source) {
    let key = (key, generation);
    let mut part = join(&key);
    let mut tries = 1;
    loop {
        match part {
            Part::Kept(page) => return (Ok(Out::Cached(page)), Source::Hit),
            Part::Lead(lead) => {
                let page_key = key.0.clone();
                let result = wendelin_http::blocking_read(portal, move || {
                    lead_render(lead, page_key, render)
                })
                .await;
                return (result, Source::Miss);
            }
            Part::Wait(flight, late) => {
                let mut outcome = flight.outcome.subscribe();
                let outcome = outcome
                    .wait_for(|o| !matches!(o, Outcome::Pending))
                    .await
                    .map(|o| o.clone())
                    .unwrap_or(Outcome::Abandoned);
                part = match outcome {
                    Outcome::Page { page, live: false } => {
                        return (Ok(Out::Cached(page)), Source::Shared)
                    }
                    Outcome::Page { page, live: true } if !late => {
                        return (Ok(Out::Live(Box::new(Out::Cached(page)))), Source::Shared)
                    }
                    Outcome::Page { .. } => follow(&flight, &key),
                    Outcome::Own => break,
                    Outcome::Abandoned | Outcome::Pending => join(&key),
                };
                tries += 1;
                if tries > MAX_TRIES && matches!(part, Part::Wait(..)) {
                    break;
                }
            }
        }
    }
    // Nothing to share, or waited too often: this request renders its own.
    (
        wendelin_http::blocking_read(portal, render).await,
        Source::Miss,
    )
}

/// The leader's render (on the blocking pool): a page of status 200 is kept (unless live)
/// and shared; anything else is the leader's alone.
fn lead_render(
    lead: Lead,
    key: String,
    render: impl FnOnce() -> Result<Out, ServerError>,
) -> Result<Out, ServerError> {
    lead.start();
    let generation = lead.key.1;
    let page = |body: String, url: Option<String>| Page {
        generation,
        status: StatusCode::OK,
        body: body.into(),
        url,
    };
    let out = match render() {
        Ok(out) => out,
        Err(e) => {
            lead.publish(Outcome::Own);
            return Err(e);
        }
    };
    match out {
        Out::Page(StatusCode::OK, body) => Ok(keep(lead, key, page(body, None))),
        Out::PageAt(StatusCode::OK, body, url) => Ok(keep(lead, key, page(body, Some(url)))),
        Out::Live(out) => match *out {
            Out::Page(StatusCode::OK, body) => Ok(live(lead, page(body, None))),
            Out::PageAt(StatusCode::OK, body, url) => Ok(live(lead, page(body, Some(url)))),
            other => {
                lead.publish(Outcome::Own);
                Ok(Out::Live(Box::new(other)))
            }
        },
        other => {
            lead.publish(Outcome::Own);
            Ok(other)
        }
    }
}

fn keep(lead: Lead, key: String, page: Page) -> Out {
    store(key, page.clone());
    lead.publish(Outcome::Page {
        page: page.clone(),
        live: false,
    });
    Out::Cached(page)
}

fn live(lead: Lead, page: Page) -> Out {
    lead.publish(Outcome::Page {
        page: page.clone(),
        live: true,
    });
    Out::Live(Box::new(Out::Cached(page)))
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
