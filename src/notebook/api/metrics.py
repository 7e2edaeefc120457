"""`GET /metrics`: the Prometheus text format, for every worker of the process group.

Counters and histograms come from notebook.utils.metrics (under gunicorn, added up over every
worker by prometheus-client's multiprocess collector); the state of the deployment as the
answering worker sees it is read at scrape time by `DeploymentCollector`: node health and
latency, the active node, replication link states, warm-up.

Who may scrape (docs/operations.md, "Metrics"): with METRICS_TOKEN set, a request carrying
`Authorization: Bearer <METRICS_TOKEN>`; without it, only a client connected directly over
loopback (not through a proxy, which would make every client look local).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from config.settings import Config
from notebook.api.errors import error_body
from notebook.bootstrap import Services

log = logging.getLogger(__name__)

blueprint = Blueprint("metrics", __name__)

_WARMUP_STATES = ("pending", "installing", "warming", "ready", "unavailable")
_FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


class DeploymentCollector(Collector):
    """Gauges read from this process's services when scraped."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        yield from self._nodes()
        yield from self._warmup()
        yield from self._replication()

    def _nodes(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "notebook_couchdb_node_up", "1 when the node answers its health probe", labels=["node"]
        )
        active = GaugeMetricFamily(
            "notebook_couchdb_node_active", "1 for the node requests go to now", labels=["node"]
        )
        latency = GaugeMetricFamily(
            "notebook_couchdb_node_probe_seconds", "Latency of the node's last health probe", labels=["node"]
        )
        for node in self.services.couch.nodes_status():
            up.add_metric([node["url"]], 1.0 if node["healthy"] else 0.0)
            active.add_metric([node["url"]], 1.0 if node["active"] else 0.0)
            if node["latency_ms"] is not None:
                latency.add_metric([node["url"]], node["latency_ms"] / 1000)
        yield from (up, active, latency)

    def _warmup(self) -> Iterator[Metric]:
        status = self.services.warmup.status()
        state = GaugeMetricFamily(
            "notebook_warmup_state", "1 for the start-up state this process is in", labels=["state"]
        )
        for name in _WARMUP_STATES:
            state.add_metric([name], 1.0 if status["status"] == name else 0.0)
        built = GaugeMetricFamily("notebook_warmup_views_built", "Views built by the start-up work")
        built.add_metric([], status["progress"]["viewsBuilt"])
        total = GaugeMetricFamily("notebook_warmup_views", "Views the start-up work builds")
        total.add_metric([], status["progress"]["views"])
        yield from (state, built, total)

    def _replication(self) -> Iterator[Metric]:
        readable = GaugeMetricFamily(
            "notebook_replication_status_up", "1 when the replication status could be read at this scrape"
        )
        links = GaugeMetricFamily(
            "notebook_replication_link_state",
            "1 for the state each replication link is in (running, pending, crashing, error, ...)",
            labels=["source", "target", "database", "state"],
        )
        healthy = GaugeMetricFamily(
            "notebook_replication_link_healthy",
            "1 when the link is in a healthy state and reports no error",
            labels=["source", "target", "database"],
        )
        overall = GaugeMetricFamily(
            "notebook_replication_healthy", "1 when every node and every link is healthy"
        )
        try:
            status = self.services.replication.status()
        except Exception as exc:  # a scrape must answer even when the nodes do not
            log.warning("replication status not read for /metrics", extra={"error": type(exc).__name__})
            readable.add_metric([], 0.0)
            yield readable
            return
        readable.add_metric([], 1.0)
        for link in status.links:
            labels = [link.source, link.target, link.database]
            links.add_metric([*labels, link.state], 1.0)
            healthy.add_metric(labels, 1.0 if link.healthy else 0.0)
        overall.add_metric([], 1.0 if status.healthy else 0.0)
        yield from (readable, links, healthy, overall)


def _services() -> Services:
    return current_app.extensions["notebook"]  # type: ignore[no-any-return]


def _allowed(token: str) -> bool:
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    if any(request.headers.get(name) for name in _FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@blueprint.get("/metrics")
def metrics() -> Any:
    services = _services()
    config = services.config
    if not _allowed(config.metrics_token):
        reason = (
            "send 'Authorization: Bearer <METRICS_TOKEN>'"
            if config.metrics_token
            else ("set METRICS_TOKEN to scrape from anywhere but this machine")
        )
        return jsonify(error_body("FORBIDDEN", f"metrics are not public: {reason}")), 403
    body = generate_latest(_counters(config)) + generate_latest(_deployment_registry(services))
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def _counters(config: Config) -> CollectorRegistry:
    """Counters and histograms: every worker's under gunicorn, else this process's own."""
    if not config.prometheus_multiproc_dir:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=config.prometheus_multiproc_dir)
    return registry


def graphql_totals(config: Config) -> tuple[float, float]:
    """GraphQL requests so far and how many of them did not succeed, over every worker."""
    registry = _counters(config)
    total = failed = 0.0
    for family in registry.collect():
        if family.name != "notebook_graphql_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
                failed += sample.value if sample.labels.get("outcome") != "success" else 0.0
    return total, failed


def _deployment_registry(services: Services) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeploymentCollector(services))
    return registry
