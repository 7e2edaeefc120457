"""Whether the configured node URLs are independent servers or doors to ONE clustered CouchDB.

A clustered CouchDB 3 lists its nodes in `GET /_membership` (server_differences D14). URLs whose
answers name the same nodes, more than one, belong to one cluster: the cluster keeps its own
copies, so the mesh creates no jobs between them, and the client just fails over between the
doors. Independent servers (single-node CouchDBs, pouchdb-servers) get the replication mesh.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from notebook.database.couch import CouchError
from notebook.database.couch.server_differences import MEMBERSHIP_PATH, cluster_identity
from notebook.database.replication.jobs import MeshNode
from notebook.database.replication.status import ReplicationError

log = logging.getLogger(__name__)


def membership(node: MeshNode) -> frozenset[str] | None:
    """The cluster behind `node` (its node names), None for a single server; raises CouchError
    when the node cannot answer."""
    try:
        return cluster_identity(node.client.request("GET", MEMBERSHIP_PATH, timeout=3.0))
    except CouchError as exc:
        if exc.status in (400, 401, 403, 404, 405):
            return None  # no membership endpoint, or not ours to read: a server on its own
        raise


def one_cluster(nodes: Sequence[MeshNode]) -> bool | None:
    """True when every node is a door to the same clustered CouchDB, False when they are
    independent servers, None when it cannot be told now (no node answered).

    Nodes that do not answer are taken to be doors of the cluster the others name: a door that
    is down must not turn a cluster into a mesh. URLs of one cluster mixed with independent
    servers are refused: replicating a cluster into itself through two of its doors is never
    wanted; give one URL per cluster or server.
    """
    if len(nodes) < 2:
        return False
    identities: dict[str, frozenset[str] | None] = {}
    for node in nodes:
        try:
            identities[node.url] = membership(node)
        except CouchError as exc:
            log.info("membership of %s unknown: %s", node.url, exc.reason)
    if not identities:
        return None
    distinct = set(identities.values())
    clusters = {identity for identity in distinct if identity is not None}
    if not clusters:
        return False
    if len(distinct) == 1:
        return True
    doors: dict[frozenset[str], int] = {}
    for identity in identities.values():
        if identity is not None:
            doors[identity] = doors.get(identity, 0) + 1
    if all(count == 1 for count in doors.values()):
        return False  # separate clusters, one URL each: a mesh between them, as between servers
    raise ReplicationError(
        "several URLs of one clustered CouchDB are mixed with other servers: give one URL per "
        "cluster or server"
    )
