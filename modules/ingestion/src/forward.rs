//! The Fluentd Forward protocol listener (fluentd `out_forward`, Fluent Bit, every
//! fluent-logger): Message, Forward, PackedForward and CompressedPackedForward modes, an
//! `{"ack": chunk}` reply once the data is durable when the sender asks with `chunk`,
//! and the HELO/PING/PONG shared-key handshake when a key is configured.
//!
//! One thread per connection, blocking i/o: senders keep few long-lived connections and
//! every append blocks on the disk anyway. Tag → policy routing: `forward_policy`, or
//! else the tag's first part names the policy and the rest is the ingestion tag. Data is
//! ingested through [`crate::ingest`], as over HTTP; a connection keeps its resolved
//! routes ([`crate::Routes`]) for [`ROUTE_TTL`] (at most [`ROUTE_CAPACITY`] of them);
//! permissions are re-checked then. Started by `wendelin serve` when `[ingestion]
//! forward` names an address (`ServerModule::start`).
//!
//! Limits: every value is read through [`FrameReader`], which finds its end with
//! [`msgpack::Scanner`] before decoding anything, so a declared length beyond what may
//! still be read is refused before its bytes are awaited. Before authentication a value
//! may take [`HANDSHAKE_MAX_BYTES`], after it `[ingestion] max_body_bytes`; nesting is bounded
//! by [`msgpack::MAX_DEPTH`]; CompressedPackedForward entries are decompressed up to
//! `max_body_bytes`. The handshake must finish within
//! `forward_handshake_timeout_secs`; a connection that sends nothing (or cannot be
//! written to) for `forward_idle_timeout_secs` is closed, so idle sockets hold the
//! `forward_max_connections` slots only that long. Decoding a frame from its bytes
//! ([`decode_message`], [`decode_ping`]) is a pure function (fuzzed in `fuzz/`).

use std::io::{BufWriter, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmpv::{Value, ValueRef};
use sha2::{Digest, Sha512};
use wendelin_core::{users, CoreError, Portal, User};
use wendelin_data_stream::{msgpack, Durability};
use wendelin_http::ServerError;

use crate::http::IngestionConfig;
use crate::{Payload, Routes, ROUTE_CAPACITY, ROUTE_TTL};

/// Largest msgpack value read before the handshake succeeded (a PING is about 200 bytes).
pub const HANDSHAKE_MAX_BYTES: usize = 64 * 1024;
/// Largest options map of a message (`chunk`, `size`, `compressed`: a few dozen bytes).
pub const OPTION_MAX_BYTES: usize = 64 * 1024;
/// Bytes asked of the socket per read, at most.
const READ_CHUNK: usize = 1 << 20;

struct Listener {
    portal: Portal,
    user: User,
    shared_key: Option<String>,
    policy: Option<String>,
    hostname: String,
    /// Largest message read into memory, and largest decompressed entries
    /// (`[ingestion] max_body_bytes`).
    max_message: usize,
    max_connections: usize,
    handshake_timeout: Duration,
    idle_timeout: Duration,
}

static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Binds the Forward listener (before anything else starts, so a bad address fails
/// fast). Refuses a non-loopback address without a shared key.
pub fn bind(config: &IngestionConfig) -> Result<TcpListener, ServerError> {
    let addr = config.forward.as_str();
    let listener = TcpListener::bind(addr)
        .map_err(|e| ServerError::Config(format!("cannot listen for Forward on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() && config.forward_shared_key.is_empty() {
        return Err(ServerError::Config(format!(
            "the Forward listener on {local} is reachable from other hosts: set [ingestion] forward_shared_key"
        )));
    }
    Ok(listener)
}

/// Serves a bound Forward listener on background threads; returns its address.
pub fn spawn(
    listener: TcpListener,
    portal: Portal,
    config: &IngestionConfig,
) -> Result<SocketAddr, ServerError> {
    let local = listener.local_addr()?;
    let user = portal
        .db
        .read(|c| users::load_user(c, &config.forward_user))
        .map_err(|e| {
            ServerError::Config(format!(
                "[ingestion] forward_user '{}' cannot be used: {e}",
                config.forward_user
            ))
        })?;
    let shared = Arc::new(Listener {
        portal,
        user,
        shared_key: Some(config.forward_shared_key.clone()).filter(|k| !k.is_empty()),
        policy: Some(config.forward_policy.clone()).filter(|p| !p.is_empty()),
        hostname: "wendelin".into(),
        max_message: config.max_body_bytes,
        max_connections: config.forward_max_connections,
        handshake_timeout: Duration::from_secs(config.forward_handshake_timeout_secs.max(1)),
        idle_timeout: Duration::from_secs(config.forward_idle_timeout_secs.max(1)),
    });
    std::thread::Builder::new()
        .name("forward-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "forward accept failed");
                        continue;
                    }
                };
                if CONNECTIONS.fetch_add(1, Ordering::AcqRel) >= shared.max_connections {
                    CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!("too many Forward connections; closing a new one");
                    continue;
                }
                let shared = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("forward-conn".into())
                    .spawn(move || {
                        let peer = conn.peer_addr().ok();
                        if let Err(e) = serve_connection(&shared, conn) {
                            tracing::info!(?peer, error = %e, "forward connection closed");
                        }
                        CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    tracing::info!(addr = %local, "forward protocol listening");
    println!("forward protocol listening on {local}");
    Ok(local)
}

/// Why a connection ended, or why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing arrived in time.
    #[error("{0}")]
    Timeout(&'static str),
    /// The peer broke the protocol or a limit.
    #[error("protocol: {0}")]
    Protocol(String),
}

fn protocol(msg: impl Into<String>) -> ConnError {
    ConnError::Protocol(msg.into())
}

/// Reads one msgpack value after the other from a connection, each bounded in size and
/// nesting, with a read timeout per read and an optional deadline for the value.
pub struct FrameReader<R> {
    inner: R,
    /// Bytes received and not yet returned; a value being read starts at 0.
    buf: Vec<u8>,
}

/// A connection whose reads can be given a timeout.
pub trait TimedRead: Read {
    /// Sets the longest wait of the next reads.
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()>;
}

impl TimedRead for TcpStream {
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl<R: TimedRead> FrameReader<R> {
    /// Wraps a connection.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
        }
    }

    /// The next value's bytes (`None` at a clean end of the connection). At most
    /// `limit` bytes are accepted for it — a declared length beyond that is refused
    /// before its bytes are awaited — and it must arrive by `deadline` with no wait
    /// longer than `idle` between reads.
    pub fn next(
        &mut self,
        limit: usize,
        idle: Duration,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<u8>>, ConnError> {
        let mut scanner = msgpack::Scanner::new(limit);
        loop {
            let need = match scanner.advance(&self.buf) {
                Ok(msgpack::Scan::Complete(n)) => {
                    let rest = self.buf.split_off(n);
                    return Ok(Some(std::mem::replace(&mut self.buf, rest)));
                }
                Ok(msgpack::Scan::Incomplete(need)) => need,
                Err(e) => return Err(protocol(format!("refused msgpack value: {e}"))),
            };
            let mut wait = idle;
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
                if wait.is_zero() {
                    return Err(ConnError::Timeout("handshake timeout"));
                }
            }
            self.inner.set_timeout(wait)?;
            let old = self.buf.len();
            let want = need.saturating_sub(old).clamp(64 * 1024, READ_CHUNK);
            self.buf.resize(old + want, 0);
            let got = self.inner.read(&mut self.buf[old..]);
            self.buf.truncate(old + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) if old == 0 => return Ok(None),
                Ok(0) => return Err(protocol("connection closed inside a value")),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(ConnError::Timeout(if deadline.is_some() {
                        "handshake timeout"
                    } else {
                        "idle timeout"
                    }));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn write_value(w: &mut impl Write, v: &Value) -> Result<(), ConnError> {
    rmpv::encode::write_value(w, v).map_err(|e| protocol(format!("cannot encode: {e}")))?;
    w.flush()?;
    Ok(())
}

fn nonce() -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha512::new();
    h.update(format!(
        "{:?}{}{}",
        std::time::SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    h.finalize()[..16].to_vec()
}

fn hex_sha512(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn ref_bytes<'a>(v: &'a ValueRef<'_>) -> Option<&'a [u8]> {
    match v {
        ValueRef::String(s) => Some(s.as_bytes()),
        ValueRef::Binary(b) => Some(b),
        _ => None,
    }
}

/// A decoded PING: `["PING", hostname, salt, hexdigest, username?, password?]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The client's hostname.
    pub hostname: Vec<u8>,
    /// The shared key salt.
    pub salt: Vec<u8>,
    /// hex(sha512(salt + hostname + nonce + key)).
    pub digest: Vec<u8>,
}

/// Decodes a PING from one complete msgpack value's bytes.
pub fn decode_ping(frame: &[u8]) -> Result<Ping, ConnError> {
    let v = rmpv::decode::read_value_ref_with_max_depth(&mut &frame[..], 4 * msgpack::MAX_DEPTH)
        .map_err(|e| protocol(format!("malformed PING: {e}")))?;
    let ValueRef::Array(p) = v else {
        return Err(protocol("expected PING"));
    };
    if p.first().and_then(ref_bytes) != Some(b"PING".as_slice()) || p.len() < 4 {
        return Err(protocol("expected PING"));
    }
    let item = |i: usize| p.get(i).and_then(ref_bytes).unwrap_or_default().to_vec();
    Ok(Ping {
        hostname: item(1),
        salt: item(2),
        digest: item(3),
    })
}

/// The PONG answering `ping` for the HELO that sent `nonce`, and whether the key matched.
pub fn pong(ping: &Ping, nonce: &[u8], key: &str, hostname: &str) -> (Value, bool) {
    let expected = hex_sha512(&[&ping.salt, &ping.hostname, nonce, key.as_bytes()]);
    let ok = expected.as_bytes() == ping.digest.as_slice();
    let reason = if ok { "" } else { "shared key mismatch" };
    let pong = Value::Array(vec![
        Value::from("PONG"),
        Value::Boolean(ok),
        Value::from(reason),
        Value::from(hostname),
        Value::from(hex_sha512(&[
            &ping.salt,
            hostname.as_bytes(),
            nonce,
            key.as_bytes(),
        ])),
    ]);
    (pong, ok)
}

/// HELO → PING → PONG within `l.handshake_timeout`; an error closes the connection.
fn handshake<R: TimedRead>(
    l: &Listener,
    key: &str,
    r: &mut FrameReader<R>,
    w: &mut impl Write,
) -> Result<(), ConnError> {
    let deadline = Instant::now() + l.handshake_timeout;
    let nonce = nonce();
    let helo = Value::Array(vec![
        Value::from("HELO"),
        Value::Map(vec![
            (Value::from("nonce"), Value::Binary(nonce.clone())),
            (Value::from("auth"), Value::Binary(Vec::new())),
            (Value::from("keepalive"), Value::Boolean(true)),
        ]),
    ]);
    write_value(w, &helo)?;
    let frame = r
        .next(HANDSHAKE_MAX_BYTES, l.idle_timeout, Some(deadline))?
        .ok_or_else(|| protocol("closed before PING"))?;
    let ping = decode_ping(&frame)?;
    let (pong, ok) = pong(&ping, &nonce, key, &l.hostname);
    write_value(w, &pong)?;
    if ok {
        Ok(())
    } else {
        Err(protocol("shared key mismatch"))
    }
}

fn serve_connection(l: &Listener, conn: TcpStream) -> Result<(), ConnError> {
    conn.set_nodelay(true)?;
    conn.set_write_timeout(Some(l.idle_timeout))?;
    let mut reader = FrameReader::new(conn.try_clone()?);
    let mut writer = BufWriter::new(conn);
    if let Some(key) = &l.shared_key {
        handshake(l, key, &mut reader, &mut writer)?;
    }
    let mut routes = Routes::cached(ROUTE_TTL, ROUTE_CAPACITY);
    while let Some(frame) = reader.next(l.max_message, l.idle_timeout, None)? {
        let msg = decode_message(&frame, l.max_message)?;
        drop(frame);
        let mode = if msg.chunk.is_some() {
            Durability::Durable
        } else {
            Durability::Lazy
        };
        match append(l, &mut routes, &msg.tag, msg.entries, mode) {
            Ok(()) => {
                if let Some(id) = msg.chunk {
                    let ack = Value::Map(vec![(Value::from("ack"), Value::from(id))]);
                    write_value(&mut writer, &ack)?;
                }
            }
            // No ack: the sender keeps the chunk and retries.
            Err(e) => tracing::warn!(tag = %msg.tag, error = %e, "forward data refused"),
        }
    }
    Ok(())
}

/// A decoded Forward message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The tag.
    pub tag: String,
    /// The entries as a msgpack stream of `[time, record]`, validated.
    pub entries: Vec<u8>,
    /// The `chunk` option: the sender wants `{"ack": chunk}` once durable.
    pub chunk: Option<String>,
}

/// The items of a msgpack array held whole in `frame`, as byte slices.
fn array_items(frame: &[u8]) -> Result<Vec<&[u8]>, ConnError> {
    let not_array = || protocol("a Forward message must be an array");
    let (&m, _) = frame.split_first().ok_or_else(not_array)?;
    let (head, len) = match m {
        0x90..=0x9f => (1, usize::from(m & 0x0f)),
        0xdc => match frame.get(1..3) {
            Some(b) => (3, usize::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Err(not_array()),
        },
        _ => return Err(not_array()),
    };
    if !(2..=4).contains(&len) {
        return Err(protocol("a Forward message has 2 to 4 items"));
    }
    let mut items = Vec::with_capacity(len);
    let mut pos = head;
    for _ in 0..len {
        let rest = frame.get(pos..).unwrap_or_default();
        match msgpack::Scanner::new(rest.len()).advance(rest) {
            Ok(msgpack::Scan::Complete(n)) => {
                items.push(&rest[..n]);
                pos += n;
            }
            Ok(msgpack::Scan::Incomplete(_)) | Err(msgpack::ScanError::TooLong { .. }) => {
                return Err(protocol("truncated Forward message"))
            }
            Err(e) => return Err(protocol(format!("refused msgpack value: {e}"))),
        }
    }
    Ok(items)
}

/// The bytes of a str or bin value held whole in `v`.
fn str_or_bin(v: &[u8]) -> Option<&[u8]> {
    let (&m, rest) = v.split_first()?;
    let (skip, len): (usize, usize) = match m {
        0xa0..=0xbf => (0, usize::from(m & 0x1f)),
        0xc4 | 0xd9 => (1, usize::from(*rest.first()?)),
        0xc5 | 0xda => (
            2,
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
        ),
        0xc6 | 0xdb => {
            let b = rest.get(..4)?;
            (
                4,
                usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()?,
            )
        }
        _ => return None,
    };
    rest.get(skip..skip.checked_add(len)?)
}

fn option_str(option: &Option<ValueRef<'_>>, key: &str) -> Option<String> {
    let Some(ValueRef::Map(m)) = option else {
        return None;
    };
    m.iter()
        .find(|(k, _)| ref_bytes(k) == Some(key.as_bytes()))
        .and_then(|(_, v)| ref_bytes(v))
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Decodes a Forward message from one complete msgpack value's bytes (as
/// [`FrameReader::next`] returns them): its tag, its entries as a msgpack stream of
/// `[time, record]` (validated; CompressedPackedForward entries are decompressed up to
/// `max_entries` bytes, beyond which the message is refused), and its `chunk` option.
/// Nothing is decoded into a tree but the tag and the options.
pub fn decode_message(frame: &[u8], max_entries: usize) -> Result<Message, ConnError> {
    let items = array_items(frame)?;
    let tag = str_or_bin(items[0])
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| protocol("the tag must be a string"))?;
    let second = items[1];
    let marker = second[0];
    let is_time =
        matches!(marker, 0x00..=0x7f | 0xe0..=0xff | 0xca..=0xd3 | 0xc7..=0xc9 | 0xd4..=0xd8);
    let is_array = matches!(marker, 0x90..=0x9f | 0xdc | 0xdd);
    let option_at = if is_time { 3 } else { 2 };
    let option = match items.get(option_at) {
        Some(o) if o.len() > OPTION_MAX_BYTES => {
            return Err(protocol(format!(
                "the options of a Forward message take more than {OPTION_MAX_BYTES} bytes"
            )))
        }
        Some(o) => Some(
            rmpv::decode::read_value_ref_with_max_depth(&mut &o[..], 4 * msgpack::MAX_DEPTH)
                .map_err(|e| protocol(format!("malformed options: {e}")))?,
        ),
        None => None,
    };
    let entries = if is_time {
        // Message: [tag, time, record, option?]
        let record = items
            .get(2)
            .ok_or_else(|| protocol("a Message needs a record"))?;
        let mut out = Vec::with_capacity(1 + second.len() + record.len());
        out.push(0x92);
        out.extend_from_slice(second);
        out.extend_from_slice(record);
        out
    } else if is_array {
        // Forward: [tag, [[time, record], ...], option?]: the array's items as they are.
        let head = match marker {
            0xdc => 3,
            0xdd => 5,
            _ => 1,
        };
        second[head..].to_vec()
    } else if let Some(raw) = str_or_bin(second) {
        // PackedForward / CompressedPackedForward: [tag, bin, option?]
        let out = if option_str(&option, "compressed").as_deref() == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(raw)
                .take(max_entries as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| protocol(format!("corrupt gzip entries: {e}")))?;
            if out.len() > max_entries {
                return Err(protocol(format!(
                    "the decompressed entries exceed [ingestion] max_body_bytes ({max_entries} bytes)"
                )));
            }
            out
        } else {
            raw.to_vec()
        };
        msgpack::validate(&out).map_err(protocol)?;
        out
    } else {
        return Err(protocol("unknown Forward message mode"));
    };
    Ok(Message {
        tag,
        entries,
        chunk: option_str(&option, "chunk"),
    })
}

/// Routes `tag` (`forward_policy`, or the tag's first part naming the policy) and
/// ingests the entries; errors are the kernel's.
fn append(
    l: &Listener,
    routes: &mut Routes,
    tag: &str,
    entries: Vec<u8>,
    mode: Durability,
) -> Result<(), CoreError> {
    let (policy, rest) = match &l.policy {
        Some(p) => (p.as_str(), tag),
        None => tag.split_once('.').ok_or_else(|| {
            CoreError::NotFound(format!(
                "the tag '{tag}' names no policy: use <policy>.<sensor>.<product> or set [ingestion] forward_policy"
            ))
        })?,
    };
    crate::ingest(
        &l.portal,
        &l.user,
        routes,
        policy,
        rest,
        Payload::Msgpack(entries),
        mode,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pack(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    fn entry(i: i64) -> Value {
        Value::Array(vec![
            Value::from(1_700_000_000 + i),
            Value::Map(vec![(Value::from("seq"), Value::from(i))]),
        ])
    }

    fn chunk(id: &str) -> Value {
        Value::Map(vec![(Value::from("chunk"), Value::from(id))])
    }

    #[test]
    fn every_mode_decodes_to_the_same_entries() {
        let expected = [pack(&entry(1)), pack(&entry(2))].concat();
        let forward = pack(&Value::Array(vec![
            Value::from("t"),
            Value::Array(vec![entry(1), entry(2)]),
            chunk("a"),
        ]));
        let m = decode_message(&forward, 1 << 20).unwrap();
        assert_eq!((m.tag.as_str(), m.chunk.as_deref()), ("t", Some("a")));
        assert_eq!(m.entries, expected);
        let packed = pack(&Value::Array(vec![
            Value::from("t"),
            Value::Binary(expected.clone()),
        ]));
        let m = decode_message(&packed, 1 << 20).unwrap();
        assert_eq!((m.entries.as_slice(), m.chunk), (expected.as_slice(), None));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&expected).unwrap();
        let compressed = Value::Array(vec![
            Value::from("t"),
            Value::Binary(gz.finish().unwrap()),
            Value::Map(vec![
                (Value::from("compressed"), Value::from("gzip")),
                (Value::from("chunk"), Value::from("c")),
            ]),
        ]);
        let m = decode_message(&pack(&compressed), 1 << 20).unwrap();
        assert_eq!(m.entries, expected);
        // The limit applies after decompression.
        let e = decode_message(&pack(&compressed), expected.len() - 1).unwrap_err();
        assert!(e.to_string().contains("[ingestion] max_body_bytes"), "{e}");
        let Value::Array(e1) = entry(1) else { return };
        let message = pack(&Value::Array(vec![
            Value::from("t"),
            e1[0].clone(),
            e1[1].clone(),
            chunk("m"),
        ]));
        let m = decode_message(&message, 1 << 20).unwrap();
        assert_eq!(m.entries, pack(&entry(1)));
        assert_eq!(m.chunk.as_deref(), Some("m"));
    }

    #[test]
    fn malformed_frames_are_refused() {
        for bad in [
            &[0x91, 0xa1, b't'][..],
            &[0x92, 0x01, 0x02],
            &[0x92, 0xa1, b't', 0xc0],
            &[0x93, 0xa1, b't', 0xc4, 0x01, 0xc1, 0x80],
            &[0x80],
        ] {
            assert!(decode_message(bad, 1 << 20).is_err(), "{bad:?}");
        }
        // Packed entries must be valid msgpack.
        let packed = pack(&Value::Array(vec![
            Value::from("t"),
            Value::Binary(vec![0x92, 0x01]),
        ]));
        assert!(decode_message(&packed, 1 << 20).is_err());
        // Large options are refused before they are decoded.
        let options = Value::Map(vec![(
            Value::from("chunk"),
            Value::from("x".repeat(OPTION_MAX_BYTES)),
        )]);
        let big = pack(&Value::Array(vec![
            Value::from("t"),
            Value::Array(vec![]),
            options,
        ]));
        assert!(decode_message(&big, 1 << 20).is_err());
        assert!(decode_ping(&pack(&Value::from("PING"))).is_err());
    }

    #[test]
    fn ping_and_pong() {
        let nonce = b"0123456789abcdef";
        let digest = hex_sha512(&[b"salt", b"client", nonce, b"key"]);
        let frame = pack(&Value::Array(vec![
            Value::from("PING"),
            Value::from("client"),
            Value::from("salt"),
            Value::from(digest.as_str()),
            Value::from(""),
            Value::from(""),
        ]));
        let ping = decode_ping(&frame).unwrap();
        assert!(pong(&ping, nonce, "key", "wendelin").1);
        assert!(!pong(&ping, nonce, "other", "wendelin").1);
    }
}
