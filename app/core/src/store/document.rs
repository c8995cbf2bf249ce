//! Documents: rows of the `documents` table, their properties, relations and containment.
//!
//! Every function here takes a connection so that callers compose them inside one
//! transaction; the portal (`run::portal`) is the convenient entry point. Each write tells
//! the after-write hooks ([`crate::store::after_write`]) what it wrote.

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::{Map, Value};

use crate::model::error::{CoreError, CoreResult};
use crate::model::permission::User;
use crate::model::property::{check_value, relation_targets};
use crate::model::schema::{documents, local_roles, relations, workflow_states};
use crate::model::types::{PortalType, PropertyType, Registry, MODULE_FOLDER_TYPE, PORTAL_TYPE};
use crate::store::after_write::{notify, Written};
use crate::store::db::DbConnection;

pub use crate::model::document::{
    format_time, Document, DocumentPatch, NewDocument, RelationTargets, CORE_FIELDS, RESERVED_IDS,
};

/// Checks an id given by a user: it becomes a path segment and a URL segment.
pub fn check_id(registry: &Registry, id: &str) -> CoreResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(CoreError::Invalid(format!(
            "id '{id}' is not allowed: use 1 to 200 letters, digits, '_', '-' or '.', not starting with '.'"
        )));
    }
    if registry.is_reserved_id(id) {
        return Err(CoreError::Invalid(format!(
            "id '{id}' is reserved for the server's routes (reserved: {})",
            registry.reserved_ids().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}

/// The object at `path` ("" is the portal), if any.
pub fn find(conn: &mut DbConnection, path: &str) -> CoreResult<Option<Document>> {
    Ok(documents::table
        .filter(documents::path.eq(path))
        .select(Document::as_select())
        .first(conn)
        .optional()?)
}

/// The first of `paths`, in the order given, that holds a document of `portal_type`
/// (one query): how a name is looked up along a chain of containers.
pub fn find_first_of_type(
    conn: &mut DbConnection,
    paths: &[String],
    portal_type: &str,
) -> CoreResult<Option<Document>> {
    let found: Vec<Document> = documents::table
        .filter(documents::path.eq_any(paths))
        .filter(documents::portal_type.eq(portal_type))
        .select(Document::as_select())
        .load(conn)?;
    Ok(paths
        .iter()
        .find_map(|p| found.iter().find(|d| &d.path == p).cloned()))
}

/// The object at `path`, or [`CoreError::NotFound`].
pub fn get(conn: &mut DbConnection, path: &str) -> CoreResult<Document> {
    find(conn, path)?.ok_or_else(|| CoreError::NotFound(format!("no document at /{path}")))
}

/// The object with `uid`, or [`CoreError::NotFound`].
pub fn get_by_uid(conn: &mut DbConnection, uid: i64) -> CoreResult<Document> {
    documents::table
        .find(uid)
        .select(Document::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| CoreError::NotFound(format!("no document with uid {uid}")))
}

/// The documents with these uids, in the order given; uids of missing documents are
/// skipped (and repeated ones given once). On SQLite one primary-key lookup per uid (one
/// prepared statement): for `uid IN (…)` its planner weighs the list against the table's
/// statistics, and with statistics older than the table's growth (taken when the portal
/// held 16 documents, or 4,000 of 8,000) it scanned the whole table for every listing
/// page. On PostgreSQL one query per 10,000 uids.
pub fn get_many(conn: &mut DbConnection, uids: &[i64]) -> CoreResult<Vec<Document>> {
    let mut found: BTreeMap<i64, Document> = BTreeMap::new();
    if matches!(conn, DbConnection::Sqlite(_)) {
        for &uid in uids {
            if found.contains_key(&uid) {
                continue;
            }
            if let Some(doc) = documents::table
                .find(uid)
                .select(Document::as_select())
                .first(conn)
                .optional()?
            {
                found.insert(uid, doc);
            }
        }
    } else {
        for part in uids.chunks(10_000) {
            let docs: Vec<Document> = documents::table
                .filter(documents::uid.eq_any(part))
                .select(Document::as_select())
                .load(conn)?;
            found.extend(docs.into_iter().map(|d| (d.uid, d)));
        }
    }
    Ok(uids.iter().filter_map(|u| found.remove(u)).collect())
}

/// Sub-objects of `parent_uid` in creation order, with their total count. With
/// `viewers`, only documents one of those principals may View are listed and counted
/// (filtered in SQL, before LIMIT).
pub fn children(
    conn: &mut DbConnection,
    parent_uid: i64,
    viewers: Option<&[String]>,
    limit: i64,
    offset: i64,
) -> CoreResult<(Vec<Document>, i64)> {
    let mut items = documents::table
        .filter(documents::parent_uid.eq(parent_uid))
        .into_boxed();
    let mut count = documents::table
        .filter(documents::parent_uid.eq(parent_uid))
        .into_boxed();
    if let Some(p) = viewers {
        let visible = crate::store::visible::Visible::for_principals(conn, p)?.sql();
        items = items.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&visible));
        count = count.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&visible));
    }
    let items = items
        .order(documents::uid.asc())
        .limit(limit)
        .offset(offset)
        .select(Document::as_select())
        .load(conn)?;
    let total = count.count().get_result(conn)?;
    Ok((items, total))
}

#[derive(Insertable)]
#[diesel(table_name = documents)]
struct NewRow<'a> {
    parent_uid: Option<i64>,
    path: &'a str,
    id: &'a str,
    module: &'a str,
    portal_type: &'a str,
    title: &'a str,
    reference: Option<&'a str>,
    description: &'a str,
    owner: &'a str,
    creation_date: NaiveDateTime,
    modification_date: NaiveDateTime,
    serial: i64,
    properties: &'a str,
}

pub(crate) fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

#[expect(
    clippy::too_many_arguments,
    reason = "one row's columns, used twice in this file"
)]
pub(crate) fn insert_row(
    conn: &mut DbConnection,
    parent_uid: Option<i64>,
    path: &str,
    id: &str,
    module: &str,
    portal_type: &str,
    title: &str,
    owner: &str,
    properties: &str,
) -> CoreResult<Document> {
    let t = now();
    diesel::insert_into(documents::table)
        .values(NewRow {
            parent_uid,
            path,
            id,
            module,
            portal_type,
            title,
            reference: None,
            description: "",
            owner,
            creation_date: t,
            modification_date: t,
            serial: 1,
            properties,
        })
        .execute(conn)
        .map_err(|e| CoreError::from_write(e, &format!("/{path}")))?;
    get(conn, path)
}

/// Which portal types may be created inside `container`: those it names, and in every
/// container the types allowed anywhere ([`crate::model::types::PortalType::anywhere`]).
pub fn allowed_types<'r>(registry: &'r Registry, container: &Document) -> Vec<&'r str> {
    let names: Vec<String> = match container.portal_type.as_str() {
        MODULE_FOLDER_TYPE => registry
            .folder(&container.id)
            .map(|f| f.allowed_content_types.clone())
            .unwrap_or_default(),
        PORTAL_TYPE => Vec::new(),
        other => registry
            .portal_type(other)
            .map(|t| t.allowed_content_types.clone())
            .unwrap_or_default(),
    };
    let mut allowed: Vec<&'r str> = names
        .iter()
        .filter_map(|n| registry.portal_type(n).map(|t| t.name.as_str()))
        .collect();
    // Types allowed anywhere go in every container: module folders and documents whose
    // type holds sub-documents (never the portal root, nor a leaf document).
    if container.portal_type == MODULE_FOLDER_TYPE || !allowed.is_empty() {
        for t in registry.portal_types() {
            if t.anywhere && !allowed.contains(&t.name.as_str()) {
                allowed.push(t.name.as_str());
            }
        }
    }
    allowed
}

/// Creates a document inside `container_path`; the caller holds a write transaction.
pub fn create(
    conn: &mut DbConnection,
    registry: &Registry,
    container_path: &str,
    new: NewDocument,
    creator: &User,
) -> CoreResult<Document> {
    let owner = creator.login.as_deref().unwrap_or("");
    let container = get(conn, container_path)?;
    let Prepared {
        portal_type,
        props,
        rels,
    } = prepare(
        registry,
        &container,
        container_path,
        &new.portal_type,
        new.properties,
    )?;
    let id = match new.id {
        Some(id) => {
            check_id(registry, &id)?;
            id
        }
        None => next_id(conn, &container)?,
    };
    let path = if container_path.is_empty() {
        id.clone()
    } else {
        format!("{container_path}/{id}")
    };
    let module = if container.portal_type == MODULE_FOLDER_TYPE {
        container.id.clone()
    } else {
        container.module.clone()
    };
    let properties = Value::Object(props).to_string();
    let t = now();
    diesel::insert_into(documents::table)
        .values(NewRow {
            parent_uid: Some(container.uid),
            path: &path,
            id: &id,
            module: &module,
            portal_type: &portal_type.name,
            title: &new.title,
            reference: new.reference.as_deref(),
            description: &new.description,
            owner,
            creation_date: t,
            modification_date: t,
            serial: 1,
            properties: &properties,
        })
        .execute(conn)
        .map_err(|e| match CoreError::from_write(e, &format!("/{path}")) {
            CoreError::Conflict(_)
                if new.reference.is_some() && find(conn, &path).ok().flatten().is_none() =>
            {
                CoreError::Conflict(format!(
                    "a {} with reference '{}' already exists",
                    portal_type.name,
                    new.reference.as_deref().unwrap_or_default()
                ))
            }
            other => other,
        })?;
    let doc = get(conn, &path)?;
    set_relations(conn, registry, creator, &doc, rels)?;
    if !owner.is_empty() {
        // The creator is Owner of what they create, locally.
        diesel::insert_into(local_roles::table)
            .values((
                local_roles::uid.eq(doc.uid),
                local_roles::principal.eq(format!("user:{owner}")),
                local_roles::role.eq("Owner"),
            ))
            .execute(conn)?;
    }
    notify(conn, registry, Written::Created { doc: &doc })?;
    Ok(doc)
}

/// A new document's type and checked properties.
pub(crate) struct Prepared<'r> {
    pub(crate) portal_type: &'r PortalType,
    pub(crate) props: Map<String, Value>,
    pub(crate) rels: RelationTargets,
}

/// Resolves the portal type of a new document in `container` and checks its properties
/// against the schema (defaults filled in, required ones present).
pub(crate) fn prepare<'r>(
    registry: &'r Registry,
    container: &Document,
    container_path: &str,
    type_name: &Option<String>,
    properties: Map<String, Value>,
) -> CoreResult<Prepared<'r>> {
    let allowed = allowed_types(registry, container);
    // The default type is the one the container names, never a type allowed anywhere.
    let named: Vec<&str> = allowed
        .iter()
        .copied()
        .filter(|t| registry.portal_type(t).is_some_and(|t| !t.anywhere))
        .collect();
    let type_name = match type_name {
        Some(name) => name.clone(),
        None if named.len() == 1 => named[0].to_owned(),
        None => {
            return Err(CoreError::Invalid(format!(
                "portal_type is required in /{container_path}; allowed: {}",
                allowed.join(", ")
            )))
        }
    };
    let portal_type = registry
        .portal_type(&type_name)
        .ok_or_else(|| CoreError::Invalid(format!("unknown portal type '{type_name}'")))?;
    if !allowed.contains(&portal_type.name.as_str()) {
        return Err(CoreError::Invalid(format!(
            "portal type {type_name} is not allowed in /{container_path}; allowed: {}",
            if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            }
        )));
    }
    let (mut props, rels) = split_properties(portal_type, properties)?;
    for def in &portal_type.properties {
        if def.kind == PropertyType::Relation {
            if def.required && rels.get(&def.name).is_none_or(Vec::is_empty) {
                return Err(missing(portal_type, &def.name));
            }
            continue;
        }
        if !props.contains_key(&def.name) {
            match &def.default {
                Some(v) => {
                    props.insert(def.name.clone(), v.clone());
                }
                None if def.required => return Err(missing(portal_type, &def.name)),
                None => {}
            }
        }
    }
    validated(portal_type, &props)?;
    Ok(Prepared {
        portal_type,
        props,
        rels,
    })
}

/// Runs the type's whole-document check; its refusal is the client's (422).
fn validated(portal_type: &PortalType, props: &Map<String, Value>) -> CoreResult<()> {
    match &portal_type.validate {
        None => Ok(()),
        Some(check) => check(props).map_err(|e| match e {
            CoreError::BadRequest(m) => CoreError::Invalid(m),
            other => other,
        }),
    }
}

fn missing(portal_type: &PortalType, name: &str) -> CoreError {
    CoreError::Invalid(format!(
        "property '{name}' is required for portal type {}",
        portal_type.name
    ))
}

/// The next free auto-number in `container`. The counter update comes first so that it
/// locks the container row on PostgreSQL: two concurrent creations never get one id.
pub(crate) fn next_id(conn: &mut DbConnection, container: &Document) -> CoreResult<String> {
    loop {
        diesel::update(documents::table.find(container.uid))
            .set(documents::next_child_id.eq(documents::next_child_id + 1))
            .execute(conn)?;
        let n: i64 = documents::table
            .find(container.uid)
            .select(documents::next_child_id)
            .first(conn)?;
        let id = n.to_string();
        let taken = documents::table
            .filter(documents::parent_uid.eq(container.uid))
            .filter(documents::id.eq(&id))
            .count()
            .get_result::<i64>(conn)?
            > 0;
        if !taken {
            return Ok(id);
        }
    }
}

/// Splits given properties into checked plain values and relation targets (as paths).
fn split_properties(
    portal_type: &PortalType,
    given: Map<String, Value>,
) -> CoreResult<(Map<String, Value>, RelationTargets)> {
    let mut props = Map::new();
    let mut rels = BTreeMap::new();
    for (name, value) in given {
        let def = portal_type.property_def(&name).ok_or_else(|| {
            CoreError::Invalid(format!(
                "unknown property '{name}' for portal type {}",
                portal_type.name
            ))
        })?;
        if def.kind == PropertyType::Relation {
            rels.insert(name, relation_targets(portal_type, def, &value)?);
        } else if value.is_null() {
            if def.required {
                return Err(missing(portal_type, &name));
            }
        } else {
            props.insert(name, check_value(portal_type, def, value)?);
        }
    }
    Ok((props, rels))
}

/// Replaces the named relations of `doc` with the given targets, which must exist and be
/// visible to `writer`: a target the writer may not View is refused exactly like a
/// missing one, so a relation cannot tell whether a hidden document exists.
pub(crate) fn set_relations(
    conn: &mut DbConnection,
    registry: &Registry,
    writer: &User,
    doc: &Document,
    rels: BTreeMap<String, Vec<String>>,
) -> CoreResult<()> {
    for (name, paths) in rels {
        diesel::delete(
            relations::table
                .filter(relations::source_uid.eq(doc.uid))
                .filter(relations::name.eq(&name)),
        )
        .execute(conn)?;
        for (position, path) in paths.iter().enumerate() {
            let missing = || {
                CoreError::Invalid(format!(
                    "relation '{name}' names a missing document /{path}"
                ))
            };
            let target = find(conn, path)?.ok_or_else(missing)?;
            // Access refuses a target the writer may not View, exactly like a missing one.
            notify(
                conn,
                registry,
                Written::Relation {
                    writer,
                    name: &name,
                    target: &target,
                },
            )?;
            let position = i32::try_from(position).map_err(|_| {
                CoreError::Invalid(format!("relation '{name}' has too many targets"))
            })?;
            diesel::insert_into(relations::table)
                .values((
                    relations::source_uid.eq(doc.uid),
                    relations::name.eq(&name),
                    relations::target_uid.eq(target.uid),
                    relations::position.eq(position),
                ))
                .execute(conn)
                .map_err(|e| CoreError::from_write(e, &format!("relation '{name}' to /{path}")))?;
        }
    }
    Ok(())
}

/// Applies `patch` to the document at `path` if its serial still matches; the caller
/// holds a write transaction.
pub fn update(
    conn: &mut DbConnection,
    registry: &Registry,
    path: &str,
    patch: DocumentPatch,
    editor: &User,
) -> CoreResult<Document> {
    let doc = get(conn, path)?;
    let portal_type = registry.portal_type(&doc.portal_type).ok_or_else(|| {
        CoreError::Invalid(format!(
            "/{path} is a {} and cannot be edited",
            doc.portal_type
        ))
    })?;
    let serial = patch.serial.ok_or_else(|| {
        CoreError::BadRequest(format!(
            "an edit must say which serial it is based on (current serial of /{path} is {})",
            doc.serial
        ))
    })?;
    let mut props = doc.property_map()?;
    let mut removed = Vec::new();
    for (name, value) in &patch.properties {
        if value.is_null() {
            removed.push(name.clone());
        }
    }
    let (changed, rels) = split_properties(portal_type, patch.properties)?;
    for name in removed {
        props.remove(&name);
    }
    props.extend(changed);
    validated(portal_type, &props)?;
    let reference = match patch.reference {
        Some(r) => r,
        None => doc.reference.clone(),
    };
    let updated = diesel::update(
        documents::table
            .filter(documents::uid.eq(doc.uid))
            .filter(documents::serial.eq(serial)),
    )
    .set((
        documents::title.eq(patch.title.unwrap_or_else(|| doc.title.clone())),
        documents::reference.eq(&reference),
        documents::description.eq(patch.description.unwrap_or_else(|| doc.description.clone())),
        documents::properties.eq(Value::Object(props).to_string()),
        documents::modification_date.eq(now()),
        documents::serial.eq(documents::serial + 1),
    ))
    .execute(conn)
    .map_err(|e| match CoreError::from_write(e, &format!("/{path}")) {
        CoreError::Conflict(_) => CoreError::Conflict(format!(
            "a {} with reference '{}' already exists",
            doc.portal_type,
            reference.clone().unwrap_or_default()
        )),
        other => other,
    })?;
    if updated == 0 {
        return Err(stale(&doc, serial));
    }
    set_relations(conn, registry, editor, &doc, rels)?;
    let before = doc;
    let doc = get(conn, path)?;
    notify(
        conn,
        registry,
        Written::Updated {
            doc: &doc,
            before: &before,
        },
    )?;
    Ok(doc)
}

fn stale(doc: &Document, serial: i64) -> CoreError {
    CoreError::Conflict(format!(
        "/{} was changed meanwhile: the edit is based on serial {serial}, the current serial is {}",
        doc.path, doc.serial
    ))
}

/// Deletes the document at `path` with its sub-documents and relations. With a serial,
/// refuses when the document changed meanwhile. For every deleted document whose type
/// keeps data outside the database ([`crate::model::types::OnDelete`]), queues the activity that
/// removes it once this transaction has committed.
pub fn delete(
    conn: &mut DbConnection,
    registry: &Registry,
    path: &str,
    serial: Option<i64>,
) -> CoreResult<()> {
    let doc = get(conn, path)?;
    if matches!(doc.portal_type.as_str(), PORTAL_TYPE | MODULE_FOLDER_TYPE) {
        return Err(CoreError::Invalid(format!(
            "/{path} is a {} and cannot be deleted",
            doc.portal_type
        )));
    }
    if let Some(s) = serial {
        if s != doc.serial {
            return Err(stale(&doc, s));
        }
    }
    // The document and everything it contains go: each is told to the hooks (full-text
    // entries, the purge of data kept outside the database).
    let below: Vec<(i64, String, String)> = documents::table
        .filter(documents::path.gt(format!("{}/", doc.path)))
        .filter(documents::path.lt(format!("{}0", doc.path)))
        .select((documents::uid, documents::portal_type, documents::path))
        .load(conn)?;
    for (uid, portal_type, path) in
        below
            .into_iter()
            .chain([(doc.uid, doc.portal_type.clone(), doc.path.clone())])
    {
        notify(
            conn,
            registry,
            Written::Deleted {
                uid,
                portal_type: &portal_type,
                path: &path,
            },
        )?;
    }
    diesel::delete(documents::table.find(doc.uid)).execute(conn)?;
    Ok(())
}

/// Paths of the targets of relation `name` from `doc` (`None`: every relation), by name.
pub fn relations_from(
    conn: &mut DbConnection,
    uid: i64,
    name: Option<&str>,
) -> CoreResult<BTreeMap<String, Vec<String>>> {
    let mut query = relations::table
        .inner_join(documents::table.on(documents::uid.eq(relations::target_uid)))
        .filter(relations::source_uid.eq(uid))
        .into_boxed();
    if let Some(n) = name {
        query = query.filter(relations::name.eq(n.to_owned()));
    }
    let rows: Vec<(String, String)> = query
        .order((relations::name.asc(), relations::position.asc()))
        .select((relations::name, documents::path))
        .load(conn)?;
    Ok(group(rows))
}

/// Paths of the documents whose relation `name` points at `uid`, by relation name.
pub fn relations_to(
    conn: &mut DbConnection,
    uid: i64,
    name: Option<&str>,
) -> CoreResult<BTreeMap<String, Vec<String>>> {
    let mut query = relations::table
        .inner_join(documents::table.on(documents::uid.eq(relations::source_uid)))
        .filter(relations::target_uid.eq(uid))
        .into_boxed();
    if let Some(n) = name {
        query = query.filter(relations::name.eq(n.to_owned()));
    }
    let rows: Vec<(String, String)> = query
        .order((relations::name.asc(), documents::uid.asc()))
        .select((relations::name, documents::path))
        .load(conn)?;
    Ok(group(rows))
}

fn group(rows: Vec<(String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, path) in rows {
        out.entry(name).or_default().push(path);
    }
    out
}

/// The document as the API shows it: core fields, properties, and outgoing relations
/// (a path, or a list of paths for multiple relations).
pub fn to_json(conn: &mut DbConnection, registry: &Registry, doc: &Document) -> CoreResult<Value> {
    to_json_many(conn, registry, std::slice::from_ref(doc))?
        .pop()
        .ok_or_else(|| CoreError::Internal("no JSON for the document".into()))
}

/// Uids per statement when reading what several documents have in other tables.
const UIDS_PER_QUERY: usize = 500;

/// [`to_json`] of each of `docs`, in order, reading their workflow states and relations
/// in one query each (per [`UIDS_PER_QUERY`] documents) instead of two per document.
pub fn to_json_many(
    conn: &mut DbConnection,
    registry: &Registry,
    docs: &[Document],
) -> CoreResult<Vec<Value>> {
    let uids: Vec<i64> = docs.iter().map(|d| d.uid).collect();
    let with_relations: Vec<i64> = docs
        .iter()
        .filter(|d| {
            registry.portal_type(&d.portal_type).is_some_and(|t| {
                t.properties
                    .iter()
                    .any(|p| p.kind == PropertyType::Relation)
            })
        })
        .map(|d| d.uid)
        .collect();
    let mut states = BTreeMap::new();
    let mut rels: BTreeMap<i64, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for part in uids.chunks(UIDS_PER_QUERY) {
        states.extend(workflow_states_of(conn, part)?);
    }
    for part in with_relations.chunks(UIDS_PER_QUERY) {
        let rows: Vec<(i64, String, String)> = relations::table
            .inner_join(documents::table.on(documents::uid.eq(relations::target_uid)))
            .filter(relations::source_uid.eq_any(part))
            .order((
                relations::source_uid.asc(),
                relations::name.asc(),
                relations::position.asc(),
            ))
            .select((relations::source_uid, relations::name, documents::path))
            .load(conn)?;
        for (uid, name, path) in rows {
            rels.entry(uid)
                .or_default()
                .entry(name)
                .or_default()
                .push(path);
        }
    }
    docs.iter()
        .map(|doc| {
            let mut out = match serde_json::to_value(doc) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(CoreError::Internal(
                        "document did not serialize to an object".into(),
                    ))
                }
            };
            if let Some(parent) = doc.parent_path() {
                out.insert("parent".into(), Value::from(parent));
            }
            if let Some(states) = states.remove(&doc.uid).filter(|s| !s.is_empty()) {
                out.insert(
                    "workflow_states".into(),
                    serde_json::to_value(states).map_err(|e| CoreError::Internal(e.to_string()))?,
                );
            }
            out.extend(doc.property_map()?);
            if let Some(t) = registry.portal_type(&doc.portal_type) {
                let mut doc_rels = rels.remove(&doc.uid).unwrap_or_default();
                for def in t
                    .properties
                    .iter()
                    .filter(|d| d.kind == PropertyType::Relation)
                {
                    let targets = doc_rels.remove(&def.name).unwrap_or_default();
                    let value = if def.multiple {
                        Value::from(targets)
                    } else {
                        targets
                            .into_iter()
                            .next()
                            .map(Value::from)
                            .unwrap_or(Value::Null)
                    };
                    out.insert(def.name.clone(), value);
                }
            }
            Ok(Value::Object(out))
        })
        .collect()
}

/// Current workflow states of several documents in one query (listings), by uid.
pub fn workflow_states_of(
    conn: &mut DbConnection,
    uids: &[i64],
) -> CoreResult<BTreeMap<i64, BTreeMap<String, String>>> {
    let rows: Vec<(i64, String, String)> = workflow_states::table
        .filter(workflow_states::uid.eq_any(uids))
        .select((
            workflow_states::uid,
            workflow_states::workflow,
            workflow_states::state,
        ))
        .load(conn)?;
    let mut out: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    for (uid, workflow, state) in rows {
        out.entry(uid).or_default().insert(workflow, state);
    }
    Ok(out)
}

/// Current state of each workflow of a document.
pub fn workflow_states(conn: &mut DbConnection, uid: i64) -> CoreResult<BTreeMap<String, String>> {
    Ok(workflow_states::table
        .filter(workflow_states::uid.eq(uid))
        .select((workflow_states::workflow, workflow_states::state))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect())
}
