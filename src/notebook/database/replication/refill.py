"""Refilling a database that is new on a node: a node restarted with an empty data directory,
a node just added, or a database someone deleted.

The mesh's continuous push jobs do not do it. A job pushing into a node keeps its place in its
source's changes feed; when the target's database is deleted and created again, the job only
notices new writes (both servers: nothing makes it read its checkpoint again), so everything
written before stays missing on that node. Restarting those jobs would make them start again
from the checkpoints (the target's is gone: from the beginning), but pouchdb-server cannot
restart a running job: it refuses an update and exits on a deletion (server_differences D12).

So a database that has not been filled yet gets one ONE-SHOT pull job per other node, stored on
the node to fill (`notebook-refill:<database>:<source key>:<target key>`): each copies
everything its source holds and then completes. "Filled" is remembered on the node itself by a
`_local` document in that database (`_local` documents never replicate, and a lost disk loses
it together with the data): a database without it is refilled, whoever created the database
(this supervisor, another app process, the warm-up, or the replicator). The marker is written
once every other node of the mesh had its pull job written; until then the next round tries
again. The pull is a one-shot replication, so it does not suffer from the hang of continuous
pull jobs on pouchdb-server (docs/replication.md, "Where the job documents live").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from notebook.database.couch import CouchError, DocumentConflict, DocumentNotFound
from notebook.database.replication.jobs import MeshNode, node_key, read_job_docs

log = logging.getLogger(__name__)

REFILL_ID_PREFIX = "notebook-refill:"
FILLED_MARKER = "_local/notebook-filled"


def refill_id(database: str, source: str, target: str) -> str:
    """The deterministic id of the one-shot job filling `database` on `target` from `source`."""
    return f"{REFILL_ID_PREFIX}{database}:{node_key(source)}:{node_key(target)}"


def is_filled(node: MeshNode, database: str) -> bool:
    """True when this database on this node was filled (or found full) before."""
    try:
        node.client.database(database).get(FILLED_MARKER)
    except DocumentNotFound:
        return False
    return True


def refill_job(database: str, source: MeshNode, target: MeshNode, source_via: str | None) -> dict[str, Any]:
    """The one-shot pull, stored on `target`; `source_via`: how `target` reaches `source`."""
    return {
        "_id": refill_id(database, source.url, target.url),
        "source": source.endpoint(database, via=source_via),
        "target": target.endpoint(database),
        "continuous": False,
    }


def refill(
    node: MeshNode,
    database: str,
    peers: Sequence[MeshNode],
    complete: bool,
    jobs: Sequence[dict[str, Any]],
    write: Callable[[MeshNode, dict[str, Any]], dict[str, Any]],
) -> int:
    """Write the one-shot pull `jobs` (one per answering peer) on `node`, then mark the database
    filled when `complete` (every other node of the mesh answered); return the jobs written.

    An existing refill document (a database refilled before, on a node that kept its
    `_replicator`) is written again so that it runs again; a refused rewrite (pouchdb-server
    refuses to change a job that is running) means it is running: nothing to do.
    """
    current = read_job_docs(node.client, [job["_id"] for job in jobs])
    written = 0
    for job in jobs:
        existing = current.get(job["_id"])
        doc = {**job, "_rev": existing["_rev"]} if existing else job
        result = write(node, doc)
        if result.get("error") not in (None, "conflict", "forbidden"):
            raise CouchError(409, str(result.get("error")), f"refill job {job['_id']} not written")
        written += 0 if result.get("error") else 1
    if complete:
        try:
            node.client.database(database).put({"_id": FILLED_MARKER, "peers": [peer.url for peer in peers]})
        except DocumentConflict:
            pass  # another app process marked it at the same moment
    log.warning(
        "database refilled from the other nodes" if jobs else "database marked filled",
        extra={"node": node.url, "db": database, "jobs": written, "complete": complete},
    )
    return written
