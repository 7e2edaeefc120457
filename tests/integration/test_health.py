"""Liveness, readiness, request ids and CORS."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from config.settings import Config
from devtools.local_server import free_port


def test_health(client: Any) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_when_the_database_answers(client: Any) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


@pytest.fixture
def app_without_database(config: Config) -> Iterator[Any]:
    from notebook.api.app import create_app

    # a loopback port nobody listens on
    unreachable = replace(config, couchdb_url=f"http://127.0.0.1:{free_port()}/", replication_nodes=())
    application = create_app(unreachable)
    yield application
    application.extensions["notebook"].close()


def test_not_ready_without_the_database(app_without_database: Any) -> None:
    client = app_without_database.test_client()
    assert client.get("/health").status_code == 200  # the process itself is fine
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_graphql_without_the_database(app_without_database: Any) -> None:
    client = app_without_database.test_client()
    response = client.post("/graphql", json={"query": "{ me { id } }"})
    assert response.status_code == 503
    body = response.get_json()
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "Traceback" not in response.get_data(as_text=True)


def test_request_id_is_echoed(client: Any) -> None:
    response = client.get("/health", headers={"X-Request-ID": "abc-123.x_y"})
    assert response.headers["X-Request-ID"] == "abc-123.x_y"
    response = client.post("/graphql", json={"query": "{ me { id } }"}, headers={"X-Request-ID": "gql-1"})
    assert response.headers["X-Request-ID"] == "gql-1"


def test_request_id_is_made_up_when_missing_or_unsafe(client: Any) -> None:
    generated = {client.get("/health").headers["X-Request-ID"] for _ in range(3)}
    assert len(generated) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in generated)
    for unsafe in ("a b", "x" * 65, "<script>", "caf\u00e9", "a;b"):
        echoed = client.get("/health", headers={"X-Request-ID": unsafe}).headers["X-Request-ID"]
        assert echoed != unsafe and re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_error_answers_carry_the_request_id(client: Any) -> None:
    response = client.post(
        "/graphql", data="{bad", content_type="application/json", headers={"X-Request-ID": "e1"}
    )
    assert response.status_code == 400
    assert response.headers["X-Request-ID"] == "e1"


def test_cors_for_an_allowed_origin(client: Any, config: Config) -> None:
    origin = config.cors_origins[0]
    response = client.post("/graphql", json={"query": "{ me { id } }"}, headers={"Origin": origin})
    assert response.headers.get("Access-Control-Allow-Origin") == origin
    preflight = client.options(
        "/graphql",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status_code < 300
    assert preflight.headers.get("Access-Control-Allow-Origin") == origin
    assert "POST" in preflight.headers.get("Access-Control-Allow-Methods", "")
    allowed_headers = preflight.headers.get("Access-Control-Allow-Headers", "").lower()
    assert "authorization" in allowed_headers


def test_no_cors_for_another_origin(client: Any) -> None:
    for origin in ("https://evil.example", "http://localhost:3001", "null"):
        response = client.post("/graphql", json={"query": "{ me { id } }"}, headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in response.headers, origin
        preflight = client.options(
            "/graphql", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert "Access-Control-Allow-Origin" not in preflight.headers, origin


def test_cors_origins_come_from_the_configuration(config: Config) -> None:
    from notebook.api.app import create_app

    application = create_app(replace(config, cors_origins=("https://notes.example",)))
    try:
        client = application.test_client()
        allowed = client.get("/health", headers={"Origin": "https://notes.example"})
        assert allowed.headers.get("Access-Control-Allow-Origin") == "https://notes.example"
        default = client.get("/health", headers={"Origin": "http://localhost:3000"})
        assert "Access-Control-Allow-Origin" not in default.headers
    finally:
        application.extensions["notebook"].close()
