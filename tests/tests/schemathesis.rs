//! The OpenAPI document is a contract (issue 14): Schemathesis, from the repository's
//! `.venv` (`.ci/run` installs it), runs every check against a live server and the
//! `/api/v1/openapi.json` it serves — no 5xx, every status declared, responses matching
//! their schemas, schema-valid requests accepted and invalid ones refused, 405 with
//! `Allow` for undeclared methods. Bounded by examples per operation (a few minutes on
//! two cores); a longer run is `bench/RESULTS.md`'s. Without Schemathesis the test
//! prints `skipped: schemathesis not installed`, and fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wendelin_tests::{in_ci, wait_at_most, TestServer};

/// Examples per operation and phase: enough to cover every operation's statuses, small
/// enough for the test command.
const MAX_EXAMPLES: &str = "8";
/// The run is killed (and the test fails) past this.
const DEADLINE: Duration = Duration::from_secs(420);

fn schemathesis() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/schemathesis");
    let works = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if works {
        return Some(bin);
    }
    assert!(
        !in_ci(),
        "schemathesis not installed at {} and CI=true: .ci/run installs it",
        bin.display()
    );
    println!("skipped: schemathesis not installed (at {})", bin.display());
    None
}

/// Whether a JSON Schema (or any part of it) holds a relation property or is checked
/// as a whole by its portal type (`x-wendelin-relation`, `x-wendelin-checked`).
fn has_relation(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            ["x-wendelin-relation", "x-wendelin-checked"]
                .iter()
                .any(|k| m.get(*k) == Some(&Value::Bool(true)))
                || m.values().any(has_relation)
        }
        Value::Array(items) => items.iter().any(has_relation),
        _ => false,
    }
}

/// Statuses that are not contract failures for a schema-valid request, beyond
/// Schemathesis's defaults, per operation:
/// - 422 where a request body holds relations (a relation must name an existing
///   document, state that no schema can say) or its type checks the properties together
///   (e.g. a Data Array's shape against its chunks);
/// - 405 and 422 for `POST …/{id}/{method}` where `{id}` may contain documents:
///   `{method}` may then name a sub-document (created during the run); one that contains
///   nothing does not answer POST, and into one that does the free-form arguments are a
///   document to create, checked against its type.
fn tolerated(spec: &Value) -> BTreeMap<String, BTreeSet<&'static str>> {
    let schemas = &spec["components"]["schemas"];
    let paths = &spec["paths"];
    let mut out: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for (path, item) in paths.as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let label = format!("{} {path}", method.to_uppercase());
            let body = &op["requestBody"];
            let mut refs = Vec::new();
            collect_refs(body, &mut refs);
            let named = refs.iter().any(|r| {
                let name = r.rsplit('/').next().unwrap_or_default();
                has_relation(&schemas[name])
            });
            if has_relation(body) || named {
                out.entry(label.clone()).or_default().insert("422");
            }
            if method == "post" {
                if let Some(container) = path.strip_suffix("/{method}") {
                    if paths[container].get("post").is_some() {
                        out.entry(label).or_default().extend(["405", "422"]);
                    }
                }
            }
        }
    }
    out
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// A few documents, so that operations on `{id}` = 1 reach real documents.
fn seed(server: &TestServer) {
    for (folder, body) in [
        ("data_stream_module", json!({"title": "seed stream"})),
        (
            "person_module",
            json!({"title": "seed person", "first_name": "Ada"}),
        ),
        (
            "data_array_module",
            json!({"title": "seed array", "dtype": "float64", "shape": [0, 3]}),
        ),
        ("web_site_module", json!({"title": "seed site"})),
        ("data_ingestion_module", json!({"title": "seed ingestion"})),
        (
            "data_operation_module",
            json!({"title": "seed op", "script_id": "x"}),
        ),
    ] {
        let r = server.req("POST", &format!("/api/v1/{folder}"), Some(&body));
        assert_eq!(r.status, 201, "seeding {folder}: {}", r.text);
    }
    let r = server.req(
        "POST",
        "/api/v1/data_ingestion_module/1",
        Some(&json!({"portal_type": "Data Ingestion Line", "id": "line_1"})),
    );
    assert_eq!(r.status, 201, "seeding a line: {}", r.text);
}

#[test]
fn openapi_contract_holds_under_schemathesis() {
    let Some(st) = schemathesis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), None);
    seed(&server);
    let spec = server.req("GET", "/api/v1/openapi.json", None).json();

    let mut config = String::from("# written by tests/tests/schemathesis.rs\n");
    for (op, extra) in tolerated(&spec) {
        let mut statuses = vec!["2xx", "3xx", "401", "403", "404", "409", "429"];
        statuses.extend(extra);
        let statuses: Vec<String> = statuses.iter().map(|s| format!("\"{s}\"")).collect();
        config.push_str(&format!(
            "\n[[operations]]\ninclude-name = \"{op}\"\n\
             checks.positive_data_acceptance.expected-statuses = [{}]\n",
            statuses.join(", ")
        ));
    }
    println!("{config}");
    let config_path = dir.path().join("schemathesis.toml");
    std::fs::write(&config_path, &config).unwrap();

    let mut status = run_schemathesis(&st, &server, dir.path(), &config_path, 1);
    if status.is_none() {
        // Every generated case passed and schemathesis stopped on an error of its own
        // (e.g. CPython 3.11's "AST constructor recursion depth mismatch" inside
        // hypothesis, seen once in CI): not a finding about the API. Once more; a second
        // failure of any kind fails the test.
        println!("schemathesis failed inside itself with every case passed: running it once more");
        status = run_schemathesis(&st, &server, dir.path(), &config_path, 2);
    }
    assert!(
        status == Some(true),
        "schemathesis found contract failures; the server's log is {}",
        server.stderr_path.display()
    );
    // The server survived it.
    assert_eq!(server.anon("GET", "/health", None).status, 200);
}

/// Runs schemathesis once (`attempt` names its output files): `Some(true)` when it passed,
/// `Some(false)` when it failed on the API (or timed out), `None` when every generated
/// case passed and it failed only on a runtime error of its own.
fn run_schemathesis(
    st: &Path,
    server: &TestServer,
    dir: &Path,
    config_path: &Path,
    attempt: u32,
) -> Option<bool> {
    let report = dir.join(format!("report-{attempt}"));
    let out_path = dir.join(format!("schemathesis-{attempt}.out"));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(st)
        .arg("--config-file")
        .arg(config_path)
        .arg("run")
        .arg(server.url("/api/v1/openapi.json"))
        .args([
            "-H",
            &format!("Authorization: Bearer {}", server.manager_token),
        ])
        .args(["--checks", "all", "--max-examples", MAX_EXAMPLES])
        .args(["--seed", "14", "--workers", "2", "--no-color"])
        .args(["--request-timeout", "30"])
        .arg("--report")
        .arg("ndjson")
        .arg("--report-dir")
        .arg(&report)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = wait_at_most(&mut child, DEADLINE);
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    // The summary, and the failures above it (the head is the configuration).
    let lines: Vec<&str> = output.lines().collect();
    let tail = lines[lines.len().saturating_sub(250)..].join("\n");
    println!(
        "schemathesis, attempt {attempt} ({:.0} s):\n{tail}",
        started.elapsed().as_secs_f64()
    );
    let status = status.unwrap_or_else(|| panic!("schemathesis still running after {DEADLINE:?}"));
    if status.success() {
        return Some(true);
    }
    // "N generated, N passed" with nothing failed, and only runtime errors.
    let all_passed = lines.iter().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        matches!(words.as_slice(), [n, "generated,", m, "passed"] if n == m)
    });
    let own_error = output.contains("Runtime Error")
        && !output.contains("Network Error")
        && !output.contains("Failures:");
    if all_passed && own_error {
        None
    } else {
        Some(false)
    }
}
