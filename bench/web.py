#!/usr/bin/env python3
"""Whole-system benchmark: published web pages and chart data.

Starts the release `wendelin` binary on a fresh SQLite data directory, loads a float64
Data Array of N points (default 100M, appended over HTTP in 64 MiB raw pieces), publishes
a Web Site whose front page is a tera template listing 20 published pages (a catalog
search as the visitor) and whose page `chart` draws the array, and measures in one run:
  - wrk (2 threads, 64 connections, 10 s, --latency) on GET /ui (the trivial-handler
    ceiling: a redirect, no database) and on GET /web/site/ as an anonymous visitor
    (the page cache: one change-generation read per request, then the cached page),
    side by side: req/s and p99;
  - the decimation of the array to 1,200 bins (GET …/decimate?bins=1200&format=f64, as
    the chart asks it through the site): the first request (it summarizes every chunk),
    then median and max of 5; then after an append of 1,000 points (the live chart's
    case: the tail chunk is summarized again), median of 5, and the first after a server
    restart (summaries read from disk) (end to end on loopback: the server's time plus a
    28.8 KB answer);
  - the first chart paint of /web/site/chart in headless Chromium (bench/web_paint.js:
    the Performance API mark "wendelin-chart-drawn", 5 fresh browser contexts).
Usage: python3 bench/web.py [N]   (needs `cargo build --release -p wendelin-server`,
wrk, and for the paint Chromium, node and tests/browser/node_modules; WENDELIN_BIN=
target/debug/wendelin with a small N only to check the script runs)
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


def values(start, n):
    """float64 bytes of (start + i) % 1000 for i < n."""
    try:
        import numpy as np
        return ((np.arange(start, start + n) % 1000).astype("<f8")).tobytes()
    except ImportError:
        return pyarray.array("d", (float((start + i) % 1000) for i in range(n))).tobytes()


def timed_get(base, path, times=5):
    out = []
    for _ in range(times):
        t = time.perf_counter()
        st, body, _ = request(base, "", "GET", path)
        out.append(time.perf_counter() - t)
        assert st == 200 and len(body) == 1200 * 24, (st, len(body))
    return out


def start(env, port):
    """`wendelin serve` on 127.0.0.1:`port`, once it answers /health."""
    proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health")
            break
        except OSError:
            time.sleep(0.05)
    return proc


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
        proc = start(env, port)

        _, out, _ = request(base, token, "POST", "/api/v1/data_array_module",
                            {"portal_type": "Data Array", "title": "big", "dtype": "float64", "shape": [0]})
        array = json.loads(out)["path"]
        array_id = array.rsplit("/", 1)[1]
        t0 = time.time()
        done = 0
        while done < N:
            n = min(PIECE, N - done)
            request(base, token, "POST", f"/api/v1/{array}/append", values(done, n),
                    {"X-Array-Dtype": "float64", "X-Array-Shape": str(n), "Content-Type": "application/octet-stream"})
            done += n
        load_s = time.time() - t0

        post(base, token, "/api/v1/web_site_module",
             {"portal_type": "Web Site", "id": "site", "title": "Bench", "front_page": "home",
              "arrays": [array]})
        request(base, token, "POST", "/api/v1/web_site_module/site/transitions/publish", {})
        body = ('<ul>{% for d in search(query=\'portal_type:"Web Page"\', limit=20) %}'
                '<li>{{ d.title }}</li>{% endfor %}</ul>')
        pages = [("home", "text/x-tera", body)]
        pages += [(f"p{i}", "text/html", f"<p>page {i}</p>") for i in range(1, 20)]
        pages += [("chart", "text/x-tera", f"{{{{ chart(array='{array}', title='big') }}}}")]
        for i, (ref, ct, text) in enumerate(pages):
            page = {"portal_type": "Web Page", "title": f"Page {i}", "page_reference": ref,
                    "content_type": ct, "text_content": text}
            _, out, _ = request(base, token, "POST", "/api/v1/web_page_module", page)
            path = json.loads(out)["path"]
            request(base, token, "POST", f"/api/v1/{path}/transitions/publish", {})
        st, out, _ = request(base, "", "GET", "/web/site/")
        assert st == 200 and b"Page 20" in out, out[:300]

        ceiling = wrk(base + "/ui")
        page = wrk(base + "/web/site/")

        site_path = f"/web/site/_arrays/{array_id}/decimate?bins=1200&format=f64"
        first = timed_get(base, site_path, 1)[0]
        warm = timed_get(base, site_path)
        request(base, token, "POST", f"/api/v1/{array}/append", values(N, 1000),
                {"X-Array-Dtype": "float64", "X-Array-Shape": "1000", "Content-Type": "application/octet-stream"})
        after_append = timed_get(base, site_path, 1)[0]
        grown = timed_get(base, site_path)

        # A new server process: the summaries are read from the array's directory.
        proc.terminate()
        proc.wait()
        proc = start(env, port)
        after_restart = timed_get(base, site_path, 1)[0]

        paint = []
        playwright = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "browser",
                                  "node_modules", "playwright-core")
        chromium = os.environ.get("WENDELIN_CHROMIUM", "/usr/bin/chromium")
        if os.path.isdir(playwright) and os.path.exists(chromium) and shutil.which("node"):
            out = subprocess.run(["node", os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_paint.js")],
                                 env=dict(os.environ, URL=base + "/web/site/chart", CHROMIUM=chromium,
                                          PLAYWRIGHT=playwright, RUNS="5"),
                                 capture_output=True, text=True, check=True).stdout
            print(out.strip())
            paint = [float(m) for m in re.findall(r"paint ([\d.]+) ms", out)]
        else:
            print("skipped: first chart paint (needs chromium, node and tests/browser/node_modules)")

        ms = lambda v: f"{v * 1000:.1f} ms"
        print(f"web bench, N = {N:,} points (loaded in {load_s:.1f} s)")
        print(f"| GET /ui (ceiling, no database) | {ceiling[0]:,.0f} req/s | p99 {ceiling[1]:.2f} ms | non-2xx/3xx {ceiling[2]} |")
        print(f"| GET /web/site/ anonymous (cached tera page) | {page[0]:,.0f} req/s | p99 {page[1]:.2f} ms | non-2xx/3xx {page[2]} |")
        print(f"| ratio page / ceiling | {page[0] / ceiling[0]:.2f} | | |")
        print(f"| decimate {N:,} float64 to 1,200 bins, first (summarizes) | {ms(first)} | | |")
        print(f"| same, warm (5) | median {ms(statistics.median(warm))} | max {ms(max(warm))} | |")
        print(f"| same, first after a 1,000-point append | {ms(after_append)} | | |")
        print(f"| same, warm after it (5) | median {ms(statistics.median(grown))} | max {ms(max(grown))} | |")
        print(f"| same, first after a server restart (summaries on disk) | {ms(after_restart)} | | |")
        if paint:
            print(f"| first chart paint (Chromium, Performance API, 5 runs) | median {statistics.median(paint):.0f} ms | max {max(paint):.0f} ms | |")
    finally:
        if proc:
            proc.terminate()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
