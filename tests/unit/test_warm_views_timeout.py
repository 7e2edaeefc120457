"""warm_views/build_view: CouchDB 3's 500 "timeout" on a view still building is asked again."""

from __future__ import annotations

import httpx
import pytest

from notebook.database.couch import CouchDBClient, DatabaseUnavailable
from notebook.database.design_docs import build_view


def _client(answers: list[httpx.Response]) -> tuple[CouchDBClient, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return answers.pop(0)

    return CouchDBClient("http://n0.test:5984/", transport=httpx.MockTransport(handle)), seen


TIMEOUT = {"error": "timeout", "reason": "The request could not be processed in a reasonable amount of time."}


def test_a_view_whose_build_outlasts_couchdbs_request_timeout_is_queried_again() -> None:
    client, seen = _client([httpx.Response(500, json=TIMEOUT), httpx.Response(200, json={"rows": []})])
    build_view(client.database("db"), "d", "v", timeout=60.0)
    assert seen == ["/db/_design/d/_view/v", "/db/_design/d/_view/v"]


def test_other_server_errors_still_raise_and_name_couchdbs_error() -> None:
    client, seen = _client([httpx.Response(500, json={"error": "unknown_error", "reason": "x"})])
    with pytest.raises(DatabaseUnavailable) as raised:
        build_view(client.database("db"), "d", "v", timeout=60.0)
    assert "500 unknown_error from http://n0.test:5984/" in raised.value.reason
    assert len(seen) == 1
