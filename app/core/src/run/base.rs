//! `Base_*` scripts: methods every object answers, whatever its portal type.

use serde_json::Value;

use crate::access::security::{self, permission_map, Permission};
use crate::model::error::{CoreError, CoreResult};
use crate::model::types::Module;
use crate::run::dispatch::{Call, MethodOutput, Protected};
use crate::run::workflow::{Transition, Workflow};
use crate::store::document;

/// The kernel's own contribution to the registry: the generic `Base_` scripts and the
/// standard workflows (`validation_workflow`, `publication_workflow`).
pub fn module() -> Module {
    Module::new("base")
        .workflow(validation_workflow())
        .workflow(publication_workflow())
        .script(
            "Base_getLocalRoles",
            Protected::read(Permission::ChangeLocalRoles, |call: &mut Call<'_>| {
                let roles = security::local_roles_of(call.conn, call.context.uid)?;
                Ok(MethodOutput::Json(serde_json::json!({
                    "local_roles": roles,
                    "block_acquisition": call.context.block_acquisition,
                })))
            }),
        )
        .script(
            "Base_setLocalRoles",
            Protected::write(Permission::ChangeLocalRoles, |call: &mut Call<'_>| {
                let principal = call
                    .arg_str("principal")
                    .ok_or_else(|| {
                        CoreError::BadRequest(
                            "argument 'principal' (user:<login> or group:<id>) is required".into(),
                        )
                    })?
                    .to_owned();
                let roles: Vec<String> = match call.args.get("roles") {
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| {
                            v.as_str().map(str::to_owned).ok_or_else(|| {
                                CoreError::Invalid(format!("roles must be strings, got {v}"))
                            })
                        })
                        .collect::<CoreResult<_>>()?,
                    _ => {
                        return Err(CoreError::BadRequest(
                            "argument 'roles' (a list of role names) is required".into(),
                        ))
                    }
                };
                security::set_local_roles(
                    call.conn,
                    call.registry,
                    call.context,
                    &principal,
                    &roles,
                )?;
                Ok(MethodOutput::Json(Value::from(
                    security::local_roles_of(call.conn, call.context.uid)?
                        .get(&principal)
                        .cloned()
                        .unwrap_or_default(),
                )))
            }),
        )
        .script(
            "Base_setBlockAcquisition",
            Protected::write(Permission::ChangeLocalRoles, |call: &mut Call<'_>| {
                let block = call
                    .args
                    .get("block")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| {
                        CoreError::BadRequest("argument 'block' (true or false) is required".into())
                    })?;
                security::set_block_acquisition(call.conn, call.registry, call.context, block)?;
                Ok(MethodOutput::Json(Value::from(block)))
            }),
        )
        .script(
            "Base_edit",
            // ERP5's edit(): change properties without naming a serial (activities use it).
            Protected::write(Permission::ModifyPortalContent, |call: &mut Call<'_>| {
                let mut body = Value::Object(call.args.clone());
                body["serial"] = Value::from(call.context.serial);
                let patch = document::DocumentPatch::from_json(body)?;
                let doc = document::update(
                    call.conn,
                    call.registry,
                    &call.context.path,
                    patch,
                    call.user,
                )?;
                Ok(MethodOutput::Json(document::to_json(
                    call.conn,
                    call.registry,
                    &doc,
                )?))
            }),
        )
        .script(
            "Base_activate",
            // Queue a method call on this document: {"method", "args", "priority", "tag",
            // "delay_seconds", "max_attempts"}.
            Protected::write(Permission::View, |call: &mut Call<'_>| {
                let method = call
                    .arg_str("method")
                    .ok_or_else(|| CoreError::BadRequest("argument 'method' is required".into()))?
                    .to_owned();
                let args = match call.args.get("args") {
                    None | Some(Value::Null) => serde_json::Map::new(),
                    Some(Value::Object(m)) => m.clone(),
                    Some(v) => {
                        return Err(CoreError::BadRequest(format!(
                            "args must be an object, got {v}"
                        )))
                    }
                };
                let defaults = crate::run::activity::Activate::default();
                let options = crate::run::activity::Activate {
                    priority: int_arg(call, "priority")?.unwrap_or(defaults.priority),
                    tag: match call.args.get("tag") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(t)) => Some(t.clone()),
                        Some(v) => {
                            return Err(CoreError::BadRequest(format!(
                                "tag must be a string, got {v}"
                            )))
                        }
                    },
                    delay_seconds: int_arg(call, "delay_seconds")?
                        .unwrap_or(defaults.delay_seconds),
                    max_attempts: int_arg(call, "max_attempts")?.unwrap_or(defaults.max_attempts),
                };
                let id = crate::run::activity::activate_checked(
                    call.conn,
                    call.registry,
                    call.user,
                    call.context,
                    &method,
                    &args,
                    &options,
                )?;
                Ok(MethodOutput::Json(serde_json::json!({"activity": id})))
            }),
        )
        .script("Base_getWorkflowHistory", |call: &mut Call<'_>| {
            let workflow = call.arg_str("workflow").map(str::to_owned);
            let entries =
                crate::run::workflow::history(call.conn, call.context.uid, workflow.as_deref())?;
            Ok(MethodOutput::Json(
                serde_json::to_value(entries).map_err(|e| CoreError::Internal(e.to_string()))?,
            ))
        })
        .script("Base_getSize", |call: &mut Call<'_>| {
            // A document's own size is the size of its stored record; types holding
            // payloads (data streams, arrays, images) override getSize.
            let json = document::to_json(call.conn, call.registry, call.context)?;
            Ok(MethodOutput::Json(Value::from(json.to_string().len())))
        })
        .script("Base_getPath", |call: &mut Call<'_>| {
            Ok(MethodOutput::Json(Value::from(format!(
                "/{}",
                call.context.path
            ))))
        })
        .script("Base_asJSON", |call: &mut Call<'_>| {
            Ok(MethodOutput::Json(document::to_json(
                call.conn,
                call.registry,
                call.context,
            )?))
        })
        .script("Base_getRelationList", |call: &mut Call<'_>| {
            let name = relation_name(call)?;
            let map = document::relations_from(call.conn, call.context.uid, Some(&name))?;
            let paths = map.get(&name).cloned().unwrap_or_default();
            Ok(MethodOutput::Json(Value::from(viewable(call, paths)?)))
        })
        .script("Base_getBackRelationList", |call: &mut Call<'_>| {
            let name = relation_name(call)?;
            let map = document::relations_to(call.conn, call.context.uid, Some(&name))?;
            let paths = map.get(&name).cloned().unwrap_or_default();
            Ok(MethodOutput::Json(Value::from(viewable(call, paths)?)))
        })
}

/// The paths among `paths` whose documents the caller may View: a relation listing never
/// names what the caller could not open.
fn viewable(call: &mut Call<'_>, paths: Vec<String>) -> CoreResult<Vec<String>> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        if let Some(doc) = document::find(call.conn, &path)? {
            if crate::access::security::has_permission(
                call.conn,
                call.registry,
                call.user,
                &doc,
                Permission::View,
            )? {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// An optional integer argument; anything else than an integer (or null) is refused.
fn int_arg<T: TryFrom<i64>>(call: &Call<'_>, name: &str) -> CoreResult<Option<T>> {
    match call.args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| CoreError::BadRequest(format!("{name} must be an integer, got {v}"))),
    }
}

fn relation_name(call: &Call<'_>) -> CoreResult<String> {
    call.arg_str("name").map(str::to_owned).ok_or_else(|| {
        CoreError::BadRequest("argument 'name' (the relation name) is required".into())
    })
}

const READERS: &[&str] = &[
    "Manager",
    "Owner",
    "Assignor",
    "Assignee",
    "Associate",
    "Auditor",
];
const EDITORS: &[&str] = &["Manager", "Owner", "Assignor", "Assignee"];

/// draft → validated → invalidated, and back: for master data (persons, streams, arrays,
/// policies). Validated documents are frozen for their owner and readable by authors.
pub fn validation_workflow() -> Workflow {
    Workflow::new("validation_workflow", "Validation", "draft")
        .state(
            "draft",
            "Draft",
            permission_map(&[
                (Permission::View, READERS),
                (Permission::AccessContentsInformation, READERS),
                (Permission::ModifyPortalContent, EDITORS),
                (Permission::DeleteObjects, &["Manager", "Owner", "Assignor"]),
            ]),
        )
        .state(
            "validated",
            "Validated",
            permission_map(&[
                (
                    Permission::View,
                    &[
                        "Manager",
                        "Owner",
                        "Assignor",
                        "Assignee",
                        "Associate",
                        "Auditor",
                        "Author",
                    ],
                ),
                (
                    Permission::AccessContentsInformation,
                    &[
                        "Manager",
                        "Owner",
                        "Assignor",
                        "Assignee",
                        "Associate",
                        "Auditor",
                        "Author",
                    ],
                ),
                (Permission::ModifyPortalContent, &["Manager", "Assignor"]),
                (Permission::DeleteObjects, &["Manager"]),
            ]),
        )
        .state(
            "invalidated",
            "Invalidated",
            permission_map(&[
                (Permission::View, READERS),
                (Permission::AccessContentsInformation, READERS),
                (Permission::ModifyPortalContent, &["Manager"]),
                (Permission::DeleteObjects, &["Manager", "Owner"]),
            ]),
        )
        .transition(
            Transition::new(
                "validate",
                "Validate",
                &["draft", "invalidated"],
                "validated",
            )
            .roles(&["Manager", "Owner", "Assignor"]),
        )
        .transition(
            Transition::new(
                "invalidate",
                "Invalidate",
                &["draft", "validated"],
                "invalidated",
            )
            .roles(&["Manager", "Assignor"]),
        )
}

/// Web content: draft → published (frozen) or published_alive (still editable) →
/// archived; deleted is a state, not a removal. Published content is visible to Anonymous.
pub fn publication_workflow() -> Workflow {
    const PUBLIC: &[&str] = &[
        "Anonymous",
        "Authenticated",
        "Manager",
        "Owner",
        "Assignor",
        "Assignee",
        "Associate",
        "Auditor",
    ];
    let needs_title = |doc: &document::Document| {
        doc.title
            .trim()
            .is_empty()
            .then(|| "a document needs a title to be published".to_owned())
    };
    Workflow::new("publication_workflow", "Publication", "draft")
        .state(
            "draft",
            "Draft",
            permission_map(&[
                (Permission::View, READERS),
                (Permission::AccessContentsInformation, READERS),
                (Permission::ModifyPortalContent, EDITORS),
            ]),
        )
        .state(
            "published",
            "Published",
            permission_map(&[
                (Permission::View, PUBLIC),
                (Permission::AccessContentsInformation, PUBLIC),
                (Permission::ModifyPortalContent, &["Manager"]),
                (Permission::DeleteObjects, &["Manager"]),
            ]),
        )
        .state(
            "published_alive",
            "Published (alive)",
            permission_map(&[
                (Permission::View, PUBLIC),
                (Permission::AccessContentsInformation, PUBLIC),
                (Permission::ModifyPortalContent, EDITORS),
                (Permission::DeleteObjects, &["Manager"]),
            ]),
        )
        .state(
            "archived",
            "Archived",
            permission_map(&[
                (Permission::View, &["Authenticated", "Manager"]),
                (
                    Permission::AccessContentsInformation,
                    &["Authenticated", "Manager"],
                ),
                (Permission::ModifyPortalContent, &["Manager"]),
                (Permission::DeleteObjects, &["Manager"]),
            ]),
        )
        .state(
            "deleted",
            "Deleted",
            permission_map(&[
                (Permission::View, &["Manager", "Owner"]),
                (Permission::AccessContentsInformation, &["Manager", "Owner"]),
                (Permission::ModifyPortalContent, &["Manager"]),
                (Permission::DeleteObjects, &["Manager", "Owner"]),
            ]),
        )
        .transition(
            Transition::new("publish", "Publish", &["draft"], "published")
                .roles(&["Manager", "Assignor", "Owner"])
                .expression(needs_title),
        )
        .transition(
            Transition::new(
                "publish_alive",
                "Publish alive",
                &["draft"],
                "published_alive",
            )
            .roles(&["Manager", "Assignor", "Owner"])
            .expression(needs_title),
        )
        .transition(
            Transition::new(
                "reject",
                "Back to draft",
                &["published", "published_alive"],
                "draft",
            )
            .roles(&["Manager", "Assignor", "Owner"]),
        )
        .transition(
            Transition::new(
                "archive",
                "Archive",
                &["published", "published_alive"],
                "archived",
            )
            .roles(&["Manager", "Assignor"]),
        )
        .transition(
            Transition::new("delete", "Delete", &["draft", "archived"], "deleted")
                .roles(&["Manager", "Assignor", "Owner"]),
        )
        .transition(
            Transition::new("undelete", "Restore", &["deleted"], "draft").roles(&["Manager"]),
        )
}

/// started → stopped → delivered: the life of an ingestion or an analysis. Delivered
/// documents are frozen.
pub fn lifecycle_workflow(id: &str, title: &str) -> Workflow {
    Workflow::new(id, title, "started")
        .state(
            "started",
            "Started",
            permission_map(&[(Permission::ModifyPortalContent, EDITORS)]),
        )
        .state(
            "stopped",
            "Stopped",
            permission_map(&[(Permission::ModifyPortalContent, EDITORS)]),
        )
        .state(
            "delivered",
            "Delivered",
            permission_map(&[
                (Permission::ModifyPortalContent, &["Manager"]),
                (Permission::DeleteObjects, &["Manager"]),
            ]),
        )
        .transition(
            Transition::new("stop", "Stop", &["started"], "stopped")
                .roles(&["Manager", "Owner", "Assignor", "Assignee"]),
        )
        .transition(
            Transition::new("restart", "Restart", &["stopped"], "started")
                .roles(&["Manager", "Owner", "Assignor", "Assignee"]),
        )
        .transition(
            Transition::new("deliver", "Deliver", &["stopped"], "delivered")
                .roles(&["Manager", "Assignor"]),
        )
}
