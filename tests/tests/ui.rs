//! The admin UI over plain HTTP (what needs no browser): login redirects, escaping of
//! titles on every page, CSRF on every form post, error pages, validation and conflicts,
//! cache-busted static files, the page cache (never stale, never shared, across two
//! processes), its single flight (concurrent misses render once), listbox columns declared by the type, the upload field. The browser walkthrough is in `browser.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wendelin_tests::{add_user, postgres, request_raw, request_with, Reply, TestServer};

/// A logged-in browser: its session cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

fn login(server: &TestServer, login: &str, password: &str) -> Browser {
    let (cookie, csrf) = wendelin_tests::login(server, login, password);
    Browser { cookie, csrf }
}

fn encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    fn get(&self, server: &TestServer, path: &str) -> Reply {
        request_with(
            "GET",
            &server.url(path),
            None,
            &[("Cookie", self.cookie.as_str())],
        )
    }
    /// Posts a form; `with_csrf` adds the session's token as the pages do.
    fn post(
        &self,
        server: &TestServer,
        path: &str,
        pairs: &[(&str, &str)],
        with_csrf: bool,
    ) -> Reply {
        let mut all: Vec<(&str, &str)> = pairs.to_vec();
        if with_csrf {
            all.push(("csrf_token", self.csrf.as_str()));
        }
        request_raw(
            "POST",
            &server.url(path),
            "application/x-www-form-urlencoded",
            encode(&all).as_bytes(),
            &[("Cookie", self.cookie.as_str())],
        )
    }
}

const XSS: &str = "<script>alert(1)</script>";

fn assert_escaped(r: &Reply, page: &str) {
    assert!(
        r.content_type.starts_with("text/html"),
        "{page}: {}",
        r.content_type
    );
    assert!(
        r.text.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{page} does not show the title as text:\n{}",
        r.text
    );
    assert!(!r.text.contains(XSS), "{page} renders the title as markup");
}

#[test]
fn ui_login_redirect_and_escaped_titles_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "alice", "alice-password-1", &["Author"]);

    let anon = request_with("GET", &server.url("/ui/data_stream_module?q=x"), None, &[]);
    assert_eq!(anon.status, 303);
    assert_eq!(
        anon.location.as_deref(),
        Some("/login?came_from=%2Fui%2Fdata_stream_module%3Fq%3Dx")
    );
    let page = request_with("GET", &server.url("/login"), None, &[]);
    assert!(page.text.contains("value=\"/ui/\""), "{}", page.text);

    let alice = login(&server, "alice", "alice-password-1");
    let r = alice.post(
        &server,
        "/ui/data_stream_module/+add",
        &[
            ("portal_type", "Data Stream"),
            ("title", XSS),
            ("reference", "s1"),
        ],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.location.as_deref(), Some("/ui/data_stream_module/1"));
    assert!(r
        .set_cookie
        .as_deref()
        .unwrap()
        .starts_with("wendelin_flash="));
    // A relation to it, so its title also shows on another document's pages.
    let r = alice.post(
        &server,
        "/ui/data_array_module/+add",
        &[
            ("portal_type", "Data Array"),
            ("title", "array"),
            ("source", "data_stream_module/1"),
            ("shape", "[10, 3]"),
        ],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    let array = server
        .req("GET", "/api/v1/data_array_module/1", None)
        .json();
    assert_eq!(array["source"], "data_stream_module/1");
    assert_eq!(array["shape"], json!([10, 3]));

    for page in [
        "/ui/",
        "/ui/data_stream_module",
        "/ui/data_stream_module?q=alert",
        "/ui/data_stream_module?f_title=script&sort_on=title&sort_order=desc",
        "/ui/data_stream_module/1",
        "/ui/data_stream_module/1/+edit",
        "/ui/data_stream_module/1/+history",
        "/ui/data_stream_module/1/+roles",
        "/ui/data_stream_module/1/+relations",
        "/ui/data_stream_module/1/+module",
        "/ui/data_array_module/1",
        "/ui/data_array_module/1/+relations",
        "/ui/+pick?field=source&source=script",
    ] {
        let r = alice.get(&server, page);
        assert_eq!(r.status, 200, "{page}: {}", r.text);
        if page == "/ui/" {
            assert!(r.text.contains("Data Streams"));
            continue;
        }
        if page == "/ui/data_stream_module?q=alert" {
            // Full-text indexing is asynchronous; the filtered page must escape anyway.
            assert!(!r.text.contains(XSS));
            continue;
        }
        assert_escaped(&r, page);
    }
    // The module's own view (a data stream's size) is a tab too.
    let r = alice.get(&server, "/ui/data_stream_module/1/+module");
    assert!(r.text.contains("<span id=\"size\">0</span>"), "{}", r.text);
    assert!(
        r.text.contains("/+module\" aria-current=\"page\""),
        "{}",
        r.text
    );
    // The listbox counts exactly and pages.
    for i in 0..3 {
        let title = format!("stream {i}");
        let r = alice.post(
            &server,
            "/ui/data_stream_module/+add",
            &[("portal_type", "Data Stream"), ("title", &title)],
            true,
        );
        assert_eq!(r.status, 303);
    }
    let r = alice.get(&server, "/ui/data_stream_module?size=20");
    assert!(r.text.contains("1–4 of 4"), "{}", r.text);
    let r = alice.get(
        &server,
        "/ui/data_stream_module?f_title=stream&sort_on=title&sort_order=desc",
    );
    assert!(r.text.contains("1–3 of 3"), "{}", r.text);
    let first = r.text.find("stream 2").unwrap();
    assert!(
        first < r.text.find("stream 0").unwrap(),
        "descending title order"
    );
    let bad = alice.get(&server, "/ui/data_stream_module?q=title:(");
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("class=\"error\""), "{}", bad.text);
}

#[test]
fn ui_forms_need_the_csrf_token_and_report_errors_in_the_layout_sqlite() {
    forms_case(None);
}

#[test]
fn ui_forms_need_the_csrf_token_and_report_errors_in_the_layout_postgres() {
    if let Some(pg) = postgres() {
        forms_case(Some(pg.new_database()));
    }
}

fn forms_case(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), database_url);
    add_user(&server, "alice", "alice-password-1", &["Author"]);
    add_user(&server, "bob", "bob-password-12", &[]);
    let alice = login(&server, "alice", "alice-password-1");
    let r = alice.post(
        &server,
        "/ui/data_stream_module/+add",
        &[("portal_type", "Data Stream"), ("title", "boiler")],
        true,
    );
    assert_eq!(r.status, 303);

    // Without the token, or with another one, nothing is written.
    for token in [None, Some("0000")] {
        let mut pairs = vec![("serial", "1"), ("title", "hacked")];
        if let Some(t) = token {
            pairs.push(("csrf_token", t));
        }
        let r = alice.post(&server, "/ui/data_stream_module/1/+edit", &pairs, false);
        assert_eq!(r.status, 403, "{}", r.text);
        assert!(r.content_type.starts_with("text/html"));
        assert!(r.text.contains("CSRF"), "{}", r.text);
        let r = alice.post(
            &server,
            "/ui/data_stream_module/1/+fire",
            &[("transition", "validate")],
            false,
        );
        assert_eq!(r.status, 403);
    }
    let doc = server
        .req("GET", "/api/v1/data_stream_module/1", None)
        .json();
    assert_eq!(doc["title"], "boiler");
    assert_eq!(doc["serial"], 1);

    // A value of the wrong type (an Image's width): 422, the message next to its field,
    // nothing written.
    let r = alice.post(
        &server,
        "/ui/image_module/+add",
        &[
            ("portal_type", "Image"),
            ("title", "photo"),
            ("width", "640"),
        ],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    let r = alice.post(
        &server,
        "/ui/image_module/1/+edit",
        &[("serial", "1"), ("title", "renamed"), ("width", "abc")],
        true,
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("id=\"err-width\""), "{}", r.text);
    assert!(r.text.contains("value=\"abc\""), "the typed text is kept");
    let image = server.req("GET", "/api/v1/image_module/1", None).json();
    assert_eq!(image["serial"], 1);
    assert_eq!(image["title"], "photo");

    // A save based on an old serial: 409 showing the stored value.
    let r = alice.post(
        &server,
        "/ui/data_stream_module/1/+edit",
        &[("serial", "1"), ("description", "first")],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    let r = alice.post(
        &server,
        "/ui/data_stream_module/1/+edit",
        &[("serial", "1"), ("description", "second")],
        true,
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("class=\"conflict\""), "{}", r.text);
    assert!(r.text.contains("Stored now: <q>first</q>"), "{}", r.text);
    assert!(
        r.text.contains("name=\"serial\" value=\"2\""),
        "next save is based on serial 2"
    );

    // Transitions: a wrong one is a message, a right one changes the state.
    let r = alice.post(
        &server,
        "/ui/data_stream_module/1/+fire",
        &[("transition", "invalidate")],
        true,
    );
    assert_eq!(r.status, 303);
    let flash = r.set_cookie.unwrap();
    assert!(flash.starts_with("wendelin_flash="), "{flash}");
    let page = request_with(
        "GET",
        &server.url("/ui/data_stream_module/1"),
        None,
        &[(
            "Cookie",
            &format!("{}; {}", alice.cookie, flash.split(';').next().unwrap()),
        )],
    );
    assert!(page.text.contains("class=\"flash error\""), "{}", page.text);
    let r = alice.post(
        &server,
        "/ui/data_stream_module/1/+fire",
        &[("transition", "validate"), ("comment", "ok")],
        true,
    );
    assert_eq!(r.status, 303);
    let wf = server
        .req("GET", "/api/v1/data_stream_module/1/workflows", None)
        .json();
    assert_eq!(wf["workflows"][0]["state"], "validated");

    // Error pages are HTML in the layout: 403 (validated: its owner may not edit), 404.
    let r = alice.get(&server, "/ui/data_stream_module/1/+edit");
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("class=\"error-page\"") && r.text.contains("Forbidden"));
    let r = alice.get(&server, "/ui/data_stream_module/99");
    assert_eq!(r.status, 404);
    assert!(r.text.contains("class=\"error-page\""));
    let r = alice.get(&server, "/ui/data_stream_module/1/+nothing");
    assert_eq!(r.status, 404);
    // Bob may not see it: the same 404 as for a missing document.
    let bob = login(&server, "bob", "bob-password-12");
    let r = bob.get(&server, "/ui/data_stream_module/1");
    assert_eq!(r.status, 404);
    assert!(!r.text.contains("boiler"));
    let r = bob.post(
        &server,
        "/ui/data_stream_module/+bulk",
        &[
            ("transition", "invalidate"),
            ("path", "data_stream_module/1"),
        ],
        true,
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        server
            .req("GET", "/api/v1/data_stream_module/1/workflows", None)
            .json()["workflows"][0]["state"],
        "validated"
    );
    // Local roles: only for those with Change local roles.
    let r = bob.post(
        &server,
        "/ui/data_stream_module/1/+roles",
        &[("principal", "bob"), ("role", "Manager")],
        true,
    );
    assert_eq!(r.status, 404);
}

#[test]
fn static_files_are_cache_busted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "alice", "alice-password-1", &[]);
    let alice = login(&server, "alice", "alice-password-1");
    let home = alice.get(&server, "/ui/");
    for (name, ext) in [("wendelin", "css"), ("htmx.min", "js"), ("wendelin", "js")] {
        let prefix = format!("/static/{name}.");
        let url = home
            .text
            .match_indices(&prefix)
            .map(|(start, _)| {
                let end = start + home.text[start..].find('"').unwrap();
                &home.text[start..end]
            })
            .find(|u| u.ends_with(&format!(".{ext}")))
            .unwrap_or_else(|| panic!("{prefix}….{ext} linked"));
        assert_eq!(
            url.len(),
            prefix.len() + 16 + 1 + ext.len(),
            "{url} has a 16-digit hash"
        );
        let r = request_with("GET", &server.url(url), None, &[]);
        assert_eq!(r.status, 200, "{url}");
        let r = ureq::get(&server.url(url)).call().unwrap();
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{url}"
        );
    }
    let plain = ureq::get(&server.url("/static/wendelin.css"))
        .call()
        .unwrap();
    assert_eq!(plain.header("cache-control"), Some("no-cache"));
    let etag = plain.header("etag").unwrap().to_owned();
    let again = ureq::get(&server.url("/static/wendelin.css"))
        .set("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(again.status(), 304);
    let r = request_with(
        "GET",
        &server.url("/static/wendelin.0000000000000000.css"),
        None,
        &[],
    );
    assert_eq!(r.status, 404);
}

/// Pages are cached per session while the database's change generation is unchanged:
/// after every committed change — in this process or in another one on the same
/// database — the next page shows it, and a user never gets a page of someone else.
#[test]
fn ui_page_cache_is_never_stale_and_never_shared() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in wendelin_tests::backends(dir.path()) {
        page_cache_case(&dir.path().join(backend), url);
    }
}

fn page_cache_case(dir: &std::path::Path, database_url: String) {
    // Two processes on one database, as a multi-process deployment runs.
    let one = TestServer::start(&dir.join("one"), Some(database_url.clone()));
    let two = TestServer::start(&dir.join("two"), Some(database_url));
    add_user(&one, "alice", "alice-password-1", &["Author"]);
    add_user(&one, "bob", "bob-password-12", &["Author"]);
    let alice = login(&one, "alice", "alice-password-1");
    let bob = login(&one, "bob", "bob-password-12");
    for title in ["alpha-one", "beta-two"] {
        let r = alice.post(
            &one,
            "/ui/data_stream_module/+add",
            &[("portal_type", "Data Stream"), ("title", title)],
            true,
        );
        assert_eq!(r.status, 303, "{}", r.text);
    }
    let listbox = "/ui/data_stream_module";
    let view = "/ui/data_stream_module/1";
    let shows = |b: &Browser, server: &TestServer, path: &str, text: &str| -> bool {
        let r = b.get(server, path);
        assert!(r.status == 200 || r.status == 404, "{path}: {}", r.status);
        r.status == 200 && r.text.contains(text)
    };
    // Each page twice: the second answer may come from the cache.
    for _ in 0..2 {
        for server in [&one, &two] {
            assert!(shows(&alice, server, listbox, "alpha-one"));
            assert!(shows(&alice, server, view, "alpha-one"));
            assert!(shows(&alice, server, "/ui/", "Data Streams"));
            // bob's pages never show alice's drafts, nor alice's login.
            let r = bob.get(server, listbox);
            assert_eq!(r.status, 200);
            assert!(!r.text.contains("alpha-one"), "{}", r.text);
            assert!(!r.text.contains("alice"), "{}", r.text);
            assert!(r.text.contains(&bob.csrf), "bob's page carries bob's token");
            assert!(!r.text.contains(&alice.csrf));
            assert_eq!(bob.get(server, view).status, 404);
        }
    }

    // A title changed in process one (UI form) is on the next page of both processes.
    let r = alice.post(
        &one,
        "/ui/data_stream_module/1/+edit",
        &[("serial", "1"), ("title", "alpha-renamed")],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    for server in [&one, &two] {
        assert!(shows(&alice, server, listbox, "alpha-renamed"));
        assert!(!shows(&alice, server, listbox, "alpha-one"));
        assert!(shows(&alice, server, view, "alpha-renamed"));
    }
    // Changed through the JSON API of process two: process one shows it at once.
    let r = two.req(
        "PATCH",
        "/api/v1/data_stream_module/1",
        Some(&json!({"serial": 2, "title": "alpha-api"})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    for server in [&one, &two] {
        assert!(
            shows(&alice, server, listbox, "alpha-api"),
            "{}",
            server.base
        );
        assert!(shows(&alice, server, view, "alpha-api"), "{}", server.base);
    }

    // A local role given in process one: bob sees the document in both processes...
    let r = alice.post(
        &one,
        "/ui/data_stream_module/1/+roles",
        &[("principal", "bob"), ("role", "Assignee")],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    for server in [&one, &two] {
        assert!(shows(&bob, server, listbox, "alpha-api"), "{}", server.base);
        assert!(shows(&bob, server, view, "alpha-api"), "{}", server.base);
        assert!(!shows(&bob, server, listbox, "beta-two"));
    }
    // ...and, removed in process two, no longer in either.
    let r = alice.post(
        &two,
        "/ui/data_stream_module/1/+roles",
        &[("principal", "bob")],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    for server in [&one, &two] {
        let r = bob.get(server, listbox);
        assert_eq!(r.status, 200);
        assert!(!r.text.contains("alpha-api"), "{}: {}", server.base, r.text);
        assert_eq!(bob.get(server, view).status, 404, "{}", server.base);
    }

    // A workflow transition changes the state shown at once.
    for server in [&one, &two] {
        assert!(!shows(
            &alice,
            server,
            "/ui/data_stream_module/2",
            "Validated"
        ));
    }
    let r = alice.post(
        &one,
        "/ui/data_stream_module/2/+fire",
        &[("transition", "validate")],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    for server in [&one, &two] {
        assert!(shows(
            &alice,
            server,
            "/ui/data_stream_module/2",
            "Validated"
        ));
    }

    // A logout through process two ends the session in both at once: neither the
    // session nor its pages are served from memory any more.
    for server in [&one, &two] {
        assert!(shows(&alice, server, listbox, "alpha-api"));
    }
    let r = request_raw(
        "POST",
        &two.url("/logout"),
        "application/x-www-form-urlencoded",
        encode(&[("csrf_token", alice.csrf.as_str())]).as_bytes(),
        &[("Cookie", alice.cookie.as_str())],
    );
    assert_eq!(r.status, 303, "{}", r.text);
    for server in [&one, &two] {
        let r = alice.get(server, listbox);
        assert_eq!(
            r.status, 303,
            "{}: logged out, to the login page",
            server.base
        );
    }
}

/// What `n` concurrent GETs of `path` by `b` answered: (X-Page-Cache header, body) each.
fn concurrent_gets(server: &TestServer, b: &Browser, path: &str, n: usize) -> Vec<(String, Reply)> {
    let start = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let r = b.get(server, path);
                    let source = r.header("x-page-cache").unwrap_or("none").to_owned();
                    (source, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Requests that miss the same page together (right after a write moved the change
/// generation) are rendered once and share it (`X-Page-Cache: shared`), instead of each
/// rendering it at once; a live page (a stream listbox: sizes live outside the database)
/// is shared too, but never kept (never a `hit`).
#[test]
fn concurrent_misses_of_one_page_render_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    add_user(&server, "alice", "alice-password-1", &["Manager"]);
    let alice = login(&server, "alice", "alice-password-1");
    const N: usize = 16;
    let mut live_shared = 0;
    let mut live_misses = 0;
    for round in 0..5 {
        let title = format!("Person-{round}");
        let r = server.req(
            "POST",
            "/api/v1/person_module",
            Some(&json!({ "title": title })),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let answers = concurrent_gets(&server, &alice, "/ui/person_module", N);
        for (source, r) in &answers {
            assert_eq!(r.status, 200, "{}", r.text);
            assert!(
                r.text.contains(&title),
                "round {round}: {source} page is stale"
            );
        }
        let count = |what: &str| answers.iter().filter(|(s, _)| s == what).count();
        assert_eq!(
            count("miss"),
            1,
            "round {round}: one render for {N} requests, got {:?}",
            answers.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>()
        );
        assert_eq!(count("miss") + count("shared") + count("hit"), N);

        let stream = format!("Stream-{round}");
        let r = server.req(
            "POST",
            "/api/v1/data_stream_module",
            Some(&json!({ "title": stream })),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let answers = concurrent_gets(&server, &alice, "/ui/data_stream_module", N);
        for (source, r) in &answers {
            assert_eq!(r.status, 200, "{}", r.text);
            assert!(
                r.text.contains(&stream),
                "round {round}: {source} page is stale"
            );
            assert!(
                source == "miss" || source == "shared",
                "a live page is never kept: {source}"
            );
        }
        live_shared += answers.iter().filter(|(s, _)| s == "shared").count();
        live_misses += answers.iter().filter(|(s, _)| s == "miss").count();
    }
    assert!(
        live_shared > 0 && live_misses < 5 * N,
        "live pages are shared: {live_misses} renders, {live_shared} shared"
    );
}

/// A page is never served stale after a write that changes it, while other requests keep
/// rendering, sharing and caching it: every GET that starts after a write returned (in
/// the other process, on the same database) shows the write, whether it was a hit, a
/// shared render or its own.
#[test]
fn pages_are_never_stale_after_a_write_in_another_process_under_load() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in wendelin_tests::backends(dir.path()) {
        never_stale_under_load_case(&dir.path().join(backend), url);
    }
}

fn never_stale_under_load_case(dir: &std::path::Path, database_url: String) {
    let one = TestServer::start(&dir.join("one"), Some(database_url.clone()));
    let two = TestServer::start(&dir.join("two"), Some(database_url));
    add_user(&one, "alice", "alice-password-1", &["Manager"]);
    let alice = login(&one, "alice", "alice-password-1");
    let r = two.req(
        "POST",
        "/api/v1/person_module",
        Some(&json!({"title": "version-0"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.json()["path"].as_str().unwrap().to_owned();
    let pages = [format!("/ui/{path}"), "/ui/person_module".to_owned()];
    with_readers(&one, &alice, &pages, || {
        for version in 1..=8 {
            let title = format!("version-{version}");
            let r = two.req(
                "PATCH",
                &format!("/api/v1/{path}"),
                Some(&json!({"serial": version, "title": title})),
            );
            assert_eq!(r.status, 200, "{}", r.text);
            for page in &pages {
                for (source, r) in concurrent_gets(&one, &alice, page, 8) {
                    assert_eq!(r.status, 200, "{page}: {}", r.text);
                    assert!(
                        r.text.contains(&title),
                        "{page} ({source}) does not show {title}"
                    );
                }
                assert!(alice.get(&two, page).text.contains(&title));
            }
        }
    });
}

/// Runs `f` while two threads per page keep GETting `pages` from `server` as `b` (hits,
/// shared renders and misses all along), until `f` returns or fails.
fn with_readers(server: &TestServer, b: &Browser, pages: &[String], f: impl FnOnce()) {
    /// Stops the readers when `f` ends, failed assertions included (the scope waits for
    /// them).
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for page in pages {
            for _ in 0..2 {
                let stop = &stop;
                scope.spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if b.get(server, page).status != 200 {
                            break;
                        }
                    }
                });
            }
        }
        let _stop = Stop(&stop);
        f();
    });
}

/// A live page (a stream listbox: sizes are read from the streams, and an append moves no
/// generation) shared between concurrent requests never predates one of them: after each
/// append returned, every GET shows the new size, while readers keep the page in flight.
#[test]
fn a_shared_live_page_is_never_older_than_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    add_user(&server, "alice", "alice-password-1", &["Manager"]);
    let alice = login(&server, "alice", "alice-password-1");
    let r = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "Kessel-88"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.json()["path"].as_str().unwrap().to_owned();
    let listbox = "/ui/data_stream_module".to_owned();
    with_readers(&server, &alice, std::slice::from_ref(&listbox), || {
        for size in 1..=8usize {
            let r = request_raw(
                "PUT",
                &server.url(&format!("/api/v1/{path}/data")),
                "application/octet-stream",
                b"x",
                &[
                    ("Authorization", &format!("Bearer {}", server.manager_token)),
                    (
                        "Content-Range",
                        &format!("bytes {}-{}/*", size - 1, size - 1),
                    ),
                ],
            );
            assert!(r.status == 200 || r.status == 308, "{}", r.text);
            for (source, page) in concurrent_gets(&server, &alice, &listbox, 8) {
                let row = page
                    .text
                    .split("<tr")
                    .find(|r| r.contains("Kessel-88"))
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    row.contains(&format!("<td>{size}</td>")),
                    "{source} page older than the append of byte {size}: {row}"
                );
            }
        }
    });
}

/// A listbox shows the columns its portal type declares, in their order, each sortable
/// and filterable.
#[test]
fn ui_listbox_columns_are_declared_by_the_portal_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "alice", "alice-password-1", &["Author"]);
    let alice = login(&server, "alice", "alice-password-1");
    for (title, reference) in [("boiler", "b-1"), ("chiller", "c-2")] {
        let r = alice.post(
            &server,
            "/ui/data_stream_module/+add",
            &[
                ("portal_type", "Data Stream"),
                ("title", title),
                ("reference", reference),
            ],
            true,
        );
        assert_eq!(r.status, 303, "{}", r.text);
    }
    let r = alice.get(&server, "/ui/data_stream_module");
    assert_eq!(r.status, 200, "{}", r.text);
    // Data Stream declares title, reference, owner, validation state, modification date.
    let at = |key: &str| r.text.find(&format!("name=\"f_{key}\""));
    let positions: Vec<Option<usize>> = [
        "title",
        "reference",
        "owner",
        "validation_state",
        "modification_date",
    ]
    .iter()
    .map(|k| at(k))
    .collect();
    assert!(positions.iter().all(Option::is_some), "{}", r.text);
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(at("id"), None, "no undeclared column");
    assert_eq!(at("content_type"), None, "no undeclared column");
    assert!(r.text.contains("<td>alice</td>"), "owner cell: {}", r.text);
    // Sorted and filtered by a declared column.
    let r = alice.get(
        &server,
        "/ui/data_stream_module?sort_on=reference&sort_order=desc&f_owner=alice",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (c, b) = (
        r.text.find(">chiller<").unwrap(),
        r.text.find(">boiler<").unwrap(),
    );
    assert!(
        c < b,
        "c-2 before b-1 in descending reference order: {}",
        r.text
    );
    let r = alice.get(&server, "/ui/data_stream_module?f_owner=nobody");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains(">boiler<"), "{}", r.text);
}

/// A type that holds a file (Data Stream) gets an upload field on its edit form, which
/// appends through the module's endpoint with the session and its CSRF token (what the
/// page's script sends), and its module tab shows the size and a download link.
#[test]
fn ui_file_upload_field_and_module_tab() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    add_user(&server, "alice", "alice-password-1", &["Author"]);
    let alice = login(&server, "alice", "alice-password-1");
    let r = alice.post(
        &server,
        "/ui/data_stream_module/+add",
        &[("portal_type", "Data Stream"), ("title", "upload me")],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    let r = alice.get(&server, "/ui/data_stream_module/1/+edit");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text
            .contains("data-upload=\"/api/v1/data_stream_module/1/data\" data-size=\"0\""),
        "{}",
        r.text
    );
    assert!(r.text.contains("<input type=\"file\" id=\"upload-file\""));
    // A Data Notebook holds no file served by a module: no upload field.
    let r = alice.post(
        &server,
        "/ui/data_notebook_module/+add",
        &[("portal_type", "Data Notebook"), ("title", "notes")],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.text);
    let r = alice.get(&server, "/ui/data_notebook_module/1/+edit");
    assert_eq!(r.status, 200);
    assert!(!r.text.contains("data-upload"), "{}", r.text);

    let put = |csrf: Option<&str>, range: &str, body: &[u8]| {
        let mut headers = vec![("Cookie", alice.cookie.as_str()), ("Content-Range", range)];
        if let Some(t) = csrf {
            headers.push(("X-CSRF-Token", t));
        }
        request_raw(
            "PUT",
            &server.url("/api/v1/data_stream_module/1/data"),
            "application/octet-stream",
            body,
            &headers,
        )
    };
    // Without the CSRF token (another site's script): refused, nothing appended.
    let r = put(None, "bytes 0-4/5", b"hello");
    assert_eq!(r.status, 403, "{}", r.text);
    let r = put(Some(&alice.csrf), "bytes 0-4/5", b"hello");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = put(Some(&alice.csrf), "bytes 5-10/11", b" world");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = alice.get(&server, "/ui/data_stream_module/1/+edit");
    assert!(r.text.contains("data-size=\"11\""), "{}", r.text);
    let r = alice.get(&server, "/ui/data_stream_module/1/+module");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("<span id=\"size\">11</span>"), "{}", r.text);
    assert!(r
        .text
        .contains("href=\"/api/v1/data_stream_module/1/data\""));
    let r = alice.get(&server, "/api/v1/data_stream_module/1/data");
    assert_eq!(r.status, 200);
    assert_eq!(r.text, "hello world");

    // The same form without JavaScript: multipart/form-data to +upload.
    let form = |fields: &[(&str, &str)], file: &[u8]| {
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--XB\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            b"--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n",
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n--XB--\r\n");
        request_raw(
            "POST",
            &server.url("/ui/data_stream_module/1/+upload"),
            "multipart/form-data; boundary=XB",
            &body,
            &[("Cookie", alice.cookie.as_str())],
        )
    };
    let csrf = alice.csrf.as_str();
    // No token, a wrong one, a stale offset, no offset, an empty file: refused, unchanged.
    for (fields, file, status, says) in [
        (vec![("at", "11")], &b"!"[..], 403, "CSRF"),
        (
            vec![("csrf_token", "nope"), ("at", "11")],
            b"!",
            403,
            "CSRF",
        ),
        (
            vec![("csrf_token", csrf), ("at", "5")],
            b"!",
            409,
            "holds 11 bytes",
        ),
        (
            vec![("csrf_token", csrf)],
            b"!",
            400,
            "no &#39;at&#39; field",
        ),
        (
            vec![("csrf_token", csrf), ("at", "x")],
            b"!",
            400,
            "byte offset",
        ),
        (
            vec![("csrf_token", csrf), ("at", "11")],
            b"",
            400,
            "not empty",
        ),
    ] {
        let r = form(&fields, file);
        assert_eq!(r.status, status, "{fields:?}: {}", r.text);
        assert!(
            r.text.contains(says),
            "{fields:?} should say {says}: {}",
            r.text
        );
    }
    let r = request_raw(
        "POST",
        &server.url("/ui/data_stream_module/1/+upload"),
        "application/x-www-form-urlencoded",
        encode(&[("csrf_token", csrf), ("at", "11")]).as_bytes(),
        &[("Cookie", alice.cookie.as_str())],
    );
    assert_eq!(r.status, 400, "not multipart: {}", r.text);
    assert_eq!(
        alice.get(&server, "/api/v1/data_stream_module/1/data").text,
        "hello world"
    );
    // The right form appends and goes to the module tab.
    let r = form(&[("csrf_token", csrf), ("at", "11")], b"!\x00\r\n--X\x01");
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        r.location.as_deref(),
        Some("/ui/data_stream_module/1/+module")
    );
    let r = alice.get(&server, "/api/v1/data_stream_module/1/data");
    assert_eq!(
        r.text, "hello world!\0\r\n--X\u{1}",
        "the file's bytes, as sent"
    );
}

#[test]
fn stream_listbox_shows_size_and_last_append_and_is_never_stale_after_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    add_user(&server, "alice", "alice-password-1", &["Manager"]);
    let b = login(&server, "alice", "alice-password-1");
    let r = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "Kessel-77"})),
    );
    let path = r.json()["path"].as_str().unwrap().to_owned();
    let row = |page: &Reply| {
        page.text
            .split("<tr")
            .find(|r| r.contains("Kessel-77"))
            .unwrap_or_default()
            .to_owned()
    };
    let page = b.get(&server, "/ui/data_stream_module");
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("<th scope=\"col\">Size</th>"),
        "{}",
        page.text
    );
    assert!(page.text.contains("<th scope=\"col\">Last append</th>"));
    assert!(row(&page).contains("<td>0</td>"), "{}", row(&page));
    // Appends change no database row: the listbox must not come from the page cache.
    for (bytes, size) in [(b"12345".as_slice(), 5), (b"6789012".as_slice(), 12)] {
        let at = size - bytes.len();
        let r = request_raw(
            "PUT",
            &server.url(&format!("/api/v1/{path}/data")),
            "application/octet-stream",
            bytes,
            &[
                ("Authorization", &format!("Bearer {}", server.manager_token)),
                ("Content-Range", &format!("bytes {at}-{}/*", size - 1)),
            ],
        );
        assert!(r.status == 200 || r.status == 308, "{}", r.text);
        let page = b.get(&server, "/ui/data_stream_module");
        let row = row(&page);
        assert!(row.contains(&format!("<td>{size}</td>")), "{row}");
        assert!(row.contains("<td>20"), "a last-append date: {row}");
    }
}

#[test]
fn add_ingestion_policy_in_the_ui_provisions_it_like_add_ingestion_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    add_user(&server, "alice", "alice-password-1", &["Manager"]);
    let b = login(&server, "alice", "alice-password-1");
    let form = b.get(
        &server,
        "/ui/portal_ingestion_policies/+add?type=Ingestion+Policy",
    );
    assert_eq!(form.status, 200, "{}", form.text);
    for field in [
        "reference",
        "product",
        "operation",
        "tag_parser",
        "accepted_logins",
    ] {
        assert!(
            form.text.contains(&format!("name=\"{field}\"")),
            "{field}: {}",
            form.text
        );
    }
    assert!(
        !form.text.contains("name=\"id\""),
        "the reference is the id"
    );
    // A bad operation is shown on the form, and nothing is created.
    let bad = [
        ("portal_type", "Ingestion Policy"),
        ("reference", "plant"),
        ("operation", "zip"),
    ];
    let r = b.post(&server, "/ui/portal_ingestion_policies/+add", &bad, true);
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("zip"), "{}", r.text);
    assert_eq!(
        server
            .req("GET", "/api/v1/portal_ingestion_policies/plant", None)
            .status,
        404
    );
    let good = [
        ("portal_type", "Ingestion Policy"),
        ("reference", "plant"),
        ("title", "Plant A"),
        ("product", "temp"),
        ("operation", "json-lines"),
        ("tag_parser", "default"),
        ("accepted_logins", "[\"feeder\"]"),
    ];
    let r = b.post(&server, "/ui/portal_ingestion_policies/+add", &good, true);
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        r.location.as_deref(),
        Some("/ui/portal_ingestion_policies/plant")
    );
    let policy = server
        .req("GET", "/api/v1/portal_ingestion_policies/plant", None)
        .json();
    assert_eq!(policy["title"], "Plant A");
    assert_eq!(policy["accepted_logins"], json!(["feeder"]));
    assert_eq!(policy["data_supply"], json!(["data_supply_module/plant"]));
    assert_eq!(
        policy["data_operation"],
        "data_operation_module/DataIngestion_appendJsonLines"
    );
    let supply = server
        .req("GET", "/api/v1/data_supply_module/plant", None)
        .json();
    assert_eq!(supply["resource"], "data_product_module/temp");
    let states = server.req(
        "GET",
        "/api/v1/portal_ingestion_policies/plant/workflows",
        None,
    );
    assert!(states.text.contains("\"validated\""), "{}", states.text);
    // It ingests: the same policy the CLI and addIngestionPolicy make.
    let r = request_raw(
        "POST",
        &server.url("/api/v1/ingest/plant/boiler.temp"),
        "application/x-ndjson",
        b"{\"t\": 1}\n",
        &[("Authorization", &format!("Bearer {}", server.manager_token))],
    );
    assert_eq!(r.status, 200, "{}", r.text);
}
