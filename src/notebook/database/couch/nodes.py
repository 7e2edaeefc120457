"""Node health and failover: what the client knows about each node, which node serves, circuits,
the health monitor, and failback once the preferred node has caught up.

- Nodes: the first URL is the preferred node. The health monitor probes every node with
  `GET /_up` where the server has it, else `GET /` (server_differences D1), and records health,
  version and latency.
- A node that refuses connections, or answers 5xx `failure_threshold` times in a row, gets an
  open circuit: no request goes there until a probe sees it healthy again. Requests go to the
  *active* node: the preferred one while it is healthy, else the next healthy one.
- Failback: once the preferred node is healthy again *and* holds every document revision this
  client wrote elsewhere while failed over (checked with `_revs_diff`, the replication protocol's
  own "what are you missing" call), *and* has every database with at least as many documents as
  the active node had when it came back (a node that lost its disk comes back empty, and the
  outage's writes are only a small part of what it lacks), requests go back to it. See
  `HealthMonitor.check_failback`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from notebook.database.couch.paths import quote_id
from notebook.database.couch.server_differences import UP_PATH, WELCOME_PATH, in_leaf_history, up_verdict
from notebook.utils.metrics import COUCHDB_NODE_SWITCHES

log = logging.getLogger(__name__)

_HISTORY_CHECKS = 50  # per database and failback check: documents looked at one by one
_MAX_DATABASES = 64  # databases remembered for the failback count check (the app uses four)
_MAX_EVENTS = 50  # node events kept for operators (the status page's incidents)
_STATS = ("retries", "failovers", "failbacks", "writes_verified", "writes_resent", "unknown_outcomes",
          "quorum_writes", "quorum_failures")  # fmt: skip


@dataclass(eq=False)
class CouchNode:
    """What the client knows about one node. Guarded by NodePool.lock."""

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
    has_up: bool | None = None  # whether the server answers /_up (server_differences D1)


class NodeFailure(Exception):
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


class Send(Protocol):
    """Sends one request to one node (raises NodeFailure when it does not get an answer)."""

    def __call__(
        self,
        node: CouchNode,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: Any,
        timeout: float,
    ) -> httpx.Response: ...


class NodePool:
    """The nodes, which one is active, their circuits and the failover counters."""

    def __init__(
        self, nodes: Sequence[CouchNode], failure_threshold: int, scrub: Callable[[str], str]
    ) -> None:
        self.nodes = list(nodes)
        self.failure_threshold = failure_threshold
        self.max_tracked_writes = 20_000
        self.lock = threading.Lock()
        self.active = self.nodes[0]
        # (database path, doc id) -> (rev, time.monotonic()) written on a node other than the
        # preferred one since the last failback; the preferred node must have them to fail back
        self.written_elsewhere: dict[tuple[str, str], tuple[str, float]] = {}
        self.preferred_back_since: float | None = None
        # the application databases this client used, and the active node's document count of
        # each when the preferred node came back: failback waits until the preferred has as many
        self.databases: set[str] = set()
        self.counts_at_return: dict[str, int] | None = None
        # documents created since then whose quorum copy landed on the preferred node: they
        # count there, so a node refilled only in part must not pass for caught up on them
        self.new_docs_copied: dict[str, int] = {}
        # quorum writes copy themselves to the preferred node once it is back (client.py), so
        # failback waits for every write made elsewhere whose copy did not land, however recent
        self.copies_to_preferred = False
        self.behind_warned_at = 0.0
        self.stats = dict.fromkeys(_STATS, 0)
        # what happened to the nodes, newest last: {"at", "event", "node", "detail"}; events are
        # node_down, node_back, failover, failback
        self.events: deque[dict[str, Any]] = deque(maxlen=_MAX_EVENTS)
        self.monitor_running: Callable[[], bool] = lambda: False
        self._scrub = scrub

    @property
    def preferred(self) -> CouchNode:
        return self.nodes[0]

    def count(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.stats[name] += amount

    def next_node(self, exclude: list[CouchNode], only: CouchNode | None = None) -> CouchNode | None:
        """The first node not in `exclude`: the active one, then the others in order (or `only`).

        A node with an open circuit is skipped; when every remaining node has one and no monitor
        runs to close it again, the request itself is the probe (single-node setups recover so).
        """
        with self.lock:
            if only is not None:
                order = [only]
            else:
                order = [self.active] + [n for n in self.nodes if n is not self.active]
                if self.preferred is not self.active:  # back but maybe not caught up: the last resort
                    order.remove(self.preferred)
                    order.append(self.preferred)
            remaining = [n for n in order if n not in exclude]
            for node in remaining:
                if not node.circuit_open:
                    return node
            if remaining and not self.monitor_running():
                return remaining[0]
        return None

    def quorum_order(self, written_on: CouchNode) -> list[CouchNode]:
        """Where the copies of a write on `written_on` go: the other nodes in the order a
        failover picks them (switch_active_locked: node 1, 2, ..., the preferred one last), so
        the node taking over from `written_on` holds its quorum-acknowledged writes. Nodes with
        an open circuit are left out, unless no monitor runs to close them again."""
        with self.lock:
            order = [n for n in [*self.nodes[1:], self.nodes[0]] if n is not written_on]
            if self.monitor_running():
                order = [n for n in order if not n.circuit_open]
            return order

    def failed(self, node: CouchNode, failure: NodeFailure) -> str:
        """Record a failed send; open the node's circuit unless it was an isolated 5xx."""
        reason = self._scrub(failure.reason)
        with self.lock:
            node.consecutive_errors += 1
            node.last_error = reason
            opens = not failure.transient or node.consecutive_errors >= self.failure_threshold
            if opens and failure.transient and all(n.circuit_open for n in self.nodes if n is not node):
                # 5xx everywhere is more likely this request's fault than every node's: keep
                # the last node in rotation; only a node that cannot be reached leaves it
                opens = False
            newly_open = opens and not node.circuit_open
            if opens:
                node.circuit_open = True
                node.healthy = False
            if newly_open and node is self.active:
                self.switch_active_locked()
        if newly_open:
            self.record("node_down", node, reason)
            log.warning("database node failing, circuit open", extra={"node": node.url, "error": reason})
        return reason

    def succeeded(self, node: CouchNode) -> None:
        with self.lock:
            node.consecutive_errors = 0
            if node.circuit_open and not self.monitor_running():
                node.circuit_open = False  # a request acted as the probe
                node.healthy = True
                self.record("node_back", node)
            if node is not self.active and self.active.circuit_open and not node.circuit_open:
                self.set_active_locked(node, "failover")

    def choose_active(self) -> None:
        with self.lock:
            if self.active.circuit_open:
                self.switch_active_locked()

    def switch_active_locked(self) -> None:
        """The active node went down: move to the first healthy node, the preferred one last."""
        for node in [*self.nodes[1:], self.nodes[0]]:
            if node is not self.active and not node.circuit_open:
                self.set_active_locked(node, "failover")
                return

    def set_active_locked(self, node: CouchNode, event: str) -> None:
        previous = self.active
        self.active = node
        self.stats[event + "s"] += 1
        COUCHDB_NODE_SWITCHES.labels(event).inc()
        self.record(event, node, f"from {previous.url}")
        if node is self.preferred:
            self.written_elsewhere.clear()
            self.preferred_back_since = None
            self.counts_at_return = None
            self.new_docs_copied = {}
        log.warning("database %s", event, extra={"from_node": previous.url, "to_node": node.url})

    def note_database(self, db_path: str) -> None:
        """Remember an application database the client used (the failback count check)."""
        if db_path in self.databases or db_path.startswith("_") or not db_path:
            return
        with self.lock:
            if len(self.databases) < _MAX_DATABASES:
                self.databases.add(db_path)

    def track_writes(self, node: CouchNode, db_path: str, payload: Any) -> None:
        """Remember revisions written away from the preferred node: failback waits for them."""
        if node is self.preferred:
            return
        results = payload if isinstance(payload, list) else [payload]
        now = time.monotonic()
        with self.lock:
            for result in results:
                if isinstance(result, dict) and result.get("rev") and not result.get("error"):
                    key = (db_path, str(result.get("id")))
                    self.written_elsewhere.pop(key, None)
                    self.written_elsewhere[key] = (result["rev"], now)
            while len(self.written_elsewhere) > self.max_tracked_writes:
                self.written_elsewhere.pop(next(iter(self.written_elsewhere)))

    def confirm_on_preferred(self, db_path: str, revs: Mapping[str, str]) -> None:
        """These revisions (doc id -> rev) are on the preferred node: failback need not wait."""
        with self.lock:
            if self.counts_at_return is not None:
                created = sum(1 for rev in revs.values() if rev.startswith("1-"))
                self.new_docs_copied[db_path] = self.new_docs_copied.get(db_path, 0) + created
            for doc_id, rev in revs.items():
                key = (db_path, doc_id)
                if self.written_elsewhere.get(key, ("", 0.0))[0] == rev:
                    del self.written_elsewhere[key]

    def record(self, event: str, node: CouchNode, detail: str = "") -> None:
        """Remember a node event (see `events`); `detail` carries no credentials."""
        self.events.append({"at": time.time(), "event": event, "node": node.url, "detail": detail})

    def status(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "url": node.url,
                    "healthy": node.healthy,
                    "active": node is self.active,
                    "version": node.version,
                    "latency_ms": node.latency_ms,
                    "circuit_open": node.circuit_open,
                    "last_error": node.last_error,
                    "last_checked": node.last_checked,
                }
                for node in self.nodes
            ]


class HealthMonitor:
    """Probes the nodes, in a daemon thread every `probe_interval` seconds, and decides failback.

    `check_round` is what one round runs (the client's `check_nodes`, which calls `check`).
    """

    def __init__(
        self,
        pool: NodePool,
        send: Send,
        probe_interval: float | None,
        connect_timeout: float,
        scrub: Callable[[str], str],
    ) -> None:
        self.pool = pool
        self.send = send
        self.probe_interval = probe_interval
        self.connect_timeout = connect_timeout
        self.failback_max_wait: float | None = None
        self.behind_warning_seconds = 30.0
        self._scrub = scrub
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wanted = False
        self._lock = threading.Lock()
        self._closed = False
        pool.monitor_running = self.running

    # -- the thread --------------------------------------------------------------------------------
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self, check_round: Callable[[], None]) -> None:
        with self._lock:
            if self.running() or self._closed:
                return
            self._wanted = True
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, args=(check_round,), name="couchdb-health", daemon=True
            )
            self._thread.start()

    def restart_if_lost(self, check_round: Callable[[], None]) -> None:
        """Threads do not survive a fork (gunicorn --preload): start again in the child."""
        if self._wanted and not self.running() and not self._closed:
            self.start(check_round)

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None

    def _loop(self, check_round: Callable[[], None]) -> None:
        interval = self.probe_interval or 1.0
        while not self._stop.is_set():
            try:
                check_round()
            except Exception:  # the monitor must outlive any surprise; it is logged, not raised
                log.exception("database health check failed")
            self._stop.wait(interval)

    # -- one round ---------------------------------------------------------------------------------
    def check(self) -> None:
        """Probe every node, then decide on failover and failback."""
        for node in self.pool.nodes:
            if self._stop.is_set():
                return
            self.probe(node)
        self.pool.choose_active()
        self.check_failback()

    def probe(self, node: CouchNode) -> bool:
        """`/_up` where the server has it, else `GET /` (server_differences D1)."""
        probe_timeout = min(2.0, max(0.5, self.probe_interval or 1.0))
        started = time.perf_counter()
        error: str | None = None
        try:
            if node.has_up is not False:
                error = self._probe_up(node, probe_timeout)
            if node.has_up is False or (error is None and node.version is None):
                error = self._probe_welcome(node, probe_timeout)
        except NodeFailure as failure:
            if failure.transient:
                return node.healthy  # our own connection pool was full: says nothing about the node
            error = failure.reason
        latency = round((time.perf_counter() - started) * 1000, 1)
        pool = self.pool
        with pool.lock:
            node.last_checked = time.time()
            was_open = node.circuit_open
            if error is None:
                node.healthy = True
                node.circuit_open = False
                node.consecutive_errors = 0
                node.latency_ms = latency
                node.last_error = None
            else:
                node.healthy = False
                node.circuit_open = True
                node.latency_ms = None
                node.last_error = self._scrub(error)
        if error is None and was_open:
            pool.record("node_back", node)
            log.warning("database node healthy again", extra={"node": node.url})
        elif error is not None and not was_open:
            pool.record("node_down", node, node.last_error or "")
            log.warning("database node failed its health probe", extra={"node": node.url, "error": error})
        return error is None

    def _probe_up(self, node: CouchNode, timeout: float) -> str | None:
        response = self.send(node, "GET", UP_PATH, None, None, timeout)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        verdict = up_verdict(response.status_code, body)
        if verdict is None:
            node.has_up = False  # pouchdb-server: the welcome document is the probe
            return None
        node.has_up = True
        if verdict:
            return None
        state = body.get("status") if isinstance(body, dict) else None
        return f"{response.status_code} from {node.url}" + (f" ({state})" if state else "")

    def _probe_welcome(self, node: CouchNode, timeout: float) -> str | None:
        response = self.send(node, "GET", WELCOME_PATH, None, None, timeout)
        if response.status_code >= 400:
            return f"{response.status_code} from {node.url}"
        try:
            info = response.json()
        except ValueError:
            return f"bad welcome document from {node.url}"
        version = info.get("version") if isinstance(info, dict) else None
        node.version = str(version) if version is not None else None
        return None

    # -- failback ----------------------------------------------------------------------------------
    def check_failback(self) -> None:
        """Route back to the preferred node once it is healthy and caught up.

        Caught up: every document revision this client wrote on another node while failed over
        is on the preferred node (`missing_on`), and it has every database with as many
        documents as the active node had when it came back (`short_databases`: a node that lost
        its disk). With quorum writes each write also copies itself to the preferred node once
        it is back (client.py), and every write whose copy did not land is waited for. Without
        them (write quorum 1), writes made after the node came back and less than a probe
        interval ago are not waited for: they are still travelling through replication, and
        under steady load there always are some. Writes of other app processes travel the same
        replication links, so ours are a sample of that stream.

        The wait is bounded per check (one `_revs_diff` per database) but not in time by
        default: a node that stays behind means replication into it is broken, and routing
        there would hide recent writes from their authors and turn their next edits into
        conflicts, while the node in use serves correctly. Every `behind_warning_seconds` the
        client logs how far behind the node is. With `failback_max_wait` set, it fails back
        anyway after that many seconds (with a warning).
        """
        pool = self.pool
        preferred = pool.preferred
        with pool.lock:
            if pool.active is preferred:
                return
            if preferred.circuit_open:
                pool.preferred_back_since = None
                pool.counts_at_return = None
                pool.new_docs_copied = {}
                return
            active = pool.active
            databases = sorted(pool.databases)
            now = time.monotonic()
            if pool.preferred_back_since is None:
                pool.preferred_back_since = pool.behind_warned_at = now
            back_since = pool.preferred_back_since
            settle = self.probe_interval or 1.0
            required = {
                key: rev
                for key, (rev, at) in pool.written_elsewhere.items()
                if at <= back_since or now - at >= settle or pool.copies_to_preferred
            }
        missing = self.missing_on(preferred, required, active)
        if missing is None:
            return  # the preferred node did not answer: try again next round
        short = self.short_databases(preferred, active, databases)
        if short is None:
            return
        with pool.lock:
            for key, rev in required.items():
                if key not in missing and pool.written_elsewhere.get(key, ("", 0.0))[0] == rev:
                    del pool.written_elsewhere[key]
            if pool.active is preferred or preferred.circuit_open:
                return
            waited = now - back_since
            forced = self.failback_max_wait is not None and waited >= self.failback_max_wait
            details = {
                "node": preferred.url,
                "missing_revisions": len(missing),
                "databases_behind": len(short),
                "waited_s": round(waited, 1),
            }
            if (missing or short) and not forced:
                if now - pool.behind_warned_at >= self.behind_warning_seconds:
                    pool.behind_warned_at = now
                    log.warning(
                        "preferred database node healthy but behind: not failing back yet", extra=details
                    )
                return
            if missing or short:
                log.warning("failing back before the preferred node caught up", extra=details)
            pool.set_active_locked(preferred, "failback")

    def short_databases(
        self, node: CouchNode, active: CouchNode, databases: Sequence[str]
    ) -> list[str] | None:
        """The databases `node` lacks or holds fewer documents of than the active node had when
        `node` came back (or has now, if fewer: deletions); None if a node could not say.

        Counts are `doc_count + doc_del_count` where the server reports both: that sum never
        shrinks on a node and is the same on nodes that replicated everything (pouchdb-server
        reports `doc_count` only).
        """
        current = self._counts(active, databases)
        if current is None:
            return None
        with self.pool.lock:
            if self.pool.counts_at_return is None:
                self.pool.counts_at_return = dict(current)
            at_return = self.pool.counts_at_return
            copied = self.pool.new_docs_copied
            # what it had then, plus what was created since and copied to it (those count on
            # it already); never more than the active node holds now
            wanted = {
                db: min(count + copied.get(db, 0), current.get(db, count)) for db, count in at_return.items()
            }
        mine = self._counts(node, databases)
        if mine is None:
            return None
        return [db for db, count in wanted.items() if db not in mine or mine[db] < count]

    def _counts(self, node: CouchNode, databases: Sequence[str]) -> dict[str, int] | None:
        """Document count per database on `node` (missing databases left out); None on failure."""
        counts: dict[str, int] = {}
        for db_path in databases:
            try:
                response = self.send(node, "GET", db_path, None, None, self.connect_timeout)
                if response.status_code == 404:
                    continue
                if response.status_code >= 400:
                    return None
                info = response.json()
                counts[db_path] = int(info.get("doc_count", 0)) + int(info.get("doc_del_count") or 0)
            except (NodeFailure, ValueError, AttributeError, TypeError):
                return None
        return counts

    def missing_on(
        self, node: CouchNode, revs: Mapping[tuple[str, str], str], active: CouchNode | None = None
    ) -> set[tuple[str, str]] | None:
        """Which (database, doc id) revisions `node` lacks; None if it could not say.

        `_revs_diff` answers this in one request per database; its reports are checked against
        the leaves' histories where pouchdb-server over-reports (server_differences D4). A
        database `node` does not have counts as missing everything, unless `active` lacks it too
        (it was deleted).
        """
        by_db: dict[str, dict[str, list[str]]] = {}
        for (db_path, doc_id), rev in revs.items():
            by_db.setdefault(db_path, {})[doc_id] = [rev]
        missing: set[tuple[str, str]] = set()
        for db_path, wanted in by_db.items():
            try:
                response = self.send(
                    node, "POST", f"{db_path}/_revs_diff", None, wanted, self.connect_timeout
                )
                if response.status_code == 404:
                    if (
                        active is None
                        or self.send(active, "GET", db_path, None, None, self.connect_timeout).status_code
                        == 404
                    ):
                        continue  # deleted everywhere: nothing to wait for
                    missing.update((db_path, doc_id) for doc_id in wanted)  # lost with its disk
                    continue
                if response.status_code >= 400:
                    return None
                reported = [doc_id for doc_id, diff in response.json().items() if diff.get("missing")]
                for count, doc_id in enumerate(reported):
                    if count >= _HISTORY_CHECKS or not self._in_history(
                        node, db_path, doc_id, wanted[doc_id][0]
                    ):
                        missing.add((db_path, doc_id))
            except (NodeFailure, ValueError, AttributeError):
                return None
        return missing

    def _in_history(self, node: CouchNode, db_path: str, doc_id: str, rev: str) -> bool:
        path = f"{db_path}/{quote_id(doc_id)}"
        params = {"open_revs": "all", "revs": "true"}
        response = self.send(node, "GET", path, params, None, self.connect_timeout)
        if response.status_code >= 400:
            return False
        return in_leaf_history(response.json(), rev)
