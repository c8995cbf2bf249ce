//! Users who can log in: logins, argon2id password hashes, global roles.
//! (Sessions, tokens and enforcement arrive with the security issue.)

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::error::{CoreError, CoreResult};
use crate::schema::users;

/// Hashes a password with argon2id and the crate's default cost (19 MiB, 2 passes, 1 lane,
/// OWASP's recommended minimum).
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

/// A random password of 24 letters and digits (about 143 bits).
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

/// Checks a login: it appears in URLs, logs and local role maps.
fn check_login(login: &str) -> CoreResult<()> {
    let ok = !login.is_empty()
        && login.len() <= 100
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "login '{login}' is not allowed: use 1 to 100 letters, digits, '_', '-', '.' or '@'"
        )))
    }
}

/// Adds a user with global `roles`; fails with a conflict when the login exists.
pub fn add_user(
    conn: &mut DbConnection,
    login: &str,
    password: &str,
    roles: &[&str],
) -> CoreResult<()> {
    check_login(login)?;
    if password.chars().count() < 8 {
        return Err(CoreError::Invalid(
            "a password needs at least 8 characters".into(),
        ));
    }
    diesel::insert_into(users::table)
        .values((
            users::login.eq(login),
            users::password_hash.eq(hash_password(password)?),
            users::roles.eq(roles.join(",")),
            users::creation_date.eq(Utc::now().naive_utc()),
        ))
        .execute(conn)
        .map_err(|e| CoreError::from_write(e, &format!("user {login}")))?;
    Ok(())
}

/// Number of users.
pub fn count_users(conn: &mut DbConnection) -> CoreResult<i64> {
    Ok(users::table.count().get_result(conn)?)
}

/// The global roles of `login` when `password` is right.
pub fn authenticate(
    conn: &mut DbConnection,
    login: &str,
    password: &str,
) -> CoreResult<Vec<String>> {
    let row: Option<(String, String)> = users::table
        .filter(users::login.eq(login))
        .select((users::password_hash, users::roles))
        .first(conn)
        .optional()?;
    match row {
        Some((hash, roles)) if verify_password(password, &hash) => Ok(roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect()),
        _ => Err(CoreError::Unauthorized("wrong login or password".into())),
    }
}
