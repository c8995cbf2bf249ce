//! A document's pages: view, edit (form from the schema, validation messages next to the
//! fields, optimistic-concurrency conflicts), history, local roles, relations; the
//! workflow menu; the add form; the relation picker.

use actix_web::http::StatusCode;
use askama::Template;
use serde_json::{json, Map, Value};
use wendelin_core::catalog::Search;
use wendelin_core::types::MODULE_FOLDER_TYPE;
use wendelin_core::{
    CoreError, Document, DocumentPatch, MethodOutput, NewDocument, Permission, Portal, PropertyType,
};

use super::form::{self, Field, Pairs};
use super::{label_of, render, Chrome, Flash, Out, Session};
use crate::error::ServerError;
use wendelin_core::catalog::quote;

/// What every tab of a document shows above its content.
pub struct Head {
    title: String,
    portal_type: String,
    path: String,
    href: String,
    tabs: Vec<(String, &'static str, bool)>,
    /// (workflow title, state title)
    states: Vec<(String, String)>,
    /// Transitions the user may fire now: (id, title).
    transitions: Vec<(String, String)>,
    history: Vec<HistoryRow>,
    serial: i64,
    modified: String,
    owner: String,
}

struct HistoryRow {
    workflow: String,
    transition: String,
    from: String,
    to: String,
    actor: String,
    time: String,
    comment: String,
}

fn head(portal: &Portal, s: &Session, doc: &Document, active: &str) -> Result<Head, ServerError> {
    let href = format!("/ui/{}", doc.path);
    let mut tabs = vec![(href.clone(), "View", active == "view")];
    if portal.allowed(&s.user, &doc.path, Permission::ModifyPortalContent)? {
        tabs.push((format!("{href}/+edit"), "Edit", active == "edit"));
    }
    tabs.push((format!("{href}/+history"), "History", active == "history"));
    if portal.allowed(&s.user, &doc.path, Permission::ChangeLocalRoles)? {
        tabs.push((format!("{href}/+roles"), "Local roles", active == "roles"));
    }
    tabs.push((
        format!("{href}/+relations"),
        "Relations",
        active == "relations",
    ));
    if module_view(portal, doc).is_some() {
        tabs.push((format!("{href}/+module"), "Module view", active == "module"));
    }
    let mut states = Vec::new();
    let mut transitions = Vec::new();
    let mut history = Vec::new();
    for status in portal.workflows(&s.user, &doc.path)? {
        let title = portal
            .registry
            .workflow(&status.workflow)
            .map(|w| w.title.clone())
            .unwrap_or_else(|| status.workflow.clone());
        states.push((title.clone(), status.state_title.clone()));
        transitions.extend(status.transitions.into_iter().map(|t| (t.id, t.title)));
        history.extend(status.history.into_iter().map(|h| HistoryRow {
            workflow: title.clone(),
            transition: h.transition,
            from: h.from,
            to: h.to,
            actor: h.actor,
            time: h.time.get(..19).unwrap_or(&h.time).replace('T', " "),
            comment: h.comment,
        }));
    }
    history.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(Head {
        title: label_of(doc),
        portal_type: doc.portal_type.clone(),
        path: doc.path.clone(),
        href,
        tabs,
        states,
        transitions,
        history,
        serial: doc.serial,
        modified: doc
            .modification_date
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        owner: doc.owner.clone(),
    })
}

fn chrome(portal: &Portal, s: &Session, doc: &Document, tab: &str) -> Chrome {
    let title = if tab.is_empty() {
        label_of(doc)
    } else {
        format!("{} · {tab}", label_of(doc))
    };
    Chrome::new(s, title).with_path(portal, &s.user, &doc.path)
}

/// A value shown on the view tab: text, or links to related documents.
struct Shown {
    label: String,
    text: String,
    links: Vec<(String, String)>,
    kind: &'static str,
}

#[derive(Template)]
#[template(path = "ui/doc_view.html")]
struct ViewPage {
    page: Chrome,
    head: Head,
    fields: Vec<Shown>,
}

/// A related document as a link, or a placeholder when the user may not see it.
fn link_to(portal: &Portal, s: &Session, path: &str) -> (String, String) {
    match portal.get(&s.user, path) {
        Ok(d) => (
            format!("/ui/{}", d.path),
            format!("{} ({})", label_of(&d), d.portal_type),
        ),
        Err(_) => (String::new(), "a document you may not see".into()),
    }
}

/// `GET /ui/<path>`: the view tab.
pub fn view(portal: &Portal, s: &Session, doc: &Document) -> Result<Out, ServerError> {
    let json = portal.get_json(&s.user, &doc.path)?;
    let values = json.as_object().cloned().unwrap_or_default();
    let mut fields = Vec::new();
    if let Some(pt) = portal.registry.portal_type(&doc.portal_type) {
        for def in form::definitions(pt) {
            let value = values.get(&def.name);
            let mut shown = Shown {
                label: form::label(&def.name),
                text: String::new(),
                links: Vec::new(),
                kind: "text",
            };
            match def.kind {
                PropertyType::Relation => {
                    shown.kind = "links";
                    let paths: Vec<String> = match value {
                        Some(Value::String(p)) => vec![p.clone()],
                        Some(Value::Array(items)) => items
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect(),
                        _ => Vec::new(),
                    };
                    shown.links = paths.iter().map(|p| link_to(portal, s, p)).collect();
                }
                PropertyType::Bool => {
                    shown.text = match value.and_then(Value::as_bool) {
                        Some(true) => "yes".into(),
                        Some(false) => "no".into(),
                        None => String::new(),
                    };
                }
                PropertyType::Text | PropertyType::Json => {
                    shown.kind = "pre";
                    shown.text = form::to_text(def.kind, value);
                }
                PropertyType::DateTime => {
                    shown.text = super::display(value).replace('T', " ");
                }
                _ => shown.text = super::display(value),
            }
            fields.push(shown);
        }
    }
    for (label, text) in [
        ("Id", doc.id.clone()),
        ("Portal type", doc.portal_type.clone()),
        ("Owner", doc.owner.clone()),
        (
            "Created",
            doc.creation_date
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
        ),
        (
            "Modified",
            doc.modification_date
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
        ),
        ("Serial", doc.serial.to_string()),
    ] {
        fields.push(Shown {
            label: label.into(),
            text,
            links: Vec::new(),
            kind: "sys",
        });
    }
    let page = ViewPage {
        page: chrome(portal, s, doc, ""),
        head: head(portal, s, doc, "view")?,
        fields,
    };
    Ok(Out::Page(StatusCode::OK, render(&page)?))
}

#[derive(Template)]
#[template(path = "ui/doc_edit.html")]
struct EditPage {
    page: Chrome,
    head: Head,
    fields: Vec<Field>,
    serial: i64,
    error: String,
    conflict: String,
    file: Option<FileSlot>,
}

/// The file a document holds, for types whose module serves its bytes over HTTP: the
/// edit form offers an upload field (appending through the module's endpoint, with the
/// session's CSRF token in the header), the view a download link.
pub struct FileSlot {
    /// Bytes held now.
    size: u64,
    /// `GET` (HTTP Range supported).
    download: String,
    /// `PUT` with `Content-Range: bytes <size>-<end>/<total>` appends.
    upload: String,
}

/// The file of `doc`, when its type declares one (`PortalType::holds_file`).
fn file_of(portal: &Portal, doc: &Document) -> Result<Option<FileSlot>, ServerError> {
    let Some(file) = portal
        .registry
        .portal_type(&doc.portal_type)
        .and_then(|t| t.file.as_ref())
    else {
        return Ok(None);
    };
    let url = (file.url)(doc);
    Ok(Some(FileSlot {
        size: (file.size)(portal, doc)?,
        download: url.clone(),
        upload: url,
    }))
}

fn editable(portal: &Portal, doc: &Document) -> Result<wendelin_core::PortalType, ServerError> {
    portal
        .registry
        .portal_type(&doc.portal_type)
        .cloned()
        .ok_or_else(|| {
            ServerError::Core(CoreError::NotFound(format!(
                "/{} is a {} and has no edit form",
                doc.path, doc.portal_type
            )))
        })
}

fn require(portal: &Portal, s: &Session, path: &str, p: Permission) -> Result<(), ServerError> {
    if portal.allowed(&s.user, path, p)? {
        Ok(())
    } else {
        Err(ServerError::Core(CoreError::Forbidden(format!(
            "you need the permission '{p}' on /{path}"
        ))))
    }
}

/// `GET /ui/<path>/+edit`.
pub fn edit_page(portal: &Portal, s: &Session, path: &str) -> Result<Out, ServerError> {
    let doc = portal.get(&s.user, path)?;
    let pt = editable(portal, &doc)?;
    require(portal, s, &doc.path, Permission::ModifyPortalContent)?;
    let json = portal.get_json(&s.user, &doc.path)?;
    let page = EditPage {
        page: chrome(portal, s, &doc, "edit"),
        head: head(portal, s, &doc, "edit")?,
        fields: form::fields(&pt, json.as_object().unwrap_or(&Map::new())),
        serial: doc.serial,
        error: String::new(),
        conflict: String::new(),
        file: file_of(portal, &doc)?,
    };
    Ok(Out::Page(StatusCode::OK, render(&page)?))
}

/// `POST /ui/<path>/+edit`: saves, or shows the form again with what went wrong.
pub fn edit_post(
    portal: &Portal,
    s: &Session,
    path: &str,
    posted: &Pairs,
) -> Result<Out, ServerError> {
    let doc = portal.get(&s.user, path)?;
    let pt = editable(portal, &doc)?;
    let parsed = form::parse(&pt, posted);
    let serial = posted.get("serial").and_then(|v| v.parse::<i64>().ok());
    let current = portal.get_json(&s.user, &doc.path)?;
    let mut fields = form::fields(&pt, current.as_object().unwrap_or(&Map::new()));
    form::apply(&mut fields, &parsed);
    let again = |fields: Vec<Field>,
                 status: StatusCode,
                 error: String,
                 conflict: String,
                 serial: i64|
     -> Result<Out, ServerError> {
        let page = EditPage {
            page: chrome(portal, s, &doc, "edit"),
            head: head(portal, s, &doc, "edit")?,
            fields,
            serial,
            error,
            conflict,
            file: file_of(portal, &doc)?,
        };
        Ok(Out::Page(status, render(&page)?))
    };
    let Some(serial) = serial else {
        return again(
            fields,
            StatusCode::BAD_REQUEST,
            "the form lacks the serial it was based on: reload the page".into(),
            String::new(),
            doc.serial,
        );
    };
    if !parsed.errors.is_empty() {
        return again(
            fields,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Some fields need attention.".into(),
            String::new(),
            serial,
        );
    }
    let mut body = parsed.values.clone();
    body.insert("serial".into(), Value::from(serial));
    let patch = DocumentPatch::from_json(Value::Object(body))?;
    match portal.update(&s.user, &doc.path, patch) {
        Ok(saved) => Ok(Out::Redirect(
            format!("/ui/{}", saved.path),
            Some(Flash::ok("Saved.")),
        )),
        Err(CoreError::Invalid(message)) => {
            let mut fields = fields;
            let general = attach(&mut fields, &message);
            again(
                fields,
                StatusCode::UNPROCESSABLE_ENTITY,
                general,
                String::new(),
                serial,
            )
        }
        Err(CoreError::Conflict(message)) => {
            let now = portal.get(&s.user, &doc.path)?;
            let mut fields = fields;
            if now.serial == serial {
                // Not a concurrent edit: a uniqueness rule (the reference).
                let general = attach(&mut fields, &message);
                return again(fields, StatusCode::CONFLICT, general, String::new(), serial);
            }
            // Someone saved meanwhile: keep what this user typed, show what is stored now
            // next to each field that differs, and base a new save on the new serial.
            let stored = portal.get_json(&s.user, &now.path)?;
            let stored_fields = form::fields(&pt, stored.as_object().unwrap_or(&Map::new()));
            let mut differing = Vec::new();
            for (f, st) in fields.iter_mut().zip(stored_fields) {
                let differs = if f.widget == "checkbox" {
                    f.checked != st.checked
                } else {
                    f.value.trim() != st.value.trim()
                };
                if differs {
                    differing.push(f.label.clone());
                    f.stored = Some(if st.widget == "checkbox" {
                        if st.checked { "yes" } else { "no" }.into()
                    } else {
                        st.value
                    });
                }
            }
            let conflict = format!(
                "Someone else saved this document (at {} UTC, serial {} → {}) while you were editing. {} Save again to replace the stored values with yours.",
                now.modification_date.format("%Y-%m-%d %H:%M:%S"),
                serial,
                now.serial,
                if differing.is_empty() {
                    "Their values agree with yours.".to_owned()
                } else {
                    format!("Stored values that differ from yours: {}.", differing.join(", "))
                }
            );
            again(
                fields,
                StatusCode::CONFLICT,
                String::new(),
                conflict,
                now.serial,
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// Puts a kernel message next to the field it names; returns it when it names none.
fn attach(fields: &mut [Field], message: &str) -> String {
    let name = form::field_of_message(fields, message).map(str::to_owned);
    match name {
        Some(n) => {
            if let Some(f) = fields.iter_mut().find(|f| f.name == n) {
                f.error = message.to_owned();
            }
            "Some fields need attention.".into()
        }
        None => message.to_owned(),
    }
}

#[derive(Template)]
#[template(path = "ui/add.html")]
struct AddPage {
    page: Chrome,
    portal_type: String,
    container: String,
    /// The type is created by provisioning: its form has no id field.
    provisioned: bool,
    id: String,
    id_error: String,
    fields: Vec<Field>,
    error: String,
}

fn addable(
    portal: &Portal,
    s: &Session,
    container_path: &str,
    type_name: &str,
) -> Result<(Document, wendelin_core::PortalType), ServerError> {
    let container = portal.get(&s.user, container_path)?;
    let allowed = wendelin_core::document::allowed_types(&portal.registry, &container);
    if !allowed.contains(&type_name) {
        return Err(ServerError::Core(CoreError::NotFound(format!(
            "a {type_name} cannot be added in /{}; allowed: {}",
            container.path,
            allowed.join(", ")
        ))));
    }
    require(portal, s, &container.path, Permission::AddPortalContent)?;
    let pt = portal
        .registry
        .portal_type(type_name)
        .cloned()
        .ok_or_else(|| ServerError::Core(CoreError::NotFound(type_name.to_owned())))?;
    Ok((container, pt))
}

/// The type whose schema the add form shows: the provisioning fields of a type created by
/// provisioning (see `PortalType::provisioned_by`), else the type itself.
fn form_type(pt: wendelin_core::PortalType) -> wendelin_core::PortalType {
    match &pt.provision {
        Some(p) => {
            let mut form = wendelin_core::PortalType::new(&pt.name, &pt.module);
            form.properties = p.fields.clone();
            form
        }
        None => pt,
    }
}

fn add_chrome(portal: &Portal, s: &Session, container: &Document, type_name: &str) -> Chrome {
    Chrome::new(s, format!("New {type_name}")).with_path(portal, &s.user, &container.path)
}

/// `GET /ui/<container>/+add?type=<portal type>`.
pub fn add_page(
    portal: &Portal,
    s: &Session,
    path: &str,
    query: &Pairs,
) -> Result<Out, ServerError> {
    let type_name = query.get("type").unwrap_or("").to_owned();
    let (container, pt) = addable(portal, s, path, &type_name)?;
    let page = AddPage {
        page: add_chrome(portal, s, &container, &type_name),
        container: format!("/ui/{}", container.path),
        provisioned: pt.provision.is_some(),
        portal_type: type_name,
        id: String::new(),
        id_error: String::new(),
        fields: form::fields(&form_type(pt), &Map::new()),
        error: String::new(),
    };
    Ok(Out::Page(StatusCode::OK, render(&page)?))
}

/// `POST /ui/<container>/+add?type=…`: creates the document and opens it.
pub fn add_post(
    portal: &Portal,
    s: &Session,
    path: &str,
    posted: &Pairs,
) -> Result<Out, ServerError> {
    let type_name = posted.get("portal_type").unwrap_or("").to_owned();
    let (container, pt) = addable(portal, s, path, &type_name)?;
    let provision = pt.provision.clone();
    let pt = form_type(pt);
    let parsed = form::parse(&pt, posted);
    let mut fields = form::fields(&pt, &Map::new());
    form::apply(&mut fields, &parsed);
    let id = posted.get("id").unwrap_or("").trim().to_owned();
    let again = |fields: Vec<Field>, status: StatusCode, error: String, id_error: String| {
        let page = AddPage {
            page: add_chrome(portal, s, &container, &type_name),
            container: format!("/ui/{}", container.path),
            provisioned: provision.is_some(),
            portal_type: type_name.clone(),
            id: id.clone(),
            id_error,
            fields,
            error,
        };
        Ok(Out::Page(status, render(&page)?))
    };
    if !parsed.errors.is_empty() {
        return again(
            fields,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Some fields need attention.".into(),
            String::new(),
        );
    }
    let mut body: Map<String, Value> = parsed
        .values
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect();
    let created = match &provision {
        // Several documents, made by the module in its own transactions.
        Some(p) => (p.create)(portal, &s.user, &body).and_then(|path| portal.get(&s.user, &path)),
        None => {
            body.insert("portal_type".into(), Value::from(type_name.clone()));
            if !id.is_empty() {
                body.insert("id".into(), Value::from(id.clone()));
            }
            let new = NewDocument::from_json(Value::Object(body))?;
            portal.create(&s.user, &container.path, new)
        }
    };
    match created {
        Ok(doc) => Ok(Out::Redirect(
            format!("/ui/{}", doc.path),
            Some(Flash::ok(format!(
                "Created {} {}.",
                doc.portal_type, doc.id
            ))),
        )),
        Err(
            CoreError::Invalid(message)
            | CoreError::Conflict(message)
            | CoreError::BadRequest(message),
        ) => {
            let mut fields = fields;
            if message.contains("id") && form::field_of_message(&fields, &message).is_none() {
                return again(
                    fields,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Some fields need attention.".into(),
                    message,
                );
            }
            let general = attach(&mut fields, &message);
            again(
                fields,
                StatusCode::UNPROCESSABLE_ENTITY,
                general,
                String::new(),
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/<path>/+fire`: the workflow menu's form.
pub fn fire(portal: &Portal, s: &Session, path: &str, posted: &Pairs) -> Result<Out, ServerError> {
    let doc = portal.get(&s.user, path)?;
    let transition = posted.get("transition").unwrap_or("").to_owned();
    let mut vars = Map::new();
    if let Some(c) = posted.get("comment").filter(|c| !c.trim().is_empty()) {
        vars.insert("comment".into(), Value::from(c));
    }
    let back = format!("/ui/{}", doc.path);
    match portal.fire(&s.user, &doc.path, &transition, &vars) {
        Ok(after) => {
            let states = portal
                .workflows(&s.user, &after.path)
                .map(|w| {
                    w.into_iter()
                        .map(|st| st.state_title)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let flash = Flash::ok(format!("{transition}: done; now {states}."));
            // The transition may have taken away the user's View: go to the module then.
            let target = if states.is_empty() && portal.get(&s.user, &after.path).is_err() {
                format!("/ui/{}", doc.module)
            } else {
                back
            };
            Ok(Out::Redirect(target, Some(flash)))
        }
        Err(
            e @ (CoreError::Forbidden(_)
            | CoreError::Conflict(_)
            | CoreError::NotFound(_)
            | CoreError::Invalid(_)
            | CoreError::BadRequest(_)),
        ) => Ok(Out::Redirect(
            back,
            Some(Flash::error(super::public_message(&ServerError::Core(e)))),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "ui/doc_history.html")]
struct HistoryPage {
    page: Chrome,
    head: Head,
}

/// `GET /ui/<path>/+history`: every workflow transition fired, oldest first.
pub fn history(portal: &Portal, s: &Session, path: &str) -> Result<Out, ServerError> {
    let doc = portal.get(&s.user, path)?;
    let page = HistoryPage {
        page: chrome(portal, s, &doc, "history"),
        head: head(portal, s, &doc, "history")?,
    };
    Ok(Out::Page(StatusCode::OK, render(&page)?))
}

#[derive(Template)]
#[template(path = "ui/doc_roles.html")]
struct RolesPage {
    page: Chrome,
    head: Head,
    /// (principal, [(role, held)])
    assignments: Vec<(String, Vec<(&'static str, bool)>)>,
    roles: Vec<&'static str>,
    blocked: bool,
}

fn assignable_roles() -> Vec<&'static str> {
    wendelin_core::security::ROLES
        .iter()
        .copied()
        .filter(|r| !matches!(*r, "Anonymous" | "Authenticated"))
        .collect()
}

/// `GET /ui/<path>/+roles` (Change local roles).
pub fn roles(portal: &Portal, s: &Session, path: &str) -> Result<Out, ServerError> {
    let doc = portal.get(&s.user, path)?;
    let out = portal.call(&s.user, &doc.path, "getLocalRoles", &Map::new(), false)?;
    let MethodOutput::Json(info) = out else {
        return Err(ServerError::Internal("getLocalRoles answered HTML".into()));
    };
    let roles = assignable_roles();
    let assignments = info["local_roles"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(principal, held)| {
                    let held: Vec<&str> = held
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    (
                        principal.clone(),
                        roles.iter().map(|r| (*r, held.contains(r))).collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let page = RolesPage {
        page: chrome(portal, s, &doc, "local roles"),
        head: head(portal, s, &doc, "roles")?,
        assignments,
        roles,
        blocked: info["block_acquisition"].as_bool().unwrap_or(false),
    };
    Ok(Out::Page(StatusCode::OK, render(&page)?))
}

/// `POST /ui/<path>/+roles`: gives a principal exactly the checked roles, or changes
/// whether local roles are acquired from containers.
pub fn roles_post(
    portal: &Portal,
    s: &Session,
    path: &str,
    posted: &Pairs,
) -> Result<Out, ServerError> {
    let doc = portal.get(&s.user, path)?;
    let back = format!("/ui/{}/+roles", doc.path);
    let (method, args, done) = if let Some(block) = posted.get("block") {
        let block = block == "true";
        (
            "setBlockAcquisition",
            json!({ "block": block }),
            if block {
                "Local roles are no longer acquired from containers.".to_owned()
            } else {
                "Local roles are acquired from containers again.".to_owned()
            },
        )
    } else {
        let mut principal = posted.get("principal").unwrap_or("").trim().to_owned();
        if !principal.is_empty() && !principal.contains(':') {
            principal = format!("user:{principal}");
        }
        let roles: Vec<&str> = posted.all("role");
        let done = if roles.is_empty() {
            format!("{principal} has no local role here any more.")
        } else {
            format!("{principal} now has {} here.", roles.join(", "))
        };
        (
            "setLocalRoles",
            json!({ "principal": principal, "roles": roles }),
            done,
        )
    };
    let args = args.as_object().cloned().unwrap_or_default();
    match portal.call(&s.user, &doc.path, method, &args, true) {
        Ok(_) => Ok(Out::Redirect(back, Some(Flash::ok(done)))),
        Err(
            e @ (CoreError::Invalid(_)
            | CoreError::BadRequest(_)
            | CoreError::Forbidden(_)
            | CoreError::Conflict(_)),
        ) => Ok(Out::Redirect(
            back,
            Some(Flash::error(super::public_message(&ServerError::Core(e)))),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "ui/doc_relations.html")]
struct RelationsPage {
    page: Chrome,
    head: Head,
    /// (relation, [(href, label)])
    outgoing: Vec<(String, Vec<(String, String)>)>,
    incoming: Vec<(String, Vec<(String, String)>)>,
}

/// `GET /ui/<path>/+relations`: what the document points at and what points at it
/// (only documents the user may View are listed as pointing at it).
pub fn relations(portal: &Portal, s: &Session, path: &str) -> Result<Out, ServerError> {
    let doc = portal.get(&s.user, path)?;
    let json = portal.get_json(&s.user, &doc.path)?;
    let mut outgoing = Vec::new();
    if let Some(pt) = portal.registry.portal_type(&doc.portal_type) {
        for def in pt
            .properties
            .iter()
            .filter(|d| d.kind == PropertyType::Relation)
        {
            let paths: Vec<String> = match &json[&def.name] {
                Value::String(p) => vec![p.clone()],
                Value::Array(items) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            outgoing.push((
                form::label(&def.name),
                paths.iter().map(|p| link_to(portal, s, p)).collect(),
            ));
        }
    }
    let incoming = portal
        .back_relations(&s.user, &doc.path)?
        .into_iter()
        .map(|(name, docs)| {
            let links: Vec<(String, String)> = docs
                .iter()
                .map(|d| {
                    (
                        format!("/ui/{}", d.path),
                        format!("{} ({})", label_of(d), d.portal_type),
                    )
                })
                .collect();
            (form::label(&name), links)
        })
        .filter(|(_, links)| !links.is_empty())
        .collect();
    let page = RelationsPage {
        page: chrome(portal, s, &doc, "relations"),
        head: head(portal, s, &doc, "relations")?,
        outgoing,
        incoming,
    };
    Ok(Out::Page(StatusCode::OK, render(&page)?))
}

#[derive(Template)]
#[template(path = "ui/pick.html")]
struct PickList {
    id: String,
    options: Vec<(String, String)>,
}

/// `GET /ui/+pick?field=<name>&<name>=<typed text>`: suggestions for a relation field
/// (a datalist the browser offers under the input), from the catalog, security-filtered.
pub fn pick(portal: &Portal, s: &Session, query: &Pairs) -> Result<Out, ServerError> {
    let field = query.get("field").unwrap_or("");
    if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ServerError::BadRequest(
            "field must name a relation property".into(),
        ));
    }
    let typed = query.get(field).unwrap_or("");
    // For several targets (comma-separated), complete the last one and keep the others.
    let (kept, last) = match typed.rsplit_once(',') {
        Some((before, last)) => (format!("{before}, "), last.trim()),
        None => (String::new(), typed.trim()),
    };
    let q = if last.is_empty() {
        String::new()
    } else {
        let like = quote(&format!("%{last}%"));
        format!("(title:{like} OR reference:{like} OR path:{like})")
    };
    let found = portal.search(
        &s.user,
        &Search {
            query: q,
            sort_on: "modification_date desc".into(),
            limit: 20,
            offset: 0,
        },
    )?;
    let options = found
        .documents
        .iter()
        .filter(|d| d.portal_type != MODULE_FOLDER_TYPE)
        .map(|d| {
            (
                format!("{kept}{}", d.path),
                format!("{} ({})", label_of(d), d.portal_type),
            )
        })
        .collect();
    let list = PickList {
        id: format!("dl-{field}"),
        options,
    };
    Ok(Out::Fragment(render(&list)?))
}

/// The name of the view a module provides for the document's type (`DataStream_view`).
fn module_view(portal: &Portal, doc: &Document) -> Option<String> {
    let name = format!(
        "{}_view",
        wendelin_core::types::script_prefix(&doc.portal_type)
    );
    portal.registry.script(&name).map(|_| name)
}

#[derive(Template)]
#[template(path = "ui/doc_module.html")]
struct ModulePage {
    page: Chrome,
    head: Head,
    /// The module view's own content: HTML its askama template rendered (and escaped).
    body: String,
}

/// `GET /ui/<path>/+module`: the view the type's module provides (a data stream's size,
/// a script's *Test* form), inside the UI's tabs; the query string is the view's
/// arguments (read-only: the view runs in a read transaction).
pub fn module_tab(
    portal: &Portal,
    s: &Session,
    path: &str,
    query: &Pairs,
) -> Result<Out, ServerError> {
    let doc = portal.get(&s.user, path)?;
    let name = module_view(portal, &doc).ok_or_else(|| {
        ServerError::Core(CoreError::NotFound(format!(
            "the module of {} provides no view",
            doc.portal_type
        )))
    })?;
    let html = match portal.call(&s.user, &doc.path, &name, &query.to_args(), false)? {
        MethodOutput::Html(h) => h,
        MethodOutput::Json(_) | MethodOutput::Text(_) => {
            return Err(ServerError::Internal(format!("{name} answered no page")))
        }
    };
    // Module views render a whole page in the plain layout: keep what is in its <main>.
    let body = match (html.find("<main>"), html.rfind("</main>")) {
        (Some(a), Some(b)) if a + 6 <= b => html[a + 6..b].to_owned(),
        _ => html,
    };
    let page = ModulePage {
        page: chrome(portal, s, &doc, "module view"),
        head: head(portal, s, &doc, "module")?,
        body,
    };
    Ok(Out::Page(StatusCode::OK, render(&page)?))
}
