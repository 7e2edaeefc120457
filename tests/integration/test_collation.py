"""TITLE_ASC: one order and one set of cursors on pouchdb-server (code points) and CouchDB 3 (ICU).

Every page and cursor is checked against an order computed in Python from
`core.search.title_sort_key`; the suite runs on both servers (make test, make test-couchdb3), so
both give exactly this order and these cursors. Plain listings (the `notes_by_title` view) and
filtered listings (tag and search, sorted in Python) must agree with each other too.
"""

from __future__ import annotations

from typing import Any

from notebook.core.pagination import encode_cursor
from notebook.core.search import title_sort_key

# Mixed case, accents, non-Latin scripts, punctuation and digits: ICU and code points disagree on
# most pairs here (ICU puts "b" before "Z", "é" next to "e", "_" and "-" before letters, ...).
TITLES = [
    "zebra", "Zebra", "Äpfel", "apfel", "Éclair", "eclair", "Ézé", "ezf",
    "Ωmega", "ωmega", "Ярослав", "яблоко", "日本語", "中文", "한국어",
    "_underscore", "-dash", "10 items", "9 items", "a b", "ab", "a-b", "A.B",
    "Ölfarbe", "oz", "straße", "STRASSE", "Ærø", "aero",
]  # fmt: skip
NOTES = """query($tag: String, $search: String, $first: Int, $after: String) {
  notes(tag: $tag, search: $search, orderBy: TITLE_ASC, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id title } }
  }
}"""
CREATE = "mutation($input: CreateNoteInput!) { createNote(input: $input) { id title } }"


def _pages(gql: Any, token: str, size: int, **filters: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """Walk every page of a TITLE_ASC listing; (id, title) in order, and every cursor."""
    seen: list[tuple[str, str]] = []
    cursors: list[str] = []
    after = None
    for _ in range(len(TITLES) + 2):  # bounded: one page per note at most
        page = gql.data(NOTES, {"first": size, "after": after, **filters}, token)["notes"]
        seen += [(edge["node"]["id"], edge["node"]["title"]) for edge in page["edges"]]
        cursors += [edge["cursor"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return seen, cursors
        after = page["pageInfo"]["endCursor"]
    raise AssertionError("pagination did not end")


def test_title_order_and_cursors_are_the_same_on_every_server(gql: Any) -> None:
    token = gql.register()["token"]
    created = [
        gql.data(CREATE, {"input": {"title": title, "content": "shared word", "tags": ["mix"]}}, token)[
            "createNote"
        ]
        for title in TITLES
    ]
    expected = sorted(((title_sort_key(n["title"]), n["id"]), n["title"]) for n in created)
    expected_notes = [(key[1], title) for key, title in expected]
    expected_cursors = [encode_cursor("TITLE_ASC", key[0], key[1]) for key, _ in expected]

    listed, cursors = _pages(gql, token, 4)
    assert [title for _, title in listed] == [title for _, title in expected_notes]
    assert listed == expected_notes
    assert cursors == expected_cursors

    # the tag and search paths sort in Python on the stored key: the same order and cursors
    for filters in ({"tag": "MIX"}, {"search": "shared"}):
        filtered, filtered_cursors = _pages(gql, token, 5, **filters)
        assert filtered == expected_notes, filters
        assert filtered_cursors == expected_cursors, filters

    # a cursor from one page size continues correctly with another
    first_seven, _ = _pages(gql, token, 7)
    assert first_seven == expected_notes
    resumed = gql.data(NOTES, {"first": 100, "after": expected_cursors[9]}, token)["notes"]
    assert [(e["node"]["id"], e["node"]["title"]) for e in resumed["edges"]] == expected_notes[10:]


def test_case_and_accents_do_not_split_equal_titles_apart(gql: Any) -> None:
    """Titles equal after case folding and accent removal sort together, ties broken by id."""
    token = gql.register()["token"]
    titles = ["Resume", "résumé", "RÉSUMÉ", "resume", "Ressource", "rest"]
    created = [gql.data(CREATE, {"input": {"title": t}}, token)["createNote"] for t in titles]
    listed, _ = _pages(gql, token, 2)
    same = sorted(n["id"] for n in created if n["title"].lower().replace("é", "e") == "resume")
    assert [title for _, title in listed][:2] == ["Ressource", "rest"]
    assert [note_id for note_id, _ in listed][2:] == same
