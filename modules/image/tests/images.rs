//! Images over HTTP, end to end: each format round-trips and is described by indexed
//! properties; truncated, mislabelled, SVG and oversized files are 400 with nothing
//! stored; conversions are computed once, cached, revalidated by ETag and change with
//! the image; EXIF orientation is applied; permissions hide an image and its conversions;
//! a deleted image's files are purged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageEncoder, ImageFormat, Rgb, RgbImage};
use serde_json::json;
use wendelin_tests::{run_cli, TestServer};

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

/// Status, headers (lowercase names) and body bytes of a response.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn got(r: Result<ureq::Response, ureq::Error>) -> Got {
    let r = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = r.status();
    let headers = r
        .headers_names()
        .into_iter()
        .filter_map(|n| Some((n.to_ascii_lowercase(), r.header(&n)?.to_owned())))
        .collect();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
    Got {
        status,
        headers,
        body,
    }
}

fn get(server: &TestServer, path: &str, auth: Option<&str>, headers: &[(&str, &str)]) -> Got {
    let mut req = agent().get(&server.url(path));
    if let Some(a) = auth {
        req = req.set("authorization", a);
    }
    for (k, v) in headers {
        req = req.set(k, v);
    }
    got(req.call())
}

fn put(server: &TestServer, path: &str, auth: &str, content_type: &str, body: &[u8]) -> Got {
    got(agent()
        .put(&server.url(path))
        .set("authorization", auth)
        .set("content-type", content_type)
        .send_bytes(body))
}

fn manager(server: &TestServer) -> String {
    format!("Bearer {}", server.manager_token)
}

fn new_image(server: &TestServer, title: &str) -> String {
    let r = server.req(
        "POST",
        "/api/v1/image_module",
        Some(&json!({"title": title})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["path"].as_str().unwrap().to_owned()
}

/// A `w` × `h` picture with a gradient (so encoders have something to keep).
fn picture(w: u32, h: u32, seed: u8) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 7) as u8 ^ seed, (y * 5) as u8, seed.wrapping_mul(3)])
    }))
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn decoded(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

/// Regular files under `<data_dir>/images` (temporary ones included).
fn stored_files(data_dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&data_dir.join("images"), &mut out);
    out
}

#[test]
fn each_format_round_trips_with_indexed_properties() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let auth = manager(&server);
    let img = picture(30, 20, 9);
    for (format, name, mime) in [
        (ImageFormat::Png, "png", "image/png"),
        (ImageFormat::Jpeg, "jpeg", "image/jpeg"),
        (ImageFormat::Gif, "gif", "image/gif"),
        (ImageFormat::WebP, "webp", "image/webp"),
    ] {
        let path = new_image(&server, name);
        let bytes = encode(&img, format);
        let r = put(
            &server,
            &format!("/api/v1/{path}/data"),
            &auth,
            mime,
            &bytes,
        );
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let meta: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(meta["format"], name);
        assert_eq!(
            (meta["width"].as_u64(), meta["height"].as_u64()),
            (Some(30), Some(20))
        );
        assert_eq!(meta["byte_size"].as_u64(), Some(bytes.len() as u64));
        // The bytes come back as stored, served as user content.
        let back = get(&server, &format!("/api/v1/{path}/data"), Some(&auth), &[]);
        assert_eq!(back.status, 200);
        assert_eq!(back.body, bytes, "{name}");
        assert_eq!(back.header("content-type"), Some(mime));
        assert!(back
            .header("content-security-policy")
            .unwrap()
            .starts_with("sandbox"));
        assert_eq!(back.header("x-content-type-options"), Some("nosniff"));
        assert!(back.header("etag").is_some());
        // The document says what it holds, and the catalog finds it by those properties.
        let doc = server.req("GET", &format!("/api/v1/{path}"), None).json();
        assert_eq!(doc["format"], name, "{doc}");
        assert_eq!(doc["content_type"], mime);
        assert_eq!(doc["width"], 30);
        let found = server.req(
            "GET",
            &format!(
                "/api/v1/catalog?q={}",
                urlencode(&format!(
                    "portal_type:\"Image\" AND format:\"{name}\" AND width:30"
                ))
            ),
            None,
        );
        assert_eq!(found.status, 200, "{}", found.text);
        let text = found.text.clone();
        assert!(text.contains(&format!("\"{path}\"")), "{name}: {text}");
    }
    // What an upload records stays coherent when edited by hand (422, unchanged).
    let path = new_image(&server, "edited");
    for bad in [
        json!({"serial": 1, "format": "svg"}),
        json!({"serial": 1, "sha256": "../../etc/passwd"}),
        json!({"serial": 1, "format": "png", "content_type": "text/html"}),
    ] {
        let r = server.req("PATCH", &format!("/api/v1/{path}"), Some(&bad));
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
    }
    let r = server.req(
        "PATCH",
        &format!("/api/v1/{path}"),
        Some(&json!({"serial": 1, "format": "", "sha256": "", "content_type": ""})),
    );
    assert_eq!(r.status, 200, "empty form fields: {}", r.text);
    // Without a declared type the bytes say what they are.
    let path = new_image(&server, "sniffed");
    let r = put(
        &server,
        &format!("/api/v1/{path}/data"),
        &auth,
        "application/octet-stream",
        &encode(&img, ImageFormat::Png),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A multipart body (`curl -F file=@chart.webp`), POST or PUT: the `file` part, with
    // the part's Content-Type; other parts are skipped.
    let webp = encode(&picture(12, 34, 5), ImageFormat::WebP);
    let multipart = |part_type: &str| {
        let mut body =
            b"--XB\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n".to_vec();
        body.extend_from_slice(
            format!(
                "--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.webp\"\r\nContent-Type: {part_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&webp);
        body.extend_from_slice(b"\r\n--XB--\r\n");
        body
    };
    for method in ["POST", "PUT"] {
        let path = new_image(&server, "multipart");
        let r = got(agent()
            .request(method, &server.url(&format!("/api/v1/{path}/data")))
            .set("authorization", &auth)
            .set("content-type", "multipart/form-data; boundary=XB")
            .send_bytes(&multipart("image/webp")));
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        let back = get(&server, &format!("/api/v1/{path}/data"), Some(&auth), &[]);
        assert_eq!(back.body, webp);
        let r = got(agent()
            .request(method, &server.url(&format!("/api/v1/{path}/data")))
            .set("authorization", &auth)
            .set("content-type", "multipart/form-data; boundary=XB")
            .send_bytes(&multipart("image/gif")));
        assert_eq!(r.status, 400, "mislabelled part: {}", r.text());
    }
    // No picture yet: 404 with a hint.
    let empty = new_image(&server, "empty");
    let r = get(&server, &format!("/api/v1/{empty}/data"), Some(&auth), &[]);
    assert_eq!(r.status, 404, "{}", r.text());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A PNG declaring `w` × `h` pixels, with the start of a pixel stream only: a decoder
/// that trusted the header would allocate `w × h × 3` bytes before finding out.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]);
    chunk(b"IEND", &[]);
    out
}

#[test]
fn bad_files_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("var");
    let server = TestServer::start(&data_dir, None);
    let auth = manager(&server);
    let path = new_image(&server, "victim");
    let url = format!("/api/v1/{path}/data");
    let png = encode(&picture(64, 64, 1), ImageFormat::Png);
    let jpeg = encode(&picture(64, 64, 1), ImageFormat::Jpeg);
    let gif = encode(&picture(64, 64, 1), ImageFormat::Gif);
    let webp = encode(&picture(64, 64, 1), ImageFormat::WebP);
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "truncated PNG",
            "image/png",
            png[..png.len() / 2].to_vec(),
            "readable",
        ),
        (
            "truncated JPEG",
            "image/jpeg",
            jpeg[..jpeg.len() / 2].to_vec(),
            "readable",
        ),
        (
            "truncated GIF",
            "image/gif",
            gif[..gif.len() / 2].to_vec(),
            "readable",
        ),
        (
            "truncated WebP",
            "image/webp",
            webp[..webp.len() / 2].to_vec(),
            "readable",
        ),
        (
            "JPEG labelled PNG",
            "image/png",
            jpeg.clone(),
            "declared image/png",
        ),
        (
            "PNG labelled WebP",
            "image/webp",
            png.clone(),
            "declared image/webp",
        ),
        ("SVG", "image/svg+xml", svg.to_vec(), "SVG"),
        (
            "SVG unlabelled",
            "application/octet-stream",
            svg.to_vec(),
            "SVG",
        ),
        (
            "text",
            "text/plain",
            b"hello".to_vec(),
            "PNG, JPEG, GIF or WebP",
        ),
        (
            "garbage",
            "application/octet-stream",
            vec![0; 100],
            "not a PNG",
        ),
        // 50,000 × 50,000 = 2.5 gigapixels, above the default 100 megapixels: refused
        // from the header, before any pixel is decoded.
        (
            "bomb",
            "image/png",
            png_header(50_000, 50_000),
            "max_pixels",
        ),
    ];
    for (what, ct, bytes, says) in cases {
        let r = put(&server, &url, &auth, ct, &bytes);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(r.text().contains(says), "{what}: {}", r.text());
        assert_eq!(stored_files(&data_dir), Vec::<String>::new(), "{what}");
        let doc = server.req("GET", &format!("/api/v1/{path}"), None).json();
        assert!(doc["byte_size"].is_null(), "{what}: {doc}");
    }
    // A good file then a bad one: the bad one leaves the good one in place.
    assert_eq!(put(&server, &url, &auth, "image/png", &png).status, 200);
    let r = put(&server, &url, &auth, "image/png", &png[..100]);
    assert_eq!(r.status, 400);
    assert_eq!(get(&server, &url, Some(&auth), &[]).body, png);
    // The original and the document's lock file.
    let files = stored_files(&data_dir);
    let originals: Vec<_> = files.iter().filter(|f| !f.ends_with(".lock")).collect();
    assert_eq!(originals.len(), 1, "{files:?}");
}

#[test]
fn the_limits_are_settings() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("var"),
        None,
        &[
            ("WENDELIN_IMAGE_MAX_PIXELS", "1000"),
            ("WENDELIN_IMAGE_MAX_UPLOAD_BYTES", "100000"),
            ("WENDELIN_IMAGE_MAX_OUTPUT_SIDE", "30"),
        ],
    );
    let auth = manager(&server);
    let path = new_image(&server, "limited");
    let url = format!("/api/v1/{path}/data");
    let r = put(
        &server,
        &url,
        &auth,
        "image/png",
        &encode(&picture(40, 25, 2), ImageFormat::Png),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = put(
        &server,
        &url,
        &auth,
        "image/png",
        &encode(&picture(40, 26, 2), ImageFormat::Png),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("1040 pixels"), "{}", r.text());
    let r = put(&server, &url, &auth, "image/png", &vec![0; 100_001]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains("[image] max_upload_bytes"),
        "{}",
        r.text()
    );
    let r = get(&server, &format!("{url}?width=31"), Some(&auth), &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("[image] max_output_side"), "{}", r.text());
    // A display size above the limit is capped to it.
    let r = get(&server, &format!("{url}?display=large"), Some(&auth), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(decoded(&r.body).width(), 30);
}

#[test]
fn conversions_are_computed_once_and_follow_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let auth = manager(&server);
    let path = new_image(&server, "photo");
    let url = format!("/api/v1/{path}/data");
    let first = encode(&picture(300, 200, 3), ImageFormat::Png);
    assert_eq!(put(&server, &url, &auth, "image/png", &first).status, 200);

    let thumb = format!("{url}?display=thumbnail");
    let a = get(&server, &thumb, Some(&auth), &[]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-image-conversion"), Some("computed"));
    assert_eq!(a.header("content-type"), Some("image/png"));
    assert_eq!(a.header("cache-control"), Some("private, no-cache"));
    assert!(a
        .header("content-security-policy")
        .unwrap()
        .starts_with("sandbox"));
    let t = decoded(&a.body);
    assert_eq!((t.width(), t.height()), (128, 85));
    let b = get(&server, &thumb, Some(&auth), &[]);
    assert_eq!(b.header("x-image-conversion"), Some("cached"));
    assert_eq!(b.body, a.body);
    let etag = a.header("etag").unwrap().to_owned();
    assert_eq!(b.header("etag"), Some(etag.as_str()));
    // The same conversion spelled otherwise is the same cache entry.
    let c = get(
        &server,
        &format!("{url}?width=128&height=128&format=png"),
        Some(&auth),
        &[],
    );
    assert_eq!(c.header("x-image-conversion"), Some("cached"));
    // Revalidation: 304 without a body.
    let nm = get(&server, &thumb, Some(&auth), &[("if-none-match", &etag)]);
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());

    // Other sizes and formats; metadata is not carried into conversions.
    let j = get(
        &server,
        &format!("{url}?width=60&format=jpeg&quality=40"),
        Some(&auth),
        &[],
    );
    assert_eq!(j.status, 200, "{}", j.text());
    assert_eq!(j.header("content-type"), Some("image/jpeg"));
    assert_eq!(image::guess_format(&j.body).unwrap(), ImageFormat::Jpeg);
    let jd = decoded(&j.body);
    assert_eq!((jd.width(), jd.height()), (60, 40));
    let w = get(
        &server,
        &format!("{url}?display=small&format=webp"),
        Some(&auth),
        &[],
    );
    assert_eq!(image::guess_format(&w.body).unwrap(), ImageFormat::WebP);
    assert_eq!(
        decoded(&w.body).width(),
        300,
        "never enlarged past the source"
    );
    for bad in [
        "display=huge",
        "width=0",
        "width=99999",
        "format=svg",
        "quality=0&format=jpeg",
    ] {
        let r = get(&server, &format!("{url}?{bad}"), Some(&auth), &[]);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }

    // Replacing the image changes the conversion (new ETag, computed again).
    let second = encode(&picture(100, 400, 4), ImageFormat::Png);
    assert_eq!(put(&server, &url, &auth, "image/png", &second).status, 200);
    let d = get(&server, &thumb, Some(&auth), &[("if-none-match", &etag)]);
    assert_eq!(d.status, 200);
    assert_eq!(d.header("x-image-conversion"), Some("computed"));
    assert_ne!(d.header("etag"), Some(etag.as_str()));
    let t = decoded(&d.body);
    assert_eq!((t.width(), t.height()), (32, 128));
    assert_eq!(get(&server, &url, Some(&auth), &[]).body, second);
}

/// A JPEG whose EXIF says "rotate 90° clockwise to display" (orientation 6).
fn jpeg_rotated(w: u32, h: u32) -> Vec<u8> {
    jpeg_turned(&picture(w, h, 5).to_rgb8())
}

/// `img` as a JPEG whose EXIF orientation (6) says to turn it 90° clockwise.
fn jpeg_turned(img: &RgbImage) -> Vec<u8> {
    let mut exif = b"II*\0".to_vec();
    exif.extend_from_slice(&8u32.to_le_bytes());
    exif.extend_from_slice(&1u16.to_le_bytes()); // one entry
    exif.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    exif.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    exif.extend_from_slice(&1u32.to_le_bytes());
    exif.extend_from_slice(&6u16.to_le_bytes());
    exif.extend_from_slice(&[0, 0]);
    exif.extend_from_slice(&0u32.to_le_bytes());
    let mut out = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut out, 90);
    enc.set_exif_metadata(exif).unwrap();
    let (w, h) = img.dimensions();
    enc.write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A `w` × `h` picture of red, green / blue, white quadrants.
fn quadrants(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| match (x < w / 2, y < h / 2) {
        (true, true) => Rgb([255, 0, 0]),
        (false, true) => Rgb([0, 255, 0]),
        (true, false) => Rgb([0, 0, 255]),
        (false, false) => Rgb([255, 255, 255]),
    })
}

#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let auth = manager(&server);
    let path = new_image(&server, "portrait");
    let url = format!("/api/v1/{path}/data");
    let bytes = jpeg_rotated(80, 40);
    let r = put(&server, &url, &auth, "image/jpeg", &bytes);
    assert_eq!(r.status, 200, "{}", r.text());
    let meta: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(40), Some(80))
    );
    let c = get(&server, &format!("{url}?width=20"), Some(&auth), &[]);
    assert_eq!(c.status, 200, "{}", c.text());
    let d = decoded(&c.body);
    assert_eq!((d.width(), d.height()), (20, 40));
    // A conversion small enough to decode at a fraction of the size (scaled IDCT, its own
    // reading of the EXIF orientation) is turned too.
    let c = get(&server, &format!("{url}?width=5"), Some(&auth), &[]);
    assert_eq!(c.status, 200, "{}", c.text());
    let d = decoded(&c.body);
    assert_eq!((d.width(), d.height()), (5, 10));
    // The conversion carries no EXIF (nor any other metadata).
    assert!(!c.body.windows(6).any(|w| w == b"Exif\0\0"));
    assert!(bytes.windows(6).any(|w| w == b"Exif\0\0"));
}

#[test]
fn an_image_one_may_not_view_is_not_found_with_its_conversions() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("var");
    let server = TestServer::start(&data_dir, None);
    let auth = manager(&server);
    let path = new_image(&server, "private");
    let url = format!("/api/v1/{path}/data");
    let png = encode(&picture(50, 50, 6), ImageFormat::Png);
    assert_eq!(put(&server, &url, &auth, "image/png", &png).status, 200);
    assert_eq!(
        get(&server, &format!("{url}?display=small"), Some(&auth), &[]).status,
        200
    );

    let (ok, _, err) = run_cli(&["user", "add", "visitor"], &server.cli_env(), "");
    assert!(ok, "{err}");
    let visitor = wendelin_tests::bearer_of(&server, "visitor");
    for q in [
        "",
        "?display=small",
        "?display=thumbnail",
        "?width=10&format=jpeg",
    ] {
        let r = get(&server, &format!("{url}{q}"), None, &[]);
        assert!(
            r.status == 404 || r.status == 401,
            "anonymous {q}: {}",
            r.status
        );
        let r = get(&server, &format!("{url}{q}"), Some(&visitor), &[]);
        assert_eq!(r.status, 404, "visitor {q}: {}", r.text());
        assert!(!r.text().contains("private"), "{}", r.text());
    }
    // Nor may they replace it: the same 404, and the image is unchanged.
    let other = encode(&picture(10, 10, 7), ImageFormat::Png);
    let r = put(&server, &url, &visitor, "image/png", &other);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(get(&server, &url, Some(&auth), &[]).body, png);

    // Deleting the image purges its files (the delete hook, run by an activity).
    assert!(!stored_files(&data_dir).is_empty());
    let r = server.req("DELETE", &format!("/api/v1/{path}"), None);
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let start = Instant::now();
    while !stored_files(&data_dir).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not purged: {:?}",
            stored_files(&data_dir)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("purged {:?} after the delete", start.elapsed());
}

/// The admin UI's upload field replaces the image: with JavaScript through `PUT …/data`
/// (session, CSRF token, `Content-Range` starting at the size the page showed), without
/// it through the multipart form of `+upload`; a stale page conflicts, a bad file is
/// refused and the image is unchanged.
#[test]
fn the_ui_upload_replaces_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    wendelin_tests::add_user(&server, "alice", "alice-password-1", &["Author"]);
    let (cookie, csrf) = wendelin_tests::login(&server, "alice", "alice-password-1");
    let r = wendelin_tests::with_cookie(
        &server,
        "POST",
        "/api/v1/image_module",
        Some(&json!({"title": "chart"})),
        &cookie,
        Some(&csrf),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.json()["path"].as_str().unwrap().to_owned();
    let page = wendelin_tests::request_with(
        "GET",
        &server.url(&format!("/ui/{path}/+edit")),
        None,
        &[("Cookie", &cookie)],
    );
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains(&format!(
            "data-upload=\"/api/v1/{path}/data\" data-size=\"0\""
        )),
        "{}",
        page.text
    );
    let png = encode(&picture(20, 10, 8), ImageFormat::Png);
    let js_put = |token: Option<&str>, at: usize, bytes: &[u8]| {
        let mut req = agent()
            .put(&server.url(&format!("/api/v1/{path}/data")))
            .set("cookie", &cookie)
            .set("content-type", "image/png")
            .set(
                "content-range",
                &format!("bytes {at}-{}/{}", at + bytes.len() - 1, at + bytes.len()),
            );
        if let Some(t) = token {
            req = req.set("x-csrf-token", t);
        }
        got(req.send_bytes(bytes))
    };
    assert_eq!(js_put(None, 0, &png).status, 403, "no CSRF token");
    let r = js_put(Some(&csrf), 0, &png);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = js_put(Some(&csrf), 0, &png);
    assert_eq!(r.status, 409, "a page showing the old size: {}", r.text());

    let form = |at: &str, file: &[u8]| {
        let mut body = Vec::new();
        for (name, value) in [("csrf_token", csrf.as_str()), ("at", at)] {
            body.extend_from_slice(
                format!(
                    "--XB\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            b"--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n",
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n--XB--\r\n");
        wendelin_tests::request_raw(
            "POST",
            &server.url(&format!("/ui/{path}/+upload")),
            "multipart/form-data; boundary=XB",
            &body,
            &[("Cookie", cookie.as_str())],
        )
    };
    let jpeg = encode(&picture(16, 32, 9), ImageFormat::Jpeg);
    let size = png.len().to_string();
    let r = form("0", &jpeg);
    assert_eq!(r.status, 409, "{}", r.text);
    let r = form(&size, &jpeg[..jpeg.len() / 2]);
    assert_eq!(r.status, 400, "{}", r.text);
    let auth = manager(&server);
    assert_eq!(
        get(&server, &format!("/api/v1/{path}/data"), Some(&auth), &[]).body,
        png
    );
    let r = form(&size, &jpeg);
    assert_eq!(r.status, 303, "{}", r.text);
    let back = get(&server, &format!("/api/v1/{path}/data"), Some(&auth), &[]);
    assert_eq!(back.body, jpeg);
    assert_eq!(back.header("content-type"), Some("image/jpeg"));
    let doc = server.req("GET", &format!("/api/v1/{path}"), None).json();
    assert_eq!(
        (doc["format"].as_str(), doc["height"].as_u64()),
        (Some("jpeg"), Some(32))
    );
    // The image's page shows it, what it is, and links to its conversions.
    let page = server.req("GET", &format!("/{path}"), None);
    assert_eq!(page.status, 200, "{}", page.text);
    for part in [
        "<span id=\"format\">jpeg</span>".to_owned(),
        "<span id=\"dimensions\">16 × 32</span>".to_owned(),
        format!("<img src=\"/api/v1/{path}/data?display=medium\""),
        format!("href=\"/api/v1/{path}/data?display=thumbnail\""),
    ] {
        assert!(page.text.contains(&part), "{part}: {}", page.text);
    }
    let empty = new_image(&server, "empty");
    let page = server.req("GET", &format!("/{empty}"), None);
    assert!(page.text.contains("id=\"no-picture\""), "{}", page.text);
}

#[test]
fn a_large_jpeg_thumbnail_is_decoded_at_a_fraction_of_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let auth = manager(&server);
    let path = new_image(&server, "quadrants");
    let img = quadrants(1600, 1200);
    let bytes = encode(&DynamicImage::ImageRgb8(img), ImageFormat::Jpeg);
    let url = format!("/api/v1/{path}/data");
    assert_eq!(put(&server, &url, &auth, "image/jpeg", &bytes).status, 200);
    let c = get(
        &server,
        &format!("{url}?display=thumbnail"),
        Some(&auth),
        &[],
    );
    assert_eq!(c.status, 200, "{}", c.text());
    let t = decoded(&c.body).to_rgb8();
    assert_eq!(t.dimensions(), (128, 96));
    let near = |p: &Rgb<u8>, q: [u8; 3]| p.0.iter().zip(q).all(|(a, b)| a.abs_diff(b) < 40);
    assert!(
        near(t.get_pixel(20, 20), [255, 0, 0]),
        "{:?}",
        t.get_pixel(20, 20)
    );
    assert!(
        near(t.get_pixel(108, 20), [0, 255, 0]),
        "{:?}",
        t.get_pixel(108, 20)
    );
    assert!(
        near(t.get_pixel(20, 76), [0, 0, 255]),
        "{:?}",
        t.get_pixel(20, 76)
    );
    assert!(
        near(t.get_pixel(108, 76), [255, 255, 255]),
        "{:?}",
        t.get_pixel(108, 76)
    );
}

/// The Image module's listbox as a gallery (`?view=gallery`): a thumbnail per image the
/// user may View and nothing of the others; the thumbnail's URL serves a picture within
/// 128 pixels to that user and a 404 to the others; an image without a picture yet is a
/// tile without one; other modules' listboxes offer no gallery.
#[test]
fn the_gallery_shows_thumbnails_of_the_images_one_may_view() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let mut sessions = Vec::new();
    for who in ["alice", "bob"] {
        let password = format!("{who}-password-1");
        wendelin_tests::add_user(&server, who, &password, &["Author"]);
        sessions.push(wendelin_tests::login(&server, who, &password));
    }
    // Each author's draft images are theirs alone (Owner), so each sees only their own.
    let mut mine = Vec::new();
    for ((cookie, csrf), (title, seed)) in sessions
        .iter()
        .zip([("alices-photo", 1u8), ("bobs-photo", 2)])
    {
        let r = wendelin_tests::with_cookie(
            &server,
            "POST",
            "/api/v1/image_module",
            Some(&json!({"title": title})),
            cookie,
            Some(csrf),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let path = r.json()["path"].as_str().unwrap().to_owned();
        let png = encode(&picture(600, 300, seed), ImageFormat::Png);
        assert_eq!(
            put(
                &server,
                &format!("/api/v1/{path}/data"),
                &manager(&server),
                "image/png",
                &png
            )
            .status,
            200
        );
        mine.push(path);
    }
    let r = wendelin_tests::with_cookie(
        &server,
        "POST",
        "/api/v1/image_module",
        Some(&json!({"title": "alices-empty"})),
        &sessions[0].0,
        Some(&sessions[0].1),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let empty = r.json()["path"].as_str().unwrap().to_owned();

    let page = |cookie: &str, url: &str| {
        let r = wendelin_tests::request_with("GET", &server.url(url), None, &[("Cookie", cookie)]);
        assert_eq!(r.status, 200, "{url}: {}", r.text);
        r.text
    };
    let (alice, bob) = (&sessions[0].0, &sessions[1].0);
    let table = page(alice, "/ui/image_module");
    assert!(table.contains("<table class=\"listbox\""), "{table}");
    assert!(
        table.contains("href=\"/ui/image_module?view=gallery\""),
        "{table}"
    );
    let thumb = |path: &str| format!("<img src=\"/api/v1/{path}/data?display=thumbnail\"");
    for (cookie, own, other) in [(alice, &mine[0], &mine[1]), (bob, &mine[1], &mine[0])] {
        let gallery = page(cookie, "/ui/image_module?view=gallery");
        assert!(gallery.contains("<ul class=\"gallery\">"), "{gallery}");
        assert!(!gallery.contains("<table class=\"listbox\""), "{gallery}");
        assert!(gallery.contains(&thumb(own)), "{gallery}");
        assert!(!gallery.contains(&thumb(other)), "{gallery}");
        assert!(!gallery.contains(other.as_str()), "{gallery}");
        // The thumbnail the page names is a picture within 128 pixels for its viewer…
        let src = format!("/api/v1/{own}/data?display=thumbnail");
        let t = got(agent().get(&server.url(&src)).set("cookie", cookie).call());
        assert_eq!(t.status, 200, "{}", t.text());
        let img = decoded(&t.body);
        assert_eq!((img.width(), img.height()), (128, 64));
        // …and a 404 for who may not View the image.
        let src = format!("/api/v1/{other}/data?display=thumbnail");
        let t = got(agent().get(&server.url(&src)).set("cookie", cookie).call());
        assert_eq!(t.status, 404, "{}", t.text());
    }
    // A search keeps the gallery; an image without a picture is a tile without one.
    // The search is full-text, whose index follows commits by about a second.
    let mut gallery = String::new();
    for _ in 0..100 {
        gallery = page(alice, "/ui/image_module?view=gallery&q=alices");
        if gallery.contains(&format!("href=\"/ui/{empty}\"")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        gallery.contains("<input type=\"hidden\" name=\"view\" value=\"gallery\">"),
        "{gallery}"
    );
    assert!(
        gallery.contains(&format!("href=\"/ui/{empty}\"")),
        "{gallery}"
    );
    assert!(gallery.contains("no picture"), "{gallery}");
    assert_eq!(gallery.matches("<img src=").count(), 1, "{gallery}");
    // A module whose types have no thumbnails offers no gallery, and ignores the asking.
    let arrays = page(alice, "/ui/data_array_module?view=gallery");
    assert!(arrays.contains("<table class=\"listbox\""), "{arrays}");
    assert!(!arrays.contains("view=gallery"), "{arrays}");
}

/// Identical conversions asked at once are computed once (single flight): the others
/// wait for that one's file and say `cached`, all with the same bytes.
#[test]
fn identical_concurrent_conversions_are_computed_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let auth = manager(&server);
    let path = new_image(&server, "busy");
    let url = format!("/api/v1/{path}/data");
    let png = encode(&picture(1500, 1000, 4), ImageFormat::Png);
    assert_eq!(put(&server, &url, &auth, "image/png", &png).status, 200);
    let answers: Vec<Got> = std::thread::scope(|scope| {
        let asks: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    get(
                        &server,
                        &format!("{url}?width=300&format=webp"),
                        Some(&auth),
                        &[],
                    )
                })
            })
            .collect();
        asks.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let how: Vec<&str> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 200, "{}", a.text());
            a.header("x-image-conversion").unwrap()
        })
        .collect();
    assert_eq!(
        how.iter().filter(|h| **h == "computed").count(),
        1,
        "{how:?}"
    );
    assert!(answers.iter().all(|a| a.body == answers[0].body));
}

/// An upload at least twice the preview's side is kept with a preview, which the
/// conversions that fit in half of it are resized from (`x-image-source: preview`);
/// larger ones, and any conversion when the preview is missing or cut short, decode the
/// original. The preview carries the EXIF orientation and goes when the image is
/// replaced.
#[test]
fn small_conversions_of_a_large_image_are_resized_from_its_preview() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("var");
    let server = TestServer::start(&data_dir, None);
    let auth = manager(&server);
    let path = new_image(&server, "large");
    let url = format!("/api/v1/{path}/data");
    // 2400 × 3200 once turned (EXIF orientation 6): red, green / blue, white quadrants
    // as stored, so the turned picture shows blue top left, red top right.
    let bytes = jpeg_turned(&quadrants(3200, 2400));
    assert_eq!(put(&server, &url, &auth, "image/jpeg", &bytes).status, 200);
    let previews = || -> Vec<String> {
        stored_files(&data_dir)
            .into_iter()
            .filter(|f| f.ends_with("-preview.raw"))
            .collect()
    };
    assert_eq!(previews().len(), 1, "{:?}", stored_files(&data_dir));
    let near = |p: &Rgb<u8>, q: [u8; 3]| p.0.iter().zip(q).all(|(a, b)| a.abs_diff(b) < 40);
    let convert = |query: &str, source: &str, size: (u32, u32)| {
        let c = get(&server, &format!("{url}?{query}"), Some(&auth), &[]);
        assert_eq!(c.status, 200, "{query}: {}", c.text());
        assert_eq!(c.header("x-image-conversion"), Some("computed"), "{query}");
        assert_eq!(c.header("x-image-source"), Some(source), "{query}");
        let t = decoded(&c.body).to_rgb8();
        assert_eq!(t.dimensions(), size, "{query}");
        let (w, h) = size;
        for ((x, y), colour) in [
            ((w / 6, h / 6), [0, 0, 255]),
            ((w - w / 6, h / 6), [255, 0, 0]),
            ((w / 6, h - h / 6), [255, 255, 255]),
            ((w - w / 6, h - h / 6), [0, 255, 0]),
        ] {
            assert!(
                near(t.get_pixel(x, y), colour),
                "{query} at {x},{y}: {:?}",
                t.get_pixel(x, y)
            );
        }
    };
    // The preview is 1152 × 1536: up to 576 × 768 is resized from it.
    convert("display=thumbnail", "preview", (96, 128));
    convert("width=576&height=768", "preview", (576, 768));
    convert("width=577&height=769", "original", (577, 769));
    convert("display=large", "original", (960, 1280));
    // A preview cut short (a crash while it was written, say) is not used.
    let preview = previews().remove(0);
    let whole = std::fs::read(&preview).unwrap();
    std::fs::write(&preview, &whole[..whole.len() - 1]).unwrap();
    convert("display=small", "original", (240, 320));
    std::fs::write(&preview, &whole).unwrap();
    convert("width=300", "preview", (300, 400));
    // Lost (or never made: an upload of an earlier version), `wendelin image previews`
    // makes it again from the original; the second run finds nothing to do.
    std::fs::remove_file(&preview).unwrap();
    convert("width=301", "original", (301, 401));
    let previews_cli = || {
        let (ok, out, err) = run_cli(&["image", "previews"], &server.cli_env(), "");
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    assert_eq!(
        previews_cli(),
        json!({"made": 1, "skipped": 0, "failed": 0})
    );
    assert_eq!(std::fs::read(&preview).unwrap(), whole);
    convert("width=302", "preview", (302, 403));
    assert_eq!(
        previews_cli(),
        json!({"made": 0, "skipped": 1, "failed": 0})
    );
    // Replaced by a small picture: no preview any more, the old one is gone.
    let small = encode(&picture(300, 200, 3), ImageFormat::Jpeg);
    assert_eq!(put(&server, &url, &auth, "image/jpeg", &small).status, 200);
    assert!(previews().is_empty(), "{:?}", stored_files(&data_dir));
    let c = get(
        &server,
        &format!("{url}?display=thumbnail"),
        Some(&auth),
        &[],
    );
    assert_eq!(c.status, 200, "{}", c.text());
    assert_eq!(c.header("x-image-source"), Some("original"));
}
