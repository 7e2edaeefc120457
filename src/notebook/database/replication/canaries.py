"""Replication lag, measured with canary documents: written on one node, timed on the others."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from notebook.database.couch import CouchError, DocumentConflict
from notebook.database.replication.jobs import MeshNode, node_key
from notebook.utils.metrics import REPLICATION_LAG_SECONDS

log = logging.getLogger(__name__)

CANARY_TYPE = "canary"
CANARY_ID_PREFIX = "canary:"
_POLL_SECONDS = 0.01

Link = tuple[str, str, str]  # (source URL, target URL, database)


def canary_id(source: str) -> str:
    return f"{CANARY_ID_PREFIX}{node_key(source)}"


class LagMeter:
    """Times canaries over replication links and remembers the last lag of every link."""

    def __init__(self, databases: Sequence[str], describe: Callable[[CouchError], str]) -> None:
        self.databases = list(databases)
        self._describe = describe
        self._lock = threading.Lock()
        self._lags: dict[Link, float | None] = {}
        self._stalled: set[Link] = set()

    def last(self) -> tuple[dict[Link, float | None], set[Link]]:
        """The last measured lag per link, and the links whose last canary did not arrive."""
        with self._lock:
            return dict(self._lags), set(self._stalled)

    def forget(self, url: str | None = None) -> None:
        """Drop what is known about the links of node `url` (of every link when None)."""
        with self._lock:
            for link in [link for link in self._lags if url is None or url in link[:2]]:
                self._lags.pop(link, None)
                self._stalled.discard(link)

    def measure(
        self, links: Sequence[tuple[MeshNode, MeshNode]], timeout: float, share_timeout: bool = True
    ) -> dict[Link, float | None]:
        """Time canaries over `links`, one source node and database at a time, each round getting
        an equal share of `timeout` (or all that is left of it). Canaries written on every node at
        once would measure how fast the nodes absorb that burst (several times slower here), not
        the lag of a link. Every database gets its own canary because every database has its own
        job per link: a stalled job in one database would be invisible to a canary in another."""
        targets_of: dict[MeshNode, list[MeshNode]] = {}
        for source, target in links:
            targets_of.setdefault(source, []).append(target)
        rounds = [(db, source, targets) for db in self.databases for source, targets in targets_of.items()]
        results: dict[Link, float | None] = {}
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
        for (source_url, target_url, db), lag in results.items():
            # a canary that never arrived: the lag is at least the time waited for it
            seen = lag if lag is not None else time.monotonic() - started
            REPLICATION_LAG_SECONDS.labels(source_url, target_url, db).set(seen)
        return results

    def _measure_round(
        self, db: str, source: MeshNode, targets: Sequence[MeshNode], deadline: float, unreachable: set[str]
    ) -> dict[Link, float | None]:
        """Write `source`'s canary in `db`, then poll every target until it has this version."""
        results: dict[Link, float | None] = {(source.url, target.url, db): None for target in targets}
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

    @staticmethod
    def _write_canary(node: MeshNode, db: str) -> tuple[str, float]:
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
