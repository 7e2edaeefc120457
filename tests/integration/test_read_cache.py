"""The read cache (database/couch/read_cache.py) on a real node: repeated reads cost no request,
and a write made anywhere is seen within the follower's next polls, never hidden longer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from config.settings import Config
from tests.conftest import GraphQL, drop_databases
from tests.support.api_server import gunicorn_beside
from tests.support.servers import NodeSet

NOTE = "query($id: ID!) { note(id: $id) { id title version } }"
CREATE = 'mutation { createNote(input: {title: "first", content: "cached words"}) { id version } }'
REGISTER = "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { accessToken } }"
RENAME = """mutation($id: ID!, $v: String!, $t: String!) {
  updateNote(id: $id, version: $v, input: {title: $t}) { version } }"""
# a poll of the follower, then the next one, is the longest a write elsewhere may stay hidden
POLLS_ALLOWED = 2


@pytest.fixture
def cached_apps(config: Config) -> Iterator[list[Any]]:
    """Two app instances with the read cache on, on the same databases, as two server processes
    would be; each has its own client, cache and follower."""
    from notebook.api.app import create_app

    cached = dataclasses.replace(config, read_cache_enabled=True, read_cache_poll_seconds=0.05)
    apps = [create_app(cached), create_app(cached)]
    for app in apps:
        follower = app.extensions["notebook"].cache_follower
        assert _wait(lambda f=follower: f.cache.live, 30), "the read cache never went live"
    yield apps
    for app in apps:
        app.extensions["notebook"].stopping.set()
    drop_databases(apps[0].extensions["notebook"])
    for app in apps:
        app.extensions["notebook"].close()


def _wait(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def _requests(app: Any) -> int:
    return app.extensions["notebook"].couch.requests.total


def _sent_while(app: Any, action: Any) -> tuple[list[tuple[str, dict]], Any]:
    """The (path, params) of every request the app sent to CouchDB during `action()`, and what
    `action()` returned."""
    client = app.extensions["notebook"].couch
    original, sent = client.request, []

    def recording(method: str, path: str, **kwargs: Any) -> Any:
        sent.append((path, dict(kwargs.get("params") or {})))
        return original(method, path, **kwargs)

    client.request = recording
    try:
        return sent, action()
    finally:
        del client.request


def _polls(app: Any) -> int:
    return app.extensions["notebook"].cache_follower.polls


def test_a_repeated_read_costs_no_database_request(cached_apps: list[Any]) -> None:
    a = GraphQL(cached_apps[0].test_client())
    token = a.register()["token"]
    note = a.data(CREATE, token=token)["createNote"]
    a.data(NOTE, {"id": note["id"]}, token)
    polls = _polls(cached_apps[0])  # the feed's echo of our own writes evicts once more
    assert _wait(lambda: _polls(cached_apps[0]) >= polls + 2, 10)
    a.data(NOTE, {"id": note["id"]}, token)  # the user, the note and its notebook are now cached
    before = _requests(cached_apps[0])
    for _ in range(5):
        assert a.data(NOTE, {"id": note["id"]}, token)["note"]["title"] == "first"
    assert _requests(cached_apps[0]) == before
    stats = cached_apps[0].extensions["notebook"].couch.read_cache.stats
    assert stats["hits"] >= 15


def test_a_write_through_another_instance_is_seen_within_two_polls(cached_apps: list[Any]) -> None:
    a, b = (GraphQL(app.test_client()) for app in cached_apps)
    token = a.register()["token"]
    note = a.data(CREATE, token=token)["createNote"]
    for _ in range(2):
        assert a.data(NOTE, {"id": note["id"]}, token)["note"]["title"] == "first"  # cached in a
        assert b.data(NOTE, {"id": note["id"]}, token)["note"]["title"] == "first"  # and in b
    b.data(RENAME, {"id": note["id"], "v": note["version"], "t": "second"}, token)
    polls_at_write = _polls(cached_apps[0])
    assert _wait(lambda: a.data(NOTE, {"id": note["id"]}, token)["note"]["title"] == "second", 10)
    assert _polls(cached_apps[0]) - polls_at_write <= POLLS_ALLOWED


PAGE = "{ notes(first: 20) { edges { node { id title } } } }"


def test_a_page_reads_only_the_index_and_shows_a_write_elsewhere_within_two_polls(
    cached_apps: list[Any],
) -> None:
    """With the cache live a page asks the server for index rows alone (no `include_docs`),
    and its documents come from the cache; a rename through another instance still shows."""
    a, b = (GraphQL(app.test_client()) for app in cached_apps)
    token = a.register()["token"]
    notes = [a.data(CREATE, token=token)["createNote"] for _ in range(3)]
    polls = _polls(cached_apps[0])
    assert _wait(lambda: _polls(cached_apps[0]) >= polls + 2, 10)  # the echo of our writes
    a.data(PAGE, token=token)  # the page's documents are now cached
    sent, data = _sent_while(cached_apps[0], lambda: a.data(PAGE, token=token))
    titles = [edge["node"]["title"] for edge in data["notes"]["edges"]]
    assert titles == ["first"] * 3
    views = [(path, params) for path, params in sent if "/_view/notes_by_updated" in path]
    assert len(views) == 1 and not views[0][1].get("include_docs")
    assert not [path for path, _ in sent if path.endswith("_all_docs")]  # no document fetched
    b.data(RENAME, {"id": notes[1]["id"], "v": notes[1]["version"], "t": "second"}, token)
    polls_at_write = _polls(cached_apps[0])

    def renamed() -> bool:
        edges = a.data(PAGE, token=token)["notes"]["edges"]
        return sorted(edge["node"]["title"] for edge in edges) == ["first", "first", "second"]

    assert _wait(renamed, 10)
    assert _polls(cached_apps[0]) - polls_at_write <= POLLS_ALLOWED


SHARE = "mutation($id: ID!, $e: String!) { shareNotebook(id: $id, email: $e, role: VIEWER) { id } }"
UNSHARE = "mutation($id: ID!, $u: ID!) { unshareNotebook(id: $id, userId: $u) { id } }"
SHARED_NOTE = """mutation($nb: ID!) {
  createNote(input: {notebookId: $nb, title: "shared", content: "words"}) { id } }"""


def test_a_grantees_memberships_are_cached_and_an_unshare_elsewhere_ends_them_within_two_polls(
    cached_apps: list[Any],
) -> None:
    a, b = (GraphQL(app.test_client()) for app in cached_apps)
    owner = a.register()["token"]
    grantee = a.register()
    notebook = a.data("{ notebooks { id } }", token=owner)["notebooks"][0]["id"]
    a.data(SHARED_NOTE, {"nb": notebook}, owner)
    a.data(SHARE, {"id": notebook, "e": grantee["user"]["email"]}, owner)
    titles = lambda: [e["node"]["title"] for e in a.data(PAGE, token=grantee["token"])["notes"]["edges"]]  # noqa: E731
    polls = _polls(cached_apps[0])
    assert _wait(lambda: _polls(cached_apps[0]) >= polls + 2, 10)  # the echo of the writes above
    assert titles() == ["shared"]
    sent, listed = _sent_while(cached_apps[0], titles)
    assert listed == ["shared"]
    assert not [path for path, _ in sent if "memberships_by_user" in path]  # from the cache
    b.data(UNSHARE, {"id": notebook, "u": grantee["user"]["id"]}, owner)  # through the other instance
    polls_at_write = _polls(cached_apps[0])
    assert _wait(lambda: titles() == [], 10)
    assert _polls(cached_apps[0]) - polls_at_write <= POLLS_ALLOWED


def test_a_write_of_the_instance_itself_is_never_hidden(cached_apps: list[Any]) -> None:
    a = GraphQL(cached_apps[0].test_client())
    token = a.register()["token"]
    note = a.data(CREATE, token=token)["createNote"]
    version = note["version"]
    for title in ("second", "third", "fourth"):
        assert a.data(NOTE, {"id": note["id"]}, token)["note"]["version"] == version
        version = a.data(RENAME, {"id": note["id"], "v": version, "t": title}, token)["updateNote"]["version"]
        # at once, before any poll could have told it: the write evicted the cached copy
        expected = {"id": note["id"], "title": title, "version": version}
        assert a.data(NOTE, {"id": note["id"]}, token)["note"] == expected


def test_a_document_deleted_in_the_database_disappears_within_two_polls(
    cached_apps: list[Any], couch_node: NodeSet
) -> None:
    a = GraphQL(cached_apps[0].test_client())
    token = a.register()["token"]
    note = a.data(CREATE, token=token)["createNote"]
    a.data(NOTE, {"id": note["id"]}, token)
    services = cached_apps[0].extensions["notebook"]
    notes_db = services.databases.notes
    raw = notes_db.get(note["id"])  # through the cache: the same body the app holds
    # deleted behind the app's back, by another program writing to CouchDB
    auth = (couch_node.user, couch_node.password) if couch_node.user else None
    with httpx.Client(auth=auth) as raw_client:
        url = f"{couch_node.urls[0]}{notes_db.name}/{note['id']}"
        assert raw_client.delete(url, params={"rev": raw["_rev"]}).status_code == 200
    polls_at_write = _polls(cached_apps[0])

    def gone() -> bool:
        errors = a(NOTE, {"id": note["id"]}, token).get("errors") or [{}]
        return errors[0].get("extensions", {}).get("code") == "NOT_FOUND"

    assert _wait(gone, 10)
    assert _polls(cached_apps[0]) - polls_at_write <= POLLS_ALLOWED


def test_gunicorn_workers_show_a_write_once_their_followers_polled(
    config: Config, couch_node: NodeSet, tmp_path: Any
) -> None:
    """Two gunicorn workers, each with its own cache: after a write, and a second for their
    followers to poll (20 polls at 0.05 s), no read from either worker shows the old title."""
    server = gunicorn_beside(
        config, couch_node.environment(), tmp_path, READ_CACHE_ENABLED="true", READ_CACHE_POLL_SECONDS="0.05"
    )
    try:
        server.wait_healthy()

        # the server process signs its own tokens: everything goes through it
        def there(query: str, variables: dict[str, Any], token: str | None = None) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            with httpx.Client() as fresh:  # a new connection: either worker may answer
                return fresh.post(
                    f"{server.url}/graphql",
                    json={"query": query, "variables": variables},
                    headers=headers,
                    timeout=30,
                ).json()

        registered = there(REGISTER, {"e": "cache@example.com", "p": "correct horse battery"})
        token = registered["data"]["register"]["accessToken"]
        note = there(CREATE, {}, token)["data"]["createNote"]

        def title_there() -> str:
            body = there(NOTE, {"id": note["id"]}, token)
            if body.get("errors"):
                return str(body["errors"][0].get("extensions", {}).get("code"))
            found = (body.get("data") or {}).get("note")
            return str(found["title"]) if found else repr(body)[:300]

        assert _wait(lambda: title_there() == "first", 30), title_there()
        assert [title_there() for _ in range(20)] == ["first"] * 20  # both workers hold it now
        renamed = there(RENAME, {"id": note["id"], "v": note["version"], "t": "second"}, token)
        assert renamed["data"]["updateNote"]["version"] != note["version"]  # one worker wrote it
        time.sleep(1.0)
        assert [title_there() for _ in range(20)] == ["second"] * 20
    finally:
        server.stop()
