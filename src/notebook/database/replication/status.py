"""What replication looks like to an operator: nodes, links, the verdict, and its errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from notebook.core.errors import ServiceUnavailable

#: Contract states in which a link is doing its job (or has done it, for one-shot jobs).
HEALTHY_STATES = frozenset({"running", "pending", "completed"})
#: The mesh: every node replicates into every other one with `_replicator` jobs.
MESH = "mesh"
#: Several doors to ONE clustered CouchDB: the cluster keeps its copies itself, no jobs.
CLUSTERED = "clustered"


@dataclass
class NodeStatus:
    """One database node as the operator sees it (`ClusterNode` in the contract)."""

    url: str
    healthy: bool
    active: bool
    version: str | None = None
    latency_ms: float | None = None


@dataclass
class LinkStatus:
    """One job: `source` replicates `database` into `target` (`ReplicationLink` in the contract)."""

    source: str
    target: str
    database: str
    state: str
    last_error: str | None = None
    lag_seconds: float | None = None

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY_STATES and self.last_error is None


@dataclass
class ReplicationStatus:
    """Nodes, links and an overall verdict (`ReplicationStatus` in the contract); `topology`
    says whether the nodes form a replication mesh or are doors to one clustered CouchDB."""

    nodes: list[NodeStatus] = field(default_factory=list)
    links: list[LinkStatus] = field(default_factory=list)
    healthy: bool = False
    topology: str = MESH

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NodeAdded:
    """What `add_node` did: the jobs it ensured and whether the node caught up in time."""

    url: str
    job_ids: list[str]
    caught_up: bool
    seconds: float


class ReplicationError(ServiceUnavailable):
    """A node refused or failed a replication operation; the message carries no credentials."""
