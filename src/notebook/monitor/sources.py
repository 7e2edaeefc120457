"""Where the monitor reads the deployment: the database nodes themselves, or the app.

- `NodeSource`: every node directly, with the credentials of the set-up account. Node health,
  version and latency, and replication link states come from the replication manager (which
  knows how CouchDB 3 and pouchdb-server each report job states); document counts from
  `GET /{db}`.
- `ApiSource`: the app's REST API for operators (`GET /api/replication/status`, an admin's
  access token) and `GET /ready`; the app reports what its own client sees, lag included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from notebook.database.couch import CouchDBClient, CouchError
from notebook.database.couch.tls import CouchTLS
from notebook.database.replication import LinkStatus, ReplicationManager
from notebook.monitor.report import ClusterReport, NodeReport, Problem


class NodeSource:
    def __init__(self, urls: Sequence[str], databases: Sequence[str], user: str = "", password: str = "",
                 timeout: float = 5.0, tls: CouchTLS | None = None) -> None:  # fmt: skip
        self.databases = list(databases)
        self.manager = ReplicationManager(
            list(urls), self.databases, user, password, timeout=timeout, tls=tls
        )
        self.clients = {
            url: CouchDBClient(url, user=user, password=password, timeout=timeout, max_attempts=1, tls=tls)
            for url in self.manager.node_urls
        }

    def read(self) -> ClusterReport:
        status = self.manager.status()
        report = ClusterReport(source="nodes")
        for node in status.nodes:
            counts = self._document_counts(node.url) if node.healthy else None
            report.nodes.append(
                NodeReport(node.url, node.healthy, node.active, node.version, node.latency_ms, counts)
            )
        report.links.extend(status.links)
        return report

    def measure_lag(self, timeout: float) -> None:
        """Time a canary over every link (writes one small document per node and database)."""
        self.manager.measure_lag(timeout=timeout)

    def _document_counts(self, url: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for db in self.databases:
            try:
                info = self.clients[url].request("GET", db, timeout=3.0)
            except CouchError:
                continue  # missing on this node: left out, the link states say why
            counts[db] = int(info.get("doc_count", 0))
        return counts

    def close(self) -> None:
        self.manager.close()
        for client in self.clients.values():
            client.close()


class ApiSource:
    def __init__(self, api_url: str, token: str, timeout: float = 10.0) -> None:
        self.base = api_url.rstrip("/")
        self.http = httpx.Client(
            timeout=timeout, headers={"Authorization": f"Bearer {token}"} if token else {}
        )

    def read(self) -> ClusterReport:
        report = ClusterReport(source="api")
        try:
            ready = self.http.get(f"{self.base}/ready")
            report.app_status = _field(ready, "status") or f"HTTP {ready.status_code}"
            answer = self.http.get(f"{self.base}/api/replication/status")
        except httpx.HTTPError as exc:
            report.problems.append(
                Problem("app_unreachable", self.base, f"{self.base}: {type(exc).__name__}")
            )
            return report
        if answer.status_code != 200:
            reason = _error_message(answer)
            report.problems.append(Problem("app_unreachable", self.base, f"{self.base}: {reason}"))
            return report
        body = answer.json()
        for node in body.get("nodes", []):
            report.nodes.append(
                NodeReport(
                    node["url"],
                    bool(node["healthy"]),
                    bool(node.get("active")),
                    node.get("version"),
                    node.get("latencyMs"),
                )  # fmt: skip
            )
        for link in body.get("links", []):
            report.links.append(
                LinkStatus(
                    link["source"],
                    link["target"],
                    link["database"],
                    link["state"],
                    link.get("lastError"),
                    link.get("lagSeconds"),
                )  # fmt: skip
            )
        return report

    def measure_lag(self, timeout: float) -> None:
        self.http.post(
            f"{self.base}/api/replication/lag", json={"timeoutSeconds": timeout}, timeout=timeout + 10
        )

    def close(self) -> None:
        self.http.close()


def _field(response: httpx.Response, name: str) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


def _error_message(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return f"HTTP {response.status_code} {errors[0]['extensions']['code']}: {errors[0]['message']}"
    except (ValueError, AttributeError, LookupError, TypeError):
        return f"HTTP {response.status_code}"
