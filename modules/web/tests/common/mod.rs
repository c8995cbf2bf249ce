//! Set-up shared by the web module's test files: a chart's array and its published site.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use wendelin_tests::TestServer;

/// A Data Array of `length` float64 values `i % 1000`.
pub fn array(s: &TestServer, length: usize) -> String {
    let array = s.create(
        "data_array_module",
        json!({"portal_type": "Data Array", "title": "Signal", "dtype": "float64",
               "shape": [0], "chunk_shape": [10000]}),
    );
    let body: Vec<u8> = (0..length)
        .flat_map(|i| ((i % 1000) as f64).to_le_bytes())
        .collect();
    let r = wendelin_tests::request_raw(
        "POST",
        &s.url(&format!("/api/v1/{array}/append")),
        "application/octet-stream",
        &body,
        &[
            ("Authorization", &format!("Bearer {}", s.manager_token)),
            ("X-Array-Dtype", "float64"),
            ("X-Array-Shape", &length.to_string()),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    array
}

/// A published site `lab` publishing `array`, its published chart page `home` (front
/// page) and a draft page `draft`.
pub fn site(s: &TestServer, array: &str) -> String {
    s.create(
        "web_site_module",
        json!({"portal_type": "Web Site", "id": "lab", "title": "Lab", "front_page": "home",
               "arrays": [array]}),
    );
    let home = s.create("web_page_module",
        json!({"portal_type": "Web Page", "title": "Home", "page_reference": "home",
               "content_type": "text/x-tera",
               "text_content": format!("<h1>{{{{ page.title }}}}</h1>{{{{ chart(array='{array}', title='Signal', live=1) }}}}")}),
    );
    s.create(
        "web_page_module",
        json!({"portal_type": "Web Page", "title": "Draft", "page_reference": "draft",
               "text_content": "<p id=draft>not yet</p>"}),
    );
    s.fire("web_site_module/lab", "publish");
    s.fire(&home, "publish_alive");
    home
}
