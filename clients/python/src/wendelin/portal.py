"""The portal, its module folders, documents and the catalog, as a data scientist types
them: ``portal.data_stream_module["1"]``, ``portal["data_stream_module/1"]``,
``portal.portal_catalog(portal_type="Data Stream", reference="sensor1.temp")``."""

from __future__ import annotations

import html
import json as _json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, overload

from ._http import Connection, quote_path
from .errors import NotFound

if TYPE_CHECKING:
    from .array import DataArrayFolder
    from .image import ImageFolder

#: Portal types with a richer Python class (filled in by the modules below).
DOCUMENT_CLASSES: dict[str, type[Document]] = {}
#: Module folders with a richer Python class.
FOLDER_CLASSES: dict[str, type[Folder]] = {}

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    """``ContentType`` → ``content_type``."""
    return _CAMEL.sub("_", name).lower()


def _query_value(value: Any) -> str:
    """A literal of the catalog query language."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "NULL"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def build_query(query: str | None = None, **criteria: Any) -> str:
    """The catalog query of a query-language string and keyword criteria (ANDed):
    ``portal_type="Data Stream"`` → ``portal_type:"Data Stream"``; a list is ``in``,
    a ``(low, high)`` tuple a range, ``SearchableText=`` full-text words."""
    parts: list[str] = []
    if query:
        parts.append(f"({query})")
    for key, value in criteria.items():
        if value is None:
            continue
        if key == "SearchableText":
            parts.append(str(value))
        elif isinstance(value, list | set | frozenset):
            parts.append(f"{key}:({', '.join(_query_value(v) for v in value)})")
        elif isinstance(value, tuple) and len(value) == 2:
            parts.append(f"{key}:[{_query_value(value[0])} TO {_query_value(value[1])}]")
        else:
            parts.append(f"{key}:{_query_value(value)}")
    return " AND ".join(parts)


class Portal:
    """A Wendelin server, as a logged-in user sees it. Made by :func:`wendelin.connect`.

    - ``portal["data_stream_module/1"]``: any document by path (a module folder's name
      gives the folder);
    - ``portal.data_stream_module``: a module folder (tab completion lists them);
    - ``portal.portal_catalog(…)``: the catalog;
    - ``portal.me()``: who you are.
    """

    def __init__(self, connection: Connection, *, max_read_bytes: int = 16 << 20) -> None:
        self._conn = connection
        #: ``DataStream.getData`` refuses streams above this (like the server's
        #: ``[data_stream] max_read_bytes``); use ``read``/``iterate`` beyond.
        self.max_read_bytes = max_read_bytes
        self._types: dict[str, Any] | None = None
        self._verbs: dict[tuple[str, str], str] = {}
        self.portal_catalog = Catalog(self)

    # -- discovery --------------------------------------------------------------------

    def types(self) -> dict[str, Any]:
        """``GET /api/v1/types``: portal types, module folders and scripts (cached)."""
        if self._types is None:
            self._types = self._conn.json("GET", "/api/v1/types")
        return self._types

    def module_folders(self) -> list[str]:
        """The names of the module folders (``data_stream_module``, …)."""
        folders = self.types().get("module_folders", [])
        return [str(f["id"] if isinstance(f, dict) else f) for f in folders]

    def me(self) -> dict[str, Any]:
        """``GET /api/v1/me``: login, roles and groups of the caller."""
        out: dict[str, Any] = self._conn.json("GET", "/api/v1/me")
        return out

    # -- access -----------------------------------------------------------------------

    def folder(self, name: str) -> Folder:
        """The module folder ``name``."""
        cls = FOLDER_CLASSES.get(name, Folder)
        return cls(self, name)

    def __getitem__(self, path: str) -> Document | Folder:
        path = path.strip("/")
        if "/" not in path and path in self.module_folders():
            return self.folder(path)
        return self.get(path)

    def get(self, path: str) -> Document:
        """The document at ``path`` (raises :class:`~wendelin.errors.NotFound`)."""
        data = self._conn.json("GET", f"/api/v1/{quote_path(path)}")
        return self._document(data)

    def __getattr__(self, name: str) -> Folder:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self.module_folders():
            return self.folder(name)
        raise AttributeError(f"the portal has no module folder '{name}'")

    def __dir__(self) -> Iterable[str]:
        return [*super().__dir__(), *self.module_folders()]

    @property
    def data_array_module(self) -> DataArrayFolder:
        """Data Arrays (``new_from_numpy``)."""
        from .array import DataArrayFolder

        return DataArrayFolder(self, "data_array_module")

    @property
    def image_module(self) -> ImageFolder:
        """Images (``new_from_bytes``, ``new_from_file``, ``new_from_figure``)."""
        from .image import ImageFolder

        return ImageFolder(self, "image_module")

    def _document(self, data: dict[str, Any]) -> Document:
        if data.get("portal_type") == "Module":
            raise TypeError("a module folder is not a document here: use portal.folder()")
        cls = DOCUMENT_CLASSES.get(str(data.get("portal_type")), Document)
        return cls(self, data)

    def _verb(self, path: str, name: str) -> str | None:
        """The HTTP verb that calls method ``name`` on ``path``, as the server declares
        it (``OPTIONS``: ``Allow: POST`` for a method that changes data), or None when
        the name resolves to nothing there."""
        key = (path, name)
        if key not in self._verbs:
            try:
                reply = self._conn.request("OPTIONS", f"/{quote_path(path)}/{quote(name)}")
            except NotFound:
                return None
            allow = reply.headers.get("Allow", "GET, POST")
            self._verbs[key] = "GET" if "GET" in allow else "POST"
        return self._verbs[key]

    def call(self, path: str, name: str, /, **kwargs: Any) -> Any:
        """Calls the dispatch method (or user script) ``name`` on ``path`` with keyword
        arguments: by GET when the server says it changes nothing, else by POST.
        Returns the method's JSON value (or HTML as text)."""
        verb = self._verb(path, name)
        if verb is None:
            raise NotFound(f"/{path} has no method or property '{name}'", 404, "not_found")
        url = f"/{quote_path(path)}/{quote(name)}"
        simple = all(isinstance(v, str | int | float | bool) for v in kwargs.values())
        if verb == "GET" and simple:
            params = {k: _param(v) for k, v in kwargs.items()}
            return self._conn.json("GET", url, params=params)
        # Read-only methods also answer POST, which carries structured arguments.
        return self._conn.json("POST", url, json=kwargs)

    def __repr__(self) -> str:
        who = self._conn.login or "token"
        return f"<wendelin.Portal {self._conn.base} as {who}>"

    def _repr_html_(self) -> str:
        rows = "".join(f"<li><code>{html.escape(f)}</code></li>" for f in self.module_folders())
        return f"<b>Wendelin portal</b> {html.escape(self._conn.base)}<ul>{rows}</ul>"


def quote(name: str) -> str:
    """A method name as one URL segment."""
    return quote_path(name) if "/" not in name else name.replace("/", "%2F")


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Listing:
    """A lazily paged sequence of documents (``len`` asks the server for the count)."""

    page_size = 200

    def __init__(self, portal: Portal) -> None:
        self._portal = portal
        self._total: int | None = None

    def _page(self, limit: int, offset: int, count: bool) -> dict[str, Any]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Document]:
        offset = 0
        while True:
            page = self._page(self.page_size, offset, False)
            items = page.get("items", [])
            for item in items:
                yield self._portal._document(item)
            offset += len(items)
            more = page.get("more")
            if more is None:
                total = page.get("total")
                more = total is not None and offset < int(total)
            if not items or not more:
                return

    def __len__(self) -> int:
        if self._total is None:
            self._total = int(self._page(1, 0, True).get("total") or 0)
        return self._total

    @overload
    def __getitem__(self, index: int) -> Document: ...
    @overload
    def __getitem__(self, index: slice) -> list[Document]: ...
    def __getitem__(self, index: int | slice) -> Document | list[Document]:
        if isinstance(index, slice):
            start, stop, step = index.start or 0, index.stop, index.step or 1
            if start < 0 or (stop is not None and stop < 0) or step < 1:
                return list(self)[index]
            out: list[Document] = []
            offset = start
            while stop is None or offset < stop:
                limit = self.page_size if stop is None else min(self.page_size, stop - offset)
                items = self._page(limit, offset, False).get("items", [])
                out.extend(self._portal._document(i) for i in items)
                offset += len(items)
                if len(items) < limit:
                    break
            return out[::step]
        if index < 0:
            index += len(self)
        items = self._page(1, index, False).get("items", []) if index >= 0 else []
        if not items:
            raise IndexError(index)
        return self._portal._document(items[0])

    def to_list(self) -> list[Document]:
        """Every document, fetched page by page."""
        return list(self)


class CatalogResults(_Listing):
    """The documents a catalog query finds that the caller may View, fetched page by
    page as they are iterated (``count=none``); ``len()`` counts them exactly."""

    def __init__(self, portal: Portal, query: str, sort_on: str | None) -> None:
        super().__init__(portal)
        self.query = query
        self.sort_on = sort_on

    def _page(self, limit: int, offset: int, count: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"q": self.query, "limit": limit, "offset": offset}
        if self.sort_on:
            params["sort_on"] = self.sort_on
        params["count"] = "exact" if count else "none"
        out: dict[str, Any] = self._portal._conn.json("GET", "/api/v1/catalog", params=params)
        return out

    def __repr__(self) -> str:
        return f"<CatalogResults {self.query!r}>"

    def _repr_html_(self) -> str:
        return _table(self[: self.page_size], f"catalog: {self.query}", len(self))


class Catalog:
    """``portal.portal_catalog``: call it with keyword criteria, a query-language string,
    or both (``portal.portal_catalog('title:%hall%', portal_type="Data Stream")``)."""

    def __init__(self, portal: Portal) -> None:
        self._portal = portal

    def __call__(
        self, query: str | None = None, *, sort_on: str | None = None, **criteria: Any
    ) -> CatalogResults:
        return CatalogResults(self._portal, build_query(query, **criteria), sort_on)

    searchResults = __call__  # noqa: N815 (ERP5's name)

    def __repr__(self) -> str:
        return "<portal_catalog>"


def _table(docs: Iterable[Document], caption: str, total: int | None) -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(d._data.get(k, '')))}</td>"
            for k in ("path", "portal_type", "title", "reference")
        )
        + f"<td>{html.escape(_states(d._data))}</td></tr>"
        for d in docs
    )
    more = "" if total is None else f" ({total})"
    return (
        f"<table><caption>{html.escape(caption)}{more}</caption>"
        "<tr><th>path</th><th>type</th><th>title</th><th>reference</th><th>state</th></tr>"
        f"{rows}</table>"
    )


def _states(data: dict[str, Any]) -> str:
    states = data.get("workflow_states") or {}
    return ", ".join(str(v) for v in states.values()) if isinstance(states, dict) else ""


class Folder(_Listing):
    """A module folder (``portal.data_stream_module``): ``folder["1"]``, iteration over
    what the caller may View (lazily paged), ``len``, ``newContent(**props)``."""

    def __init__(self, portal: Portal, name: str) -> None:
        super().__init__(portal)
        self.name = name

    def _page(self, limit: int, offset: int, count: bool) -> dict[str, Any]:
        out: dict[str, Any] = self._portal._conn.json(
            "GET", f"/api/v1/{quote_path(self.name)}", params={"limit": limit, "offset": offset}
        )
        return out

    @overload
    def __getitem__(self, key: str) -> Document: ...
    @overload
    def __getitem__(self, key: int) -> Document: ...
    @overload
    def __getitem__(self, key: slice) -> list[Document]: ...
    def __getitem__(self, key: str | int | slice) -> Document | list[Document]:
        if isinstance(key, str):
            return self._portal.get(f"{self.name}/{key}")
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        try:
            self[str(key)]
        except NotFound:
            return False
        return True

    def objectValues(self) -> list[Document]:  # noqa: N802 (ERP5's name)
        """The documents of the folder the caller may View."""
        return list(self)

    def objectIds(self) -> list[str]:  # noqa: N802
        """Their ids."""
        return [d.id for d in self]

    def newContent(self, **properties: Any) -> Document:  # noqa: N802
        """Creates a document (``portal_type``, ``id``, properties) and returns it."""
        data = self._portal._conn.json("POST", f"/api/v1/{quote_path(self.name)}", json=properties)
        return self._portal._document(data)

    new = newContent

    def newContentList(self, items: list[dict[str, Any]]) -> int:  # noqa: N802
        """Creates several documents in one transaction (all or nothing); returns how
        many."""
        out = self._portal._conn.json("POST", f"/api/v1/{quote_path(self.name)}", json=items)
        return int(out["created"])

    def search(self, query: str | None = None, **criteria: Any) -> CatalogResults:
        """The catalog, within this folder."""
        return self._portal.portal_catalog(query, module=self.name, **criteria)

    def call(self, name: str, /, **kwargs: Any) -> Any:
        """Calls a method on the folder."""
        return self._portal.call(self.name, name, **kwargs)

    def __repr__(self) -> str:
        return f"<Folder {self.name}>"

    def _repr_html_(self) -> str:
        return _table(self[: self.page_size], self.name, len(self))


class Method:
    """A dispatch method, user script or workflow transition bound to a document;
    calling it calls the server."""

    def __init__(self, doc: Document, name: str) -> None:
        self._doc = doc
        self.__name__ = name

    def __call__(self, **kwargs: Any) -> Any:
        return self._doc._invoke(self.__name__, **kwargs)

    def __repr__(self) -> str:
        return f"<method {self.__name__} of {self._doc.path}>"


class Document:
    """A document as the caller may see it. Properties are attributes (``doc.title``)
    and ``getX()`` accessors (``doc.getTitle()``, ``doc.getContentType()``); any other
    name is a dispatch method, a user script or a workflow transition called on the
    server: ``doc.getSize()``, ``doc.DataStream_getSize()``, ``doc.validate(comment=…)``.

    The values are those read last (``reload()`` reads again); ``edit(**props)`` sends
    them with the serial read, so a concurrent change is a
    :class:`~wendelin.errors.Conflict`."""

    def __init__(self, portal: Portal, data: dict[str, Any]) -> None:
        self._portal = portal
        self._data = data
        self._transitions: tuple[int, set[str]] | None = None

    # -- identity ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        """``data_stream_module/1``."""
        return str(self._data["path"])

    @property
    def id(self) -> str:
        """The id within its container."""
        return str(self._data["id"])

    @property
    def portal_type(self) -> str:
        """``Data Stream``, ``Data Array``, …"""
        return str(self._data["portal_type"])

    @property
    def serial(self) -> int:
        """The serial read last (edits are checked against it)."""
        return int(self._data["serial"])

    @property
    def properties(self) -> dict[str, Any]:
        """Every field and property, as read last."""
        return dict(self._data)

    def _api(self, suffix: str = "") -> str:
        return f"/api/v1/{quote_path(self.path)}{suffix}"

    # -- properties and methods ---------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        if name.startswith("get") and len(name) > 3 and name[3].isupper():
            prop = _snake(name[3:])
            if prop in data:
                return lambda: data[prop]
        return Method(self, name)

    def __dir__(self) -> Iterable[str]:
        return [*super().__dir__(), *self._data.keys()]

    def getProperty(self, name: str, default: Any = None) -> Any:  # noqa: N802
        """A property by name."""
        return self._data.get(name, default)

    def reload(self) -> Document:
        """Reads the document again (values and serial)."""
        self._data = self._portal._conn.json("GET", self._api())
        self._transitions = None
        return self

    def edit(self, **properties: Any) -> Document:
        """Changes properties, checked against the serial read: if the document changed
        since, raises :class:`~wendelin.errors.Conflict` (``reload()`` and edit
        again)."""
        body = {"serial": self.serial, **properties}
        self._data = self._portal._conn.json("PATCH", self._api(), json=body)
        self._transitions = None
        return self

    def delete(self) -> None:
        """Deletes the document (checked against the serial read)."""
        self._portal._conn.request("DELETE", self._api(), params={"serial": self.serial})

    def objectValues(self, portal_type: str | None = None) -> list[Document]:  # noqa: N802
        """The documents this one contains that the caller may View."""
        out: list[Document] = []
        offset = 0
        while True:
            page = self._portal._conn.json(
                "GET", self._api(), params={"contents": "true", "limit": 1000, "offset": offset}
            )
            items = page.get("items", [])
            out.extend(self._portal._document(i) for i in items)
            offset += len(items)
            if not items or offset >= int(page.get("total") or 0):
                break
        if portal_type is not None:
            out = [d for d in out if d.portal_type == portal_type]
        return out

    def newContent(self, **properties: Any) -> Document:  # noqa: N802
        """Creates a sub-document (``portal_type``, ``id``, properties)."""
        data = self._portal._conn.json("POST", self._api(), json=properties)
        return self._portal._document(data)

    # -- workflows --------------------------------------------------------------------

    def workflows(self) -> list[dict[str, Any]]:
        """States, the transitions the caller may fire, and history, per workflow."""
        out: list[dict[str, Any]] = self._portal._conn.json("GET", self._api("/workflows"))[
            "workflows"
        ]
        return out

    def transitions(self) -> set[str]:
        """The ids of the transitions the caller may fire now."""
        if self._transitions is None or self._transitions[0] != self.serial:
            ids = {t["id"] for w in self.workflows() for t in w.get("transitions", [])}
            self._transitions = (self.serial, ids)
        return self._transitions[1]

    def fire(self, transition: str, **variables: Any) -> Document:
        """Fires a workflow transition (``comment=`` and other variables), then reads
        the document again."""
        self._portal._conn.json(
            "POST", self._api(f"/transitions/{quote(transition)}"), json=variables
        )
        return self.reload()

    def getWorkflowState(self, workflow: str = "validation_workflow") -> str | None:  # noqa: N802
        """The document's state in ``workflow``."""
        states = self._data.get("workflow_states") or {}
        return states.get(workflow)

    # -- dispatch -----------------------------------------------------------------------

    def call(self, name: str, /, **kwargs: Any) -> Any:
        """Calls dispatch method or user script ``name`` (GET when the server declares
        it read-only, POST otherwise)."""
        return self._portal.call(self.path, name, **kwargs)

    def _invoke(self, name: str, **kwargs: Any) -> Any:
        workflowed = bool(self._data.get("workflow_states"))
        if workflowed and name in self.transitions():
            return self.fire(name, **kwargs)
        if self._portal._verb(self.path, name) is None and workflowed:
            # Not a method: a transition not available now; the server says why.
            return self.fire(name, **kwargs)
        return self.call(name, **kwargs)

    # -- display ------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Document) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        title = self._data.get("title")
        extra = f" {title!r}" if title else ""
        return f"<{self.portal_type} {self.path}{extra}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td>{html.escape(v if isinstance(v, str) else _json.dumps(v))}</td></tr>"
            for k, v in self._data.items()
        )
        return (
            f"<table><caption><b>{html.escape(self.portal_type)}</b> "
            f"<code>{html.escape(self.path)}</code></caption>{rows}</table>"
        )
