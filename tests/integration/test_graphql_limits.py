"""GraphQL bounds over HTTP: costly, deep and flooding requests are refused before anything runs."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from graphql import get_introspection_query

from config.settings import Config, load_config
from notebook.utils.logging import JsonFormatter
from tests.support.servers import NodeSet

COUNT = "{ notes { totalCount } }"


def assert_refused(response: Any, code: str = "QUERY_TOO_COMPLEX") -> list[dict[str, Any]]:
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    errors = response.get_json()["errors"]
    assert errors and all(error["extensions"]["code"] == code for error in errors), errors
    assert "data" not in response.get_json() or response.get_json()["data"] is None
    return errors


def fragment_bomb(levels: int, root: str, leaf: str) -> str:
    fragments = [f"fragment F0 on {root} {{ {leaf} }}"]
    fragments += [f"fragment F{i} on {root} {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels + 1)]
    operation = "mutation" if root == "Mutation" else "query"
    return f"{operation} {{ ...F{levels} }}\n" + "\n".join(fragments)


@pytest.fixture
def account(gql: Any) -> dict:
    return gql.register()


def test_fragment_bomb_at_40_levels_is_refused_and_creates_nothing(gql: Any, account: dict) -> None:
    bomb = fragment_bomb(40, "Mutation", 'createNote(input: {title: "boom"}) { id }')
    errors = assert_refused(gql.post(bomb, token=account["token"]))
    assert any("mutations" in error["message"] for error in errors)
    assert gql.data(COUNT, token=account["token"])["notes"]["totalCount"] == 0


def test_fragment_bomb_is_refused_before_authentication(gql: Any) -> None:
    errors = assert_refused(gql.post(fragment_bomb(40, "Query", "me { id }")))
    assert any("cost" in error["message"] for error in errors)


def test_nested_pages_are_too_costly(gql: Any, account: dict) -> None:
    query = "{ notes(first: 100) { edges { node { revisions(first: 100) { id title } } } } }"
    [error] = assert_refused(gql.post(query, token=account["token"]))
    assert "cost" in error["message"] and "10000" in error["message"]


def test_two_hundred_aliased_creates_run_none(gql: Any, account: dict) -> None:
    creates = " ".join(f'c{i}: createNote(input: {{title: "n{i}"}}) {{ id }}' for i in range(200))
    [error] = assert_refused(gql.post(f"mutation {{ {creates} }}", token=account["token"]))
    assert "aliases" in error["message"]
    assert gql.data(COUNT, token=account["token"])["notes"]["totalCount"] == 0


def test_root_mutations_per_request_are_capped(gql: Any, account: dict, config: Config) -> None:
    limit = config.graphql_max_root_mutations
    spread = " ".join(["...Create"] * 2)
    creates = " ".join(f'c{i}: createNote(input: {{title: "n{i}"}}) {{ id }}' for i in range(limit // 2 + 1))
    query = f"mutation {{ {spread} }} fragment Create on Mutation {{ {creates} }}"
    [error] = assert_refused(gql.post(query, token=account["token"]))
    assert "mutations" in error["message"]
    assert gql.data(COUNT, token=account["token"])["notes"]["totalCount"] == 0
    allowed = " ".join(f'c{i}: createNote(input: {{title: "n{i}"}}) {{ id }}' for i in range(limit))
    assert len(gql.data(f"mutation {{ {allowed} }}", token=account["token"])) == limit


def test_alias_flood_of_searches_is_refused(gql: Any, account: dict) -> None:
    searches = " ".join(f's{i}: notes(search: "x{i}") {{ totalCount }}' for i in range(2000))
    assert_refused(gql.post(f"{{ {searches} }}", token=account["token"]))


def test_a_batch_is_refused_clearly(client: Any) -> None:
    response = client.post("/graphql", json=[{"query": "{ me { id } }"}, {"query": "{ me { id } }"}])
    [error] = assert_refused(response, "BAD_USER_INPUT")
    assert "batch" in error["message"]


def test_limits_follow_the_settings(couch_node: NodeSet) -> None:
    from notebook.api.app import create_app

    config = load_config(
        {"FLASK_ENV": "testing", "GRAPHQL_MAX_DEPTH": "2", "GRAPHQL_MAX_ALIASES": "1"},
        couchdb_url=couch_node.urls[0],
        db_prefix=f"t{uuid.uuid4().hex[:10]}_",
        **couch_node.credentials(),
    )
    app = create_app(config)
    try:
        client = app.test_client()
        assert client.post("/graphql", json={"query": "{ me { id } }"}).status_code == 200
        [error] = assert_refused(
            client.post("/graphql", json={"query": '{ note(id: "x") { notebook { id } } }'})
        )
        assert "the limit is 2" in error["message"]
        assert_refused(client.post("/graphql", json={"query": "{ a: me { id } b: me { id } }"}))
    finally:
        app.extensions["notebook"].close()


# -- introspection, suggestions, explorer ---------------------------------------------------------


def test_development_tools_load_the_schema_through_introspection(gql: Any, config: Config) -> None:
    assert config.graphql_introspection
    for descriptions in (True, False):
        data = gql.data(get_introspection_query(descriptions=descriptions))
        names = {t["name"] for t in data["__schema"]["types"]}
        assert {"Query", "Mutation", "Note", "NoteConnection"} <= names


@pytest.fixture
def locked_down(couch_node: NodeSet) -> Iterator[Any]:
    """An app with production's GraphQL switches (introspection, suggestions, explorer off)."""
    from notebook.api.app import create_app

    production = load_config(
        {
            "FLASK_ENV": "production",
            "SECRET_KEY": "unused-" + uuid.uuid4().hex,
            "COUCHDB_USER": "u",
            "COUCHDB_PASSWORD": "p",
        }
    )
    config = load_config(
        {"FLASK_ENV": "testing"},
        couchdb_url=couch_node.urls[0],
        db_prefix=f"t{uuid.uuid4().hex[:10]}_",
        graphql_introspection=production.graphql_introspection,
        graphql_explorer=production.graphql_explorer,
        graphql_field_suggestions=production.graphql_field_suggestions,
        **couch_node.credentials(),
    )
    app = create_app(config)
    yield app.test_client()
    app.extensions["notebook"].close()


def test_production_refuses_introspection(locked_down: Any) -> None:
    response = locked_down.post("/graphql", json={"query": get_introspection_query()})
    errors = assert_refused(response, "BAD_USER_INPUT")
    assert any("introspection" in error["message"].lower() for error in errors)
    assert "Query" not in json.dumps(response.get_json())
    typename = locked_down.post("/graphql", json={"query": "{ __typename }"})
    assert typename.get_json() == {"data": {"__typename": "Query"}}


def test_production_gives_no_suggestions(locked_down: Any, client: Any) -> None:
    for query in (
        "{ note { titl } }",
        "{ notez { totalCount } }",
        "{ notes(orderBy: TITLE_AS) { totalCount } }",
    ):
        hinted = client.post("/graphql", json={"query": query}).get_json()["errors"]
        assert any("Did you mean" in error["message"] for error in hinted), hinted
        quiet = locked_down.post("/graphql", json={"query": query}).get_json()["errors"]
        assert quiet and not any("Did you mean" in error["message"] for error in quiet), quiet
    variables = {
        "query": "query($o: NoteOrder) { notes(orderBy: $o) { totalCount } }",
        "variables": {"o": "TITLE_AS"},
    }
    quiet = locked_down.post("/graphql", json=variables).get_json()["errors"]
    assert quiet and not any("Did you mean" in error["message"] for error in quiet), quiet


def test_production_has_no_explorer(locked_down: Any, client: Any) -> None:
    assert client.get("/graphql").status_code == 200
    response = locked_down.get("/graphql")
    assert response.status_code == 404
    assert response.get_json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


# -- masked internal errors -----------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The JSON log lines the application writes, as an operator would read them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def test_internal_errors_are_masked_with_a_request_id_found_in_the_log(
    app: Any, gql: Any, account: dict, json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("CouchError at /srv/notebook/secret.py: password=hunter2")

    monkeypatch.setattr(app.extensions["notebook"].notes, "list_notes", broken)
    response = gql.post(COUNT, token=account["token"])
    text = response.get_data(as_text=True)
    for leak in ("hunter2", "CouchError", "secret.py", "RuntimeError", "Traceback"):
        assert leak not in text
    [error] = response.get_json()["errors"]
    assert error["message"] == "internal server error"
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    request_id = error["extensions"]["requestId"]
    assert request_id == response.headers["X-Request-ID"]
    entries = [json.loads(line) for line in json_log.getvalue().splitlines()]
    logged = [e for e in entries if e["request_id"] == request_id and "exception" in e]
    assert logged and "hunter2" in logged[0]["exception"]  # the operator sees the details


def test_an_unhandled_error_outside_graphql_is_masked_too(
    app: Any, client: Any, json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("/srv/notebook/secret.py exploded")

    monkeypatch.setattr("notebook.api.app.jsonify", _jsonify_failing_once(broken))
    response = client.get("/health", headers={"X-Request-ID": "probe-1234"})
    assert response.status_code == 500
    assert "secret.py" not in response.get_data(as_text=True)
    assert response.get_json()["errors"][0]["extensions"] == {
        "code": "INTERNAL_SERVER_ERROR",
        "requestId": "probe-1234",
    }
    assert any(
        json.loads(line)["request_id"] == "probe-1234" and "exception" in json.loads(line)
        for line in json_log.getvalue().splitlines()
    )


def _jsonify_failing_once(failure: Any) -> Any:
    from flask import jsonify

    calls = {"n": 0}

    def patched(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            failure()
        return jsonify(*args, **kwargs)

    return patched
