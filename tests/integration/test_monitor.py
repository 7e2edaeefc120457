"""The cluster monitor against real replicating nodes: a killed node is reported down with the
degraded exit code, and a webhook receiver on loopback gets exactly one alert for the incident
and one for the recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from notebook.database.design_docs import database_names
from notebook.database.replication import ReplicationManager
from tests.support.api_server import BIN, PROJECT_ROOT, clean_environment, serve_in_thread
from tests.support.servers import NodeSet, start_nodes
from tests.support.waiting import wait_for


class WebhookReceiver:
    """A small HTTP server on loopback that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[NodeSet, str]]:
    nodes = start_nodes(tmp_path / "nodes", 2)
    nodes.require_process_control()
    prefix = f"w{uuid.uuid4().hex[:8]}_"
    manager = ReplicationManager(
        nodes.urls, list(database_names(prefix).values()), nodes.user, nodes.password
    )
    try:
        manager.ensure_mesh()
        yield nodes, prefix
    finally:
        manager.close()
        nodes.stop()


def monitor_command(nodes: NodeSet, prefix: str, password_file: Path, *extra: str) -> list[str]:
    command = [str(BIN / "notebook-monitor"), "--nodes", ",".join(nodes.urls), "--prefix", prefix]
    if nodes.user:
        command += ["--user", nodes.user, "--password-file", str(password_file)]
    return command + list(extra)


def test_monitor_reports_a_killed_node_and_alerts_once_per_incident(
    mesh: tuple[NodeSet, str], tmp_path: Path
) -> None:
    nodes, prefix = mesh
    password_file = tmp_path / "password"
    password_file.write_text(nodes.password)
    env = clean_environment()
    receiver = WebhookReceiver()
    out_path = tmp_path / "watch.jsonl"
    with open(out_path, "wb") as out, open(tmp_path / "watch.err", "wb") as err:
        watcher = subprocess.Popen(
            monitor_command(nodes, prefix, password_file, "--watch", "--json", "--interval", "0.3",
                            "--alert-webhook", receiver.url),  # fmt: skip
            env=env, cwd=PROJECT_ROOT, stdout=out, stderr=err,
        )  # fmt: skip

    def rounds() -> list[dict[str, Any]]:
        return [json.loads(line) for line in out_path.read_text().splitlines() if line.startswith("{")]

    def health() -> tuple[int, dict[str, Any]]:
        done = subprocess.run(
            monitor_command(nodes, prefix, password_file, "--health", "--json"),
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return done.returncode, json.loads(done.stdout)

    try:
        wait_for(lambda: any(r["verdict"] == "healthy" for r in rounds()), 60, "a healthy round")
        code, report = health()
        assert code == 0 and report["verdict"] == "healthy", report
        assert [n["reachable"] for n in report["nodes"]] == [True, True]
        assert len(report["links"]) == 2 * len(database_names(prefix)), report["links"]
        assert all(link["state"] in ("running", "pending") for link in report["links"]), report["links"]
        assert all(set(n["databases"]) == set(database_names(prefix).values()) for n in report["nodes"])
        assert receiver.received == []
        script = monitor_command(nodes, prefix, password_file, "--health", "--json")
        script[0:1] = [sys.executable, str(PROJECT_ROOT / "scripts" / "monitor_cluster.py")]
        same = subprocess.run(script, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
        assert same.returncode == 0 and json.loads(same.stdout)["verdict"] == "healthy", same.stderr

        nodes[1].kill()
        code, report = health()
        assert code == 1 and report["verdict"] == "degraded", report
        assert [(n["url"], n["reachable"]) for n in report["nodes"]] == [
            (nodes.urls[0], True),
            (nodes.urls[1], False),
        ]
        assert [p["kind"] for p in report["problems"]] == ["node_down"]
        wait_for(lambda: receiver.received, 30, "the incident's alert")

        nodes[1].restart()
        wait_for(lambda: len(receiver.received) >= 2, 60, "the recovery's alert")
        seen = len(rounds())
        wait_for(lambda: len(rounds()) >= seen + 5, 30, "five more rounds after the recovery")
        assert [(a["status"], a["kind"], a["subject"]) for a in receiver.received] == [
            ("firing", "node_down", nodes.urls[1]),
            ("resolved", "node_down", nodes.urls[1]),
        ]
        assert any(r["verdict"] == "degraded" for r in rounds())
    finally:
        if watcher.poll() is None:
            os.kill(watcher.pid, signal.SIGINT)  # Ctrl-C, to our own child by PID
            watcher.wait(timeout=60)
        receiver.close()
    assert watcher.returncode == 0, (tmp_path / "watch.err").read_text()[-2000:]
    assert nodes.password not in out_path.read_text() or not nodes.password


@pytest.fixture
def served_app(app: Any) -> Iterator[str]:
    with serve_in_thread(app) as url:
        yield url


def test_monitor_reads_the_app_rest_api_and_its_metrics(
    app: Any, gql: Any, served_app: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from notebook.monitor.main import main

    user = gql.register()
    token_file = tmp_path / "token"
    token_file.write_text(user["token"])
    # not an admin yet: the REST API refuses, and the monitor says the app cannot be read
    assert main(["--api", served_app, "--token-file", str(token_file), "--health", "--json"]) == 2
    refused = json.loads(capsys.readouterr().out)
    assert (
        refused["problems"][0]["kind"] == "app_unreachable"
        and "FORBIDDEN" in refused["problems"][0]["message"]
    )

    app.extensions["notebook"].auth.set_admin(user["user"]["email"], True)
    assert main(["--api", served_app, "--token-file", str(token_file), "--health", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "api" and report["appStatus"] == "ready"
    assert [(n["url"], n["reachable"], n["active"]) for n in report["nodes"]] == [
        (app.extensions["notebook"].config.couchdb_url.rstrip("/") + "/", True, True)
    ]

    for _ in range(3):
        gql.data("query Ping { me { id } }", token=user["token"])
    code = main(
        ["--api", served_app, "--token-file", str(token_file), "--metrics", "--json", "--interval", "0.1"]
    )
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["graphqlLatencySeconds"]["p50"] is not None
    assert metrics["couchdbLatencySeconds"] and metrics["conflictsDetected"] >= 0

    # the tables, as a person sees them
    assert main(["--api", served_app, "--token-file", str(token_file), "--health", "--metrics",
                 "--interval", "0.1"]) == 0  # fmt: skip
    screen = capsys.readouterr().out
    assert "Database nodes" in screen and "HEALTHY" in screen and "GraphQL latency p99" in screen
