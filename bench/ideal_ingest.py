#!/usr/bin/env python3
"""The ceiling of a durable HTTP append on this machine, for bench/ingest.py.

A minimal HTTP/1.1 sink that does only what any durable ingestion server must do for a
request, in the cheapest order the server itself uses: receive the body, write each
piece of it to the end of one file as it arrives, start the writeback every 256 KiB
(`sync_file_range`, as the server's prewrite does), `fdatasync` once the body is in,
then answer. No authentication, no parsing of the body, no check, no commit record, one
thread, one connection at a time, keep-alive. Whatever the wendelin server does on top of
this (credentials, the msgpack check, the route, the commit record, the hand-over of the
fdatasync to another thread) shows as the distance between the two.

With `--direct` it writes as the server does with `[data_stream] direct_writes`: the body is gathered into whole 4 KiB blocks and written with `O_DIRECT` every
256 KiB, the last block padded with zeros (the next body rewrites it, starting with the
bytes it kept), then one fdatasync.

Usage: python3 bench/ideal_ingest.py FILE [--direct] — prints the port it listens on
(127.0.0.1), then serves until killed.
"""

import ctypes
import mmap
import os
import socket
import sys

WRITEBACK_RUN = 256 << 10
BLOCK = 4096
SYNC_FILE_RANGE_WRITE = 2
LIBC = ctypes.CDLL(None, use_errno=True)


def start_writeback(fd: int, start: int, length: int) -> None:
    LIBC.sync_file_range(
        fd, ctypes.c_int64(start), ctypes.c_int64(length), SYNC_FILE_RANGE_WRITE
    )


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class DirectFile:
    """A file appended with O_DIRECT through a page-aligned stage (an anonymous map)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
        self.stage = mmap.mmap(-1, 2 * WRITEBACK_RUN + BLOCK)
        self.view = memoryview(self.stage)
        self.staged = 0  # bytes in the stage
        self.at = 0  # file offset of the stage's first byte

    def write(self, data: bytes | memoryview) -> None:
        self.view[self.staged : self.staged + len(data)] = data
        self.staged += len(data)
        if self.staged >= WRITEBACK_RUN:
            self.flush(last=False)

    def flush(self, last: bool) -> None:
        full = (
            -(-self.staged // BLOCK) * BLOCK if last else self.staged // BLOCK * BLOCK
        )
        if last:
            self.view[self.staged : full] = bytes(full - self.staged)
        os.pwrite(self.fd, self.view[:full], self.at)
        if last:
            # Keep the partial last block: the next body rewrites it.
            keep = self.staged // BLOCK * BLOCK
        else:
            keep = full
        rest = self.staged - keep
        self.view[:rest] = self.view[keep : self.staged]
        self.staged = rest
        self.at += keep


def serve_connection(conn: socket.socket, fd: int, direct: DirectFile | None) -> None:
    buf = memoryview(bytearray(WRITEBACK_RUN))
    pending = b""
    end = flushed = os.lseek(fd, 0, os.SEEK_END)
    while True:
        while b"\r\n\r\n" not in pending:
            data = conn.recv(65536)
            if not data:
                return
            pending += data
        head, _, rest = pending.partition(b"\r\n\r\n")
        length = content_length(head)
        first = rest[:length]
        pending = rest[length:]
        left = length - len(first)
        if direct:
            # recv in pieces of at most a run, so that the stage never overflows.
            direct.write(first)
            while left > 0:
                got = conn.recv_into(buf, min(left, len(buf)))
                if not got:
                    return
                direct.write(buf[:got])
                left -= got
            direct.flush(last=True)
            os.fdatasync(direct.fd)
        else:
            end += os.write(fd, first)
            while left > 0:
                got = conn.recv_into(buf, min(left, len(buf)))
                if not got:
                    return
                end += os.write(fd, buf[:got])
                left -= got
                upto = end & ~4095
                if upto >= flushed + WRITEBACK_RUN:
                    start_writeback(fd, flushed, upto - flushed)
                    flushed = upto
            os.fdatasync(fd)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )


def main() -> None:
    path = sys.argv[1]
    direct = DirectFile(path + ".direct") if "--direct" in sys.argv[2:] else None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    print(sock.getsockname()[1], flush=True)
    while True:
        conn, _ = sock.accept()
        with conn:
            serve_connection(conn, fd, direct)


if __name__ == "__main__":
    main()
