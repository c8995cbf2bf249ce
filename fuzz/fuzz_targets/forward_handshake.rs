//! The Forward handshake: the PING read before authentication (64 KiB bound) and
//! decoded, and the PONG computed for it.
#![no_main]

mod common;

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wendelin_ingestion::forward::{decode_ping, pong, FrameReader, HANDSHAKE_MAX_BYTES};

fuzz_target!(|data: &[u8]| {
    let (sizes, bytes) = common::split(data);
    let mut reader = FrameReader::new(common::Pieces {
        data: bytes,
        sizes,
        n: 0,
    });
    let deadline = Some(Instant::now() + Duration::from_secs(10));
    let Ok(Some(frame)) = reader.next(HANDSHAKE_MAX_BYTES, Duration::from_secs(1), deadline) else {
        return;
    };
    assert!(frame.len() <= HANDSHAKE_MAX_BYTES);
    if let Ok(ping) = decode_ping(&frame) {
        let (_, ok) = pong(&ping, b"0123456789abcdef", "fuzz-key", "wendelin");
        // A digest is 128 hex digits; random bytes do not make the right one.
        assert!(!ok || ping.digest.len() == 128);
    }
});
