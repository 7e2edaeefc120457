"""Replication for operators: the use cases behind the replication API (status, set-up, lag,
membership), so the API layer never reaches into the database layer.

The work itself is CouchDB's replicator driven by the database layer's `ReplicationManager`;
this service is the front door the API and scripts use.
"""

from __future__ import annotations

import threading

from notebook.database.replication import (
    NodeAdded,
    ReplicationError,
    ReplicationManager,
    ReplicationStatus,
)

__all__ = [
    "NodeAdded",
    "ReplicationError",
    "ReplicationService",
    "ReplicationStatus",
]


class ReplicationService:
    """Operators' replication use cases; callers check that the actor is an administrator."""

    def __init__(self, manager: ReplicationManager) -> None:
        self._manager = manager

    @property
    def node_urls(self) -> list[str]:
        """The configured nodes, without credentials."""
        return self._manager.node_urls

    @property
    def topology(self) -> str:
        """Either "mesh" (replication jobs between servers) or "clustered" (one clustered CouchDB)."""
        return self._manager.topology

    def status(self) -> ReplicationStatus:
        return self._manager.status()

    def ensure_mesh(self) -> list[str]:
        """Set up (or repair) replication; the ids of every job."""
        return self._manager.ensure_mesh()

    def teardown(self) -> int:
        """Delete every replication job; how many were deleted."""
        return self._manager.teardown()

    def measure_lag(self, timeout: float) -> ReplicationStatus:
        """Time a canary over every link, then the status with those lags."""
        self._manager.measure_lag(timeout=timeout)
        return self._manager.status()

    def add_node(self, url: str, timeout: float) -> NodeAdded:
        return self._manager.add_node(url, timeout=timeout)

    def remove_node(self, url: str) -> int:
        """Take a node out of replication; how many jobs were deleted."""
        return self._manager.remove_node(url)

    def watch(self, stop: threading.Event) -> None:
        """Repair replication every retry interval until `stop` is set (a thread's target)."""
        self._manager.watch(stop)

    def close(self) -> None:
        self._manager.close()
