//! Server-level checks that need no running process: configuration, the module list and
//! the generated OpenAPI document. (Having this integration test also makes `cargo test`
//! build the `wendelin` binary that the end-to-end tests run.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use wendelin_server::config::Config;

#[test]
fn example_config_lists_every_option_with_its_default() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../wendelin.example.toml"
    ))
    .unwrap();
    assert_eq!(Config::parse(&text).unwrap(), Config::default());
    let defaults = toml::to_string(&Config::default()).unwrap();
    for line in defaults.lines() {
        let key = line.split('=').next().unwrap().trim();
        assert!(
            text.contains(&format!("\n{key} = ")),
            "wendelin.example.toml lacks {key}"
        );
    }
}

#[test]
fn unknown_options_and_bad_env_values_are_refused() {
    let err = Config::parse("bind = \"127.0.0.1:1\"\nbnid = 3\n").unwrap_err();
    assert!(err.contains("bnid"), "{err}");
    let mut c = Config::default();
    c.apply_env(|k| (k == "WENDELIN_WORKERS").then(|| "many".to_owned()))
        .unwrap_err();
    c.apply_env(|k| match k {
        "WENDELIN_BIND" => Some("127.0.0.1:9999".into()),
        "WENDELIN_DB_POOL_SIZE" => Some("3".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!((c.bind.as_str(), c.db_pool_size), ("127.0.0.1:9999", 3));
    assert!(c.database_url().ends_with("var/wendelin.sqlite"));
}

#[test]
fn every_module_registers_its_portal_types() {
    let registry = wendelin_server::registry().unwrap();
    for (name, folder) in [
        ("Person", "person_module"),
        ("Data Stream", "data_stream_module"),
        ("Data Array", "data_array_module"),
        ("Ingestion Policy", "portal_ingestion_policies"),
        ("Data Ingestion", "data_ingestion_module"),
        ("Data Ingestion Line", "data_ingestion_module"),
        ("Data Operation", "data_operation_module"),
        ("Data Transformation", "data_transformation_module"),
        ("Data Analysis", "data_analysis_module"),
        ("Data Notebook", "data_notebook_module"),
        ("Image", "image_module"),
        ("Web Site", "web_site_module"),
        ("Web Section", "web_site_module"),
        ("Web Page", "web_page_module"),
    ] {
        let t = registry
            .portal_type(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(t.module, folder);
        assert!(registry.folder(folder).is_some(), "{folder}");
    }
    assert_eq!(
        registry
            .portal_type("Data Ingestion")
            .unwrap()
            .allowed_content_types,
        vec!["Data Ingestion Line".to_owned()]
    );
    let doc = wendelin_server::openapi::document(&registry);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/data_stream_module"]["post"].is_object());
    assert_eq!(
        doc["components"]["schemas"]["DataStream"]["properties"]["content_type"]["type"],
        "string"
    );
}
