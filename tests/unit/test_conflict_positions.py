"""notebook.database.conflicts: changes-feed positions are kept per node and never sent to
another node (CouchDB 3 would silently replay its whole feed from 0)."""

from __future__ import annotations

from typing import Any

from notebook.database.conflicts import ConflictStore
from tests.unit.couch_fake import FakeCluster, active


def _only_own_positions(cluster: FakeCluster) -> bool:
    return all(
        since == "now" or since.endswith(f"-{node.name}")
        for node in cluster.nodes
        for since in node.positions_received
    )


def test_feed_positions_are_per_node_across_failover_and_failback(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client(probe_interval=0.0)
    store = ConflictStore(client.database("notes"), "notebook")
    assert store.changed_with_leaves() == []  # node 0 read for the first time: from now on
    cluster[0].put_doc("notes", {"_id": "note:1", "title": "a"})
    assert store.changed_with_leaves() == []  # one change, one leaf
    assert store.positions == {cluster[0].url: "1-n0"}

    cluster[0].down = True
    client.check_nodes()
    assert active(client) == cluster[1].url
    cluster[1].put_doc("notes", {"_id": "note:2", "title": "b"})
    store.changed_with_leaves()  # node 1: starts at its own "now", not at node 0's position
    cluster[1].put_doc("notes", {"_id": "note:3", "title": "c"})
    store.changed_with_leaves()
    assert store.positions[cluster[1].url] == "2-n1"
    assert cluster[1].positions_received == ["now", "1-n1"]

    cluster[0].put_doc("notes", {"_id": "note:4", "title": "arrived while away"})
    cluster[0].down = False
    client.check_nodes()
    assert active(client) == cluster[0].url
    store.changed_with_leaves()  # back on node 0: from where node 0's feed was left
    assert cluster[0].positions_received[-1] == "1-n0"
    assert store.positions[cluster[0].url] == "2-n0"
    assert _only_own_positions(cluster)


def test_a_position_the_node_no_longer_knows_starts_again_from_now(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client(probe_interval=0.0)
    store = ConflictStore(client.database("notes"), "notebook")
    store.changed_with_leaves()
    cluster[0].feed_id = "n0-rebuilt"  # the node's feed was replaced: the old position is foreign
    assert store.changed_with_leaves() == []
    assert store.positions == {}
    store.changed_with_leaves()
    assert store.positions == {cluster[0].url: "0-n0-rebuilt"}
