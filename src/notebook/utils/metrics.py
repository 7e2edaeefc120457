"""The Prometheus metrics every layer records into: one definition of each family, here.

Counters and histograms are recorded where the thing happens (a GraphQL request in the API, a
CouchDB request in the client, a conflict in the resolver). Under gunicorn, prometheus-client's
multiprocess mode writes them to files in PROMETHEUS_MULTIPROC_DIR (gunicorn_config.py sets it
up and cleans it at start), and `/metrics` adds up every worker. State that any process can see
for itself (node health, the active node, link states, warm-up) is not recorded here: `/metrics`
reads it at scrape time (api/metrics.py). docs/operations.md, "Metrics", lists every family.
"""

from __future__ import annotations

import re
import threading

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

GRAPHQL_REQUESTS = Counter(
    "notebook_graphql_requests",
    "GraphQL requests by operation name and outcome (success, error, rejected)",
    ["operation", "outcome"],
)
GRAPHQL_SECONDS = Histogram(
    "notebook_graphql_request_seconds",
    "Time to answer a GraphQL request, by operation name and outcome",
    ["operation", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
GRAPHQL_ERRORS = Counter("notebook_graphql_errors", "GraphQL errors by extensions.code", ["code"])
COUCHDB_SECONDS = Histogram(
    "notebook_couchdb_request_seconds",
    "Time of one HTTP request to a CouchDB node, by node and HTTP status ('error': no answer)",
    ["node", "status"],
    buckets=_LATENCY_BUCKETS,
)
COUCHDB_NODE_SWITCHES = Counter(
    "notebook_couchdb_node_switches",
    "Changes of the node requests go to: failover (away from a failing node) or failback",
    ["event"],
)
CONFLICTS_DETECTED = Counter(
    "notebook_conflicts_detected", "Conflicted documents found by the resolver", ["database"]
)
CONFLICTS_RESOLVED = Counter(
    "notebook_conflicts_resolved",
    "Conflicted documents settled: merged (notes) or by rule (other documents)",
    ["database", "how"],
)
CONFLICTS_LEFT_FOR_PEOPLE = Counter(
    "notebook_conflicts_left_for_people", "Note conflicts whose edits overlap, left for a person to resolve"
)
REPLICATION_LAG_SECONDS = Gauge(
    "notebook_replication_lag_seconds",
    "The last measured canary lag of a replication link (the most recent measurement of any process)",
    ["source", "target", "database"],
    multiprocess_mode="mostrecent",
)

_OPERATION_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")
_FIRST_OPERATION = re.compile(
    r"^\s*(?:#[^\n]*\n\s*)*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)"
)
_MAX_OPERATION_NAMES = 200  # per process: names are chosen by clients, the label set must stay bounded
_seen_operations: set[str] = set()
_seen_lock = threading.Lock()


def operation_label(operation_name: object, query: object) -> str:
    """A bounded label for a request's operation: its operationName (or the first operation's
    name in the document), "anonymous" without one, "other" once too many names were seen."""
    name = operation_name if isinstance(operation_name, str) and operation_name else None
    if name is None and isinstance(query, str):
        match = _FIRST_OPERATION.match(query[:2000])
        name = match.group(1) if match else None
    if name is None:
        return "anonymous"
    if not _OPERATION_NAME.match(name):
        return "other"
    with _seen_lock:
        if name in _seen_operations:
            return name
        if len(_seen_operations) >= _MAX_OPERATION_NAMES:
            return "other"
        _seen_operations.add(name)
    return name


ENCRYPTION_KEY_IN_USE = Gauge(
    "notebook_encryption_key_in_use",
    "1 for the data and index key this process seals new writes with (docs/security.md)",
    ["kind", "key_id"],
    multiprocess_mode="livemax",
)
