"""Start-up work that must never block a worker: schema installation and index builds.

gunicorn kills a worker that does not answer within 30 s, and the first build of a view over a
large database takes minutes (docs/benchmarks-inprocess.md), so each process installs the databases and
design documents, builds every view and backfills sort keys in a background thread. Until a
view is built, a query that needs it answers SERVICE_UNAVAILABLE with `extensions.retryAfter`
at once instead of waiting for the index (GatedDatabase); `/ready` answers 503 "warming" with
the progress.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from notebook.core.errors import ServiceUnavailable
from notebook.database.couch import Database
from notebook.database.design_docs import (
    VIEW_BUILD_SECONDS,
    Databases,
    backfill_title_keys,
    ensure_schema,
    schema_views,
)
from notebook.database.design_docs import (
    build_view as build_index,
)

log = logging.getLogger(__name__)

#: seconds a client is told to wait before retrying a query whose index is still being built
RETRY_AFTER_SECONDS = 5

WarmView = Callable[[Database, str, str], None]


def build_view(db: Database, design: str, view: str) -> None:
    """Bring one view up to date (its first query builds the index) without returning rows."""
    build_index(db, design, view, VIEW_BUILD_SECONDS)


class Warmup:
    """Installs the schema, then builds every view, in one background thread per process.

    States: pending (not started: nothing is gated, the caller installed the schema itself),
    installing, warming, ready, unavailable (the database refused or did not answer; retried
    every `retry_seconds` until `stopping` is set).
    """

    def __init__(
        self,
        databases: Databases,
        stopping: threading.Event,
        retry_seconds: float = 5.0,
        warm_view: WarmView = build_view,
        members: Sequence[str] = (),
    ) -> None:
        self.databases = databases  # on the admin account when one is configured
        self.members = tuple(members)
        self.stopping = stopping
        self.retry_seconds = retry_seconds
        self.warm_view = warm_view  # injectable: tests hold it to observe the warming state
        self._views = schema_views(databases)
        self._built: set[tuple[str, str, str]] = set()
        self._state = "pending"
        self._reason = ""
        self._lock = threading.Lock()
        self._settled = threading.Event()  # the first attempt ended, well or not
        self._thread: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def schema_installed(self) -> bool:
        """Databases and design documents exist (queries may run, some still gated)."""
        return self._state in ("pending", "warming", "ready")

    def is_built(self, db_name: str, design: str, view: str) -> bool:
        if self._state in ("pending", "ready"):
            return True
        return (db_name, design, view) in self._built

    def status(self) -> dict[str, Any]:
        """What /ready reports: {"status": ..., "progress": {"viewsBuilt": n, "views": total}}."""
        with self._lock:
            body: dict[str, Any] = {
                "status": self._state,
                "progress": {"viewsBuilt": len(self._built), "views": len(self._views)},
            }
            if self._reason:
                body["reason"] = self._reason
        return body

    def _set(self, state: str, reason: str = "") -> None:
        with self._lock:
            self._state, self._reason = state, reason

    # -- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread once; returns at once."""
        with self._lock:
            if self._thread is not None:
                return
            self._state = "installing"
            self._thread = threading.Thread(target=self._run, name="warmup", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait until the first attempt ended (ready, or the database unavailable); True if ready."""
        self._settled.wait(timeout)
        return self._state == "ready"

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._attempt()
                return
            except Exception as exc:  # the thread must outlive a database outage
                log.warning("start-up work failed; retrying", extra={"error": type(exc).__name__})
                self._set("unavailable", "database unreachable")
                self._settled.set()
                self.stopping.wait(self.retry_seconds)

    def _attempt(self) -> None:
        self._set("installing")
        ensure_schema(self.databases, warm=False, members=self.members)
        self._set("warming")
        for db, design, view in self._views:
            key = (db.name, design, view)
            if key in self._built:
                continue
            if self.stopping.is_set():
                return
            self.warm_view(db, design, view)
            with self._lock:
                self._built.add(key)
        rewritten = backfill_title_keys(self.databases.notes)
        if rewritten:
            log.info("title sort keys backfilled", extra={"notes": rewritten})
        self._set("ready")
        self._settled.set()
        log.info("indexes built", extra={"views": len(self._views)})

    # -- gating ----------------------------------------------------------------------------------
    def gate(self, databases: Databases) -> Databases:
        """The same databases, but a query on a view not built yet fails fast (see GatedDatabase)."""
        return Databases(
            users=GatedDatabase(databases.users, self),
            notes=GatedDatabase(databases.notes, self),
            activity=GatedDatabase(databases.activity, self),
            throttle=GatedDatabase(databases.throttle, self),
        )


class GatedDatabase(Database):
    """A Database whose view queries answer SERVICE_UNAVAILABLE while their index is cold."""

    def __init__(self, inner: Database, warmup: Warmup) -> None:
        super().__init__(inner.client, inner.name)
        self._warmup = warmup

    def view(self, design: str, view: str, *, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        if not self._warmup.is_built(self.name, design, view):
            raise ServiceUnavailable(
                "an index this query needs is still being built; retry shortly",
                retryAfter=RETRY_AFTER_SECONDS,
            )
        return super().view(design, view, timeout=timeout, **params)
