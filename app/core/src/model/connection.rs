//! The connection type every query is written against: one enum over PostgreSQL and
//! SQLite (diesel's `MultiConnection`). Pools and transactions are the store's (`store::db`).

use diesel::{PgConnection, SqliteConnection};

/// A connection to either backend; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// PostgreSQL (clusters).
    Postgres(PgConnection),
    /// SQLite (the embedded default).
    Sqlite(SqliteConnection),
}
