//! Posted forms of the admin UI: `application/x-www-form-urlencoded` bodies and query
//! strings, then the typed parsing of every portal type's fields.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wendelin_core::Registry;
use wendelin_server::ui::form::{self, Pairs};

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| wendelin_server::registry().expect("the registry builds"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let pairs = if pick & 1 == 0 {
        Pairs::from_body(body)
    } else {
        match std::str::from_utf8(body) {
            Ok(q) => Pairs::from_query(q),
            Err(_) => return,
        }
    };
    let Ok(pairs) = pairs else {
        return;
    };
    let types: Vec<_> = registry().portal_types().collect();
    let pt = types[usize::from(pick >> 1) % types.len()];
    let parsed = form::parse(pt, &pairs);
    let names: Vec<String> = form::definitions(pt).into_iter().map(|d| d.name).collect();
    for k in parsed.values.keys().chain(parsed.errors.keys()) {
        assert!(names.contains(k), "{k} is no field of {}", pt.name);
    }
    // Posted values that parse are shown again as posted.
    for k in parsed.values.keys() {
        assert!(parsed.raw.contains_key(k));
    }
});
