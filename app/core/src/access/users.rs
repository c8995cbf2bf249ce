//! Users who can log in: argon2id password hashes, global roles and groups, server-side
//! sessions, API tokens, and login throttling with growing delays.
//!
//! Secrets are never stored in clear: passwords as argon2id hashes, session and API
//! tokens as SHA-256 digests (they are 256-bit random values, so a fast hash suffices).

use std::collections::BTreeSet;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use chrono::{Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::access::security::{check_role, User};
use crate::model::error::{CoreError, CoreResult};
use crate::model::schema::{api_tokens, login_failures, sessions, user_groups, users};
use crate::store::db::DbConnection;

/// Hashes a password with argon2id and the crate's default cost (19 MiB, 2 passes,
/// 1 lane: OWASP's recommended minimum).
pub fn hash_password(password: &str) -> CoreResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoreError::Internal(format!("password hashing failed: {e}")))
}

/// Whether `password` matches the stored `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Whether a stored hash was made with other parameters than today's (then it is
/// rehashed at the next successful login).
pub fn needs_rehash(hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return true;
    };
    let current = Params::default();
    parsed.algorithm.as_str() != "argon2id"
        || Params::try_from(&parsed).map_or(true, |p| {
            p.m_cost() != current.m_cost()
                || p.t_cost() != current.t_cost()
                || p.p_cost() != current.p_cost()
        })
}

/// A random password of 24 letters and digits (about 140 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(24);
    while out.len() < 24 {
        let byte = (OsRng.next_u32() & 0xff) as usize;
        // Rejection sampling keeps every character equally likely.
        if byte < ALPHABET.len() * (256 / ALPHABET.len()) {
            out.push(char::from(ALPHABET[byte % ALPHABET.len()]));
        }
    }
    out
}

/// 256 random bits as 64 hex digits.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a token, hex: what the database keeps.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// Checks a login: it appears in URLs, logs and local role maps.
fn check_login(login: &str) -> CoreResult<()> {
    let ok = !login.is_empty()
        && login.len() <= 100
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if login == "system" {
        // Activities queued by the server run as "system" with every permission.
        return Err(CoreError::Invalid(
            "login 'system' is reserved for the server".into(),
        ));
    }
    if ok {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "login '{login}' is not allowed: use 1 to 100 letters, digits, '_', '-', '.' or '@'"
        )))
    }
}

fn check_password(password: &str) -> CoreResult<()> {
    if password.chars().count() < 8 {
        return Err(CoreError::Invalid(
            "a password needs at least 8 characters".into(),
        ));
    }
    Ok(())
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Adds a user with global `roles`; fails with a conflict when the login exists.
pub fn add_user(
    conn: &mut DbConnection,
    login: &str,
    password: &str,
    roles: &[&str],
) -> CoreResult<()> {
    check_login(login)?;
    check_password(password)?;
    for r in roles {
        check_role(r)?;
    }
    diesel::insert_into(users::table)
        .values((
            users::login.eq(login),
            users::password_hash.eq(hash_password(password)?),
            users::roles.eq(roles.join(",")),
            users::creation_date.eq(now()),
        ))
        .execute(conn)
        .map_err(|e| CoreError::from_write(e, &format!("user {login}")))?;
    Ok(())
}

/// Changes a password and revokes the user's sessions. API tokens are credentials of
/// their own (machines, such as fluentd, hold them) and stay valid: revoke them with
/// [`revoke_tokens_of`] (`wendelin user passwd --revoke-tokens`) when they leaked too.
pub fn set_password(conn: &mut DbConnection, login: &str, password: &str) -> CoreResult<()> {
    check_password(password)?;
    let n = diesel::update(users::table.find(login))
        .set(users::password_hash.eq(hash_password(password)?))
        .execute(conn)?;
    if n == 0 {
        return Err(CoreError::NotFound(format!("no user {login}")));
    }
    diesel::update(sessions::table.filter(sessions::login.eq(login)))
        .set(sessions::revoked.eq(true))
        .execute(conn)?;
    Ok(())
}

/// Puts a user in groups (replacing their groups); groups must exist.
pub fn set_user_groups(conn: &mut DbConnection, login: &str, groups: &[&str]) -> CoreResult<()> {
    for g in groups {
        let exists = user_groups::table
            .find(*g)
            .count()
            .get_result::<i64>(conn)?
            > 0;
        if !exists {
            return Err(CoreError::Invalid(format!("no group '{g}'")));
        }
    }
    let n = diesel::update(users::table.find(login))
        .set(users::group_ids.eq(groups.join(",")))
        .execute(conn)?;
    if n == 0 {
        return Err(CoreError::NotFound(format!("no user {login}")));
    }
    Ok(())
}

/// Creates or updates a group and its global roles.
pub fn set_group(conn: &mut DbConnection, id: &str, title: &str, roles: &[&str]) -> CoreResult<()> {
    check_login(id)?;
    for r in roles {
        check_role(r)?;
    }
    let exists = user_groups::table
        .find(id)
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if exists {
        diesel::update(user_groups::table.find(id))
            .set((
                user_groups::title.eq(title),
                user_groups::roles.eq(roles.join(",")),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(user_groups::table)
            .values((
                user_groups::id.eq(id),
                user_groups::title.eq(title),
                user_groups::roles.eq(roles.join(",")),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Links a user to the Person document describing them.
pub fn set_person(conn: &mut DbConnection, login: &str, person_uid: Option<i64>) -> CoreResult<()> {
    let n = diesel::update(users::table.find(login))
        .set(users::person_uid.eq(person_uid))
        .execute(conn)?;
    if n == 0 {
        return Err(CoreError::NotFound(format!("no user {login}")));
    }
    Ok(())
}

/// Number of users.
pub fn count_users(conn: &mut DbConnection) -> CoreResult<i64> {
    Ok(users::table.count().get_result(conn)?)
}

/// The user named `login` with their global roles (own and groups').
pub fn load_user(conn: &mut DbConnection, login: &str) -> CoreResult<User> {
    let (roles, groups): (String, String) = users::table
        .find(login)
        .select((users::roles, users::group_ids))
        .first(conn)
        .optional()?
        .ok_or_else(|| CoreError::Unauthorized(format!("no user {login}")))?;
    let groups = split_list(&groups);
    let mut all: BTreeSet<String> = split_list(&roles).into_iter().collect();
    if !groups.is_empty() {
        let group_roles: Vec<String> = user_groups::table
            .filter(user_groups::id.eq_any(groups.clone()))
            .select(user_groups::roles)
            .load(conn)?;
        for r in group_roles {
            all.extend(split_list(&r));
        }
    }
    Ok(User::authenticated(login, all, groups))
}

/// Person document uid linked to a user, if any.
pub fn person_of(conn: &mut DbConnection, login: &str) -> CoreResult<Option<i64>> {
    Ok(users::table
        .find(login)
        .select(users::person_uid)
        .first::<Option<i64>>(conn)
        .optional()?
        .flatten())
}

/// Failed attempts allowed before delays start.
pub const FREE_ATTEMPTS: i32 = 3;
/// Longest delay between attempts, in seconds.
pub const MAX_DELAY_SECONDS: i64 = 900;

/// Seconds to wait after `failures` failed attempts: none for the first three, then 1, 2,
/// 4, … up to 15 minutes.
pub fn delay_after(failures: i32) -> i64 {
    if failures < FREE_ATTEMPTS {
        0
    } else {
        let exp = u32::try_from(failures - FREE_ATTEMPTS).unwrap_or(0).min(20);
        (1i64 << exp).min(MAX_DELAY_SECONDS)
    }
}

fn throttle_wait(conn: &mut DbConnection, key: &str, at: NaiveDateTime) -> CoreResult<i64> {
    let row: Option<(i32, NaiveDateTime)> = login_failures::table
        .find(key)
        .select((login_failures::failures, login_failures::last_failure))
        .first(conn)
        .optional()?;
    Ok(match row {
        Some((failures, last)) => {
            let until = last + Duration::seconds(delay_after(failures));
            // Round up: a wait of 0.3 s is reported as 1 s, never 0.
            let ms = (until - at).num_milliseconds();
            if ms > 0 {
                (ms + 999) / 1000
            } else {
                0
            }
        }
        None => 0,
    })
}

fn record_failure(conn: &mut DbConnection, key: &str, at: NaiveDateTime) -> CoreResult<()> {
    let n = diesel::update(login_failures::table.find(key))
        .set((
            login_failures::failures.eq(login_failures::failures + 1),
            login_failures::last_failure.eq(at),
        ))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(login_failures::table)
            .values((
                login_failures::key.eq(key),
                login_failures::failures.eq(1),
                login_failures::last_failure.eq(at),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// What a login attempt led to; failures are returned as values so the caller can commit
/// the recorded failure before reporting it.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Right password.
    Success(User),
    /// Wrong login or password (recorded).
    Failure(CoreError),
}

/// Checks a login attempt from client `address`, with growing delays per account and per
/// address after [`FREE_ATTEMPTS`] failures. Rehashes the password when the hashing
/// parameters changed. The caller runs this in a write transaction and commits it in
/// both outcomes.
pub fn attempt_login(
    conn: &mut DbConnection,
    login: &str,
    password: &str,
    address: &str,
) -> CoreResult<LoginOutcome> {
    let at = now();
    let keys = [format!("login:{login}"), format!("addr:{address}")];
    let mut wait = 0;
    for k in &keys {
        wait = wait.max(throttle_wait(conn, k, at)?);
    }
    if wait > 0 {
        return Ok(LoginOutcome::Failure(CoreError::Throttled(
            format!("too many failed logins; try again in {wait} s"),
            u64::try_from(wait).unwrap_or(1),
        )));
    }
    let hash: Option<String> = users::table
        .find(login)
        .select(users::password_hash)
        .first(conn)
        .optional()?;
    // Verify against a dummy hash for unknown logins so timing does not tell them apart.
    let ok = match &hash {
        Some(h) => verify_password(password, h),
        None => {
            let _ = verify_password(password, dummy_hash());
            false
        }
    };
    if !ok {
        for k in &keys {
            record_failure(conn, k, at)?;
        }
        return Ok(LoginOutcome::Failure(CoreError::Unauthorized(
            "wrong login or password".into(),
        )));
    }
    diesel::delete(login_failures::table.filter(login_failures::key.eq_any(keys.to_vec())))
        .execute(conn)?;
    if hash.as_deref().is_some_and(needs_rehash) {
        diesel::update(users::table.find(login))
            .set(users::password_hash.eq(hash_password(password)?))
            .execute(conn)?;
    }
    Ok(LoginOutcome::Success(load_user(conn, login)?))
}

/// A real hash of a random password, so an unknown login costs one argon2 verification
/// like a known one.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

/// Verifies a password without throttling (HTTP Basic from machines, the CLI).
/// The stored password hash of `login`, if the user exists and has one.
pub fn password_hash_of(conn: &mut DbConnection, login: &str) -> CoreResult<Option<String>> {
    Ok(users::table
        .find(login)
        .select(users::password_hash)
        .first::<String>(conn)
        .optional()?
        .filter(|h| !h.is_empty()))
}

pub fn authenticate(conn: &mut DbConnection, login: &str, password: &str) -> CoreResult<User> {
    let hash: Option<String> = users::table
        .find(login)
        .select(users::password_hash)
        .first(conn)
        .optional()?;
    match hash {
        Some(h) if verify_password(password, &h) => load_user(conn, login),
        _ => Err(CoreError::Unauthorized("wrong login or password".into())),
    }
}

/// A new session for `login`: returns (session token for the cookie, CSRF token).
pub fn create_session(
    conn: &mut DbConnection,
    login: &str,
    ttl: Duration,
) -> CoreResult<(String, String)> {
    let token = random_token();
    let csrf = random_token();
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(token_digest(&token)),
            sessions::login.eq(login),
            sessions::csrf_token.eq(&csrf),
            sessions::creation_date.eq(now()),
            sessions::expiration_date.eq(now() + ttl),
            sessions::revoked.eq(false),
        ))
        .execute(conn)?;
    Ok((token, csrf))
}

/// The user of a session cookie and the session's CSRF token.
pub fn session_user(conn: &mut DbConnection, token: &str) -> CoreResult<(User, String)> {
    let row: Option<(String, String, NaiveDateTime, bool)> = sessions::table
        .find(token_digest(token))
        .select((
            sessions::login,
            sessions::csrf_token,
            sessions::expiration_date,
            sessions::revoked,
        ))
        .first(conn)
        .optional()?;
    match row {
        None => Err(CoreError::Unauthorized(
            "unknown session; log in again".into(),
        )),
        Some((_, _, _, true)) => Err(CoreError::Unauthorized(
            "session ended; log in again".into(),
        )),
        Some((_, _, expires, _)) if expires <= now() => Err(CoreError::Unauthorized(
            "session expired; log in again".into(),
        )),
        Some((login, csrf, _, false)) => Ok((load_user(conn, &login)?, csrf)),
    }
}

/// Ends a session.
pub fn revoke_session(conn: &mut DbConnection, token: &str) -> CoreResult<()> {
    diesel::update(sessions::table.find(token_digest(token)))
        .set(sessions::revoked.eq(true))
        .execute(conn)?;
    Ok(())
}

/// A new API token for `login`: returns (id, token). The token is shown once.
pub fn create_token(conn: &mut DbConnection, login: &str, name: &str) -> CoreResult<(i64, String)> {
    load_user(conn, login).map_err(|_| CoreError::NotFound(format!("no user {login}")))?;
    let token = format!("wdl_{}", random_token());
    let digest = token_digest(&token);
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::login.eq(login),
            api_tokens::name.eq(name),
            api_tokens::token_hash.eq(&digest),
            api_tokens::creation_date.eq(now()),
            api_tokens::revoked.eq(false),
        ))
        .execute(conn)?;
    let id = api_tokens::table
        .filter(api_tokens::token_hash.eq(&digest))
        .select(api_tokens::id)
        .first(conn)?;
    Ok((id, token))
}

/// The user of an API token; records its use (at most once a minute, to spare writes).
/// Call it outside a transaction: the record is bookkeeping, so when the database is busy
/// with a long write it is skipped (the next use records it) rather than failing a read.
pub fn token_user(conn: &mut DbConnection, token: &str) -> CoreResult<User> {
    let digest = token_digest(token);
    let row: Option<(i64, String, Option<NaiveDateTime>, bool)> = api_tokens::table
        .filter(api_tokens::token_hash.eq(&digest))
        .select((
            api_tokens::id,
            api_tokens::login,
            api_tokens::last_used,
            api_tokens::revoked,
        ))
        .first(conn)
        .optional()?;
    match row {
        None => Err(CoreError::Unauthorized("unknown API token".into())),
        Some((_, _, _, true)) => Err(CoreError::Unauthorized("this API token was revoked".into())),
        Some((id, login, last, false)) => {
            let at = now();
            if last.is_none_or(|l| at - l > Duration::seconds(60)) {
                if let Err(e) = diesel::update(api_tokens::table.find(id))
                    .set(api_tokens::last_used.eq(Some(at)))
                    .execute(conn)
                {
                    tracing::debug!(error = %e, "API token use not recorded this time");
                }
            }
            load_user(conn, &login)
        }
    }
}

/// Revokes an API token by id.
pub fn revoke_token(conn: &mut DbConnection, id: i64) -> CoreResult<()> {
    let n = diesel::update(api_tokens::table.find(id))
        .set(api_tokens::revoked.eq(true))
        .execute(conn)?;
    if n == 0 {
        return Err(CoreError::NotFound(format!("no API token {id}")));
    }
    Ok(())
}

/// Revokes every live API token of `login`; returns how many were live.
pub fn revoke_tokens_of(conn: &mut DbConnection, login: &str) -> CoreResult<usize> {
    Ok(diesel::update(
        api_tokens::table
            .filter(api_tokens::login.eq(login))
            .filter(api_tokens::revoked.eq(false)),
    )
    .set(api_tokens::revoked.eq(true))
    .execute(conn)?)
}

/// An API token as listed (never the token itself).
#[derive(Debug, Serialize)]
pub struct TokenInfo {
    /// Id, for revocation.
    pub id: i64,
    /// Owner.
    pub login: String,
    /// Label.
    pub name: String,
    /// Created (UTC).
    pub creation_date: String,
    /// Last used (UTC), if ever.
    pub last_used: Option<String>,
    /// Revoked.
    pub revoked: bool,
}

/// API tokens of `login`.
pub fn list_tokens(conn: &mut DbConnection, login: &str) -> CoreResult<Vec<TokenInfo>> {
    let rows: Vec<(
        i64,
        String,
        String,
        NaiveDateTime,
        Option<NaiveDateTime>,
        bool,
    )> = api_tokens::table
        .filter(api_tokens::login.eq(login))
        .order(api_tokens::id.asc())
        .select((
            api_tokens::id,
            api_tokens::login,
            api_tokens::name,
            api_tokens::creation_date,
            api_tokens::last_used,
            api_tokens::revoked,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, login, name, created, last, revoked)| TokenInfo {
            id,
            login,
            name,
            creation_date: crate::store::document::format_time(&created),
            last_used: last.as_ref().map(crate::store::document::format_time),
            revoked,
        })
        .collect())
}
