"""The one CouchDB HTTP client of a process: several nodes, request routing, pooled keep-alive
connections.

Everything here speaks the CouchDB 3 HTTP API; where pouchdb-server (development and tests)
differs, server_differences.py says how, so the same code runs against both.

Routing (design.md, "Replication, failover, conflicts"); the nodes replicate each other (or are
doors to one clustered CouchDB), the client only chooses where to send each request:

- Every request goes to the *active* node (nodes.py: health, circuits, failback). A request that
  fails for connection reasons or with a 5xx is tried on the next healthy node, within a budget
  (`max_attempts` sends and an overall `deadline`). When no node can take a request the caller
  gets `DatabaseUnavailable` at once, never a hang.
- Uncertain writes: a document write that may have reached a node (timeout or connection lost
  after sending, 5xx) is never blindly repeated. The client reads the documents back (one
  `POST _all_docs`) and only sends again what is not there (verification.py).
- A request can be pinned to one node (`node=`): it is then never sent anywhere else. Changes-feed
  positions need that (server_differences D5).
- Quorum: with `write_quorum` > 1 a document write is acknowledged only once that many nodes hold
  its exact revision: the client pushes it to the next nodes in failover order (quorum.py), or
  raises `QuorumNotReached` with the written ids.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

import httpx
import orjson

from notebook.database.couch.database import Database
from notebook.database.couch.errors import CouchError, DatabaseUnavailable, QuorumNotReached, decode
from notebook.database.couch.nodes import CouchNode, HealthMonitor, NodeFailure, NodePool
from notebook.database.couch.paths import encode_params, strip_credentials
from notebook.database.couch.quorum import QuorumPush, replica_docs
from notebook.database.couch.read_cache import ReadCache
from notebook.database.couch.server_differences import REQUEST_HEADERS
from notebook.database.couch.tls import DEFAULT_TLS, CouchTLS, tls_failure
from notebook.database.couch.verification import RequestKind, WritePlan, classify
from notebook.utils.metrics import COUCHDB_SECONDS

log = logging.getLogger(__name__)


class RequestCounter:
    """Counts requests sent to CouchDB; tests use it to check the cost of a GraphQL query."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def add(self) -> None:
        with self._lock:
            self.total += 1


class CouchDBClient:
    """HTTP access to one or more CouchDB nodes; `database(name)` gives a handle.

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
    - `write_quorum`: nodes that must hold a document write's revision before it is
      acknowledged (1: the node that took it); `quorum_timeout`: seconds for the other copies;
      `quorum_exempt`: databases whose writes one node acknowledges (quorum.py says which).
    - `tls`: how `https://` nodes are verified and which client certificate they are shown
      (tls.py); one `CouchTLS` per process, shared by all its clients. Default: the system's
      trust store, host names checked, no client certificate.
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
        write_quorum: int = 1,
        quorum_timeout: float = 5.0,
        quorum_exempt: Sequence[str] = (),
        tls: CouchTLS | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url_list = [urls] if isinstance(urls, str) else list(urls)
        if not url_list:
            raise ValueError("CouchDBClient needs at least one node URL")
        if not 1 <= write_quorum <= len(url_list):
            raise ValueError("write_quorum must be between 1 and the number of nodes")
        self.write_quorum = write_quorum
        self.quorum_timeout = quorum_timeout
        self.quorum_exempt = frozenset(quote(name, safe="") for name in quorum_exempt)
        nodes: list[CouchNode] = []
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
            nodes.append(CouchNode(index, strip_credentials(raw).rstrip("/") + "/", auth))
        url_passwords = [httpx.URL(u).password or "" for u in url_list]
        secrets = {password, *url_passwords, *(unquote(p) for p in url_passwords)}
        # messages are built from credential-free URLs; scrubbing is a second line of defence.
        # A very short password would match ordinary text ("p" in "http") and garble every
        # message while protecting nothing, so only passwords of 4+ characters are scrubbed.
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
        self.timeout = timeout
        self.connect_timeout = min(timeout, 3.0)
        self.max_attempts = max_attempts or max(2, 2 * len(nodes))
        self.deadline = deadline
        self.tls = tls or DEFAULT_TLS
        self._http = httpx.Client(
            verify=self.tls.context(),
            timeout=httpx.Timeout(timeout, connect=self.connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers=REQUEST_HEADERS,
            transport=transport,
        )
        self.requests = RequestCounter()
        # documents read by id, kept by bootstrap's follower of the changes feed (read_cache.py)
        self.read_cache: ReadCache | None = None
        self._pool = NodePool(nodes, failure_threshold, self._scrub)
        self._pool.copies_to_preferred = write_quorum > 1
        self._health = HealthMonitor(
            self._pool, self._send, probe_interval, self.connect_timeout, self._scrub
        )
        self._health.failback_max_wait = failback_max_wait
        self._served = threading.local()

    # -- public ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The preferred node's URL (no credentials)."""
        return self._pool.preferred.url

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(node.url for node in self._pool.nodes)

    @property
    def active_url(self) -> str:
        """The node requests go to now."""
        with self._pool.lock:
            return self._pool.active.url

    @property
    def served_by(self) -> str | None:
        """The node that answered the calling thread's last request."""
        return getattr(self._served, "url", None)

    @property
    def probe_interval(self) -> float | None:
        return self._health.probe_interval

    @property
    def behind_warning_seconds(self) -> float:
        """How often a preferred node that is healthy but behind is logged."""
        return self._health.behind_warning_seconds

    @behind_warning_seconds.setter
    def behind_warning_seconds(self, seconds: float) -> None:
        self._health.behind_warning_seconds = seconds

    @property
    def monitor_running(self) -> bool:
        return self._health.running()

    def nodes_status(self) -> list[dict[str, Any]]:
        """Per node: url, healthy, active, version, latency_ms, circuit_open, last_error, last_checked."""
        return self._pool.status()

    def node_events(self) -> list[dict[str, Any]]:
        """What happened to the nodes lately, oldest first: {"at" (epoch s), "event" (node_down,
        node_back, failover, failback), "node", "detail"}."""
        with self._pool.lock:
            return list(self._pool.events)

    def stats(self) -> dict[str, int]:
        """Counters since start: retries, failovers, failbacks, writes_verified/resent, unknown_outcomes."""
        with self._pool.lock:
            return dict(self._pool.stats)

    def start_health_monitor(self) -> None:
        """Probe every node in a daemon thread every `probe_interval` seconds until close()."""
        self._health.start(self.check_nodes)

    def close(self) -> None:
        """Stop the health monitor and close every pooled connection."""
        self._health.close()
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        node: str | None = None,
    ) -> Any:
        """Send one request to a healthy node and return the decoded JSON body; raise a typed
        CouchError. `node` (a URL of `urls`) pins the request to that node: no failover."""
        self.requests.add()
        self._health.restart_if_lost(self.check_nodes)
        method = method.upper()
        path = path.lstrip("/")
        encoded = encode_params(params)
        kind, plan = classify(method, path, encoded, body)
        only = self._node_by_url(node) if node is not None else None
        self._pool.note_database(path.split("/", 1)[0].split("?", 1)[0])
        payload = self._route(method, path, encoded, body, kind, plan, timeout or self.timeout, only)
        if plan is not None and self.write_quorum > 1 and plan.db_path not in self.quorum_exempt:
            push = replica_docs(plan, payload)
            if push is not None:
                self._reach_quorum(self._node_by_url(self._served.url), push)
        return payload

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
        self._health.check()

    # -- routing ----------------------------------------------------------------------------------

    def _node_by_url(self, url: str) -> CouchNode:
        for candidate in self._pool.nodes:
            if candidate.url == url:
                return candidate
        raise ValueError("not a node of this client")

    def _route(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: Any,
        kind: RequestKind,
        plan: WritePlan | None,
        attempt_timeout: float,
        only: CouchNode | None = None,
    ) -> Any:
        pool = self._pool
        deadline = time.monotonic() + (self.deadline or attempt_timeout * 1.5)
        sent_to: list[CouchNode] = []
        verified_on: list[CouchNode] = []
        verifying = False  # the last send may have written: read back before sending again
        verify_on: CouchNode | None = None  # a node that answered 5xx to a write: ask it first
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
                candidate = pool.next_node(verified_on if verifying else sent_to, only)
                if candidate is None:
                    break
                node = candidate
            attempts += 1
            if attempts > 1:
                pool.count("retries")
            step = min(attempt_timeout, remaining)
            if verifying and plan is not None:
                verified_on.append(node)
                try:
                    self._verify(node, plan, step)
                except NodeFailure as failure:
                    last_error = pool.failed(node, failure)
                    continue
                verifying = False
                self._log_verification(node, plan)
                if not plan.pending:
                    self._succeeded(node)
                    result = plan.all_landed()
                    pool.track_writes(node, plan.db_path, result)
                    return result
                pool.count("writes_resent")
                if answered_5xx:
                    continue  # it failed this write once: send what is missing to the next node
            sent_to.append(node)
            send_method, send_path, send_params, send_body = (
                plan.pending_request() if plan is not None else (method, path, params, body)
            )
            try:
                response = self._send(node, send_method, send_path, send_params, send_body, step)
            except NodeFailure as failure:
                last_error = pool.failed(node, failure)
                if failure.sent and kind is RequestKind.DOC_WRITE:
                    verifying = True
                elif failure.sent and kind is RequestKind.UNSAFE:
                    pool.count("unknown_outcomes")
                    raise DatabaseUnavailable(f"outcome unknown: {last_error}") from None
                continue
            if response.status_code >= 500:
                # keep CouchDB's error name ("timeout" when a view build outlasts CouchDB 3's own
                # fabric request_timeout, 60 s): callers and logs need it to tell why
                answer = NodeFailure(
                    f"{response.status_code} {_error_name(response)}from {node.url}",
                    sent=True,
                    transient=True,
                )
                last_error = pool.failed(node, answer)
                if kind is RequestKind.DOC_WRITE:
                    verifying, verify_on = True, node
                elif kind is RequestKind.UNSAFE:
                    pool.count("unknown_outcomes")
                    raise DatabaseUnavailable(f"outcome unknown: {last_error}")
                continue
            self._succeeded(node)
            payload = decode(response)
            if plan is not None:
                payload = plan.finish(payload)
                pool.track_writes(node, plan.db_path, payload)
            return payload
        if verifying:
            pool.count("unknown_outcomes")
            raise DatabaseUnavailable(f"write outcome unknown: {last_error}")
        raise DatabaseUnavailable(last_error)

    def _reach_quorum(self, written_on: CouchNode, push: QuorumPush) -> None:
        """Push the written revisions to the next nodes in failover order until `write_quorum`
        nodes hold each; raise QuorumNotReached when the nodes or `quorum_timeout` run out.
        While failed over, a preferred node that is back gets a copy too (see _copy_to_preferred)."""
        required = self.write_quorum
        deadline = time.monotonic() + self.quorum_timeout
        for node in self._pool.quorum_order(written_on):
            pending = push.pending(required)
            if not pending or deadline - time.monotonic() <= 0:
                break
            self._push(node, push, pending, deadline)
        short = push.short_of(required)
        if not short:
            self._pool.count("quorum_writes")
            self._copy_to_preferred(written_on, push, deadline)
            return
        self._pool.count("quorum_failures")
        copies = min(push.copies.get(doc_id, 0) for doc_id in short)
        reason = "; ".join(push.reasons) or "no other node available in time"
        log.warning(
            "write quorum not reached",
            extra={"node": written_on.url, "documents": len(short), "copies": copies, "required": required,
                   "error": self._scrub(reason)},
        )  # fmt: skip
        raise QuorumNotReached(short, copies, required, self._scrub(reason))

    def _push(self, node: CouchNode, push: QuorumPush, docs: list[dict[str, Any]], deadline: float) -> None:
        """Store these exact revisions on `node` (`new_edits=false`); record which it took."""
        body = {"new_edits": False, "docs": docs}
        timeout = max(0.05, min(deadline - time.monotonic(), self.timeout))
        try:
            response = self._send(node, "POST", f"{push.db_path}/_bulk_docs", None, body, timeout)
        except NodeFailure as failure:
            push.reasons.append(self._pool.failed(node, failure))
            return
        if response.status_code >= 400:  # 404: the database is not (yet) on that node
            push.reasons.append(f"{response.status_code} {_error_name(response)}from {node.url}")
            return
        try:
            push.record(node.url, docs, decode(response))
        except CouchError as exc:
            push.reasons.append(str(exc))

    def _copy_to_preferred(self, written_on: CouchNode, push: QuorumPush, deadline: float) -> None:
        """While failed over to another node, give the preferred node, once it answers again, a
        copy of every quorum write (not counted in the quorum). Failback then waits only for the
        writes whose copy did not land there; without it, a write acknowledged a moment before
        failback could still be travelling through replication, and its author would read the
        older version from the preferred node."""
        pool = self._pool
        preferred = pool.preferred
        with pool.lock:
            # not only while failed over: failback may have happened while this write was on its
            # way to another node, and its author reads from the preferred node next (a created
            # note read back as NOT_FOUND on CouchDB 3 once in CI)
            if preferred.circuit_open or written_on is preferred:
                return
        if preferred.url not in push.holders:
            self._push(preferred, push, push.docs, deadline)
        pool.confirm_on_preferred(push.db_path, push.held_by(preferred.url))

    def _succeeded(self, node: CouchNode) -> None:
        self._served.url = node.url
        self._pool.succeeded(node)

    def _send(
        self,
        node: CouchNode,
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
            kwargs["content"] = _encode(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        started = time.perf_counter()
        status = "error"
        try:
            response = self._http.request(method, node.url + path, **kwargs)
            status = str(response.status_code)
            return response
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # nothing was sent; a pool timeout means we are busy, not that the node is down
            busy = isinstance(exc, httpx.PoolTimeout)
            tls_reason = None if busy else tls_failure(exc)
            if tls_reason is not None:
                # the node is up but cannot prove who it is (or speaks no TLS): say so, by name
                kind, why = tls_reason
                raise NodeFailure(f"TLS {kind} failed for {node.url}: {why}", sent=False) from None
            raise NodeFailure(f"{type(exc).__name__} from {node.url}", sent=False, transient=busy) from None
        except httpx.TransportError as exc:
            # read timeout, connection reset, server gone after the request went out
            raise NodeFailure(f"{type(exc).__name__} from {node.url}", sent=True) from None
        finally:
            COUCHDB_SECONDS.labels(node.url, status).observe(time.perf_counter() - started)

    def _verify(self, node: CouchNode, plan: WritePlan, timeout: float) -> None:
        """Read the plan's pending documents back from `node`; mark the ones that landed."""
        path = f"{plan.db_path}/_all_docs"
        body = {"keys": plan.pending_keys()}
        response = self._send(node, "POST", path, {"include_docs": "true"}, body, timeout)
        if response.status_code >= 500:
            raise NodeFailure(f"{response.status_code} from {node.url}", sent=True, transient=True)
        if response.status_code == 404:
            return  # no such database there: nothing landed
        rows = {row.get("key"): row for row in decode(response).get("rows", [])}
        found = plan.record_found(rows)
        if found:
            self._pool.count("writes_verified", found)

    def _log_verification(self, node: CouchNode, plan: WritePlan) -> None:
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

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _encode(body: Any) -> bytes:
    """A request body as JSON: orjson, or the standard library for what orjson refuses
    (integers beyond 64 bits, non-string keys)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _error_name(response: httpx.Response) -> str:
    """CouchDB's `error` field of an error answer followed by a space, or "" (never a body)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return f"{error} " if isinstance(error, str) and error.isidentifier() else ""
