"""Wendelin's Python client: the ``context`` a data scientist types.

>>> import wendelin
>>> portal = wendelin.connect("http://127.0.0.1:8080", token="wdl_…")
>>> stream = portal.data_stream_module["1"]
>>> for chunk in stream.iterate(chunk_size=1 << 20): ...
>>> portal.portal_catalog(portal_type="Data Stream", reference="sensor1.temp")
"""

from __future__ import annotations

import os

from ._http import Connection
from .array import DataArray, DataArrayFolder
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    MethodNotAllowed,
    NotFound,
    ServerFault,
    Throttled,
    TooLarge,
    Unauthorized,
    Unavailable,
    WendelinError,
)
from .image import Image, ImageFolder
from .portal import Catalog, CatalogResults, Document, Folder, Portal
from .stream import DataStream

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "Catalog",
    "CatalogResults",
    "Conflict",
    "Connection",
    "DataArray",
    "DataArrayFolder",
    "DataStream",
    "Document",
    "Folder",
    "Forbidden",
    "Image",
    "ImageFolder",
    "Invalid",
    "MethodNotAllowed",
    "NotFound",
    "Portal",
    "ServerFault",
    "Throttled",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "WendelinError",
    "connect",
]


def connect(
    url: str,
    token: str | None = None,
    *,
    login: str | None = None,
    password: str | None = None,
    timeout: float = 300.0,
    retries: int = 6,
    max_read_bytes: int = 16 << 20,
    verify: bool | str = True,
) -> Portal:
    """The portal at ``url`` (``http://host:8080``), with an API token
    (``wendelin user token add LOGIN``; default: the ``WENDELIN_TOKEN`` environment
    variable) or a login and password (a session).

    503 answers are retried ``retries`` times with back-off; ``max_read_bytes`` bounds
    ``DataStream.getData`` like the server's ``[data_stream] max_read_bytes``."""
    if token is None and login is None:
        token = os.environ.get("WENDELIN_TOKEN")
    if token is None and login is None:
        raise ValueError("connect needs token=… (or WENDELIN_TOKEN) or login=… and password=…")
    conn = Connection(
        url,
        token=token,
        login=login,
        password=password,
        timeout=timeout,
        retries=retries,
        verify=verify,
    )
    portal = Portal(conn, max_read_bytes=max_read_bytes)
    portal.me()  # fail now on bad credentials
    return portal
