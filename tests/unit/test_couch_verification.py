"""notebook.database.couch.verification: uncertain writes are read back, never blindly repeated."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from notebook.database.couch import WRITE_ID_FIELD, DatabaseUnavailable, DocumentConflict
from tests.unit.couch_fake import FakeCluster, FakeNode

# -- uncertain writes --------------------------------------------------------------------------


def test_uncertain_write_found_on_the_next_node_is_not_sent_again(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client()
    db = client.database("notes")
    # node 0 applies the write and replicates it, then the connection drops before the answer
    cluster[0].fail_next("PUT", "note:1", "reset_after_apply")
    _replicate_after_serving(cluster[0], cluster[1])
    rev = db.put({"_id": "note:1", "title": "written once"})
    assert rev == cluster[1].dbs["notes"]["note:1"]["_rev"] == cluster[0].dbs["notes"]["note:1"]["_rev"]
    assert cluster[1].sent("PUT") == []  # verified by reading back, not repeated
    assert cluster[1].sent("POST", "_all_docs") == ["notes/_all_docs"]
    assert client.stats()["writes_verified"] == 1
    assert client.stats()["writes_resent"] == 0


def test_uncertain_write_missing_on_the_next_node_is_sent_there_once(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client()
    db = client.database("notes")
    cluster[0].fail_next("PUT", "note:1", "reset_after_apply")  # applied on node 0, never replicated
    rev = db.put({"_id": "note:1", "title": "hello"})
    assert len(cluster[1].sent("PUT")) == 1
    assert cluster[1].dbs["notes"]["note:1"]["_rev"] == rev
    # the same edit now exists twice with the same write id: replication makes it a conflict
    # between identical versions, which the resolver collapses
    assert (
        cluster[0].dbs["notes"]["note:1"][WRITE_ID_FIELD] == cluster[1].dbs["notes"]["note:1"][WRITE_ID_FIELD]
    )
    assert client.stats()["writes_resent"] == 1


def test_uncertain_update_conflicting_on_the_next_node_is_a_conflict(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client()
    db = client.database("notes")
    base = cluster[0].put_doc("notes", {"_id": "note:1", "title": "v1"})  # node 1 never got it
    cluster[0].fail_next("PUT", "note:1", "timeout_after_apply")
    with pytest.raises(DocumentConflict):
        db.put({"_id": "note:1", "_rev": base, "title": "v2"})


def test_uncertain_bulk_write_resends_only_what_is_missing(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    db = client.database("notes")
    docs = [{"_id": "note:1", "title": "a"}, {"_id": "rev:1", "title": "b"}, {"_id": "act:1", "x": 1}]
    cluster[0].fail_next("POST", "_bulk_docs", "reset_after_apply")
    real_serve = cluster[0]._serve

    def serve_then_replicate_one(request: httpx.Request, method: str, path: str) -> httpx.Response:
        response = real_serve(request, method, path)
        stored = cluster[0].dbs["notes"]["rev:1"]
        cluster[1].dbs["notes"]["rev:1"] = dict(stored)
        cluster[1].histories[("notes", "rev:1")] = {stored["_rev"]}
        return response

    cluster[0]._serve = serve_then_replicate_one  # type: ignore[method-assign]
    results = db.bulk_docs(docs)
    assert [r["id"] for r in results] == ["note:1", "rev:1", "act:1"]
    assert all(r.get("rev") and not r.get("error") for r in results)
    resent = json.loads(_last_body(cluster[1], "_bulk_docs"))
    assert [d["_id"] for d in resent["docs"]] == ["note:1", "act:1"]
    assert results[1]["rev"] == cluster[0].dbs["notes"]["rev:1"]["_rev"]


def _last_body(node: FakeNode, suffix: str) -> str:
    return node.bodies[[path for _, path in node.log].index(node.sent("POST", suffix)[-1])]


def _replicate_after_serving(source: FakeNode, target: FakeNode) -> None:
    real_serve = source._serve

    def serve_then_replicate(request: httpx.Request, method: str, path: str) -> httpx.Response:
        response = real_serve(request, method, path)
        source.replicate_to(target)
        return response

    source._serve = serve_then_replicate  # type: ignore[method-assign]


def test_server_error_on_a_write_is_checked_on_that_node_first(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client()
    db = client.database("notes")
    cluster[0].fail_next("PUT", "note:1", "500_after_apply")
    rev = db.put({"_id": "note:1", "title": "a"})
    assert rev == cluster[0].dbs["notes"]["note:1"]["_rev"]
    assert cluster[0].sent("POST", "_all_docs") == ["notes/_all_docs"]
    assert cluster[1].log == []


def test_server_error_before_writing_sends_the_write_to_the_next_node(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client()
    db = client.database("notes")
    cluster[0].fail_next("PUT", "note:1", "500")
    rev = db.put({"_id": "note:1", "title": "a"})
    assert "note:1" not in cluster[0].dbs["notes"]
    assert cluster[1].dbs["notes"]["note:1"]["_rev"] == rev
    assert len(cluster[0].sent("PUT")) == 0 and len(cluster[1].sent("PUT")) == 1


def test_uncertain_delete_is_verified(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    rev = cluster[0].put_doc("notes", {"_id": "note:1", "title": "a"})
    cluster.replicate()
    cluster[0].fail_next("DELETE", "note:1", "reset_after_apply")
    _replicate_after_serving(cluster[0], cluster[1])
    tombstone = client.database("notes").delete("note:1", rev)
    assert tombstone.startswith("2-")
    assert cluster[1].sent("DELETE") == []


def test_write_with_unknown_outcome_that_cannot_be_verified_is_not_repeated(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client()
    cluster[0].fail_next("POST", "notes", "reset_after_apply")
    with pytest.raises(DatabaseUnavailable) as caught:
        client.request("POST", "notes", body={"title": "server-generated id"})
    assert "outcome unknown" in caught.value.reason
    assert cluster[1].log == [] and cluster[2].log == []


def test_put_stamps_a_fresh_write_id_except_on_design_documents(
    cluster: FakeCluster, make_client: Any
) -> None:
    db = make_client().database("notes")
    doc = {"_id": "note:1", "title": "a", WRITE_ID_FIELD: "old"}
    db.put(doc)
    first = doc[WRITE_ID_FIELD]
    assert first != "old"
    db.put(doc)
    assert doc[WRITE_ID_FIELD] != first
    design = {"_id": "_design/notebook", "views": {}}
    db.put(design)
    assert WRITE_ID_FIELD not in design
    docs = [{"title": "no id yet"}]
    db.bulk_docs(docs)
    assert docs[0]["_id"] and docs[0][WRITE_ID_FIELD]


def test_uncertain_replicator_write_is_recognised_despite_the_owner_couchdb_adds(
    cluster: FakeCluster, make_client: Any
) -> None:
    """CouchDB 3 adds `owner` to `_replicator` documents: comparing whole documents would never
    recognise the write as landed, send it again and end in a 409."""
    cluster.create_db("_replicator")
    client = make_client()
    job = {"_id": "job:1", "source": {"url": "http://a/db", "headers": {}}, "continuous": True}
    cluster[0].fail_next("PUT", "job:1", "reset_after_apply")
    _replicate_after_serving(cluster[0], cluster[1])
    rev = client.database("_replicator").put(dict(job))
    assert cluster[1].dbs["_replicator"]["job:1"]["owner"] == "admin"
    assert rev == cluster[1].dbs["_replicator"]["job:1"]["_rev"]
    assert cluster[1].sent("PUT") == []  # recognised by the fields we wrote, not sent again
    assert client.stats()["writes_verified"] == 1
