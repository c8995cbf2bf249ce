//! Record reading (`readMsgpackChunkList`'s `decode_prefix`, and the JSON it becomes)
//! on arbitrary stored bytes: what it reads is exactly what validation accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wendelin_data_stream::msgpack;

fuzz_target!(|data: &[u8]| {
    match msgpack::decode_prefix(data) {
        Ok((values, used)) => {
            assert!(used <= data.len());
            assert_eq!(
                msgpack::validate(&data[..used]),
                Ok(values.len()),
                "read values that validation refuses"
            );
            for v in &values {
                let json = msgpack::to_json(v);
                // Back to msgpack and JSON again: still within the nesting limit.
                let again = msgpack::from_json(&json);
                let mut bytes = Vec::new();
                rmpv::encode::write_value(&mut bytes, &again).expect("encoding to memory");
                assert!(msgpack::validate(&bytes).is_ok());
            }
        }
        Err(_) => {
            // A value the reader refuses is refused by validation too.
            assert!(msgpack::validate(data).is_err(), "validated but unreadable");
        }
    }
});
