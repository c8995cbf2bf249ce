//! The OpenAPI 3.1 document, generated from the registry: one path per module folder and
//! one schema per portal type, so it always matches the modules compiled in.
//!
//! It is meant to be true, not only descriptive: `tests/tests/schemathesis.rs` runs
//! Schemathesis against a live server with every check, so each operation lists every
//! status it can answer, request bodies refuse what the server refuses
//! (`additionalProperties: false`, bounds of integers, the id syntax), and responses
//! have the schema of what the handlers return.

use serde_json::{json, Map, Value};
use wendelin_core::types::{PortalType, PropertyType};
use wendelin_core::Registry;

/// Bounds of a JSON integer the server reads as `i64`.
fn int64() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX})
}

/// A single-line string (`String` properties refuse a newline). The lookahead keeps
/// generators that read `$` as "end or before a final newline" from adding one.
fn single_line() -> Value {
    json!({"type": "string", "pattern": "^[^\\n]*(?!\\n)$"})
}

fn property_schema(kind: PropertyType, multiple: bool) -> Value {
    match kind {
        PropertyType::String => single_line(),
        PropertyType::Text => json!({"type": "string"}),
        PropertyType::Int => int64(),
        PropertyType::Float => json!({"type": "number", "format": "double"}),
        PropertyType::Bool => json!({"type": "boolean"}),
        PropertyType::Date => json!({"type": "string", "format": "date"}),
        PropertyType::DateTime => json!({"type": "string", "format": "date-time"}),
        PropertyType::Json => json!({}),
        PropertyType::Relation if multiple => {
            json!({"type": ["array", "string", "null"], "items": {"type": "string"},
                "x-wendelin-relation": true,
                "description": "paths of existing documents, or one path (a missing one is a 422)"})
        }
        PropertyType::Relation => {
            json!({"type": ["string", "null"], "x-wendelin-relation": true,
                "description": "path of an existing document (a missing one is a 422)"})
        }
    }
}

/// `schema` or null (in an edit, null removes an optional property).
fn or_null(schema: Value) -> Value {
    if schema == json!({}) {
        return schema;
    }
    json!({"anyOf": [schema, {"type": "null"}]})
}

fn date_time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

/// The declared properties of `t`, with their descriptions and defaults.
fn declared(t: &PortalType, nullable_optional: bool) -> Vec<(String, Value, bool)> {
    t.properties
        .iter()
        .map(|p| {
            let mut s = property_schema(p.kind, p.multiple);
            if let Value::Object(m) = &mut s {
                if !p.description.is_empty() {
                    m.insert("description".into(), Value::from(p.description.clone()));
                }
                if let Some(d) = &p.default {
                    m.insert("default".into(), d.clone());
                }
                if !p.choices.is_empty() {
                    m.insert("enum".into(), Value::from(p.choices.clone()));
                }
            }
            let required = p.required && p.default.is_none();
            if nullable_optional && !p.required {
                s = or_null(s);
            }
            (p.name.clone(), s, required)
        })
        .collect()
}

/// A document as the server returns it.
fn document_schema(t: &PortalType) -> Value {
    let mut props = Map::new();
    for (name, schema) in [
        ("uid", int64()),
        ("path", json!({"type": "string"})),
        ("id", json!({"type": "string"})),
        ("module", json!({"type": "string"})),
        ("portal_type", json!({"type": "string", "const": t.name})),
        ("title", json!({"type": "string"})),
        ("reference", json!({"type": ["string", "null"]})),
        ("description", json!({"type": "string"})),
        ("owner", json!({"type": "string"})),
        ("creation_date", date_time()),
        ("modification_date", date_time()),
        (
            "serial",
            json!({"type": "integer", "format": "int64",
                "description": "send it back with an edit; a stale one gets 409"}),
        ),
        (
            "parent",
            json!({"type": "string", "description": "the container's path"}),
        ),
        (
            "workflow_states",
            json!({"type": "object", "additionalProperties": {"type": "string"},
                "description": "state per workflow"}),
        ),
    ] {
        props.insert(name.into(), schema);
    }
    for (name, schema, _) in declared(t, false) {
        // Relations are always listed (null or [] without targets); other properties only
        // once set.
        props.insert(name, schema);
    }
    json!({
        "type": "object",
        "description": t.description,
        "properties": props,
        "required": ["uid", "path", "id", "module", "portal_type", "title", "reference",
            "description", "owner", "creation_date", "modification_date", "serial"],
        "additionalProperties": false,
    })
}

/// The body of a create: core fields a client may set and the declared properties.
fn new_schema(registry: &Registry, t: &PortalType, portal_type_required: bool) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    // The kernel's and the modules' routes claim these segments.
    let reserved: Vec<Value> = registry.reserved_ids().map(Value::from).collect();
    props.insert(
        "id".into(),
        json!({"type": ["string", "null"], "minLength": 1, "maxLength": 200,
            "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]*(?!\\n)$", "not": {"enum": reserved},
            "description": "chosen id (letters, digits, '_', '-', '.'); numbered when absent; a used one is a 409"}),
    );
    if portal_type_required {
        props.insert("portal_type".into(), json!({"const": t.name}));
        required.push(Value::from("portal_type"));
    } else {
        props.insert(
            "portal_type".into(),
            json!({"anyOf": [{"const": t.name}, {"type": "null"}]}),
        );
    }
    props.insert("title".into(), json!({"type": ["string", "null"]}));
    props.insert(
        "reference".into(),
        json!({"type": ["string", "null"], "description": "unique per portal type (a used one is a 409)"}),
    );
    props.insert("description".into(), json!({"type": ["string", "null"]}));
    // An optional property given as null is left unset.
    for (name, schema, req) in declared(t, true) {
        if req {
            required.push(Value::from(name.clone()));
        }
        props.insert(name, schema);
    }
    checked(
        t,
        json!({
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        }),
    )
}

/// Marks the body schema of a type whose properties are also checked as a whole
/// ([`PortalType::validate`], e.g. an array's shape against its chunks): a body valid
/// property by property may still be a 422, which `x-wendelin-checked` says.
fn checked(t: &PortalType, mut schema: Value) -> Value {
    if t.validate.is_some() {
        if let Value::Object(m) = &mut schema {
            m.insert("x-wendelin-checked".into(), Value::Bool(true));
            m.insert(
                "description".into(),
                Value::from(format!(
                    "{}: the properties are also checked together (a 422 says what is wrong)",
                    t.name
                )),
            );
        }
    }
    schema
}

/// The body of an edit: the serial it is based on and the fields to change.
fn patch_schema(t: &PortalType) -> Value {
    let mut props = Map::new();
    props.insert(
        "serial".into(),
        json!({"type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX,
            "description": "the serial read (or If-Match: \"N\"); a stale one is a 409"}),
    );
    props.insert("title".into(), json!({"type": ["string", "null"]}));
    props.insert("reference".into(), json!({"type": ["string", "null"]}));
    props.insert("description".into(), json!({"type": ["string", "null"]}));
    for (name, schema, _) in declared(t, true) {
        props.insert(name, schema);
    }
    checked(
        t,
        json!({
            "type": "object",
            "properties": props,
            "required": ["serial"],
            "additionalProperties": false,
        }),
    )
}

fn schema_name(type_name: &str) -> String {
    wendelin_core::types::script_prefix(type_name)
}

fn schema_ref(name: String) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// One schema among `refs`: the schema itself when there is one, else `anyOf`.
fn one_of(mut refs: Vec<Value>) -> Value {
    if refs.len() == 1 {
        return refs.remove(0);
    }
    json!({"anyOf": refs})
}

/// Portal types with their schemas, as `GET /api/v1/types` returns them.
pub fn types(registry: &Registry) -> Value {
    let types: Vec<Value> = registry
        .portal_types()
        .map(|t| {
            json!({
                "name": t.name,
                "module": t.module,
                "description": t.description,
                "properties": t.properties,
                "workflows": t.workflows,
                "allowed_content_types": t.allowed_content_types,
                "methods": t.methods.keys().collect::<Vec<_>>(),
            })
        })
        .collect();
    let folders: Vec<Value> = registry.folders().map(|f| json!(f)).collect();
    json!({"portal_types": types, "module_folders": folders, "scripts": registry.script_names().collect::<Vec<_>>()})
}

/// The error responses, by status, with the envelope's schema.
fn errors(codes: &[u16]) -> Map<String, Value> {
    let mut out = Map::new();
    for code in codes {
        let (what, headers) = match code {
            400 => (
                "malformed request: query string, JSON or arguments",
                json!({}),
            ),
            401 => (
                "no or bad credentials",
                json!({"WWW-Authenticate": {"schema": {"type": "string"}}}),
            ),
            403 => (
                "a permission, a workflow guard or the CSRF check says no",
                json!({}),
            ),
            404 => ("missing, or not viewable by the caller", json!({})),
            405 => (
                "not a method of this resource",
                json!({"Allow": {"schema": {"type": "string"}}}),
            ),
            409 => (
                "stale serial, id or reference already used, wrong state",
                json!({}),
            ),
            413 => ("body above the configured limit", json!({})),
            415 => ("the body is not JSON", json!({})),
            422 => ("the body breaks the portal type's schema", json!({})),
            429 => (
                "too many failed logins",
                json!({"Retry-After": {"schema": {"type": "string"}}}),
            ),
            503 => (
                "the server is busy",
                json!({"Retry-After": {"schema": {"type": "string"}}}),
            ),
            _ => ("error", json!({})),
        };
        out.insert(
            code.to_string(),
            json!({"description": what, "headers": headers,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    out
}

/// `ok` (status → response) followed by the error responses `codes`.
fn responses(ok: Value, codes: &[u16]) -> Value {
    let mut out = match ok {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.extend(errors(codes));
    Value::Object(out)
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// Statuses of any authenticated request: credentials, permissions, throttling, load.
const AUTH: [u16; 4] = [401, 403, 429, 503];

fn codes(extra: &[u16]) -> Vec<u16> {
    let mut all: Vec<u16> = AUTH.iter().chain(extra).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn listing_params() -> Value {
    json!([
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX, "default": 0}},
        {"name": "contents", "in": "query", "schema": {"type": "boolean"},
         "description": "list the document's contents instead of the document"},
    ])
}

fn listing_schema(item: Value) -> Value {
    json!({"type": "object", "properties": {
        "items": {"type": "array", "items": item}, "total": {"type": "integer"},
        "limit": {"type": "integer"}, "offset": {"type": "integer"}},
        "required": ["items", "total", "limit", "offset"], "additionalProperties": false})
}

/// The whole OpenAPI document.
pub fn document(registry: &Registry) -> Value {
    let mut schemas = Map::new();
    for t in registry.portal_types() {
        let name = schema_name(&t.name);
        schemas.insert(name.clone(), document_schema(t));
        schemas.insert(format!("{name}New"), new_schema(registry, t, false));
        schemas.insert(format!("{name}Edit"), patch_schema(t));
    }
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "additionalProperties": false,
            "properties": {"error": {"type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}),
    );
    let mut paths = Map::new();
    paths.insert(
        "/health".into(),
        json!({"get": {"summary": "liveness and database check", "security": [{}],
            "responses": responses(
                json!({"200": {"description": "ok", "content": json_content(json!({"type": "object",
                    "properties": {"status": {"const": "ok"}, "backend": {"enum": ["sqlite", "postgres"]},
                        "portal": {"type": "string"}},
                    "required": ["status", "backend", "portal"], "additionalProperties": false}))}}),
                &[503])}}),
    );
    for f in registry.folders() {
        let types: Vec<&PortalType> = f
            .allowed_content_types
            .iter()
            .filter_map(|t| registry.portal_type(t))
            .collect();
        let docs = one_of(
            types
                .iter()
                .map(|t| schema_ref(schema_name(&t.name)))
                .collect(),
        );
        let news = if types.len() == 1 {
            schema_ref(format!("{}New", schema_name(&types[0].name)))
        } else {
            json!({"anyOf": types.iter().map(|t| new_schema(registry, t, true)).collect::<Vec<_>>()})
        };
        let edits = one_of(
            types
                .iter()
                .map(|t| schema_ref(format!("{}Edit", schema_name(&t.name))))
                .collect(),
        );
        // Sub-documents: what the folder's types may contain.
        let inner: Vec<&PortalType> = types
            .iter()
            .flat_map(|t| t.allowed_content_types.iter())
            .filter_map(|t| registry.portal_type(t))
            .collect();
        paths.insert(
            format!("/api/v1/{}", f.id),
            json!({
                "get": {
                    "summary": format!("list {}", f.title),
                    "parameters": listing_params(),
                    "responses": responses(
                        json!({"200": {"description": "a page of the documents the caller may View, with their count",
                            "content": json_content(listing_schema(docs.clone()))}}),
                        &codes(&[400, 404])),
                },
                "post": {
                    "summary": format!("create a document in {} (or several: a JSON array, all or nothing)", f.title),
                    "requestBody": {"required": true, "content": json_content(json!({"anyOf": [
                        news, {"type": "array", "items": news}]}))},
                    "responses": responses(
                        json!({"201": {"description": "created: the document, or {\"created\": N} for an array",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": json_content(json!({"anyOf": [docs, {"type": "object",
                                "properties": {"created": {"type": "integer", "minimum": 0}},
                                "required": ["created"], "additionalProperties": false}]}))}}),
                        &codes(&[400, 404, 409, 413, 415, 422])),
                },
            }),
        );
        let one_doc = json!({"anyOf": [docs, listing_schema(json!({"type": "object"}))]});
        let mut item = json!({
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "get": {"summary": "read a document (or its contents with contents=true)",
                "parameters": listing_params(),
                "responses": responses(
                    json!({"200": {"description": "the document, or a page of its contents",
                        "content": json_content(one_doc)}}),
                    &codes(&[400, 404]))},
            "patch": {"summary": "edit a document; send the serial you read (or If-Match: \"N\")",
                "requestBody": {"required": true, "content": json_content(edits)},
                "responses": responses(
                    json!({"200": {"description": "the edited document", "content": json_content(docs)}}),
                    &codes(&[400, 404, 405, 409, 413, 415, 422]))},
            "delete": {"summary": "delete a document and its sub-documents",
                "parameters": [{"name": "serial", "in": "query", "schema": int64(),
                    "description": "the serial read (or If-Match: \"N\"); a stale one is a 409"}],
                "responses": responses(
                    json!({"204": {"description": "deleted"}}),
                    &codes(&[400, 404, 405, 409]))},
        });
        if !inner.is_empty() {
            if let Value::Object(m) = &mut item {
                // The type may be left out where only one is allowed.
                let several = inner.len() > 1;
                let body = json!({"anyOf": inner.iter().map(|t| new_schema(registry, t, several)).collect::<Vec<_>>()});
                m.insert(
                    "post".into(),
                    json!({"summary": "create a sub-document",
                        "requestBody": {"required": true, "content": json_content(body)},
                        "responses": responses(
                            json!({"201": {"description": "the sub-document",
                                "headers": {"Location": {"schema": {"type": "string"}}},
                                "content": json_content(json!({"type": "object"}))}}),
                            &codes(&[400, 404, 405, 409, 413, 415, 422]))}),
                );
            }
        }
        paths.insert(format!("/api/v1/{}/{{id}}", f.id), item);
        let any = json!({"application/json": {"schema": {}},
            "text/html": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}});
        let mut method_item = json!({
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "method", "in": "path", "required": true, "schema": {"type": "string"},
                 "description": "resolved as <Type>_<method>, built-in, Base_<method>, property, then acquired from containers; also a sub-document's id"}],
            "get": {"summary": "call a read-only method, read a property or a sub-document (arguments in the query string)",
                "responses": responses(json!({"200": {"description": "its result", "content": any}}),
                    &codes(&[400, 404, 405, 409, 422]))},
            "post": {"summary": "call a method with JSON arguments (no body: none)",
                "requestBody": {"required": false, "content": json_content(json!({"type": "object"}))},
                "responses": responses(json!({
                    "200": {"description": "its result", "content": any},
                    "201": {"description": "a sub-document created in a sub-document",
                        "content": json_content(json!({"type": "object"}))}}),
                    &codes(&[400, 404, 405, 409, 413, 415, 422]))},
        });
        if !inner.is_empty() {
            // `{method}` may name a sub-document, which is edited and deleted like any.
            let inner_edits = one_of(
                inner
                    .iter()
                    .map(|t| schema_ref(format!("{}Edit", schema_name(&t.name))))
                    .collect(),
            );
            if let Value::Object(m) = &mut method_item {
                m.insert(
                    "patch".into(),
                    json!({"summary": "edit a sub-document; send the serial you read",
                    "requestBody": {"required": true, "content": json_content(inner_edits)},
                    "responses": responses(
                        json!({"200": {"description": "the edited sub-document",
                            "content": json_content(json!({"type": "object"}))}}),
                        &codes(&[400, 404, 405, 409, 413, 415, 422]))}),
                );
                m.insert("delete".into(), json!({"summary": "delete a sub-document",
                    "parameters": [{"name": "serial", "in": "query", "schema": int64(),
                        "description": "the serial read (or If-Match: \"N\"); a stale one is a 409"}],
                    "responses": responses(
                        json!({"204": {"description": "deleted"}}),
                        &codes(&[400, 404, 405, 409]))}));
            }
        }
        paths.insert(format!("/api/v1/{}/{{id}}/{{method}}", f.id), method_item);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Wendelin", "version": env!("CARGO_PKG_VERSION")},
        "security": [{"bearer": []}, {"basic": []}, {"session": []}, {}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (wendelin user token add)"},
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE,
                    "description": "from POST /login; writes also need the X-CSRF-Token header"},
            },
        },
    })
}
