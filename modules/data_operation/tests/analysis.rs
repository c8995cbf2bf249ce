//! Data Analysis end to end, as the tutorial: a WAV file ingested through the
//! fluentd-compatible endpoint in pieces becomes channel arrays, a spectrum and an STFT
//! with no manual step, incrementally and exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use wendelin_tests::{python, run_cli, run_python, TestServer};

const FEEDER_PASSWORD: &str = "feeder-password-1";

/// A server with the policy `audio` (product `wav`), the Author `feeder` and the tutorial
/// transformation.
/// The STFT's chunks are 1 MiB (1,016 rows of 129 bins), the array default, so that the
/// long tests' runs span several chunks.
fn setup(dir: &Path, env: &[(&str, &str)]) -> TestServer {
    setup_on(dir, None, env, "1")
}

/// [`setup`] on a database URL, with `stft_chunk_mib` MiB per chunk of the STFT.
fn setup_on(
    dir: &Path,
    database: Option<String>,
    env: &[(&str, &str)],
    stft_chunk_mib: &str,
) -> TestServer {
    let server = TestServer::start_with_env(&dir.join("var"), database, env);
    let cli = |args: &[&str], stdin: &str| {
        let (ok, out, err) = run_cli(args, &server.cli_env(), stdin);
        assert!(ok, "{args:?}: {out} {err}");
        out
    };
    cli(
        &[
            "ingestion",
            "add",
            "audio",
            "--product",
            "wav",
            "--accept",
            "feeder",
        ],
        "",
    );
    cli(
        &[
            "user",
            "add",
            "feeder",
            "--role",
            "Author",
            "--password-stdin",
        ],
        FEEDER_PASSWORD,
    );
    let out = cli(
        &[
            "analysis",
            "template-wav",
            "--product",
            "wav",
            "--window",
            "256",
            "--hop",
            "128",
            "--stft-chunk-mib",
            stft_chunk_mib,
        ],
        "",
    );
    assert!(
        out.contains("data_transformation_module/wav-spectrum"),
        "{out}"
    );
    server
}

/// Python helpers shared by the scripts: the WAV, posting pieces, reading arrays.
const PRELUDE: &str = r#"
import os, time, io, json, msgpack, requests, numpy as np
U = os.environ["URL"]
H = {"Authorization": "Bearer " + os.environ["TOKEN"]}
auth = ("feeder", os.environ["PW"])
url = U + "/erp5/portal_ingestion_policies/audio/ingest"
rng = np.random.default_rng(int(os.environ.get("SEED", "7")))
def wav_header(channels, rate, frames):
    data = frames * channels * 2
    return (b"RIFF" + (36 + data).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + (1).to_bytes(2, "little") + channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
            + (rate * channels * 2).to_bytes(4, "little") + (channels * 2).to_bytes(2, "little")
            + (16).to_bytes(2, "little") + b"data" + data.to_bytes(4, "little"))
def post(piece):
    body = msgpack.packb([int(time.time()), {"data": piece}], use_bin_type=True)
    r = requests.post(url, params={"reference": "sensor1.wav"}, data=body, auth=auth,
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, (r.status_code, r.text)
def analysis():
    r = requests.get(U + "/api/v1/data_analysis_module", headers=H)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    return items[0]["id"] if items else None
def array(aid, line):
    r = requests.get(U + "/api/v1/data_array_module/%s-%s/read" % (aid, line), headers=H)
    if r.status_code != 200:
        return None
    return np.load(io.BytesIO(r.content))
def chunks(aid, line):
    r = requests.get(U + "/api/v1/data_array_module/%s-%s/zarr/zarr.json" % (aid, line), headers=H)
    assert r.status_code == 200, r.text
    return r.json()["chunk_grid"]["configuration"]["chunk_shape"]
def wait(cond, what, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    aid = analysis()
    pi = requests.get(U + "/api/v1/progress_indicator_module/%s-progress" % aid, headers=H).text
    shapes = {l: (None if (a := array(aid, l)) is None else a.shape)
              for l in ("channel_0", "channel_1", "spectrum_0", "stft_0")}
    raise AssertionError("timed out waiting for %s: %s %s" % (what, shapes, pi))
"#;

/// Runs the script; when it fails, shows the activity queue and the server's log first.
fn python_or_dump(server: &TestServer, py: &Path, script: &str, env: &[(&str, &str)]) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_python(py, script, env))) {
        Ok(out) => out,
        Err(e) => {
            let (_, list, _) = run_cli(&["activities", "list"], &server.cli_env(), "");
            eprintln!("activities:\n{list}\nserver log:\n{}", server.stderr());
            std::panic::resume_unwind(e)
        }
    }
}

#[test]
fn wav_in_pieces_becomes_channels_spectrum_and_stft_incrementally() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // No periodic step: the analysis must appear from the appends alone.
    let server = setup_on(
        dir.path(),
        None,
        &[("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "0")],
        "2",
    );
    tutorial(&server, &py);
}

#[test]
fn the_tutorial_on_postgresql() {
    let Some(py) = python() else { return };
    let Some(pg) = wendelin_tests::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = setup_on(
        dir.path(),
        Some(pg.new_database()),
        &[("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "0")],
        "2",
    );
    tutorial(&server, &py);
}

/// The tutorial on `server`: pieces in, numpy's results out, more frames appended.
fn tutorial(server: &TestServer, py: &Path) {
    let script = format!(
        "{PRELUDE}{}",
        r#"
frames = 3000
samples = rng.integers(-32768, 32767, size=(frames, 2), dtype=np.int16)
wav = wav_header(2, 8000, 4000) + samples.tobytes()
# The header split across two appends, then frames cut mid-frame.
for piece in (wav[:20], wav[20:1003], wav[1003:7001], wav[7001:]):
    post(piece)
aid = wait(analysis, "the Data Analysis")
def full():
    c0, c1 = array(aid, "channel_0"), array(aid, "channel_1")
    return c0 is not None and c1 is not None and len(c0) == frames and len(c1) == frames
wait(full, "the channel arrays")
got = samples.tobytes()
ch = np.frombuffer(got, dtype=np.int16).reshape(-1, 2)
c0, c1 = array(aid, "channel_0"), array(aid, "channel_1")
assert c0.dtype == np.int16 and (c0 == ch[:, 0]).all() and (c1 == ch[:, 1]).all()
def spectrum_done():
    s = array(aid, "spectrum_0")
    return s is not None and len(s) == frames // 2 + 1
wait(spectrum_done, "the spectrum")
want = np.abs(np.fft.rfft(ch[:, 0].astype(np.float64)))
s = array(aid, "spectrum_0")
assert np.max(np.abs(s - want) / np.maximum(np.abs(want), 1e-300)) <= 1e-9, "spectrum"
def stft_ref(x):
    w = np.hanning(256)
    n = (len(x) - 256) // 128 + 1
    return np.array([np.abs(np.fft.rfft(x[i*128:i*128+256] * w)) for i in range(n)])
wait(lambda: (a := array(aid, "stft_0")) is not None and len(a) == (frames - 256) // 128 + 1, "the STFT")
st = array(aid, "stft_0")
ref = stft_ref(ch[:, 0].astype(np.float64))
assert st.shape == ref.shape, (st.shape, ref.shape)
assert np.allclose(st, ref, rtol=1e-9, atol=1e-6), "stft"
# More frames later: the outputs grow by exactly the new rows, earlier rows untouched.
more = rng.integers(-32768, 32767, size=(1000, 2), dtype=np.int16)
post(more.tobytes()[:2001]); post(more.tobytes()[2001:])
total = frames + 1000
wait(lambda: len(array(aid, "channel_0")) == total and len(array(aid, "channel_1")) == total, "the appended frames")
allch = np.concatenate([ch, more])
assert (array(aid, "channel_0") == allch[:, 0]).all() and (array(aid, "channel_1") == allch[:, 1]).all()
n_st = (total - 256) // 128 + 1
wait(lambda: len(array(aid, "stft_0")) == n_st, "the STFT rows of the new frames")
st2 = array(aid, "stft_0")
assert (st2[:len(st)] == st).all(), "earlier STFT rows changed"
assert np.allclose(st2, stft_ref(allch[:, 0].astype(np.float64)), rtol=1e-9, atol=1e-6)
wait(lambda: len(array(aid, "spectrum_0")) == total // 2 + 1, "the new spectrum")
want = np.abs(np.fft.rfft(allch[:, 0].astype(np.float64)))
s = array(aid, "spectrum_0")
assert np.max(np.abs(s - want) / np.maximum(np.abs(want), 1e-300)) <= 1e-9
# The STFT's chunks as the template asked (--stft-chunk-mib 2: 2,032 rows of 129 bins),
# the channels' the arrays' default (1 MiB).
assert chunks(aid, "stft_0") == [2032, 129], chunks(aid, "stft_0")
assert chunks(aid, "channel_0") == [524288], chunks(aid, "channel_0")
print(aid)
"#
    );
    let out = python_or_dump(
        server,
        py,
        &script,
        &[
            ("URL", &server.base),
            ("TOKEN", &server.manager_token),
            ("PW", FEEDER_PASSWORD),
        ],
    );
    let aid = out.trim().to_owned();
    eprintln!("analysis {aid}");
    assert!(aid.ends_with("-sensor1-wav-spectrum"), "{out}");
    // The Progress Indicator's offset is the stream's size.
    let pi = server
        .req(
            "GET",
            &format!("/api/v1/progress_indicator_module/{aid}-progress"),
            None,
        )
        .json();
    let size = server.stream_bytes("data_stream_module/sensor1.wav").len() as u64;
    assert_eq!(pi["int_offset_index"].as_u64(), Some(size), "{pi}");
    // `analysis list` shows it caught up.
    let (ok, list, err) = run_cli(&["analysis", "list"], &server.cli_env(), "");
    assert!(ok, "{err}");
    let row: serde_json::Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    assert_eq!(row["lag_bytes"], 0, "{row}");
}

/// Posts a long WAV (`FRAMES` frames) in pieces, or waits until the analysis has caught
/// up with it and prints the SHA-256 of each output's `.npy`.
const LONG: &str = r#"
import hashlib, sys
frames = int(os.environ["FRAMES"])
samples = rng.integers(-32768, 32767, size=(frames, 2), dtype=np.int16)
wav = wav_header(2, 8000, frames) + samples.tobytes()
if sys.argv[-1] == "post" or os.environ.get("MODE") == "post":
    step = 50001
    # FIRST: bytes posted and analysed before the rest is posted (a multiple of step).
    first = int(os.environ.get("FIRST", "0"))
    for i in range(0, len(wav), step):
        if first and i == first:
            aid = wait(analysis, "the Data Analysis", 120)
            sent = sum(len(msgpack.packb([int(time.time()), {"data": wav[j:j + step]}], use_bin_type=True))
                       for j in range(0, i, step))
            offset = lambda: requests.get(U + "/api/v1/progress_indicator_module/%s-progress" % aid,
                                          headers=H).json().get("int_offset_index")
            wait(lambda: offset() == sent, "the first part to be analysed", 120)
        post(wav[i:i + step])
    print("posted")
else:
    total = sum(len(msgpack.packb([int(time.time()), {"data": wav[i:i + 50001]}], use_bin_type=True))
                for i in range(0, len(wav), 50001))
    aid = wait(analysis, "the Data Analysis", 120)
    def done():
        pi = requests.get(U + "/api/v1/progress_indicator_module/%s-progress" % aid, headers=H).json()
        if pi.get("int_offset_index") != total:
            return False
        c0, st, sp = array(aid, "channel_0"), array(aid, "stft_0"), array(aid, "spectrum_0")
        return (c0 is not None and len(c0) == frames and st is not None
                and len(st) == (frames - 256) // 128 + 1 and sp is not None and len(sp) == frames // 2 + 1)
    wait(done, "the analysis to catch up", 240)
    out = {}
    for line in ("channel_0", "channel_1", "spectrum_0", "stft_0"):
        r = requests.get(U + "/api/v1/data_array_module/%s-%s/read" % (aid, line), headers=H)
        out[line] = hashlib.sha256(r.content).hexdigest()
    ch = samples
    assert (array(aid, "channel_0") == ch[:, 0]).all() and (array(aid, "channel_1") == ch[:, 1]).all()
    print(json.dumps(out, sort_keys=True))
"#;

fn long_env<'a>(server: &'a TestServer, mode: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("URL", &server.base),
        ("TOKEN", &server.manager_token),
        ("PW", FEEDER_PASSWORD),
        ("FRAMES", "120000"),
        ("SEED", "11"),
        ("MODE", mode),
    ]
}

#[test]
fn kill_9_at_20_points_of_an_analysis_changes_no_output_byte() {
    let Some(py) = python() else { return };
    let script = format!("{PRELUDE}{LONG}");
    // Small steps (many runs, many places to die in), the periodic step as a safety net.
    let env = [
        ("WENDELIN_DATA_OPERATION_MAX_INPUT_BYTES", "16384"),
        ("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "1"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let reference = {
        let server = setup(&dir.path().join("a"), &env);
        python_or_dump(&server, &py, &script, &long_env(&server, "post"));
        let started = std::time::Instant::now();
        let out = python_or_dump(&server, &py, &script, &long_env(&server, "check"));
        eprintln!(
            "uninterrupted analysis caught up in {:?}",
            started.elapsed()
        );
        out
    };
    let mut server = setup(&dir.path().join("b"), &env);
    python_or_dump(&server, &py, &script, &long_env(&server, "post"));
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for _ in 0..20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_millis(50 + (seed >> 33) % 400));
        server.kill_and_restart();
    }
    let killed = std::time::Instant::now();
    let crashed = python_or_dump(&server, &py, &script, &long_env(&server, "check"));
    eprintln!("after the last kill, caught up in {:?}", killed.elapsed());
    assert_eq!(
        crashed, reference,
        "outputs after 20 kills differ from an uninterrupted run"
    );
}

/// A run that reads the whole input at once (its STFT of more than two chunks of rows
/// ends on a chunk boundary, the rest in the next run) writes the same bytes as many
/// small runs.
#[test]
fn one_large_step_writes_the_bytes_of_many_small_ones() {
    let Some(py) = python() else { return };
    let script = format!("{PRELUDE}{LONG}");
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    // Large: one debounced run after all the appends (no periodic step), 8 MiB per run.
    // Pieces: the same with 1.5 MiB per run, so the STFT's batches are one chunk of
    // rows (1,016) each and a run appends them in two pieces, each while the next is
    // computed. Small: 64 KiB per run. Inside: as Pieces, but the first 100,002 bytes
    // are analysed before the rest is posted (within the debounce), so the next run
    // starts 194 rows into a chunk with more than two chunks of rows to make: its
    // first piece ends on the chunk's boundary, the next ones are whole chunks.
    let settings: [&[(&str, &str)]; 4] = [
        &[
            ("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "0"),
            ("WENDELIN_DATA_OPERATION_DEBOUNCE_MILLIS", "10000"),
        ],
        &[
            ("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "0"),
            ("WENDELIN_DATA_OPERATION_DEBOUNCE_MILLIS", "10000"),
            ("WENDELIN_DATA_OPERATION_MAX_INPUT_BYTES", "1572864"),
        ],
        &[
            ("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "1"),
            ("WENDELIN_DATA_OPERATION_MAX_INPUT_BYTES", "65536"),
        ],
        &[
            ("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "0"),
            ("WENDELIN_DATA_OPERATION_DEBOUNCE_MILLIS", "3000"),
            ("WENDELIN_DATA_OPERATION_MAX_INPUT_BYTES", "1572864"),
        ],
    ];
    for (i, env) in settings.iter().enumerate() {
        let server = setup(&dir.path().join(i.to_string()), env);
        let with_frames = |mode| {
            let mut e = long_env(&server, mode);
            // 2,343 STFT rows of 129 bins: more than two chunks (1,016 rows each).
            e.retain(|(k, _)| *k != "FRAMES");
            e.push(("FRAMES", "300000"));
            if i == 3 {
                e.push(("FIRST", "100002"));
            }
            e
        };
        python_or_dump(&server, &py, &script, &with_frames("post"));
        outputs.push(python_or_dump(&server, &py, &script, &with_frames("check")));
    }
    assert_eq!(
        outputs[0], outputs[1],
        "large steps and steps appended in pieces wrote different bytes"
    );
    assert_eq!(
        outputs[0], outputs[2],
        "large and small steps wrote different bytes"
    );
    assert_eq!(
        outputs[0], outputs[3],
        "a run starting inside a chunk wrote different bytes"
    );
}

#[test]
fn the_page_shows_progress_and_reprocess_and_stop_work() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path(), &[]);
    let script = format!("{PRELUDE}{LONG}");
    let env = |mode: &'static str| {
        let mut e = long_env(&server, mode);
        e.retain(|(k, _)| *k != "FRAMES");
        e.push(("FRAMES", "5000"));
        e
    };
    python_or_dump(&server, &py, &script, &env("post"));
    let first = python_or_dump(&server, &py, &script, &env("check"));
    let list = server
        .req("GET", "/api/v1/data_analysis_module", None)
        .json();
    let path = format!(
        "data_analysis_module/{}",
        list["items"][0]["id"].as_str().unwrap()
    );
    // The page: progress caught up, inputs and outputs listed.
    let page = server.req("GET", &format!("/api/v1/{path}/DataAnalysis_view"), None);
    assert_eq!(page.status, 200, "{}", page.text);
    let html = &page.text;
    assert!(html.contains("<span id=\"lag-bytes\">0</span>"), "{html}");
    assert!(html.contains("data_stream_module/sensor1.wav"), "{html}");
    assert!(html.contains("-stft_0"), "{html}");
    // Reprocess from scratch (the workflow's transition): the same outputs again.
    let r = server.req(
        "POST",
        &format!("/api/v1/{path}/transitions/plan_refresh"),
        Some(&serde_json::json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let states = server
            .req("GET", &format!("/api/v1/{path}/workflows"), None)
            .json();
        let refresh = states["workflows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["workflow"] == "data_analysis_refresh_workflow")
            .map(|w| w["state"].clone());
        if refresh == Some(serde_json::json!("current")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reprocessing did not finish: {states}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let again = python_or_dump(&server, &py, &script, &env("check"));
    assert_eq!(
        again, first,
        "reprocessing from scratch changed the outputs"
    );
    // Stop: appends no longer reach the outputs.
    let r = server.req(
        "POST",
        &format!("/api/v1/{path}/transitions/stop"),
        Some(&serde_json::json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (ok, out, err) = run_cli(&["analysis", "list"], &server.cli_env(), "");
    assert!(ok, "{err}");
    assert!(out.contains("\"stopped\""), "{out}");
    // Restarted, it runs again at once (nothing new: its offset stays where it was).
    let r = server.req(
        "POST",
        &format!("/api/v1/{path}/transitions/restart"),
        Some(&serde_json::json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let again = python_or_dump(&server, &py, &script, &env("check"));
    assert_eq!(again, first);
}

#[test]
fn records_become_columns_with_timestamps_and_window_aggregates() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("var"),
        None,
        &[("WENDELIN_DATA_OPERATION_MAX_INPUT_BYTES", "4096")],
    );
    let (ok, out, err) = run_cli(
        &["ingestion", "add", "plant", "--product", "temp"],
        &server.cli_env(),
        "",
    );
    assert!(ok, "{out} {err}");
    // The transformation through the JSON API, as a user would write it.
    let post = |path: &str, body: serde_json::Value| post_json(&server, path, body);
    post(
        "data_operation_module",
        serde_json::json!({"portal_type": "Data Operation", "id": "columns",
                           "script_id": "records_to_columns"}),
    );
    post(
        "data_transformation_module",
        serde_json::json!({"portal_type": "Data Transformation", "id": "temp-columns",
                           "resource": "temp"}),
    );
    let t = "data_transformation_module/temp-columns";
    let line = |id: &str, extra: serde_json::Value| {
        let mut body = serde_json::json!({"portal_type": "Data Transformation Line", "id": id,
            "quantity": 1.0, "use": "big_data/analysis/transient",
            "aggregated_portal_type_list": ["Data Array"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        post(t, body);
    };
    line(
        "in",
        serde_json::json!({"quantity": -1.0, "use": "big_data/ingestion/stream",
        "resource": "temp", "aggregated_portal_type_list": []}),
    );
    line(
        "op",
        serde_json::json!({"quantity": 0.0, "aggregated_portal_type_list": [],
        "data_operation": "data_operation_module/columns"}),
    );
    line("timestamp", serde_json::json!({}));
    line("value", serde_json::json!({}));
    line(
        "value_mean",
        serde_json::json!({"parameters": {"derive": "aggregate", "of": "value",
        "window": 4, "function": "mean"}}),
    );
    // 64 bytes per chunk: 8 float64 rows.
    line(
        "value_max",
        serde_json::json!({"parameters": {"derive": "aggregate", "of": "value",
        "window": 4, "function": "max", "chunk_bytes": 64}}),
    );
    // A chunk size no array can have: this output fails with a message, the others go on.
    line(
        "value_min",
        serde_json::json!({"parameters": {"derive": "aggregate", "of": "value",
        "window": 4, "function": "min", "chunk_bytes": 0}}),
    );
    // Spectra stored as float32 (half the bytes); an element type no STFT has fails
    // with a message.
    line(
        "value_stft32",
        serde_json::json!({"parameters": {"derive": "stft", "of": "value",
        "window": 8, "hop": 4, "window_fn": "hann", "dtype": "float32"}}),
    );
    line(
        "value_stft_int8",
        serde_json::json!({"parameters": {"derive": "stft", "of": "value",
        "window": 8, "hop": 4, "dtype": "int8"}}),
    );
    line(
        "value_per_10s",
        serde_json::json!({"parameters": {"derive": "aggregate", "of": "value",
            "time": "timestamp", "seconds": 10, "function": "sum"}}),
    );
    line(
        "progress",
        serde_json::json!({"aggregated_portal_type_list": ["Progress Indicator"]}),
    );
    for path in ["data_operation_module/columns", t] {
        let r = server.req(
            "POST",
            &format!("/api/v1/{path}/transitions/validate"),
            Some(&serde_json::json!({})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let script = format!(
        "{PRELUDE}{}",
        r#"
url = U + "/erp5/portal_ingestion_policies/plant/ingest"
from fluent.sender import EventTime
n = 1000
for start in range(0, n, 150):
    body = b"".join(msgpack.packb([EventTime(1700000000 + i, 500), {"value": i * 1.5, "name": "x"}],
                                  use_bin_type=True) for i in range(start, min(n, start + 150)))
    r = requests.post(url, params={"reference": "boiler.temp"}, data=body, headers=H)
    assert r.status_code == 204, r.text
aid = wait(analysis, "the Data Analysis")
wait(lambda: (a := array(aid, "value_max")) is not None and len(a) == n // 4, "the aggregates", 120)
v, ts = array(aid, "value"), array(aid, "timestamp")
assert v.dtype == np.float64 and (v == np.arange(n) * 1.5).all()
assert ts.dtype == np.int64 and (ts == (1700000000 + np.arange(n)) * 10**9 + 500).all()
assert np.allclose(array(aid, "value_mean"), (np.arange(n) * 1.5).reshape(-1, 4).mean(axis=1), rtol=1e-12)
assert (array(aid, "value_max") == (np.arange(n) * 1.5).reshape(-1, 4).max(axis=1)).all()
# Per 10 s of timestamps: every window but the last, still open.
wait(lambda: (a := array(aid, "value_per_10s")) is not None and len(a) == n // 10 - 1, "the time windows")
w = array(aid, "value_per_10s")
assert (w[:, 0] == 1700000000 + 10 * np.arange(n // 10 - 1)).all(), w[:3]
assert np.allclose(w[:, 1], (np.arange(n) * 1.5).reshape(-1, 10).sum(axis=1)[:-1], rtol=1e-12)
assert chunks(aid, "value_max") == [8], chunks(aid, "value_max")
assert chunks(aid, "value_mean") == [131072], chunks(aid, "value_mean")
a = array(aid, "value_min")
assert a is None or len(a) == 0, a
wait(lambda: (a := array(aid, "value_stft32")) is not None and len(a) == (n - 8) // 4 + 1, "the float32 STFT")
st = array(aid, "value_stft32")
x = np.arange(n) * 1.5
idx = np.arange(len(st))[:, None] * 4 + np.arange(8)[None, :]
ref = np.abs(np.fft.rfft(x[idx] * np.hanning(8), axis=1))
assert st.dtype == np.float32 and st.shape == (249, 5), (st.dtype, st.shape)
assert np.allclose(st, ref.astype(np.float32), rtol=1e-6, atol=1e-4), np.max(np.abs(st - ref))
a = array(aid, "value_stft_int8")
assert a is None or len(a) == 0, a
print(aid)
"#
    );
    let out = python_or_dump(
        &server,
        &py,
        &script,
        &[
            ("URL", &server.base),
            ("TOKEN", &server.manager_token),
            ("PW", ""),
        ],
    );
    let page = analysis_page(&server, &out);
    assert!(
        page.contains("value_min: ") && page.contains("chunk_bytes 0"),
        "{page}"
    );
    // Every failing output says why beside it, not only the first one.
    let item = |output: &str| {
        page.split("<li>")
            .find(|li| li.contains(&format!("{output}: /")))
            .unwrap_or_else(|| panic!("no output {output}: {page}"))
    };
    for (output, why) in [
        ("value_min", "chunk_bytes 0"),
        ("value_stft_int8", "stft dtype"),
    ] {
        let li = item(output);
        assert!(
            li.contains("not computed: ") && li.contains(why),
            "{output}: {li}"
        );
    }
    let fine = item("value_stft32");
    assert!(!fine.contains("not computed"), "{fine}");
}

/// The text of the page of the analysis `aid` (its id in the Data Analysis module).
fn analysis_page(server: &TestServer, aid: &str) -> String {
    server
        .req(
            "GET",
            &format!(
                "/api/v1/data_analysis_module/{}/DataAnalysis_view",
                aid.trim()
            ),
            None,
        )
        .text
}

/// POSTs `body` to `/api/v1/<path>` as the manager; asserts it was taken (200 or 201) and
/// returns the answer.
fn post_json(server: &TestServer, path: &str, body: serde_json::Value) -> serde_json::Value {
    let r = server.req("POST", &format!("/api/v1/{path}"), Some(&body));
    assert!(
        r.status == 201 || r.status == 200,
        "{path}: {} {}",
        r.status,
        r.text
    );
    r.json()
}

/// The Data Operation `count`: a user script appending to the line `counts` how many new
/// bytes each run found in the stream of the line `input`, and saying how far it read.
fn count_operation(server: &TestServer, input: &str) {
    let body = format!(
        r#"
let size = portal.invoke(params.{input}, "getSize");
if size > params.offset {{
    portal.invoke(params.counts, "DataArray_append", #{{ data: [size - params.offset] }});
}}
#{{ offset: size, more: false }}
"#
    );
    for (container, doc) in [
        (
            "portal_skins",
            serde_json::json!({"portal_type": "Script", "id": "countNewBytes", "body": body}),
        ),
        (
            "data_operation_module",
            serde_json::json!({"portal_type": "Data Operation", "id": "count", "script_id": "countNewBytes"}),
        ),
    ] {
        post_json(server, container, doc);
    }
}

#[test]
fn a_user_script_runs_as_the_operation_with_the_lines_as_arguments() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("var"), None);
    let (ok, out, err) = run_cli(
        &["ingestion", "add", "meter", "--product", "power"],
        &server.cli_env(),
        "",
    );
    assert!(ok, "{out} {err}");
    let post = |path: &str, body: serde_json::Value| post_json(&server, path, body);
    count_operation(&server, "meter");
    post(
        "data_transformation_module",
        serde_json::json!({"portal_type": "Data Transformation", "id": "power-count", "resource": "power"}),
    );
    let t = "data_transformation_module/power-count";
    for body in [
        serde_json::json!({"id": "meter", "quantity": -1.0, "use": "big_data/ingestion/stream", "resource": "power"}),
        serde_json::json!({"id": "op", "quantity": 0.0, "data_operation": "data_operation_module/count"}),
        serde_json::json!({"id": "counts", "quantity": 1.0, "aggregated_portal_type_list": ["Data Array"]}),
        serde_json::json!({"id": "progress", "quantity": 1.0, "aggregated_portal_type_list": ["Progress Indicator"]}),
    ] {
        let mut b = body;
        b["portal_type"] = serde_json::json!("Data Transformation Line");
        post(t, b);
    }
    for path in ["data_operation_module/count", t] {
        post(
            &format!("{path}/transitions/validate"),
            serde_json::json!({}),
        );
    }
    let script = format!(
        "{PRELUDE}{}",
        r#"
url = U + "/erp5/portal_ingestion_policies/meter/ingest"
total = 0
for k in range(3):
    body = msgpack.packb([1700000000 + k, {"w": k}], use_bin_type=True)
    total += len(body)
    r = requests.post(url, params={"reference": "m1.power"}, data=body, headers=H)
    assert r.status_code == 204, r.text
    aid = wait(analysis, "the Data Analysis")
    wait(lambda: (a := array(aid, "counts")) is not None and a.sum() == total, "the counts")
# The script appends before it returns; the offset is written after it, so
# it may trail the counts by one run: wait for it rather than read it once.
def offset():
    r = requests.get(U + "/api/v1/progress_indicator_module/%s-progress" % aid, headers=H)
    return r.json()["int_offset_index"] == total
wait(offset, "the progress offset")
print("ok")
"#
    );
    let out = python_or_dump(
        &server,
        &py,
        &script,
        &[
            ("URL", &server.base),
            ("TOKEN", &server.manager_token),
            ("PW", ""),
        ],
    );
    assert_eq!(out.trim(), "ok");
    // `analysis run` in the foreground: nothing left to do, the offset unchanged.
    let (ok, out, err) = run_cli(&["analysis", "run"], &server.cli_env(), "");
    assert!(ok, "{err}");
    assert!(
        out.contains("(1 steps)") && out.contains("\"lag_bytes\":0"),
        "{out}"
    );
}

#[test]
fn an_rfft_above_the_memory_budget_is_refused_without_stopping_the_other_outputs() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = setup(
        dir.path(),
        &[("WENDELIN_DATA_OPERATION_MEMORY_BUDGET", "10000")],
    );
    let script = format!(
        "{PRELUDE}{}",
        r#"
frames = 3000
samples = rng.integers(-32768, 32767, size=(frames, 2), dtype=np.int16)
post(wav_header(2, 8000, frames) + samples.tobytes())
aid = wait(analysis, "the Data Analysis")
wait(lambda: (a := array(aid, "stft_0")) is not None and len(a) == (frames - 256) // 128 + 1, "the STFT")
assert (array(aid, "channel_1") == samples[:, 1]).all()
s = array(aid, "spectrum_0")
assert s is None or len(s) == 0, s
print(aid)
"#
    );
    let env = [
        ("URL", server.base.as_str()),
        ("TOKEN", server.manager_token.as_str()),
        ("PW", FEEDER_PASSWORD),
    ];
    let aid = python_or_dump(&server, &py, &script, &env);
    let page = analysis_page(&server, &aid);
    assert!(
        page.contains("spectrum_0: ") && page.contains("memory_budget"),
        "{page}"
    );
}

/// Polls `cond` every 200 ms for up to 60 s.
fn eventually(what: &str, server: &TestServer, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, list, _) = run_cli(&["activities", "list"], &server.cli_env(), "");
    panic!(
        "timed out waiting for {what}\nactivities:\n{list}\nserver log:\n{}",
        server.stderr()
    );
}

#[test]
fn the_periodic_step_stops_finished_batches_and_runs_array_only_analyses() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("var"),
        None,
        &[
            ("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "1"),
            ("WENDELIN_DATA_OPERATION_BATCH_IDLE_SECONDS", "2"),
        ],
    );
    let post = |path: &str, body: serde_json::Value| post_json(&server, path, body);
    let state = |path: &str, workflow: &str| -> String {
        let r = server.req("GET", &format!("/api/v1/{path}"), None);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        r.json()["workflow_states"][workflow]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    count_operation(&server, "input");
    server.req(
        "POST",
        "/api/v1/data_operation_module/count/transitions/validate",
        Some(&serde_json::json!({})),
    );
    // Two products: `upload` read as a batch, `meter` as a stream.
    for (product, use_) in [
        ("upload", "big_data/ingestion/batch"),
        ("meter", "big_data/ingestion/stream"),
    ] {
        let (ok, out, err) = run_cli(
            &["ingestion", "add", product, "--product", product],
            &server.cli_env(),
            "",
        );
        assert!(ok, "{out} {err}");
        let t = format!("data_transformation_module/{product}-count");
        post(
            "data_transformation_module",
            serde_json::json!({"portal_type": "Data Transformation", "id": format!("{product}-count"), "resource": product}),
        );
        for body in [
            serde_json::json!({"id": "input", "quantity": -1.0, "use": use_, "resource": product}),
            serde_json::json!({"id": "op", "quantity": 0.0, "data_operation": "data_operation_module/count"}),
            serde_json::json!({"id": "counts", "quantity": 1.0, "aggregated_portal_type_list": ["Data Array"]}),
            serde_json::json!({"id": "progress", "quantity": 1.0, "aggregated_portal_type_list": ["Progress Indicator"]}),
        ] {
            let mut b = body;
            b["portal_type"] = serde_json::json!("Data Transformation Line");
            post(&t, b);
        }
        post(&format!("{t}/transitions/validate"), serde_json::json!({}));
    }
    let mut appended = [0u64; 2];
    for round in 0..2 {
        for (i, product) in ["upload", "meter"].into_iter().enumerate() {
            let r = post(
                &format!("ingest/{product}/{}.{product}", &product[..1]),
                serde_json::json!([{"round": round}]),
            );
            appended[i] = r["size"].as_u64().unwrap();
        }
    }
    let analysis_of = |product: &str| -> Option<String> {
        let r = server.req("GET", "/api/v1/data_analysis_module", None);
        r.json()["items"]
            .as_array()?
            .iter()
            .filter_map(|i| i["id"].as_str())
            .find(|id| id.ends_with(&format!("-{product}-count")))
            .map(|id| format!("data_analysis_module/{id}"))
    };
    let offset = |analysis: &str| -> u64 {
        let id = analysis.rsplit('/').next().unwrap();
        server
            .req(
                "GET",
                &format!("/api/v1/progress_indicator_module/{id}-progress"),
                None,
            )
            .json()["int_offset_index"]
            .as_u64()
            .unwrap_or(0)
    };
    eventually("both analyses to read everything", &server, || {
        analysis_of("upload").is_some_and(|a| offset(&a) == appended[0])
            && analysis_of("meter").is_some_and(|a| offset(&a) == appended[1])
    });
    let batch = analysis_of("upload").unwrap();
    let stream = analysis_of("meter").unwrap();
    let ingestion_of = |analysis: &str| -> String {
        let r = server.req("GET", &format!("/api/v1/{analysis}"), None);
        r.json()["causality"].as_str().unwrap().to_owned()
    };
    let (batch_ingestion, stream_ingestion) = (ingestion_of(&batch), ingestion_of(&stream));
    // Idle for 2 s: the batch ingestion is finished, then its analysis (all read).
    eventually(
        "the batch ingestion and its analysis stopped",
        &server,
        || {
            state(&batch_ingestion, "data_ingestion_workflow") == "stopped"
                && state(&batch, "data_analysis_workflow") == "stopped"
        },
    );
    let r = server.req("GET", &format!("/api/v1/{batch_ingestion}"), None);
    assert!(
        r.json()["stop_date"].is_string(),
        "the stop is dated: {}",
        r.text
    );
    assert_eq!(
        offset(&batch),
        appended[0],
        "stopped after reading everything"
    );
    // A stream ingestion never finishes by idleness, nor its analysis.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        state(&stream_ingestion, "data_ingestion_workflow"),
        "started"
    );
    assert_eq!(state(&stream, "data_analysis_workflow"), "started");

    // An analysis whose only input is an array (here: the stream analysis' counts),
    // made by hand: the periodic step finds it due when the array grows.
    let counts = format!(
        "data_array_module/{}-counts",
        stream.rsplit('/').next().unwrap()
    );
    post(
        "data_operation_module",
        serde_json::json!({"portal_type": "Data Operation", "id": "sum2", "script_id": "aggregate",
                           "parameters": {"of": "in", "window": 2, "function": "sum", "out": "out"}}),
    );
    post(
        "data_array_module",
        serde_json::json!({"portal_type": "Data Array", "id": "sums"}),
    );
    post(
        "progress_indicator_module",
        serde_json::json!({"portal_type": "Progress Indicator", "id": "sums-progress"}),
    );
    post(
        "data_analysis_module",
        serde_json::json!({"portal_type": "Data Analysis", "id": "sums", "title": "pairwise sums"}),
    );
    for body in [
        serde_json::json!({"id": "in", "quantity": -1.0, "aggregate": [counts]}),
        serde_json::json!({"id": "op", "quantity": 0.0, "data_operation": "data_operation_module/sum2"}),
        serde_json::json!({"id": "out", "quantity": 1.0, "aggregate": ["data_array_module/sums"]}),
        serde_json::json!({"id": "progress", "quantity": 1.0, "aggregate": ["progress_indicator_module/sums-progress"]}),
    ] {
        let mut b = body;
        b["portal_type"] = serde_json::json!("Data Analysis Line");
        post("data_analysis_module/sums", b);
    }
    // An array's values (none while it holds nothing).
    let values = |path: &str| -> Vec<f64> {
        let r = server.req(
            "GET",
            &format!("/api/v1/{path}/DataArray_getArraySlice"),
            None,
        );
        if r.status != 200 {
            return Vec::new();
        }
        serde_json::from_value(r.json()).unwrap_or_default()
    };
    let sums = || values("data_array_module/sums");
    // The counts hold a row per run of the stream analysis: pairwise sums of them.
    let counted = values(&counts);
    assert!(!counted.is_empty(), "the stream analysis counted");
    eventually("the array-only analysis to run", &server, || {
        // `sums` exists once the analysis ran (a single count has no pair yet).
        server
            .req(
                "GET",
                "/api/v1/data_array_module/sums/DataArray_getShape",
                None,
            )
            .status
            == 200
            && sums().len() == counted.len() / 2
    });
    let s = sums();
    for (i, v) in s.iter().enumerate() {
        assert_eq!(
            *v,
            counted[2 * i] + counted[2 * i + 1],
            "{s:?} of {counted:?}"
        );
    }
    // The stream grows: the stream analysis appends a count per run; once it counted
    // twice more (a run may take several appends at once: append until then), the
    // array-only analysis follows by itself.
    let before = sums().len();
    let mut round = 2;
    eventually("the stream analysis to count twice more", &server, || {
        if values(&counts).len() >= counted.len() + 2 {
            return true;
        }
        post(
            "ingest/meter/m.meter",
            serde_json::json!([{"round": round}]),
        );
        round += 1;
        std::thread::sleep(std::time::Duration::from_millis(700));
        false
    });
    eventually(
        "the array-only analysis to follow its input",
        &server,
        || {
            let c = values(&counts);
            let s = sums();
            s.len() > before && s.len() == c.len() / 2
        },
    );
}

/// A run that computes for a while (one run reads the whole long WAV): once it has
/// claimed its Progress Indicator, a user's edits commit while its offset is still the
/// old one — the run does not hold the database's write transaction while it computes —
/// and then the run completes with numpy's outputs.
const EDIT_DURING_RUN: &str = r#"
import threading
frames = int(os.environ["FRAMES"])
samples = rng.integers(-32768, 32767, size=(frames, 2), dtype=np.int16)
wav = wav_header(2, 8000, frames) + samples.tobytes()
# A first piece, analysed by the run the create step queues: the outputs get their
# types (a run of its own), the Progress Indicator its first offset.
first = 44 + 1000 * 4
post(wav[:first])
r = requests.post(U + "/api/v1/data_analysis_module/ERP5Site_createDataAnalysisList", headers=H, json={})
assert r.status_code == 200, r.text
aid = wait(analysis, "the Data Analysis")
A = U + "/api/v1/data_analysis_module/" + aid
PI = U + "/api/v1/progress_indicator_module/%s-progress" % aid
def pi():
    r = requests.get(PI, headers=H)
    assert r.status_code == 200, r.text
    return r.json()
wait(lambda: (a := array(aid, "stft_0")) is not None and len(a) == (1000 - 256) // 128 + 1
     and len(array(aid, "channel_0")) == 1000 and len(array(aid, "spectrum_0")) == 501, "the first piece")
before = wait(lambda: (p := pi()).get("int_offset_index", 0) > 0 and p, "the first offset")
# The rest: nothing runs it (the appends' runs are an hour away) but the POST below.
step = 1 << 20
for i in range(first, len(wav), step):
    post(wav[i:i + step])
result = {}
def run():
    result["r"] = requests.post(A + "/DataAnalysis_executeDataOperation", headers=H, json={})
    result["t"] = time.time() - t0
t0 = time.time()
runner = threading.Thread(target=run)
runner.start()
claimed = wait(lambda: (p := pi())["last_run"] != before["last_run"] and p, "the run's claim", 120)
# The claim is visible while the run's results are not: it committed on its own.
old = before["int_offset_index"]
assert claimed["int_offset_index"] == old, ("the claim only became visible with the run's results", claimed)
# A user edits the analysis and creates a document meanwhile: both commit now.
serial = requests.get(A, headers=H).json()["serial"]
r = requests.patch(A, headers=H, json={"serial": serial, "title": "edited during a run"})
assert r.status_code == 200, (r.status_code, r.text)
r = requests.post(U + "/api/v1/data_operation_module", headers=H,
                  json={"portal_type": "Data Operation", "id": "made-during-a-run", "script_id": "noop"})
assert r.status_code == 201, (r.status_code, r.text)
# ... while the run has still not recorded anything: the edits did not wait for it.
assert pi()["int_offset_index"] == old, "the edits waited for the run to commit"
assert requests.get(A, headers=H).json()["title"] == "edited during a run"
runner.join()
assert result["r"].status_code == 200, (result["r"].status_code, result["r"].text)
assert result["r"].json()["ran"] is True, result["r"].text
# The run (and the ones it queued for what it left) completes with numpy's outputs.
def caught_up():
    c0, c1, st = array(aid, "channel_0"), array(aid, "channel_1"), array(aid, "stft_0")
    return (c0 is not None and c1 is not None and st is not None and len(c0) == frames
            and len(c1) == frames and len(st) == (frames - 256) // 128 + 1)
wait(caught_up, "the outputs", 240)
assert (array(aid, "channel_0") == samples[:, 0]).all() and (array(aid, "channel_1") == samples[:, 1]).all()
st = array(aid, "stft_0")
x = samples[:, 0].astype(np.float64)
w = np.hanning(256)
idx = np.arange(len(st))[:, None] * 128 + np.arange(256)[None, :]
ref = np.abs(np.fft.rfft(x[idx] * w, axis=1))
assert np.allclose(st, ref, rtol=1e-9, atol=1e-6), "stft"
print("ok", len(wav), "run took %.1f s" % result["t"])
"#;

#[test]
fn a_user_edit_commits_while_an_analysis_run_computes() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // No run but the one the script asks for: no periodic step, appends' runs an hour
    // later; one run reads the whole stream (it takes seconds in a debug build).
    let server = setup(
        dir.path(),
        &[
            ("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "0"),
            ("WENDELIN_DATA_OPERATION_DEBOUNCE_MILLIS", "3600000"),
            ("WENDELIN_DATA_OPERATION_MAX_INPUT_BYTES", "67108864"),
            ("WENDELIN_DATA_STREAM_MAX_READ_BYTES", "67108864"),
        ],
    );
    let out = python_or_dump(
        &server,
        &py,
        &format!("{PRELUDE}{EDIT_DURING_RUN}"),
        &[
            ("URL", &server.base),
            ("TOKEN", &server.manager_token),
            ("PW", FEEDER_PASSWORD),
            ("FRAMES", "2000000"),
        ],
    );
    eprintln!("{out}");
    assert!(out.starts_with("ok"), "{out}");
}

/// `wendelin analysis run` in a second process while the server's activities run the
/// same analysis in small steps: the runs take turns (the run lock), every step of the
/// command succeeds, and the outputs are numpy's, no row lost or doubled.
#[test]
fn the_command_and_the_server_running_one_analysis_together_corrupt_nothing() {
    let Some(py) = python() else { return };
    let script = format!("{PRELUDE}{LONG}");
    let dir = tempfile::tempdir().unwrap();
    // Nothing runs before both runners start: no periodic step, the appends' runs an
    // hour away; then many small steps.
    let env = [
        ("WENDELIN_DATA_OPERATION_MAX_INPUT_BYTES", "32768"),
        ("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "0"),
        ("WENDELIN_DATA_OPERATION_DEBOUNCE_MILLIS", "3600000"),
    ];
    let server = setup(dir.path(), &env);
    let with_frames = |mode| {
        let mut e = long_env(&server, mode);
        e.retain(|(k, _)| *k != "FRAMES");
        e.push(("FRAMES", "300000"));
        e
    };
    python_or_dump(&server, &py, &script, &with_frames("post"));
    // The command in a second process, and the server's step (it creates the analysis
    // and queues its run, which runs at once and queues the next while input remains).
    let cli_env: Vec<(String, String)> = server
        .cli_env()
        .into_iter()
        .chain(env)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let command = std::thread::spawn(move || {
        let env: Vec<(&str, &str)> = cli_env.iter().map(|(k, v)| (&**k, &**v)).collect();
        run_cli(&["analysis", "run"], &env, "")
    });
    post_json(
        &server,
        "data_analysis_module/ERP5Site_createDataAnalysisList",
        serde_json::json!({}),
    );
    let (ok, out, err) = command.join().unwrap();
    assert!(ok, "analysis run failed beside the server: {out} {err}");
    let steps: u64 = out
        .rsplit(" (")
        .next()
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    eprintln!("analysis run beside the server: {out}");
    assert!(
        steps >= 2,
        "the command did no work beside the server: {out}"
    );
    python_or_dump(&server, &py, &script, &with_frames("check"));
    let check = format!(
        "{PRELUDE}{}",
        r#"
frames = int(os.environ["FRAMES"])
samples = rng.integers(-32768, 32767, size=(frames, 2), dtype=np.int16)
aid = analysis()
st = array(aid, "stft_0")
x = samples[:, 0].astype(np.float64)
idx = np.arange((frames - 256) // 128 + 1)[:, None] * 128 + np.arange(256)[None, :]
assert st.shape == idx.shape[:1] + (129,), st.shape
assert np.allclose(st, np.abs(np.fft.rfft(x[idx] * np.hanning(256), axis=1)), rtol=1e-9, atol=1e-6)
sp = array(aid, "spectrum_0")
want = np.abs(np.fft.rfft(x))
assert np.max(np.abs(sp - want) / np.maximum(np.abs(want), 1e-300)) <= 1e-9
print("ok")
"#
    );
    let out = python_or_dump(&server, &py, &check, &with_frames("check"));
    assert_eq!(out.trim(), "ok");

    // Deleting the analysis removes its run lock file (the delete hook).
    let runs = server.data_dir.join("data_operation").join("runs");
    let locks = || std::fs::read_dir(&runs).map_or(0, |d| d.count());
    assert_eq!(locks(), 1, "one run lock file per analysis");
    let aid = python_or_dump(
        &server,
        &py,
        &format!("{PRELUDE}print(analysis())"),
        &with_frames("check"),
    );
    let r = server.req(
        "DELETE",
        &format!("/api/v1/data_analysis_module/{}", aid.trim()),
        None,
    );
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    eventually("the run lock removed", &server, || locks() == 0);
}

/// A backlog worked through in several runs computes the whole-signal spectrum once, in
/// the run that catches up, not in every run: a run that leaves input for the next one
/// answers with the spectrum's rows unchanged, and the caught-up spectrum equals numpy's.
const SPECTRUM_ONCE: &str = r#"
frames = int(os.environ["FRAMES"])
samples = rng.integers(-32768, 32767, size=(frames, 2), dtype=np.int16)
wav = wav_header(2, 8000, frames) + samples.tobytes()
first = 44 + 1000 * 4
post(wav[:first])
r = requests.post(U + "/api/v1/data_analysis_module/ERP5Site_createDataAnalysisList", headers=H, json={})
assert r.status_code == 200, r.text
aid = wait(analysis, "the Data Analysis")
wait(lambda: (a := array(aid, "spectrum_0")) is not None and len(a) == 501, "the first spectrum")
for i in range(first, len(wav), 1 << 20):
    post(wav[i:i + (1 << 20)])
# Nothing runs the backlog (the appends' runs are an hour away) but this POST, then
# the runs it queues.
r = requests.post(U + "/api/v1/data_analysis_module/%s/DataAnalysis_executeDataOperation" % aid,
                  headers=H, json={})
assert r.status_code == 200, r.text
out = r.json()
assert out["more"] is True, out
assert out["rows"]["channel_0"] > 1000, out
assert out["rows"]["spectrum_0"] == 501, ("a run with input left recomputed the spectrum", out)
def caught_up():
    sp = array(aid, "spectrum_0")
    return [sp] if sp is not None and len(sp) == frames // 2 + 1 else None
sp = wait(caught_up, "the spectrum of the whole signal", 240)[0]
want = np.abs(np.fft.rfft(samples[:, 0].astype(np.float64)))
assert np.max(np.abs(sp - want) / np.maximum(np.abs(want), 1e-300)) <= 1e-9
assert (array(aid, "channel_0") == samples[:, 0]).all()
print("ok")
"#;

#[test]
fn a_backlog_computes_the_whole_signal_spectrum_once_when_it_catches_up() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = setup(
        dir.path(),
        &[
            ("WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS", "0"),
            ("WENDELIN_DATA_OPERATION_DEBOUNCE_MILLIS", "3600000"),
            ("WENDELIN_DATA_OPERATION_MAX_INPUT_BYTES", "262144"),
        ],
    );
    let out = python_or_dump(
        &server,
        &py,
        &format!("{PRELUDE}{SPECTRUM_ONCE}"),
        &[
            ("URL", &server.base),
            ("TOKEN", &server.manager_token),
            ("PW", FEEDER_PASSWORD),
            ("FRAMES", "400000"),
        ],
    );
    assert_eq!(out.trim(), "ok");
}
