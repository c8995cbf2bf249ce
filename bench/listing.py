#!/usr/bin/env python3
"""Whole-system benchmark: security-filtered listings over HTTP.

Starts the release `wendelin` binary on a fresh SQLite data directory, fills
data_stream_module with N documents (most owned by erin, one in 200 by frank), then
measures with wrk (2 threads, 32 connections):
  - GET /health                              (the server's ceiling)
  - GET /api/v1/data_stream_module?limit=50  as frank (50 visible of N)
  - the same as erin (almost all visible)
  - GET /api/v1/data_stream_module/1         as erin
Usage: python3 bench/listing.py [N]   (needs `cargo build --release` and wrk)
"""
import os, re, shutil, subprocess, sys, tempfile, threading, time, urllib.request

from harness import BIN, free_port, cli, post  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000


def wrk(url, token=None):
    args = ["wrk", "-t2", "-c32", "-d10s", "--latency", url]
    if token:
        args[1:1] = ["-H", "Authorization: Bearer " + token]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
    return rps, p50, p99


def main():
    data = tempfile.mkdtemp(prefix="wendelin-bench-")
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
        def fill(part):
            for i in range(part, N, 4):
                owner = "frank" if i % 200 == 7 else "erin"
                post(base, tokens[owner], "/api/v1/data_stream_module", {"title": f"stream {i}"})
        threads = [threading.Thread(target=fill, args=(p,)) for p in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fill_s = time.time() - start
        print(f"documents: {N}; created through the API in {fill_s:.1f} s ({N / fill_s:.0f}/s, 4 clients)")
        rows = [
            ("GET /health (ceiling)", wrk(base + "/health")),
            (f"listing, 50 of {N // 200} visible (frank)", wrk(base + "/api/v1/data_stream_module?limit=50", tokens["frank"])),
            (f"listing, 50 of ~{N - N // 200} visible (erin)", wrk(base + "/api/v1/data_stream_module?limit=50", tokens["erin"])),
            ("one document (erin)", wrk(base + "/api/v1/data_stream_module/1", tokens["erin"])),
        ]
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
