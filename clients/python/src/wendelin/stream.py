"""Data Streams: append-only bytes, read by ranges in constant memory, appended with
the server's resumable upload."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import IO, Any, Literal, overload

import requests
import urllib3

from ._progress import progress_bar
from .errors import Conflict, Invalid, Unavailable, WendelinError
from .portal import DOCUMENT_CLASSES, Document

#: Bytes per upload request (below the server's ``[data_stream] max_upload_bytes``).
UPLOAD_PART = 8 << 20
#: Bytes per chunk yielded by ``iterate`` unless told otherwise.
READ_CHUNK = 1 << 20
_READ_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
)


class DataStream(Document):
    """A Data Stream (``portal.data_stream_module["1"]``)."""

    def getSize(self) -> int:  # noqa: N802
        """Committed bytes."""
        return int(self.call("getSize"))

    def __len__(self) -> int:
        return self.getSize()

    def getData(self) -> bytes:  # noqa: N802
        """The whole stream, refused (:class:`~wendelin.errors.Invalid`) above the
        portal's ``max_read_bytes`` (16 MiB, the server's default): use
        :meth:`read` or :meth:`iterate` for more."""
        size = self.getSize()
        limit = self._portal.max_read_bytes
        if size > limit:
            raise Invalid(
                f"the stream holds {size} bytes, more than max_read_bytes ({limit}): "
                "read it by ranges with read(start, end) or iterate(chunk_size=…)"
            )
        return self.read(0, size)

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """The bytes ``[start, end)`` (``end`` defaults to the size)."""
        return b"".join(self.iterate(start=start, end=end, chunk_size=4 << 20))

    def iterate(
        self,
        chunk_size: int = READ_CHUNK,
        *,
        start: int = 0,
        end: int | None = None,
        progress: bool = False,
    ) -> Iterator[bytes]:
        """The bytes ``[start, end)`` in chunks of ``chunk_size`` (the last may be
        shorter), over one streamed ranged request: memory stays one chunk whatever the
        size. A connection lost midway is resumed from the next byte."""
        if end is None:
            end = self.getSize()
        pos = start
        failures = 0
        conn = self._portal._conn
        bar = progress_bar(progress, end - start, f"read {self.path}")
        try:
            while pos < end:
                headers = {"Range": f"bytes={pos}-{end - 1}"}
                try:
                    with conn.streamed("GET", self._api("/data"), headers=headers) as reply:
                        for chunk in _exact_chunks(reply, chunk_size, end - pos):
                            pos += len(chunk)
                            bar.update(len(chunk))
                            yield chunk
                except (*_READ_ERRORS, Unavailable) as e:
                    failures += 1
                    if failures > conn.retries:
                        raise Unavailable(f"reading {self.path} at byte {pos}: {e}") from e
                    conn._sleep_before_retry(failures - 1, None)
        finally:
            bar.close()

    @overload
    def records(
        self, start: int = 0, end: int | None = None, *, with_offsets: Literal[False] = False
    ) -> Iterator[Any]: ...
    @overload
    def records(
        self, start: int = 0, end: int | None = None, *, with_offsets: Literal[True]
    ) -> Iterator[tuple[int, Any]]: ...
    def records(
        self, start: int = 0, end: int | None = None, *, with_offsets: bool = False
    ) -> Iterator[Any]:
        """The msgpack values stored from byte ``start`` (a value boundary: 0 or an
        offset this gave) to ``end``; a value cut by ``end`` is left for the next call.
        With ``with_offsets`` each value comes as ``(next_offset, value)``: resume from
        ``next_offset``. Decoded in constant memory as the bytes arrive."""
        import msgpack

        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0)
        for chunk in self.iterate(start=start, end=end):
            unpacker.feed(chunk)
            for value in unpacker:
                if with_offsets:
                    yield (start + unpacker.tell(), value)
                else:
                    yield value

    def append(
        self,
        data: bytes | bytearray | memoryview | IO[bytes] | str | os.PathLike[str],
        *,
        part_size: int = UPLOAD_PART,
        progress: bool = False,
    ) -> int:
        """Appends bytes, a binary file object or the file at a path, in parts of
        ``part_size`` through the server's resumable upload (``PUT …/data`` with
        ``Content-Range``). A part whose answer is lost (connection killed, 503) is
        resumed from what the server holds: no byte is sent twice or lost. Returns
        the stream's new size.

        The stream must have no other writer during the upload: the resumable upload
        appends only at the size it expects (another writer's bytes make it a
        :class:`~wendelin.errors.Conflict`)."""
        if isinstance(data, str | os.PathLike):
            with open(data, "rb") as f:
                return self.append(f, part_size=part_size, progress=progress)
        source: IO[bytes] = (
            io.BytesIO(bytes(data)) if isinstance(data, bytes | bytearray | memoryview) else data
        )
        total = _remaining(source)
        base = self._committed()
        sent = 0
        bar = progress_bar(progress, total, f"append {self.path}")
        failures = 0
        conn = self._portal._conn
        pending = b""
        try:
            while True:
                if not pending:
                    pending = source.read(part_size)
                    if not pending:
                        break
                at = base + sent
                last = at + len(pending) - 1
                whole = "*" if total is None else str(base + total)
                try:
                    reply = conn.request(
                        "PUT",
                        self._api("/data"),
                        data=pending,
                        headers={
                            "Content-Range": f"bytes {at}-{last}/{whole}",
                            "Content-Type": "application/octet-stream",
                        },
                        ok=(308,),
                        retry_connection=False,
                    )
                    reply.close()
                    done = len(pending)
                except Unavailable as e:
                    # The answer was lost or the server stayed busy: ask how far it got.
                    # (A Conflict is the server refusing bytes at the wrong offset:
                    # another writer appended; it propagates.)
                    failures += 1
                    if failures > conn.retries:
                        raise
                    conn._sleep_before_retry(failures - 1, None)
                    held = self._committed() - at
                    if not 0 <= held <= len(pending):
                        raise Conflict(
                            f"the stream changed during the upload (expected {at} bytes, "
                            f"then at most {len(pending)} more): another writer? {e}",
                            409,
                            "conflict",
                        ) from e
                    done = held
                sent += done
                bar.update(done)
                pending = pending[done:]
        finally:
            bar.close()
        return base + sent

    def _committed(self) -> int:
        """How far the server holds the stream (``Content-Range: bytes */*``)."""
        reply = self._portal._conn.request(
            "PUT",
            self._api("/data"),
            headers={"Content-Range": "bytes */*"},
            data=b"",
            ok=(308,),
            retry_connection=True,
        )
        reply.close()
        got = reply.headers.get("Range")
        if not got:
            return 0
        try:
            return int(got.split("-")[-1]) + 1
        except ValueError as e:
            raise WendelinError(f"unexpected Range in 308: {got!r}") from e


def _remaining(source: IO[bytes]) -> int | None:
    """Bytes left in a seekable file, else None."""
    try:
        here = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(here)
        return end - here
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None


def _exact_chunks(reply: requests.Response, size: int, limit: int) -> Iterator[bytes]:
    """The body in chunks of exactly ``size`` bytes (the last may be shorter); raises
    ChunkedEncodingError if the body ends early."""
    raw = reply.raw
    got = 0
    while got < limit:
        want = min(size, limit - got)
        chunk = raw.read(want)
        if not chunk:
            raise requests.exceptions.ChunkedEncodingError(
                f"the body ended after {got} of {limit} bytes"
            )
        while len(chunk) < want:
            more = raw.read(want - len(chunk))
            if not more:
                break
            chunk += more
        got += len(chunk)
        yield chunk


DOCUMENT_CLASSES["Data Stream"] = DataStream
