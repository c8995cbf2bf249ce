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

Usage: python3 bench/ideal_ingest.py FILE — prints the port it listens on (127.0.0.1),
then serves until killed.
"""

import ctypes
import os
import socket
import sys

WRITEBACK_RUN = 256 << 10
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


def serve_connection(conn: socket.socket, fd: int) -> None:
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
        end += os.write(fd, first)
        left = length - len(first)
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
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    print(sock.getsockname()[1], flush=True)
    while True:
        conn, _ = sock.accept()
        with conn:
            serve_connection(conn, fd)


if __name__ == "__main__":
    main()
