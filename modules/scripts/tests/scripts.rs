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
