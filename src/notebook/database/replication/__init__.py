"""Replication between the configured CouchDB nodes, through CouchDB's own replicator.

- manager.py: `ReplicationManager`, set-up, repair, teardown, membership and status
- jobs.py: the mesh's nodes (`MeshNode`) and `_replicator` job documents
- scheduler.py: reading job states (CouchDB 3's scheduler or the job documents)
- canaries.py: lag measured with canary documents
- topology.py: independent servers (a mesh) or doors to one clustered CouchDB
- node_list.py: the deployment's node list, one replicated document
- status.py: what the operator sees (`ReplicationStatus`, ...)
"""

from notebook.database.couch.server_differences import JobState, job_state
from notebook.database.replication.canaries import CANARY_TYPE, canary_id
from notebook.database.replication.jobs import (
    JOB_ID_PREFIX,
    REPLICATOR_DB,
    MeshNode,
    clean_url,
    job_id,
    read_job_docs,
)
from notebook.database.replication.manager import ReplicationManager
from notebook.database.replication.node_list import NODE_LIST_ID, NodeList
from notebook.database.replication.scheduler import JobStateReader
from notebook.database.replication.status import (
    CLUSTERED,
    HEALTHY_STATES,
    MESH,
    LinkStatus,
    NodeAdded,
    NodeStatus,
    ReplicationError,
    ReplicationStatus,
)

__all__ = [
    "CANARY_TYPE",
    "CLUSTERED",
    "HEALTHY_STATES",
    "JOB_ID_PREFIX",
    "MESH",
    "NODE_LIST_ID",
    "REPLICATOR_DB",
    "JobState",
    "JobStateReader",
    "LinkStatus",
    "MeshNode",
    "NodeAdded",
    "NodeList",
    "NodeStatus",
    "ReplicationError",
    "ReplicationManager",
    "ReplicationStatus",
    "canary_id",
    "clean_url",
    "job_id",
    "job_state",
    "read_job_docs",
]
