//! Data Streams: append-only byte streams fed by ingestion (the storage engine arrives
//! with the ingestion issue; this crate declares the type, its methods and its view).

use askama::Template;
use serde_json::Value;
use wendelin_core::{
    Call, CoreError, CoreResult, MethodOutput, Module, PortalType, PropertyDef, PropertyType,
};

/// The data stream module: `data_stream_module` holding Data Stream documents.
pub fn module() -> Module {
    Module::new("data_stream")
        .folder("data_stream_module", "Data Streams", &["Data Stream"])
        .portal_type(
            PortalType::new("Data Stream", "data_stream_module")
                .describe("Append-only bytes, e.g. sensor records ingested from fluentd")
                .property(
                    PropertyDef::new("content_type", PropertyType::String)
                        .default_value(Value::from("application/octet-stream")),
                )
                .property(PropertyDef::new("version", PropertyType::String))
                .property(
                    PropertyDef::new("size", PropertyType::Int)
                        .default_value(Value::from(0))
                        .describe("bytes stored; maintained by the stream's storage engine"),
                )
                .workflow("validation_workflow")
                .method("getSize", |call: &mut Call<'_>| {
                    Ok(MethodOutput::Json(Value::from(stream_size(call)?)))
                }),
        )
        .script("DataStream_view", |call: &mut Call<'_>| {
            let doc = call.context;
            let page = DataStreamView {
                title: if doc.title.is_empty() {
                    doc.id.as_str()
                } else {
                    doc.title.as_str()
                },
                path: &doc.path,
                reference: doc.reference.as_deref().unwrap_or(""),
                description: &doc.description,
                size: stream_size(call)?,
            };
            page.render()
                .map(MethodOutput::Html)
                .map_err(|e| CoreError::Internal(format!("DataStream_view failed: {e}")))
        })
}

fn stream_size(call: &Call<'_>) -> CoreResult<i64> {
    Ok(call
        .context
        .get("size")?
        .and_then(|v| v.as_i64())
        .unwrap_or(0))
}

#[derive(Template)]
#[template(path = "data_stream_view.html")]
struct DataStreamView<'a> {
    title: &'a str,
    path: &'a str,
    reference: &'a str,
    description: &'a str,
    size: i64,
}
