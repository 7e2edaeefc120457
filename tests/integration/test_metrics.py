"""`GET /metrics` under real gunicorn with two workers, over two replicating database nodes.

The test scrapes once before it does anything, then makes each family move: GraphQL requests
and errors, CouchDB requests, a replication conflict the resolver settles, a lag measurement, a
node killed (failover, node health). Counters must add up over both workers: N requests sent,
N counted, whichever worker served each one and whichever answers the scrape.
"""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.local_server import free_port
from notebook.database.design_docs import database_names
from tests.support.api_server import BIN, PROJECT_ROOT, ServerProcess, clean_environment
from tests.support.servers import NodeSet, start_nodes
from tests.support.waiting import wait_for

METRICS_TOKEN = uuid.uuid4().hex  # made up per run, never a literal
PING_COUNT = 12

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[NodeSet, ServerProcess, dict[str, str]]]:
    nodes = start_nodes(tmp_path / "nodes", 2)
    port = free_port()
    # a directory left by an earlier run: gunicorn must empty it, or old counts would add up
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"left over from the last run")
    env = clean_environment(
        FLASK_ENV="testing",
        COUCHDB_URL=nodes.urls[0],
        REPLICATION_NODES=nodes.urls[1],
        COUCHDB_DB_PREFIX=f"m{uuid.uuid4().hex[:10]}_",
        REPLICATION_SUPERVISOR="1",
        REPLICATION_START_JITTER_SECONDS="0",
        REPLICATION_RETRY_SECONDS="2",
        CONFLICT_RESOLVER="1",
        CONFLICT_POLL_SECONDS="0.5",
        METRICS_TOKEN=METRICS_TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        **nodes.environment(),
    )
    command = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "notebook.api.app:create_app()"]
    server = ServerProcess(command, env, PROJECT_ROOT, tmp_path, port)  # reads gunicorn.conf.py
    try:
        server.wait_ready(90)
        assert not (metrics_dir / "counter_99999.db").exists()
        # writes need a quorum of both nodes: wait for the supervisor's first round to have made
        # the app's databases on node1 too (on a loaded machine it can come after /ready)
        prefix = env["COUCHDB_DB_PREFIX"]
        wait_for(
            lambda: all(
                nodes[1].request("GET", f"{prefix}{role}")[0] == 200
                for role in ("users", "notes", "activity", "throttle")
            ),
            60,
            "the app's databases on node1",
        )
        yield nodes, server, env
    finally:
        server.stop()
        nodes.stop()


def scrape(server: ServerProcess) -> Samples:
    response = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def graphql(server: ServerProcess, query: str, variables: dict | None = None, token: str = "",
            operation: str | None = None) -> dict[str, Any]:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation:
        body["operationName"] = operation
    return httpx.post(f"{server.url}/graphql", json=body, headers=headers, timeout=30).json()


NOTE_FIELDS = "id title version conflicts { version }"


def write_sibling(nodes: NodeSet, notes_db: str, note_id: str, parent_rev: str, title: str) -> None:
    """A competing child of `parent_rev` on node0, stored the way replication stores one."""
    status, parent = nodes[0].request("GET", f"{notes_db}/{note_id}?rev={parent_rev}&revs=true")
    assert status == 200, parent
    body = {k: v for k, v in parent.items() if k not in ("_rev", "_revisions")}
    body.update(title=title, updated_at="2000-01-01T00:00:00.000000Z")
    generation = int(parent_rev.split("-")[0]) + 1
    new_hash = hashlib.md5(title.encode()).hexdigest()
    body["_rev"] = f"{generation}-{new_hash}"
    body["_revisions"] = {"start": generation, "ids": [new_hash, *parent["_revisions"]["ids"]]}
    status, answer = nodes[0].request("POST", f"{notes_db}/_bulk_docs", {"docs": [body], "new_edits": False})
    assert status == 201, answer


def test_metrics_move_under_two_gunicorn_workers(
    deployment: tuple[NodeSet, ServerProcess, dict[str, str]],
) -> None:
    nodes, server, env = deployment
    node0, node1 = nodes.urls
    before = scrape(server)
    assert value(before, "notebook_graphql_requests_total") == 0  # nothing from an earlier run

    # who may scrape: the token, and nobody without it
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 403
    wrong = {"Authorization": f"Bearer {uuid.uuid4().hex}"}
    assert httpx.get(f"{server.url}/metrics", headers=wrong, timeout=10).status_code == 403

    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    register = """mutation Register($email: String!) {
        register(email: $email, password: "correct horse battery", displayName: "Ops") { accessToken } }"""
    answer = graphql(server, register, {"email": email})
    assert answer.get("data"), answer
    token = answer["data"]["register"]["accessToken"]
    for _ in range(PING_COUNT):
        assert graphql(server, "query Ping { me { id } }", token=token)["data"]["me"]["id"]
    create = f"""mutation CreateNote($t: String!) {{
        createNote(input: {{title: $t, content: "x"}}) {{ {NOTE_FIELDS} }} }}"""
    base = graphql(server, create, {"t": "Plan"}, token)["data"]["createNote"]
    update = f"""mutation UpdateNote($id: ID!, $v: String!, $t: String!) {{
        updateNote(id: $id, version: $v, input: {{title: $t}}) {{ {NOTE_FIELDS} }} }}"""
    ours = graphql(server, update, {"id": base["id"], "v": base["version"], "t": "Plan v2"}, token)
    assert ours["data"]["updateNote"]["title"] == "Plan v2"
    stale = graphql(server, update, {"id": base["id"], "v": base["version"], "t": "late"}, token)
    assert stale["errors"][0]["extensions"]["code"] == "CONFLICT"

    # a conflict as replication would bring it; the resolver (in either worker) settles it
    notes_db = database_names(env["COUCHDB_DB_PREFIX"])["notes"]
    write_sibling(nodes, notes_db, base["id"], base["version"], "Plan (b)")
    wait_for(
        lambda: (
            value(scrape(server), "notebook_conflicts_resolved_total", database="notes", how="merged")
            > value(before, "notebook_conflicts_resolved_total", database="notes", how="merged")
        ),
        60,
        "the resolver to settle the conflict",
    )

    # the supervisor set up the mesh; an admin measures lag through the REST API
    subprocess.run([str(BIN / "notebook-server"), "create-admin", email], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    wait_for(
        lambda: value(scrape(server), "notebook_replication_link_healthy") == 2 * len(database_names("x")),
        90,
        "every replication link healthy",
    )
    lag = httpx.post(f"{server.url}/api/replication/lag", headers={"Authorization": f"Bearer {token}"},
                     json={"timeoutSeconds": 20}, timeout=60)  # fmt: skip
    assert lag.status_code == 200, lag.text

    # the status read at a scrape converges once the lag canaries are in (a link's state may
    # flicker while CouchDB 3's scheduler settles a job): wait for a fully healthy reading
    during = wait_for(
        lambda: (s := scrape(server)) and value(s, "notebook_replication_healthy") == 1 and s,
        60,
        "a scrape that reports replication healthy",
    )
    # node0 goes down: the next requests fail over, the health probes see it
    nodes[0].kill()
    for _ in range(5):
        graphql(server, "query Ping { me { id } }", token=token)
    after = wait_for(
        lambda: (
            (s := scrape(server))
            and value(s, "notebook_couchdb_node_up", node=node0) == 0
            and value(s, "notebook_couchdb_node_active", node=node1) == 1
            and s
        ),
        60,
        "node0 reported down and node1 active",
    )

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # counters add up over both workers: exactly what was sent
    assert moved("notebook_graphql_requests_total", operation="Ping", outcome="success") >= PING_COUNT
    assert value(during, "notebook_graphql_requests_total", operation="Ping", outcome="success") == PING_COUNT
    assert moved("notebook_graphql_requests_total", operation="Register", outcome="success") == 1
    assert moved("notebook_graphql_requests_total", operation="UpdateNote", outcome="error") == 1
    assert moved("notebook_graphql_request_seconds_count", operation="CreateNote", outcome="success") == 1
    assert moved("notebook_graphql_request_seconds_bucket", operation="CreateNote", le="+Inf") == 1
    assert moved("notebook_graphql_errors_total", code="CONFLICT") == 1
    assert moved("notebook_couchdb_request_seconds_count", node=node0, status="200") > 0
    assert moved("notebook_couchdb_request_seconds_count", node=node1, status="200") > 0
    assert moved("notebook_couchdb_request_seconds_count", node=node0, status="error") > 0
    assert moved("notebook_couchdb_node_switches_total", event="failover") >= 1
    assert moved("notebook_conflicts_detected_total", database="notes") >= 1
    assert moved("notebook_conflicts_resolved_total", database="notes", how="merged") >= 1
    # state as the answering worker sees it
    assert value(during, "notebook_couchdb_node_up", node=node0) == 1
    assert value(during, "notebook_couchdb_node_active", node=node0) == 1
    assert ("notebook_couchdb_node_probe_seconds", frozenset({("node", node1)})) in before
    assert value(after, "notebook_warmup_state", state="ready") == 1
    # encryption at rest: one data key and one index key seal the new writes
    assert value(after, "notebook_encryption_key_in_use", kind="data") == 1
    assert value(after, "notebook_encryption_key_in_use", kind="index") == 1
    assert value(after, "notebook_warmup_views_built") == value(after, "notebook_warmup_views") > 0
    assert value(during, "notebook_replication_link_state", source=node0, target=node1, state="running") >= 1
    assert value(during, "notebook_replication_healthy") == 1
    assert value(after, "notebook_replication_link_healthy", source=node1, target=node0) == 0
    lags = [v for (n, _), v in during.items() if n == "notebook_replication_lag_seconds"]
    assert len(lags) == 2 * len(database_names("x")) and all(lag > 0 for lag in lags), lags
    assert not [n for (n, _), _v in before.items() if n == "notebook_replication_lag_seconds"]


def test_metrics_without_a_token_are_served_to_direct_loopback_clients_only(client: Any) -> None:
    """No METRICS_TOKEN: this machine may scrape, a request relayed by a proxy may not."""
    assert client.post("/graphql", json={"query": "query Hello { me { id } }"}).status_code == 200
    answer = client.get("/metrics")
    assert answer.status_code == 200
    families = {family.name for family in text_string_to_metric_families(answer.get_data(as_text=True))}
    assert {"notebook_graphql_requests", "notebook_couchdb_request_seconds", "notebook_warmup_state",
            "notebook_couchdb_node_up"} <= families  # fmt: skip
    relayed = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert relayed.status_code == 403
    assert relayed.get_json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 403
