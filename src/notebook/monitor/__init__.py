"""The cluster monitor (`notebook-monitor`, `scripts/monitor_cluster.py`): health of the database
nodes and replication links read from the nodes themselves or from the app's REST API, metrics
from `/metrics`, a live view and webhook alerts. docs/operations.md, "The cluster monitor"."""
