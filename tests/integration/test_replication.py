"""Replication mesh on three real, independent nodes of the server under test (pouchdb-server or
CouchDB 3): convergence, lag, setup, teardown, adding and removing a node, status, and the
operators' REST API.

pouchdb-server exits when one of its running `_replicator` jobs is deleted (docs/replication.md),
so the tests that delete jobs (teardown, remove_node) supervise: `revive` starts every node that
exited again, as a process manager would. CouchDB 3 nodes keep running; `revive` then does nothing.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_config
from notebook.database.couch import CouchDBClient, Database
from notebook.database.design_docs import (
    NOTES_DESIGN,
    USERS_DESIGN,
    database_names,
    ensure_schema,
    open_databases,
)
from notebook.database.replication import (
    ReplicationError,
    ReplicationManager,
    job_id,
    read_job_docs,
)
from notebook.database.replication.jobs import own_job_ids
from notebook.database.replication.refill import REFILL_ID_PREFIX
from tests.support.servers import NodeSet, start_nodes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"r{uuid.uuid4().hex[:8]}_"
DATABASES = list(database_names(PREFIX).values())
NOTES = database_names(PREFIX)["notes"]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    return bool(wait_until(condition, timeout, interval=0.05))


def revive(cluster: NodeSet, after_deleting_jobs: bool = False) -> list[int]:
    """Start again every node whose process exited (the supervision pouchdb-server needs).

    `after_deleting_jobs`: jobs were just deleted on every node, so give pouchdb-server's nodes a
    moment to exit first (they do ~50 ms after answering; a server that does not is not waited
    for longer than that moment).
    """
    if after_deleting_jobs:
        wait_for(lambda: not any(node.is_running for node in cluster.nodes), timeout=3)
    restarted = [index for index, node in enumerate(cluster.nodes) if not node.is_running]
    for index in restarted:
        cluster.nodes[index].restart()
    return restarted


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSet]:
    nodes = start_nodes(tmp_path_factory.mktemp("replication"), 3)
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def clients(cluster: NodeSet) -> Iterator[list[CouchDBClient]]:
    made = [
        CouchDBClient(url, user=cluster.user, password=cluster.password, timeout=5.0) for url in cluster.urls
    ]
    yield made
    for client in made:
        client.close()


@pytest.fixture(scope="module")
def manager(cluster: NodeSet) -> Iterator[ReplicationManager]:
    made = ReplicationManager(cluster.urls, DATABASES, cluster.user, cluster.password, timeout=5.0)
    yield made
    if not cluster.controls_processes:
        made.teardown()  # leave no continuous jobs behind on someone else's nodes
    made.close()


@pytest.fixture
def mesh(cluster: NodeSet, manager: ReplicationManager) -> list[str]:
    """Every node up, the mesh set up and every link running."""
    revive(cluster)
    ids = manager.ensure_mesh()
    running = wait_for(lambda: all(link.state == "running" for link in manager.status().links))
    assert running, {(link.state, link.last_error) for link in manager.status().links}
    return ids


def notes_on(client: CouchDBClient) -> Database:
    return client.database(NOTES)


def has_doc(client: CouchDBClient, doc_id: str) -> bool:
    try:
        return notes_on(client).get_or_none(doc_id) is not None
    except Exception:  # a node restarting counts as "not there yet"
        return False


def job_revisions(clients: list[CouchDBClient], ids: list[str]) -> dict[str, str]:
    revisions: dict[str, str] = {}
    for client in clients:
        for doc_id, doc in read_job_docs(client, ids).items():
            if doc is not None:
                revisions[doc_id] = doc["_rev"]
    return revisions


# -- convergence and lag ---------------------------------------------------------------------------


def test_a_document_written_on_any_node_appears_on_the_others(
    mesh: list[str], clients: list[CouchDBClient], manager: ReplicationManager
) -> None:
    written = []
    for index, client in enumerate(clients):
        doc_id = f"probe:{index}:{uuid.uuid4().hex[:6]}"
        notes_on(client).put({"_id": doc_id, "type": "probe"})
        written.append(doc_id)
    assert wait_for(lambda: all(has_doc(client, doc_id) for client in clients for doc_id in written))

    # generous: on a loaded machine CouchDB 3 may start a job seconds late (scheduler jitter);
    # the point is that every link delivers, not how fast (the benchmark measures that)
    lags = manager.measure_lag(timeout=60)
    assert len(lags) == 3 * 2 * len(DATABASES)  # every ordered pair of nodes, every database
    assert all(isinstance(lag, float) for lag in lags.values()), lags
    values = sorted(lag for lag in lags.values() if lag is not None)
    print(f"\ncanary lag over {len(values)} links: p50 {values[len(values) // 2]:.3f}s max {values[-1]:.3f}s")
    status = manager.status()
    assert all(link.lag_seconds is not None for link in status.links)
    assert status.healthy


def test_canaries_are_invisible_to_the_application_views(
    mesh: list[str], clients: list[CouchDBClient], manager: ReplicationManager
) -> None:
    manager.measure_lag(timeout=10)
    databases = open_databases(clients[0], PREFIX)
    ensure_schema(databases)
    canaries = [
        row["id"]
        for row in clients[0].request("GET", f"{NOTES}/_all_docs", params={"include_docs": True})["rows"]
        if row["doc"].get("type") == "canary"
    ]
    assert len(canaries) == 3  # one per node, updated in place by every measurement
    for db, design in ((databases.notes, NOTES_DESIGN), (databases.users, USERS_DESIGN)):
        for view, spec in db.get(f"_design/{design}")["views"].items():
            params = {"reduce": False} if "reduce" in spec else {}
            rows = db.view(design, view, **params)["rows"]
            assert not [row for row in rows if row["id"] in canaries], view


# -- setup and status ------------------------------------------------------------------------------


def test_setup_is_idempotent(
    mesh: list[str], clients: list[CouchDBClient], manager: ReplicationManager, cluster: NodeSet
) -> None:
    assert len(mesh) == len(set(mesh)) == 3 * 2 * len(DATABASES)
    before = job_revisions(clients, mesh)
    assert set(before) == set(mesh)
    again = manager.ensure_mesh()
    assert again == mesh
    assert job_revisions(clients, mesh) == before  # no new revision of any job document
    # each job lives on its source node and pushes to its target
    for source_index, source in enumerate(cluster.urls):
        on_source = [doc_id for doc_id, doc in read_job_docs(clients[source_index], mesh).items() if doc]
        expected = [
            job_id(db, source, target) for target in cluster.urls if target != source for db in DATABASES
        ]
        assert sorted(on_source) == sorted(expected)


def test_status_reports_nodes_and_running_links(
    mesh: list[str], manager: ReplicationManager, cluster: NodeSet
) -> None:
    status = manager.status()
    assert [node.healthy for node in status.nodes] == [True, True, True]
    assert [node.active for node in status.nodes] == [True, False, False]
    version = cluster.version()  # 4.2.0 on pouchdb-server, 3.4.x on CouchDB 3
    assert all(node.version == version and node.latency_ms is not None for node in status.nodes)
    assert len(status.links) == 3 * 2 * len(DATABASES)
    assert {link.state for link in status.links} == {"running"}
    assert status.healthy


def test_a_stopped_node_shows_in_the_status_and_catches_up_when_back(
    mesh: list[str], cluster: NodeSet, clients: list[CouchDBClient], manager: ReplicationManager
) -> None:
    cluster.nodes[2].kill()
    status = manager.status()
    assert [node.healthy for node in status.nodes] == [True, True, False]
    into_dead = [link for link in status.links if link.target == cluster.urls[2]]
    from_dead = [link for link in status.links if link.source == cluster.urls[2]]
    assert {link.state for link in from_dead} == {"unknown"}  # its jobs live on it
    assert {(link.state, link.last_error) for link in into_dead} == {("running", "target node unreachable")}
    assert not status.healthy

    written = [f"while-down:{i}" for i in range(20)]
    notes_on(clients[0]).bulk_docs([{"_id": doc_id, "type": "probe"} for doc_id in written])
    cluster.nodes[2].restart()
    restarted = time.monotonic()
    assert wait_for(lambda: all(has_doc(clients[2], doc_id) for doc_id in written))
    caught_up = time.monotonic() - restarted
    notes_on(clients[2]).put({"_id": "written-after-restart", "type": "probe"})
    back = time.monotonic()
    assert wait_for(lambda: has_doc(clients[0], "written-after-restart"), timeout=60)
    pulled_again = time.monotonic() - back
    print(f"\nrestarted node had the writes it missed {caught_up:.2f}s after restart;", end=" ")
    print(f"its own new write reached another node in {pulled_again:.2f}s")
    assert wait_for(lambda: manager.status().healthy)


# -- adding and removing a node ---------------------------------------------------------------------


def test_add_node_then_remove_it(
    mesh: list[str],
    cluster: NodeSet,
    clients: list[CouchDBClient],
    manager: ReplicationManager,
    tmp_path: Path,
) -> None:
    ensure_schema(open_databases(clients[0], PREFIX))  # design documents to copy
    notes_on(clients[0]).put({"_id": "before-the-new-node", "type": "probe"})
    assert wait_for(lambda: all(has_doc(client, "before-the-new-node") for client in clients))
    extra_nodes = start_nodes(tmp_path / "node3", 1, skip_external=3)
    extra = extra_nodes[0]
    new_client = CouchDBClient(extra.url, user=cluster.user, password=cluster.password, timeout=5.0)
    try:
        added = manager.add_node(extra.url, timeout=30)
        print(f"\nnew node caught up: {added.caught_up} in {added.seconds:.2f}s")
        assert added.caught_up
        assert len(added.job_ids) == 2 * 3 * len(DATABASES)
        assert manager.node_urls == [*cluster.urls, extra.url]
        assert has_doc(new_client, "before-the-new-node")
        design = notes_on(new_client).get("_design/notebook", conflicts=True)
        assert design["_rev"] == notes_on(clients[0]).get("_design/notebook")["_rev"]
        assert not design.get("_conflicts")
        notes_on(new_client).put({"_id": "from-the-new-node", "type": "probe"})
        assert wait_for(lambda: all(has_doc(client, "from-the-new-node") for client in clients))
        assert len(manager.status().links) == 4 * 3 * len(DATABASES)

        removed = manager.remove_node(extra.url)
        assert removed == 2 * 3 * len(DATABASES)
        assert manager.node_urls == cluster.urls
        revive(cluster, after_deleting_jobs=True)
        for client in clients:
            assert not [doc for doc in read_job_docs(client, added.job_ids).values() if doc]
        assert len(manager.status().links) == 3 * 2 * len(DATABASES)
    finally:
        new_client.close()
        extra_nodes.stop()


def test_removing_an_unknown_node_is_not_found(manager: ReplicationManager) -> None:
    from notebook.core.errors import NotFound

    with pytest.raises(NotFound):
        manager.remove_node("http://127.0.0.1:1/")


# -- the operators' REST API -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(cluster: NodeSet) -> Iterator[Any]:
    from notebook.api.app import create_app

    config = load_config(
        {"FLASK_ENV": "testing"},
        couchdb_url=cluster.urls[0],
        replication_nodes=tuple(cluster.urls[1:]),
        db_prefix=PREFIX,
        **cluster.credentials(),
    )
    application = create_app(config)
    yield application
    application.extensions["notebook"].close()


@pytest.fixture(scope="module")
def tokens(app: Any) -> dict[str, str]:
    client = app.test_client()
    made = {}
    for role in ("admin", "user"):
        answer = client.post(
            "/graphql",
            json={
                "query": """mutation($e: String!) { register(email: $e, password: "correct horse battery") {
                              accessToken user { id } } }""",
                "variables": {"e": f"{role}-{uuid.uuid4().hex[:6]}@example.com"},
            },
        ).get_json()["data"]["register"]
        made[role] = answer["accessToken"]
        if role == "admin":
            app.extensions["notebook"].users.set_admin(answer["user"]["id"], True)
    return made


ROUTES = [
    ("GET", "/api/replication/status"),
    ("POST", "/api/replication/setup"),
    ("DELETE", "/api/replication"),
    ("POST", "/api/replication/lag"),
    ("POST", "/api/replication/nodes"),
    ("DELETE", "/api/replication/nodes"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_rest_api_needs_an_admin(app: Any, tokens: dict[str, str], method: str, path: str) -> None:
    client = app.test_client()
    anonymous = client.open(path, method=method, json={"url": "http://127.0.0.1:1/"})
    assert anonymous.status_code == 401
    assert anonymous.get_json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    user = client.open(
        path,
        method=method,
        json={"url": "http://127.0.0.1:1/"},
        headers={"Authorization": f"Bearer {tokens['user']}"},
    )
    assert user.status_code == 403
    assert user.get_json() == {
        "errors": [{"message": "administrators only", "extensions": {"code": "FORBIDDEN"}}]
    }


def test_rest_status_and_setup_for_an_admin(
    mesh: list[str], app: Any, tokens: dict[str, str], cluster: NodeSet
) -> None:
    client = app.test_client()
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    setup = client.post("/api/replication/setup", headers=admin)
    assert setup.status_code == 200
    assert setup.get_json()["jobIds"] == mesh  # the app's manager makes the same, deterministic jobs
    status = client.get("/api/replication/status", headers=admin)
    assert status.status_code == 200
    body = status.get_json()
    assert [node["url"] for node in body["nodes"]] == cluster.urls
    assert {"url", "healthy", "active", "version", "latencyMs"} == set(body["nodes"][0])
    assert {"source", "target", "database", "state", "lastError", "lagSeconds"} == set(body["links"][0])
    lag = client.post("/api/replication/lag", json={"timeoutSeconds": 10}, headers=admin)
    assert lag.status_code == 200
    assert all(link["lagSeconds"] is not None for link in lag.get_json()["links"])
    bad = client.post("/api/replication/nodes", json={"url": "ftp://x"}, headers=admin)
    assert bad.status_code == 400
    assert bad.get_json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    unknown = client.delete("/api/replication/nodes?url=http://127.0.0.1:1/", headers=admin)
    assert unknown.status_code == 404


def test_graphql_replication_status_is_for_admins(mesh: list[str], app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    fields = "healthy nodes { url latencyMs active } links { state lastError lagSeconds }"
    query = {"query": f"{{ replicationStatus {{ {fields} }} }}"}
    denied = client.post("/graphql", json=query, headers={"Authorization": f"Bearer {tokens['user']}"})
    assert denied.get_json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    answer = client.post(
        "/graphql", json=query, headers={"Authorization": f"Bearer {tokens['admin']}"}
    ).get_json()
    assert not answer.get("errors"), answer
    status = answer["data"]["replicationStatus"]
    assert len(status["nodes"]) == 3 and len(status["links"]) == 3 * 2 * len(DATABASES)
    assert {link["state"] for link in status["links"]} == {"running"}


def test_openapi_document_describes_the_routes(app: Any) -> None:
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.data)
    assert document["openapi"].startswith("3.")
    for method, path in ROUTES:
        assert method.lower() in document["paths"][path], (method, path)


def test_make_admin_script(app: Any, cluster: NodeSet) -> None:
    client = app.test_client()
    email = f"ops-{uuid.uuid4().hex[:6]}@example.com"
    register = (
        'mutation($e: String!) { register(email: $e, password: "correct horse battery") { user { id } } }'
    )
    client.post("/graphql", json={"query": register, "variables": {"e": email}})
    env = {
        **os.environ,
        "FLASK_ENV": "testing",
        "COUCHDB_URL": cluster.urls[0],
        "COUCHDB_DB_PREFIX": PREFIX,
        "REPLICATION_NODES": "",
        **cluster.environment(),
    }
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "make_admin.py"), email],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert app.extensions["notebook"].users.get_by_email(email).is_admin


# -- teardown --------------------------------------------------------------------------------------


def test_teardown_removes_every_job_and_replication_stops(
    mesh: list[str],
    app: Any,
    tokens: dict[str, str],
    cluster: NodeSet,
    clients: list[CouchDBClient],
    manager: ReplicationManager,
) -> None:
    # the one-shot jobs that filled each node's new databases go too: pouchdb-server would run
    # them again when it restarts, and replication would not have stopped
    refills = [own_job_ids(client, DATABASES, REFILL_ID_PREFIX) for client in clients]
    answer = app.test_client().delete(
        "/api/replication", headers={"Authorization": f"Bearer {tokens['admin']}"}
    )
    assert answer.status_code == 200
    assert answer.get_json() == {"removedJobs": len(mesh) + sum(map(len, refills))}
    restarted = revive(cluster, after_deleting_jobs=True)
    print(f"\nnodes restarted after teardown: {restarted}")
    assert job_revisions(clients, mesh) == {}
    assert all(own_job_ids(client, DATABASES, REFILL_ID_PREFIX) == [] for client in clients)
    assert {link.state for link in manager.status().links} == {"stopped"}

    notes_on(clients[0]).put({"_id": "after-teardown", "type": "probe"})
    # no timed assertion: poll a few seconds and count how often it showed up elsewhere
    seen = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        seen += sum(has_doc(client, "after-teardown") for client in clients[1:])
        time.sleep(0.1)
    assert seen == 0

    assert manager.ensure_mesh() == mesh  # and setting up again resumes replication
    assert wait_for(lambda: all(has_doc(client, "after-teardown") for client in clients))


# -- credentials ----------------------------------------------------------------------------------


def test_status_never_shows_credentials(tmp_path: Path) -> None:
    """Nodes with an admin account, reached through password-bearing URLs, plus one that is down."""
    secured = start_nodes(tmp_path / "secured", 2)
    password = f"pw-{uuid.uuid4().hex}"
    token = base64.b64encode(f"ops:{password}".encode()).decode()
    try:
        secured.add_admin("ops", password)
        urls = [url.replace("http://", f"http://ops:{password}@") for url in secured.urls]
        dead = f"http://ops:{password}@127.0.0.1:1/"
        manager = ReplicationManager(urls, [NOTES], timeout=3.0)
        try:
            manager.ensure_mesh()
            # generous: a CouchDB 3 job may start seconds late on a loaded machine
            lags = manager.measure_lag(timeout=60)
            assert all(lag is not None for lag in lags.values())
            serialized = json.dumps(manager.status().to_dict())
            assert password not in serialized and token not in serialized and "ops:" not in serialized
        finally:
            manager.close()
        with_dead = ReplicationManager([*urls, dead], [NOTES], timeout=3.0)
        try:
            with pytest.raises(ReplicationError) as failure:
                with_dead.ensure_mesh()
            status = with_dead.status()
            serialized = json.dumps(status.to_dict()) + str(failure.value)
            assert not status.healthy
            assert password not in serialized and token not in serialized and "ops:" not in serialized
        finally:
            with_dead.close()
    finally:
        secured.stop()
