//! User scripts end to end: Script documents found by name (container, then
//! portal_skins, then the modules' scripts), run in the sandbox as the caller.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use wendelin_tests::{add_user, login, request_raw, request_with, run_cli, Reply, TestServer};

fn script(server: &TestServer, container: &str, id: &str, body: &str, extra: Value) -> Reply {
    let mut doc = json!({"portal_type": "Script", "id": id, "body": body});
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    server.req("POST", &format!("/api/v1/{container}"), Some(&doc))
}

fn created(r: Reply) {
    assert_eq!(r.status, 201, "{}", r.text);
}

fn stream(server: &TestServer, title: &str) -> String {
    let r = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": title})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["path"].as_str().unwrap().to_owned()
}

/// A user with a token: (login, token).
fn user(server: &TestServer, login: &str, roles: &[&str]) -> String {
    add_user(server, login, &format!("{login}-password-1"), roles);
    let (ok, out, err) = run_cli(
        &["user", "token", "add", login, "--name", "tests"],
        &server.cli_env(),
        "",
    );
    assert!(ok, "{err}");
    out.rsplit(' ').next().unwrap().trim().to_owned()
}

fn as_user(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let auth = format!("Bearer {token}");
    request_with(method, &server.url(path), body, &[("Authorization", &auth)])
}

fn still_answers(server: &TestServer) {
    let r = server.req("GET", "/api/v1/me", None);
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn container_script_beats_portal_skins_beats_module_script() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let s = stream(&server, "s");
    let person = server.req(
        "POST",
        "/api/v1/person_module",
        Some(&json!({"title": "p"})),
    );
    assert_eq!(person.status, 201, "{}", person.text);
    let person = person.json()["path"].as_str().unwrap().to_owned();

    // The kernel's own Base_getPath first.
    let r = server.req("GET", &format!("/{s}/getPath"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!(format!("/{s}")));

    created(script(
        &server,
        "portal_skins",
        "Base_getPath",
        r#""skin""#,
        json!({}),
    ));
    assert_eq!(
        server.req("GET", &format!("/{s}/getPath"), None).json(),
        json!("skin")
    );
    assert_eq!(
        server
            .req("GET", &format!("/{person}/getPath"), None)
            .json(),
        json!("skin")
    );

    // Placed in the streams' folder, it applies to what that folder holds only.
    created(script(
        &server,
        "data_stream_module",
        "Base_getPath",
        r#""container: " + context.title"#,
        json!({}),
    ));
    assert_eq!(
        server.req("GET", &format!("/{s}/getPath"), None).json(),
        json!("container: s")
    );
    assert_eq!(
        server
            .req("GET", &format!("/{person}/getPath"), None)
            .json(),
        json!("skin")
    );

    // An edit takes effect at once (compiled again for the new serial).
    let r = server.req(
        "PATCH",
        "/api/v1/data_stream_module/Base_getPath",
        Some(&json!({"serial": 1, "body": r#""edited""#})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        server.req("GET", &format!("/{s}/getPath"), None).json(),
        json!("edited")
    );
}

#[test]
fn scripts_call_scripts_with_parameters_and_refuse_writes_over_get() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let s = stream(&server, "s");
    created(script(
        &server,
        "portal_skins",
        "Base_double",
        "params.x * 2",
        json!({"parameters": {"x": 21}}),
    ));
    created(script(
        &server,
        "portal_skins",
        "Base_quadruple",
        r#"#{ value: invoke("double", #{ x: params.x }) * 2, of: context.id,
             via: portal.invoke(context.path, "Base_double") }"#,
        json!({"parameters": {"x": 1}}),
    ));
    let r = server.req("GET", &format!("/{s}/double"), None);
    assert_eq!(r.json(), json!(42), "{}", r.text);
    // Query-string arguments take the type of the declared default.
    let r = server.req("GET", &format!("/{s}/double?x=4"), None);
    assert_eq!(r.json(), json!(8), "{}", r.text);
    // The README's example.
    created(script(
        &server,
        "portal_skins",
        "DataStream_summary",
        r#"let related = portal.search(`portal_type:"Data Stream" AND title:%${context.title}%`, params.limit);
#{ title: context.title, size: invoke("getSize"), similar: related.map(|d| d.path) }"#,
        json!({"parameters": {"limit": 10}}),
    ));
    let r = server.req("GET", &format!("/{s}/DataStream_summary?limit=5"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"title": "s", "size": 0, "similar": [s]}),
        "{}",
        r.text
    );
    let r = server.req("POST", &format!("/{s}/quadruple"), Some(&json!({"x": 5})));
    assert_eq!(r.status, 200, "{}", r.text);
    let id = s.rsplit('/').next().unwrap();
    assert_eq!(r.json(), json!({"value": 20, "of": id, "via": 42}));

    // A mutating script: only over POST.
    created(script(
        &server,
        "portal_skins",
        "Base_retitle",
        r#"invoke("edit", #{ title: params.title, serial: context.serial }); "done""#,
        json!({"read_only": false, "permission": "Modify portal content",
               "parameters": {"title": "renamed"}}),
    ));
    let r = server.req("GET", &format!("/{s}/retitle"), None);
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(r.header("allow"), Some("POST"), "{:?}", r.headers);
    // OPTIONS declares the verb a method is called by (the Python client asks it): POST
    // only for one that changes data, script or built-in, GET and POST otherwise.
    for (name, allow) in [
        ("retitle", "POST"),
        ("Base_edit", "POST"),
        ("double", "GET, POST"),
        ("getSize", "GET, POST"),
        ("title", "GET, POST"),
    ] {
        for prefix in ["", "/api/v1"] {
            let r = server.req("OPTIONS", &format!("{prefix}/{s}/{name}"), None);
            assert_eq!(r.status, 204, "OPTIONS {name}: {}", r.text);
            assert_eq!(
                r.header("allow"),
                Some(allow),
                "OPTIONS {prefix}/{s}/{name}"
            );
        }
    }
    let r = server.req("OPTIONS", &format!("/{s}/noSuchMethod"), None);
    assert_eq!(r.status, 404, "{}", r.text);
    let r = server.req("POST", &format!("/{s}/retitle"), Some(&json!({})));
    assert_eq!(r.status, 200, "{}", r.text);
    let doc = server.req("GET", &format!("/api/v1/{s}"), None).json();
    assert_eq!(doc["title"], "renamed", "{doc}");
    // A read-only script may not call a mutating one.
    created(script(
        &server,
        "portal_skins",
        "Base_sneaky",
        r#"invoke("retitle")"#,
        json!({}),
    ));
    let r = server.req("GET", &format!("/{s}/sneaky"), None);
    assert!(r.status >= 400 && r.status < 500, "{} {}", r.status, r.text);
}

#[test]
fn only_managers_write_scripts_and_proxy_roles() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let alice = user(&server, "alice", &["Author"]);
    let body = json!({"portal_type": "Script", "id": "Base_x", "body": "1"});
    let r = as_user(&server, &alice, "POST", "/api/v1/portal_skins", Some(&body));
    assert!(
        r.status == 403 || r.status == 404,
        "{} {}",
        r.status,
        r.text
    );
    // Authors may add to the streams' folder, but not a Script.
    let r = as_user(
        &server,
        &alice,
        "POST",
        "/api/v1/data_stream_module",
        Some(&body),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error_message().contains("Manage portal"), "{}", r.text);

    // A Manager sets proxy roles; the script runs with them.
    created(script(
        &server,
        "portal_skins",
        "Base_proxied",
        "1",
        json!({"proxy_roles": ["Auditor"]}),
    ));
    // A user holding Manage portal through a local role, but not the Manager role,
    // may write scripts but not give them proxy roles.
    let mona = user(&server, "mona", &["Author"]);
    let r = server.req(
        "POST",
        "/setLocalRoles",
        Some(&json!({"principal": "user:mona", "roles": ["Manager"]})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let plain = json!({"portal_type": "Script", "id": "Base_plain", "body": "2"});
    let r = as_user(&server, &mona, "POST", "/api/v1/portal_skins", Some(&plain));
    assert_eq!(r.status, 201, "{}", r.text);
    let proxied = json!({"portal_type": "Script", "id": "Base_p2", "body": "2",
                         "proxy_roles": ["Manager"]});
    let r = as_user(
        &server,
        &mona,
        "POST",
        "/api/v1/portal_skins",
        Some(&proxied),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error_message().contains("proxy_roles"), "{}", r.text);
    let r = as_user(
        &server,
        &mona,
        "PATCH",
        "/api/v1/portal_skins/Base_plain",
        Some(&json!({"serial": 1, "proxy_roles": ["Manager"]})),
    );
    assert_eq!(r.status, 403, "{}", r.text);
}

#[test]
fn scripts_see_only_what_their_caller_sees() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let secret = stream(&server, "secret");
    let alice = user(&server, "alice", &["Author"]);
    let mine = as_user(
        &server,
        &alice,
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "mine"})),
    );
    assert_eq!(mine.status, 201, "{}", mine.text);
    let mine = mine.json()["path"].as_str().unwrap().to_owned();
    created(script(
        &server,
        "portal_skins",
        "Base_peek",
        r#"let d = portal.get(params.path);
           let found = portal.search("portal_type:\"Data Stream\"", 100);
           #{ seen: type_of(d) != "()", titles: found.map(|x| x.title) }"#,
        json!({"parameters": {"path": secret}}),
    ));
    let r = as_user(&server, &alice, "GET", &format!("/{mine}/Base_peek"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({"seen": false, "titles": ["mine"]}));
    let r = server.req("GET", &format!("/{mine}/Base_peek"), None);
    assert_eq!(r.json()["seen"], true, "{}", r.text);
    assert_eq!(
        r.json()["titles"].as_array().unwrap().len(),
        2,
        "{}",
        r.text
    );
}

#[test]
fn scripts_that_do_not_compile_are_refused_on_save() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let s = stream(&server, "s");

    // Created through the API: a 422 naming the line and column, nothing stored.
    let r = script(
        &server,
        "portal_skins",
        "Base_bad",
        "let a = 1;\nlet x = ;",
        json!({}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.error_message().contains("line 2, column 9"), "{}", r.text);
    let r = server.req("GET", "/api/v1/portal_skins/Base_bad", None);
    assert_eq!(r.status, 404, "{}", r.text);
    let r = server.req("GET", &format!("/{s}/Base_bad"), None);
    assert_eq!(r.status, 404, "{}", r.text);

    // In a bulk creation: all or nothing.
    let r = server.req(
        "POST",
        "/api/v1/portal_skins",
        Some(&json!([
            {"portal_type": "Script", "id": "Base_fine", "body": "1"},
            {"portal_type": "Script", "id": "Base_worse", "body": "fn f( { 1 }"},
        ])),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.error_message().contains("line 1, column"), "{}", r.text);
    for id in ["Base_fine", "Base_worse"] {
        let r = server.req("GET", &format!("/api/v1/portal_skins/{id}"), None);
        assert_eq!(r.status, 404, "{id}: {}", r.text);
    }

    // An edit to a body that does not compile: refused, the old body still runs.
    created(script(
        &server,
        "portal_skins",
        "Base_good",
        r#""good""#,
        json!({}),
    ));
    let r = server.req(
        "PATCH",
        "/api/v1/portal_skins/Base_good",
        Some(&json!({"serial": 1, "body": "\"good\";\n  1 +"})),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.error_message().contains("line 2, column"), "{}", r.text);
    let r = server.req("GET", &format!("/{s}/Base_good"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!("good"));
    let doc = server
        .req("GET", "/api/v1/portal_skins/Base_good", None)
        .json();
    assert_eq!(doc["serial"], 1, "{doc}");

    // Through the admin UI's edit form: the form again, the error next to the body.
    add_user(&server, "manny", "manny-password-1", &["Manager"]);
    let (cookie, csrf) = login(&server, "manny", "manny-password-1");
    let form = format!(
        "serial=1&body={}&csrf_token={csrf}",
        "%22good%22%3B%0Alet+x+%3D+%3B"
    );
    let r = request_raw(
        "POST",
        &server.url("/ui/portal_skins/Base_good/+edit"),
        "application/x-www-form-urlencoded",
        form.as_bytes(),
        &[("Cookie", cookie.as_str())],
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("line 2, column 9"), "{}", r.text);
    let r = server.req("GET", &format!("/{s}/Base_good"), None);
    assert_eq!(r.json(), json!("good"), "{}", r.text);

    // The other properties are checked on save too.
    let r = script(
        &server,
        "portal_skins",
        "Base_params",
        "1",
        json!({"parameters": [1, 2]}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.error_message().contains("parameters"), "{}", r.text);
    let r = script(
        &server,
        "portal_skins",
        "Base_perm",
        "1",
        json!({"permission": "Fly"}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.error_message()
            .contains("permission 'Fly' does not exist"),
        "{}",
        r.text
    );
    let r = server.req(
        "PATCH",
        "/api/v1/portal_skins/Base_good",
        Some(&json!({"serial": 1, "parameters": "x"})),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    still_answers(&server);
}

#[test]
fn limits_stop_scripts_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("var"),
        None,
        &[
            ("WENDELIN_SCRIPTS_MAX_OPERATIONS", "200000"),
            ("WENDELIN_SCRIPTS_MAX_STRING_SIZE", "65536"),
            ("WENDELIN_SCRIPTS_MAX_ARRAY_SIZE", "1000"),
        ],
    );
    let s = stream(&server, "s");
    for (id, body, limit) in [
        ("Base_spin", "loop { }", "max_operations"),
        (
            "Base_recurse",
            "fn f(n) { f(n + 1) } f(0)",
            "max_call_levels",
        ),
        (
            "Base_grow",
            r#"let s = "x"; loop { s += s; }"#,
            "max_string_size",
        ),
        (
            "Base_wide",
            "let a = []; loop { a.push(1); }",
            "max_array_size",
        ),
    ] {
        created(script(&server, "portal_skins", id, body, json!({})));
        let r = server.req("GET", &format!("/{s}/{id}"), None);
        assert_eq!(r.status, 422, "{id}: {}", r.text);
        assert!(r.error_message().contains(limit), "{id}: {}", r.text);
        still_answers(&server);
    }
    // Too deep to compile: refused when saved, naming the limit.
    let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    let r = script(&server, "portal_skins", "Base_deep", &deep, json!({}));
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.error_message().contains("max_expr_depth"), "{}", r.text);
    let r = server.req("GET", &format!("/{s}/Base_deep"), None);
    assert_eq!(r.status, 404, "{}", r.text);
    // No files.
    created(script(
        &server,
        "portal_skins",
        "Base_import",
        r#"import "/etc/passwd" as p; 1"#,
        json!({}),
    ));
    let r = server.req("GET", &format!("/{s}/Base_import"), None);
    assert!(r.status >= 400 && r.status < 500, "{}", r.text);
    still_answers(&server);
}

#[test]
fn wall_time_stops_a_script() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("var"),
        None,
        &[
            ("WENDELIN_SCRIPTS_MAX_OPERATIONS", "0"),
            ("WENDELIN_SCRIPTS_MAX_WALL_MS", "300"),
        ],
    );
    let s = stream(&server, "s");
    created(script(
        &server,
        "portal_skins",
        "Base_spin",
        "loop { }",
        json!({}),
    ));
    let started = std::time::Instant::now();
    let r = server.req("GET", &format!("/{s}/Base_spin"), None);
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.error_message().contains("max_wall_ms"), "{}", r.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    still_answers(&server);
}

#[test]
fn edits_reach_another_process_and_activities_run_scripts() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in wendelin_tests::backends(dir.path()) {
        two_processes_case(&dir.path().join(backend), url, backend);
    }
}

fn two_processes_case(dir: &std::path::Path, database_url: String, backend: &str) {
    let one = TestServer::start(&dir.join("one"), Some(database_url.clone()));
    let two = TestServer::start(&dir.join("two"), Some(database_url));
    let s = stream(&one, "s");
    created(script(
        &one,
        "portal_skins",
        "Base_motto",
        r#""first""#,
        json!({}),
    ));
    // Compiled and cached by the second process...
    assert_eq!(
        two.req("GET", &format!("/{s}/motto"), None).json(),
        json!("first"),
        "{backend}"
    );
    let r = one.req(
        "PATCH",
        "/api/v1/portal_skins/Base_motto",
        Some(&json!({"serial": 1, "body": r#""second""#})),
    );
    assert_eq!(r.status, 200, "{backend}: {}", r.text);
    // ... which runs the edited script at once: its cache is per (uid, serial).
    assert_eq!(
        two.req("GET", &format!("/{s}/motto"), None).json(),
        json!("second"),
        "{backend}"
    );

    // A script that does not compile cannot be stored: refused when saved, with its
    // position; the other process has nothing to call.
    let r = script(&one, "portal_skins", "Base_broken", "let x = ;", json!({}));
    assert_eq!(r.status, 422, "{backend}: {}", r.text);
    assert!(
        r.error_message().contains("line 1, column"),
        "{backend}: {}",
        r.text
    );
    let r = two.req("GET", &format!("/{s}/broken"), None);
    assert_eq!(r.status, 404, "{backend}: {}", r.text);
    // An edit to a broken body is refused too: the other process runs the old one.
    let r = one.req(
        "PATCH",
        "/api/v1/portal_skins/Base_motto",
        Some(&json!({"serial": 2, "body": "\"third"})),
    );
    assert_eq!(r.status, 422, "{backend}: {}", r.text);
    assert_eq!(
        two.req("GET", &format!("/{s}/motto"), None).json(),
        json!("second"),
        "{backend}"
    );

    // An activity runs a (mutating) script, as the user who queued it.
    created(script(
        &one,
        "portal_skins",
        "Base_stamp",
        r#"invoke("edit", #{ description: "stamped " + params.n, serial: context.serial }); 1"#,
        json!({"read_only": false, "parameters": {"n": 0}}),
    ));
    let r = one.req(
        "POST",
        &format!("/{s}/Base_activate"),
        Some(&json!({"method": "stamp", "args": {"n": 7}})),
    );
    assert_eq!(r.status, 200, "{backend}: {}", r.text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let doc = one.req("GET", &format!("/api/v1/{s}"), None).json();
        if doc["description"] == "stamped 7" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{backend}: {doc}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn workflow_guard_and_hook_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let good = stream(&server, "good");
    let bad = stream(&server, "bad one");
    let fire = |path: &str, t: &str| {
        server.req(
            "POST",
            &format!("/api/v1/{path}/transitions/{t}"),
            Some(&json!({})),
        )
    };
    let state = |path: &str| {
        server.req("GET", &format!("/api/v1/{path}"), None).json()["workflow_states"]
            ["validation_workflow"]
            .clone()
    };
    let offered = |path: &str| -> Vec<String> {
        let r = server.req("GET", &format!("/api/v1/{path}/workflows"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["workflows"][0]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(offered(&bad).contains(&"validate".to_owned()));

    // A guard script: true lets through, a string is the reason to refuse.
    created(script(
        &server,
        "portal_skins",
        "DataStream_guardValidate",
        r#"if context.title.contains("bad") { "the title says bad" } else { true }"#,
        json!({}),
    ));
    assert!(!offered(&bad).contains(&"validate".to_owned()));
    let r = fire(&bad, "validate");
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("the title says bad"), "{}", r.text);
    assert_eq!(state(&bad), "draft");

    // An after script runs in the transition's transaction and may change the document.
    created(script(
        &server,
        "portal_skins",
        "DataStream_afterValidate",
        r#"invoke("edit", #{ description: `validated as ${context.title}` }); ()"#,
        json!({"read_only": false, "permission": "Modify portal content"}),
    ));
    let r = fire(&good, "validate");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(state(&good), "validated");
    let doc = server.req("GET", &format!("/api/v1/{good}"), None).json();
    assert_eq!(doc["description"], "validated as good", "{doc}");

    // A before script that fails refuses the transition and nothing changes.
    created(script(
        &server,
        "portal_skins",
        "Base_beforeInvalidate",
        r#"if context.description != "" { throw "described documents stay valid" } ()"#,
        json!({}),
    ));
    let serial = server.req("GET", &format!("/api/v1/{good}"), None).json()["serial"].clone();
    let r = fire(&good, "invalidate");
    assert!(r.status >= 400 && r.status < 500, "{} {}", r.status, r.text);
    assert!(
        r.text.contains("described documents stay valid"),
        "{}",
        r.text
    );
    assert_eq!(state(&good), "validated");
    let doc = server.req("GET", &format!("/api/v1/{good}"), None).json();
    assert_eq!(doc["serial"], serial, "{doc}");
    // The other stream has no description: the same before script lets it through.
    assert_eq!(fire(&bad, "invalidate").status, 200);
    assert_eq!(state(&bad), "invalidated");

    // A guard returning something else is a clear error, not a silent pass.
    let guard = "/api/v1/portal_skins/DataStream_guardValidate";
    let serial = server.req("GET", guard, None).json()["serial"].clone();
    let r = server.req(
        "PATCH",
        guard,
        Some(&json!({"serial": serial, "body": "42"})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = fire(&bad, "validate");
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text.contains("must return true, false or a reason"),
        "{}",
        r.text
    );
    assert_eq!(state(&bad), "invalidated");
    still_answers(&server);
}

#[test]
fn scripts_create_fire_activate_and_return_html() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let s = stream(&server, "source");
    created(script(
        &server,
        "portal_skins",
        "DataStream_spawn",
        r#"let made = portal.create("data_stream_module", #{ title: `copy of ${context.title}`, reference: params.reference });
let done = portal.transition(made.path, "validate", #{ comment: "made by a script" });
activate("edit", #{ description: "queued by a script" });
#{ path: made.path, state: done.workflow_states.validation_workflow }"#,
        json!({"read_only": false, "permission": "Modify portal content",
               "parameters": {"reference": "copy-1"}}),
    ));
    // Read-only calls may not create: over GET the mutating script is refused outright,
    // and a read-only script calling the binding is refused too, with nothing created.
    assert_eq!(server.req("GET", &format!("/{s}/spawn"), None).status, 405);
    created(script(
        &server,
        "portal_skins",
        "DataStream_sneakyCreate",
        r#"portal.create("data_stream_module", #{ title: "sneaky" })"#,
        json!({}),
    ));
    let r = server.req("GET", &format!("/{s}/sneakyCreate"), None);
    assert_eq!(r.status, 405, "{}", r.text);
    assert!(r.text.contains("cannot create a document"), "{}", r.text);

    let r = server.req("POST", &format!("/{s}/spawn"), Some(&json!({})));
    assert_eq!(r.status, 200, "{}", r.text);
    let out = r.json();
    assert_eq!(out["state"], "validated", "{out}");
    let made = out["path"].as_str().unwrap();
    let doc = server.req("GET", &format!("/api/v1/{made}"), None).json();
    assert_eq!(doc["title"], "copy of source", "{doc}");
    assert_eq!(doc["reference"], "copy-1", "{doc}");
    let history = server
        .req("GET", &format!("/api/v1/{made}/workflows"), None)
        .json();
    assert_eq!(
        history["workflows"][0]["history"][0]["comment"], "made by a script",
        "{history}"
    );
    let listing = server.req("GET", "/api/v1/data_stream_module", None);
    assert_eq!(listing.status, 200, "{}", listing.text);
    assert!(listing.text.contains("copy of source"), "{}", listing.text);
    assert!(!listing.text.contains("\"sneaky\""), "{}", listing.text);
    // The queued edit runs as an activity.
    let mut described = Value::Null;
    for _ in 0..100 {
        described = server.req("GET", &format!("/api/v1/{s}"), None).json()["description"].clone();
        if described == "queued by a script" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(described, "queued by a script");

    // An html result is served as a page; a non-string value is a clear error.
    created(script(
        &server,
        "portal_skins",
        "DataStream_card",
        r#"`<h1>${context.title}</h1>`"#,
        json!({"result": "html"}),
    ));
    let r = server.req("GET", &format!("/{s}/card"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, "<h1>source</h1>");
    assert!(
        r.content_type.starts_with("text/html"),
        "{}",
        r.content_type
    );
    // A text result is served as plain text, never as a page; a text script that
    // returns something other than a string is an error naming it.
    created(script(
        &server,
        "portal_skins",
        "DataStream_line",
        r#"`<b>${context.title}</b>`"#,
        json!({"result": "text"}),
    ));
    let r = server.req("GET", &format!("/{s}/line"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, "<b>source</b>");
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    created(script(
        &server,
        "portal_skins",
        "DataStream_number",
        "42",
        json!({"result": "text"}),
    ));
    let r = server.req("GET", &format!("/{s}/number"), None);
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("declares a text result"), "{}", r.text);
    let r = script(
        &server,
        "portal_skins",
        "Base_bad",
        "1",
        json!({"result": "pdf"}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("known: json, html, text"), "{}", r.text);
}

#[test]
fn a_scripts_page_tests_it_and_lists_its_callers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let s = stream(&server, "probe <b>");
    created(script(
        &server,
        "portal_skins",
        "DataStream_label",
        "`${params.prefix}: ${context.title}`",
        json!({"parameters": {"prefix": "stream"}}),
    ));
    created(script(
        &server,
        "portal_skins",
        "Base_usesLabel",
        r#"invoke("label")"#,
        json!({}),
    ));
    created(script(
        &server,
        "portal_skins",
        "Base_other",
        "1",
        json!({}),
    ));
    add_user(&server, "mgr", "mgr-password-1", &["Manager"]);
    let (cookie, _) = login(&server, "mgr", "mgr-password-1");
    let page = |query: &str| {
        let r = request_with(
            "GET",
            &server.url(&format!("/ui/portal_skins/DataStream_label/+module{query}")),
            None,
            &[("Cookie", &cookie)],
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    };
    let html = page("");
    assert!(html.contains("id=\"test-form\""), "{html}");
    assert!(
        html.contains("<code>`${params.prefix}: ${context.title}`</code>"),
        "{html}"
    );
    // Called from: the script naming it by its short name, not the unrelated one.
    assert!(html.contains("/portal_skins/Base_usesLabel"), "{html}");
    assert!(!html.contains("/portal_skins/Base_other"), "{html}");
    // Test: this very script, on a chosen document, with arguments; escaped output.
    let html = page(&format!("?on={s}&args=%7B%22prefix%22%3A%22tested%22%7D"));
    assert!(html.contains("id=\"test-result\""), "{html}");
    assert!(
        html.contains("tested: probe &#60;b&#62;") || html.contains("tested: probe &lt;b&gt;"),
        "{html}"
    );
    // A missing document, and bad arguments, are errors shown on the page.
    let html = page("?on=data_stream_module/nope");
    assert!(html.contains("id=\"test-error\""), "{html}");
    assert!(html.contains("does not exist"), "{html}");
    let html = page(&format!("?on={s}&args=%5B1%5D"));
    assert!(html.contains("arguments must be a JSON object"), "{html}");
}

#[test]
fn scripts_read_data_streams() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let s = stream(&server, "records");
    // Two msgpack values: [1, "a"] and {"x": 1}.
    let bytes = [0x92, 0x01, 0xa1, b'a', 0x81, 0xa1, b'x', 0x01];
    let put = server.raw(
        "PUT",
        &format!("/api/v1/{s}/data"),
        "application/octet-stream",
        &bytes,
    );
    assert_eq!(put.status, 200, "{}", put.text);
    created(script(
        &server,
        "portal_skins",
        "DataStream_summary",
        "let p = context.path;\n\
         let n = portal.stream_size(p);\n\
         let head = portal.stream_read(p, 1, 3);\n\
         let past = portal.stream_read(p, 6, 100);\n\
         let all = portal.stream_records(p, 0, n);\n\
         let first = portal.stream_records(p, 0, 5);\n\
         #{size: n, head: [head.len(), head[0], head[2]], past: past.len(),\n\
           records: all.records, next: all.next_offset, first: first.records.len(),\n\
           first_next: first.next_offset}",
        json!({}),
    ));
    let r = server.req("GET", &format!("/{s}/summary"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"size": 8, "head": [3, 1, 97], "past": 2,
               "records": [[1, "a"], {"x": 1}], "next": 8, "first": 1, "first_next": 4})
    );
    // A negative range, a read over the string limit and a path that is not a stream
    // are refused with a message; the server goes on.
    for (body, needle) in [
        (
            "portal.stream_read(context.path, -1, 2)",
            "must not be negative",
        ),
        (
            "portal.stream_read(context.path, 0, 100000000)",
            "max_string_size",
        ),
        (
            "portal.stream_read(\"portal_skins\", 0, 2)",
            "not a Data Stream",
        ),
        (
            "portal.stream_read(\"nowhere/at/all\", 0, 2)",
            "no document",
        ),
    ] {
        let id = format!("DataStream_bad{}", body.len());
        created(script(&server, "portal_skins", &id, body, json!({})));
        let r = server.req("GET", &format!("/{s}/{id}"), None);
        assert!(
            r.status >= 400 && r.status < 500,
            "{body}: {} {}",
            r.status,
            r.text
        );
        assert!(r.text.contains(needle), "{body}: {}", r.text);
    }
    still_answers(&server);
}

#[test]
fn scripts_read_and_append_data_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let r = server.req(
        "POST",
        "/api/v1/data_array_module",
        Some(&json!({"portal_type": "Data Array", "dtype": "int64", "shape": [0, 2]})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let a = r.json()["path"].as_str().unwrap().to_owned();
    created(script(
        &server,
        "portal_skins",
        "DataArray_fill",
        "portal.array_append(context.path, [[1, 2], [3, 4], [5, 6]])",
        json!({"read_only": false}),
    ));
    created(script(
        &server,
        "portal_skins",
        "DataArray_summary",
        "let p = context.path;\n\
         let rows = portal.array_slice(p, \"1:\");\n\
         #{shape: portal.array_shape(p), dtype: portal.array_dtype(p),\n\
           rows: rows, second: rows[0][1],\n\
           sum: portal.array_reduce(p, \"sum\", \"\").result,\n\
           cols: portal.array_reduce(p, \"max\", \"\", 0).result}",
        json!({}),
    ));
    // The append changes data: refused over GET, done over POST. (Reductions come back
    // as floats, as the array's own reduce answers them.)
    let r = server.req("GET", &format!("/{a}/fill"), None);
    assert_eq!(r.status, 405, "{}", r.text);
    let r = server.req("POST", &format!("/{a}/fill"), Some(&json!({})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["shape"], json!([3, 2]), "{}", r.text);
    let r = server.req("GET", &format!("/{a}/summary"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"shape": [3, 2], "dtype": "int64", "rows": [[3, 4], [5, 6]], "second": 4,
               "sum": 21.0, "cols": [5.0, 6.0]})
    );
}
