//! Data Arrays: N-d arrays stored out of core (the Zarr v3 data plane arrives with its own
//! issue; this crate declares the portal type and its metadata).

use serde_json::Value;
use wendelin_core::{
    Call, CoreResult, MethodOutput, Module, PortalType, PropertyDef, PropertyType,
};

/// The data array module: `data_array_module` holding Data Array documents.
pub fn module() -> Module {
    Module::new("data_array")
        .folder("data_array_module", "Data Arrays", &["Data Array"])
        .portal_type(
            PortalType::new("Data Array", "data_array_module")
                .describe("A persistent N-dimensional array, bigger than RAM")
                .property(
                    PropertyDef::new("dtype", PropertyType::String)
                        .default_value(Value::from("float64"))
                        .indexed()
                        .describe("element type: bool, int8..int64, uint8..uint64, float32, float64, complex64, complex128"),
                )
                .property(PropertyDef::new("shape", PropertyType::Json).default_value(Value::Array(vec![])))
                .property(PropertyDef::new("chunk_shape", PropertyType::Json))
                .property(PropertyDef::new("dimension_names", PropertyType::Json))
                .property(PropertyDef::new("source", PropertyType::Relation).describe("the Data Stream it was computed from"))
                .workflow("validation_workflow")
                .method("getShape", |call: &mut Call<'_>| property(call, "shape"))
                .method("getDtype", |call: &mut Call<'_>| property(call, "dtype")),
        )
}

fn property(call: &Call<'_>, name: &str) -> CoreResult<MethodOutput> {
    Ok(MethodOutput::Json(
        call.context.get(name)?.unwrap_or(Value::Null),
    ))
}
