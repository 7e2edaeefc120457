"""Replication that runs itself: the supervisor loop, the replicated node list, refilling a
database that is new on a node, and `_replicator` kept admin-only (in-memory nodes)."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from notebook.core.errors import NotFound
from notebook.database.couch import DatabaseUnavailable
from notebook.database.replication import JOB_ID_PREFIX, NODE_LIST_ID, ReplicationError, ReplicationManager
from notebook.database.replication.node_list import NODE_LIST_TYPE, parse_node_list
from notebook.database.replication.refill import FILLED_MARKER, REFILL_ID_PREFIX
from notebook.services.replication_service import ReplicationService
from tests.unit.couch_fake import FakeCluster, FakeNode

USERS = "n_users"
DATABASES = ["n_users", "n_notes"]


class ScriptedManager:
    """Stands in for the manager's `repair`: fails as told, and stops the loop after N rounds."""

    def __init__(self, outcomes: list[BaseException | None], stop: threading.Event) -> None:
        self.outcomes = outcomes
        self.stop = stop
        self.rounds = 0

    def repair(self) -> list[str]:
        self.rounds += 1
        if self.rounds >= len(self.outcomes):
            self.stop.set()
        outcome = self.outcomes[self.rounds - 1]
        if outcome is not None:
            raise outcome
        return []


class RecordingEvent(threading.Event):
    """An Event whose waits return at once and are recorded (no real sleeping in unit tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        return self.is_set()


def test_the_supervisor_survives_every_failure_and_spreads_its_rounds() -> None:
    stop = RecordingEvent()
    outcomes: list[BaseException | None] = [
        ReplicationError("node down"),
        DatabaseUnavailable("connection refused"),
        RuntimeError("a surprise"),
        None,
    ]
    manager = ScriptedManager(outcomes, stop)
    service = ReplicationService(manager)  # type: ignore[arg-type]
    rounds = service.supervise(stop, period=30.0, first_delay=5.0, rng=random.Random(7))
    assert rounds == manager.rounds == 4  # no failure ended the loop
    first, *later = stop.waits[:4]
    assert 0 <= first <= 5.0
    assert all(27.0 <= wait <= 30.0 for wait in later)  # never more than a period apart
    assert len(set(later)) > 1  # jittered, not in lockstep with other processes


def test_parse_node_list_accepts_only_a_usable_list() -> None:
    doc = {
        "_id": NODE_LIST_ID,
        "type": NODE_LIST_TYPE,
        "version": 2,
        "nodes": ["http://u:p@a:5984", "http://b:1/"],
    }
    parsed = parse_node_list(doc)
    assert parsed is not None and parsed.version == 2
    assert parsed.urls == ("http://a:5984/", "http://b:1/")  # no credentials kept
    for broken in (
        {**doc, "nodes": []},
        {**doc, "version": "2"},
        {**doc, "type": "x"},
        {**doc, "nodes": ["ftp://a"]},
    ):
        assert parse_node_list(broken) is None


def _manager(cluster: FakeCluster, count: int = 3) -> ReplicationManager:
    return ReplicationManager(
        cluster.urls()[:count], DATABASES, node_list_database=USERS, transport=cluster.transport
    )


def _list_doc(urls: list[str], version: int) -> dict[str, Any]:
    return {"_id": NODE_LIST_ID, "type": NODE_LIST_TYPE, "version": version, "nodes": urls}


def mesh_jobs(node: FakeNode) -> list[str]:
    return [
        i
        for i, d in node.dbs.get("_replicator", {}).items()
        if i.startswith(JOB_ID_PREFIX) and not d.get("_deleted")
    ]


def test_the_first_round_seeds_the_node_list_from_the_configured_nodes() -> None:
    cluster = FakeCluster(3)
    manager = _manager(cluster)
    try:
        manager.repair()
    finally:
        manager.close()
    seeded = parse_node_list(cluster[0].dbs[USERS][NODE_LIST_ID])
    assert seeded is not None and seeded.version == 1 and list(seeded.urls) == cluster.urls()
    assert all(len(mesh_jobs(node)) == 2 * len(DATABASES) for node in cluster.nodes)


def test_the_newest_list_wins_and_becomes_the_mesh(cluster: FakeCluster) -> None:
    """Node 1 holds a newer list without node 2; node 0 (empty after a lost disk, say) has none."""
    cluster.create_db(USERS)
    cluster[2].put_doc(USERS, _list_doc(cluster.urls(), 1))
    cluster[1].put_doc(USERS, _list_doc(cluster.urls()[:2], 2))
    manager = _manager(cluster)
    try:
        manager.repair()
        assert manager.node_urls == cluster.urls()[:2]
        assert manager.node_list().version == 2
    finally:
        manager.close()
    assert mesh_jobs(cluster[2]) == []  # the removed node got no jobs back
    assert len(mesh_jobs(cluster[0])) == len(DATABASES)  # only towards node 1


def test_a_node_added_to_the_list_gets_its_jobs_at_the_next_round(cluster: FakeCluster) -> None:
    cluster.create_db(USERS)
    manager = _manager(cluster, count=2)
    try:
        manager.repair()
        assert mesh_jobs(cluster[2]) == []
        cluster[0].put_doc(
            USERS, {**cluster[0].dbs[USERS][NODE_LIST_ID], "nodes": cluster.urls(), "version": 2}
        )
        manager.repair()
        assert manager.node_urls == cluster.urls()
    finally:
        manager.close()
    assert len(mesh_jobs(cluster[2])) == 2 * len(DATABASES)


def test_stray_jobs_to_a_removed_node_are_deleted_where_the_server_allows_it(cluster: FakeCluster) -> None:
    manager = _manager(cluster)
    try:
        manager.repair()
    finally:
        manager.close()
    listed = cluster[0].dbs[USERS][NODE_LIST_ID]
    cluster[0].put_doc(USERS, {**listed, "nodes": cluster.urls()[:2], "version": 2})
    cluster[1].scheduler_status = 404  # pouchdb-server: deleting would kill it (D12)
    manager = _manager(cluster)  # a process that missed `nodes remove`'s deletions
    try:
        manager.repair()
    finally:
        manager.close()
    assert len(mesh_jobs(cluster[0])) == len(DATABASES)  # the jobs to node 2 are gone
    assert len(mesh_jobs(cluster[1])) == 2 * len(DATABASES)  # left alone, reported


def test_a_database_new_on_a_node_is_refilled_from_every_other_node(cluster: FakeCluster) -> None:
    manager = _manager(cluster)
    try:
        manager.ensure_mesh()
        for node in cluster.nodes:
            assert all(FILLED_MARKER in node.dbs[db] for db in DATABASES)
        cluster[2].dbs = {}  # its disk is lost; it comes back empty
        cluster[1].down = True
        with pytest.raises(ReplicationError):
            manager.ensure_mesh()
        refills = {i: d for i, d in cluster[2].dbs["_replicator"].items() if i.startswith(REFILL_ID_PREFIX)}
        assert len(refills) == len(DATABASES)  # from node 0, the one answering
        assert all(
            doc["continuous"] is False and doc["source"]["url"].startswith(cluster[0].url)
            for doc in refills.values()
        )
        assert all(FILLED_MARKER not in cluster[2].dbs[db] for db in DATABASES)  # not complete yet
        cluster[1].down = False
        manager.ensure_mesh()
    finally:
        manager.close()
    refills = {i: d for i, d in cluster[2].dbs["_replicator"].items() if i.startswith(REFILL_ID_PREFIX)}
    assert len(refills) == 2 * len(DATABASES)
    assert all(FILLED_MARKER in cluster[2].dbs[db] for db in DATABASES)
    assert all(doc["target"]["url"].startswith(cluster[2].url) for doc in refills.values())


def test_replicator_is_made_admin_only_on_couchdb3_only(cluster: FakeCluster) -> None:
    cluster[1].scheduler_status = 404  # pouchdb-server: no scheduler, an admin party
    for urls in (cluster.urls()[:1], cluster.urls()[1:2]):  # one node each: no jobs to wait for
        manager = ReplicationManager(urls, DATABASES, transport=cluster.transport)
        try:
            manager.ensure_mesh()
        finally:
            manager.close()
    assert cluster[0].security["_replicator"]["members"] == {"names": [], "roles": ["_admin"]}
    assert "_replicator" not in cluster[1].security


def test_removing_a_node_records_the_list_first(cluster: FakeCluster) -> None:
    manager = _manager(cluster)
    service = ReplicationService(manager)
    try:
        manager.repair()
        with pytest.raises(NotFound):
            service.remove_node_from_deployment("http://elsewhere.test:5984/")
        removed, listed = service.remove_node_from_deployment(cluster.urls()[2])
    finally:
        service.close()
    assert removed == 2 * 2 * len(DATABASES)  # its jobs and the jobs pushing to it
    assert listed.version == 2 and list(listed.urls) == cluster.urls()[:2]
    stored = parse_node_list(cluster[0].dbs[USERS][NODE_LIST_ID])
    assert stored == listed


def test_the_member_account_is_created_where_it_is_missing_and_never_changed(cluster: FakeCluster) -> None:
    for node in cluster.nodes:
        node.dbs["_users"] = {}
    kept = {"_id": "org.couchdb.user:app", "name": "app", "password_scheme": "pbkdf2", "roles": ["ops"]}
    cluster[0].put_doc("_users", kept)
    manager = ReplicationManager(
        cluster.urls(),
        DATABASES,
        members=["app"],
        member_passwords={"app": "s3cret-pw"},
        transport=cluster.transport,
    )
    try:
        manager.ensure_mesh()
    finally:
        manager.close()
    assert cluster[0].dbs["_users"]["org.couchdb.user:app"]["roles"] == ["ops"]  # left as it was
    for node in cluster.nodes[1:]:
        account = node.dbs["_users"]["org.couchdb.user:app"]
        assert account["name"] == "app" and account["type"] == "user" and account["roles"] == []
        assert all(node.security[db]["members"]["names"] == ["app"] for db in DATABASES)


def test_a_teardown_is_recorded_so_no_supervisor_undoes_it(cluster: FakeCluster) -> None:
    service = ReplicationService(_manager(cluster))
    other_process = _manager(cluster)
    try:
        other_process.repair()
        # every mesh job, and the one-shot refill pulls that filled each node's new databases
        assert service.teardown() == 3 * 2 * len(DATABASES) * 2
        assert other_process.repair() == []  # paused: nothing written back
        assert all(mesh_jobs(node) == [] for node in cluster.nodes)
        service.ensure_mesh()  # the operator sets it up again
        other_process.repair()
    finally:
        service.close()
        other_process.close()
    listed = parse_node_list(cluster[0].dbs[USERS][NODE_LIST_ID])
    assert listed is not None and not listed.paused and listed.version == 3
    assert all(len(mesh_jobs(node)) == 2 * len(DATABASES) for node in cluster.nodes)


def test_adding_a_node_before_any_app_ran_records_the_list_with_it() -> None:
    cluster = FakeCluster(3)  # no database exists anywhere yet
    service = ReplicationService(_manager(cluster, count=2))
    try:
        added = service.add_node_to_deployment(cluster.urls()[2], timeout=0.2)
        listed = service.node_list()
    finally:
        service.close()
    assert added.url == cluster.urls()[2]
    assert listed.version == 1 and list(listed.urls) == cluster.urls()
    assert all(parse_node_list(node.dbs[USERS].get(NODE_LIST_ID)) == listed for node in cluster.nodes[:1])
    assert len(mesh_jobs(cluster[2])) == 2 * len(DATABASES)  # its jobs towards both others


def _a_failed_job(cluster: FakeCluster, manager: ReplicationManager) -> str:
    """Set the mesh up, then mark one job on node 0 failed, so the next round rewrites it."""
    manager.ensure_mesh()
    job = mesh_jobs(cluster[0])[0]
    cluster[0].scheduler_states = dict.fromkeys(mesh_jobs(cluster[0]), "running") | {job: "failed"}
    manager.refusal_pause = 0.0
    return job


def test_a_job_refused_because_another_process_restarted_it_counts_as_written(cluster: FakeCluster) -> None:
    """pouchdb-server refuses to update a running job (D12): when another app process restarted
    the job a moment before, the refusal is read again and the running job is what we wanted."""
    manager = _manager(cluster)
    try:
        job = _a_failed_job(cluster, manager)
        cluster[0].refuse_job_updates = 1
        manager.ensure_mesh()  # no ReplicationError
    finally:
        manager.close()
    assert cluster[0].refuse_job_updates == 0  # the update was tried, and refused
    assert cluster[0].scheduler_states[job] == "running"


def test_a_job_refused_every_time_is_reported_with_the_hint(cluster: FakeCluster) -> None:
    manager = _manager(cluster)
    try:
        job = _a_failed_job(cluster, manager)
        cluster[0].refuse_job_updates = 10
        cluster[0].refused_job_state = None  # still failed: nobody else restarted it
        with pytest.raises(ReplicationError) as raised:
            manager.ensure_mesh()
    finally:
        manager.close()
    assert 10 - cluster[0].refuse_job_updates == 3  # tried three times, then reported
    assert f"job {job}: forbidden" in str(raised.value) and "teardown, then setup" in str(raised.value)
