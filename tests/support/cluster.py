"""Replicating nodes of the server under test, each with its own app, that a test can cut apart.

Every node receives replication through a loopback TCP proxy (the mesh's `peer_urls`):
`cut()` stops every byte between the nodes while each keeps accepting writes through its own
app, `heal()` lets them flow again (see tcp_proxy.py for why a cut drops rather than resets).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from config.settings import load_config
from notebook.api.app import create_app
from notebook.database.couch import CouchDBClient
from notebook.database.design_docs import database_names
from notebook.database.replication import ReplicationManager
from tests.conftest import GraphQL
from tests.support.sealed import opened
from tests.support.servers import NodeSet, start_nodes
from tests.support.tcp_proxy import TcpProxy


class PartitionableCluster:
    def __init__(self, nodes: NodeSet, proxies: list[TcpProxy], prefix: str) -> None:
        self.nodes = nodes
        self.proxies = proxies
        self.prefix = prefix
        self.names = database_names(prefix)
        self.clients = [CouchDBClient(url, user=nodes.user, password=nodes.password) for url in nodes.urls]
        self.apps = [
            create_app(
                load_config(
                    {"FLASK_ENV": "testing"}, couchdb_url=url, db_prefix=prefix, **nodes.credentials()
                )
            )
            for url in nodes.urls
        ]
        self.gql = [GraphQL(app.test_client()) for app in self.apps]

    def __len__(self) -> int:
        return len(self.apps)

    def doc_on(self, node: int, doc_id: str, database: str = "notes") -> dict[str, Any] | None:
        """A document as CouchDB itself answers on one node: its winning leaf and `_conflicts`;
        a sealed note's title, content and tags are opened into it (opened_doc)."""
        doc = self.clients[node].database(self.names[database]).get_or_none(doc_id, conflicts=True)
        return opened(doc, self.apps[node].extensions["notebook"].notes.notes.codec)

    def settle(self) -> None:
        """What the resolver thread of every app process does, one round on each node."""
        for app in self.apps:
            app.extensions["notebook"].resolver.resolve_pending()

    def cut(self) -> None:
        for proxy in self.proxies:
            proxy.cut()

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.restore()

    def close(self) -> None:
        for app in self.apps:
            app.extensions["notebook"].close()
        for client in self.clients:
            client.close()


@contextlib.contextmanager
def partitionable_cluster(tmp: Path, size: int) -> Iterator[PartitionableCluster]:
    """`size` nodes in a full replication mesh through cuttable proxies, each with an app."""
    nodes = start_nodes(tmp, size)
    proxies: list[TcpProxy] = []
    manager: ReplicationManager | None = None
    cluster: PartitionableCluster | None = None
    try:
        nodes.require_process_control()  # the proxies sit on loopback in front of nodes we started
        proxies = [TcpProxy(node.port) for node in nodes.nodes]
        prefix = f"p{uuid.uuid4().hex[:8]}_"
        manager = ReplicationManager(
            nodes.urls,
            list(database_names(prefix).values()),
            nodes.user,
            nodes.password,
            peer_urls={node.url: proxy.url for node, proxy in zip(nodes.nodes, proxies, strict=True)},
        )
        manager.ensure_mesh()
        cluster = PartitionableCluster(nodes, proxies, prefix)
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        if manager is not None:
            manager.close()
        for proxy in proxies:
            proxy.close()
        nodes.stop()
