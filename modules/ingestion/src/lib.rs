//! Ingestion: policies that accept sensor data (fluentd, Fluent Bit, fluent-logger) and
//! the Data Ingestions that record it. [`resolve`] turns a policy and a fluentd tag into
//! the Data Stream to append to (creating the Data Ingestion, its line and the stream on
//! first data); [`ingest`] applies the supply's Data Operation and appends. The front
//! ends — HTTP ([`http`]: the fluentd compatibility path, the native route,
//! `addIngestionPolicy`) and the Fluentd Forward listener ([`forward`]) — only parse
//! their transport and call [`ingest`].

pub mod forward;
pub mod http;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use wendelin_core::base::lifecycle_workflow;
use wendelin_core::workflow::HookContext;
use wendelin_core::{
    CoreError, CoreResult, Document, DocumentPatch, Module, NewDocument, Permission, Portal,
    PortalType, PropertyDef, PropertyType, User,
};
use wendelin_data_stream::{msgpack, Durability};

/// Folder of the ingestion policies (the path fluent-plugin-wendelin posts to).
pub const POLICIES: &str = "portal_ingestion_policies";
/// `script_id` of the Data Operation that appends the posted bytes as they are.
pub const OP_APPEND: &str = "DataIngestion_appendRaw";
/// `script_id` of the Data Operation that appends one JSON line per record.
pub const OP_JSON_LINES: &str = "DataIngestion_appendJsonLines";

/// The ingestion module: ingestion policies, products, supplies and data ingestions.
pub fn module() -> Module {
    Module::new("ingestion")
        .workflow(lifecycle_workflow("data_ingestion_workflow", "Data Ingestion").after("stop", record_stop_date))
        .folder(POLICIES, "Ingestion Policies", &["Ingestion Policy"])
        .folder("data_ingestion_module", "Data Ingestions", &["Data Ingestion"])
        .folder("data_product_module", "Data Products", &["Data Product"])
        .folder("data_supply_module", "Data Supplies", &["Data Supply"])
        .portal_type(
            PortalType::new("Ingestion Policy", POLICIES)
                .describe("Accepts data posted by fluentd and routes it to data streams")
                .property(
                    PropertyDef::new("tag_parser", PropertyType::String)
                        .default_value(Value::from("default"))
                        .describe("how a fluentd tag becomes a reference: 'default' splits sensor.product, 'whole' keeps the tag"),
                )
                .property(PropertyDef::new("data_operation", PropertyType::Relation).describe("the Data Operation applied when the supply names none"))
                .property(PropertyDef::new("data_supply", PropertyType::Relation).multiple().describe("the Data Supplies: which product a tag feeds, with which operation"))
                .property(
                    PropertyDef::new("accepted_logins", PropertyType::Json)
                        .default_value(json!([]))
                        .describe("logins allowed to post through this policy, besides those who may modify it"),
                )
                .workflow("validation_workflow")
                // The UI's "Add Ingestion Policy" provisions it as addIngestionPolicy does.
                .provisioned_by(policy_form(), |portal, user, values| {
                    let text = |k: &str| values.get(k).and_then(Value::as_str).map(str::to_owned);
                    let spec = PolicySpec {
                        name: text("reference").unwrap_or_default(),
                        product: text("product").filter(|p| !p.is_empty()),
                        operation: text("operation").unwrap_or_else(|| "append".into()),
                        tag_parser: text("tag_parser").unwrap_or_else(|| "default".into()),
                        accepted_logins: values
                            .get("accepted_logins")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                            .unwrap_or_default(),
                    };
                    let title = text("title").filter(|t| !t.is_empty());
                    let out = provision(portal, user, &spec)?;
                    let path = out["policy"].as_str().unwrap_or_default().to_owned();
                    if let Some(title) = title {
                        let doc = portal.get(user, &path)?;
                        let patch = DocumentPatch::from_json(json!({"serial": doc.serial, "title": title}))?;
                        portal.update(user, &path, patch)?;
                    }
                    Ok(path)
                }),
        )
        .portal_type(
            PortalType::new("Data Product", "data_product_module")
                .describe("A kind of data, e.g. the temperature of a sensor; the resource of a supply")
                .property(PropertyDef::new("quantity_unit", PropertyType::String))
                .workflow("validation_workflow"),
        )
        .portal_type(
            PortalType::new("Data Supply", "data_supply_module")
                .describe("Which product the references of a policy feed and with which operation")
                .property(PropertyDef::new("resource", PropertyType::Relation).describe("the Data Product supplied"))
                .property(PropertyDef::new("data_operation", PropertyType::Relation).describe("the Data Operation applied to posted data"))
                .workflow("validation_workflow"),
        )
        .portal_type(
            PortalType::new("Data Ingestion", "data_ingestion_module")
                .describe("One ingestion of data for a reference, started on its first data")
                .property(PropertyDef::new("start_date", PropertyType::DateTime).indexed())
                .property(PropertyDef::new("stop_date", PropertyType::DateTime).indexed())
                .property(PropertyDef::new("specialise", PropertyType::Relation).describe("the Ingestion Policy it came through"))
                .workflow("data_ingestion_workflow")
                .allow("Data Ingestion Line"),
        )
        .portal_type(
            PortalType::new("Data Ingestion Line", "data_ingestion_module")
                .describe("What one data ingestion feeds: a resource and the stream holding it")
                .property(PropertyDef::new("resource", PropertyType::String).indexed())
                .property(PropertyDef::new("quantity", PropertyType::Float))
                .property(PropertyDef::new("aggregate", PropertyType::Relation).multiple().describe("the Data Streams written"))
                .property(PropertyDef::new("data_operation", PropertyType::Relation)),
        )
}

/// Stopping an ingestion records when it stopped.
fn record_stop_date(ctx: &mut HookContext<'_>) -> CoreResult<()> {
    let doc = wendelin_core::document::get_by_uid(ctx.conn, ctx.document.uid)?;
    let stamp = now_rfc3339();
    let patch =
        DocumentPatch::from_json(serde_json::json!({"serial": doc.serial, "stop_date": stamp}))?;
    wendelin_core::document::update(ctx.conn, ctx.registry, &doc.path, patch, ctx.user).map(|_| ())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What [`provision`] creates.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// Id and reference of the policy (and of its supply).
    pub name: String,
    /// Reference of the Data Product fed (default: the policy's name).
    pub product: Option<String>,
    /// `append` (raw bytes) or `json-lines`.
    pub operation: String,
    /// `default` (sensor.product) or `whole`.
    pub tag_parser: String,
    /// Logins the policy accepts data from, besides those who may modify it.
    pub accepted_logins: Vec<String>,
}

/// The fields of the UI's form that provisions a policy (see [`provision`]).
fn policy_form() -> Vec<PropertyDef> {
    vec![
        PropertyDef::new("reference", PropertyType::String)
            .required()
            .describe("the policy's id: fluentd posts to /erp5/portal_ingestion_policies/<reference>/ingest"),
        PropertyDef::new("title", PropertyType::String).describe("a name for people (default: the reference)"),
        PropertyDef::new("product", PropertyType::String)
            .describe("reference of the Data Product the tags feed (default: the policy's reference)"),
        PropertyDef::new("operation", PropertyType::String)
            .default_value(Value::from("append"))
            .describe("'append' (the raw msgpack bytes) or 'json-lines' (one JSON object per record)"),
        PropertyDef::new("tag_parser", PropertyType::String)
            .default_value(Value::from("default"))
            .describe("'default' splits sensor.product, 'whole' keeps the tag as the reference"),
        PropertyDef::new("accepted_logins", PropertyType::Json)
            .default_value(json!([]))
            .describe("logins allowed to post through this policy, besides those who may modify it"),
    ]
}

/// Provisions an Ingestion Policy with its Data Product, Data Supply and Data Operation
/// (creating the ones missing) and validates them, as Wendelin's
/// `IngestionPolicyTool_addIngestionPolicy` does. Returns the paths created.
pub fn provision(portal: &Portal, user: &User, spec: &PolicySpec) -> CoreResult<Value> {
    check_ref(&spec.name, "policy name")?;
    let product = spec.product.clone().unwrap_or_else(|| spec.name.clone());
    check_ref(&product, "product reference")?;
    if !matches!(spec.tag_parser.as_str(), "default" | "whole") {
        return Err(CoreError::BadRequest(format!(
            "tag parser '{}' is unknown: use 'default' or 'whole'",
            spec.tag_parser
        )));
    }
    let script = match spec.operation.as_str() {
        "append" => OP_APPEND,
        "json-lines" => OP_JSON_LINES,
        other => {
            return Err(CoreError::BadRequest(format!(
                "operation '{other}' is unknown: use 'append' or 'json-lines'"
            )))
        }
    };
    let policy_path = format!("{POLICIES}/{}", spec.name);
    if portal
        .db
        .read(|c| wendelin_core::document::find(c, &policy_path))?
        .is_some()
    {
        return Err(CoreError::Conflict(format!(
            "ingestion policy '{}' already exists",
            spec.name
        )));
    }
    let op = ensure(
        portal,
        user,
        "data_operation_module",
        script,
        json!({
            "portal_type": "Data Operation", "id": script, "reference": script,
            "title": if script == OP_APPEND { "Append raw data" } else { "Append JSON lines" },
            "script_id": script,
        }),
    )?;
    let product_doc = ensure(
        portal,
        user,
        "data_product_module",
        &product,
        json!({
            "portal_type": "Data Product", "id": product, "reference": product, "title": product,
        }),
    )?;
    let supply = ensure(
        portal,
        user,
        "data_supply_module",
        &spec.name,
        json!({
            "portal_type": "Data Supply", "id": spec.name, "reference": spec.name,
            "title": format!("{} supply", spec.name),
            "resource": product_doc.path, "data_operation": op.path,
        }),
    )?;
    let policy = portal.create(
        user,
        POLICIES,
        NewDocument::from_json(json!({
            "portal_type": "Ingestion Policy", "id": spec.name, "reference": spec.name,
            "title": spec.name, "tag_parser": spec.tag_parser,
            "data_operation": op.path, "data_supply": [supply.path],
            "accepted_logins": spec.accepted_logins,
        }))?,
    )?;
    for doc in [&op, &product_doc, &supply, &policy] {
        validate(portal, user, &doc.path)?;
    }
    Ok(json!({
        "policy": policy.path, "data_supply": supply.path, "data_product": product_doc.path,
        "data_operation": op.path,
        "ingest_url": format!("/erp5/{POLICIES}/{}/ingest?reference=<tag>", spec.name),
    }))
}

/// The document at `<folder>/<id>`, created from `body` when missing.
fn ensure(
    portal: &Portal,
    user: &User,
    folder: &str,
    id: &str,
    body: Value,
) -> CoreResult<Document> {
    let path = format!("{folder}/{id}");
    match portal.get(user, &path) {
        Ok(d) => Ok(d),
        Err(CoreError::NotFound(_)) => {
            match portal.create(user, folder, NewDocument::from_json(body)?) {
                Ok(d) => Ok(d),
                // Created meanwhile by a concurrent request.
                Err(CoreError::Conflict(_)) => portal.get(user, &path),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn validate(portal: &Portal, user: &User, path: &str) -> CoreResult<()> {
    let states = portal.workflows(user, path)?;
    if states
        .iter()
        .any(|s| s.workflow == "validation_workflow" && s.state == "draft")
    {
        portal.fire(user, path, "validate", &Map::new())?;
    }
    Ok(())
}

fn check_ref(s: &str, what: &str) -> CoreResult<()> {
    let ok = !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CoreError::BadRequest(format!(
            "{what} '{s}' must be 1-100 letters, digits, '_' or '-'"
        )))
    }
}

/// How posted data is turned into stream bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// The posted msgpack bytes, as they are.
    Append,
    /// One JSON object per record and line.
    JsonLines,
}

/// Where a policy sends a tag's data.
#[derive(Debug, Clone)]
pub struct Route {
    /// The Data Stream appended to (the caller may modify it).
    pub stream: Document,
    /// What is done to the data.
    pub operation: Operation,
}

/// Posted data, decoded by the transport.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A concatenated msgpack stream, already checked with [`msgpack::validate`].
    Msgpack(Vec<u8>),
    /// Records that arrived as JSON (NDJSON or a JSON array), timed on arrival.
    Records(Vec<Value>),
}

fn not_found(msg: String) -> CoreError {
    CoreError::NotFound(msg)
}

/// Splits a fluentd tag with the policy's parser: `(ingestion reference, resource)`.
pub fn parse_tag(parser: &str, tag: &str) -> CoreResult<(String, Option<String>)> {
    let (reference, resource) = match parser {
        "whole" => (tag, None),
        _ => match tag.split_once('.') {
            Some((r, p)) => (r, Some(p)),
            None => (tag, None),
        },
    };
    let good = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    };
    if !good(reference) || !resource.is_none_or(good) {
        return Err(not_found(format!(
            "cannot parse the tag '{tag}': expected sensor.product made of letters, digits, '_', '-'"
        )));
    }
    Ok((reference.to_owned(), resource.map(str::to_owned)))
}

fn first_path(v: &Value, name: &str) -> Option<String> {
    match v.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Finds the stream that `tag` posted to `policy` feeds, creating the Data Ingestion
/// (started now), its line and the Data Stream on first data. Every step is checked
/// for `user`; the caller must then hold *Modify portal content* on the stream.
pub fn resolve(portal: &Portal, user: &User, policy: &str, tag: &str) -> CoreResult<Route> {
    let policy_path = format!("{POLICIES}/{policy}");
    let pol = portal.get_json(user, &policy_path).map_err(|e| match e {
        CoreError::NotFound(_) => not_found(format!("there is no ingestion policy '{policy}'")),
        other => other,
    })?;
    if pol.get("portal_type").and_then(Value::as_str) != Some("Ingestion Policy") {
        return Err(not_found(format!(
            "there is no ingestion policy '{policy}'"
        )));
    }
    // Who may feed a policy is the policy's to say: the logins it lists, and whoever may
    // modify it (Managers, its Assignors). Nobody else, so that no Author can take a tag's
    // stream for themselves by ingesting first.
    let login = user.login.as_deref().unwrap_or("");
    let listed = match pol.get("accepted_logins") {
        Some(Value::Array(logins)) => logins.iter().any(|l| l.as_str() == Some(login)),
        _ => false,
    };
    if !listed && !portal.allowed(user, &policy_path, Permission::ModifyPortalContent)? {
        return Err(CoreError::Forbidden(format!(
            "ingestion policy '{policy}' does not accept data from '{login}': list the login in its accepted_logins"
        )));
    }
    let parser = pol
        .get("tag_parser")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let (reference, resource) = parse_tag(parser, tag)?;
    // The supply for the tag's product (or the first one when the tag names none).
    let supplies: Vec<String> = match pol.get("data_supply") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let mut chosen = None;
    for s in &supplies {
        let supply = portal.get_json(user, s)?;
        let product = match first_path(&supply, "resource") {
            Some(p) => portal.get(user, &p)?,
            None => continue,
        };
        let product_ref = product
            .reference
            .clone()
            .unwrap_or_else(|| product.id.clone());
        if resource.as_deref().is_none_or(|r| r == product_ref) {
            chosen = Some((supply, product_ref));
            break;
        }
    }
    let (supply, product_ref) = chosen.ok_or_else(|| {
        not_found(match &resource {
            Some(r) => format!("ingestion policy '{policy}' has no Data Supply for the product '{r}' (tag '{tag}')"),
            None => format!("ingestion policy '{policy}' has no Data Supply"),
        })
    })?;
    let op_path =
        first_path(&supply, "data_operation").or_else(|| first_path(&pol, "data_operation"));
    let operation = match op_path {
        None => Operation::Append,
        Some(p) => {
            let op = portal.get_json(user, &p)?;
            match op.get("script_id").and_then(Value::as_str) {
                Some(OP_APPEND) => Operation::Append,
                Some(OP_JSON_LINES) => Operation::JsonLines,
                other => {
                    return Err(CoreError::Invalid(format!(
                        "the Data Operation /{p} runs '{}', which ingestion does not know (use {OP_APPEND} or {OP_JSON_LINES})",
                        other.unwrap_or("")
                    )))
                }
            }
        }
    };
    let stream_ref = format!("{reference}.{product_ref}");
    let stream_path = format!("data_stream_module/{stream_ref}");
    let stream = match wendelin_data_stream::checked(
        portal,
        user,
        &stream_path,
        Permission::ModifyPortalContent,
    ) {
        Ok(s) => s,
        Err(CoreError::NotFound(_)) => {
            first_data(
                portal,
                user,
                &policy_path,
                &reference,
                &product_ref,
                &stream_ref,
                op_path_of(&supply, &pol),
            )?;
            wendelin_data_stream::checked(
                portal,
                user,
                &stream_path,
                Permission::ModifyPortalContent,
            )?
        }
        Err(e) => return Err(e),
    };
    Ok(Route { stream, operation })
}

fn op_path_of(supply: &Value, pol: &Value) -> Option<String> {
    first_path(supply, "data_operation").or_else(|| first_path(pol, "data_operation"))
}

/// Creates the stream, the Data Ingestion (started) and its line for a new reference.
fn first_data(
    portal: &Portal,
    user: &User,
    policy_path: &str,
    reference: &str,
    product_ref: &str,
    stream_ref: &str,
    op_path: Option<String>,
) -> CoreResult<()> {
    let stream = ensure(
        portal,
        user,
        "data_stream_module",
        stream_ref,
        json!({
            "portal_type": "Data Stream", "id": stream_ref, "reference": stream_ref, "title": stream_ref,
        }),
    )?;
    let ingestion = ensure(
        portal,
        user,
        "data_ingestion_module",
        reference,
        json!({
            "portal_type": "Data Ingestion", "id": reference, "reference": reference, "title": reference,
            "start_date": now_rfc3339(), "specialise": policy_path,
        }),
    )?;
    let mut line = json!({
        "portal_type": "Data Ingestion Line", "id": product_ref, "title": product_ref,
        "resource": product_ref, "aggregate": [stream.path],
    });
    if let Some(op) = op_path {
        line["data_operation"] = Value::from(op);
    }
    ensure(portal, user, &ingestion.path, product_ref, line)?;
    Ok(())
}

/// fluentd EventTime for now, as msgpack.
fn now_event_time() -> rmpv::Value {
    let now = chrono::Utc::now();
    let secs = u32::try_from(now.timestamp()).unwrap_or(0);
    let mut data = secs.to_be_bytes().to_vec();
    data.extend_from_slice(&now.timestamp_subsec_nanos().to_be_bytes());
    rmpv::Value::Ext(0, data)
}

/// The bytes `payload` becomes in a stream under `operation`.
pub fn encode(operation: Operation, payload: &Payload) -> CoreResult<Vec<u8>> {
    let mut out = Vec::new();
    let write = |out: &mut Vec<u8>, v: &rmpv::Value| {
        rmpv::encode::write_value(out, v)
            .map_err(|e| CoreError::Internal(format!("msgpack encoding failed: {e}")))
    };
    match (operation, payload) {
        (Operation::Append, Payload::Msgpack(bytes)) => out.extend_from_slice(bytes),
        (Operation::Append, Payload::Records(records)) => {
            let time = now_event_time();
            for r in records {
                write(
                    &mut out,
                    &rmpv::Value::Array(vec![time.clone(), msgpack::from_json(r)]),
                )?;
            }
            // Held to the nesting limit of stored msgpack, so that it can be read back.
            msgpack::validate(&out).map_err(CoreError::BadRequest)?;
        }
        (Operation::JsonLines, Payload::Msgpack(bytes)) => {
            let (values, _) = msgpack::decode_prefix(bytes).map_err(CoreError::BadRequest)?;
            for v in &values {
                let line = match v {
                    rmpv::ValueRef::Array(a) if a.len() == 2 => {
                        json!({"time": msgpack::to_json(&a[0]), "record": msgpack::to_json(&a[1])})
                    }
                    other => msgpack::to_json(other),
                };
                out.extend_from_slice(line.to_string().as_bytes());
                out.push(b'\n');
            }
        }
        (Operation::JsonLines, Payload::Records(records)) => {
            let time = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
            for r in records {
                out.extend_from_slice(json!({"time": time, "record": r}).to_string().as_bytes());
                out.push(b'\n');
            }
        }
    }
    Ok(out)
}

/// What one ingestion call appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// Path of the Data Stream.
    pub stream: String,
    /// Bytes appended.
    pub bytes: u64,
    /// The stream's size after the append.
    pub size: u64,
}

/// Routes resolved by [`resolve`], kept for a while per (user's principals, policy, tag):
/// the Forward listener keeps one per connection, the HTTP routes one per process
/// ([`ROUTE_TTL`], at most [`ROUTE_CAPACITY`]). Permissions are checked again whenever a
/// route is resolved, so a revoked permission or a deleted stream is noticed within
/// [`ROUTE_TTL`].
#[derive(Debug)]
pub struct Routes {
    ttl: Duration,
    capacity: usize,
    kept: HashMap<(String, String, String), (Route, Instant)>,
}

/// How long a resolved route is trusted before it is resolved (and checked) again.
pub const ROUTE_TTL: Duration = Duration::from_secs(5);
/// Routes kept at most (more tags resolve some again).
pub const ROUTE_CAPACITY: usize = 4096;

impl Routes {
    /// Keeps up to `capacity` routes for `ttl` each.
    pub fn cached(ttl: Duration, capacity: usize) -> Routes {
        Routes {
            ttl,
            capacity,
            kept: HashMap::new(),
        }
    }

    /// The route of `tag` through `policy` for `user` if it is kept and fresh (no
    /// resolution: no database access).
    pub fn peek(&self, user: &User, policy: &str, tag: &str) -> Option<Route> {
        let key = (
            user.principals().join("\n"),
            policy.to_owned(),
            tag.to_owned(),
        );
        let (route, at) = self.kept.get(&key)?;
        (at.elapsed() < self.ttl).then(|| route.clone())
    }

    /// The route of `tag` through `policy` for `user`, resolved when not kept (or kept
    /// longer than the ttl).
    pub fn get(
        &mut self,
        portal: &Portal,
        user: &User,
        policy: &str,
        tag: &str,
    ) -> CoreResult<Route> {
        let key = (
            user.principals().join("\n"),
            policy.to_owned(),
            tag.to_owned(),
        );
        if let Some((route, at)) = self.kept.get(&key) {
            if at.elapsed() < self.ttl {
                return Ok(route.clone());
            }
        }
        let route = resolve(portal, user, policy, tag)?;
        if self.capacity > 0 {
            if self.kept.len() >= self.capacity {
                let ttl = self.ttl;
                self.kept.retain(|_, (_, at)| at.elapsed() < ttl);
                if self.kept.len() >= self.capacity {
                    self.kept.clear();
                }
            }
            self.kept.insert(key, (route.clone(), Instant::now()));
        }
        Ok(route)
    }
}

/// Appends `payload` to the stream `tag` feeds through `policy`, the route found through
/// `routes`: the one ingestion path of every transport. With [`Durability::Durable`] it
/// returns only once the bytes are on disk.
pub fn ingest(
    portal: &Portal,
    user: &User,
    routes: &mut Routes,
    policy: &str,
    tag: &str,
    payload: Payload,
    mode: Durability,
) -> CoreResult<Ingested> {
    let route = routes.get(portal, user, policy, tag)?;
    ingest_to(portal, route, payload, mode)
}

/// Appends `payload` along `route` (resolved and checked by [`Routes::get`]).
pub fn ingest_to(
    portal: &Portal,
    route: Route,
    payload: Payload,
    mode: Durability,
) -> CoreResult<Ingested> {
    let bytes = match (route.operation, payload) {
        // The posted msgpack as it is: no copy.
        (Operation::Append, Payload::Msgpack(bytes)) => bytes,
        (op, payload) => encode(op, &payload)?,
    };
    let size = wendelin_data_stream::append_checked(portal, &route.stream, &bytes, None, mode)?;
    Ok(Ingested {
        stream: route.stream.path,
        bytes: bytes.len() as u64,
        size,
    })
}

/// [`ingest_to`] of a msgpack body prewritten while it arrived ([`Prewrite`]), already
/// checked; `route` is the one the prewrite was taken for.
pub fn ingest_prewritten(
    portal: &Portal,
    route: Route,
    pre: wendelin_data_stream::Prewrite,
    mode: Durability,
) -> CoreResult<Ingested> {
    let bytes = pre.body().len() as u64;
    let size = wendelin_data_stream::append_prewritten_checked(portal, &route.stream, pre, mode)?;
    Ok(Ingested {
        stream: route.stream.path,
        bytes,
        size,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_parser_splits_sensor_and_product() {
        assert_eq!(
            parse_tag("default", "sensor.product").unwrap(),
            ("sensor".into(), Some("product".into()))
        );
        assert_eq!(
            parse_tag("default", "pydata").unwrap(),
            ("pydata".into(), None)
        );
        assert_eq!(parse_tag("whole", "a.b").unwrap(), ("a.b".into(), None));
        assert!(matches!(
            parse_tag("default", "bad tag"),
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(
            parse_tag("default", ".x"),
            Err(CoreError::NotFound(_))
        ));
    }

    #[test]
    fn json_lines_turn_entries_into_objects() {
        let mut buf = Vec::new();
        let entry = rmpv::Value::Array(vec![
            rmpv::Value::from(10),
            rmpv::Value::Map(vec![(rmpv::Value::from("a"), rmpv::Value::from(1))]),
        ]);
        rmpv::encode::write_value(&mut buf, &entry).unwrap();
        let out = String::from_utf8(encode(Operation::JsonLines, &Payload::Msgpack(buf)).unwrap())
            .unwrap();
        // One line per record (key order depends on serde_json's features: compare values).
        assert!(
            out.ends_with('\n') && out.matches('\n').count() == 1,
            "{out:?}"
        );
        let line: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(line, serde_json::json!({"record": {"a": 1}, "time": 10}));
    }
}
