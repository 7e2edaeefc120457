"""Activity records: who did what to which note, notebook or account, and when.

A record never holds note content or titles (they may be encrypted at rest; a summary is
stored in clear): only ids, the action and a short fixed phrase.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notebook.core.errors import InvalidInput

ACTIVITY_PREFIX = "activity:"

# action -> the summary shown with it (never note content, never a title)
ACTIONS: dict[str, str] = {
    "note.created": "created a note",
    "note.imported": "imported notes",
    "note.updated": "edited a note",
    "note.moved": "moved a note to another notebook",
    "note.trashed": "moved a note to the trash",
    "note.restored": "restored a note from the trash",
    "note.deleted": "deleted a note permanently",
    "note.revision_restored": "restored an earlier version of a note",
    "note.conflict_resolved": "settled competing versions of a note",
    "notebook.created": "created a notebook",
    "notebook.updated": "changed a notebook's name or description",
    "notebook.deleted": "deleted a notebook",
    "notebook.shared": "shared a notebook",
    "notebook.unshared": "removed a member from a notebook",
    "user.registered": "created an account",
    "user.login": "signed in",
    "user.logout": "signed out",
    "user.logout_everywhere": "signed out everywhere",
    "user.password_changed": "changed the password",
    "user.email_changed": "confirmed a new e-mail address",
    "user.deleted": "deleted the account",
    "api_key.created": "created an API key",
    "api_key.first_used": "used an API key for the first time",
    "api_key.revoked": "revoked an API key",
}

# security events: recorded for operators (admins), no change goes with them
SECURITY_ACTIONS: dict[str, str] = {
    "security.login_failed": "a sign-in failed",
    "security.rate_limited": "a rate limit refused requests",
    "security.refresh_reuse": "a refresh token was used twice; its session was revoked",
    "security.admin_granted": "an account was made an administrator",
    "security.admin_revoked": "an account's administrator flag was taken away",
}

# what the per-day figures of myStats count (docs/analytics.md)
CREATED_ACTIONS = ("note.created", "note.imported")
UPDATED_ACTIONS = ("note.updated", "note.revision_restored", "note.conflict_resolved")

MAX_STATS_DAYS = 366
BUCKET_MINUTES = 15  # every IANA zone's offset is a multiple of 15 minutes

_ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass
class Activity:
    id: str
    action: str
    actor_id: str | None
    target_type: str  # note, notebook, user
    target_id: str
    at: str  # fixed-width UTC, like every time of the domain
    notebook_id: str | None = None
    # the notebook's owner, so that the owner's feed shows what members did in it
    notebook_owner_id: str | None = None
    summary: str | None = None
    count: int = 1  # how many notes one import record stands for
    security: bool = False  # for administrators only


def activity_id(at: str, unique: str | None = None) -> str:
    """Ids sort by time; `unique` names a record that several processes write alike (the
    conflict resolver's), so that they write one document, not one each."""
    return f"{ACTIVITY_PREFIX}{at}:{unique or uuid.uuid4().hex}"


def deterministic_suffix(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def new_activity(
    action: str,
    actor_id: str | None,
    target_type: str,
    target_id: str,
    at: str,
    *,
    notebook_id: str | None = None,
    notebook_owner_id: str | None = None,
    count: int = 1,
    unique: str | None = None,
    detail: str | None = None,
) -> Activity:
    """A record of `action`; `detail` is appended to the fixed summary (a role, a count)."""
    security = action in SECURITY_ACTIONS
    phrase = SECURITY_ACTIONS[action] if security else ACTIONS[action]
    return Activity(
        id=activity_id(at, unique),
        action=action,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        at=at,
        notebook_id=notebook_id,
        notebook_owner_id=notebook_owner_id,
        summary=f"{phrase} ({detail})" if detail else phrase,
        count=count,
        security=security,
    )


# time zones and day buckets ---------------------------------------------------------------
def time_zone(name: str) -> ZoneInfo:
    """An IANA time zone by name; anything else is bad input."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_+\-/]{1,64}", name):
        raise InvalidInput("timezone must be an IANA time zone name such as Europe/Paris", field="timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {name!r}", field="timezone") from None


def stats_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_STATS_DAYS:
        raise InvalidInput(f"days must be between 1 and {MAX_STATS_DAYS}", field="days")
    return days


def quarter_bucket(at: str) -> str:
    """The 15-minute UTC bucket of a stored time: 'YYYY-MM-DDTHH:MM' (the view computes the same)."""
    minute = int(at[14:16]) // BUCKET_MINUTES * BUCKET_MINUTES
    return f"{at[:14]}{minute:02d}"


def local_days(days: int, zone: ZoneInfo, now: datetime | None = None) -> list[date]:
    """The last `days` calendar days in `zone`, oldest first, today included."""
    today = (now or datetime.now(UTC)).astimezone(zone).date()
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def utc_start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def bucket_day(bucket: str, zone: ZoneInfo) -> date:
    """The local day a 15-minute UTC bucket falls on."""
    moment = datetime.strptime(bucket, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
    return moment.astimezone(zone).date()


def parse_time(at: str) -> datetime:
    return datetime.strptime(at, _ISO).replace(tzinfo=UTC)


def count_words(title: str, content: str) -> int:
    """Words of a note as myStats counts them, taken at write time (docs/analytics.md)."""
    return len(re.findall(r"\w+", f"{title}\n{content}"))
