//! The findings of the black-box security probe (issue 14), one test each: every test
//! replays the attack as the probe made it and checks that the server refuses it with a
//! clear 4xx, changes nothing and keeps answering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use wendelin_tests::{
    add_user, login, login_token, request_raw, request_with, run_cli, with_cookie, Reply,
    TestServer,
};

fn alive(server: &TestServer) {
    assert_eq!(server.anon("GET", "/health", None).status, 200);
}

fn encode(q: &str) -> String {
    serde_urlencoded::to_string([("q", q)]).unwrap()
}

/// A session of `login` (created with `roles`): cookie and CSRF token.
fn session(server: &TestServer, who: &str, roles: &[&str]) -> (String, String) {
    let password = format!("{who}-password-1");
    add_user(server, who, &password, roles);
    login(server, who, &password)
}

fn as_user(
    server: &TestServer,
    s: &(String, String),
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    with_cookie(server, method, path, body, &s.0, Some(&s.1))
}

#[test]
fn deep_or_huge_queries_are_refused_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    let alice = session(&server, "alice", &["Author"]);
    for q in [
        // The probe's queries: longer than any query is allowed to be.
        format!("{}title:a{}", "(".repeat(5000), ")".repeat(5000)),
        format!("{}title:a", "NOT ".repeat(7000)),
        format!("{}title:a", "NOT ".repeat(3000)),
        // Deep, but short enough to reach the parser.
        format!("{}title:a{}", "(".repeat(4000), ")".repeat(4000)),
        format!("{}title:a", "NOT ".repeat(2000)),
    ] {
        let r = server.anon("GET", &format!("/api/v1/catalog?{}", encode(&q)), None);
        assert_eq!(r.status, 400, "{}", r.text);
        let m = r.error_message();
        assert!(
            m.contains("nested too deeply") || m.contains("characters"),
            "{m}"
        );
        alive(&server);
        // The admin UI's search box uses the same parser: the page says what is wrong.
        let page = with_cookie(
            &server,
            "GET",
            &format!("/ui/data_stream_module?{}", encode(&q)),
            None,
            &alice.0,
            None,
        );
        assert!(page.status < 500, "{}", page.status);
        assert!(
            page.text.contains("nested too deeply") || page.text.contains("characters"),
            "{}",
            page.text
        );
        alive(&server);
    }
    // What the limits allow still runs, in SQL within the database's expression limits.
    let many = vec!["title:a"; wendelin_core::query::MAX_TERMS].join(" OR ");
    let r = server.anon("GET", &format!("/api/v1/catalog?{}", encode(&many)), None);
    assert_eq!(r.status, 200, "{}", r.text);
    let depth = wendelin_core::query::MAX_DEPTH / 2;
    let nested = format!("{}title:a{}", "(NOT ".repeat(depth), ")".repeat(depth));
    let r = server.req("GET", &format!("/api/v1/catalog?{}", encode(&nested)), None);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = server.req(
        "GET",
        &format!(
            "/api/v1/catalog?{}",
            encode(&"title:a ".repeat(wendelin_core::query::MAX_TERMS + 1))
        ),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn user_bytes_are_downloaded_so_that_no_browser_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    let alice = session(&server, "alice", &["Author"]);
    let bob = session(&server, "bob", &[]);
    let r = as_user(
        &server,
        &alice,
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "page", "content_type": "text/html"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.json()["path"].as_str().unwrap().to_owned();
    let script = b"<script>fetch('/api/v1/me').then(r=>r.json()).then(alert)</script>";
    let r = request_raw(
        "PUT",
        &server.url(&format!("/api/v1/{path}/data")),
        "application/octet-stream",
        script,
        &[("Cookie", &alice.0), ("X-CSRF-Token", &alice.1)],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = as_user(
        &server,
        &alice,
        "POST",
        &format!("/api/v1/{path}/setLocalRoles"),
        Some(&json!({"principal": "user:bob", "roles": ["Assignee"]})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = with_cookie(
        &server,
        "GET",
        &format!("/api/v1/{path}/data"),
        None,
        &bob.0,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text.as_bytes(), script);
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(
        r.header("content-security-policy")
            .unwrap_or_default()
            .starts_with("sandbox"),
        "{:?}",
        r.headers
    );
    // A type the browser shows as text is served inline, still sandboxed; a type that is
    // not a MIME type at all is served as bytes.
    for (declared, served, attachment) in [
        (
            "text/plain; charset=utf-8",
            "text/plain; charset=utf-8",
            false,
        ),
        ("image/svg+xml", "image/svg+xml", true),
        ("not a type", "application/octet-stream", false),
    ] {
        let r = server.req(
            "POST",
            "/api/v1/data_stream_module",
            Some(&json!({"title": declared, "content_type": declared})),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let p = r.json()["path"].as_str().unwrap().to_owned();
        let r = server.req("GET", &format!("/api/v1/{p}/data"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("content-type"), Some(served), "{declared}");
        assert_eq!(
            r.header("content-disposition").is_some(),
            attachment,
            "{declared}"
        );
        assert!(r
            .header("content-security-policy")
            .unwrap_or_default()
            .starts_with("sandbox"));
    }
}

#[test]
fn arrays_too_big_to_exist_are_refused_and_reductions_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    let count = |server: &TestServer| {
        server.req("GET", "/api/v1/data_array_module", None).json()["total"].as_i64()
    };
    let before = count(&server);
    for (body, says) in [
        (
            json!({"portal_type": "Data Array", "dtype": "float64", "shape": vec![2; 100]}),
            "dimensions",
        ),
        (
            json!({"portal_type": "Data Array", "dtype": "float64", "shape": [1u64 << 17, 1u64 << 16], "chunk_shape": [1, 1]}),
            "chunks",
        ),
        (
            json!({"portal_type": "Data Array", "dtype": "uint8", "shape": [1u64 << 40, 1u64 << 20]}),
            "elements",
        ),
    ] {
        let r = server.req("POST", "/api/v1/data_array_module", Some(&body));
        assert_eq!(r.status, 422, "{}", r.text);
        assert!(r.error_message().contains(says), "{}", r.text);
        alive(&server);
    }
    assert_eq!(count(&server), before, "nothing was created");
    // An edit to such a shape is refused the same way.
    let r = server.req(
        "POST",
        "/api/v1/data_array_module",
        Some(&json!({"portal_type": "Data Array", "dtype": "float64", "shape": [4097, 4096], "chunk_shape": [1, 1]})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.json()["path"].as_str().unwrap().to_owned();
    let r = server.req(
        "PATCH",
        &format!("/api/v1/{path}"),
        Some(&json!({"serial": 1, "shape": vec![2; 40]})),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    // 16.8M chunks: refused at once instead of listing every chunk in memory.
    let r = server.req("GET", &format!("/{path}/reduce?op=sum"), None);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error_message().contains("at most"), "{}", r.text);
    alive(&server);
    let r = server.req(
        "GET",
        &format!("/{path}/reduce?op=sum&region=0:30,0:30"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["result"].as_f64(), Some(0.0), "{}", r.text);
}

#[test]
fn cookie_writes_need_the_csrf_header_whatever_their_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    let alice = session(&server, "alice", &["Author"]);
    let r = as_user(
        &server,
        &alice,
        "POST",
        "/api/v1/data_array_module",
        Some(&json!({"portal_type": "Data Array", "dtype": "float64", "shape": [0, 3]})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let array = r.json()["path"].as_str().unwrap().to_owned();
    let r = as_user(
        &server,
        &alice,
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "s"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let stream = r.json()["path"].as_str().unwrap().to_owned();
    let rows: Vec<u8> = (0..6).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    let form = "application/x-www-form-urlencoded";
    let cookie_only = [
        ("Cookie", alice.0.as_str()),
        ("x-array-dtype", "float64"),
        ("x-array-shape", "2,3"),
    ];
    for (method, path, body) in [
        ("POST", format!("/api/v1/{array}/append"), rows.as_slice()),
        (
            "POST",
            format!("/api/v1/{array}/write?region=0:2,0:3"),
            rows.as_slice(),
        ),
        ("PUT", format!("/api/v1/{stream}/data"), b"a=1".as_slice()),
        (
            "POST",
            format!("/api/v1/{stream}/transitions/validate"),
            b"".as_slice(),
        ),
        (
            "POST",
            format!("/{stream}/Base_edit"),
            b"title=x".as_slice(),
        ),
    ] {
        for ct in [form, "multipart/form-data; boundary=x", "text/plain"] {
            let r = request_raw(method, &server.url(&path), ct, body, &cookie_only);
            // Method calls by traversal take JSON only: their refusal may name the body.
            if path.ends_with("Base_edit") && r.status == 400 {
                assert!(r.error_message().contains("JSON"), "{}", r.text);
                continue;
            }
            assert_eq!(r.status, 403, "{method} {path} as {ct}: {}", r.text);
            assert!(r.error_message().contains("CSRF"), "{}", r.text);
        }
    }
    let shape = as_user(&server, &alice, "GET", &format!("/{array}/getShape"), None);
    assert_eq!(shape.json(), json!([0, 3]));
    let size = as_user(&server, &alice, "GET", &format!("/{stream}/getSize"), None);
    assert_eq!(size.json(), json!(0));
    let doc = as_user(&server, &alice, "GET", &format!("/api/v1/{stream}"), None).json();
    assert_eq!(doc["title"], "s");
    let states = as_user(
        &server,
        &alice,
        "GET",
        &format!("/api/v1/{stream}/workflows"),
        None,
    );
    assert!(states.text.contains("\"draft\""), "{}", states.text);
    // With the header, the same append goes through.
    let mut headers = cookie_only.to_vec();
    headers.push(("X-CSRF-Token", alice.1.as_str()));
    let r = request_raw(
        "POST",
        &server.url(&format!("/api/v1/{array}/append")),
        form,
        &rows,
        &headers,
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn only_users_who_could_run_a_method_may_queue_it_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    let alice = session(&server, "alice", &["Author"]);
    let queued = |server: &TestServer| server.req("GET", "/api/v1/activities", None).text;
    let before = queued(&server);
    let r = server.anon(
        "POST",
        "/Base_activate",
        Some(
            &json!({"method": "Base_edit", "args": {"title": "x"}, "delay_seconds": 1_000_000_000}),
        ),
    );
    assert_eq!(r.status, 401, "{}", r.text);
    let r = as_user(
        &server,
        &alice,
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "mine"})),
    );
    let mine = r.json()["path"].as_str().unwrap().to_owned();
    let big = "x".repeat(2 << 20);
    for (body, status, says) in [
        (
            json!({"method": "Base_edit", "delay_seconds": 1_000_000_000}),
            422,
            "delay_seconds",
        ),
        (
            json!({"method": "Base_edit", "delay_seconds": -5}),
            422,
            "delay_seconds",
        ),
        (
            json!({"method": "Base_edit", "args": {"title": big}}),
            422,
            "bytes",
        ),
        (
            json!({"method": "Base_edit", "priority": 1_000_000}),
            422,
            "priority",
        ),
        (
            json!({"method": "Base_edit", "priority": "high"}),
            400,
            "integer",
        ),
        (
            json!({"method": "Base_edit", "max_attempts": 1000}),
            422,
            "max_attempts",
        ),
        (json!({"method": "Base_edit", "tag": ""}), 422, "tag"),
        (json!({"method": "../x"}), 422, "method name"),
        (json!({"method": "noSuchMethod"}), 404, "noSuchMethod"),
        (json!({"method": "title"}), 422, "property"),
    ] {
        let r = as_user(
            &server,
            &alice,
            "POST",
            &format!("/{mine}/Base_activate"),
            Some(&body),
        );
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(r.error_message().contains(says), "{body}: {}", r.text);
    }
    // A document alice may View but not modify: she cannot queue its edit either.
    let r = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "manager's"})),
    );
    let theirs = r.json()["path"].as_str().unwrap().to_owned();
    let r = server.req(
        "POST",
        &format!("/api/v1/{theirs}/transitions/validate"),
        Some(&json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        as_user(&server, &alice, "GET", &format!("/api/v1/{theirs}"), None).status,
        200
    );
    let r = as_user(
        &server,
        &alice,
        "POST",
        &format!("/{theirs}/Base_activate"),
        Some(&json!({"method": "Base_edit", "args": {"title": "x"}})),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(queued(&server), before, "nothing was queued");
    let r = as_user(
        &server,
        &alice,
        "POST",
        &format!("/{mine}/Base_activate"),
        Some(
            &json!({"method": "Base_edit", "args": {"description": "later"}, "delay_seconds": 3600, "priority": 5, "tag": "t"}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["activity"].as_i64().is_some());
}

#[test]
fn relations_never_tell_whether_a_hidden_document_exists() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    let alice = session(&server, "alice", &["Author"]);
    let bob = session(&server, "bob", &["Author"]);
    // A stream everyone may read, and bob's draft array computed from it.
    let r = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "public"})),
    );
    let public = r.json()["path"].as_str().unwrap().to_owned();
    server.req(
        "POST",
        &format!("/api/v1/{public}/transitions/validate"),
        Some(&json!({})),
    );
    let r = as_user(
        &server,
        &bob,
        "POST",
        "/api/v1/data_array_module",
        Some(&json!({"portal_type": "Data Array", "source": public})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let bobs_array = r.json()["path"].as_str().unwrap().to_owned();
    let r = as_user(
        &server,
        &bob,
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "bob's draft"})),
    );
    let bobs_stream = r.json()["path"].as_str().unwrap().to_owned();
    assert_eq!(
        as_user(
            &server,
            &alice,
            "GET",
            &format!("/api/v1/{bobs_stream}"),
            None
        )
        .status,
        404
    );

    let back = format!("/{public}/getBackRelationList?name=source");
    assert_eq!(
        as_user(&server, &alice, "GET", &back, None).json(),
        json!([])
    );
    assert_eq!(server.req("GET", &back, None).json(), json!([bobs_array]));
    let forward = format!("/{bobs_array}/getRelationList?name=source");
    assert_eq!(
        as_user(&server, &bob, "GET", &forward, None).json(),
        json!([public])
    );

    // A relation to a hidden document is refused exactly like one to a missing document.
    let mut answers = Vec::new();
    for target in [bobs_stream.as_str(), "data_stream_module/999"] {
        let r = as_user(
            &server,
            &alice,
            "POST",
            "/api/v1/data_array_module",
            Some(&json!({"portal_type": "Data Array", "source": target})),
        );
        assert_eq!(r.status, 422, "{}", r.text);
        answers.push((r.status, r.error_message().replace(target, "TARGET")));
    }
    assert_eq!(answers[0], answers[1]);
}

#[test]
fn login_redirects_stay_on_the_site() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    add_user(&server, "alice", "alice-password-1", &[]);
    for (came_from, location) in [
        ("/\t/evil.example", "/"),
        ("/\\evil.example", "/"),
        ("//evil.example", "/"),
        ("/ui/data_stream_module?q=x", "/ui/data_stream_module?q=x"),
    ] {
        let page = server.anon("GET", "/login", None);
        let token = login_token(&page);
        let cookie = page.set_cookie.clone().unwrap();
        let cookie = cookie.split(';').next().unwrap();
        let body = serde_urlencoded::to_string([
            ("login", "alice"),
            ("password", "alice-password-1"),
            ("came_from", came_from),
            ("login_token", &token),
        ])
        .unwrap();
        let r = request_raw(
            "POST",
            &server.url("/login"),
            "application/x-www-form-urlencoded",
            body.as_bytes(),
            &[("cookie", cookie)],
        );
        assert_eq!(r.status, 303, "{}", r.text);
        assert_eq!(r.location.as_deref(), Some(location), "{came_from:?}");
    }
}

#[test]
fn every_response_carries_the_protective_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    for (path, status) in [
        ("/health", 200),
        ("/api/v1/me", 200),
        ("/login", 200),
        ("/ui/", 303),
        ("/nowhere", 404),
    ] {
        let r = server.anon("GET", path, None);
        assert_eq!(r.status, status, "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
    }
}

#[test]
fn api_tokens_outlive_a_password_change_until_revoked_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    add_user(&server, "alice", "alice-password-1", &[]);
    let (ok, out, err) = run_cli(&["user", "token", "add", "alice"], &server.cli_env(), "");
    assert!(ok, "{err}");
    let token = out.rsplit(' ').next().unwrap().trim().to_owned();
    let me = |t: &str| {
        request_with(
            "GET",
            &server.url("/api/v1/me"),
            None,
            &[("Authorization", &format!("Bearer {t}"))],
        )
    };
    assert_eq!(me(&token).status, 200);
    let (ok, out, err) = run_cli(
        &["user", "passwd", "alice", "--password-stdin"],
        &server.cli_env(),
        "alice-password-2\n",
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("1 API token(s) of alice remain valid"),
        "{out}"
    );
    assert_eq!(me(&token).status, 200, "a token is a credential of its own");
    let (ok, out, err) = run_cli(
        &[
            "user",
            "passwd",
            "alice",
            "--password-stdin",
            "--revoke-tokens",
        ],
        &server.cli_env(),
        "alice-password-3\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains("1 API token(s) of alice revoked"), "{out}");
    assert_eq!(me(&token).status, 401);
}

#[test]
fn only_the_logins_a_policy_accepts_may_feed_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    let token_of = |login: &str| {
        add_user(&server, login, &format!("{login}-password-1"), &["Author"]);
        let (ok, out, err) = run_cli(&["user", "token", "add", login], &server.cli_env(), "");
        assert!(ok, "{err}");
        out.rsplit(' ').next().unwrap().trim().to_owned()
    };
    let (alice, mallory) = (token_of("alice"), token_of("mallory"));
    let (ok, out, err) = run_cli(
        &[
            "ingestion",
            "add",
            "plant",
            "--product",
            "temp",
            "--accept",
            "alice",
        ],
        &server.cli_env(),
        "",
    );
    assert!(ok, "{out} {err}");
    let ingest = |token: &str, tag: &str| {
        request_raw(
            "POST",
            &server.url(&format!("/api/v1/ingest/plant/{tag}")),
            "application/x-ndjson",
            b"{\"t\": 1}\n",
            &[("Authorization", &format!("Bearer {token}"))],
        )
    };
    // An Author the policy does not list cannot take a tag's stream by ingesting first.
    let r = ingest(&mallory, "boiler.temp");
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error_message().contains("accepted_logins"), "{}", r.text);
    let r = server.req("GET", "/api/v1/data_stream_module/boiler.temp", None);
    assert_eq!(r.status, 404, "nothing was created: {}", r.text);
    let r = ingest(&alice, "boiler.temp");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ingest(&mallory, "boiler.temp").status, 403);
    // The manager, who may modify the policy, may feed it too.
    assert_eq!(ingest(&server.manager_token, "pump.temp").status, 200);
}
