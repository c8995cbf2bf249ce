//! `.npy` headers (`data_array::npy::parse`, every append and region write body).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wendelin_data_array::npy;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = npy::parse(data) else {
        return;
    };
    // The data that follows is exactly what the header announces.
    assert!(h.data_offset <= data.len());
    let n = npy::element_count(&h.shape).expect("accepted shape overflows");
    assert_eq!(
        (data.len() - h.data_offset) as u64,
        n * h.dtype.size() as u64
    );
    // Our own header for the same dtype and shape parses to the same.
    let mut again = npy::header(h.dtype, &h.shape);
    again.extend_from_slice(&data[h.data_offset..]);
    let h2 = npy::parse(&again).expect("re-encoded header refused");
    assert_eq!((h2.dtype, &h2.shape), (h.dtype, &h.shape));
});
