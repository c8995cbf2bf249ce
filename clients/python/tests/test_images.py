"""Images: uploads from bytes, files and figures; downloads with conversions."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

import wendelin


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG (a gradient), made without Pillow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 7 % 256, y * 5 % 256, 128))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def size_of_png(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG")
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


class Figure:
    """Stands for a matplotlib figure: anything with savefig(file, format=…)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def savefig(self, f: io.BytesIO, format: str = "png", **kw: Any) -> None:  # noqa: A002
        self.calls.append({"format": format, **kw})
        f.write(png(64, 48))


def test_upload_and_download_with_conversions(portal: wendelin.Portal, tmp_path: Path) -> None:
    data = png(300, 200)
    img = portal.image_module.new_from_bytes(data, title="gradient")
    assert isinstance(img, wendelin.Image)
    assert img.title == "gradient" and img.width == 300 and img.height == 200
    assert img.content_type == "image/png"
    assert img.getData() == data == img.download()
    thumb = img.download(display="thumbnail")
    w, h = size_of_png(thumb)
    assert max(w, h) < 300 and w / h == pytest.approx(1.5, rel=0.05)
    assert size_of_png(img.download(width=30, height=30)) == (30, 20)
    assert img.download(format="jpeg", width=50).startswith(b"\xff\xd8\xff")
    assert img.download(format="webp", width=50)[8:12] == b"WEBP"
    img.save(tmp_path / "t.png", display="thumbnail")
    assert (tmp_path / "t.png").read_bytes() == thumb
    # From a path (title from the name) and from a file object.
    path = tmp_path / "plot.png"
    path.write_bytes(png(10, 10))
    from_path = portal.image_module.new_from_file(path)
    assert from_path.title == "plot.png" and from_path.width == 10
    with open(path, "rb") as f:
        from_file = portal.image_module.new_from_file(f, title="opened")
    assert from_file.title == "opened" and from_file.getData() == path.read_bytes()
    # Replacing the bytes of an image.
    from_file.upload(png(20, 5))
    assert (from_file.width, from_file.height) == (20, 5)
    # A figure.
    fig = Figure()
    shot = portal.image_module.new_from_figure(fig, title="figure", dpi=72)
    assert fig.calls == [{"format": "png", "dpi": 72}]
    assert (shot.width, shot.height) == (64, 48)
    assert "data:image/png;base64," in shot._repr_html_()
    # Bytes that are not an image are refused, with the server's message.
    with pytest.raises(wendelin.BadRequest) as e:
        portal.image_module.new_from_bytes(b"not an image", title="junk")
    assert e.value.message


def test_matplotlib_figure_when_installed(portal: wendelin.Portal) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1, 2], [2, 0, 1])
    img = portal.image_module.new_from_figure(fig, title="plt")
    assert (img.width, img.height) == (100, 50)
