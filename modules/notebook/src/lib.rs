//! Data Notebooks: analysis code kept and run next to the data.

use serde_json::Value;
use wendelin_core::{Module, PortalType, PropertyDef, PropertyType};

/// The notebook module: `data_notebook_module` holding Data Notebook documents.
pub fn module() -> Module {
    Module::new("notebook")
        .folder("data_notebook_module", "Data Notebooks", &["Data Notebook"])
        .portal_type(
            PortalType::new("Data Notebook", "data_notebook_module")
                .describe("Cells of analysis code and their outputs")
                .property(
                    PropertyDef::new("language", PropertyType::String)
                        .default_value(Value::from("python")),
                )
                .property(
                    PropertyDef::new("cells", PropertyType::Json)
                        .default_value(Value::Array(vec![])),
                )
                .property(PropertyDef::new("text_content", PropertyType::Text).full_text())
                .workflow("validation_workflow"),
        )
}
