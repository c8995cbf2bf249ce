//! End-to-end: the `wendelin` binary as a user runs it, over HTTP and on the command line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wendelin_tests::{run_cli, TestServer};

#[test]
fn first_run_serves_health_and_prints_the_manager_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("var"), None);
    let health = server.anon("GET", "/health", None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["backend"], "sqlite");
    assert!(dir.path().join("var/wendelin.sqlite").is_file());
    let out = server.stdout();
    assert_eq!(out.matches("password (shown once").count(), 1, "{out}");
    server.restart();
    let out = server.stdout();
    assert_eq!(
        out.matches("password (shown once").count(),
        1,
        "printed again on restart: {out}"
    );
    // SIGTERM stops the server cleanly.
    assert!(server.terminate().success());
}

#[test]
fn documents_round_trip_through_the_json_api_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("var"), None);
    let created = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "Boiler 1 temperature", "reference": "boiler1.temperature"})),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let doc = created.json();
    assert_eq!(doc["portal_type"], "Data Stream");
    assert_eq!(doc["id"], "1");
    assert_eq!(
        created.location.as_deref(),
        Some("/api/v1/data_stream_module/1")
    );
    // kill -9 right after the acknowledged write: it must still be there.
    server.kill_and_restart();
    let read = server.req("GET", "/api/v1/data_stream_module/1", None);
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["title"], "Boiler 1 temperature");
    server.restart();
    let list = server
        .req("GET", "/api/v1/data_stream_module?limit=10", None)
        .json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["reference"], "boiler1.temperature");

    // Edit with the serial read; a second edit based on the same serial is a conflict.
    let ok = server.req(
        "PATCH",
        "/api/v1/data_stream_module/1",
        Some(&json!({"serial": 1, "description": "hall 3"})),
    );
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json()["serial"], 2);
    let stale = server.req(
        "PATCH",
        "/api/v1/data_stream_module/1",
        Some(&json!({"serial": 1, "description": "lost"})),
    );
    assert_eq!(stale.status, 409, "{}", stale.text);
    assert_eq!(stale.json()["error"]["code"], "conflict");
    let via_header = server.req_with(
        "PATCH",
        "/api/v1/data_stream_module/1",
        Some(&json!({"title": "renamed"})),
        &[("If-Match", "\"1\"")],
    );
    assert_eq!(via_header.status, 409);
    let via_header = server.req_with(
        "PATCH",
        "/api/v1/data_stream_module/1",
        Some(&json!({"title": "renamed"})),
        &[("If-Match", "\"2\"")],
    );
    assert_eq!(via_header.status, 200, "{}", via_header.text);
    assert_eq!(
        server
            .req("GET", "/api/v1/data_stream_module/1", None)
            .json()["description"],
        "hall 3"
    );

    // Unknown property: 422 naming it, nothing written.
    let bad = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "x", "temprature": 3})),
    );
    assert_eq!(bad.status, 422);
    assert!(bad.error_message().contains("temprature"), "{}", bad.text);
    let bad = server.req(
        "PATCH",
        "/api/v1/data_stream_module/1",
        Some(&json!({"serial": 3, "content_type": 42})),
    );
    assert_eq!(bad.status, 422);
    assert!(
        bad.error_message().contains("'content_type'"),
        "{}",
        bad.text
    );
    assert_eq!(
        server.req("GET", "/api/v1/data_stream_module", None).json()["total"],
        1
    );

    // Malformed input gets a 4xx with a message, and the server keeps running.
    let r = server.raw(
        "POST",
        "/api/v1/data_stream_module",
        "application/json",
        b"{not json",
    );
    assert_eq!(r.status, 400);
    assert!(r.error_message().contains("JSON"), "{}", r.text);
    let r = server.raw(
        "POST",
        "/api/v1/data_stream_module",
        "text/plain",
        b"title=x",
    );
    // Not JSON where JSON is expected: the media type is what is wrong (415).
    assert_eq!(r.status, 415, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "unsupported_media_type");
    let r = server.req("GET", "/api/v1/data_stream_module?limit=0", None);
    assert_eq!(r.status, 400);
    let r = server.req("GET", "/api/v1/data_stream_module?limit=5&bogus=1", None);
    assert_eq!(r.status, 400);
    let r = server.req("GET", "/api/v1/no_such_module", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"id": "../../etc"})),
    );
    assert_eq!(r.status, 422);
    let r = server.req("GET", "/static/..%2F..%2FCargo.toml", None);
    assert_eq!(r.status, 404);
    assert_eq!(server.anon("GET", "/health", None).status, 200);

    // Delete with a stale serial is refused; with the current one it works.
    assert_eq!(
        server
            .req("DELETE", "/api/v1/data_stream_module/1?serial=1", None)
            .status,
        409
    );
    assert_eq!(
        server
            .req("DELETE", "/api/v1/data_stream_module/1?serial=3", None)
            .status,
        204
    );
    assert_eq!(
        server
            .req("GET", "/api/v1/data_stream_module/1", None)
            .status,
        404
    );
}

#[test]
fn sub_documents_relations_and_traversal() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let stream = server
        .req(
            "POST",
            "/api/v1/data_stream_module",
            Some(&json!({"title": "<script>alert(1)</script>"})),
        )
        .json();
    let ingestion = server
        .req(
            "POST",
            "/api/v1/data_ingestion_module",
            Some(&json!({"title": "i", "start_date": "2026-11-24T11:00:00+01:00"})),
        )
        .json();
    let path = format!("/api/v1/{}", ingestion["path"].as_str().unwrap());
    let line = server.req("POST", &path,
        Some(
            &json!({"portal_type": "Data Ingestion Line", "id": "line_1", "aggregate": [stream["path"]]}),
        ),
    );
    assert_eq!(line.status, 201, "{}", line.text);
    assert_eq!(line.json()["path"], "data_ingestion_module/1/line_1");
    assert_eq!(line.json()["aggregate"], json!(["data_stream_module/1"]));
    let wrong = server.req("POST", &path, Some(&json!({"portal_type": "Data Stream"})));
    assert_eq!(wrong.status, 422);
    assert!(
        wrong.error_message().contains("not allowed"),
        "{}",
        wrong.text
    );
    let contents = server
        .req("GET", &format!("{path}?contents=true"), None)
        .json();
    assert_eq!(contents["total"], 1);
    // Back relations: which lines feed from the stream.
    let back = server.req(
        "GET",
        "/data_stream_module/1/getBackRelationList?name=aggregate",
        None,
    );
    assert_eq!(back.json(), json!(["data_ingestion_module/1/line_1"]));

    // Dispatch by URL: built-in getSize of Data Stream (the bytes its storage holds),
    // Base_getSize elsewhere.
    let put = server.raw(
        "PUT",
        "/api/v1/data_stream_module/1/data",
        "application/octet-stream",
        &[b'x'; 42],
    );
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(
        server
            .req("GET", "/data_stream_module/1/getSize", None)
            .json(),
        json!(42)
    );
    let base_size = server
        .req("GET", "/data_ingestion_module/1/getSize", None)
        .json();
    assert!(base_size.as_i64().unwrap() > 0);
    // Acquisition through containment: a line has no start_date; it acquires its ingestion's.
    assert_eq!(
        server
            .req("GET", "/data_ingestion_module/1/line_1/start_date", None)
            .json(),
        json!("2026-11-24T10:00:00Z")
    );
    assert_eq!(
        server
            .req("GET", "/data_ingestion_module/1/line_1/getPath", None)
            .json(),
        json!("/data_ingestion_module/1/line_1")
    );
    let view = server.req("GET", "/data_stream_module/1/DataStream_view", None);
    assert_eq!(view.status, 200);
    assert!(view.content_type.starts_with("text/html"));
    assert!(
        view.text
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        view.text
    );
    assert!(!view.text.contains("<script>alert(1)"));
    assert!(view.text.contains("<span id=\"size\">42</span>"));
    // The default view of a Data Stream is its DataStream_view; other types get Base_view.
    let default_view = server.req("GET", "/data_stream_module/1", None);
    assert!(default_view.text.contains("<span id=\"size\">42</span>"));
    let home = server.req("GET", "/", None);
    assert!(home.text.contains("Data Streams"), "{}", home.text);
    let missing = server.req("GET", "/data_stream_module/1/noSuchMethod", None);
    assert_eq!(missing.status, 404);
    assert!(missing.error_message().contains("noSuchMethod"));

    let spec = server.req("GET", "/api/v1/openapi.json", None).json();
    assert!(spec["paths"]["/api/v1/data_ingestion_module/{id}"]["patch"].is_object());
    let types = server.req("GET", "/api/v1/types", None).json();
    assert!(types["portal_types"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "Web Page"));
}

#[test]
fn cli_init_migrate_and_user_add() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("var");
    let env = [
        ("WENDELIN_DATA_DIR", data.to_str().unwrap()),
        ("WENDELIN_LOG", "warn"),
    ];
    let (ok, out, err) = run_cli(&["init"], &env, "");
    assert!(ok, "{err}");
    assert!(out.contains("created user 'manager'"), "{out}");
    let (ok, out, err) = run_cli(&["migrate"], &env, "");
    assert!(ok, "{err}");
    assert!(out.contains("0 migrations applied"), "{out}");
    let (ok, out, err) = run_cli(
        &[
            "user",
            "add",
            "alice",
            "--role",
            "Author",
            "--password-stdin",
        ],
        &env,
        "s3cret-pass\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains("user alice added"), "{out}");
    let (ok, _, err) = run_cli(
        &["user", "add", "alice", "--password-stdin"],
        &env,
        "another-pass\n",
    );
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, err) = run_cli(&["user", "add", "bob", "--password-stdin"], &env, "short\n");
    assert!(!ok);
    assert!(err.contains("at least 8"), "{err}");
    let (ok, out, _) = run_cli(&["user", "add", "carol"], &env, "");
    assert!(ok);
    assert!(out.contains("password (shown once)"), "{out}");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "bnid = 1\n").unwrap();
    let (ok, _, err) = run_cli(&["--config", cfg.to_str().unwrap(), "init"], &env, "");
    assert!(!ok);
    assert!(err.contains("bnid"), "{err}");
}

#[test]
fn the_same_binary_runs_on_postgresql() {
    let Some(pg) = wendelin_tests::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("var"), Some(pg.new_database()));
    assert_eq!(
        server.anon("GET", "/health", None).json()["backend"],
        "postgres"
    );
    let created = server.req(
        "POST",
        "/api/v1/person_module",
        Some(&json!({"first_name": "Ada", "last_name": "Lovelace"})),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    server.kill_and_restart();
    // Person's built-in getTitle composes the name when no title is set.
    assert_eq!(
        server.req("GET", "/person_module/1/getTitle", None).json(),
        json!("Ada Lovelace")
    );
    let stale = server.req(
        "PATCH",
        "/api/v1/person_module/1",
        Some(&json!({"serial": 0, "email": "a@b"})),
    );
    assert_eq!(stale.status, 409);
}

#[test]
fn catalog_queries_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    for (title, reference) in [
        ("Boiler sensor", "b1"),
        ("Pump sensor", "p1"),
        ("Pump motor", "p2"),
    ] {
        let r = server.req(
            "POST",
            "/api/v1/data_stream_module",
            Some(&json!({"title": title, "reference": reference})),
        );
        assert_eq!(r.status, 201);
    }
    let q = "/api/v1/catalog?q=portal_type%3A%22Data%20Stream%22%20AND%20title%3A%25sensor%25&sort_on=title%20desc";
    let r = server.req("GET", q, None).json();
    assert_eq!(r["total"], 2);
    assert_eq!(r["items"][0]["title"], "Pump sensor");
    assert_eq!(r["items"][1]["title"], "Boiler sensor");
    assert_eq!(r["more"], false);
    // count=none: the same page, no total, and whether more matches follow.
    let r = server
        .req("GET", &format!("{q}&count=none&limit=1"), None)
        .json();
    assert_eq!(r["total"], serde_json::Value::Null, "{r}");
    assert_eq!(r["more"], true);
    assert_eq!(r["items"][0]["title"], "Pump sensor");
    let r = server
        .req("GET", &format!("{q}&count=none&limit=1&offset=1"), None)
        .json();
    assert_eq!(
        (r["more"].as_bool(), r["items"][0]["title"].as_str()),
        (Some(false), Some("Boiler sensor"))
    );
    let bad = server.req("GET", &format!("{q}&count=maybe"), None);
    assert_eq!(bad.status, 400);
    assert!(
        bad.error_message().contains("count must be exact or none"),
        "{}",
        bad.text
    );
    // Full-text terms go to the index, which sees a committed change within a second.
    let started = std::time::Instant::now();
    let r = loop {
        let r = server
            .req("GET", "/api/v1/catalog?q=pump&limit=1", None)
            .json();
        if r["total"] == 2 || started.elapsed() > std::time::Duration::from_secs(1) {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        (r["total"].as_i64(), r["items"].as_array().unwrap().len()),
        (Some(2), 1)
    );
    let bad = server.req("GET", "/api/v1/catalog?q=title%3A(a%2C", None);
    assert_eq!(bad.status, 400);
    assert!(bad.error_message().contains("position"), "{}", bad.text);
    let bad = server.req("GET", "/api/v1/catalog?q=colour%3Ared", None);
    assert_eq!(bad.status, 400);
    assert!(bad.error_message().contains("colour"));
    assert_eq!(
        server.anon("GET", "/api/v1/catalog?q=pump", None).json()["total"],
        0
    );
}

/// Two `wendelin activities work` processes drain one PostgreSQL queue together: every
/// activity runs exactly once, and activities sharing a serialization tag never overlap.
#[test]
fn two_worker_processes_share_the_postgres_queue() {
    let Some(pg) = wendelin_tests::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.new_database();
    let mut server = TestServer::start(&dir.path().join("var"), Some(url.clone()));
    // The server's own workers stay idle so that the two CLI processes do the work, and
    // the analysis module's periodic step (an activity of its own) stays off.
    server
        .extra_env
        .push(("WENDELIN_ACTIVITY_WORKERS".into(), "0".into()));
    server.extra_env.push((
        "WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS".into(),
        "0".into(),
    ));
    server.restart();
    let docs = 4;
    let per_doc = 8;
    let mut serials = Vec::new();
    for d in 1..=docs {
        let r = server.req(
            "POST",
            "/api/v1/data_stream_module",
            Some(&json!({"title": format!("stream {d}")})),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        serials.push(r.json()["serial"].as_i64().unwrap());
        for n in 0..per_doc {
            let r = server.req(
                "POST",
                &format!("/data_stream_module/{d}/Base_activate"),
                Some(&json!({
                    "method": "Base_edit",
                    "args": {"description": format!("edit {n}")},
                    "tag": format!("stream-{d}"),
                })),
            );
            assert_eq!(r.status, 200, "{}", r.text);
        }
    }
    let queued = server.req("GET", "/api/v1/activities", None).json();
    assert_eq!(
        queued["activities"].as_array().unwrap().len(),
        docs * per_doc
    );

    let env: Vec<(String, String)> = server
        .cli_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                run_cli(&["activities", "work", "--threads", "2"], &env, "")
            })
        })
        .collect();
    for w in workers {
        let (ok, out, err) = w.join().unwrap();
        assert!(ok, "worker failed: {out} {err}");
    }

    // Nothing left, nothing failed.
    let left = server.req("GET", "/api/v1/activities", None).json();
    assert_eq!(left["activities"], json!([]), "{left}");
    let runs = pg.psql(
        &url,
        "SELECT activity_id, tag, worker, ok, \
         extract(epoch from started)::text, extract(epoch from finished)::text \
         FROM activity_runs ORDER BY started",
    );
    let rows: Vec<Vec<&str>> = runs.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(
        rows.len(),
        docs * per_doc,
        "each activity runs exactly once"
    );
    assert!(rows.iter().all(|r| r[3] == "t"), "{runs}");
    let mut ids: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), docs * per_doc);
    let processes: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r[2].split('/').next().unwrap())
        .collect();
    println!("worker processes that ran activities: {processes:?}");
    for d in 1..=docs {
        let tag = format!("stream-{d}");
        let mut spans: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r[1] == tag)
            .map(|r| (r[4].parse().unwrap(), r[5].parse().unwrap()))
            .collect();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(spans.len(), per_doc);
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "runs of {tag} overlap: {spans:?}");
        }
        // Every edit went through: the document carries one of them, with its serial
        // advanced once per run.
        let doc = server
            .req("GET", &format!("/api/v1/data_stream_module/{d}"), None)
            .json();
        assert!(
            doc["description"].as_str().unwrap().starts_with("edit "),
            "{doc}"
        );
        assert_eq!(
            doc["serial"].as_i64().unwrap(),
            serials[d - 1] + per_doc as i64
        );
    }
}

/// A JSON array posted to a container creates every document or none.
#[test]
fn bulk_creation_over_http_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let items: Vec<serde_json::Value> = (0..500)
        .map(|i| json!({"title": format!("probe {i}"), "reference": format!("probe.{i}")}))
        .collect();
    let r = server.req("POST", "/api/v1/data_stream_module", Some(&json!(items)));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["created"], 500);
    let found = server.req("GET", "/api/v1/catalog?q=title:probe%25&limit=1", None);
    assert_eq!(found.json()["total"], 500, "{}", found.text);
    // Item 2 breaks the schema, item 1 reuses a reference: nothing is written either time.
    let bad = json!([{"title": "a"}, {"title": "b"}, {"title": "c", "temprature": 3}]);
    let r = server.req("POST", "/api/v1/data_stream_module", Some(&bad));
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.error_message().contains("document 2"), "{}", r.text);
    let dup = json!([{"title": "d"}, {"title": "e", "reference": "probe.7"}]);
    let r = server.req("POST", "/api/v1/data_stream_module", Some(&dup));
    assert_eq!(r.status, 409, "{}", r.text);
    let r = server.req("POST", "/api/v1/data_stream_module", Some(&json!([1, 2])));
    assert_eq!(r.status, 400, "{}", r.text);
    let all = server.req("GET", "/api/v1/data_stream_module?limit=1", None);
    assert_eq!(all.json()["total"], 500);
}

#[test]
fn deleting_documents_removes_their_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("var"),
        None,
        &[("WENDELIN_ACTIVITY_WORKERS", "1")],
    );
    let uid_of = |location: &str| -> String {
        let doc = server.req("GET", location, None);
        doc.json()["uid"].to_string()
    };

    let r = server.req(
        "POST",
        "/api/v1/data_stream_module",
        Some(&json!({"title": "s"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let stream = r.location.clone().unwrap();
    let path = stream.trim_start_matches("/api/v1/").to_owned();
    let put = server.raw(
        "PUT",
        &format!("/api/v1/{path}/data"),
        "application/octet-stream",
        b"0123456789",
    );
    assert!(put.status < 300, "{} {}", put.status, put.text);
    let segments = server.data_dir.join("streams").join(uid_of(&stream));
    assert!(segments.is_dir(), "no segments at {}", segments.display());

    let r = server.req(
        "POST",
        "/api/v1/data_array_module",
        Some(&json!({"title": "a", "dtype": "int32", "shape": [8]})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let array = r.location.clone().unwrap();
    let apath = array.trim_start_matches("/api/v1/").to_owned();
    let read = server.req("GET", &format!("/api/v1/{apath}/read"), None);
    assert_eq!(read.status, 200, "{}", read.text);
    let zarr = server.data_dir.join("arrays").join(uid_of(&array));
    assert!(
        zarr.join("zarr.json").is_file(),
        "no array at {}",
        zarr.display()
    );

    // A refused delete (stale serial) keeps everything.
    let r = server.req("DELETE", &format!("/api/v1/{path}?serial=999"), None);
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        server
            .req("DELETE", &format!("/api/v1/{path}"), None)
            .status,
        204
    );
    assert_eq!(
        server
            .req("DELETE", &format!("/api/v1/{apath}"), None)
            .status,
        204
    );
    // The files go in an activity a few seconds after the commit.
    let queued = server.req("GET", "/api/v1/activities", None);
    assert!(queued.text.contains("_purgeDeletedData"), "{}", queued.text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while (segments.exists() || zarr.exists()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!segments.exists(), "stream segments survived the delete");
    assert!(!zarr.exists(), "array directory survived the delete");
    // Purges run as the server's "system" login: no person may take that name.
    let (ok, _, err) = run_cli(
        &[
            "user",
            "add",
            "system",
            "--role",
            "Author",
            "--password-stdin",
        ],
        &server.cli_env(),
        "a-long-password",
    );
    assert!(!ok && err.contains("reserved"), "{err}");
}

/// `wendelin reindex` refuses while a server writes the full-text index (it would remove
/// the directory under it), and rebuilds it once the server has stopped: the restarted
/// server finds every document through the rebuilt index.
#[test]
fn cli_reindex_rebuilds_the_index_only_when_no_server_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("var"), None);
    for title in ["Pump sensor", "Boiler gauge", "Pump motor"] {
        let r = server.req(
            "POST",
            "/api/v1/data_stream_module",
            Some(&json!({ "title": title })),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let env: Vec<(String, String)> = server
        .cli_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (ok, _, err) = run_cli(&["reindex"], &env, "");
    assert!(!ok, "reindex ran under a live server");
    assert!(err.contains("in use by a running server"), "{err}");
    // The running server's index is intact.
    let pumps = |server: &TestServer| {
        let started = std::time::Instant::now();
        loop {
            let r = server.req("GET", "/api/v1/catalog?q=pump", None).json();
            if r["total"] == 2 || started.elapsed() > std::time::Duration::from_secs(5) {
                return r["total"].clone();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    assert_eq!(pumps(&server), 2);

    let status = server.terminate();
    assert!(status.success(), "graceful stop failed: {status}");
    let index = dir.path().join("var/index");
    let old_id = std::fs::read_to_string(index.join("wendelin-index-id")).unwrap();
    let (ok, out, err) = run_cli(&["reindex"], &env, "");
    assert!(ok, "{err}");
    assert!(out.contains("catalog columns of"), "{out}");
    let new_id = std::fs::read_to_string(index.join("wendelin-index-id")).unwrap();
    assert_ne!(
        old_id, new_id,
        "the index was rebuilt under a new registration"
    );
    server.restart();
    assert_eq!(pumps(&server), 2);
    let r = server.req("GET", "/api/v1/catalog?q=gauge", None).json();
    assert_eq!(r["total"], 1, "{r}");
}

#[test]
fn ids_claimed_by_module_routes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("d"), None);
    // `…/data` is the stream download route: a document named `data` anywhere could not
    // be reached under its own path, so the id is refused (as the kernel's own are).
    for (folder, id) in [
        ("data_ingestion_module", "data"),
        ("data_stream_module", "data"),
        ("data_array_module", "zarr"),
        ("person_module", "workflows"),
    ] {
        let body = if folder == "data_array_module" {
            json!({"portal_type": "Data Array", "id": id})
        } else {
            json!({"id": id})
        };
        let r = server.req("POST", &format!("/api/v1/{folder}"), Some(&body));
        assert_eq!(r.status, 422, "{folder}/{id}: {}", r.text);
        assert!(r.error_message().contains("reserved"), "{}", r.text);
        let found = server.req(
            "GET",
            &format!("/api/v1/catalog?q=path:{folder}/{id}"),
            None,
        );
        assert_eq!(found.json()["total"], 0, "{}", found.text);
    }
    let r = server.req(
        "POST",
        "/api/v1/data_ingestion_module",
        Some(&json!({"id": "datas"})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Concurrent identical reads of a module listing or of the catalog at one change
/// generation run once and share the body (`X-Single-Flight: shared`); each still shows
/// the write that came before it. Searches with full-text terms are not shared (they
/// follow the index, not the generation).
#[test]
fn concurrent_identical_listings_and_catalog_searches_are_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    const N: usize = 16;
    let burst = |path: &str| -> Vec<wendelin_tests::Reply> {
        let start = std::sync::Barrier::new(N);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..N)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        server.req("GET", path, None)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let mut shared = 0;
    for round in 0..5 {
        let title = format!("Reader-{round}");
        let r = server.req(
            "POST",
            "/api/v1/person_module",
            Some(&json!({ "title": title })),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        for path in [
            "/api/v1/person_module?limit=100",
            "/api/v1/catalog?q=portal_type:Person&limit=100",
        ] {
            let replies = burst(path);
            for r in &replies {
                assert_eq!(r.status, 200, "{path}: {}", r.text);
                assert!(r.text.contains(&title), "{path}: stale {}", r.text);
                assert_eq!(r.text, replies[0].text, "{path}: one generation, one body");
                let got = r.header("x-single-flight");
                assert!(got == Some("miss") || got == Some("shared"), "{got:?}");
            }
            shared += replies
                .iter()
                .filter(|r| r.header("x-single-flight") == Some("shared"))
                .count();
        }
    }
    assert!(shared > 0, "concurrent identical reads are shared");
    let r = server.req("GET", "/api/v1/catalog?q=Reader-3", None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-single-flight"), None, "full-text is not shared");
    let r = server.req("GET", "/api/v1/person_module?limit=0", None);
    assert_eq!(r.status, 400, "{}", r.text);
}
