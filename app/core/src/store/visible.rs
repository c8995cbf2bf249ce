//! Which security sets a holder of some principals may View: the SQL filter listings and
//! searches apply before LIMIT. Computing the sets is the access layer's
//! (`access::security`).

use diesel::prelude::*;

use crate::model::error::CoreResult;
use crate::model::schema::{security_set_principals, security_sets};
use crate::store::db::DbConnection;

/// Which security sets the holder of `principals` may View.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// Every set that exists (read in the same snapshot as the query that uses it).
    All,
    /// Only these.
    Sets(Vec<i64>),
}

impl Visible {
    /// The set ids visible to `principals`, in the caller's snapshot.
    pub fn for_principals(conn: &mut DbConnection, principals: &[String]) -> CoreResult<Visible> {
        let mut sets: Vec<i64> = security_set_principals::table
            .filter(security_set_principals::principal.eq_any(principals))
            .select(security_set_principals::set_id)
            .distinct()
            .load(conn)?;
        let total: i64 = security_sets::table.count().get_result(conn)?;
        if i64::try_from(sets.len()).unwrap_or(i64::MAX) >= total {
            return Ok(Visible::All);
        }
        sets.sort_unstable();
        Ok(Visible::Sets(sets))
    }

    /// An SQL condition on `documents` (set ids are our own integers: inlined).
    pub fn sql(&self) -> String {
        match self {
            Visible::All => "1 = 1".to_owned(),
            Visible::Sets(s) if s.is_empty() => "1 = 0".to_owned(),
            Visible::Sets(s) => format!(
                "security_set IN ({})",
                s.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            ),
        }
    }
}
