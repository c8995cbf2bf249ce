//! `Script_view`: a Script's page in the admin UI (its module view tab): the body with
//! line numbers, its settings, a *Test* form that runs this very script on a chosen
//! document as the viewer and shows the result or the error, and the Scripts that call
//! it ("called from", by name in their bodies).

use askama::Template;
use serde_json::{Map, Value};
use wendelin_core::catalog::{Count, Search};
use wendelin_core::{Call, CoreError, CoreResult, Method, MethodOutput, Permission};

use crate::{UserScript, SCRIPT_TYPE};

/// At most this many Scripts are read to find the callers.
const MAX_CALLERS_SCANNED: i64 = 1_000;

struct Outcome {
    ok: bool,
    text: String,
}

#[derive(Template)]
#[template(path = "script_view.html")]
struct ScriptView {
    id: String,
    path: String,
    parameters: String,
    permission: String,
    read_only: bool,
    result: String,
    proxy_roles: String,
    lines: Vec<String>,
    on: String,
    args: String,
    outcome: Option<Outcome>,
    callers: Vec<(String, String)>,
}

/// The `Script_view` module script.
pub fn script_view(call: &mut Call<'_>) -> CoreResult<MethodOutput> {
    let script = UserScript::from_document(call.context.clone())?;
    let on = call
        .arg_str("on")
        .unwrap_or("")
        .trim()
        .trim_matches('/')
        .to_owned();
    let args = call.arg_str("args").unwrap_or("").trim().to_owned();
    let outcome = if on.is_empty() {
        None
    } else {
        Some(match test_run(call, &script, &on, &args) {
            Ok(out) => Outcome {
                ok: true,
                text: match out {
                    MethodOutput::Json(v) => {
                        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
                    }
                    MethodOutput::Html(h) | MethodOutput::Text(h) => h,
                },
            },
            Err(e) => Outcome {
                ok: false,
                text: e.to_string(),
            },
        })
    };
    let page = ScriptView {
        id: call.context.id.clone(),
        path: call.context.path.clone(),
        parameters: Value::Object(script.props.parameters.clone()).to_string(),
        permission: script.props.permission.clone(),
        read_only: script.props.read_only,
        result: script.props.result.clone(),
        proxy_roles: script.props.proxy_roles.join(", "),
        lines: script.props.body.lines().map(str::to_owned).collect(),
        on,
        args,
        outcome,
        callers: callers(call)?,
    };
    page.render()
        .map(MethodOutput::Html)
        .map_err(|e| CoreError::Internal(format!("Script_view failed: {e}")))
}

/// Runs `script` on the document at `on` as the viewer, read-only, with the checks of a
/// call: the viewer must see the document and hold the script's permission on it.
fn test_run(
    call: &mut Call<'_>,
    script: &UserScript,
    on: &str,
    args: &str,
) -> CoreResult<MethodOutput> {
    if !script.props.read_only {
        return Err(CoreError::MethodNotAllowed(
            "this script changes data: it is not run from its page".into(),
        ));
    }
    let args: Map<String, Value> = if args.is_empty() {
        Map::new()
    } else {
        match serde_json::from_str(args) {
            Ok(Value::Object(m)) => m,
            Ok(_) | Err(_) => {
                return Err(CoreError::BadRequest(
                    "arguments must be a JSON object, e.g. {\"limit\": 5}".into(),
                ))
            }
        }
    };
    let missing = || CoreError::NotFound(format!("/{on} does not exist"));
    let target = match wendelin_core::document::find(call.conn, on)? {
        Some(doc) if call.allowed(&doc, Permission::View)? => doc,
        _ => return Err(missing()),
    };
    if !call.allowed(&target, script.permission)? {
        return Err(CoreError::Forbidden(format!(
            "running {} needs '{}' on /{on}",
            call.context.id,
            script.permission.name()
        )));
    }
    let mut run = Call {
        registry: call.registry,
        conn: &mut *call.conn,
        user: call.user,
        context: &target,
        holder: &target,
        args: &args,
        host: call.host,
        writable: false,
    };
    script.call(&mut run)
}

/// The Scripts the viewer may see whose body names this one: by its id, or by the short
/// name the dispatcher also resolves (`"summary"` for `DataStream_summary`).
fn callers(call: &mut Call<'_>) -> CoreResult<Vec<(String, String)>> {
    let id = call.context.id.as_str();
    let short = id.split_once('_').map(|(_, rest)| format!("\"{rest}\""));
    let search = Search {
        query: format!("portal_type:\"{SCRIPT_TYPE}\""),
        sort_on: String::new(),
        limit: MAX_CALLERS_SCANNED,
        offset: 0,
    };
    let found = wendelin_core::catalog::search(
        call.conn,
        call.registry,
        None,
        &call.user.principals(),
        &search,
        Count::None,
    )?;
    let mut out = Vec::new();
    for doc in found.documents {
        if doc.uid == call.context.uid {
            continue;
        }
        let body = doc
            .get("body")?
            .and_then(|b| b.as_str().map(str::to_owned))
            .unwrap_or_default();
        if body.contains(id) || short.as_deref().is_some_and(|s| body.contains(s)) {
            out.push((
                format!("/{}", doc.path),
                format!("/ui/{}/+module", doc.path),
            ));
        }
    }
    Ok(out)
}
