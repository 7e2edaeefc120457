"""Safe by default, with real server processes: the README's gunicorn line serves production,
refuses to start without a secret or database credentials, and development keeps its secret."""

from __future__ import annotations

import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.local_server import free_port
from tests.support.api_server import (
    BIN,
    PROJECT_ROOT,
    ServerProcess,
    clean_environment,
    readme_gunicorn_command,
)
from tests.support.servers import NodeSet
from tests.support.waiting import wait_until

PRODUCTION = {
    "SECRET_KEY": "prod-" + uuid.uuid4().hex + uuid.uuid4().hex,
    "COUCHDB_USER": "couch-user-" + uuid.uuid4().hex[:6],
    "COUCHDB_PASSWORD": "couch-pass-" + uuid.uuid4().hex[:8],
}
REGISTER = """mutation($email: String!) {
  register(email: $email, password: "correct horse battery") { accessToken } }"""


@pytest.fixture
def readme_gunicorn(couch_node: NodeSet, tmp_path: Path) -> Iterator[ServerProcess]:
    """The README's gunicorn line as written (but on loopback), FLASK_ENV unset, production env vars."""
    port = free_port()
    env = clean_environment(
        COUCHDB_URL=couch_node.urls[0], COUCHDB_DB_PREFIX=f"s{uuid.uuid4().hex[:10]}_", **PRODUCTION
    )
    server = ServerProcess(readme_gunicorn_command(port), env, PROJECT_ROOT, tmp_path, port)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def test_readme_gunicorn_line_serves_production_by_default(readme_gunicorn: ServerProcess) -> None:
    url = readme_gunicorn.url
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.json() == {"status": "ok"}
    assert health.headers["server"] == "gunicorn"  # no version
    assert health.headers["x-content-type-options"] == "nosniff"
    # production: no explorer, no debugger console (introspection: test_graphql_limits.py)
    assert httpx.get(f"{url}/graphql", timeout=10).status_code == 404
    assert httpx.get(f"{url}/console", timeout=10).status_code == 404
    readme_gunicorn.stop()
    stderr = readme_gunicorn.stderr()
    assert readme_gunicorn.process.returncode == 0, stderr[-3000:]
    assert PRODUCTION["SECRET_KEY"] not in stderr and PRODUCTION["COUCHDB_PASSWORD"] not in stderr


@pytest.mark.parametrize(
    "missing",
    [("SECRET_KEY",), ("COUCHDB_PASSWORD",), ("COUCHDB_USER", "COUCHDB_PASSWORD")],
    ids=["no-secret", "no-password", "no-credentials"],
)
def test_readme_gunicorn_line_refuses_an_unsafe_environment(tmp_path: Path, missing: tuple[str, ...]) -> None:
    settings = {name: value for name, value in PRODUCTION.items() if name not in missing}
    env = clean_environment(COUCHDB_URL=f"http://127.0.0.1:{free_port()}/", **settings)
    result = subprocess.run(
        readme_gunicorn_command(free_port()),
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    reason = result.stderr.strip()
    assert reason.count("\n") == 0 and missing[0] in reason, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for value in settings.values():
        assert value not in result.stderr


def test_production_refuses_the_debugger(tmp_path: Path) -> None:
    env = clean_environment(COUCHDB_URL=f"http://127.0.0.1:{free_port()}/", FLASK_DEBUG="1", **PRODUCTION)
    result = subprocess.run(
        [str(BIN / "notebook-server"), "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "FLASK_DEBUG" in result.stderr and result.stderr.strip().count("\n") == 0


def _dev_server(couch_node: NodeSet, tmp_path: Path, secret_file: Path, prefix: str) -> ServerProcess:
    port = free_port()
    env = clean_environment(
        FLASK_ENV="development",
        DEV_SECRET_KEY_FILE=str(secret_file),
        COUCHDB_URL=couch_node.urls[0],
        COUCHDB_DB_PREFIX=prefix,
        **couch_node.environment(),
    )
    server = ServerProcess([str(BIN / "notebook-server"), "--port", str(port)], env, tmp_path, tmp_path, port)
    server.wait_healthy()
    # indexes build in the background after start-up; the test registers once they are ready
    wait_until(lambda: httpx.get(f"{server.url}/ready", timeout=10).status_code == 200, 120)
    return server


def test_development_keeps_its_generated_secret_across_restarts(couch_node: NodeSet, tmp_path: Path) -> None:
    secret_file = tmp_path / "var" / "dev_secret_key"
    prefix = f"d{uuid.uuid4().hex[:10]}_"
    first = _dev_server(couch_node, tmp_path, secret_file, prefix)
    try:
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        registered = httpx.post(
            f"{first.url}/graphql",
            json={"query": REGISTER, "variables": {"email": f"dev-{uuid.uuid4().hex[:8]}@example.com"}},
            timeout=30,
        ).json()
        token = registered["data"]["register"]["accessToken"]
        # no debugger unless FLASK_DEBUG=1, and no version in the Server header
        console = httpx.get(f"{first.url}/console", timeout=10)
        assert console.status_code == 404
        assert console.headers["server"] == "NoteBook"
    finally:
        first.stop()
    secret = secret_file.read_text()
    second = _dev_server(couch_node, tmp_path, secret_file, prefix)
    try:
        me = httpx.post(
            f"{second.url}/graphql",
            json={"query": "{ me { email } }"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).json()
        assert me["data"]["me"]["email"].startswith("dev-"), me
    finally:
        second.stop()
    assert secret_file.read_text() == secret
    assert secret.strip() not in first.stderr() + second.stderr()


def test_make_run_and_cluster_say_development_explicitly() -> None:
    result = subprocess.run(
        ["make", "-n", "run", "cluster"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    servers = [line for line in result.stdout.splitlines() if "scripts/dev_server.py" in line]
    assert len(servers) == 2, result.stdout
    assert all(line.startswith("FLASK_ENV=development ") for line in servers), servers


@pytest.mark.parametrize(("env", "console"), [("testing", 404), ("development", 200)])
def test_flask_debug_starts_the_debugger_in_development_only(
    couch_node: NodeSet, tmp_path: Path, env: str, console: int
) -> None:
    port = free_port()
    settings = clean_environment(
        FLASK_ENV=env,
        FLASK_DEBUG="1",
        DEV_SECRET_KEY_FILE=str(tmp_path / "secret"),
        COUCHDB_URL=couch_node.urls[0],
        COUCHDB_DB_PREFIX=f"d{uuid.uuid4().hex[:10]}_",
        **couch_node.environment(),
    )
    server = ServerProcess(
        [str(BIN / "notebook-server"), "--port", str(port)], settings, tmp_path, tmp_path, port
    )
    try:
        server.wait_healthy()
        assert httpx.get(f"{server.url}/console", timeout=10).status_code == console
    finally:
        server.stop()


@pytest.mark.parametrize("delay", [0.5, 2.0, 4.0, 6.0])
def test_gunicorn_stopped_while_its_workers_boot_exits_cleanly(
    couch_node: NodeSet, tmp_path: Path, delay: float
) -> None:
    """SIGTERM at several moments of start-up, workers booting and exiting: gunicorn exits 0.
    (Its child_exit hook once imported prometheus-client inside the SIGCHLD handler, and a
    second worker's exit during that import failed it: exit status 1 with a traceback.)"""
    port = free_port()
    env = clean_environment(
        COUCHDB_URL=couch_node.urls[0], COUCHDB_DB_PREFIX=f"s{uuid.uuid4().hex[:10]}_", **PRODUCTION
    )
    server = ServerProcess(readme_gunicorn_command(port), env, PROJECT_ROOT, tmp_path, port)
    try:
        assert wait_until(lambda: "Booting worker" in server.stderr(), timeout=30)
        time.sleep(delay)  # a moment of start-up to interrupt, not a timing assertion
    finally:
        server.stop()
    assert server.process.returncode == 0, server.stderr()[-3000:]
