"""Bad input over HTTP: each gets its contract error code as JSON, never a 500 or a stack trace,
and the stored data is unchanged (read back after every failed write)."""

from __future__ import annotations

import json
from typing import Any

import pytest

NOTE_FIELDS = "id title content tags pinned trashedAt version updatedAt notebook { id }"
NOTE = f"query($id: ID!) {{ note(id: $id) {{ {NOTE_FIELDS} }} }}"
UPDATE = f"""mutation($id: ID!, $input: UpdateNoteInput!, $version: String!) {{
  updateNote(id: $id, input: $input, version: $version) {{ {NOTE_FIELDS} }} }}"""
CREATE = f"mutation($input: CreateNoteInput!) {{ createNote(input: $input) {{ {NOTE_FIELDS} }} }}"
ONE_MIB = 1024 * 1024


def assert_clean_error(response: Any, code: str, status: int | None = None, context: object = None) -> dict:
    """A JSON error answer with `code`, no server error and nothing internal in it."""
    assert response.status_code < 500, (context, response.get_data(as_text=True)[:500])
    if status is not None:
        assert response.status_code == status, context
    assert response.mimetype == "application/json"
    text = response.get_data(as_text=True)
    for leak in ("Traceback", 'File "', "site-packages", "Exception", "/src/notebook"):
        assert leak not in text, text[:500]
    body = json.loads(text)
    assert body["errors"], body
    assert all("code" in error.get("extensions", {}) for error in body["errors"]), body
    assert body["errors"][0]["extensions"]["code"] == code, (context, body)
    return body


@pytest.fixture
def owner(gql: Any) -> dict:
    account = gql.register()
    account["note"] = gql.data(
        CREATE, {"input": {"title": "Original", "content": "kept", "tags": ["a"]}}, token=account["token"]
    )["createNote"]
    return account


def _read_back(gql: Any, owner: dict) -> dict:
    return gql.data(NOTE, {"id": owner["note"]["id"]}, token=owner["token"])["note"]


# the request itself ------------------------------------------------------------------------------
MALFORMED_BODIES = [
    ("{bad json", "application/json"),
    ('{"query": "{ me { id } }"', "application/json"),
    ("", "application/json"),
    ("[]", "application/json"),
    ('[{"query": "{ me { id } }"}]', "application/json"),
    ('"{ me { id } }"', "application/json"),
    ("42", "application/json"),
    ("null", "application/json"),
    ('{"query": "{ me { id } }"}', "text/plain"),
    ("query=%7B+me+%7B+id+%7D+%7D", "application/x-www-form-urlencoded"),
    (b"\xff\xfe\x00{", "application/json"),
    ("[" * 100_000 + "]" * 100_000, "application/json"),
    (
        '{"query": "{ me { id } }", "variables": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}",
        "application/json",
    ),
]
BAD_REQUESTS = [
    {},
    {"query": None},
    {"query": 5},
    {"query": ["{ me { id } }"]},
    {"query": "{ me { id } }", "variables": []},
    {"query": "{ me { id } }", "variables": "x"},
    {"query": "{ me { id } }", "operationName": 5},
    {"query": "query A { me { id } } query B { me { id } }"},
    {"query": "query A { me { id } }", "operationName": "B"},
    {"query": "{ me { id }"},
    {"query": ""},
]


def test_malformed_or_non_object_bodies(client: Any) -> None:
    for body, content_type in MALFORMED_BODIES:
        response = client.post("/graphql", data=body, content_type=content_type)
        assert_clean_error(response, "BAD_USER_INPUT", status=400, context=body)


def test_bad_graphql_requests(client: Any) -> None:
    for payload in BAD_REQUESTS:
        assert_clean_error(client.post("/graphql", json=payload), "BAD_USER_INPUT", context=payload)


def test_other_methods_and_paths(client: Any) -> None:
    assert_clean_error(client.put("/graphql", json={"query": "{ me { id } }"}), "BAD_USER_INPUT", status=405)
    assert_clean_error(client.get("/no-such-page"), "NOT_FOUND", status=404)


def test_body_over_the_request_limit(client: Any, config: Any, gql: Any, owner: dict) -> None:
    padding = "x" * (config.max_request_bytes + 1)
    payload = {
        "query": UPDATE,
        "variables": {
            "id": owner["note"]["id"],
            "input": {"content": padding},
            "version": owner["note"]["version"],
        },
    }
    response = client.post(
        "/graphql",
        data=json.dumps(payload),
        content_type="application/json",
        headers={"Authorization": f"Bearer {owner['token']}"},
    )
    assert_clean_error(response, "PAYLOAD_TOO_LARGE", status=413)
    assert _read_back(gql, owner) == owner["note"]


def test_too_deep_query(gql: Any, owner: dict, config: Any) -> None:
    nested = "id"
    for _ in range(config.graphql_max_depth):
        nested = f"notebook {{ notes {{ edges {{ node {{ {nested} }} }} }} }}"
    response = gql.post(f'{{ note(id: "{owner["note"]["id"]}") {{ {nested} }} }}', token=owner["token"])
    assert_clean_error(response, "QUERY_TOO_COMPLEX", status=400)


def test_too_deep_through_fragments(gql: Any, owner: dict, config: Any) -> None:
    fragments = ["fragment F0 on Note { id }"]
    for level in range(1, config.graphql_max_depth):
        fragments.append(
            f"fragment F{level} on Note "
            f"{{ notebook {{ notes {{ edges {{ node {{ ...F{level - 1} }} }} }} }} }}"
        )
    query = f"{{ notes {{ edges {{ node {{ ...F{config.graphql_max_depth - 1} }} }} }} }}\n" + "\n".join(
        fragments
    )
    assert_clean_error(gql.post(query, token=owner["token"]), "QUERY_TOO_COMPLEX", status=400)


def test_documents_nested_beyond_the_parser(gql: Any, owner: dict) -> None:
    n = 100_000
    for query in (
        "{" + "a { " * n + "id" + " }" * n + "}",
        "{ notes(tag: " + "[" * n + "]" * n + ") { totalCount } }",
        "{ notes(tag: " + "{a: " * n + "1" + "}" * n + ") { totalCount } }",
        "{ ...F0 } "
        + " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(5000))
        + " fragment F5000 on Query { me { id } }",
    ):
        response = gql.post(query, token=owner["token"])
        body = assert_clean_error(response, "QUERY_TOO_COMPLEX", status=400, context=query[:40])
        assert "recursion" not in json.dumps(body)


def test_a_reasonable_query_is_not_too_deep(gql: Any, owner: dict) -> None:
    query = """{ notes { edges { node {
      notebook { owner { email } notes(first: 1) { edges { node { id } } } } } } } }"""
    assert gql.data(query, token=owner["token"])["notes"]["edges"]


# input values ------------------------------------------------------------------------------------
BAD_CREATES = [
    ("BAD_USER_INPUT", {"title": ""}),
    ("BAD_USER_INPUT", {"title": "   "}),
    ("BAD_USER_INPUT", {"title": "x" * 501}),
    ("BAD_USER_INPUT", {"title": "nul\u0000byte"}),
    ("BAD_USER_INPUT", {"title": "ok", "tags": [f"t{i}" for i in range(51)]}),
    ("BAD_USER_INPUT", {"title": "ok", "tags": [""]}),
    ("BAD_USER_INPUT", {"title": "ok", "tags": ["x" * 65]}),
    ("PAYLOAD_TOO_LARGE", {"title": "ok", "content": "x" * (ONE_MIB + 1)}),
    ("PAYLOAD_TOO_LARGE", {"title": "ok", "content": "é" * (ONE_MIB // 2 + 1)}),
    # wrong types and unknown fields, caught by the schema
    ("BAD_USER_INPUT", {"title": 5}),
    ("BAD_USER_INPUT", {"title": None}),
    ("BAD_USER_INPUT", {}),
    ("BAD_USER_INPUT", {"title": "ok", "tags": [1, 2]}),
    ("BAD_USER_INPUT", {"title": "ok", "tags": [None]}),
    ("BAD_USER_INPUT", {"title": "ok", "pinned": "yes"}),
    ("BAD_USER_INPUT", {"title": "ok", "color": "red"}),
    ("BAD_USER_INPUT", {"title": "ok", "notebookId": {"id": 1}}),
    ("BAD_USER_INPUT", {"title": "ok", "notebookId": "note:abc"}),
    ("BAD_USER_INPUT", {"title": "ok", "notebookId": 12}),
]


def test_bad_note_input_creates_nothing(gql: Any, owner: dict) -> None:
    for code, note_input in BAD_CREATES:
        response = gql.post(CREATE, {"input": note_input}, token=owner["token"])
        assert_clean_error(response, code, context=note_input)
    total = gql.data("{ notes { totalCount } }", token=owner["token"])["notes"]["totalCount"]
    assert total == 1


def test_boundary_values_are_accepted(gql: Any, owner: dict) -> None:
    note_input = {"title": "x" * 500, "content": "x" * ONE_MIB, "tags": [f"t{i}" for i in range(50)]}
    created = gql.data(CREATE, {"input": note_input}, token=owner["token"])["createNote"]
    assert (len(created["title"]), len(created["content"]), len(created["tags"])) == (500, ONE_MIB, 50)


BAD_UPDATES = [
    ("BAD_USER_INPUT", {"title": ""}),
    ("BAD_USER_INPUT", {"title": "x" * 501}),
    ("BAD_USER_INPUT", {"tags": [f"t{i}" for i in range(51)]}),
    ("PAYLOAD_TOO_LARGE", {"content": "x" * (ONE_MIB + 1)}),
    ("BAD_USER_INPUT", {"title": 5}),
    ("BAD_USER_INPUT", {"tags": [{"name": "x"}]}),
    ("BAD_USER_INPUT", {"pinned": 1}),
    ("BAD_USER_INPUT", {"notebookId": "notebook:abc"}),
    ("BAD_USER_INPUT", {"version": "1-abc"}),
]


def test_failed_updates_leave_the_note_unchanged(gql: Any, owner: dict) -> None:
    note = owner["note"]
    for code, changes in BAD_UPDATES:
        variables = {"id": note["id"], "input": changes, "version": note["version"]}
        assert_clean_error(gql.post(UPDATE, variables, token=owner["token"]), code, context=changes)
        assert _read_back(gql, owner) == note, changes


OWN_NOTE = "<the owner's note id>"


SCHEMA_VIOLATIONS = [
    (UPDATE, {"id": 5, "input": {"title": "x"}, "version": "v"}),
    (UPDATE, {"id": None, "input": {"title": "x"}, "version": "v"}),
    (UPDATE, {"id": OWN_NOTE, "input": {"title": "x"}}),
    (UPDATE, {"id": OWN_NOTE, "input": "title", "version": "v"}),
    (UPDATE, {"id": [OWN_NOTE], "input": {"title": "x"}, "version": "v"}),
    ('mutation { updateNote(id: "x", input: {title: "x"}, version: 5) { id } }', {}),
    ('mutation { updateNote(id: "x", input: {title: "x"}, version: "v", extra: 1) { id } }', {}),
    ("{ note(id: 5) { id secretField } }", {}),
    ('{ notes(first: "ten") { totalCount } }', {}),
    ("{ notes(first: 3000000000) { totalCount } }", {}),
    ("{ notes(first: 2.5) { totalCount } }", {}),
    ("{ notes(orderBy: RANDOM) { totalCount } }", {}),
    ('{ notes(orderBy: "TITLE_ASC") { totalCount } }', {}),
    ('{ notes(trashed: "yes") { totalCount } }', {}),
    ("{ me { id passwordHash } }", {}),
    ("{ notebooks }", {}),
    ("mutation { deleteEverything }", {}),
]


def test_schema_violations(gql: Any, owner: dict) -> None:
    for query, variables in SCHEMA_VIOLATIONS:
        variables = {
            name: owner["note"]["id"] if value == OWN_NOTE else value for name, value in variables.items()
        }
        assert_clean_error(gql.post(query, variables, token=owner["token"]), "BAD_USER_INPUT", context=query)
    assert _read_back(gql, owner) == owner["note"]


NOT_NOTE_IDS = [
    "notebook:abc",
    "user:abc",
    "12",
    "",
    "note",
    "note:" + "x" * 200,
    "_design/notebook",
    "../_all_docs",
]
NOT_NOTEBOOK_IDS = [
    "note:abc",
    "user:abc",
    "12",
    "",
    "notebook:" + "x" * 200,
    "_design/notebook",
    "../_all_docs",
]


def test_ids_of_the_wrong_kind(gql: Any, owner: dict) -> None:
    note, token = owner["note"], owner["token"]
    note_positions = [
        "query($id: ID!) { note(id: $id) { id } }",
        'mutation($id: ID!) { updateNote(id: $id, input: {title: "changed"}, version: "1-x") { id } }',
        "mutation($id: ID!) { trashNote(id: $id) { id } }",
        "mutation($id: ID!) { restoreNote(id: $id) { id } }",
        "mutation($id: ID!) { deleteNote(id: $id) }",
        'mutation($id: ID!) { moveNote(id: $id, notebookId: "notebook:x") { id } }',
    ]
    notebook_positions = [
        "query($id: ID!) { notebook(id: $id) { id } }",
        "query($id: ID!) { notes(notebookId: $id) { totalCount } }",
        'mutation($id: ID!) { moveNote(id: "' + note["id"] + '", notebookId: $id) { id } }',
        'mutation($id: ID!) { createNote(input: {notebookId: $id, title: "planted"}) { id } }',
        'mutation($id: ID!) { updateNotebook(id: $id, input: {name: "x"}, version: "1-x") { id } }',
        "mutation($id: ID!) { deleteNotebook(id: $id) }",
        'mutation($id: ID!) { importNotes(notebookId: $id, notes: [{title: "planted"}]) { imported } }',
    ]
    for positions, bad_ids in ((note_positions, NOT_NOTE_IDS), (notebook_positions, NOT_NOTEBOOK_IDS)):
        for query in positions:
            for bad_id in bad_ids:
                response = gql.post(query, {"id": bad_id}, token=token)
                body = assert_clean_error(response, "BAD_USER_INPUT", context=(query, bad_id))
                assert body["errors"][0]["message"], (query, bad_id)
    assert _read_back(gql, owner) == note
    assert gql.data("{ notes { totalCount } }", token=token)["notes"]["totalCount"] == 1


def test_well_formed_unknown_ids_are_not_found(gql: Any, owner: dict) -> None:
    for query, variables in (
        ("query($id: ID!) { note(id: $id) { id } }", {"id": "note:../_all_docs"}),
        ("query($id: ID!) { note(id: $id) { id } }", {"id": "note:?include_docs=true"}),
        ("query($id: ID!) { notebook(id: $id) { id } }", {"id": "notebook:%2F_design%2Fnotebook"}),
        ("query($id: ID!) { notebook(id: $id) { id } }", {"id": "notebook:"}),
    ):
        assert_clean_error(gql.post(query, variables, token=owner["token"]), "NOT_FOUND", context=variables)


def test_integer_ids_are_bad_input(gql: Any, owner: dict) -> None:
    assert_clean_error(gql.post("{ note(id: 12345) { id } }", token=owner["token"]), "BAD_USER_INPUT")
    assert_clean_error(gql.post("{ notebook(id: 7) { id } }", token=owner["token"]), "BAD_USER_INPUT")


def test_unpaired_surrogates(gql: Any, owner: dict) -> None:
    note, token = owner["note"], owner["token"]
    for query, variables in (
        (NOTE, {"id": "note:\ud800"}),
        (UPDATE, {"id": note["id"], "input": {"title": "bad \udfff"}, "version": note["version"]}),
        (UPDATE, {"id": note["id"], "input": {"tags": ["\ud83d"]}, "version": note["version"]}),
        (CREATE, {"input": {"title": "\ud800"}}),
        ("query($s: String) { notes(search: $s) { totalCount } }", {"s": "\ud800"}),
    ):
        body = json.dumps({"query": query, "variables": variables})  # escapes the surrogates as \\udXXX
        response = gql.client.post(
            "/graphql",
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert_clean_error(response, "BAD_USER_INPUT", context=variables)
    assert _read_back(gql, owner) == note
    assert gql.data("{ notes { totalCount } }", token=token)["notes"]["totalCount"] == 1


NOTEBOOK_FIELDS = "id name description version updatedAt noteCount"


def test_failed_notebook_writes_change_nothing(gql: Any, owner: dict) -> None:
    token = owner["token"]
    create = (
        f"mutation($input: CreateNotebookInput!) {{ createNotebook(input: $input) {{ {NOTEBOOK_FIELDS} }} }}"
    )
    update = f"""mutation($id: ID!, $input: UpdateNotebookInput!, $version: String!) {{
      updateNotebook(id: $id, input: $input, version: $version) {{ {NOTEBOOK_FIELDS} }} }}"""
    book = gql.data(create, {"input": {"name": "Kept", "description": "about"}}, token=token)[
        "createNotebook"
    ]
    for changes in (
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"description": "x" * 2001},
        {"name": 5},
        {"ownerId": "user:someone"},
    ):
        variables = {"id": book["id"], "input": changes, "version": book["version"]}
        assert_clean_error(gql.post(update, variables, token=token), "BAD_USER_INPUT", context=changes)
    for bad in (
        {"name": ""},
        {"name": "x" * 201},
        {"description": "no name"},
        {"name": "ok", "color": "red"},
    ):
        assert_clean_error(gql.post(create, {"input": bad}, token=token), "BAD_USER_INPUT", context=bad)
    read_back = f"query($id: ID!) {{ notebook(id: $id) {{ {NOTEBOOK_FIELDS} }} }}"
    assert gql.data(read_back, {"id": book["id"]}, token=token)["notebook"] == book
    assert len(gql.data("{ notebooks { id } }", token=token)["notebooks"]) == 2


def test_too_many_notes_in_one_import(gql: Any, owner: dict) -> None:
    token = owner["token"]
    book = gql.data("{ notebooks { id } }", token=token)["notebooks"][0]["id"]
    query = """mutation($id: ID!, $notes: [CreateNoteInput!]!) {
      importNotes(notebookId: $id, notes: $notes) { imported failed } }"""
    notes = [{"title": f"n{i}"} for i in range(1001)]
    assert_clean_error(gql.post(query, {"id": book, "notes": notes}, token=token), "BAD_USER_INPUT")
    assert gql.data("{ notes { totalCount } }", token=token)["notes"]["totalCount"] == 1
