#!/usr/bin/env python3
"""Append throughput of a float64 Data Array over HTTP (`.npy` bodies), the path that keeps
the decimation summaries up to date: a fresh server and array per size class, appends
timed one by one on loopback.
  - 32 MiB appends (4Mi elements; bench/web.py loads its 100M points in 64 MiB ones):
    MiB/s overall;
  - 1 MiB appends (128Ki elements, one default chunk each): median and p90;
  - 1,000-point appends (a live chart's feed, rewriting the tail chunk): median and p90.
Usage: python3 bench/append.py [MIB_TOTAL]   (default 768: 24 appends of 32 MiB; needs
`cargo build --release -p wendelin-server`; compare two binaries with bench/ab.sh)
"""
import shutil, statistics, sys, tempfile, time

from harness import Server  # noqa: E402

TOTAL_MIB = int(sys.argv[1]) if len(sys.argv) > 1 else 768


def timed_appends(srv, piece, count):
    import numpy as np
    array = srv.create(title="a", shape=[0])
    pieces = [(np.arange(i * piece, (i + 1) * piece) % 1000).astype("<f8") for i in range(min(count, 4))]
    times = []
    for i in range(count):
        t = time.perf_counter()
        srv.append(array, pieces[i % len(pieces)])
        times.append(time.perf_counter() - t)
    return times


def main():
    data = tempfile.mkdtemp(prefix="wendelin-append-bench-")
    srv = None
    try:
        srv = Server(data)
        big = timed_appends(srv, 4 << 20, max(1, TOTAL_MIB // 32))
        chunk = timed_appends(srv, 128 << 10, 200)
        small = timed_appends(srv, 1000, 500)
        p90 = lambda v: sorted(v)[int(len(v) * 0.9)]
        ms = lambda v: f"{v * 1000:.2f} ms"
        print(f"| 32 MiB appends ({len(big)}) | {32 * len(big) / sum(big):.0f} MiB/s | median {ms(statistics.median(big))} | max {ms(max(big))} |")
        print(f"| 1 MiB appends (200) | median {ms(statistics.median(chunk))} | p90 {ms(p90(chunk))} | |")
        print(f"| 1,000-point appends (500) | median {ms(statistics.median(small))} | p90 {ms(p90(small))} | |")
    finally:
        if srv:
            srv.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
