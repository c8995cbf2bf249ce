//! The Python client (`clients/python`, issue 20) against the real server: its pytest
//! suite (`clients/python/tests`) starts the `wendelin` binary this build made
//! (`WENDELIN_BIN`) on a temporary data directory and drives it through the client.
//!
//! Needs the repository's `.venv` with the client installed (`pip install -e
//! ./clients/python` with pytest, numpy, zarr, fsspec, aiohttp, dask and xarray; `.ci/run`
//! does it). Without them the test prints `skipped: …`, and fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wendelin_tests::{in_ci, repo_root, wait_at_most, wendelin_bin};

/// The suite is killed (and the test fails) past this; it takes about a minute.
const DEADLINE: Duration = Duration::from_secs(900);

#[test]
fn python_client_suite_passes_against_the_server() {
    let root = repo_root();
    let python = root.join(".venv/bin/python");
    // This checkout's client first, whichever one the venv has installed.
    let src = root.join("clients/python/src");
    let ready = Command::new(&python)
        .env("PYTHONPATH", &src)
        .args([
            "-c",
            "import wendelin, pytest, msgpack, numpy, zarr, fsspec, aiohttp, dask.array, xarray",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ready {
        let why = format!(
            "the Python client or its test dependencies are not installed in {} \
             (pip install -e ./clients/python pytest dask xarray; .ci/run does it)",
            python.display()
        );
        assert!(!in_ci(), "{why}, and CI=true");
        println!("skipped: {why}");
        return;
    }
    let bin = wendelin_bin();
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("pytest.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "clients/python/tests",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .arg("-rs")
        .current_dir(&root)
        .env("WENDELIN_BIN", &bin)
        .env("PYTHONPATH", &src)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = wait_at_most(&mut child, DEADLINE);
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!(
        "pytest clients/python/tests ({:.0} s):\n{output}",
        started.elapsed().as_secs_f64()
    );
    let status = status.unwrap_or_else(|| panic!("pytest still running after {DEADLINE:?}"));
    assert!(
        status.success(),
        "the Python client's suite failed ({status})"
    );
}
