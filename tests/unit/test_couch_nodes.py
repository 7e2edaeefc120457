"""notebook.database.couch.nodes: health probes, circuits, failover and failback."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from notebook.database.couch import CouchDBClient, DatabaseUnavailable
from tests.unit.couch_fake import FakeCluster, active

# -- health monitor and failback ---------------------------------------------------------------


def test_health_monitor_records_nodes_and_stops_on_close(cluster: FakeCluster) -> None:
    client = CouchDBClient(cluster.urls(), transport=cluster.transport, probe_interval=0.01)
    cluster[2].down = True
    probed = threading.Event()
    original = client.check_nodes

    def check_and_signal() -> None:
        original()
        probed.set()

    client.check_nodes = check_and_signal  # type: ignore[method-assign]
    client.start_health_monitor()
    assert probed.wait(5)
    status = client.nodes_status()
    assert [s["healthy"] for s in status] == [True, True, False]
    assert status[0]["version"] == "3.4.3" and status[0]["latency_ms"] is not None
    assert status[2]["circuit_open"] and status[2]["last_error"]
    assert [s["url"] for s in status] == cluster.urls()
    monitor = client._health._thread
    client.close()
    assert monitor is not None and not monitor.is_alive()
    assert not client.monitor_running


def test_failback_waits_until_the_preferred_node_caught_up(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(probe_interval=0.0)
    db = client.database("notes")
    cluster[0].down = True
    client.check_nodes()
    assert active(client) == cluster[1].url
    revs = [db.put({"_id": f"note:{i}", "title": str(i)}) for i in range(3)]
    assert all("note:0" not in node.dbs["notes"] for node in cluster.nodes[:1])

    cluster[0].down = False
    client.check_nodes()  # healthy, but it lacks what was written on node 1
    assert client.nodes_status()[0]["healthy"]
    assert active(client) == cluster[1].url
    assert db.get("note:2")["_rev"] == revs[2]  # still served by the node that has it
    assert client.served_by == cluster[1].url

    cluster[1].replicate_to(cluster[0])
    client.check_nodes()
    assert active(client) == cluster[0].url
    assert client.stats()["failbacks"] == 1
    assert db.get("note:2")["_rev"] == revs[2]
    assert client.served_by == cluster[0].url


def test_failback_reads_histories_where_revs_diff_reports_ancestors_missing(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client(probe_interval=0.0)
    db = client.database("notes")
    cluster[0].down = True
    client.check_nodes()
    doc = {"_id": "note:1", "title": "a"}
    mine = db.put(doc)
    cluster[1].put_doc("notes", {**doc, "_rev": mine, "title": "another app process edited it"})
    cluster[0].down = False
    cluster[0].bodies_of_leaves_only = True
    cluster[1].replicate_to(cluster[0])
    client.check_nodes()
    assert active(client) == cluster[0].url
    assert cluster[0].sent("GET", "note:1")  # looked at the history after _revs_diff said missing


def test_a_preferred_node_that_stays_behind_is_not_used_and_reported(
    cluster: FakeCluster, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(probe_interval=0.0)
    client.behind_warning_seconds = 0.0
    cluster[0].down = True
    client.check_nodes()
    client.database("notes").put({"_id": "note:1", "title": "a"})
    cluster[0].down = False  # back, but replication into it never delivers note:1
    with caplog.at_level(logging.WARNING, logger="notebook.database.couch.nodes"):
        for _ in range(3):
            client.check_nodes()
    assert active(client) == cluster[1].url
    behind = [r for r in caplog.records if "healthy but behind" in r.getMessage()]
    assert behind and behind[-1].__dict__["missing_revisions"] == 1


def test_failback_happens_after_the_bounded_wait_even_if_behind(
    cluster: FakeCluster, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(probe_interval=0.0, failback_max_wait=0.0)
    cluster[0].down = True
    client.check_nodes()
    client.database("notes").put({"_id": "note:1", "title": "a"})
    cluster[0].down = False
    with caplog.at_level(logging.WARNING, logger="notebook.database.couch.nodes"):
        client.check_nodes()
    assert active(client) == cluster[0].url
    assert any("before the preferred node caught up" in r.getMessage() for r in caplog.records)


def test_no_failback_while_the_preferred_node_is_down(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(probe_interval=0.0, failback_max_wait=0.0)
    cluster[0].down = True
    client.check_nodes()
    client.check_nodes()
    assert active(client) == cluster[1].url


def test_failover_moves_on_when_the_second_node_dies_too(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    cluster[0].down = True
    cluster[1].down = True
    assert client.server_info()
    assert client.served_by == cluster[2].url
    assert active(client) == cluster[2].url


def test_single_node_recovers_without_a_monitor(cluster: FakeCluster) -> None:
    client = CouchDBClient(cluster[0].url, transport=cluster.transport)
    try:
        cluster[0].down = True
        with pytest.raises(DatabaseUnavailable):
            client.server_info()
        cluster[0].down = False
        assert client.ping()
        assert client.nodes_status()[0]["healthy"]
    finally:
        client.close()


# -- health from /_up ----------------------------------------------------------------------------


def test_a_node_in_maintenance_mode_is_unhealthy_although_its_welcome_answers(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client(probe_interval=0.0)
    cluster[0].maintenance = True  # CouchDB 3: /_up refuses, GET / still says welcome
    client.check_nodes()
    status = client.nodes_status()
    assert not status[0]["healthy"] and status[0]["circuit_open"]
    assert "maintenance_mode" in status[0]["last_error"]
    assert active(client) == cluster[1].url
    cluster[0].maintenance = False
    client.check_nodes()
    assert client.nodes_status()[0]["healthy"]
    assert active(client) == cluster[0].url  # nothing was written elsewhere: failed back at once


def test_a_server_without_up_is_probed_with_its_welcome_document(
    cluster: FakeCluster, make_client: Any
) -> None:
    for node in cluster.nodes:
        node.has_up = False  # pouchdb-server
    client = make_client(probe_interval=0.0)
    client.check_nodes()
    assert [s["healthy"] for s in client.nodes_status()] == [True, True, True]
    assert client.nodes_status()[0]["version"] == "3.4.3"
    before = list(cluster[0].log)
    client.check_nodes()
    assert cluster[0].log[len(before) :] == [("GET", "")]  # /_up is not asked again
    cluster[0].down = True
    client.check_nodes()
    assert not client.nodes_status()[0]["healthy"]


def test_couchdb_health_is_read_from_up_and_the_version_once(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(probe_interval=0.0)
    client.check_nodes()
    client.check_nodes()
    assert cluster[0].log == [("GET", "_up"), ("GET", ""), ("GET", "_up")]
    assert client.nodes_status()[0]["version"] == "3.4.3"
