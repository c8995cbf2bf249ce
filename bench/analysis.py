#!/usr/bin/env python3
"""Whole-system benchmark: Data Analysis (decode + STFT of an ingested WAV) against numpy
doing the same on the file, in one run.

Starts the release `wendelin` binary on a fresh data directory under /tmp, creates the
policy `audio` (product `wav`), and measures:
  (a) decode + STFT (window 4096, hop 2048, Hann, magnitude, channel 0) of a GIB GiB
      stereo int16 WAV, ingested first through the fluentd path in 1 MiB records
      {"data": bytes} with no transformation yet; then `analysis template-wav
      --no-spectrum` and the periodic step started by hand: time until the Progress
      Indicator's offset is the stream's size and the STFT holds all its rows; the server's peak RSS (VmHWM after
      clear_refs) meanwhile. numpy: the same file read in 64 MiB blocks, channels split
      (copies), STFT of channel 0 (sliding windows × numpy.hanning, rfft, abs);
  (b) the time from the acknowledgement of a 1 MiB append to its outputs being visible
      (offset caught up), on the long stream of (a) and on a 1 MiB stream (median of
      ROUNDS interleaved rounds);
  (c) ingest-ack to output-visible latency under a steady 1 MiB/s ingestion (64 KiB
      every 62.5 ms for SECONDS s): p50, p99, max.
Everything is deleted at the end. Needs `cargo build --release`, .venv with numpy,
msgpack and requests; root for clear_refs (else RSS is VmHWM since start).
Usage: .venv/bin/python bench/analysis.py [GIB] [SECONDS] [--no-numpy] [--spectrum] [--only-a]
  --no-numpy: the WAV is generated record by record straight into the ingestion (no file,
  no numpy run): (a) gives the server's time only; for (b) on a long stream without the
  disk the file would take (8 GiB in, with the outputs, needs ~32 GiB instead of ~40).
  SECONDS 0 skips (c).
  --spectrum: the template's `spectrum_0` too (|rfft| of all of channel 0, refused above
  the memory budget: 256 MiB by default, ~44 MiB of stereo int16); numpy is not asked to
  compute it, so use it with --no-numpy to time a backlog with a whole-signal spectrum.
  BENCH_DIR=<dir>: where the data directory and the WAV file go (default /tmp); e.g.
  /dev/shm takes the disk out (the server's compute against numpy's, not durability).
  --only-a: (a) only, (b) and (c) skipped (shorter runs under the bench lock).
  --float32: the STFT stored as float32 (the template's --stft-dtype float32), and numpy
  computing it in float32 (numpy 2's float32 FFT: complex64, then abs).
  BENCH_KEEP=1: the work directory is left in place (its path printed) instead of deleted.
  On ext4 without a journal (these VMs) the kernel skips, one by one, every inode freed
  in the last 5 minutes each time it allocates a new one: a run started within 5 minutes
  of deleting an earlier run's ~6,000 files spends much of its time there (10.4 s
  against 5.3-6.1 s, bench/RESULTS.md 2026-12-07 23:20 UTC). Keep the runs' directories
  and delete them all afterwards, or wait 5 minutes between runs.
  BENCH_LOG=<filter>: the server's log filter (default warn; its log goes to stderr),
  e.g. BENCH_LOG=wendelin_data_operation=debug for the per-run phase timings.
"""
import faulthandler, os, shutil, signal, statistics, sys, tempfile, threading, time

import msgpack
import numpy as np
import requests

import harness  # noqa: E402

NO_NUMPY = "--no-numpy" in sys.argv
SPECTRUM = "--spectrum" in sys.argv
ONLY_A = "--only-a" in sys.argv
FLOAT32 = "--float32" in sys.argv
ARGS = [a for a in sys.argv[1:] if a not in ("--no-numpy", "--spectrum", "--only-a", "--float32")]
DTYPE = np.float32 if FLOAT32 else np.float64
GIB = float(ARGS[0]) if len(ARGS) > 0 else 1
SECONDS = float(ARGS[1]) if len(ARGS) > 1 else 60
RECORD = 1 << 20
ROUNDS = 10
W, H = 4096, 2048


def wav_header(channels, rate, frames):
    data = frames * channels * 2
    riff = 36 + data
    if riff > 0xFFFFFFFF:  # too long for RIFF's sizes: a live stream's header, sizes unknown
        data = riff = 0xFFFFFFFF
    return (b"RIFF" + riff.to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + (1).to_bytes(2, "little") + channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
            + (rate * channels * 2).to_bytes(4, "little") + (channels * 2).to_bytes(2, "little")
            + (16).to_bytes(2, "little") + b"data" + data.to_bytes(4, "little"))


class Server(harness.Server):
    """The harness's server with the `audio` policy (product `wav`), 4 MiB ingestion
    bodies, no periodic step (the bench runs it), and a requests session."""

    def __init__(self, data):
        super().__init__(data, env={"WENDELIN_INGESTION_MAX_BODY_BYTES": str(4 << 20),
                                    "WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS": "0",
                                    "WENDELIN_LOG": os.environ.get("BENCH_LOG", "warn")},
                         before_serve=lambda s: s.cli("ingestion", "add", "audio", "--product", "wav"))
        self.h = {"Authorization": "Bearer " + self.token}
        self.s = requests.Session()

    def post(self, tag, piece):
        body = msgpack.packb([int(time.time()), {"data": piece}], use_bin_type=True)
        r = self.s.post(self.url("/erp5/portal_ingestion_policies/audio/ingest"),
                        params={"reference": tag}, data=body, headers=self.h)
        assert r.status_code == 204, r.text
        return len(body)

    def analyses(self):
        return [i["id"] for i in self.s.get(self.url("/api/v1/data_analysis_module"),
                                             headers=self.h).json()["items"]]

    def offset(self, aid):
        r = self.s.get(self.url(f"/api/v1/progress_indicator_module/{aid}-progress"), headers=self.h)
        return r.json().get("int_offset_index", 0) if r.status_code == 200 else 0

    def step(self):
        r = self.s.post(self.url("/api/v1/data_analysis_module/ERP5Site_createDataAnalysisList"),
                        json={}, headers=self.h)
        assert r.status_code == 200, r.text

    def stft_rows(self, aid):
        r = self.s.get(self.url(f"/api/v1/data_array_module/{aid}-stft_0/getShape"), headers=self.h)
        return r.json()[0] if r.status_code == 200 else 0

    def wait_offset(self, aid, size, poll=0.005):
        while self.offset(aid) < size:
            time.sleep(poll)
        return time.perf_counter()


def rss_peak(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def io_written(pid):
    """Bytes the process has caused to be sent to the storage layer (/proc/PID/io's
    write_bytes: device writes, whatever the file sizes say), 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_bytes(root):
    """Bytes of the files under `root` (0 when it does not exist)."""
    total = 0
    for d, _, files in os.walk(root):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(d, name))
            except OSError:
                pass
    return total


def disk_rate(work, mib):
    """MiB/s of a loop appending 1 MiB and fdatasync'ing, in `work` (deleted after)."""
    path = os.path.join(work, "disk-rate.bin")
    block = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t0 = time.perf_counter()
    for _ in range(mib):
        os.write(fd, block)
        os.fdatasync(fd)
    dt = time.perf_counter() - t0
    os.close(fd)
    os.unlink(path)
    return mib / dt


def numpy_stft(path, frames):
    """Channels split and the STFT of channel 0, block by block (bounded memory)."""
    win = np.hanning(W).astype(DTYPE)
    block = (64 << 20) // 4 // H * H  # frames per block, a multiple of the hop
    tail = np.empty(0, dtype=np.int16)
    rows = 0
    with open(path, "rb") as f:
        f.seek(44)
        while True:
            raw = f.read(block * 4)
            if not raw:
                break
            x = np.frombuffer(raw, dtype=np.int16).reshape(-1, 2)
            c0, c1 = x[:, 0].copy(), x[:, 1].copy()  # the channel arrays
            del c1
            sig = np.concatenate([tail, c0]).astype(DTYPE)
            if len(sig) >= W:
                n = (len(sig) - W) // H + 1
                frames_view = np.lib.stride_tricks.sliding_window_view(sig, W)[::H][:n]
                rows += len(np.abs(np.fft.rfft(frames_view * win, axis=1)))
                tail = c0[-(len(sig) - n * H):] if len(sig) - n * H > 0 else np.empty(0, np.int16)
            else:
                tail = sig.astype(np.int16)
    return rows


def main():
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where it is
    work = tempfile.mkdtemp(prefix="wendelin-bench-analysis-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    try:
        run(work)
    finally:
        if os.environ.get("BENCH_KEEP"):
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(work):
    srv = Server(os.path.join(work, "data"))
    try:
        measure(srv, work)
    finally:
        srv.stop()


def measure(srv, work):
    frames = int(GIB * (1 << 30)) // 4
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {GIB:g} GiB stereo int16 "
          f"WAV, STFT {W}/{H} Hann, {os.cpu_count()} CPUs")
    # (a) the file, ingested before any transformation exists.
    path = os.path.join(work, "in.wav")
    rng = np.random.default_rng(1)

    def wav_pieces(piece_bytes):
        yield wav_header(2, 48000, frames)
        left = frames
        while left:
            n = min(left, piece_bytes // 4)
            yield rng.integers(-32768, 32767, size=2 * n, dtype=np.int16).tobytes()
            left -= n

    size = 0
    if NO_NUMPY:
        # Records of exactly RECORD bytes, as read from the file below.
        buf = b""
        for piece in wav_pieces(RECORD):
            buf += piece
            while len(buf) >= RECORD:
                size += srv.post("long.wav", buf[:RECORD])
                buf = buf[RECORD:]
        if buf:
            size += srv.post("long.wav", buf)
    else:
        with open(path, "wb") as f:
            for piece in wav_pieces(32 << 20):
                f.write(piece)
        with open(path, "rb") as f:
            while piece := f.read(RECORD):
                size += srv.post("long.wav", piece)
    srv.cli("analysis", "template-wav", "--product", "wav",
            *([] if SPECTRUM else ["--no-spectrum"]), "--window", str(W), "--hop", str(H),
            *(["--stft-dtype", "float32"] if FLOAT32 else []))
    try:
        with open(f"/proc/{srv.proc.pid}/clear_refs", "w") as f:
            f.write("5\n")
    except OSError:
        pass
    data_dir = srv.env["WENDELIN_DATA_DIR"]
    written0 = tree_bytes(data_dir)
    device0 = io_written(srv.proc.pid)
    t0 = time.perf_counter()
    srv.step()
    aid = None
    while aid is None:
        aid = next((a for a in srv.analyses() if "-long-" in a), None)
        time.sleep(0.01)
    srv.wait_offset(aid, size, poll=0.05)
    # The STFT rows may still follow the offset: the work is done when all are there.
    windows = (frames - W) // H + 1
    at_offset = srv.stft_rows(aid)
    while srv.stft_rows(aid) < windows:
        time.sleep(0.05)
    t1 = time.perf_counter()
    server_s = t1 - t0
    written = tree_bytes(data_dir) - written0
    device = io_written(srv.proc.pid) - device0
    peak = rss_peak(srv.proc.pid)
    # What the disk takes: the server's output must reach it (fsync'd) before a run
    # counts, so its write rate bounds the server; numpy writes nothing.
    disk = disk_rate(work, 256)
    nbytes = size
    if NO_NUMPY:
        print(f"(a) decode + STFT of {nbytes / 2**30:.2f} GiB: server {server_s:.1f} s "
              f"({nbytes / server_s / 2**20:.0f} MiB/s), numpy not run (--no-numpy); "
              f"peak server RSS {peak / 2**20:.0f} MiB "
              f"(STFT rows when the offset caught up: {at_offset} of {windows})")
    else:
        t0 = time.perf_counter()
        rows = numpy_stft(path, frames)
        numpy_s = time.perf_counter() - t0
        os.unlink(path)  # its room, for the outputs of (b) and (c)
        print(f"(a) decode + STFT of {nbytes / 2**30:.2f} GiB: server {server_s:.1f} s "
              f"({nbytes / server_s / 2**20:.0f} MiB/s), numpy {numpy_s:.1f} s "
              f"({nbytes / numpy_s / 2**20:.0f} MiB/s, {rows} windows): "
              f"{numpy_s / server_s:.2f}× numpy; peak server RSS {peak / 2**20:.0f} MiB "
              f"(STFT rows when the offset caught up: {at_offset} of {windows})")
    print(f"    the data directory grew by {written / 2**30:.2f} GiB meanwhile "
          f"({written / server_s / 2**20:.0f} MiB/s; the server's device writes "
          f"{device / 2**30:.2f} GiB); this disk's 1 MiB write+fdatasync loop right after: "
          f"{disk:.0f} MiB/s")

    if ONLY_A:
        return
    # (b) 1 MiB appends: to the long stream vs to a 1 MiB stream.
    srv.post("short.wav", wav_header(2, 48000, 1 << 30) + bytes(RECORD - 44))
    srv.step()
    short = None
    while short is None:
        short = next((a for a in srv.analyses() if "-short-" in a), None)
        time.sleep(0.01)
    offsets = {aid: size, short: 0}
    offsets[short] = srv.offset(short)
    while srv.offset(short) == 0:
        time.sleep(0.01)
    offsets[short] = srv.offset(short)
    piece = rng.integers(-32768, 32767, size=RECORD // 2, dtype=np.int16).tobytes()
    times = {aid: [], short: []}
    for _ in range(ROUNDS):
        for a, tag in ((aid, "long.wav"), (short, "short.wav")):
            offsets[a] += srv.post(tag, piece)
            t0 = time.perf_counter()
            times[a].append(srv.wait_offset(a, offsets[a]) - t0)
    long_m, short_m = statistics.median(times[aid]), statistics.median(times[short])
    print(f"(b) 1 MiB append → outputs visible: {long_m * 1000:.0f} ms on the "
          f"{size / 2**30:.2f} GiB stream, {short_m * 1000:.0f} ms on a 1 MiB stream: "
          f"{long_m / short_m:.2f}×")

    if SECONDS <= 0:
        return
    # (c) steady 1 MiB/s: 64 KiB every 62.5 ms; latency from each ack to its visibility.
    piece = bytes(64 << 10)
    acks = []
    done = threading.Event()
    seen = []

    def watch():
        while not done.is_set() or len(seen) < len(acks):
            off = srv.offset(short)
            now = time.perf_counter()
            while len(seen) < len(acks) and acks[len(seen)][1] <= off:
                seen.append(now - acks[len(seen)][0])
            time.sleep(0.005)

    w = threading.Thread(target=watch)
    w.start()
    end = time.perf_counter() + SECONDS
    nxt = time.perf_counter()
    while time.perf_counter() < end:
        offsets[short] += srv.post("short.wav", piece)
        acks.append((time.perf_counter(), offsets[short]))
        nxt += 0.0625
        time.sleep(max(0.0, nxt - time.perf_counter()))
    done.set()
    w.join()
    seen.sort()
    p = lambda q: seen[min(len(seen) - 1, int(q * len(seen)))] * 1000  # noqa: E731
    print(f"(c) steady 1 MiB/s for {SECONDS:g} s: ack → visible p50 {p(0.5):.0f} ms, "
          f"p99 {p(0.99):.0f} ms, max {seen[-1] * 1000:.0f} ms ({len(seen)} appends)")


if __name__ == "__main__":
    main()
