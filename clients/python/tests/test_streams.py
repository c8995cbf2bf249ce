"""Data Streams: sizes, reads, ranged iteration in constant memory, msgpack records,
resumable appends that survive killed connections."""

from __future__ import annotations

import io
import os
import urllib.parse
from pathlib import Path

import msgpack
import pytest

import wendelin
from wendelin import Invalid

from .conftest import Server
from .proxy import KillingProxy


def new_stream(portal: wendelin.Portal, title: str) -> wendelin.DataStream:
    doc = portal.data_stream_module.newContent(title=title)
    assert isinstance(doc, wendelin.DataStream)
    return doc


def test_size_data_read_iterate(portal: wendelin.Portal, server: Server) -> None:
    s = new_stream(portal, "bytes")
    assert s.getSize() == 0 and s.getData() == b"" and list(s.iterate()) == []
    data = bytes(range(256)) * 1000
    assert s.append(data) == len(data)
    assert s.getSize() == len(data) == len(s)
    assert s.getData() == data
    assert s.read(10, 20) == data[10:20]
    assert s.read(len(data) - 5) == data[-5:]
    chunks = list(s.iterate(chunk_size=1000))
    assert all(len(c) == 1000 for c in chunks) and b"".join(chunks) == data
    odd = list(s.iterate(chunk_size=999, start=7, end=5000))
    assert [len(c) for c in odd] == [999] * 4 + [4993 - 999 * 4]
    assert b"".join(odd) == data[7:5000]
    # Progress bars (tqdm, optional) change nothing of what is read or written.
    assert b"".join(s.iterate(chunk_size=4096, progress=True)) == data
    t = new_stream(portal, "progress")
    assert t.append(data, part_size=100_000, progress=True) == len(data)
    assert t.getData() == data
    # What the client reads is what the API serves.
    assert server.raw("GET", f"/api/v1/{s.path}/data").content == data


def test_get_data_is_refused_above_max_read_bytes(server: Server) -> None:
    small = wendelin.connect(server.base, token=server.token, max_read_bytes=100)
    s = new_stream(small, "big")
    s.append(b"x" * 101)
    with pytest.raises(Invalid) as e:
        s.getData()
    assert "read(start, end)" in e.value.message and "iterate" in e.value.message
    assert s.read(0, 101) == b"x" * 101


def test_records_from_an_offset(portal: wendelin.Portal) -> None:
    s = new_stream(portal, "records")
    records = [
        [1700000000 + i, {"temp": 20.5 + i, "id": i, "raw": b"\x00\x01"}] for i in range(500)
    ]
    s.append(b"".join(msgpack.packb(r) for r in records))
    got = list(s.records())
    assert got == records
    with_offsets = list(s.records(with_offsets=True))
    assert [v for _, v in with_offsets] == records
    offset = with_offsets[199][0]
    assert list(s.records(offset)) == records[200:]
    # A value cut by `end` is left for the next call, which resumes at its offset.
    head = list(s.records(0, offset + 3, with_offsets=True))
    assert [v for _, v in head] == records[:200]
    assert list(s.records(head[-1][0])) == records[200:]
    # The server's readMsgpackChunkList agrees on the boundary.
    server_side = s.readMsgpackChunkList(start=0, end=offset + 3)
    assert server_side["next_offset"] == offset and len(server_side["records"]) == 200


def test_append_bytes_files_and_paths(portal: wendelin.Portal, tmp_path: Path) -> None:
    s = new_stream(portal, "appends")
    assert s.append(b"abc") == 3
    assert s.append(io.BytesIO(b"def" * 10), part_size=4) == 33
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(10_000))
    assert s.append(path, part_size=3000) == 10_033
    assert s.append(str(path)) == 20_033

    class Pipe(io.RawIOBase):
        """A non-seekable source: the total is unknown (`Content-Range: …/*`)."""

        def __init__(self) -> None:
            self.left = 5

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            if not self.left:
                return b""
            self.left -= 1
            return b"pipe!"

        def seekable(self) -> bool:
            return False

        def tell(self) -> int:
            raise io.UnsupportedOperation

    assert s.append(Pipe(), part_size=2) == 20_058  # type: ignore[arg-type]
    expected = b"abc" + b"def" * 10 + path.read_bytes() * 2 + b"pipe!" * 5
    assert s.getData() == expected
    with pytest.raises(FileNotFoundError):
        s.append(tmp_path / "missing")


def test_another_writer_during_an_append_is_a_conflict(portal: wendelin.Portal) -> None:
    s = new_stream(portal, "two writers")
    other = portal[s.path]
    assert isinstance(other, wendelin.DataStream)

    class Meddling(io.RawIOBase):
        """Another writer appends between the first and second part."""

        def __init__(self) -> None:
            self.parts = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            self.parts += 1
            if self.parts == 2:
                other.append(b"theirs")
            return b"mine" if self.parts <= 3 else b""

    with pytest.raises(wendelin.Conflict) as e:
        s.append(Meddling(), part_size=4)  # type: ignore[arg-type]
    assert "resume the upload at byte 10" in e.value.message
    assert s.getData() == b"minetheirs"


def test_interrupted_upload_resumes_without_duplicates(server: Server) -> None:
    port = urllib.parse.urlparse(server.base).port
    assert port is not None
    proxy = KillingProxy(port)
    try:
        p = wendelin.connect(proxy.url, token=server.token)
        p._conn.backoff = 0.01
        s = new_stream(p, "interrupted")
        data = os.urandom(10 * 100_000 + 17)
        # 1. The server appends the 3rd part, the answer is lost with the connection.
        proxy.kill_response(3, b"HTTP/1.1 308")
        # 2. The 6th part is cut midway: the server never gets it whole.
        proxy.kill_request(6, 40_000)
        assert s.append(data, part_size=100_000) == len(data)
        assert proxy.killed == 2
        assert s.getSize() == len(data)
        assert s.getData() == data
        # The same through a file, killed on its last answer (200, complete).
        more = os.urandom(250_000)
        proxy.kill_response(1, b"HTTP/1.1 200")
        s2 = new_stream(p, "interrupted-2")
        assert s2.append(io.BytesIO(more), part_size=250_000) == len(more)
        assert proxy.killed == 3
        assert s2.getData() == more
        # Reads resume too: the connection dies in the middle of an iteration.
        proxy.kill_response(1, b"HTTP/1.1 206")
        assert b"".join(s.iterate(chunk_size=65536)) == data
        assert proxy.killed == 4
    finally:
        proxy.close()


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_iterating_a_big_stream_keeps_memory_constant(portal: wendelin.Portal) -> None:
    """A 2 GiB stream (``WENDELIN_CLIENT_STREAM_MIB`` sets another size) iterated with
    the client's RSS growing at most 64 MiB (about 20 s on a debug server)."""
    mib = int(os.environ.get("WENDELIN_CLIENT_STREAM_MIB", "2048"))
    s = new_stream(portal, "big")
    block = os.urandom(1 << 20)
    part = block * 32

    class Repeat(io.RawIOBase):
        def __init__(self) -> None:
            self.left = mib // 32

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            if not self.left:
                return b""
            self.left -= 1
            return part

    size = s.append(Repeat(), part_size=32 << 20)  # type: ignore[arg-type]
    assert size == mib << 20
    before = _rss()
    peak = before
    total = 0
    for i, chunk in enumerate(s.iterate(chunk_size=1 << 20)):
        assert len(chunk) == 1 << 20
        if i % 97 == 0:
            assert chunk == block
            peak = max(peak, _rss())
        total += len(chunk)
    peak = max(peak, _rss())
    assert total == size
    assert peak - before <= 64 << 20, f"RSS grew {(peak - before) >> 20} MiB"
