"""`--metrics`: throughput, latency percentiles, lag and conflicts from the app's `/metrics`.

Two scrapes `interval` seconds apart: rates and percentiles are over that window (percentiles
over everything since start when the window saw no request), computed from the histogram
buckets the way Prometheus' `histogram_quantile` does.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
QUANTILES = (0.5, 0.95, 0.99)


def scrape(url: str, token: str, timeout: float = 10.0) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, headers=headers, timeout=timeout)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of cumulative bucket counts {upper bound: count} (linear in a bucket)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def _buckets(samples: Samples, name: str, by: str | None = None) -> dict[str, dict[float, float]]:
    grouped: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for (sample_name, labels), value in samples.items():
        if sample_name != name + "_bucket":
            continue
        label_map = dict(labels)
        grouped[label_map.get(by, "") if by else ""][float(label_map["le"])] += value
    return grouped


def _total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= set(found))


def _minus(second: Samples, first: Samples) -> Samples:
    return {key: value - first.get(key, 0.0) for key, value in second.items()}


def summarize(first: Samples, second: Samples, seconds: float) -> dict[str, Any]:
    window = _minus(second, first)
    requests = _total(window, "notebook_graphql_requests_total")
    errors = requests - _total(window, "notebook_graphql_requests_total", outcome="success")
    latency_source = window if _total(window, "notebook_graphql_request_seconds_count") else second
    graphql = _buckets(latency_source, "notebook_graphql_request_seconds").get("", {})
    couch_source = window if _total(window, "notebook_couchdb_request_seconds_count") else second
    couch = _buckets(couch_source, "notebook_couchdb_request_seconds", by="node")
    lags = {
        f"{dict(labels)['source']} -> {dict(labels)['target']} {dict(labels)['database']}": value
        for (name, labels), value in second.items()
        if name == "notebook_replication_lag_seconds"
    }
    return {
        "windowSeconds": round(seconds, 2),
        "graphqlRequestsPerSecond": round(requests / seconds, 3) if seconds else None,
        "graphqlErrorRatio": round(errors / requests, 4) if requests else 0.0,
        "graphqlLatencySeconds": {f"p{int(q * 100)}": quantile(q, graphql) for q in QUANTILES},
        "couchdbLatencySeconds": {
            node: {f"p{int(q * 100)}": quantile(q, buckets) for q in QUANTILES}
            for node, buckets in couch.items()
        },
        "replicationLagSeconds": lags,
        "maxLagSeconds": max(lags.values(), default=None),
        "conflictsDetected": _total(second, "notebook_conflicts_detected_total"),
        "conflictsResolved": _total(second, "notebook_conflicts_resolved_total"),
        "conflictsLeftForPeople": _total(second, "notebook_conflicts_left_for_people_total"),
        "failovers": _total(second, "notebook_couchdb_node_switches_total", event="failover"),
    }


def measure(url: str, token: str, interval: float) -> dict[str, Any]:
    first = scrape(url, token)
    started = time.monotonic()
    time.sleep(interval)  # the measuring window itself
    second = scrape(url, token)
    return summarize(first, second, time.monotonic() - started)
