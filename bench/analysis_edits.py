#!/usr/bin/env python3
"""A user's edits while a Data Analysis runs: their latency, and the analysis' throughput.

Starts the release `wendelin` binary (WENDELIN_BIN) on a fresh data directory under /tmp,
ingests a MIB MiB stereo int16 WAV through the fluentd path (1 MiB records) before any
transformation exists, creates a Data Operation to edit, then `analysis template-wav
--no-spectrum` (STFT 4096/2048) and the periodic step by hand. While the analysis works
through the stream (8 MiB per run, the default), one client edits the Data Operation's
title (PATCH with its serial) back to back, EVERY seconds apart, and records each edit's
latency and status. Prints the edits' p50/p99/max latency, how many failed, and the
analysis' time and MiB/s. Everything is deleted at the end.
Usage: .venv/bin/python bench/analysis_edits.py [MIB] [EVERY]
"""
import os, shutil, statistics, sys, tempfile, threading, time

import msgpack
import numpy as np
import requests

import harness  # noqa: E402

MIB = int(sys.argv[1]) if len(sys.argv) > 1 else 256
EVERY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
RECORD = 1 << 20


def wav_header(channels, rate, frames):
    data = frames * channels * 2
    return (b"RIFF" + (36 + data).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + (1).to_bytes(2, "little") + channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
            + (rate * channels * 2).to_bytes(4, "little") + (channels * 2).to_bytes(2, "little")
            + (16).to_bytes(2, "little") + b"data" + data.to_bytes(4, "little"))


def main():
    work = tempfile.mkdtemp(prefix="wendelin-bench-edits-", dir="/tmp")
    srv = None
    try:
        srv = harness.Server(
            os.path.join(work, "data"),
            env={"WENDELIN_INGESTION_MAX_BODY_BYTES": str(4 << 20),
                 "WENDELIN_DATA_OPERATION_ALARM_INTERVAL_SECONDS": "0"},
            before_serve=lambda s: s.cli("ingestion", "add", "audio", "--product", "wav"))
        measure(srv)
    finally:
        if srv:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure(srv):
    h = {"Authorization": "Bearer " + srv.token}
    s = requests.Session()
    frames = (MIB << 20) // 4
    rng = np.random.default_rng(1)
    wav = wav_header(2, 48000, frames) + rng.integers(-32768, 32767, size=2 * frames,
                                                      dtype=np.int16).tobytes()
    size = 0
    for i in range(0, len(wav), RECORD):
        body = msgpack.packb([int(time.time()), {"data": wav[i:i + RECORD]}], use_bin_type=True)
        r = s.post(srv.url("/erp5/portal_ingestion_policies/audio/ingest"),
                   params={"reference": "long.wav"}, data=body, headers=h)
        assert r.status_code == 204, r.text
        size += len(body)
    del wav
    r = s.post(srv.url("/api/v1/data_operation_module"), headers=h,
               json={"portal_type": "Data Operation", "id": "edited", "script_id": "noop"})
    assert r.status_code == 201, r.text
    serial = r.json()["serial"]
    srv.cli("analysis", "template-wav", "--product", "wav", "--no-spectrum",
            "--window", "4096", "--hop", "2048")
    lat, failed = [], []
    done = threading.Event()

    def edit():
        nonlocal serial
        e = requests.Session()
        n = 0
        while not done.is_set():
            n += 1
            t = time.perf_counter()
            r = e.patch(srv.url("/api/v1/data_operation_module/edited"), headers=h,
                        json={"serial": serial, "title": f"edit {n}"})
            lat.append(time.perf_counter() - t)
            if r.status_code == 200:
                serial = r.json()["serial"]
            else:
                failed.append(r.status_code)
                serial = e.get(srv.url("/api/v1/data_operation_module/edited"),
                               headers=h).json()["serial"]
            time.sleep(EVERY)

    t0 = time.perf_counter()
    r = s.post(srv.url("/api/v1/data_analysis_module/ERP5Site_createDataAnalysisList"),
               json={}, headers=h)
    assert r.status_code == 200, r.text
    aid = None
    while aid is None:
        items = s.get(srv.url("/api/v1/data_analysis_module"), headers=h).json()["items"]
        aid = next((i["id"] for i in items if "-long-" in i["id"]), None)
        time.sleep(0.01)
    editor = threading.Thread(target=edit)
    editor.start()
    windows = (frames - 4096) // 2048 + 1
    while True:
        pi = s.get(srv.url(f"/api/v1/progress_indicator_module/{aid}-progress"), headers=h)
        shape = s.get(srv.url(f"/api/v1/data_array_module/{aid}-stft_0/getShape"), headers=h)
        if (pi.status_code == 200 and pi.json().get("int_offset_index", 0) >= size
                and shape.status_code == 200 and shape.json()[0] >= windows):
            break
        time.sleep(0.05)
    took = time.perf_counter() - t0
    done.set()
    editor.join()
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000  # noqa: E731
    print(f"{MIB} MiB WAV, analysis {took:.1f} s ({MIB / took:.0f} MiB/s); "
          f"{len(lat)} edits during it: p50 {q(0.5):.0f} ms, p99 {q(0.99):.0f} ms, "
          f"max {lat[-1] * 1000:.0f} ms, mean {statistics.mean(lat) * 1000:.0f} ms; "
          f"failed {len(failed)} {sorted(set(failed))}")


if __name__ == "__main__":
    main()
