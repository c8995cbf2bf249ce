//! Activities (ERP5's CMFActivities): method calls on documents queued in the database and
//! run in the background by workers in every server process.
//!
//! An activity runs `method` on `path` as the user who queued it, through the same
//! dispatcher and permission checks as a request. Lower `priority` runs first; an activity
//! never starts before `not_before`; two activities sharing a serialization `tag` never run
//! at the same time (a claim inserts the tag into `activity_tags`, which admits one holder).
//! Workers claim with `FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite the write lock
//! serialises claims. A failure is retried with a growing delay (1 s, 2 s, 4 s, … at most
//! 5 min); after `max_attempts` it is parked as `failed`, with its error, until retried.
//! Delivery is at least once: a worker that dies mid-run leaves a claim that is released
//! after the claim timeout, and the activity runs again.

use chrono::{Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::access::security::User;
use crate::model::error::{CoreError, CoreResult};
use crate::model::schema::{activities, activity_runs, activity_tags};
use crate::run::portal::Portal;
use crate::store::after_write::Written;
use crate::store::db::DbConnection;
use crate::store::document::format_time;
use crate::store::sql::{Bind, Statement};

/// How an activity is queued.
#[derive(Debug, Clone)]
pub struct Activate {
    /// Lower runs first (default 0).
    pub priority: i32,
    /// Serialization tag: activities sharing it never run at once.
    pub tag: Option<String>,
    /// Do not start before this many seconds from now.
    pub delay_seconds: i64,
    /// Attempts before the activity is parked as failed.
    pub max_attempts: i32,
}

impl Default for Activate {
    fn default() -> Self {
        Activate {
            priority: 0,
            tag: None,
            delay_seconds: 0,
            max_attempts: 5,
        }
    }
}

/// The kernel's own activity queued when a document whose type keeps data outside the
/// database is deleted (args: `uid`, `portal_type`): runs the type's
/// [`crate::model::types::OnDelete`] hook instead of a method of the (gone) document.
pub const PURGE_METHOD: &str = "_purgeDeletedData";

/// How long a claim holds before a silent worker is presumed dead.
pub const CLAIM_TIMEOUT_SECONDS: i64 = 600;

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// Largest JSON text of one activity's arguments.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;
/// Longest delay an activity may be queued with (30 days).
pub const MAX_DELAY_SECONDS: i64 = 30 * 24 * 3600;
/// Priorities accepted (lower runs first).
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -100..=100;
/// Most attempts an activity may be given.
pub const MAX_ATTEMPTS: i32 = 20;
/// Longest method name or serialization tag, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Refuses what no activity may be queued with: every bound above.
fn check_request(method: &str, args: &Map<String, Value>, options: &Activate) -> CoreResult<()> {
    if method.is_empty()
        || method.chars().count() > MAX_NAME_CHARS
        || !method
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(CoreError::Invalid(format!(
            "'{method}' is not a method name (letters, digits and '_', at most {MAX_NAME_CHARS})"
        )));
    }
    if !(1..=MAX_ATTEMPTS).contains(&options.max_attempts) {
        return Err(CoreError::Invalid(format!(
            "max_attempts must be between 1 and {MAX_ATTEMPTS}"
        )));
    }
    if !PRIORITY_RANGE.contains(&options.priority) {
        return Err(CoreError::Invalid(format!(
            "priority must be between {} and {}",
            PRIORITY_RANGE.start(),
            PRIORITY_RANGE.end()
        )));
    }
    if !(0..=MAX_DELAY_SECONDS).contains(&options.delay_seconds) {
        return Err(CoreError::Invalid(format!(
            "delay_seconds must be between 0 and {MAX_DELAY_SECONDS} (30 days)"
        )));
    }
    if options
        .tag
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.chars().count() > MAX_NAME_CHARS)
    {
        return Err(CoreError::Invalid(format!(
            "a tag has 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    let size = Value::Object(args.clone()).to_string().len();
    if size > MAX_ARGS_BYTES {
        return Err(CoreError::Invalid(format!(
            "the activity's arguments take {size} bytes as JSON; at most {MAX_ARGS_BYTES} are accepted"
        )));
    }
    Ok(())
}

/// Queues `method(args)` on `doc` for `user`, who must be logged in and hold, now, the
/// permission the method declares (so nobody queues work they could not do themselves;
/// it is checked again when the activity runs). Call it inside the transaction that
/// decided it. Returns the activity id.
pub fn activate_checked(
    conn: &mut DbConnection,
    registry: &crate::model::types::Registry,
    user: &User,
    doc: &crate::store::document::Document,
    method: &str,
    args: &Map<String, Value>,
    options: &Activate,
) -> CoreResult<i64> {
    if user.login.is_none() {
        return Err(CoreError::Unauthorized("log in to queue activities".into()));
    }
    check_request(method, args, options)?;
    let found = crate::run::dispatch::resolve(conn, registry, doc, method)?
        .ok_or_else(|| CoreError::NotFound(format!("/{} has no method '{method}'", doc.path)))?;
    match &found.target {
        crate::run::dispatch::Target::Method(m) => {
            crate::access::security::check(conn, registry, user, doc, m.permission())?;
        }
        crate::run::dispatch::Target::Value(_) => {
            return Err(CoreError::Invalid(format!(
                "'{method}' is a property of /{}, not a method to queue",
                doc.path
            )))
        }
    }
    activate(conn, user.actor_login(), &doc.path, method, args, options)
}

/// Queues `method(args)` on the document at `path`, to run as `actor`, without any
/// permission check (the kernel's own activities); call it inside the transaction that
/// decided it. Returns the activity id.
pub fn activate(
    conn: &mut DbConnection,
    actor: &str,
    path: &str,
    method: &str,
    args: &Map<String, Value>,
    options: &Activate,
) -> CoreResult<i64> {
    check_request(method, args, options)?;
    let at = now();
    // Idle workers of this process start on it as soon as it commits.
    crate::store::db::signal_on_commit();
    diesel::insert_into(activities::table)
        .values((
            activities::path.eq(path.trim_matches('/')),
            activities::method.eq(method),
            activities::args.eq(Value::Object(args.clone()).to_string()),
            activities::actor.eq(actor),
            activities::priority.eq(options.priority),
            activities::tag.eq(&options.tag),
            activities::not_before.eq(at + Duration::seconds(options.delay_seconds)),
            activities::state.eq("queued"),
            activities::max_attempts.eq(options.max_attempts),
            activities::creation_date.eq(at),
        ))
        .returning(activities::id)
        .get_result(conn)
        .map_err(CoreError::from)
}

/// Releases the claims of the workers whose id starts with `prefix` (queued again, their
/// tags freed): what a process that knows those workers dead — e.g. a server restarted
/// on the address they served — does at start-up rather than wait for the claim timeout.
/// Returns how many activities were released.
pub fn release_claims(conn: &mut DbConnection, prefix: &str) -> CoreResult<usize> {
    let pattern = format!(
        "{}%",
        prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let ids: Vec<i64> = activities::table
        .filter(activities::state.eq("running"))
        .filter(activities::claimed_by.like(&pattern).escape('\\'))
        .select(activities::id)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(activity_tags::table.filter(activity_tags::activity_id.eq_any(&ids)))
        .execute(conn)?;
    diesel::update(activities::table.filter(activities::id.eq_any(&ids)))
        .set((
            activities::state.eq("queued"),
            activities::claimed_by.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(ids.len())
}

/// Whether `method` is queued (not yet claimed) on the document at `path`: what a module
/// asks before queuing a run that one already queued would do as well.
pub fn is_queued(conn: &mut DbConnection, path: &str, method: &str) -> CoreResult<bool> {
    let n: i64 = activities::table
        .filter(activities::path.eq(path.trim_matches('/')))
        .filter(activities::method.eq(method))
        .filter(activities::state.eq("queued"))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// An activity a worker has claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Id.
    pub id: i64,
    /// Document path.
    pub path: String,
    /// Method name.
    pub method: String,
    /// Arguments.
    pub args: Map<String, Value>,
    /// Login to run as.
    pub actor: String,
    /// Serialization tag.
    pub tag: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Claims the next runnable activity for `worker`; the caller holds a write transaction.
pub fn claim(conn: &mut DbConnection, worker: &str) -> CoreResult<Option<Claimed>> {
    let at = now();
    let stale = at - Duration::seconds(CLAIM_TIMEOUT_SECONDS);
    // Claims of workers that went silent are released (at-least-once delivery).
    diesel::update(
        activities::table
            .filter(activities::state.eq("running"))
            .filter(activities::claimed_at.lt(stale)),
    )
    .set((
        activities::state.eq("queued"),
        activities::claimed_by.eq(None::<String>),
    ))
    .execute(conn)?;
    diesel::delete(activity_tags::table.filter(activity_tags::claimed_at.lt(stale)))
        .execute(conn)?;
    let lock = match conn {
        DbConnection::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        DbConnection::Sqlite(_) => "",
    };
    let candidates: Vec<i64> = Statement {
        sql: format!(
            "SELECT id FROM activities WHERE state = 'queued' AND not_before <= ? ORDER BY priority, id LIMIT 50{lock}"
        ),
        binds: vec![Bind::Timestamp(at)],
    }
    .query()
    .load::<Candidate>(conn)?
    .into_iter()
    .map(|c| c.id)
    .collect();
    for id in candidates {
        let row: (String, String, String, String, Option<String>, i32, i32) = activities::table
            .find(id)
            .select((
                activities::path,
                activities::method,
                activities::args,
                activities::actor,
                activities::tag,
                activities::attempts,
                activities::max_attempts,
            ))
            .first(conn)?;
        if let Some(tag) = &row.4 {
            // One holder per tag: a concurrent claim of the same tag inserts nothing.
            let got = Statement {
                sql: "INSERT INTO activity_tags (tag, activity_id, claimed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
                    .into(),
                binds: vec![Bind::Text(Some(tag.clone())), Bind::Int(Some(id)), Bind::Timestamp(at)],
            }
            .query()
            .execute(conn)?;
            if got == 0 {
                continue;
            }
        }
        diesel::update(activities::table.find(id))
            .set((
                activities::state.eq("running"),
                activities::claimed_by.eq(worker),
                activities::claimed_at.eq(at),
                activities::attempts.eq(activities::attempts + 1),
            ))
            .execute(conn)?;
        let args = match serde_json::from_str(&row.2) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        return Ok(Some(Claimed {
            id,
            path: row.0,
            method: row.1,
            args,
            actor: row.3,
            tag: row.4,
            attempts: row.5 + 1,
            max_attempts: row.6,
        }));
    }
    Ok(None)
}

/// Seconds before retry number `attempts` + 1.
pub fn backoff_seconds(attempts: i32) -> i64 {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    (1i64 << exp).min(300)
}

/// Records the end of a run: done activities disappear, failures are retried later or
/// parked; the tag is released either way.
pub fn finish(
    conn: &mut DbConnection,
    claimed: &Claimed,
    worker: &str,
    started: NaiveDateTime,
    outcome: Result<(), String>,
) -> CoreResult<()> {
    let at = now();
    diesel::insert_into(activity_runs::table)
        .values((
            activity_runs::activity_id.eq(claimed.id),
            activity_runs::tag.eq(&claimed.tag),
            activity_runs::worker.eq(worker),
            activity_runs::started.eq(started),
            activity_runs::finished.eq(at),
            activity_runs::ok.eq(outcome.is_ok()),
            activity_runs::error.eq(outcome.as_ref().err()),
        ))
        .execute(conn)?;
    if let Some(tag) = &claimed.tag {
        diesel::delete(
            activity_tags::table
                .filter(activity_tags::tag.eq(tag))
                .filter(activity_tags::activity_id.eq(claimed.id)),
        )
        .execute(conn)?;
    }
    match outcome {
        Ok(()) => {
            diesel::delete(activities::table.find(claimed.id)).execute(conn)?;
        }
        Err(error) if claimed.attempts >= claimed.max_attempts => {
            tracing::warn!(id = claimed.id, %error, "activity parked after its last attempt");
            diesel::update(activities::table.find(claimed.id))
                .set((
                    activities::state.eq("failed"),
                    activities::claimed_by.eq(None::<String>),
                    activities::last_error.eq(error),
                ))
                .execute(conn)?;
        }
        Err(error) => {
            diesel::update(activities::table.find(claimed.id))
                .set((
                    activities::state.eq("queued"),
                    activities::claimed_by.eq(None::<String>),
                    activities::not_before
                        .eq(at + Duration::seconds(backoff_seconds(claimed.attempts))),
                    activities::last_error.eq(error),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Claims and runs one activity; returns whether there was one.
pub fn run_one(portal: &Portal, worker: &str) -> CoreResult<bool> {
    let Some(claimed) = portal.db.write(|c| claim(c, worker))? else {
        return Ok(false);
    };
    let started = now();
    let outcome = execute(portal, &claimed);
    portal
        .db
        .write(|c| finish(c, &claimed, worker, started, outcome.clone()))?;
    Ok(true)
}

fn execute(portal: &Portal, claimed: &Claimed) -> Result<(), String> {
    if claimed.method == PURGE_METHOD && claimed.actor == "system" {
        return purge(portal, claimed);
    }
    let user = match claimed.actor.as_str() {
        "" => User::anonymous(),
        "system" => User::system(),
        login => portal
            .db
            .read(|c| crate::access::users::load_user(c, login))
            .map_err(|e| format!("cannot run as {login}: {e}"))?,
    };
    portal
        .call(&user, &claimed.path, &claimed.method, &claimed.args, true)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn purge(portal: &Portal, claimed: &Claimed) -> Result<(), String> {
    let uid = claimed.args.get("uid").and_then(Value::as_i64);
    let portal_type = claimed.args.get("portal_type").and_then(Value::as_str);
    let (Some(uid), Some(portal_type)) = (uid, portal_type) else {
        return Err("a purge activity needs `uid` and `portal_type`".into());
    };
    let Some(hook) = portal
        .registry
        .portal_type(portal_type)
        .and_then(|t| t.on_delete.clone())
    else {
        return Err(format!("portal type '{portal_type}' has no delete hook"));
    };
    hook.purge(portal, uid).map_err(|e| e.to_string())
}

/// Runs activities until none is runnable now; returns how many ran.
pub fn run_until_idle(portal: &Portal, worker: &str) -> CoreResult<usize> {
    let mut n = 0;
    while run_one(portal, worker)? {
        n += 1;
    }
    Ok(n)
}

/// Starts `count` worker threads. An idle worker looks again when a transaction of this
/// process that queued an activity commits ([`activate`] signals it), and every `poll`
/// (activities queued by other processes, delays that ran out).
pub fn spawn_workers(
    portal: Portal,
    node: &str,
    count: usize,
    poll: std::time::Duration,
) -> CoreResult<()> {
    for i in 0..count {
        let portal = portal.clone();
        let worker = format!("{node}/{i}");
        std::thread::Builder::new()
            .name(format!("activity-{i}"))
            .spawn(move || loop {
                // Read before looking, so a commit between the look and the wait wakes it.
                let seen = crate::store::db::signals();
                match run_one(&portal, &worker) {
                    Ok(true) => {}
                    Ok(false) => crate::store::db::wait_for_signal(seen, poll),
                    Err(e) => {
                        tracing::error!(error = %e, %worker, "activity worker failed; pausing");
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
            })?;
    }
    Ok(())
}

/// An activity as operators see it.
#[derive(Debug, Serialize)]
pub struct ActivityInfo {
    /// Id.
    pub id: i64,
    /// Document path.
    pub path: String,
    /// Method.
    pub method: String,
    /// queued, running or failed.
    pub state: String,
    /// Priority.
    pub priority: i32,
    /// Serialization tag.
    pub tag: Option<String>,
    /// Runs so far.
    pub attempts: i32,
    /// Last error.
    pub last_error: Option<String>,
    /// Earliest next start (UTC).
    pub not_before: String,
    /// Who queued it.
    pub actor: String,
}

/// Activities, optionally in one state, oldest first.
pub fn list(
    conn: &mut DbConnection,
    state: Option<&str>,
    limit: i64,
) -> CoreResult<Vec<ActivityInfo>> {
    let mut q = activities::table.into_boxed();
    if let Some(s) = state {
        q = q.filter(activities::state.eq(s.to_owned()));
    }
    type Row = (
        i64,
        String,
        String,
        String,
        i32,
        Option<String>,
        i32,
        Option<String>,
        NaiveDateTime,
        String,
    );
    let rows: Vec<Row> = q
        .order(activities::id.asc())
        .limit(limit)
        .select((
            activities::id,
            activities::path,
            activities::method,
            activities::state,
            activities::priority,
            activities::tag,
            activities::attempts,
            activities::last_error,
            activities::not_before,
            activities::actor,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| ActivityInfo {
            id: r.0,
            path: r.1,
            method: r.2,
            state: r.3,
            priority: r.4,
            tag: r.5,
            attempts: r.6,
            last_error: r.7,
            not_before: format_time(&r.8),
            actor: r.9,
        })
        .collect())
}

/// Puts a parked (failed) activity back in the queue with fresh attempts.
pub fn retry(conn: &mut DbConnection, id: i64) -> CoreResult<()> {
    let n = diesel::update(
        activities::table
            .find(id)
            .filter(activities::state.eq("failed")),
    )
    .set((
        activities::state.eq("queued"),
        activities::attempts.eq(0),
        activities::not_before.eq(now()),
    ))
    .execute(conn)?;
    if n == 0 {
        return Err(CoreError::NotFound(format!("no failed activity {id}")));
    }
    Ok(())
}

/// The activities' after-write hook: a deleted document whose type keeps data outside the
/// database ([`OnDelete`](crate::model::types::OnDelete)) gets the activity that removes
/// it, which runs once the deleting transaction has committed.
pub(crate) fn after_write(
    conn: &mut DbConnection,
    registry: &crate::model::types::Registry,
    written: &Written<'_>,
) -> CoreResult<()> {
    let Written::Deleted {
        uid,
        portal_type,
        path,
    } = *written
    else {
        return Ok(());
    };
    if registry
        .portal_type(portal_type)
        .is_none_or(|t| t.on_delete.is_none())
    {
        return Ok(());
    }
    let mut args = Map::new();
    args.insert("uid".into(), uid.into());
    args.insert("portal_type".into(), portal_type.into());
    activate(
        conn,
        "system",
        path,
        PURGE_METHOD,
        &args,
        &Activate {
            // Lets writes that were in flight when the document went finish first.
            delay_seconds: 5,
            tag: Some(format!("purge:{uid}")),
            ..Default::default()
        },
    )?;
    Ok(())
}
