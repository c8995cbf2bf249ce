#!/usr/bin/env python3
"""How fast new chunk files reach the disk by their size and layout: an analysis run's
appends, written as `wendelin_core::store::files::write_new` does (O_DIRECT from an
aligned buffer, the last block padded, the file cut to its length), each batch of ~24
MiB then made durable as `sync_paths` does (fdatasync of every file and directory).

Ways, interleaved in each round (MiB/s of file bytes):
  nested 1 MiB, 1 thread   — Zarr's default keys of a 2-D array (`c/<row>/0`: a new
                             directory per chunk), one file after another;
  flat 1 MiB, 1 thread     — the same files in one directory (keys `c.<row>.0`);
  nested 1 MiB, 2 threads  — zarrs writes the chunks of one append on rayon's pool (2
                             threads on this machine);
  flat 1 / 4 / 8 MiB, 2 threads — fewer, larger files.

Usage: python3 bench/chunk_files.py [DIR] [ROUNDS]   (DIR on the disk under test, default
/tmp; needs ~1 GiB free)
"""
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from chunk_writes import aligned_copy, sync_paths, write_direct

MIB_CHUNK = 1_049_088  # 64 STFT rows of 2049 float64 bins
TOTAL = 768 * MIB_CHUNK
BATCH = 24 * MIB_CHUNK


def one(root, nested, size, threads):
    d = tempfile.mkdtemp(prefix="chunk-files-", dir=root)
    buf = aligned_copy(os.urandom(size))
    n = TOTAL // size
    per = max(1, BATCH // size)

    def write(i):
        if nested:
            parent = os.path.join(d, "c", str(i))
            os.makedirs(parent, exist_ok=True)
            path = os.path.join(parent, "0")
        else:
            parent, path = d, os.path.join(d, f"c.{i}.0")
        write_direct(path, buf, size)
        return [path, parent]

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, n, per):
            written = pool.map(write, range(start, min(n, start + per)))
            paths = {p for pair in written for p in pair}
            if nested:
                paths |= {d, os.path.join(d, "c")}
            sync_paths(sorted(paths), pool)
    rate = n * size / 2**20 / (time.perf_counter() - t)
    shutil.rmtree(d)
    return rate


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    ways = [("nested 1 MiB, 1 thread", True, MIB_CHUNK, 1),
            ("flat 1 MiB, 1 thread", False, MIB_CHUNK, 1),
            ("nested 1 MiB, 2 threads", True, MIB_CHUNK, 2),
            ("flat 1 MiB, 2 threads", False, MIB_CHUNK, 2),
            ("flat 4 MiB, 2 threads", False, 4 * MIB_CHUNK, 2),
            ("flat 8 MiB, 2 threads", False, 8 * MIB_CHUNK, 2)]
    for r in range(rounds):
        print(f"round {r + 1}: " + " | ".join(f"{name} {one(root, *way):.0f}"
                                              for name, *way in ways), flush=True)
    print(f"(MiB/s; {TOTAL / 2**20:.0f} MiB per way, synced per ~24 MiB batch, in {root})")


if __name__ == "__main__":
    main()
