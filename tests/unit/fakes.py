"""In-memory fakes of the repositories, for unit tests of the services.

They implement only the behaviour the services rely on; tests/integration/test_repository_contract.py
runs the same checks against these fakes and the real CouchDB repositories so the two cannot drift.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence

from notebook.core.domain import Note, Notebook, NoteRevision, Page, TagCount, User
from notebook.core.errors import NotFound, VersionConflict
from notebook.core.pagination import decode_cursor, encode_cursor
from notebook.core.search import note_tokens, title_sort_key
from notebook.database.repository import EmailTaken, NoteQuery, RefreshToken

_revisions = itertools.count(1)


def _next_version(current: str | None) -> str:
    generation = int(current.split("-")[0]) + 1 if current else 1
    return f"{generation}-fake{next(_revisions)}"


class FakeUserRepository:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}

    def add(self, user: User) -> None:
        if any(existing.email == user.email for existing in self.users.values()):
            raise EmailTaken(user.email)
        user.version = _next_version(None)
        self.users[user.id] = copy.deepcopy(user)

    def get(self, user_id: str) -> User:
        if user_id not in self.users:
            raise NotFound("user not found")
        return copy.deepcopy(self.users[user_id])

    def get_many(self, user_ids: Iterable[str]) -> dict[str, User]:
        return {uid: self.get(uid) for uid in user_ids if uid in self.users}

    def get_by_email(self, email: str) -> User | None:
        return next((copy.deepcopy(u) for u in self.users.values() if u.email == email), None)


class FakeRefreshTokenRepository:
    def __init__(self) -> None:
        self.tokens: dict[str, RefreshToken] = {}

    def add(self, token: RefreshToken) -> None:
        token.version = _next_version(None)
        self.tokens[token.token_hash] = copy.deepcopy(token)

    def get(self, token_hash: str) -> RefreshToken | None:
        return copy.deepcopy(self.tokens.get(token_hash))

    def mark_used(self, token: RefreshToken) -> bool:
        stored = self.tokens[token.token_hash]
        if stored.version != token.version or stored.used or stored.revoked:
            return False
        stored.used = True
        stored.version = _next_version(stored.version)
        return True

    def revoke_family(self, family: str) -> int:
        revoked = [t for t in self.tokens.values() if t.family == family and not t.revoked]
        for token in revoked:
            token.revoked = True
            token.version = _next_version(token.version)
        return len(revoked)


class FakeNoteStore:
    """Notebooks and notes share one store, as they share one database in the real system."""

    def __init__(self) -> None:
        self.notebooks: dict[str, Notebook] = {}
        self.notes: dict[str, Note] = {}
        self.revisions: dict[str, NoteRevision] = {}

    def drop_note(self, note_id: str) -> None:
        self.notes.pop(note_id, None)
        for revision_id in [r.id for r in self.revisions.values() if r.note_id == note_id]:
            del self.revisions[revision_id]


def _save(table: dict, item: Notebook | Note) -> None:
    current = table.get(item.id)
    if current is None or current.version != item.version:
        raise VersionConflict(
            "the document was changed by someone else", current.version if current else None
        )
    item.version = _next_version(item.version)
    table[item.id] = copy.deepcopy(item)


class FakeNotebookRepository:
    def __init__(self, store: FakeNoteStore) -> None:
        self.store = store

    def add(self, notebook: Notebook) -> None:
        notebook.version = _next_version(None)
        self.store.notebooks[notebook.id] = copy.deepcopy(notebook)

    def get(self, notebook_id: str) -> Notebook | None:
        return copy.deepcopy(self.store.notebooks.get(notebook_id))

    def get_many(self, notebook_ids: Iterable[str]) -> dict[str, Notebook]:
        return {
            nid: copy.deepcopy(self.store.notebooks[nid])
            for nid in notebook_ids
            if nid in self.store.notebooks
        }

    def list_owned(self, owner_id: str) -> list[Notebook]:
        owned = [nb for nb in self.store.notebooks.values() if nb.owner_id == owner_id]
        return copy.deepcopy(sorted(owned, key=lambda nb: (nb.created_at, nb.id)))

    def update(self, notebook: Notebook) -> None:
        _save(self.store.notebooks, notebook)

    def note_counts(self, notebook_ids: Sequence[str]) -> dict[str, int]:
        live = Counter(n.notebook_id for n in self.store.notes.values() if not n.trashed)
        return {nid: live[nid] for nid in notebook_ids}

    def delete_with_notes(self, notebook: Notebook) -> int:
        doomed = [nid for nid, note in self.store.notes.items() if note.notebook_id == notebook.id]
        for note_id in doomed:
            self.store.drop_note(note_id)
        self.store.notebooks.pop(notebook.id, None)
        return len(doomed)


_SORT_KEY = {
    "UPDATED_DESC": lambda n: n.updated_at,
    "UPDATED_ASC": lambda n: n.updated_at,
    "CREATED_DESC": lambda n: n.created_at,
    "TITLE_ASC": lambda n: title_sort_key(n.title),
}
_DESCENDING = {"UPDATED_DESC", "CREATED_DESC"}


class FakeNoteRepository:
    def __init__(self, store: FakeNoteStore) -> None:
        self.store = store

    def add(self, note: Note) -> None:
        note.version = _next_version(None)
        self.store.notes[note.id] = copy.deepcopy(note)

    def add_many(self, notes: Sequence[Note]) -> list[str | None]:
        for note in notes:
            self.add(note)
        return [None] * len(notes)

    def get(self, note_id: str) -> Note | None:
        return copy.deepcopy(self.store.notes.get(note_id))

    def get_many(self, note_ids: Iterable[str]) -> dict[str, Note]:
        return {nid: copy.deepcopy(self.store.notes[nid]) for nid in note_ids if nid in self.store.notes}

    def update(self, note: Note, revision: NoteRevision | None = None) -> None:
        _save(self.store.notes, note)
        if revision is not None:
            self.store.revisions[revision.id] = copy.deepcopy(revision)

    def delete(self, note: Note) -> None:
        current = self.store.notes.get(note.id)
        if current is not None and current.version != note.version:
            raise VersionConflict("the note was changed by someone else", current.version)
        self.store.drop_note(note.id)

    def _newest_first(self, note_id: str, listed: bool) -> list[NoteRevision]:
        kept = [r for r in self.store.revisions.values() if r.note_id == note_id and r.listed == listed]
        return sorted(kept, key=lambda r: r.created_at, reverse=True)

    def revisions(self, note_id: str, first: int) -> list[NoteRevision]:
        return copy.deepcopy(self._newest_first(note_id, True)[:first])

    def prune_revisions(self, note_id: str, keep: int) -> int:
        doomed = self._newest_first(note_id, True)[keep:] + self._newest_first(note_id, False)[keep:]
        for revision in doomed:
            del self.store.revisions[revision.id]
        return len(doomed)

    def _in_scope(self, scope: str, trashed: bool) -> list[Note]:
        kind, _, key = scope.partition(":")
        attribute = "owner_id" if kind == "o" else "notebook_id"
        return [n for n in self.store.notes.values() if getattr(n, attribute) == key and n.trashed == trashed]

    def list_page(self, query: NoteQuery) -> Page:
        notes = self._in_scope(query.scope, query.trashed)
        if query.tag is not None:
            notes = [n for n in notes if query.tag.casefold() in {t.casefold() for t in n.tags}]
        for word in query.words:
            notes = [n for n in notes if word in note_tokens(n.title, n.content)]
        descending = query.order in _DESCENDING
        keyed = sorted(((_SORT_KEY[query.order](n), n.id), n) for n in notes)
        if descending:
            keyed.reverse()
        if query.after:
            cursor = decode_cursor(query.after, query.order)
            keyed = [(k, n) for k, n in keyed if (k < cursor if descending else k > cursor)]
        page = keyed[: query.first]
        return Page(
            [copy.deepcopy(n) for _, n in page],
            [encode_cursor(query.order, key[0], key[1]) for key, _ in page],
            has_next_page=len(keyed) > query.first,
        )

    def count(self, scope: str, trashed: bool) -> int:
        return len(self._in_scope(scope, trashed))

    def tag_counts(self, scope: str) -> list[TagCount]:
        spellings = Counter(tag for note in self._in_scope(scope, False) for tag in note.tags)
        totals: Counter[str] = Counter()
        shown: dict[str, tuple[int, str]] = {}
        for tag, count in spellings.items():
            totals[tag.casefold()] += count
            shown[tag.casefold()] = max(shown.get(tag.casefold(), (0, tag)), (count, tag))
        return sorted(
            (TagCount(shown[k][1], c) for k, c in totals.items()),
            key=lambda tc: (-tc.count, tc.tag.casefold()),
        )
