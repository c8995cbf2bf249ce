//! Hand-written SQL with `?` placeholders and typed values, run on either backend: what the
//! catalog, bulk loads, security sets and activities build their statements with.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text, Timestamp};

use crate::model::connection::DbConnection;

/// One value bound into a catalog statement.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(Option<String>),
    Int(Option<i64>),
    Float(Option<f64>),
    Bool(Option<bool>),
    Timestamp(NaiveDateTime),
}

/// A statement with `?` where values go.
pub(crate) struct Statement {
    pub(crate) sql: String,
    pub(crate) binds: Vec<Bind>,
}

impl Statement {
    /// The statement ready to run (not kept prepared: catalog SQL varies with each search).
    pub(crate) fn query(&self) -> Bound<'_, Bind> {
        Bound {
            sql: &self.sql,
            binds: &self.binds,
            cache: false,
        }
    }
}

/// SQL with `?` where values go, bound to its values by reference and ready to run: each
/// `?` becomes the backend's placeholder as diesel writes it (`$n` on PostgreSQL). With
/// `cache`, the statement is prepared once per connection (diesel's statement cache) —
/// for SQL run many times with other values, as bulk inserts do.
pub(crate) struct Bound<'a, B = &'a Bind> {
    pub(crate) sql: &'a str,
    pub(crate) binds: &'a [B],
    pub(crate) cache: bool,
}

impl<B> diesel::query_builder::QueryId for Bound<'_, B> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B> diesel::query_builder::Query for Bound<'_, B> {
    type SqlType = diesel::sql_types::Untyped;
}

/// Any backend that takes every kind of [`Bind`]: [`crate::store::db::MultiBackend`], and SQLite itself for
/// bulk loads, which bind straight into SQLite's statement rather than through the
/// multi-backend's boxed values.
impl<B, DB> diesel::query_builder::QueryFragment<DB> for Bound<'_, B>
where
    B: std::borrow::Borrow<Bind>,
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<Text>
        + diesel::sql_types::HasSqlType<BigInt>
        + diesel::sql_types::HasSqlType<Double>
        + diesel::sql_types::HasSqlType<Bool>
        + diesel::sql_types::HasSqlType<Timestamp>,
    String: diesel::serialize::ToSql<Text, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
    f64: diesel::serialize::ToSql<Double, DB>,
    bool: diesel::serialize::ToSql<Bool, DB>,
    NaiveDateTime: diesel::serialize::ToSql<Timestamp, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        if !self.cache {
            out.unsafe_to_cache_prepared();
        }
        let mut parts = self.sql.split('?');
        out.push_sql(parts.next().unwrap_or_default());
        for (b, part) in self.binds.iter().zip(parts) {
            match b.borrow() {
                Bind::Text(v) => out.push_bind_param::<Nullable<Text>, _>(v)?,
                Bind::Int(v) => out.push_bind_param::<Nullable<BigInt>, _>(v)?,
                Bind::Float(v) => out.push_bind_param::<Nullable<Double>, _>(v)?,
                Bind::Bool(v) => out.push_bind_param::<Nullable<Bool>, _>(v)?,
                Bind::Timestamp(v) => out.push_bind_param::<Timestamp, _>(v)?,
            }
            out.push_sql(part);
        }
        Ok(())
    }
}

impl<B> RunQueryDsl<DbConnection> for Bound<'_, B> {}
impl<B> RunQueryDsl<diesel::SqliteConnection> for Bound<'_, B> {}
