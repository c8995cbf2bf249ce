#!/usr/bin/env python3
"""The Python client (clients/python) against the baselines of issue 20, in one run:

  (a) reading a GIB GiB float64 Data Array into numpy through the client over loopback
      (`doc.array[:]`, zarr-python over the served store; and `doc.read()`, the streamed
      .npy) vs zarr-python reading the same Zarr directory from local disk (the server's
      own directory under the data dir); target: client ≥ 0.7× local;
  (b) iterating a GIB GiB Data Stream with `stream.iterate()` (1 MiB and 8 MiB chunks) vs
      a plain HTTP range download loop (requests, 8 MiB ranges, one keep-alive session);
      target: client ≥ 0.8× the loop.

Page cache warm for both sides (each is read once before the rounds); medians of ROUNDS
interleaved rounds, MiB/s and ratios printed as a table for bench/RESULTS.md. Starts the
release `wendelin` binary (WENDELIN_BIN overrides) on a fresh data directory under
/tmp, deleted at the end. Needs `cargo build --release -p wendelin-server` and the venv
with the client (`pip install -e './clients/python[arrays]'`).
Usage: .venv/bin/python bench/client.py [GIB] [ROUNDS]
"""

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests
import zarr

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python", "src"))
import wendelin  # noqa: E402

from harness import BIN, cli, free_port  # noqa: E402

GIB = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
SIZE = int(GIB * 1024) << 20  # whole MiB
N = SIZE // 8
CHUNK = 1 << 20  # elements per chunk (8 MiB of float64), as bench/arrays.py
RANGE = 8 << 20  # bytes per request of the plain range loop


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def main():
    top = tempfile.mkdtemp(prefix="wendelin-client-bench-")
    env = dict(os.environ, WENDELIN_DATA_DIR=os.path.join(top, "var"), WENDELIN_LOG="warn",
               WENDELIN_WORKERS="2", WENDELIN_MAX_BODY_BYTES=str(64 << 20),
               WENDELIN_DATA_STREAM_FSYNC="false")
    env.pop("WENDELIN_DATABASE_URL", None)
    cli(env, "init")
    token = cli(env, "user", "token", "add", "manager", "--name", "bench").split()[-1]
    port = free_port()
    proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                requests.get(base + "/health", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        portal = wendelin.connect(base, token=token)
        print(f"# bench/client.py {GIB} GiB, {ROUNDS} rounds; {platform.node()}, "
              f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, binary {BIN}")

        # (a) the array.
        a = np.arange(N, dtype="float64") * 0.5
        t, doc = timed(lambda: portal.data_array_module.new_from_numpy(
            a, title="bench", chunks=(CHUNK,), part_bytes=32 << 20))
        print(f"upload {GIB} GiB array: {t:.1f} s ({SIZE / t / (1 << 20):.0f} MiB/s)")
        local = os.path.join(env["WENDELIN_DATA_DIR"], "arrays", str(doc.uid))
        assert os.path.isfile(os.path.join(local, "zarr.json")), local
        expected_mean = float(a.mean())
        del a

        def local_read():
            return zarr.open_array(local, mode="r")[:]

        def client_zarr():
            return doc.array[:]

        def client_npy():
            return doc.read()

        arrays = {"zarr-python, local dir": local_read, "client doc.array[:]": client_zarr,
                  "client doc.read()": client_npy}
        for f in arrays.values():  # warm the page cache, check the values
            got = f()
            assert got.shape == (N,) and abs(float(got.mean()) - expected_mean) < 1e-6 * expected_mean
            del got
        times = {k: [] for k in arrays}
        for _ in range(ROUNDS):
            for k, f in arrays.items():
                t, got = timed(f)
                del got
                times[k].append(t)

        # (b) the stream.
        stream = portal.data_stream_module.newContent(title="bench")
        block = os.urandom(1 << 20)

        class Repeat:
            left = SIZE >> 20

            def read(self, n=-1):
                if not self.left:
                    return b""
                k = min(self.left, 32)
                self.left -= k
                return block * k

            def tell(self):
                raise OSError

        t, _ = timed(lambda: stream.append(Repeat(), part_size=32 << 20))
        print(f"upload {GIB} GiB stream: {t:.1f} s ({SIZE / t / (1 << 20):.0f} MiB/s)")
        size = stream.getSize()
        assert size == SIZE, size
        url = f"{base}/api/v1/{stream.path}/data"
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"

        def plain_loop():
            n = 0
            for start in range(0, size, RANGE):
                r = session.get(url, headers={"Range": f"bytes={start}-{min(start + RANGE, size) - 1}"})
                r.raise_for_status()
                n += len(r.content)
            return n

        def iterate(chunk):
            return lambda: sum(len(c) for c in stream.iterate(chunk_size=chunk))

        streams = {"plain range loop (8 MiB)": plain_loop,
                   "client iterate(1 MiB)": iterate(1 << 20),
                   "client iterate(8 MiB)": iterate(8 << 20)}
        for f in streams.values():
            assert f() == size
        stimes = {k: [] for k in streams}
        for _ in range(ROUNDS):
            for k, f in streams.items():
                t, n = timed(f)
                assert n == size
                stimes[k].append(t)

        def table(title, results, baseline, target):
            print(f"\n{title}\n| reader | median s | MiB/s | × {baseline} | best-round × |")
            print("|---|---|---|---|---|")
            base_med = statistics.median(results[baseline])
            for k, ts in results.items():
                med = statistics.median(ts)
                best = max(b / t for b, t in zip(results[baseline], ts))
                print(f"| {k} | {med:.3f} | {SIZE / med / (1 << 20):.0f} | {base_med / med:.2f} | {best:.2f} |")
            print(f"(target: ≥ {target}× {baseline})")

        table(f"(a) {GIB} GiB float64 array into numpy", times, "zarr-python, local dir", 0.7)
        table(f"(b) {GIB} GiB stream iterated", stimes, "plain range loop (8 MiB)", 0.8)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
