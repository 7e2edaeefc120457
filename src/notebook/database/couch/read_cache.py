"""An in-process cache of documents read by id, kept correct by the changes feed.

Only reads by id (`Database.get`, `Database.get_many`) are cached, and only while a follower of
the changes feed is live: every change the feed reports evicts that document, every write of this
process evicts what it wrote, and anything the follower cannot vouch for clears the whole cache.

What a cached read can hide, and for how long (docs/benchmarks.md measures it):
- A write made by another process, or replicated from another node, is seen once it is on the
  node this process reads from and the follower's next poll has reported it: at most
  `poll_seconds` plus one poll's round trip after it lands on that node. Reading that node
  directly would not show it any sooner than it lands either.
- A write of this process is never hidden: it evicts before the write call returns.

Rules that keep a stale body from ever being stored:
- A read records the cache's generation before it asks CouchDB; its answer is stored only when
  no eviction of that document, and no clear, happened since (`store` refuses it otherwise).
- The follower reads the feed of the node the client reads from. When that node changes
  (failover, failback), when a poll fails, or when the feed cannot say what changed, the cache
  is cleared and stays off until a fresh position on the current node is taken.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from notebook.database.couch.errors import CouchError
from notebook.database.couch.server_differences import CHANGES_FEED

if TYPE_CHECKING:
    from notebook.database.couch.client import CouchDBClient

log = logging.getLogger(__name__)

#: evictions remembered to refuse in-flight reads; past this many the cache starts over instead
_EVICTIONS_KEPT = 20_000
#: changes asked for per feed request; a longer backlog takes several
FEED_PAGE = 1000
#: the read parameters under which derived entries (`Database.cached_derived`) are kept
DERIVED = "derived"
#: derived entries are kept under ids that start with this: no document id can (CouchDB reserves `_`)
DERIVED_PREFIX = "_derived/"


class ReadCache:
    """Document bodies by (database, id, read parameters), least recently used out first.

    Bodies are kept serialized: each hit decodes a fresh copy, so callers may change what they
    get. Thread-safe; one per process (per CouchDB client)."""

    def __init__(
        self,
        databases: Iterable[str],
        max_bytes: int,
        derived: Callable[[str], Iterable[str]] | None = None,
    ) -> None:
        """`derived(doc_id)`: the derived entries (`Database.cached_derived`) a change of that
        document makes stale, evicted with it."""
        self.databases = frozenset(databases)
        self.max_bytes = max_bytes
        self._derived = derived
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._by_doc: dict[tuple[str, str], set[str]] = {}
        self._bytes = 0
        self._generation = 0  # +1 on every eviction and clear
        self._evicted: dict[tuple[str, str], int] = {}  # document -> generation of its last eviction
        self._cleared_at = 0  # generation of the last clear
        self.live = False  # True only while a follower vouches for the cache
        self.stats = {"hits": 0, "misses": 0, "stored": 0, "refused": 0, "evicted": 0, "cleared": 0}

    def covers(self, database: str) -> bool:
        return self.live and database in self.databases

    # -- reads ---------------------------------------------------------------------------------
    def get(self, database: str, doc_id: str, params: str) -> dict[str, Any] | None:
        """A fresh copy of the cached body, or None (a miss)."""
        key = (database, doc_id, params)
        with self._lock:
            raw = self._entries.get(key) if self.live else None
            if raw is None:
                self.stats["misses"] += 1
                return None
            self._entries.move_to_end(key)
            self.stats["hits"] += 1
        return orjson.loads(raw)

    def generation(self) -> int:
        """Taken before a read is sent: `store` refuses its answer if anything changed since."""
        with self._lock:
            return self._generation

    def store(self, database: str, doc_id: str, params: str, body: dict[str, Any], since: int) -> None:
        """Keep a body read by a request that started at generation `since`."""
        raw = orjson.dumps(body)
        if len(raw) > self.max_bytes // 16:
            return  # one huge document must not push out everything else
        key = (database, doc_id, params)
        with self._lock:
            if not self.live or self._cleared_at > since or self._evicted.get((database, doc_id), -1) > since:
                self.stats["refused"] += 1
                return
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._entries[key] = raw
            self._by_doc.setdefault((database, doc_id), set()).add(params)
            self._bytes += len(raw)
            self.stats["stored"] += 1
            while self._bytes > self.max_bytes and self._entries:
                (db, did, prm), dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped)
                self._forget_key(db, did, prm)

    # -- invalidation --------------------------------------------------------------------------
    def evict(self, database: str, doc_ids: Iterable[str]) -> None:
        """Forget these documents (all read parameters), and refuse reads of them in flight."""
        if database not in self.databases:
            return
        doc_ids = list(doc_ids)
        if self._derived is not None:
            doc_ids += [derived for doc_id in doc_ids for derived in self._derived(doc_id)]
        with self._lock:
            self._generation += 1
            for doc_id in doc_ids:
                self._evicted[(database, doc_id)] = self._generation
                for params in self._by_doc.pop((database, doc_id), ()):
                    raw = self._entries.pop((database, doc_id, params), None)
                    if raw is not None:
                        self._bytes -= len(raw)
                        self.stats["evicted"] += 1
            if len(self._evicted) > _EVICTIONS_KEPT:
                self._clear_locked()

    def clear(self, live: bool | None = None) -> None:
        """Forget everything, refuse every read in flight; `live` switches the cache on or off."""
        with self._lock:
            self._clear_locked()
            if live is not None:
                self.live = live

    def _clear_locked(self) -> None:
        self._generation += 1
        self._cleared_at = self._generation
        self._entries.clear()
        self._by_doc.clear()
        self._evicted.clear()
        self._bytes = 0
        self.stats["cleared"] += 1

    def _forget_key(self, database: str, doc_id: str, params: str) -> None:
        held = self._by_doc.get((database, doc_id))
        if held is not None:
            held.discard(params)
            if not held:
                del self._by_doc[(database, doc_id)]

    def size(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        with self._lock:
            return len(self._entries), self._bytes


def params_key(params: dict[str, Any]) -> str:
    """The read parameters as part of a cache key: the same parameters give the same key."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params)) if params else ""


class CacheFollower:
    """Keeps a ReadCache correct by polling each cached database's changes feed.

    `feed_client` is a client of its own (its polls are not the requests' cost); each poll asks
    the node that `active_node()` names, the one the application's client reads from now. Runs
    in a daemon thread (`run`) until `stop` is set; each poll evicts the documents that changed."""

    def __init__(
        self,
        cache: ReadCache,
        feed_client: CouchDBClient,
        active_node: Callable[[], str],
        poll_seconds: float,
    ) -> None:
        self.cache = cache
        self._client = feed_client
        self._active_node = active_node
        self.poll_seconds = poll_seconds
        self._node: str | None = None
        self._since: dict[str, str] = {}
        self.polls = 0

    def _feed(self, database: str, node: str, since: str) -> dict[str, Any]:
        params = {"feed": CHANGES_FEED, "since": since, "limit": FEED_PAGE}
        return self._client.request("GET", f"{quote(database, safe='')}/_changes", params=params, node=node)

    def close(self) -> None:
        self._client.close()

    def poll(self) -> None:
        """One round: follow every cached database's feed on the active node, once."""
        node = self._active_node()
        if node != self._node:
            # positions belong to one node (server_differences D5); another node's documents
            # may differ: start over there
            self.cache.clear(live=False)
            self._node, self._since = node, {}
        try:
            for database in sorted(self.cache.databases):
                self._follow(database, node)
        except (CouchError, KeyError, TypeError, ValueError) as exc:
            if self.cache.live:
                log.warning("read cache off: the changes feed failed", extra={"reason": type(exc).__name__})
            self.cache.clear(live=False)
            self._node, self._since = None, {}
            return
        self.polls += 1
        if not self.cache.live:
            self.cache.clear(live=True)  # positions taken before the first read is stored

    def _follow(self, database: str, node: str) -> None:
        since = self._since.get(database, "now")
        while True:
            page = self._feed(database, node, since)
            results = page["results"]
            self.cache.evict(database, (str(change["id"]) for change in results))
            since = str(page["last_seq"])
            if len(results) < FEED_PAGE:
                break
        self._since[database] = since

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()
            stop.wait(self.poll_seconds)
        self.cache.clear(live=False)
