#!/usr/bin/env python3
"""Whole-system benchmark: published web pages and chart data.

Starts the release `wendelin` binary on a fresh SQLite data directory, publishes a Web
Site whose front page is a tera template listing 20 published pages (a catalog search as
the visitor), and measures in one run:
  - wrk (2 threads, 64 connections, 10 s, --latency) on GET /ui (the trivial-handler
    ceiling: a redirect, no database) and on GET /web/site/ as an anonymous visitor
    (the page cache: one change-generation read per request, then the cached page):
    req/s and p99 side by side;
  - the decimation of a float64 Data Array of N points (default 100M, appended over HTTP
    in 64 MiB raw pieces) to 1,200 bins: GET …/decimate?bins=1200&format=f64, median and
    max of 5 runs after one warm-up (end to end on loopback; the body is 28.8 KB).
First chart paint in Chromium is measured by modules/web/tests/chart.rs ("first chart
paint ms", a debug build) — not here.
Usage: python3 bench/web.py [N]   (needs `cargo build --release -p wendelin-server` and
wrk; WENDELIN_BIN=target/debug/wendelin with a small N only to check the script runs)
"""
import array as pyarray
import json, os, re, shutil, statistics, subprocess, sys, tempfile, time
import urllib.request

from harness import BIN, free_port, cli, post  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000_000
PIECE = 8 << 20  # float64 elements per append (64 MiB)
WRK_SECONDS = 10


def request(base, token, method, path, body=None, headers=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    h.update(headers or {})
    data = None
    if body is not None:
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        else:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.status, r.read(), r.headers


def wrk(url):
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{WRK_SECONDS}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0


def main():
    data = tempfile.mkdtemp(prefix="wendelin-web-bench-")
    env = dict(os.environ, WENDELIN_DATA_DIR=data, WENDELIN_LOG="warn",
               WENDELIN_MAX_BODY_BYTES=str(80 << 20))
    proc = None
    try:
        cli(env, "init")
        token = cli(env, "user", "token", "add", "manager", "--name", "bench").split()[-1]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                                stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/health")
                break
            except OSError:
                time.sleep(0.05)
        post(base, token, "/api/v1/web_site_module",
             {"portal_type": "Web Site", "id": "site", "title": "Bench", "front_page": "home"})
        request(base, token, "POST", "/api/v1/web_site_module/site/transitions/publish", {})
        body = ('<ul>{% for d in search(query=\'portal_type:"Web Page"\', limit=20) %}'
                '<li>{{ d.title }}</li>{% endfor %}</ul>')
        for i in range(21):
            page = {"portal_type": "Web Page", "title": f"Page {i}", "page_reference": "home" if i == 0 else f"p{i}",
                    "content_type": "text/x-tera" if i == 0 else "text/html",
                    "text_content": body if i == 0 else f"<p>page {i}</p>"}
            _, out, _ = request(base, token, "POST", "/api/v1/web_page_module", page)
            path = json.loads(out)["path"]
            request(base, token, "POST", f"/api/v1/{path}/transitions/publish", {})
        st, out, _ = request(base, "", "GET", "/web/site/")
        assert st == 200 and b"Page 20" in out, out[:300]

        ceiling = wrk(base + "/ui")
        page = wrk(base + "/web/site/")

        _, out, _ = request(base, token, "POST", "/api/v1/data_array_module",
                            {"portal_type": "Data Array", "title": "big", "dtype": "float64", "shape": [0]})
        array = json.loads(out)["path"]
        t0 = time.time()
        done = 0
        while done < N:
            n = min(PIECE, N - done)
            a = pyarray.array("d", (float((done + i) % 1000) for i in range(n)))
            request(base, token, "POST", f"/api/v1/{array}/append", a.tobytes(),
                    {"X-Array-Dtype": "float64", "X-Array-Shape": str(n), "Content-Type": "application/octet-stream"})
            done += n
        load_s = time.time() - t0
        times = []
        for i in range(6):
            t = time.perf_counter()
            st, out, _ = request(base, token, "GET", f"/api/v1/{array}/decimate?bins=1200&format=f64")
            times.append(time.perf_counter() - t)
            assert st == 200 and len(out) == 1200 * 24, (st, len(out))
        times = times[1:]

        print(f"web bench, N = {N:,} points")
        print(f"| GET /ui (ceiling, no database) | {ceiling[0]:,.0f} req/s | p99 {ceiling[1]:.2f} ms | non-2xx/3xx {ceiling[2]} |")
        print(f"| GET /web/site/ anonymous (cached tera page) | {page[0]:,.0f} req/s | p99 {page[1]:.2f} ms | non-2xx {page[2]} |")
        print(f"| decimate {N:,} float64 to 1,200 bins | median {statistics.median(times) * 1000:.1f} ms | max {max(times) * 1000:.1f} ms | (loaded in {load_s:.1f} s) |")
    finally:
        if proc:
            proc.terminate()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
