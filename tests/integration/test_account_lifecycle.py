"""Sessions and accounts through the API: ending sessions ends their access tokens at once, on
every app instance; deleting an account removes what is the user's and nothing of others'."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from config.settings import Config
from tests.conftest import GraphQL

ME = "{ me { id isAdmin } }"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken } }"
PASSWORD = "correct horse battery"


@pytest.fixture
def other(config: Config) -> Iterator[GraphQL]:
    """A second app instance on the same database."""
    from notebook.api.app import create_app

    app = create_app(config)
    yield GraphQL(app.test_client())
    app.extensions["notebook"].close()


def _works(gql: GraphQL, token: str) -> bool:
    body = gql(ME, token=token)
    if body.get("errors"):
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
        return False
    return body["data"]["me"] is not None


def test_logout_ends_that_session_only(gql: GraphQL, other: GraphQL) -> None:
    first = gql.register()
    second = gql.data(LOGIN, {"e": first["user"]["email"], "p": PASSWORD})["login"]
    assert gql.data("mutation($t: String!) { logout(refreshToken: $t) }", {"t": first["refreshToken"]})[
        "logout"
    ]
    assert not _works(gql, first["token"]) and not _works(other, first["token"])
    assert _works(gql, second["accessToken"]) and _works(other, second["accessToken"])


def test_logout_everywhere(gql: GraphQL, other: GraphQL) -> None:
    first = gql.register()
    second = gql.data(LOGIN, {"e": first["user"]["email"], "p": PASSWORD})["login"]
    assert gql.data("mutation { logoutEverywhere }", token=second["accessToken"])["logoutEverywhere"] is True
    for token in (first["token"], second["accessToken"]):
        assert not _works(gql, token) and not _works(other, token)
    refresh = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }"
    assert gql.error_code(refresh, {"t": second["refreshToken"]}) == "UNAUTHENTICATED"
    fresh = gql.data(LOGIN, {"e": first["user"]["email"], "p": PASSWORD})["login"]
    assert _works(other, fresh["accessToken"])


def test_change_password(gql: GraphQL, other: GraphQL) -> None:
    user = gql.register()
    change = """mutation($c: String!, $n: String!) {
      changePassword(currentPassword: $c, newPassword: $n) { accessToken refreshToken user { id } }
    }"""
    assert gql.error_code(
        change, {"c": "wrong password", "n": "a new long password"}, token=user["token"]
    ) == ("FORBIDDEN")
    assert _works(gql, user["token"])  # a refused change ends nothing
    fresh = gql.data(change, {"c": PASSWORD, "n": "a new long password"}, token=user["token"])[
        "changePassword"
    ]
    assert fresh["user"]["id"] == user["user"]["id"]
    assert not _works(gql, user["token"]) and not _works(other, user["token"])
    assert _works(other, fresh["accessToken"])
    assert gql.error_code(LOGIN, {"e": user["user"]["email"], "p": PASSWORD}) == "UNAUTHENTICATED"
    assert gql.data(LOGIN, {"e": user["user"]["email"], "p": "a new long password"})["login"]["accessToken"]


def test_a_replayed_refresh_token_ends_the_sessions_access_tokens(gql: GraphQL) -> None:
    user = gql.register()
    refresh = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }"
    rotated = gql.data(refresh, {"t": user["refreshToken"]})["refreshToken"]["accessToken"]
    assert _works(gql, rotated)
    assert gql.error_code(refresh, {"t": user["refreshToken"]}) == "UNAUTHENTICATED"  # replay
    assert not _works(gql, rotated)


def _docs_mentioning(app: Any, user_id: str) -> list[str]:
    """Ids of every stored document (notes and users databases) that names the user."""
    services = app.extensions["notebook"]
    found = []
    for db in (services.databases.notes, services.databases.users):
        rows = services.couch.request("GET", f"{db.name}/_all_docs", params={"include_docs": "true"})["rows"]
        found += [row["id"] for row in rows if user_id in str(row.get("doc"))]
    return found


def test_delete_account(app: Any, gql: GraphQL, other: GraphQL) -> None:
    ada, bob = gql.register(), gql.register()
    ada_id = ada["user"]["id"]
    share = (
        "mutation($id: ID!, $e: String!, $r: Role!) { shareNotebook(id: $id, email: $e, role: $r) { id } }"
    )
    create_nb = 'mutation { createNotebook(input: {name: "Ada\'s team"}) { id } }'
    ada_book = gql.data(create_nb, token=ada["token"])["createNotebook"]["id"]
    gql.data(share, {"id": ada_book, "e": bob["user"]["email"], "r": "EDITOR"}, token=ada["token"])
    bob_book = gql.data("{ notebooks { id } }", token=bob["token"])["notebooks"][0]["id"]
    gql.data(share, {"id": bob_book, "e": ada["user"]["email"], "r": "EDITOR"}, token=bob["token"])
    new_note = (
        "mutation($nb: ID!, $t: String!) { createNote(input: {notebookId: $nb, title: $t}) { id version } }"
    )
    in_ada_book = gql.data(new_note, {"nb": ada_book, "t": "ada's"}, token=ada["token"])["createNote"]
    gql.data(
        'mutation($id: ID!, $v: String!) { updateNote(id: $id, input: {content: "x"}, version: $v) { id } }',
        {"id": in_ada_book["id"], "v": in_ada_book["version"]},
        token=ada["token"],
    )  # leaves a revision
    written_for_bob = gql.data(new_note, {"nb": bob_book, "t": "ada wrote this"}, token=ada["token"])[
        "createNote"
    ]

    delete = "mutation($p: String!) { deleteAccount(password: $p) }"
    assert gql.error_code(delete, {"p": "not the password"}, token=ada["token"]) == "FORBIDDEN"
    assert _works(gql, ada["token"])
    assert gql.data(delete, {"p": PASSWORD}, token=ada["token"])["deleteAccount"] is True

    assert not _works(gql, ada["token"]) and not _works(other, ada["token"])
    assert gql.error_code(LOGIN, {"e": ada["user"]["email"], "p": PASSWORD}) == "UNAUTHENTICATED"
    # bob lost the notebook ada shared; keeps his own with what ada wrote there, authored by a placeholder
    read = "query($id: ID!) { note(id: $id) { title createdBy { id email displayName } } }"
    assert gql.error_code(read, {"id": in_ada_book["id"]}, token=bob["token"]) == "NOT_FOUND"
    kept = gql.data(read, {"id": written_for_bob["id"]}, token=bob["token"])["note"]
    assert kept["createdBy"] == {"id": ada_id, "email": "", "displayName": "Deleted account"}
    members = gql.data(
        "query($id: ID!) { notebook(id: $id) { members { role } } }", {"id": bob_book}, token=bob["token"]
    )
    assert [m["role"] for m in members["notebook"]["members"]] == ["OWNER"]
    # what still names ada: the placeholder, the note she wrote in bob's notebook, the history
    # of bob's notebook (what she did there, and bob sharing it with her) and the deletion itself
    mentioning = _docs_mentioning(app, ada_id)
    records = [doc_id for doc_id in mentioning if doc_id.startswith("activity:")]
    assert sorted(set(mentioning) - set(records)) == sorted([ada_id, written_for_bob["id"]])
    kept = [app.extensions["notebook"].databases.notes.get_or_none(doc_id) for doc_id in records]
    account = [app.extensions["notebook"].databases.users.get_or_none(doc_id) for doc_id in records]
    actions = sorted(
        (doc["action"], doc.get("notebook_owner_id")) for doc in [*kept, *account] if doc is not None
    )
    bob_id = bob["user"]["id"]
    assert actions == [("note.created", bob_id), ("notebook.shared", bob_id), ("user.deleted", None)]
    # the address can be used again
    assert gql.register(ada["user"]["email"])["user"]["id"] != ada_id


def test_create_admin_command(
    gql: GraphQL, config: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from notebook import cli

    user = gql.register()
    monkeypatch.setenv("FLASK_ENV", "testing")
    monkeypatch.setenv("COUCHDB_URL", config.couchdb_url)
    monkeypatch.setenv("COUCHDB_DB_PREFIX", config.db_prefix)
    monkeypatch.setenv("COUCHDB_USER", config.couchdb_user)
    monkeypatch.setenv("COUCHDB_PASSWORD", config.couchdb_password)
    assert gql.data(ME, token=user["token"])["me"]["isAdmin"] is False
    assert cli.main(["create-admin", user["user"]["email"]]) == 0
    assert gql.data(ME, token=user["token"])["me"]["isAdmin"] is True
    assert cli.main(["create-admin", user["user"]["email"], "--revoke"]) == 0
    assert gql.data(ME, token=user["token"])["me"]["isAdmin"] is False
    assert cli.main(["create-admin", "nobody@example.com"]) == 1
    assert "no account" in capsys.readouterr().err


def _conflicting_leaf(db: Any, doc_id: str, **changes: Any) -> None:
    """A competing leaf of a document, as replication from another node leaves it; its revision
    id is the highest possible, so that CouchDB's own choice makes it the winner."""
    doc = db.get(doc_id, revs=True)
    leaf = "f" * 32
    doc.update(changes)
    doc["_rev"] = f"{doc['_revisions']['start']}-{leaf}"
    doc["_revisions"] = {"start": doc["_revisions"]["start"], "ids": [leaf, *doc["_revisions"]["ids"][1:]]}
    db.bulk_docs([doc], new_edits=False)


def test_a_session_ended_on_one_node_stays_ended_after_a_conflict(app: Any, gql: GraphQL) -> None:
    from notebook.database.conflicts import conflict_stores

    services = app.extensions["notebook"]
    user = gql.register()
    user_id = user["user"]["id"]
    users_db = services.databases.users
    # this node ends every session; another node's concurrent write (say, a rehash) still has epoch 0
    assert gql.data("mutation { logoutEverywhere }", token=user["token"])["logoutEverywhere"]
    _conflicting_leaf(users_db, user_id, session_epoch=0, ended_sessions={}, display_name="Other node")
    assert users_db.get(user_id, conflicts=True).get("_conflicts")
    _, users_store = conflict_stores(services.databases.notes, users_db)
    assert users_store.settle_by_rule(user_id)
    settled = users_db.get(user_id, conflicts=True)
    assert "_conflicts" not in settled
    assert settled["session_epoch"] == 1
    assert not _works(gql, user["token"])
