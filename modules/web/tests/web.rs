//! Web sites end to end: publication (drafts are the 404 of a missing page for visitors,
//! previewed by their authors), versions and languages, sections and their listings,
//! escaping, CSS assets at hashed URLs, ETag/304 and the page cache invalidated by an
//! edit in another process, tera limits and errors, decimation of Data Arrays and the
//! charts of arrays a site publishes, and the Clone action.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use wendelin_tests::{add_user, login, request_with, with_cookie, Reply, TestServer};

fn page(s: &TestServer, reference: &str, content_type: &str, title: &str, body: &str) -> String {
    s.create(
        "web_page_module",
        json!({"portal_type": "Web Page", "title": title, "page_reference": reference,
               "content_type": content_type, "text_content": body}),
    )
}

fn anon(s: &TestServer, path: &str) -> Reply {
    s.anon("GET", path, None)
}

const LISTING: &str = r#"<ul>{% for d in search(query='portal_type:"Web Page"', limit=50) %}<li>{{ d.title }}</li>{% endfor %}</ul><p>{{ page.title }}</p>"#;

#[test]
fn publication_versions_sections_and_escaping() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in wendelin_tests::backends(dir.path()) {
        println!("backend: {backend}");
        let s = TestServer::start(&dir.path().join(backend), Some(url));
        publication(&s);
    }
}

fn publication(s: &TestServer) {
    s.create(
        "web_site_module",
        json!({"portal_type": "Web Site", "id": "demo", "title": "Demo site",
               "front_page": "home", "stylesheet": "theme"}),
    );
    let home = page(s, "home", "text/x-tera", "Home", LISTING);
    let news = page(
        s,
        "news",
        "text/html",
        "<script>alert(1)</script> News",
        "<p>news body</p>",
    );
    let secret = page(s, "secret", "text/html", "Secret draft", "<p>hidden</p>");
    let theme = page(s, "theme", "text/css", "Theme", "body { color: #123456 }");

    // A draft site is the 404 of a missing one.
    let missing = anon(s, "/web/nosuchsite/");
    assert_eq!(missing.status, 404);
    let draft_site = anon(s, "/web/demo/");
    assert_eq!(draft_site.status, 404);
    assert_eq!(draft_site.text, missing.text);
    assert_eq!(anon(s, "/web/demo").status, 301);

    for p in ["web_site_module/demo", &home, &news, &theme] {
        s.fire(p, "publish");
    }
    let front = anon(s, "/web/demo/");
    assert_eq!(front.status, 200, "{}", front.text);
    assert!(front.content_type.starts_with("text/html"));
    let csp = front.header("content-security-policy").unwrap();
    // Sandboxed without allow-same-origin: page scripts cannot act as the visitor.
    assert!(csp.starts_with("sandbox allow-scripts"), "{csp}");
    assert!(!csp.contains("allow-same-origin"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // The listing shows the visitor only published pages, titles escaped (tera escapes `/` too).
    assert!(
        front
            .text
            .contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt; News"),
        "{}",
        front.text
    );
    assert!(!front.text.contains("<script>alert(1)"), "{}", front.text);
    assert!(front.text.contains("<li>Home</li>"), "{}", front.text);
    assert!(!front.text.contains("Secret draft"), "{}", front.text);
    // The manager sees the draft in the listing only in preview.
    let r = s.req("GET", "/web/demo/", None);
    assert!(!r.text.contains("Secret draft"), "{}", r.text);
    let r = s.req("GET", "/web/demo/?preview=1", None);
    assert!(r.text.contains("Secret draft"), "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("private, no-store"));

    // A draft page: the same 404 as a missing one, for anyone without preview.
    let nothing = anon(s, "/web/demo/nothing");
    assert_eq!(nothing.status, 404);
    let hidden = anon(s, "/web/demo/secret");
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.text, nothing.text);
    assert_eq!(anon(s, "/web/demo/secret?preview=1").status, 404);
    assert_eq!(s.req("GET", "/web/demo/secret", None).status, 404);
    let preview = s.req("GET", "/web/demo/secret?preview=1", None);
    assert_eq!(preview.status, 200);
    assert!(preview.text.contains("<p>hidden</p>"));
    let _ = secret;

    // The layout: the site's title, its theme at a hashed, immutable URL.
    let r = anon(s, "/web/demo/news");
    assert_eq!(r.status, 200);
    assert!(r.text.contains("<p>news body</p>"));
    assert!(
        r.text
            .contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; News – Demo site</title>"),
        "{}",
        r.text
    );
    let css_url = r
        .text
        .split("href=\"")
        .find(|p| p.starts_with("/web/demo/_asset/theme."))
        .and_then(|p| p.split('"').next())
        .unwrap_or_else(|| panic!("no theme link: {}", r.text))
        .to_owned();
    let css = anon(s, &css_url);
    assert_eq!(css.status, 200);
    assert!(css.content_type.starts_with("text/css"));
    assert!(css.text.contains("#123456"));
    assert!(css.header("cache-control").unwrap().contains("immutable"));
    assert_eq!(
        anon(s, "/web/demo/_asset/theme.0000000000000000.css").status,
        404
    );
    let plain = anon(s, "/web/demo/theme");
    assert!(
        plain.content_type.starts_with("text/css"),
        "{}",
        plain.content_type
    );

    // Versions: the highest published one is served.
    let v2 = s.create("web_page_module",
        json!({"portal_type": "Web Page", "title": "News v2", "page_reference": "news",
               "version": "2", "content_type": "text/markdown", "text_content": "# Second *edition*"}),
    );
    assert!(anon(s, "/web/demo/news").text.contains("news body"));
    let r = s.req("GET", "/web/demo/news?preview=1", None);
    assert!(
        r.text.contains("<h1>Second <em>edition</em></h1>"),
        "{}",
        r.text
    );
    s.fire(&v2, "publish");
    let r = anon(s, "/web/demo/news");
    assert!(
        r.text.contains("<h1>Second <em>edition</em></h1>"),
        "{}",
        r.text
    );
    // Languages: ?language= picks a translation, else the site's language.
    let fr = s.create(
        "web_page_module",
        json!({"portal_type": "Web Page", "title": "Nouvelles", "page_reference": "news",
               "language": "fr", "text_content": "<p>en français</p>"}),
    );
    s.fire(&fr, "publish");
    assert!(anon(s, "/web/demo/news?language=fr")
        .text
        .contains("en français"));
    assert!(anon(s, "/web/demo/news").text.contains("Second"));
    assert!(anon(s, "/web/demo/news?language=de")
        .text
        .contains("Second"));

    // Sections: a listing by catalog query, published documents only, in the navigation.
    let section = s.create(
        "web_site_module/demo",
        json!({"portal_type": "Web Section", "id": "docs", "title": "Documents",
               "listing": "portal_type:\"Web Page\" AND language:\"en\""}),
    );
    assert_eq!(anon(s, "/web/demo/docs/").status, 404);
    s.fire(&section, "publish");
    let r = anon(s, "/web/demo/docs/");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text
            .contains("<a href=\"/web/demo/docs/news\">News v2</a>"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("Secret draft"), "{}", r.text);
    assert!(!r.text.contains("Nouvelles"), "{}", r.text);
    assert!(anon(s, "/web/demo/")
        .text
        .contains("<a href=\"/web/demo/docs/\">Documents</a>"));
    assert!(anon(s, "/web/demo/docs/news").text.contains("Second"));
    assert_eq!(anon(s, "/web/demo/docs/secret").status, 404);
    assert_eq!(anon(s, "/web/demo/nosection/news").status, 404);

    // A page whose content type is not one of the five is refused.
    let r = s.req(
        "POST",
        "/api/v1/web_page_module",
        Some(&json!({"portal_type": "Web Page", "title": "x", "content_type": "image/svg+xml"})),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text
            .contains("one of text/html, text/markdown, text/x-tera"),
        "{}",
        r.text
    );
    // The declared choices are what the forms offer and what the API describes.
    let form = s.req("GET", "/ui/web_page_module/+add?type=Web%20Page", None);
    assert_eq!(form.status, 200, "{}", form.text);
    assert!(
        form.text.contains("<select id=\"field-content_type\"")
            && form
                .text
                .contains("<option value=\"text/x-tera\">text/x-tera</option>")
            && form
                .text
                .contains("<option value=\"text/html\" selected>text/html</option>"),
        "{}",
        form.text
    );
    let api = s.req("GET", "/api/v1/openapi.json", None).json();
    let schema = &api["components"]["schemas"]["WebPage"]["properties"]["content_type"]["enum"];
    assert_eq!(
        schema,
        &json!([
            "text/html",
            "text/markdown",
            "text/x-tera",
            "text/css",
            "text/javascript"
        ]),
        "{}",
        api["components"]["schemas"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    );
    let r = s.req(
        "POST",
        "/api/v1/web_page_module",
        Some(&json!({"portal_type": "Web Page", "title": "x", "page_reference": "a b"})),
    );
    assert_eq!(r.status, 422, "{}", r.text);

    // Clone: a draft copy of the site with its sections.
    let r = s.req(
        "POST",
        "/api/v1/web_site_module/demo/clone",
        Some(&json!({"id": "demo2", "title": "Demo copy"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["front_page"], "home");
    let r = s.req("GET", "/api/v1/web_site_module/demo2/docs", None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["listing"],
        "portal_type:\"Web Page\" AND language:\"en\""
    );
    assert_eq!(anon(s, "/web/demo2/").status, 404);
    s.fire("web_site_module/demo2", "publish");
    assert!(anon(s, "/web/demo2/").text.contains("Demo copy"));
    let id = home.rsplit('/').next().unwrap();
    let r = s.req("POST", &format!("/api/v1/web_page_module/{id}/clone"), None);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["page_reference"], "home");
    assert_eq!(r.json()["workflow_states"]["publication_workflow"], "draft");
    assert_eq!(
        s.anon("POST", "/api/v1/web_site_module/demo/clone", None)
            .status,
        401
    );
}

#[test]
fn etag_and_cache_invalidation_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let a = TestServer::start(&data, None);
    a.create(
        "web_site_module",
        json!({"portal_type": "Web Site", "id": "s", "title": "S", "front_page": "home"}),
    );
    a.fire("web_site_module/s", "publish");
    let home = page(
        &a,
        "home",
        "text/x-tera",
        "Home",
        "<p>{{ page.title }} one</p>",
    );
    a.fire(&home, "publish");
    let first = anon(&a, "/web/s/");
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("x-page-cache"), Some("miss"));
    let etag = first.header("etag").unwrap().to_owned();
    let again = anon(&a, "/web/s/");
    assert_eq!(again.header("x-page-cache"), Some("hit"));
    assert_eq!(again.text, first.text);
    let head = a.anon("HEAD", "/web/s/", None);
    assert_eq!(head.status, 200);
    assert!(head.text.is_empty());
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    let r = request_with("GET", &a.url("/web/s/"), None, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.text.is_empty());
    // A stale session cookie is an anonymous visitor on a public page, not a 401.
    let r = request_with(
        "GET",
        &a.url("/web/s/"),
        None,
        &[("Cookie", "wendelin_session=expired-or-unknown")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, first.text);

    // A second process on the same database edits the page: the first serves the edit.
    let b = TestServer::start(&data, None);
    let r = b.req("GET", &format!("/api/v1/{home}"), None);
    let serial = r.json()["serial"].as_i64().unwrap();
    let r = b.req(
        "PATCH",
        &format!("/api/v1/{home}"),
        Some(&json!({"serial": serial, "title": "Home edited"})),
    );
    // Published pages are frozen for their owner, not for the manager.
    assert_eq!(r.status, 200, "{}", r.text);
    let after = anon(&a, "/web/s/");
    assert!(after.text.contains("Home edited one"), "{}", after.text);
    assert_eq!(after.header("x-page-cache"), Some("miss"));
    let r = request_with("GET", &a.url("/web/s/"), None, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 200);
    drop(b);
}

#[test]
fn template_limits_errors_and_functions() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with_env(
        &dir.path().join("d"),
        None,
        &[
            ("WENDELIN_WEB_RENDER_TIMEOUT_MS", "300"),
            ("WENDELIN_WEB_MAX_OUTPUT_BYTES", "100000"),
        ],
    );
    s.create(
        "web_site_module",
        json!({"portal_type": "Web Site", "id": "t", "title": "T"}),
    );
    s.fire("web_site_module/t", "publish");
    let make = |reference: &str, body: &str| {
        let p = page(&s, reference, "text/x-tera", reference, body);
        s.fire(&p, "publish");
    };
    make(
        "big",
        "{% for i in range(end=10000) %}xxxxxxxxxxxxxxxxxxxx{% endfor %}",
    );
    make(
        "slow",
        "{% set r = range(end=100) %}{% for a in r %}{% for b in r %}{% for c in r %}{% for d in r %}{% if c == 0 and d == 0 %}.{% endif %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
    );
    // 10^8 turns writing nothing: stopped by the loop's own deadline check.
    make(
        "silent",
        "{% set r = range(end=100) %}{% for a in r %}{% for b in r %}{% for c in r %}{% for d in r %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
    );
    make("broken", "<p>ok</p>\n<p>{{ nope( }}</p>");
    make("unknown", "<p>{{ missing_variable }}</p>");
    make("env", "{{ get_env(name='PATH') }}");
    make(
        "macro",
        "line one\n{% macro f() %}{{ self::f() }}{% endmacro %}",
    );
    make("ranges", "{% for i in range(end=20000) %}{% endfor %}");
    // Deep enough to overflow a render thread's stack (and abort the server) were it
    // not refused first.
    let deep = "{% if true %}".repeat(300) + "x" + &"{% endif %}".repeat(300);
    make("deep", &deep);
    make(
        "doc",
        "{% set d = doc(path='web_site_module/t') %}<b>{{ d.title }}</b>{{ '<i>' }}",
    );

    let author = |p: &str| s.req("GET", &format!("/web/t/{p}"), None);
    let r = author("big");
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.text.contains("max_output_bytes"), "{}", r.text);
    let r = author("slow");
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("render_timeout_ms"), "{}", r.text);
    let started = std::time::Instant::now();
    let r = author("silent");
    assert_eq!(r.status, 503, "{}", r.text);
    // The render itself stopped (the author's page says why), not just the wait for it.
    assert!(r.text.contains("render_timeout_ms"), "{}", r.text);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let r = author("broken");
    assert_eq!(r.status, 500);
    assert!(r.text.contains("2:"), "the line of the error: {}", r.text);
    assert!(r.text.contains("template-error"), "{}", r.text);
    let r = author("unknown");
    assert!(r.text.contains("missing_variable"), "{}", r.text);
    let r = author("env");
    assert!(r.text.contains("get_env is not available"), "{}", r.text);
    assert!(!r.text.contains("/usr/bin"), "{}", r.text);
    let r = author("macro");
    assert!(r.text.contains("line 2"), "{}", r.text);
    let r = author("deep");
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.text.contains("nested deeper than 64"), "{}", r.text);
    let r = author("ranges");
    assert!(r.text.contains("more than 10000"), "{}", r.text);
    // Visitors see a plain page, without the details.
    let plain = anon(&s, "/web/t/broken");
    assert_eq!(plain.status, 500);
    assert!(!plain.text.contains("nope"), "{}", plain.text);
    for p in ["big", "unknown", "env", "macro"] {
        let r = anon(&s, &format!("/web/t/{p}"));
        assert_eq!(r.text, plain.text, "{p}");
    }
    assert_eq!(anon(&s, "/web/t/slow").status, 503);
    // An author sees the error of their own published (so frozen) page; a logged-in
    // reader does not.
    add_user(&s, "alice", "alice-password-1", &["Author"]);
    add_user(&s, "bob", "bob-password-12", &[]);
    let (alice, csrf) = login(&s, "alice", "alice-password-1");
    let r = with_cookie(
        &s,
        "POST",
        "/api/v1/web_page_module",
        Some(
            &json!({"portal_type": "Web Page", "title": "Mine", "page_reference": "mine",
                     "content_type": "text/x-tera", "text_content": "a\nb\n{{ oops( }}"}),
        ),
        &alice,
        Some(&csrf),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let mine = r.json()["path"].as_str().unwrap().to_owned();
    let r = with_cookie(
        &s,
        "POST",
        &format!("/api/v1/{mine}/transitions/publish"),
        Some(&json!({})),
        &alice,
        Some(&csrf),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = with_cookie(&s, "GET", "/web/t/mine", None, &alice, None);
    assert_eq!(r.status, 500);
    assert!(
        r.text.contains("template-error") && r.text.contains("3:"),
        "{}",
        r.text
    );
    let (bob, _) = login(&s, "bob", "bob-password-12");
    let r = with_cookie(&s, "GET", "/web/t/mine", None, &bob, None);
    assert_eq!(r.status, 500);
    assert_eq!(r.text, plain.text);
    // Functions as the visitor; auto-escaping.
    let r = anon(&s, "/web/t/doc");
    assert_eq!(r.status, 200, "{}", author("doc").text);
    assert!(r.text.contains("<b>T</b>&lt;i&gt;"), "{}", r.text);
}

fn append(s: &TestServer, path: &str, values: &[f64]) {
    let r = s.req(
        "POST",
        &format!("/api/v1/{path}/append"),
        Some(&json!({"data": values})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn decimation_and_published_array_charts() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&dir.path().join("d"), None);
    let array = s.create(
        "data_array_module",
        json!({"portal_type": "Data Array", "title": "Signal", "dtype": "float64",
               "shape": [0], "chunk_shape": [64]}),
    );
    let values: Vec<f64> = (0..1000)
        .map(|i| f64::from((i * 37) % 101) - 50.0)
        .collect();
    append(&s, &array, &values);
    let r = s.req("GET", &format!("/api/v1/{array}/decimate?bins=7"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    let j = r.json();
    assert_eq!(j["bins"], 7);
    let x: Vec<u64> = serde_json::from_value(j["x"].clone()).unwrap();
    let lo: Vec<f64> = serde_json::from_value(j["min"].clone()).unwrap();
    let hi: Vec<f64> = serde_json::from_value(j["max"].clone()).unwrap();
    for b in 0..7 {
        let end = if b + 1 < 7 { x[b + 1] } else { 1000 } as usize;
        let part = &values[x[b] as usize..end];
        assert_eq!(lo[b], part.iter().copied().fold(f64::INFINITY, f64::min));
        assert_eq!(
            hi[b],
            part.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
    }
    let r = wendelin_tests::request_with(
        "GET",
        &s.url(&format!(
            "/api/v1/{array}/decimate?bins=10&start=100&stop=105&format=f64"
        )),
        None,
        &[("Authorization", &format!("Bearer {}", s.manager_token))],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-decimate-bins"), Some("5"));
    assert_eq!(r.header("x-array-shape"), Some("1000"));
    assert_eq!(
        s.req("GET", &format!("/api/v1/{array}/decimate?axis=1"), None)
            .status,
        400
    );
    assert_eq!(
        s.req("GET", &format!("/api/v1/{array}/decimate?bins=0"), None)
            .status,
        400
    );
    // The array is not the visitor's.
    assert!(matches!(
        anon(&s, &format!("/api/v1/{array}/decimate")).status,
        401 | 404
    ));

    // A site that publishes the array shows its chart to visitors.
    s.create(
        "web_site_module",
        json!({"portal_type": "Web Site", "id": "lab", "title": "Lab", "front_page": "chart",
               "arrays": [array]}),
    );
    let id = array.rsplit('/').next().unwrap();
    let chart = page(
        &s,
        "chart",
        "text/x-tera",
        "Chart",
        &format!("{{% set a = array(path='{array}') %}}<p>{{{{ a.title }}}} {{{{ a.shape.0 }}}}</p>{{{{ chart(array='{array}', title='<b>Signal</b>', live=2) }}}}"),
    );
    assert_eq!(
        anon(&s, &format!("/web/lab/_arrays/{id}/decimate")).status,
        404
    );
    s.fire("web_site_module/lab", "publish");
    s.fire(&chart, "publish");
    let r = anon(&s, "/web/lab/");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("<p>Signal 1000</p>"), "{}", r.text);
    assert!(
        r.text
            .contains(&format!("data-src=\"/web/lab/_arrays/{id}/decimate\"")),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("data-title=\"&lt;b&gt;Signal&lt;/b&gt;\""),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("/web-static/uPlot.iife.min.js"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("/web-static/wendelin-chart.js"),
        "{}",
        r.text
    );
    // A page reading array shapes is never cached: an append shows at once.
    append(&s, &array, &[1.0, 2.0]);
    assert!(anon(&s, "/web/lab/").text.contains("<p>Signal 1002</p>"));
    let r = anon(&s, &format!("/web/lab/_arrays/{id}/decimate?bins=7"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["shape"], json!([1002]));
    assert_eq!(anon(&s, "/web/lab/_arrays/999/decimate").status, 404);
    for f in [
        "uPlot.iife.min.js",
        "uPlot.min.css",
        "wendelin-chart.js",
        "uPlot.LICENSE",
    ] {
        let r = anon(&s, &format!("/web-static/{f}"));
        assert_eq!(r.status, 200, "{f}");
    }
    // Taking the site back to draft hides the data too.
    let r = s.req(
        "POST",
        "/api/v1/web_site_module/lab/transitions/reject",
        Some(&json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        anon(&s, &format!("/web/lab/_arrays/{id}/decimate")).status,
        404
    );
}

fn ui(s: &TestServer, path: &str, cookie: &str) -> Reply {
    request_with("GET", &s.url(path), None, &[("Cookie", cookie)])
}

/// The row of `path` in a module view's table, with its `data-state`.
fn row_state(html: &str, path: &str) -> Option<String> {
    let at = html.find(&format!("<tr data-path=\"{path}\" data-state=\""))?;
    let rest = &html[at..];
    let state = rest.split("data-state=\"").nth(1)?.split('"').next()?;
    Some(state.to_owned())
}

#[test]
fn site_view_page_editor_and_preview() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&dir.path().join("var"), None);
    s.create(
        "web_site_module",
        json!({"portal_type": "Web Site", "id": "lab", "title": "Lab", "front_page": "home",
               "stylesheet": "theme"}),
    );
    let news = s.create("web_site_module/lab",
        json!({"portal_type": "Web Section", "id": "news", "title": "News", "front_page": "newsfront"}),
    );
    let archive = s.create(
        &news,
        json!({"portal_type": "Web Section", "id": "archive", "title": "Archive",
               "listing": "portal_type:\"Web Page\""}),
    );
    let home = page(
        &s,
        "home",
        "text/x-tera",
        "Home <b>",
        "<p>{{ page.title }}</p>",
    );
    let theme = page(&s, "theme", "text/css", "Theme", "body { color: red }");
    let secret = page(&s, "secret", "text/html", "Secret draft", "<p>hidden</p>");
    let script = page(&s, "app", "text/javascript", "App", "console.log(1)");
    s.fire("web_site_module/lab", "publish");
    s.fire(&news, "publish");
    s.fire(&home, "publish");
    s.fire(&theme, "publish");
    add_user(&s, "boss", "boss-password-1", &["Manager"]);
    add_user(&s, "bob", "bob-password-12", &[]);
    let (boss, boss_csrf) = login(&s, "boss", "boss-password-1");
    let (bob, bob_csrf) = login(&s, "bob", "bob-password-12");

    // The site's page: sections as a tree and pages, each with its state.
    let r = ui(&s, "/ui/web_site_module/lab/+module", &boss);
    assert_eq!(r.status, 200, "{}", r.text);
    let html = r.text;
    assert!(html.contains("Module view"), "the view is a tab of the UI");
    assert_eq!(
        row_state(&html, &news).as_deref(),
        Some("published"),
        "{html}"
    );
    assert_eq!(
        row_state(&html, &archive).as_deref(),
        Some("draft"),
        "{html}"
    );
    assert!(html.find(&news) < html.find(&archive), "parents first");
    assert!(html.contains("/web/lab/news/archive/"), "{html}");
    for (path, state) in [
        (&home, "published"),
        (&theme, "published"),
        (&secret, "draft"),
        (&script, "draft"),
    ] {
        assert_eq!(
            row_state(&html, path).as_deref(),
            Some(state),
            "{path}: {html}"
        );
    }
    // The pages the site names: the front page, the stylesheet, and a section's front page
    // that does not exist.
    let named =
        &html[html.find("id=\"web-named-pages\"").unwrap()..html.find("id=\"web-pages\"").unwrap()];
    assert!(
        named.contains("front page") && named.contains(&home),
        "{named}"
    );
    assert!(
        named.contains("stylesheet") && named.contains(&theme),
        "{named}"
    );
    assert!(
        named.contains("front page of news") && named.contains("missing"),
        "{named}"
    );
    assert!(!named.contains(&secret), "{named}");
    // Escaped titles.
    assert!(
        html.contains("Home &lt;b&gt;") || html.contains("Home &#60;b&#62;"),
        "{html}"
    );
    assert!(!html.contains("Home <b>"));
    // A reader sees only what they may View: published documents, not the drafts.
    let r = ui(&s, "/ui/web_site_module/lab/+module", &bob);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(row_state(&r.text, &news).as_deref(), Some("published"));
    assert_eq!(row_state(&r.text, &home).as_deref(), Some("published"));
    for hidden in [&archive, &secret, &script] {
        assert!(
            !r.text.contains(hidden.as_str()),
            "{hidden} shown to a reader: {}",
            r.text
        );
    }

    // The page editor: the body in a code textarea of the page's mode, a preview frame.
    for (path, mode) in [(&home, "html"), (&theme, "css"), (&script, "javascript")] {
        let r = ui(&s, &format!("/ui/{path}/+module"), &boss);
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            r.text.contains(&format!(
                "name=\"text_content\" rows=\"24\" data-code=\"{mode}\""
            )),
            "{path}: {}",
            r.text
        );
        assert!(r.text.contains("id=\"web-preview-frame\""), "{}", r.text);
        assert!(r.text.contains("sandbox=\"allow-scripts\""), "{}", r.text);
        assert!(r.text.contains("/web-static/web-editor.js"), "{}", r.text);
        assert!(
            r.text.contains(&format!("action=\"/ui/{path}/+edit\"")),
            "{}",
            r.text
        );
    }
    let r = s.anon("GET", "/web-static/web-editor.js", None);
    assert_eq!(r.status, 200);
    assert!(r.text.contains("_preview"));

    // The preview renders the unsaved body as the author, in the site's layout.
    let preview = |site: &str, body: &Value| {
        with_cookie(
            &s,
            "POST",
            &format!("/web/{site}/_preview"),
            Some(body),
            &boss,
            Some(&boss_csrf),
        )
    };
    let draft = json!({"page": secret, "title": "Draft title", "content_type": "text/x-tera",
                       "text_content": "<p>preview of {{ page.title }}</p>"});
    let r = preview("lab", &draft);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text.contains("<p>preview of Draft title</p>"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("site-title"),
        "inside the layout: {}",
        r.text
    );
    // Nothing was saved.
    let stored = s.req("GET", &format!("/api/v1/{secret}"), None).json();
    assert_eq!(stored["text_content"], "<p>hidden</p>");
    assert_eq!(stored["title"], "Secret draft");
    // A template error shows its line to the author.
    let broken =
        json!({"page": secret, "content_type": "text/x-tera", "text_content": "a\n{{ oops( }}"});
    let r = preview("lab", &broken);
    assert_eq!(r.status, 500);
    assert!(r.text.contains("template-error"), "{}", r.text);
    // Without the CSRF token a session may not preview (a cross-site post).
    let r = with_cookie(&s, "POST", "/web/lab/_preview", Some(&draft), &boss, None);
    assert_eq!(r.status, 403, "{}", r.text);
    // A page the user may not see, an anonymous visitor, a missing site: the 404 of a
    // missing page.
    let r = with_cookie(
        &s,
        "POST",
        "/web/lab/_preview",
        Some(&draft),
        &bob,
        Some(&bob_csrf),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    let r = s.anon("POST", "/web/lab/_preview", Some(&draft));
    assert_eq!(r.status, 404, "{}", r.text);
    let r = preview("nosite", &draft);
    assert_eq!(r.status, 404, "{}", r.text);
    // Bad input: an unknown content type, an unknown field.
    let bad = json!({"page": secret, "content_type": "text/x-php"});
    let r = preview("lab", &bad);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("text/x-php"), "{}", r.text);
    let bad = json!({"page": secret, "body": "x"});
    let r = preview("lab", &bad);
    assert_eq!(r.status, 400, "{}", r.text);
    // The editor's form saves through the UI's edit handler.
    let serial = s.req("GET", &format!("/api/v1/{secret}"), None).json()["serial"]
        .as_i64()
        .unwrap();
    let form = format!(
        "csrf_token={boss_csrf}&serial={serial}&page={secret}&preview_site=lab&title=Saved&content_type=text%2Fhtml&text_content=%3Cp%3Esaved%3C%2Fp%3E"
    );
    let r = wendelin_tests::request_raw(
        "POST",
        &s.url(&format!("/ui/{secret}/+edit")),
        "application/x-www-form-urlencoded",
        form.as_bytes(),
        &[("Cookie", &boss)],
    );
    assert!(
        r.status == 303 || r.status == 302,
        "{} {}",
        r.status,
        r.text
    );
    let stored = s.req("GET", &format!("/api/v1/{secret}"), None).json();
    assert_eq!(stored["text_content"], "<p>saved</p>");
    assert_eq!(stored["title"], "Saved");
}
