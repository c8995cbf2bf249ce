"""Data Arrays: N-d arrays stored by the server as Zarr v3. ``doc.array`` is a
``zarr.Array`` over the server's store (numpy, dask ``from_zarr`` and xarray work on it
unchanged); writes go through the server (``append``, ``write``), reductions run there
(``reduce``). Needs the ``arrays`` extra (numpy, zarr, fsspec, aiohttp)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._progress import progress_bar
from .errors import WendelinError
from .portal import DOCUMENT_CLASSES, FOLDER_CLASSES, Document, Folder

if TYPE_CHECKING:
    import numpy as np
    import zarr

#: Bytes per append or write request (below the server's ``max_body_bytes``, 16 MiB).
PART_BYTES = 8 << 20

RegionLike = str | slice | int | Sequence[slice | int] | None


def region_text(region: RegionLike) -> str:
    """The server's region syntax (``a:b,c:d``, ``:,3``) of a slice, an index, a tuple
    of them, or a string given as is."""
    if region is None:
        return ""
    if isinstance(region, str):
        return region
    items = region if isinstance(region, tuple | list) else (region,)
    out: list[str] = []
    for item in items:
        if isinstance(item, slice):
            if item.step not in (None, 1):
                raise ValueError("regions have no step")
            a = "" if item.start is None else str(item.start)
            b = "" if item.stop is None else str(item.stop)
            out.append(f"{a}:{b}")
        elif isinstance(item, int):
            out.append(str(item))
        else:
            raise TypeError(f"a region holds slices and integers, not {item!r}")
    return ",".join(out)


def _npy(a: np.ndarray) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _row_parts(a: np.ndarray, part_bytes: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) slices of ``a`` of about ``part_bytes`` each."""
    row = max(1, a.itemsize * (int(a[0].size) if a.ndim > 1 and len(a) else 1))
    rows = max(1, part_bytes // row)
    for i in range(0, len(a), rows):
        yield i, a[i : i + rows]


class DataArray(Document):
    """A Data Array (``portal.data_array_module["1"]``)."""

    @property
    def array(self) -> zarr.Array[Any]:
        """The array as a read-only ``zarr.Array`` over the server's Zarr store (HTTP
        through fsspec, with this connection's credentials). Opened anew on each access,
        so it has the current shape."""
        import zarr
        from zarr.storage import FsspecStore

        store = FsspecStore.from_url(
            self.zarr_url,
            storage_options={"headers": self._portal._conn.auth_headers()},
            read_only=True,
        )
        return zarr.open_array(store=store, mode="r")

    @property
    def zarr_url(self) -> str:
        """The URL of the array's Zarr v3 store (give it the ``Authorization`` header)."""
        return self._portal._conn.url(self._api("/zarr"))

    def getShape(self) -> tuple[int, ...]:  # noqa: N802
        """The current shape."""
        return tuple(int(n) for n in self.call("getShape"))

    @property
    def shape(self) -> tuple[int, ...]:
        """The current shape (asked to the server)."""
        return self.getShape()

    def getDtype(self) -> str:  # noqa: N802
        """The dtype's name (``float64``, …)."""
        return str(self.call("getDtype"))

    def read(self, region: RegionLike = None) -> np.ndarray:
        """The region (all by default) as a numpy array, streamed by the server as
        ``.npy`` and read into one preallocated array."""
        import numpy as np

        params = {"region": region_text(region)} if region is not None else None
        conn = self._portal._conn
        with conn.streamed("GET", self._api("/read"), params=params) as reply:
            raw = reply.raw
            version = np.lib.format.read_magic(raw)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(raw)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(raw)
            count = 1
            for n in shape:
                count *= int(n)
            buf = bytearray(count * dtype.itemsize)
            view = memoryview(buf)
            got = 0
            while got < len(view):
                n = raw.readinto(view[got : got + (8 << 20)])
                if not n:
                    raise WendelinError(f"the read of {self.path} ended after {got} bytes")
                got += n
        return np.ndarray(shape, dtype=dtype, buffer=buf, order="F" if fortran else "C")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.read()
        return a if dtype is None else a.astype(dtype)

    def append(
        self, a: np.ndarray, *, part_bytes: int = PART_BYTES, progress: bool = False
    ) -> tuple[int, ...]:
        """Appends rows along the first axis (the other axes must match), in parts of
        about ``part_bytes``. Returns the new shape."""
        import numpy as np

        a = np.asarray(a)
        shape: list[int] = []
        bar = progress_bar(progress, a.nbytes, f"append {self.path}")
        try:
            for _, part in _row_parts(a, part_bytes):
                out = self._portal._conn.json(
                    "POST",
                    self._api("/append"),
                    data=_npy(part),
                    headers={"Content-Type": "application/x-npy"},
                )
                shape = out["shape"]
                bar.update(part.nbytes)
        finally:
            bar.close()
        return tuple(int(n) for n in shape)

    def write(self, region: RegionLike, a: np.ndarray, *, part_bytes: int = PART_BYTES) -> None:
        """Writes ``a`` into ``region`` (``doc.write((slice(0, 10), 2), a)`` or
        ``"0:10,2"``); a region given by slices with a start and stop on the first axis
        is sent in parts of about ``part_bytes``."""
        import numpy as np

        a = np.asarray(a)
        conn = self._portal._conn
        first = region[0] if isinstance(region, tuple | list) and region else region
        splittable = (
            isinstance(first, slice)
            and first.start is not None
            and first.stop is not None
            and a.ndim > 0
            and a.nbytes > part_bytes
        )
        if not splittable:
            conn.request(
                "POST",
                self._api("/write"),
                params={"region": region_text(region)},
                data=_npy(a),
                headers={"Content-Type": "application/x-npy"},
            )
            return
        assert isinstance(first, slice)
        rest = list(region[1:]) if isinstance(region, tuple | list) else []
        for i, part in _row_parts(a, part_bytes):
            sub = (slice(first.start + i, first.start + i + len(part)), *rest)
            conn.request(
                "POST",
                self._api("/write"),
                params={"region": region_text(sub)},
                data=_npy(part),
                headers={"Content-Type": "application/x-npy"},
            )

    def reduce(
        self,
        op: str,
        axis: int | None = None,
        *,
        where: str | None = None,
        region: RegionLike = None,
    ) -> Any:
        """A reduction computed by the server (``sum``, ``mean``, ``min``, ``max``,
        ``count``, …), over ``axis`` or all, of ``region``, of the elements matching
        ``where`` (``gt:0``, …). A scalar, or a numpy array along an axis."""
        params: dict[str, Any] = {"op": op}
        if axis is not None:
            params["axis"] = axis
        if where is not None:
            params["where"] = where
        if region is not None:
            params["region"] = region_text(region)
        out = self._portal._conn.json("GET", self._api("/reduce"), params=params)
        result = out["result"]
        if isinstance(result, list):
            import numpy as np

            return np.asarray(result).reshape(out.get("shape") or (len(result),))
        return result

    def to_dask(self, chunks: Any = None) -> Any:
        """The array as a ``dask.array`` (``dask.array.from_zarr`` over :attr:`array`)."""
        import dask.array as da

        from_zarr: Any = da.from_zarr
        return from_zarr(self.array) if chunks is None else from_zarr(self.array, chunks)

    def to_xarray(self, dims: Sequence[str] | None = None) -> Any:
        """The array as a lazy ``xarray.DataArray`` backed by dask."""
        import xarray as xr

        d = self.to_dask()
        names = list(dims) if dims is not None else [f"dim_{i}" for i in range(d.ndim)]
        return xr.DataArray(d, dims=names, name=self._data.get("title") or self.id)


class DataArrayFolder(Folder):
    """``portal.data_array_module``: ``new_from_numpy``."""

    def new_from_numpy(
        self,
        a: np.ndarray,
        *,
        title: str = "",
        chunks: Sequence[int] | None = None,
        shards: Sequence[int] | None = None,
        part_bytes: int = PART_BYTES,
        progress: bool = False,
        **properties: Any,
    ) -> DataArray:
        """A new Data Array holding ``a`` (any size: sent in parts of about
        ``part_bytes``), chunked as ``chunks`` (the server's default: about 1 MiB per
        chunk), optionally sharded as ``shards``."""
        import numpy as np

        a = np.asarray(a)
        if a.ndim == 0:
            a = a.reshape(1)
        body: dict[str, Any] = {
            "title": title,
            "dtype": a.dtype.name,
            "shape": [0, *a.shape[1:]],
            **properties,
        }
        if chunks is not None:
            body["chunk_shape"] = list(chunks)
        if shards is not None:
            body["shard_shape"] = list(shards)
        doc = self.newContent(**body)
        assert isinstance(doc, DataArray)
        if len(a):
            doc.append(a, part_bytes=part_bytes, progress=progress)
        return doc.reload()  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<DataArrayFolder {self.name}>"


DOCUMENT_CLASSES["Data Array"] = DataArray
FOLDER_CLASSES["data_array_module"] = DataArrayFolder
