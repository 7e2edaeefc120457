"""notebook.database.replication: job states from both server forms, reading them in one call,
ids, URLs, redaction, and a clustered CouchDB given as several URLs."""

from __future__ import annotations

import base64
import json

import pytest

from notebook.core.errors import InvalidInput
from notebook.database.couch import CouchDBClient
from notebook.database.replication import (
    CLUSTERED,
    JOB_ID_PREFIX,
    MESH,
    JobState,
    JobStateReader,
    LinkStatus,
    NodeStatus,
    ReplicationError,
    ReplicationManager,
    ReplicationStatus,
    clean_url,
    job_id,
    job_state,
)
from tests.unit.couch_fake import FakeCluster, FakeNode

# -- CouchDB 3: /_scheduler/docs/_replicator -------------------------------------------------------


def scheduler(state: str, info: object = None) -> dict[str, object]:
    return {"database": "_replicator", "doc_id": "j", "state": state, "info": info, "error_count": 0}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("initializing", "pending"),
        ("pending", "pending"),
        ("running", "running"),
        ("crashing", "crashing"),
        ("error", "crashing"),  # retried periodically by CouchDB: not terminal
        ("completed", "completed"),
        ("failed", "failed"),
        ("something-new", "unknown"),
    ],
)
def test_scheduler_states_map_to_the_contract(raw: str, expected: str) -> None:
    assert job_state(scheduler(raw), {"_id": "j"}).state == expected


def test_a_crashing_scheduler_job_reports_its_error() -> None:
    state = job_state(scheduler("crashing", {"error": "db_not_found: could not open http://h/db"}), None)
    assert state == JobState("crashing", "db_not_found: could not open http://h/db")


def test_couchdb_2_scheduler_error_is_a_string() -> None:
    assert job_state(scheduler("failed", "duplicate replication"), None).last_error == "duplicate replication"


def test_running_scheduler_job_has_no_error_even_with_statistics_in_info() -> None:
    state = job_state(scheduler("running", {"revisions_checked": 10, "docs_written": 10}), None)
    assert state == JobState("running", None)


def test_the_scheduler_wins_over_fields_in_the_document() -> None:
    doc = {"_id": "j", "_replication_state": "error", "_replication_state_reason": "old"}
    assert job_state(scheduler("running"), doc) == JobState("running", None)


# -- pouchdb-server / CouchDB 1.x: fields in the _replicator document -----------------------------


def test_triggered_document_is_running() -> None:
    doc = {"_id": "j", "_replication_state": "triggered", "_replication_id": "abc"}
    assert job_state(None, doc) == JobState("running", None)


def test_a_reason_lingering_from_an_earlier_failure_is_not_reported_while_running() -> None:
    doc = {"_id": "j", "_replication_state": "triggered", "_replication_state_reason": "old failure"}
    assert job_state(None, doc).last_error is None


def test_error_document_is_failed_with_its_reason() -> None:
    doc = {"_id": "j", "_replication_state": "error", "_replication_state_reason": "unauthorized"}
    assert job_state(None, doc) == JobState("failed", "unauthorized")


def test_failed_document_written_by_couchdb_3() -> None:
    doc = {"_id": "j", "_replication_state": "failed", "_replication_state_reason": "{foo,bar}"}
    assert job_state(None, doc) == JobState("failed", "{foo,bar}")


def test_completed_document() -> None:
    assert job_state(None, {"_id": "j", "_replication_state": "completed"}).state == "completed"


def test_document_without_state_is_pending() -> None:
    assert job_state(None, {"_id": "j", "source": {}, "target": {}}).state == "pending"


def test_unknown_document_state() -> None:
    assert job_state(None, {"_id": "j", "_replication_state": "paused"}).state == "unknown"


@pytest.mark.parametrize("doc", [None, {"_id": "j", "_deleted": True}])
def test_missing_or_deleted_document_is_stopped(doc: dict[str, object] | None) -> None:
    assert job_state(None, doc) == JobState("stopped", None)


# -- ids, URLs, credentials ----------------------------------------------------------------------


def test_job_ids_are_deterministic_and_distinct_per_direction_and_database() -> None:
    a, b = "http://127.0.0.1:5984/", "http://127.0.0.1:5985/"
    assert job_id("n_notes", a, b) == job_id("n_notes", a, b)
    assert len({job_id("n_notes", a, b), job_id("n_notes", b, a), job_id("n_users", a, b)}) == 3
    assert job_id("n_notes", a, b).startswith("notebook-replication:n_notes:")


def test_clean_url_strips_credentials_and_normalizes() -> None:
    assert clean_url("http://ops:s3cret@127.0.0.1:5984") == "http://127.0.0.1:5984/"
    assert clean_url(" https://db.example.com/ ") == "https://db.example.com/"


@pytest.mark.parametrize("url", ["", "ftp://host/", "not a url", "127.0.0.1:5984"])
def test_clean_url_rejects_what_is_not_a_node_url(url: str) -> None:
    with pytest.raises(InvalidInput):
        clean_url(url)


def test_endpoints_carry_credentials_in_headers_only() -> None:
    manager = ReplicationManager(
        ["http://ops:s3cret@127.0.0.1:1/", "http://127.0.0.1:2/"], ["n_notes"], user="app", password="pw"
    )
    try:
        first, second = manager._snapshot()
        assert first.endpoint("n_notes") == {
            "url": "http://127.0.0.1:1/n_notes",
            "headers": {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()},
        }
        assert second.endpoint("n_notes")["headers"] == {
            "Authorization": "Basic " + base64.b64encode(b"app:pw").decode()
        }
        assert manager.node_urls == ["http://127.0.0.1:1/", "http://127.0.0.1:2/"]
    finally:
        manager.close()


def test_no_credentials_means_empty_headers() -> None:
    manager = ReplicationManager(["http://127.0.0.1:1/"], ["n_notes"])
    try:
        assert manager._snapshot()[0].endpoint("n/x") == {"url": "http://127.0.0.1:1/n%2Fx", "headers": {}}
    finally:
        manager.close()


def test_redaction_removes_user_info_passwords_and_basic_tokens() -> None:
    manager = ReplicationManager(["http://ops:s3cret@127.0.0.1:1/"], ["n_notes"], password="other")
    token = base64.b64encode(b"ops:s3cret").decode()
    try:
        text = manager._redact(f"failed http://ops:s3cret@127.0.0.1:1/n_notes Basic {token} s3cret other")
    finally:
        manager.close()
    assert "s3cret" not in text and token not in text and "other" not in text and "ops:" not in text
    assert "http://127.0.0.1:1/n_notes" in text


def test_status_serializes_with_the_contract_fields() -> None:
    status = ReplicationStatus(
        nodes=[NodeStatus("http://a/", True, True, "3.4.3", 1.5)],
        links=[LinkStatus("http://a/", "http://b/", "n_notes", "running", None, 0.05)],
        healthy=True,
    )
    payload = json.loads(json.dumps(status.to_dict()))
    assert set(payload["nodes"][0]) == {"url", "healthy", "active", "version", "latency_ms"}
    assert set(payload["links"][0]) == {"source", "target", "database", "state", "last_error", "lag_seconds"}
    assert payload["topology"] == MESH


# -- reading states: one call per node, scheduler refusals ---------------------------------------


def _jobs(node: FakeNode, count: int) -> list[str]:
    node.dbs.setdefault("_replicator", {})
    ids = [f"notebook-replication:n_notes:{i}" for i in range(count)]
    for job in ids:
        node.put_doc("_replicator", {"_id": job, "source": {"url": "a"}, "target": {"url": "b"}})
    return ids


def test_every_job_state_of_a_node_is_read_in_one_scheduler_call(cluster: FakeCluster) -> None:
    node = cluster[0]
    ids = _jobs(node, 6)
    node.scheduler_states = {job: "running" for job in ids[:5]} | {"someone-else": "crashing"}
    client = CouchDBClient(node.url, transport=cluster.transport)
    reader = JobStateReader()
    try:
        states = reader.read(client, ids)
        assert [states[job].state for job in ids] == ["running"] * 5 + ["pending"]  # not seen yet
        node.log.clear()
        reader.read(client, ids)
    finally:
        client.close()
    # the job documents, then every scheduler entry at once: not one request per job
    assert node.log == [("POST", "_replicator/_all_docs"), ("GET", "_scheduler/docs/_replicator")]


@pytest.mark.parametrize("refusal", [401, 403, 404])
def test_a_scheduler_that_refuses_us_means_reading_the_documents(cluster: FakeCluster, refusal: int) -> None:
    node = cluster[0]
    ids = _jobs(node, 2)
    node.dbs["_replicator"][ids[0]]["_replication_state"] = "triggered"
    node.scheduler_status = refusal  # 404: pouchdb-server; 401/403: CouchDB 3 with a non-admin account
    client = CouchDBClient(node.url, transport=cluster.transport)
    reader = JobStateReader()
    try:
        states = reader.read(client, ids)
        assert reader.records_state_in_documents(client)
        reader.read(client, ids)
    finally:
        client.close()
    assert states[ids[0]] == JobState("running", None) and states[ids[1]].state == "pending"
    assert len(node.sent("GET", "_scheduler/jobs")) == 1  # detected once per node
    assert node.sent("GET", "_scheduler/docs/_replicator") == []


# -- a clustered CouchDB given as several URLs ---------------------------------------------------


def test_doors_to_one_cluster_get_no_replication_jobs(cluster: FakeCluster) -> None:
    members = [f"couchdb@n{i}" for i in range(3)]
    for node in cluster.nodes:
        node.cluster_nodes = members
    manager = ReplicationManager(cluster.urls(), ["n_notes", "n_users"], transport=cluster.transport)
    try:
        assert manager.ensure_mesh() == []
        status = manager.status()
        assert manager.measure_lag(timeout=1.0) == {}
    finally:
        manager.close()
    assert status.topology == CLUSTERED and status.links == [] and status.healthy
    assert [node.url for node in status.nodes] == cluster.urls()
    assert all("_replicator" not in node.dbs for node in cluster.nodes)  # no job anywhere
    assert "n_notes" in cluster[0].dbs  # the databases were created through one door


def test_independent_servers_get_the_mesh(cluster: FakeCluster) -> None:
    manager = ReplicationManager(cluster.urls()[:2], ["n_notes"], transport=cluster.transport)
    try:
        ids = manager.ensure_mesh()
        assert manager.status().topology == MESH
    finally:
        manager.close()
    assert len(ids) == 2
    for node in cluster.nodes[:2]:  # one mesh job each (besides the one-shot refill, refill.py)
        assert len([doc_id for doc_id in node.dbs["_replicator"] if doc_id.startswith(JOB_ID_PREFIX)]) == 1


def test_a_cluster_with_a_door_down_is_still_a_cluster(cluster: FakeCluster) -> None:
    for node in cluster.nodes:
        node.cluster_nodes = ["couchdb@n0", "couchdb@n1", "couchdb@n2"]
    cluster[0].down = True
    manager = ReplicationManager(cluster.urls(), ["n_notes"], transport=cluster.transport)
    try:
        assert manager.ensure_mesh() == []
        status = manager.status()
    finally:
        manager.close()
    assert status.topology == CLUSTERED and not status.healthy
    assert [node.healthy for node in status.nodes] == [False, True, True]


def test_cluster_doors_mixed_with_other_servers_are_refused(cluster: FakeCluster) -> None:
    cluster[0].cluster_nodes = cluster[1].cluster_nodes = ["couchdb@n0", "couchdb@n1"]
    manager = ReplicationManager(cluster.urls(), ["n_notes"], transport=cluster.transport)
    try:
        with pytest.raises(ReplicationError, match="one URL per cluster"):
            manager.ensure_mesh()
    finally:
        manager.close()
    assert all("_replicator" not in node.dbs for node in cluster.nodes)


def test_the_request_account_becomes_a_member_of_every_database_on_every_node(cluster: FakeCluster) -> None:
    """CouchDB 3 creates databases admin-only and replication does not copy `_security`."""
    manager = ReplicationManager(
        cluster.urls(), ["n_notes", "n_users"], members=["app"], transport=cluster.transport
    )
    try:
        manager.ensure_mesh()
        manager.ensure_mesh()  # idempotent: the name is not added twice
    finally:
        manager.close()
    for node in cluster.nodes:
        security = {db: sec["members"]["names"] for db, sec in node.security.items() if db != "_replicator"}
        assert security == {
            "n_notes": ["app"],
            "n_users": ["app"],
        }


def test_a_cluster_takes_more_doors_but_no_other_server(cluster: FakeCluster) -> None:
    cluster[0].cluster_nodes = cluster[1].cluster_nodes = ["couchdb@n0", "couchdb@n1"]
    manager = ReplicationManager(cluster.urls()[:1], ["n_notes"], transport=cluster.transport)
    manager_of_two = ReplicationManager(cluster.urls()[:2], ["n_notes"], transport=cluster.transport)
    try:
        assert manager_of_two.ensure_mesh() == []
        with pytest.raises(InvalidInput, match="only URLs of that cluster"):
            manager_of_two.add_node(cluster.urls()[2], timeout=1.0)
        added = manager_of_two.add_node(cluster.urls()[1], timeout=1.0)  # already a door: no jobs
        assert added.job_ids == [] and added.caught_up
        assert manager_of_two.remove_node(cluster.urls()[1]) == 0
        assert manager_of_two.node_urls == cluster.urls()[:1]
        assert manager.topology == MESH  # a single URL is never a cluster of doors
    finally:
        manager.close()
        manager_of_two.close()
    assert all(not node.dbs.get("_replicator") for node in cluster.nodes)


def test_a_crashing_job_whose_target_answers_is_recreated_not_updated(cluster: FakeCluster) -> None:
    """CouchDB 3 keeps a crashing job's backoff across updates (server_differences D22)."""
    manager = ReplicationManager(cluster.urls()[:2], ["n_notes"], transport=cluster.transport)
    try:
        crashing, running = manager.ensure_mesh()
        cluster[0].scheduler_states = {crashing: "crashing"}
        cluster[1].scheduler_states = {running: "running"}
        manager.ensure_mesh()
        cluster[0].scheduler_states = {crashing: "running"}  # the new job runs at once
        manager.ensure_mesh()  # running: left alone
    finally:
        manager.close()
    recreated = cluster[0].dbs["_replicator"][crashing]
    assert recreated["_rev"].startswith("3-")  # created, deleted, created
    assert not recreated.get("_deleted") and recreated["continuous"] is True
    assert cluster[1].dbs["_replicator"][running]["_rev"].startswith("1-")
