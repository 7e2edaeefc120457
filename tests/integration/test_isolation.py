"""Cross-user isolation: another user's notebook or note is NOT_FOUND, and stays untouched."""

from __future__ import annotations

from typing import Any

import pytest

NOTE_FIELDS = "id title content tags pinned trashedAt version updatedAt notebook { id }"
NOTEBOOK_FIELDS = "id name description version updatedAt noteCount"


class Owner:
    """Ada's data, and a way to read it back exactly."""

    def __init__(self, gql: Any) -> None:
        self.gql = gql
        self.token = gql.register("ada@example.com")["token"]
        q = f"""mutation {{
          book: createNotebook(input: {{name: "Private", description: "Ada only"}}) {{ {NOTEBOOK_FIELDS} }}
        }}"""
        self.notebook = gql.data(q, token=self.token)["book"]
        create = f"""mutation($input: CreateNoteInput!) {{ createNote(input: $input) {{ {NOTE_FIELDS} }} }}"""
        self.note = gql.data(
            create,
            {"input": {"notebookId": self.notebook["id"], "title": "Secret plan", "tags": ["secret"]}},
            token=self.token,
        )["createNote"]
        trashed = gql.data(create, {"input": {"title": "Old secret"}}, token=self.token)["createNote"]
        self.trashed = gql.data(
            f"mutation($id: ID!) {{ trashNote(id: $id) {{ {NOTE_FIELDS} }} }}",
            {"id": trashed["id"]},
            token=self.token,
        )["trashNote"]

    def snapshot(self) -> dict:
        query = f"""query($book: ID!, $note: ID!, $trashed: ID!) {{
          notebook(id: $book) {{ {NOTEBOOK_FIELDS} }}
          note(id: $note) {{ {NOTE_FIELDS} }}
          trashed: note(id: $trashed) {{ {NOTE_FIELDS} }}
          notebooks {{ {NOTEBOOK_FIELDS} }}
          notes(first: 100) {{ totalCount edges {{ node {{ {NOTE_FIELDS} }} }} }}
          inTrash: notes(first: 100, trashed: true) {{ totalCount edges {{ node {{ id }} }} }}
          tags {{ tag count }}
        }}"""
        variables = {"book": self.notebook["id"], "note": self.note["id"], "trashed": self.trashed["id"]}
        return self.gql.data(query, variables, token=self.token)


@pytest.fixture
def ada(gql: Any) -> Owner:
    return Owner(gql)


@pytest.fixture
def bob(gql: Any) -> dict:
    bob = gql.register("bob@example.com")
    bob["notebook_id"] = gql.data("{ notebooks { id } }", token=bob["token"])["notebooks"][0]["id"]
    create = 'mutation { createNote(input: {title: "Bob\'s note"}) { id version } }'
    bob["note"] = gql.data(create, token=bob["token"])["createNote"]
    return bob


def _attempts(ada: Owner, bob: dict) -> list[tuple[str, dict]]:
    book, note, trashed = ada.notebook, ada.note, ada.trashed
    return [
        ("query($id: ID!) { notebook(id: $id) { id name } }", {"id": book["id"]}),
        ("query($id: ID!) { note(id: $id) { id title } }", {"id": note["id"]}),
        (
            "query($id: ID!) { notes(notebookId: $id) { totalCount edges { node { id } } } }",
            {"id": book["id"]},
        ),
        (
            'query($id: ID!) { notes(notebookId: $id, search: "secret") { edges { node { id } } } }',
            {"id": book["id"]},
        ),
        ("query($id: ID!) { notes(notebookId: $id, trashed: true) { totalCount } }", {"id": book["id"]}),
        (
            'mutation($id: ID!, $v: String!) { updateNotebook(id: $id, input: {name: "pwned"}, version: $v) '
            "{ id } }",
            {"id": book["id"], "v": book["version"]},
        ),
        ("mutation($id: ID!) { deleteNotebook(id: $id) }", {"id": book["id"]}),
        (
            'mutation($id: ID!, $v: String!) { updateNote(id: $id, input: {title: "pwned"}, version: $v) '
            "{ id } }",
            {"id": note["id"], "v": note["version"]},
        ),
        ("mutation($id: ID!) { trashNote(id: $id) { id } }", {"id": note["id"]}),
        ("mutation($id: ID!) { restoreNote(id: $id) { id } }", {"id": trashed["id"]}),
        ("mutation($id: ID!) { deleteNote(id: $id) }", {"id": trashed["id"]}),
        ("mutation($id: ID!) { deleteNote(id: $id) }", {"id": note["id"]}),
        # Ada's note into Bob's notebook, and Bob's note into Ada's notebook
        (
            "mutation($id: ID!, $to: ID!) { moveNote(id: $id, notebookId: $to) { id } }",
            {"id": note["id"], "to": bob["notebook_id"]},
        ),
        (
            "mutation($id: ID!, $to: ID!) { moveNote(id: $id, notebookId: $to) { id } }",
            {"id": bob["note"]["id"], "to": book["id"]},
        ),
        (
            'mutation($id: ID!) { createNote(input: {notebookId: $id, title: "planted"}) { id } }',
            {"id": book["id"]},
        ),
        (
            'mutation($id: ID!) { importNotes(notebookId: $id, notes: [{title: "planted"}]) { imported } }',
            {"id": book["id"]},
        ),
        (
            'mutation($id: ID!) { restoreNoteRevision(id: $id, revisionId: "rev:x") { id } }',
            {"id": note["id"]},
        ),
        (
            'mutation($id: ID!) { resolveNoteConflict(id: $id, keepVersion: "1-x") { id } }',
            {"id": note["id"]},
        ),
    ]


def test_another_users_notebook_and_notes_are_not_found(gql: Any, ada: Owner, bob: dict) -> None:
    before = ada.snapshot()
    for query, variables in _attempts(ada, bob):
        body = gql(query, variables, token=bob["token"])
        assert body.get("errors"), (query, body)
        error = body["errors"][0]
        assert error["extensions"]["code"] == "NOT_FOUND", (query, error)
        # the answer must not tell Bob anything about what exists
        assert "Secret" not in str(body) and "Private" not in str(body)
    assert ada.snapshot() == before


def test_not_found_looks_the_same_as_a_missing_id(gql: Any, ada: Owner, bob: dict) -> None:
    query = "query($id: ID!) { note(id: $id) { id } }"
    existing = gql(query, {"id": ada.note["id"]}, token=bob["token"])["errors"][0]
    missing = gql(query, {"id": "note:00000000000000000000000000000000"}, token=bob["token"])["errors"][0]
    assert {k: v for k, v in existing.items() if k != "locations"} == {
        k: v for k, v in missing.items() if k != "locations"
    }


def test_lists_show_only_the_callers_data(gql: Any, ada: Owner, bob: dict) -> None:
    query = """{
      notebooks { id }
      notes(first: 100) { totalCount edges { node { id } } }
      trashed: notes(first: 100, trashed: true) { totalCount }
      found: notes(search: "secret plan") { totalCount edges { node { id } } }
      tagged: notes(tag: "secret") { totalCount }
      tags { tag }
    }"""
    seen = gql.data(query, token=bob["token"])
    assert seen["notebooks"] == [{"id": bob["notebook_id"]}]
    assert seen["notes"]["edges"] == [{"node": {"id": bob["note"]["id"]}}]
    assert seen["notes"]["totalCount"] == 1
    assert seen["trashed"]["totalCount"] == 0
    assert seen["found"] == {"totalCount": 0, "edges": []}
    assert seen["tagged"]["totalCount"] == 0
    assert seen["tags"] == []


def test_bobs_own_note_is_unchanged_after_a_refused_move(gql: Any, ada: Owner, bob: dict) -> None:
    move = "mutation($id: ID!, $to: ID!) { moveNote(id: $id, notebookId: $to) { id } }"
    assert (
        gql.error_code(move, {"id": bob["note"]["id"], "to": ada.notebook["id"]}, token=bob["token"])
        == "NOT_FOUND"
    )
    after = gql.data(
        "query($id: ID!) { note(id: $id) { version notebook { id } } }",
        {"id": bob["note"]["id"]},
        token=bob["token"],
    )["note"]
    assert after == {"version": bob["note"]["version"], "notebook": {"id": bob["notebook_id"]}}
