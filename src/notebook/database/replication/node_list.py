"""The node list of a deployment, kept in one replicated document that every app process reads.

`COUCHDB_URL` + `REPLICATION_NODES` only seed it: the first repair round that finds no list on
any reachable node writes them as version 1. From then on the document is the truth, so
`notebook-server nodes add URL` / `nodes remove URL` changes every process of every host at its
next round, and an environment that still names a removed node does not bring it back.

The document lives in the users database (replicated like the others; no view indexes it, every
view tests `doc.type`):

    {"_id": "notebook-cluster:nodes", "type": "cluster_nodes", "version": 3, "paused": false,
     "nodes": ["http://10.0.0.1:5984/", "http://10.0.0.2:5984/"]}

`paused` is set by an operator's teardown (`DELETE /api/replication`) and cleared by the next
set-up (`POST /api/replication/setup`): without it, every process would put the jobs back at
its next round.

URLs are stored without credentials; every node is reached with the set-up account of the
environment. A write lands on one node and is then copied, with its revision history, to every
other reachable node (`new_edits=false`): all nodes hold the same revision at once, and
replication later finds it there instead of making a conflict. Readers ask every node they know
and take the highest `version`, so a node restarted empty (without the document) or one that
replication has not reached yet never shrinks the list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from notebook.core.errors import InvalidInput
from notebook.database.couch import CouchError
from notebook.database.replication.jobs import MeshNode, clean_url

log = logging.getLogger(__name__)

NODE_LIST_ID = "notebook-cluster:nodes"
NODE_LIST_TYPE = "cluster_nodes"


@dataclass(frozen=True)
class NodeList:
    """The nodes of the deployment (URLs without credentials) and the list's version."""

    urls: tuple[str, ...]
    version: int
    # an operator's teardown: the supervisors leave the mesh down until the next set-up
    paused: bool = False


def parse_node_list(doc: Any) -> NodeList | None:
    """The list a stored document holds; None for anything that is not a usable list."""
    if not isinstance(doc, dict) or doc.get("type") != NODE_LIST_TYPE or doc.get("_deleted"):
        return None
    raw = doc.get("nodes")
    version = doc.get("version")
    if not isinstance(raw, list) or not raw or not isinstance(version, int):
        return None
    try:
        urls = tuple(dict.fromkeys(clean_url(str(url)) for url in raw))
    except InvalidInput:
        return None
    return NodeList(urls, version, doc.get("paused") is True)


def read_node_list(nodes: Sequence[MeshNode], database: str) -> NodeList | None:
    """The newest list found on any of `nodes` (highest version); None when none holds one.
    Nodes that do not answer, or lack the database, are skipped."""
    newest: NodeList | None = None
    for node in nodes:
        try:
            found = parse_node_list(node.client.database(database).get_or_none(NODE_LIST_ID))
        except CouchError:
            continue
        if found is not None and (newest is None or found.version > newest.version):
            newest = found
    return newest


def write_node_list(
    nodes: Sequence[MeshNode], database: str, urls: Sequence[str], version: int, paused: bool = False
) -> int:
    """Store `urls` as list `version` on the first node that takes it, then copy that revision to
    every other node that answers; return on how many nodes it now is (0: nowhere)."""
    body: dict[str, Any] = {
        "_id": NODE_LIST_ID,
        "type": NODE_LIST_TYPE,
        "version": version,
        "nodes": [clean_url(url) for url in urls],
        "paused": paused,
    }
    source: MeshNode | None = None
    for node in nodes:
        db = node.client.database(database)
        try:
            db.ensure_exists()  # `nodes add` may run before any app process created it
            current = db.get_or_none(NODE_LIST_ID)
            doc = {**body, "_rev": current["_rev"]} if current else dict(body)
            db.put(doc)
            source = node
            break
        except CouchError as exc:
            log.info("node list not written on %s: %s", node.url, exc.reason)
    if source is None:
        return 0
    stored = source.client.database(database).get(NODE_LIST_ID, revs=True)
    written = 1
    for node in nodes:
        if node is source:
            continue
        try:
            node.client.database(database).bulk_docs([stored], new_edits=False)
            written += 1
        except CouchError as exc:
            log.info("node list not copied to %s: %s", node.url, exc.reason)
    return written
