"""How people write and how the server is used: figures counted by CouchDB's built-in reduces.

Every figure is one view query with `_count`, `_sum` or `_stats` over a key range whose size
depends on days, tags or active users, never on the number of notes (docs/analytics.md says
what each one means). Per-day figures come from 15-minute UTC buckets, shifted into the
caller's IANA time zone here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from notebook.core.activity import (
    CREATED_ACTIONS,
    UPDATED_ACTIONS,
    bucket_day,
    local_days,
    quarter_bucket,
    stats_days,
    time_zone,
    utc_start_of,
)
from notebook.core.domain import TagCount, User, format_time
from notebook.services.note_service import NoteService
from notebook.services.ports import ActivityStore

MAX_TOP_TAGS = 100


@dataclass(frozen=True)
class DayCount:
    day: str
    count: int


@dataclass
class UserStats:
    notebooks: int
    notes: int
    trashed_notes: int
    words: int
    tags: list[TagCount]
    notes_created_per_day: list[DayCount]
    notes_updated_per_day: list[DayCount]

    def top_tags(self, limit: int = 10) -> list[TagCount]:
        return self.tags[: max(0, min(int(limit), MAX_TOP_TAGS))]


@dataclass
class SystemStats:
    users: int
    notebooks: int
    notes: int
    writes_per_day: list[DayCount]
    conflicts_resolved: int
    store: ActivityStore

    def active_users(self, days: int = 1) -> int:
        """Accounts that wrote or signed in during the last `days` UTC days."""
        days = stats_days(days)
        since = (datetime.now(UTC).date() - timedelta(days=days - 1)).isoformat()
        return self.store.active_users(since)


class AnalyticsService:
    def __init__(self, store: ActivityStore, notes: NoteService) -> None:
        self.store = store
        self.notes = notes

    def my_stats(
        self, actor: User, days: int = 30, timezone: str = "UTC", now: datetime | None = None
    ) -> UserStats:
        """The actor's own notebooks and notes (those in notebooks they own), their words and
        tags, and per local day the notes they created and updated."""
        days = stats_days(days)
        zone = time_zone(timezone)
        calendar = local_days(days, zone, now)
        since = quarter_bucket(format_time(utc_start_of(calendar[0], zone)))
        notes, trashed, words = self.store.note_stats(actor.id)

        counted = self.store.actor_counts(actor.id, since)

        def per_day(actions: tuple[str, ...]) -> list[DayCount]:
            totals = dict.fromkeys(calendar, 0)
            for (bucket, action), count in counted.items():
                day = bucket_day(bucket, zone)
                if action in actions and day in totals:
                    totals[day] += count
            return [DayCount(day.isoformat(), count) for day, count in totals.items()]

        return UserStats(
            notebooks=self.store.notebook_count(actor.id),
            notes=notes,
            trashed_notes=trashed,
            words=words,
            tags=self.notes.own_tags(actor),
            notes_created_per_day=per_day(CREATED_ACTIONS),
            notes_updated_per_day=per_day(UPDATED_ACTIONS),
        )

    def system_stats(self, days: int = 30, now: datetime | None = None) -> SystemStats:
        """Every account's figures together, per UTC day (administrators only)."""
        days = stats_days(days)
        calendar = local_days(days, ZoneInfo("UTC"), now)
        since = calendar[0].isoformat()
        writes = self.store.writes_per_day(since)
        notes, _, _ = self.store.note_stats("*")
        return SystemStats(
            users=self.store.user_count(),
            notebooks=self.store.notebook_count(None),
            notes=notes,
            writes_per_day=[DayCount(day.isoformat(), writes.get(day.isoformat(), 0)) for day in calendar],
            conflicts_resolved=self.store.action_total("note.conflict_resolved", since),
            store=self.store,
        )
