//! Security over HTTP: authentication, sessions, CSRF, throttling, tokens, what each user
//! sees and counts, workflows with guards, and secrets never stored or logged in clear.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use wendelin_tests::{
    add_user, login, login_token, request_raw, request_with, run_cli, with_cookie, Reply,
    TestServer,
};

fn bearer(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let auth = format!("Bearer {token}");
    request_with(method, &server.url(path), body, &[("Authorization", &auth)])
}

#[test]
fn anonymous_visitors_get_401_and_never_see_private_documents() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let created = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "private"})),
    );
    assert_eq!(created.status, 201);
    let r = server.anon(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "x"})),
    );
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(
        server
            .anon("GET", "/api/v1/data_stream_module", None)
            .status,
        401
    );
    // Existence of the document does not leak: 404 like a missing one.
    let hidden = server.anon("GET", "/api/v1/data_stream_module/1", None);
    let missing = server.anon("GET", "/api/v1/data_stream_module/999", None);
    assert_eq!((hidden.status, missing.status), (404, 404));
    assert_eq!(
        server
            .anon("GET", "/data_stream_module/1/getSize", None)
            .status,
        404
    );
    assert_eq!(
        server
            .req("GET", "/api/v1/data_stream_module/1", None)
            .status,
        200
    );
    let bad = request_with(
        "GET",
        &server.url("/api/v1/data_stream_module"),
        None,
        &[("Authorization", "Bearer wdl_nope")],
    );
    assert_eq!(bad.status, 401);
    assert!(bad.error_message().contains("unknown API token"));
    let bad = request_with(
        "GET",
        &server.url("/api/v1/me"),
        None,
        &[("Authorization", "Basic bWFuYWdlcjp3cm9uZw==")],
    );
    assert_eq!(bad.status, 401);
}

#[test]
fn sessions_csrf_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "alice", "alice-password-1", &["Author"]);
    let wrong = request_with(
        "POST",
        &server.url("/login"),
        Some(&json!({"login": "alice", "password": "nope-nope"})),
        &[],
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.set_cookie.is_none());
    let (cookie, csrf) = login(&server, "alice", "alice-password-1");
    assert_eq!(
        with_cookie(&server, "GET", "/api/v1/me", None, &cookie, None).json()["login"],
        "alice"
    );
    // A second, different session cookie (planted by another page on this host name, which
    // the browser sends first) is refused, not taken for the visitor's; the real one sent
    // twice is fine.
    let (bob_cookie, _) = {
        add_user(&server, "bob", "bob-password-12", &["Author"]);
        login(&server, "bob", "bob-password-12")
    };
    for pair in [
        format!("{bob_cookie}; {cookie}"),
        format!("{cookie}; wendelin_session=planted"),
    ] {
        let r = with_cookie(&server, "GET", "/api/v1/me", None, &pair, None);
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(
            r.error_message()
                .contains("two different wendelin_session cookies"),
            "{}",
            r.text
        );
        let r = with_cookie(&server, "GET", "/ui/data_stream_module", None, &pair, None);
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(!r.text.contains("bob"), "{}", r.text);
    }
    let twice = format!("{cookie}; {cookie}");
    assert_eq!(
        with_cookie(&server, "GET", "/api/v1/me", None, &twice, None).json()["login"],
        "alice"
    );
    // A write with the cookie but without the CSRF token is refused and changes nothing.
    let body = json!({"title": "by alice"});
    let r = with_cookie(
        &server,
        "POST",
        "/api/v1/data_stream_module",
        Some(&body),
        &cookie,
        None,
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error_message().contains("CSRF"));
    let r = with_cookie(
        &server,
        "POST",
        "/api/v1/data_stream_module",
        Some(&body),
        &cookie,
        Some("forged"),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        server.req("GET", "/api/v1/data_stream_module", None).json()["total"],
        0
    );
    let r = with_cookie(
        &server,
        "POST",
        "/api/v1/data_stream_module",
        Some(&body),
        &cookie,
        Some(&csrf),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["owner"], "alice");
    // A form post to logout without the token (what a cross-site form would send) fails.
    let r = request_raw(
        "POST",
        &server.url("/logout"),
        "application/x-www-form-urlencoded",
        b"",
        &[("Cookie", &cookie)],
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        with_cookie(&server, "GET", "/api/v1/me", None, &cookie, None).json()["login"],
        "alice"
    );
    let form = format!("csrf_token={csrf}");
    let r = request_raw(
        "POST",
        &server.url("/logout"),
        "application/x-www-form-urlencoded",
        form.as_bytes(),
        &[("Cookie", &cookie)],
    );
    assert_eq!(r.status, 303, "{}", r.text);
    let r = with_cookie(&server, "GET", "/api/v1/me", None, &cookie, None);
    assert_eq!(r.status, 401);
    assert!(r.error_message().contains("session ended"), "{}", r.text);
    // The login page is a real form; a form login redirects to a local path only.
    let page = server.anon("GET", "/login?came_from=//evil.example", None);
    assert!(page.text.contains("name=\"password\""));
    assert!(!page.text.contains("evil.example"));
    // Login CSRF: the form carries a token that must match the browser's login cookie.
    let token = login_token(&page);
    let login_cookie = page.set_cookie.clone().unwrap();
    assert!(
        login_cookie.starts_with("wendelin_login="),
        "{login_cookie}"
    );
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let body = format!(
        "login=alice&password=alice-password-1&came_from=%2Fdata_stream_module&login_token={token}"
    );
    // Another site's form has no login cookie (or a token of its own): refused, no session.
    for (cookie, body) in [
        (None, body.clone()),
        (Some(login_cookie.as_str()), body.replace(&token, "forged")),
    ] {
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", *c)).collect();
        let r = request_raw(
            "POST",
            &server.url("/login"),
            "application/x-www-form-urlencoded",
            body.as_bytes(),
            &headers,
        );
        assert_eq!(r.status, 403, "{}", r.text);
        assert!(
            r.text.contains("expired or was sent from another site"),
            "{}",
            r.text
        );
        assert!(!r
            .set_cookie
            .unwrap_or_default()
            .contains("wendelin_session"));
    }
    // Nor may a text/plain form smuggle a JSON body.
    let r = request_raw(
        "POST",
        &server.url("/login"),
        "text/plain",
        br#"{"login":"alice","password":"alice-password-1","came_from":"=x"}"#,
        &[],
    );
    assert_eq!(r.status, 415, "{}", r.text);
    let r = request_raw(
        "POST",
        &server.url("/login"),
        "application/x-www-form-urlencoded",
        body.as_bytes(),
        &[("cookie", login_cookie.as_str())],
    );
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.location.as_deref(), Some("/data_stream_module"));
}

#[test]
fn expired_sessions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "bob", "bob-password-12", &[]);
    server
        .extra_env
        .push(("WENDELIN_SESSION_TTL_HOURS".into(), "0".into()));
    server.restart();
    let (cookie, _) = login(&server, "bob", "bob-password-12");
    let r = with_cookie(&server, "GET", "/api/v1/me", None, &cookie, None);
    assert_eq!(r.status, 401);
    assert!(r.error_message().contains("expired"), "{}", r.text);
}

#[test]
fn failed_logins_are_throttled_per_account_and_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "carol", "carol-password-1", &[]);
    let attempt = |login: &str, password: &str| {
        request_with(
            "POST",
            &server.url("/login"),
            Some(&json!({"login": login, "password": password})),
            &[],
        )
    };
    for _ in 0..3 {
        assert_eq!(attempt("carol", "wrong-password").status, 401);
    }
    // Even the right password waits now.
    let r = attempt("carol", "carol-password-1");
    assert_eq!(r.status, 429, "{}", r.text);
    let wait: u64 = r.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    std::thread::sleep(std::time::Duration::from_millis(wait * 1000 + 100));
    assert_eq!(attempt("carol", "carol-password-1").status, 200);
    // The same address guessing other accounts is slowed down too: the delay grows.
    for login in ["x1", "x2", "x3"] {
        let r = attempt(login, "guess-guess");
        assert!(r.status == 401 || r.status == 429, "{}", r.text);
    }
    let r = attempt("x4", "guess-guess");
    assert_eq!(r.status, 429, "{}", r.text);
}

#[test]
fn api_tokens_are_shown_once_stored_hashed_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "dave", "dave-password-1", &["Author"]);
    let (ok, out, err) = run_cli(
        &["user", "token", "add", "dave", "--name", "sensor gateway"],
        &server.cli_env(),
        "",
    );
    assert!(ok, "{err}");
    let token = out.rsplit(' ').next().unwrap().trim().to_owned();
    let r = bearer(&server, &token, "GET", "/api/v1/me", None);
    assert_eq!(r.json()["login"], "dave");
    let (_, listed, _) = run_cli(&["user", "token", "list", "dave"], &server.cli_env(), "");
    assert!(
        listed.contains("sensor gateway") && !listed.contains(&token),
        "{listed}"
    );
    assert!(
        !listed.contains("last used never"),
        "use was not recorded: {listed}"
    );
    let id = listed.split('\t').next().unwrap().trim().to_owned();
    let (ok, _, err) = run_cli(&["user", "token", "revoke", &id], &server.cli_env(), "");
    assert!(ok, "{err}");
    let r = bearer(&server, &token, "GET", "/api/v1/me", None);
    assert_eq!(r.status, 401);
    assert!(r.error_message().contains("revoked"));
    // Changing a password ends sessions.
    let (cookie, _) = login(&server, "dave", "dave-password-1");
    let (ok, _, _) = run_cli(
        &["user", "passwd", "dave", "--password-stdin"],
        &server.cli_env(),
        "dave-password-2\n",
    );
    assert!(ok);
    assert_eq!(
        with_cookie(&server, "GET", "/api/v1/me", None, &cookie, None).status,
        401
    );
    login(&server, "dave", "dave-password-2");
}

#[test]
fn listings_show_and_count_only_what_the_user_may_view() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("var");
    let mut server = TestServer::start(&data, None);
    add_user(&server, "erin", "erin-password-1", &["Author"]);
    add_user(&server, "frank", "frank-password-1", &["Author"]);
    server.terminate();
    // 10,000 documents written directly through the kernel: most belong to erin.
    {
        use wendelin_core::document::{self, NewDocument};
        use wendelin_core::User;
        let portal = wendelin_core::Portal::open(
            wendelin_server::registry().unwrap(),
            &data.join("wendelin.sqlite").display().to_string(),
            2,
        )
        .unwrap();
        portal
            .db
            .write(|c| {
                for i in 0..10_000 {
                    let owner = if i % 200 == 7 { "frank" } else { "erin" };
                    let new = NewDocument {
                        title: format!("stream {i}"),
                        ..NewDocument::default()
                    };
                    let owner = User::authenticated(owner, [], Vec::new());
                    document::create(c, &portal.registry, "data_stream_module", new, &owner)?;
                }
                Ok(())
            })
            .unwrap();
    }
    server.restart();
    let (frank, _) = login(&server, "frank", "frank-password-1");
    let page = with_cookie(
        &server,
        "GET",
        "/api/v1/data_stream_module?limit=50",
        None,
        &frank,
        None,
    )
    .json();
    assert_eq!(page["total"], 50, "frank owns 50 of 10,000");
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    assert!(page["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["owner"] == "frank"));
    let page = with_cookie(
        &server,
        "GET",
        "/api/v1/data_stream_module?limit=50&offset=40",
        None,
        &frank,
        None,
    )
    .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    let (erin, _) = login(&server, "erin", "erin-password-1");
    let page = with_cookie(
        &server,
        "GET",
        "/api/v1/data_stream_module?limit=50",
        None,
        &erin,
        None,
    )
    .json();
    assert_eq!(page["total"], 9_950);
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    assert_eq!(
        server
            .req("GET", "/api/v1/data_stream_module?limit=1", None)
            .json()["total"],
        10_000
    );
    // A document of erin's is invisible to frank, even by direct URL.
    assert_eq!(
        with_cookie(
            &server,
            "GET",
            "/api/v1/data_stream_module/1",
            None,
            &frank,
            None
        )
        .status,
        404
    );
    // Sharing it (a local role) makes it visible and counted.
    let share = server.req(
        "POST",
        "/api/v1/data_stream_module/1/setLocalRoles",
        Some(&json!({"principal": "user:frank", "roles": ["Associate"]})),
    );
    assert_eq!(share.status, 200, "{}", share.text);
    assert_eq!(
        with_cookie(
            &server,
            "GET",
            "/api/v1/data_stream_module/1",
            None,
            &frank,
            None
        )
        .status,
        200
    );
    let page = with_cookie(
        &server,
        "GET",
        "/api/v1/data_stream_module?limit=1",
        None,
        &frank,
        None,
    )
    .json();
    assert_eq!(page["total"], 51);
    // ...but Associate may not edit: 403 with the reason.
    let edit = with_cookie(
        &server,
        "GET",
        "/api/v1/data_stream_module/1/getLocalRoles",
        None,
        &frank,
        None,
    );
    assert_eq!(edit.status, 403, "{}", edit.text);
    assert!(
        edit.error_message().contains("Change local roles"),
        "{}",
        edit.text
    );
}

#[test]
fn workflows_guard_record_history_and_publish_to_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "gina", "gina-password-1", &["Author"]);
    let (gina, csrf) = login(&server, "gina", "gina-password-1");
    let stream = with_cookie(
        &server,
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "s"})),
        &gina,
        Some(&csrf),
    );
    assert_eq!(stream.status, 201);
    // Gina owns it: she may validate it; the history records her and her comment.
    let wf = with_cookie(
        &server,
        "GET",
        "/api/v1/data_stream_module/1/workflows",
        None,
        &gina,
        None,
    )
    .json();
    let ids: Vec<&str> = wf["workflows"][0]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["validate"],
        "an owner may validate but not invalidate"
    );
    let r = with_cookie(
        &server,
        "POST",
        "/api/v1/data_stream_module/1/transitions/invalidate",
        Some(&json!({})),
        &gina,
        Some(&csrf),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        r.error_message()
            .contains("needs one of the roles Manager, Assignor"),
        "{}",
        r.text
    );
    let r = with_cookie(
        &server,
        "POST",
        "/api/v1/data_stream_module/1/transitions/validate",
        Some(&json!({"comment": "checked the sensor"})),
        &gina,
        Some(&csrf),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let history = &r.json()["workflows"][0]["history"];
    assert_eq!(history[0]["actor"], "gina");
    assert_eq!(history[0]["comment"], "checked the sensor");
    assert_eq!(
        (history[0]["from"].as_str(), history[0]["to"].as_str()),
        (Some("draft"), Some("validated"))
    );
    // Validated: the owner may no longer edit (the state's permission map says so).
    let doc = server
        .req("GET", "/api/v1/data_stream_module/1", None)
        .json();
    let edit = with_cookie(
        &server,
        "PATCH",
        "/api/v1/data_stream_module/1",
        Some(&json!({"serial": doc["serial"], "title": "changed"})),
        &gina,
        Some(&csrf),
    );
    assert_eq!(edit.status, 403, "{}", edit.text);
    let again = with_cookie(
        &server,
        "POST",
        "/api/v1/data_stream_module/1/transitions/validate",
        None,
        &gina,
        Some(&csrf),
    );
    assert_eq!(again.status, 409, "{}", again.text);

    // Web pages: an expression guard, then visible to anonymous visitors once published.
    let page = server.req(
        "POST",
        "/api/v1/web_page_module",
        Some(&json!({"text_content": "<p>hello</p>"})),
    );
    assert_eq!(page.status, 201);
    assert_eq!(
        server.anon("GET", "/api/v1/web_page_module/1", None).status,
        404
    );
    let r = server.req(
        "POST",
        "/api/v1/web_page_module/1/transitions/publish",
        None,
    );
    assert_eq!(r.status, 403);
    assert!(r.error_message().contains("needs a title"), "{}", r.text);
    let serial = server.req("GET", "/api/v1/web_page_module/1", None).json()["serial"].clone();
    server.req(
        "PATCH",
        "/api/v1/web_page_module/1",
        Some(&json!({"serial": serial, "title": "Results"})),
    );
    let r = server.req(
        "POST",
        "/api/v1/web_page_module/1/transitions/publish",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let public = server.anon("GET", "/api/v1/web_page_module/1", None);
    assert_eq!(public.status, 200, "{}", public.text);
    assert_eq!(
        public.json()["workflow_states"]["publication_workflow"],
        "published"
    );
    // Anonymous may read it but not change it.
    let r = server.anon(
        "PATCH",
        "/api/v1/web_page_module/1",
        Some(&json!({"serial": 3, "title": "x"})),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn secrets_never_appear_in_clear_in_database_logs_or_responses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("var");
    let mut server = TestServer::start(&data, None);
    let password = "Zebra-Orchid-4471";
    add_user(&server, "hana", password, &[]);
    let r = request_with(
        "POST",
        &server.url("/login"),
        Some(&json!({"login": "hana", "password": password})),
        &[],
    );
    assert_eq!(r.status, 200);
    assert!(!r.text.contains(password));
    let cookie_token = r
        .set_cookie
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_owned();
    let wrong = request_with(
        "POST",
        &server.url("/login"),
        Some(&json!({"login": "hana", "password": "Zebra-wrong-99"})),
        &[],
    );
    assert!(!wrong.text.contains("Zebra-wrong-99"));
    let manager_token = server.manager_token.clone();
    let manager_password = server
        .stdout()
        .lines()
        .find(|l| l.contains("password (shown once"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    server.terminate();
    let mut stored = Vec::new();
    for name in ["wendelin.sqlite", "wendelin.sqlite-wal"] {
        if let Ok(bytes) = std::fs::read(data.join(name)) {
            stored.extend(bytes);
        }
    }
    assert!(stored.len() > 10_000);
    let contains = |needle: &str| stored.windows(needle.len()).any(|w| w == needle.as_bytes());
    for secret in [
        password,
        "Zebra-wrong-99",
        manager_password.as_str(),
        manager_token.as_str(),
        cookie_token.as_str(),
    ] {
        assert!(
            !contains(secret),
            "a secret is stored in clear in the database"
        );
        assert!(
            !server.stderr().contains(secret),
            "a secret appears in the log"
        );
    }
    assert!(contains("$argon2id$"), "password hashes are argon2id");
    assert!(
        server.stderr().contains("login"),
        "the log does record logins"
    );
}

/// HTTP Basic on every request (as fluent-plugin-wendelin sends it) is verified once and
/// then remembered, but only for the same password and only until the password changes.
#[test]
fn basic_credentials_are_remembered_only_while_the_password_stands() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "fluent", "first-password-1", &["Author"]);
    let basic = |password: &str| {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("fluent:{password}"))
        );
        request_with(
            "GET",
            &server.url("/api/v1/me"),
            None,
            &[("Authorization", &value)],
        )
    };
    for _ in 0..3 {
        let r = basic("first-password-1");
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["login"], "fluent");
    }
    // A remembered success does not let another password through.
    assert_eq!(basic("first-password-2").status, 401);
    let (ok, _, err) = run_cli(
        &["user", "passwd", "fluent", "--password-stdin"],
        &server.cli_env(),
        "second-password-1\n",
    );
    assert!(ok, "{err}");
    assert_eq!(
        basic("first-password-1").status,
        401,
        "the old password is over"
    );
    assert_eq!(basic("second-password-1").status, 200);
}

#[test]
fn stream_and_array_data_planes_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    add_user(&server, "bob", "bob-password-1", &["Author"]);
    let bob = login(&server, "bob", "bob-password-1");
    let stream = server
        .req(
            "POST",
            "/api/v1/data_stream_module",
            Some(&json!({"title": "s"})),
        )
        .json()["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let array = server
        .req(
            "POST",
            "/api/v1/data_array_module",
            Some(&json!({"portal_type": "Data Array", "dtype": "float64", "shape": [0]})),
        )
        .json()["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = 1.0f64.to_le_bytes();
    // (read stream, read array, write stream, write array) as one caller.
    let answers = |headers: &[(&str, &str)]| {
        let raw = |method: &str, path: String, extra: &[(&str, &str)]| {
            let mut all = headers.to_vec();
            all.extend_from_slice(extra);
            request_raw(
                method,
                &server.url(&path),
                "application/octet-stream",
                &body,
                &all,
            )
            .status
        };
        let size = server
            .req("GET", &format!("/{stream}/getSize"), None)
            .json();
        let at = format!("bytes {size}-{}/*", size.as_u64().unwrap() + 7);
        [
            request_with(
                "GET",
                &server.url(&format!("/api/v1/{stream}/data")),
                None,
                headers,
            )
            .status,
            request_with(
                "GET",
                &server.url(&format!("/api/v1/{array}/read")),
                None,
                headers,
            )
            .status,
            raw(
                "PUT",
                format!("/api/v1/{stream}/data"),
                &[("content-range", &at)],
            ),
            raw(
                "POST",
                format!("/api/v1/{array}/append"),
                &[("x-array-dtype", "float64"), ("x-array-shape", "1")],
            ),
        ]
    };
    let manager = format!("Bearer {}", server.manager_token);
    let cookie = [("Cookie", bob.0.as_str()), ("X-CSRF-Token", bob.1.as_str())];
    // Anonymous and an Author who may not View the drafts: not found, both alike.
    assert_eq!(answers(&[]), [404, 404, 404, 404]);
    assert_eq!(answers(&cookie), [404, 404, 404, 404]);
    // Given Auditor (View, no Modify) on both: reads go, writes are forbidden, alike.
    for path in [&stream, &array] {
        let r = server.req(
            "POST",
            &format!("/api/v1/{path}/setLocalRoles"),
            Some(&json!({"principal": "user:bob", "roles": ["Auditor"]})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let [read_s, read_a, write_s, write_a] = answers(&cookie);
    assert_eq!((read_s, read_a), (200, 200));
    assert_eq!((write_s, write_a), (403, 403));
    // The manager reads and writes both.
    let [read_s, read_a, write_s, write_a] = answers(&[("Authorization", manager.as_str())]);
    assert_eq!((read_s, read_a), (200, 200));
    assert!(
        [200, 308].contains(&write_s) && write_a == 200,
        "{write_s} {write_a}"
    );
}
