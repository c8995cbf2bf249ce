//! The SQL catalog: which keys a query may filter and sort on, the columns behind them,
//! and query execution with the caller's View filter applied in SQL before LIMIT.
//!
//! Core fields are columns of `documents`. Every property declared `indexed` by some
//! portal type gets a typed column `p_<name>`, and every workflow a column `s_<workflow>`
//! queried by its state variable (`validation_state`); these columns are added at start-up
//! when missing and kept up to date in the same transaction as the change they reflect.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::model::error::{CoreError, CoreResult};
use crate::model::query::{self, Expr, Op};
use crate::model::types::{Registry, MODULE_FOLDER_TYPE, PORTAL_TYPE};
use crate::store::db::DbConnection;
use crate::store::document::{self, Document};

pub use crate::model::catalog_schema::{CatalogSchema, Column, Kind};
use crate::store::after_write::Written;
use crate::store::sql::{Bind, Statement};

fn sql_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Text | Kind::IsoText => "TEXT",
        Kind::Int => "BIGINT",
        Kind::Float => "DOUBLE PRECISION",
        Kind::Bool => "BOOLEAN",
        Kind::Timestamp => "TIMESTAMP",
    }
}

#[derive(QueryableByName)]
struct ColumnName {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Adds missing catalog columns (with an index each) and fills them for existing rows.
pub fn ensure_columns(conn: &mut DbConnection, registry: &Registry) -> CoreResult<()> {
    let schema = registry.catalog();
    let sql = match conn {
        DbConnection::Sqlite(_) => "SELECT name FROM pragma_table_info('documents')",
        DbConnection::Postgres(_) => {
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'documents'"
        }
    };
    let existing: Vec<String> = diesel::sql_query(sql)
        .load::<ColumnName>(conn)?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let mut added = false;
    for c in schema.properties.values().chain(schema.workflows.values()) {
        if !existing.contains(&c.sql) {
            conn.batch_execute(&format!(
                "ALTER TABLE documents ADD COLUMN {col} {ty};",
                col = c.sql,
                ty = sql_type(c.kind)
            ))?;
            tracing::info!(column = %c.sql, "catalog column added");
            added = true;
        }
        // One index per column, on (column, modification_date, uid, security_set): it
        // serves a filter on the column and, under an equality, the usual listing order
        // (newest first, ties by uid) without sorting the matches; the View filter is
        // checked from the index entry, so rows the caller may not see cost no table read.
        // It replaces the single-column index of earlier versions.
        conn.batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS {index} ON documents ({col}, modification_date, uid, security_set); \
             DROP INDEX IF EXISTS documents_{col};",
            index = sort_index_name(&c.sql),
            col = c.sql,
        ))?;
    }
    if added {
        reindex_all(conn, registry)?;
    }
    Ok(())
}

/// Refills every catalog column of every document (after columns were added).
pub fn reindex_all(conn: &mut DbConnection, registry: &Registry) -> CoreResult<usize> {
    use crate::model::schema::documents;
    let uids: Vec<i64> = documents::table.select(documents::uid).load(conn)?;
    for uid in &uids {
        let doc = document::get_by_uid(conn, *uid)?;
        index_document(conn, registry, &doc)?;
    }
    Ok(uids.len())
}

/// Every document's uid, in uid order (`wendelin reindex` walks them in chunks).
pub fn document_uids(conn: &mut DbConnection) -> CoreResult<Vec<i64>> {
    use crate::model::schema::documents;
    Ok(documents::table
        .select(documents::uid)
        .order(documents::uid.asc())
        .load(conn)?)
}

/// Recomputes the security set and rewrites the catalog columns of these documents; a
/// document whose set changes is queued for the full-text index.
pub fn reindex_documents(
    conn: &mut DbConnection,
    registry: &Registry,
    uids: &[i64],
) -> CoreResult<()> {
    for uid in uids {
        let doc = document::get_by_uid(conn, *uid)?;
        crate::access::security::update_viewers(conn, registry, &doc)?;
        index_document(conn, registry, &doc)?;
    }
    Ok(())
}

fn property_bind(kind: Kind, value: Option<&serde_json::Value>) -> Bind {
    match kind {
        Kind::Text | Kind::IsoText | Kind::Timestamp => {
            Bind::Text(value.and_then(|v| v.as_str()).map(str::to_owned))
        }
        Kind::Int => Bind::Int(value.and_then(serde_json::Value::as_i64)),
        Kind::Float => Bind::Float(value.and_then(serde_json::Value::as_f64)),
        Kind::Bool => Bind::Bool(value.and_then(serde_json::Value::as_bool)),
    }
}

/// The catalog columns of a document of type `t` with these properties and workflow
/// states: (column, value) for each indexed property and each workflow of its chain.
pub(crate) fn catalog_values(
    registry: &Registry,
    t: &crate::model::types::PortalType,
    props: &serde_json::Map<String, serde_json::Value>,
    states: &BTreeMap<String, String>,
) -> Vec<(String, Bind)> {
    let schema = registry.catalog();
    let mut out = Vec::new();
    for p in t.properties.iter().filter(|p| p.indexed) {
        if let Some(c) = schema.properties.get(&p.name) {
            out.push((c.sql.clone(), property_bind(c.kind, props.get(&p.name))));
        }
    }
    for wf in &t.workflows {
        if let Some(c) = schema.workflows.get(wf) {
            out.push((c.sql.clone(), Bind::Text(states.get(wf).cloned())));
        }
    }
    out
}

/// Writes the catalog columns of `doc` (indexed properties and workflow states); called in
/// the transaction that changed it.
pub fn index_document(
    conn: &mut DbConnection,
    registry: &Registry,
    doc: &Document,
) -> CoreResult<()> {
    let Some(t) = registry.portal_type(&doc.portal_type) else {
        return Ok(());
    };
    let props = doc.property_map()?;
    let states = crate::access::security::workflow_states(conn, doc.uid)?;
    let values = catalog_values(registry, t, &props, &states);
    let mut sets = Vec::new();
    let mut binds = Vec::new();
    for (column, bind) in values {
        sets.push(format!("{column} = ?"));
        binds.push(bind);
    }
    if sets.is_empty() {
        return Ok(());
    }
    binds.push(Bind::Int(Some(doc.uid)));
    let st = Statement {
        sql: format!("UPDATE documents SET {} WHERE uid = ?", sets.join(", ")),
        binds,
    };
    st.query().execute(conn)?;
    Ok(())
}

/// A catalog search.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Query string (see [`crate::model::query`]).
    pub query: String,
    /// Sort keys, e.g. `modification_date desc, title`.
    pub sort_on: String,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// Whether a search counts its matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Count {
    /// The exact number of matches the caller may View (what `total` says).
    #[default]
    Exact,
    /// No count: only the page, and whether more matches follow it. A filter matching
    /// half a million documents costs its page (a few rows), not its count.
    None,
}

impl std::str::FromStr for Count {
    type Err = CoreError;
    fn from_str(s: &str) -> CoreResult<Count> {
        match s {
            "exact" => Ok(Count::Exact),
            "none" => Ok(Count::None),
            other => Err(CoreError::BadRequest(format!(
                "count must be exact or none, not '{other}'"
            ))),
        }
    }
}

/// A page of results with the exact count of everything that matched.
#[derive(Debug)]
pub struct SearchResult {
    /// The page.
    pub documents: Vec<Document>,
    /// Every match the caller may View, with [`Count::Exact`]; with [`Count::None`] a
    /// lower bound: the offset plus the page, plus one when more matches follow.
    pub total: i64,
    /// Whether `total` is exact.
    pub exact: bool,
    /// Whether matches follow this page.
    pub more: bool,
}

impl SearchResult {
    fn counted(documents: Vec<Document>, total: i64, offset: i64) -> SearchResult {
        let more =
            offset.saturating_add(i64::try_from(documents.len()).unwrap_or(i64::MAX)) < total;
        SearchResult {
            documents,
            total,
            exact: true,
            more,
        }
    }
}

fn literal(c: &Column, value: &str) -> CoreResult<Bind> {
    let bad =
        |what: &str| CoreError::BadRequest(format!("value '{value}' for {} is not {what}", c.key));
    Ok(match c.kind {
        Kind::Text => Bind::Text(Some(value.to_owned())),
        Kind::Int => Bind::Int(Some(value.parse().map_err(|_| bad("an integer"))?)),
        Kind::Float => Bind::Float(Some(value.parse().map_err(|_| bad("a number"))?)),
        Kind::Bool => Bind::Bool(Some(match value {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad("true or false")),
        })),
        Kind::Timestamp => Bind::Timestamp(
            parse_time(value).ok_or_else(|| bad("a date (YYYY-MM-DD) or date-time"))?,
        ),
        Kind::IsoText => {
            let t = parse_time(value).ok_or_else(|| bad("a date (YYYY-MM-DD) or date-time"))?;
            // Dates compare as their own text; date-times as the canonical UTC form.
            if value.len() == 10 {
                Bind::Text(Some(value.to_owned()))
            } else {
                Bind::Text(Some(
                    t.and_utc()
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                ))
            }
        }
    })
}

fn parse_time(value: &str) -> Option<NaiveDateTime> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.naive_utc());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn compile(schema: &CatalogSchema, e: &Expr, binds: &mut Vec<Bind>) -> CoreResult<String> {
    Ok(match e {
        Expr::And(items) => format!(
            "({})",
            items
                .iter()
                .map(|i| compile(schema, i, binds))
                .collect::<CoreResult<Vec<_>>>()?
                .join(" AND ")
        ),
        Expr::Or(items) => format!(
            "({})",
            items
                .iter()
                .map(|i| compile(schema, i, binds))
                .collect::<CoreResult<Vec<_>>>()?
                .join(" OR ")
        ),
        // Absent values count as "not matching", so NOT includes documents without them.
        Expr::Not(inner) => format!("(NOT COALESCE({}, FALSE))", compile(schema, inner, binds)?),
        Expr::Compare { key, op, value } => {
            let c = schema.column(key)?;
            if *op == Op::Like {
                if !matches!(c.kind, Kind::Text | Kind::IsoText) {
                    return Err(CoreError::BadRequest(format!(
                        "'%' patterns only apply to text keys, not {key}"
                    )));
                }
                binds.push(Bind::Text(Some(value.to_lowercase())));
                return Ok(format!("LOWER({}) LIKE ?", c.sql));
            }
            binds.push(literal(c, value)?);
            if *op == Op::Ne {
                return Ok(format!("({col} <> ? OR {col} IS NULL)", col = c.sql));
            }
            let sym = match op {
                Op::Eq => "=",
                Op::Ne => "<>",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Like => "LIKE",
            };
            format!("{} {sym} ?", c.sql)
        }
        Expr::In { key, values } => {
            let c = schema.column(key)?;
            for v in values {
                binds.push(literal(c, v)?);
            }
            format!("{} IN ({})", c.sql, vec!["?"; values.len()].join(", "))
        }
        Expr::Range { key, low, high } => {
            let c = schema.column(key)?;
            binds.push(literal(c, low)?);
            binds.push(literal(c, high)?);
            format!("({col} >= ? AND {col} <= ?)", col = c.sql)
        }
        Expr::IsNull { key, negated } => {
            let c = schema.column(key)?;
            format!("{} IS {}NULL", c.sql, if *negated { "NOT " } else { "" })
        }
        Expr::Text(words) => {
            // Until the full-text index lands: every word must appear in the title,
            // reference or description (case-insensitive).
            let mut parts = Vec::new();
            for w in words.split_whitespace() {
                let pattern = format!("%{}%", w.to_lowercase().replace(['\\', '%', '_'], ""));
                for _ in 0..3 {
                    binds.push(Bind::Text(Some(pattern.clone())));
                }
                parts.push(
                    "(LOWER(title) LIKE ? OR LOWER(COALESCE(reference, '')) LIKE ? OR LOWER(description) LIKE ?)"
                        .to_owned(),
                );
            }
            if parts.is_empty() {
                "(1 = 1)".to_owned()
            } else {
                format!("({})", parts.join(" AND "))
            }
        }
    })
}

/// Documents a caller may see in all, at most, for a page to be read through the security
/// set index (then sorted): reading that many rows costs about a millisecond.
const FEW_VISIBLE: i64 = 1_000;

/// The same bound for a page without an equality on a catalog column and without words:
/// there SQLite's alternative is the scope's index (module, portal type), which matches
/// nearly every row, all then sorted — at 1M documents, 400 ms for a user who sees 5,000
/// of them, against 3 ms through the security set index (`bench/ui.py`, frank). Reading
/// and sorting 20,000 rows costs a few milliseconds.
const SOME_VISIBLE: i64 = 20_000;

/// How many documents the security sets of `visible` hold (all of them for
/// `Visible::All`), from the counters.
fn visible_rows(
    conn: &mut DbConnection,
    visible: &crate::access::security::Visible,
) -> CoreResult<i64> {
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM catalog_counts WHERE {}",
        visible.sql()
    );
    let counted = Statement {
        sql,
        binds: Vec::new(),
    };
    Ok(counted.query().get_result::<CountRow>(conn)?.n)
}

/// `value` as a quoted literal of the query language (`"` and `\` escaped).
pub fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The catalog query for the documents directly in module folder `folder`. When the
/// folder holds one portal type that no type contains, its documents are exactly those of
/// that type in that module: said that way, the catalog answers the count from its
/// counters instead of counting rows.
pub fn folder_scope(registry: &Registry, folder: &Document) -> String {
    let allowed = registry
        .folder(&folder.id)
        .map(|f| f.allowed_content_types.clone())
        .unwrap_or_default();
    if let [only] = allowed.as_slice() {
        let nested = registry
            .portal_types()
            .any(|t| t.allowed_content_types.contains(only));
        if !nested {
            return format!(
                "module:{} AND portal_type:{}",
                quote(&folder.id),
                quote(only)
            );
        }
    }
    format!("parent_uid:{}", folder.uid)
}

fn order_by(schema: &CatalogSchema, sort_on: &str) -> CoreResult<String> {
    let mut parts = Vec::new();
    let mut last_dir = "ASC";
    for item in sort_on.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut words = item.split_whitespace();
        let key = words.next().unwrap_or_default();
        let dir = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") | Some("ascending") => "ASC",
            Some("desc") | Some("descending") | Some("reverse") => "DESC",
            Some(other) => {
                return Err(CoreError::BadRequest(format!(
                    "sort direction '{other}' for {key}: use asc or desc"
                )))
            }
        };
        parts.push(format!("{} {dir}", schema.column(key)?.sql));
        last_dir = dir;
    }
    // A unique last key makes pages stable; in the direction of the last key, so that an
    // index on that key (which ends with the uid) serves the whole order.
    parts.push(format!("uid {last_dir}"));
    Ok(parts.join(", "))
}

/// The name of a catalog column's (column, modification_date, uid, security_set) index.
fn sort_index_name(column: &str) -> String {
    format!("documents_{column}_listing")
}

/// The index whose order serves the first key of `sort_on`, if it has one.
fn sort_index(schema: &CatalogSchema, sort_on: &str) -> Option<String> {
    let first = sort_on.split(',').next()?.split_whitespace().next()?;
    let sql = &schema.column(first).ok()?.sql;
    let indexed = matches!(
        sql.as_str(),
        "modification_date" | "creation_date" | "title" | "owner" | "module" | "portal_type"
    );
    if sql.starts_with("p_") || sql.starts_with("s_") {
        return Some(sort_index_name(sql));
    }
    indexed.then(|| format!("documents_{sql}"))
}

/// Catalog columns (`p_*`, `s_*`) that the whole query requires to equal one value: their
/// (column, modification_date) index walks exactly the candidates, newest first.
fn equality_columns(schema: &CatalogSchema, expr: Option<&Expr>) -> Vec<String> {
    let items: Vec<&Expr> = match expr {
        None => Vec::new(),
        Some(Expr::And(items)) => items.iter().collect(),
        Some(e) => vec![e],
    };
    items
        .into_iter()
        .filter_map(|e| match e {
            Expr::Compare {
                key, op: Op::Eq, ..
            } => schema.column(key).ok().map(|c| c.sql.clone()),
            _ => None,
        })
        .filter(|sql| sql.starts_with("p_") || sql.starts_with("s_"))
        .collect()
}

#[derive(QueryableByName)]
struct UidRow {
    #[diesel(sql_type = BigInt)]
    uid: i64,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Most full-text matches a query may have (more: add words or filters).
pub const MAX_FULLTEXT_MATCHES: usize = 50_000;

/// The equality filters on portal type and module that make up all of `expr`, when that
/// is all it holds: such a count is answered by `catalog_counts`.
fn counter_filters(expr: Option<&Expr>) -> Option<Vec<(&'static str, String)>> {
    let items: Vec<&Expr> = match expr {
        None => Vec::new(),
        Some(Expr::And(items)) => items.iter().collect(),
        Some(e) => vec![e],
    };
    let mut out = Vec::new();
    for e in items {
        match e {
            Expr::Compare {
                key,
                op: Op::Eq,
                value,
            } => match key.as_str() {
                "portal_type" => out.push(("portal_type", value.clone())),
                "module" => out.push(("module", value.clone())),
                _ => return None,
            },
            _ => return None,
        }
    }
    Some(out)
}

/// Splits full-text terms joined by AND at the top of a query from the rest.
fn split_text(expr: Option<Expr>) -> (Option<Expr>, Vec<String>) {
    match expr {
        Some(Expr::Text(t)) => (None, vec![t]),
        Some(Expr::And(items)) => {
            let (texts, mut rest): (Vec<Expr>, Vec<Expr>) =
                items.into_iter().partition(|e| matches!(e, Expr::Text(_)));
            let words = texts
                .into_iter()
                .filter_map(|e| match e {
                    Expr::Text(t) => Some(t),
                    _ => None,
                })
                .collect();
            let rest = match rest.len() {
                0 => None,
                1 => rest.pop(),
                _ => Some(Expr::And(rest)),
            };
            (rest, words)
        }
        other => (other, Vec::new()),
    }
}

/// Runs a search for the holder of `principals`: only documents they may View are
/// returned and counted, filtered before LIMIT (in SQL, and in the full-text index by
/// the same principals). Full-text terms joined by AND at the top of the query go to the
/// full-text index when it runs; results then sort by relevance unless `sort_on` is
/// given. Elsewhere (under OR or NOT, or without the index) a term matches title,
/// reference or description by substring.
pub fn search(
    conn: &mut DbConnection,
    registry: &Registry,
    fulltext: Option<&crate::index::fulltext::FullText>,
    principals: &[String],
    s: &Search,
    count_mode: Count,
) -> CoreResult<SearchResult> {
    let schema = registry.catalog();
    let mut binds = Vec::new();
    let mut clauses = vec![format!(
        "portal_type NOT IN ('{PORTAL_TYPE}', '{MODULE_FOLDER_TYPE}')"
    )];
    let parsed = query::parse(&s.query)?;
    let (structured, words) = match fulltext {
        Some(_) => split_text(parsed),
        None => (parsed, Vec::new()),
    };
    let counters = if words.is_empty() {
        counter_filters(structured.as_ref())
    } else {
        None
    };
    let equalities = equality_columns(schema, structured.as_ref());
    if let Some(expr) = structured {
        clauses.push(compile(schema, &expr, &mut binds)?);
    }
    let visible = crate::access::security::Visible::for_principals(conn, principals)?;
    let ranked = !words.is_empty() && s.sort_on.trim().is_empty();
    let mut scores = BTreeMap::new();
    if let (Some(ft), false) = (fulltext, words.is_empty()) {
        if ranked && clauses.len() == 1 {
            return words_only(conn, ft, &words, &visible, s);
        }
        let (matched, clause) = fulltext_matches(ft, &words, &visible)?;
        scores = matched;
        clauses.push(clause);
    }
    clauses.push(visible.sql());
    let filter = clauses.join(" AND ");
    if ranked && fulltext.is_some() {
        return ranked_page(conn, &filter, binds, &scores, s);
    }
    let cheap_count = counters.is_some();
    // Counts from the counters table cost a few rows: always taken (they also tell the
    // planner below how dense the matches are).
    let total = match (count_mode, cheap_count) {
        (Count::Exact, _) | (Count::None, true) => Some(
            count_statement(counters, &visible, &filter, &binds)
                .query()
                .get_result::<CountRow>(conn)?
                .n,
        ),
        (Count::None, false) => None,
    };
    let plan = Plan {
        schema,
        visible: &visible,
        equalities: &equalities,
        words: !words.is_empty(),
        filter: &filter,
        binds: &binds,
        total,
    };
    let hint = match conn {
        DbConnection::Sqlite(_) => sqlite_hint(conn, &plan, s)?,
        _ => String::new(),
    };
    let mut page_binds = binds.clone();
    // Without a count, one row more than the page says whether more follow.
    let fetch = match total {
        Some(_) => s.limit,
        None => s.limit.saturating_add(1),
    };
    page_binds.push(Bind::Int(Some(fetch)));
    page_binds.push(Bind::Int(Some(s.offset)));
    let page = Statement {
        sql: format!(
            "SELECT uid FROM documents{hint} WHERE {filter} ORDER BY {} LIMIT ? OFFSET ?",
            order_by(schema, &s.sort_on)?
        ),
        binds: page_binds,
    };
    let mut uids: Vec<i64> = page
        .query()
        .load::<UidRow>(conn)?
        .into_iter()
        .map(|r| r.uid)
        .collect();
    let limit = usize::try_from(s.limit).unwrap_or(0);
    let more = uids.len() > limit;
    uids.truncate(limit);
    let documents = document::get_many(conn, &uids)?;
    Ok(match total {
        Some(total) => SearchResult::counted(documents, total, s.offset),
        None => {
            let seen = s
                .offset
                .saturating_add(i64::try_from(documents.len()).unwrap_or(i64::MAX));
            SearchResult {
                documents,
                total: seen.saturating_add(i64::from(more)),
                exact: false,
                more,
            }
        }
    })
}

/// The security sets the full-text index filters by: none when the caller sees all.
fn fulltext_sets(visible: &crate::access::security::Visible) -> Option<&[i64]> {
    match visible {
        crate::access::security::Visible::All => None,
        crate::access::security::Visible::Sets(sets) => Some(sets.as_slice()),
    }
}

/// Words only, by relevance: the index filters by the caller's security sets, ranks and
/// counts on its own. The page is checked against the current security sets, since the
/// index may lag a just-committed change by up to a second.
fn words_only(
    conn: &mut DbConnection,
    ft: &crate::index::fulltext::FullText,
    words: &[String],
    visible: &crate::access::security::Visible,
    s: &Search,
) -> CoreResult<SearchResult> {
    let offset = usize::try_from(s.offset).unwrap_or(0);
    let want = offset.saturating_add(usize::try_from(s.limit).unwrap_or(0));
    let (mut hits, count) = ft.search(&words.join(" "), fulltext_sets(visible), want)?;
    // Equal scores in uid order, as on the other path (stable across index rebuilds).
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let page: Vec<i64> = hits.into_iter().skip(offset).map(|(uid, _)| uid).collect();
    let allowed: Vec<i64> = if page.is_empty() {
        Vec::new()
    } else {
        Statement {
            sql: format!(
                "SELECT uid FROM documents WHERE uid IN ({}) AND {}",
                page.iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                visible.sql()
            ),
            binds: Vec::new(),
        }
        .query()
        .load::<UidRow>(conn)?
        .into_iter()
        .map(|r| r.uid)
        .collect()
    };
    let page: Vec<i64> = page.into_iter().filter(|u| allowed.contains(u)).collect();
    Ok(SearchResult::counted(
        document::get_many(conn, &page)?,
        i64::try_from(count).unwrap_or(i64::MAX),
        s.offset,
    ))
}

/// Every full-text match of `words` (at most [`MAX_FULLTEXT_MATCHES`]) with its score, and
/// the SQL clause that keeps them.
fn fulltext_matches(
    ft: &crate::index::fulltext::FullText,
    words: &[String],
    visible: &crate::access::security::Visible,
) -> CoreResult<(BTreeMap<i64, f32>, String)> {
    let (hits, count) = ft.search(
        &words.join(" "),
        fulltext_sets(visible),
        MAX_FULLTEXT_MATCHES,
    )?;
    if count > hits.len() {
        return Err(CoreError::BadRequest(format!(
            "the words '{}' match {count} documents, more than {MAX_FULLTEXT_MATCHES}: add words or filters",
            words.join(" ")
        )));
    }
    let scores: BTreeMap<i64, f32> = hits.into_iter().collect();
    // Uids come from our own index: inlined, they need no bind variables.
    let clause = if scores.is_empty() {
        "1 = 0".to_owned()
    } else {
        format!(
            "uid IN ({})",
            scores
                .keys()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    Ok((scores, clause))
}

/// Relevance order with other filters: every match is in `scores` already, so the
/// filtered ones are ranked here.
fn ranked_page(
    conn: &mut DbConnection,
    filter: &str,
    binds: Vec<Bind>,
    scores: &BTreeMap<i64, f32>,
    s: &Search,
) -> CoreResult<SearchResult> {
    let all = Statement {
        sql: format!("SELECT uid FROM documents WHERE {filter}"),
        binds,
    };
    let mut uids: Vec<i64> = all
        .query()
        .load::<UidRow>(conn)?
        .into_iter()
        .map(|r| r.uid)
        .collect();
    uids.sort_by(|a, b| {
        let (sa, sb) = (
            scores.get(a).copied().unwrap_or(0.0),
            scores.get(b).copied().unwrap_or(0.0),
        );
        sb.total_cmp(&sa).then(a.cmp(b))
    });
    let total = i64::try_from(uids.len()).unwrap_or(i64::MAX);
    let start = usize::try_from(s.offset).unwrap_or(0).min(uids.len());
    let end = start
        .saturating_add(usize::try_from(s.limit).unwrap_or(0))
        .min(uids.len());
    let documents = document::get_many(conn, &uids[start..end])?;
    Ok(SearchResult::counted(documents, total, s.offset))
}

/// The statement counting the matches: from the counters table when the filters are ones
/// it can answer (a few rows, in the same snapshot), else over the documents.
fn count_statement(
    counters: Option<Vec<(&'static str, String)>>,
    visible: &crate::access::security::Visible,
    filter: &str,
    binds: &[Bind],
) -> Statement {
    match counters {
        Some(filters) => {
            let mut sql = format!(
                "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM catalog_counts \
                 WHERE portal_type NOT IN ('{PORTAL_TYPE}', '{MODULE_FOLDER_TYPE}') AND {}",
                visible.sql()
            );
            let mut count_binds = Vec::new();
            for (key, value) in filters {
                sql.push_str(&format!(" AND {key} = ?"));
                count_binds.push(Bind::Text(Some(value)));
            }
            Statement {
                sql,
                binds: count_binds,
            }
        }
        None => Statement {
            sql: format!("SELECT COUNT(*) AS n FROM documents WHERE {filter}"),
            binds: binds.to_vec(),
        },
    }
}

/// What the SQLite page plan is chosen from.
struct Plan<'a> {
    schema: &'a CatalogSchema,
    visible: &'a crate::access::security::Visible,
    equalities: &'a [String],
    words: bool,
    filter: &'a str,
    binds: &'a [Bind],
    total: Option<i64>,
}

/// The page's plan on SQLite, as an `INDEXED BY` clause (PostgreSQL plans from its own
/// statistics):
/// - a caller who may see few documents in all (anywhere in the catalog: at most
///   `FEW_VISIBLE`, or `SOME_VISIBLE` when nothing else narrows the page): the security
///   set index reads just those, whatever the other filters and the sort; any other
///   index may walk past millions of rows hidden from them first;
/// - sorted newest first with an equality on a catalog column: walk that column's
///   (column, modification_date) index, already in order, checking the other filters
///   row by row; this never reads more than the equality's own matches, and stops after
///   the page when matches are dense;
/// - otherwise SQLite prefers an index on a filter, even one matching most rows, and
///   then sorts every match. When matches are dense (at least one in 200, from the exact
///   count, or from a count capped at that density), walking the sort key's index finds a
///   page after a few thousand rows: make it do so.
fn sqlite_hint(conn: &mut DbConnection, plan: &Plan<'_>, s: &Search) -> CoreResult<String> {
    let first_sort = s
        .sort_on
        .split(',')
        .next()
        .and_then(|k| k.split_whitespace().next())
        .unwrap_or_default();
    let few_visible = match plan.visible {
        crate::access::security::Visible::Sets(sets) if !sets.is_empty() => {
            let bound = if plan.equalities.is_empty() && !plan.words {
                SOME_VISIBLE
            } else {
                FEW_VISIBLE
            };
            visible_rows(conn, plan.visible)? <= bound
        }
        _ => false,
    };
    if few_visible {
        return Ok(" INDEXED BY documents_security_set".to_owned());
    }
    if let (Some(column), "modification_date", false) =
        (plan.equalities.first(), first_sort, plan.words)
    {
        return Ok(format!(" INDEXED BY {}", sort_index_name(column)));
    }
    let Some(index) = sort_index(plan.schema, &s.sort_on) else {
        return Ok(String::new());
    };
    let all = visible_rows(conn, &crate::access::security::Visible::All)?;
    let wanted = (all / 200).max(1_000);
    let matches = match plan.total {
        Some(total) => total,
        None => Statement {
            sql: format!(
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM documents WHERE {} LIMIT {wanted}) AS capped",
                plan.filter
            ),
            binds: plan.binds.to_vec(),
        }
        .query()
        .get_result::<CountRow>(conn)?
        .n,
    };
    Ok(if matches >= wanted {
        format!(" INDEXED BY {index}")
    } else {
        String::new()
    })
}

/// The catalog's after-write hook: the columns of a created, edited or transitioned
/// document follow it in the same transaction.
pub(crate) fn after_write(
    conn: &mut DbConnection,
    registry: &Registry,
    written: &Written<'_>,
) -> CoreResult<()> {
    match *written {
        Written::Created { doc } | Written::Updated { doc, .. } | Written::StateChanged { doc } => {
            index_document(conn, registry, doc)
        }
        _ => Ok(()),
    }
}
