"""Shared fixtures: real local database nodes, the app built on them, and a GraphQL helper."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Config, load_config
from tests.support.servers import NodeSet, server_kind, start_nodes

TESTS_DIR = Path(__file__).resolve().parent
# a developer's .env must not change what the tests run (config/settings.py reads it when
# present); set before anything loads a Config, inherited by every server a test starts
os.environ["NOTEBOOK_ENV_FILE"] = ""


def pytest_report_header(config: pytest.Config) -> str:
    return f"database server: {server_kind()} (NOTEBOOK_TEST_SERVER; see docs/testing.md)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    kind = server_kind()
    for item in items:
        if Path(str(item.fspath)).is_relative_to(TESTS_DIR / "integration"):
            item.add_marker(pytest.mark.integration)
        for marker in item.iter_markers("servers"):
            if kind not in marker.args:
                reason = marker.kwargs.get("reason", "")
                item.add_marker(pytest.mark.skip(reason=f"only on {', '.join(marker.args)}: {reason}"))


@pytest.fixture(scope="session")
def couch_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSet]:
    """One node of the server under test (NOTEBOOK_TEST_SERVER) for the whole session."""
    nodes = start_nodes(tmp_path_factory.mktemp("couch"), 1)
    yield nodes
    nodes.stop()


@pytest.fixture
def config(couch_node: NodeSet) -> Config:
    """Testing configuration on its own database prefix, so tests never see each other's data."""
    return load_config(
        {"FLASK_ENV": "testing"},
        couchdb_url=couch_node.urls[0],
        db_prefix=f"t{uuid.uuid4().hex[:10]}_",
        **couch_node.credentials(),
    )


@pytest.fixture
def app(config: Config) -> Iterator[Any]:
    from notebook.api.app import create_app

    application = create_app(config)
    yield application
    services = application.extensions["notebook"]
    services.stopping.set()  # no background round recreates what is dropped next
    drop_databases(services)
    services.close()


def drop_databases(services: Any) -> None:
    """Delete a test's databases: a long session would otherwise keep thousands of them (and
    their view indexes) open in the session's database node."""
    for db in services.databases.all():
        try:
            db.destroy()
        except Exception as exc:  # noqa: BLE001 - a node a test killed or cut off: nothing to free there
            print(f"could not drop {db.name}: {exc}")


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


class GraphQL:
    """Sends GraphQL requests through the app's HTTP interface, as a front end would."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    def __call__(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> dict:
        return self.post(query, variables, token).get_json()

    def data(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> dict:
        """The `data` of a request that must succeed."""
        body = self(query, variables, token)
        assert not body.get("errors"), body.get("errors")
        return body["data"]

    def error_code(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> str:
        body = self(query, variables, token)
        assert body.get("errors"), f"expected an error, got {body}"
        return body["errors"][0]["extensions"]["code"]

    def register(self, email: str | None = None, password: str = "correct horse battery") -> dict:
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        payload = self.data(
            """mutation($email: String!, $password: String!) {
                 register(email: $email, password: $password, displayName: "Tester") {
                   accessToken refreshToken expiresIn user { id email }
                 }
               }""",
            {"email": email, "password": password},
        )["register"]
        payload["token"] = payload["accessToken"]
        return payload


@pytest.fixture
def gql(client: Any) -> GraphQL:
    return GraphQL(client)
