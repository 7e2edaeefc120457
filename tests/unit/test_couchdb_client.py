"""notebook.database.couchdb_client: routing, retries, uncertain writes, circuits and failback.

The network is replaced by httpx.MockTransport: every node is a small in-memory CouchDB
(`FakeNode`) that can refuse connections, answer 5xx, or drop the connection after applying a
write, and `replicate_to` copies its documents to another node the way replication would.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from notebook.core.errors import ServiceUnavailable
from notebook.database import couchdb_client
from notebook.database.couchdb_client import (
    WRITE_ID_FIELD,
    CouchDBClient,
    DatabaseUnavailable,
    DocumentConflict,
)
from tests.support.waiting import wait_until

PASSWORD = "pa55-w0rd-secret"

Fault = Callable[[httpx.Request], None]


class FakeNode:
    """One in-memory CouchDB node: documents with revision histories, and injectable faults."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"http://{name}.test:5984/"
        self.down = False
        self.bodies_of_leaves_only = False
        self.dbs: dict[str, dict[str, dict[str, Any]]] = {}
        self.histories: dict[tuple[str, str], set[str]] = {}
        self.log: list[tuple[str, str]] = []
        self.bodies: list[str] = []
        # (method, path suffix, action) consumed by the first matching request
        self.faults: list[tuple[str, str, str]] = []

    # -- test helpers ---------------------------------------------------------------------------
    def fail_next(self, method: str, suffix: str, action: str) -> None:
        """action: refuse | 500 | 500_after_apply | reset_after_apply | timeout_after_apply."""
        self.faults.append((method, suffix, action))

    def sent(self, method: str | None = None, suffix: str = "") -> list[str]:
        return [p for m, p in self.log if (method is None or m == method) and p.endswith(suffix)]

    def replicate_to(self, other: FakeNode) -> None:
        for db, docs in self.dbs.items():
            target = other.dbs.setdefault(db, {})
            for doc_id, doc in docs.items():
                other.histories.setdefault((db, doc_id), set()).update(self.histories[(db, doc_id)])
                mine = target.get(doc_id)
                if mine is None or _gen(doc["_rev"]) > _gen(mine["_rev"]):
                    target[doc_id] = json.loads(json.dumps(doc))

    def put_doc(self, db: str, doc: dict[str, Any]) -> str:
        return self._write(db, doc)["rev"]

    # -- HTTP -----------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path.lstrip("/")
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        action = self._take_fault(method, path)
        if action == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if action == "500":
            return httpx.Response(500, json={"error": "internal_server_error", "reason": "boom"})
        self.log.append((method, path))
        self.bodies.append(request.content.decode())
        response = self._serve(request, method, path)
        if action == "500_after_apply":
            return httpx.Response(500, json={"error": "internal_server_error", "reason": "boom"})
        if action == "reset_after_apply":
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if action == "timeout_after_apply":
            raise httpx.ReadTimeout("timed out", request=request)
        return response

    def _take_fault(self, method: str, path: str) -> str | None:
        for fault in self.faults:
            if fault[0] == method and path.endswith(fault[1]):
                self.faults.remove(fault)
                return fault[2]
        return None

    def _serve(self, request: httpx.Request, method: str, path: str) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        parts = path.split("/") if path else []
        params = request.url.params
        if not parts:
            return httpx.Response(200, json={"couchdb": "Welcome", "version": "3.4.3"})
        db = parts[0]
        if len(parts) == 1:
            if method == "PUT":
                if db in self.dbs:
                    return httpx.Response(412, json={"error": "file_exists", "reason": "exists"})
                self.dbs[db] = {}
                return httpx.Response(201, json={"ok": True})
            return httpx.Response(200, json={"db_name": db, "doc_count": len(self.dbs.get(db, {}))})
        if db not in self.dbs:
            return httpx.Response(404, json={"error": "not_found", "reason": "Database does not exist."})
        endpoint = parts[1]
        if endpoint == "_bulk_docs":
            return httpx.Response(201, json=[self._write(db, doc) for doc in body["docs"]])
        if endpoint == "_all_docs":
            return httpx.Response(200, json={"rows": [self._row(db, key) for key in body["keys"]]})
        if endpoint == "_revs_diff":
            answer = {}
            for doc_id, revs in body.items():
                known = self.histories.get((db, doc_id), set())
                if self.bodies_of_leaves_only:  # pouchdb-server: ancestors without a body count as missing
                    current = self.dbs[db].get(doc_id)
                    known = {current["_rev"]} if current else set()
                missing = [rev for rev in revs if rev not in known]
                if missing:
                    answer[doc_id] = {"missing": missing}
            return httpx.Response(200, json=answer)
        if endpoint == "_find":
            return httpx.Response(200, json={"docs": list(self.dbs[db].values())[: body["limit"]]})
        doc_id = "/".join(parts[1:])
        if method == "GET" and params.get("open_revs") == "all":
            doc = self.dbs[db].get(doc_id)
            if doc is None:
                return httpx.Response(404, json={"error": "not_found", "reason": "missing"})
            history = sorted(self.histories[(db, doc_id)], key=_gen, reverse=True)
            revisions = {"start": _gen(history[0]), "ids": [rev.split("-", 1)[1] for rev in history]}
            return httpx.Response(200, json=[{"ok": {**doc, "_revisions": revisions}}])
        if method == "GET":
            doc = self.dbs[db].get(doc_id)
            if doc is None or doc.get("_deleted"):
                return httpx.Response(404, json={"error": "not_found", "reason": "missing"})
            return httpx.Response(200, json=doc)
        if method == "PUT":
            result = self._write(db, {**body, "_id": doc_id})
        elif method == "DELETE":
            result = self._write(db, {"_id": doc_id, "_rev": params.get("rev"), "_deleted": True})
        else:
            return httpx.Response(405, json={"error": "method_not_allowed", "reason": method})
        if result.get("error") == "conflict":
            return httpx.Response(409, json={"error": "conflict", "reason": "Document update conflict."})
        return httpx.Response(201, json=result)

    def _write(self, db: str, doc: dict[str, Any]) -> dict[str, Any]:
        doc_id = doc["_id"]
        current = self.dbs[db].get(doc_id)
        live = current is not None and not current.get("_deleted")
        if (live and doc.get("_rev") != current["_rev"]) or (
            not live and doc.get("_rev") and current is None
        ):
            return {"id": doc_id, "error": "conflict", "reason": "Document update conflict."}
        generation = _gen(current["_rev"]) + 1 if current else 1
        rev = f"{generation}-{uuid.uuid4().hex}"  # random, like pouchdb-server
        stored = {**doc, "_rev": rev}
        self.dbs[db][doc_id] = stored
        self.histories.setdefault((db, doc_id), set()).add(rev)
        return {"ok": True, "id": doc_id, "rev": rev}

    def _row(self, db: str, key: str) -> dict[str, Any]:
        doc = self.dbs[db].get(key)
        if doc is None:
            return {"key": key, "error": "not_found"}
        if doc.get("_deleted"):
            return {"id": key, "key": key, "value": {"rev": doc["_rev"], "deleted": True}, "doc": None}
        return {"id": key, "key": key, "value": {"rev": doc["_rev"]}, "doc": doc}


def _gen(rev: str) -> int:
    return int(rev.split("-")[0])


class FakeCluster:
    def __init__(self, count: int = 3) -> None:
        self.nodes = [FakeNode(f"n{i}") for i in range(count)]
        self.transport = httpx.MockTransport(self._dispatch)

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        for node in self.nodes:
            if request.url.host == f"{node.name}.test":
                return node.handle(request)
        raise httpx.ConnectError("unknown host", request=request)

    def __getitem__(self, index: int) -> FakeNode:
        return self.nodes[index]

    def urls(self, credentials: bool = False) -> list[str]:
        if credentials:
            return [node.url.replace("http://", f"http://admin:{PASSWORD}@") for node in self.nodes]
        return [node.url for node in self.nodes]

    def create_db(self, name: str) -> None:
        for node in self.nodes:
            node.dbs.setdefault(name, {})

    def replicate(self) -> None:
        for source in self.nodes:
            for target in self.nodes:
                if source is not target:
                    source.replicate_to(target)


@pytest.fixture
def cluster() -> FakeCluster:
    fake = FakeCluster(3)
    fake.create_db("notes")
    return fake


@pytest.fixture
def make_client(cluster: FakeCluster) -> Iterator[Callable[..., CouchDBClient]]:
    clients: list[CouchDBClient] = []

    def build(**options: Any) -> CouchDBClient:
        options.setdefault("probe_interval", 0.05)
        urls = options.pop("urls", None) or cluster.urls()
        client = CouchDBClient(urls, transport=cluster.transport, **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def _active(client: CouchDBClient) -> str:
    return client.active_url


# -- routing -----------------------------------------------------------------------------------


def test_requests_go_to_the_preferred_node(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    db = client.database("notes")
    rev = db.put({"_id": "note:1", "title": "a"})
    assert db.get("note:1")["_rev"] == rev
    assert cluster[0].sent("PUT") == ["notes/note:1"]
    assert cluster[1].log == [] and cluster[2].log == []
    assert _active(client) == cluster[0].url
    assert [n["active"] for n in client.nodes_status()] == [True, False, False]


def test_connect_error_is_retried_on_the_next_node(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    cluster[0].down = True
    assert client.server_info()["version"] == "3.4.3"
    assert client.served_by == cluster[1].url
    assert _active(client) == cluster[1].url
    status = client.nodes_status()
    assert status[0]["circuit_open"] and not status[0]["healthy"]
    assert client.stats()["failovers"] == 1


def test_server_error_on_a_read_is_retried_on_the_next_node(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    cluster[1].put_doc("notes", {"_id": "note:1", "title": "a"})
    cluster[0].fail_next("GET", "note:1", "500")
    assert client.database("notes").get("note:1")["title"] == "a"
    assert client.served_by == cluster[1].url
    # one 5xx does not open the circuit: the preferred node stays active
    assert not client.nodes_status()[0]["circuit_open"]
    assert _active(client) == cluster[0].url


@pytest.mark.parametrize(
    ("endpoint", "call"),
    [
        ("_all_docs", lambda db: db.all_docs(["note:1"])),
        ("_find", lambda db: db.find({"type": "note"}, limit=5)),
    ],
)
def test_idempotent_posts_are_simply_retried(
    cluster: FakeCluster, make_client: Any, endpoint: str, call: Callable[[Any], Any]
) -> None:
    client = make_client()
    cluster[0].fail_next("POST", endpoint, "reset_after_apply")
    call(client.database("notes"))
    assert cluster[1].sent("POST", endpoint) == [f"notes/{endpoint}"]
    assert client.stats()["writes_verified"] == 0


def test_repeated_server_errors_open_the_circuit(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(failure_threshold=3)
    client.start_health_monitor()
    for _ in range(3):
        cluster[0].fail_next("GET", "", "500")
        client.server_info()
    assert client.nodes_status()[0]["circuit_open"]
    assert _active(client) == cluster[1].url


def test_server_errors_everywhere_leave_one_node_in_rotation(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(failure_threshold=1, probe_interval=60.0)
    client.start_health_monitor()
    assert wait_for(lambda: all(s["last_checked"] for s in client.nodes_status()))
    for node in cluster.nodes:
        node.fail_next("GET", "", "500")
    with pytest.raises(DatabaseUnavailable):
        client.server_info()  # a request every node fails: probably the request, not the nodes
    assert [s["circuit_open"] for s in client.nodes_status()] == [True, True, False]
    assert client.server_info()["version"] == "3.4.3"


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    return bool(wait_until(condition, seconds, interval=0.01))


def test_circuit_open_skips_a_dead_node(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    cluster[0].down = True
    client.check_nodes()  # the probe finds node 0 dead
    assert client.nodes_status()[0]["circuit_open"]
    attempts_before = len(cluster[0].log)
    cluster[0].down = False  # it would answer now, but nothing is sent until a probe says so
    for _ in range(5):
        client.server_info()
    assert len(cluster[0].log) == attempts_before
    assert client.served_by != cluster[0].url


def test_nothing_can_serve_raises_database_unavailable_without_waiting(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client()
    client.start_health_monitor()
    for node in cluster.nodes:
        node.down = True
    client.check_nodes()
    before = [len(node.log) for node in cluster.nodes]
    with pytest.raises(DatabaseUnavailable) as caught:
        client.database("notes").get("note:1")
    assert isinstance(caught.value, ServiceUnavailable)
    assert caught.value.code == "SERVICE_UNAVAILABLE"
    # every circuit is open: the request fails at once, without touching the network
    assert [len(node.log) for node in cluster.nodes] == before


def test_retry_budget_bounds_attempts(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(max_attempts=2)
    for node in cluster.nodes:
        node.fail_next("GET", "", "500")
    with pytest.raises(DatabaseUnavailable):
        client.server_info()
    assert [len(node.faults) for node in cluster.nodes] == [0, 0, 1]  # the third node never asked


def test_retry_deadline_bounds_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 1000.0}
    monkeypatch.setattr(couchdb_client.time, "monotonic", lambda: clock["now"])
    calls: list[str] = []

    def slow(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        clock["now"] += 5.0  # each node takes five seconds, then times out
        raise httpx.ReadTimeout("timed out", request=request)

    urls = [f"http://s{i}.test:5984/" for i in range(6)]
    client = CouchDBClient(urls, transport=httpx.MockTransport(slow), max_attempts=10, deadline=12.0)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            client.server_info()
    finally:
        client.close()
    assert len(calls) == 3  # at 0, 5 and 10 seconds; at 15 the deadline has passed
    assert "deadline" in caught.value.reason


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
    monitor = client._monitor
    client.close()
    assert monitor is not None and not monitor.is_alive()
    assert not client.monitor_running


def test_failback_waits_until_the_preferred_node_caught_up(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(probe_interval=0.0)
    db = client.database("notes")
    cluster[0].down = True
    client.check_nodes()
    assert _active(client) == cluster[1].url
    revs = [db.put({"_id": f"note:{i}", "title": str(i)}) for i in range(3)]
    assert all("note:0" not in node.dbs["notes"] for node in cluster.nodes[:1])

    cluster[0].down = False
    client.check_nodes()  # healthy, but it lacks what was written on node 1
    assert client.nodes_status()[0]["healthy"]
    assert _active(client) == cluster[1].url
    assert db.get("note:2")["_rev"] == revs[2]  # still served by the node that has it
    assert client.served_by == cluster[1].url

    cluster[1].replicate_to(cluster[0])
    client.check_nodes()
    assert _active(client) == cluster[0].url
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
    assert _active(client) == cluster[0].url
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
    with caplog.at_level(logging.WARNING, logger="notebook.database.couchdb_client"):
        for _ in range(3):
            client.check_nodes()
    assert _active(client) == cluster[1].url
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
    with caplog.at_level(logging.WARNING, logger="notebook.database.couchdb_client"):
        client.check_nodes()
    assert _active(client) == cluster[0].url
    assert any("before the preferred node caught up" in r.getMessage() for r in caplog.records)


def test_no_failback_while_the_preferred_node_is_down(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(probe_interval=0.0, failback_max_wait=0.0)
    cluster[0].down = True
    client.check_nodes()
    client.check_nodes()
    assert _active(client) == cluster[1].url


def test_failover_moves_on_when_the_second_node_dies_too(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    cluster[0].down = True
    cluster[1].down = True
    assert client.server_info()
    assert client.served_by == cluster[2].url
    assert _active(client) == cluster[2].url


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


# -- credentials -------------------------------------------------------------------------------


def test_credentials_never_appear_in_errors_logs_or_status(
    cluster: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    seen_auth: list[str] = []

    def dispatch(request: httpx.Request) -> httpx.Response:
        seen_auth.append(request.headers.get("Authorization", ""))
        return cluster._dispatch(request)

    client = CouchDBClient(
        cluster.urls(credentials=True),
        user="admin",
        password=PASSWORD,
        transport=httpx.MockTransport(dispatch),
        probe_interval=0.0,
    )
    messages: list[str] = []
    with caplog.at_level(logging.DEBUG):
        try:
            db = client.database("notes")
            db.put({"_id": "note:1", "title": "a"})
            cluster[0].down = True
            client.check_nodes()
            cluster[1].fail_next("PUT", "note:2", "reset_after_apply")
            db.put({"_id": "note:2", "title": "b"})
            for node in cluster.nodes:
                node.down = True
            client.check_nodes()
            for call in (
                lambda: db.get("note:1"),
                lambda: db.put({"_id": "note:3"}),
                lambda: client.request("POST", "notes", body={}),
            ):
                with pytest.raises(DatabaseUnavailable) as caught:
                    call()
                messages += [str(caught.value), caught.value.reason, caught.value.message, repr(caught.value)]
            messages.append(json.dumps(client.nodes_status()))
            messages += [client.url, client.active_url, *client.urls]
        finally:
            client.close()
    assert seen_auth and all(header.startswith("Basic ") for header in seen_auth)
    logged = [record.getMessage() + json.dumps(record.__dict__, default=str) for record in caplog.records]
    assert any("circuit open" in text for text in logged)
    for text in messages + logged:
        assert PASSWORD not in text
        assert "admin:" not in text


def test_a_very_short_password_does_not_garble_messages(cluster: FakeCluster) -> None:
    client = CouchDBClient(
        cluster.urls(), user="admin", password="p", transport=httpx.MockTransport(cluster._dispatch)
    )
    try:
        for node in cluster.nodes:
            node.down = True
        with pytest.raises(DatabaseUnavailable) as caught:
            client.database("notes").get("note:1")
        assert "http://" in caught.value.reason
    finally:
        client.close()
