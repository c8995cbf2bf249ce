//! Data operations: the code that turns streams into arrays, and the analyses running it.

use serde_json::Value;
use wendelin_core::{Module, PortalType, PropertyDef, PropertyType};

/// The data operation module: operations, transformations and analyses.
pub fn module() -> Module {
    Module::new("data_operation")
        .workflow(wendelin_core::base::lifecycle_workflow(
            "data_analysis_workflow",
            "Data Analysis",
        ))
        .folder(
            "data_operation_module",
            "Data Operations",
            &["Data Operation"],
        )
        .folder(
            "data_transformation_module",
            "Data Transformations",
            &["Data Transformation"],
        )
        .folder("data_analysis_module", "Data Analyses", &["Data Analysis"])
        .portal_type(
            PortalType::new("Data Operation", "data_operation_module")
                .describe(
                    "A named operation applied to data, e.g. append raw bytes or convert records",
                )
                .property(
                    PropertyDef::new("script_id", PropertyType::String)
                        .required()
                        .indexed()
                        .describe("the method run by the operation"),
                )
                .property(
                    PropertyDef::new("parameters", PropertyType::Json)
                        .default_value(Value::Object(Default::default())),
                )
                .workflow("validation_workflow"),
        )
        .portal_type(
            PortalType::new("Data Transformation", "data_transformation_module")
                .describe("A recipe: which operation turns which input resource into which output")
                .property(PropertyDef::new("input_resource", PropertyType::String).indexed())
                .property(PropertyDef::new("output_resource", PropertyType::String).indexed())
                .property(PropertyDef::new("data_operation", PropertyType::Relation))
                .workflow("validation_workflow"),
        )
        .portal_type(
            PortalType::new("Data Analysis", "data_analysis_module")
                .describe("A running application of a transformation to live data")
                .property(PropertyDef::new("start_date", PropertyType::DateTime).indexed())
                .property(PropertyDef::new("stop_date", PropertyType::DateTime).indexed())
                .property(
                    PropertyDef::new("specialise", PropertyType::Relation)
                        .describe("the Data Transformation applied"),
                )
                .property(PropertyDef::new("input", PropertyType::Relation).multiple())
                .property(PropertyDef::new("output", PropertyType::Relation).multiple())
                .workflow("data_analysis_workflow"),
        )
}
