//! Ingestion end to end: the real `wendelin serve` fed by clients nobody here wrote —
//! python `fluent-logger` over the Forward protocol, `msgpack` + `requests` building
//! fluent-plugin-wendelin bodies, out_http-style NDJSON + gzip — plus a kill -9 crash
//! test, 32 concurrent clients and back-pressure. (Data Stream download and upload are
//! tested in modules/data_stream/tests/stream.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmpv::Value;
use serde_json::json;
use wendelin_tests::{free_port, python, run_cli, run_python, TestServer};

const FEEDER_PASSWORD: &str = "feeder-password-1";

/// A server with the policy `pydata` (product `temp`) and the Author `feeder`.
fn setup(dir: &Path, env: &[(&str, &str)]) -> TestServer {
    let server = TestServer::start_with_env(&dir.join("var"), None, env);
    let (ok, out, err) = run_cli(
        &[
            "ingestion",
            "add",
            "pydata",
            "--product",
            "temp",
            "--accept",
            "feeder",
        ],
        &server.cli_env(),
        "",
    );
    assert!(ok, "ingestion add failed: {out} {err}");
    assert!(out.contains("portal_ingestion_policies/pydata"), "{out}");
    let (ok, _, err) = run_cli(
        &[
            "user",
            "add",
            "feeder",
            "--role",
            "Author",
            "--password-stdin",
        ],
        &server.cli_env(),
        FEEDER_PASSWORD,
    );
    assert!(ok, "user add failed: {err}");
    server
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

/// Every msgpack value of a stream; fails on a torn or malformed value.
fn stream_records(server: &TestServer, path: &str) -> Vec<Value> {
    let bytes = server.stream_bytes(path);
    let mut cursor = &bytes[..];
    let mut out = Vec::new();
    while !cursor.is_empty() {
        let at = bytes.len() - cursor.len();
        out.push(
            rmpv::decode::read_value(&mut cursor)
                .unwrap_or_else(|e| panic!("{path}: torn or malformed value at byte {at}: {e}")),
        );
    }
    out
}

fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    let Value::Array(entry) = record else {
        panic!("not a [time, record] entry: {record}")
    };
    let Value::Map(m) = &entry[1] else {
        panic!("record is not a map: {record}")
    };
    m.iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {record}"))
}

fn seq(record: &Value) -> u64 {
    field(record, "seq").as_u64().unwrap()
}

#[test]
fn fluent_plugin_wendelin_bodies_over_the_compatibility_path() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = setup(
        dir.path(),
        &[("WENDELIN_INGESTION_MAX_BODY_BYTES", "1048576")],
    );
    let (ok, _, err) = run_cli(
        &[
            "user",
            "add",
            "auditor",
            "--role",
            "Auditor",
            "--password-stdin",
        ],
        &server.cli_env(),
        "auditor-password-1",
    );
    assert!(ok, "{err}");
    let script = r#"
import os, msgpack, requests
from fluent.sender import EventTime   # msgpack ext type 0, as fluentd's EventTime
U = os.environ["URL"]
auth = ("feeder", os.environ["PW"])
url = U + "/erp5/portal_ingestion_policies/pydata/ingest"
def chunk(start, n):
    out = b""
    for i in range(start, start + n):
        t = EventTime(1700000000 + i) if i % 2 == 0 else 1700000000 + i
        out += msgpack.packb([t, {"seq": i, "message": "x" * 10}], use_bin_type=True)
    return out
def post(body, ref="sensor1.temp", **kw):
    kw.setdefault("auth", auth)
    kw.setdefault("headers", {"Content-Type": "application/octet-stream"})
    return requests.post(url, params={"reference": ref}, data=body, **kw)
r = post(chunk(0, 10))
assert r.status_code == 204, (r.status_code, r.text)
# fluent-plugin-wendelin <= 0.3: form-encoded field data_chunk
r = requests.post(url, params={"reference": "sensor1.temp"}, data={"data_chunk": chunk(10, 10)}, auth=auth)
assert r.status_code == 204, (r.status_code, r.text)
# keep-alive: one connection, several chunks
s = requests.Session()
s.auth = auth
for k in range(2, 5):
    r = s.post(url, params={"reference": "sensor1.temp"}, data=chunk(k * 10, 10),
               headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, (r.status_code, r.text)
def refused(r, status, words):
    assert r.status_code == status, (status, r.status_code, r.text)
    msg = r.json()["error"]["message"]
    assert words in msg, (words, msg)
refused(post(chunk(50, 3)[:-4]), 400, "malformed msgpack")
refused(post(chunk(50, 1), auth=("feeder", "wrong")), 401, "")
refused(requests.post(url, params={"reference": "sensor1.temp"}, data=chunk(50, 1)), 401, "credentials")
refused(requests.post(U + "/erp5/portal_ingestion_policies/nopolicy/ingest",
        params={"reference": "a.temp"}, data=chunk(50, 1), auth=auth), 404, "nopolicy")
refused(post(chunk(50, 1), ref="bad tag!"), 404, "bad tag!")
refused(post(chunk(50, 1), ref="sensor1.humidity"), 404, "humidity")
refused(requests.post(url, data=chunk(50, 1), auth=auth), 400, "reference")
refused(requests.get(url, params={"reference": "sensor1.temp"}, auth=auth), 400, "POST")
refused(post(b"\x92" + b"\x00" * (2 << 20)), 413, "[ingestion] max_body_bytes")
refused(post(chunk(50, 1), ref="sensor9.temp", auth=("auditor", "auditor-password-1")), 403, "")
print("ok")
"#;
    let out = run_python(
        &py,
        script,
        &[("URL", &server.base), ("PW", FEEDER_PASSWORD)],
    );
    assert_eq!(out.trim(), "ok");
    let records = stream_records(&server, "data_stream_module/sensor1.temp");
    assert_eq!(
        records.iter().map(seq).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>(),
        "every chunk in order, nothing from the refused ones"
    );
    // fluentd's EventTime survives byte for byte.
    let Value::Array(first) = &records[0] else {
        panic!()
    };
    assert!(matches!(&first[0], Value::Ext(0, d) if d.len() == 8));
    // The Data Ingestion for the reference, started on first data, and its line.
    let ingestion = server
        .req("GET", "/api/v1/data_ingestion_module/sensor1", None)
        .json();
    assert_eq!(
        ingestion["workflow_states"]["data_ingestion_workflow"],
        "started"
    );
    assert_eq!(ingestion["specialise"], "portal_ingestion_policies/pydata");
    assert!(ingestion["start_date"].is_string());
    let line = server
        .req("GET", "/api/v1/data_ingestion_module/sensor1/temp", None)
        .json();
    assert_eq!(
        line["aggregate"],
        json!(["data_stream_module/sensor1.temp"])
    );
    assert_eq!(line["resource"], "temp");
    let size = server
        .req("GET", "/data_stream_module/sensor1.temp/getSize", None)
        .json();
    assert_eq!(
        size.as_u64().unwrap(),
        server.stream_bytes("data_stream_module/sensor1.temp").len() as u64
    );
    // Incremental decoding: chunk lists resume at next_offset.
    let first = server
        .req(
            "GET",
            "/data_stream_module/sensor1.temp/readMsgpackChunkList?start=0&end=100",
            None,
        )
        .json();
    let n = first["records"].as_array().unwrap().len();
    assert!(n > 0 && n < 50, "{first}");
    let next = first["next_offset"].as_u64().unwrap();
    let rest = server
        .req(
            "GET",
            &format!("/data_stream_module/sensor1.temp/readMsgpackChunkList?start={next}"),
            None,
        )
        .json();
    assert_eq!(rest["records"].as_array().unwrap().len(), 50 - n);
    assert_eq!(rest["records"][0][1]["seq"], json!(n));
    assert!(!server.stderr().contains(FEEDER_PASSWORD));
}

#[test]
fn out_http_bodies_on_the_native_path() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path(), &[]);
    let (ok, _, err) = run_cli(
        &[
            "ingestion",
            "add",
            "logs",
            "--product",
            "log",
            "--operation",
            "json-lines",
        ],
        &server.cli_env(),
        "",
    );
    assert!(ok, "{err}");
    let script = r#"
import os, gzip, json, msgpack, requests
U = os.environ["URL"]
H = {"Authorization": "Bearer " + os.environ["TOKEN"]}
url = U + "/api/v1/ingest/pydata/sensor2.temp"
def post(body, ctype, url=url, **headers):
    return requests.post(url, data=body, headers=dict(H, **{"Content-Type": ctype}, **headers))
ndjson = "".join(json.dumps({"seq": i}) + "\n" for i in range(3)).encode()
r = post(gzip.compress(ndjson), "application/x-ndjson", **{"Content-Encoding": "gzip"})
assert r.status_code == 200, (r.status_code, r.text)
assert r.json()["stream"] == "data_stream_module/sensor2.temp", r.text
r = post(json.dumps([{"seq": 3}, {"seq": 4}]).encode(), "application/json")
assert r.status_code == 200, (r.status_code, r.text)
r = post(msgpack.packb([1700000000, {"seq": 5}]), "application/x-msgpack")
assert r.status_code == 200, (r.status_code, r.text)
size = r.json()["size"]
def refused(r, status, words):
    assert r.status_code == status, (status, r.status_code, r.text)
    assert words in r.json()["error"]["message"], r.text
refused(post(b"seq=1", "text/plain"), 415, "text/plain")
refused(post(b'{"seq": 6}\n{"seq": \n', "application/x-ndjson"), 400, "line 2")
refused(post(b"not gzip", "application/x-ndjson", **{"Content-Encoding": "gzip"}), 400, "gzip")
refused(post(msgpack.packb([1, 2])[:-1], "application/x-msgpack"), 400, "malformed msgpack")
# a json-lines policy stores one JSON object per record
body = b"".join(msgpack.packb([1700000000 + i, {"level": "info", "n": i}]) for i in range(3))
r = post(body, "application/x-msgpack", url=U + "/api/v1/ingest/logs/app.log")
assert r.status_code == 200, (r.status_code, r.text)
print(size)
"#;
    let out = run_python(
        &py,
        script,
        &[("URL", &server.base), ("TOKEN", &server.manager_token)],
    );
    let records = stream_records(&server, "data_stream_module/sensor2.temp");
    assert_eq!(
        records.iter().map(seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        out.trim().parse::<usize>().unwrap(),
        server.stream_bytes("data_stream_module/sensor2.temp").len()
    );
    // JSON records are timed on arrival with an EventTime.
    let Value::Array(e) = &records[0] else {
        panic!()
    };
    assert!(matches!(&e[0], Value::Ext(0, _)));
    let text = String::from_utf8(server.stream_bytes("data_stream_module/app.log")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[2],
        json!({"time": 1700000002, "record": {"level": "info", "n": 2}})
    );
}

#[test]
fn forward_protocol_with_fluent_logger_acks_and_shared_key() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let forward = format!("127.0.0.1:{port}");
    let mut server = setup(dir.path(), &[("WENDELIN_INGESTION_FORWARD", &forward)]);
    let script = r#"
import os, socket, gzip, msgpack
from fluent import sender
P = int(os.environ["PORT"])
# fluent-logger: Message mode, no acknowledgement
s = sender.FluentSender("pydata", host="127.0.0.1", port=P)
for i in range(100):
    assert s.emit("sensor3.temp", {"seq": i}), s.last_error
s.close()
def request(sock, msg):
    sock.sendall(msgpack.packb(msg))
    unp = msgpack.Unpacker(raw=False)
    while True:
        data = sock.recv(4096)
        assert data, "connection closed without an ack"
        unp.feed(data)
        for o in unp:
            return o
sock = socket.create_connection(("127.0.0.1", P))
tag = "pydata.sensor4.temp"
entries = [[1700000000 + i, {"seq": 100 + i}] for i in range(10)]
assert request(sock, [tag, entries, {"chunk": "c1", "size": 10}]) == {"ack": "c1"}
packed = b"".join(msgpack.packb([1700000000, {"seq": 110 + i}]) for i in range(10))
assert request(sock, [tag, packed, {"chunk": "c2", "size": 10}]) == {"ack": "c2"}
packed3 = b"".join(msgpack.packb([1700000000, {"seq": 120 + i}]) for i in range(10))
assert request(sock, [tag, gzip.compress(packed3),
    {"chunk": "c3", "size": 10, "compressed": "gzip"}]) == {"ack": "c3"}
assert request(sock, [tag, msgpack.ExtType(0, b"\x65\x53\xf1\x00\x00\x00\x00\x01"),
    {"seq": 130}, {"chunk": "c4"}]) == {"ack": "c4"}
print("ok")
"#;
    let out = run_python(&py, script, &[("PORT", &port)]);
    assert_eq!(out.trim(), "ok");
    let acked = stream_records(&server, "data_stream_module/sensor4.temp");
    assert_eq!(
        acked.iter().map(seq).collect::<Vec<_>>(),
        (100..131).collect::<Vec<_>>()
    );
    // Without acks the bytes are committed by the background flusher.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = stream_records(&server, "data_stream_module/sensor3.temp");
        if got.len() == 100 {
            assert_eq!(
                got.iter().map(seq).collect::<Vec<_>>(),
                (0..100).collect::<Vec<_>>()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} records arrived",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // With a shared key: HELO, PING with the right digest, PONG, then data.
    server.extra_env.push((
        "WENDELIN_INGESTION_FORWARD_SHARED_KEY".into(),
        "s3cret".into(),
    ));
    server.restart();
    let script = r#"
import os, socket, hashlib, msgpack
P = int(os.environ["PORT"])
def handshake(key):
    sock = socket.create_connection(("127.0.0.1", P))
    unp = msgpack.Unpacker(raw=False)
    def read():
        while True:
            for o in unp:
                return o
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                return None
            if not data:
                return None
            unp.feed(data)
    helo = read()
    assert helo[0] == "HELO", helo
    nonce = helo[1]["nonce"]
    salt = b"salty"
    digest = hashlib.sha512(salt + b"client" + nonce + key).hexdigest()
    sock.sendall(msgpack.packb(["PING", "client", salt, digest, "", ""]))
    pong = read()
    return sock, pong, read
sock, pong, read = handshake(b"s3cret")
assert pong[0] == "PONG" and pong[1] is True, pong
sock.sendall(msgpack.packb(["pydata.sensor5.temp", [[1700000000, {"seq": 1}]], {"chunk": "k1"}]))
assert read() == {"ack": "k1"}
sock, pong, read = handshake(b"wrong")
assert pong[1] is False and "shared key" in pong[2], pong
sock.sendall(msgpack.packb(["pydata.sensor5.temp", [[1700000000, {"seq": 2}]], {"chunk": "k2"}]))
assert read() is None, "data accepted after a failed handshake"
print("ok")
"#;
    let out = run_python(&py, script, &[("PORT", &port)]);
    assert_eq!(out.trim(), "ok");
    let got = stream_records(&server, "data_stream_module/sensor5.temp");
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), vec![1]);

    // A listener reachable from other hosts needs a shared key.
    let mut env = server.cli_env();
    env.push(("WENDELIN_INGESTION_FORWARD", "0.0.0.0:0"));
    let (ok, _, err) = run_cli(&["serve", "--bind", "127.0.0.1:0"], &env, "");
    assert!(!ok);
    assert!(err.contains("forward_shared_key"), "{err}");
}

/// A record `[seq, {"w": writer, "seq": seq, "pad": …}]` as msgpack.
fn record(writer: u64, seq: u64, pad: usize) -> Vec<u8> {
    let letter = char::from(b'a' + (writer % 26) as u8);
    let v = Value::Array(vec![
        Value::from(seq),
        Value::Map(vec![
            (Value::from("w"), Value::from(writer)),
            (Value::from("seq"), Value::from(seq)),
            (
                Value::from("pad"),
                Value::from(letter.to_string().repeat(pad)),
            ),
        ]),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).unwrap();
    out
}

fn post_msgpack(base: &str, token: &str, tag: &str, body: &[u8]) -> Result<u16, String> {
    match agent()
        .post(&format!("{base}/api/v1/ingest/pydata/{tag}"))
        .set("authorization", &format!("Bearer {token}"))
        .set("content-type", "application/x-msgpack")
        .send_bytes(body)
    {
        Ok(r) => Ok(r.status()),
        Err(ureq::Error::Status(s, r)) => Err(format!("{s}: {}", r.into_string().unwrap())),
        Err(e) => Err(e.to_string()),
    }
}

/// A small deterministic pseudo-random sequence (xorshift), seeded from the clock.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn kill_9_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_rounds(dir.path(), &[], 20);
}

/// The same with segments of 64 KiB: the kills also land while a segment is started
/// (each commit record lives in its segment's header).
#[test]
fn kill_9_across_segment_rotations() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_rounds(
        dir.path(),
        &[("WENDELIN_DATA_STREAM_SEGMENT_BYTES", "65536")],
        12,
    );
    let mut segments = 0;
    for stream in std::fs::read_dir(dir.path().join("var").join("streams")).unwrap() {
        for f in std::fs::read_dir(stream.unwrap().path()).unwrap() {
            segments += usize::from(f.unwrap().file_name().to_string_lossy().ends_with(".cseg"));
        }
    }
    assert!(
        segments > 6,
        "only {segments} segments: no rotation was exercised"
    );
}

/// The same with `[data_stream] direct_writes`: each body goes to the device with
/// `O_DIRECT` in whole blocks, its last block padded with zeros beyond the end (dropped
/// on restart), the next body rewriting that block.
#[test]
fn kill_9_with_direct_writes() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_rounds(
        dir.path(),
        &[("WENDELIN_DATA_STREAM_DIRECT_WRITES", "true")],
        10,
    );
}

/// Rounds of: writers append records in order, the server is killed (SIGKILL) at a random
/// moment and restarted; every acknowledged record must be there, in order, undamaged.
fn kill_9_rounds(dir: &Path, env: &[(&str, &str)], rounds: usize) {
    let mut server = setup(dir, env);
    let writers = 3u64;
    let mut next = vec![0u64; writers as usize];
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut total_acked = 0;
    for round in 0..rounds {
        let acked: Vec<Arc<AtomicU64>> =
            (0..writers).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (base, token) = (server.base.clone(), server.manager_token.clone());
                let acked = acked[w as usize].clone();
                let start = next[w as usize];
                std::thread::spawn(move || {
                    // Each writer sends in order and stops at the first failure (the kill).
                    let mut seq = start;
                    loop {
                        let body = record(w, seq, 200 + (seq as usize % 3000));
                        match post_msgpack(&base, &token, &format!("crash{w}.temp"), &body) {
                            Ok(200) => {
                                seq += 1;
                                acked.store(seq, Ordering::SeqCst);
                            }
                            Ok(s) => panic!("unexpected status {s}"),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100 + xorshift(&mut rng) % 500));
        server.kill_and_restart();
        for h in handles {
            h.join().unwrap();
        }
        for w in 0..writers {
            let acked = acked[w as usize].load(Ordering::SeqCst);
            let path = format!("data_stream_module/crash{w}.temp");
            let records = if acked == 0 && next[w as usize] == 0 {
                // The stream may not exist yet if the very first request was cut.
                let r = server.req("GET", &format!("/api/v1/{path}"), None);
                if r.status == 404 {
                    continue;
                }
                stream_records(&server, &path)
            } else {
                stream_records(&server, &path)
            };
            let seqs: Vec<u64> = records.iter().map(seq).collect();
            assert_eq!(
                seqs,
                (0..seqs.len() as u64).collect::<Vec<_>>(),
                "round {round}, writer {w}: records missing, repeated or out of order"
            );
            for (i, r) in records.iter().enumerate() {
                let pad = field(r, "pad").as_str().unwrap();
                assert_eq!(
                    pad.len(),
                    200 + (i % 3000),
                    "round {round}: damaged record {i}"
                );
            }
            assert!(
                seqs.len() as u64 >= acked,
                "round {round}, writer {w}: {acked} acknowledged, {} stored",
                seqs.len()
            );
            total_acked += acked - next[w as usize].min(acked);
            eprintln!(
                "round {round}, writer {w}: {acked} acknowledged in all, {} stored",
                seqs.len()
            );
            next[w as usize] = seqs.len() as u64;
        }
    }
    assert!(total_acked > 0, "no append was ever acknowledged");
}

/// Bodies of more than a megabyte are written to the stream while they arrive and
/// checked as they pass: the valid ones are stored whole and in order, a body with a bad
/// byte in its middle or cut short is refused (400) and leaves nothing in the stream,
/// and the appends after it go on. The pieces written on the event loop (as usual; no
/// write counts as slow here, so none moves them)…
#[test]
fn large_bodies_are_written_while_they_arrive_and_checked_whole() {
    large_bodies(&[("WENDELIN_INGESTION_PREWRITE_SLOW_MS", "600000")]);
}

/// … and in batches on the blocking pool (as after a slow write).
#[test]
fn large_bodies_written_off_the_event_loop_are_checked_whole() {
    large_bodies(&[("WENDELIN_INGESTION_PREWRITE_SLOW_MS", "0")]);
}

/// … and with `O_DIRECT` (`[data_stream] direct_writes`), where the file system takes it.
#[test]
fn large_bodies_written_with_o_direct_are_checked_whole() {
    large_bodies(&[
        ("WENDELIN_INGESTION_PREWRITE_SLOW_MS", "600000"),
        ("WENDELIN_DATA_STREAM_DIRECT_WRITES", "true"),
    ]);
}

fn large_bodies(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path(), env);
    let (base, token) = (server.base.clone(), server.manager_token.clone());
    let per_body = 1200u64;
    let body = |first: u64| -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for s in first..first + per_body {
            starts.push(out.len());
            out.extend(record(1, s, 1000));
        }
        (out, starts)
    };
    // The first append resolves the route and opens the stream: later ones prewrite.
    assert_eq!(
        post_msgpack(&base, &token, "big.temp", &record(1, 0, 10)),
        Ok(200)
    );
    let mut next = 1u64;
    for round in 0..3 {
        let (good, _) = body(next);
        assert!(good.len() > 1 << 20);
        assert_eq!(post_msgpack(&base, &token, "big.temp", &good), Ok(200));
        next += per_body;
        // An invalid marker at a record's start, past the first batches.
        let (mut bad, starts) = body(next);
        bad[starts[starts.len() / 2 + round * 100]] = 0xc1;
        let refused = post_msgpack(&base, &token, "big.temp", &bad).unwrap_err();
        assert!(
            refused.starts_with("400") && refused.contains("malformed msgpack"),
            "{refused}"
        );
        // Cut short: the last record is incomplete.
        let (cut, _) = body(next);
        let refused = post_msgpack(&base, &token, "big.temp", &cut[..cut.len() - 3]).unwrap_err();
        assert!(
            refused.starts_with("400") && refused.contains("truncated"),
            "{refused}"
        );
    }
    let (good, _) = body(next);
    assert_eq!(post_msgpack(&base, &token, "big.temp", &good), Ok(200));
    next += per_body;
    let records = stream_records(&server, "data_stream_module/big.temp");
    assert_eq!(
        records.iter().map(seq).collect::<Vec<_>>(),
        (0..next).collect::<Vec<_>>(),
        "every accepted body whole and in order, nothing of a refused one"
    );
}

#[test]
fn thirty_two_clients_on_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path(), &[]);
    let clients = 32u64;
    let requests = 10u64;
    let per_request = 5u64;
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (base, token) = (server.base.clone(), server.manager_token.clone());
            std::thread::spawn(move || {
                for r in 0..requests {
                    let mut body = Vec::new();
                    for k in 0..per_request {
                        body.extend(record(c, r * per_request + k, 2000 + c as usize));
                    }
                    let status = post_msgpack(&base, &token, "shared.temp", &body).unwrap();
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let records = stream_records(&server, "data_stream_module/shared.temp");
    assert_eq!(records.len() as u64, clients * requests * per_request);
    let mut last = vec![None::<u64>; clients as usize];
    for (i, r) in records.iter().enumerate() {
        let w = field(r, "w").as_u64().unwrap();
        let s = seq(r);
        let pad = field(r, "pad").as_str().unwrap();
        let letter = char::from(b'a' + (w % 26) as u8);
        assert_eq!(pad.len(), 2000 + w as usize, "record {i} damaged");
        assert!(pad.chars().all(|ch| ch == letter), "record {i} interleaved");
        // A client's records arrive in order; a request's records are contiguous.
        assert_eq!(
            last[w as usize].map_or(0, |p| p + 1),
            s,
            "client {w} out of order at {i}"
        );
        if !s.is_multiple_of(per_request) {
            assert_eq!(
                field(&records[i - 1], "w").as_u64().unwrap(),
                w,
                "request split at {i}"
            );
        }
        last[w as usize] = Some(s);
    }
}

#[test]
fn back_pressure_answers_503_with_retry_after() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let server = setup(
        dir.path(),
        &[("WENDELIN_INGESTION_MAX_INFLIGHT_BYTES", "1000")],
    );
    let body = record(0, 0, 1500);
    // A slow client: its declared length is reserved while its body trickles in.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /api/v1/ingest/pydata/slow.temp HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/x-msgpack\r\n\
         Content-Length: {}\r\n\r\n",
        server.manager_token,
        body.len()
    )
    .unwrap();
    slow.write_all(&body[..10]).unwrap();
    slow.flush().unwrap();
    // Let it pass authentication and reserve first (a request racing it would win).
    std::thread::sleep(Duration::from_millis(1000));
    // Another request while those bytes are in flight is refused, retryably.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let r = agent()
            .post(&server.url("/api/v1/ingest/pydata/other.temp"))
            .set("authorization", &format!("Bearer {}", server.manager_token))
            .set("content-type", "application/x-msgpack")
            .send_bytes(&body);
        match r {
            Err(ureq::Error::Status(503, resp)) => break resp,
            Ok(_) => {
                // The slow request had not reached the handler yet.
                if Instant::now() > deadline {
                    slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let mut buf = [0u8; 500];
                    let n = slow.read(&mut buf).unwrap_or(0);
                    panic!(
                        "never refused; slow got {:?}",
                        String::from_utf8_lossy(&buf[..n])
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.into_string().unwrap().contains("retry later"));
    // The slow request completes normally once its body arrives.
    slow.write_all(&body[10..]).unwrap();
    let mut reply = [0u8; 12];
    slow.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"HTTP/1.1 200");
    drop(slow);
    let r = post_msgpack(&server.base, &server.manager_token, "other.temp", &body);
    assert_eq!(r, Ok(200));
}

/// An entry `[1, [[…[]…]]]` nested `depth` containers deep in all.
fn nested_entry(depth: usize) -> Vec<u8> {
    let mut v = vec![0x92, 0x01];
    v.extend(std::iter::repeat_n(0x91, depth - 2));
    v.push(0x90);
    v
}

#[test]
fn msgpack_nesting_limit_is_the_same_for_storing_and_reading() {
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path(), &[]);
    let ingest = |body: &[u8]| {
        server.raw(
            "POST",
            "/api/v1/ingest/pydata/deep.temp",
            "application/x-msgpack",
            body,
        )
    };
    // At the limit (100 levels): stored, and read back by readMsgpackChunkList.
    let ok = ingest(&nested_entry(100));
    assert_eq!(ok.status, 200, "{}", ok.text);
    let size = server
        .req("GET", "/data_stream_module/deep.temp/getSize", None)
        .json();
    let read = server.req(
        "GET",
        "/data_stream_module/deep.temp/readMsgpackChunkList?start=0&end=100000",
        None,
    );
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json()["records"].as_array().unwrap().len(), 1);
    assert_eq!(read.json()["next_offset"], size);
    // One level deeper, the probe's 200,000, or too deep once a JSON record is timed:
    // refused with a 400 naming the limit, nothing stored.
    let deep_json = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let bodies = [
        ("application/x-msgpack", nested_entry(101)),
        ("application/x-msgpack", nested_entry(200_000)),
        // [time, record] nests one deeper than the JSON record.
        ("application/json", format!("[{deep_json}]").into_bytes()),
    ];
    for (ct, body) in bodies {
        let r = server.raw("POST", "/api/v1/ingest/pydata/deep.temp", ct, &body);
        assert_eq!(r.status, 400, "{ct} of {} bytes: {}", body.len(), r.text);
        assert!(r.error_message().contains("100 levels"), "{}", r.text);
        assert_eq!(
            server
                .req("GET", "/data_stream_module/deep.temp/getSize", None)
                .json(),
            size
        );
    }
    assert_eq!(server.anon("GET", "/health", None).status, 200);
}
