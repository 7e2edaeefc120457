"""The real server as a separate process: `notebook-server` and gunicorn, used over real HTTP."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.local_server import free_port
from tests.support.api_server import BIN, PROJECT_ROOT, ServerProcess, clean_environment
from tests.support.servers import NodeSet

PASSWORD = "correct horse battery"
WEAK_SECRET = "ab" * 24  # long enough, but typed, not generated


def _start(
    command: list[str], env: dict[str, str], cwd: Path, logdir: Path, port: int
) -> Iterator[ServerProcess]:
    server = ServerProcess(command, env, cwd, logdir, port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def dev_server(couch_node: NodeSet, tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    env = clean_environment(
        FLASK_ENV="development",
        COUCHDB_URL=couch_node.urls[0],
        COUCHDB_DB_PREFIX=f"p{uuid.uuid4().hex[:10]}_",
        **couch_node.environment(),
    )
    yield from _start([str(BIN / "notebook-server"), "--port", str(port)], env, tmp_path, tmp_path, port)


@pytest.fixture
def gunicorn_server(couch_node: NodeSet, tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    env = clean_environment(
        FLASK_ENV="testing",
        LOG_LEVEL="INFO",
        COUCHDB_URL=couch_node.urls[0],
        COUCHDB_DB_PREFIX=f"g{uuid.uuid4().hex[:10]}_",
        **couch_node.environment(),
    )
    command = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "notebook.api.app:create_app()"]
    # started in the repository root, as the README does, so gunicorn reads its gunicorn.conf.py
    yield from _start(command, env, PROJECT_ROOT, tmp_path, port)


def _graphql(
    server: ServerProcess, query: str, variables: dict | None = None, token: str | None = None
) -> Any:
    headers = {"Content-Type": "application/json", "X-Request-ID": f"t-{uuid.uuid4().hex[:12]}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers=headers,
        timeout=30,
    )
    assert response.headers["X-Request-ID"] == headers["X-Request-ID"]
    body = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    return body["data"], headers["X-Request-ID"]


REGISTER = """mutation($email: String!, $password: String!) {
  register(email: $email, password: $password) { accessToken user { id } } }"""
CREATE_NOTE = """mutation {
  createNote(input: {title: "Hello", content: "My first note", tags: ["demo"]}) { id title } }"""
SEARCH = '{ notes(search: "first") { totalCount edges { node { id title } } } }'


def _readme_session(server: ServerProcess) -> list[str]:
    """register, create a note, search it; returns the request ids used."""
    email = f"curl-{uuid.uuid4().hex[:8]}@example.com"
    registered, first_id = _graphql(server, REGISTER, {"email": email, "password": PASSWORD})
    token = registered["register"]["accessToken"]
    created, second_id = _graphql(server, CREATE_NOTE, token=token)
    found, third_id = _graphql(server, SEARCH, token=token)
    assert found["notes"]["totalCount"] == 1
    assert found["notes"]["edges"][0]["node"] == created["createNote"]
    return [first_id, second_id, third_id]


def _assert_json_log_lines(stderr: str, request_ids: list[str], skip_prefix: str | None = None) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    entries = []
    for line in lines:
        if skip_prefix and line.startswith(skip_prefix):
            continue
        entry = json.loads(line)  # every line the application writes is one JSON object
        assert isinstance(entry, dict) and "request_id" in entry, line
        assert "level" in entry and "message" in entry, line
        entries.append(entry)
    logged_ids = {entry["request_id"] for entry in entries}
    for request_id in request_ids:
        assert request_id in logged_ids, f"no log line for request {request_id}:\n{stderr[-2000:]}"
    for request_id in request_ids:
        request_lines = [e for e in entries if e["request_id"] == request_id and e["message"] == "request"]
        assert len(request_lines) == 1 and request_lines[0]["status"] == 200, request_lines
    # the password never reaches the logs
    assert PASSWORD not in stderr


def test_notebook_server_serves_the_readme_session(dev_server: ServerProcess) -> None:
    assert httpx.get(f"{dev_server.url}/health", timeout=5).json() == {"status": "ok"}
    explorer = httpx.get(f"{dev_server.url}/graphql", timeout=5)
    assert explorer.status_code == 200 and "html" in explorer.headers["content-type"]
    request_ids = _readme_session(dev_server)
    dev_server.stop()
    assert dev_server.process.returncode is not None
    _assert_json_log_lines(dev_server.stderr(), request_ids)


def test_gunicorn_serves_the_readme_session(gunicorn_server: ServerProcess) -> None:
    request_ids = _readme_session(gunicorn_server)
    # the two workers share nothing but the database: a token from one works on the other
    for _ in range(6):
        assert httpx.get(f"{gunicorn_server.url}/health", timeout=5).status_code == 200
    gunicorn_server.stop()
    assert gunicorn_server.process.returncode == 0
    _assert_json_log_lines(gunicorn_server.stderr(), request_ids)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"SECRET_KEY": WEAK_SECRET, "COUCHDB_USER": "admin", "COUCHDB_PASSWORD": "couch-pass-9f8e7d"},
        {
            "SECRET_KEY": "short-secret-1a2b3c",
            "COUCHDB_USER": "admin",
            "COUCHDB_PASSWORD": "couch-pass-9f8e7d",
        },
        {"SECRET_KEY": "long-enough-secret-" + "z" * 30, "COUCHDB_USER": "admin"},
        {"SECRET_KEY": "long-enough-secret-" + "z" * 30, "COUCHDB_PASSWORD": "couch-pass-9f8e7d"},
    ],
    ids=["no-secret", "weak-secret-with-credentials", "short-secret", "no-password", "no-user"],
)
@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_production_refuses_an_unsafe_configuration(
    tmp_path: Path, settings: dict[str, str], server: str
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/"
    env = clean_environment(FLASK_ENV="production", COUCHDB_URL=unreachable, **settings)
    result = subprocess.run(
        [str(BIN / "notebook-server"), "--port", str(free_port()), "--server", server],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    reason = result.stderr.strip()
    assert reason and "\n" not in reason, result.stderr
    assert "Traceback" not in reason
    for secret in (settings.get(name) for name in ("SECRET_KEY", "COUCHDB_PASSWORD")):
        if secret:
            assert secret not in reason and secret not in result.stdout


def test_production_runs_gunicorn_with_json_logs(tmp_path: Path) -> None:
    port = free_port()
    env = clean_environment(
        FLASK_ENV="production",
        FLASK_HOST="127.0.0.1",
        SECRET_KEY="production-secret-" + "s" * 32,
        COUCHDB_USER="notebook",
        COUCHDB_PASSWORD="couch-pass-9f8e7d",
        COUCHDB_URL=f"http://127.0.0.1:{free_port()}/",  # no database: the API is alive but not ready
    )
    server = ServerProcess([str(BIN / "notebook-server"), "--port", str(port)], env, tmp_path, tmp_path, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.process.poll() is None, server.stderr()[-3000:]
            try:
                # gunicorn accepts before a worker has booted: a short read timeout would send
                # the same request twice (two log lines) on a busy machine
                health = httpx.get(
                    f"{server.url}/health",
                    timeout=httpx.Timeout(60, connect=2),
                    headers={"X-Request-ID": "prod-health"},
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.stderr()[-3000:]
                time.sleep(0.1)  # polling interval, not a timing assertion
        assert health.status_code == 200
        ready = httpx.get(f"{server.url}/ready", timeout=10)
        assert ready.status_code == 503
        explorer = httpx.get(f"{server.url}/graphql", timeout=5)
        assert explorer.status_code == 404  # no explorer in production
    finally:
        server.stop()
    assert server.process.returncode == 0
    stderr = server.stderr()
    _assert_json_log_lines(stderr, ["prod-health"])
    assert any(json.loads(line)["logger"] == "gunicorn.error" for line in stderr.splitlines() if line.strip())
    assert "couch-pass-9f8e7d" not in stderr and "production-secret-" not in stderr


def test_production_serves_under_granian_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`notebook-server --server granian`: the README session over two granian workers, JSON
    log lines, metrics from both workers, and SIGTERM ends it."""
    from tests.support.servers import start_nodes

    nodes = start_nodes(tmp_path / "nodes", 1)
    try:
        user, password = nodes.user, nodes.password
        if not user:
            user, password = "ops", "granian-ops-pass-7c6b5a"
            nodes.add_admin(user, password)
        port = free_port()
        env = clean_environment(  # FLASK_ENV unset: production
            FLASK_HOST="127.0.0.1",
            SECRET_KEY="granian-secret-" + uuid.uuid4().hex + uuid.uuid4().hex,
            COUCHDB_URL=nodes.urls[0],
            COUCHDB_USER=user,
            COUCHDB_PASSWORD=password,
            COUCHDB_DB_PREFIX=f"gr{uuid.uuid4().hex[:8]}_",
            METRICS_TOKEN="granian-metrics-token-0123456789",
        )
        command = [str(BIN / "notebook-server"), "--port", str(port), "--workers", "2", "--server", "granian"]
        server = ServerProcess(command, env, tmp_path, tmp_path, port)
        try:
            server.wait_ready(timeout=120)
            request_ids = _readme_session(server)
            for _ in range(6):
                assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
            metrics = httpx.get(
                f"{server.url}/metrics",
                headers={"Authorization": "Bearer granian-metrics-token-0123456789"},
                timeout=10,
            )
            assert metrics.status_code == 200 and "graphql" in metrics.text
        finally:
            server.stop()
        assert server.process.returncode == 0, server.stderr()[-2000:]
        assert "shutdown completed" in server.stderr()
        _assert_json_log_lines(server.stderr(), request_ids)
        assert password not in server.stderr()
    finally:
        nodes.stop()
