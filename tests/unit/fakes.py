"""In-memory fakes of the repositories, for unit tests of the services.

They implement only the behaviour the services rely on; tests/integration/test_repository_contract.py
runs the same checks against these fakes and the real CouchDB repositories so the two cannot drift.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from notebook.core.activity import Activity, count_words, quarter_bucket
from notebook.core.domain import (
    DELETED_USER_NAME,
    Membership,
    Note,
    Notebook,
    NoteQuery,
    NoteRevision,
    Page,
    RefreshToken,
    TagCount,
    User,
)
from notebook.core.errors import EmailTaken, NotFound, VersionConflict
from notebook.core.pagination import decode_cursor, encode_cursor
from notebook.core.search import note_tokens, title_sort_key

_revisions = itertools.count(1)


def _next_version(current: str | None) -> str:
    generation = int(current.split("-")[0]) + 1 if current else 1
    return f"{generation}-fake{next(_revisions)}"


class FakeUserRepository:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.deleted: dict[str, User] = {}
        self.events: list[Activity] = []  # activity records written with the changes

    def add(self, user: User, *, events: Sequence[Activity] = ()) -> None:
        if any(existing.email == user.email for existing in self.users.values()):
            raise EmailTaken(user.email)
        user.version = _next_version(None)
        self.users[user.id] = copy.deepcopy(user)
        self.events += events

    def get(self, user_id: str) -> User:
        if user_id not in self.users:
            raise NotFound("user not found")
        return copy.deepcopy(self.users[user_id])

    def get_many(self, user_ids: Iterable[str]) -> dict[str, User]:
        found = {uid: self.get(uid) for uid in user_ids if uid in self.users}
        found.update({uid: copy.deepcopy(self.deleted[uid]) for uid in user_ids if uid in self.deleted})
        return found

    def get_by_email(self, email: str) -> User | None:
        found = self.login_candidates(email)
        return found[0] if found else None

    def add_across_partition(self, user: User) -> None:
        """Store a user as the other side of a partition would: without seeing this address's claim."""
        user.version = _next_version(None)
        self.users[user.id] = copy.deepcopy(user)

    def login_candidates(self, email: str) -> list[User]:
        """The accounts of this address, the earliest first; the later ones flagged."""
        mine = (u for u in self.users.values() if u.email == email)
        found = [copy.deepcopy(u) for u in sorted(mine, key=lambda u: (u.created_at, u.id))]
        for user in found[1:]:
            user.email_conflict = True
        return found

    def change_email(self, user_id: str, email: str, *, events: Sequence[Activity] = ()) -> User:
        if any(u.email == email for uid, u in self.users.items() if uid != user_id):
            raise EmailTaken(email)

        def apply(user: User) -> None:
            user.email = email
            user.email_conflict = False

        return self.change(user_id, apply, events=events)

    def change(self, user_id: str, apply: Callable[[User], None], *, events: Sequence[Activity] = ()) -> User:
        user = self.get(user_id)
        apply(user)
        user.version = _next_version(user.version)
        self.users[user_id] = copy.deepcopy(user)
        self.events += events
        return user

    def delete(self, user: User, *, events: Sequence[Activity] = ()) -> None:
        gone = self.users.pop(user.id)
        self.deleted[user.id] = User(gone.id, "", DELETED_USER_NAME, gone.created_at)
        self.events += events


class FakeAttemptStore:
    """The throttle database in memory; counts the requests a real one would receive."""

    def __init__(self) -> None:
        self.attempts: list[tuple[tuple[str, ...], int]] = []
        self.requests = 0

    def record(self, keys: Sequence[str], bucket: int) -> None:
        self.requests += 1
        self.attempts.append((tuple(keys), bucket))

    def counts(self, keys: Sequence[str], buckets: Sequence[int]) -> dict[str, dict[int, int]]:
        self.requests += 1
        found: dict[str, dict[int, int]] = {}
        for attempt_keys, bucket in self.attempts:
            for key in set(attempt_keys) & set(keys):
                if bucket in buckets:
                    found.setdefault(key, {}).setdefault(bucket, 0)
                    found[key][bucket] += 1
        return found

    def purge_before(self, bucket: int) -> int:
        kept = [attempt for attempt in self.attempts if attempt[1] >= bucket]
        purged = len(self.attempts) - len(kept)
        self.attempts = kept
        return purged


class FakeRefreshTokenRepository:
    def __init__(self) -> None:
        self.tokens: dict[str, RefreshToken] = {}
        self.revoked_families: set[str] = set()
        self.events: list[Activity] = []

    def add(self, token: RefreshToken, *, events: Sequence[Activity] = ()) -> None:
        token.version = _next_version(None)
        self.tokens[token.token_hash] = copy.deepcopy(token)
        self.events += events

    def get(self, token_hash: str) -> RefreshToken | None:
        token = copy.deepcopy(self.tokens.get(token_hash))
        if token is not None and token.family in self.revoked_families:
            token.revoked = True
        return token

    def mark_used(self, token: RefreshToken) -> bool:
        stored = self.tokens[token.token_hash]
        if stored.version != token.version or stored.used or stored.revoked:
            return False
        stored.used = True
        stored.version = _next_version(stored.version)
        return True

    def revoke_family(self, family: str) -> int:
        self.revoked_families.add(family)
        revoked = [t for t in self.tokens.values() if t.family == family and not t.revoked]
        for token in revoked:
            token.revoked = True
            token.version = _next_version(token.version)
        return len(revoked)

    def revoke_user(self, user_id: str) -> int:
        revoked = [t for t in self.tokens.values() if t.user_id == user_id and not t.revoked]
        for token in revoked:
            token.revoked = True
            token.version = _next_version(token.version)
        return len(revoked)

    def delete_user_tokens(self, user_id: str) -> int:
        doomed = [h for h, t in self.tokens.items() if t.user_id == user_id]
        for token_hash in doomed:
            del self.tokens[token_hash]
        return len(doomed)


class FakeNoteStore:
    """Notebooks and notes share one store, as they share one database in the real system."""

    def __init__(self) -> None:
        self.notebooks: dict[str, Notebook] = {}
        self.notes: dict[str, Note] = {}
        self.revisions: dict[str, NoteRevision] = {}
        self.memberships: dict[tuple[str, str], Membership] = {}
        self.events: list[Activity] = []  # activity records written with the changes

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

    def add(self, notebook: Notebook, *, events: Sequence[Activity] = ()) -> None:
        notebook.version = _next_version(None)
        self.store.notebooks[notebook.id] = copy.deepcopy(notebook)
        self.store.events += events

    def get(self, notebook_id: str) -> Notebook | None:
        return copy.deepcopy(self.store.notebooks.get(notebook_id))

    def get_many(self, notebook_ids: Iterable[str]) -> dict[str, Notebook]:
        return {
            nid: copy.deepcopy(self.store.notebooks[nid])
            for nid in notebook_ids
            if nid in self.store.notebooks
        }

    def list_for_user(self, user_id: str, first: int, after: Notebook | None = None) -> list[Notebook]:
        mine = [nb for nb in self.store.notebooks.values() if nb.owner_id == user_id]
        mine += [
            self.store.notebooks[nb_id]
            for (nb_id, uid) in self.store.memberships
            if uid == user_id and nb_id in self.store.notebooks
        ]
        ordered = sorted(mine, key=lambda nb: (nb.created_at, nb.id))
        if after is not None:
            ordered = [nb for nb in ordered if (nb.created_at, nb.id) > (after.created_at, after.id)]
        return copy.deepcopy(ordered[:first])

    def count_owned(self, owner_id: str, up_to: int) -> int:
        return min(up_to, sum(1 for nb in self.store.notebooks.values() if nb.owner_id == owner_id))

    def list_owned(self, owner_id: str) -> list[Notebook]:
        owned = [nb for nb in self.store.notebooks.values() if nb.owner_id == owner_id]
        return copy.deepcopy(sorted(owned, key=lambda nb: (nb.created_at, nb.id)))

    def update(self, notebook: Notebook, *, events: Sequence[Activity] = ()) -> None:
        _save(self.store.notebooks, notebook)
        self.store.events += events

    def note_counts(self, notebook_ids: Sequence[str]) -> dict[str, int]:
        live = Counter(n.notebook_id for n in self.store.notes.values() if not n.trashed)
        return {nid: live[nid] for nid in notebook_ids}

    def delete_with_notes(self, notebook: Notebook, *, events: Sequence[Activity] = ()) -> int:
        self.store.events += events
        doomed = [nid for nid, note in self.store.notes.items() if note.notebook_id == notebook.id]
        for note_id in doomed:
            self.store.drop_note(note_id)
        for key in [key for key in self.store.memberships if key[0] == notebook.id]:
            del self.store.memberships[key]
        self.store.notebooks.pop(notebook.id, None)
        return len(doomed)


class FakeMembershipRepository:
    def __init__(self, store: FakeNoteStore) -> None:
        self.store = store

    def put(self, membership: Membership, *, events: Sequence[Activity] = ()) -> None:
        self.store.events += events
        current = self.store.memberships.get((membership.notebook_id, membership.user_id))
        if current is not None:
            membership.created_at = current.created_at
        membership.version = _next_version(current.version if current else None)
        self.store.memberships[(membership.notebook_id, membership.user_id)] = copy.deepcopy(membership)

    def get(self, notebook_id: str, user_id: str) -> Membership | None:
        return copy.deepcopy(self.store.memberships.get((notebook_id, user_id)))

    def roles(self, user_id: str, notebook_ids: Iterable[str]) -> dict[str, str]:
        return {
            nb: self.store.memberships[(nb, user_id)].role
            for nb in notebook_ids
            if (nb, user_id) in self.store.memberships
        }

    def for_user(self, user_id: str) -> list[Membership]:
        found = [m for (_, uid), m in self.store.memberships.items() if uid == user_id]
        return copy.deepcopy(sorted(found, key=lambda m: m.notebook_id))

    def for_notebooks(self, notebook_ids: Sequence[str]) -> dict[str, list[Membership]]:
        members: dict[str, list[Membership]] = {nb: [] for nb in notebook_ids}
        for (nb, _), membership in self.store.memberships.items():
            if nb in members:
                members[nb].append(copy.deepcopy(membership))
        for listed in members.values():
            listed.sort(key=lambda m: (m.created_at, m.user_id))
        return members

    def remove(self, notebook_id: str, user_id: str, *, events: Sequence[Activity] = ()) -> bool:
        removed = self.store.memberships.pop((notebook_id, user_id), None) is not None
        if removed:
            self.store.events += events
        return removed

    def remove_all(self, memberships: Iterable[Membership]) -> None:
        for membership in memberships:
            self.store.memberships.pop((membership.notebook_id, membership.user_id), None)


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

    def from_doc(self, doc: dict[str, Any]) -> Note:
        raise NotImplementedError("the fake stores notes, not documents")

    def add(self, note: Note, *, events: Sequence[Activity] = ()) -> None:
        note.version = _next_version(None)
        self.store.notes[note.id] = copy.deepcopy(note)
        self.store.events += events

    def add_many(self, notes: Sequence[Note], *, events: Sequence[Activity] = ()) -> list[str | None]:
        for note in notes:
            self.add(note)
        self.store.events += events
        return [None] * len(notes)

    def get(self, note_id: str) -> Note | None:
        return copy.deepcopy(self.store.notes.get(note_id))

    def get_many(self, note_ids: Iterable[str]) -> dict[str, Note]:
        return {nid: copy.deepcopy(self.store.notes[nid]) for nid in note_ids if nid in self.store.notes}

    def get_versions(self, note_id: str, versions: Sequence[str]) -> list[Note]:
        """The fake keeps no conflict leaves: only the current version can be asked for."""
        current = self.store.notes.get(note_id)
        return [copy.deepcopy(current)] if current is not None and current.version in versions else []

    def update(
        self, note: Note, revision: NoteRevision | None = None, *, events: Sequence[Activity] = ()
    ) -> None:
        _save(self.store.notes, note)
        self.store.events += events
        if revision is not None:
            self.store.revisions[revision.id] = copy.deepcopy(revision)

    def write_resolution(
        self,
        note: Note,
        losing_versions: Sequence[str],
        revisions: Sequence[NoteRevision],
        *,
        restamp: bool = True,
        events: Sequence[Activity] = (),
    ) -> None:
        """Store the winner and the revisions of the replaced versions; the losing leaves, which
        the fake does not keep, are gone with it."""
        note.conflict_versions = []
        _save(self.store.notes, note)
        self.store.events += events
        for revision in revisions:
            self.store.revisions[revision.id] = copy.deepcopy(revision)

    def get_revision(self, revision_id: str) -> NoteRevision | None:
        return copy.deepcopy(self.store.revisions.get(revision_id))

    def delete(self, note: Note, *, events: Sequence[Activity] = ()) -> None:
        current = self.store.notes.get(note.id)
        if current is not None and current.version != note.version:
            raise VersionConflict("the note was changed by someone else", current.version)
        self.store.drop_note(note.id)
        self.store.events += events

    def _newest_first(self, note_id: str, listed: bool) -> list[NoteRevision]:
        kept = [r for r in self.store.revisions.values() if r.note_id == note_id and r.listed == listed]
        return sorted(kept, key=lambda r: r.created_at, reverse=True)

    def revisions(self, note_id: str, first: int) -> list[NoteRevision]:
        return copy.deepcopy(self._newest_first(note_id, True)[:first])

    def revisions_of_many(self, note_ids: Sequence[str], first: int) -> dict[str, list[NoteRevision]]:
        return {note_id: self.revisions(note_id, first) for note_id in note_ids}

    def prune_revisions(self, note_id: str, keep: int) -> int:
        doomed = self._newest_first(note_id, True)[keep:] + self._newest_first(note_id, False)[keep:]
        for revision in doomed:
            del self.store.revisions[revision.id]
        return len(doomed)

    def _in_scope(self, scope: str, trashed: bool, shared: Sequence[str] = ()) -> list[Note]:
        kind, _, key = scope.partition(":")
        attribute = "owner_id" if kind == "o" else "notebook_id"
        return [
            n
            for n in self.store.notes.values()
            if (getattr(n, attribute) == key or n.notebook_id in shared) and n.trashed == trashed
        ]

    def _matching(self, query: NoteQuery) -> list[Note]:
        notes = self._in_scope(query.scope, query.trashed, query.shared)
        if query.tag is not None:
            notes = [n for n in notes if query.tag.casefold() in {t.casefold() for t in n.tags}]
        for word in query.words:
            notes = [n for n in notes if word in note_tokens(n.title, n.content)]
        return notes

    def count_matching(self, query: NoteQuery) -> int:
        return len(self._matching(query))

    def list_page(self, query: NoteQuery) -> Page:
        notes = self._matching(query)
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

    def count(self, scope: str, trashed: bool, shared: Sequence[str] = ()) -> int:
        return len(self._in_scope(scope, trashed, shared))

    def tag_counts(self, scope: str, shared: Sequence[str] = ()) -> list[TagCount]:
        spellings = Counter(tag for note in self._in_scope(scope, False, shared) for tag in note.tags)
        totals: Counter[str] = Counter()
        shown: dict[str, tuple[int, str]] = {}
        for tag, count in spellings.items():
            totals[tag.casefold()] += count
            shown[tag.casefold()] = max(shown.get(tag.casefold(), (0, tag)), (count, tag))
        return sorted(
            (TagCount(shown[k][1], c) for k, c in totals.items()),
            key=lambda tc: (-tc.count, tc.tag.casefold()),
        )


class FakeActivityStore:
    """Activity records in memory: those the other fakes stored beside their changes, and
    the security events written here; answers as the views of design_docs.py do."""

    def __init__(
        self, notes: FakeNoteStore, *others: FakeUserRepository | FakeRefreshTokenRepository
    ) -> None:
        self.notes = notes
        self.others = others
        self.security: list[Activity] = []

    def _records(self) -> list[Activity]:
        found = list(self.notes.events)
        for other in self.others:
            found += other.events
        return found

    def _page(self, items: list[Activity], first: int, after: str | None) -> Page:
        ordered = sorted({a.id: a for a in items}.values(), key=lambda a: (a.at, a.id), reverse=True)
        if after:
            cursor = decode_cursor(after, "ACTIVITY")
            ordered = [a for a in ordered if (a.at, a.id) < cursor]
        page = ordered[:first]
        cursors = [encode_cursor("ACTIVITY", a.at, a.id) for a in page]
        return Page(copy.deepcopy(page), cursors, has_next_page=len(ordered) > first)

    def user_feed(
        self, user_id: str, shared_notebook_ids: Sequence[str], first: int, after: str | None
    ) -> Page:
        mine = [
            a
            for a in self._records()
            if a.actor_id == user_id or a.notebook_owner_id == user_id or a.notebook_id in shared_notebook_ids
        ]
        return self._page(mine, first, after)

    def notebook_feed(self, notebook_id: str, first: int, after: str | None) -> Page:
        return self._page([a for a in self.notes.events if a.notebook_id == notebook_id], first, after)

    def security_feed(self, first: int, after: str | None) -> Page:
        return self._page(self.security, first, after)

    def record_security(self, event: Activity) -> None:
        if all(existing.id != event.id for existing in self.security):
            self.security.append(event)

    def actor_counts(self, user_id: str, since_bucket: str) -> dict[tuple[str, str], int]:
        found: Counter[tuple[str, str]] = Counter()
        for a in self.notes.events:
            bucket = quarter_bucket(a.at)
            if a.actor_id == user_id and bucket >= since_bucket:
                found[(bucket, a.action)] += a.count
        return dict(found)

    def writes_per_day(self, since_day: str) -> dict[str, int]:
        found: Counter[str] = Counter()
        for a in self.notes.events:
            if a.target_type in ("note", "notebook") and a.at[:10] >= since_day:
                found[a.at[:10]] += a.count
        return dict(found)

    def active_users(self, since_day: str) -> int:
        return len({a.actor_id for a in self._records() if a.actor_id and a.at[:10] >= since_day})

    def action_total(self, action: str, since_day: str) -> int:
        return sum(a.count for a in self.notes.events if a.action == action and a.at[:10] >= since_day)

    def note_stats(self, owner: str) -> tuple[int, int, int]:
        mine = [n for n in self.notes.notes.values() if owner == "*" or n.owner_id == owner]
        live = [n for n in mine if not n.trashed]
        return len(live), len(mine) - len(live), sum(count_words(n.title, n.content) for n in live)

    def notebook_count(self, owner: str | None) -> int:
        return sum(1 for nb in self.notes.notebooks.values() if owner is None or nb.owner_id == owner)

    def user_count(self) -> int:
        users = [o for o in self.others if isinstance(o, FakeUserRepository)]
        return sum(len(u.users) for u in users)

    def forget_user(self, user_id: str) -> int:
        def kept(a: Activity) -> bool:
            mine = a.actor_id == user_id or a.notebook_owner_id == user_id
            return not mine or a.notebook_owner_id not in (None, user_id)

        before = len(self._records())
        self.notes.events[:] = [a for a in self.notes.events if kept(a)]
        for other in self.others:
            other.events[:] = [a for a in other.events if a.actor_id != user_id]
        return before - len(self._records())

    def prune_before(self, cutoff: str) -> int:
        before = len(self._records()) + len(self.security)
        self.notes.events[:] = [a for a in self.notes.events if a.at >= cutoff]
        for other in self.others:
            other.events[:] = [a for a in other.events if a.at >= cutoff]
        self.security[:] = [a for a in self.security if a.at >= cutoff]
        return before - len(self._records()) - len(self.security)
