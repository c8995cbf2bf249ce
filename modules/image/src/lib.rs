//! Images: pictures produced by analyses or uploaded (bytes live in the storage engine).

use wendelin_core::{Module, PortalType, PropertyDef, PropertyType};

/// The image module: `image_module` holding Image documents.
pub fn module() -> Module {
    Module::new("image")
        .folder("image_module", "Images", &["Image"])
        .portal_type(
            PortalType::new("Image", "image_module")
                .describe("A picture: a chart, a plot or a photo")
                .property(PropertyDef::new("content_type", PropertyType::String).indexed())
                .property(PropertyDef::new("width", PropertyType::Int))
                .property(PropertyDef::new("height", PropertyType::Int))
                .workflow("publication_workflow")
                .listbox_columns(&[
                    "title",
                    "content_type",
                    "owner",
                    "publication_state",
                    "modification_date",
                ]),
        )
}
