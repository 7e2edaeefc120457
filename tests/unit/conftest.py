"""Fixtures of the notebook.database.couch unit tests: an in-memory cluster and clients of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notebook.database.couch import CouchDBClient
from tests.unit.couch_fake import FakeCluster


@pytest.fixture
def cluster() -> FakeCluster:
    fake = FakeCluster(3)
    fake.create_db("notes")
    return fake


@pytest.fixture
def make_client(cluster: FakeCluster) -> Iterator[Callable[..., CouchDBClient]]:
    clients: list[CouchDBClient] = []

    def build(**options: Any) -> CouchDBClient:
        options.setdefault("probe_interval", 0.05)
        urls = options.pop("urls", None) or cluster.urls()
        client = CouchDBClient(urls, transport=cluster.transport, **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
