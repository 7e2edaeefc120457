"""Shared notebooks through the API on a real database: what a grantee sees and may do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from config.settings import Config
from tests.conftest import GraphQL

SHARE = """mutation($id: ID!, $email: String!, $role: Role!) {
  shareNotebook(id: $id, email: $email, role: $role) { id members { user { email } role } }
}"""
UNSHARE = "mutation($id: ID!, $user: ID!) { unshareNotebook(id: $id, userId: $user) { id } }"
NEW_NOTEBOOK = "mutation($name: String!) { createNotebook(input: {name: $name}) { id } }"
NEW_NOTE = """mutation($nb: ID, $title: String!, $tags: [String!]) {
  createNote(input: {notebookId: $nb, title: $title, content: "shared words", tags: $tags}) { id version }
}"""
PAGE = """query($after: String, $search: String) {
  notes(first: 2, after: $after, search: $search) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { id title } }
  }
}"""


def _all_titles(gql: GraphQL, token: str, search: str | None = None) -> tuple[list[str], int]:
    """Every note title, following the pages two at a time, and the reported total."""
    titles: list[str] = []
    after = None
    for _ in range(50):
        page = gql.data(PAGE, {"after": after, "search": search}, token=token)["notes"]
        titles += [edge["node"]["title"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return titles, page["totalCount"]
        after = page["pageInfo"]["endCursor"]
    raise AssertionError("pagination did not end")


@pytest.fixture
def team(gql: GraphQL) -> dict[str, Any]:
    ada, bob = gql.register(), gql.register()
    notebook = gql.data(NEW_NOTEBOOK, {"name": "Team"}, token=ada["token"])["createNotebook"]["id"]
    shared = gql.data(
        SHARE, {"id": notebook, "email": bob["user"]["email"], "role": "EDITOR"}, token=ada["token"]
    )
    assert [m["role"] for m in shared["shareNotebook"]["members"]] == ["OWNER", "EDITOR"]
    return {"ada": ada, "bob": bob, "notebook": notebook}


def test_grantee_lists_searches_and_counts_shared_notes(gql: GraphQL, team: dict[str, Any]) -> None:
    ada, bob, notebook = team["ada"], team["bob"], team["notebook"]
    for i in range(3):
        gql.data(NEW_NOTE, {"nb": notebook, "title": f"team {i}", "tags": ["team"]}, token=ada["token"])
    gql.data(NEW_NOTE, {"title": "ada private", "tags": ["secret"]}, token=ada["token"])
    for i in range(2):
        gql.data(NEW_NOTE, {"title": f"bob {i}", "tags": ["team"]}, token=bob["token"])

    titles, total = _all_titles(gql, bob["token"])
    assert sorted(titles) == ["bob 0", "bob 1", "team 0", "team 1", "team 2"]
    assert len(titles) == total == 5  # no duplicates, nothing missing across pages
    assert titles == ["bob 1", "bob 0", "team 2", "team 1", "team 0"]  # newest first, interleaved by time
    found, total = _all_titles(gql, bob["token"], search="shared")
    assert sorted(found) == sorted(titles) and total == 5
    tags = gql.data("{ tags { tag count } }", token=bob["token"])["tags"]
    assert tags == [{"tag": "team", "count": 5}]
    books = gql.data("{ notebooks { id myRole noteCount owner { id } } }", token=bob["token"])["notebooks"]
    shared = next(nb for nb in books if nb["id"] == notebook)
    assert (shared["myRole"], shared["noteCount"], shared["owner"]["id"]) == ("EDITOR", 3, ada["user"]["id"])
    # the owner's own view is unchanged by the sharing
    assert sorted(_all_titles(gql, ada["token"])[0]) == ["ada private", "team 0", "team 1", "team 2"]


def test_editor_writes_and_updated_by_says_who(gql: GraphQL, team: dict[str, Any]) -> None:
    ada, bob, notebook = team["ada"], team["bob"], team["notebook"]
    note = gql.data(NEW_NOTE, {"nb": notebook, "title": "plan"}, token=ada["token"])["createNote"]
    edited = gql.data(
        """mutation($id: ID!, $v: String!) {
             updateNote(id: $id, input: {title: "better"}, version: $v) { createdBy { id } updatedBy { id } }
           }""",
        {"id": note["id"], "v": note["version"]},
        token=bob["token"],
    )["updateNote"]
    assert (edited["createdBy"]["id"], edited["updatedBy"]["id"]) == (ada["user"]["id"], bob["user"]["id"])
    code = gql.error_code(
        "mutation($id: ID!) { deleteNotebook(id: $id) }", {"id": notebook}, token=bob["token"]
    )
    assert code == "FORBIDDEN"


def test_removed_member_loses_access_on_the_next_request_on_every_instance(
    gql: GraphQL, team: dict[str, Any], config: Config
) -> None:
    from notebook.api.app import create_app

    ada, bob, notebook = team["ada"], team["bob"], team["notebook"]
    note = gql.data(NEW_NOTE, {"nb": notebook, "title": "plan"}, token=ada["token"])["createNote"]
    other = create_app(config)  # a second app instance on the same database
    try:
        other_gql = GraphQL(other.test_client())
        read = "query($id: ID!) { note(id: $id) { title } }"
        assert other_gql.data(read, {"id": note["id"]}, token=bob["token"])["note"]["title"] == "plan"
        gql.data(UNSHARE, {"id": notebook, "user": bob["user"]["id"]}, token=ada["token"])
        for instance in (gql, other_gql):
            assert instance.error_code(read, {"id": note["id"]}, token=bob["token"]) == "NOT_FOUND"
            books = instance.data("{ notebooks { id } }", token=bob["token"])["notebooks"]
            assert notebook not in [nb["id"] for nb in books]
            assert _all_titles(instance, bob["token"]) == ([], 0)
    finally:
        other.extensions["notebook"].close()


def test_sharing_errors_are_clear(gql: GraphQL, team: dict[str, Any]) -> None:
    ada, notebook = team["ada"], team["notebook"]
    owner_email = ada["user"]["email"]
    args = {"id": notebook, "email": "nobody@example.com", "role": "VIEWER"}
    assert gql.error_code(SHARE, args, token=ada["token"]) == "NOT_FOUND"
    args = {"id": notebook, "email": owner_email, "role": "VIEWER"}
    assert gql.error_code(SHARE, args, token=ada["token"]) == "BAD_USER_INPUT"
    args = {"id": notebook, "email": team["bob"]["user"]["email"], "role": "OWNER"}
    assert gql.error_code(SHARE, args, token=ada["token"]) == "BAD_USER_INPUT"
    assert (
        gql.error_code(UNSHARE, {"id": notebook, "user": "not-a-user"}, token=ada["token"])
        == "BAD_USER_INPUT"
    )


@pytest.fixture
def gql_with(config: Config) -> Iterator[Callable[..., GraphQL]]:
    """Builds a GraphQL client on an app of its own, with these settings changed."""
    from notebook.api.app import create_app

    apps: list[Any] = []

    def build(**settings: Any) -> GraphQL:
        apps.append(create_app(replace(config, **settings)))
        return GraphQL(apps[-1].test_client())

    yield build
    for app in apps:
        app.extensions["notebook"].close()


def test_notebooks_are_capped_and_paginated(gql_with: Callable[..., GraphQL]) -> None:
    capped_gql = gql_with(max_notebooks_per_user=4)
    token = capped_gql.register()["token"]
    for i in range(3):
        capped_gql.data(NEW_NOTEBOOK, {"name": f"book {i}"}, token=token)
    body = capped_gql(NEW_NOTEBOOK, {"name": "one too many"}, token=token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["reason"] == "NOTEBOOK_LIMIT"
    everything = [nb["id"] for nb in capped_gql.data("{ notebooks { id } }", token=token)["notebooks"]]
    assert len(everything) == 4
    query = "query($after: ID) { notebooks(first: 3, after: $after) { id } }"
    first = [nb["id"] for nb in capped_gql.data(query, token=token)["notebooks"]]
    rest = [nb["id"] for nb in capped_gql.data(query, {"after": first[-1]}, token=token)["notebooks"]]
    assert first + rest == everything
    assert capped_gql.error_code("{ notebooks(first: 501) { id } }", token=token) == "BAD_USER_INPUT"


def test_share_misses_are_rate_limited_per_user(gql_with: Callable[..., GraphQL]) -> None:
    gql = gql_with(share_misses_per_user=2)
    ada, bob, carol = gql.register(), gql.register(), gql.register()
    notebook = gql.data(NEW_NOTEBOOK, {"name": "Team"}, token=ada["token"])["createNotebook"]["id"]
    for n in range(2):
        args = {"id": notebook, "email": f"nobody-{n}@example.com", "role": "VIEWER"}
        assert gql.error_code(SHARE, args, token=ada["token"]) == "NOT_FOUND"
    # out of misses: an address with an account gets the same refusal as one without
    for email in ("nobody-2@example.com", bob["user"]["email"]):
        response = gql.post(SHARE, {"id": notebook, "email": email, "role": "VIEWER"}, token=ada["token"])
        error = response.get_json()["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] > 0
        assert int(response.headers["Retry-After"]) == error["extensions"]["retryAfter"]
    # counted per user: another owner still gets NOT_FOUND for an unknown address
    own = gql.data(NEW_NOTEBOOK, {"name": "Carol's"}, token=carol["token"])["createNotebook"]["id"]
    args = {"id": own, "email": "nobody-0@example.com", "role": "VIEWER"}
    assert gql.error_code(SHARE, args, token=carol["token"]) == "NOT_FOUND"


def test_members_per_notebook_are_capped(gql_with: Callable[..., GraphQL]) -> None:
    gql = gql_with(max_members_per_notebook=1)
    ada, bob, carol = gql.register(), gql.register(), gql.register()
    notebook = gql.data(NEW_NOTEBOOK, {"name": "Team"}, token=ada["token"])["createNotebook"]["id"]
    gql.data(SHARE, {"id": notebook, "email": bob["user"]["email"], "role": "VIEWER"}, token=ada["token"])
    body = gql(SHARE, {"id": notebook, "email": carol["user"]["email"], "role": "VIEWER"}, token=ada["token"])
    error = body["errors"][0]
    assert (error["extensions"]["code"], error["extensions"]["reason"]) == ("BAD_USER_INPUT", "MEMBER_LIMIT")
    assert "at most 1 member" in error["message"]
    # changing a member's role is not a new member
    changed = gql.data(
        SHARE, {"id": notebook, "email": bob["user"]["email"], "role": "EDITOR"}, token=ada["token"]
    )
    assert [m["role"] for m in changed["shareNotebook"]["members"]] == ["OWNER", "EDITOR"]


def test_tags_are_capped_to_the_most_used(gql_with: Callable[..., GraphQL]) -> None:
    gql = gql_with(max_tags_listed=2)
    token = gql.register()["token"]
    for tags in (["work", "home", "rare"], ["work", "home"], ["work"]):
        gql.data(NEW_NOTE, {"title": "tagged", "tags": tags}, token=token)
    tags = gql.data("{ tags { tag count } }", token=token)["tags"]
    assert tags == [{"tag": "work", "count": 3}, {"tag": "home", "count": 2}]
