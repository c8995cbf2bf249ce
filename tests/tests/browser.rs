//! The admin UI in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/ui.js`), against the real `wendelin serve`.
//!
//! Needs `/usr/bin/chromium` (or `WENDELIN_CHROMIUM`), `node`, and
//! `tests/browser/node_modules` (`npm ci` there; `.ci/run` does it). Without them the test
//! prints `skipped: …`, and fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use wendelin_tests::{add_user, browser_missing, chromium, skip, TestServer};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Screenshots go under the workspace's `target/` (never committed).
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

#[test]
fn admin_ui_walkthrough_in_chromium() {
    if let Some(why) = browser_missing() {
        return skip(&why);
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let users = [
        ("alice", "alice-password-1", &["Author"][..]),
        ("bob", "bob-password-12", &[][..]),
        ("carol", "carol-password-1", &[][..]),
    ];
    for (login, password, roles) in users {
        add_user(&server, login, password, roles);
    }
    let shots = screenshot_dir();
    println!("screenshots: {}", shots.display());
    let out = Command::new("node")
        .arg(browser_dir().join("ui.js"))
        .current_dir(browser_dir())
        .env("BASE_URL", &server.base)
        .env("CHROMIUM", chromium())
        .env("SCREENSHOTS", &shots)
        .env(
            "USERS",
            json!({"alice": users[0].1, "bob": users[1].1, "carol": users[2].1}).to_string(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("ALL STEPS PASSED"),
        "browser walkthrough failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.stderr()
    );
    // What the browser did is what the API sees.
    let doc = server
        .req("GET", "/api/v1/data_stream_module/1", None)
        .json();
    assert_eq!(doc["workflow_states"]["validation_workflow"], "validated");
    assert_eq!(doc["description"], "hall 3, south wall");
    let image = server.req("GET", "/api/v1/image_module/1", None).json();
    assert_eq!(image["width"], 640, "the corrected value was saved");
    assert!(doc["title"].as_str().unwrap().contains("<script>"));
    let wf = server
        .req("GET", "/api/v1/data_stream_module/1/workflows", None)
        .json();
    let history = &wf["workflows"][0]["history"];
    assert_eq!(history[0]["actor"], "alice");
    assert_eq!(history[0]["comment"], "checked by alice");
    let roles = server
        .req("GET", "/data_stream_module/1/getLocalRoles", None)
        .json();
    assert_eq!(roles["local_roles"]["user:carol"], json!(["Assignee"]));
    for name in [
        "01-home",
        "03-view",
        "04-validation-error",
        "06-listbox-search",
        "08-history",
        "09-local-roles",
    ] {
        assert!(shots.join(format!("{name}.png")).is_file(), "{name}.png");
    }
}
