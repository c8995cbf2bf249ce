//! Ingestion: policies that accept sensor data and the Data Ingestions that record it
//! (the fluentd-compatible endpoints arrive with their own issue).

use serde_json::Value;
use wendelin_core::base::lifecycle_workflow;
use wendelin_core::workflow::HookContext;
use wendelin_core::{CoreResult, DocumentPatch, Module, PortalType, PropertyDef, PropertyType};

/// The ingestion module: ingestion policies and data ingestions with their lines.
pub fn module() -> Module {
    Module::new("ingestion")
        .workflow(lifecycle_workflow("data_ingestion_workflow", "Data Ingestion").after("stop", record_stop_date))
        .folder("portal_ingestion_policies", "Ingestion Policies", &["Ingestion Policy"])
        .folder("data_ingestion_module", "Data Ingestions", &["Data Ingestion"])
        .portal_type(
            PortalType::new("Ingestion Policy", "portal_ingestion_policies")
                .describe("Accepts data posted by fluentd and routes it to data streams")
                .property(
                    PropertyDef::new("tag_parser", PropertyType::String)
                        .default_value(Value::from("default"))
                        .describe("how a fluentd tag becomes a reference: 'default' splits sensor.product"),
                )
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
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch =
        DocumentPatch::from_json(serde_json::json!({"serial": doc.serial, "stop_date": stamp}))?;
    wendelin_core::document::update(ctx.conn, ctx.registry, &doc.path, patch).map(|_| ())
}
