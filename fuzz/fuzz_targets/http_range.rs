//! HTTP `Range` (stream downloads, Zarr keys) and `Content-Range` (resumable uploads),
//! `wendelin_http::range`: a parsed range lies inside the size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wendelin_http::range::{parse_content_range, parse_range};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // The size: small values often (edges), any u64 sometimes.
    let (size, text) = if data[0] & 1 == 0 {
        (u64::from(data[1]), &data[2..])
    } else if data.len() >= 9 {
        (
            u64::from_le_bytes(data[1..9].try_into().unwrap_or([0; 8])),
            &data[9..],
        )
    } else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok((first, last)) = parse_range(text, size) {
        assert!(
            first <= last && last < size,
            "{text:?} of {size}: {first}-{last}"
        );
    }
    if let Ok(Some((a, b, total))) = parse_content_range(text) {
        assert!(a <= b, "{text:?}: {a}-{b}");
        let _ = total;
    }
});
