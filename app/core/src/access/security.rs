//! Roles, permissions and the one enforcement point, [`check`].
//!
//! A user's roles on a document are their global roles (their own and their groups'),
//! plus local roles given on the document and, unless a document blocks acquisition, on
//! each of its containers. Which roles hold a permission comes from the portal type's map,
//! overridden per permission by the current state of each workflow in its chain (later
//! workflows in the chain win). The principals allowed to View each document form its
//! security set (`documents.security_set`, shared by every document with the same
//! principals, as ERP5's `security_uid`), so listings filter on one integer column in SQL
//! before LIMIT.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;

use crate::model::error::{CoreError, CoreResult};
use crate::model::schema::{documents, local_roles, security_set_principals, security_sets};
use crate::model::types::{Registry, MODULE_FOLDER_TYPE, PORTAL_TYPE};
use crate::store::db::DbConnection;
use crate::store::document::{self, Document};

pub use crate::model::permission::{
    check_principal, check_role, default_document_map, module_folder_map, permission_map,
    portal_map, Permission, PermissionMap, User, ROLES,
};
use crate::store::after_write::{notify, Written};
pub use crate::store::document::{workflow_states, workflow_states_of};
use crate::store::sql::{Bind, Statement};
pub use crate::store::visible::Visible;

/// The permission map in force on `doc` given its workflow `states`.
pub fn effective_map(
    registry: &Registry,
    doc: &Document,
    states: &BTreeMap<String, String>,
) -> PermissionMap {
    match doc.portal_type.as_str() {
        PORTAL_TYPE => portal_map(),
        MODULE_FOLDER_TYPE => module_folder_map(),
        type_name => {
            let Some(t) = registry.portal_type(type_name) else {
                // A type no longer compiled in: only managers may touch its documents.
                return permission_map(&Permission::ALL.map(|p| (p, &["Manager"][..])));
            };
            let mut map = t.permissions.clone();
            for wf_id in &t.workflows {
                let state = states
                    .get(wf_id)
                    .and_then(|s| registry.workflow(wf_id).and_then(|w| w.get_state(s)));
                if let Some(state) = state {
                    for (p, roles) in &state.permissions {
                        map.insert(*p, roles.clone());
                    }
                }
            }
            map
        }
    }
}

/// Local role assignments on `doc` and, unless blocked, on its containers:
/// `(principal, role)` pairs.
pub fn acquired_local_roles(
    conn: &mut DbConnection,
    doc: &Document,
) -> CoreResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut holder = doc.clone();
    loop {
        let rows: Vec<(String, String)> = local_roles::table
            .filter(local_roles::uid.eq(holder.uid))
            .select((local_roles::principal, local_roles::role))
            .load(conn)?;
        out.extend(rows);
        if holder.block_acquisition {
            break;
        }
        match holder.parent_path() {
            Some(parent) => holder = document::get(conn, parent)?,
            None => break,
        }
    }
    Ok(out)
}

/// Every role `user` has on `doc`: global roles plus acquired local roles.
pub fn roles_on(
    conn: &mut DbConnection,
    user: &User,
    doc: &Document,
) -> CoreResult<BTreeSet<String>> {
    let mine = user.local_principals();
    let mut roles = user.roles.clone();
    for (principal, role) in acquired_local_roles(conn, doc)? {
        if mine.contains(&principal) {
            roles.insert(role);
        }
    }
    Ok(roles)
}

/// Whether `user` holds `permission` on `doc`.
pub fn has_permission(
    conn: &mut DbConnection,
    registry: &Registry,
    user: &User,
    doc: &Document,
    permission: Permission,
) -> CoreResult<bool> {
    let states = workflow_states(conn, doc.uid)?;
    let map = effective_map(registry, doc, &states);
    let roles = roles_on(conn, user, doc)?;
    Ok(map
        .get(&permission)
        .is_some_and(|allowed| !allowed.is_disjoint(&roles)))
}

/// The one enforcement point. Fails with NotFound when the user may not even View the
/// document (its existence must not leak), Unauthorized for anonymous visitors, and
/// Forbidden with the reason otherwise.
pub fn check(
    conn: &mut DbConnection,
    registry: &Registry,
    user: &User,
    doc: &Document,
    permission: Permission,
) -> CoreResult<()> {
    let states = workflow_states(conn, doc.uid)?;
    let map = effective_map(registry, doc, &states);
    let roles = roles_on(conn, user, doc)?;
    let allowed = |p: Permission| map.get(&p).is_some_and(|a| !a.is_disjoint(&roles));
    if allowed(permission) {
        return Ok(());
    }
    let container = matches!(doc.portal_type.as_str(), PORTAL_TYPE | MODULE_FOLDER_TYPE);
    if !container && !allowed(Permission::View) {
        return Err(CoreError::NotFound(format!("no document at /{}", doc.path)));
    }
    if user.login.is_none() {
        return Err(CoreError::Unauthorized(format!(
            "log in to get '{permission}' on /{}",
            doc.path
        )));
    }
    let needed: Vec<&str> = map
        .get(&permission)
        .map(|s| s.iter().map(String::as_str).collect())
        .unwrap_or_default();
    Err(CoreError::Forbidden(format!(
        "{} lacks permission '{permission}' on /{} (roles there: {}; roles allowed: {})",
        user.actor(),
        doc.path,
        roles
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        if needed.is_empty() {
            "none".to_owned()
        } else {
            needed.join(", ")
        }
    )))
}

/// The principals allowed to View `doc`: every role holding View there, and every user
/// or group holding such a role locally (acquired).
pub fn viewer_principals(
    conn: &mut DbConnection,
    registry: &Registry,
    doc: &Document,
) -> CoreResult<BTreeSet<String>> {
    let states = workflow_states(conn, doc.uid)?;
    let map = effective_map(registry, doc, &states);
    let view_roles = map.get(&Permission::View).cloned().unwrap_or_default();
    let mut principals: BTreeSet<String> = view_roles.iter().map(|r| format!("role:{r}")).collect();
    for (principal, role) in acquired_local_roles(conn, doc)? {
        if view_roles.contains(&role) {
            principals.insert(principal);
        }
    }
    Ok(principals)
}

/// The id of the security set holding exactly `principals`, created when new.
pub fn security_set(conn: &mut DbConnection, principals: &BTreeSet<String>) -> CoreResult<i64> {
    let key = principals
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    let found: Option<i64> = security_sets::table
        .filter(security_sets::principals.eq(&key))
        .select(security_sets::id)
        .first(conn)
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    let id: i64 = diesel::insert_into(security_sets::table)
        .values(security_sets::principals.eq(&key))
        .returning(security_sets::id)
        .get_result(conn)?;
    for p in principals {
        diesel::insert_into(security_set_principals::table)
            .values((
                security_set_principals::principal.eq(p),
                security_set_principals::set_id.eq(id),
            ))
            .execute(conn)?;
    }
    Ok(id)
}

/// The security set of the document `uid` (0 before it was computed).
pub fn security_set_of(conn: &mut DbConnection, uid: i64) -> CoreResult<i64> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        security_set: i64,
    }
    let q = Statement {
        sql: "SELECT security_set FROM documents WHERE uid = ?".into(),
        binds: vec![Bind::Int(Some(uid))],
    };
    Ok(q.query()
        .get_result::<Row>(conn)
        .optional()?
        .map(|r| r.security_set)
        .unwrap_or_default())
}

/// Recomputes who may View `doc` and files it under the matching security set.
pub fn update_viewers(
    conn: &mut DbConnection,
    registry: &Registry,
    doc: &Document,
) -> CoreResult<()> {
    let principals = viewer_principals(conn, registry, doc)?;
    let set = security_set(conn, &principals)?;
    if set == security_set_of(conn, doc.uid)? {
        return Ok(());
    }
    let q = Statement {
        sql: "UPDATE documents SET security_set = ? WHERE uid = ?".into(),
        binds: vec![Bind::Int(Some(set)), Bind::Int(Some(doc.uid))],
    };
    q.query().execute(conn)?;
    // The full-text index filters by the same principals: it must see the change.
    notify(conn, registry, Written::Viewers { uid: doc.uid })
}

/// Files every document whose security set was never computed (after an upgrade).
pub fn backfill_security_sets(conn: &mut DbConnection, registry: &Registry) -> CoreResult<usize> {
    #[derive(QueryableByName)]
    struct Uid {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        uid: i64,
    }
    let uids: Vec<i64> = diesel::sql_query("SELECT uid FROM documents WHERE security_set = 0")
        .load::<Uid>(conn)?
        .into_iter()
        .map(|r| r.uid)
        .collect();
    for uid in &uids {
        let doc = document::get_by_uid(conn, *uid)?;
        update_viewers(conn, registry, &doc)?;
    }
    Ok(uids.len())
}

/// Recomputes the View sets of `doc` and everything it contains (after a local role or
/// acquisition change, which every descendant may acquire).
pub fn update_viewers_subtree(
    conn: &mut DbConnection,
    registry: &Registry,
    doc: &Document,
) -> CoreResult<()> {
    update_viewers(conn, registry, doc)?;
    // Paths below `p` sort between "p/" and "p0" ('0' follows '/').
    let (low, high) = if doc.path.is_empty() {
        (String::new(), "\u{10ffff}".to_owned())
    } else {
        (format!("{}/", doc.path), format!("{}0", doc.path))
    };
    let below: Vec<Document> = documents::table
        .filter(documents::path.gt(low))
        .filter(documents::path.lt(high))
        .order(documents::path.asc())
        .select(Document::as_select())
        .load(conn)?;
    for d in below {
        update_viewers(conn, registry, &d)?;
    }
    Ok(())
}

/// Gives `principal` exactly `roles` on `doc` (an empty list removes them).
pub fn set_local_roles(
    conn: &mut DbConnection,
    registry: &Registry,
    doc: &Document,
    principal: &str,
    roles: &[String],
) -> CoreResult<()> {
    check_principal(principal)?;
    for r in roles {
        check_role(r)?;
        if matches!(r.as_str(), "Anonymous" | "Authenticated") {
            return Err(CoreError::Invalid(format!(
                "{r} cannot be given as a local role"
            )));
        }
    }
    diesel::delete(
        local_roles::table
            .filter(local_roles::uid.eq(doc.uid))
            .filter(local_roles::principal.eq(principal)),
    )
    .execute(conn)?;
    for r in roles {
        diesel::insert_into(local_roles::table)
            .values((
                local_roles::uid.eq(doc.uid),
                local_roles::principal.eq(principal),
                local_roles::role.eq(r),
            ))
            .execute(conn)?;
    }
    update_viewers_subtree(conn, registry, doc)
}

/// Local roles given on `doc` itself, by principal.
pub fn local_roles_of(
    conn: &mut DbConnection,
    uid: i64,
) -> CoreResult<BTreeMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = local_roles::table
        .filter(local_roles::uid.eq(uid))
        .order((local_roles::principal.asc(), local_roles::role.asc()))
        .select((local_roles::principal, local_roles::role))
        .load(conn)?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (p, r) in rows {
        out.entry(p).or_default().push(r);
    }
    Ok(out)
}

/// Blocks (or restores) acquisition of local roles from containers.
pub fn set_block_acquisition(
    conn: &mut DbConnection,
    registry: &Registry,
    doc: &Document,
    block: bool,
) -> CoreResult<()> {
    diesel::update(documents::table.find(doc.uid))
        .set(documents::block_acquisition.eq(block))
        .execute(conn)?;
    let doc = document::get_by_uid(conn, doc.uid)?;
    update_viewers_subtree(conn, registry, &doc)
}

/// The access layer's after-write hook: a new document, and one a workflow moved, get
/// their security set; a relation to a document the writer may not View is refused
/// exactly like one to a missing document, so a relation cannot tell that it exists.
pub(crate) fn after_write(
    conn: &mut DbConnection,
    registry: &Registry,
    written: &Written<'_>,
) -> CoreResult<()> {
    match *written {
        Written::Created { doc } | Written::StateChanged { doc } => {
            update_viewers(conn, registry, doc)
        }
        Written::Relation {
            writer,
            name,
            target,
        } => {
            if has_permission(conn, registry, writer, target, Permission::View)? {
                Ok(())
            } else {
                Err(CoreError::Invalid(format!(
                    "relation '{name}' names a missing document /{}",
                    target.path
                )))
            }
        }
        _ => Ok(()),
    }
}
