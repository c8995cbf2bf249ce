//! The Script edit form's code editor: the body is a `textarea[data-code="rhai"]`, the
//! layout names the vendored editor's files, which the server serves itself; in
//! Chromium (`tests/browser/editor.js`, playwright-core from the workspace's
//! `tests/browser/node_modules`) the editor shows, a save through it works, and a body
//! that does not compile is refused with its position while the editor keeps the text.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use serde_json::json;
use wendelin_tests::{
    add_user, browser_missing, chromium, login, repo_root, request_with, skip, TestServer,
};

fn attribute<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let len = page[start..].find('"').unwrap();
    &page[start..start + len]
}

#[test]
fn the_edit_form_shows_the_body_in_a_vendored_code_editor() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let r = server.req(
        "POST",
        "/api/v1/portal_skins",
        Some(&json!({"portal_type": "Script", "id": "Base_hello", "body": "\"hello\""})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    add_user(&server, "manny", "manny-password-1", &["Manager"]);
    let (cookie, _) = login(&server, "manny", "manny-password-1");
    let page = request_with(
        "GET",
        &server.url("/ui/portal_skins/Base_hello/+edit"),
        None,
        &[("Cookie", cookie.as_str())],
    );
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("name=\"body\"") && page.text.contains("data-code=\"rhai\""),
        "{}",
        page.text
    );
    for (name, content_type, needle) in [
        ("data-editor", "text/javascript", "CodeMirror"),
        ("data-editor-css", "text/css", ".CodeMirror"),
    ] {
        let url = attribute(&page.text, name);
        assert!(url.starts_with("/static/codemirror."), "{name}: {url}");
        let r = request_with("GET", &server.url(url), None, &[]);
        assert_eq!(r.status, 200, "{url}");
        assert!(r.content_type.starts_with(content_type), "{url}");
        assert!(r.text.contains(needle), "{url}");
    }

    if let Some(why) = browser_missing() {
        return skip(&why);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/editor.js");
    let out = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", repo_root().join("tests/browser/node_modules"))
        .env("BASE_URL", &server.base)
        .env("CHROMIUM", chromium())
        .env("LOGIN", "manny")
        .env("PASSWORD", "manny-password-1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL STEPS PASSED"),
        "editor walkthrough failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.stderr()
    );
    // What the browser saved through the editor is what the script now answers.
    let doc = server
        .req("GET", "/api/v1/portal_skins/Base_hello", None)
        .json();
    assert_eq!(doc["body"], json!("\"hello from the editor\""), "{doc}");
}
