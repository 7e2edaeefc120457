"""The CouchDB 3 / pouchdb-server differences of database/couch/server_differences.py, on real
servers: health from /_up (maintenance mode), replication state read in one call per node,
`_replicator` documents with the `owner` CouchDB 3 adds, changes-feed positions per node, and a
clustered CouchDB given as several URLs (no replication jobs; failover between its doors)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from notebook.database.conflicts import ConflictStore
from notebook.database.couch import CouchDBClient
from notebook.database.couch.verification import DocWrite
from notebook.database.design_docs import NOTES_DESIGN, database_names
from notebook.database.replication import CLUSTERED, MESH, ReplicationManager
from tests.support.servers import NodeSet, start_nodes
from tests.support.waiting import wait_until

COUCHDB3_ONLY = "behaviour of Apache CouchDB 3 that pouchdb-server does not have"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSet]:
    """Two independent nodes of the server under test."""
    nodes = start_nodes(tmp_path_factory.mktemp("differences"), 2)
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSet]:
    """ONE clustered CouchDB 3 of three nodes (nodes.py --cluster); skipped on other servers."""
    nodes = start_nodes(tmp_path_factory.mktemp("cluster"), 3, cluster=True)
    yield nodes
    nodes.stop()


_opened: list[CouchDBClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _client(nodes: NodeSet, urls: list[str] | None = None, **options: Any) -> CouchDBClient:
    client = CouchDBClient(urls or nodes.urls, user=nodes.user, password=nodes.password, **options)
    _opened.append(client)
    return client


def _names() -> list[str]:
    return list(database_names(f"d{uuid.uuid4().hex[:8]}_").values())


# -- D1: health ----------------------------------------------------------------------------------


@pytest.mark.servers("couchdb3", reason=COUCHDB3_ONLY)
def test_a_node_in_maintenance_mode_is_unhealthy(pair: NodeSet) -> None:
    client = _client(pair, probe_interval=0.0)
    node = pair[0]
    try:
        client.check_nodes()
        assert [s["healthy"] for s in client.nodes_status()] == [True, True]
        status, body = node.request("PUT", "_node/_local/_config/couchdb/maintenance_mode", "true")
        assert status == 200, body
        try:
            assert node.request("GET", "")[0] == 200  # the welcome document still answers
            client.check_nodes()
            first = client.nodes_status()[0]
            assert not first["healthy"] and "maintenance_mode" in (first["last_error"] or "")
            assert client.active_url == pair[1].url
        finally:
            node.request("PUT", "_node/_local/_config/couchdb/maintenance_mode", "false")
        client.check_nodes()
        assert client.nodes_status()[0]["healthy"]
    finally:
        client.close()


def test_health_probes_work_on_this_server(pair: NodeSet) -> None:
    client = _client(pair, probe_interval=0.0)
    try:
        client.check_nodes()
        status = client.nodes_status()
    finally:
        client.close()
    assert [s["healthy"] for s in status] == [True, True]
    assert all(s["version"] for s in status)


# -- D7-D9: replication state in one call per node ------------------------------------------------


def test_status_reads_every_job_of_a_node_in_one_call(pair: NodeSet) -> None:
    manager = ReplicationManager(pair.urls, _names(), pair.user, pair.password)
    try:
        assert len(manager.ensure_mesh()) == 2 * len(_names())
        manager.status()  # detects the scheduler once per node
        clients = [node.client for node in manager._snapshot()]
        before = [client.requests.total for client in clients]
        status = manager.status()
        used = [client.requests.total - count for client, count in zip(clients, before, strict=True)]
        if pair.kind != "pouchdb":  # pouchdb-server exits when running jobs are deleted (D12)
            manager.teardown()
    finally:
        manager.close()
    assert status.topology == MESH and len(status.links) == 2 * len(_names())
    # per node: its welcome document, its job documents and (CouchDB 3) the scheduler's list:
    # three jobs per node, yet no request per job
    assert used == [3, 3] if pair.kind == "couchdb3" else used == [2, 2]


# -- D11: server-added fields --------------------------------------------------------------------


@pytest.mark.servers(
    "couchdb3",
    reason="`owner` is CouchDB 3's; pouchdb-server exits when a running job's document is deleted",
)
def test_a_replicator_document_is_recognised_by_the_fields_we_wrote(pair: NodeSet) -> None:
    client = _client(pair, [pair.urls[0]])
    replicator = client.database("_replicator")
    source, target = _names()[:2]
    try:
        for name in (source, target):
            client.database(name).ensure_exists()
        job = {
            "_id": f"test-{uuid.uuid4().hex[:8]}",
            "source": {"url": pair.urls[0] + source, "headers": _auth_headers(pair)},
            "target": {"url": pair.urls[0] + target, "headers": _auth_headers(pair)},
            "continuous": False,
        }
        written = DocWrite(job["_id"], dict(job), None, deleted=False)
        rev = replicator.put(dict(job))
        row = replicator.all_docs([job["_id"]])[0]
        assert written.result_if_landed(row) == {"ok": True, "id": job["_id"], "rev": rev}
        assert row["doc"]["owner"] == pair.user  # what made whole-document comparison fail
        replicator.delete(job["_id"], replicator.get(job["_id"])["_rev"])
    finally:
        for name in (source, target):
            client.database(name).destroy()
        client.close()


def _auth_headers(nodes: NodeSet) -> dict[str, str]:
    if not nodes.user:
        return {}
    token = base64.b64encode(f"{nodes.user}:{nodes.password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# -- D5: changes-feed positions per node ----------------------------------------------------------


def test_after_a_failover_the_feed_is_not_replayed_from_another_nodes_position(pair: NodeSet) -> None:
    """A position taken on node 0 and sent to node 1 makes CouchDB 3 replay node 1's feed from 0:
    the resolver would see every old conflict again after each failover. Positions stay with
    their node: node 1 is read from "now"."""
    pair.require_process_control()
    name = _names()[1]
    client = _client(pair, probe_interval=0.0)
    try:
        for url in pair.urls:
            _client(pair, [url]).database(name).ensure_exists()
        node1 = _client(pair, [pair.urls[1]]).database(name)
        conflicted = {"_id": "note:old-conflict", "title": "a"}
        node1.bulk_docs([{**conflicted, "_rev": "1-a"}, {**conflicted, "_rev": "1-b"}], new_edits=False)
        store = ConflictStore(client.database(name), NOTES_DESIGN)
        store.changed_with_leaves()
        client.database(name).put({"_id": "note:1", "title": "on node 0"})
        assert store.changed_with_leaves() == []
        node0_position = store.positions[pair.urls[0]]
        if pair.kind == "couchdb3":  # the hazard itself: no refusal, a replay from 0
            replay = node1.changes(since=node0_position, style="all_docs")["results"]
            assert [row["id"] for row in replay] == ["note:old-conflict"]

        pair[0].kill()
        client.check_nodes()
        assert client.active_url == pair.urls[1]
        assert store.changed_with_leaves() == []  # node 1 from "now": the old conflict not replayed
        assert set(store.positions) == set(pair.urls)
        assert store.positions[pair.urls[0]] == node0_position  # kept for the failback
    finally:
        client.close()
        if not pair[0].is_running:
            pair[0].restart()


# -- D22: a job in CouchDB's crash backoff -------------------------------------------------------


@pytest.mark.servers("couchdb3", reason="CouchDB 3's crash backoff; pouchdb-server has no crashing state")
def test_replication_into_a_node_back_from_an_outage_resumes_after_one_repair_round(pair: NodeSet) -> None:
    pair.require_process_control()
    names = _names()
    notes = names[1]
    manager = ReplicationManager(pair.urls, names, pair.user, pair.password)
    try:
        manager.ensure_mesh()
        assert wait_until(lambda: all(v is not None for v in manager.measure_lag(timeout=5.0).values()), 60)
        writer = _client(pair, [pair.urls[0]]).database(notes)
        written: list[str] = []

        def link_crashing() -> bool:
            doc_id = f"note:{len(written)}"
            writer.put({"_id": doc_id, "title": "written while node 1 is away"})
            written.append(doc_id)
            return any(
                link.state == "crashing"
                for link in manager.status().links
                if link.source == pair.urls[0] and link.database == notes
            )

        pair[1].kill()
        assert wait_until(link_crashing, 120, interval=1.0), "the job never went into backoff"
        pair[1].restart()
        reader = _client(pair, [pair.urls[1]]).database(notes)
        rounds: list[int] = []

        def arrived() -> bool:
            manager.ensure_mesh()  # one round of the repair loop (`watch`)
            rounds.append(len(rounds))
            return len(reader.get_many(written)) == len(written)

        assert wait_until(arrived, 30, interval=1.0), f"not there after {len(rounds)} repair rounds"
        assert len(rounds) <= 15  # CouchDB's own backoff alone took ~75 s (findings F3)
        manager.teardown()
    finally:
        manager.close()
        for node in pair:
            if not node.is_running:
                node.restart()


# -- D14: one clustered CouchDB given as several URLs --------------------------------------------


def test_a_cluster_given_as_three_urls_gets_no_replication_jobs(cluster: NodeSet) -> None:
    manager = ReplicationManager(cluster.urls, _names(), cluster.user, cluster.password)
    try:
        assert manager.ensure_mesh() == []
        status = manager.status()
    finally:
        manager.close()
    assert status.topology == CLUSTERED and status.links == [] and status.healthy
    assert [node.url for node in status.nodes] == cluster.urls
    for node in cluster:
        code, body = node.request("GET", "_replicator/_all_docs")
        assert code == 200 and not [row for row in body["rows"] if not row["id"].startswith("_design/")]


def test_writes_go_on_through_another_door_when_a_cluster_node_dies(cluster: NodeSet) -> None:
    cluster.require_process_control()
    name = _names()[1]
    client = _client(cluster, probe_interval=0.25, timeout=5.0)
    client.start_health_monitor()
    try:
        db = client.database(name)
        db.ensure_exists()
        written = [db.put({"_id": f"note:{i}", "title": f"before {i}"}) for i in range(10)]
        cluster[0].kill()
        written += [db.put({"_id": f"note:{i}", "title": f"after {i}"}) for i in range(10, 30)]
        assert client.served_by != cluster.urls[0]
        assert client.stats()["failovers"] >= 1
        door = _client(cluster, [cluster.urls[2]]).database(name)
        docs = wait_until(lambda: len(door.get_many([f"note:{i}" for i in range(30)])) == 30 and door, 30)
        assert docs, "a write acknowledged by the cluster is missing behind another door"
        stored = door.get_many([f"note:{i}" for i in range(30)])
        assert [stored[f"note:{i}"]["_rev"] for i in range(30)] == written
    finally:
        client.close()
        if not cluster[0].is_running:
            cluster[0].restart()
