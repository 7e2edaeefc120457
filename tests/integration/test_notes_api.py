"""Notebooks and notes through the HTTP API against a real database node: the full CRUD flow."""

from __future__ import annotations

from typing import Any

import pytest

NOTE_FIELDS = """id title content tags pinned createdAt updatedAt trashedAt version
  notebook { id name } createdBy { id } updatedBy { id }"""
NOTEBOOK_FIELDS = "id name description noteCount myRole version createdAt updatedAt owner { id }"

CREATE_NOTEBOOK = f"""mutation($input: CreateNotebookInput!) {{
  createNotebook(input: $input) {{ {NOTEBOOK_FIELDS} }} }}"""
UPDATE_NOTEBOOK = f"""mutation($id: ID!, $input: UpdateNotebookInput!, $version: String!) {{
  updateNotebook(id: $id, input: $input, version: $version) {{ {NOTEBOOK_FIELDS} }} }}"""
DELETE_NOTEBOOK = "mutation($id: ID!) { deleteNotebook(id: $id) }"
NOTEBOOK = f"query($id: ID!) {{ notebook(id: $id) {{ {NOTEBOOK_FIELDS} }} }}"
NOTEBOOKS = f"{{ notebooks {{ {NOTEBOOK_FIELDS} }} }}"

CREATE_NOTE = f"mutation($input: CreateNoteInput!) {{ createNote(input: $input) {{ {NOTE_FIELDS} }} }}"
UPDATE_NOTE = f"""mutation($id: ID!, $input: UpdateNoteInput!, $version: String!) {{
  updateNote(id: $id, input: $input, version: $version) {{ {NOTE_FIELDS} }} }}"""
MOVE_NOTE = f"mutation($id: ID!, $to: ID!) {{ moveNote(id: $id, notebookId: $to) {{ {NOTE_FIELDS} }} }}"
TRASH_NOTE = f"mutation($id: ID!) {{ trashNote(id: $id) {{ {NOTE_FIELDS} }} }}"
RESTORE_NOTE = f"mutation($id: ID!) {{ restoreNote(id: $id) {{ {NOTE_FIELDS} }} }}"
DELETE_NOTE = "mutation($id: ID!) { deleteNote(id: $id) }"
NOTE = f"query($id: ID!) {{ note(id: $id) {{ {NOTE_FIELDS} }} }}"
NOTES = """query($notebookId: ID, $trashed: Boolean, $tag: String) {
  notes(notebookId: $notebookId, trashed: $trashed, tag: $tag, first: 100) {
    totalCount edges { node { id title } } } }"""
IMPORT = """mutation($id: ID!, $notes: [CreateNoteInput!]!) {
  importNotes(notebookId: $id, notes: $notes) { imported failed errors } }"""


class Session:
    """One signed-in user talking to the API."""

    def __init__(self, gql: Any) -> None:
        self.gql = gql
        account = gql.register()
        self.token = account["token"]
        self.user_id = account["user"]["id"]

    def data(self, query: str, **variables: Any) -> dict:
        return self.gql.data(query, variables, token=self.token)

    def error(self, query: str, **variables: Any) -> dict:
        body = self.gql(query, variables, token=self.token)
        assert body.get("errors"), body
        return body["errors"][0]

    def default_notebook(self) -> dict:
        return self.data(NOTEBOOKS)["notebooks"][0]

    def create_note(self, **fields: Any) -> dict:
        return self.data(CREATE_NOTE, input={"title": "A note", **fields})["createNote"]

    def note(self, note_id: str) -> dict | None:
        return self.data(NOTE, id=note_id)["note"]

    def titles(self, **variables: Any) -> list[str]:
        edges = self.data(NOTES, **variables)["notes"]["edges"]
        return sorted(edge["node"]["title"] for edge in edges)


@pytest.fixture
def ada(gql: Any) -> Session:
    return Session(gql)


def test_notebook_crud(ada: Session) -> None:
    created = ada.data(CREATE_NOTEBOOK, input={"name": " Work ", "description": "job stuff"})[
        "createNotebook"
    ]
    assert (created["name"], created["description"], created["noteCount"]) == ("Work", "job stuff", 0)
    assert (created["myRole"], created["owner"]["id"]) == ("OWNER", ada.user_id)
    assert ada.data(NOTEBOOK, id=created["id"])["notebook"] == created

    updated = ada.data(UPDATE_NOTEBOOK, id=created["id"], input={"name": "Job"}, version=created["version"])
    updated = updated["updateNotebook"]
    assert (updated["name"], updated["description"]) == ("Job", "job stuff")
    assert updated["version"] != created["version"]
    assert updated["updatedAt"] >= created["updatedAt"]

    names = sorted(nb["name"] for nb in ada.data(NOTEBOOKS)["notebooks"])
    assert names == ["Job", "My notes"]

    assert ada.data(DELETE_NOTEBOOK, id=created["id"]) == {"deleteNotebook": True}
    assert ada.error(NOTEBOOK, id=created["id"])["extensions"]["code"] == "NOT_FOUND"
    assert [nb["name"] for nb in ada.data(NOTEBOOKS)["notebooks"]] == ["My notes"]


def test_notebook_stale_version_conflicts_and_changes_nothing(ada: Session) -> None:
    created = ada.data(CREATE_NOTEBOOK, input={"name": "Work"})["createNotebook"]
    current = ada.data(UPDATE_NOTEBOOK, id=created["id"], input={"name": "v2"}, version=created["version"])
    error = ada.error(UPDATE_NOTEBOOK, id=created["id"], input={"name": "stale"}, version=created["version"])
    assert error["extensions"] == {"code": "CONFLICT", "currentVersion": current["updateNotebook"]["version"]}
    assert ada.data(NOTEBOOK, id=created["id"])["notebook"] == current["updateNotebook"]


def test_default_notebook_cannot_be_deleted(ada: Session) -> None:
    note = ada.create_note(title="safe")
    default = ada.default_notebook()
    assert ada.error(DELETE_NOTEBOOK, id=default["id"])["extensions"]["code"] == "FORBIDDEN"
    assert ada.data(NOTEBOOK, id=default["id"])["notebook"] == default
    assert ada.note(note["id"])["title"] == "safe"


def test_delete_notebook_removes_its_notes(ada: Session) -> None:
    doomed = ada.data(CREATE_NOTEBOOK, input={"name": "Doomed"})["createNotebook"]
    live = ada.create_note(notebookId=doomed["id"], title="live")
    trashed = ada.create_note(notebookId=doomed["id"], title="trashed")
    ada.data(TRASH_NOTE, id=trashed["id"])
    ada.data(IMPORT, id=doomed["id"], notes=[{"title": f"bulk {i}"} for i in range(30)])
    kept = ada.create_note(title="kept")

    assert ada.data(DELETE_NOTEBOOK, id=doomed["id"]) == {"deleteNotebook": True}
    for note_id in (live["id"], trashed["id"]):
        assert ada.error(NOTE, id=note_id)["extensions"]["code"] == "NOT_FOUND"
    assert ada.titles() == ["kept"]
    assert ada.titles(trashed=True) == []
    assert ada.note(kept["id"])["title"] == "kept"


def test_note_crud(ada: Session) -> None:
    default = ada.default_notebook()
    note = ada.create_note(title=" Groceries ", content="- milk\n- eggs", tags=["home", "Home", "errands"])
    assert (note["title"], note["content"], note["tags"]) == (
        "Groceries",
        "- milk\n- eggs",
        ["home", "errands"],
    )
    assert (note["pinned"], note["trashedAt"], note["notebook"]["id"]) == (False, None, default["id"])
    assert note["createdBy"]["id"] == note["updatedBy"]["id"] == ada.user_id
    assert ada.note(note["id"]) == note

    updated = ada.data(
        UPDATE_NOTE, id=note["id"], input={"content": "- bread", "pinned": True}, version=note["version"]
    )
    updated = updated["updateNote"]
    assert (updated["title"], updated["content"], updated["pinned"]) == ("Groceries", "- bread", True)
    assert updated["version"] != note["version"]
    assert updated["createdAt"] == note["createdAt"] and updated["updatedAt"] >= note["updatedAt"]
    assert ada.note(note["id"]) == updated
    assert ada.data(NOTEBOOK, id=default["id"])["notebook"]["noteCount"] == 1


def test_note_stale_version_conflicts_and_changes_nothing(ada: Session) -> None:
    note = ada.create_note(title="v1", content="first")
    current = ada.data(UPDATE_NOTE, id=note["id"], input={"title": "v2"}, version=note["version"])[
        "updateNote"
    ]
    error = ada.error(
        UPDATE_NOTE, id=note["id"], input={"title": "lost", "content": "lost"}, version=note["version"]
    )
    assert error["extensions"] == {"code": "CONFLICT", "currentVersion": current["version"]}
    assert ada.note(note["id"]) == current
    # a made-up version is stale too
    error = ada.error(
        UPDATE_NOTE, id=note["id"], input={"title": "lost"}, version="1-00000000000000000000000000000000"
    )
    assert error["extensions"]["currentVersion"] == current["version"]
    assert ada.note(note["id"]) == current


def test_move_note(ada: Session) -> None:
    default = ada.default_notebook()
    target = ada.data(CREATE_NOTEBOOK, input={"name": "Target"})["createNotebook"]
    note = ada.create_note(title="wanderer")
    moved = ada.data(MOVE_NOTE, id=note["id"], to=target["id"])["moveNote"]
    assert moved["notebook"] == {"id": target["id"], "name": "Target"}
    assert ada.note(note["id"])["notebook"]["id"] == target["id"]
    assert ada.titles(notebookId=target["id"]) == ["wanderer"]
    assert ada.titles(notebookId=default["id"]) == []
    # moving to where it already is changes nothing
    again = ada.data(MOVE_NOTE, id=note["id"], to=target["id"])["moveNote"]
    assert again["version"] == moved["version"]


def test_trash_restore_and_delete(ada: Session) -> None:
    note = ada.create_note(title="temporary")
    error = ada.error(DELETE_NOTE, id=note["id"])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert ada.note(note["id"]) == note

    trashed = ada.data(TRASH_NOTE, id=note["id"])["trashNote"]
    assert trashed["trashedAt"] is not None
    assert ada.titles() == []
    assert ada.titles(trashed=True) == ["temporary"]
    assert ada.default_notebook()["noteCount"] == 0

    restored = ada.data(RESTORE_NOTE, id=note["id"])["restoreNote"]
    assert restored["trashedAt"] is None
    assert ada.titles() == ["temporary"]

    ada.data(TRASH_NOTE, id=note["id"])
    assert ada.data(DELETE_NOTE, id=note["id"]) == {"deleteNote": True}
    assert ada.error(NOTE, id=note["id"])["extensions"]["code"] == "NOT_FOUND"
    assert ada.titles(trashed=True) == []
    assert ada.error(DELETE_NOTE, id=note["id"])["extensions"]["code"] == "NOT_FOUND"


def test_import_notes_with_some_invalid_items(ada: Session) -> None:
    book = ada.data(CREATE_NOTEBOOK, input={"name": "Imported"})["createNotebook"]
    items = [
        {"title": "one", "content": "first", "tags": ["imported"]},
        {"title": "   "},
        {"title": "x" * 501},
        {"title": "too many tags", "tags": [f"t{i}" for i in range(51)]},
        {"title": "too big", "content": "x" * (1024 * 1024 + 1)},
        {"title": "two", "pinned": True},
    ]
    result = ada.data(IMPORT, id=book["id"], notes=items)["importNotes"]
    assert (result["imported"], result["failed"]) == (2, 4)
    assert [error.split(":")[0] for error in result["errors"]] == [
        "notes[1]",
        "notes[2]",
        "notes[3]",
        "notes[4]",
    ]
    assert ada.titles(notebookId=book["id"]) == ["one", "two"]
    assert ada.data(NOTEBOOK, id=book["id"])["notebook"]["noteCount"] == 2


def test_import_into_a_missing_notebook(ada: Session) -> None:
    error = ada.error(IMPORT, id="notebook:does-not-exist", notes=[{"title": "x"}])
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert ada.titles() == []


def test_tags(ada: Session) -> None:
    ada.create_note(title="a", tags=["work", "urgent"])
    ada.create_note(title="b", tags=["work"])
    ada.create_note(title="c", tags=["home"])
    gone = ada.create_note(title="d", tags=["work", "gone"])
    ada.data(TRASH_NOTE, id=gone["id"])
    tags = ada.data("{ tags { tag count } }")["tags"]
    assert tags == [{"tag": "work", "count": 2}, {"tag": "home", "count": 1}, {"tag": "urgent", "count": 1}]
    assert ada.titles(tag="work") == ["a", "b"]
    assert ada.titles(tag="WORK") == ["a", "b"]
    assert ada.titles(tag="gone", trashed=True) == ["d"]


def test_note_counts_of_notebooks(ada: Session) -> None:
    work = ada.data(CREATE_NOTEBOOK, input={"name": "Work"})["createNotebook"]
    for i in range(3):
        ada.create_note(notebookId=work["id"], title=f"w{i}")
    ada.create_note(title="default")
    counts = {nb["name"]: nb["noteCount"] for nb in ada.data(NOTEBOOKS)["notebooks"]}
    assert counts == {"My notes": 1, "Work": 3}
    assert ada.data(NOTES)["notes"]["totalCount"] == 4
    assert ada.data(NOTES, notebookId=work["id"])["notes"]["totalCount"] == 3


def test_nested_notebook_notes(ada: Session) -> None:
    book = ada.data(CREATE_NOTEBOOK, input={"name": "Nested"})["createNotebook"]
    ada.create_note(notebookId=book["id"], title="inside")
    ada.create_note(title="outside")
    query = "query($id: ID!) { notebook(id: $id) { notes { totalCount edges { node { title } } } } }"
    notes = ada.data(query, id=book["id"])["notebook"]["notes"]
    assert notes["totalCount"] == 1
    assert [edge["node"]["title"] for edge in notes["edges"]] == ["inside"]
