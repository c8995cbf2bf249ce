//! Forward frames as a connection delivers them: `FrameReader` (bounded, piece by piece)
//! then `decode_message`, with the listener's code and a 64 KiB message limit.
#![no_main]

mod common;

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wendelin_data_stream::msgpack;
use wendelin_ingestion::forward::{decode_message, FrameReader};

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let (sizes, bytes) = common::split(data);
    let mut reader = FrameReader::new(common::Pieces {
        data: bytes,
        sizes,
        n: 0,
    });
    let mut total = 0usize;
    while let Ok(Some(frame)) = reader.next(LIMIT, Duration::from_secs(1), None) {
        assert!(frame.len() <= LIMIT, "a frame of {} bytes", frame.len());
        total += frame.len();
        assert!(total <= bytes.len());
        // A frame is one complete msgpack value.
        assert_eq!(msgpack::validate(&frame), Ok(1));
        if let Ok(m) = decode_message(&frame, LIMIT) {
            assert!(m.entries.len() <= LIMIT.max(frame.len()));
            // What would be appended is valid msgpack, within the nesting limit.
            assert!(
                msgpack::validate(&m.entries).is_ok(),
                "decoded entries do not validate"
            );
        }
    }
});
