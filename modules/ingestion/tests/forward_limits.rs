//! The Forward listener's limits (issue 14, finding 4), each reproduced against the real
//! `wendelin serve`: a PING before authentication is read with a small bound and a
//! declared length beyond it is refused before its bytes arrive; a CompressedPackedForward
//! gzip bomb is refused (no ack, nothing stored); idle connections are closed after
//! `forward_idle_timeout_secs`, a silent handshake after `forward_handshake_timeout_secs`,
//! and idle sockets cannot hold the connection limit for longer than that.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rmpv::Value;
use wendelin_tests::{free_port, run_cli, TestServer};

/// A server with the policy `pydata` (product `temp`) and a Forward listener.
fn setup(dir: &Path, env: &[(&str, &str)]) -> (TestServer, String) {
    let forward = format!("127.0.0.1:{}", free_port());
    let mut all = vec![("WENDELIN_INGESTION_FORWARD", forward.as_str())];
    all.extend_from_slice(env);
    let server = TestServer::start_with_env(&dir.join("var"), None, &all);
    let (ok, out, err) = run_cli(
        &["ingestion", "add", "pydata", "--product", "temp"],
        &server.cli_env(),
        "",
    );
    assert!(ok, "ingestion add failed: {out} {err}");
    (server, forward)
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_value(s: &mut TcpStream) -> Value {
    rmpv::decode::read_value(s).unwrap()
}

fn send(s: &mut TcpStream, v: &Value) {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).unwrap();
    s.write_all(&buf).unwrap();
}

/// Waits until the server closes `s` (EOF or reset); panics if it is still open when the
/// client's read timeout runs out, and returns how long it took.
fn wait_closed(s: &mut TcpStream, what: &str) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => t.elapsed(),
        Ok(_) => panic!("{what}: the server answered instead of closing"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("{what}: still open after {:?}", t.elapsed())
        }
        Err(_) => t.elapsed(),
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn health(server: &TestServer) {
    assert_eq!(server.anon("GET", "/health", None).status, 200);
}

fn stream_size(server: &TestServer, id: &str) -> u64 {
    let r = server.req("GET", &format!("/data_stream_module/{id}/getSize"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json().as_u64().unwrap()
}

fn entry(seq: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let record = Value::Map(vec![(Value::from("seq"), Value::from(seq))]);
    rmpv::encode::write_value(
        &mut buf,
        &Value::Array(vec![Value::from(1_700_000_000u64 + seq), record]),
    )
    .unwrap();
    buf
}

fn options(pairs: &[(&str, &str)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), Value::from(*v)))
            .collect(),
    )
}

#[test]
fn oversized_ping_before_authentication_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, fwd) = setup(
        dir.path(),
        &[
            ("WENDELIN_INGESTION_FORWARD_SHARED_KEY", "s3cret"),
            ("WENDELIN_INGESTION_FORWARD_HANDSHAKE_TIMEOUT_SECS", "2"),
        ],
    );
    let pid = server.pid().unwrap();

    // The probe's reproduction: a PING whose first item declares a 1 GiB string. The
    // server must refuse the declared length, not wait for (and buffer) its bytes.
    let mut s = connect(&fwd);
    let helo = read_value(&mut s);
    assert_eq!(helo[0].as_str(), Some("HELO"), "{helo}");
    s.write_all(b"\x94\xdb\x40\x00\x00\x00").unwrap();
    s.write_all(&[b'x'; 1000]).unwrap();
    let took = wait_closed(&mut s, "PING declaring a 1 GiB string");
    assert!(took < Duration::from_secs(2), "closed only after {took:?}");
    health(&server);

    // No declared length is large, but the PING grows past the pre-authentication bound
    // (64 KiB): the server stops reading there, long before 64 MiB are sent.
    let before = rss_kib(pid);
    let mut s = connect(&fwd);
    let _helo = read_value(&mut s);
    let mut item = vec![0xc5, 0x03, 0xe8]; // bin16 of 1000 bytes
    item.extend_from_slice(&[7u8; 1000]);
    let mut sent = 3usize;
    s.write_all(&[0xdc, 0xff, 0xff]).unwrap(); // array16 of 65535 items: 65 MB
    let refused = (0..65535).any(|_| match s.write_all(&item) {
        Ok(()) => {
            sent += item.len();
            false
        }
        Err(_) => true,
    });
    assert!(
        refused,
        "the server read a 65 MB PING to its end (before authentication)"
    );
    assert!(
        sent < 16 << 20,
        "{sent} bytes were sent before the server closed"
    );
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 16 * 1024, "the server's RSS grew by {grown} KiB");
    health(&server);

    // A client that says nothing after HELO is closed after the handshake timeout, and
    // so is one that drips its PING a byte at a time (the timeout bounds the handshake,
    // not each read).
    let mut s = connect(&fwd);
    let _helo = read_value(&mut s);
    let took = wait_closed(&mut s, "silent handshake");
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
    let mut s = connect(&fwd);
    let _helo = read_value(&mut s);
    let t = Instant::now();
    let mut ping = Vec::new();
    rmpv::encode::write_value(
        &mut ping,
        &Value::Array(vec![
            Value::from("PING"),
            Value::from("client"),
            Value::from("salt"),
            Value::from("0".repeat(128)),
            Value::from(""),
            Value::from(""),
        ]),
    )
    .unwrap();
    let dripped = ping.iter().all(|b| {
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(&[*b]).is_ok()
    });
    assert!(
        !dripped || t.elapsed() < Duration::from_secs(3),
        "a PING dripped over {:?} was still read",
        t.elapsed()
    );
    let _ = wait_closed(&mut s, "dripped PING");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    health(&server);
}

#[test]
fn gzip_bomb_in_compressed_packed_forward_is_refused() {
    use flate2::write::GzEncoder;
    let dir = tempfile::tempdir().unwrap();
    let (server, fwd) = setup(
        dir.path(),
        &[("WENDELIN_INGESTION_MAX_BODY_BYTES", "1048576")],
    );
    let tag = "pydata.bomb.temp";
    let mut s = connect(&fwd);
    send(
        &mut s,
        &Value::Array(vec![
            Value::from(tag),
            Value::Binary(entry(1)),
            options(&[("chunk", "ok1")]),
        ]),
    );
    assert_eq!(read_value(&mut s)["ack"].as_str(), Some("ok1"));
    let size = stream_size(&server, "bomb.temp");
    assert!(size > 0);

    // 16 MiB of zeros (each a valid msgpack value) in a few KB of gzip, 16 times the
    // limit once decompressed.
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..16 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    send(
        &mut s,
        &Value::Array(vec![
            Value::from(tag),
            Value::Binary(bomb),
            options(&[("chunk", "bomb"), ("compressed", "gzip")]),
        ]),
    );
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "the gzip bomb was answered: {:?}",
            rmpv::decode::read_value(&mut &buf[..n])
        ),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the connection stayed open after a gzip bomb")
        }
        Err(_) => {}
    }
    assert_eq!(
        stream_size(&server, "bomb.temp"),
        size,
        "the bomb was stored"
    );
    // Within the limit, compressed entries still work.
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&entry(2)).unwrap();
    let mut s = connect(&fwd);
    send(
        &mut s,
        &Value::Array(vec![
            Value::from(tag),
            Value::Binary(gz.finish().unwrap()),
            options(&[("chunk", "ok2"), ("compressed", "gzip")]),
        ]),
    );
    assert_eq!(read_value(&mut s)["ack"].as_str(), Some("ok2"));
    assert_eq!(
        stream_size(&server, "bomb.temp"),
        size + entry(2).len() as u64
    );
    health(&server);
}

#[test]
fn idle_connections_are_closed_and_cannot_hold_the_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (server, fwd) = setup(
        dir.path(),
        &[
            ("WENDELIN_INGESTION_FORWARD_IDLE_TIMEOUT_SECS", "2"),
            ("WENDELIN_INGESTION_FORWARD_MAX_CONNECTIONS", "4"),
        ],
    );
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..4).map(|_| connect(&fwd)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // The limit is reached: one more is closed at once.
    let mut extra = connect(&fwd);
    let took = wait_closed(&mut extra, "connection beyond the limit");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The idle ones are closed after the idle timeout.
    for (i, s) in idle.iter_mut().enumerate() {
        wait_closed(s, &format!("idle connection {i}"));
    }
    let idle_for = opened.elapsed();
    assert!(
        idle_for >= Duration::from_millis(1800) && idle_for < Duration::from_secs(6),
        "idle connections closed after {idle_for:?}"
    );
    // Then senders get in again.
    let mut s = connect(&fwd);
    send(
        &mut s,
        &Value::Array(vec![
            Value::from("pydata.idle.temp"),
            Value::Binary(entry(1)),
            options(&[("chunk", "after")]),
        ]),
    );
    assert_eq!(read_value(&mut s)["ack"].as_str(), Some("after"));
    // A connection that keeps sending is not idle.
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(1200));
        let id = format!("keep{i}");
        send(
            &mut s,
            &Value::Array(vec![
                Value::from("pydata.idle.temp"),
                Value::Binary(entry(2 + i)),
                options(&[("chunk", &id)]),
            ]),
        );
        assert_eq!(read_value(&mut s)["ack"].as_str(), Some(id.as_str()));
    }
    health(&server);
}
