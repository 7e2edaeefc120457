"""An in-memory CouchDB for unit tests of notebook.database.couch: nodes behind an
httpx.MockTransport that can refuse connections, answer 5xx, or drop the connection after
applying a write, and `replicate_to` copies documents to another node the way replication would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from notebook.database.couch import CouchDBClient
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
        self.has_up = True  # False: answer /_up like pouchdb-server
        self.maintenance = False  # CouchDB 3 in maintenance mode: /_up refuses, / still answers
        self.seq: dict[str, int] = {}  # per database: this node's own changes-feed counter
        self.changed: dict[str, list[str]] = {}  # per database: doc ids in feed order
        self.security: dict[str, Any] = {}  # per database: its `_security` object
        self.feed_id = name  # positions are "<n>-<feed_id>"; change it to make old ones foreign
        self.positions_received: list[str] = []  # `since` of every changes request, in order
        self.cluster_nodes = [f"couchdb@{name}"]  # `/_membership`: more than one in a cluster
        self.scheduler_status = 200  # 404 like pouchdb-server, 401/403 for a non-admin account
        self.scheduler_states: dict[str, str] = {}  # job id -> scheduler state
        # pouchdb-server (D12): this many updates of a job document are refused as `forbidden`;
        # each refused job is then in `refused_job_state` (as if another process restarted it)
        self.refuse_job_updates = 0
        self.refused_job_state: str | None = "running"

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
        if parts == ["_up"]:
            if not self.has_up:  # pouchdb-server: `_up` is taken for a database name
                return httpx.Response(404, json={"error": "not_found", "reason": "no_db_file"})
            if self.maintenance:
                return httpx.Response(404, json={"status": "maintenance_mode"})
            return httpx.Response(200, json={"status": "ok", "seeds": {}})
        if parts == ["_membership"]:
            return httpx.Response(
                200, json={"all_nodes": self.cluster_nodes, "cluster_nodes": self.cluster_nodes}
            )
        if parts[0] == "_scheduler":
            return self._scheduler(parts[1:], params)
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
            if body.get("new_edits") is False:  # replicated revisions: stored as given
                for doc in body["docs"]:
                    self._store_replica(db, doc)
                return httpx.Response(201, json=[])  # CouchDB 3 lists only refusals
            return httpx.Response(201, json=[self._write(db, doc) for doc in body["docs"]])
        if endpoint == "_all_docs" and body is None:  # GET: a key range (live documents only)
            low, high = (
                json.loads(params.get("startkey", '""')),
                json.loads(params.get("endkey", '"\\ufff0"')),
            )
            keys = sorted(k for k, d in self.dbs[db].items() if low <= k <= high and not d.get("_deleted"))
            return httpx.Response(200, json={"rows": [self._row(db, key) for key in keys]})
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
        if endpoint == "_security":
            if method == "PUT":
                self.security[db] = body
                return httpx.Response(200, json={"ok": True})
            return httpx.Response(200, json=self.security.get(db, {}))
        if endpoint == "_changes":
            return self._changes(db, params)
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
        if db == "_replicator" and doc.get("_rev") and self.refuse_job_updates > 0:
            self.refuse_job_updates -= 1
            if self.refused_job_state is not None:
                self.scheduler_states[doc_id] = self.refused_job_state
            return {"id": doc_id, "error": "forbidden", "reason": "a running job"}
        current = self.dbs[db].get(doc_id)
        live = current is not None and not current.get("_deleted")
        if (live and doc.get("_rev") != current["_rev"]) or (
            not live and doc.get("_rev") and current is None
        ):
            return {"id": doc_id, "error": "conflict", "reason": "Document update conflict."}
        generation = _gen(current["_rev"]) + 1 if current else 1
        rev = f"{generation}-{uuid.uuid4().hex}"  # random, like pouchdb-server
        stored = {**doc, "_rev": rev}
        if db == "_replicator" and not doc.get("_deleted"):
            stored["owner"] = "admin"  # CouchDB 3 records who wrote a replication job
        self.dbs[db][doc_id] = stored
        self.histories.setdefault((db, doc_id), set()).add(rev)
        self.seq[db] = self.seq.get(db, 0) + 1
        self.changed.setdefault(db, []).append(doc_id)
        return {"ok": True, "id": doc_id, "rev": rev}

    def _store_replica(self, db: str, doc: dict[str, Any]) -> None:
        """A `new_edits=false` revision: its `_revisions` join the history; the highest
        generation wins."""
        doc = dict(doc)
        revisions = doc.pop("_revisions", None) or {}
        start = int(revisions.get("start", _gen(doc["_rev"])))
        history = self.histories.setdefault((db, doc["_id"]), set())
        history.update(f"{start - i}-{h}" for i, h in enumerate(revisions.get("ids", [])))
        history.add(doc["_rev"])
        current = self.dbs[db].get(doc["_id"])
        if current is None or _gen(doc["_rev"]) >= _gen(current["_rev"]):
            self.dbs[db][doc["_id"]] = doc
        self.seq[db] = self.seq.get(db, 0) + 1
        self.changed.setdefault(db, []).append(doc["_id"])

    def _scheduler(self, parts: list[str], params: Any) -> httpx.Response:
        """CouchDB 3's scheduler: `jobs` (detection) and `docs/_replicator` (every job at once)."""
        if self.scheduler_status != 200:
            error = "not_found" if self.scheduler_status == 404 else "unauthorized"
            return httpx.Response(self.scheduler_status, json={"error": error, "reason": "no"})
        if parts == ["jobs"]:
            return httpx.Response(200, json={"total_rows": 0, "offset": 0, "jobs": []})
        if parts == ["docs", "_replicator"]:
            docs = [
                {"database": "_replicator", "doc_id": job_id, "state": state, "info": None}
                for job_id, state in sorted(self.scheduler_states.items())
            ]
            skip, limit = int(params.get("skip", 0)), int(params.get("limit", 100))
            page = docs[skip : skip + limit]
            return httpx.Response(200, json={"total_rows": len(docs), "offset": skip, "docs": page})
        return httpx.Response(404, json={"error": "not_found", "reason": "missing"})

    def _changes(self, db: str, params: Any) -> httpx.Response:
        """Positions are "<n>-<node name>": a position of another node is refused (400)."""
        mine = f"-{self.feed_id}"
        since = params.get("since", "0")
        self.positions_received.append(since)
        count = self.seq.get(db, 0)
        if since == "now":
            start = count
        elif since == "0":
            start = 0
        elif since.endswith(mine):
            start = int(since[: -len(mine)])
        else:
            return httpx.Response(400, json={"error": "bad_request", "reason": "malformed sequence"})
        ids = self.changed.get(db, [])[start:]
        results = [{"id": doc_id, "changes": [{"rev": self.dbs[db][doc_id]["_rev"]}]} for doc_id in ids]
        return httpx.Response(200, json={"results": results, "last_seq": f"{count}{mine}"})

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


def active(client: CouchDBClient) -> str:
    return client.active_url


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    return bool(wait_until(condition, seconds, interval=0.01))
