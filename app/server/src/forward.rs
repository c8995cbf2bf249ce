//! The Fluentd Forward protocol listener (fluentd `out_forward`, Fluent Bit, every
//! fluent-logger): Message, Forward, PackedForward and CompressedPackedForward modes, an
//! `{"ack": chunk}` reply once the data is durable when the sender asks with `chunk`,
//! and the HELO/PING/PONG shared-key handshake when a key is configured.
//!
//! One thread per connection, blocking i/o: senders keep few long-lived connections and
//! every append blocks on the disk anyway. Tag → policy routing: `forward_policy`, or
//! else the tag's first part names the policy and the rest is the ingestion tag. A
//! connection caches its tag routes for [`ROUTE_TTL`]; permissions are re-checked then.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmpv::Value;
use sha2::{Digest, Sha512};
use wendelin_core::{users, CoreError, Portal, User};
use wendelin_data_stream::{msgpack, Durability};
use wendelin_ingestion::{Operation, Payload, Route};

use crate::config::Config;
use crate::error::ServerError;

/// How long a connection trusts a resolved route before resolving (and checking) again.
pub const ROUTE_TTL: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 512;

struct Listener {
    portal: Portal,
    user: User,
    shared_key: Option<String>,
    policy: Option<String>,
    hostname: String,
    /// Largest message read into memory (`ingest_max_body_bytes`).
    max_message: u64,
}

static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Binds the Forward listener (before anything else starts, so a bad address fails
/// fast). Refuses a non-loopback address without a shared key.
pub fn bind(config: &Config) -> Result<TcpListener, ServerError> {
    let addr = config.forward.as_str();
    let listener = TcpListener::bind(addr)
        .map_err(|e| ServerError::Config(format!("cannot listen for Forward on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() && config.forward_shared_key.is_empty() {
        return Err(ServerError::Config(format!(
            "the Forward listener on {local} is reachable from other hosts: set forward_shared_key"
        )));
    }
    Ok(listener)
}

/// Serves a bound Forward listener on background threads; returns its address.
pub fn spawn(
    listener: TcpListener,
    portal: Portal,
    config: &Config,
) -> Result<SocketAddr, ServerError> {
    let local = listener.local_addr()?;
    let user = portal
        .db
        .read(|c| users::load_user(c, &config.forward_user))
        .map_err(|e| {
            ServerError::Config(format!(
                "forward_user '{}' cannot be used: {e}",
                config.forward_user
            ))
        })?;
    let shared = Arc::new(Listener {
        portal,
        user,
        shared_key: Some(config.forward_shared_key.clone()).filter(|k| !k.is_empty()),
        policy: Some(config.forward_policy.clone()).filter(|p| !p.is_empty()),
        hostname: "wendelin".into(),
        max_message: config.ingest_max_body_bytes as u64,
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
                if CONNECTIONS.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
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

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
}

fn protocol(msg: impl Into<String>) -> ConnError {
    ConnError::Protocol(msg.into())
}

fn read_value(r: &mut impl Read) -> Result<Option<Value>, ConnError> {
    match rmpv::decode::read_value(r) {
        Ok(v) => Ok(Some(v)),
        Err(rmpv::decode::Error::InvalidMarkerRead(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Ok(None)
        }
        Err(e) => Err(protocol(format!("malformed msgpack: {e}"))),
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

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

/// HELO → PING → PONG; an error closes the connection.
fn handshake(
    l: &Listener,
    key: &str,
    r: &mut impl Read,
    w: &mut impl Write,
) -> Result<(), ConnError> {
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
    let ping = read_value(r)?.ok_or_else(|| protocol("closed before PING"))?;
    let Value::Array(p) = ping else {
        return Err(protocol("expected PING"));
    };
    if p.first().and_then(as_bytes) != Some(b"PING".as_slice()) || p.len() < 4 {
        return Err(protocol("expected PING"));
    }
    let client_host = p.get(1).and_then(as_bytes).unwrap_or_default();
    let salt = p.get(2).and_then(as_bytes).unwrap_or_default();
    let digest = p.get(3).and_then(as_bytes).unwrap_or_default();
    let expected = hex_sha512(&[salt, client_host, &nonce, key.as_bytes()]);
    let ok = expected.as_bytes() == digest;
    let reason = if ok { "" } else { "shared key mismatch" };
    let pong = Value::Array(vec![
        Value::from("PONG"),
        Value::Boolean(ok),
        Value::from(reason),
        Value::from(l.hostname.as_str()),
        Value::from(hex_sha512(&[
            salt,
            l.hostname.as_bytes(),
            &nonce,
            key.as_bytes(),
        ])),
    ]);
    write_value(w, &pong)?;
    if ok {
        Ok(())
    } else {
        Err(protocol("shared key mismatch"))
    }
}

fn serve_connection(l: &Listener, conn: TcpStream) -> Result<(), ConnError> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(1 << 20, conn.try_clone()?);
    let mut writer = BufWriter::new(conn);
    if let Some(key) = &l.shared_key {
        handshake(l, key, &mut reader, &mut writer)?;
    }
    let mut routes: HashMap<String, (Route, Instant)> = HashMap::new();
    // Each message is read through a limit: a declared length cannot make us buffer more.
    while let Some(msg) = read_value(&mut (&mut reader).take(l.max_message))? {
        let (tag, entries, option) = decode_message(msg)?;
        let chunk = option_str(&option, "chunk");
        let mode = if chunk.is_some() {
            Durability::Durable
        } else {
            Durability::Lazy
        };
        match append(l, &mut routes, &tag, entries, mode) {
            Ok(()) => {
                if let Some(id) = chunk {
                    let ack = Value::Map(vec![(Value::from("ack"), Value::from(id))]);
                    write_value(&mut writer, &ack)?;
                }
            }
            // No ack: the sender keeps the chunk and retries.
            Err(e) => tracing::warn!(%tag, error = %e, "forward data refused"),
        }
    }
    Ok(())
}

fn option_str(option: &Option<Value>, key: &str) -> Option<String> {
    let Some(Value::Map(m)) = option else {
        return None;
    };
    m.iter()
        .find(|(k, _)| as_bytes(k) == Some(key.as_bytes()))
        .and_then(|(_, v)| as_bytes(v))
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A message's tag, its entries as a msgpack stream of `[time, record]`, and options.
fn decode_message(msg: Value) -> Result<(String, Vec<u8>, Option<Value>), ConnError> {
    let Value::Array(mut parts) = msg else {
        return Err(protocol("a Forward message must be an array"));
    };
    if parts.len() < 2 {
        return Err(protocol("a Forward message needs a tag and entries"));
    }
    let tag = as_bytes(&parts[0])
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| protocol("the tag must be a string"))?;
    let encode = |out: &mut Vec<u8>, v: &Value| {
        rmpv::encode::write_value(out, v).map_err(|e| protocol(format!("cannot encode: {e}")))
    };
    let mut out = Vec::new();
    let option;
    match &parts[1] {
        // Message: [tag, time, record, option?]
        Value::Integer(_) | Value::Ext(..) | Value::F64(_) | Value::F32(_) => {
            if parts.len() < 3 {
                return Err(protocol("a Message needs a record"));
            }
            option = parts.get(3).cloned();
            let record = parts.swap_remove(2);
            let time = parts.swap_remove(1);
            encode(&mut out, &Value::Array(vec![time, record]))?;
        }
        // Forward: [tag, [[time, record], ...], option?]
        Value::Array(entries) => {
            option = parts.get(2).cloned();
            for e in entries {
                encode(&mut out, e)?;
            }
        }
        // PackedForward / CompressedPackedForward: [tag, bin, option?]
        Value::Binary(_) | Value::String(_) => {
            option = parts.get(2).cloned();
            let raw = as_bytes(&parts[1]).unwrap_or_default();
            if option_str(&option, "compressed").as_deref() == Some("gzip") {
                flate2::read::MultiGzDecoder::new(raw)
                    .read_to_end(&mut out)
                    .map_err(|e| protocol(format!("corrupt gzip entries: {e}")))?;
            } else {
                out.extend_from_slice(raw);
            }
            msgpack::validate(&out).map_err(protocol)?;
        }
        _ => return Err(protocol("unknown Forward message mode")),
    }
    Ok((tag, out, option))
}

/// Routes `tag` and appends the entries; errors are the kernel's.
fn append(
    l: &Listener,
    routes: &mut HashMap<String, (Route, Instant)>,
    tag: &str,
    entries: Vec<u8>,
    mode: Durability,
) -> Result<(), CoreError> {
    let fresh = routes
        .get(tag)
        .filter(|(_, at)| at.elapsed() < ROUTE_TTL)
        .map(|(r, _)| r.clone());
    let route = match fresh {
        Some(r) => r,
        None => {
            let (policy, rest) = match &l.policy {
                Some(p) => (p.as_str(), tag),
                None => tag.split_once('.').ok_or_else(|| {
                    CoreError::NotFound(format!(
                        "the tag '{tag}' names no policy: use <policy>.<sensor>.<product> or set forward_policy"
                    ))
                })?,
            };
            let r = wendelin_ingestion::resolve(&l.portal, &l.user, policy, rest)?;
            routes.insert(tag.to_owned(), (r.clone(), Instant::now()));
            r
        }
    };
    let bytes = match route.operation {
        Operation::Append => entries,
        op => wendelin_ingestion::encode(op, &Payload::Msgpack(entries))?,
    };
    wendelin_data_stream::append_checked(&l.portal, &route.stream, &bytes, None, mode)?;
    Ok(())
}
