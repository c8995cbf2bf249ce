//! msgpack helpers shared by ingestion and stream readers: validating a concatenated
//! msgpack stream completely before anything is stored, decoding a byte range into
//! records, and converting values to JSON.

use rmpv::ValueRef;
use serde_json::{Map, Value};

/// Deepest nesting of arrays and maps in a msgpack value that ingestion stores and readers
/// read: `[time, {"a": [1]}]` is 3 deep, a scalar 0. The validator and every reader
/// (`decode_prefix`, the Forward listener) apply this one limit, so what is stored can be
/// read back; records arriving as JSON are held to it too once encoded. 100 leaves room
/// under serde_json's (and most JSON parsers') recursion limit of 128 for the two levels
/// a read adds (`{"records": [[time, record]]}`).
pub const MAX_DEPTH: usize = 100;

/// Why a msgpack value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// An invalid marker (0xc1) at this byte.
    Invalid(usize),
    /// Arrays and maps nested deeper than [`MAX_DEPTH`], at this byte.
    TooDeep(usize),
    /// The value declares (or already holds) at least `needed` bytes, more than `limit`.
    TooLong {
        /// Bytes the value needs at the least.
        needed: u64,
        /// What was allowed.
        limit: usize,
    },
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Invalid(at) => write!(f, "invalid marker at byte {at}"),
            ScanError::TooDeep(at) => write!(
                f,
                "arrays and maps nested deeper than {MAX_DEPTH} levels at byte {at} (the nesting limit)"
            ),
            ScanError::TooLong { needed, limit } => {
                write!(f, "a value of at least {needed} bytes, above the limit of {limit}")
            }
        }
    }
}

/// Where a [`Scanner`] got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The value is complete: it is the first `n` bytes.
    Complete(usize),
    /// More bytes are needed: at least this many in all.
    Incomplete(usize),
}

/// Finds the end of one msgpack value whose bytes arrive piece by piece, without
/// decoding it and without allocating per element: declared lengths are checked against
/// the limit before any of their bytes are awaited, nesting against [`MAX_DEPTH`].
/// Call [`Scanner::advance`] with the value's bytes so far (a longer prefix each time);
/// the work done is kept, so a value is scanned once in all.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Start of the next head to read.
    pos: usize,
    /// Items still to read in each open container, outermost first.
    open: Vec<u64>,
    /// Sum of `open`.
    pending: u64,
    limit: usize,
}

impl Scanner {
    /// A scanner of one value of at most `limit` bytes.
    pub fn new(limit: usize) -> Scanner {
        Scanner {
            pos: 0,
            open: Vec::new(),
            pending: 0,
            limit,
        }
    }

    /// Continues over `bytes` (the value's first bytes; the same prefix as before, or a
    /// longer one).
    pub fn advance(&mut self, bytes: &[u8]) -> Result<Scan, ScanError> {
        loop {
            let Some(m) = bytes.get(self.pos).copied() else {
                return Ok(Scan::Incomplete(self.pos + 1));
            };
            let head = head_len(m).ok_or(ScanError::Invalid(self.pos))?;
            let Some(h) = bytes.get(self.pos..self.pos + head) else {
                return Ok(Scan::Incomplete(self.pos + head));
            };
            let (payload, children) = head_sizes(h);
            let container = matches!(m, 0x80..=0x9f | 0xdc..=0xdf);
            if container && self.open.len() >= MAX_DEPTH {
                return Err(ScanError::TooDeep(self.pos));
            }
            // The value's end, plus a byte for every item not yet started (each open
            // container counts the item in progress in it: this value, or the container
            // holding it).
            let end = self.pos as u64 + head as u64 + payload;
            let after = self.pending - self.open.len() as u64;
            let needed = end + after + children;
            if needed > self.limit as u64 {
                return Err(ScanError::TooLong {
                    needed,
                    limit: self.limit,
                });
            }
            // `end <= limit`, a usize.
            let end = end as usize;
            if end > bytes.len() {
                return Ok(Scan::Incomplete(end));
            }
            self.pos = end;
            if children > 0 {
                self.open.push(children);
                self.pending += children;
                continue;
            }
            // A complete value: it ends the containers it completes.
            loop {
                let Some(top) = self.open.last_mut() else {
                    return Ok(Scan::Complete(self.pos));
                };
                *top -= 1;
                self.pending -= 1;
                if *top > 0 {
                    break;
                }
                self.open.pop();
            }
        }
    }
}

/// The length of a value's first one to nine bytes (marker and sizes); `None` for 0xc1.
fn head_len(m: u8) -> Option<usize> {
    Some(match m {
        0xc1 => return None,
        0xc4 | 0xcc | 0xd0 | 0xd9 => 2,
        0xc5 | 0xc7 | 0xcd | 0xd1 | 0xda | 0xdc | 0xde => 3,
        0xc8 => 4,
        0xc6 | 0xca | 0xce | 0xd2 | 0xdb | 0xdd | 0xdf => 5,
        0xc9 => 6,
        0xcb | 0xcf | 0xd3 => 9,
        0xd4..=0xd8 => 2,
        _ => 1,
    })
}

/// For a complete head `h`: the bytes of payload after it (not counting children) and
/// how many child values follow (containers).
fn head_sizes(h: &[u8]) -> (u64, u64) {
    let be = |s: &[u8]| s.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    let m = h[0];
    match m {
        0x80..=0x8f => (0, u64::from(m & 0x0f) * 2),
        0x90..=0x9f => (0, u64::from(m & 0x0f)),
        0xa0..=0xbf => (u64::from(m & 0x1f), 0),
        0xc4..=0xc6 | 0xd9..=0xdb => (be(&h[1..]), 0),
        // ext 8/16/32: the size, then the type byte (in the head).
        0xc7..=0xc9 => (be(&h[1..h.len() - 1]), 0),
        0xca..=0xd3 => (0, 0),
        0xd4 => (1, 0),
        0xd5 => (2, 0),
        0xd6 => (4, 0),
        0xd7 => (8, 0),
        0xd8 => (16, 0),
        0xdc | 0xdd => (0, be(&h[1..])),
        0xde | 0xdf => (0, be(&h[1..]) * 2),
        _ => (0, 0),
    }
}

/// Checks that `bytes` is a sequence of complete msgpack values, each nested at most
/// [`MAX_DEPTH`] deep; returns how many. The error names the byte offset of the first
/// value that does not decode. One pass, no allocation per element (ingestion validates
/// every byte it receives before storing it).
pub fn validate(bytes: &[u8]) -> Result<usize, String> {
    let mut pos = 0usize;
    let mut count = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let mut scanner = Scanner::new(rest.len());
        let fail = |why: String| format!("malformed msgpack at byte {pos} (value {count}): {why}");
        match scanner.advance(rest) {
            Ok(Scan::Complete(n)) => pos += n,
            Ok(Scan::Incomplete(_)) => return Err(fail("truncated".into())),
            Err(ScanError::TooLong { .. }) => {
                return Err(fail(
                    "truncated, or a container announces more items than the body holds".into(),
                ))
            }
            Err(ScanError::Invalid(at)) => {
                return Err(fail(format!("invalid marker at byte {}", pos + at)))
            }
            Err(ScanError::TooDeep(at)) => {
                return Err(format!(
                    "msgpack value {count} at byte {pos}: arrays and maps nested deeper than {MAX_DEPTH} levels at byte {} (the nesting limit)",
                    pos + at
                ))
            }
        }
        count += 1;
    }
    Ok(count)
}

/// [`validate`] of a body that arrives in pieces, without keeping it: [`Validator::feed`]
/// each piece in order, then [`Validator::finish`]. It accepts exactly what [`validate`]
/// accepts (complete values, nested at most [`MAX_DEPTH`] deep); on a refusal, run
/// [`validate`] over the whole body for the message that locates the fault. The state
/// is a few counters and the open containers' item counts: a piece boundary may fall
/// anywhere, inside a head or a payload.
#[derive(Debug, Clone, Default)]
pub struct Validator {
    /// The head being read (marker and size bytes) and how long it is.
    head: [u8; 9],
    have: usize,
    want: usize,
    /// Payload bytes of the current value still to pass over.
    skip: u64,
    /// Items still to read in each open container, outermost first.
    open: Vec<u64>,
    failed: bool,
}

impl Validator {
    /// A validator of a body not yet started.
    pub fn new() -> Validator {
        Validator::default()
    }

    /// Takes the next piece of the body; `false` once the body cannot be valid.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !self.failed && !bytes.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).map_or(bytes.len(), |s| s.min(bytes.len()));
                bytes = &bytes[n..];
                self.skip -= n as u64;
                continue;
            }
            if self.want == 0 {
                let m = bytes[0];
                let Some(want) = head_len(m) else {
                    self.failed = true;
                    break;
                };
                self.want = want;
                self.have = 0;
            }
            let n = (self.want - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == self.want {
                self.want = 0;
                self.value();
            }
        }
        !self.failed
    }

    /// A complete head in `self.head`: opens its container or sets its payload to pass
    /// over, and closes the containers it completes.
    fn value(&mut self) {
        let h = &self.head[..self.have];
        let m = h[0];
        let (payload, children) = head_sizes(h);
        if matches!(m, 0x80..=0x9f | 0xdc..=0xdf) && self.open.len() >= MAX_DEPTH {
            self.failed = true;
            return;
        }
        self.skip = payload;
        if children > 0 {
            self.open.push(children);
            return;
        }
        // The value is started and its size known: it completes the containers it ends
        // (its payload is still passed over before the next head).
        while let Some(top) = self.open.last_mut() {
            *top -= 1;
            if *top > 0 {
                break;
            }
            self.open.pop();
        }
    }

    /// Whether the body fed so far is a sequence of complete values (and not empty of
    /// them: an empty body is refused by the caller).
    pub fn finish(&self) -> bool {
        !self.failed && self.skip == 0 && self.want == 0 && self.open.is_empty()
    }
}

/// Decodes the complete values in `bytes` (which start at a value boundary); a value cut
/// by the end of the slice is left out. Returns the values and how many bytes they used.
/// Values nested deeper than [`MAX_DEPTH`] are an error, as in [`validate`].
pub fn decode_prefix(bytes: &[u8]) -> Result<(Vec<ValueRef<'_>>, usize), String> {
    let mut out = Vec::new();
    let mut used = 0;
    while used < bytes.len() {
        let rest = &bytes[used..];
        let n = match Scanner::new(usize::MAX).advance(rest) {
            Ok(Scan::Complete(n)) => n,
            Ok(Scan::Incomplete(_)) => break,
            Err(e) => return Err(format!("malformed msgpack at byte {used}: {e}")),
        };
        // rmpv counts about two levels per container: MAX_DEPTH containers stay far
        // below 4 * MAX_DEPTH.
        let v = rmpv::decode::read_value_ref_with_max_depth(&mut &rest[..n], 4 * MAX_DEPTH + 8)
            .map_err(|e| format!("malformed msgpack at byte {used}: {e}"))?;
        out.push(v);
        used += n;
    }
    Ok((out, used))
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
/// UTF-8), map keys become strings (see [`key_text`]).
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
                out.insert(key_text(k), to_json(v));
            }
            Value::Object(out)
        }
        ValueRef::Ext(t, data) => match event_time(*t, data) {
            Some(secs) => Value::from(secs),
            None => Value::Null,
        },
    }
}

/// A map key as a JSON object key: strings and binaries as their text, anything else as
/// JSON-like text written in one pass. (Serialising a container key's JSON and using
/// that string was exponential: each level of keys inside keys escaped the text of the
/// level below again, so 100 bytes of maps keyed by maps took minutes and all memory.)
pub fn key_text(k: &ValueRef<'_>) -> String {
    match k {
        ValueRef::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        ValueRef::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => {
            let mut out = String::new();
            write_key_text(other, &mut out);
            out
        }
    }
}

fn write_key_text(v: &ValueRef<'_>, out: &mut String) {
    match v {
        ValueRef::String(s) => {
            out.push_str(&Value::from(String::from_utf8_lossy(s.as_bytes())).to_string())
        }
        ValueRef::Binary(b) => out.push_str(&Value::from(String::from_utf8_lossy(b)).to_string()),
        ValueRef::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_key_text(item, out);
            }
            out.push(']');
        }
        ValueRef::Map(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_key_text(k, out);
                out.push(':');
                write_key_text(v, out);
            }
            out.push('}');
        }
        // Scalars and EventTime: their JSON.
        scalar => out.push_str(&to_json(scalar).to_string()),
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

    /// Feeds `body` to a [`Validator`] in pieces cut after each length of `cuts` (in
    /// turn, repeated); its verdict.
    fn fed(body: &[u8], cuts: &[usize]) -> bool {
        let mut v = Validator::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].clamp(1, rest.len());
            v.feed(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        v.finish()
    }

    /// The streaming validator agrees with [`validate`] on valid bodies, every
    /// truncation, corrupted bytes and nesting at the limit, however the body is cut.
    #[test]
    fn streaming_validation_agrees_with_validate() {
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        let mut chunk = Vec::new();
        for i in 0..50u64 {
            let rec = rmpv::Value::Array(vec![
                rmpv::Value::from(1_700_000_000 + i),
                rmpv::Value::Map(vec![
                    (rmpv::Value::from("seq"), rmpv::Value::from(i)),
                    (
                        rmpv::Value::from("payload"),
                        rmpv::Value::from("x".repeat((i * 37 % 300) as usize)),
                    ),
                    (rmpv::Value::from("f"), rmpv::Value::F64(i as f64 / 3.0)),
                    (
                        rmpv::Value::from("b"),
                        rmpv::Value::Binary(vec![
                            7;
                            if i == 49 {
                                70_000
                            } else {
                                (i * 1013 % 3000) as usize
                            }
                        ]),
                    ),
                    (rmpv::Value::from("e"), rmpv::Value::Ext(0, vec![1; 8])),
                    (
                        rmpv::Value::from("a"),
                        rmpv::Value::Array((0..i).map(rmpv::Value::from).collect()),
                    ),
                ]),
            ]);
            rmpv::encode::write_value(&mut chunk, &rec).unwrap();
        }
        bodies.push(chunk.clone());
        bodies.push(nested(MAX_DEPTH));
        bodies.push(nested(MAX_DEPTH + 1));
        bodies.push(vec![0xc1]);
        bodies.push(vec![0xdd, 0xff, 0xff, 0xff, 0xff]);
        bodies.push(vec![0x92, 0x01]);
        bodies.push(vec![0x90, 0x80, 0xa0, 0xc4, 0x00]);
        // Truncations and single corrupted bytes, at pseudo-random places.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as usize
        };
        for _ in 0..100 {
            let cut = next(chunk.len());
            bodies.push(chunk[..cut].to_vec());
            let mut bad = chunk.clone();
            let at = next(bad.len());
            bad[at] = next(256) as u8;
            bodies.push(bad);
        }
        let splits: [&[usize]; 6] = [
            &[1],
            &[2, 3, 5, 7],
            &[9, 1],
            &[4096],
            &[32 * 1024 - 3, 17],
            &[usize::MAX],
        ];
        for (i, body) in bodies.iter().enumerate() {
            let expected = validate(body).is_ok();
            for cuts in splits {
                assert_eq!(fed(body, cuts), expected, "body {i}, cuts {cuts:?}");
            }
        }
        // Both outcomes were tried.
        assert!(bodies.iter().any(|b| validate(b).is_ok()));
        assert!(bodies.iter().filter(|b| validate(b).is_err()).count() > 50);
    }

    fn nested(depth: usize) -> Vec<u8> {
        // [[…[]…]]: `depth` arrays.
        let mut v = vec![0x91; depth - 1];
        v.push(0x90);
        v
    }

    #[test]
    fn validation_and_reading_share_one_nesting_limit() {
        let ok = nested(MAX_DEPTH);
        assert_eq!(validate(&ok).unwrap(), 1);
        let (vals, used) = decode_prefix(&ok).unwrap();
        assert_eq!((vals.len(), used), (1, ok.len()));
        // Maps count like arrays.
        let mut maps: Vec<u8> = std::iter::repeat_n([0x81u8, 0x01], MAX_DEPTH - 1)
            .flatten()
            .collect();
        maps.push(0x80);
        assert_eq!(validate(&maps).unwrap(), 1);
        assert_eq!(decode_prefix(&maps).unwrap().0.len(), 1);
        for depth in [MAX_DEPTH + 1, 200_000] {
            let deep = nested(depth);
            let e = validate(&deep).unwrap_err();
            assert!(e.contains("nested deeper than 100 levels"), "{e}");
            let e = decode_prefix(&deep).unwrap_err();
            assert!(e.contains("nested deeper than 100 levels"), "{e}");
        }
        // A deep value after good ones is named by its offset.
        let mut buf = vec![0x01, 0x02];
        buf.extend(nested(MAX_DEPTH + 1));
        let e = validate(&buf).unwrap_err();
        assert!(e.contains("value 2 at byte 2"), "{e}");
    }

    #[test]
    fn scanner_refuses_declared_lengths_beyond_its_limit_before_the_bytes() {
        // A PING whose first item declares a 1 GiB string.
        let e = Scanner::new(65536)
            .advance(b"\x94\xdb\x40\x00\x00\x00")
            .unwrap_err();
        assert!(matches!(e, ScanError::TooLong { limit: 65536, .. }), "{e}");
        // 65535 items need at least 65535 bytes.
        assert!(Scanner::new(1000).advance(&[0xdc, 0xff, 0xff]).is_err());
        // Byte by byte, the scanner reaches the same end as on the whole value.
        let mut all = Vec::new();
        let v = rmpv::Value::Array(vec![
            rmpv::Value::from("tag"),
            rmpv::Value::Map(vec![(
                rmpv::Value::from("k"),
                rmpv::Value::Binary(vec![3; 300]),
            )]),
            rmpv::Value::Ext(0, vec![0; 8]),
            rmpv::Value::F64(1.0),
        ]);
        rmpv::encode::write_value(&mut all, &v).unwrap();
        all.extend_from_slice(&[0x01, 0x02]);
        let whole = all.len() - 2;
        assert_eq!(
            Scanner::new(1 << 20).advance(&all).unwrap(),
            Scan::Complete(whole)
        );
        let mut s = Scanner::new(1 << 20);
        for n in 0..=all.len() {
            match s.advance(&all[..n]).unwrap() {
                Scan::Complete(end) => {
                    assert_eq!((end, n), (whole, whole));
                    break;
                }
                Scan::Incomplete(need) => assert!(need > n && need <= whole, "{need} {n}"),
            }
        }
        assert!(matches!(
            Scanner::new(100).advance(&all),
            Err(ScanError::TooLong { .. })
        ));
    }

    #[test]
    fn maps_keyed_by_maps_convert_in_linear_time() {
        // Found by the msgpack_read fuzz target: {{{…: 1}: 1}: 1} nested 99 deep took
        // exponential time (each level escaped the JSON text of the keys below again).
        let mut v = vec![0x81; MAX_DEPTH - 1];
        v.push(0xa1);
        v.push(b'"');
        v.extend(std::iter::repeat_n(0x01, MAX_DEPTH - 1));
        let (values, _) = decode_prefix(&v).unwrap();
        let t = std::time::Instant::now();
        let json = to_json(&values[0]);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!(json.to_string().len() < 10 * v.len(), "{json}");
        // Ordinary keys are unchanged.
        let mut buf = Vec::new();
        let m = rmpv::Value::Map(vec![
            (rmpv::Value::from("a"), rmpv::Value::from(1)),
            (rmpv::Value::from(2), rmpv::Value::from(3)),
            (rmpv::Value::Nil, rmpv::Value::Boolean(true)),
            (
                rmpv::Value::Array(vec![rmpv::Value::from("x"), rmpv::Value::from(1)]),
                rmpv::Value::from(4),
            ),
        ]);
        rmpv::encode::write_value(&mut buf, &m).unwrap();
        let (values, _) = decode_prefix(&buf).unwrap();
        assert_eq!(
            to_json(&values[0]),
            serde_json::json!({"a": 1, "2": 3, "null": true, "[\"x\",1]": 4})
        );
    }
}
