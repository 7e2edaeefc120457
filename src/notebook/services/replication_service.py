"""Replication for operators: the use cases behind the replication API (status, set-up, lag,
membership), so the API layer never reaches into the database layer.

The work itself is CouchDB's replicator driven by the database layer's `ReplicationManager`;
this service is the front door the API and scripts use.
"""

from __future__ import annotations

import logging
import random
import threading

from notebook.core.errors import DomainError, InvalidInput, NotFound, StorageError
from notebook.database.replication import (
    NodeAdded,
    NodeList,
    ReplicationError,
    ReplicationManager,
    ReplicationStatus,
    clean_url,
)

log = logging.getLogger(__name__)

__all__ = [
    "NodeAdded",
    "NodeList",
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
        """Set up (or repair) replication; the ids of every job. Ends a recorded teardown, so
        every process's supervisor keeps it up again."""
        self._manager.set_paused(False)  # first: a node down must not keep the others paused
        return self._manager.ensure_mesh()

    def teardown(self) -> int:
        """Delete every replication job; how many were deleted. Recorded first in the node
        list, so that no process's supervisor puts the jobs back."""
        self._manager.set_paused(True)
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

    # production: the supervisor every app process runs, and the node-list commands -----------
    def repair(self) -> list[str]:
        """One round: adopt the replicated node list (seeding it if none exists), create what
        is missing on every node (databases, design documents, `_security` members, jobs) and
        restart failed or crashing jobs. Raises ReplicationError when a node could not be
        repaired (it is retried next round)."""
        return self._manager.repair()

    def supervise(
        self, stop: threading.Event, period: float, first_delay: float, rng: random.Random | None = None
    ) -> int:
        """Run `repair` until `stop` is set: first after a random wait of up to `first_delay`
        seconds, then `period` seconds after each round less a random tenth of it, so the app
        processes of a deployment spread out their rounds instead of stampeding the nodes
        together, and a round never waits longer than `period` after the last one ended. A
        round that fails is logged at warning and retried next round; nothing escapes the
        loop. Returns the rounds run."""
        rng = rng or random.Random()
        rounds = 0
        wait = rng.uniform(0, max(0.0, first_delay))
        while not stop.wait(wait):
            rounds += 1
            try:
                jobs = self._manager.repair()
                log.debug("replication repaired", extra={"jobs": len(jobs)})
            except (DomainError, StorageError) as exc:  # a node down, refusing, or wiped meanwhile
                log.warning("replication repair incomplete: %s", exc)
            except Exception:  # a surprise must not end the supervisor of a serving process
                log.exception("replication repair failed")
            wait = period - rng.uniform(0, period / 10)
        return rounds

    def node_list(self) -> NodeList:
        """The deployment's nodes as recorded (version 0: nothing recorded yet, the configured ones)."""
        return self._manager.node_list()

    def add_node_to_deployment(self, url: str, timeout: float) -> NodeAdded:
        """Add a node for every app process: record it in the replicated node list (the other
        processes adopt it at their next round), then set it up and wait (up to `timeout`) for
        it to catch up. If it cannot be set up, the list is recorded again without it."""
        current = self._adopted_list()
        joining = clean_url(url)
        if joining in current.urls:
            return self._manager.add_node(joining, timeout=timeout)  # set up again, nothing to record
        # recorded first: a process still on the old list would take the new node's jobs for
        # strays of a removed node
        self._manager.record_node_list([*current.urls, joining], current.version + 1)
        try:
            return self._manager.add_node(url, timeout=timeout)
        except (DomainError, StorageError):
            self._manager.record_node_list(list(current.urls), current.version + 2)
            raise

    def remove_node_from_deployment(self, url: str) -> tuple[int, NodeList]:
        """Take a node out for every app process: record the list without it first (so no
        process puts its jobs back), then delete the jobs to and from it; returns how many were
        deleted and the list recorded. (pouchdb-server: the nodes hosting those jobs exit, D12.)"""
        current = self._adopted_list()
        leaving = clean_url(url)
        wanted = [node for node in current.urls if node != leaving]
        if len(wanted) == len(current.urls):
            raise NotFound("no such node in the deployment's node list")
        if not wanted:
            raise InvalidInput("the last node of the deployment cannot be removed")
        self._manager.record_node_list(wanted, current.version + 1)
        return self._manager.remove_node(leaving), NodeList(tuple(wanted), current.version + 1)

    def _adopted_list(self) -> NodeList:
        """The recorded node list, made the manager's nodes (the configured ones if none yet),
        after one set-up round over them (a node down does not stop the command)."""
        listed = self._manager.adopt_node_list() or self._manager.node_list()
        if listed.paused:
            raise InvalidInput("replication is torn down: set it up again before changing the nodes")
        try:
            self._manager.ensure_mesh()
        except ReplicationError as exc:
            log.warning("replication set-up incomplete before the node change: %s", exc.message)
        return listed
