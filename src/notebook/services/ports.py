"""What the services need from storage: one small Protocol per repository, listing only the
methods a service calls.

The services are typed with these, never with the database layer's classes; the composition
root (bootstrap.py) passes the CouchDB repositories, the unit tests the fakes of
tests/unit/fakes.py, and tests/unit/test_ports.py checks that both keep matching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from notebook.core.activity import Activity
from notebook.core.domain import (
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


@runtime_checkable
class UserDirectory(Protocol):
    """Finding an account by e-mail address (sharing a notebook by address)."""

    def get_by_email(self, email: str) -> User | None: ...


@runtime_checkable
class UserStore(UserDirectory, Protocol):
    """Accounts; `add` raises core.errors.EmailTaken when the address has an account."""

    def add(self, user: User, *, events: Sequence[Activity] = ()) -> None: ...

    def get(self, user_id: str) -> User: ...

    def login_candidates(self, email: str) -> list[User]: ...

    def change_email(self, user_id: str, email: str, *, events: Sequence[Activity] = ()) -> User: ...

    def change(
        self, user_id: str, apply: Callable[[User], None], *, events: Sequence[Activity] = ()
    ) -> User: ...

    def delete(self, user: User, *, events: Sequence[Activity] = ()) -> None: ...


@runtime_checkable
class RefreshTokenStore(Protocol):
    """Refresh tokens by the hash of the token, grouped in login sessions (families)."""

    def add(self, token: RefreshToken, *, events: Sequence[Activity] = ()) -> None: ...

    def get(self, token_hash: str) -> RefreshToken | None: ...

    def mark_used(self, token: RefreshToken) -> bool: ...

    def revoke_family(self, family: str) -> int: ...

    def revoke_user(self, user_id: str) -> int: ...

    def delete_user_tokens(self, user_id: str) -> int: ...


@runtime_checkable
class NotebookStore(Protocol):
    def add(self, notebook: Notebook, *, events: Sequence[Activity] = ()) -> None: ...

    def get(self, notebook_id: str) -> Notebook | None: ...

    def get_many(self, notebook_ids: Iterable[str]) -> dict[str, Notebook]: ...

    def list_for_user(self, user_id: str, first: int, after: Notebook | None = None) -> list[Notebook]: ...

    def count_owned(self, owner_id: str, up_to: int) -> int: ...

    def list_owned(self, owner_id: str) -> list[Notebook]: ...

    def update(self, notebook: Notebook, *, events: Sequence[Activity] = ()) -> None: ...

    def note_counts(self, notebook_ids: Sequence[str]) -> dict[str, int]: ...

    def delete_with_notes(self, notebook: Notebook, *, events: Sequence[Activity] = ()) -> int: ...


@runtime_checkable
class MembershipStore(Protocol):
    def put(self, membership: Membership, *, events: Sequence[Activity] = ()) -> None: ...

    def get(self, notebook_id: str, user_id: str) -> Membership | None: ...

    def roles(self, user_id: str, notebook_ids: Iterable[str]) -> dict[str, str]: ...

    def for_user(self, user_id: str) -> list[Membership]: ...

    def for_notebooks(self, notebook_ids: Sequence[str]) -> dict[str, list[Membership]]: ...

    def remove(self, notebook_id: str, user_id: str, *, events: Sequence[Activity] = ()) -> bool: ...

    def remove_all(self, memberships: Iterable[Membership]) -> None: ...


@runtime_checkable
class NoteRevisionSource(Protocol):
    """Kept versions of notes, by revision id."""

    def get_revision(self, revision_id: str) -> NoteRevision | None: ...


@runtime_checkable
class ResolutionStore(NoteRevisionSource, Protocol):
    """What settling a note's conflict writes: the winner, the losing leaves' deletion and the
    revisions that keep every replaced version, in one step."""

    def from_doc(self, doc: dict[str, Any]) -> Note:
        """A note from one stored leaf (opened, when notes are sealed)."""
        ...

    def write_resolution(
        self,
        note: Note,
        losing_versions: Sequence[str],
        revisions: Sequence[NoteRevision],
        *,
        restamp: bool = True,
        events: Sequence[Activity] = (),
    ) -> None: ...


@runtime_checkable
class NoteStore(NoteRevisionSource, Protocol):
    """Notes, their revisions and listings."""

    def add(self, note: Note, *, events: Sequence[Activity] = ()) -> None: ...

    def add_many(self, notes: Sequence[Note], *, events: Sequence[Activity] = ()) -> list[str | None]: ...

    def get(self, note_id: str) -> Note | None: ...

    def get_versions(self, note_id: str, versions: Sequence[str]) -> list[Note]: ...

    def update(
        self, note: Note, revision: NoteRevision | None = None, *, events: Sequence[Activity] = ()
    ) -> None: ...

    def delete(self, note: Note, *, events: Sequence[Activity] = ()) -> None: ...

    def revisions(self, note_id: str, first: int) -> list[NoteRevision]: ...

    def revisions_of_many(self, note_ids: Sequence[str], first: int) -> dict[str, list[NoteRevision]]: ...

    def prune_revisions(self, note_id: str, keep: int) -> int: ...

    def list_page(self, query: NoteQuery) -> Page: ...

    def count(self, scope: str, trashed: bool, shared: Sequence[str] = ()) -> int: ...

    def count_matching(self, query: NoteQuery) -> int: ...

    def tag_counts(self, scope: str, shared: Sequence[str] = ()) -> list[TagCount]: ...


@runtime_checkable
class ActivityStore(Protocol):
    """Activity records and the figures counted from them (database/activity_repository.py)."""

    def user_feed(
        self, user_id: str, shared_notebook_ids: Sequence[str], first: int, after: str | None
    ) -> Page: ...

    def notebook_feed(self, notebook_id: str, first: int, after: str | None) -> Page: ...

    def security_feed(self, first: int, after: str | None) -> Page: ...

    def record_security(self, event: Activity) -> None: ...

    def actor_counts(self, user_id: str, since_bucket: str) -> dict[tuple[str, str], int]: ...

    def writes_per_day(self, since_day: str) -> dict[str, int]: ...

    def active_users(self, since_day: str) -> int: ...

    def action_total(self, action: str, since_day: str) -> int: ...

    def note_stats(self, owner: str) -> tuple[int, int, int]: ...

    def notebook_count(self, owner: str | None) -> int: ...

    def user_count(self) -> int: ...

    def prune_before(self, cutoff: str) -> int: ...

    def forget_user(self, user_id: str) -> int: ...
