//! msgpack helpers shared by ingestion and stream readers: validating a concatenated
//! msgpack stream completely before anything is stored, decoding a byte range into
//! records, and converting values to JSON.

use rmpv::ValueRef;
use serde_json::{Map, Value};

/// Checks that `bytes` is a sequence of complete msgpack values; returns how many.
/// The error names the byte offset of the first value that does not decode.
pub fn validate(bytes: &[u8]) -> Result<usize, String> {
    let mut cursor = bytes;
    let mut count = 0;
    while !cursor.is_empty() {
        let at = bytes.len() - cursor.len();
        rmpv::decode::read_value_ref(&mut cursor)
            .map_err(|e| format!("malformed msgpack at byte {at} (value {count}): {e}"))?;
        count += 1;
    }
    Ok(count)
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
        buf.push(0x92); // an array of two with nothing in it
        let err = validate(&buf).unwrap_err();
        assert!(err.contains("byte 3"), "{err}");
        let (vals, used) = decode_prefix(&buf).unwrap();
        assert_eq!((vals.len(), used), (3, 3));
    }
}
