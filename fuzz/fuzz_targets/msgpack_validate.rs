//! msgpack validation (what ingestion runs on every body before storing it): whatever it
//! accepts, the reader reads back whole, and the incremental Scanner agrees with it
//! however the bytes are split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wendelin_data_stream::msgpack::{self, Scan, Scanner};

fuzz_target!(|data: &[u8]| {
    let (sizes, data) = match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n & 3).min(rest.len())),
        None => return,
    };
    let validated = msgpack::validate(data);
    if let Ok(count) = validated {
        // Stored means readable: the same values, every byte used.
        let (values, used) = msgpack::decode_prefix(data).expect("validated but unreadable");
        assert_eq!((values.len(), used), (count, data.len()));
        for v in &values {
            let _ = msgpack::to_json(v);
        }
    }
    // The first value, scanned over growing prefixes, ends where a whole scan ends.
    let whole = Scanner::new(data.len()).advance(data);
    let mut scanner = Scanner::new(data.len());
    let mut n = 0usize;
    let mut i = 0usize;
    let piecewise = loop {
        let step = sizes
            .get(i % sizes.len().max(1))
            .map_or(1, |&s| usize::from(s) + 1);
        i += 1;
        n = (n + step).min(data.len());
        match scanner.advance(&data[..n]) {
            Ok(Scan::Incomplete(need)) if n < data.len() => {
                assert!(need > n, "asked for {need} bytes holding {n}");
            }
            other => break other,
        }
    };
    match (&whole, &piecewise) {
        (Ok(Scan::Complete(a)), Ok(Scan::Complete(b))) => assert_eq!(a, b),
        (Ok(Scan::Complete(_)), other) => panic!("whole: complete, piecewise: {other:?}"),
        (Err(_), Ok(Scan::Complete(_))) => panic!("whole: {whole:?}, piecewise: complete"),
        _ => {}
    }
    if let Ok(Scan::Complete(end)) = whole {
        assert!(end <= data.len());
        assert!(
            msgpack::validate(&data[..end]) == Ok(1),
            "a scanned value does not validate"
        );
    }
});
