//! Data Arrays end to end: the real `wendelin serve` over HTTP, `.npy` bodies, crashes by
//! SIGABRT/SIGKILL, reductions against a reference computed here, and zarr-python 3 (in a
//! venv) reading the server's Zarr store and an array it wrote itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use wendelin_tests::{in_ci, run_cli, TestServer};

/// (dtype, npy descriptor, element size)
const DTYPES: [(&str, &str, usize); 13] = [
    ("bool", "|b1", 1),
    ("int8", "|i1", 1),
    ("int16", "<i2", 2),
    ("int32", "<i4", 4),
    ("int64", "<i8", 8),
    ("uint8", "|u1", 1),
    ("uint16", "<u2", 2),
    ("uint32", "<u4", 4),
    ("uint64", "<u8", 8),
    ("float32", "<f4", 4),
    ("float64", "<f8", 8),
    ("complex64", "<c8", 8),
    ("complex128", "<c16", 16),
];

/// A `.npy` file, written here independently of the server's encoder.
fn npy(descr: &str, shape: &[u64], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape_text = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out.extend(data);
    out
}

/// (descr, shape, data) of a `.npy` body.
fn parse_npy(bytes: &[u8]) -> (String, Vec<u64>, Vec<u8>) {
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "not npy: {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let dict = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    let descr = dict
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_owned();
    let shape = dict
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (descr, shape, bytes[10 + len..].to_vec())
}

fn create(server: &TestServer, props: Value) -> String {
    let mut body = json!({"portal_type": "Data Array"});
    body.as_object_mut()
        .unwrap()
        .extend(props.as_object().unwrap().clone());
    let r = server.req("POST", "/api/v1/data_array_module", Some(&body));
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["path"].as_str().unwrap().to_owned()
}

fn post_npy(server: &TestServer, path: &str, action: &str, body: &[u8]) -> wendelin_tests::Reply {
    server.raw(
        "POST",
        &format!("/api/v1/{path}/{action}"),
        "application/x-npy",
        body,
    )
}

/// GET returning raw bytes (status, body).
fn get_bytes(server: &TestServer, url_path: &str) -> (u16, Vec<u8>) {
    let resp = ureq::get(&server.url(url_path))
        .set("authorization", &format!("Bearer {}", server.manager_token))
        .call();
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = resp.status();
    let mut out = Vec::new();
    resp.into_reader().read_to_end(&mut out).unwrap();
    (status, out)
}

fn read_all(server: &TestServer, path: &str, region: &str) -> (String, Vec<u64>, Vec<u8>) {
    let (status, body) = get_bytes(server, &format!("/api/v1/{path}/read?region={region}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    parse_npy(&body)
}

/// Deterministic bytes that are valid elements of every type (bool: 0/1).
fn pattern(dtype: &str, n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let b = (x >> 33) as u8;
            if dtype == "bool" {
                b & 1
            } else {
                b
            }
        })
        .collect()
}

fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), None);
    (dir, server)
}

#[test]
fn every_dtype_round_trips_through_append_write_and_read() {
    let (_dir, server) = server();
    for (i, (dtype, descr, size)) in DTYPES.iter().enumerate() {
        let codec = if i % 2 == 0 { "none" } else { "zstd" };
        let path = create(
            &server,
            json!({"dtype": dtype, "shape": [0, 3], "chunk_shape": [4, 3], "codec": codec}),
        );
        // Two appends crossing chunk boundaries, then a region write in the middle.
        let a = pattern(dtype, 7 * 3 * size, 1);
        let b = pattern(dtype, 6 * 3 * size, 2);
        let r = post_npy(&server, &path, "append", &npy(descr, &[7, 3], &a));
        assert_eq!(r.status, 200, "{dtype}: {}", r.text);
        let r = post_npy(&server, &path, "append", &npy(descr, &[6, 3], &b));
        assert_eq!(r.json()["shape"], json!([13, 3]), "{dtype}");
        let w = pattern(dtype, 2 * 2 * size, 3);
        let r = post_npy(
            &server,
            &path,
            "write?region=5:7,1:3",
            &npy(descr, &[2, 2], &w),
        );
        assert_eq!(r.status, 204, "{dtype}: {}", r.text);

        let mut expected = [a, b].concat();
        for row in 0..2 {
            for col in 0..2 {
                let dst = ((5 + row) * 3 + 1 + col) * size;
                let src = (row * 2 + col) * size;
                expected[dst..dst + size].copy_from_slice(&w[src..src + size]);
            }
        }
        let (got_descr, shape, data) = read_all(&server, &path, "");
        assert_eq!(got_descr, *descr);
        assert_eq!(shape, vec![13, 3]);
        assert_eq!(data, expected, "{dtype} ({codec})");

        // A slice with steps and a dropped dimension, as numpy would give it.
        let (_, shape, data) = read_all(&server, &path, "1:12:4,2");
        assert_eq!(shape, vec![3]);
        let picked: Vec<u8> = [1usize, 5, 9]
            .iter()
            .flat_map(|r| expected[(r * 3 + 2) * size..(r * 3 + 3) * size].to_vec())
            .collect();
        assert_eq!(data, picked, "{dtype} stepped slice");

        let dtype_reply = server.req("GET", &format!("/api/v1/{path}/getDtype"), None);
        assert_eq!(dtype_reply.json(), json!(dtype));
    }
}

#[test]
fn ten_thousand_small_appends_read_back_as_their_concatenation() {
    // On tmpfs when there is one: this test is about contents, and 40,000 fsyncs of a
    // shared disk would dominate its time (the crash tests cover durability on disk).
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let server = TestServer::start(&dir.path().join("data"), None);
    let path = create(
        &server,
        json!({"dtype": "int64", "shape": [0, 2], "chunk_shape": [1024, 2]}),
    );
    let mut expected = Vec::new();
    for i in 0..10_000i64 {
        let rows = (i % 3 + 1) as u64;
        let data: Vec<u8> = (0..rows as i64 * 2)
            .flat_map(|k| (i * 10 + k).to_le_bytes())
            .collect();
        // Alternate the two body formats.
        let r = if i % 2 == 0 {
            post_npy(&server, &path, "append", &npy("<i8", &[rows, 2], &data))
        } else {
            wendelin_tests::request_raw(
                "POST",
                &server.url(&format!("/api/v1/{path}/append")),
                "application/octet-stream",
                &data,
                &[
                    ("authorization", &format!("Bearer {}", server.manager_token)),
                    ("x-array-dtype", "int64"),
                    ("x-array-shape", &format!("{rows},2")),
                ],
            )
        };
        assert_eq!(r.status, 200, "append {i}: {}", r.text);
        expected.extend(data);
    }
    let (_, shape, data) = read_all(&server, &path, "");
    assert_eq!(shape, vec![expected.len() as u64 / 16, 2]);
    assert!(
        data == expected,
        "the full read differs from the concatenation of the appends"
    );
    let shape = server
        .req("GET", &format!("/api/v1/{path}/getShape"), None)
        .json();
    assert_eq!(shape, json!([expected.len() / 16, 2]));
}

#[test]
fn a_crash_between_chunk_and_metadata_writes_leaves_the_previous_array() {
    let (dir, mut server) = server();
    let path = create(
        &server,
        json!({"dtype": "float64", "shape": [0], "chunk_shape": [8], "codec": "zstd"}),
    );
    let first: Vec<u8> = (0..5).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    let r = post_npy(&server, &path, "append", &npy("<f8", &[5], &first));
    assert_eq!(r.status, 200, "{}", r.text);

    // The next append dies after rewriting the tail chunk, before zarr.json.
    server.extra_env.push((
        "WENDELIN_TEST_CRASH_BEFORE_ARRAY_METADATA".into(),
        "1".into(),
    ));
    server.kill_and_restart();
    let more: Vec<u8> = (100..120)
        .flat_map(|i| f64::from(i).to_le_bytes())
        .collect();
    let crashed = ureq::post(&server.url(&format!("/api/v1/{path}/append")))
        .set("authorization", &format!("Bearer {}", server.manager_token))
        .set("content-type", "application/x-npy")
        .send_bytes(&npy("<f8", &[20], &more));
    assert!(crashed.is_err(), "the server should have died mid-append");

    server.extra_env.clear();
    server.kill_and_restart();
    let (_, shape, data) = read_all(&server, &path, "");
    assert_eq!(shape, vec![5], "the crashed append must not be visible");
    assert_eq!(data, first);
    // The rewritten tail chunk holds the old elements intact; appending again works.
    let r = post_npy(&server, &path, "append", &npy("<f8", &[20], &more));
    assert_eq!(r.json()["shape"], json!([25]));
    let (_, _, data) = read_all(&server, &path, "");
    assert_eq!(data, [first.clone(), more.clone()].concat());

    // A death between a key's synced temporary file and its rename leaves the file in
    // the array's .wtmp directory, unseen; the next writer removes it.
    server
        .extra_env
        .push(("WENDELIN_TEST_CRASH_IN_ARRAY_KEY".into(), "1".into()));
    server.kill_and_restart();
    let crashed = ureq::post(&server.url(&format!("/api/v1/{path}/append")))
        .set("authorization", &format!("Bearer {}", server.manager_token))
        .set("content-type", "application/x-npy")
        .send_bytes(&npy("<f8", &[20], &more));
    assert!(crashed.is_err(), "the server should have died mid-write");
    server.extra_env.clear();
    server.kill_and_restart();
    let tmp_dirs = |root: &std::path::Path| {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    if p.file_name().is_some_and(|n| n == ".wtmp") {
                        found.push(std::fs::read_dir(&p).unwrap().count());
                    }
                    stack.push(p);
                }
            }
        }
        found
    };
    let left: usize = tmp_dirs(&dir.path().join("data")).iter().sum();
    assert!(left >= 1, "the crashed write left its temporary file");
    let (_, shape, data) = read_all(&server, &path, "");
    assert_eq!(shape, vec![25], "the crashed append must not be visible");
    assert_eq!(data, [first.clone(), more.clone()].concat());
    let r = post_npy(&server, &path, "append", &npy("<f8", &[5], &first));
    assert_eq!(r.json()["shape"], json!([30]));
    assert_eq!(
        tmp_dirs(&dir.path().join("data")).iter().sum::<usize>(),
        0,
        "the next writer removed it"
    );
    let (_, _, data) = read_all(&server, &path, "");
    assert_eq!(data, [first.clone(), more, first].concat());
}

/// A shrinking resize writes its new shape first, then resets what lies past it; a crash
/// in between is finished on the next opening, so growing the array again shows fill
/// values, never the old elements.
#[test]
fn a_crash_inside_a_shrinking_resize_never_lets_old_values_reappear() {
    let (_dir, mut server) = server();
    let path = create(
        &server,
        json!({"dtype": "float64", "shape": [0], "chunk_shape": [4], "codec": "none"}),
    );
    let values: Vec<u8> = (1..=10).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    let r = post_npy(&server, &path, "append", &npy("<f8", &[10], &values));
    assert_eq!(r.status, 200, "{}", r.text);

    server
        .extra_env
        .push(("WENDELIN_TEST_CRASH_IN_ARRAY_RESIZE".into(), "1".into()));
    server.kill_and_restart();
    let crashed = ureq::post(&server.url(&format!("/api/v1/{path}/resize")))
        .set("authorization", &format!("Bearer {}", server.manager_token))
        .send_json(json!({"shape": [5]}));
    assert!(crashed.is_err(), "the server should have died mid-resize");

    server.extra_env.clear();
    server.kill_and_restart();
    let (_, shape, data) = read_all(&server, &path, "");
    assert_eq!(shape, vec![5], "the new shape was written before the crash");
    assert_eq!(data, values[..5 * 8]);
    let r = server.req(
        "POST",
        &format!("/api/v1/{path}/resize"),
        Some(&json!({"shape": [10]})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, _, data) = read_all(&server, &path, "");
    let zeros: Vec<u8> = (0..5).flat_map(|_| 0f64.to_le_bytes()).collect();
    assert_eq!(data, [&values[..5 * 8], &zeros[..]].concat());
}

#[test]
fn kill_9_during_appends_leaves_a_whole_prefix_of_them() {
    let (_dir, mut server) = server();
    let path = create(
        &server,
        json!({"dtype": "int32", "shape": [0, 4], "chunk_shape": [16, 4]}),
    );
    for round in 0..3u64 {
        let base = server.base.clone();
        let token = server.manager_token.clone();
        let url = format!("{base}/api/v1/{path}/append");
        let writer = std::thread::spawn(move || {
            let mut acked = 0u64;
            for _ in 0..100_000 {
                // Every block: 3 rows, each element = its block number.
                let block = acked as i32 + 1_000 * round as i32;
                let data: Vec<u8> = (0..12).flat_map(|_| block.to_le_bytes()).collect();
                let r = ureq::post(&url)
                    .set("authorization", &format!("Bearer {token}"))
                    .set("x-array-dtype", "int32")
                    .set("x-array-shape", "3,4")
                    .send_bytes(&data);
                if r.is_err() {
                    break;
                }
                acked += 1;
            }
            acked
        });
        std::thread::sleep(std::time::Duration::from_millis(300 + 170 * round));
        server.kill_and_restart();
        let acked = writer.join().unwrap();
        assert!(
            acked > 0,
            "round {round}: no append was acknowledged before the kill"
        );
        let (_, shape, data) = read_all(&server, &path, "");
        let values: Vec<i32> = data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(
            shape[0] % 3,
            0,
            "round {round}: a half-appended block is visible"
        );
        // Each block is whole and blocks appear in order; every acknowledged one survived.
        let blocks: Vec<i32> = values
            .chunks_exact(12)
            .map(|b| {
                assert!(
                    b.iter().all(|v| *v == b[0]),
                    "round {round}: torn block {b:?}"
                );
                b[0]
            })
            .collect();
        let this_round: Vec<i32> = blocks
            .iter()
            .copied()
            .filter(|b| *b >= 1_000 * round as i32 && *b < 1_000 * (round as i32 + 1))
            .collect();
        assert!(
            this_round.len() as u64 >= acked,
            "round {round}: {acked} acknowledged, {} kept",
            this_round.len()
        );
        assert!(this_round.len() as u64 <= acked + 1);
        for (i, b) in this_round.iter().enumerate() {
            assert_eq!(*b, 1_000 * round as i32 + i as i32);
        }
    }
}

/// `n` float64 elements all equal to `v`, as `.npy`.
fn uniform_f64(n: usize, v: f64) -> Vec<u8> {
    let data: Vec<u8> = (0..n).flat_map(|_| v.to_le_bytes()).collect();
    npy("<f8", &[n as u64], &data)
}

fn as_f64(data: &[u8]) -> Vec<f64> {
    data.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Every file and directory under `root`.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            found.push(p);
        }
    }
    found
}

/// Any journal directory left under `root` (there must be none once an array is opened).
fn journals(root: &Path) -> Vec<PathBuf> {
    tree(root)
        .into_iter()
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n == ".txn"))
        .collect()
}

#[test]
fn a_crash_inside_a_multi_chunk_write_leaves_the_old_or_the_new_region_whole() {
    let (dir, mut server) = server();
    let path = create(
        &server,
        json!({"dtype": "float64", "shape": [64], "chunk_shape": [8], "codec": "none"}),
    );
    // Region 4:60 spans 8 chunks, two of them partly.
    let r = post_npy(&server, &path, "write?region=4:60", &uniform_f64(56, 1.0));
    assert_eq!(r.status, 204, "{}", r.text);
    let expect = |v: f64| -> Vec<f64> {
        (0..64)
            .map(|i| if (4..60).contains(&i) { v } else { 0.0 })
            .collect()
    };
    assert_eq!(as_f64(&read_all(&server, &path, "").2), expect(1.0));

    // (stage, value the region must hold after the restart)
    for (stage, value, after) in [("staged", 2.0, 1.0), ("applying", 3.0, 3.0)] {
        server.extra_env.clear();
        server
            .extra_env
            .push(("WENDELIN_TEST_CRASH_IN_ARRAY_TXN".into(), stage.into()));
        server.kill_and_restart();
        let crashed = ureq::post(&server.url(&format!("/api/v1/{path}/write?region=4:60")))
            .set("authorization", &format!("Bearer {}", server.manager_token))
            .set("content-type", "application/x-npy")
            .send_bytes(&uniform_f64(56, value));
        assert!(
            crashed.is_err(),
            "{stage}: the server should have died mid-write"
        );
        // The journal is on disk: the crash really happened inside the transaction.
        assert!(
            !journals(dir.path()).is_empty(),
            "{stage}: no journal left by the crash"
        );

        server.extra_env.clear();
        server.kill_and_restart();
        let (_, shape, data) = read_all(&server, &path, "");
        assert_eq!(shape, vec![64]);
        assert_eq!(
            as_f64(&data),
            expect(after),
            "{stage}: mixed or wrong region"
        );
        assert!(
            journals(dir.path()).is_empty(),
            "{stage}: journal not cleaned"
        );
    }
    // Writes keep working after recovery.
    let r = post_npy(&server, &path, "write?region=0:64", &uniform_f64(64, 4.0));
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(as_f64(&read_all(&server, &path, "").2), vec![4.0; 64]);
}

#[test]
fn a_reader_during_big_region_writes_sees_the_old_or_the_new_region_never_a_mix() {
    let (_dir, server) = server();
    let n = 64 * 1024;
    let path = create(
        &server,
        json!({"dtype": "float64", "shape": [n], "chunk_shape": [1024], "codec": "none"}),
    );
    let r = post_npy(&server, &path, "write?region=0:65536", &uniform_f64(n, 0.0));
    assert_eq!(r.status, 204, "{}", r.text);
    let url = server.url(&format!("/api/v1/{path}/write?region=0:65536"));
    let token = server.manager_token.clone();
    let writes = 30;
    let writer = std::thread::spawn(move || {
        for k in 1..=writes {
            let r = ureq::post(&url)
                .set("authorization", &format!("Bearer {token}"))
                .set("content-type", "application/x-npy")
                .send_bytes(&uniform_f64(n, f64::from(k)));
            assert!(r.is_ok(), "write {k} failed");
        }
    });
    let mut seen = std::collections::BTreeSet::new();
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let (_, _, data) = read_all(&server, &path, "");
        let values = as_f64(&data);
        assert_eq!(values.len(), n);
        assert!(
            values.iter().all(|v| *v == values[0]),
            "read {reads} mixes two writes: first {}, others {:?}",
            values[0],
            values.iter().find(|v| **v != values[0])
        );
        seen.insert(values[0] as u64);
        reads += 1;
    }
    writer.join().unwrap();
    let (_, _, data) = read_all(&server, &path, "");
    assert_eq!(as_f64(&data), vec![f64::from(writes); n]);
    eprintln!("{reads} reads saw {} distinct states", seen.len());
}

/// Reference statistics computed plainly here.
fn reference(values: &[f64], op: &str) -> f64 {
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    match op {
        "sum" => sum,
        "mean" => sum / n,
        "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
        "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "std" => (values.iter().map(|x| (x - sum / n).powi(2)).sum::<f64>() / n).sqrt(),
        "count" => values.iter().filter(|x| **x > 0.25).count() as f64,
        _ => unreachable!(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn reductions_over_regions_and_axes_equal_a_reference() {
    let (_dir, server) = server();
    let (rows, cols) = (1000usize, 7usize);
    let path = create(
        &server,
        json!({"dtype": "float64", "shape": [0, cols], "chunk_shape": [64, 4], "codec": "zstd"}),
    );
    let value =
        |i: usize, j: usize| ((i * 31 + j * 17) % 101) as f64 / 50.0 - 1.0 + (i as f64).sin();
    let data: Vec<u8> = (0..rows)
        .flat_map(|i| (0..cols).flat_map(move |j| value(i, j).to_le_bytes()))
        .collect();
    let r = post_npy(
        &server,
        &path,
        "append",
        &npy("<f8", &[rows as u64, cols as u64], &data),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (r0, r1, c0, c1) = (10usize, 900usize, 2usize, 6usize);
    for op in ["sum", "mean", "min", "max", "std", "count"] {
        let extra = if op == "count" { "&where=gt:0.25" } else { "" };
        // Whole array.
        let all: Vec<f64> = (0..rows)
            .flat_map(|i| (0..cols).map(move |j| value(i, j)))
            .collect();
        let got = server
            .req(
                "GET",
                &format!("/api/v1/{path}/reduce?op={op}{extra}"),
                None,
            )
            .json();
        assert!(
            close(got["result"].as_f64().unwrap(), reference(&all, op)),
            "{op}: {got}"
        );
        // Region, along axis 0 and axis 1.
        let region = format!("{r0}:{r1},{c0}:{c1}");
        for axis in [0usize, 1] {
            let got = server
                .req(
                    "GET",
                    &format!("/api/v1/{path}/reduce?op={op}&axis={axis}&region={region}{extra}"),
                    None,
                )
                .json();
            let result = got["result"]
                .as_array()
                .unwrap_or_else(|| panic!("{op} axis {axis}: {got}"));
            let outer = if axis == 0 { c0..c1 } else { r0..r1 };
            assert_eq!(result.len(), outer.len());
            for (k, o) in outer.enumerate() {
                let line: Vec<f64> = if axis == 0 {
                    (r0..r1).map(|i| value(i, o)).collect()
                } else {
                    (c0..c1).map(|j| value(o, j)).collect()
                };
                let want = reference(&line, op);
                assert!(
                    close(result[k].as_f64().unwrap(), want),
                    "{op} axis {axis} [{k}]: {} vs {want}",
                    result[k]
                );
            }
        }
    }
    // Uncompressed float64: whole chunks are summed from their stored bytes, the partial
    // last chunk through the decoder; both agree with the reference.
    let plain = create(
        &server,
        json!({"dtype": "float64", "shape": [0], "chunk_shape": [100], "codec": "none"}),
    );
    let values: Vec<f64> = (0..1050).map(|i| value(i, 3)).collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    post_npy(&server, &plain, "append", &npy("<f8", &[1050], &bytes));
    for op in ["sum", "mean", "std"] {
        let got = server
            .req("GET", &format!("/api/v1/{plain}/reduce?op={op}"), None)
            .json();
        assert!(
            close(got["result"].as_f64().unwrap(), reference(&values, op)),
            "{op}: {got}"
        );
        let got = server
            .req(
                "GET",
                &format!("/api/v1/{plain}/reduce?op={op}&region=100:700"),
                None,
            )
            .json();
        assert!(
            close(
                got["result"].as_f64().unwrap(),
                reference(&values[100..700], op)
            ),
            "{op} region: {got}"
        );
    }
    // Integers: sums are exact.
    let ints = create(
        &server,
        json!({"dtype": "int32", "shape": [0], "chunk_shape": [100]}),
    );
    let data: Vec<u8> = (0..10_000i32)
        .flat_map(|i| (i - 5000).to_le_bytes())
        .collect();
    post_npy(&server, &ints, "append", &npy("<i4", &[10_000], &data));
    let got = server
        .req("GET", &format!("/api/v1/{ints}/reduce?op=sum"), None)
        .json();
    assert_eq!(got["result"], json!(-5000.0));
    let got = server
        .req(
            "GET",
            &format!("/api/v1/{ints}/reduce?op=count&where=ge:0"),
            None,
        )
        .json();
    assert_eq!(got["result"], json!(5000));
    // Complex arrays have no ordering: refused by name.
    let c = create(&server, json!({"dtype": "complex64", "shape": [4]}));
    let r = server.req("GET", &format!("/api/v1/{c}/reduce?op=max"), None);
    assert_eq!(r.status, 400);
    assert!(r.error_message().contains("complex64"), "{}", r.text);
}

#[test]
fn bad_input_is_refused_by_name_and_changes_nothing() {
    let (_dir, server) = server();
    let path = create(
        &server,
        json!({"dtype": "float32", "shape": [0, 2], "chunk_shape": [4, 2]}),
    );
    let good: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    post_npy(&server, &path, "append", &npy("<f4", &[3, 2], &good));
    let before = read_all(&server, &path, "");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("append", npy("<f8", &[1, 2], &[0; 16]), "dtype mismatch"),
        ("append", npy("<f4", &[2, 3], &[0; 24]), "shape mismatch"),
        (
            "append",
            b"not an npy file at all".to_vec(),
            "malformed npy",
        ),
        ("append", npy("<f4", &[4, 2], &[0; 8]), "malformed npy"),
        ("append", npy(">f4", &[1, 2], &[0; 8]), "big-endian"),
        (
            "write?region=2:5,0:2",
            npy("<f4", &[3, 2], &[0; 24]),
            "out of bounds",
        ),
        (
            "write?region=0:2,0:2",
            npy("<f4", &[2, 1], &[0; 8]),
            "shape mismatch",
        ),
        (
            "write?region=0:2:2,0:2",
            npy("<f4", &[1, 2], &[0; 8]),
            "without steps",
        ),
    ];
    for (action, body, message) in cases {
        let r = post_npy(&server, &path, action, &body);
        assert_eq!(r.status, 400, "{action}: {}", r.text);
        assert!(
            r.error_message().contains(message),
            "{action}: expected '{message}' in {}",
            r.text
        );
        assert_eq!(
            read_all(&server, &path, ""),
            before,
            "{action} changed the array"
        );
    }
    for (region, message) in [
        ("0:1,5", "out of bounds"),
        ("x", "not an integer"),
        ("1,1,1", "dimensions"),
    ] {
        let (status, body) = get_bytes(&server, &format!("/api/v1/{path}/read?region={region}"));
        assert_eq!(status, 400);
        assert!(
            String::from_utf8_lossy(&body).contains(message),
            "{region}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let r = server.req("GET", &format!("/api/v1/{path}/reduce?op=median"), None);
    assert_eq!(r.status, 400);
    assert!(r.error_message().contains("median"));
    // Larger than the body limit (16 MiB by default).
    let big = npy("<f4", &[3_000_000, 2], &vec![0; 24_000_000]);
    let r = post_npy(&server, &path, "append", &big);
    assert_eq!(r.status, 413, "{}", &r.text[..r.text.len().min(200)]);
    assert_eq!(read_all(&server, &path, ""), before);
    // A bad dtype is refused when the document is created (nothing is created), not at
    // the array's first use.
    let listed = || server.req("GET", "/api/v1/data_array_module", None).json()["total"].clone();
    let before = listed();
    let r = server.req(
        "POST",
        "/api/v1/data_array_module",
        Some(&json!({"portal_type": "Data Array", "dtype": "float16", "shape": [3]})),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.error_message().contains("unknown dtype 'float16'"),
        "{}",
        r.text
    );
    assert_eq!(listed(), before);
}

#[test]
fn permissions_guard_reads_and_writes_and_dispatch_methods_work() {
    let (_dir, server) = server();
    let path = create(
        &server,
        json!({"dtype": "int16", "shape": [0, 2], "dimension_names": ["time", "channel"]}),
    );
    // Dispatch: JSON append, shape, dtype, slice, resize.
    let r = server.req(
        "POST",
        &format!("/api/v1/{path}/append"),
        Some(&json!({"data": [[1, 2], [3, 4], [5, 6]]})),
    );
    assert_eq!(r.json()["shape"], json!([3, 2]), "{}", r.text);
    let r = server.req(
        "GET",
        &format!("/api/v1/{path}/getArraySlice?region=1:,1"),
        None,
    );
    assert_eq!(r.json(), json!([4, 6]));
    let r = server.req("GET", &format!("/api/v1/{path}/DataArray_getShape"), None);
    assert_eq!(r.json(), json!([3, 2]));
    let r = server.req(
        "POST",
        &format!("/api/v1/{path}/resize"),
        Some(&json!({"shape": [2, 2]})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = server.req(
        "POST",
        &format!("/api/v1/{path}/resize"),
        Some(&json!({"shape": [4, 2]})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Shrinking then growing exposes the fill value, not the old row.
    let r = server.req("GET", &format!("/api/v1/{path}/getArraySlice"), None);
    assert_eq!(r.json(), json!([[1, 2], [3, 4], [0, 0], [0, 0]]));
    let (_, body) = get_bytes(&server, &format!("/api/v1/{path}/zarr/zarr.json"));
    let meta: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(meta["dimension_names"], json!(["time", "channel"]));
    assert_eq!(meta["shape"], json!([4, 2]));

    // Anonymous: the array does not exist for them, and they cannot write.
    for url in ["zarr/zarr.json", "read", "reduce?op=sum", "getShape"] {
        let r = server.anon("GET", &format!("/api/v1/{path}/{url}"), None);
        assert!(r.status == 401 || r.status == 404, "{url}: {}", r.status);
    }
    let r = wendelin_tests::request_raw(
        "POST",
        &server.url(&format!("/api/v1/{path}/append")),
        "application/x-npy",
        &npy("<i2", &[1, 2], &[0; 4]),
        &[],
    );
    assert!(r.status == 401 || r.status == 404, "{}", r.status);
    // A logged-in user without roles on the array: not found for reads, refused for writes.
    let (ok, _, err) = run_cli(&["user", "add", "visitor"], &server.cli_env(), "");
    assert!(ok, "{err}");
    let (ok, out, err) = run_cli(
        &["user", "token", "add", "visitor", "--name", "t"],
        &server.cli_env(),
        "",
    );
    assert!(ok, "{err}");
    let token = out.rsplit(' ').next().unwrap().trim().to_owned();
    let auth = format!("Bearer {token}");
    let r = wendelin_tests::request_with(
        "GET",
        &server.url(&format!("/api/v1/{path}/zarr/zarr.json")),
        None,
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 404);
    let r = wendelin_tests::request_raw(
        "POST",
        &server.url(&format!("/api/v1/{path}/append")),
        "application/x-npy",
        &npy("<i2", &[1, 2], &[0; 4]),
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(
        server
            .req("GET", &format!("/api/v1/{path}/getShape"), None)
            .json(),
        json!([4, 2])
    );
}

/// The venv with zarr-python 3 and numpy: `<repo>/.venv`, created here when missing.
fn python() -> Option<PathBuf> {
    let root = wendelin_tests::repo_root();
    let venv = root.join(".venv");
    let py = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import zarr, numpy, fsspec, aiohttp; assert zarr.__version__.startswith('3')",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&py) {
        return Some(py);
    }
    let _ = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    let _ = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "zarr>=3,<4", "numpy", "fsspec", "aiohttp"])
        .status();
    if ready(&py) {
        return Some(py);
    }
    assert!(
        !in_ci(),
        "zarr-python 3 and numpy are needed in {} (see .ci/run)",
        venv.display()
    );
    println!("skipped: no Python venv with zarr-python 3 and numpy");
    None
}

#[test]
fn zarr_python_reads_the_served_store_and_the_server_reads_zarr_python_arrays() {
    let Some(py) = python() else { return };
    let (dir, server) = server();
    // 1. An array made by the server, read by zarr-python over HTTP with a bearer token.
    let path = create(
        &server,
        json!({"dtype": "float64", "shape": [0, 5], "chunk_shape": [16, 5], "codec": "zstd"}),
    );
    // The same data in a sharded array: chunks of 8 rows inside shards of 32 rows, filled
    // by two appends and a region write across shards (the journalled path).
    let sharded = create(
        &server,
        json!({"dtype": "float64", "shape": [0, 5], "chunk_shape": [8, 5],
               "shard_shape": [32, 5], "codec": "zstd"}),
    );
    let data: Vec<u8> = (0..100 * 5)
        .flat_map(|i| (f64::from(i) * 0.5).to_le_bytes())
        .collect();
    post_npy(&server, &path, "append", &npy("<f8", &[100, 5], &data));
    let r = post_npy(
        &server,
        &sharded,
        "append",
        &npy("<f8", &[60, 5], &data[..60 * 40]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post_npy(
        &server,
        &sharded,
        "append",
        &npy("<f8", &[40, 5], &data[60 * 40..]),
    );
    assert_eq!(r.json()["shape"], json!([100, 5]));
    let r = post_npy(
        &server,
        &sharded,
        "write?region=20:70",
        &npy("<f8", &[50, 5], &data[20 * 40..70 * 40]),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let (_, meta) = get_bytes(&server, &format!("/api/v1/{sharded}/zarr/zarr.json"));
    let meta: Value = serde_json::from_slice(&meta).unwrap();
    assert_eq!(meta["codecs"][0]["name"], "sharding_indexed", "{meta}");
    assert_eq!(
        meta["chunk_grid"]["configuration"]["chunk_shape"],
        json!([32, 5])
    );
    let script = r#"
import sys, zarr, numpy as np
from zarr.storage import FsspecStore
url, token, shards = sys.argv[1], sys.argv[2], sys.argv[3]
store = FsspecStore.from_url(url, storage_options={"headers": {"Authorization": "Bearer " + token}}, read_only=True)
a = zarr.open_array(store=store, mode="r")
expected = (np.arange(500, dtype="float64") * 0.5).reshape(100, 5)
assert a.shape == (100, 5), a.shape
assert a.dtype == np.float64, a.dtype
assert str(a.shards) == shards, (a.shards, shards)
assert np.array_equal(a[:], expected)
assert np.array_equal(a[17:63:3, 2], expected[17:63:3, 2])
print("mean", float(a[:].mean()))
"#;
    for (array, shards) in [(&path, "None"), (&sharded, "(32, 5)")] {
        let out = Command::new(&py)
            .args([
                "-c",
                script,
                &server.url(&format!("/api/v1/{array}/zarr")),
                &server.manager_token,
                shards,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "zarr-python over HTTP failed on {array}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("mean 124.75"));
    }

    // 2. An array written by zarr-python on disk, imported, read by the server.
    let zdir = dir.path().join("from_python.zarr");
    let script = r#"
import sys, zarr, numpy as np
a = zarr.create_array(store=sys.argv[1], shape=(50, 4), chunks=(8, 4), dtype="int32", dimension_names=["t", "c"])
a[:] = np.arange(200, dtype="int32").reshape(50, 4) * 3
"#;
    let out = Command::new(&py)
        .args(["-c", script])
        .arg(&zdir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, stdout, err) = run_cli(
        &[
            "array",
            "import",
            zdir.to_str().unwrap(),
            "--title",
            "from python",
        ],
        &server.cli_env(),
        "",
    );
    assert!(ok, "{err}");
    let imported = stdout.trim().to_owned();
    assert!(imported.starts_with("data_array_module/"), "{stdout}");
    let (descr, shape, data) = read_all(&server, &imported, "");
    assert_eq!((descr.as_str(), shape), ("<i4", vec![50, 4]));
    let expected: Vec<u8> = (0..200i32).flat_map(|i| (i * 3).to_le_bytes()).collect();
    assert_eq!(data, expected);
    let got = server
        .req(
            "GET",
            &format!("/api/v1/{imported}/reduce?op=sum&axis=1&region=0:2"),
            None,
        )
        .json();
    assert_eq!(got["result"], json!([18.0, 66.0]));
    // Appending through the server is visible to zarr-python reading the directory.
    let rows: Vec<u8> = (0..4i32).flat_map(|i| (-i).to_le_bytes()).collect();
    let r = post_npy(&server, &imported, "append", &npy("<i4", &[1, 4], &rows));
    assert_eq!(r.json()["shape"], json!([51, 4]));
    let out = Command::new(&py)
        .args(["-c", "import sys, zarr; a = zarr.open_array(sys.argv[1], mode='r'); print(a.shape, [int(x) for x in a[50]])"])
        .arg(&zdir)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "(51, 4) [0, -1, -2, -3]"
    );
}

/// The files of the decimation summaries of the 1-D series of every array under `root`.
fn summary_files(root: &Path) -> Vec<PathBuf> {
    tree(root)
        .into_iter()
        .filter(|p| {
            p.is_file()
                && p.parent().and_then(Path::parent).and_then(Path::file_name)
                    == Some(std::ffi::OsStr::new(".wendelin-summaries"))
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .collect()
}

/// Decimates the whole 1-D array at `path` into `bins` bins over HTTP, checks the answer
/// against a brute-force minimum and maximum over its elements (read back whole), and
/// returns the bins' maxima and minima.
fn decimation_is_brute_force(server: &TestServer, path: &str, bins: usize) -> (Vec<f64>, Vec<f64>) {
    let r = server.req("GET", &format!("/api/v1/{path}/decimate?bins={bins}"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    let d = r.json();
    let values = as_f64(&read_all(server, path, "").2);
    let x: Vec<usize> = d["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(x.len(), bins);
    assert_eq!(d["stop"].as_u64().unwrap() as usize, values.len());
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let (mut lo, mut hi) = (Vec::new(), Vec::new());
    for (b, &s) in x.iter().enumerate() {
        let e = x.get(b + 1).copied().unwrap_or(values.len());
        let part = values[s..e].iter().copied().filter(|v| !v.is_nan());
        let (l, h) = part.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        assert_eq!(num(&d["min"][b]), l, "bin {b} ({s}..{e}) minimum");
        assert_eq!(num(&d["max"][b]), h, "bin {b} ({s}..{e}) maximum");
        lo.push(l);
        hi.push(h);
    }
    (hi, lo)
}

/// Appends keep the decimation summaries (no decimation asked); region writes change
/// the decimated answer; crashes in the middle of either never leave a stale summary.
#[test]
fn decimation_summaries_follow_appends_writes_and_crashes() {
    let (dir, mut server) = server();
    let data = dir.path().join("data");
    let path = create(
        &server,
        json!({"dtype": "float64", "shape": [0], "chunk_shape": [4096], "codec": "none"}),
    );
    let piece = |from: usize, n: usize| -> Vec<u8> {
        let v: Vec<u8> = (from..from + n)
            .flat_map(|i| {
                let x = if i % 3_001 == 7 {
                    f64::NAN
                } else {
                    ((i * 7_919) % 10_007) as f64 - 5_000.0
                };
                x.to_le_bytes()
            })
            .collect();
        npy("<f8", &[n as u64], &v)
    };
    // 100,000 elements in 3 appends ending inside chunks: 25 chunks of 4,096.
    let mut n = 0;
    for len in [30_001, 1, 69_998] {
        let r = post_npy(&server, &path, "append", &piece(n, len));
        assert_eq!(r.status, 200, "{}", r.text);
        n += len;
    }
    assert_eq!(
        summary_files(&data).len(),
        25,
        "every chunk summarized by the appends, before any decimation"
    );
    decimation_is_brute_force(&server, &path, 10);

    // A one-element write and a multi-chunk one change the decimated answer.
    let r = post_npy(
        &server,
        &path,
        "write?region=54321:54322",
        &uniform_f64(1, 1e9),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let r = post_npy(
        &server,
        &path,
        "write?region=10000:20000",
        &uniform_f64(10_000, -1e9),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let (hi, lo) = decimation_is_brute_force(&server, &path, 10);
    assert!(hi.contains(&1e9), "{hi:?}");
    assert!(lo.contains(&-1e9), "{lo:?}");

    // Killed after the first of an append's 6 summaries was stored (its metadata was
    // written before: the rows are there).
    server
        .extra_env
        .push(("WENDELIN_TEST_CRASH_IN_ARRAY_SUMMARIES".into(), "1".into()));
    server.kill_and_restart();
    let crashed = ureq::post(&server.url(&format!("/api/v1/{path}/append")))
        .set("authorization", &format!("Bearer {}", server.manager_token))
        .set("content-type", "application/x-npy")
        .send_bytes(&piece(n, 20_000));
    assert!(
        crashed.is_err(),
        "the server should have died mid-summaries"
    );
    server.extra_env.clear();
    server.kill_and_restart();
    decimation_is_brute_force(&server, &path, 12);

    // Killed inside a multi-chunk write, after the first chunk of its committed journal
    // was renamed into place: the next opening finishes it, the decimation shows it.
    server
        .extra_env
        .push(("WENDELIN_TEST_CRASH_IN_ARRAY_TXN".into(), "applying".into()));
    server.kill_and_restart();
    let crashed = ureq::post(&server.url(&format!("/api/v1/{path}/write?region=30000:40000")))
        .set("authorization", &format!("Bearer {}", server.manager_token))
        .set("content-type", "application/x-npy")
        .send_bytes(&uniform_f64(10_000, 5e8));
    assert!(crashed.is_err(), "the server should have died mid-write");
    server.extra_env.clear();
    server.kill_and_restart();
    let (hi, _) = decimation_is_brute_force(&server, &path, 12);
    assert!(hi.contains(&5e8), "{hi:?}");
    // And the next append summarizes again.
    let r = post_npy(&server, &path, "append", &piece(0, 5_000));
    assert_eq!(r.status, 200, "{}", r.text);
    decimation_is_brute_force(&server, &path, 12);
}
