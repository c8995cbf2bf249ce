//! Plots of Data Arrays end to end: drawn by the server as PNG, read back here and
//! checked on their pixels (where the peak is), saved as Images, and never shown to who
//! may not View the array.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Cursor;

use image::{ImageFormat, RgbImage};
use serde_json::json;
use wendelin_tests::{add_user, request_raw, request_with, TestServer};

/// The colour of a plot's first series (matplotlib's first blue).
const SERIES: [u8; 3] = [31, 119, 180];

fn new_array(server: &TestServer, dtype: &str, shape: &[u64]) -> String {
    let r = server.req(
        "POST",
        "/api/v1/data_array_module",
        Some(
            &json!({"portal_type": "Data Array", "title": "spectrum", "dtype": dtype,
                     "shape": shape}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["path"].as_str().unwrap().to_owned()
}

fn append_f64(server: &TestServer, path: &str, values: &[f64], shape: &str) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let r = request_raw(
        "POST",
        &server.url(&format!("/api/v1/{path}/append")),
        "application/octet-stream",
        &bytes,
        &[
            ("authorization", &format!("Bearer {}", server.manager_token)),
            ("x-array-dtype", "float64"),
            ("x-array-shape", shape),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

fn png(server: &TestServer, url: &str) -> RgbImage {
    let r = ureq::get(&server.url(url))
        .set("authorization", &format!("Bearer {}", server.manager_token))
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.content_type(), "image/png");
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
    image::load(Cursor::new(body), ImageFormat::Png)
        .unwrap()
        .to_rgb8()
}

/// Columns holding a pixel of the series' colour, and the column of its highest pixel.
fn series_extent(picture: &RgbImage) -> (u32, u32, u32) {
    let (mut left, mut right, mut peak, mut peak_row) = (u32::MAX, 0, 0, u32::MAX);
    for (x, y, p) in picture.enumerate_pixels() {
        if p.0 == SERIES {
            left = left.min(x);
            right = right.max(x);
            if y < peak_row {
                peak_row = y;
                peak = x;
            }
        }
    }
    assert!(left < right, "no series drawn");
    (left, right, peak)
}

#[test]
fn a_sine_spectrum_peaks_at_its_frequency_and_is_saved_as_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    // |DFT| of a 50 Hz sine sampled at 1,000 Hz for 1,024 samples, bins 0..=512.
    let (n, rate, freq) = (1024usize, 1000.0f64, 50.0f64);
    let signal: Vec<f64> = (0..n)
        .map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin())
        .collect();
    let spectrum: Vec<f64> = (0..=n / 2)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (i, s) in signal.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (k * i) as f64 / n as f64;
                re += s * a.cos();
                im += s * a.sin();
            }
            (re * re + im * im).sqrt()
        })
        .collect();
    let path = new_array(&server, "float64", &[0]);
    append_f64(&server, &path, &spectrum, &spectrum.len().to_string());
    let df = rate / n as f64;
    let id = path.rsplit('/').next().unwrap();
    for (url, log) in [
        (
            format!(
                "/api/v1/{path}/plot?x_step={df}&title=Spectrum&x_label=Hz&width=600&height=300"
            ),
            false,
        ),
        (
            format!("/{path}/DataArray_plot?x_step={df}&log_y=true&width=600&height=300"),
            true,
        ),
    ] {
        let picture = png(&server, &url);
        assert_eq!(picture.dimensions(), (600, 300), "{url}");
        let (left, right, peak) = series_extent(&picture);
        // x runs from 0 Hz at `left` to 500 Hz at `right`.
        let expected = left as f64 + (freq / (rate / 2.0)) * (right - left) as f64;
        assert!(
            (peak as f64 - expected).abs() <= 2.0,
            "{url}: peak at column {peak}, expected {expected:.1} (series {left}..{right}), log {log}"
        );
    }
    // Saved as an Image related to the array, whose bytes are that PNG.
    let r = server.req(
        "POST",
        &format!("/api/v1/data_array_module/{id}/saveAsImage"),
        Some(&json!({"x_step": df, "title": "Spectrum of the sine", "width": 400, "height": 200})),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let image = r.json();
    assert_eq!(image["portal_type"], "Image", "{image}");
    assert_eq!(image["title"], "Spectrum of the sine", "{image}");
    assert_eq!(image["data_array"], json!(path), "{image}");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(400), Some(200))
    );
    let stored = png(
        &server,
        &format!("/api/v1/{}/data", image["path"].as_str().unwrap()),
    );
    assert_eq!(stored.dimensions(), (400, 200));
    series_extent(&stored);
}

#[test]
fn heatmaps_bad_parameters_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    // A 2-D "spectrogram": 300 windows × 64 bins, one hot bin (40) in windows 100..200.
    let path = new_array(&server, "float64", &[0, 64]);
    let mut values = vec![0.0f64; 300 * 64];
    for w in 100..200 {
        values[w * 64 + 40] = 1.0;
    }
    append_f64(&server, &path, &values, "300,64");
    let picture = png(
        &server,
        &format!("/api/v1/{path}/plot?kind=heatmap&width=400&height=300"),
    );
    // The hottest colour (viridis' yellow) only in the middle third, across.
    let hot: Vec<(u32, u32)> = picture
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] > 240 && p.0[1] > 220 && p.0[2] < 60)
        .map(|(x, y, _)| (x, y))
        .collect();
    assert!(!hot.is_empty(), "no hot pixel");
    let cold: Vec<u32> = picture
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0 == [68, 1, 84])
        .map(|(x, _, _)| x)
        .collect();
    let (x0, x1) = (*cold.iter().min().unwrap(), *cold.iter().max().unwrap());
    let (h0, h1) = (
        hot.iter().map(|p| p.0).min().unwrap(),
        hot.iter().map(|p| p.0).max().unwrap(),
    );
    let third = (x1 - x0) as f64 / 3.0;
    assert!(
        (h0 as f64 - (x0 as f64 + third)).abs() <= 3.0,
        "hot from {h0}, plot {x0}..{x1}"
    );
    assert!(
        (h1 as f64 - (x0 as f64 + 2.0 * third)).abs() <= 3.0,
        "hot to {h1}, plot {x0}..{x1}"
    );

    // Bad parameters are 400s naming what is wrong.
    for (query, says) in [
        ("width=5", "width must be"),
        ("kind=pie", "kind must be line or heatmap"),
        ("log_y=maybe", "log_y must be true or false"),
        ("columns=1,x", "columns must be indices"),
        ("columns=99", "outside axis 1"),
    ] {
        let r = server.req("GET", &format!("/api/v1/{path}/plot?{query}"), None);
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert!(r.text.contains(says), "{query}: {}", r.text);
    }
    // Several columns of a 2-D array as series.
    let picture = png(
        &server,
        &format!("/api/v1/{path}/plot?columns=0,40&width=300&height=200"),
    );
    assert!(
        picture.pixels().any(|p| p.0 == [255, 127, 14]),
        "second series missing"
    );

    // Who may not View the array sees neither its plot nor that it exists.
    add_user(&server, "eve", "eve-password-1", &[]);
    let eve = wendelin_tests::bearer_of(&server, "eve");
    let hidden = request_with(
        "GET",
        &server.url(&format!("/api/v1/{path}/plot")),
        None,
        &[("authorization", &eve)],
    );
    let missing = request_with(
        "GET",
        &server.url("/api/v1/data_array_module/999/plot"),
        None,
        &[("authorization", &eve)],
    );
    assert_eq!(hidden.status, 404, "{}", hidden.text);
    assert_eq!(missing.status, 404, "{}", missing.text);
    let saved = request_with(
        "POST",
        &server.url(&format!("/api/v1/{path}/saveAsImage")),
        Some(&json!({})),
        &[("authorization", &eve)],
    );
    assert_eq!(saved.status, 404, "{}", saved.text);
    let images = server.req("GET", "/api/v1/image_module", None);
    assert!(!images.text.contains("Plot of"), "{}", images.text);

    // The array's page in the admin UI shows a plot preview (a heatmap for 64 columns).
    add_user(&server, "mgr", "mgr-password-1", &["Manager"]);
    let (cookie, _) = wendelin_tests::login(&server, "mgr", "mgr-password-1");
    let page = request_with(
        "GET",
        &server.url(&format!("/ui/{path}/+module")),
        None,
        &[("Cookie", &cookie)],
    );
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("id=\"plot-preview\""), "{}", page.text);
    assert!(page.text.contains("plot?kind=heatmap"), "{}", page.text);
    assert!(page.text.contains("[300, 64]"), "{}", page.text);
}

/// x from a second array: with x = i² (unevenly spaced), the peak at i = 50 of 0..=100
/// lies at a quarter of the x range (2,500 of 10,000), not in the middle as the index
/// would put it; the x array must match the plotted one, and is read with the caller's
/// rights (an x array one may not View is a 404, as the plotted one).
#[test]
fn x_from_a_second_array_places_points_by_their_x() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let y: Vec<f64> = (0..=100)
        .map(|i: i32| {
            if i == 50 {
                10.0
            } else {
                f64::from((i % 7) - 3) * 0.1
            }
        })
        .collect();
    let x: Vec<f64> = (0..=100).map(|i: i32| f64::from(i * i)).collect();
    let yp = new_array(&server, "float64", &[0]);
    append_f64(&server, &yp, &y, "101");
    let xp = new_array(&server, "float64", &[0]);
    append_f64(&server, &xp, &x, "101");
    let picture = png(
        &server,
        &format!("/api/v1/{yp}/plot?x_array={xp}&width=600&height=300"),
    );
    let (left, right, peak) = series_extent(&picture);
    let expected = left as f64 + 0.25 * (right - left) as f64;
    assert!(
        (peak as f64 - expected).abs() <= 2.0,
        "peak at column {peak}, expected {expected:.1} (series {left}..{right})"
    );
    // Without x_array the same array peaks in the middle: the x array made the difference.
    let (left, right, peak) = series_extent(&png(
        &server,
        &format!("/api/v1/{yp}/plot?width=600&height=300"),
    ));
    assert!((peak as f64 - (left + right) as f64 / 2.0).abs() <= 2.0);
    // A log x axis: x from 1 to 10,000 (x = 0 left out), 2,500 at log10 2500 / 4.
    let (left, right, peak) = series_extent(&png(
        &server,
        &format!("/api/v1/{yp}/plot?x_array=/{xp}&log_x=true&width=600&height=300"),
    ));
    let expected = left as f64 + 2500f64.log10() / 4.0 * (right - left) as f64;
    assert!(
        (peak as f64 - expected).abs() <= 2.0,
        "log x: peak at column {peak}, expected {expected:.1} (series {left}..{right})"
    );

    // Refusals: lengths that differ, x given twice, a heatmap, a missing array.
    let short = new_array(&server, "float64", &[0]);
    append_f64(&server, &short, &x[..10], "10");
    for (query, status, says) in [
        (format!("x_array={short}"), 400, "has 10 elements"),
        (format!("x_array={xp}&x_step=2"), 400, "not both"),
        (
            format!("x_array={xp}&kind=heatmap"),
            400,
            "x_array is for line plots",
        ),
        ("x_array=data_array_module/999".to_owned(), 404, ""),
    ] {
        let r = server.req("GET", &format!("/api/v1/{yp}/plot?{query}"), None);
        assert_eq!(r.status, status, "{query}: {}", r.text);
        assert!(r.text.contains(says), "{query}: {}", r.text);
    }

    // Eve (an Author) may View the plotted array once validated, but not the x array
    // while it is a draft: a 404; once it is validated too, the plot.
    add_user(&server, "eve", "eve-password-1", &["Author"]);
    let eve = wendelin_tests::bearer_of(&server, "eve");
    let r = server.req(
        "POST",
        &format!("/api/v1/{yp}/transitions/validate"),
        Some(&json!({})),
    );
    assert!(r.status < 300, "{}", r.text);
    let url = format!("/api/v1/{yp}/plot?x_array={xp}");
    let hidden = request_with("GET", &server.url(&url), None, &[("authorization", &eve)]);
    assert_eq!(hidden.status, 404, "{}", hidden.text);
    let r = server.req(
        "POST",
        &format!("/api/v1/{xp}/transitions/validate"),
        Some(&json!({})),
    );
    assert!(r.status < 300, "{}", r.text);
    let shown = request_with("GET", &server.url(&url), None, &[("authorization", &eve)]);
    assert_eq!(shown.status, 200, "{}", shown.text);
}
