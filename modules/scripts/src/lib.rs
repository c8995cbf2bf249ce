//! User scripts: `Script` documents (Rhai) found by name through the dispatcher, before
//! the modules' own scripts, in the document's containers (nearer wins) and then in the
//! global `portal_skins` folder; compiled once per (uid, serial) and run in a sandbox
//! ([`sandbox`]) as the calling user.

pub mod http;
pub mod sandbox;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;
use serde_json::{json, Map, Value};
use wendelin_core::db::DbConnection;
use wendelin_core::dispatch::ScriptSource;
use wendelin_core::{
    Call, CoreError, CoreResult, Document, Method, MethodOutput, Module, Permission, PortalType,
    PropertyDef, PropertyType,
};

/// The portal type of user scripts.
pub const SCRIPT_TYPE: &str = "Script";
/// The global folder of scripts, asked after the document's containers.
pub const SKINS_FOLDER: &str = "portal_skins";

/// The module: the `portal_skins` folder, the `Script` type and the script source.
pub fn module() -> Module {
    Module::new("scripts")
        .folder(SKINS_FOLDER, "Skins", &[SCRIPT_TYPE])
        .portal_type(
            PortalType::new(SCRIPT_TYPE, SKINS_FOLDER)
                .describe("A Rhai script, called by its id as a method of documents")
                .property(
                    PropertyDef::new("body", PropertyType::Text)
                        .code("rhai")
                        .describe("Rhai source"),
                )
                .property(
                    PropertyDef::new("parameters", PropertyType::Json)
                        .default_value(json!({}))
                        .describe("declared parameters with their defaults, a JSON object"),
                )
                .property(
                    PropertyDef::new("permission", PropertyType::String)
                        .default_value(json!("View"))
                        .describe("the permission the caller needs on the document"),
                )
                .property(
                    PropertyDef::new("read_only", PropertyType::Bool)
                        .default_value(json!(true))
                        .describe("false: the script may change data (POST only)"),
                )
                .property(
                    PropertyDef::new("result", PropertyType::String)
                        .default_value(json!("json"))
                        .describe("json: the value as JSON; html: the value (a string) as a page"),
                )
                .property(
                    PropertyDef::new("proxy_roles", PropertyType::Json)
                        .set_by("Manager")
                        .describe(
                            "roles added to the caller's while it runs (a list); Manager only",
                        ),
                )
                .validate(check_properties)
                .anywhere()
                .edit_permission(Permission::ManagePortal)
                .permission(Permission::ModifyPortalContent, &["Manager"])
                .permission(Permission::AddPortalContent, &["Manager"])
                .permission(Permission::DeleteObjects, &["Manager"]),
        )
        .script_source(Arc::new(UserScripts))
        .script("Script_view", view::script_view)
}

/// The typed properties of a Script, read from its document.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct ScriptProps {
    body: String,
    parameters: Map<String, Value>,
    permission: String,
    read_only: bool,
    result: String,
    proxy_roles: Vec<String>,
}

impl Default for ScriptProps {
    fn default() -> Self {
        ScriptProps {
            body: String::new(),
            parameters: Map::new(),
            permission: "View".into(),
            read_only: true,
            result: "json".into(),
            proxy_roles: Vec::new(),
        }
    }
}

fn parse_permission(name: &str) -> Option<Permission> {
    Permission::ALL.into_iter().find(|p| p.name() == name)
}

/// The Script type's whole-document check, run by the kernel on creation and on every
/// edit (a refusal is a 422 and nothing is stored): `parameters` is an object, the
/// permission exists, and the body compiles — so a broken script is refused when it is
/// saved, with the line and column of its error, rather than found broken when called.
fn check_properties(props: &Map<String, Value>) -> CoreResult<()> {
    if let Some(p) = props.get("parameters") {
        if !p.is_object() {
            let kind = match p {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            };
            return Err(CoreError::Invalid(format!(
                "parameters must be a JSON object of names and their defaults, not {kind}"
            )));
        }
    }
    let parsed: ScriptProps = serde_json::from_value(Value::Object(props.clone()))
        .map_err(|e| CoreError::Invalid(format!("script properties: {e}")))?;
    if parse_permission(&parsed.permission).is_none() {
        return Err(CoreError::Invalid(format!(
            "permission '{}' does not exist; known: {}",
            parsed.permission,
            Permission::ALL.map(|p| p.name()).join(", ")
        )));
    }
    if !matches!(parsed.result.as_str(), "json" | "html" | "text") {
        return Err(CoreError::Invalid(format!(
            "result '{}' is not known; known: json, html, text",
            parsed.result
        )));
    }
    sandbox::check_compiles(&parsed.body)
}

/// Finds Script documents by name (see the crate documentation).
pub struct UserScripts;

impl UserScripts {
    /// Paths where a script `name` seen from `doc` may live, nearest first.
    fn candidates(doc: &Document, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut path = doc.path.as_str();
        while !path.is_empty() {
            out.push(format!("{path}/{name}"));
            path = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        }
        out.push(format!("{SKINS_FOLDER}/{name}"));
        out
    }
}

impl ScriptSource for UserScripts {
    fn find(&self, _name: &str) -> Option<Arc<dyn Method>> {
        None
    }

    fn find_in(
        &self,
        conn: &mut DbConnection,
        doc: &Document,
        name: &str,
    ) -> CoreResult<Option<Arc<dyn Method>>> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Ok(None);
        }
        let candidates = Self::candidates(doc, name);
        match wendelin_core::document::find_first_of_type(conn, &candidates, SCRIPT_TYPE)? {
            Some(found) => Ok(Some(Arc::new(UserScript::from_document(found)?))),
            None => Ok(None),
        }
    }
}

/// Compiled scripts by (uid, serial).
type AstCache = Mutex<HashMap<(i64, i64), Arc<rhai::AST>>>;

/// A Script document as a method.
pub struct UserScript {
    doc: Document,
    props: ScriptProps,
    permission: Permission,
}

impl UserScript {
    fn from_document(doc: Document) -> CoreResult<UserScript> {
        let props: ScriptProps = serde_json::from_value(Value::Object(doc.property_map()?))
            .map_err(|e| CoreError::Invalid(format!("script /{}: {e}", doc.path)))?;
        let permission = parse_permission(&props.permission).unwrap_or(Permission::ManagePortal);
        Ok(UserScript {
            doc,
            props,
            permission,
        })
    }

    /// The compiled script, from the cache when this (uid, serial) was compiled before.
    fn ast(&self) -> CoreResult<Arc<rhai::AST>> {
        static CACHE: OnceLock<AstCache> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = (self.doc.uid, self.doc.serial);
        if let Some(ast) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(ast);
        }
        let ast = Arc::new(sandbox::compile(&self.doc.id, &self.props.body)?);
        if let Ok(mut c) = cache.lock() {
            // Older serials of this script are of no use any more; bound the whole.
            c.retain(|(uid, _), _| *uid != self.doc.uid);
            if c.len() >= 4096 {
                c.clear();
            }
            c.insert(key, ast.clone());
        }
        Ok(ast)
    }
}

impl Method for UserScript {
    fn call(&self, call: &mut Call<'_>) -> CoreResult<MethodOutput> {
        let ast = self.ast()?;
        let mut params = self.props.parameters.clone();
        for (k, v) in call.args {
            let v = coerce(params.get(k), v);
            params.insert(k.clone(), v);
        }
        let mut user = call.user.clone();
        user.roles.extend(self.props.proxy_roles.iter().cloned());
        let context = call.context.field_map()?;
        sandbox::run(
            &self.doc.id,
            ast,
            call,
            &user,
            Value::Object(context),
            Value::Object(params),
        )
        .and_then(|value| match (self.props.result.as_str(), value) {
            ("html", Value::String(page)) => Ok(MethodOutput::Html(page)),
            ("text", Value::String(text)) => Ok(MethodOutput::Text(text)),
            (kind @ ("html" | "text"), other) => Err(CoreError::Invalid(format!(
                "script {} declares a{} {kind} result but returned {other}, not a string",
                self.doc.id,
                if kind == "html" { "n" } else { "" }
            ))),
            (_, value) => Ok(MethodOutput::Json(value)),
        })
    }

    fn read_only(&self) -> bool {
        self.props.read_only
    }

    fn permission(&self) -> Permission {
        self.permission
    }
}

/// A query-string argument (always text) as the type of the parameter's declared
/// default, when it reads as one: `?limit=5` is 5 where the default is a number.
fn coerce(default: Option<&Value>, value: &Value) -> Value {
    let (Some(default), Value::String(text)) = (default, value) else {
        return value.clone();
    };
    let parsed = match default {
        Value::Number(n) if n.is_i64() || n.is_u64() => text.parse::<i64>().ok().map(Value::from),
        Value::Number(_) => text.parse::<f64>().ok().map(Value::from),
        Value::Bool(_) => text.parse::<bool>().ok().map(Value::from),
        _ => None,
    };
    parsed.unwrap_or_else(|| value.clone())
}
