"""The monitor's rules: verdicts, incidents and their alerts, percentiles from buckets."""

from __future__ import annotations

from typing import Any

from notebook.database.replication import LinkStatus
from notebook.monitor.alerts import AlertTracker
from notebook.monitor.metrics_view import quantile
from notebook.monitor.report import ClusterReport, NodeReport, find_problems

A, B = "http://a/", "http://b/"


def report(a_up: bool = True, link_state: str = "running") -> ClusterReport:
    found = ClusterReport("nodes", nodes=[NodeReport(A, a_up), NodeReport(B, True, latency_ms=5.0)])
    found.links = [LinkStatus(B, A, "db", link_state)]
    found.problems = find_problems(found, latency_threshold_ms=1000)
    return found


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_verdicts_and_a_down_node_owns_its_links() -> None:
    assert report().verdict == "healthy"
    down = report(a_up=False, link_state="crashing")
    assert down.verdict == "degraded" and [p.kind for p in down.problems] == ["node_down"]
    assert ClusterReport("nodes", nodes=[NodeReport(A, False)]).verdict == "down"


def test_one_alert_per_incident_and_one_per_recovery_with_a_grace_for_links() -> None:
    posted: list[dict[str, Any]] = []
    clock = Clock()
    tracker = AlertTracker("http://hook", link_grace_seconds=60, post=lambda _u, a: posted.append(a) or True,
                           clock=clock)  # fmt: skip
    for _ in range(3):
        tracker.update(report(a_up=False))
    tracker.update(report())
    tracker.update(report())
    assert [(a["status"], a["kind"]) for a in posted] == [("firing", "node_down"), ("resolved", "node_down")]
    posted.clear()
    tracker.update(report(link_state="crashing"))
    clock.now = 30
    tracker.update(report(link_state="crashing"))
    tracker.update(report())  # over within the grace: nobody is told
    assert posted == []
    tracker.update(report(link_state="error"))
    clock.now = 100
    tracker.update(report(link_state="error"))
    assert [(a["status"], a["kind"]) for a in posted] == [("firing", "link_failing")]


def test_an_alert_that_was_not_delivered_is_sent_next_round_once() -> None:
    answers = iter([False, True, True])
    posted: list[dict[str, Any]] = []

    def post(_url: str, alert: dict[str, Any]) -> bool:
        ok = next(answers)
        if ok:
            posted.append(alert)
        return ok

    tracker = AlertTracker("http://hook", post=post)
    tracker.update(report(a_up=False))
    tracker.update(report(a_up=False))
    tracker.update(report())
    assert [a["status"] for a in posted] == ["firing", "resolved"]


def test_quantiles_from_cumulative_buckets() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == 0.1
    assert abs((quantile(0.95, buckets) or 0) - 0.75) < 1e-9
    assert quantile(0.5, {float("inf"): 0.0}) is None
