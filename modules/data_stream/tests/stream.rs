//! Data Stream bytes over HTTP, end to end: ranged download (`GET …/data` with `Range`),
//! resumable upload (`PUT …/data` with `Content-Range`), the read limit of
//! `[data_stream] max_read_bytes`, and the stream's page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wendelin_tests::TestServer;

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

#[test]
fn stream_range_download_and_resumable_upload() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("var"),
        None,
        &[("WENDELIN_DATA_STREAM_MAX_READ_BYTES", "8")],
    );
    let created = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "upload"})),
    );
    assert_eq!(created.status, 201);
    let path = created.json()["path"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {}", server.manager_token);
    let url = server.url(&format!("/api/v1/{path}/data"));
    let put = |range: &str, body: &[u8]| {
        let r = agent()
            .put(&url)
            .set("authorization", &auth)
            .set("content-range", range)
            .send_bytes(body);
        match r {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (
                r.status(),
                r.header("range").map(str::to_owned),
                r.into_string().unwrap(),
            ),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(put("bytes */*", b""), (308, None, String::new()));
    let (status, range, _) = put("bytes 0-4/10", b"hello");
    assert_eq!((status, range.as_deref()), (308, Some("bytes=0-4")));
    let (status, _, text) = put("bytes 3-4/10", b"lo");
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("resume the upload at byte 5"), "{text}");
    let (status, range, _) = put("bytes */*", b"");
    assert_eq!((status, range.as_deref()), (308, Some("bytes=0-4")));
    let (status, _, text) = put("bytes 5-9/10", b"worl");
    assert_eq!(status, 400, "a body shorter than its range: {text}");
    let (status, _, text) = put("bytes 5-9/10", b"world");
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["size"],
        10
    );
    assert_eq!(server.stream_bytes(&path), b"helloworld");

    let get = |range: &str| {
        let r = agent()
            .get(&url)
            .set("authorization", &auth)
            .set("range", range)
            .call();
        match r {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (
                r.status(),
                r.header("content-range").map(str::to_owned),
                r.into_string().unwrap(),
            ),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(
        get("bytes=2-5"),
        (206, Some("bytes 2-5/10".to_owned()), "llow".to_owned())
    );
    assert_eq!(get("bytes=-3").2, "rld");
    let (status, content_range, _) = get("bytes=10-");
    assert_eq!(
        (status, content_range.as_deref()),
        (416, Some("bytes */10"))
    );
    // Whole-stream reads into memory above [data_stream] max_read_bytes are refused.
    let r = server.req("GET", &format!("/{path}/getData"), None);
    assert_eq!(r.status, 400);
    assert!(r.error_message().contains("Range"), "{}", r.text);
    // Without Content-Range a PUT replaces nothing: only an empty stream takes it.
    let r = agent()
        .put(&url)
        .set("authorization", &auth)
        .send_bytes(b"again");
    assert!(matches!(r, Err(ureq::Error::Status(409, _))));
    // Anonymous users see nothing.
    let r = agent().get(&url).call();
    assert!(matches!(r, Err(ureq::Error::Status(404 | 401, _))), "{r:?}");
    // The admin page shows size and a preview.
    let page = server.req("GET", &format!("/{path}"), None);
    assert!(
        page.text.contains("<span id=\"size\">10</span>"),
        "{}",
        page.text
    );
    assert!(page.text.contains("68 65 6c 6c 6f"), "{}", page.text);
}

/// `[data_stream] max_upload_bytes` bounds an upload (`WENDELIN_DATA_STREAM_*` reaches
/// the running server), and the refusal names the setting.
#[test]
fn uploads_are_bounded_by_the_sections_setting() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("var"),
        None,
        &[("WENDELIN_DATA_STREAM_MAX_UPLOAD_BYTES", "16")],
    );
    let created = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "bounded"})),
    );
    assert_eq!(created.status, 201);
    let path = created.json()["path"].as_str().unwrap().to_owned();
    let put = |range: &str, body: &[u8]| match agent()
        .put(&server.url(&format!("/api/v1/{path}/data")))
        .set("authorization", &format!("Bearer {}", server.manager_token))
        .set("content-range", range)
        .send_bytes(body)
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    let (status, text) = put("bytes 0-16/17", &[b'x'; 17]);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("[data_stream] max_upload_bytes"), "{text}");
    assert_eq!(server.stream_bytes(&path), b"");
    let (status, text) = put("bytes 0-15/16", &[b'y'; 16]);
    assert_eq!(status, 200, "{text}");
    assert_eq!(server.stream_bytes(&path), [b'y'; 16]);
}
