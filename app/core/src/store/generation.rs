//! The database-wide change generation: a counter in the one-row `change_generation`
//! table, bumped by triggers in the transaction of every change to documents, relations,
//! local roles, workflow states and history, users, groups and security sets, and to
//! every session update or delete (logout, revocation) (migration
//! `2026-11-26-020001_change_generation`; on PostgreSQL once per transaction, at its
//! commit, since `2026-11-28-000002_deferred_generation`, so the counter's row lock does
//! not make concurrent writers wait for each other's whole transaction). Caches of derived views (the admin UI's pages)
//! tag what they computed with the generation read *before* computing it: while the
//! generation is unchanged, nothing such a view reads has been committed since, by this
//! process or any other sharing the database.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::model::error::CoreResult;
use crate::store::db::DbConnection;

#[derive(QueryableByName)]
struct Generation {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The current change generation (one primary-key read). A missing row is an error, not
/// a default: a counter that never moves would make every cache stale forever.
pub fn current(conn: &mut DbConnection) -> CoreResult<i64> {
    let row: Generation =
        diesel::sql_query("SELECT n FROM change_generation WHERE id = 1").get_result(conn)?;
    Ok(row.n)
}
