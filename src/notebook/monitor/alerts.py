"""Webhook alerts: one POST when an incident starts, one when it is over.

An incident is one (kind, subject) problem (report.py). A node down alerts at once; a failing
link only once it has failed for `link_grace_seconds` while both its nodes answer (CouchDB
backs off a job that crashed, and a node that just came back takes a moment to catch up, so a
short failure is not worth waking anyone). A POST that fails is tried again next round.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from notebook.monitor.report import ClusterReport, Problem


@dataclass
class _Incident:
    problem: Problem
    first_seen: float
    announced: bool = False


class AlertTracker:
    def __init__(self, webhook_url: str, link_grace_seconds: float = 60.0,
                 post: Callable[[str, dict[str, Any]], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.webhook_url = webhook_url
        self.link_grace_seconds = link_grace_seconds
        self._post = post or _post_json
        self._clock = clock
        self._open: dict[tuple[str, str], _Incident] = {}
        self._unsent_recoveries: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []

    def update(self, report: ClusterReport) -> None:
        """Compare this round's problems with the open incidents; post what started or ended."""
        now = self._clock()
        current = {(p.kind, p.subject): p for p in report.problems}
        for key, problem in current.items():
            incident = self._open.setdefault(key, _Incident(problem, now))
            incident.problem = problem
            grace = self.link_grace_seconds if problem.kind == "link_failing" else 0.0
            if not incident.announced and now - incident.first_seen >= grace:
                incident.announced = self._send(_alert("firing", problem, report))
        for key in [key for key in self._open if key not in current]:
            incident = self._open.pop(key)
            if incident.announced:
                self._unsent_recoveries.append(_alert("resolved", incident.problem, report))
        self._unsent_recoveries = [alert for alert in self._unsent_recoveries if not self._send(alert)]

    def _send(self, alert: dict[str, Any]) -> bool:
        if self._post(self.webhook_url, alert):
            self.sent.append(alert)
            return True
        return False


def _alert(status: str, problem: Problem, report: ClusterReport) -> dict[str, Any]:
    return {
        "status": status,  # firing | resolved
        "kind": problem.kind,
        "subject": problem.subject,
        "message": problem.message if status == "firing" else f"recovered: {problem.message}",
        "verdict": report.verdict,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": "notebook-monitor",
    }


def _post_json(url: str, alert: dict[str, Any]) -> bool:
    try:
        response = httpx.post(url, content=json.dumps(alert), headers={"Content-Type": "application/json"},
                              timeout=10)  # fmt: skip
    except httpx.HTTPError as exc:
        print(f"notebook-monitor: alert not delivered ({type(exc).__name__}); retrying", file=sys.stderr)
        return False
    if response.status_code >= 300:
        print(f"notebook-monitor: alert refused (HTTP {response.status_code}); retrying", file=sys.stderr)
        return False
    return True
