#!/usr/bin/env python3
"""Whole-system benchmark: admin UI pages for a logged-in browser session.

Starts the release `wendelin` binary on a fresh SQLite data directory, fills
data_stream_module with N documents (most owned by erin, one in 200 by frank, all
Authors), logs erin and frank in (session cookies, as a browser), then measures with wrk
(2 threads, 64 connections, 10 s each), in one run:
  - GET /ui                                 the ceiling: a trivial actix-web handler in
                                            the same server (a redirect, no database)
  - GET /health                             the trivial handler with one database read
  - GET /ui/data_stream_module              listbox page as erin: 50 rows sorted by
                                            modification date, security-filtered, exact
                                            count (almost every document visible)
  - the same as frank                       (50 visible of N)
  - GET /ui/data_stream_module/1            document view page as erin
Before wrk, it waits until the full-text index holds the last document (so that its
catch-up does not compete) and times five sequential GETs of each page: the first is
rendered, the next ones may come from the page cache (pages are cached per session until
the database's change generation moves).
Then, as the portal is used while data flows in:
  - right after a write: WRITES sequential rounds of (a write that moves the change
    generation, then one GET of the page): every GET misses the page cache and renders;
    p50 and p99 end to end, for the listbox and the document view (erin);
  - under load while written to: wrk on the listbox and on the document view while a
    writer creates 10 documents/s (one POST each, paced at 100 ms, for wrk's 10 s):
    req/s and p99 of the pages, writes landed (of those due), the writer's p50/p99.
The `X-Page-Cache` header (hit, shared, miss) of the sequential GETs is counted.
BENCH_UI_DATA=<dir> keeps the filled portal in <dir> and reuses it on later runs.
Usage: python3 bench/ui.py [N] [WRITES]   (needs `cargo build --release -p wendelin-server`
and wrk; WENDELIN_BIN=target/debug/wendelin only to check that the script runs)
"""
import json, os, re, shutil, statistics, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.parse, urllib.request

from harness import BIN, free_port, cli, post  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
WRITES = int(sys.argv[2]) if len(sys.argv) > 2 else 30
WRITER_RATE = 10  # documents per second while wrk runs
WRK_SECONDS = 10


def session(base, login, password):
    req = urllib.request.Request(base + "/login", data=json.dumps({"login": login, "password": password}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.headers["Set-Cookie"].split(";")[0]


def fulltext_total(base, token, word):
    req = urllib.request.Request(base + "/api/v1/catalog?" + urllib.parse.urlencode({"q": word, "limit": 1}),
                                 headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req) as r:
        return json.load(r).get("total", 0)


def timed_get(url, cookie, sources=None, server=None):
    """Seconds of one GET; counts its X-Page-Cache header in `sources` and appends the
    server's own time (its `Server-Timing: app;dur=` header, in seconds) to `server`."""
    req = urllib.request.Request(url, headers={"Cookie": cookie})
    start = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        r.read()
        if r.status != 200:
            raise SystemExit(f"{url}: {r.status}")
        if sources is not None:
            source = r.headers.get("X-Page-Cache", "none")
            sources[source] = sources.get(source, 0) + 1
        if server is not None:
            timing = re.search(r"app;dur=([0-9.]+)", r.headers.get("Server-Timing", ""))
            if timing:
                server.append(float(timing.group(1)) / 1000)
    return time.perf_counter() - start


def percentile(values, q):
    """The q-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def write(base, token, path, body, method="POST"):
    """One JSON write with a bearer token; returns (status, seconds)."""
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.perf_counter() - start


def after_writes(base, token, cookie, path, serial):
    """WRITES rounds of (PATCH the description of document 1, GET `path`): every GET comes
    right after a write. Returns (GET seconds, X-Page-Cache counts, next serial, the
    server's own seconds per GET)."""
    times, sources, server = [], {}, []
    for i in range(WRITES):
        status, _ = write(base, token, "/api/v1/data_stream_module/1",
                          {"serial": serial, "description": f"changed {serial}"}, method="PATCH")
        if status != 200:
            raise SystemExit(f"PATCH data_stream_module/1: {status}")
        serial += 1
        times.append(timed_get(base + path, cookie, sources, server))
    return times, sources, serial, server


def writer(base, token, until, out):
    """Creates WRITER_RATE documents a second (one POST each, the i-th due at i / RATE s)
    until `until`; a write lands if it succeeds. One write at a time, as a sensor would: a
    slow write delays the next ones, so fewer than those due may land."""
    start = time.time()
    out["due"] = round((until - start) * WRITER_RATE)
    for i in range(out["due"]):
        time.sleep(max(0.0, start + i / WRITER_RATE - time.time()))
        if time.time() >= until:
            break
        status, seconds = write(base, token, "/api/v1/data_stream_module",
                                {"title": f"written under load {i}"})
        out["latencies"].append(seconds)
        if status == 201:
            out["landed"] += 1


def wrk_with_writer(base, url, cookie, token):
    """wrk on `url` while a writer creates WRITER_RATE documents a second."""
    out = {"latencies": [], "landed": 0, "due": 0}
    until = time.time() + WRK_SECONDS
    t = threading.Thread(target=writer, args=(base, token, until, out))
    t.start()
    try:
        result = wrk(url, cookie)
    finally:
        t.join()
    return result, out


def wrk(url, cookie=None):
    args = ["wrk", "-t2", "-c64", f"-d{WRK_SECONDS}s", "--timeout", "30s", "--latency", url]
    if cookie:
        args[1:1] = ["-H", "Cookie: " + cookie]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        raise SystemExit(f"{url}: {bad.group(1)} error responses\n{out}")
    return rps, p50, p99


def main():
    # BENCH_UI_DATA=<dir> keeps the filled portal there and reuses it on the next run (for
    # profiling at 1M documents without refilling); by default a temporary one is removed.
    keep = os.environ.get("BENCH_UI_DATA")
    data = keep or tempfile.mkdtemp(prefix="wendelin-bench-ui-")
    saved = os.path.join(data, "bench-ui.json")
    reuse = keep is not None and os.path.exists(saved)
    port = free_port()
    env = dict(os.environ, WENDELIN_DATA_DIR=data, WENDELIN_LOG="warn")
    if reuse:
        tokens = json.load(open(saved))["tokens"]
    else:
        os.makedirs(data, exist_ok=True)
        cli(env, "init")
        for user in ("erin", "frank"):
            cli(env, "user", "add", user, "--role", "Author", "--password-stdin", stdin=user + "-password-1\n")
        tokens = {u: cli(env, "user", "token", "add", u).split()[-1] for u in ("erin", "frank")}
    server = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/health")
                break
            except OSError:
                time.sleep(0.1)
        start = time.time()
        # Bulk creation (a JSON array per POST, one transaction each), in batches per owner.
        batches = {"erin": [], "frank": []}
        for i in range(0 if reuse else N):
            owner = "frank" if i % 200 == 7 else "erin"
            batches[owner].append({"title": f"stream {i}", "reference": f"s{i}",
                                   "description": f"sensor {i % 97}"})
        for owner, docs in batches.items():
            for b in range(0, len(docs), 1000):
                post(base, tokens[owner], "/api/v1/data_stream_module", docs[b:b + 1000])
        fill_s = time.time() - start
        if reuse:
            print(f"documents: {N}; reused from {data}")
        else:
            print(f"documents: {N}; created through the API in {fill_s:.1f} s ({N / fill_s:.0f}/s, bulk POSTs of 1000)")
            if keep:
                json.dump({"tokens": tokens, "n": N}, open(saved, "w"))
        # The full-text index follows the outbox; wait until it holds the last document,
        # so that its catch-up does not compete with the measurements.
        start = time.time()
        while fulltext_total(base, tokens["erin"], str(N - 1 if (N - 1) % 200 != 7 else N - 2)) < 1:
            if time.time() - start > 600:
                raise SystemExit("the full-text index did not catch up within 10 minutes")
            time.sleep(1)
        print(f"full-text index caught up {time.time() - start:.1f} s after the load")
        print("load average (1, 5, 15 min) before the runs: %.2f %.2f %.2f" % os.getloadavg())
        cookies = {u: session(base, u, u + "-password-1") for u in ("erin", "frank")}
        first = "/ui/data_stream_module/1"
        # One request at a time: the first one renders (page cache miss), the next ones
        # may be served from the page cache.
        for name, path, who in [("listbox (erin)", "/ui/data_stream_module", "erin"),
                                ("listbox (frank)", "/ui/data_stream_module", "frank"),
                                ("document view (erin)", first, "erin"),
                                ("home (erin)", "/ui/", "erin")]:
            times = [timed_get(base + path, cookies[who]) for _ in range(5)]
            print(f"single requests, {name}: first {times[0] * 1000:.1f} ms, then "
                  + ", ".join(f"{t * 1000:.2f}" for t in times[1:]) + " ms")
        # Right after a write: the change generation moved, the page cache misses.
        serial = json.load(urllib.request.urlopen(urllib.request.Request(
            base + "/api/v1/data_stream_module/1",
            headers={"Authorization": "Bearer " + tokens["erin"]})))["serial"]
        missed = []
        for name, path in [("listbox (erin)", "/ui/data_stream_module"), ("document view (erin)", first)]:
            times, sources, serial, own = after_writes(base, tokens["erin"], cookies["erin"], path, serial)
            missed.append((name, times, sources, own))
        rows = [
            ("GET /ui (ceiling: trivial actix-web handler, same server)", wrk(base + "/ui")),
            ("GET /health (trivial handler, one database read)", wrk(base + "/health")),
            (f"listbox, 50 of ~{N - N // 200} visible, by modification date (erin)",
             wrk(base + "/ui/data_stream_module", cookies["erin"])),
            (f"listbox, 50 of {N // 200} visible (frank)", wrk(base + "/ui/data_stream_module", cookies["frank"])),
            ("document view page (erin)", wrk(base + first, cookies["erin"])),
        ]
        loaded = [
            (name, *wrk_with_writer(base, base + path, cookies["erin"], tokens["erin"]))
            for name, path in [("listbox (erin)", "/ui/data_stream_module"),
                               ("document view (erin)", first)]
        ]
        print("load average (1, 5, 15 min) after the runs: %.2f %.2f %.2f" % os.getloadavg())
        print("| request | req/s | p50 | p99 |")
        print("|---|---|---|---|")
        for name, (rps, p50, p99) in rows:
            print(f"| {name} | {rps:.0f} | {p50} | {p99} |")
        print(f"\nRight after a write ({WRITES} sequential rounds of PATCH, then GET; end to end):\n")
        print("| page | p50 | p99 | max | server-side p50 | server-side p99 | X-Page-Cache |")
        print("|---|---|---|---|---|---|---|")
        for name, times, sources, own in missed:
            own = own or [float("nan")]
            print(f"| {name} | {statistics.median(times) * 1000:.2f} ms | {percentile(times, 99) * 1000:.2f} ms "
                  f"| {max(times) * 1000:.2f} ms | {statistics.median(own) * 1000:.2f} ms "
                  f"| {percentile(own, 99) * 1000:.2f} ms "
                  f"| {', '.join(f'{k} {v}' for k, v in sorted(sources.items()))} |")
        print(f"\nUnder wrk -c64 while a writer creates {WRITER_RATE} documents/s:\n")
        print("| page | req/s | p50 | p99 | writes landed | writer p50 | writer p99 |")
        print("|---|---|---|---|---|---|---|")
        for name, (rps, p50, p99), w in loaded:
            lat = w["latencies"] or [float("nan")]
            print(f"| {name} | {rps:.0f} | {p50} | {p99} | {w['landed']} of {w['due']} "
                  f"({100 * w['landed'] / max(1, w['due']):.0f} %) | {statistics.median(lat) * 1000:.1f} ms "
                  f"| {percentile(lat, 99) * 1000:.1f} ms |")
    finally:
        server.terminate()
        server.wait()
        if not keep:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
