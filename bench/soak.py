#!/usr/bin/env python3
"""Soak: a bounded mixed load against a release server, with errors, latencies and RSS.

Starts the release `wendelin` binary on a fresh data directory under /tmp (deleted at
the end) on a free loopback port, provisions an ingestion policy, two Data Arrays with
data, a few hundred Data Streams and a second user (erin, Author; the first is manager),
then runs for --seconds (default 600) a bounded mixed load from a few worker threads,
each sleeping between its requests (a soak, not a stress test):
  - ingest:  msgpack and NDJSON posts to /api/v1/ingest/{policy}/{tag}, raw msgpack to
             the compatibility path /erp5/portal_ingestion_policies/{policy}/ingest with
             HTTP Basic, stream reads back (Range, readMsgpackChunkList, getSize);
  - catalog: structured, full-text and count-less catalog queries and module listings,
             as erin and as manager;
  - ui:      a browser session (form login with the login token, session cookie): home,
             listboxes (sorted, paged, filtered, full-text search), document views, edit
             forms and their posts with the CSRF token, module tabs; a form logout and a
             new login every 150 requests;
  - arrays:  .npy region reads, reductions (checked against a local numpy copy), small
             appends and region writes, getShape/getArraySlice, the Zarr store's keys;
  - docs:    document creates, reads, edits with the serial, deletes;
  - bad:     requests that must get their 4xx (syntax errors, missing documents, bad
             credentials, stale serials, unknown properties, malformed bodies, …);
  - logins:  JSON logins, /api/v1/me, a write without the CSRF token (403) and with it,
             logouts, the dead cookie refused (401), HTTP Basic, a wrong password (401).
Every request has a timeout and goes to 127.0.0.1 only. The server's VmRSS (with
RssAnon, RssFile, threads and open files) is sampled from /proc every few seconds.

Report: requests, errors (an unexpected status or an exception), p50/p99/max latency per
kind; RSS once a minute, and the minute after the warm-up (60 s) against the last minute:
median, mean, min and max of the samples (every 2 s), and the ratio of the medians; the
server log's WARN/ERROR lines. Exits non-zero on any error, if the server died, or if
the median VmRSS grew by more than --max-growth (10%) between those two minutes.

Usage: .venv/bin/python bench/soak.py [--seconds 600] [--seed 14] [--pace 1.0]
Needs `cargo build --release -p wendelin-server` and the repository's .venv (requests,
msgpack, numpy), which .ci/run creates.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import requests
from harness import BIN, free_port

ERIN_PASSWORD = "erin-soak-password-1"
POLICY = "soak"
TAGS = [f"sensor{i}.temp" for i in range(4)]
WORDS = ["boiler", "pump", "valve", "turbine", "sensor"]
WORDS += ["hall", "furnace", "chiller", "compressor", "mixer"]
TIMEOUT = (5.0, 30.0)  # connect, read (seconds) for every request
SAMPLE_EVERY = 2.0  # seconds between RSS samples


# ---------------------------------------------------------------------------------------
# Statistics


@dataclass
class Kind:
    """What one kind of request did."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)


class Stats:
    """Requests, errors and latencies per kind, shared by the workers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: dict[str, Kind] = {}

    def record(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            k = self.kinds.setdefault(kind, Kind())
            k.latencies.append(seconds)
            if error is not None:
                k.errors += 1
                if len(k.samples) < 5:
                    k.samples.append(f"t={time.strftime('%H:%M:%S')} {error}")

    def total_errors(self) -> int:
        with self.lock:
            return sum(k.errors for k in self.kinds.values())


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


# ---------------------------------------------------------------------------------------
# The server


class Server:
    """The release binary on a temporary data directory and a free loopback port."""

    def __init__(self, work: str) -> None:
        self.work = work
        self.data = os.path.join(work, "var")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(
            os.environ,
            WENDELIN_DATA_DIR=self.data,
            WENDELIN_LOG="warn",
            WENDELIN_WORKERS="2",
        )
        self.env.pop("WENDELIN_DATABASE_URL", None)
        self.log_path = os.path.join(work, "server.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: str = "") -> str:
        """Runs `wendelin ARGS` on the data directory; returns its standard output."""
        return subprocess.run(
            [BIN, *args],
            env=self.env,
            cwd=self.work,
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [BIN, "serve", "--bind", f"127.0.0.1:{self.port}"],
                env=self.env,
                cwd=self.work,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with {self.proc.returncode}")
            try:
                if requests.get(self.base + "/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise SystemExit("the server did not answer /health within 30 s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def log_problems(self) -> list[str]:
        """The log lines at WARN or ERROR level."""
        try:
            with open(self.log_path, errors="replace") as f:
                return [
                    line.rstrip() for line in f if " WARN " in line or "ERROR" in line
                ]
        except OSError:
            return []


@dataclass
class Sample:
    """One reading of the server's /proc/<pid>/status (sizes in KiB)."""

    t: float
    rss: int
    anon: int
    file: int
    threads: int
    fds: int


def read_proc(pid: int, t: float) -> Sample | None:
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                    fields[name] = int(value.split()[0])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None
    return Sample(
        t,
        fields.get("VmRSS", 0),
        fields.get("RssAnon", 0),
        fields.get("RssFile", 0),
        fields.get("Threads", 0),
        fds,
    )


# ---------------------------------------------------------------------------------------
# Requests


class Client:
    """One worker's HTTP session: every request timed, bounded and checked."""

    def __init__(self, base: str, stats: Stats, auth: dict[str, str] | None) -> None:
        self.base = base
        self.stats = stats
        self.http = requests.Session()
        self.http.trust_env = False  # no proxy: loopback only
        self.auth = auth or {}

    def call(
        self,
        kind: str,
        method: str,
        path: str,
        expect: Iterable[int] = (200,),
        check: Check | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> requests.Response | None:
        """Sends one request; records its latency and whether it went as expected.
        Returns the response if its status was expected (and `check` found nothing)."""
        assert path.startswith("/")
        h = dict(self.auth)
        h.update(headers or {})
        start = time.perf_counter()
        try:
            r = self.http.request(
                method,
                self.base + path,
                headers=h,
                timeout=TIMEOUT,
                allow_redirects=False,
                **kw,
            )
            r.content  # noqa: B018 (read the whole body inside the timing)
        except requests.RequestException as e:
            self.stats.record(
                kind, time.perf_counter() - start, f"{method} {path}: {e!r}"
            )
            return None
        elapsed = time.perf_counter() - start
        error = None
        expected = tuple(expect)
        if r.status_code not in expected:
            error = (
                f"{method} {path[:120]} -> {r.status_code} (expected {expected}): "
                f"{r.text[:200]!r}"
            )
        elif check is not None:
            problem = check(r)
            if problem:
                error = f"{method} {path[:120]} -> {r.status_code}: {problem}"
        self.stats.record(kind, elapsed, error)
        return r if error is None else None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


def basic(login: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{login}:{password}".encode()).decode()
    return {"Authorization": "Basic " + raw}


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def load_npy(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


Check = Callable[[requests.Response], "str | None"]


def equal(got: Callable[[requests.Response], Any], want: Any) -> Check:
    """A check that `got(response)` equals `want`."""

    def check(r: requests.Response) -> str | None:
        value = got(r)
        return None if value == want else f"{value!r} != {want!r}"[:200]

    return check


def close(got: Callable[[requests.Response], float], want: float) -> Check:
    """A check that `got(response)` is `want` up to rounding."""

    def check(r: requests.Response) -> str | None:
        value = got(r)
        return None if np.isclose(value, want, rtol=1e-9) else f"{value!r} != {want!r}"

    return check


def result(r: requests.Response) -> Any:
    return r.json()["result"]


def records(rng: random.Random, n: int, seq: int) -> list[list[Any]]:
    """fluentd-like `[time, record]` entries."""
    return [
        [
            1_700_000_000 + seq + i,
            {
                "seq": seq + i,
                "value": round(rng.random() * 100, 3),
                "unit": "C",
                "site": rng.choice(WORDS),
            },
        ]
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------
# The workers


class Soak:
    """Shared state of a run: the server, the credentials, the documents to visit."""

    def __init__(self, server: Server, seconds: float, seed: int, pace: float) -> None:
        self.server = server
        self.stats = Stats()
        self.seed = seed
        self.pace = pace
        self.stop = threading.Event()
        self.deadline = time.monotonic() + seconds
        self.manager = ""
        self.erin = ""
        self.doc_ids: list[str] = []  # Data Streams made at setup (never deleted)
        self.array = ""  # float64 [n, 8], written only by the arrays worker
        self.zarray = ""  # int32 [4000, 16] zstd, read-only
        self.zdata = np.zeros((0, 0), dtype=np.int32)
        self.local = np.zeros((0, 8))  # the arrays worker's copy of self.array

    def client(self, token: str | None) -> Client:
        return Client(self.server.base, self.stats, bearer(token) if token else None)

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def pause(self, rng: random.Random, seconds: float) -> None:
        """Sleeps about `seconds` (× pace), jittered, or until the end of the run."""
        self.stop.wait(seconds * self.pace * rng.uniform(0.5, 1.5))

    # -- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        s = self.server
        s.cli("init")
        s.cli(
            "user", "add", "erin", "--role", "Author", "--password-stdin",
            stdin=ERIN_PASSWORD + "\n",
        )  # fmt: skip
        self.manager = s.cli("user", "token", "add", "manager").split()[-1]
        self.erin = s.cli("user", "token", "add", "erin").split()[-1]
        s.start()
        rng = random.Random(self.seed)
        m = self.client(self.manager)
        e = self.client(self.erin)

        def must(r: requests.Response | None, what: str) -> requests.Response:
            if r is None:
                errors = [e for k in self.stats.kinds.values() for e in k.samples]
                raise SystemExit(f"setup failed: {what}: {errors}")
            return r

        must(
            m.call(
                "setup",
                "POST",
                "/api/v1/portal_ingestion_policies/addIngestionPolicy",
                expect=(201,),
                # erin ingests: a policy takes data from the logins it lists.
                json={"name": POLICY, "product": "temp", "accepted_logins": ["erin"]},
            ),
            "ingestion policy",
        )
        docs = [
            {
                "title": f"soak stream {i}",
                "reference": f"soak{i}",
                "description": " ".join(rng.sample(WORDS, 3)) + f" unit {i}",
            }
            for i in range(300)
        ]
        must(
            e.call("setup", "POST", "/api/v1/data_stream_module", (201,), json=docs),
            "bulk documents",
        )
        listing = must(
            e.call(
                "setup",
                "GET",
                "/api/v1/catalog",
                params={"q": 'reference:"soak%"', "limit": 1000},
            ),
            "listing",
        ).json()
        self.doc_ids = sorted(
            (it["id"] for it in listing["items"] if it["id"].isdigit()), key=int
        )
        if len(self.doc_ids) < 100:
            listing = must(
                e.call(
                    "setup",
                    "GET",
                    "/api/v1/data_stream_module",
                    params={"limit": 1000},
                ),
                "module listing",
            ).json()
            self.doc_ids = [it["id"] for it in listing["items"]]
        # The float64 array: 50,000 × 8 of seeded data, appended in pieces.
        a = must(
            e.call(
                "setup",
                "POST",
                "/api/v1/data_array_module",
                (201,),
                json={
                    "portal_type": "Data Array",
                    "title": "soak array",
                    "dtype": "float64",
                    "shape": [0, 8],
                    "chunk_shape": [4096, 8],
                },
            ),
            "array",
        )
        self.array = a.json()["path"]
        gen = np.random.default_rng(self.seed)
        pieces = [gen.random((10_000, 8)) for _ in range(5)]
        for p in pieces:
            must(
                e.call(
                    "setup",
                    "POST",
                    f"/api/v1/{self.array}/append",
                    data=npy(p),
                    headers={"Content-Type": "application/x-npy"},
                ),
                "array append",
            )
        self.local = np.concatenate(pieces)
        # A compressed int32 array, written once and only read.
        z = must(
            e.call(
                "setup",
                "POST",
                "/api/v1/data_array_module",
                (201,),
                json={
                    "portal_type": "Data Array",
                    "title": "soak zstd array",
                    "dtype": "int32",
                    "shape": [4000, 16],
                    "chunk_shape": [500, 16],
                    "codec": "zstd",
                },
            ),
            "zstd array",
        )
        self.zarray = z.json()["path"]
        self.zdata = gen.integers(-1000, 1000, (4000, 16), dtype=np.int32)
        must(
            e.call(
                "setup",
                "POST",
                f"/api/v1/{self.zarray}/write",
                (204,),
                params={"region": "0:4000,0:16"},
                data=npy(self.zdata),
                headers={"Content-Type": "application/x-npy"},
            ),
            "zstd array write",
        )
        # One record per tag, so that every stream exists before the readers start.
        for tag in TAGS:
            must(
                e.call(
                    "setup",
                    "POST",
                    f"/api/v1/ingest/{POLICY}/{tag}",
                    data=msgpack.packb(records(rng, 5, 0)),
                    headers={"Content-Type": "application/x-msgpack"},
                ),
                "first ingestion",
            )
        # The full-text index follows commits by about a second.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = e.call("setup", "GET", "/api/v1/catalog", params={"q": "unit 299"})
            if r is not None and (r.json().get("total") or 0) >= 1:
                break
            time.sleep(0.5)
        else:
            raise SystemExit("the full-text index did not catch up within 60 s")

    # -- ingestion -----------------------------------------------------------------------

    def ingest_worker(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        c = self.client(self.erin)
        compat = Client(self.server.base, self.stats, basic("erin", ERIN_PASSWORD))
        seq = 1000
        while self.running():
            tag = rng.choice(TAGS)
            batch = records(rng, rng.randint(10, 40), seq)
            seq += len(batch)
            roll = rng.random()
            if roll < 0.35:
                body = b"".join(msgpack.packb(rec) for rec in batch)
                c.call(
                    "ingest msgpack",
                    "POST",
                    f"/api/v1/ingest/{POLICY}/{tag}",
                    data=body,
                    headers={"Content-Type": "application/x-msgpack"},
                    check=equal(lambda r: r.json()["appended"], len(body)),
                )
            elif roll < 0.55:
                body = "".join(json.dumps(rec[1]) + "\n" for rec in batch).encode()
                c.call(
                    "ingest ndjson",
                    "POST",
                    f"/api/v1/ingest/{POLICY}/{tag}",
                    data=body,
                    headers={"Content-Type": "application/x-ndjson"},
                )
            elif roll < 0.8:
                body = b"".join(msgpack.packb(rec) for rec in batch)
                compat.call(
                    "ingest compat",
                    "POST",
                    f"/erp5/portal_ingestion_policies/{POLICY}/ingest",
                    expect=(204,),
                    params={"reference": tag},
                    data=body,
                    headers={"Content-Type": "application/octet-stream"},
                )
            else:
                self.read_stream(c, rng, tag)
            self.pause(rng, 0.2)

    def read_stream(self, c: Client, rng: random.Random, tag: str) -> None:
        path = f"data_stream_module/{tag}"
        r = c.call("stream getSize", "GET", f"/{path}/getSize")
        if r is None:
            return
        size = int(r.text.strip().strip('"'))
        start = rng.randrange(0, max(1, size - 4096))
        c.call(
            "stream range",
            "GET",
            f"/api/v1/{path}/data",
            expect=(206,),
            headers={"Range": f"bytes={start}-{start + 4095}"},
            check=equal(lambda r: len(r.content), min(4096, size - start)),
        )
        c.call(
            "stream records",
            "GET",
            f"/{path}/readMsgpackChunkList",
            params={"start": 0, "end": 8192},
            check=equal(lambda r: bool(r.json()["records"]), True),
        )

    # -- catalog -------------------------------------------------------------------------

    def catalog_worker(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        clients = [self.client(self.erin), self.client(self.manager)]
        structured = [
            {"q": 'portal_type:"Data Stream" AND title:%soak%', "limit": 20},
            {
                "q": 'portal_type:"Data Stream"',
                "sort_on": "modification_date desc",
                "limit": 50,
            },
            {"q": "modification_date:>=2026-01-01", "limit": 20, "count": "none"},
            {"q": 'portal_type:"Data Array"', "limit": 10},
            {"q": "validation_state:draft AND reference:soak1%", "limit": 20},
            {"q": 'title:["soak stream 1" TO "soak stream 2"]', "limit": 20},
            {"q": 'portal_type:"Data Stream" AND NOT title:%doc%', "limit": 20},
            {"q": 'module:"data_ingestion_module"', "limit": 10},
        ]
        while self.running():
            c = rng.choice(clients)
            roll = rng.random()
            if roll < 0.45:
                c.call(
                    "catalog", "GET", "/api/v1/catalog", params=rng.choice(structured)
                )
            elif roll < 0.8:
                words = " ".join(rng.sample(WORDS, rng.randint(1, 2)))
                c.call(
                    "catalog full-text",
                    "GET",
                    "/api/v1/catalog",
                    params={"q": words, "limit": 20},
                )
            else:
                c.call(
                    "module listing",
                    "GET",
                    "/api/v1/data_stream_module",
                    params={"limit": 50, "offset": rng.randrange(0, 300)},
                )
            self.pause(rng, 0.25)

    # -- UI ------------------------------------------------------------------------------

    def ui_login(self, c: Client) -> str | None:
        """Logs in through the form as a browser does; returns the CSRF token."""
        c.http.cookies.clear()
        if c.call("ui login", "GET", "/login") is None:
            return None
        token = c.http.cookies.get("wendelin_login")
        r = c.call(
            "ui login",
            "POST",
            "/login",
            expect=(303,),
            data={
                "login": "erin",
                "password": ERIN_PASSWORD,
                "came_from": "/ui/",
                "login_token": token or "",
            },
        )
        if r is None:
            return None
        me = c.call("ui login", "GET", "/api/v1/me")
        return None if me is None else me.json().get("csrf_token")

    def ui_worker(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        c = self.client(None)
        csrf = self.ui_login(c)
        done = 0
        listboxes = [
            "/ui/data_stream_module",
            "/ui/data_stream_module?sort_on=title&sort_order=ascending",
            "/ui/data_stream_module?page=2&size=50",
            "/ui/data_stream_module?f_title=%25stream 1%25",
            "/ui/data_array_module",
            "/ui/data_ingestion_module",
        ]
        while self.running():
            if csrf is None or done >= 150:
                if csrf is not None:
                    c.call(
                        "ui logout",
                        "POST",
                        "/logout",
                        expect=(303,),
                        data={"csrf_token": csrf},
                    )
                csrf = self.ui_login(c)
                done = 0
                if csrf is None:
                    self.pause(rng, 2.0)
                    continue
            done += 1
            doc = rng.choice(self.doc_ids)
            roll = rng.random()
            if roll < 0.1:
                c.call("ui home", "GET", "/ui/")
            elif roll < 0.4:
                c.call("ui listbox", "GET", rng.choice(listboxes))
            elif roll < 0.5:
                c.call(
                    "ui search",
                    "GET",
                    "/ui/data_stream_module",
                    params={"q": rng.choice(WORDS)},
                )
            elif roll < 0.75:
                path = rng.choice(
                    [f"data_stream_module/{doc}", self.array, self.zarray]
                )
                c.call("ui view", "GET", f"/ui/{path}")
            elif roll < 0.85:
                c.call(
                    "ui module tab",
                    "GET",
                    f"/ui/data_stream_module/{rng.choice(TAGS)}/+module",
                )
            elif roll < 0.92:
                c.call("ui edit form", "GET", f"/ui/data_stream_module/{doc}/+edit")
            else:
                self.ui_edit(c, rng, doc, csrf)
            self.pause(rng, 0.3)

    def ui_edit(self, c: Client, rng: random.Random, doc: str, csrf: str) -> None:
        """Saves the edit form of a setup document, as the page would post it."""
        r = c.call("ui edit save", "GET", f"/api/v1/data_stream_module/{doc}")
        if r is None:
            return
        serial = r.json()["serial"]
        c.call(
            "ui edit save",
            "POST",
            f"/ui/data_stream_module/{doc}/+edit",
            expect=(303,),
            data={
                "csrf_token": csrf,
                "serial": str(serial),
                "title": r.json()["title"],
                "description": " ".join(rng.sample(WORDS, 3)) + f" unit {doc}",
            },
        )

    # -- arrays --------------------------------------------------------------------------

    def arrays_worker(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        gen = np.random.default_rng(self.seed * 100 + n)
        c = self.client(self.erin)
        a = self.array
        while self.running():
            rows = len(self.local)
            roll = rng.random()
            if roll < 0.3:
                lo = rng.randrange(0, rows - 1)
                hi = min(rows, lo + rng.randint(1, 2000))
                want = self.local[lo:hi]
                c.call(
                    "array read",
                    "GET",
                    f"/api/v1/{a}/read",
                    params={"region": f"{lo}:{hi}"},
                    check=equal(lambda r: load_npy(r.content).tolist(), want.tolist()),
                )
            elif roll < 0.55:
                op = rng.choice(["sum", "mean", "min", "max", "std"])
                lo = rng.randrange(0, rows - 1)
                hi = rng.randint(lo + 1, rows)
                want = float(getattr(np, op)(self.local[lo:hi]))
                c.call(
                    "array reduce",
                    "GET",
                    f"/api/v1/{a}/reduce",
                    params={"op": op, "region": f"{lo}:{hi}"},
                    check=close(result, want),
                )
            elif roll < 0.65:
                want = float(np.count_nonzero(self.local[:, 3] > 0.5))
                c.call(
                    "array reduce",
                    "GET",
                    f"/api/v1/{a}/reduce",
                    params={"op": "count", "where": "gt:0.5", "region": ":,3"},
                    check=equal(result, want),
                )
            elif roll < 0.75:
                lo = rng.randrange(0, 3900)
                want = self.zdata[lo : lo + 100].sum(axis=0).astype(float).tolist()
                c.call(
                    "array reduce",
                    "GET",
                    f"/api/v1/{self.zarray}/reduce",
                    params={"op": "sum", "axis": "0", "region": f"{lo}:{lo + 100}"},
                    check=equal(result, want),
                )
            elif roll < 0.82:
                piece = gen.random((rng.randint(1, 200), 8))
                r = c.call(
                    "array append",
                    "POST",
                    f"/api/v1/{a}/append",
                    data=npy(piece),
                    headers={"Content-Type": "application/x-npy"},
                )
                if r is not None:
                    self.local = np.concatenate([self.local, piece])
            elif roll < 0.87:
                lo = rng.randrange(0, rows - 50)
                piece = gen.random((50, 8))
                r = c.call(
                    "array write",
                    "POST",
                    f"/api/v1/{a}/write",
                    expect=(204,),
                    params={"region": f"{lo}:{lo + 50},0:8"},
                    data=npy(piece),
                    headers={"Content-Type": "application/x-npy"},
                )
                if r is not None:
                    self.local[lo : lo + 50] = piece
            elif roll < 0.94:
                c.call(
                    "array methods",
                    "GET",
                    f"/{a}/getShape",
                    check=equal(requests.Response.json, [rows, 8]),
                )
                lo = rng.randrange(0, rows - 10)
                c.call(
                    "array methods",
                    "GET",
                    f"/{a}/getArraySlice",
                    params={"region": f"{lo}:{lo + 10},2"},
                )
            else:
                c.call("array zarr", "GET", f"/api/v1/{self.zarray}/zarr/zarr.json")
                c.call(
                    "array zarr",
                    "GET",
                    f"/api/v1/{self.zarray}/zarr/c/{rng.randrange(8)}/0",
                )
            self.pause(rng, 0.25)

    # -- documents and bad requests ------------------------------------------------------

    def docs_worker(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        c = self.client(self.erin)
        mine: list[tuple[str, int]] = []  # (path, serial) of documents made here
        made = 0
        while self.running():
            roll = rng.random()
            if roll < 0.3 or not mine:
                made += 1
                r = c.call(
                    "doc create",
                    "POST",
                    "/api/v1/data_stream_module",
                    expect=(201,),
                    json={
                        "title": f"soak doc {n}-{made}",
                        "description": " ".join(rng.sample(WORDS, 2)),
                    },
                )
                if r is not None:
                    mine.append((r.json()["path"], r.json()["serial"]))
            elif roll < 0.55:
                i = rng.randrange(len(mine))
                path, serial = mine[i]
                r = c.call(
                    "doc edit",
                    "PATCH",
                    f"/api/v1/{path}",
                    json={
                        "serial": serial,
                        "description": " ".join(rng.sample(WORDS, 3)),
                    },
                )
                if r is not None:
                    mine[i] = (path, r.json()["serial"])
            elif roll < 0.75:
                path, _ = rng.choice(mine)
                c.call("doc read", "GET", f"/api/v1/{path}")
            elif roll < 0.85 and len(mine) > 20:
                path, serial = mine.pop(rng.randrange(len(mine)))
                c.call(
                    "doc delete",
                    "DELETE",
                    f"/api/v1/{path}",
                    expect=(200, 204),
                    params={"serial": serial},
                )
            else:
                self.bad_request(c, rng, mine)
            self.pause(rng, 0.3)

    def bad_request(
        self, c: Client, rng: random.Random, mine: list[tuple[str, int]]
    ) -> None:
        """One request that must be refused with its 4xx (and change nothing)."""
        a = self.array
        path, serial = rng.choice(mine)
        bad: list[tuple[str, int, str, str, dict[str, Any]]] = [
            ("bad query", 400, "GET", "/api/v1/catalog", {"params": {"q": "title:("}}),
            ("bad missing", 404, "GET", "/api/v1/data_stream_module/999999", {}),
            (
                "bad token",
                401,
                "GET",
                "/api/v1/data_stream_module",
                {"headers": bearer("wdl_not_a_token")},
            ),
            ("bad stale", 409, "PATCH", f"/api/v1/{path}", {"json": {"serial": 0}}),
            (
                "bad property",
                422,
                "POST",
                "/api/v1/data_stream_module",
                {"json": {"title": "x", "temprature": 3}},
            ),
            (
                "bad json",
                400,
                "POST",
                "/api/v1/data_stream_module",
                {
                    "data": b"{not json",
                    "headers": {"Content-Type": "application/json"},
                },
            ),
            (
                "bad msgpack",
                400,
                "POST",
                f"/api/v1/ingest/{POLICY}/{TAGS[0]}",
                {
                    "data": b"\xc1\xc1\xc1",
                    "headers": {"Content-Type": "application/x-msgpack"},
                },
            ),
            (
                "bad policy",
                404,
                "POST",
                "/api/v1/ingest/no_such_policy/a.temp",
                {
                    "data": msgpack.packb([1, {"a": 1}]),
                    "headers": {"Content-Type": "application/x-msgpack"},
                },
            ),
            (
                "bad media type",
                415,
                "POST",
                f"/api/v1/ingest/{POLICY}/{TAGS[0]}",
                {"data": b"x", "headers": {"Content-Type": "image/png"}},
            ),
            (
                "bad compat get",
                400,
                "GET",
                f"/erp5/portal_ingestion_policies/{POLICY}/ingest",
                {},
            ),
            (
                "bad region",
                400,
                "GET",
                f"/api/v1/{a}/read",
                {"params": {"region": "0:10,99"}},
            ),
            ("bad op", 400, "GET", f"/api/v1/{a}/reduce", {"params": {"op": "median"}}),
            (
                "bad npy",
                400,
                "POST",
                f"/api/v1/{a}/append",
                {
                    "data": b"\x93NUMPY garbage",
                    "headers": {"Content-Type": "application/x-npy"},
                },
            ),
            (
                "bad range",
                416,
                "GET",
                f"/api/v1/data_stream_module/{TAGS[0]}/data",
                {"headers": {"Range": "bytes=999999999-"}},
            ),
        ]
        kind, status, method, url, kw = rng.choice(bad)
        c.call(kind, method, url, expect=(status,), **kw)
        if kind == "bad stale":
            # Nothing was written: the serial is still the one this worker knows.
            c.call(
                "bad stale",
                "GET",
                f"/api/v1/{path}",
                check=equal(lambda r: r.json()["serial"], serial),
            )

    # -- logins --------------------------------------------------------------------------

    def logins_worker(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        c = self.client(None)
        machine = Client(self.server.base, self.stats, basic("erin", ERIN_PASSWORD))
        while self.running():
            roll = rng.random()
            if roll < 0.1:
                # One wrong password (401), then the right one: the successful login
                # clears the failure, so the address is never throttled.
                c.call(
                    "login wrong password",
                    "POST",
                    "/login",
                    expect=(401,),
                    json={"login": "erin", "password": "wrong-password"},
                )
            if roll < 0.2:
                machine.call("basic auth", "GET", "/api/v1/me")
            c.http.cookies.clear()
            r = c.call(
                "login",
                "POST",
                "/login",
                json={"login": "erin", "password": ERIN_PASSWORD},
            )
            if r is None:
                self.pause(rng, 2.0)
                continue
            csrf = r.json()["csrf_token"]
            cookie = c.http.cookies.get("wendelin_session") or ""
            c.call(
                "me",
                "GET",
                "/api/v1/me",
                check=equal(lambda r: r.json()["login"], "erin"),
            )
            if rng.random() < 0.5:
                c.call(
                    "cookie write",
                    "POST",
                    "/api/v1/data_stream_module",
                    expect=(403,),
                    json={"title": "no csrf"},
                )
            else:
                c.call(
                    "cookie write",
                    "POST",
                    "/api/v1/data_stream_module",
                    expect=(201,),
                    json={"title": "with csrf"},
                    headers={"X-CSRF-Token": csrf},
                )
            c.call(
                "logout",
                "POST",
                "/logout",
                headers={"X-CSRF-Token": csrf},
            )
            c.http.cookies.clear()
            c.call(
                "dead session",
                "GET",
                "/api/v1/me",
                expect=(401,),
                headers={"Cookie": f"wendelin_session={cookie}"},
            )
            self.pause(rng, 1.5)

    # -- RSS -----------------------------------------------------------------------------

    def sampler(self, start: float, out: list[Sample]) -> None:
        assert self.server.proc is not None
        pid = self.server.proc.pid
        while not self.stop.is_set():
            s = read_proc(pid, time.monotonic() - start)
            if s is not None:
                out.append(s)
            self.stop.wait(SAMPLE_EVERY)


# ---------------------------------------------------------------------------------------
# The run and its report


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def window(samples: list[Sample], lo: float, hi: float, attr: str) -> list[float]:
    return [float(getattr(s, attr)) for s in samples if lo <= s.t < hi]


def summary(values: list[float]) -> str:
    """Median, mean, min and max of KiB figures, in MiB."""
    if not values:
        return "no samples"
    return (
        f"median {mib(statistics.median(values))}, mean {mib(statistics.fmean(values))}"
        f", min {mib(min(values))}, max {mib(max(values))}"
    )


def report(
    soak: Soak,
    samples: list[Sample],
    seconds: float,
    warmup: float,
    span: float,
    max_growth: float,
) -> int:
    """Prints the report (markdown tables); returns the exit status."""
    failures: list[str] = []
    total = sum(len(k.latencies) for k in soak.stats.kinds.values())
    print(f"\n{total} requests in {seconds:.0f} s ({total / seconds:.1f}/s)\n")
    print("| kind | requests | errors | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    errors = 0
    for name in sorted(soak.stats.kinds):
        if name == "setup":
            continue
        k = soak.stats.kinds[name]
        lat = [x * 1000 for x in k.latencies]
        errors += k.errors
        print(
            f"| {name} | {len(lat)} | {k.errors} | {percentile(lat, 0.5):.1f} | "
            f"{percentile(lat, 0.99):.1f} | {max(lat):.1f} |"
        )
    if errors:
        failures.append(f"{errors} errors")
        print("\nerrors (first ones per kind):")
        for name, k in sorted(soak.stats.kinds.items()):
            for s in k.samples:
                print(f"  {name}: {s}")

    print(f"\nRSS every {SAMPLE_EVERY:.0f} s (MiB):\n")
    print("| t (s) | VmRSS | RssAnon | RssFile | threads | open files |")
    print("|---:|---:|---:|---:|---:|---:|")
    step = max(1, int(60 / SAMPLE_EVERY))
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    for s in shown:
        print(
            f"| {s.t:.0f} | {mib(s.rss)} | {mib(s.anon)} | {mib(s.file)} | "
            f"{s.threads} | {s.fds} |"
        )
    end = samples[-1].t if samples else seconds
    base_lo, base_hi = warmup, warmup + span
    end_lo, end_hi = end - span, end + 1
    print()
    # The medians are compared: single samples swing by tens of MiB (each login's argon2
    # buffer is 19 MiB, and the allocator returns freed pages in batches).
    print(
        f"baseline window [{base_lo:.0f}, {base_hi:.0f}) s, end window the last {span:.0f} s (MiB):"
    )
    for attr, label in (("rss", "VmRSS"), ("anon", "RssAnon"), ("file", "RssFile")):
        b = window(samples, base_lo, base_hi, attr)
        e = window(samples, end_lo, end_hi, attr)
        ratio = statistics.median(e) / statistics.median(b) if b and e else float("nan")
        print(
            f"- {label}: baseline {summary(b)}; end {summary(e)}; median ratio {ratio:.3f}"
        )
        if attr == "rss" and not ratio <= 1 + max_growth:
            failures.append(f"VmRSS grew by a ratio of {ratio:.3f}")
    if samples:
        peak = max(samples, key=lambda s: s.rss)
        print(f"peak VmRSS {mib(peak.rss)} MiB at {peak.t:.0f} s")

    if not soak.server.alive():
        failures.append("the server died")
    problems = soak.server.log_problems()
    print(f"\nserver log: {len(problems)} WARN/ERROR lines")
    for line in problems[:10]:
        print("  " + line[:300])
    if failures:
        print("\nFAILED: " + "; ".join(failures))
        return 1
    print("\nOK: no errors, RSS within the bound")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600, help="length of the load")
    ap.add_argument("--seed", type=int, default=14, help="seed of every random choice")
    ap.add_argument(
        "--pace", type=float, default=1.0, help="scales every pause (2 = half the rate)"
    )
    ap.add_argument(
        "--max-growth", type=float, default=0.10, help="allowed VmRSS growth (0.10)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} is missing: cargo build --release -p wendelin-server")
    # Warm-up, then the baseline minute; a short run scales both down.
    warmup = min(60.0, args.seconds / 3)
    window = min(60.0, args.seconds / 3)

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    work = tempfile.mkdtemp(prefix="wendelin-soak-", dir="/tmp")
    server = Server(work)
    soak = Soak(server, args.seconds, args.seed, args.pace)
    try:
        print(
            f"# soak {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
            f"{args.seconds:.0f} s, seed {args.seed}, pace {args.pace}, "
            f"{os.cpu_count()} CPUs, load average {loadavg()}"
        )
        t0 = time.monotonic()
        soak.setup()
        print(
            f"setup: {len(soak.doc_ids)} documents, arrays {soak.array} and "
            f"{soak.zarray}, policy {POLICY}, in {time.monotonic() - t0:.1f} s"
        )
        samples: list[Sample] = []
        start = time.monotonic()
        soak.deadline = start + args.seconds
        workers = [
            soak.ingest_worker,
            soak.catalog_worker,
            soak.ui_worker,
            soak.arrays_worker,
            soak.docs_worker,
            soak.logins_worker,
        ]
        threads = [threading.Thread(target=soak.sampler, args=(start, samples))]
        threads += [
            threading.Thread(target=w, args=(i + 1,), name=w.__name__)
            for i, w in enumerate(workers)
        ]
        for t in threads:
            t.daemon = True
            t.start()
        last = start
        while any(t.is_alive() for t in threads[1:]):
            time.sleep(1)
            if not server.alive():
                print("the server died", file=sys.stderr)
                break
            if time.monotonic() - last >= 60:
                last = time.monotonic()
                s = samples[-1] if samples else None
                print(
                    f"  {last - start:5.0f} s: "
                    f"{sum(len(k.latencies) for k in soak.stats.kinds.values())} "
                    f"requests, {soak.stats.total_errors()} errors, VmRSS "
                    f"{mib(s.rss) if s else '?'} MiB, load {loadavg()}",
                    flush=True,
                )
        soak.stop.set()
        for t in threads:
            t.join(timeout=60)
        elapsed = time.monotonic() - start
        r = Client(server.base, soak.stats, None).call("health", "GET", "/health")
        if r is None:
            print("/health did not answer at the end", file=sys.stderr)
        print(
            f"load average at the end: {loadavg()}",
        )
        return report(soak, samples, elapsed, warmup, window, args.max_growth)
    finally:
        soak.stop.set()
        server.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
