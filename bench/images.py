#!/usr/bin/env python3
"""Whole-system benchmark: images and plots against Pillow and matplotlib, in one run.

Starts the release `wendelin` binary on a fresh data directory under /tmp, then:
  (a) thumbnail of a 24-megapixel JPEG (6000 × 4000, quality 90, made here with
      Pillow): the server's conversion `…/data?width=W&height=W` (a new W each time, so
      each is computed, not cached: `X-Image-Conversion: computed`) against Pillow's
      `Image.open` + `thumbnail((W, W))` + PNG save of the same file, interleaved A B A B
      for ROUNDS rounds; the table gives each pair and the median of the per-pair ratios
      (Pillow time / server time: ≥ 1 means the server is at least as fast). The
      upload keeps a preview (1536 px) that such thumbnails are resized from, so (a)
      also gives the upload against Pillow's full decode (`Image.open` + `load`, what
      the upload's check does), and (a') the thumbnail again with the preview file
      deleted: the decode of the original, as for images uploaded before previews;
  (b) line plot PNG (800 × 400) of a 10M-point float64 array: `GET …/plot` against
      matplotlib (Agg) plotting the same numpy array and saving a PNG of the same size,
      interleaved likewise (ratio matplotlib / server);
  (c) the peak RSS (VmHWM, reset with clear_refs before) of a fresh server while it
      plots an array of BIG_GIB GiB of float64 (appended in 32 MiB parts beforehand).
Usage: .venv/bin/python bench/images.py [ROUNDS] [BIG_GIB]   (defaults 5 and 1; the
issue's figure is BIG_GIB = 8: one billion points, 8 GiB of disk). Needs `cargo build
--release -p wendelin-server`, the .venv (numpy, Pillow, matplotlib), root for
clear_refs.
"""
import io, os, shutil, statistics, sys, tempfile, time, urllib.request

import numpy as np
from PIL import Image

from harness import Server  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
BIG_GIB = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
PART = 4 << 20  # elements per append (32 MiB)


def get(srv, path, source=None):
    r = urllib.request.Request(srv.url(path), headers={"Authorization": "Bearer " + srv.token})
    start = time.perf_counter()
    with urllib.request.urlopen(r, timeout=3600) as resp:
        body = resp.read()
        conversion = resp.headers.get("X-Image-Conversion")
        if source is not None and resp.headers.get("X-Image-Source") != source:
            raise SystemExit(f"{path} was converted from {resp.headers.get('X-Image-Source')}, not {source}")
    return time.perf_counter() - start, body, conversion


def put(srv, path, body, ctype):
    r = urllib.request.Request(srv.url(path), data=body, method="PUT",
                               headers={"Authorization": "Bearer " + srv.token, "Content-Type": ctype})
    with urllib.request.urlopen(r, timeout=3600) as resp:
        return resp.status


def jpeg_24mp():
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:4000, 0:6000]
    base = np.stack([(x * 255 // 6000), (y * 255 // 4000), ((x + y) * 255 // 10000)], axis=-1)
    noisy = np.clip(base + rng.integers(-20, 20, size=base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def pillow_decode(data):
    start = time.perf_counter()
    Image.open(io.BytesIO(data)).load()
    return time.perf_counter() - start


def pillow_thumbnail(data, side):
    start = time.perf_counter()
    im = Image.open(io.BytesIO(data))
    im.thumbnail((side, side))
    out = io.BytesIO()
    im.save(out, "PNG")
    return time.perf_counter() - start


def matplotlib_plot(a):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    start = time.perf_counter()
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.plot(a, linewidth=1)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return time.perf_counter() - start


def vmhwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return -1


def table(title, rows, label_a, label_b):
    print(f"\n{title}\n\n| pair | {label_a} | {label_b} | ratio ({label_b} / {label_a}) |\n|---|---|---|---|")
    for i, (a, b) in enumerate(rows, 1):
        print(f"| {i} | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {b / a:.2f} |")
    ratios = [b / a for a, b in rows]
    print(f"\nmedian ratio {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
          f"medians {statistics.median(a for a, _ in rows) * 1e3:.1f} ms vs "
          f"{statistics.median(b for _, b in rows) * 1e3:.1f} ms")


def main():
    work = tempfile.mkdtemp(prefix="wendelin-bench-images-", dir="/tmp")
    srv = Server(os.path.join(work, "data"))
    try:
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
              "%.2f %.2f %.2f" % os.getloadavg())
        # (a) thumbnails
        jpeg = jpeg_24mp()
        rows = []
        for i in range(ROUNDS):
            image = srv.req("POST", "/api/v1/image_module", {"title": f"24 MP {i}"})["path"]
            start = time.perf_counter()
            put(srv, f"/api/v1/{image}/data", jpeg, "image/jpeg")
            rows.append((time.perf_counter() - start, pillow_decode(jpeg)))
        table(f"(a) upload (PUT, checked by a full decode, preview kept) of a 6000 × 4000 JPEG "
              f"({len(jpeg) >> 20} MiB)", rows, "server", "Pillow open + load")
        for source in ("preview", "original"):
            if source == "original":
                derived = os.path.join(work, "data", "images")
                for root, _, files in os.walk(derived):
                    for f in files:
                        if f.endswith("-preview.raw"):
                            os.remove(os.path.join(root, f))
            rows = []
            for i in range(ROUNDS):
                side = 128 + i + (ROUNDS if source == "original" else 0)
                t, _, conversion = get(srv, f"/api/v1/{image}/data?width={side}&height={side}&format=png",
                                       source)
                if conversion != "computed":
                    raise SystemExit(f"conversion {side} was {conversion}, not computed")
                rows.append((t, pillow_thumbnail(jpeg, side)))
            name = "(a)" if source == "preview" else "(a') without the preview:"
            table(f"{name} thumbnail (≤ 128 px, PNG) of a 6000 × 4000 JPEG ({len(jpeg) >> 20} MiB), "
                  f"resized from the {source}", rows, "server", "Pillow")
        # (b) line plot of 10M points
        a = np.cumsum(np.random.default_rng(2).standard_normal(10_000_000))
        arr = srv.create(title="10M", shape=[0], chunk_shape=[1 << 20])
        for s in range(0, len(a), PART):
            srv.append(arr, a[s:s + PART])
        rows = []
        for _ in range(ROUNDS):
            t, png, _ = get(srv, f"/api/v1/{arr}/plot?width=800&height=400")
            if not png.startswith(b"\x89PNG"):
                raise SystemExit("the plot is not a PNG")
            rows.append((t, matplotlib_plot(a)))
        table("(b) line plot PNG 800 × 400 of 10M float64 points", rows, "server", "matplotlib (Agg)")
    finally:
        srv.stop()
    # (c) peak RSS plotting a big array, on a server of its own (the memory the decodes
    # and plots above left to the allocator does not count)
    srv = Server(os.path.join(work, "data-big"))
    try:
        big = srv.create(title="big", shape=[0], chunk_shape=[1 << 20])
        n = int(BIG_GIB * (1 << 30)) // 8
        part = np.arange(PART, dtype=np.float64)
        start = time.time()
        for s in range(0, n, PART):
            srv.append(big, part[: min(PART, n - s)])
        print(f"\n(c) {n:,} points ({BIG_GIB} GiB) appended in {time.time() - start:.0f} s")
        with open(f"/proc/{srv.proc.pid}/clear_refs", "w") as f:
            f.write("5\n")
        t, png, _ = get(srv, f"/api/v1/{big}/plot?width=1200&height=400")
        print(f"plot of {n:,} points: {t:.1f} s, server peak RSS (VmHWM) {vmhwm(srv.proc.pid)} MiB")
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
