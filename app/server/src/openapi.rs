//! The OpenAPI 3.1 document, generated from the registry: one path per module folder and
//! one schema per portal type, so it always matches the modules compiled in.

use serde_json::{json, Map, Value};
use wendelin_core::types::{PortalType, PropertyType};
use wendelin_core::Registry;

fn property_schema(kind: PropertyType, multiple: bool) -> Value {
    match kind {
        PropertyType::String | PropertyType::Text => json!({"type": "string"}),
        PropertyType::Int => json!({"type": "integer", "format": "int64"}),
        PropertyType::Float => json!({"type": "number", "format": "double"}),
        PropertyType::Bool => json!({"type": "boolean"}),
        PropertyType::Date => json!({"type": "string", "format": "date"}),
        PropertyType::DateTime => json!({"type": "string", "format": "date-time"}),
        PropertyType::Json => json!({}),
        PropertyType::Relation if multiple => {
            json!({"type": "array", "items": {"type": "string", "description": "document path"}})
        }
        PropertyType::Relation => {
            json!({"type": ["string", "null"], "description": "document path"})
        }
    }
}

fn type_schema(t: &PortalType) -> Value {
    let mut props = Map::new();
    for (name, kind) in [
        ("uid", json!({"type": "integer", "readOnly": true})),
        ("path", json!({"type": "string", "readOnly": true})),
        ("id", json!({"type": "string"})),
        ("portal_type", json!({"type": "string", "const": t.name})),
        ("title", json!({"type": "string"})),
        ("reference", json!({"type": ["string", "null"]})),
        ("description", json!({"type": "string"})),
        ("owner", json!({"type": "string", "readOnly": true})),
        (
            "creation_date",
            json!({"type": "string", "format": "date-time", "readOnly": true}),
        ),
        (
            "modification_date",
            json!({"type": "string", "format": "date-time", "readOnly": true}),
        ),
        (
            "serial",
            json!({"type": "integer", "description": "send it back with an edit; a stale one gets 409"}),
        ),
    ] {
        props.insert(name.into(), kind);
    }
    let mut required = Vec::new();
    for p in &t.properties {
        let mut s = property_schema(p.kind, p.multiple);
        if let Value::Object(m) = &mut s {
            if !p.description.is_empty() {
                m.insert("description".into(), Value::from(p.description.clone()));
            }
            if let Some(d) = &p.default {
                m.insert("default".into(), d.clone());
            }
        }
        if p.required {
            required.push(Value::from(p.name.clone()));
        }
        props.insert(p.name.clone(), s);
    }
    json!({
        "type": "object",
        "description": t.description,
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

fn schema_name(type_name: &str) -> String {
    wendelin_core::types::script_prefix(type_name)
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

/// The whole OpenAPI document.
pub fn document(registry: &Registry) -> Value {
    let mut schemas = Map::new();
    for t in registry.portal_types() {
        schemas.insert(schema_name(&t.name), type_schema(t));
    }
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}}}}}),
    );
    let error = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut paths = Map::new();
    paths.insert(
        "/health".into(),
        json!({"get": {"summary": "liveness and database check", "responses": {"200": {"description": "ok"}}}}),
    );
    for f in registry.folders() {
        let refs: Vec<Value> = f
            .allowed_content_types
            .iter()
            .map(|t| json!({"$ref": format!("#/components/schemas/{}", schema_name(t))}))
            .collect();
        let one = json!({"oneOf": refs});
        paths.insert(
            format!("/api/v1/{}", f.id),
            json!({
                "get": {
                    "summary": format!("list {}", f.title),
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
                        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
                    ],
                    "responses": {"200": {"description": "a page of documents with the total count",
                        "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "items": {"type": "array", "items": one}, "total": {"type": "integer"},
                            "limit": {"type": "integer"}, "offset": {"type": "integer"}}}}}}},
                },
                "post": {
                    "summary": format!("create a document in {}", f.title),
                    "requestBody": {"required": true, "content": {"application/json": {"schema": one}}},
                    "responses": {"201": {"description": "created", "content": {"application/json": {"schema": one}}},
                        "400": error("malformed request"), "409": error("reference or id already used"),
                        "422": error("the body breaks the portal type's schema")},
                },
            }),
        );
        paths.insert(
            format!("/api/v1/{}/{{id}}", f.id),
            json!({
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "get": {"summary": "read a document", "responses": {"200": {"description": "the document",
                    "content": {"application/json": {"schema": one}}}, "404": error("no such document")}},
                "patch": {"summary": "edit a document; send the serial you read",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": {"200": {"description": "the edited document"}, "409": error("stale serial"),
                        "422": error("unknown property or wrong type"), "404": error("no such document")}},
                "delete": {"summary": "delete a document and its sub-documents",
                    "parameters": [{"name": "serial", "in": "query", "schema": {"type": "integer"}}],
                    "responses": {"204": {"description": "deleted"}, "409": error("stale serial"), "404": error("no such document")}},
            }),
        );
        paths.insert(
            format!("/api/v1/{}/{{id}}/{{method}}", f.id),
            json!({
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "method", "in": "path", "required": true, "schema": {"type": "string"},
                     "description": "resolved as <Type>_<method>, built-in, Base_<method>, property, then acquired from containers"}],
                "get": {"summary": "call a read-only method or read a property", "responses": {"200": {"description": "its result"}, "404": error("no such method")}},
                "post": {"summary": "call a method with JSON arguments", "responses": {"200": {"description": "its result"}}},
            }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Wendelin", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
