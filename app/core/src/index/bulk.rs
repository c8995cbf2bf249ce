//! Bulk creation: many documents in one container, in one transaction, with multi-row
//! statements — the path for imports and loaders.
//!
//! The result is the same as calling [`document::create`] once per document (same checks,
//! ids, Owner role, initial workflow states, catalog columns, security set, full-text
//! outbox entry), but each table is written with a few large statements instead of a dozen
//! small ones per document. All documents of one portal type created by one owner in one
//! container have the same View principals, so the security set is computed once per type.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::access::security::User;
use crate::index::catalog::catalog_values;
use crate::model::error::{CoreError, CoreResult};
use crate::model::schema::documents;
use crate::model::types::{Registry, MODULE_FOLDER_TYPE};
use crate::store::db::DbConnection;
use crate::store::document::{self, NewDocument, RelationTargets};
use crate::store::sql::{Bind, Bound, Statement};

/// Bound values per statement at most (SQLite allows 32,766; PostgreSQL 65,535).
const MAX_BINDS: usize = 30_000;

#[derive(QueryableByName)]
struct Created {
    #[diesel(sql_type = BigInt)]
    uid: i64,
    #[diesel(sql_type = Text)]
    id: String,
}

struct Row<'r> {
    /// Position in the caller's list (for error messages).
    pos: usize,
    id: String,
    type_name: &'r str,
    values: Vec<Bind>,
    rels: RelationTargets,
}

/// Creates `news` in the container at `container_path`, owned by `owner`; returns their
/// uids in the order given. Fails as a whole (nothing created) when one is invalid; the
/// error names its position.
pub fn create_many(
    conn: &mut DbConnection,
    registry: &Registry,
    container_path: &str,
    news: Vec<NewDocument>,
    creator: &User,
) -> CoreResult<Vec<i64>> {
    let owner = creator.actor_login();
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let container = document::get(conn, container_path)?;
    let module = if container.portal_type == MODULE_FOLDER_TYPE {
        container.id.clone()
    } else {
        container.module.clone()
    };
    let t = document::now();
    let Checked {
        prepared,
        initial_states,
        catalog_columns,
    } = check_all(registry, &container, container_path, news)?;

    let wanted = prepared.iter().filter(|p| p.0.is_none()).count();
    let given: BTreeSet<String> = prepared.iter().filter_map(|p| p.0.clone()).collect();
    let mut free_ids = free_ids(conn, &container, wanted, given)?.into_iter();

    let nulls: Vec<Bind> = catalog_columns.values().cloned().collect();
    let catalog_columns: Vec<String> = catalog_columns.into_keys().collect();
    let mut rows = Vec::with_capacity(prepared.len());
    for (pos, (id, title, reference, description, p, values)) in prepared.into_iter().enumerate() {
        let id = match id {
            Some(id) => id,
            None => free_ids
                .next()
                .ok_or_else(|| CoreError::Internal("id block too small".into()))?,
        };
        let path = if container_path.is_empty() {
            id.clone()
        } else {
            format!("{container_path}/{id}")
        };
        let properties = serde_json::Value::Object(p.props).to_string();
        let mut by_column: BTreeMap<String, Bind> = values.into_iter().collect();
        let mut v = vec![
            Bind::Int(Some(container.uid)),
            Bind::Text(Some(path)),
            Bind::Text(Some(id.clone())),
            Bind::Text(Some(module.clone())),
            Bind::Text(Some(p.portal_type.name.clone())),
            Bind::Text(Some(title)),
            Bind::Text(reference),
            Bind::Text(Some(description)),
            Bind::Text(Some(owner.to_owned())),
            Bind::Timestamp(t),
            Bind::Timestamp(t),
            Bind::Int(Some(1)),
            Bind::Text(Some(properties)),
        ];
        for (c, null) in catalog_columns.iter().zip(&nulls) {
            v.push(by_column.remove(c).unwrap_or_else(|| null.clone()));
        }
        rows.push(Row {
            pos,
            id,
            type_name: p.portal_type.name.as_str(),
            values: v,
            rels: p.rels,
        });
    }

    // Documents, with their catalog columns and security set.
    let mut columns: Vec<&str> = vec![
        "parent_uid",
        "path",
        "id",
        "module",
        "portal_type",
        "title",
        "reference",
        "description",
        "owner",
        "creation_date",
        "modification_date",
        "serial",
        "properties",
    ];
    columns.extend(catalog_columns.iter().map(String::as_str));
    columns.push("security_set");
    let what = format!("one of the ids or references in /{container_path}");

    // The first document of each type goes in alone: its View principals, computed the
    // ordinary way, give the security set of every other document of that type here.
    let mut firsts: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        firsts.entry(row.type_name).or_insert(i);
    }
    let first_rows: Vec<&Row> = firsts.values().map(|i| &rows[*i]).collect();
    let mut uid_of = insert_documents(conn, &columns, &first_rows, |_| 0, &what, false)?;
    add_states_and_owner(conn, &first_rows, &uid_of, &initial_states, owner, false)?;
    let set_of = security_sets_of(conn, registry, &first_rows, &uid_of)?;
    let first_ids: BTreeSet<usize> = firsts.values().copied().collect();
    let rest: Vec<&Row> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !first_ids.contains(i))
        .map(|(_, r)| r)
        .collect();
    let set = |r: &Row| set_of.get(r.type_name).copied().unwrap_or_default();
    let suspended = RowTriggers::suspend(conn, rest.len())?;
    // With the row triggers away (and foreign keys unchecked), `INSERT OR IGNORE` lets
    // SQLite skip the statement journal it otherwise keeps for each multi-row statement
    // (a copy of every page the statement touches, so that a failing row could undo the
    // rows before it); a skipped row is found by counting and fails the whole load.
    let ignore = suspended.active();
    let rest_uids = insert_documents(conn, &columns, &rest, set, &what, ignore)?;
    add_states_and_owner(conn, &rest, &rest_uids, &initial_states, owner, ignore)?;
    let mut counts: BTreeMap<(i64, &str), i64> = BTreeMap::new();
    for r in &rest {
        *counts.entry((set(r), r.type_name)).or_default() += 1;
    }
    suspended.resume(conn, &counts, &module)?;
    uid_of.extend(rest_uids);
    let uids: Vec<i64> = rows
        .iter()
        .map(|r| {
            uid_of
                .get(&r.id)
                .copied()
                .ok_or_else(|| CoreError::Internal(format!("no uid returned for {}", r.id)))
        })
        .collect::<CoreResult<_>>()?;
    let first = uids.iter().copied().min().unwrap_or_default();
    let last = uids.iter().copied().max().unwrap_or_default();
    crate::index::fulltext::enqueue_range(conn, first, last)?;

    // Relations, where given (one document at a time: they name arbitrary targets).
    for (row, uid) in rows.iter_mut().zip(&uids) {
        if !row.rels.is_empty() {
            let doc = document::get_by_uid(conn, *uid)?;
            document::set_relations(conn, registry, creator, &doc, std::mem::take(&mut row.rels))?;
        }
    }
    Ok(uids)
}

/// A load's documents, checked: each with its id, title, reference, description,
/// prepared properties and catalog values, the initial workflow states per type, and
/// every catalog column any of them has (with a NULL of its SQL type).
struct Checked<'r> {
    prepared: Vec<Prepared<'r>>,
    initial_states: BTreeMap<&'r str, BTreeMap<String, String>>,
    catalog_columns: BTreeMap<String, Bind>,
}

/// One document of a load, checked: id, title, reference, description, properties and
/// catalog values.
type Prepared<'r> = (
    Option<String>,
    String,
    Option<String>,
    String,
    document::Prepared<'r>,
    Vec<(String, Bind)>,
);

/// Every document's type, checked properties and catalog values, before any write; an
/// error names the document's position.
fn check_all<'r>(
    registry: &'r Registry,
    container: &document::Document,
    container_path: &str,
    news: Vec<NewDocument>,
) -> CoreResult<Checked<'r>> {
    let at = |i: usize, e: CoreError| match e {
        CoreError::Invalid(m) => CoreError::Invalid(format!("document {i}: {m}")),
        CoreError::BadRequest(m) => CoreError::BadRequest(format!("document {i}: {m}")),
        other => other,
    };

    let mut initial_states: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    // Catalog column → a NULL of its SQL type, for documents of types without it.
    let mut catalog_columns: BTreeMap<String, Bind> = BTreeMap::new();
    let mut prepared = Vec::with_capacity(news.len());
    // Ids and (type, reference) pairs given in this load → the first document giving them.
    let mut given_ids: HashMap<String, usize> = HashMap::new();
    let mut given_refs: HashMap<(String, String), usize> = HashMap::new();
    for (i, new) in news.into_iter().enumerate() {
        let p = document::prepare(
            registry,
            container,
            container_path,
            &new.portal_type,
            new.properties,
        )
        .map_err(|e| at(i, e))?;
        if let Some(id) = &new.id {
            document::check_id(registry, id).map_err(|e| at(i, e))?;
            if let Some(first) = given_ids.insert(id.clone(), i) {
                return Err(CoreError::Conflict(format!(
                    "document {i}: id '{id}' is also given to document {first}"
                )));
            }
        }
        if let Some(reference) = &new.reference {
            let key = (p.portal_type.name.clone(), reference.clone());
            if let Some(first) = given_refs.insert(key, i) {
                return Err(CoreError::Conflict(format!(
                    "document {i}: reference '{reference}' is also given to document {first}"
                )));
            }
        }
        let states = initial_states
            .entry(p.portal_type.name.as_str())
            .or_insert_with(|| {
                p.portal_type
                    .workflows
                    .iter()
                    .filter_map(|w| {
                        registry
                            .workflow(w)
                            .map(|wf| (w.clone(), wf.initial.clone()))
                    })
                    .collect()
            });
        let values = catalog_values(registry, p.portal_type, &p.props, states);
        for (c, b) in &values {
            catalog_columns
                .entry(c.clone())
                .or_insert_with(|| null_like(b));
        }
        prepared.push((new.id, new.title, new.reference, new.description, p, values));
    }
    Ok(Checked {
        prepared,
        initial_states,
        catalog_columns,
    })
}

/// `wanted` auto-numbered ids for `container`: one block from its counter, skipping the
/// ids already in it and those `given` explicitly in this load, then one at a time from
/// the counter for those that were taken.
fn free_ids(
    conn: &mut DbConnection,
    container: &document::Document,
    wanted: usize,
    mut taken: BTreeSet<String>,
) -> CoreResult<Vec<String>> {
    let mut free = Vec::with_capacity(wanted);
    if wanted == 0 {
        return Ok(free);
    }
    let n = i64::try_from(wanted).unwrap_or(i64::MAX);
    diesel::update(documents::table.find(container.uid))
        .set(documents::next_child_id.eq(documents::next_child_id + n))
        .execute(conn)?;
    let last: i64 = documents::table
        .find(container.uid)
        .select(documents::next_child_id)
        .first(conn)?;
    let block: Vec<String> = ((last - n + 1)..=last).map(|k| k.to_string()).collect();
    for part in block.chunks(MAX_BINDS) {
        taken.extend(
            documents::table
                .filter(documents::parent_uid.eq(container.uid))
                .filter(documents::id.eq_any(part))
                .select(documents::id)
                .load::<String>(conn)?,
        );
    }
    free.extend(block.into_iter().filter(|id| !taken.contains(id)));
    while free.len() < wanted {
        let id = document::next_id(conn, container)?;
        if !taken.contains(&id) {
            free.push(id);
        }
    }
    Ok(free)
}

/// The security set of each portal type of the load, from its first document (inserted
/// alone): its View principals, computed the ordinary way, are every other document's.
fn security_sets_of<'r>(
    conn: &mut DbConnection,
    registry: &Registry,
    first_rows: &[&Row<'r>],
    uid_of: &HashMap<String, i64>,
) -> CoreResult<BTreeMap<&'r str, i64>> {
    let mut set_of = BTreeMap::new();
    for row in first_rows {
        let uid = uid_of.get(&row.id).copied().unwrap_or_default();
        let first = document::get_by_uid(conn, uid)?;
        let principals = crate::access::security::viewer_principals(conn, registry, &first)?;
        let set = crate::access::security::security_set(conn, &principals)?;
        Statement {
            sql: "UPDATE documents SET security_set = ? WHERE uid = ?".into(),
            binds: vec![Bind::Int(Some(set)), Bind::Int(Some(uid))],
        }
        .query()
        .execute(conn)?;
        set_of.insert(row.type_name, set);
    }
    Ok(set_of)
}

/// Inserts `rows` (values of `columns` but the last, the security set, which `set` gives);
/// returns id → uid.
fn insert_documents(
    conn: &mut DbConnection,
    columns: &[&str],
    rows: &[&Row],
    set: impl Fn(&Row) -> i64,
    what: &str,
    ignore: bool,
) -> CoreResult<HashMap<String, i64>> {
    let sets: Vec<Bind> = rows.iter().map(|r| Bind::Int(Some(set(r)))).collect();
    let mut binds = Vec::with_capacity(rows.len() * columns.len());
    for (r, s) in rows.iter().zip(&sets) {
        binds.extend(r.values.iter());
        binds.push(s);
    }
    let mut uid_of = HashMap::with_capacity(rows.len());
    let written = insert_prepared(
        conn,
        "documents",
        columns,
        &binds,
        " RETURNING uid, id",
        ignore,
        |conn, statement| {
            let created = match conn {
                DbConnection::Sqlite(c) => statement.load::<Created>(c),
                DbConnection::Postgres(_) => statement.load::<Created>(conn),
            }
            .map_err(|e| CoreError::from_write(e, what))?;
            let n = created.len();
            uid_of.extend(created.into_iter().map(|c| (c.id, c.uid)));
            Ok(n)
        },
    )?;
    if written < rows.len() {
        // A row was skipped (`INSERT OR IGNORE`): its id or reference is taken, by an
        // existing document or one before it in this load.
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        let skipped = rows
            .iter()
            .find(|r| !uid_of.contains_key(&r.id) || !seen.insert(r.id.as_str()))
            .map(|r| format!("document {} (id '{}')", r.pos, r.id))
            .unwrap_or_else(|| "a document".into());
        return Err(CoreError::Conflict(format!(
            "{what} already exists: {skipped} has the id or reference of another document"
        )));
    }
    Ok(uid_of)
}

/// The initial workflow states and the creator's Owner role of freshly inserted `rows`.
fn add_states_and_owner(
    conn: &mut DbConnection,
    rows: &[&Row],
    uid_of: &HashMap<String, i64>,
    initial_states: &BTreeMap<&str, BTreeMap<String, String>>,
    owner: &str,
    ignore: bool,
) -> CoreResult<()> {
    let mut states_rows = Vec::new();
    let mut owner_rows = Vec::new();
    for row in rows {
        let uid = Bind::Int(uid_of.get(&row.id).copied());
        for (wf, state) in initial_states.get(row.type_name).into_iter().flatten() {
            states_rows.push(vec![
                uid.clone(),
                Bind::Text(Some(wf.clone())),
                Bind::Text(Some(state.clone())),
            ]);
        }
        if !owner.is_empty() {
            owner_rows.push(vec![
                uid,
                Bind::Text(Some(format!("user:{owner}"))),
                Bind::Text(Some("Owner".into())),
            ]);
        }
    }
    insert_rows(
        conn,
        "workflow_states",
        &["uid", "workflow", "state"],
        &states_rows,
        ignore,
    )?;
    insert_rows(
        conn,
        "local_roles",
        &["uid", "principal", "role"],
        &owner_rows,
        ignore,
    )
}

/// Triggers that run once per inserted row on SQLite and whose work a bulk load does once
/// per batch instead: the catalog counters and the change generation. They are dropped
/// inside the load's transaction and created again from their stored SQL before it
/// commits, so no other connection ever sees the schema without them (DDL is
/// transactional in SQLite; a failed load rolls both back).
const ROW_TRIGGERS: [&str; 4] = [
    "catalog_counts_insert",
    "change_generation_documents_insert",
    "change_generation_workflow_states_insert",
    "change_generation_local_roles_insert",
];

/// Rows from which a bulk load suspends the row triggers.
const SUSPEND_TRIGGERS_FROM: usize = 1_000;

#[derive(QueryableByName)]
struct TriggerSql {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    sql: String,
}

/// The row triggers dropped for a bulk load, with the SQL that creates them again.
struct RowTriggers(Vec<TriggerSql>);

impl RowTriggers {
    /// Whether the triggers are dropped for this load.
    fn active(&self) -> bool {
        !self.0.is_empty()
    }

    /// Drops the row triggers for a load of `rows` rows, when that many are worth it:
    /// dropping and creating triggers changes the schema, which makes every connection
    /// (in every process) prepare its cached statements again.
    fn suspend(conn: &mut DbConnection, rows: usize) -> CoreResult<RowTriggers> {
        if rows < SUSPEND_TRIGGERS_FROM || !matches!(conn, DbConnection::Sqlite(_)) {
            // PostgreSQL's generation trigger runs per statement already.
            return Ok(RowTriggers(Vec::new()));
        }
        let names: Vec<String> = ROW_TRIGGERS.iter().map(|n| format!("'{n}'")).collect();
        let saved: Vec<TriggerSql> = diesel::sql_query(format!(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN ({})",
            names.join(", ")
        ))
        .load(conn)?;
        for t in &saved {
            conn.batch_execute(&format!("DROP TRIGGER {}", t.name))?;
        }
        Ok(RowTriggers(saved))
    }

    /// Does what the suspended triggers would have done for the rows inserted meanwhile
    /// (`counts`: documents per security set and portal type, all in `module`), then
    /// creates the triggers again.
    fn resume(
        self,
        conn: &mut DbConnection,
        counts: &BTreeMap<(i64, &str), i64>,
        module: &str,
    ) -> CoreResult<()> {
        let had = |name: &str| self.0.iter().any(|t| t.name == name);
        if had("catalog_counts_insert") {
            for ((set, portal_type), n) in counts {
                Statement {
                    sql: "INSERT INTO catalog_counts (security_set, portal_type, module, n) \
                          VALUES (?, ?, ?, ?) ON CONFLICT (security_set, portal_type, module) \
                          DO UPDATE SET n = n + excluded.n"
                        .into(),
                    binds: vec![
                        Bind::Int(Some(*set)),
                        Bind::Text(Some((*portal_type).to_owned())),
                        Bind::Text(Some(module.to_owned())),
                        Bind::Int(Some(*n)),
                    ],
                }
                .query()
                .execute(conn)?;
            }
        }
        if self
            .0
            .iter()
            .any(|t| t.name.starts_with("change_generation_"))
        {
            conn.batch_execute("UPDATE change_generation SET n = n + 1 WHERE id = 1")?;
        }
        for t in &self.0 {
            conn.batch_execute(&t.sql)?;
        }
        Ok(())
    }
}

/// A NULL bound with the SQL type of `b`.
fn null_like(b: &Bind) -> Bind {
    match b {
        Bind::Text(_) | Bind::Timestamp(_) => Bind::Text(None),
        Bind::Int(_) => Bind::Int(None),
        Bind::Float(_) => Bind::Float(None),
        Bind::Bool(_) => Bind::Bool(None),
    }
}

/// Rows per multi-row `INSERT` at most: one prepared statement serves all full groups.
const ROWS_PER_STATEMENT: usize = 64;

/// Inserts rows of `columns` (`binds`, row after row) into `table`: groups of
/// [`ROWS_PER_STATEMENT`] rows through one prepared multi-row statement and the rest one
/// row at a time through another, so a bulk load of any size prepares two statements per
/// table and column list (kept in the connection's statement cache) and binds its values
/// by reference. `run` executes each statement and says how many rows it wrote; the sum
/// is returned. With `ignore`, rows that break a constraint are skipped (`OR IGNORE`).
fn insert_prepared(
    conn: &mut DbConnection,
    table: &str,
    columns: &[&str],
    binds: &[&Bind],
    returning: &str,
    ignore: bool,
    mut run: impl FnMut(&mut DbConnection, Bound<'_>) -> CoreResult<usize>,
) -> CoreResult<usize> {
    let verb = if ignore { "INSERT OR IGNORE" } else { "INSERT" };
    let width = columns.len().max(1);
    let per = (MAX_BINDS / width).clamp(1, ROWS_PER_STATEMENT);
    let one = format!("({})", vec!["?"; width].join(", "));
    let sql = |rows: usize| {
        format!(
            "{verb} INTO {table} ({}) VALUES {}{returning}",
            columns.join(", "),
            vec![one.as_str(); rows].join(", ")
        )
    };
    let (many, single) = (sql(per), sql(1));
    let full = binds.len() / (per * width) * (per * width);
    let mut written = 0;
    for group in binds[..full].chunks(per * width) {
        written += run(
            conn,
            Bound {
                sql: &many,
                binds: group,
                cache: true,
            },
        )?;
    }
    for row in binds[full..].chunks(width) {
        written += run(
            conn,
            Bound {
                sql: &single,
                binds: row,
                cache: true,
            },
        )?;
    }
    Ok(written)
}

/// Inserts `rows` into `table`; with `ignore`, a row that breaks a constraint fails the
/// load (after the statement) instead of aborting the statement.
fn insert_rows(
    conn: &mut DbConnection,
    table: &str,
    columns: &[&str],
    rows: &[Vec<Bind>],
    ignore: bool,
) -> CoreResult<()> {
    let binds: Vec<&Bind> = rows.iter().flatten().collect();
    let written = insert_prepared(
        conn,
        table,
        columns,
        &binds,
        "",
        ignore,
        |conn, statement| {
            Ok(match conn {
                DbConnection::Sqlite(c) => statement.execute(c),
                DbConnection::Postgres(_) => statement.execute(conn),
            }?)
        },
    )?;
    if written < rows.len() {
        return Err(CoreError::Internal(format!(
            "{} of {} rows into {table} broke a constraint",
            rows.len() - written,
            rows.len()
        )));
    }
    Ok(())
}
