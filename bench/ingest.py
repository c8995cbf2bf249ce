#!/usr/bin/env python3
"""Whole-system benchmark: ingestion into Data Streams, in one run.

Starts the release `wendelin` binary on a fresh data directory under /tmp (deleted at the
end) with the Forward listener on, provisions the policy `bench`, then measures:
  (a) HTTP ingestion of 1 MiB msgpack chunks over keep-alive (POST /api/v1/ingest/…,
      bearer token), with 1, C and 2C concurrent clients, against the reference: a plain
      loop appending the same 1 MiB chunks to a file in the same directory with fdatasync
      after each (the same fsync policy as one request). The disk's speed swings between
      runs and within one, so the reference is measured again right before every HTTP
      row, A B A B … for ROUNDS rounds per client count: the table gives the medians of
      both, the median of the per-pair ratios (HTTP / the loop just before it), their
      range, and the server's CPU time per MiB ingested (user + system, from
      /proc/<pid>/stat, over each HTTP row); a loop without fsync is measured once per
      round of the first row, for scale. The HTTP rows of one client count append to one
      stream, created (with its documents) before the first row is timed, as a forwarder
      appends to its tag's stream: the rows measure appends, not stream creation;
  (b) Forward-protocol ingestion of ~100-byte records in PackedForward messages of R
      records each, acknowledged (`chunk`), over K connections;
  (c) the server's peak RSS (VmHWM) after ingesting TOTAL GiB over HTTP.
  (a') at 1 client, after each HTTP row, the same row against a minimal server
      (bench/ideal_ingest.py: receive, write, start the writeback every 256 KiB, fdatasync,
      answer; nothing else; with `--direct`, when the server runs with `[data_stream]
      direct_writes`, the writes go with O_DIRECT in whole blocks): the ceiling of a
      durable HTTP append with this client on this machine, and the server's share of it;
      and after each fdatasync loop of that row, the same loop writing with O_DIRECT
      (whole blocks, the last padded and rewritten by the next chunk, as the server
      writes), for what the device takes when the page cache is left out;
Usage: python3 bench/ingest.py [--a-mib 256] [--rounds 5] [--clients 4] [--total-gib 2]
Needs `cargo build --release -p wendelin-server` and the repository's .venv (msgpack),
which the tests or .ci/run create.
"""
import argparse, http.client, os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

from harness import ROOT, BIN, free_port, cli  # noqa: E402
from ideal_ingest import WRITEBACK_RUN, DirectFile  # noqa: E402

sys.path.insert(0, next(iter(__import__("glob").glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages"))), ""))
import msgpack  # noqa: E402

MIB = 1 << 20


def chunk_1mib():
    """A fluentd-like buffer chunk: [time, record] entries of ~1 KiB, 1 MiB in all."""
    out = bytearray()
    i = 0
    while len(out) < MIB:
        out += msgpack.packb([1700000000 + i, {"seq": i, "payload": "x" * 1000}])
        i += 1
    return bytes(out)


def http_ingest(port, token, body, requests, clients, tag):
    """Posts `requests` bodies over `clients` keep-alive connections; returns seconds."""
    left = [requests]
    lock = threading.Lock()
    errors = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port)
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/x-msgpack"}
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            conn.request("POST", f"/api/v1/ingest/bench/{tag}", body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            if r.status == 503:
                time.sleep(0.05)
                with lock:
                    left[0] += 1
                continue
            if r.status != 200:
                errors.append((r.status, data))
                break
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"ingestion failed: {errors[:3]}")
    return time.perf_counter() - t0


def file_loop(path, body, count, sync):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t0 = time.perf_counter()
    for _ in range(count):
        os.write(fd, body)
        if sync:
            os.fdatasync(fd)
    dt = time.perf_counter() - t0
    os.close(fd)
    os.unlink(path)
    return dt


def direct_loop(path, body, count):
    """The fdatasync loop with O_DIRECT writes, as the server's prewrites go."""
    f = DirectFile(path)
    t0 = time.perf_counter()
    for _ in range(count):
        for i in range(0, len(body), WRITEBACK_RUN):
            f.write(body[i:i + WRITEBACK_RUN])
        f.flush(last=True)
        os.fdatasync(f.fd)
    dt = time.perf_counter() - t0
    os.close(f.fd)
    os.unlink(path)
    return dt


def forward_ingest(port, records_per_msg, messages, connections):
    """PackedForward messages with `chunk`; waits for each ack. Returns (records, seconds)."""
    entries = b"".join(msgpack.packb([1700000000, {"k": "v" * 80, "n": i}]) for i in range(records_per_msg))
    size = len(entries) / records_per_msg

    def worker(c):
        sock = socket.create_connection(("127.0.0.1", port))
        unp = msgpack.Unpacker(raw=False)
        for m in range(messages):
            cid = f"{c}-{m}"
            sock.sendall(msgpack.packb(["bench.fwd.bulk", entries, {"chunk": cid, "size": records_per_msg}]))
            while True:
                got = None
                for o in unp:
                    got = o
                    break
                if got is not None:
                    assert got == {"ack": cid}, got
                    break
                data = sock.recv(65536)
                assert data, "connection closed"
                unp.feed(data)
        sock.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records_per_msg * messages * connections, time.perf_counter() - t0, size


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: the fields after it start past its ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def forward_option(env, address):
    """How this build is told to listen for Forward: the `serve --forward` flag of older
    builds, else `[ingestion] forward` through its environment variable."""
    usage = subprocess.run([BIN, "serve", "--help"], env=env, capture_output=True, text=True).stdout
    if "--forward" in usage:
        return ["--forward", address], {}
    return [], {"WENDELIN_INGESTION_FORWARD": address}


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a-mib", type=int, default=256, help="MiB per row of (a)")
    ap.add_argument("--rounds", type=int, default=5, help="A B pairs per client count in (a)")
    ap.add_argument("--clients", type=int, default=4, help="clients of the (c) run; (a) also runs 1 and twice this")
    ap.add_argument("--total-gib", type=float, default=2)
    ap.add_argument("--fwd-records", type=int, default=10_000)
    ap.add_argument("--fwd-messages", type=int, default=100)
    ap.add_argument("--fwd-connections", type=int, default=2)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="wendelin-bench-", dir="/tmp")
    env = dict(os.environ, WENDELIN_DATA_DIR=os.path.join(tmp, "var"), WENDELIN_LOG="warn",
               WENDELIN_WORKERS="2")
    port, fport = free_port(), free_port()
    server = ideal = None
    try:
        cli(env, "init")
        token = cli(env, "user", "token", "add", "manager").split()[-1]
        # `data` is a reserved id (a stream's bytes): the product is `bulk`.
        cli(env, "ingestion", "add", "bench", "--product", "bulk")
        flag, forward_env = forward_option(env, f"127.0.0.1:{fport}")
        server = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}", *flag],
                                  env=dict(env, **forward_env), stdout=subprocess.DEVNULL,
                                  stderr=open(os.path.join(tmp, "server.log"), "w"))
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        body = chunk_1mib()
        n = args.a_mib
        # warm-up (creates the stream and the ingestion)
        http_ingest(port, token, body, 8, 1, "warm.bulk")
        # The stream of each client count is created here, before any row is timed: a
        # forwarder appends to a stream that exists (its tag's), and the creation (the
        # documents, their catalog and full-text indexing, on a thread of their own for
        # a while after) is no part of the throughput of appends. Then a pause lets that
        # indexing end.
        counts = (1, args.clients, 2 * args.clients)
        for clients in counts:
            http_ingest(port, token, body, 1, 1, f"a{clients}.bulk")
        time.sleep(3)
        mib = len(body) * n / MIB
        plain = os.path.join(tmp, "plain.bin")
        direct = os.environ.get("WENDELIN_DATA_STREAM_DIRECT_WRITES", "false").lower() in ("true", "1")
        ideal = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "ideal_ingest.py"),
                                  os.path.join(tmp, "ideal.bin"), *(["--direct"] if direct else [])],
                                 stdout=subprocess.PIPE, text=True)
        ideal_port = int(ideal.stdout.readline())
        rows = []  # (name, loop MiB/s per round, HTTP MiB/s per round, server CPU ms/MiB per round)
        nosync = []
        directs = []  # (fdatasync loop, O_DIRECT loop) MiB/s per round of the 1-client row
        ceiling = []  # (loop, HTTP, minimal server) MiB/s per round of the 1-client row
        for clients in counts:
            loop, http, cpu = [], [], []
            for r in range(args.rounds):
                loop.append(mib / file_loop(plain, body, n, True))
                if clients == 1:
                    nosync.append(mib / file_loop(plain, body, n, False))
                    directs.append((loop[-1], mib / direct_loop(plain, body, n)))
                before = cpu_seconds(server.pid)
                http.append(mib / http_ingest(port, token, body, n, clients, f"a{clients}.bulk"))
                cpu.append((cpu_seconds(server.pid) - before) * 1000 / mib)
                if clients == 1:
                    ceiling.append((loop[-1], http[-1], mib / http_ingest(ideal_port, token, body, n, 1, "x")))
            rows.append((f"HTTP ingestion, {clients} client{'s' if clients > 1 else ''} (keep-alive)",
                         loop, http, cpu))
        recs, t_fwd, rec_size = forward_ingest(fport, args.fwd_records, args.fwd_messages, args.fwd_connections)
        recs1, t_fwd1, _ = forward_ingest(fport, args.fwd_records, args.fwd_messages, 1)
        hwm_before = vm(server.pid, "VmHWM")
        total = int(args.total_gib * 1024)
        t_total = http_ingest(port, token, body, total, args.clients, "big.bulk")
        hwm = vm(server.pid, "VmHWM")
        load = open("/proc/loadavg").read().split()[:3]
        print(f"## ingestion run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} (load average {' '.join(load)})\n")
        print(f"(a) 1 MiB msgpack chunks, {n} MiB per row, {args.rounds} rounds of (fdatasync loop, HTTP row) "
              "per client count, interleaved:\n")
        print("| writer | fdatasync loop MiB/s (median) | HTTP MiB/s (median) | ratio, median of pairs "
              "| ratios (min–max) | server CPU ms/MiB (median) |")
        print("|---|---|---|---|---|---|")
        for name, loop, http, cpu in rows:
            ratios = [h / a for a, h in zip(loop, http)]
            print(f"| {name} | {statistics.median(loop):.0f} | {statistics.median(http):.0f} "
                  f"| {statistics.median(ratios):.2f}× | {min(ratios):.2f}–{max(ratios):.2f} "
                  f"| {statistics.median(cpu):.2f} |")
        direct_ratio = [d / a for a, d in directs]
        floor = [c / a for a, _, c in ceiling]
        share = [h / c for _, h, c in ceiling]
        print(f"\n(a') the ceiling at 1 client: a minimal server (bench/ideal_ingest.py"
              f"{' --direct' if direct else ''}: receive, write{' with O_DIRECT' if direct else ''}, "
              f"{'every 256 KiB' if direct else 'writeback every 256 KiB'}, fdatasync, answer; no credentials, no check) right after each "
              f"1-client HTTP row: {statistics.median(c for _, _, c in ceiling):.0f} MiB/s (median), "
              f"{statistics.median(floor):.2f}× the fdatasync loop before the pair ({min(floor):.2f}–"
              f"{max(floor):.2f}); the server reaches {statistics.median(share):.2f}× of it "
              f"({min(share):.2f}–{max(share):.2f}, median of per-round ratios)")
        print(f"\nthe same loop writing with O_DIRECT (server's direct_writes "
              f"{'on' if direct else 'off'} in this run), after each 1-client fdatasync loop: "
              f"{statistics.median(d for _, d in directs):.0f} MiB/s (median), "
              f"{statistics.median(direct_ratio):.2f}× the fdatasync loop "
              f"({min(direct_ratio):.2f}–{max(direct_ratio):.2f}); the 1-client row is "
              f"{statistics.median(h / d for (_, d), h in zip(directs, rows[0][2])):.2f}× of it")
        print(f"\nplain file append loop without fsync: {statistics.median(nosync):.0f} MiB/s (median of "
              f"{len(nosync)}); every fdatasync loop: {min(min(r[1]) for r in rows):.0f}–"
              f"{max(max(r[1]) for r in rows):.0f} MiB/s")
        print(f"\n(b) Forward protocol, PackedForward, {args.fwd_records} records of ~{rec_size:.0f} bytes per "
              f"message, ack per message, {args.fwd_connections} connections: {recs} records in {t_fwd:.2f} s = "
              f"{recs / t_fwd:,.0f} records/s (1 connection: {recs1 / t_fwd1:,.0f} records/s)")
        print(f"\n(c) {total / 1024:.1f} GiB over HTTP ({args.clients} clients) in {t_total:.1f} s "
              f"({total / t_total:.0f} MiB/s); server peak RSS (VmHWM) {hwm / MIB:.0f} MiB "
              f"(before this step {hwm_before / MIB:.0f} MiB)")
    finally:
        if ideal:
            ideal.kill()
            ideal.wait()
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
