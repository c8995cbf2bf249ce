#!/usr/bin/env python3
"""Whole-system benchmark: admin UI pages for a logged-in browser session.

Starts the release `wendelin` binary on a fresh SQLite data directory, fills
data_stream_module with N documents (most owned by erin, one in 200 by frank, all
Authors), logs erin and frank in (session cookies, as a browser), then measures with wrk
(2 threads, 64 connections, 10 s each), in one run:
  - GET /ui                                 the ceiling: a trivial actix-web handler in
                                            the same server (a redirect, no database)
  - GET /ui/data_stream_module              listbox page as erin: 50 rows sorted by
                                            modification date, security-filtered, exact
                                            count (almost every document visible)
  - the same as frank                       (50 visible of N)
  - GET /ui/data_stream_module/1            document view page as erin
Before wrk, it waits until the full-text index holds the last document (so that its
catch-up does not compete) and times five sequential GETs of each page: the first is
rendered, the next ones may come from the page cache (pages are cached per session until
the database's change generation moves).
Usage: python3 bench/ui.py [N]   (needs `cargo build --release -p wendelin-server` and wrk)
"""
import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.parse, urllib.request

from harness import BIN, free_port, cli, post  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000


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


def timed_get(url, cookie):
    req = urllib.request.Request(url, headers={"Cookie": cookie})
    start = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        r.read()
        if r.status != 200:
            raise SystemExit(f"{url}: {r.status}")
    return time.perf_counter() - start


def wrk(url, cookie=None):
    args = ["wrk", "-t2", "-c64", "-d10s", "--timeout", "30s", "--latency", url]
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
    data = tempfile.mkdtemp(prefix="wendelin-bench-ui-")
    port = free_port()
    env = dict(os.environ, WENDELIN_DATA_DIR=data, WENDELIN_LOG="warn")
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
        for i in range(N):
            owner = "frank" if i % 200 == 7 else "erin"
            batches[owner].append({"title": f"stream {i}", "reference": f"s{i}",
                                   "description": f"sensor {i % 97}"})
        for owner, docs in batches.items():
            for b in range(0, len(docs), 1000):
                post(base, tokens[owner], "/api/v1/data_stream_module", docs[b:b + 1000])
        fill_s = time.time() - start
        print(f"documents: {N}; created through the API in {fill_s:.1f} s ({N / fill_s:.0f}/s, bulk POSTs of 1000)")
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
        rows = [
            ("GET /ui (ceiling: trivial actix-web handler, same server)", wrk(base + "/ui")),
            (f"listbox, 50 of ~{N - N // 200} visible, by modification date (erin)",
             wrk(base + "/ui/data_stream_module", cookies["erin"])),
            (f"listbox, 50 of {N // 200} visible (frank)", wrk(base + "/ui/data_stream_module", cookies["frank"])),
            ("document view page (erin)", wrk(base + first, cookies["erin"])),
        ]
        print("load average (1, 5, 15 min) after the runs: %.2f %.2f %.2f" % os.getloadavg())
        print("| request | req/s | p50 | p99 |")
        print("|---|---|---|---|")
        for name, (rps, p50, p99) in rows:
            print(f"| {name} | {rps:.0f} | {p50} | {p99} |")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
