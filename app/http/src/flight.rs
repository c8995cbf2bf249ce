//! Single flight for reads: concurrent requests that ask the same read at the same change
//! generation ([`wendelin_core::generation`]) run it once, behind the read gate
//! ([`crate::blocking_read`]), and share its result.
//!
//! Sound only for reads computed from the database alone (no full-text search, whose index
//! follows commits by about a second, nor data kept outside the database) whose key holds
//! everything the result depends on besides the data (who asks, what is asked), and when
//! every request reads the generation itself, before it joins: a request that joins a
//! read in progress read the same generation as the one running it, which read it before
//! reading anything, so the shared result is no older than what the request would have
//! read on its own. Nothing is kept once the read ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use wendelin_core::Portal;

use crate::ServerError;

/// How a request got its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// It ran the read (alone, or for others too).
    Miss,
    /// It waited for another request's read.
    Shared,
}

impl Got {
    /// The value of the `X-Single-Flight` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Got::Miss => "miss",
            Got::Shared => "shared",
        }
    }
}

/// What a flight ends with: pending, or the result to share (`None`: nothing to share, an
/// error or a leader that went away; waiters read on their own).
type State<T> = Option<Option<T>>;

type Key = (String, i64);

/// The reads in progress, by key and generation.
pub struct Flights<T> {
    map: Mutex<HashMap<Key, Arc<watch::Sender<State<T>>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// The leader's hold on its flight: ends it on drop (unshared if not published).
struct Lead<'a, T> {
    flights: &'a Flights<T>,
    key: Key,
    sender: Arc<watch::Sender<State<T>>>,
}

impl<T> Lead<'_, T> {
    fn end(&self, value: Option<T>) {
        {
            let mut map = self.flights.lock();
            if map
                .get(&self.key)
                .is_some_and(|s| Arc::ptr_eq(s, &self.sender))
            {
                map.remove(&self.key);
            }
        }
        self.sender.send_if_modified(|state| {
            if state.is_some() {
                return false;
            }
            *state = Some(value);
            true
        });
    }
}

impl<T> Drop for Lead<'_, T> {
    fn drop(&mut self) {
        self.end(None);
    }
}

impl<T> Flights<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<watch::Sender<State<T>>>>> {
        // One insert or remove at a time: consistent after any panic.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Runs `read` for `key` at `generation` (read by this request before calling), or
    /// waits for the same read already running and takes its result.
    pub async fn run(
        &self,
        portal: &Portal,
        key: String,
        generation: i64,
        read: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
    ) -> (Result<T, ServerError>, Got) {
        let key = (key, generation);
        let joined = {
            let mut map = self.lock();
            match map.get(&key) {
                Some(sender) => Err(sender.subscribe()),
                None => {
                    let sender = Arc::new(watch::Sender::new(None));
                    map.insert(key.clone(), sender.clone());
                    Ok(sender)
                }
            }
        };
        match joined {
            Ok(sender) => {
                let lead = Lead {
                    flights: self,
                    key,
                    sender,
                };
                let result = crate::blocking_read(portal, read).await;
                lead.end(result.as_ref().ok().cloned());
                (result, Got::Miss)
            }
            Err(mut waiting) => {
                let shared = waiting
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|state| state.clone().flatten());
                match shared {
                    Some(value) => (Ok(value), Got::Shared),
                    None => (crate::blocking_read(portal, read).await, Got::Miss),
                }
            }
        }
    }
}
