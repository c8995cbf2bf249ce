"""Data Arrays: zarr.Array over the server's store, appends and writes in parts,
reductions on the server, dask and xarray."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import wendelin

from .conftest import Server


def test_new_from_numpy_in_parts_and_the_zarr_array(portal: wendelin.Portal) -> None:
    a = np.arange(20_000, dtype="float64").reshape(2000, 10) * 0.25
    # 40 KiB parts: the 160 KB array goes in several requests.
    doc = portal.data_array_module.new_from_numpy(
        a, title="ramp", chunks=(128, 10), part_bytes=40_000
    )
    assert isinstance(doc, wendelin.DataArray)
    assert doc.title == "ramp" and doc.getShape() == (2000, 10) == doc.shape
    assert doc.getDtype() == "float64"
    z = doc.array
    assert z.shape == (2000, 10) and z.dtype == np.float64 and z.chunks == (128, 10)
    assert np.array_equal(z[:], a)
    assert np.array_equal(z[17:1900:7, 3], a[17:1900:7, 3])
    # numpy's mean of the zarr array equals the server's reduction.
    assert np.mean(doc.array[:]) == pytest.approx(doc.reduce("mean"), rel=1e-12)
    assert np.allclose(doc.reduce("sum", axis=0), a.sum(axis=0))
    assert np.allclose(doc.reduce("max", axis=1), a.max(axis=1))
    assert doc.reduce("count", where="gt:100") == int((a > 100).sum())
    assert doc.reduce("sum", region=(slice(0, 10), 2)) == pytest.approx(a[0:10, 2].sum())
    assert np.array_equal(doc.read(), a)
    assert np.array_equal(doc.read((slice(5, 9), slice(None))), a[5:9])
    assert np.array_equal(doc.read("5:9,1:3"), a[5:9, 1:3])
    assert np.array_equal(np.asarray(doc), a)


def test_append_and_write_regions(portal: wendelin.Portal) -> None:
    doc = portal.data_array_module.new_from_numpy(
        np.zeros((0, 3), dtype="int32"), title="grow", chunks=(16, 3)
    )
    assert doc.getShape() == (0, 3)
    rows = np.arange(300, dtype="int32").reshape(100, 3)
    assert doc.append(rows, part_bytes=100) == (100, 3)  # 8 rows per part
    assert doc.append(rows[:5]) == (105, 3)
    expected = np.concatenate([rows, rows[:5]])
    assert np.array_equal(doc.array[:], expected)
    patch = -np.arange(60, dtype="int32").reshape(20, 3)
    doc.write((slice(10, 30), slice(None)), patch, part_bytes=48)  # in parts of 4 rows
    expected[10:30] = patch
    doc.write("0:1,1", np.array([[7]], dtype="int32"))
    expected[0, 1] = 7
    assert np.array_equal(doc.array[:], expected)
    assert doc.reduce("min") == expected.min()
    with pytest.raises(wendelin.WendelinError) as e:
        doc.append(np.zeros((2, 4), dtype="int32"))
    assert e.value.status in (400, 422) and e.value.message


def test_dask_and_xarray_open_the_array(portal: wendelin.Portal) -> None:
    da = pytest.importorskip("dask.array")
    xr = pytest.importorskip("xarray")
    a = np.random.default_rng(7).normal(size=(500, 4))
    doc = portal.data_array_module.new_from_numpy(a, title="random", chunks=(64, 4))
    d = da.from_zarr(doc.array)
    assert d.chunks[0][0] == 64
    assert float(d.mean().compute()) == pytest.approx(doc.reduce("mean"), rel=1e-12)
    assert np.allclose(doc.to_dask().sum(axis=0).compute(), a.sum(axis=0))
    x = doc.to_xarray(dims=["time", "channel"])
    assert x.dims == ("time", "channel") and x.name == "random"
    assert np.allclose(x.mean(dim="time").values, a.mean(axis=0))
    # A dask cluster's workers get the graph pickled: the store travels with its headers.
    shipped = pickle.loads(pickle.dumps(doc.to_dask()))
    assert float(shipped.mean().compute()) == pytest.approx(float(a.mean()), rel=1e-12)
    # xarray straight on the zarr array, as a data scientist would.
    y = xr.DataArray(doc.array, dims=["t", "c"])
    assert np.allclose(y[10:20].values, a[10:20])


def test_a_session_reads_the_zarr_array_too(portal: wendelin.Portal, server: Server) -> None:
    """With login and password the credentials are the session cookie (and its CSRF
    token for writes), passed to fsspec as headers."""
    server.add_user("dora", "dora-secret-1", ["Manager"])
    dora = wendelin.connect(server.base, login="dora", password="dora-secret-1")
    a = np.arange(12, dtype="int16").reshape(4, 3)
    doc = dora.data_array_module.new_from_numpy(a, title="session")
    assert "Cookie" in dora._conn.auth_headers()
    assert np.array_equal(dora[doc.path].array[:], a)  # type: ignore[union-attr]
    assert doc.append(a) == (8, 3)
    assert doc.reduce("sum") == 2 * int(a.sum())
