"""The repositories' contract, checked against the real CouchDB repositories and the unit-test fakes.

Every check runs twice: once on a real pouchdb-server node, once on tests/unit/fakes.py. A fake
that drifts from the real behaviour (or the other way round) fails here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from config.settings import Config
from notebook.core.domain import Membership, Note, Notebook, NoteQuery, NoteRevision, RefreshToken, User
from notebook.core.errors import EmailTaken, InvalidInput, NotFound, VersionConflict
from notebook.database.couch import CouchDBClient
from notebook.database.design_docs import ensure_schema, open_databases
from notebook.database.repository import (
    MembershipRepository,
    NotebookRepository,
    NoteRepository,
    RefreshTokenRepository,
    UserRepository,
)
from notebook.database.throttle_repository import ThrottleRepository
from tests.unit.fakes import (
    FakeAttemptStore,
    FakeMembershipRepository,
    FakeNotebookRepository,
    FakeNoteRepository,
    FakeNoteStore,
    FakeRefreshTokenRepository,
    FakeUserRepository,
)


@dataclass
class Repositories:
    users: Any
    tokens: Any
    notebooks: Any
    notes: Any
    memberships: Any


@pytest.fixture(params=["couchdb", "fake"])
def repos(request: pytest.FixtureRequest) -> Iterator[Repositories]:
    if request.param == "fake":
        store = FakeNoteStore()
        yield Repositories(
            FakeUserRepository(),
            FakeRefreshTokenRepository(),
            FakeNotebookRepository(store),
            FakeNoteRepository(store),
            FakeMembershipRepository(store),
        )
        return
    config: Config = request.getfixturevalue("config")
    client = CouchDBClient(config.couchdb_url, user=config.couchdb_user, password=config.couchdb_password)
    databases = open_databases(client, config.db_prefix)
    ensure_schema(databases)
    yield Repositories(
        UserRepository(databases.users),
        RefreshTokenRepository(databases.users),
        NotebookRepository(databases.notes),
        NoteRepository(databases.notes),
        MembershipRepository(databases.notes),
    )
    for db in databases.all():
        db.destroy()
    client.close()


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def _user(email: str) -> User:
    return User(_id("user:"), email, "Name", "2025-01-01T00:00:00.000000Z", password_hash="$argon2id$x")


def _notebook(owner: str, name: str = "Book", created: str = "2025-01-01T00:00:00.000000Z") -> Notebook:
    return Notebook(_id("notebook:"), name, owner, created, created)


def _note(book: Notebook, title: str = "Note", day: int = 1, **fields: Any) -> Note:
    stamp = f"2025-01-{day:02d}T00:00:00.000000Z"
    values: dict[str, Any] = {"created_at": stamp, "updated_at": stamp, **fields}
    return Note(
        id=_id("note:"),
        notebook_id=book.id,
        owner_id=book.owner_id,
        title=title,
        content=values.pop("content", ""),
        created_by=book.owner_id,
        updated_by=book.owner_id,
        **values,
    )


# users --------------------------------------------------------------------------------------------
def test_users(repos: Repositories) -> None:
    ada = _user("ada@example.com")
    repos.users.add(ada)
    assert ada.version
    assert repos.users.get(ada.id) == ada
    assert repos.users.get_by_email("ada@example.com") == ada
    assert repos.users.get_by_email("nobody@example.com") is None
    with pytest.raises(EmailTaken):
        repos.users.add(_user("ada@example.com"))
    with pytest.raises(NotFound):
        repos.users.get(_id("user:"))
    assert repos.users.get_many([ada.id, _id("user:")]) == {ada.id: ada}


def test_refresh_tokens(repos: Repositories) -> None:
    first = RefreshToken("hash-1", "user:1", "family-a", expires_at=2e9)
    second = RefreshToken("hash-2", "user:1", "family-a", expires_at=2e9)
    other = RefreshToken("hash-3", "user:1", "family-b", expires_at=2e9)
    for token in (first, second, other):
        repos.tokens.add(token)
    stored = repos.tokens.get("hash-1")
    assert (stored.user_id, stored.family, stored.used, stored.revoked) == (
        "user:1",
        "family-a",
        False,
        False,
    )
    assert repos.tokens.get("no-such-hash") is None

    assert repos.tokens.mark_used(stored) is True
    assert repos.tokens.mark_used(stored) is False  # a replay of the same token
    assert repos.tokens.mark_used(repos.tokens.get("hash-1")) is False  # already used
    assert repos.tokens.get("hash-1").used

    assert repos.tokens.revoke_family("family-a") == 2
    assert repos.tokens.revoke_family("family-a") == 0
    assert repos.tokens.get("hash-2").revoked
    assert not repos.tokens.get("hash-3").revoked
    assert repos.tokens.mark_used(repos.tokens.get("hash-2")) is False
    # a token of the family issued on another node arrives by replication after the revocation
    repos.tokens.add(RefreshToken("hash-4", "user:1", "family-a", expires_at=2e9))
    assert repos.tokens.get("hash-4").revoked
    assert not repos.tokens.get("hash-3").revoked


@pytest.fixture(params=["couchdb", "fake"])
def attempts(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeAttemptStore()
        return
    config: Config = request.getfixturevalue("config")
    client = CouchDBClient(config.couchdb_url, user=config.couchdb_user, password=config.couchdb_password)
    databases = open_databases(client, config.db_prefix)
    ensure_schema(databases)
    yield ThrottleRepository(databases.throttle)
    for db in databases.all():
        db.destroy()
    client.close()


def test_attempt_store(attempts: Any) -> None:
    attempts.record(["ip:a", "pair:x:a"], 100)
    attempts.record(["ip:a"], 100)
    attempts.record(["ip:a", "pair:y:a"], 101)
    attempts.record(["ip:b"], 90)
    assert attempts.counts(["ip:a", "pair:x:a", "ip:c"], [100, 101]) == {
        "ip:a": {100: 2, 101: 1},
        "pair:x:a": {100: 1},
    }
    assert attempts.counts(["ip:a"], [101]) == {"ip:a": {101: 1}}
    assert attempts.counts(["ip:b"], [100, 101]) == {}
    assert attempts.purge_before(101) == 3  # bucket 90 and both of 100
    assert attempts.purge_before(101) == 0
    assert attempts.counts(["ip:a", "ip:b"], [90, 100, 101]) == {"ip:a": {101: 1}}


# notebooks ----------------------------------------------------------------------------------------
def test_notebooks(repos: Repositories) -> None:
    work = _notebook("user:ada", "Work", "2025-01-01T00:00:00.000000Z")
    home = _notebook("user:ada", "Home", "2025-01-02T00:00:00.000000Z")
    bobs = _notebook("user:bob", "Bob's")
    for notebook in (work, home, bobs):
        repos.notebooks.add(notebook)
    assert repos.notebooks.get(work.id) == work
    assert repos.notebooks.get(_id("notebook:")) is None
    assert repos.notebooks.get_many([work.id, bobs.id, _id("notebook:")]) == {work.id: work, bobs.id: bobs}
    assert repos.notebooks.list_owned("user:ada") == [work, home]
    assert repos.notebooks.list_owned("user:nobody") == []


def test_notebook_versions(repos: Repositories) -> None:
    work = _notebook("user:ada")
    repos.notebooks.add(work)
    stale = replace(work)
    work.name = "Renamed"
    repos.notebooks.update(work)
    assert work.version != stale.version
    assert repos.notebooks.get(work.id) == work

    stale.name = "Lost update"
    with pytest.raises(VersionConflict) as caught:
        repos.notebooks.update(stale)
    assert caught.value.current_version == work.version
    assert repos.notebooks.get(work.id).name == "Renamed"


def test_note_counts_and_delete_with_notes(repos: Repositories) -> None:
    doomed, kept = _notebook("user:ada"), _notebook("user:ada")
    repos.notebooks.add(doomed)
    repos.notebooks.add(kept)
    live, trashed, other = _note(doomed), _note(doomed, trashed_at="2025-02-01T00:00:00.000000Z"), _note(kept)
    for note in (live, trashed, other):
        repos.notes.add(note)
    empty = _id("notebook:")
    assert repos.notebooks.note_counts([doomed.id, kept.id, empty]) == {doomed.id: 1, kept.id: 1, empty: 0}
    assert repos.notebooks.note_counts([]) == {}

    assert repos.notebooks.delete_with_notes(doomed) == 2
    assert repos.notebooks.get(doomed.id) is None
    assert repos.notes.get(live.id) is None
    assert repos.notes.get(trashed.id) is None
    assert repos.notes.get(other.id) == other


# notes --------------------------------------------------------------------------------------------
def test_notes(repos: Repositories) -> None:
    book = _notebook("user:ada")
    repos.notebooks.add(book)
    note = _note(book, "Title", content="body", tags=["Work", "home"], pinned=True)
    repos.notes.add(note)
    assert note.version
    assert repos.notes.get(note.id) == note
    assert repos.notes.get(_id("note:")) is None
    assert repos.notes.get(book.id) is None  # a notebook is not a note
    assert repos.notes.get_many([note.id, _id("note:")]) == {note.id: note}

    batch = [_note(book, f"Bulk {i}") for i in range(3)]
    assert repos.notes.add_many(batch) == [None, None, None]
    assert all(n.version for n in batch)
    assert repos.notes.get(batch[2].id) == batch[2]


def test_note_versions_and_delete(repos: Repositories) -> None:
    book = _notebook("user:ada")
    repos.notebooks.add(book)
    note = _note(book, "v1")
    repos.notes.add(note)
    stale = replace(note)
    note.title = "v2"
    repos.notes.update(note)
    assert repos.notes.get(note.id) == note

    stale.title = "lost"
    with pytest.raises(VersionConflict) as caught:
        repos.notes.update(stale)
    assert caught.value.current_version == note.version
    with pytest.raises(VersionConflict):
        repos.notes.delete(stale)
    assert repos.notes.get(note.id) == note

    repos.notes.delete(note)
    assert repos.notes.get(note.id) is None


def test_note_revisions(repos: Repositories) -> None:
    book = _notebook("user:ada")
    repos.notebooks.add(book)
    note = _note(book, "v1", 1)
    repos.notes.add(note)
    for day, title in ((2, "v2"), (3, "v3")):
        replaced = NoteRevision.of(note, "EDIT")
        note.title, note.updated_at = title, f"2025-01-{day:02d}T00:00:00.000000Z"
        repos.notes.update(note, replaced)
    assert repos.notes.get(note.id) == note
    kept = repos.notes.revisions(note.id, 10)
    assert [(r.title, r.reason, r.note_id) for r in kept] == [
        ("v2", "EDIT", note.id),
        ("v1", "EDIT", note.id),
    ]
    assert repos.notes.revisions(note.id, 1) == kept[:1]

    assert repos.notes.prune_revisions(note.id, 1) == 1
    assert repos.notes.revisions(note.id, 10) == kept[:1]
    repos.notes.delete(note)
    assert repos.notes.revisions(note.id, 10) == []


@pytest.fixture
def library(repos: Repositories) -> tuple[Repositories, Notebook, dict[str, Note]]:
    """Ada's notes in two notebooks, plus one of Bob's that must never show up."""
    book, other_book, bobs = _notebook("user:ada"), _notebook("user:ada"), _notebook("user:bob")
    for notebook in (book, other_book, bobs):
        repos.notebooks.add(notebook)
    notes = {
        "gamma": _note(book, "Gamma", 1, content="apple pie recipe", tags=["food"]),
        "alpha": _note(book, "alpha", 2, content="Apple strudel", tags=["food", "dessert"]),
        "delta": _note(book, "Délta", 3, content="pear", tags=["dessert"]),
        "beta": _note(other_book, "beta", 4, content="apple", tags=["work"]),
        "trashed": _note(book, "Trashed apple", 5, tags=["food"], trashed_at="2025-02-01T00:00:00.000000Z"),
        "bobs": _note(bobs, "Bob's apple", 6, tags=["food"]),
    }
    notes["gamma"].updated_at = "2025-01-09T00:00:00.000000Z"  # updated after the others
    for note in notes.values():
        repos.notes.add(note)
    return repos, book, notes


def _titles(repos: Repositories, **query: Any) -> list[str]:
    query.setdefault("scope", "o:user:ada")
    return [note.title for note in repos.notes.list_page(NoteQuery(**query)).items]


def test_list_orders(library: tuple[Repositories, Notebook, dict[str, Note]]) -> None:
    repos, book, _ = library
    assert _titles(repos) == ["Gamma", "beta", "Délta", "alpha"]
    assert _titles(repos, order="UPDATED_ASC") == ["alpha", "Délta", "beta", "Gamma"]
    assert _titles(repos, order="CREATED_DESC") == ["beta", "Délta", "alpha", "Gamma"]
    assert _titles(repos, order="TITLE_ASC") == ["alpha", "beta", "Délta", "Gamma"]
    assert _titles(repos, scope=f"n:{book.id}", order="TITLE_ASC") == ["alpha", "Délta", "Gamma"]
    assert _titles(repos, trashed=True) == ["Trashed apple"]


def test_list_filters(library: tuple[Repositories, Notebook, dict[str, Note]]) -> None:
    repos, book, _ = library
    assert _titles(repos, words=("apple",), order="TITLE_ASC") == ["alpha", "beta", "Gamma"]
    assert _titles(repos, words=("apple", "pie")) == ["Gamma"]
    assert _titles(repos, words=("delta",)) == ["Délta"]
    assert _titles(repos, words=("nothing",)) == []
    assert _titles(repos, tag="FOOD", order="TITLE_ASC") == ["alpha", "Gamma"]
    assert _titles(repos, tag="food", words=("strudel",)) == ["alpha"]
    assert _titles(repos, tag="dessert", scope=f"n:{book.id}", order="CREATED_DESC") == ["Délta", "alpha"]
    assert _titles(repos, tag="food", trashed=True) == ["Trashed apple"]
    assert _titles(repos, words=("apple",), trashed=True) == ["Trashed apple"]


@pytest.mark.parametrize("order", ["UPDATED_DESC", "UPDATED_ASC", "CREATED_DESC", "TITLE_ASC"])
@pytest.mark.parametrize("words", [(), ("apple",)])
def test_list_pages(
    library: tuple[Repositories, Notebook, dict[str, Note]], order: str, words: tuple
) -> None:
    repos, _, _ = library
    everything = _titles(repos, order=order, words=words)
    seen: list[str] = []
    after = None
    while True:
        page = repos.notes.list_page(NoteQuery("o:user:ada", order=order, first=2, after=after, words=words))
        assert len(page.items) == len(page.cursors) <= 2
        seen += [note.title for note in page.items]
        if not page.has_next_page:
            break
        after = page.cursors[-1]
    assert seen == everything


def test_list_rejects_a_cursor_of_another_order(
    library: tuple[Repositories, Notebook, dict[str, Note]],
) -> None:
    repos, _, _ = library
    cursor = repos.notes.list_page(NoteQuery("o:user:ada", first=1)).cursors[0]
    with pytest.raises(InvalidInput):
        repos.notes.list_page(NoteQuery("o:user:ada", order="TITLE_ASC", after=cursor))


def test_count_and_tags(library: tuple[Repositories, Notebook, dict[str, Note]]) -> None:
    repos, book, _ = library
    assert repos.notes.count("o:user:ada", False) == 4
    assert repos.notes.count("o:user:ada", True) == 1
    assert repos.notes.count(f"n:{book.id}", False) == 3
    assert repos.notes.count("o:user:nobody", False) == 0
    tags = [(t.tag, t.count) for t in repos.notes.tag_counts("o:user:ada")]
    assert tags == [("dessert", 2), ("food", 2), ("work", 1)]
    assert [(t.tag, t.count) for t in repos.notes.tag_counts(f"n:{book.id}")] == [("dessert", 2), ("food", 2)]


def test_tag_counts_ignore_case(repos: Repositories) -> None:
    """'Food' and 'food' are one tag, as in the tag filter; the more used spelling is shown."""
    book = _notebook(_id("user:"))
    for index, tags in enumerate((["Food"], ["food"], ["food", "x"])):
        repos.notes.add(_note(book, f"n{index}", tags=tags))
    counts = {tc.tag: tc.count for tc in repos.notes.tag_counts("o:" + book.owner_id)}
    assert counts == {"food": 3, "x": 1}


# sharing and accounts -----------------------------------------------------------------------------
def _member(book: Notebook, user_id: str, role: str) -> Membership:
    return Membership(book.id, user_id, role, "2025-02-01T00:00:00.000000Z", book.created_at)


def test_memberships(repos: Repositories) -> None:
    team = _notebook("user:ada", "Team", "2025-01-02T00:00:00.000000Z")
    other = _notebook("user:ada", "Other", "2025-01-03T00:00:00.000000Z")
    bobs = _notebook("user:bob", "Bob's", "2025-01-01T00:00:00.000000Z")
    for book in (team, other, bobs):
        repos.notebooks.add(book)
    repos.memberships.put(_member(team, "user:bob", "VIEWER"))
    repos.memberships.put(_member(team, "user:bob", "EDITOR"))  # a new role replaces the old
    repos.memberships.put(_member(team, "user:carol", "VIEWER"))
    repos.memberships.put(_member(other, "user:bob", "VIEWER"))
    assert repos.memberships.get(team.id, "user:bob").role == "EDITOR"
    assert repos.memberships.get(team.id, "user:dave") is None
    assert repos.memberships.roles("user:bob", [team.id, other.id, bobs.id]) == {
        team.id: "EDITOR",
        other.id: "VIEWER",
    }
    assert sorted(m.notebook_id for m in repos.memberships.for_user("user:bob")) == sorted(
        [team.id, other.id]
    )
    members = repos.memberships.for_notebooks([team.id, bobs.id])
    assert sorted((m.user_id, m.role) for m in members[team.id]) == [
        ("user:bob", "EDITOR"),
        ("user:carol", "VIEWER"),
    ]
    assert members[bobs.id] == []
    # bob's notebooks: his own and the shared ones, in creation order, paginated
    assert [nb.id for nb in repos.notebooks.list_for_user("user:bob", 10)] == [bobs.id, team.id, other.id]
    first = repos.notebooks.list_for_user("user:bob", 2)
    assert [nb.id for nb in repos.notebooks.list_for_user("user:bob", 2, first[-1])] == [other.id]
    assert repos.notebooks.count_owned("user:ada", 10) == 2
    assert repos.notebooks.count_owned("user:ada", 1) == 1

    assert repos.memberships.remove(team.id, "user:bob") is True
    assert repos.memberships.remove(team.id, "user:bob") is False
    assert repos.memberships.get(team.id, "user:bob") is None
    repos.notebooks.delete_with_notes(repos.notebooks.get(team.id))
    assert repos.memberships.for_notebooks([team.id]) == {team.id: []}
    repos.memberships.remove_all(repos.memberships.for_user("user:bob"))
    assert repos.memberships.for_user("user:bob") == []


def test_shared_notes_in_listings(repos: Repositories) -> None:
    mine = _notebook("user:bob", "Mine")
    team = _notebook("user:ada", "Team")
    for book in (mine, team):
        repos.notebooks.add(book)
    notes = [
        _note(mine, "own one", 1, tags=["x"]),
        _note(team, "team two", 2, tags=["X", "y"]),
        _note(mine, "own three", 3),
        _note(team, "team four", 4, trashed_at="2025-01-05T00:00:00.000000Z"),
    ]
    for note in notes:
        repos.notes.add(note)
    query = NoteQuery(scope="o:user:bob", first=2, shared=(team.id,))
    page = repos.notes.list_page(query)
    assert [n.title for n in page.items] == ["own three", "team two"] and page.has_next_page
    rest = repos.notes.list_page(replace(query, after=page.cursors[-1]))
    assert [n.title for n in rest.items] == ["own one"] and not rest.has_next_page
    assert [n.title for n in repos.notes.list_page(replace(query, order="TITLE_ASC", first=5)).items] == [
        "own one",
        "own three",
        "team two",
    ]
    assert [n.title for n in repos.notes.list_page(replace(query, trashed=True)).items] == ["team four"]
    assert [n.title for n in repos.notes.list_page(replace(query, words=("team",))).items] == ["team two"]
    assert repos.notes.count("o:user:bob", False, (team.id,)) == 3
    assert repos.notes.count("o:user:bob", False) == 2
    counts = {(t.tag.casefold(), t.count) for t in repos.notes.tag_counts("o:user:bob", (team.id,))}
    assert counts == {("x", 2), ("y", 1)}


def test_user_sessions_and_deletion(repos: Repositories) -> None:
    ada = _user("ada@example.com")
    repos.users.add(ada)

    def end(user: User) -> None:
        user.session_epoch += 1
        user.ended_sessions["s1"] = 1.5

    changed = repos.users.change(ada.id, end)
    stored = repos.users.get(ada.id)
    assert (stored.session_epoch, stored.ended_sessions, stored.version) == (1, {"s1": 1.5}, changed.version)
    for token in ("h1", "h2"):
        repos.tokens.add(RefreshToken(token, ada.id, "family", expires_at=2e9))
    repos.tokens.add(RefreshToken("h3", "user:other", "family-2", expires_at=2e9))
    assert repos.tokens.revoke_user(ada.id) == 2
    assert repos.tokens.revoke_user(ada.id) == 0
    assert repos.tokens.delete_user_tokens(ada.id) == 2
    assert repos.tokens.get("h1") is None and repos.tokens.get("h3") is not None
    repos.users.delete(stored)
    with pytest.raises(NotFound):
        repos.users.get(ada.id)
    assert repos.users.get_by_email("ada@example.com") is None
    placeholder = repos.users.get_many([ada.id])[ada.id]
    assert (placeholder.id, placeholder.email, placeholder.display_name) == (ada.id, "", "Deleted account")
    repos.users.add(_user("ada@example.com"))  # the address is free again
