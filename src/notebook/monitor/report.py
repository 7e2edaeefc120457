"""What one look at the deployment found: nodes, links, the problems among them, a verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from notebook.database.replication import LinkStatus

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
EXIT_CODES = {HEALTHY: 0, DEGRADED: 1, DOWN: 2}


@dataclass
class NodeReport:
    url: str
    reachable: bool
    active: bool = False
    version: str | None = None
    latency_ms: float | None = None
    databases: dict[str, int] | None = None  # database -> document count; None when not read


@dataclass(frozen=True)
class Problem:
    """Something an operator should hear about; (kind, subject) names one incident."""

    kind: str  # node_down, link_failing, latency_high, app_unreachable
    subject: str
    message: str


@dataclass
class ClusterReport:
    source: str  # "nodes" (read from the nodes) or "api" (from the app's REST API)
    nodes: list[NodeReport] = field(default_factory=list)
    links: list[LinkStatus] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    app_status: str | None = None  # /ready's status, in API mode
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def verdict(self) -> str:
        """down: no node (or, in API mode, not the app) answers; degraded: any problem."""
        if not any(node.reachable for node in self.nodes) or any(
            p.kind == "app_unreachable" for p in self.problems
        ):
            return DOWN
        return DEGRADED if self.problems else HEALTHY

    def to_json(self) -> dict[str, Any]:
        def camel(values: dict[str, Any]) -> dict[str, Any]:
            return {
                (head + "".join(p.capitalize() for p in rest)): value
                for name, value in values.items()
                for head, *rest in [name.split("_")]
            }

        return {
            "source": self.source,
            "verdict": self.verdict,
            "checkedAt": self.checked_at,
            "appStatus": self.app_status,
            "nodes": [camel(asdict(node)) for node in self.nodes],
            "links": [{**camel(asdict(link)), "healthy": link.healthy} for link in self.links],
            "problems": [asdict(problem) for problem in self.problems],
        }


def find_problems(report: ClusterReport, latency_threshold_ms: float) -> list[Problem]:
    """Nodes down, links failing between reachable nodes, slow nodes. A link whose node is
    down is part of that node's incident, not one of its own."""
    problems: list[Problem] = []
    reachable = {node.url for node in report.nodes if node.reachable}
    for node in report.nodes:
        if not node.reachable:
            problems.append(Problem("node_down", node.url, f"database node {node.url} does not answer"))
        elif node.latency_ms is not None and node.latency_ms > latency_threshold_ms:
            problems.append(
                Problem("latency_high", node.url, f"{node.url} answered in {node.latency_ms:.0f} ms")
            )
    for link in report.links:
        if not link.healthy and link.source in reachable and link.target in reachable:
            subject = f"{link.source} -> {link.target} {link.database}"
            detail = f": {link.last_error}" if link.last_error else ""
            problems.append(
                Problem("link_failing", subject, f"replication {subject} is {link.state}{detail}")
            )
    return problems
