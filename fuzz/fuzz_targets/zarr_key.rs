//! Keys of the read-only Zarr store endpoint (`…/zarr/{key}`): an accepted key is a
//! relative path that stays below the array's directory.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use wendelin_data_array::DataArray;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    if !DataArray::valid_store_key(key) {
        return;
    }
    let path = Path::new(key);
    assert!(path.is_relative(), "{key:?}");
    assert!(
        path.components().all(|c| matches!(c, Component::Normal(_))),
        "{key:?} is not a plain relative path"
    );
    assert!(!key.contains('\0') && !key.contains('\\'), "{key:?}");
    let dir = Path::new("/data/arrays/1");
    assert!(dir.join(path).starts_with(dir));
    assert!(!key.split('/').any(|p| p.starts_with('.')), "{key:?}");
});
