"""notebook.services.replication_service: the operators' use cases over the replication manager."""

from __future__ import annotations

from notebook.database.replication import MESH, ReplicationManager
from notebook.services.replication_service import ReplicationService
from tests.unit.couch_fake import FakeCluster


def test_set_up_inspect_and_shrink_a_mesh(cluster: FakeCluster) -> None:
    manager = ReplicationManager(cluster.urls(), ["n_notes"], transport=cluster.transport)
    service = ReplicationService(manager)
    try:
        assert len(service.ensure_mesh()) == 6  # 3 nodes, both directions, one database
        assert service.topology == MESH
        status = service.status()
        assert len(status.links) == 6 and [n.url for n in status.nodes] == cluster.urls()
        removed = service.remove_node(cluster.urls()[2])
        assert removed == 4  # its two jobs and the two pushing to it
        assert service.node_urls == cluster.urls()[:2]
    finally:
        service.close()
    live = [doc for doc in cluster[0].dbs["_replicator"].values() if not doc.get("_deleted")]
    assert len(live) == 1  # only the job to node 1 is left
    assert all(doc.get("_deleted") for doc in cluster[2].dbs["_replicator"].values())
