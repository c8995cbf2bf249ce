"""A real ``wendelin serve`` for the client's tests: the binary from ``WENDELIN_BIN``
(else ``target/debug/wendelin`` of the repository), a temporary data directory, a free
port, and a manager token made with the CLI (as ``tests/src/lib.rs``'s TestServer)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

import wendelin

REPO = Path(__file__).resolve().parents[3]


def binary() -> Path:
    env = os.environ.get("WENDELIN_BIN")
    path = Path(env) if env else REPO / "target" / "debug" / "wendelin"
    if not path.is_file():
        pytest.exit(f"no wendelin binary at {path}: build it or set WENDELIN_BIN", returncode=2)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server and how to reach it."""

    base: str
    data_dir: Path
    token: str
    process: subprocess.Popen[bytes]

    def cli(self, *args: str, stdin: str = "") -> str:
        env = {**os.environ, "WENDELIN_DATA_DIR": str(self.data_dir), "WENDELIN_LOG": "warn"}
        env.pop("WENDELIN_DATABASE_URL", None)
        out = subprocess.run(
            [str(binary()), *args],
            input=stdin.encode(),
            env=env,
            capture_output=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr.decode()
        return out.stdout.decode()

    def add_user(self, login: str, password: str, roles: list[str]) -> None:
        args = ["user", "add", login, "--password-stdin"]
        for r in roles:
            args += ["--role", r]
        self.cli(*args, stdin=password + "\n")

    def token_for(self, login: str) -> str:
        out = self.cli("user", "token", "add", login, "--name", "pytest")
        return out.strip().rsplit(" ", 1)[-1]

    def raw(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        """A request straight to the JSON API (no client)."""
        headers = {"Authorization": f"Bearer {token or self.token}", **kw.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    # Not pytest's tmp_path: it keeps the last runs, and the big stream is 2 GiB.
    top = Path(tempfile.mkdtemp(prefix="wendelin-client-"))
    data = top / "var"
    data.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "WENDELIN_DATA_DIR": str(data),
        "WENDELIN_WORKERS": "2",
        "WENDELIN_LOG": "warn",
        # The suite's big stream is appended at test speed; durability is tested elsewhere.
        "WENDELIN_DATA_STREAM_FSYNC": "false",
    }
    env.pop("WENDELIN_DATABASE_URL", None)
    log = open(data.parent / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(binary()), "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(base + "/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            text = (top / "server.log").read_text(errors="replace")[-4000:]
            shutil.rmtree(top, ignore_errors=True)
            raise RuntimeError(f"wendelin serve did not start:\n{text}")
        time.sleep(0.05)
    s = Server(base=base, data_dir=data, token="", process=proc)
    s.token = s.token_for("manager")
    assert s.token.startswith("wdl_"), s.token
    try:
        yield s
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
def portal(server: Server) -> wendelin.Portal:
    return wendelin.connect(server.base, token=server.token)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``CI=true`` a skipped test fails: every test must run there (a missing
    package is an install step .ci/run lacks), as the Rust tests do."""
    outcome: Any = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {report.longrepr}"
