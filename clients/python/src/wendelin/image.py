"""Images: upload from bytes, a file or a matplotlib figure; download the original or a
conversion made by the server (``display=thumbnail``, ``width=``, ``format=png``, …)."""

from __future__ import annotations

import base64
import html
import io
import os
from typing import IO, Any

from .errors import WendelinError
from .portal import DOCUMENT_CLASSES, FOLDER_CLASSES, Document, Folder

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff(data: bytes) -> str:
    """The content type of PNG, JPEG, GIF or WebP bytes (``application/octet-stream``
    otherwise: the server then refuses them)."""
    for magic, ctype in _MAGIC:
        if data.startswith(magic):
            return ctype
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _read(source: bytes | bytearray | IO[bytes] | str | os.PathLike[str]) -> bytes:
    if isinstance(source, bytes | bytearray):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            return f.read()
    return source.read()


class Image(Document):
    """An Image (``portal.image_module["1"]``)."""

    def upload(
        self,
        source: bytes | bytearray | IO[bytes] | str | os.PathLike[str],
        content_type: str | None = None,
    ) -> Image:
        """Replaces the image's bytes (checked by the server: PNG, JPEG, GIF or WebP
        within its limits), then reads the document again."""
        data = _read(source)
        self._portal._conn.request(
            "PUT",
            self._api("/data"),
            data=data,
            headers={"Content-Type": content_type or sniff(data)},
        )
        self.reload()
        return self

    def download(
        self,
        *,
        display: str | None = None,
        width: int | None = None,
        height: int | None = None,
        format: str | None = None,  # noqa: A002 (the server's parameter)
        quality: int | None = None,
    ) -> bytes:
        """The original bytes, or a conversion: ``display`` (``thumbnail``, ``small``,
        ``medium``, ``large``) or ``width``/``height`` (the largest box), ``format``
        (``png``, ``jpeg``, ``webp``) and ``quality``."""
        params = {
            k: v
            for k, v in {
                "display": display,
                "width": width,
                "height": height,
                "format": format,
                "quality": quality,
            }.items()
            if v is not None
        }
        reply = self._portal._conn.request("GET", self._api("/data"), params=params or None)
        return reply.content

    def getData(self) -> bytes:  # noqa: N802
        """The original bytes."""
        return self.download()

    def save(self, path: str | os.PathLike[str], **conversion: Any) -> None:
        """Writes the image (or a conversion, as :meth:`download`) to a file."""
        with open(path, "wb") as f:
            f.write(self.download(**conversion))

    def to_pil(self, **conversion: Any) -> Any:
        """The image as a ``PIL.Image.Image`` (Pillow needed)."""
        from PIL import Image as PILImage

        return PILImage.open(io.BytesIO(self.download(**conversion)))

    def _repr_html_(self) -> str:
        try:
            thumb = self.download(display="thumbnail", format="png")
        except Exception:  # noqa: BLE001 (a repr must not fail)
            return super()._repr_html_()
        src = "data:image/png;base64," + base64.b64encode(thumb).decode()
        return (
            f"<figure><img src='{src}'/><figcaption>{html.escape(repr(self))}</figcaption></figure>"
        )


class ImageFolder(Folder):
    """``portal.image_module``: new images from bytes, files and matplotlib figures."""

    def new_from_bytes(
        self, data: bytes, *, title: str = "", content_type: str | None = None, **props: Any
    ) -> Image:
        """A new Image holding ``data``."""
        doc = self.newContent(title=title, **props)
        assert isinstance(doc, Image)
        try:
            return doc.upload(data, content_type)
        except WendelinError:
            doc.delete()  # no empty Image left behind
            raise

    def new_from_file(
        self,
        source: IO[bytes] | str | os.PathLike[str],
        *,
        title: str | None = None,
        content_type: str | None = None,
        **props: Any,
    ) -> Image:
        """A new Image from a file (a path or a binary file object); the title defaults
        to the file's name."""
        if title is None:
            name = source if isinstance(source, str | os.PathLike) else getattr(source, "name", "")
            title = os.path.basename(str(name)) if name else ""
        return self.new_from_bytes(_read(source), title=title, content_type=content_type, **props)

    def new_from_figure(
        self,
        fig: Any,
        *,
        title: str = "",
        format: str = "png",  # noqa: A002 (matplotlib's name)
        **savefig: Any,
    ) -> Image:
        """A new Image of a matplotlib figure (anything with ``savefig(file,
        format=…)``), rendered as ``format`` (``png`` by default)."""
        buf = io.BytesIO()
        fig.savefig(buf, format=format, **savefig)
        ctype = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}.get(format)
        return self.new_from_bytes(buf.getvalue(), title=title, content_type=ctype)

    def __repr__(self) -> str:
        return f"<ImageFolder {self.name}>"


DOCUMENT_CLASSES["Image"] = Image
FOLDER_CLASSES["image_module"] = ImageFolder
