//! Web sites, sections and pages: how results are published.

use serde_json::Value;
use wendelin_core::{Module, PortalType, PropertyDef, PropertyType};

/// The web module: web sites with their sections, and web pages.
pub fn module() -> Module {
    Module::new("web")
        .folder("web_site_module", "Web Sites", &["Web Site"])
        .folder("web_page_module", "Web Pages", &["Web Page"])
        .portal_type(
            PortalType::new("Web Site", "web_site_module")
                .describe("A published site: a tree of sections showing web pages")
                .property(PropertyDef::new("default_page", PropertyType::Relation))
                .property(
                    PropertyDef::new("language", PropertyType::String)
                        .default_value(Value::from("en")),
                )
                .property(PropertyDef::new("theme", PropertyType::String))
                .workflow("publication_workflow")
                .allow("Web Section"),
        )
        .portal_type(
            PortalType::new("Web Section", "web_site_module")
                .describe("A part of a web site listing pages")
                .property(
                    PropertyDef::new("aggregate", PropertyType::Relation)
                        .multiple()
                        .describe("the Web Pages shown"),
                )
                .property(PropertyDef::new("default_page", PropertyType::Relation))
                .workflow("publication_workflow")
                .allow("Web Section"),
        )
        .portal_type(
            PortalType::new("Web Page", "web_page_module")
                .describe("An HTML page, possibly with charts")
                .property(PropertyDef::new("text_content", PropertyType::Text).full_text())
                .property(
                    PropertyDef::new("content_type", PropertyType::String)
                        .default_value(Value::from("text/html")),
                )
                .property(
                    PropertyDef::new("language", PropertyType::String)
                        .default_value(Value::from("en"))
                        .indexed(),
                )
                .property(PropertyDef::new("version", PropertyType::String))
                .workflow("publication_workflow"),
        )
}
