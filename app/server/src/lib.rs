//! The Wendelin server: the composition root that lists the modules, the HTTP app and the
//! `wendelin` command line.

pub mod api;
pub mod assets;
pub mod auth;
pub mod cli;
pub mod config;
pub mod openapi;
pub mod ui;
pub mod views;

pub use wendelin_http::{error, headers};

use wendelin_core::{CoreResult, Module, Registry};
use wendelin_http::ServerModule;

/// Every module compiled into this server, in dependency order.
pub fn modules() -> Vec<Module> {
    vec![
        wendelin_core::base::module(),
        views::module(),
        wendelin_person::module(),
        wendelin_data_stream::module(),
        wendelin_data_array::module(),
        wendelin_ingestion::module(),
        wendelin_data_operation::module(),
        wendelin_notebook::module(),
        wendelin_image::module(),
        wendelin_web::module(),
        wendelin_scripts::module(),
    ]
}

/// What modules declare to the server besides their portal types: HTTP routes,
/// `wendelin` sub-commands, a section of `wendelin.toml`, services of `wendelin serve`.
/// With [`modules`], the only place that names a module.
pub fn server_modules() -> Vec<Box<dyn ServerModule>> {
    vec![
        // Before Data Streams: `/api/v1/image_module/{id}/data` is more specific than
        // their `/api/v1/{path}/data`, and routes match in the order registered.
        Box::new(wendelin_image::http::ImageModule),
        Box::new(wendelin_data_stream::http::DataStreamModule),
        Box::new(wendelin_data_array::http::DataArrayModule),
        Box::new(wendelin_ingestion::http::IngestionModule),
        Box::new(wendelin_scripts::http::ScriptsModule),
        Box::new(wendelin_web::http::WebModule),
        Box::new(wendelin_data_operation::http::DataOperationModule),
    ]
}

/// The HTTP routes modules declare, registered before the generic routes (whose
/// catch-all paths would otherwise take them).
pub fn module_routes(cfg: &mut actix_web::web::ServiceConfig) {
    for m in server_modules() {
        m.routes(cfg);
    }
}

/// The registry of everything compiled in, assembled once at start-up.
pub fn registry() -> CoreResult<Registry> {
    Registry::build(modules())
}
