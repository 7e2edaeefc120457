"""Quorum acknowledgement (couch/quorum.py) and the failback rule for a preferred node that came
back without its data (couch/nodes.py), on the in-memory cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from config.settings import ConfigError, load_config
from notebook.api.errors import format_graphql_error
from notebook.database.couch import DatabaseUnavailable
from notebook.database.couch.errors import QuorumNotReached
from tests.unit.couch_fake import FakeCluster, active


def _pushes(node: Any) -> list[dict[str, Any]]:
    """The `new_edits=false` bodies a node received."""
    bodies = [json.loads(body) for (method, path), body in zip(node.log, node.bodies, strict=True)
              if method == "POST" and path.endswith("_bulk_docs")]  # fmt: skip
    return [body for body in bodies if body.get("new_edits") is False]


# -- quorum writes -------------------------------------------------------------------------------


def test_a_write_is_acknowledged_once_the_next_node_holds_the_same_revision(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client(write_quorum=2)
    db = client.database("notes")
    rev1 = db.put({"_id": "note:1", "title": "one"})
    assert cluster[1].dbs["notes"]["note:1"]["_rev"] == rev1
    assert "note:1" not in cluster[2].dbs["notes"]  # one copy besides the active node is the quorum

    doc = db.get("note:1")
    doc["title"] = "two"
    rev2 = db.put(doc)
    copy = cluster[1].dbs["notes"]["note:1"]
    assert copy["_rev"] == rev2 and copy["title"] == "two" and copy["write_id"] == doc["write_id"]
    # the pushed revision extends the first one (its parent), it is not a second branch
    assert cluster[1].histories[("notes", "note:1")] == {rev1, rev2}
    assert _pushes(cluster[1])[-1]["docs"][0]["_revisions"] == {
        "start": 2,
        "ids": [rev2.split("-", 1)[1], rev1.split("-", 1)[1]],
    }
    assert client.stats()["quorum_writes"] == 2


def test_bulk_writes_and_deletions_push_only_what_was_written(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(write_quorum=2)
    db = client.database("notes")
    rev = db.put({"_id": "note:old", "title": "old"})
    results = db.bulk_docs(
        [
            {"_id": "note:a", "title": "a"},
            {"_id": "note:old", "_rev": "1-stale", "title": "refused"},  # a conflict: not written
            {"_id": "note:b", "title": "b"},
        ]
    )
    assert [bool(r.get("error")) for r in sorted(results, key=lambda r: r["id"])] == [False, False, True]
    pushed = [doc["_id"] for doc in _pushes(cluster[1])[-1]["docs"]]
    assert sorted(pushed) == ["note:a", "note:b"]
    assert cluster[1].dbs["notes"]["note:old"]["_rev"] == rev

    deleted = db.delete("note:a", cluster[0].dbs["notes"]["note:a"]["_rev"])
    copy = cluster[1].dbs["notes"]["note:a"]
    assert copy["_rev"] == deleted and copy["_deleted"] is True


def test_copies_go_to_the_next_node_in_failover_order(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(write_quorum=2, probe_interval=0.0)
    db = client.database("notes")
    cluster[1].down = True  # the usual second copy is down: the third node takes it
    rev = db.put({"_id": "note:1", "title": "one"})
    assert cluster[2].dbs["notes"]["note:1"]["_rev"] == rev

    # failed over to node 1: copies go to node 2, then to the preferred node (last, as failover)
    cluster[1].down = False
    cluster[0].down = True
    client.check_nodes()
    assert active(client) == cluster[1].url
    rev = db.put({"_id": "note:2", "title": "two"})
    assert cluster[2].dbs["notes"]["note:2"]["_rev"] == rev
    assert "note:2" not in cluster[0].dbs["notes"]


def test_a_write_short_of_its_quorum_is_reported_with_its_ids_and_not_rolled_back(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client(write_quorum=2, probe_interval=0.0)
    db = client.database("notes")
    cluster[1].down = cluster[2].down = True
    with pytest.raises(QuorumNotReached) as raised:
        db.bulk_docs([{"_id": "note:x", "title": "x"}, {"_id": "note:y", "title": "y"}])
    error = raised.value
    assert isinstance(error, DatabaseUnavailable)
    assert sorted(error.doc_ids) == ["note:x", "note:y"]
    assert (error.copies, error.required) == (1, 2)
    assert set(cluster[0].dbs["notes"]) == {"note:x", "note:y"}  # kept where it landed
    assert client.stats()["quorum_failures"] == 1

    from graphql import GraphQLError

    formatted = format_graphql_error(GraphQLError("x", path=["createNote"], original_error=error))
    assert formatted["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert sorted(formatted["extensions"]["writeIds"]) == ["note:x", "note:y"]
    assert "not confirmed" in formatted["message"]


def test_a_node_without_the_database_does_not_count(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(write_quorum=3)
    db = client.database("notes")
    del cluster[2].dbs["notes"]  # a node that came back empty
    with pytest.raises(QuorumNotReached) as raised:
        db.put({"_id": "note:1", "title": "one"})
    assert raised.value.copies == 2
    assert "404" in raised.value.reason


def test_exempt_databases_system_and_design_documents_are_not_pushed(
    cluster: FakeCluster, make_client: Any
) -> None:
    cluster.create_db("throttle")
    cluster.create_db("_replicator")
    client = make_client(write_quorum=2, quorum_exempt=["throttle"])
    client.database("throttle").put({"_id": "attempt:1"})
    client.database("_replicator").put({"_id": "job"})
    client.database("notes").put({"_id": "_design/app", "views": {}})
    assert _pushes(cluster[1]) == [] and _pushes(cluster[2]) == []
    client.database("notes").put({"_id": "note:1"})
    assert len(_pushes(cluster[1])) == 1


def test_quorum_one_sends_nothing_more(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    client.database("notes").put({"_id": "note:1"})
    assert _pushes(cluster[1]) == [] and "note:1" not in cluster[1].dbs["notes"]
    with pytest.raises(ValueError):
        make_client(write_quorum=4)


# -- failback to a node that lost its data -------------------------------------------------------


def test_no_failback_to_a_preferred_node_that_came_back_empty(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(write_quorum=2, probe_interval=0.0)
    db = client.database("notes")
    for i in range(5):
        db.put({"_id": f"note:{i}", "title": str(i)})  # before the outage: on nodes 0 and 1
    cluster[0].down = True
    client.check_nodes()
    assert active(client) == cluster[1].url
    db.put({"_id": "note:during", "title": "during"})

    cluster[0].dbs.clear()  # its disk is gone ...
    cluster[0].histories.clear()
    cluster[0].down = False  # ... and it answers again, empty
    client.check_nodes()
    assert active(client) == cluster[1].url

    cluster[0].dbs["notes"] = {}  # its databases exist again, still empty
    client.check_nodes()
    assert active(client) == cluster[1].url

    # replication brings back only the outage's write: still behind on everything before it
    cluster[0].dbs["notes"]["note:during"] = dict(cluster[1].dbs["notes"]["note:during"])
    cluster[0].histories[("notes", "note:during")] = set(cluster[1].histories[("notes", "note:during")])
    client.check_nodes()
    assert active(client) == cluster[1].url

    cluster[1].replicate_to(cluster[0])
    client.check_nodes()
    assert active(client) == cluster[0].url
    assert db.get("note:3")["title"] == "3"


def test_failback_after_deletions_on_the_active_node(cluster: FakeCluster, make_client: Any) -> None:
    """Document counts may shrink (pouchdb-server counts live documents only): the preferred
    node needs as many as the active node has now, if that is fewer than at its return."""
    client = make_client(probe_interval=0.0)
    db = client.database("notes")
    for i in range(4):
        db.put({"_id": f"note:{i}"})
    cluster.replicate()
    cluster[0].down = True
    client.check_nodes()
    cluster[0].down = False
    cluster[0].dbs["notes"].pop("note:3")
    client.check_nodes()  # back, one document short: the counts at its return are taken now
    assert active(client) == cluster[1].url
    cluster[1].dbs["notes"].pop("note:3")  # gone from the active node's count too
    client.check_nodes()
    assert active(client) == cluster[0].url


# -- settings ------------------------------------------------------------------------------------


def test_write_quorum_setting() -> None:
    testing = {"FLASK_ENV": "testing"}
    one = load_config(testing)
    assert one.effective_write_quorum == 1
    several = load_config(testing, replication_nodes=("http://127.0.0.1:5985/", "http://127.0.0.1:5986/"))
    assert several.effective_write_quorum == 2
    assert (
        load_config(
            {**testing, "WRITE_QUORUM": "3"}, replication_nodes=several.replication_nodes
        ).effective_write_quorum
        == 3
    )
    assert load_config({**testing, "QUORUM_TIMEOUT_SECONDS": "2.5"}).quorum_timeout_seconds == 2.5
    with pytest.raises(ConfigError, match="WRITE_QUORUM"):
        load_config({**testing, "WRITE_QUORUM": "2"}).validate()
    with pytest.raises(ConfigError, match="WRITE_QUORUM"):
        load_config({**testing, "WRITE_QUORUM": "x"})


def test_while_failed_over_quorum_writes_copy_themselves_to_the_returned_preferred_node(
    cluster: FakeCluster, make_client: Any
) -> None:
    """Failback then waits for exactly the writes whose copy did not land, however recent."""
    client = make_client(write_quorum=2, probe_interval=0.0)
    db = client.database("notes")
    cluster[0].down = True
    client.check_nodes()
    during = db.put({"_id": "note:during", "title": "during the outage"})
    assert "note:during" not in cluster[0].dbs["notes"]

    cluster[0].down = False
    client.check_nodes()  # back, but it lacks note:during: no failback yet
    assert active(client) == cluster[1].url
    after = db.put({"_id": "note:after", "title": "after its return"})
    assert cluster[0].dbs["notes"]["note:after"]["_rev"] == after  # copied at once
    assert cluster[2].dbs["notes"]["note:after"]["_rev"] == after  # the quorum copy as before

    cluster[0].fail_next("POST", "_bulk_docs", "500")
    lost_copy = db.put({"_id": "note:nocopy", "title": "its copy failed"})
    assert "note:nocopy" not in cluster[0].dbs["notes"]
    cluster[0].dbs["notes"]["note:during"] = dict(cluster[1].dbs["notes"]["note:during"])
    cluster[0].histories[("notes", "note:during")] = {during}
    client.check_nodes()
    assert active(client) == cluster[1].url  # waits for note:nocopy, though it is recent

    cluster[1].replicate_to(cluster[0])
    client.check_nodes()
    assert active(client) == cluster[0].url
    assert db.get("note:nocopy")["_rev"] == lost_copy
