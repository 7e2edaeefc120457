"""Domain models of the notes server. `version` is the optimistic-concurrency token."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from notebook.core.errors import InvalidInput

USER_PREFIX = "user:"
NOTEBOOK_PREFIX = "notebook:"
NOTE_PREFIX = "note:"


def utc_now() -> str:
    """Current time as a fixed-width ISO 8601 UTC string, so that text order is time order."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def require_id(value: str, prefix: str, kind: str) -> str:
    """Check that a client-supplied id names a document of the expected kind."""
    if not isinstance(value, str) or not value.startswith(prefix) or len(value) > 100:
        raise InvalidInput(f"{value!r} is not a {kind} id", field="id")
    return value


@dataclass
class User:
    id: str
    email: str
    display_name: str | None
    created_at: str
    is_admin: bool = False
    password_hash: str = ""
    default_notebook_id: str | None = None
    version: str | None = None


@dataclass
class Notebook:
    id: str
    name: str
    owner_id: str
    created_at: str
    updated_at: str
    description: str | None = None
    is_default: bool = False
    version: str | None = None


@dataclass
class Note:
    id: str
    notebook_id: str
    owner_id: str
    title: str
    content: str
    created_at: str
    updated_at: str
    created_by: str
    updated_by: str
    tags: list[str] = field(default_factory=list)
    pinned: bool = False
    trashed_at: str | None = None
    version: str | None = None
    conflict_versions: list[str] = field(default_factory=list)

    @property
    def trashed(self) -> bool:
        return self.trashed_at is not None


@dataclass(frozen=True)
class TagCount:
    tag: str
    count: int


@dataclass
class Page:
    """One page of a keyset-paginated list."""

    items: list
    cursors: list[str]
    has_next_page: bool
    total_count: int | None = None


REVISION_PREFIX = "rev:"
REVISION_REASONS = ("EDIT", "RESTORE", "CONFLICT_MERGE", "CONFLICT_LOSER")
# a version replaced by a change of metadata only (pin, trash, move): kept so that every replaced
# version has its revision document, which conflict merges need as their base; never listed
METADATA_REASON = "METADATA"


def revision_id(note_id: str, replaced_version: str) -> str:
    """One revision per replaced version: writing it twice (two resolvers) is harmless."""
    return f"{REVISION_PREFIX}{note_id[len(NOTE_PREFIX):]}:{replaced_version}"


@dataclass
class NoteRevision:
    """A version of a note that an edit, a restore or a conflict resolution replaced."""

    id: str
    note_id: str
    title: str
    content: str
    tags: list[str]
    created_at: str
    author_id: str | None
    reason: str
    replaced_version: str

    @property
    def listed(self) -> bool:
        return self.reason != METADATA_REASON

    @classmethod
    def of(cls, note: Note, reason: str) -> NoteRevision:
        """The revision that keeps `note` as it is now."""
        return cls(
            id=revision_id(note.id, note.version or ""),
            note_id=note.id,
            title=note.title,
            content=note.content,
            tags=list(note.tags),
            created_at=note.updated_at,
            author_id=note.updated_by,
            reason=reason,
            replaced_version=note.version or "",
        )
