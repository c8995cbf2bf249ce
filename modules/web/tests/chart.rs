//! A published site's chart in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/chart.js` beside this file). A logged-out visitor loads the site and
//! sees the array drawn; a draft page is a 404; zooming refetches at full resolution; the
//! live chart follows an append; no console error (no CSP violation); a logged-in
//! author's page editor in the admin UI shows a live preview of what they type; and the
//! author builds a second site with a chart page through the admin UI's forms (add,
//! choose the content type, publish), which a logged-out visitor then sees drawn.
//!
//! Needs `/usr/bin/chromium` (or `WENDELIN_CHROMIUM`), `node`, and the repository's
//! `tests/browser/node_modules` (`npm ci` there). Without them it prints `skipped: …`, and
//! fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use wendelin_tests::{add_user, browser_missing, chromium, repo_root, skip, TestServer};

mod common;
use common::{array, site};

#[test]
fn published_chart_in_chromium() {
    let playwright = repo_root().join("tests/browser/node_modules/playwright-core");
    if let Some(why) = browser_missing() {
        return skip(&why);
    }
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&dir.path().join("var"), None);
    let length = 100_000;
    let array = array(&s, length);
    let home = site(&s, &array);
    add_user(&s, "boss", "boss-password-1", &["Manager"]);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/chart.js"))
        .env("BASE_URL", &s.base)
        .env("CHROMIUM", chromium())
        .env("PLAYWRIGHT", &playwright)
        .env("SCREENSHOTS", &shots)
        .env("TOKEN", &s.manager_token)
        .env("ARRAY", &array)
        .env("HOME_PAGE", &home)
        .env("LENGTH", length.to_string())
        .env("LOGIN", "boss")
        .env("PASSWORD", "boss-password-1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("ALL STEPS PASSED"),
        "browser chart test failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        s.stderr()
    );
}
