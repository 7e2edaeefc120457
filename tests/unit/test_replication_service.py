"""notebook.services.replication_service: the operators' use cases over the replication manager."""

from __future__ import annotations

from notebook.database.replication import JOB_ID_PREFIX, MESH, ReplicationManager
from notebook.services.replication_service import ReplicationService
from tests.unit.couch_fake import FakeCluster, FakeNode


def mesh_jobs(node: FakeNode) -> list[dict]:
    """The node's mesh job documents (not the one-shot refill jobs, refill.py)."""
    return [doc for doc_id, doc in node.dbs["_replicator"].items() if doc_id.startswith(JOB_ID_PREFIX)]


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
    mesh = {node.url: mesh_jobs(node) for node in cluster.nodes}
    assert len([doc for doc in mesh[cluster[0].url] if not doc.get("_deleted")]) == 1  # the job to node 1
    assert all(doc.get("_deleted") for doc in mesh[cluster[2].url])
