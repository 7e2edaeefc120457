"""Security headers on every response, CORS only for CORS_ORIGINS, and 413 for oversized bodies,
declared or chunked, through real servers (gunicorn and werkzeug's)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from config.settings import load_config
from devtools.local_server import free_port
from tests.support.api_server import BIN, PROJECT_ROOT, ServerProcess, clean_environment, raw_request
from tests.support.servers import NodeSet

ALLOWED_ORIGIN = "http://localhost:3000"  # the testing configuration's CORS_ORIGINS
BODY_LIMIT = 4096


def assert_security_headers(headers: Any, html: bool = False) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    if not html:
        assert "script-src" not in policy


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/health", None, 200),
        ("GET", "/ready", None, 200),
        ("POST", "/graphql", {"query": "{ me { id } }"}, 200),
        ("POST", "/graphql", {"query": "{ nope }"}, 400),
        ("POST", "/graphql", [{"query": "{ me { id } }"}], 400),
        ("GET", "/console", None, 404),
        ("GET", "/nowhere", None, 404),
        ("DELETE", "/graphql", None, 405),
        ("GET", "/api/replication/status", None, 401),
    ],
)
def test_every_response_carries_the_headers(
    client: Any, method: str, path: str, body: Any, status: int
) -> None:
    response = client.open(path, method=method, json=body)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert_security_headers(response.headers)
    assert "Server" not in response.headers


def test_token_responses_are_not_stored(client: Any) -> None:
    email = f"h-{uuid.uuid4().hex[:8]}@example.com"
    query = 'mutation($e: String!) { register(email: $e, password: "correct horse battery") { accessToken } }'
    response = client.post("/graphql", json={"query": query, "variables": {"e": email}})
    assert response.get_json()["data"]["register"]["accessToken"]
    assert response.headers["Cache-Control"] == "no-store"


def test_the_explorer_page_allows_only_its_cdn_and_its_own_inline_script(client: Any) -> None:
    response = client.get("/graphql")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert_security_headers(response.headers, html=True)
    policy = response.headers["Content-Security-Policy"]
    scripts = re.findall(r"<script>(.*?)</script>", response.get_data(as_text=True), re.DOTALL)
    assert scripts
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    script_sources = re.search(r"script-src ([^;]*)", policy).group(1).split()  # type: ignore[union-attr]
    assert "'unsafe-inline'" not in script_sources and "'unsafe-eval'" not in script_sources
    assert "connect-src 'self'" in policy


# -- CORS -----------------------------------------------------------------------------------------


def test_cors_answers_only_the_configured_origins(client: Any) -> None:
    allowed = client.post("/graphql", json={"query": "{ me { id } }"}, headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    foreign = client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in foreign.headers
    preflight = client.options(
        "/graphql",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Headers" not in preflight.headers


@pytest.fixture
def production_cors_client(couch_node: NodeSet) -> Iterator[Any]:
    """An app with production's CORS default: no origin at all."""
    from notebook.api.app import create_app

    production = load_config({"FLASK_ENV": "production"})
    config = load_config(
        {"FLASK_ENV": "testing"},
        couchdb_url=couch_node.urls[0],
        db_prefix=f"t{uuid.uuid4().hex[:10]}_",
        cors_origins=production.cors_origins,
        **couch_node.credentials(),
    )
    app = create_app(config)
    yield app.test_client()
    app.extensions["notebook"].close()


def test_production_allows_no_origin_unless_configured(production_cors_client: Any) -> None:
    for origin in (ALLOWED_ORIGIN, "https://evil.example", "null"):
        response = production_cors_client.post(
            "/graphql", json={"query": "{ me { id } }"}, headers={"Origin": origin}
        )
        assert "Access-Control-Allow-Origin" not in response.headers


# -- real servers: Server header and chunked bodies -------------------------------------------------


@pytest.fixture(scope="module")
def real_servers(
    couch_node: NodeSet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    """gunicorn (the README's way) and notebook-server in development (werkzeug), small body limit."""
    logs = tmp_path_factory.mktemp("servers")
    settings = {
        "COUCHDB_URL": couch_node.urls[0],
        "COUCHDB_DB_PREFIX": f"h{uuid.uuid4().hex[:10]}_",
        "MAX_REQUEST_BYTES": str(BODY_LIMIT),
        **couch_node.environment(),
    }
    servers: dict[str, ServerProcess] = {}
    try:
        port = free_port()
        servers["gunicorn"] = ServerProcess(
            [str(BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}", "notebook.api.app:create_app()"],
            clean_environment(FLASK_ENV="testing", **settings),
            PROJECT_ROOT,
            logs,
            port,
        )
        port = free_port()
        servers["werkzeug"] = ServerProcess(
            [str(BIN / "notebook-server"), "--port", str(port)],
            clean_environment(FLASK_ENV="development", DEV_SECRET_KEY_FILE=str(logs / "secret"), **settings),
            logs,
            logs,
            port,
        )
        for server in servers.values():
            server.wait_healthy()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("name", ["gunicorn", "werkzeug"])
def test_no_server_version_banner(real_servers: dict[str, ServerProcess], name: str) -> None:
    status, headers, _ = raw_request(
        real_servers[name].port, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", []
    )
    assert status == 200
    assert headers["server"] in ("gunicorn", "NoteBook")
    assert not re.search(r"\d", headers["server"]), headers["server"]
    assert headers["x-frame-options"] == "DENY"


def _chunks(total: int, size: int = 1024) -> list[bytes]:
    payload = json.dumps({"query": "{ me { id } }", "variables": {"pad": "x" * total}}).encode()
    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in parts] + [b"0\r\n\r\n"]


@pytest.mark.parametrize("name", ["gunicorn", "werkzeug"])
def test_an_oversized_chunked_body_is_refused_like_a_declared_one(
    real_servers: dict[str, ServerProcess], name: str
) -> None:
    port = real_servers[name].port
    head = (
        "POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = raw_request(port, head, _chunks(4 * BODY_LIMIT))
    assert status == 413
    assert json.loads(body)["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert headers["x-content-type-options"] == "nosniff"
    declared = json.dumps({"query": "{ me { id } }", "variables": {"pad": "x" * 4 * BODY_LIMIT}})
    head = (
        "POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(declared)}\r\nConnection: close\r\n\r\n"
    )
    status, _, body = raw_request(port, head, [declared.encode()])
    assert status == 413
    assert json.loads(body)["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    # a small chunked body still works
    head = head.replace(f"Content-Length: {len(declared)}", "Transfer-Encoding: chunked")
    status, _, body = raw_request(port, head, _chunks(10))
    assert status == 200 and json.loads(body) == {"data": {"me": None}}


def test_the_servers_logged_no_traceback(real_servers: dict[str, ServerProcess]) -> None:
    for server in real_servers.values():
        assert "Traceback" not in server.stderr()
