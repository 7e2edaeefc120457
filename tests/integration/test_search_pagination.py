"""Search through the token index, filters, orderings and keyset pagination over the HTTP API."""

from __future__ import annotations

import random
from typing import Any

import pytest

NOTES = """query(
  $search: String, $tag: String, $trashed: Boolean, $order: NoteOrder, $first: Int, $after: String
) {
  notes(search: $search, tag: $tag, trashed: $trashed, orderBy: $order, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id title } }
  }
}"""
CREATE = "mutation($input: CreateNoteInput!) { createNote(input: $input) { id title version createdAt } }"
UPDATE = """mutation($id: ID!, $input: UpdateNoteInput!, $version: String!) {
  updateNote(id: $id, input: $input, version: $version) { id version } }"""
TRASH = "mutation($id: ID!) { trashNote(id: $id) { id } }"
IMPORT = """mutation($id: ID!, $notes: [CreateNoteInput!]!) {
  importNotes(notebookId: $id, notes: $notes) { imported failed } }"""
ORDERS = ["UPDATED_DESC", "UPDATED_ASC", "CREATED_DESC", "TITLE_ASC"]


class Searcher:
    def __init__(self, gql: Any) -> None:
        self.gql = gql
        self.token = gql.register()["token"]

    def create(self, title: str, content: str = "", tags: list[str] | None = None) -> dict:
        note_input = {"title": title, "content": content, "tags": tags or []}
        return self.gql.data(CREATE, {"input": note_input}, token=self.token)["createNote"]

    def notes(self, **variables: Any) -> dict:
        return self.gql.data(NOTES, variables, token=self.token)["notes"]

    def titles(self, **variables: Any) -> list[str]:
        variables.setdefault("first", 100)
        return [edge["node"]["title"] for edge in self.notes(**variables)["edges"]]

    def error(self, **variables: Any) -> str:
        return self.gql.error_code(NOTES, variables, token=self.token)


@pytest.fixture
def me(gql: Any) -> Searcher:
    return Searcher(gql)


@pytest.fixture
def kitchen(me: Searcher) -> Searcher:
    """Notes created in this order (oldest first)."""
    me.create("Café Crème", "A strong coffee with cream", ["drinks"])
    me.create("Apple pie", "Bake the apples with cinnamon", ["baking", "dessert"])
    me.create("Pie crust", "Flour, butter and ICE water", ["baking"])
    me.create("apple juice", "Pressed fresh; no pie involved", ["drinks"])
    old = me.create("Burnt toast", "An apple a day", ["baking"])
    me.gql.data(TRASH, {"id": old["id"]}, token=me.token)
    return me


def test_search_by_title_words(kitchen: Searcher) -> None:
    assert kitchen.titles(search="crust") == ["Pie crust"]
    assert kitchen.titles(search="juice") == ["apple juice"]


def test_search_by_content_words(kitchen: Searcher) -> None:
    assert kitchen.titles(search="cinnamon") == ["Apple pie"]
    assert kitchen.titles(search="coffee") == ["Café Crème"]


def test_search_ignores_accents_and_case(kitchen: Searcher) -> None:
    for query in ("cafe", "CAFÉ", "Café", "creme", "CRÈME", "cAfE cReMe"):
        assert kitchen.titles(search=query) == ["Café Crème"], query


def test_search_matches_all_words(kitchen: Searcher) -> None:
    assert kitchen.titles(search="apple", order="TITLE_ASC") == ["apple juice", "Apple pie"]
    assert kitchen.titles(search="apple pie", order="TITLE_ASC") == ["apple juice", "Apple pie"]
    assert kitchen.titles(search="apple cinnamon") == ["Apple pie"]
    assert kitchen.titles(search="pie   ice,water") == ["Pie crust"]
    assert kitchen.titles(search="apple unicorn") == []


def test_search_counts_every_match_not_the_page(kitchen: Searcher) -> None:
    result = kitchen.notes(search="pie", first=1)
    assert result["totalCount"] == 3
    assert len(result["edges"]) == 1
    assert result["pageInfo"]["hasNextPage"] is True


def test_tag_filter(kitchen: Searcher) -> None:
    assert kitchen.titles(tag="baking", order="TITLE_ASC") == ["Apple pie", "Pie crust"]
    assert kitchen.titles(tag="Drinks", order="TITLE_ASC") == ["apple juice", "Café Crème"]
    assert kitchen.titles(tag="baking", search="apple") == ["Apple pie"]
    assert kitchen.titles(tag="nothing") == []
    assert kitchen.notes(tag="baking")["totalCount"] == 2


def test_trashed_filter(kitchen: Searcher) -> None:
    assert kitchen.titles(trashed=True) == ["Burnt toast"]
    assert kitchen.titles(search="apple", trashed=True) == ["Burnt toast"]
    assert kitchen.titles(tag="baking", trashed=True) == ["Burnt toast"]
    assert "Burnt toast" not in kitchen.titles(search="apple")
    assert kitchen.notes(trashed=True)["totalCount"] == 1


@pytest.mark.parametrize("search", [None, "pie"])
def test_each_order(kitchen: Searcher, search: str | None) -> None:
    # touch the oldest pie note so that update order differs from creation order
    first = kitchen.notes(search="cinnamon")["edges"][0]["node"]["id"]
    version = kitchen.gql.data(
        "query($id: ID!) { note(id: $id) { version } }", {"id": first}, token=kitchen.token
    )
    kitchen.gql.data(
        UPDATE,
        {"id": first, "input": {"pinned": True}, "version": version["note"]["version"]},
        token=kitchen.token,
    )
    created = ["Café Crème", "Apple pie", "Pie crust", "apple juice"]
    if search:
        created = [title for title in created if title != "Café Crème"]
    updated = [title for title in created if title != "Apple pie"] + ["Apple pie"]
    assert kitchen.titles(search=search, order="CREATED_DESC") == created[::-1]
    assert kitchen.titles(search=search, order="UPDATED_DESC") == updated[::-1]
    assert kitchen.titles(search=search, order="UPDATED_ASC") == updated
    assert kitchen.titles(search=search, order="TITLE_ASC") == sorted(created, key=str.casefold)
    assert kitchen.titles(search=search) == updated[::-1]  # UPDATED_DESC is the default


def _walk(me: Searcher, order: str, search: str | None, insert_between_pages: int) -> list[str]:
    """Fetch every page with first: 7, inserting notes between page fetches; the ids seen."""
    rng = random.Random(order)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = me.notes(order=order, search=search, first=7, after=after)
        assert len(page["edges"]) <= 7
        seen += [edge["node"]["id"] for edge in page["edges"]]
        pages += 1
        assert pages < 50, "pagination does not end"
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]
        for _ in range(insert_between_pages):
            me.create(f"walk {rng.randrange(1000):03d} inserted", "walking around")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("search", [None, "walking"])
def test_walking_all_pages_while_notes_are_added(me: Searcher, order: str, search: str | None) -> None:
    titles = [f"walk {i:03d}" for i in random.Random(1).sample(range(1000), 30)]
    book = me.gql.data("{ notebooks { id } }", token=me.token)["notebooks"][0]["id"]
    imported = me.gql.data(
        IMPORT, {"id": book, "notes": [{"title": t, "content": "walking"} for t in titles]}, token=me.token
    )
    assert imported["importNotes"] == {"imported": 30, "failed": 0}
    before = {edge["node"]["id"] for edge in me.notes(first=100)["edges"]}
    assert len(before) == 30

    seen = _walk(me, order, search, insert_between_pages=3)

    assert len(seen) == len(set(seen)), "a note was returned twice"
    assert before <= set(seen), "a note that existed before the walk was skipped"
    assert me.notes(first=100)["totalCount"] > 30  # the inserts did happen


def test_pages_follow_the_order(me: Searcher) -> None:
    for i in range(10):
        me.create(f"page {i:02d}")
    seen = []
    after = None
    for _ in range(4):
        page = me.notes(order="TITLE_ASC", first=3, after=after)
        seen.append([edge["node"]["title"] for edge in page["edges"]])
        after = page["pageInfo"]["endCursor"]
    assert seen == [["page 00", "page 01", "page 02"], ["page 03", "page 04", "page 05"],
                    ["page 06", "page 07", "page 08"], ["page 09"]]  # fmt: skip
    assert page["pageInfo"]["hasNextPage"] is False
    assert page["totalCount"] == 10


def test_empty_list(me: Searcher) -> None:
    assert me.notes(trashed=True) == {
        "totalCount": 0,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }


def test_bad_cursors(kitchen: Searcher) -> None:
    forged = ["garbage", "WyJVUERBVEVEX0RFU0MiXQ", "eyJhIjogMX0", "%%%", "a" * 5000, "note:abc"]
    for after in forged:
        assert kitchen.error(after=after) == "BAD_USER_INPUT", after
        assert kitchen.error(after=after, search="apple") == "BAD_USER_INPUT", after
    # a cursor of another ordering is refused, not misread
    cursor = kitchen.notes(first=1)["pageInfo"]["endCursor"]
    assert kitchen.error(after=cursor, order="TITLE_ASC") == "BAD_USER_INPUT"
    assert kitchen.error(after=cursor, order="TITLE_ASC", tag="baking") == "BAD_USER_INPUT"
    # an empty cursor means "from the start"
    assert kitchen.titles(after="") == kitchen.titles()


def test_bad_page_sizes_and_searches(kitchen: Searcher) -> None:
    for first in (0, -1, 101):
        assert kitchen.error(first=first) == "BAD_USER_INPUT", first
    assert kitchen.error(search=" ".join(f"w{i}" for i in range(21))) == "BAD_USER_INPUT"
