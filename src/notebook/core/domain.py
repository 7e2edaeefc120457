"""Domain models of the notes server. `version` is the optimistic-concurrency token."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from notebook.core import hlc
from notebook.core.errors import InvalidInput

USER_PREFIX = "user:"
NOTEBOOK_PREFIX = "notebook:"
NOTE_PREFIX = "note:"
MEMBER_PREFIX = "member:"

# notebook roles, weakest first: a role may do everything the roles before it may do
ROLES = ("VIEWER", "EDITOR", "OWNER")

# the display name a deleted account keeps, so that notes it wrote in other people's notebooks
# still name an author
DELETED_USER_NAME = "Deleted account"


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
    # bumped by logoutEverywhere, changePassword and account deletion: every access token
    # issued with a lower epoch stops working
    session_epoch: int = 0
    # login sessions (refresh-token families) ended one by one -> when; kept as long as an
    # access token of theirs could still be valid
    ended_sessions: dict[str, float] = field(default_factory=dict)
    # another account registered the same address on another node during a partition and
    # keeps it (docs/replication.md, "Uniqueness across partitions"): this one must confirm a
    # new address; until then `email` is the address it registered with, no longer its own
    email_conflict: bool = False


def role_at_least(role: str | None, minimum: str) -> bool:
    """Whether `role` grants what `minimum` grants; no role grants nothing."""
    return role is not None and ROLES.index(role) >= ROLES.index(minimum)


@dataclass
class Membership:
    """A user's role in a notebook that someone else owns (the owner has no membership)."""

    notebook_id: str
    user_id: str
    role: str
    created_at: str
    # the notebook's creation time, so the grantee's notebook list sorts shared and own alike
    notebook_created_at: str
    version: str | None = None

    @property
    def id(self) -> str:
        return membership_id(self.notebook_id, self.user_id)


def membership_id(notebook_id: str, user_id: str) -> str:
    return f"{MEMBER_PREFIX}{notebook_id[len(NOTEBOOK_PREFIX) :]}:{user_id}"


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
    # hybrid-logical-clock stamp of the write that made this version (core/hlc.py): of
    # concurrent versions that cannot be merged, the note shows the one with the latest stamp
    hlc: str = ""

    @property
    def trashed(self) -> bool:
        return self.trashed_at is not None


def _rev_order(version: str | None) -> tuple[int, str]:
    generation, _, rev_hash = (version or "").partition("-")
    return (int(generation) if generation.isdigit() else 0, rev_hash)


def visible_version(versions: Sequence[Note]) -> Note:
    """The version a conflicted note shows: the latest write by hybrid logical clock (versions
    written before stamps existed count as older), then by `updated_at`, then CouchDB's own
    order, so every node and every process shows the same one."""
    return max(versions, key=lambda note: (note.hlc, note.updated_at, _rev_order(note.version)))


def email_claim_id(email: str) -> str:
    """The one document per e-mail address that says which account holds it."""
    return "email:" + hashlib.sha256(email.encode()).hexdigest()


def claim_order(stamp: str | None, created_at: str, user_id: str) -> tuple[int, int, str, str]:
    """Order of competing claims of one address: the earliest keeps it. By the claim's clock
    stamp (its wall time, then counter), else its creation time; the account id breaks ties,
    so every node picks the same holder."""
    parsed = hlc.parse(stamp or "")
    if parsed is not None:
        return (parsed[0], parsed[1], parsed[2], user_id)
    try:
        moment = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        millis = int(moment.timestamp() * 1000)
    except (TypeError, ValueError):
        millis = 0
    return (millis, 0, "", user_id)


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
    return f"{REVISION_PREFIX}{note_id[len(NOTE_PREFIX) :]}:{replaced_version}"


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


API_KEY_PREFIX = "apikey:"
API_KEY_SCOPES = ("READ", "WRITE")  # each grants what the ones before it grant


@dataclass
class ApiKey:
    """A long-lived credential for scripts: only the SHA-256 of its secret is kept. It works
    while the account's session epoch is the one it was made under (services/api_key_service.py)."""

    id: str
    user_id: str
    name: str
    scope: str
    created_at: str
    secret_hash: str
    session_epoch: int = 0
    expires_at: str | None = None
    last_used_at: str | None = None
    revoked_at: str | None = None
    version: str | None = None


@dataclass
class RefreshToken:
    """One refresh token of a login session (`family`); only the token's SHA-256 is kept."""

    token_hash: str
    user_id: str
    family: str
    expires_at: float
    used: bool = False
    revoked: bool = False
    version: str | None = None


@dataclass(frozen=True)
class NoteQuery:
    """What a note listing asks for; `scope` is 'o:<owner id>' or 'n:<notebook id>'; `shared`
    adds the notes of these notebooks (shared with the caller) to an 'o:' scope."""

    scope: str
    trashed: bool = False
    order: str = "UPDATED_DESC"
    first: int = 20
    after: str | None = None
    tag: str | None = None
    words: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()
