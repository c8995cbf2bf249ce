//! msgpack helpers shared by ingestion and stream readers: validating a concatenated
//! msgpack stream completely before anything is stored, decoding a byte range into
//! records, and converting values to JSON.

use rmpv::ValueRef;
use serde_json::{Map, Value};

/// Checks that `bytes` is a sequence of complete msgpack values; returns how many.
/// The error names the byte offset of the first value that does not decode. One pass,
/// no allocation (ingestion validates every byte it receives before storing it).
pub fn validate(bytes: &[u8]) -> Result<usize, String> {
    let mut pos = 0usize;
    let mut count = 0;
    while pos < bytes.len() {
        let start = pos;
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let (size, children) = value_head(bytes, pos).ok_or_else(|| {
                format!("malformed msgpack at byte {start} (value {count}): truncated or invalid at byte {pos}")
            })?;
            pos = pos
                .checked_add(size)
                .filter(|&p| p <= bytes.len())
                .ok_or_else(|| {
                    format!("malformed msgpack at byte {start} (value {count}): truncated at byte {pos}")
                })?;
            pending += children;
            // Every pending value needs at least one byte.
            if pending > (bytes.len() - pos) as u64 {
                return Err(format!(
                    "malformed msgpack at byte {start} (value {count}): a container announces more items than the body holds"
                ));
            }
        }
        count += 1;
    }
    Ok(count)
}

/// The size of the value's head and payload at `pos` (containers: head only) and how
/// many child values follow it; `None` when the marker is invalid or cut.
fn value_head(b: &[u8], pos: usize) -> Option<(usize, u64)> {
    let m = *b.get(pos)?;
    let be = |n: usize| -> Option<u64> {
        let s = b.get(pos + 1..pos + 1 + n)?;
        Some(s.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    let sized = |n: usize| -> Option<(usize, u64)> {
        let len = usize::try_from(be(n)?).ok()?;
        Some((1 + n + len, 0))
    };
    Some(match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0),
        0x80..=0x8f => (1, u64::from(m & 0x0f) * 2),
        0x90..=0x9f => (1, u64::from(m & 0x0f)),
        0xa0..=0xbf => (1 + usize::from(m & 0x1f), 0),
        0xc4 | 0xd9 => sized(1)?,
        0xc5 | 0xda => sized(2)?,
        0xc6 | 0xdb => sized(4)?,
        0xc7 => (sized(1)?.0 + 1, 0),
        0xc8 => (sized(2)?.0 + 1, 0),
        0xc9 => (sized(4)?.0 + 1, 0),
        0xca => (5, 0),
        0xcb => (9, 0),
        0xcc | 0xd0 => (2, 0),
        0xcd | 0xd1 => (3, 0),
        0xce | 0xd2 => (5, 0),
        0xcf | 0xd3 => (9, 0),
        0xd4 => (3, 0),
        0xd5 => (4, 0),
        0xd6 => (6, 0),
        0xd7 => (10, 0),
        0xd8 => (18, 0),
        0xdc => (3, be(2)?),
        0xdd => (5, be(4)?),
        0xde => (3, be(2)? * 2),
        0xdf => (5, be(4)? * 2),
        0xc1 => return None,
    })
}

/// Decodes the complete values in `bytes` (which start at a value boundary); a value cut
/// by the end of the slice is left out. Returns the values and how many bytes they used.
pub fn decode_prefix(bytes: &[u8]) -> Result<(Vec<ValueRef<'_>>, usize), String> {
    let mut cursor = bytes;
    let mut out = Vec::new();
    let mut used = 0;
    while !cursor.is_empty() {
        let before = cursor;
        match rmpv::decode::read_value_ref(&mut cursor) {
            Ok(v) => {
                out.push(v);
                used = bytes.len() - cursor.len();
            }
            Err(e) if is_eof(&e) => {
                cursor = before;
                let _ = cursor;
                break;
            }
            Err(e) => return Err(format!("malformed msgpack at byte {used}: {e}")),
        }
    }
    Ok((out, used))
}

fn is_eof(e: &rmpv::decode::Error) -> bool {
    use rmpv::decode::Error;
    match e {
        Error::InvalidMarkerRead(io) | Error::InvalidDataRead(io) => {
            io.kind() == std::io::ErrorKind::UnexpectedEof
        }
        _ => false,
    }
}

/// A fluentd EventTime (ext type 0: seconds and nanoseconds, big-endian) as seconds.
pub fn event_time(ext_type: i8, data: &[u8]) -> Option<f64> {
    if ext_type != 0 || data.len() != 8 {
        return None;
    }
    let secs = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let nanos = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    Some(f64::from(secs) + f64::from(nanos) / 1e9)
}

/// A msgpack value as JSON: EventTime becomes seconds, binary becomes text (lossy
/// UTF-8), map keys become strings.
pub fn to_json(v: &ValueRef<'_>) -> Value {
    match v {
        ValueRef::Nil => Value::Null,
        ValueRef::Boolean(b) => Value::Bool(*b),
        ValueRef::Integer(i) => i
            .as_i64()
            .map(Value::from)
            .or_else(|| i.as_u64().map(Value::from))
            .unwrap_or(Value::Null),
        ValueRef::F32(f) => Value::from(f64::from(*f)),
        ValueRef::F64(f) => Value::from(*f),
        ValueRef::String(s) => Value::from(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        ValueRef::Binary(b) => Value::from(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        ValueRef::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match to_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        ValueRef::Ext(t, data) => match event_time(*t, data) {
            Some(secs) => Value::from(secs),
            None => Value::Null,
        },
    }
}

/// JSON as a msgpack value (for records that arrive as JSON).
pub fn from_json(v: &Value) -> rmpv::Value {
    match v {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::Array(a) => rmpv::Value::Array(a.iter().map(from_json).collect()),
        Value::Object(o) => rmpv::Value::Map(
            o.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn validate_counts_and_locates_errors() {
        let mut buf = Vec::new();
        for i in 0..3 {
            rmpv::encode::write_value(&mut buf, &rmpv::Value::from(i)).unwrap();
        }
        assert_eq!(validate(&buf).unwrap(), 3);
        // Every kind of value, and every truncation of it, agrees with rmpv.
        let mut all = Vec::new();
        let big = rmpv::Value::Array(vec![
            rmpv::Value::Ext(0, vec![0, 0, 0, 1, 0, 0, 0, 2]),
            rmpv::Value::Map(vec![
                (rmpv::Value::from("k"), rmpv::Value::from(-5)),
                (
                    rmpv::Value::from("s".repeat(300)),
                    rmpv::Value::Binary(vec![1; 70000]),
                ),
                (rmpv::Value::from(1u64 << 40), rmpv::Value::F64(1.5)),
                (
                    rmpv::Value::Nil,
                    rmpv::Value::Array((0..20).map(rmpv::Value::from).collect()),
                ),
                (
                    rmpv::Value::Boolean(true),
                    rmpv::Value::Ext(5, vec![9; 300]),
                ),
                (rmpv::Value::F32(2.0), rmpv::Value::from(-300_000i64)),
            ]),
        ]);
        rmpv::encode::write_value(&mut all, &big).unwrap();
        assert_eq!(validate(&all).unwrap(), 1);
        for cut in [1, 2, 5, 12, 20, 100, 400, all.len() - 1] {
            assert!(validate(&all[..cut]).is_err(), "cut at {cut} accepted");
            assert!(rmpv::decode::read_value_ref(&mut &all[..cut]).is_err());
        }
        assert!(validate(&[0xc1]).is_err());
        assert!(validate(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        buf.push(0x92); // an array of two with nothing in it
        let err = validate(&buf).unwrap_err();
        assert!(err.contains("byte 3"), "{err}");
        let (vals, used) = decode_prefix(&buf).unwrap();
        assert_eq!((vals.len(), used), (3, 3));
    }
}
