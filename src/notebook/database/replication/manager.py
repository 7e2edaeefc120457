"""The replication manager: sets up, watches, measures and takes down the replication of the
application's databases between the configured nodes.

Two topologies (topology.py): independent servers get a full mesh of `_replicator` jobs
(jobs.py); several URLs of ONE clustered CouchDB are doors to one database, which keeps its own
copies, so they get no jobs at all and the status says "clustered". Job states are read through
scheduler.py, lag through canaries.py; every difference between CouchDB 3 and pouchdb-server that
this needs lives in couch/server_differences.py.

pouchdb-server caveat (server_differences D12): `teardown` and `remove_node` do what is correct
on CouchDB 3, one DELETE per job document (batched per node), and on pouchdb-server the node
hosting the jobs exits right after the deletions are committed: its supervisor must restart it,
and it comes back without the deleted jobs.

Credentials are taken from the node URLs (or the user/password given) and only ever sent to the
nodes: they are never logged, and every URL or message this module returns is stripped of them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx

from notebook.core.errors import InvalidInput, NotFound
from notebook.database.couch import (
    CouchDBClient,
    CouchError,
    DatabaseUnavailable,
    DocumentConflict,
    DocumentNotFound,
    quote_id,
)
from notebook.database.couch.server_differences import (
    RESTARTED_BY_RECREATING,
    RUNNING_JOB_REFUSED_HINT,
    JobState,
    fields_we_wrote,
    job_state,
    writes_jobs_one_at_a_time,
)
from notebook.database.couch.tls import CouchTLS
from notebook.database.design_docs import ensure_members
from notebook.database.replication.canaries import LagMeter, Link
from notebook.database.replication.jobs import (
    JOB_FIELDS,
    REPLICATOR_DB,
    MeshNode,
    PlainHTTPRefused,
    clean_url,
    job_doc,
    job_id,
    own_job_ids,
    read_job_docs,
)
from notebook.database.replication.node_list import NodeList, read_node_list, write_node_list
from notebook.database.replication.refill import REFILL_ID_PREFIX, is_filled, refill, refill_job
from notebook.database.replication.scheduler import JobStateReader
from notebook.database.replication.status import (
    CLUSTERED,
    MESH,
    LinkStatus,
    NodeAdded,
    NodeStatus,
    ReplicationError,
    ReplicationStatus,
)
from notebook.database.replication.topology import membership, one_cluster

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.01
USERS_DB = "_users"  # CouchDB's own accounts (not the application's users database)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def _design_rows(client: CouchDBClient, db: str, include_docs: bool) -> list[dict[str, Any]]:
    """The `_all_docs` rows of a database's design documents."""
    params = {"startkey": "_design/", "endkey": "_design0", "include_docs": include_docs}
    return client.request("GET", f"{quote(db, safe='')}/_all_docs", params=params)["rows"]


class ReplicationManager:
    """Sets up, watches and takes down the replication mesh of the application's databases."""

    #: seconds before the first re-read of jobs refused as running (D12); doubled the next time
    refusal_pause = 0.5

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
        *,
        members: Sequence[str] = (),
        node_list_database: str = "",
        member_passwords: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        tls: CouchTLS | None = None,
    ) -> None:
        self.databases = list(dict.fromkeys(database_names))
        self.continuous = continuous
        self.retry_seconds = retry_seconds
        self._user = user
        self._password = password
        self._timeout = timeout
        self._active_node = active_node
        self._transport = transport  # tests replace the network
        self._tls = tls  # how every node's client verifies it (couch/tls.py)
        # accounts that must be members of the databases on every node: CouchDB 3 creates
        # databases admin-only and replication does not copy `_security` (docs/operations.md)
        self._members = list(members)
        # their passwords, when known: a node whose disk was lost gets their accounts back
        self._member_passwords = dict(member_passwords or {})
        # where the deployment's replicated node list lives (node_list.py); "" = the nodes given
        self._node_list_database = node_list_database
        # how the other nodes reach a node, when that differs from how this process reaches it
        # (a private network between the nodes, a tunnel); without credentials
        self._peer_urls = {clean_url(url): clean_url(peer) for url, peer in (peer_urls or {}).items()}
        self._nodes: list[MeshNode] = []
        for url in node_urls:
            if clean_url(url) not in {node.url for node in self._nodes}:
                self._nodes.append(MeshNode(url, user, password, timeout, transport, tls))
        self._states = JobStateReader()
        self._lock = threading.RLock()
        self._lags = LagMeter(self.databases, self._describe)
        self._mesh_wanted = False
        self._clustered: bool | None = None  # known once the nodes' membership was read

    @property
    def topology(self) -> str:
        """Either "clustered" (the nodes are doors to one clustered CouchDB) or "mesh"."""
        return CLUSTERED if self._is_cluster() else MESH

    def _is_cluster(self) -> bool:
        """Whether the nodes are doors to one cluster; asked once, until the nodes change."""
        if self._clustered is None:
            self._clustered = one_cluster(self._snapshot())
        return bool(self._clustered)

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
        if self._is_cluster():
            return self._ensure_cluster_databases(nodes)
        failures: list[str] = []
        ready: list[MeshNode] = []
        created: dict[str, list[str]] = {}
        for node in nodes:
            try:
                created[node.url] = self._prepare_node(node)
                ready.append(node)
            except CouchError as exc:
                failures.append(f"{node.url}: {self._describe(exc)}")
        for node in ready:
            if created[node.url]:
                self._refill_design_docs(node, created[node.url], ready, created)
            try:
                self._refill_databases(node, nodes, ready)
            except CouchError as exc:
                failures.append(f"{node.url}: refill: {self._describe(exc)}")
            except PlainHTTPRefused as exc:
                failures.append(f"{node.url}: refill: {exc}")
        ids: list[str] = []
        for host in nodes:
            targets = [target for target in nodes if target is not host]
            ids.extend(job_id(db, host.url, target.url) for target in targets for db in self.databases)
            if host in ready:
                # a node that refused us gets no job pointing at it: on pouchdb-server a job whose
                # endpoint answers 401 kills the node hosting it, at every restart
                jobs = self._job_docs(host, [t for t in targets if t in ready], failures)
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

    def _ensure_cluster_databases(self, doors: Sequence[MeshNode]) -> list[str]:
        """A clustered CouchDB needs its databases once, through any door, and no jobs."""
        failures: list[str] = []
        for door in doors:
            try:
                for db in self.databases:
                    database = door.client.database(db)
                    database.ensure_exists()
                    if self._members:  # one `_security` for the whole cluster
                        ensure_members(database, self._members)
                log.info("clustered CouchDB: no replication jobs", extra={"doors": len(doors)})
                return []
            except CouchError as exc:
                failures.append(f"{door.url}: {self._describe(exc)}")
        raise ReplicationError("no door of the cluster took the databases: " + "; ".join(failures))

    def _prepare_node(self, node: MeshNode) -> list[str]:
        """The replicator database and the application's databases on `node`, each with the
        request account as a member (each node keeps its own `_security`); returns the
        application databases that did not exist (a new node, or one restarted empty)."""
        node.client.database(REPLICATOR_DB).ensure_exists()
        self._protect_replicator(node)
        for name in self._members:
            if name in self._member_passwords:
                self._ensure_account(node, name, self._member_passwords[name])
        created: list[str] = []
        for db in self.databases:
            database = node.client.database(db)
            if database.ensure_exists():
                created.append(db)
                log.info("database created on a node that lacked it", extra={"node": node.url, "db": db})
            if self._members:
                ensure_members(database, self._members)
        return created

    def _ensure_account(self, node: MeshNode, name: str, password: str) -> None:
        """The CouchDB account `name` in the node's `_users`, created when missing (a node that
        came back empty lost it); an existing one is never changed."""
        users = node.client.database(USERS_DB)
        doc_id = f"org.couchdb.user:{name}"
        if users.get_or_none(doc_id) is not None:
            return
        try:
            users.put({"_id": doc_id, "name": name, "password": password, "roles": [], "type": "user"})
        except DocumentConflict:
            return  # another app process created it at the same moment
        log.warning("CouchDB account created on a node lacking it", extra={"node": node.url, "user": name})

    def _protect_replicator(self, node: MeshNode) -> None:
        """Job documents carry the set-up account's credentials: on CouchDB 3 make sure only
        server admins can read `_replicator` (an empty `members` would open it to every user).
        pouchdb-server (no scheduler) is a loopback-only admin party: left alone."""
        if self._states.records_state_in_documents(node.client):
            return
        path = f"{REPLICATOR_DB}/_security"
        security = node.client.request("GET", path) or {}
        members = security.get("members") or {}
        if members.get("names") or members.get("roles"):
            return
        security["members"] = {"names": [], "roles": ["_admin"]}
        security.setdefault("admins", {"names": [], "roles": []})
        node.client.request("PUT", path, body=security)
        log.warning("_replicator was readable by every user; made admin-only", extra={"node": node.url})

    def _refill_design_docs(
        self,
        node: MeshNode,
        databases: Sequence[str],
        ready: Sequence[MeshNode],
        created: Mapping[str, list[str]],
    ) -> None:
        """Copy the design documents of `databases` (just created on `node`) from a node that
        already had them, with their revision history: the views exist before replication
        delivers the rest, and replication then finds the same revisions (no conflict)."""
        for db in databases:
            peers = [peer for peer in ready if peer is not node and db not in created.get(peer.url, [])]
            for peer in peers:
                try:
                    ids = [row["id"] for row in _design_rows(peer.client, db, include_docs=False)]
                    docs = [peer.client.database(db).get(doc_id, revs=True) for doc_id in ids]
                    if docs:
                        node.client.database(db).bulk_docs(docs, new_edits=False)
                    log.info("design documents copied", extra={"node": node.url, "db": db, "docs": len(docs)})
                    break
                except CouchError as exc:
                    reason = self._describe(exc)
                    log.warning("design documents of %s not copied from %s: %s", db, peer.url, reason)

    def _refill_databases(self, node: MeshNode, nodes: Sequence[MeshNode], ready: Sequence[MeshNode]) -> None:
        """Pull everything the other nodes hold into the databases of `node` not filled yet
        (new, or recreated after a lost disk): see refill.py."""
        peers = [peer for peer in ready if peer is not node]
        complete = len(peers) == len(nodes) - 1
        for db in self.databases:
            if is_filled(node, db):
                continue
            jobs = [refill_job(db, peer, node, self._peer_urls.get(peer.url)) for peer in peers]
            refill(node, db, peers, complete, jobs, self._write_one_job)

    def _write_one_job(self, host: MeshNode, job: dict[str, Any]) -> dict[str, Any]:
        """Write one job document the way the server needs (server_differences D13)."""
        if writes_jobs_one_at_a_time(self._states.records_state_in_documents(host.client)):
            return self._write_job_and_wait(host, job)
        return host.client.database(REPLICATOR_DB).bulk_docs([job])[0]

    def _job_doc(self, database: str, source: MeshNode, target: MeshNode) -> dict[str, Any]:
        return job_doc(database, source, target, self.continuous, self._peer_urls.get(target.url))

    def _job_docs(
        self, host: MeshNode, targets: Sequence[MeshNode], failures: list[str]
    ) -> list[dict[str, Any]]:
        """The job documents from `host` to each target and database; a link whose job would
        carry credentials over plain HTTP beyond loopback gets none, and a failure line."""
        jobs: list[dict[str, Any]] = []
        for target in targets:
            try:
                jobs.extend(self._job_doc(db, host, target) for db in self.databases)
            except PlainHTTPRefused as exc:
                log.error("replication job refused", extra={"node": host.url, "target": target.url,
                                                             "error": str(exc)})  # fmt: skip
                failures.append(f"{host.url} -> {target.url}: {exc}")
        return jobs

    def _put_jobs(self, host: MeshNode, jobs: list[dict[str, Any]], tries: int = 3) -> list[str]:
        """Write the job documents that are missing, different or failed, and recreate those in
        CouchDB's crash backoff (ensure_mesh passes only jobs whose target answers); return
        failures.

        A refused update (pouchdb-server, D12) usually means another app process wrote the same
        job a moment before and it is running now: those jobs are read again, up to `tries`
        times, and a running job with our fields counts as written."""
        failures: list[str] = []
        refused: dict[str, str] = {}
        for attempt in range(tries):
            if attempt:
                time.sleep(self.refusal_pause * attempt)
                jobs = [job for job in jobs if job["_id"] in refused]
            other, refused = self._put_jobs_once(host, jobs)
            failures.extend(other)
            if not refused:
                break
        return failures + list(refused.values())

    def _put_jobs_once(self, host: MeshNode, jobs: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
        """One pass of `_put_jobs`: the failures, and those of jobs refused as running by id."""
        try:
            ids = [job["_id"] for job in jobs]
            current = read_job_docs(host.client, ids)
            states = self._states.read(host.client, ids, current)
            in_documents = self._states.records_state_in_documents(host.client)
        except CouchError as exc:
            return [f"{host.url}: {self._describe(exc)}"], {}
        # a continuous job never completes by itself: "completed" means it was lost track of
        restart = {"failed", "completed"} if self.continuous else {"failed"}
        writes: list[dict[str, Any]] = []
        deletions: list[dict[str, Any]] = []
        for job in jobs:
            existing = current.get(job["_id"])
            if existing is not None:
                mine = fields_we_wrote(existing)  # without `owner` and `_` fields (D11)
                wanted = {k: job[k] for k in JOB_FIELDS}
                state = states[job["_id"]].state
                if mine == wanted and not in_documents and state in RESTARTED_BY_RECREATING:
                    # an update would keep the backoff (server_differences D22): a new document
                    deletions.append({"_id": existing["_id"], "_rev": existing["_rev"], "_deleted": True})
                    writes.append(job)
                    continue
                if mine == wanted and state not in restart:
                    continue
                job = {**job, "_rev": existing["_rev"]}
            writes.append(job)
        if not writes:
            return [], {}
        replicator = host.client.database(REPLICATOR_DB)
        try:
            if deletions:
                not_deleted = {r.get("id") for r in replicator.bulk_docs(deletions) if r.get("error")}
                writes = [job for job in writes if job["_id"] not in not_deleted]  # next round
                log.info(
                    "crashing replication jobs recreated", extra={"node": host.url, "jobs": len(deletions)}
                )
            if writes_jobs_one_at_a_time(in_documents):
                results = [self._write_job_and_wait(host, job) for job in writes]
            else:
                results = replicator.bulk_docs(writes)
        except CouchError as exc:
            return [f"{host.url}: {self._describe(exc)}"], {}
        failures = []
        refused = {}
        for result in results:
            if result.get("error") == "conflict":
                # another app process wrote this job at the same moment (every process repairs)
                log.info("replication job written concurrently", extra={"job": result.get("id")})
            elif result.get("error"):
                failure = f"{host.url}: job {result.get('id')}: {result.get('error')}"
                if result.get("error") == "forbidden":
                    refused[str(result.get("id"))] = self._redact(failure + RUNNING_JOB_REFUSED_HINT)
                else:
                    failures.append(failure)
            else:
                log.info("replication job written", extra={"job": result.get("id"), "node": host.url})
        return [self._redact(failure) for failure in failures], refused

    def _write_job_and_wait(self, host: MeshNode, job: dict[str, Any]) -> dict[str, Any]:
        """Write one job document, then wait (bounded) until the replicator has written its
        state (server_differences D13)."""
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
                # the refill jobs too: pouchdb-server runs a completed one-shot job again when
                # it restarts, which is what a teardown makes it do (it exits, D12)
                ids = self._own_job_ids(node) + own_job_ids(node.client, self.databases, REFILL_ID_PREFIX)
                removed += self._delete_jobs(node, ids)
            except CouchError as exc:
                log.warning("teardown incomplete on %s: %s", node.url, self._describe(exc))
        self._lags.forget()
        return removed

    def _own_job_ids(self, node: MeshNode) -> list[str]:
        return own_job_ids(node.client, self.databases)

    def _delete_jobs(self, node: MeshNode, ids: Iterable[str]) -> int:
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

    # the deployment's node list ---------------------------------------------------------------
    def repair(self) -> list[str]:
        """One round of the production supervisor: adopt the replicated node list (seed it from
        the configured nodes when no node holds one), then `ensure_mesh`. Idempotent, so every
        app process may run it; raises ReplicationError when some node could not be repaired."""
        found = self.adopt_node_list()
        if found is not None and found.paused:
            return []  # an operator tore replication down: left down until the next set-up
        try:
            ids = self.ensure_mesh()
        finally:
            if found is None and self._node_list_database:
                self.record_node_list(self.node_urls, 1)
        if found is not None:
            self._delete_strays(ids, found.version)
        return ids

    def _delete_strays(self, wanted: Sequence[str], version: int) -> int:
        """Delete this deployment's mesh jobs that name a node no longer in the list: a round
        that read the list just before `nodes remove` recorded it may have written one after
        the command deleted it. Only while the list is still the one this round used (a newer
        one may add the node those jobs name), and only where the server stops a deleted job
        cleanly: pouchdb-server exits (D12), so there they are reported, not deleted."""
        if not self._node_list_database:
            return 0
        latest = read_node_list(self._snapshot(), self._node_list_database)
        if latest is None or latest.version != version:
            return 0
        keep = set(wanted)
        removed = 0
        for node in self._snapshot():
            try:
                strays = [job for job in self._own_job_ids(node) if job not in keep]
                if not strays:
                    continue
                extra = {"node": node.url, "jobs": len(strays)}
                if self._states.records_state_in_documents(node.client):
                    log.warning("stray replication jobs left (pouchdb-server exits on deletion)", extra=extra)
                    continue
                removed += self._delete_jobs(node, strays)
                log.warning("stray replication jobs deleted", extra=extra)
            except CouchError as exc:
                log.info("stray jobs on %s not checked: %s", node.url, self._describe(exc))
        return removed

    def adopt_node_list(self) -> NodeList | None:
        """Read the replicated node list and make it this manager's nodes; None (nothing
        changed) when no node holds one, or no list database is configured."""
        if not self._node_list_database:
            return None
        found = read_node_list(self._snapshot(), self._node_list_database)
        if found is not None:
            self.set_nodes(found.urls)
        return found

    def set_paused(self, paused: bool) -> bool:
        """Record (or clear) an operator's teardown in the node list, so that every process's
        supervisor leaves the mesh down (or sets it up again); False when nothing changed."""
        if not self._node_list_database:
            return False
        current = self.node_list()
        if current.paused == paused:
            return False
        self.record_node_list(current.urls, current.version + 1, paused=paused)
        return True

    def record_node_list(self, urls: Sequence[str], version: int, paused: bool = False) -> int:
        """Store `urls` as the deployment's node list `version` on every node that answers."""
        if not self._node_list_database:
            raise ReplicationError("no node-list database configured")
        nodes = self._snapshot()
        known = {node.url for node in nodes}
        extra = [self._new_node(url) for url in urls if clean_url(url) not in known]
        try:
            written = write_node_list([*nodes, *extra], self._node_list_database, urls, version, paused)
        finally:
            for node in extra:
                node.client.close()
        if not written:
            raise ReplicationError("no node took the node list")
        log.info("node list recorded", extra={"version": version, "nodes": len(urls), "copies": written})
        return written

    def node_list(self) -> NodeList:
        """The deployment's node list: the replicated one, else the configured nodes (version 0)."""
        found = None
        if self._node_list_database:
            found = read_node_list(self._snapshot(), self._node_list_database)
        return found or NodeList(tuple(self.node_urls), 0)

    def set_nodes(self, urls: Sequence[str]) -> tuple[list[str], list[str]]:
        """Make `urls` the mesh's nodes, in that order (no job is written or deleted here);
        returns the URLs added and dropped."""
        wanted = list(dict.fromkeys(clean_url(url) for url in urls))
        if not wanted:
            raise InvalidInput("a node list needs at least one node")
        with self._lock:
            current = {node.url: node for node in self._nodes}
            if list(current) == wanted:
                return [], []
            added = [url for url in wanted if url not in current]
            dropped = [node for url, node in current.items() if url not in wanted]
            fresh = {url: self._new_node(url) for url in added}
            self._nodes = [current.get(url) or fresh[url] for url in wanted]
            self._clustered = None  # the topology is asked again for the new set
        for node in dropped:
            self._lags.forget(node.url)
            node.client.close()
        if added or dropped:
            log.warning(
                "replication nodes changed", extra={"added": added, "dropped": [n.url for n in dropped]}
            )
        return added, [node.url for node in dropped]

    def _new_node(self, url: str) -> MeshNode:
        return MeshNode(url, self._user, self._password, self._timeout, self._transport, self._tls)

    # membership -------------------------------------------------------------------------------
    def add_node(self, url: str, timeout: float = 60.0) -> NodeAdded:
        """Add a node: its databases, the design documents (so its indexes exist), the jobs both
        ways; then wait up to `timeout` seconds for it to catch up and build its views."""
        started = time.monotonic()
        deadline = started + timeout
        candidate = self._new_node(url)
        with self._lock:
            existing = next((node for node in self._nodes if node.url == candidate.url), None)
            others = [node for node in self._nodes if node.url != candidate.url]
        if existing is not None:
            candidate.client.close()
            candidate = existing
        if self._is_cluster():
            return self._add_door(candidate, existing is not None, started)
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
            jobs = self._job_docs(host, targets, failures)
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

    def _add_door(self, candidate: MeshNode, known: bool, started: float) -> NodeAdded:
        """Add another URL of the cluster: no jobs, nothing to catch up."""
        try:
            same = membership(candidate) == membership(self._snapshot()[0])
        except CouchError as exc:
            if not known:
                candidate.client.close()
            raise ReplicationError(f"{candidate.url}: {self._describe(exc)}") from None
        if not same:
            if not known:
                candidate.client.close()
            raise InvalidInput("the nodes are one clustered CouchDB: add only URLs of that cluster")
        with self._lock:
            if not known:
                self._nodes.append(candidate)
        seconds = round(time.monotonic() - started, 3)
        log.info("cluster door added", extra={"node": candidate.url})
        return NodeAdded(candidate.url, [], True, seconds)

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
        if self._is_cluster():
            with self._lock:
                self._nodes.remove(node)
            node.client.close()
            return 0
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
        self._lags.forget(node.url)
        node.client.close()
        log.info("node removed", extra={"node": node.url, "jobs": removed})
        return removed

    def _copy_design_docs(self, others: Sequence[MeshNode], node: MeshNode) -> None:
        """Copy design documents, with their revision history so replication later finds them
        already there instead of creating conflicts."""
        source = next((other for other in others if other.client.ping()), None)
        if source is None:
            return
        for db in self.databases:
            try:
                ids = [row["id"] for row in _design_rows(source.client, db, include_docs=False)]
            except DocumentNotFound:
                continue  # not created there yet either (a deployment no app process started)
            docs = [source.client.database(db).get(doc_id, revs=True) for doc_id in ids]
            node.client.database(db).bulk_docs(docs, new_edits=False)

    def _wait_caught_up(self, node: MeshNode, others: Sequence[MeshNode], deadline: float) -> bool:
        """True once canaries crossed every new link and the node holds as many documents as each
        other node held when they were written; False at the deadline."""
        if not others:
            return True
        counts = {(other.url, db): self._doc_count(other, db) for other in others for db in self.databases}
        links = [(other, node) for other in others] + [(node, other) for other in others]
        lags = self._lags.measure(links, max(0.0, deadline - time.monotonic()), share_timeout=False)
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
    def _doc_count(node: MeshNode, db: str) -> int | None:
        try:
            return int(node.client.database(db).info().get("doc_count", 0))
        except CouchError:
            return None

    def _warm_views(self, node: MeshNode, deadline: float) -> None:
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
        clustered = self._is_cluster()
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            probes = list(pool.map(self._probe, nodes))
            healthy = {node.url: probe.healthy for node, probe in zip(nodes, probes, strict=True)}
            if clustered:
                states: list[dict[str, JobState] | None] = [{} for _ in nodes]
            else:
                states = list(
                    pool.map(lambda n: self._read_states(n, nodes) if healthy[n.url] else None, nodes)
                )
        active = self._active_url(healthy)
        for probe in probes:
            probe.active = probe.url == active
        if clustered:
            # one database behind several doors: no links; healthy while every door answers
            return ReplicationStatus(
                nodes=probes, links=[], healthy=all(healthy.values()), topology=CLUSTERED
            )
        links: list[LinkStatus] = []
        lags, stalled = self._lags.last()
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

    def measure_lag(self, timeout: float = 10.0) -> dict[Link, float | None]:
        """Write a canary document on every node in every database and time its arrival on every
        other node; return seconds per (source, target, database) link, None if it did not arrive.
        A cluster has no links: nothing to measure."""
        if self._is_cluster():
            return {}
        nodes = self._snapshot()
        links = [(source, target) for source in nodes for target in nodes if source is not target]
        return self._lags.measure(links, timeout)

    # helpers ----------------------------------------------------------------------------------
    def _snapshot(self) -> list[MeshNode]:
        with self._lock:
            return list(self._nodes)

    def _probe(self, node: MeshNode) -> NodeStatus:
        started = time.perf_counter()
        try:
            info = node.client.request("GET", "", timeout=min(self._timeout, 3.0))
        except CouchError:
            return NodeStatus(url=node.url, healthy=False, active=False)
        latency = round((time.perf_counter() - started) * 1000, 2)
        version = info.get("version") if isinstance(info, dict) else None
        return NodeStatus(node.url, True, False, str(version) if version else None, latency)

    def _read_states(self, host: MeshNode, nodes: Sequence[MeshNode]) -> dict[str, JobState] | None:
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
