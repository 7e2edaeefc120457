"""The hybrid logical clock and the rules built on it: which conflicting version a note shows,
and which account keeps an e-mail address registered on both sides of a partition."""

from __future__ import annotations

import threading

from notebook.core.domain import Note, claim_order, visible_version
from notebook.core.hlc import HybridClock, format_stamp, parse, stamp_after
from notebook.database.repository import claimants


class SteppingWall:
    """A wall clock the test sets, including backwards."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_stamps_follow_the_wall_clock_and_sort_as_text() -> None:
    wall = SteppingWall(1_000.0)
    clock = HybridClock("a", wall)
    first = clock.now()
    wall.now = 1_000.5
    second = clock.now()
    assert parse(first) == (1_000_000, 0, "a")
    assert parse(second) == (1_000_500, 0, "a")
    assert first < second


def test_stamps_go_forward_when_the_wall_clock_steps_back() -> None:
    wall = SteppingWall(2_000.0)
    clock = HybridClock("a", wall)
    before = clock.now()
    wall.now = 1_000.0  # an hour of NTP correction, a restored VM
    after = [clock.now() for _ in range(3)]
    assert before < after[0] < after[1] < after[2]
    assert parse(after[2]) == (2_000_000, 3, "a")
    wall.now = 2_000.001
    assert parse(clock.now()) == (2_000_001, 0, "a")


def test_a_stamp_read_from_another_node_is_passed() -> None:
    """A write made after reading a document is later than it, even from a node whose wall
    clock is an hour behind."""
    behind = HybridClock("b", SteppingWall(1_000.0))
    remote = format_stamp(4_600_000, 7, "a")
    behind.observe(remote)
    mine = behind.now()
    assert mine > remote
    assert parse(mine) == (4_600_000, 8, "b")


def test_observing_older_stamps_or_garbage_changes_nothing() -> None:
    clock = HybridClock("a", SteppingWall(5_000.0))
    first = clock.now()
    for junk in (format_stamp(1, 0, "z"), "", "not a stamp", "12.x.y", None):
        clock.observe(junk)
    assert parse(clock.now()) == (5_000_000, 1, "a")
    assert first < clock.now()


def test_the_counter_borrows_the_next_millisecond_when_full() -> None:
    clock = HybridClock("a", SteppingWall(1.0))
    clock.observe(format_stamp(1_000, 99_999, "b"))
    assert parse(clock.now()) == (1_001, 0, "a")


def test_stamps_are_unique_across_threads() -> None:
    clock = HybridClock("a", SteppingWall(1.0))
    stamps: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [clock.now() for _ in range(500)]
        with lock:
            stamps.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(stamps)) == 2_000


def _note(version: str, stamp: str, updated_at: str = "2026-01-01T00:00:00.000000Z") -> Note:
    return Note(
        id="note:x",
        notebook_id="notebook:x",
        owner_id="user:x",
        title="t",
        content=version,
        created_at=updated_at,
        updated_at=updated_at,
        created_by="user:x",
        updated_by="user:x",
        version=version,
        hlc=stamp,
    )


def test_the_visible_version_is_the_latest_stamp_not_couchdbs_winner() -> None:
    # CouchDB would pick 3-aaa (highest generation); the later write is the 2- leaf
    older = _note("3-aaa", format_stamp(1_000, 0, "a"))
    later = _note("2-bbb", format_stamp(2_000, 0, "b"))
    assert visible_version([older, later]) is later
    assert visible_version([later, older]) is later


def test_versions_without_a_stamp_count_as_older_then_updated_at_then_revision() -> None:
    legacy = _note("5-fff", "", "2026-06-01T00:00:00.000000Z")
    stamped = _note("2-aaa", format_stamp(1, 0, "a"), "2020-01-01T00:00:00.000000Z")
    assert visible_version([legacy, stamped]) is stamped
    old_a = _note("2-aaa", "", "2026-01-01T00:00:00.000000Z")
    old_b = _note("2-bbb", "", "2026-01-01T00:00:00.000000Z")
    newer = _note("2-000", "", "2026-01-02T00:00:00.000000Z")
    assert visible_version([old_a, old_b]) is old_b
    assert visible_version([old_a, newer, old_b]) is newer


def test_the_earliest_claim_keeps_an_address() -> None:
    early = {"user_id": "user:zzz", "hlc": format_stamp(1_000, 0, "b"), "created_at": "x"}
    late = {"user_id": "user:aaa", "hlc": format_stamp(1_001, 0, "a"), "created_at": "x"}
    assert claimants([late, early]) == ["user:zzz", "user:aaa"]
    assert claimants([early, late]) == ["user:zzz", "user:aaa"]


def test_claims_in_the_same_millisecond_are_ordered_by_counter_then_process_then_account() -> None:
    a = {"user_id": "user:b", "hlc": format_stamp(1_000, 0, "b")}
    b = {"user_id": "user:a", "hlc": format_stamp(1_000, 0, "c")}
    assert claimants([b, a]) == ["user:b", "user:a"]
    assert claim_order(None, "bad time", "user:a") < claim_order(None, "bad time", "user:b")


def test_claims_without_a_stamp_use_the_creation_time() -> None:
    legacy = {"user_id": "user:b", "created_at": "2026-01-01T00:00:00.000000Z"}
    newer = {"user_id": "user:a", "hlc": format_stamp(1_767_225_600_001, 0, "a")}  # 1 ms later
    assert claimants([newer, legacy]) == ["user:b", "user:a"]


def test_a_settled_claim_still_names_the_accounts_it_displaced() -> None:
    settled = {"user_id": "user:first", "hlc": format_stamp(5, 0, "a"), "displaced": ["user:second"]}
    assert claimants([settled]) == ["user:first", "user:second"]
    third = {"user_id": "user:third", "hlc": format_stamp(9, 0, "c")}
    found = claimants([third, settled])
    assert found[0] == "user:first" and sorted(found[1:]) == ["user:second", "user:third"]


def test_the_stamp_of_a_merge_follows_its_leaves_and_is_the_same_everywhere() -> None:
    leaf = format_stamp(1_000, 7, "a")
    merged = stamp_after(leaf)
    assert merged > leaf and merged == stamp_after(leaf)  # every node's resolver computes it alike
    assert stamp_after(format_stamp(1_000, 99_999, "a")) == format_stamp(1_001, 0, "merge")
    assert stamp_after("") == ""  # leaves written before stamps existed
