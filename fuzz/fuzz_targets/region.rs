//! Region (numpy slice) syntax against a shape: `0:1000:10,2`, `-10:`, `::2`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wendelin_data_array::Region;

fuzz_target!(|data: &[u8]| {
    // First byte: number of dimensions (0-4); then 2 bytes per dimension, scaled so
    // that both small and huge shapes occur; the rest is the region text.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let dims = usize::from(n % 5);
    if rest.len() < 2 * dims {
        return;
    }
    let (shape_bytes, text) = rest.split_at(2 * dims);
    let shape: Vec<u64> = shape_bytes
        .chunks(2)
        .map(|c| {
            let v = u64::from(u16::from_le_bytes([c[0], c[1]]));
            if v & 0x8000 != 0 {
                (v & 0x7fff) << 40
            } else {
                v
            }
        })
        .collect();
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    // A write region is a region without steps inside the array.
    if let Ok(w) = wendelin_data_array::region::parse_write(text, &shape) {
        assert!(w.contiguous());
        assert_eq!(Region::parse(text, &shape).ok(), Some(w));
    }
    let Ok(region) = Region::parse(text, &shape) else {
        return;
    };
    assert_eq!(region.dims.len(), shape.len());
    for (d, &size) in region.dims.iter().zip(&shape) {
        assert!(d.step >= 1, "{d:?}");
        assert!(d.len() <= size, "{d:?} in {size}");
        assert!(d.end() <= size, "{d:?} in {size}");
        if !d.keep {
            assert_eq!(d.len(), 1, "{d:?}");
        }
    }
    let out = region.out_shape();
    assert!(out.len() <= shape.len());
    assert_eq!(region.full_shape().len(), shape.len());
});
