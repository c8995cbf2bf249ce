"""A user sees through the client exactly what the JSON API shows them."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

import wendelin

from .conftest import Server


def test_a_user_with_fewer_roles_sees_what_the_api_shows(
    portal: wendelin.Portal, server: Server
) -> None:
    tag = uuid.uuid4().hex[:8]
    server.add_user(f"alice{tag}", "alice-secret-1", ["Author"])
    token = server.token_for(f"alice{tag}")
    alice = wendelin.connect(server.base, token=token)
    assert alice.me()["roles"] == ["Anonymous", "Authenticated", "Author"]

    private = portal.data_stream_module.newContent(title=f"private {tag}", reference=f"p.{tag}")
    shared = portal.data_stream_module.newContent(title=f"shared {tag}", reference=f"s.{tag}")
    shared.append(b"shared bytes")
    # A mutating dispatch method by name (POST, as the server declares).
    shared.setLocalRoles(principal=f"user:alice{tag}", roles=["Auditor"])
    own = alice.data_stream_module.newContent(title=f"own {tag}", reference=f"o.{tag}")
    array = portal.data_array_module.new_from_numpy(np.ones((3, 3)), title=f"array {tag}")

    # Listings and catalog: the same documents, in the same order, as the raw API.
    raw_list = server.raw("GET", "/api/v1/data_stream_module", token, params={"limit": 1000})
    assert [d.path for d in alice.data_stream_module] == [
        i["path"] for i in raw_list.json()["items"]
    ]
    assert len(alice.data_stream_module) == raw_list.json()["total"]
    q = f"title:%{tag}%"
    raw_cat = server.raw("GET", "/api/v1/catalog", token, params={"q": q}).json()
    mine = alice.portal_catalog(q, sort_on="title")
    assert sorted(d.path for d in mine) == sorted(i["path"] for i in raw_cat["items"])
    assert sorted(d.path for d in mine) == sorted([shared.path, own.path])
    assert len(mine) == raw_cat["total"] == 2
    assert len(portal.portal_catalog(q)) == 4  # the manager sees all of them

    # Documents: the same JSON, the same refusals.
    for doc in (shared, own):
        assert alice[doc.path].properties == server.raw("GET", f"/api/v1/{doc.path}", token).json()
    for hidden in (private, array):
        assert server.raw("GET", f"/api/v1/{hidden.path}", token).status_code == 404
        with pytest.raises(wendelin.NotFound):
            alice[hidden.path]
    assert server.raw("GET", f"/api/v1/{array.path}/zarr/zarr.json", token).status_code == 404

    # Reading what an Auditor may read; writing is refused with the server's message.
    seen = alice[shared.path]
    assert isinstance(seen, wendelin.DataStream)
    assert seen.getData() == b"shared bytes"
    with pytest.raises(wendelin.Forbidden) as e:
        seen.edit(title="mine now")
    raw = server.raw(
        "PATCH", f"/api/v1/{shared.path}", token, json={"serial": seen.serial, "title": "x"}
    )
    assert raw.status_code == 403 and raw.json()["error"]["message"] == e.value.message
    with pytest.raises(wendelin.Forbidden):
        seen.append(b"more")
    assert portal[shared.path].getSize() == len(b"shared bytes")
    with pytest.raises(wendelin.Forbidden):
        seen.validate(comment="no")
    # Their own document is theirs to change.
    own.edit(description="fine")
    own.append(b"ok")
    assert alice[own.path].getData() == b"ok"
    # Creating where the roles do not allow it.
    with pytest.raises(wendelin.Forbidden):
        alice.folder("portal_skins").newContent(portal_type="Script", id=f"S{tag}", body="1")
