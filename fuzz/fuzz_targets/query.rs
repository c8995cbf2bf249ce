//! The catalog query language (`wendelin_core::query::parse`), as typed in the API's
//! `q=` and the UI's search box.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Errors are fine; a panic or a stack overflow is the bug.
    let _ = wendelin_core::query::parse(text);
});
