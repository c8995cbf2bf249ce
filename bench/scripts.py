#!/usr/bin/env python3
"""Whole-system benchmark: user scripts (Rhai) against built-in methods, by URL.

Starts the release `wendelin` binary on a fresh SQLite data directory, creates a Data
Stream and, in portal_skins, the Script `Base_userPath` (body `context.path`: the
trivial user script) and `Base_sumMillion` (a loop of 1,000,000 additions). Then, in one
run, on one keep-alive connection, ROUNDS pairs of (REQUESTS GETs of the built-in
`getPath` — the kernel's module script `Base_getPath` —, REQUESTS GETs of the user script
`userPath`), interleaved A B A B: per pair the median latency of each and their ratio.
Then the million additions, timed end to end (5 calls), beside the trivial script.
Usage: python3 bench/scripts.py [ROUNDS] [REQUESTS]   (needs `cargo build --release -p
wendelin-server`; WENDELIN_BIN=target/debug/wendelin only to check the script runs)
"""
import http.client, json, os, statistics, sys, tempfile, time

from harness import BIN, cli, free_port, post, serve  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
REQUESTS = int(sys.argv[2]) if len(sys.argv) > 2 else 300


def timed(conn, path, token):
    start = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {body[:200]!r}")
    return time.perf_counter() - start, body


def main():
    data = tempfile.mkdtemp(prefix="wendelin-bench-scripts-")
    port = free_port()
    env = dict(os.environ, WENDELIN_DATA_DIR=data, WENDELIN_LOG="warn")
    cli(env, "init")
    cli(env, "user", "add", "mgr", "--role", "Manager", "--password-stdin", stdin="mgr-password-1\n")
    token = cli(env, "user", "token", "add", "mgr").split()[-1]
    with serve(env, port) as base:
        post(base, token, "/api/v1/data_stream_module", {"title": "s", "id": "s"})
        post(base, token, "/api/v1/portal_skins",
             {"portal_type": "Script", "id": "Base_userPath", "body": "context.path"})
        post(base, token, "/api/v1/portal_skins",
             {"portal_type": "Script", "id": "Base_sumMillion",
              "body": "let s = 0; for i in 0..1000000 { s += i; } s"})
        conn = http.client.HTTPConnection("127.0.0.1", port)
        builtin, _ = timed(conn, "/data_stream_module/s/getPath", token)
        user, body = timed(conn, "/data_stream_module/s/userPath", token)
        if json.loads(body) != "data_stream_module/s" and json.loads(body) != "/data_stream_module/s":
            raise SystemExit(f"userPath answered {body!r}")
        print(f"binary: {BIN}; load average before: %.2f %.2f %.2f" % os.getloadavg())
        print("| pair | built-in getPath p50 | user script p50 | ratio |")
        print("|---|---|---|---|")
        ratios, all_a, all_b = [], [], []
        for i in range(ROUNDS):
            a = [timed(conn, "/data_stream_module/s/getPath", token)[0] for _ in range(REQUESTS)]
            b = [timed(conn, "/data_stream_module/s/userPath", token)[0] for _ in range(REQUESTS)]
            ma, mb = statistics.median(a), statistics.median(b)
            ratios.append(mb / ma)
            all_a += a
            all_b += b
            print(f"| {i + 1} | {ma * 1e3:.3f} ms | {mb * 1e3:.3f} ms | {mb / ma:.2f} |")
        print(f"\nmedian of the per-pair ratios: {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}); overall p99 built-in "
              f"{sorted(all_a)[int(len(all_a) * 0.99)] * 1e3:.3f} ms, user script "
              f"{sorted(all_b)[int(len(all_b) * 0.99)] * 1e3:.3f} ms")
        loops = []
        for _ in range(5):
            t, body = timed(conn, "/data_stream_module/s/sumMillion", token)
            if json.loads(body) != 499999500000:
                raise SystemExit(f"sumMillion answered {body!r}")
            loops.append(t)
        trivial = statistics.median(all_b)
        print(f"1,000,000 additions in a script: median {statistics.median(loops) * 1e3:.1f} ms end to end "
              f"(min {min(loops) * 1e3:.1f} ms; the trivial script takes {trivial * 1e3:.2f} ms), "
              f"≈ {(statistics.median(loops) - trivial) * 1e9 / 1e6:.0f} ns per iteration")
        print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
