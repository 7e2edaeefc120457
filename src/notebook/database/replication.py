"""CouchDB's own replication as a full mesh of `_replicator` jobs: setup, teardown, nodes, status.

Topology: for every application database and every ordered pair of nodes (A, B) there is exactly
one job document, with a deterministic id, stored on A and pushing A's database into B's (why
push: see `_job_doc`). The project never copies application documents itself; CouchDB (or
pouchdb-server) does.

Server differences: where a job's state can be read is the only place CouchDB 3 and
pouchdb-server 4.2.0 (which behaves like CouchDB 1.x here) need different code. It lives in the
section "Where replication state lives" below (`job_state`, `JobStateReader`), nowhere else:
the manager asks the reader, never the server, which kind of server it talks to.

pouchdb-server caveat (docs/replication.md): deleting a running continuous job document makes
the pouchdb-server process exit (an unhandled promise rejection in its replicator), and the
server refuses any update of a running job document. So `teardown` and `remove_node` do what
is correct on CouchDB 3, one DELETE per job document (batched per node), and on pouchdb-server
the node hosting the jobs exits right after the deletions are committed: its supervisor must
restart it, and it comes back without the deleted jobs.

Credentials are taken from the node URLs (or the user/password given) and only ever sent to the
nodes: they are never logged, and every URL or message this module returns is stripped of them.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from notebook.core.errors import InvalidInput, NotFound, ServiceUnavailable
from notebook.database.couchdb_client import (
    CouchDBClient,
    CouchError,
    DatabaseUnavailable,
    DocumentConflict,
    DocumentNotFound,
    quote_id,
)

log = logging.getLogger(__name__)

REPLICATOR_DB = "_replicator"
JOB_ID_PREFIX = "notebook-replication:"
CANARY_TYPE = "canary"
CANARY_ID_PREFIX = "canary:"
#: Contract states in which a link is doing its job (or has done it, for one-shot jobs).
HEALTHY_STATES = frozenset({"running", "pending", "completed"})
# The fields of a job document this module writes; everything else in it belongs to the server.
_JOB_FIELDS = ("source", "target", "continuous")
_POLL_SECONDS = 0.01


# -- status -------------------------------------------------------------------------------------


@dataclass
class NodeStatus:
    """One database node as the operator sees it (`ClusterNode` in the contract)."""

    url: str
    healthy: bool
    active: bool
    version: str | None = None
    latency_ms: float | None = None


@dataclass
class LinkStatus:
    """One job: `source` replicates `database` into `target` (`ReplicationLink` in the contract)."""

    source: str
    target: str
    database: str
    state: str
    last_error: str | None = None
    lag_seconds: float | None = None

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY_STATES and self.last_error is None


@dataclass
class ReplicationStatus:
    """Nodes, links and an overall verdict (`ReplicationStatus` in the contract)."""

    nodes: list[NodeStatus] = field(default_factory=list)
    links: list[LinkStatus] = field(default_factory=list)
    healthy: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NodeAdded:
    """What `add_node` did: the jobs it ensured and whether the node caught up in time."""

    url: str
    job_ids: list[str]
    caught_up: bool
    seconds: float


class ReplicationError(ServiceUnavailable):
    """A node refused or failed a replication operation; the message carries no credentials."""


# -- where replication state lives (the one place that knows CouchDB 3 from pouchdb-server) ----


@dataclass(frozen=True)
class JobState:
    state: str
    last_error: str | None = None


# CouchDB 3 `/_scheduler/docs` states. `error` means the document could not become a job yet and
# is retried periodically, so for an operator it is a crashing link, not a terminal failure.
_SCHEDULER_STATES = {
    "initializing": "pending",
    "pending": "pending",
    "running": "running",
    "crashing": "crashing",
    "error": "crashing",
    "completed": "completed",
    "failed": "failed",
}
# `_replication_state` written into the job document by pouchdb-server (and CouchDB 1.x; CouchDB 3
# still writes the terminal `completed` and `failed` there). pouchdb-server retries a continuous
# job by itself while it says `triggered`; once it writes `error` it has given up on the job.
_DOCUMENT_STATES = {"triggered": "running", "completed": "completed", "error": "failed", "failed": "failed"}


def job_state(scheduler_doc: Mapping[str, Any] | None, job_doc: Mapping[str, Any] | None) -> JobState:
    """Map a job's state to the contract's states (running, pending, crashing, failed, completed,
    stopped, unknown).

    `scheduler_doc` is the answer of CouchDB 3's `/_scheduler/docs/_replicator/<id>` (None when
    the server has no scheduler or does not know the job); `job_doc` is the `_replicator`
    document itself (None when it does not exist), whose `_replication_state` fields are where
    pouchdb-server and CouchDB 1.x keep the state.
    """
    if scheduler_doc is not None:
        state = _SCHEDULER_STATES.get(str(scheduler_doc.get("state")), "unknown")
        return JobState(state, _scheduler_error(scheduler_doc) if state != "running" else None)
    if job_doc is None or job_doc.get("_deleted"):
        return JobState("stopped")
    raw_state = job_doc.get("_replication_state")
    if raw_state is None:
        # written but not picked up yet (or CouchDB 3 before its scheduler has seen it)
        return JobState("pending")
    state = _DOCUMENT_STATES.get(str(raw_state), "unknown")
    reason = job_doc.get("_replication_state_reason")
    # a reason can linger in the document from an earlier failure of a job running again now
    return JobState(state, str(reason) if reason and state != "running" else None)


def _scheduler_error(scheduler_doc: Mapping[str, Any]) -> str | None:
    info = scheduler_doc.get("info")
    if isinstance(info, Mapping):  # CouchDB 3: {"error": "..."} when failing, statistics otherwise
        error = info.get("error")
        return str(error) if error else None
    if isinstance(info, str) and info:  # CouchDB 2.x: the reason as a string
        return info
    return None


class JobStateReader:
    """Reads job states from a node: `/_scheduler/docs` where it exists (CouchDB 2.1+), else the
    fields of the `_replicator` documents (pouchdb-server, CouchDB 1.x). Capability is detected
    once per node by asking for `/_scheduler/jobs`, which pouchdb-server answers with 404."""

    def __init__(self) -> None:
        self._has_scheduler: dict[str, bool] = {}

    def read(
        self,
        client: CouchDBClient,
        job_ids: Sequence[str],
        docs: Mapping[str, dict[str, Any] | None] | None = None,
    ) -> dict[str, JobState]:
        """States of these jobs on this node; `docs` are their documents if already read."""
        if docs is None:
            docs = read_job_docs(client, job_ids)
        scheduler: dict[str, dict[str, Any]] = {}
        if self._supports_scheduler(client):
            for job_id, doc in docs.items():
                if doc is None:
                    continue
                try:
                    scheduler[job_id] = client.request(
                        "GET", f"_scheduler/docs/{REPLICATOR_DB}/{quote_id(job_id)}"
                    )
                except DocumentNotFound:
                    pass  # the scheduler has not seen this document yet
        return {job_id: job_state(scheduler.get(job_id), docs.get(job_id)) for job_id in job_ids}

    def records_state_in_documents(self, client: CouchDBClient) -> bool:
        """True for servers whose replicator writes job state into the `_replicator` documents."""
        return not self._supports_scheduler(client)

    def _supports_scheduler(self, client: CouchDBClient) -> bool:
        known = self._has_scheduler.get(client.url)
        if known is None:
            try:
                client.request("GET", "_scheduler/jobs", params={"limit": 1})
                known = True
            except DocumentNotFound:
                known = False
            self._has_scheduler[client.url] = known
        return known


# -- nodes and job documents --------------------------------------------------------------------


def read_job_docs(client: CouchDBClient, job_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """The live `_replicator` documents with these ids (None for missing or deleted ones)."""
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(job_ids)
    for row in client.database(REPLICATOR_DB).all_docs(job_ids, include_docs=True):
        doc = row.get("doc")
        if doc and not row.get("value", {}).get("deleted"):
            found[row["key"]] = doc
    return found


def node_key(url: str) -> str:
    """A short stable name for a node, derived from its URL without credentials."""
    return hashlib.sha256(url.encode()).hexdigest()[:10]


def job_id(database: str, source: str, target: str) -> str:
    """The deterministic `_replicator` id of the job replicating `database` from `source` to `target`."""
    return f"{JOB_ID_PREFIX}{database}:{node_key(source)}:{node_key(target)}"


def canary_id(source: str) -> str:
    return f"{CANARY_ID_PREFIX}{node_key(source)}"


def clean_url(url: str) -> str:
    """A node URL without credentials, with a trailing slash; InvalidInput if it is not one."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError):
        raise InvalidInput("not a valid node URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput("a node URL looks like http://host:5984/")
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None)).rstrip("/") + "/"


class _Node:
    """A node this manager talks to: its clean URL, its own client and the credentials for it."""

    def __init__(self, url: str, user: str, password: str, timeout: float) -> None:
        self.url = clean_url(url)
        parsed = httpx.URL(url.strip())
        self.user = parsed.username or user
        self.password = parsed.password if parsed.username else password
        self.client = CouchDBClient(self.url, user=self.user, password=self.password, timeout=timeout)

    def endpoint(self, database: str, via: str | None = None) -> dict[str, Any]:
        """The `_replicator` endpoint form both servers accept (pouchdb-server breaks on `auth`
        and on an object without `headers`); `via` is another address of this node."""
        headers: dict[str, str] = {}
        if self.user:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return {"url": (via or self.url) + quote(database, safe=""), "headers": headers}

    def secrets(self) -> list[str]:
        if not self.user:
            return []
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return [s for s in (self.password, token, quote(self.password, safe="")) if s]


def _design_rows(client: CouchDBClient, db: str, include_docs: bool) -> list[dict[str, Any]]:
    """The `_all_docs` rows of a database's design documents."""
    params = {"startkey": "_design/", "endkey": "_design0", "include_docs": include_docs}
    return client.request("GET", f"{quote(db, safe='')}/_all_docs", params=params)["rows"]


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


# -- the manager --------------------------------------------------------------------------------


class ReplicationManager:
    """Sets up, watches and takes down the replication mesh of the application's databases."""

    def __init__(
        self,
        node_urls: Sequence[str],
        database_names: Sequence[str],
        user: str = "",
        password: str = "",
        continuous: bool = True,
        retry_seconds: int = 30,
        timeout: float = 10.0,
        active_node: Callable[[], str | None] | None = None,
        peer_urls: Mapping[str, str] | None = None,
    ) -> None:
        self.databases = list(dict.fromkeys(database_names))
        self.continuous = continuous
        self.retry_seconds = retry_seconds
        self._user = user
        self._password = password
        self._timeout = timeout
        self._active_node = active_node
        # how the other nodes reach a node, when that differs from how this process reaches it
        # (a private network between the nodes, a tunnel); without credentials
        self._peer_urls = {clean_url(url): clean_url(peer) for url, peer in (peer_urls or {}).items()}
        self._nodes: list[_Node] = []
        for url in node_urls:
            if clean_url(url) not in {node.url for node in self._nodes}:
                self._nodes.append(_Node(url, user, password, timeout))
        self._states = JobStateReader()
        self._lock = threading.RLock()
        self._lags: dict[tuple[str, str, str], float | None] = {}
        self._stalled: set[tuple[str, str, str]] = set()
        self._mesh_wanted = False

    @property
    def node_urls(self) -> list[str]:
        """The nodes of the mesh, without credentials."""
        return [node.url for node in self._snapshot()]

    def close(self) -> None:
        for node in self._snapshot():
            node.client.close()

    # setup ------------------------------------------------------------------------------------
    def ensure_mesh(self) -> list[str]:
        """Create missing databases and job documents for every ordered pair of nodes; return the
        ids of all jobs. Existing jobs with the same settings are left alone, so running it twice
        changes nothing; jobs that failed (or, when continuous, "completed") are restarted."""
        nodes = self._snapshot()
        self._mesh_wanted = True
        failures: list[str] = []
        ready: list[_Node] = []
        for node in nodes:
            try:
                self._prepare_node(node)
                ready.append(node)
            except CouchError as exc:
                failures.append(f"{node.url}: {self._describe(exc)}")
        ids: list[str] = []
        for host in nodes:
            targets = [target for target in nodes if target is not host]
            ids.extend(job_id(db, host.url, target.url) for target in targets for db in self.databases)
            if host in ready:
                # a node that refused us gets no job pointing at it: on pouchdb-server a job whose
                # endpoint answers 401 kills the node hosting it, at every restart
                jobs = [self._job_doc(db, host, t) for t in targets if t in ready for db in self.databases]
                failures.extend(self._put_jobs(host, jobs))
        if failures:
            raise ReplicationError("replication setup incomplete: " + "; ".join(failures))
        return ids

    def watch(self, stop: threading.Event) -> None:
        """Every `retry_seconds`, repair the mesh (missing or failed jobs) until `stop` is set;
        does nothing after `teardown` until the mesh is set up again."""
        while not stop.wait(self.retry_seconds):
            if not self._mesh_wanted:
                continue
            try:
                self.ensure_mesh()
            except (ReplicationError, CouchError) as exc:
                log.warning("replication repair incomplete: %s", self._redact(str(exc)))

    def _prepare_node(self, node: _Node) -> None:
        node.client.database(REPLICATOR_DB).ensure_exists()
        for db in self.databases:
            node.client.database(db).ensure_exists()

    def _job_doc(self, database: str, source: _Node, target: _Node) -> dict[str, Any]:
        # The job lives on the source node: a push replication. Its one long-lived connection,
        # the continuous changes feed, then goes to its own node and ends with it; its requests to
        # the target are short, and the replicator retries them while the target is away. Pull
        # jobs (on the target) would hold that feed open to a remote node: when that node is
        # killed, pouchdb-server's replicator never notices (PouchDB 7's fetch waits forever for
        # the rest of the response; measured: a pull link stays "triggered" and dead after the
        # source restarts), while push links resume within seconds. CouchDB 3 handles both; push
        # is the placement that survives node loss on both servers. It also means every node
        # owns the distribution of its own writes: a node that comes back restarts its jobs and
        # sends out what was written on it, and a node that is lost takes its jobs with it.
        return {
            "_id": job_id(database, source.url, target.url),
            "source": source.endpoint(database),
            "target": target.endpoint(database, via=self._peer_urls.get(target.url)),
            "continuous": self.continuous,
        }

    def _put_jobs(self, host: _Node, jobs: list[dict[str, Any]]) -> list[str]:
        """Write the job documents that are missing, different or failed; return failures."""
        try:
            ids = [job["_id"] for job in jobs]
            current = read_job_docs(host.client, ids)
            states = self._states.read(host.client, ids, current)
        except CouchError as exc:
            return [f"{host.url}: {self._describe(exc)}"]
        # a continuous job never completes by itself: "completed" means it was lost track of
        restart = {"failed", "completed"} if self.continuous else {"failed"}
        writes: list[dict[str, Any]] = []
        for job in jobs:
            existing = current.get(job["_id"])
            if existing is not None:
                # CouchDB 3 adds `owner`; both servers add their own `_`-prefixed fields
                mine = {k: v for k, v in existing.items() if not k.startswith("_") and k != "owner"}
                wanted = {k: job[k] for k in _JOB_FIELDS}
                if mine == wanted and states[job["_id"]].state not in restart:
                    continue
                job = {**job, "_rev": existing["_rev"]}
            writes.append(job)
        if not writes:
            return []
        replicator = host.client.database(REPLICATOR_DB)
        try:
            if self._states.records_state_in_documents(host.client):
                results = [self._write_job_and_wait(host, job) for job in writes]
            else:
                results = replicator.bulk_docs(writes)
        except CouchError as exc:
            return [f"{host.url}: {self._describe(exc)}"]
        failures = []
        for result in results:
            if result.get("error"):
                hint = ""
                if result.get("error") == "forbidden":
                    hint = " (pouchdb-server refuses to change a running job: teardown, then setup)"
                failures.append(f"{host.url}: job {result.get('id')}: {result.get('error')}{hint}")
            else:
                log.info("replication job written", extra={"job": result.get("id"), "node": host.url})
        return [self._redact(failure) for failure in failures]

    def _write_job_and_wait(self, host: _Node, job: dict[str, Any]) -> dict[str, Any]:
        """Write one job document, then wait (bounded) until the replicator has written its state.

        Only for servers that record state in the documents (pouchdb-server): their replicator
        tells its own writes from ours by position in a list, not by id, so with several of its
        writes in flight it takes one for ours, restarts that job and marks it "completed"
        while the restarted replication runs on untracked (seen in 3 of 8 fresh setups).
        """
        result = host.client.database(REPLICATOR_DB).bulk_docs([job])[0]
        if result.get("error"):
            return result
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            doc = read_job_docs(host.client, [job["_id"]])[job["_id"]]
            if doc is None or job_state(None, doc).state != "pending":
                break
            time.sleep(_POLL_SECONDS)
        return result

    # teardown ---------------------------------------------------------------------------------
    def teardown(self) -> int:
        """Delete every job of this manager's databases on every node; return how many were deleted.

        On pouchdb-server each node exits just after its deletions are committed (see the module
        docstring); it must be restarted and comes back without the jobs. CouchDB 3 simply stops
        the jobs.
        """
        self._mesh_wanted = False
        removed = 0
        for node in self._snapshot():
            try:
                ids = self._own_job_ids(node)
                removed += self._delete_jobs(node, ids)
            except CouchError as exc:
                log.warning("teardown incomplete on %s: %s", node.url, self._describe(exc))
        with self._lock:
            self._lags.clear()
            self._stalled.clear()
        return removed

    def _own_job_ids(self, node: _Node) -> list[str]:
        """Ids of the jobs on `node` for this manager's databases, whatever nodes they name."""
        rows = node.client.request(
            "GET",
            f"{REPLICATOR_DB}/_all_docs",
            params={"startkey": JOB_ID_PREFIX, "endkey": JOB_ID_PREFIX + "\ufff0"},
        )["rows"]
        prefixes = tuple(f"{JOB_ID_PREFIX}{db}:" for db in self.databases)
        return [row["id"] for row in rows if row["id"].startswith(prefixes)]

    def _delete_jobs(self, node: _Node, ids: Iterable[str]) -> int:
        # One `_bulk_docs` per node: on pouchdb-server all deletions are committed before the
        # process exits, so a node goes down once per teardown, not once per job.
        docs = [doc for doc in read_job_docs(node.client, list(ids)).values() if doc is not None]
        if not docs:
            return 0
        deletions = [{"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True} for doc in docs]
        results = node.client.database(REPLICATOR_DB).bulk_docs(deletions)
        deleted = sum(1 for result in results if not result.get("error"))
        log.info("replication jobs deleted", extra={"node": node.url, "jobs": deleted})
        return deleted

    # membership -------------------------------------------------------------------------------
    def add_node(self, url: str, timeout: float = 60.0) -> NodeAdded:
        """Add a node: its databases, the design documents (so its indexes exist), the jobs both
        ways; then wait up to `timeout` seconds for it to catch up and build its views."""
        started = time.monotonic()
        deadline = started + timeout
        candidate = _Node(url, self._user, self._password, self._timeout)
        with self._lock:
            existing = next((node for node in self._nodes if node.url == candidate.url), None)
            others = [node for node in self._nodes if node.url != candidate.url]
        if existing is not None:
            candidate.client.close()
            candidate = existing
        try:
            candidate.client.request("GET", "")
            self._prepare_node(candidate)
            self._copy_design_docs(others, candidate)
        except CouchError as exc:
            if existing is None:
                candidate.client.close()
            raise ReplicationError(f"{candidate.url}: {self._describe(exc)}") from None
        with self._lock:
            if existing is None:
                self._nodes.append(candidate)
        self._mesh_wanted = True
        failures: list[str] = []
        job_ids: list[str] = []
        for host in [candidate, *others]:
            targets = others if host is candidate else [candidate]
            jobs = [self._job_doc(db, host, target) for target in targets for db in self.databases]
            job_ids.extend(job["_id"] for job in jobs)
            failures.extend(self._put_jobs(host, jobs))
        if failures:
            raise ReplicationError("jobs for the new node incomplete: " + "; ".join(failures))
        caught_up = self._wait_caught_up(candidate, others, deadline)
        if caught_up:
            self._warm_views(candidate, deadline)
        seconds = round(time.monotonic() - started, 3)
        log.info("node added", extra={"node": candidate.url, "caught_up": caught_up, "seconds": seconds})
        return NodeAdded(candidate.url, job_ids, caught_up, seconds)

    def remove_node(self, url: str) -> int:
        """Remove a node from the mesh: delete the jobs pushing to it and, if it answers, its own
        jobs; return how many were deleted. (pouchdb-server: see the module docstring.)"""
        key = clean_url(url)
        with self._lock:
            node = next((n for n in self._nodes if n.url == key), None)
            if node is None:
                raise NotFound("no such node in the replication mesh")
            if len(self._nodes) == 1:
                raise InvalidInput("the last node of the mesh cannot be removed")
            remaining = [n for n in self._nodes if n is not node]
        removed = 0
        failures: list[str] = []
        for host in [node, *remaining]:
            targets = remaining if host is node else [node]
            ids = [job_id(db, host.url, target.url) for target in targets for db in self.databases]
            try:
                removed += self._delete_jobs(host, ids)
            except CouchError as exc:
                if host is not node:  # the leaving node may well be gone already
                    failures.append(f"{host.url}: {self._describe(exc)}")
        if failures:
            raise ReplicationError("jobs pushing to the node not all deleted: " + "; ".join(failures))
        with self._lock:
            self._nodes.remove(node)
            for link in [link for link in self._lags if node.url in link[:2]]:
                self._lags.pop(link, None)
                self._stalled.discard(link)
        node.client.close()
        log.info("node removed", extra={"node": node.url, "jobs": removed})
        return removed

    def _copy_design_docs(self, others: Sequence[_Node], node: _Node) -> None:
        """Copy design documents, with their revision history so replication later finds them
        already there instead of creating conflicts."""
        source = next((other for other in others if other.client.ping()), None)
        if source is None:
            return
        for db in self.databases:
            ids = [row["id"] for row in _design_rows(source.client, db, include_docs=False)]
            docs = [source.client.database(db).get(doc_id, revs=True) for doc_id in ids]
            node.client.database(db).bulk_docs(docs, new_edits=False)

    def _wait_caught_up(self, node: _Node, others: Sequence[_Node], deadline: float) -> bool:
        """True once canaries crossed every new link and the node holds as many documents as each
        other node held when they were written; False at the deadline."""
        if not others:
            return True
        counts = {(other.url, db): self._doc_count(other, db) for other in others for db in self.databases}
        links = [(other, node) for other in others] + [(node, other) for other in others]
        lags = self._measure(links, max(0.0, deadline - time.monotonic()), share_timeout=False)
        if any(lag is None for lag in lags.values()):
            return False
        while True:
            behind = [
                (url, db) for (url, db), count in counts.items()
                if count is not None and (self._doc_count(node, db) or 0) < count
            ]  # fmt: skip
            if not behind:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    @staticmethod
    def _doc_count(node: _Node, db: str) -> int | None:
        try:
            return int(node.client.database(db).info().get("doc_count", 0))
        except CouchError:
            return None

    def _warm_views(self, node: _Node, deadline: float) -> None:
        """Query every JavaScript view once: a cold view blocks its first real query while built."""
        for db in self.databases:
            try:
                for row in _design_rows(node.client, db, include_docs=True):
                    doc = row.get("doc") or {}
                    if doc.get("language", "javascript") != "javascript":
                        continue  # Mango indexes are built by their first _find
                    design = row["id"][len("_design/") :]
                    for view in doc.get("views", {}):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return
                        path = f"{quote(db, safe='')}/{quote_id(row['id'])}/_view/{quote(view, safe='')}"
                        node.client.request("GET", path, params={"limit": 0}, timeout=remaining)
                        log.debug("view warmed", extra={"node": node.url, "design": design, "view": view})
            except CouchError as exc:
                log.warning("views on %s not warmed: %s", node.url, self._describe(exc))

    # status and lag ---------------------------------------------------------------------------
    def status(self) -> ReplicationStatus:
        """Health of every node and the state of every link, with the last measured lag."""
        nodes = self._snapshot()
        if not nodes:
            return ReplicationStatus()
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            probes = list(pool.map(self._probe, nodes))
            healthy = {node.url: probe.healthy for node, probe in zip(nodes, probes, strict=True)}
            states = list(pool.map(lambda n: self._read_states(n, nodes) if healthy[n.url] else None, nodes))
        active = self._active_url(healthy)
        for probe in probes:
            probe.active = probe.url == active
        links: list[LinkStatus] = []
        with self._lock:
            lags = dict(self._lags)
            stalled = set(self._stalled)
        for source, source_states in zip(nodes, states, strict=True):
            for target in nodes:
                if source is target:
                    continue
                for db in self.databases:
                    link = (source.url, target.url, db)
                    if source_states is None:
                        state = JobState("unknown", "source node unreachable: cannot read the job")
                    else:
                        state = source_states[job_id(db, source.url, target.url)]
                    error = state.last_error
                    if error is None and state.state == "running":
                        if not healthy[target.url]:
                            error = "target node unreachable"
                        elif link in stalled:
                            error = "the last canary did not arrive in time"
                    links.append(
                        LinkStatus(
                            source=source.url,
                            target=target.url,
                            database=db,
                            state=state.state,
                            last_error=self._redact(error) if error else None,
                            lag_seconds=lags.get(link),
                        )
                    )
        overall = all(probe.healthy for probe in probes) and all(link.healthy for link in links)
        return ReplicationStatus(nodes=probes, links=links, healthy=overall)

    def measure_lag(self, timeout: float = 10.0) -> dict[tuple[str, str, str], float | None]:
        """Write a canary document on every node in every database and time its arrival on every
        other node; return seconds per (source, target, database) link, None if it did not arrive.

        Every database gets its own canary because every database has its own job per link: a
        stalled job in one database would be invisible to a canary in another.
        """
        nodes = self._snapshot()
        links = [(source, target) for source in nodes for target in nodes if source is not target]
        return self._measure(links, timeout)

    def _measure(
        self, links: Sequence[tuple[_Node, _Node]], timeout: float, share_timeout: bool = True
    ) -> dict[tuple[str, str, str], float | None]:
        """Time canaries over `links`, one source node and database at a time, each round getting
        an equal share of `timeout` (or all that is left of it). Canaries written on every node at
        once would measure how fast the nodes absorb that burst (several times slower here), not
        the lag of a link."""
        targets_of: dict[_Node, list[_Node]] = {}
        for source, target in links:
            targets_of.setdefault(source, []).append(target)
        rounds = [(db, source, targets) for db in self.databases for source, targets in targets_of.items()]
        results: dict[tuple[str, str, str], float | None] = {}
        unreachable: set[str] = set()
        started = time.monotonic()
        for index, (db, source, targets) in enumerate(rounds):
            share = (index + 1) / len(rounds) if share_timeout else 1.0
            deadline = started + timeout * share
            results.update(self._measure_round(db, source, targets, deadline, unreachable))
        with self._lock:
            for link, lag in results.items():
                self._lags[link] = lag
                if lag is None:
                    self._stalled.add(link)
                else:
                    self._stalled.discard(link)
        return results

    def _measure_round(
        self, db: str, source: _Node, targets: Sequence[_Node], deadline: float, unreachable: set[str]
    ) -> dict[tuple[str, str, str], float | None]:
        """Write `source`'s canary in `db`, then poll every target until it has this version."""
        results: dict[tuple[str, str, str], float | None] = {
            (source.url, target.url, db): None for target in targets
        }
        if source.url in unreachable:
            return results
        try:
            nonce, written_at = self._write_canary(source, db)
        except CouchError as exc:
            unreachable.add(source.url)
            log.warning("canary not written on %s: %s", source.url, self._describe(exc))
            return results
        waiting = [target for target in targets if target.url not in unreachable]
        while waiting:
            for target in list(waiting):
                try:
                    doc = target.client.database(db).get_or_none(canary_id(source.url))
                except CouchError:
                    unreachable.add(target.url)  # its links stay unmeasured
                    waiting.remove(target)
                    continue
                if doc is not None and doc.get("nonce") == nonce:
                    lag = max(0.0, time.monotonic() - written_at)
                    results[(source.url, target.url, db)] = round(lag, 4)
                    waiting.remove(target)
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_SECONDS)
        return results

    def _write_canary(self, node: _Node, db: str) -> tuple[str, float]:
        """Update this node's canary in `db` (type `canary`: no view of the app emits it)."""
        database = node.client.database(db)
        nonce = uuid.uuid4().hex
        for _ in range(3):
            current = database.get_or_none(canary_id(node.url))
            doc: dict[str, Any] = {
                "_id": canary_id(node.url),
                "type": CANARY_TYPE,
                "source": node.url,
                "nonce": nonce,
                "written_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            }
            if current is not None:
                doc["_rev"] = current["_rev"]
            try:
                database.put(doc)
                return nonce, time.monotonic()
            except DocumentConflict:
                continue
        raise DocumentConflict(409, "conflict", "canary kept changing")

    # helpers ----------------------------------------------------------------------------------
    def _snapshot(self) -> list[_Node]:
        with self._lock:
            return list(self._nodes)

    def _probe(self, node: _Node) -> NodeStatus:
        started = time.perf_counter()
        try:
            info = node.client.request("GET", "", timeout=min(self._timeout, 3.0))
        except CouchError:
            return NodeStatus(url=node.url, healthy=False, active=False)
        latency = round((time.perf_counter() - started) * 1000, 2)
        version = info.get("version") if isinstance(info, dict) else None
        return NodeStatus(node.url, True, False, str(version) if version else None, latency)

    def _read_states(self, host: _Node, nodes: Sequence[_Node]) -> dict[str, JobState] | None:
        """States of the jobs `host` runs (those pushing its databases to the other nodes)."""
        ids = [job_id(db, host.url, t.url) for t in nodes if t is not host for db in self.databases]
        try:
            return self._states.read(host.client, ids)
        except CouchError as exc:
            log.warning("replication state of %s unreadable: %s", host.url, self._describe(exc))
            return None

    def _active_url(self, healthy: Mapping[str, bool]) -> str | None:
        """The node the application sends its requests to: as reported by `active_node`, else the
        first healthy node in configuration order (the client's preferred node)."""
        if self._active_node is not None:
            try:
                reported = self._active_node()
            except Exception:  # a monitoring hook must not break the status
                reported = None
            if reported:
                return clean_url(reported)
        return next((url for url, ok in healthy.items() if ok), None)

    def _describe(self, exc: CouchError) -> str:
        if isinstance(exc, DatabaseUnavailable):
            return f"unavailable ({exc.reason})"
        return self._redact(str(exc))

    def _redact(self, text: str) -> str:
        """`text` without any credential: no user info in URLs, no password, no Basic token."""
        text = _USERINFO.sub(r"\1", text)
        secrets = {self._password} if self._password else set()
        for node in self._snapshot():
            secrets.update(node.secrets())
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text
