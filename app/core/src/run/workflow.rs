//! State-machine workflows (ERP5's DCWorkflow): declarative definitions owned by modules,
//! a state per document and workflow, guarded transitions with hooks, and a history.

use std::collections::BTreeMap;

use chrono::Utc;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::access::security::{self, Permission, User};
use crate::model::error::{CoreError, CoreResult};
use crate::model::method::{Host, MethodOutput};
use crate::model::schema::{documents, workflow_history, workflow_states};
use crate::model::types::Registry;
use crate::run::dispatch::{self, Target};
use crate::store::after_write::{notify, Written};
use crate::store::db::DbConnection;
use crate::store::document::{self, format_time, Document};

pub use crate::model::workflow::{
    Expression, Guard, Hook, HookContext, State, Transition, Workflow,
};

/// Sets the initial state of every workflow in the chain of a new document.
pub fn init_states(conn: &mut DbConnection, registry: &Registry, doc: &Document) -> CoreResult<()> {
    let Some(t) = registry.portal_type(&doc.portal_type) else {
        return Ok(());
    };
    for wf_id in &t.workflows {
        if let Some(wf) = registry.workflow(wf_id) {
            diesel::insert_into(workflow_states::table)
                .values((
                    workflow_states::uid.eq(doc.uid),
                    workflow_states::workflow.eq(wf_id),
                    workflow_states::state.eq(&wf.initial),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Why a guard refuses `user`, or `None` when it lets them through: the declared roles,
/// permissions and expression, then the guard script `guard<Transition>` when one
/// resolves on the document (see [`script_name`]).
pub fn guard_refusal(
    conn: &mut DbConnection,
    registry: &Registry,
    host: &dyn Host,
    user: &User,
    doc: &Document,
    t: &Transition,
) -> CoreResult<Option<String>> {
    if !t.guard.roles.is_empty() {
        let roles = security::roles_on(conn, user, doc)?;
        if !t.guard.roles.iter().any(|r| roles.contains(r)) {
            return Ok(Some(format!(
                "transition '{}' needs one of the roles {} on /{}",
                t.id,
                t.guard.roles.join(", "),
                doc.path
            )));
        }
    }
    for p in &t.guard.permissions {
        if !security::has_permission(conn, registry, user, doc, *p)? {
            return Ok(Some(format!(
                "transition '{}' needs permission '{p}' on /{}",
                t.id, doc.path
            )));
        }
    }
    if let Some(expr) = &t.guard.expression {
        if let Some(reason) = expr(doc) {
            return Ok(Some(format!("transition '{}' refused: {reason}", t.id)));
        }
    }
    let name = script_name("guard", &t.id);
    let Some(answer) = call_script(conn, registry, host, user, doc, &name, false)? else {
        return Ok(None);
    };
    Ok(match answer {
        MethodOutput::Json(Value::Bool(true) | Value::Null) => None,
        MethodOutput::Json(Value::Bool(false)) => Some(format!(
            "transition '{}' refused by the guard script {name}",
            t.id
        )),
        MethodOutput::Json(Value::String(reason)) if !reason.is_empty() => {
            Some(format!("transition '{}' refused: {reason}", t.id))
        }
        _ => {
            return Err(CoreError::Invalid(format!(
                "the guard script {name} must return true, false or a reason (a string)"
            )))
        }
    })
}

/// The name of the script a transition looks for at one of its moments: `guard`,
/// `before` or `after` followed by the transition id in camel case (`validate` →
/// `guardValidate`, `publish_alive` → `beforePublishAlive`). It is resolved on the
/// document like any method, so `DataStream_guardValidate` (a user script in
/// `portal_skins` or in a container, or a module's script) applies to Data Streams and
/// `Base_guardValidate` to every type.
pub fn script_name(moment: &str, transition: &str) -> String {
    let mut name = moment.to_owned();
    for part in transition.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

/// Calls the script `name` on `doc` as `user` when a method by that name resolves on it
/// (a property of that name is not a script); `None` when there is none.
fn call_script(
    conn: &mut DbConnection,
    registry: &Registry,
    host: &dyn Host,
    user: &User,
    doc: &Document,
    name: &str,
    writable: bool,
) -> CoreResult<Option<MethodOutput>> {
    match dispatch::resolve(conn, registry, doc, name)? {
        Some(found) if matches!(found.target, Target::Method(_)) => host
            .call_in(conn, user, &doc.path, name, &Map::new(), writable)
            .map(Some),
        _ => Ok(None),
    }
}

/// One workflow of a document as the API shows it.
#[derive(Debug, Serialize)]
pub struct WorkflowStatus {
    /// Workflow id.
    pub workflow: String,
    /// Current state id.
    pub state: String,
    /// Current state title.
    pub state_title: String,
    /// Transitions the user may fire now.
    pub transitions: Vec<AvailableTransition>,
    /// Past transitions, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// A transition the user may fire.
#[derive(Debug, Serialize)]
pub struct AvailableTransition {
    /// Id to POST.
    pub id: String,
    /// Title to show.
    pub title: String,
    /// State it leads to.
    pub to: String,
}

/// One history entry.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    /// Entry number, increasing with time.
    pub id: i64,
    /// Transition fired.
    pub transition: String,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// Who fired it.
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The comment given.
    pub comment: String,
    /// Extra variables recorded.
    pub variables: Value,
}

/// The workflows of `doc` with the transitions `user` may fire and their history.
pub fn status(
    conn: &mut DbConnection,
    registry: &Registry,
    host: &dyn Host,
    user: &User,
    doc: &Document,
) -> CoreResult<Vec<WorkflowStatus>> {
    let states = security::workflow_states(conn, doc.uid)?;
    let chain = registry
        .portal_type(&doc.portal_type)
        .map(|t| t.workflows.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for wf_id in chain {
        let (Some(wf), Some(state)) = (registry.workflow(&wf_id), states.get(&wf_id)) else {
            continue;
        };
        let mut transitions = Vec::new();
        for t in wf.transitions.iter().filter(|t| t.from.contains(state)) {
            // A guard script that fails hides its transition here; firing it shows why.
            if matches!(guard_refusal(conn, registry, host, user, doc, t), Ok(None)) {
                transitions.push(AvailableTransition {
                    id: t.id.clone(),
                    title: t.title.clone(),
                    to: t.to.clone(),
                });
            }
        }
        out.push(WorkflowStatus {
            workflow: wf_id.clone(),
            state: state.clone(),
            state_title: wf
                .get_state(state)
                .map(|s| s.title.clone())
                .unwrap_or_default(),
            transitions,
            history: history(conn, doc.uid, Some(&wf_id))?,
        });
    }
    Ok(out)
}

#[derive(Queryable)]
struct HistoryRow {
    id: i64,
    transition: String,
    from_state: String,
    to_state: String,
    actor: String,
    time: chrono::NaiveDateTime,
    comment: String,
    variables: String,
}

/// History entries of `uid`, oldest first (one workflow, or all).
pub fn history(
    conn: &mut DbConnection,
    uid: i64,
    workflow: Option<&str>,
) -> CoreResult<Vec<HistoryEntry>> {
    let mut q = workflow_history::table
        .filter(workflow_history::uid.eq(uid))
        .into_boxed();
    if let Some(w) = workflow {
        q = q.filter(workflow_history::workflow.eq(w.to_owned()));
    }
    let rows: Vec<HistoryRow> = q
        .order(workflow_history::id.asc())
        .select((
            workflow_history::id,
            workflow_history::transition,
            workflow_history::from_state,
            workflow_history::to_state,
            workflow_history::actor,
            workflow_history::time,
            workflow_history::comment,
            workflow_history::variables,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryEntry {
            id: r.id,
            transition: r.transition,
            from: r.from_state,
            to: r.to_state,
            actor: r.actor,
            time: format_time(&r.time),
            comment: r.comment,
            variables: serde_json::from_str(&r.variables).unwrap_or(Value::Null),
        })
        .collect())
}

/// Fires `transition` on `doc` for `user`; the caller holds a write transaction.
/// `variables` may hold `comment` and the workflow's declared variables.
pub fn fire(
    conn: &mut DbConnection,
    registry: &Registry,
    host: &dyn Host,
    user: &User,
    doc: &Document,
    transition: &str,
    variables: &Map<String, Value>,
) -> CoreResult<Document> {
    security::check(conn, registry, user, doc, Permission::View)?;
    let states = security::workflow_states(conn, doc.uid)?;
    let (wf, t) = find_transition(registry, doc, &states, transition)?;
    if let Some(reason) = guard_refusal(conn, registry, host, user, doc, t)? {
        return Err(if user.login.is_none() {
            CoreError::Unauthorized(reason)
        } else {
            CoreError::Forbidden(reason)
        });
    }
    let (comment, recorded) = checked_variables(wf, variables)?;
    run_hooks(conn, registry, user, doc, wf, t, &t.before)?;
    call_script(
        conn,
        registry,
        host,
        user,
        doc,
        &script_name("before", &t.id),
        true,
    )?;
    let from = states.get(&wf.id).cloned().unwrap_or_default();
    diesel::update(
        workflow_states::table
            .filter(workflow_states::uid.eq(doc.uid))
            .filter(workflow_states::workflow.eq(&wf.id)),
    )
    .set(workflow_states::state.eq(&t.to))
    .execute(conn)?;
    diesel::insert_into(workflow_history::table)
        .values((
            workflow_history::uid.eq(doc.uid),
            workflow_history::workflow.eq(&wf.id),
            workflow_history::transition.eq(&t.id),
            workflow_history::from_state.eq(&from),
            workflow_history::to_state.eq(&t.to),
            workflow_history::actor.eq(user.actor()),
            workflow_history::time.eq(Utc::now().naive_utc()),
            workflow_history::comment.eq(&comment),
            workflow_history::variables.eq(Value::Object(recorded).to_string()),
        ))
        .execute(conn)?;
    // A state change is a change of the document: concurrent edits see a new serial.
    diesel::update(documents::table.find(doc.uid))
        .set(documents::serial.eq(documents::serial + 1))
        .execute(conn)?;
    run_hooks(conn, registry, user, doc, wf, t, &t.after)?;
    let mut doc = document::get_by_uid(conn, doc.uid)?;
    let after = script_name("after", &t.id);
    if call_script(conn, registry, host, user, &doc, &after, true)?.is_some() {
        // What the after script changed is part of the transition's result.
        doc = document::get_by_uid(conn, doc.uid)?;
    }
    notify(conn, registry, Written::StateChanged { doc: &doc })?;
    Ok(doc)
}

/// The transition named `transition` that can be fired from the document's current
/// states, in the first workflow of its chain that has one: a Conflict when the chain
/// knows it but not from these states, NotFound when it does not know it at all.
fn find_transition<'r>(
    registry: &'r Registry,
    doc: &Document,
    states: &BTreeMap<String, String>,
    transition: &str,
) -> CoreResult<(&'r Workflow, &'r Transition)> {
    let chain: &[String] = registry
        .portal_type(&doc.portal_type)
        .map_or(&[], |t| t.workflows.as_slice());
    let mut known = false;
    for wf_id in chain {
        let Some(wf) = registry.workflow(wf_id) else {
            continue;
        };
        if let Some(t) = wf.transitions.iter().find(|t| t.id == transition) {
            known = true;
            if states.get(wf_id).is_some_and(|s| t.from.contains(s)) {
                return Ok((wf, t));
            }
        }
    }
    Err(if known {
        CoreError::Conflict(format!(
            "transition '{transition}' cannot be fired from the current state of /{} ({})",
            doc.path,
            states
                .iter()
                .map(|(w, s)| format!("{w}: {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        CoreError::NotFound(format!(
            "no transition '{transition}' in the workflows of {}",
            doc.portal_type
        ))
    })
}

/// The comment and the other variables of a transition, each one the workflow declares.
fn checked_variables(
    wf: &Workflow,
    variables: &Map<String, Value>,
) -> CoreResult<(String, Map<String, Value>)> {
    let comment = match variables.get("comment") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(CoreError::Invalid(format!(
                "comment must be a string, got {v}"
            )))
        }
    };
    let mut recorded = Map::new();
    for (k, v) in variables {
        if k == "comment" {
            continue;
        }
        if !wf.variables.contains(k) {
            return Err(CoreError::Invalid(format!(
                "workflow {} has no variable '{k}'{}",
                wf.id,
                if wf.variables.is_empty() {
                    String::new()
                } else {
                    format!(" (it has: {})", wf.variables.join(", "))
                }
            )));
        }
        recorded.insert(k.clone(), v.clone());
    }
    Ok((comment, recorded))
}

/// Runs a transition's before or after hooks, in order.
fn run_hooks(
    conn: &mut DbConnection,
    registry: &Registry,
    user: &User,
    doc: &Document,
    wf: &Workflow,
    t: &Transition,
    hooks: &[Hook],
) -> CoreResult<()> {
    let mut ctx = HookContext {
        conn,
        registry,
        document: doc,
        user,
        workflow: &wf.id,
        transition: &t.id,
    };
    for hook in hooks {
        hook(&mut ctx)?;
    }
    Ok(())
}

/// Current workflow states of `uid` (for the API).
pub fn states_of(conn: &mut DbConnection, uid: i64) -> CoreResult<BTreeMap<String, String>> {
    security::workflow_states(conn, uid)
}

/// The workflows' after-write hook: a new document starts in the initial state of each
/// workflow of its chain (before its security set is computed, which depends on it).
pub(crate) fn after_write(
    conn: &mut DbConnection,
    registry: &Registry,
    written: &Written<'_>,
) -> CoreResult<()> {
    match *written {
        Written::Created { doc } => init_states(conn, registry, doc),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::script_name;

    #[test]
    fn script_names_camel_case_the_transition() {
        assert_eq!(script_name("guard", "validate"), "guardValidate");
        assert_eq!(script_name("before", "publish_alive"), "beforePublishAlive");
        assert_eq!(script_name("after", "a__b_"), "afterAB");
    }
}
