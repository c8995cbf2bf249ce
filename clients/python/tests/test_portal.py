"""Documents, folders, the catalog, edits, workflows, dispatch and errors."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from typing import Any

import pytest
import requests

import wendelin
from wendelin import Conflict, Forbidden, Invalid, NotFound, Unauthorized

from .conftest import Server


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def test_connect_with_token_or_login_and_bad_credentials(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = wendelin.connect(server.base, token=server.token)
    assert p.me()["login"] == "manager"
    server.add_user("carol", "carol-secret-1", ["Manager"])
    q = wendelin.connect(server.base, login="carol", password="carol-secret-1")
    assert q.me()["login"] == "carol"
    # A session's writes carry the CSRF token.
    doc = q.data_stream_module.newContent(title="by carol")
    assert doc.owner == "carol"
    doc.edit(description="session edit")
    assert doc.reload().description == "session edit"
    # A session that ends (expired, revoked elsewhere: 401) is opened again.
    ended = requests.post(server.base + "/logout", headers=q._conn.auth_headers(), timeout=10)
    assert ended.status_code < 400, ended.text
    before = q._conn.auth_headers()["Cookie"]
    assert q.me()["login"] == "carol"
    assert q._conn.auth_headers()["Cookie"] != before  # a new session
    doc.edit(description="after a new login")
    with pytest.raises(Unauthorized) as e:
        wendelin.connect(server.base, token="wdl_" + "0" * 64)
    assert e.value.status == 401 and e.value.message
    with pytest.raises(Unauthorized):
        wendelin.connect(server.base, login="carol", password="wrong")
    monkeypatch.delenv("WENDELIN_TOKEN", raising=False)
    with pytest.raises(ValueError):
        wendelin.connect(server.base)
    monkeypatch.setenv("WENDELIN_TOKEN", server.token)
    assert wendelin.connect(server.base).me()["login"] == "manager"


def test_documents_by_path_and_by_folder_with_properties(portal: wendelin.Portal) -> None:
    ref = unique("sensor1")
    created = portal.data_stream_module.newContent(title="Boiler", reference=ref)
    assert isinstance(created, wendelin.DataStream)
    by_path = portal[created.path]
    by_folder = portal.data_stream_module[created.id]
    assert by_path == by_folder == created
    assert by_folder.title == "Boiler" and by_folder.getTitle() == "Boiler"
    assert by_folder.reference == ref and by_folder.getReference() == ref
    assert by_folder.getContentType() == "application/octet-stream"
    assert by_folder.getPortalType() == "Data Stream"
    assert by_folder.getProperty("title") == "Boiler"
    assert "title" in dir(by_folder)
    folder = portal["data_stream_module"]
    assert isinstance(folder, wendelin.Folder)
    assert created.id in folder
    with pytest.raises(NotFound) as e:
        portal.data_stream_module["no-such-id"]
    assert "no-such-id" in e.value.message
    with pytest.raises(NotFound):
        portal["data_stream_module/no-such-id"]
    with pytest.raises(AttributeError):
        portal.no_such_module  # noqa: B018
    assert "data_stream_module" in dir(portal)


def test_catalog_keywords_and_query_language_lazily_paged(
    portal: wendelin.Portal, server: Server
) -> None:
    tag = uuid.uuid4().hex[:8]
    items = [{"title": f"bulk {tag} {i}", "reference": f"bulk.{tag}.{i:03d}"} for i in range(45)]
    assert portal.data_stream_module.newContentList(items) == 45
    found = portal.portal_catalog(portal_type="Data Stream", reference=f"bulk.{tag}.007")
    assert [d.reference for d in found] == [f"bulk.{tag}.007"]
    text = portal.portal_catalog(f'portal_type:"Data Stream" AND reference:bulk.{tag}.%')
    assert len(text) == 45
    # Lazy paging: pages of 10 fetched as iterated, the same documents as one page.
    calls: list[Any] = []
    original = text._page

    def counting(limit: int, offset: int, count: bool) -> dict[str, Any]:
        calls.append((limit, offset))
        return original(limit, offset, count)

    text._page = counting  # type: ignore[method-assign]
    text.page_size = 10
    it = iter(text)
    first = next(it)
    assert calls == [(10, 0)]
    rest = list(it)
    assert len(calls) == 5 and len(rest) == 44
    raw = server.raw(
        "GET",
        "/api/v1/catalog",
        params={"q": f"reference:bulk.{tag}.%", "limit": 100},
    ).json()
    assert [d.path for d in [first, *rest]] == [i["path"] for i in raw["items"]]
    # Sorting, slices, indexing, both forms together, lists as `in`.
    desc = portal.portal_catalog(
        f"reference:bulk.{tag}.%", sort_on="reference desc", portal_type="Data Stream"
    )
    assert desc[0].reference == f"bulk.{tag}.044"
    assert [d.reference for d in desc[1:3]] == [f"bulk.{tag}.043", f"bulk.{tag}.042"]
    both = portal.portal_catalog(reference=[f"bulk.{tag}.001", f"bulk.{tag}.002"])
    assert sorted(d.reference for d in both) == [f"bulk.{tag}.001", f"bulk.{tag}.002"]
    assert len(portal.data_stream_module.search(reference=f"bulk.{tag}.003")) == 1
    with pytest.raises(wendelin.BadRequest) as e:
        list(portal.portal_catalog("title:(unclosed"))
    assert "position" in e.value.message or "character" in e.value.message
    # Folder iteration is paged the same way.
    folder = portal.data_stream_module
    folder.page_size = 7
    assert len(list(folder)) == len(folder) >= 45
    assert folder[0] == list(folder)[0]


def test_edit_is_serial_checked(portal: wendelin.Portal) -> None:
    a = portal.data_stream_module.newContent(title="v1")
    b = portal[a.path]
    a.edit(title="v2", description="by a")
    assert a.title == "v2" and a.serial == 2
    with pytest.raises(Conflict) as e:
        b.edit(title="stale")
    assert e.value.status == 409 and e.value.message
    b.reload().edit(title="v3")
    assert portal[a.path].title == "v3"
    with pytest.raises(Invalid) as e2:
        b.edit(no_such_property=1)
    assert "no_such_property" in e2.value.message


def test_workflow_transitions_and_containment(portal: wendelin.Portal) -> None:
    doc = portal.data_stream_module.newContent(title="wf")
    assert doc.getWorkflowState() == "draft"
    assert "validate" in doc.transitions()
    doc.validate(comment="looks right")
    assert doc.getWorkflowState() == "validated"
    history = doc.workflows()[0]["history"]
    assert history[-1]["comment"] == "looks right"
    with pytest.raises((Conflict, Forbidden, NotFound)) as e:
        doc.validate(comment="again")
    assert e.value.message
    ingestion = portal.data_ingestion_module.newContent(title="container")
    line = ingestion.newContent(portal_type="Data Ingestion Line", id="line_1")
    assert line.path == f"{ingestion.path}/line_1"
    assert ingestion.objectValues() == [line]
    assert ingestion.objectValues(portal_type="Data Ingestion Line") == [line]
    assert portal[line.path] == line


def test_dispatch_methods_and_user_scripts_by_name(portal: wendelin.Portal, server: Server) -> None:
    doc = portal.data_stream_module.newContent(title="dispatch")
    # Type scripts by their full name (the server has no `DataStream_getSize`: its
    # `getSize` is built in), built-ins by theirs.
    arr = portal.data_array_module.newContent(title="t", dtype="int8", shape=[0, 2])
    assert arr.DataArray_getShape() == [0, 2]
    assert doc.getSize() == 0
    assert doc.getPath() == doc.path
    skins = portal.folder("portal_skins")
    skins.newContent(
        portal_type="Script",
        id="Base_double",
        body="params.x * 2",
        parameters={"x": 21},
    )
    skins.newContent(
        portal_type="Script",
        id="Base_retitle",
        body='invoke("edit", #{ title: params.title, serial: context.serial }); "done"',
        parameters={"title": "renamed"},
        read_only=False,
        permission="Modify portal content",
    )
    assert doc.Base_double() == 42
    assert doc.double(x=4) == 8
    assert portal._verb(doc.path, "double") == "GET"
    # The mutating script is called by POST, as the server declares (OPTIONS).
    assert portal._verb(doc.path, "retitle") == "POST"
    assert doc.retitle(title="via script") == "done"
    assert doc.reload().title == "via script"
    # A built-in mutating method too.
    assert portal._verb(doc.path, "Base_edit") == "POST"
    out = doc.Base_edit(description="by Base_edit")
    assert out["description"] == "by Base_edit"
    with pytest.raises(NotFound):
        doc.noSuchMethodAnywhere()
    # Structured arguments go by POST to a read-only method.
    assert doc.call("Base_double", x=5) == 10
    # The page of a document is HTML text.
    assert "<" in doc.DataStream_view()
    raw = server.raw("GET", f"/{doc.path}/Base_double").json()
    assert raw == 42


def test_reprs(portal: wendelin.Portal) -> None:
    doc = portal.data_stream_module.newContent(title="shown <b>")
    assert repr(doc) == f"<Data Stream {doc.path} 'shown <b>'>"
    assert "&lt;b&gt;" in doc._repr_html_() and doc.path in doc._repr_html_()
    assert "<table>" in portal.data_stream_module._repr_html_()
    assert "data_stream_module" in portal._repr_html_()
    assert repr(portal.data_stream_module) == "<Folder data_stream_module>"
    assert "catalog" in portal.portal_catalog(title="x")._repr_html_()
    assert repr(portal).startswith("<wendelin.Portal http://127.0.0.1:")


class _Flaky(http.server.BaseHTTPRequestHandler):
    """503 with Retry-After twice, then the answer."""

    hits = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits += 1
        if type(self).hits <= 2:
            body = json.dumps({"error": {"code": "unavailable", "message": "busy"}}).encode()
            self.send_response(503)
            self.send_header("Retry-After", "0")
        else:
            body = json.dumps({"login": "manager", "roles": []}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_503_is_retried_with_backoff_then_reported() -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        p = wendelin.connect(url, token="t", retries=3)
        assert _Flaky.hits == 3 and p.me()["login"] == "manager"
        _Flaky.hits = -10
        with pytest.raises(wendelin.Unavailable) as e:
            wendelin.connect(url, token="t", retries=2)
        assert e.value.status == 503 and e.value.message == "busy"
    finally:
        httpd.shutdown()
