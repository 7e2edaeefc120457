"""The one CouchDB HTTP client of a process: several nodes, failover, pooled keep-alive connections.

Everything here speaks the CouchDB 3 HTTP API only, so the same code runs against Apache CouchDB
in production and pouchdb-server in development and tests.

Failover (design.md, "Replication, failover, conflicts"); the nodes replicate each other, the
client only chooses where to send each request:

- Nodes: the first URL is the preferred node. A background thread (`start_health_monitor`) probes
  every node's `GET /` (pouchdb-server has no `/_up`) and records health, version and latency.
- Routing: every request goes to the *active* node: the preferred one while it is healthy. A
  request that fails for connection reasons or with a 5xx is tried on the next healthy node,
  within a budget (`max_attempts` sends and an overall `deadline`). A node that refuses
  connections, or answers 5xx `failure_threshold` times in a row, gets an open circuit: no
  request goes there until a probe sees it healthy again. When no node can take a request the
  caller gets `DatabaseUnavailable` at once, never a hang.
- Uncertain writes: a document write that may have reached a node (timeout or connection lost
  after sending, 5xx) is never blindly repeated. The client reads the documents back (one
  `POST _all_docs`) and only sends again what is not there; see `_WritePlan`.
- Failback: once the preferred node is healthy again *and* holds every document revision this
  client wrote elsewhere while failed over (checked with `_revs_diff`, the replication protocol's
  own "what are you missing" call), requests go back to it. See `_check_failback`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import quote, unquote

import httpx

from notebook.core.errors import ServiceUnavailable

log = logging.getLogger(__name__)

# view parameters that CouchDB expects as JSON values
_JSON_PARAMS = {"key", "keys", "startkey", "endkey", "start_key", "end_key"}

#: Field holding the token of the write that produced a document revision (see `_WritePlan`).
#: CouchDB reserves names starting with "_", hence no underscore.
WRITE_ID_FIELD = "write_id"


class CouchError(Exception):
    """An error answer from CouchDB."""

    def __init__(self, status: int, error: str = "", reason: str = "") -> None:
        super().__init__(f"{status} {error}: {reason}".strip())
        self.status = status
        self.error = error
        self.reason = reason


class DocumentNotFound(CouchError):
    pass


class DocumentConflict(CouchError):
    pass


class PreconditionFailed(CouchError):
    pass


class BadRequest(CouchError):
    pass


class Unauthorized(CouchError):
    pass


class DatabaseUnavailable(CouchError, ServiceUnavailable):
    """No node could answer: connection refused, timeout or a server error."""

    def __init__(self, reason: str) -> None:
        CouchError.__init__(self, 503, "unavailable", reason)
        ServiceUnavailable.__init__(self, "the database is unavailable")


_ERRORS_BY_STATUS: dict[int, type[CouchError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: DocumentNotFound,
    409: DocumentConflict,
    412: PreconditionFailed,
}


def quote_id(doc_id: str) -> str:
    """Quote a document id for a URL path; design documents keep their slash."""
    for prefix in ("_design/", "_local/"):
        if doc_id.startswith(prefix):
            return prefix + quote(doc_id[len(prefix) :], safe="")
    return quote(doc_id, safe="")


def strip_credentials(url: str) -> str:
    """A node URL safe to show: no user, no password."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None))


def new_write_id() -> str:
    return uuid.uuid4().hex


class RequestCounter:
    """Counts requests sent to CouchDB; tests use it to check the cost of a GraphQL query."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def add(self) -> None:
        with self._lock:
            self.total += 1


# -- nodes -------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    """What the client knows about one node. Guarded by CouchDBClient._lock."""

    index: int
    url: str  # without credentials, ends with "/"
    auth: httpx.Auth | None = field(repr=False)
    healthy: bool = True  # optimistic until a probe or a request says otherwise
    circuit_open: bool = False
    consecutive_errors: int = 0
    version: str | None = None
    latency_ms: float | None = None
    last_checked: float | None = None  # time.time() of the last probe
    last_error: str | None = None


class _NodeFailure(Exception):
    """One send to one node failed.

    `sent`: the request may have reached the node (so a write may have happened).
    `transient`: the node is up (a 5xx answer, or our own pool was full): only repeated
    failures open its circuit.
    """

    def __init__(self, reason: str, sent: bool, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent
        self.transient = transient


# -- what a request is, for the retry rules ----------------------------------------------------


class _Kind(Enum):
    READ = "read"  # no effect: retried anywhere
    IDEMPOTENT = "idempotent"  # same effect when repeated (create database, index, ...): retried
    DOC_WRITE = "doc_write"  # document writes: verified by reading back before any repeat
    UNSAFE = "unsafe"  # anything else: an unknown outcome is reported, never repeated


_READ_POSTS = {"_all_docs", "_find", "_explain", "_revs_diff", "_bulk_get", "_changes", "_design_docs",
               "_local_docs", "_missing_revs", "_all_dbs", "_dbs_info"}  # fmt: skip
_IDEMPOTENT_ENDPOINTS = {"_index", "_compact", "_view_cleanup", "_ensure_full_commit", "_security",
                         "_revs_limit", "_purge"}  # fmt: skip
_SYSTEM_DATABASES = {"_replicator", "_users", "_global_changes"}
_HISTORY_CHECKS = 50  # per database and failback check: documents looked at one by one


@dataclass
class _DocWrite:
    """One document of a write: how to recognise it on a node once it has landed."""

    doc_id: str
    body: dict[str, Any] | None  # None for DELETE
    base_rev: str | None
    deleted: bool

    def result_if_landed(self, row: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The write result if `row` (from `_all_docs?include_docs=true`) shows this write."""
        if not row or "value" not in row:
            return None
        rev = row["value"].get("rev")
        if not rev or rev == self.base_rev:
            return None  # absent, or still the revision this write started from
        if row["value"].get("deleted"):
            landed = self.deleted
        elif self.deleted or self.body is None:
            landed = False
        else:
            doc = row.get("doc") or {}
            write_id = self.body.get(WRITE_ID_FIELD)
            if write_id is not None:
                landed = doc.get(WRITE_ID_FIELD) == write_id
            else:
                landed = _content(doc) == _content(self.body)
        return {"ok": True, "id": self.doc_id, "rev": rev} if landed else None


def _content(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "_rev", "_revisions", "_conflicts")}


@dataclass
class _WritePlan:
    """A document write whose outcome may be unknown, and how to check and finish it.

    Why reading back is safe: every document the repositories write carries a fresh `write_id`
    (Database.put/bulk_docs set it), so a revision found on a node with our write_id *is* our
    write, already applied or already replicated there: it is not sent again. When it is not
    found, the write is sent to that node. The only way this duplicates anything is when the
    first node applied the write but had not replicated it before it failed: then the same edit
    exists twice, on the same parent revision, with the same body. On CouchDB 3 revision ids are
    a hash of parent and body, so both copies get the *same* revision and merge silently when
    the node returns; pouchdb-server draws random revision ids, so the two identical versions
    become a replication conflict, which the conflict resolver collapses (identical content).
    Nothing is lost either way, and nothing a user did not send is written.
    """

    db_path: str
    method: str
    path: str
    params: dict[str, str] | None
    body: Any
    items: list[_DocWrite]
    bulk: bool
    landed: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def pending(self) -> list[int]:
        return [i for i in range(len(self.items)) if i not in self.landed]

    def pending_request(self) -> tuple[str, str, dict[str, str] | None, Any]:
        """The request that writes what has not landed yet."""
        if not self.bulk:
            return self.method, self.path, self.params, self.body
        docs = self.body["docs"]
        body = {**self.body, "docs": [docs[i] for i in self.pending]}
        return self.method, self.path, self.params, body

    def finish(self, payload: Any) -> Any:
        """Merge the answer to `pending_request()` with what verification found already landed."""
        if not self.landed:
            return payload
        if not self.bulk:
            return payload if payload is not None else self.landed[0]
        # matched by id: pouchdb-server does not always answer _bulk_docs in request order
        answers = {str(answer.get("id")): answer for answer in payload or [] if isinstance(answer, dict)}
        return [
            self.landed[i]
            if i in self.landed
            else answers.get(item.doc_id, {"id": item.doc_id, "error": "missing"})
            for i, item in enumerate(self.items)
        ]

    def all_landed(self) -> Any:
        return self.finish(None) if self.bulk else self.landed[0]


def _segments(path: str) -> list[str]:
    return [unquote(part) for part in path.split("?")[0].strip("/").split("/") if part]


def _classify(
    method: str, path: str, params: dict[str, str] | None, body: Any
) -> tuple[_Kind, _WritePlan | None]:
    """How a request may be retried; for document writes, the plan to verify them."""
    if method in ("GET", "HEAD"):
        return _Kind.READ, None
    parts = _segments(path)
    if not parts or (parts[0].startswith("_") and parts[0] not in _SYSTEM_DATABASES):
        read = method == "POST" and bool(parts) and parts[0] in _READ_POSTS
        return (_Kind.READ if read else _Kind.UNSAFE), None
    db_path = path.split("?")[0].strip("/").split("/")[0]
    rest = parts[1:]
    if not rest:
        return (_Kind.IDEMPOTENT if method in ("PUT", "DELETE") else _Kind.UNSAFE), None
    if rest[0] in ("_design", "_local") and len(rest) >= 2:
        doc_id, tail = f"{rest[0]}/{rest[1]}", rest[2:]
        if tail:
            query = rest[0] == "_design" and tail[0] in ("_view", "_list", "_show") and method == "POST"
            return (_Kind.READ if query else _Kind.UNSAFE), None
        if rest[0] == "_local":  # local documents are not replicated: sending again is harmless
            return _Kind.IDEMPOTENT, None
    elif rest[0].startswith("_"):
        if method == "POST" and rest[0] in _READ_POSTS:
            return _Kind.READ, None
        if rest[0] in _IDEMPOTENT_ENDPOINTS:
            return _Kind.IDEMPOTENT, None
        if rest[0] == "_bulk_docs" and method == "POST" and len(rest) == 1:
            return _bulk_plan(db_path, method, path, params, body)
        return _Kind.UNSAFE, None
    else:
        doc_id, tail = rest[0], rest[1:]
        if tail:
            return _Kind.UNSAFE, None  # attachments
    params = params or {}
    if method == "PUT" and isinstance(body, dict):
        item = _DocWrite(doc_id, body, body.get("_rev") or params.get("rev"), bool(body.get("_deleted")))
    elif method == "DELETE" and params.get("rev"):
        item = _DocWrite(doc_id, None, params["rev"], True)
    else:
        return _Kind.UNSAFE, None
    return _Kind.DOC_WRITE, _WritePlan(db_path, method, path, params or None, body, [item], bulk=False)


def _bulk_plan(
    db_path: str, method: str, path: str, params: dict[str, str] | None, body: Any
) -> tuple[_Kind, _WritePlan | None]:
    if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
        return _Kind.UNSAFE, None
    if body.get("new_edits") is False:
        return _Kind.IDEMPOTENT, None  # explicit revisions: writing them twice changes nothing
    items = []
    for doc in body["docs"]:
        if not isinstance(doc, dict) or not isinstance(doc.get("_id"), str):
            return _Kind.UNSAFE, None
        items.append(_DocWrite(doc["_id"], doc, doc.get("_rev"), bool(doc.get("_deleted"))))
    if len({item.doc_id for item in items}) != len(items):
        return _Kind.UNSAFE, None
    return _Kind.DOC_WRITE, _WritePlan(db_path, method, path, params, body, items, bulk=True)


# -- the client --------------------------------------------------------------------------------


class CouchDBClient:
    """HTTP access to one or more replicated CouchDB nodes; `database(name)` gives a handle.

    - `urls`: one URL or several, the first being the preferred node. Credentials in a URL are
      used for that node, otherwise `user`/`password`; neither ever appears in a log or error.
    - `timeout`: seconds per attempt (connect at most 3 s); `deadline`: seconds for a request
      with all its retries (default 1.5 × the attempt timeout); `max_attempts`: sends per
      request (default twice the number of nodes).
    - `probe_interval`: seconds between health probes once `start_health_monitor()` runs.
    - `failure_threshold`: consecutive 5xx answers that open a node's circuit (connection
      failures open it at once).
    - `failback_max_wait`: fail back after this many seconds even if the preferred node is
      still behind (default: only once it caught up).
    - `transport` replaces the network (tests pass an `httpx.MockTransport`).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        user: str = "",
        password: str = "",
        timeout: float = 10.0,
        probe_interval: float | None = None,
        *,
        max_connections: int = 50,
        max_attempts: int | None = None,
        deadline: float | None = None,
        failure_threshold: int = 3,
        failback_max_wait: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url_list = [urls] if isinstance(urls, str) else list(urls)
        if not url_list:
            raise ValueError("CouchDBClient needs at least one node URL")
        self._nodes: list[_Node] = []
        for index, raw in enumerate(url_list):
            parsed = httpx.URL(raw)
            if parsed.username:
                auth: httpx.Auth | None = httpx.BasicAuth(
                    unquote(parsed.username), unquote(parsed.password or "")
                )
            elif user:
                auth = httpx.BasicAuth(user, password)
            else:
                auth = None
            self._nodes.append(_Node(index, strip_credentials(raw).rstrip("/") + "/", auth))
        url_passwords = [httpx.URL(u).password or "" for u in url_list]
        secrets = {password, *url_passwords, *(unquote(p) for p in url_passwords)}
        # messages are built from credential-free URLs; scrubbing is a second line of defence.
        # A very short password would match ordinary text ("p" in "http") and garble every
        # message while protecting nothing, so only passwords of 4+ characters are scrubbed.
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
        self.timeout = timeout
        self.connect_timeout = min(timeout, 3.0)
        self.probe_interval = probe_interval
        self.max_attempts = max_attempts or max(2, 2 * len(self._nodes))
        self.deadline = deadline
        self.failure_threshold = failure_threshold
        self.failback_max_wait = failback_max_wait
        self.behind_warning_seconds = 30.0
        self.max_tracked_writes = 20_000
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=self.connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Accept": "application/json"},
            transport=transport,
        )
        self.requests = RequestCounter()
        self._lock = threading.Lock()
        self._active = self._nodes[0]
        # (database path, doc id) -> (rev, time.monotonic()) written on a node other than the
        # preferred one since the last failback; the preferred node must have them to fail back
        self._written_elsewhere: dict[tuple[str, str], tuple[str, float]] = {}
        self._preferred_back_since: float | None = None
        self._behind_warned_at = 0.0
        self._stats = dict.fromkeys(
            ("retries", "failovers", "failbacks", "writes_verified", "writes_resent", "unknown_outcomes"), 0
        )
        self._served = threading.local()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._monitor_wanted = False
        self._monitor_lock = threading.Lock()
        self._closed = False

    # -- public ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The preferred node's URL (no credentials)."""
        return self._nodes[0].url

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(node.url for node in self._nodes)

    @property
    def active_url(self) -> str:
        """The node requests go to now."""
        with self._lock:
            return self._active.url

    @property
    def served_by(self) -> str | None:
        """The node that answered the calling thread's last request (changes feed positions are per node)."""
        return getattr(self._served, "url", None)

    @property
    def monitor_running(self) -> bool:
        return self._monitor is not None and self._monitor.is_alive()

    def nodes_status(self) -> list[dict[str, Any]]:
        """Per node: url, healthy, active, version, latency_ms, circuit_open, last_error, last_checked."""
        with self._lock:
            return [
                {
                    "url": node.url,
                    "healthy": node.healthy,
                    "active": node is self._active,
                    "version": node.version,
                    "latency_ms": node.latency_ms,
                    "circuit_open": node.circuit_open,
                    "last_error": node.last_error,
                    "last_checked": node.last_checked,
                }
                for node in self._nodes
            ]

    def stats(self) -> dict[str, int]:
        """Counters since start: retries, failovers, failbacks, writes_verified/resent, unknown_outcomes."""
        with self._lock:
            return dict(self._stats)

    def start_health_monitor(self) -> None:
        """Probe every node in a daemon thread every `probe_interval` seconds until close()."""
        with self._monitor_lock:
            if self.monitor_running or self._closed:
                return
            self._monitor_wanted = True
            self._stop.clear()
            self._monitor = threading.Thread(target=self._monitor_loop, name="couchdb-health", daemon=True)
            self._monitor.start()

    def close(self) -> None:
        """Stop the health monitor and close every pooled connection."""
        self._closed = True
        self._stop.set()
        monitor = self._monitor
        if monitor is not None and monitor is not threading.current_thread():
            monitor.join(timeout=5)
        self._monitor = None
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request to a healthy node and return the decoded JSON body; raise a typed CouchError."""
        self.requests.add()
        if self._monitor_wanted and not self.monitor_running and not self._closed:
            self.start_health_monitor()  # threads do not survive a fork (gunicorn --preload)
        method = method.upper()
        path = path.lstrip("/")
        encoded = _encode_params(params)
        kind, plan = _classify(method, path, encoded, body)
        return self._route(method, path, encoded, body, kind, plan, timeout or self.timeout)

    def server_info(self) -> dict[str, Any]:
        return self.request("GET", "")

    def ping(self) -> bool:
        """True when a node answers its welcome document."""
        try:
            self.request("GET", "", timeout=2.0)
        except CouchError:
            return False
        return True

    def database(self, name: str) -> Database:
        return Database(self, name)

    def check_nodes(self) -> None:
        """One round of the health monitor: probe every node, then decide on failback."""
        for node in self._nodes:
            if self._stop.is_set():
                return
            self._probe(node)
        self._choose_active()
        self._check_failback()

    # -- routing ----------------------------------------------------------------------------------

    def _route(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: Any,
        kind: _Kind,
        plan: _WritePlan | None,
        attempt_timeout: float,
    ) -> Any:
        deadline = time.monotonic() + (self.deadline or attempt_timeout * 1.5)
        sent_to: list[_Node] = []
        verified_on: list[_Node] = []
        verifying = False  # the last send may have written: read back before sending again
        verify_on: _Node | None = None  # a node that answered 5xx to a write: ask it first
        last_error = "no database node is available"
        attempts = 0
        while attempts < self.max_attempts:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last_error += " (retry deadline reached)"
                break
            answered_5xx = verify_on is not None
            if verify_on is not None:
                node, verify_on = verify_on, None
            else:
                candidate = self._next_node(verified_on if verifying else sent_to)
                if candidate is None:
                    break
                node = candidate
            attempts += 1
            if attempts > 1:
                self._count("retries")
            step = min(attempt_timeout, remaining)
            if verifying and plan is not None:
                verified_on.append(node)
                try:
                    self._verify(node, plan, step)
                except _NodeFailure as failure:
                    last_error = self._failed(node, failure)
                    continue
                verifying = False
                self._log_verification(node, plan)
                if not plan.pending:
                    self._succeeded(node)
                    result = plan.all_landed()
                    self._track_writes(node, plan, result)
                    return result
                self._count("writes_resent")
                if answered_5xx:
                    continue  # it failed this write once: send what is missing to the next node
            sent_to.append(node)
            send_method, send_path, send_params, send_body = (
                plan.pending_request() if plan is not None else (method, path, params, body)
            )
            try:
                response = self._send(node, send_method, send_path, send_params, send_body, step)
            except _NodeFailure as failure:
                last_error = self._failed(node, failure)
                if failure.sent and kind is _Kind.DOC_WRITE:
                    verifying = True
                elif failure.sent and kind is _Kind.UNSAFE:
                    self._count("unknown_outcomes")
                    raise DatabaseUnavailable(f"outcome unknown: {last_error}") from None
                continue
            if response.status_code >= 500:
                answer = _NodeFailure(f"{response.status_code} from {node.url}", sent=True, transient=True)
                last_error = self._failed(node, answer)
                if kind is _Kind.DOC_WRITE:
                    verifying, verify_on = True, node
                elif kind is _Kind.UNSAFE:
                    self._count("unknown_outcomes")
                    raise DatabaseUnavailable(f"outcome unknown: {last_error}")
                continue
            self._succeeded(node)
            payload = _decode(response)
            if plan is not None:
                payload = plan.finish(payload)
                self._track_writes(node, plan, payload)
            return payload
        if verifying:
            self._count("unknown_outcomes")
            raise DatabaseUnavailable(f"write outcome unknown: {last_error}")
        raise DatabaseUnavailable(last_error)

    def _next_node(self, exclude: list[_Node]) -> _Node | None:
        """The first node not in `exclude`: the active one, then the others in order.

        A node with an open circuit is skipped; when every remaining node has one and no monitor
        runs to close it again, the request itself is the probe (single-node setups recover so).
        """
        with self._lock:
            order = [self._active] + [n for n in self._nodes if n is not self._active]
            preferred = self._nodes[0]
            if preferred is not self._active:  # back but maybe not caught up: the last resort
                order.remove(preferred)
                order.append(preferred)
            remaining = [n for n in order if n not in exclude]
            for node in remaining:
                if not node.circuit_open:
                    return node
            if remaining and not self.monitor_running:
                return remaining[0]
        return None

    def _send(
        self,
        node: _Node,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: Any,
        timeout: float,
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {
            "params": params,
            "auth": node.auth,
            "timeout": httpx.Timeout(timeout, connect=min(timeout, self.connect_timeout)),
        }
        if body is not None:
            kwargs["content"] = json.dumps(body, separators=(",", ":"))
            kwargs["headers"] = {"Content-Type": "application/json"}
        try:
            return self._http.request(method, node.url + path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # nothing was sent; a pool timeout means we are busy, not that the node is down
            busy = isinstance(exc, httpx.PoolTimeout)
            raise _NodeFailure(f"{type(exc).__name__} from {node.url}", sent=False, transient=busy) from None
        except httpx.TransportError as exc:
            # read timeout, connection reset, server gone after the request went out
            raise _NodeFailure(f"{type(exc).__name__} from {node.url}", sent=True) from None

    def _log_verification(self, node: _Node, plan: _WritePlan) -> None:
        # outcome of an uncertain write: rare (only when a node fails under it), so worth a line
        log.warning(
            "uncertain write checked",
            extra={
                "node": node.url,
                "documents": len(plan.items),
                "already_applied": len(plan.landed),
                "sent_again": len(plan.pending),
            },
        )

    def _verify(self, node: _Node, plan: _WritePlan, timeout: float) -> None:
        """Read the plan's pending documents back from `node`; mark the ones that landed."""
        pending = plan.pending
        keys = [plan.items[i].doc_id for i in pending]
        response = self._send(
            node, "POST", f"{plan.db_path}/_all_docs", {"include_docs": "true"}, {"keys": keys}, timeout
        )
        if response.status_code >= 500:
            raise _NodeFailure(f"{response.status_code} from {node.url}", sent=True, transient=True)
        if response.status_code == 404:
            return  # no such database there: nothing landed
        rows = {row.get("key"): row for row in _decode(response).get("rows", [])}
        for i in pending:
            result = plan.items[i].result_if_landed(rows.get(plan.items[i].doc_id))
            if result is not None:
                plan.landed[i] = result
                self._count("writes_verified")

    # -- node state -------------------------------------------------------------------------------

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._stats[name] += amount

    def _failed(self, node: _Node, failure: _NodeFailure) -> str:
        """Record a failed send; open the node's circuit unless it was an isolated 5xx."""
        reason = self._scrub(failure.reason)
        with self._lock:
            node.consecutive_errors += 1
            node.last_error = reason
            opens = not failure.transient or node.consecutive_errors >= self.failure_threshold
            if opens and failure.transient and all(n.circuit_open for n in self._nodes if n is not node):
                # 5xx everywhere is more likely this request's fault than every node's: keep
                # the last node in rotation; only a node that cannot be reached leaves it
                opens = False
            newly_open = opens and not node.circuit_open
            if opens:
                node.circuit_open = True
                node.healthy = False
            if newly_open and node is self._active:
                self._switch_active_locked()
        if newly_open:
            log.warning("database node failing, circuit open", extra={"node": node.url, "error": reason})
        return reason

    def _succeeded(self, node: _Node) -> None:
        self._served.url = node.url
        with self._lock:
            node.consecutive_errors = 0
            if node.circuit_open and not self.monitor_running:
                node.circuit_open = False  # a request acted as the probe
                node.healthy = True
            if node is not self._active and self._active.circuit_open and not node.circuit_open:
                self._set_active_locked(node, "failover")

    def _switch_active_locked(self) -> None:
        """The active node went down: move to the first healthy node, the preferred one last."""
        order = [n for n in self._nodes[1:]] + [self._nodes[0]]
        for node in order:
            if node is not self._active and not node.circuit_open:
                self._set_active_locked(node, "failover")
                return

    def _set_active_locked(self, node: _Node, event: str) -> None:
        previous = self._active
        self._active = node
        self._stats[event + "s"] += 1
        if node is self._nodes[0]:
            self._written_elsewhere.clear()
            self._preferred_back_since = None
        log.warning("database %s", event, extra={"from_node": previous.url, "to_node": node.url})

    def _track_writes(self, node: _Node, plan: _WritePlan, payload: Any) -> None:
        """Remember revisions written away from the preferred node: failback waits for them."""
        if node is self._nodes[0]:
            return
        results = payload if isinstance(payload, list) else [payload]
        now = time.monotonic()
        with self._lock:
            for result in results:
                if isinstance(result, dict) and result.get("rev") and not result.get("error"):
                    key = (plan.db_path, str(result.get("id")))
                    self._written_elsewhere.pop(key, None)
                    self._written_elsewhere[key] = (result["rev"], now)
            while len(self._written_elsewhere) > self.max_tracked_writes:
                self._written_elsewhere.pop(next(iter(self._written_elsewhere)))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- health monitor and failback --------------------------------------------------------------

    def _monitor_loop(self) -> None:
        interval = self.probe_interval or 1.0
        while not self._stop.is_set():
            try:
                self.check_nodes()
            except Exception:  # the monitor must outlive any surprise; it is logged, not raised
                log.exception("database health check failed")
            self._stop.wait(interval)

    def _probe(self, node: _Node) -> bool:
        """GET / on one node (CouchDB 3 and pouchdb-server both answer it; pouchdb lacks /_up)."""
        probe_timeout = min(2.0, max(0.5, self.probe_interval or 1.0))
        started = time.perf_counter()
        error: str | None = None
        info: Any = None
        try:
            response = self._send(node, "GET", "", None, None, probe_timeout)
            if response.status_code >= 400:
                error = f"{response.status_code} from {node.url}"
            else:
                info = response.json()
        except _NodeFailure as failure:
            if failure.transient:
                return node.healthy  # our own connection pool was full: says nothing about the node
            error = failure.reason
        except ValueError:
            error = f"bad welcome document from {node.url}"
        latency = round((time.perf_counter() - started) * 1000, 1)
        with self._lock:
            node.last_checked = time.time()
            was_open = node.circuit_open
            if error is None:
                node.healthy = True
                node.circuit_open = False
                node.consecutive_errors = 0
                node.latency_ms = latency
                node.last_error = None
                version = info.get("version") if isinstance(info, dict) else None
                node.version = str(version) if version is not None else None
            else:
                node.healthy = False
                node.circuit_open = True
                node.latency_ms = None
                node.last_error = self._scrub(error)
        if error is None and was_open:
            log.warning("database node healthy again", extra={"node": node.url})
        elif error is not None and not was_open:
            log.warning("database node failed its health probe", extra={"node": node.url, "error": error})
        return error is None

    def _choose_active(self) -> None:
        with self._lock:
            if self._active.circuit_open:
                self._switch_active_locked()

    def _check_failback(self) -> None:
        """Route back to the preferred node once it is healthy and caught up.

        Caught up: every document revision this client wrote on another node while failed over
        is on the preferred node (`_missing_on`). Writes made after the node came back and less
        than a probe interval ago are not waited for: they are still travelling through
        replication, and under steady load there always are some. Writes of other app processes
        travel the same replication links, so ours are a sample of that stream.

        The wait is bounded per check (one `_revs_diff` per database) but not in time by
        default: a node that stays behind means replication into it is broken, and routing
        there would hide recent writes from their authors and turn their next edits into
        conflicts, while the node in use serves correctly. Every `behind_warning_seconds` the
        client logs how far behind the node is. With `failback_max_wait` set, it fails back
        anyway after that many seconds (with a warning).
        """
        preferred = self._nodes[0]
        with self._lock:
            if self._active is preferred:
                return
            if preferred.circuit_open:
                self._preferred_back_since = None
                return
            now = time.monotonic()
            if self._preferred_back_since is None:
                self._preferred_back_since = self._behind_warned_at = now
            back_since = self._preferred_back_since
            settle = self.probe_interval or 1.0
            required = {
                key: rev
                for key, (rev, at) in self._written_elsewhere.items()
                if at <= back_since or now - at >= settle
            }
        missing = self._missing_on(preferred, required)
        if missing is None:
            return  # the preferred node did not answer: try again next round
        with self._lock:
            for key, rev in required.items():
                if key not in missing and self._written_elsewhere.get(key, ("", 0.0))[0] == rev:
                    del self._written_elsewhere[key]
            if self._active is preferred or preferred.circuit_open:
                return
            waited = now - back_since
            forced = self.failback_max_wait is not None and waited >= self.failback_max_wait
            if missing and not forced:
                if now - self._behind_warned_at >= self.behind_warning_seconds:
                    self._behind_warned_at = now
                    log.warning(
                        "preferred database node healthy but behind: not failing back yet",
                        extra={
                            "node": preferred.url,
                            "missing_revisions": len(missing),
                            "waited_s": round(waited, 1),
                        },
                    )
                return
            if missing:
                log.warning(
                    "failing back before the preferred node caught up",
                    extra={
                        "node": preferred.url,
                        "missing_revisions": len(missing),
                        "waited_s": round(waited, 1),
                    },
                )
            self._set_active_locked(preferred, "failback")

    def _missing_on(self, node: _Node, revs: Mapping[tuple[str, str], str]) -> set[tuple[str, str]] | None:
        """Which (database, doc id) revisions `node` lacks; None if it could not say.

        `_revs_diff` answers this in one request per database. pouchdb-server (unlike CouchDB 3)
        also reports a revision whose body it does not hold, which is every ancestor that arrived
        by replication; such reports are checked against the histories of the document's leaves.
        """
        by_db: dict[str, dict[str, list[str]]] = {}
        for (db_path, doc_id), rev in revs.items():
            by_db.setdefault(db_path, {})[doc_id] = [rev]
        missing: set[tuple[str, str]] = set()
        for db_path, wanted in by_db.items():
            try:
                response = self._send(
                    node, "POST", f"{db_path}/_revs_diff", None, wanted, self.connect_timeout
                )
                if response.status_code == 404:
                    continue  # the database is gone: nothing to wait for
                if response.status_code >= 400:
                    return None
                reported = [doc_id for doc_id, diff in response.json().items() if diff.get("missing")]
                for count, doc_id in enumerate(reported):
                    if count >= _HISTORY_CHECKS or not self._in_history(
                        node, db_path, doc_id, wanted[doc_id][0]
                    ):
                        missing.add((db_path, doc_id))
            except (_NodeFailure, ValueError, AttributeError):
                return None
        return missing

    def _in_history(self, node: _Node, db_path: str, doc_id: str, rev: str) -> bool:
        """True if `rev` is in the revision history of any leaf of the document on `node`."""
        path = f"{db_path}/{quote_id(doc_id)}"
        params = {"open_revs": "all", "revs": "true"}
        response = self._send(node, "GET", path, params, None, self.connect_timeout)
        if response.status_code >= 400:
            return False
        for answer in response.json():
            history = (answer.get("ok") or {}).get("_revisions") or {}
            start = history.get("start", 0)
            if rev in {f"{start - i}-{rev_id}" for i, rev_id in enumerate(history.get("ids", []))}:
                return True
        return False


def _encode_params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    encoded: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in _JSON_PARAMS:
            encoded[name] = json.dumps(value)
        elif isinstance(value, bool):
            encoded[name] = "true" if value else "false"
        else:
            encoded[name] = str(value)
    return encoded or None


def _decode(response: httpx.Response) -> Any:
    try:
        payload = response.json() if response.content else {}
    except ValueError:
        payload = {"error": "bad_response", "reason": response.text[:200]}
    if response.status_code < 400:
        return payload
    error = payload.get("error", "") if isinstance(payload, dict) else ""
    reason = payload.get("reason", "") if isinstance(payload, dict) else ""
    if response.status_code >= 500:
        raise DatabaseUnavailable(f"{response.status_code} {error}")
    cls = _ERRORS_BY_STATUS.get(response.status_code, CouchError)
    raise cls(response.status_code, str(error), str(reason))


class Database:
    """One CouchDB database: documents, bulk writes, Mango, views and the changes feed."""

    def __init__(self, client: CouchDBClient, name: str) -> None:
        self.client = client
        self.name = name
        self._path = quote(name, safe="")

    def _request(self, method: str, path: str = "", **kwargs: Any) -> Any:
        target = f"{self._path}/{path}" if path else self._path
        return self.client.request(method, target, **kwargs)

    # databases -----------------------------------------------------------------------------
    def ensure_exists(self) -> bool:
        """Create the database unless it exists; True when it was created now."""
        try:
            self._request("PUT")
        except PreconditionFailed:
            return False
        return True

    def destroy(self) -> None:
        try:
            self._request("DELETE")
        except DocumentNotFound:
            pass

    def info(self) -> dict[str, Any]:
        return self._request("GET")

    # documents -----------------------------------------------------------------------------
    def get(self, doc_id: str, **params: Any) -> dict[str, Any]:
        return self._request("GET", quote_id(doc_id), params=params)

    def get_or_none(self, doc_id: str, **params: Any) -> dict[str, Any] | None:
        try:
            return self.get(doc_id, **params)
        except DocumentNotFound:
            return None

    def open_revs(self, doc_id: str, revs: Sequence[str], history: bool = False) -> list[dict[str, Any]]:
        """Bodies of specific leaf revisions (conflict leaves), in one request; missing ones skipped."""
        params: dict[str, Any] = {"open_revs": json.dumps(list(revs)), "revs": history}
        answers = self._request("GET", quote_id(doc_id), params=params)
        return [answer["ok"] for answer in answers if isinstance(answer, dict) and answer.get("ok")]

    def _stamp(self, doc: dict[str, Any]) -> None:
        """Give a document about to be written a fresh write id (see `_WritePlan`).

        Always fresh, also when `doc` was read back with an older one: the id names this write.
        Design and local documents, tombstones and system databases are left as they are.
        """
        doc_id = str(doc.get("_id", ""))
        if self.name.startswith("_") or doc_id.startswith(("_design/", "_local/")) or doc.get("_deleted"):
            return
        doc[WRITE_ID_FIELD] = new_write_id()

    def put(self, doc: dict[str, Any]) -> str:
        """Create or update a document; return its new revision (DocumentConflict if stale)."""
        self._stamp(doc)
        result = self._request("PUT", quote_id(doc["_id"]), body=doc)
        doc["_rev"] = result["rev"]
        return result["rev"]

    def delete(self, doc_id: str, rev: str) -> str:
        return self._request("DELETE", quote_id(doc_id), params={"rev": rev})["rev"]

    def bulk_docs(self, docs: Sequence[dict[str, Any]], new_edits: bool = True) -> list[dict[str, Any]]:
        """Write many documents in one round trip; each result has `id` and `rev` or `error`."""
        if not docs:
            return []
        body: dict[str, Any] = {"docs": list(docs)}
        if not new_edits:
            body["new_edits"] = False  # replicated revisions: stored exactly as given
        else:
            for doc in docs:
                doc.setdefault("_id", uuid.uuid4().hex)  # an id lets an uncertain write be checked
                self._stamp(doc)
        return self._request("POST", "_bulk_docs", body=body)

    def all_docs(self, keys: Iterable[str], include_docs: bool = True, **params: Any) -> list[dict[str, Any]]:
        """Fetch documents by id in one round trip; missing ones come back without `doc`."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        result = self._request(
            "POST", "_all_docs", params={"include_docs": include_docs, **params}, body={"keys": keys}
        )
        return result["rows"]

    def get_many(self, keys: Iterable[str], **params: Any) -> dict[str, dict[str, Any]]:
        """Documents by id, skipping missing and deleted ones; `params` as for `_all_docs`."""
        return {
            row["id"]: row["doc"]
            for row in self.all_docs(keys, **params)
            if row.get("doc") and not row.get("value", {}).get("deleted")
        }

    # queries -------------------------------------------------------------------------------
    def find(
        self,
        selector: Mapping[str, Any],
        *,
        limit: int,
        fields: Sequence[str] | None = None,
        sort: Sequence[Mapping[str, str]] | None = None,
        use_index: str | None = None,
    ) -> list[dict[str, Any]]:
        """A Mango query; `limit` is required because pouchdb-server has no default limit."""
        body: dict[str, Any] = {"selector": selector, "limit": limit}
        if fields:
            body["fields"] = list(fields)
        if sort:
            body["sort"] = list(sort)
        if use_index:
            body["use_index"] = use_index
        return self._request("POST", "_find", body=body)["docs"]

    def view(self, design: str, view: str, *, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        """Query a view; `keys` goes in the body so long key lists fit. `timeout` overrides the
        client's for a query that may have to build the index first."""
        path = f"_design/{quote(design, safe='')}/_view/{quote(view, safe='')}"
        keys = params.pop("keys", None)
        if keys is not None:
            return self._request("POST", path, params=params, body={"keys": keys}, timeout=timeout)
        return self._request("GET", path, params=params, timeout=timeout)

    def changes(self, **params: Any) -> dict[str, Any]:
        timeout = None
        if params.get("feed") == "longpoll":
            timeout = float(params.get("timeout", 30000)) / 1000 + 10
        return self._request("GET", "_changes", params=params, timeout=timeout)

    # schema --------------------------------------------------------------------------------
    def ensure_index(self, name: str, fields: Sequence[str], ddoc: str | None = None) -> None:
        """Create a Mango index; CouchDB answers `exists` when it is already there."""
        body: dict[str, Any] = {"index": {"fields": list(fields)}, "name": name, "type": "json"}
        body["ddoc"] = ddoc or f"idx-{name}"
        self._request("POST", "_index", body=body)

    def ensure_design(self, design: str, body: dict[str, Any]) -> bool:
        """Install or update a design document when its content differs; True when written."""
        doc_id = f"_design/{design}"
        current = self.get_or_none(doc_id)
        wanted = {"_id": doc_id, **body}
        if current is not None:
            comparable = {k: v for k, v in current.items() if k != "_rev"}
            if comparable == wanted:
                return False
            wanted["_rev"] = current["_rev"]
        try:
            self.put(wanted)
        except DocumentConflict:
            return False  # another process installed it at the same moment
        return True
