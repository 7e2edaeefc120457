"""The database cost of a GraphQL query is a small constant, not one request per item listed."""

from __future__ import annotations

from typing import Any

import pytest

from notebook.database.design_docs import NOTES_DESIGN

MAX_REQUESTS = 6

NOTE_PAGE = """query($search: String) {
  notes(first: 20, search: $search) {
    edges { node {
      id title
      notebook { name owner { email } }
      createdBy { email }
      updatedBy { email }
    } }
  }
}"""
NOTEBOOKS = "{ notebooks { id name noteCount owner { email } } }"


def _couch_requests(app: Any) -> int:
    return app.extensions["notebook"].couch.requests.total


def _cost(app: Any, gql: Any, query: str, token: str, variables: dict | None = None) -> tuple[int, dict]:
    """Database requests made while answering one GraphQL request, and its data."""
    before = _couch_requests(app)
    data = gql.data(query, variables, token=token)
    return _couch_requests(app) - before, data


def _notebooks(gql: Any, token: str, count: int) -> list[str]:
    """The ids of `count` notebooks: the default one plus new ones."""
    ids = [gql.data("{ notebooks { id } }", token=token)["notebooks"][0]["id"]]
    for i in range(count - 1):
        mutation = "mutation($name: String!) { createNotebook(input: {name: $name}) { id } }"
        ids.append(gql.data(mutation, {"name": f"Book {i}"}, token=token)["createNotebook"]["id"])
    return ids


def _fill(gql: Any, token: str, notes: int) -> None:
    """`notes` notes, each in a notebook of its own so that nothing is shared between them."""
    for i, notebook_id in enumerate(_notebooks(gql, token, notes)):
        note = {"notebookId": notebook_id, "title": f"note {i}", "content": "counted words"}
        gql.data(
            "mutation($note: CreateNoteInput!) { createNote(input: $note) { id } }",
            {"note": note},
            token=token,
        )


@pytest.mark.parametrize("search", [None, "counted"])
def test_a_page_of_notes_costs_the_same_for_5_and_20_notes(app: Any, gql: Any, search: str | None) -> None:
    costs = {}
    for notes in (5, 20):
        token = gql.register()["token"]
        _fill(gql, token, notes)
        gql.data(NOTE_PAGE, {"search": search}, token=token)  # views are up to date after this
        cost, data = _cost(app, gql, NOTE_PAGE, token, {"search": search})
        edges = data["notes"]["edges"]
        assert len(edges) == notes
        assert len({edge["node"]["notebook"]["name"] for edge in edges}) == notes
        assert all(edge["node"]["createdBy"]["email"] and edge["node"]["notebook"]["owner"] for edge in edges)
        costs[notes] = cost
    assert costs[5] == costs[20], costs
    assert costs[20] <= MAX_REQUESTS, costs


def test_notebooks_with_counts_cost_the_same_for_1_and_8_notebooks(app: Any, gql: Any) -> None:
    costs = {}
    for count in (1, 8):
        token = gql.register()["token"]
        _fill(gql, token, count)
        gql.data(NOTEBOOKS, token=token)
        cost, data = _cost(app, gql, NOTEBOOKS, token)
        assert len(data["notebooks"]) == count
        assert all(nb["noteCount"] == 1 and nb["owner"]["email"] for nb in data["notebooks"])
        costs[count] = cost
    assert costs[1] == costs[8], costs
    assert costs[8] <= MAX_REQUESTS, costs


def test_the_counter_sees_requests(app: Any, gql: Any) -> None:
    # guards the tests above against a counter that never moves
    token = gql.register()["token"]
    cost, _ = _cost(app, gql, "{ me { id } }", token)
    assert cost >= 1


# a grantee's listing adds two requests, whatever the number of shared notebooks: the caller's
# memberships, and the index rows of every shared notebook's notes (one keyed view request)
GRANTEE_MAX_REQUESTS = MAX_REQUESTS + 2
# the caller's role in each listed note's notebook: one request more, for all of them
GRANTEE_PAGE = NOTE_PAGE.replace("notebook { name", "notebook { name myRole")


@pytest.mark.parametrize("search", [None, "counted"])
def test_a_grantees_page_costs_the_same_for_1_and_4_shared_notebooks(
    app: Any, gql: Any, search: str | None
) -> None:
    costs = {}
    for shared in (1, 4):
        owner, grantee = gql.register()["token"], gql.register()
        _fill(gql, grantee["token"], 2)
        for i in range(shared):
            mutation = "mutation($name: String!) { createNotebook(input: {name: $name}) { id } }"
            notebook = gql.data(mutation, {"name": f"Shared {i}"}, token=owner)["createNotebook"]["id"]
            gql.data(
                "mutation($id: ID!, $e: String!) { shareNotebook(id: $id, email: $e, role: VIEWER) { id } }",
                {"id": notebook, "e": grantee["user"]["email"]},
                token=owner,
            )
            note = {"notebookId": notebook, "title": f"shared {i}", "content": "counted words"}
            gql.data(
                "mutation($note: CreateNoteInput!) { createNote(input: $note) { id } }",
                {"note": note},
                token=owner,
            )
        gql.data(GRANTEE_PAGE, {"search": search}, token=grantee["token"])  # views are up to date after this
        cost, data = _cost(app, gql, GRANTEE_PAGE, grantee["token"], {"search": search})
        edges = data["notes"]["edges"]
        assert len(edges) == 2 + shared
        roles = sorted(edge["node"]["notebook"]["myRole"] for edge in edges)
        assert roles == ["OWNER", "OWNER"] + ["VIEWER"] * shared
        assert sum(edge["node"]["title"].startswith("shared") for edge in edges) == shared
        costs[shared] = cost
    assert costs[1] == costs[4], costs
    assert costs[4] <= GRANTEE_MAX_REQUESTS, costs


SHARED_NOTEBOOKS = "{ notebooks { id myRole noteCount owner { email } members { user { email } role } } }"


def test_a_grantees_notebooks_with_roles_and_members_cost_the_same_for_1_and_4(app: Any, gql: Any) -> None:
    costs = {}
    for shared in (1, 4):
        owner, grantee = gql.register()["token"], gql.register()
        for i in range(shared):
            mutation = "mutation($name: String!) { createNotebook(input: {name: $name}) { id } }"
            notebook = gql.data(mutation, {"name": f"Shared {i}"}, token=owner)["createNotebook"]["id"]
            gql.data(
                "mutation($id: ID!, $e: String!) { shareNotebook(id: $id, email: $e, role: EDITOR) { id } }",
                {"id": notebook, "e": grantee["user"]["email"]},
                token=owner,
            )
        gql.data(SHARED_NOTEBOOKS, token=grantee["token"])
        cost, data = _cost(app, gql, SHARED_NOTEBOOKS, grantee["token"])
        roles = sorted(nb["myRole"] for nb in data["notebooks"])
        assert roles == ["EDITOR"] * shared + ["OWNER"]
        assert all(len(nb["members"]) == (2 if nb["myRole"] == "EDITOR" else 1) for nb in data["notebooks"])
        costs[shared] = cost
    assert costs[1] == costs[4], costs
    assert costs[4] <= GRANTEE_MAX_REQUESTS, costs


NOTES_WITH_REVISIONS = """{
  notes(first: 20) { edges { node { id revisions(first: 5) { id title author { email } } } } }
}"""
EDIT = """mutation($id: ID!, $version: String!, $title: String!) {
  updateNote(id: $id, version: $version, input: {title: $title}) { version } }"""


def test_revisions_of_a_page_cost_the_same_for_2_and_8_notes(app: Any, gql: Any) -> None:
    # Note.revisions used to be one view query per note (N+1); now the page's revisions are one
    # keyed view request, their documents one more, their authors one more
    costs = {}
    for notes in (2, 8):
        token = gql.register()["token"]
        _fill(gql, token, notes)
        listed = gql.data("{ notes(first: 20) { edges { node { id version } } } }", token=token)
        for edge in listed["notes"]["edges"]:
            note = edge["node"]
            for round_ in range(2):
                changed = {"id": note["id"], "version": note["version"], "title": f"edit {round_}"}
                note["version"] = gql.data(EDIT, changed, token=token)["updateNote"]["version"]
        gql.data(NOTES_WITH_REVISIONS, token=token)
        cost, data = _cost(app, gql, NOTES_WITH_REVISIONS, token)
        edges = data["notes"]["edges"]
        assert len(edges) == notes
        # newest first: the title before the last edit, then the original one
        assert all([r["title"] for r in e["node"]["revisions"]][:1] == ["edit 0"] for e in edges), edges
        assert all(len(e["node"]["revisions"]) == 2 and e["node"]["revisions"][0]["author"] for e in edges)
        costs[notes] = cost
    assert costs[2] == costs[8], costs
    assert costs[8] <= MAX_REQUESTS + 3, costs  # the page, plus the revisions' three


NOTEBOOKS_WITH_NOTES = "{ notebooks { id name notes(first: 5) { edges { node { id title } } } } }"


def test_notebook_notes_do_not_read_each_notebook_again(app: Any, gql: Any) -> None:
    # each notebook's listing is one view request of its own; the notebook itself, read by the
    # `notebooks` list, is not read a second time for its notes (it was, once per notebook)
    costs = {}
    for count in (1, 5):
        token = gql.register()["token"]
        _fill(gql, token, count)
        gql.data(NOTEBOOKS_WITH_NOTES, token=token)
        cost, data = _cost(app, gql, NOTEBOOKS_WITH_NOTES, token)
        assert len(data["notebooks"]) == count
        assert all(len(nb["notes"]["edges"]) == 1 for nb in data["notebooks"])
        costs[count] = cost
    assert costs[5] - costs[1] == 4, costs  # one listing request per further notebook, nothing more


def _rows_read(app: Any, gql: Any, query: str, token: str) -> tuple[int, dict]:
    """Index rows the database returned while answering one GraphQL request, and its data."""
    client = app.extensions["notebook"].couch
    original = client.request
    rows = 0

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal rows
        payload = original(*args, **kwargs)
        if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
            rows += len(payload["rows"])
        return payload

    client.request = counting
    try:
        data = gql.data(query, token=token)
    finally:
        del client.request
    return rows, data


@pytest.mark.parametrize("search", ["common", "common other", "#dup common"])
def test_a_filtered_page_reads_the_same_rows_for_120_and_480_matches(app: Any, gql: Any, search: str) -> None:
    # a page of a search or tag filter walks the sorted term index from its position and stops
    # at the page size: it used to read one index row per matching note and word
    tag, _, words = search.rpartition("#")[2].partition(" ") if search.startswith("#") else ("", "", search)
    filters = f'search: "{words}"' + (f', tag: "{tag}"' if tag else "")
    query = f"{{ notes(first: 10, {filters}) {{ edges {{ node {{ id }} }} pageInfo {{ hasNextPage }} }} }}"
    rows = {}
    for count in (120, 480):
        token = gql.register()["token"]
        notebook = gql.data("{ notebooks { id } }", token=token)["notebooks"][0]["id"]
        notes = [{"title": f"n{i}", "content": "common other words", "tags": ["dup"]} for i in range(count)]
        gql.data(IMPORT, {"nb": notebook, "notes": notes}, token=token)
        gql.data(query, token=token)
        rows[count], data = _rows_read(app, gql, query, token)
        assert len(data["notes"]["edges"]) == 10 and data["notes"]["pageInfo"]["hasNextPage"]
    assert rows[120] == rows[480], rows


IMPORT = """mutation($nb: ID!, $notes: [CreateNoteInput!]!) {
  importNotes(notebookId: $nb, notes: $notes) { imported } }"""


def test_each_term_of_a_note_is_indexed_once_per_scope(app: Any, gql: Any) -> None:
    # the build cost of the term index: a term is one row under the owner's scope (sorted, any
    # trash state) and one under the notebook's, not a third copy (docs/benchmarks.md)
    registered = gql.register()
    owner, token = registered["user"]["id"], registered["token"]
    made = gql.data(
        "mutation($n: CreateNoteInput!) { createNote(input: $n) { id } }",
        {"n": {"title": "Indexed once", "content": "every word of this note, each once", "tags": ["a", "b"]}},
        token=token,
    )["createNote"]
    db = app.extensions["notebook"].notes.notes.db
    doc = db.get(made["id"])
    terms = len(doc["tokens"]) + len(doc["tag_keys"])
    high: dict[str, Any] = {}

    def rows(view: str, scope: str) -> int:
        return len(db.view(NOTES_DESIGN, view, startkey=[scope], endkey=[scope, high])["rows"])

    assert terms >= 8
    assert rows("note_terms_sorted", f"o:{owner}") == terms
    assert rows("note_terms", f"n:{doc['notebook_id']}") == terms
    assert rows("note_terms", f"o:{owner}") == 0
    gql.data("mutation($id: ID!) { trashNote(id: $id) { id } }", {"id": made["id"]}, token=token)
    assert rows("note_terms_sorted", f"o:{owner}") == terms  # in the trash, still one row per term
