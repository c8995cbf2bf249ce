//! Persons: the people who use the platform and the people it records.

use serde_json::Value;
use wendelin_core::{Call, MethodOutput, Module, PortalType, PropertyDef, PropertyType};

/// The person module: `person_module` holding Person documents.
pub fn module() -> Module {
    Module::new("person")
        .folder("person_module", "Persons", &["Person"])
        .portal_type(
            PortalType::new("Person", "person_module")
                .describe("A person: a user of the platform or a contact")
                .property(
                    PropertyDef::new("first_name", PropertyType::String)
                        .indexed()
                        .full_text(),
                )
                .property(
                    PropertyDef::new("last_name", PropertyType::String)
                        .indexed()
                        .full_text(),
                )
                .property(PropertyDef::new("email", PropertyType::String).indexed())
                .property(PropertyDef::new("telephone", PropertyType::String))
                .property(PropertyDef::new("birthday", PropertyType::Date))
                .property(
                    PropertyDef::new("career_title", PropertyType::String)
                        .describe("job title, e.g. Plant Engineer"),
                )
                .workflow("validation_workflow")
                .method("getTitle", |call: &mut Call<'_>| {
                    Ok(MethodOutput::Json(Value::from(person_title(call)?)))
                }),
        )
}

/// A person's title is their full name unless a title was set explicitly, as in ERP5.
fn person_title(call: &Call<'_>) -> wendelin_core::CoreResult<String> {
    let doc = call.context;
    if !doc.title.is_empty() {
        return Ok(doc.title.clone());
    }
    let props = doc.property_map()?;
    let part = |k: &str| {
        props
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    Ok([part("first_name"), part("last_name")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" "))
}
