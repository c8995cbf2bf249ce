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
    // Every module section, with every key, in its section, documented with its variable.
    let file: toml::Table = toml::from_str(&text).unwrap();
    let defaults = Config::default();
    assert!(!defaults.sections.is_empty());
    for (name, keys) in &defaults.sections {
        let given = file
            .get(name)
            .and_then(toml::Value::as_table)
            .unwrap_or_else(|| panic!("wendelin.example.toml lacks [{name}]"));
        assert_eq!(given, keys, "[{name}] of wendelin.example.toml");
        for key in keys.keys() {
            let var = format!("WENDELIN_{name}_{key}").to_uppercase();
            assert!(
                text.contains(&var),
                "wendelin.example.toml does not name {var}"
            );
        }
    }
}

#[test]
fn module_sections_are_typed_refused_when_unknown_and_set_by_env() {
    use wendelin_data_array::ArraySettings;
    use wendelin_data_stream::http::DataStreamConfig;
    use wendelin_ingestion::http::IngestionConfig;
    let c = Config::parse(
        "bind = \"127.0.0.1:1\"\n[data_stream]\nfsync = false\nsegment_bytes = 4096\n[ingestion]\nforward = \"127.0.0.1:24224\"\n",
    )
    .unwrap();
    let stream: DataStreamConfig = c.section("data_stream").unwrap();
    assert_eq!((stream.fsync, stream.segment_bytes), (false, 4096));
    // Keys not given keep their defaults.
    assert_eq!(
        stream.max_read_bytes,
        DataStreamConfig::default().max_read_bytes
    );
    let ingestion: IngestionConfig = c.section("ingestion").unwrap();
    assert_eq!(ingestion.forward, "127.0.0.1:24224");
    assert_eq!(ingestion.forward_user, "manager");
    let arrays: ArraySettings = c.section("data_array").unwrap();
    assert_eq!(arrays, ArraySettings::default());

    // Typed: a string where a number belongs is refused, naming the section.
    let err = Config::parse("[data_stream]\nsegment_bytes = \"big\"\n").unwrap_err();
    assert!(err.contains("[data_stream]"), "{err}");
    // An unknown key of a section is refused, listing the section's keys.
    let err = Config::parse("[data_stream]\nfsnyc = false\n").unwrap_err();
    assert!(
        err.contains("fsnyc") && err.contains("segment_bytes") && err.contains("fsync"),
        "{err}"
    );
    // An unknown section is refused, listing the sections.
    let err = Config::parse("[data_streams]\nfsync = false\n").unwrap_err();
    assert!(
        err.contains("[data_streams]")
            && err.contains("[data_stream]")
            && err.contains("[ingestion]"),
        "{err}"
    );
    // A module's option at the top level names its section.
    let err = Config::parse("stream_fsync = false\n").unwrap_err();
    assert!(
        err.contains("[data_stream]") && err.contains("fsync"),
        "{err}"
    );
    // A section given as a value is refused.
    let err = Config::parse("data_array = 3\n").unwrap_err();
    assert!(err.contains("memory_budget"), "{err}");

    // WENDELIN_<SECTION>_<KEY>, parsed by the type of the default.
    let mut c = Config::default();
    c.apply_env(|k| match k {
        "WENDELIN_DATA_STREAM_FSYNC" => Some("false".into()),
        "WENDELIN_DATA_ARRAY_MEMORY_BUDGET" => Some("1048576".into()),
        "WENDELIN_INGESTION_FORWARD" => Some("127.0.0.1:0".into()),
        "WENDELIN_INGESTION_FORWARD_MAX_CONNECTIONS" => Some("3".into()),
        _ => None,
    })
    .unwrap();
    assert!(!c.section::<DataStreamConfig>("data_stream").unwrap().fsync);
    assert_eq!(
        c.section::<ArraySettings>("data_array")
            .unwrap()
            .memory_budget,
        1 << 20
    );
    let ingestion: IngestionConfig = c.section("ingestion").unwrap();
    assert_eq!(
        (
            ingestion.forward.as_str(),
            ingestion.forward_max_connections
        ),
        ("127.0.0.1:0", 3)
    );
    for (var, value) in [
        ("WENDELIN_DATA_STREAM_FSYNC", "maybe"),
        ("WENDELIN_DATA_STREAM_SEGMENT_BYTES", "lots"),
        ("WENDELIN_DATA_ARRAY_MEMORY_BUDGET", "-1"),
    ] {
        let err = Config::default()
            .apply_env(|k| (k == var).then(|| value.to_owned()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(var) || err.contains("memory_budget"),
            "{var}: {err}"
        );
    }
}

#[test]
fn module_commands_are_on_the_command_line() {
    let cmd = wendelin_server::cli::command();
    for (name, sub) in [("ingestion", "add"), ("array", "import")] {
        let c = cmd
            .find_subcommand(name)
            .unwrap_or_else(|| panic!("wendelin {name} missing"));
        assert!(c.find_subcommand(sub).is_some(), "wendelin {name} {sub}");
    }
    let m = wendelin_server::cli::command()
        .try_get_matches_from([
            "wendelin",
            "ingestion",
            "add",
            "pol",
            "--operation",
            "json-lines",
            "--accept",
            "bob",
        ])
        .unwrap();
    let (name, sub) = m.subcommand().unwrap();
    assert_eq!(name, "ingestion");
    let (action, args) = sub.subcommand().unwrap();
    assert_eq!(action, "add");
    assert_eq!(args.get_one::<String>("name").unwrap(), "pol");
    // The server's own commands still parse, and unknown ones do not.
    assert!(wendelin_server::cli::command()
        .try_get_matches_from(["wendelin", "serve", "--bind", "127.0.0.1:1"])
        .is_ok());
    assert!(wendelin_server::cli::command()
        .try_get_matches_from(["wendelin", "serve", "--forward", "127.0.0.1:1"])
        .is_err());
    assert!(wendelin_server::cli::command()
        .try_get_matches_from(["wendelin", "arrays", "import", "x"])
        .is_err());
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
