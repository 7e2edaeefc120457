"""Activity records and analytics: buckets and time zones, the resolver's identical record on
every node, and the services over the in-memory fakes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from notebook.core.activity import (
    bucket_day,
    count_words,
    local_days,
    new_activity,
    quarter_bucket,
    stats_days,
    time_zone,
)
from notebook.core.domain import Note, User, format_time
from notebook.core.errors import InvalidInput
from notebook.core.hlc import format_stamp
from notebook.services.activity_service import ActivityService
from notebook.services.analytics_service import AnalyticsService
from notebook.services.conflict_service import _merge_event
from notebook.services.notebook_service import NotebookService
from tests.unit.fakes import (
    FakeActivityStore,
    FakeMembershipRepository,
    FakeNotebookRepository,
    FakeNoteStore,
    FakeUserRepository,
)


def test_buckets_are_quarter_hours_and_days_follow_the_zone() -> None:
    assert quarter_bucket("2026-03-01T10:44:59.999999Z") == "2026-03-01T10:30"
    assert quarter_bucket("2026-03-01T10:00:00.000000Z") == "2026-03-01T10:00"
    assert bucket_day("2026-03-01T23:45", time_zone("UTC")) == date(2026, 3, 1)
    assert bucket_day("2026-03-01T23:45", time_zone("Europe/Paris")) == date(2026, 3, 2)
    assert bucket_day("2026-03-01T04:15", time_zone("America/Los_Angeles")) == date(2026, 2, 28)
    # Kathmandu is UTC+5:45: 18:15Z is already midnight there, 18:00Z is not
    assert bucket_day("2026-03-01T18:15", time_zone("Asia/Kathmandu")) == date(2026, 3, 2)
    assert bucket_day("2026-03-01T18:00", time_zone("Asia/Kathmandu")) == date(2026, 3, 1)


def test_local_days_end_today_in_the_zone() -> None:
    now = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert local_days(3, time_zone("UTC"), now) == [date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]
    assert local_days(1, time_zone("Asia/Tokyo"), now) == [date(2026, 3, 2)]


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "UTC; DROP", 5])
def test_unknown_time_zones_are_bad_input(name: object) -> None:
    with pytest.raises(InvalidInput):
        time_zone(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("days", [0, -1, 367, True, "7"])
def test_days_are_bounded(days: object) -> None:
    with pytest.raises(InvalidInput):
        stats_days(days)  # type: ignore[arg-type]
    assert stats_days(366) == 366


def test_words_are_counted_in_title_and_content() -> None:
    assert count_words("Two words", "and *three* more-words\n\n# heading") == 7
    assert count_words("", "") == 0


def _note(hlc: str) -> Note:
    return Note(
        id="note:" + "a" * 32, notebook_id="notebook:x", owner_id="user:o", title="t", content="c",
        created_at="2026-01-01T00:00:00.000000Z", updated_at="2026-01-01T00:00:00.000000Z",
        created_by="user:o", updated_by="user:o", version="3-abc", hlc=hlc,
    )  # fmt: skip


def test_every_nodes_resolver_writes_the_same_record_of_a_merge() -> None:
    stamp = format_stamp(1_767_225_600_000, 3, "node-a")
    first = _merge_event(_note(stamp), ["2-x", "2-y"])
    again = _merge_event(_note(stamp), ["2-x", "2-y"])
    assert first == again
    assert first.actor_id is None and first.action == "note.conflict_resolved"
    assert first.at == "2026-01-01T00:00:00.000000Z"
    assert _merge_event(_note(stamp), ["2-x", "2-z"]).id != first.id


def test_records_never_carry_note_content() -> None:
    event = new_activity("note.updated", "user:a", "note", "note:1", "2026-01-01T00:00:00.000000Z")
    assert event.summary == "edited a note"
    assert new_activity("notebook.shared", "user:a", "notebook", "nb", "t", detail="VIEWER").summary.endswith(
        "(VIEWER)"
    )


def _world() -> tuple[FakeNoteStore, FakeActivityStore, NotebookService, FakeUserRepository]:
    store = FakeNoteStore()
    users = FakeUserRepository()
    notebooks = NotebookService(FakeNotebookRepository(store), FakeMembershipRepository(store), users)
    return store, FakeActivityStore(store, users), notebooks, users


def _user(uid: str) -> User:
    return User(
        id=uid, email=f"{uid}@example.com", display_name=None, created_at="2026-01-01T00:00:00.000000Z"
    )


def test_my_stats_count_per_local_day() -> None:
    store, activity, _, _ = _world()
    ada = _user("user:ada")
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday_late = (now - timedelta(days=1)).replace(hour=23, minute=50)
    for at in (now, yesterday_late):
        store.events.append(new_activity("note.created", ada.id, "note", "note:1", format_time(at)))
    store.events.append(new_activity("note.imported", ada.id, "notebook", "nb", format_time(now), count=5))
    store.events.append(new_activity("note.updated", ada.id, "note", "note:1", format_time(now)))
    store.events.append(new_activity("note.created", "user:bob", "note", "note:2", format_time(now)))

    class Tags:
        def own_tags(self, actor: User) -> list:
            return []

    analytics = AnalyticsService(activity, Tags())  # type: ignore[arg-type]
    utc = analytics.my_stats(ada, 3, "UTC", now=now)
    assert [d.count for d in utc.notes_created_per_day] == [0, 1, 6]
    assert [d.count for d in utc.notes_updated_per_day] == [0, 0, 1]
    # in Paris (UTC+1 or +2) yesterday's 23:50Z is today
    paris = analytics.my_stats(ada, 3, "Europe/Paris", now=now)
    assert [d.count for d in paris.notes_created_per_day] == [0, 0, 7]


def test_prune_keeps_recent_records() -> None:
    store, activity, notebooks, _ = _world()
    service = ActivityService(activity, notebooks, retention_days=30)
    now = datetime.now(UTC)
    for age in (1, 29, 31, 400):
        at = format_time(now - timedelta(days=age))
        store.events.append(new_activity("note.created", "user:a", "note", f"note:{age}", at))
    service.security_event("security.login_failed", "account", "digest")
    assert service.prune(now=now) == 2
    assert sorted(e.target_id for e in store.events) == ["note:1", "note:29"]
    assert len(activity.security) == 1


def test_a_repeated_rate_limit_refusal_is_one_event_a_minute() -> None:
    _, activity, notebooks, _ = _world()
    service = ActivityService(activity, notebooks)
    for _ in range(5):
        service.security_event("security.rate_limited", "client", "127.0.0.9", dedupe="login|x|127.0.0.9")
    assert len(activity.security) in (1, 2)  # 2 only when the minute turned during the loop
