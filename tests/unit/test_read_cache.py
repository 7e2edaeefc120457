"""The read cache never keeps a body its follower cannot vouch for (database/couch/read_cache.py)."""

from __future__ import annotations

from typing import Any

from notebook.database.couch.errors import DatabaseUnavailable
from notebook.database.couch.read_cache import CacheFollower, ReadCache, params_key


def _live(max_bytes: int = 1 << 20) -> ReadCache:
    cache = ReadCache(["notes"], max_bytes)
    cache.clear(live=True)
    return cache


def test_a_hit_is_a_fresh_copy() -> None:
    cache = _live()
    cache.store("notes", "a", "", {"_id": "a", "tags": ["x"]}, cache.generation())
    first = cache.get("notes", "a", "")
    assert first == {"_id": "a", "tags": ["x"]}
    first["tags"].append("changed")
    assert cache.get("notes", "a", "") == {"_id": "a", "tags": ["x"]}


def test_a_read_that_raced_an_eviction_is_not_stored() -> None:
    cache = _live()
    since = cache.generation()  # the read is sent
    cache.evict("notes", ["a"])  # meanwhile the feed (or a write of ours) says "a" changed
    cache.store("notes", "a", "", {"_id": "a", "_rev": "1-old"}, since)  # the old answer arrives
    assert cache.get("notes", "a", "") is None
    assert cache.stats["refused"] == 1
    # a read started after the eviction is kept
    cache.store("notes", "a", "", {"_id": "a", "_rev": "2-new"}, cache.generation())
    assert cache.get("notes", "a", "") == {"_id": "a", "_rev": "2-new"}


def test_an_eviction_of_another_document_does_not_refuse_the_read() -> None:
    cache = _live()
    since = cache.generation()
    cache.evict("notes", ["b"])
    cache.store("notes", "a", "", {"_id": "a"}, since)
    assert cache.get("notes", "a", "") == {"_id": "a"}


def test_eviction_covers_every_read_parameter() -> None:
    cache = _live()
    for params in ("", params_key({"conflicts": True})):
        cache.store("notes", "a", params, {"_id": "a", "p": params}, cache.generation())
    cache.evict("notes", ["a"])
    assert cache.get("notes", "a", "") is None
    assert cache.get("notes", "a", params_key({"conflicts": True})) is None
    assert cache.size() == (0, 0)


def test_a_cache_that_is_not_live_serves_and_keeps_nothing() -> None:
    cache = ReadCache(["notes"], 1 << 20)
    assert not cache.covers("notes")
    cache.store("notes", "a", "", {"_id": "a"}, cache.generation())
    assert cache.size() == (0, 0)
    cache.clear(live=True)
    assert cache.covers("notes") and not cache.covers("users")


def test_a_clear_refuses_reads_in_flight_and_empties_the_cache() -> None:
    cache = _live()
    cache.store("notes", "a", "", {"_id": "a"}, cache.generation())
    since = cache.generation()
    cache.clear()
    cache.store("notes", "b", "", {"_id": "b"}, since)
    assert cache.size() == (0, 0)


def test_memory_is_bounded_least_recently_used_out_first() -> None:
    body = {"_id": "x", "content": "y" * 900}
    cache = _live(max_bytes=16 * 1024)
    for number in range(40):
        cache.store("notes", f"d{number}", "", {**body, "_id": f"d{number}"}, cache.generation())
        cache.get("notes", "d0", "")  # d0 stays in use
    entries, size = cache.size()
    assert size <= 16 * 1024 and 10 <= entries < 40
    assert cache.get("notes", "d0", "") is not None
    assert cache.get("notes", "d1", "") is None
    # one document larger than a sixteenth of the cache is never kept
    cache.store("notes", "big", "", {"_id": "big", "content": "z" * 2000}, cache.generation())
    assert cache.get("notes", "big", "") is None


class FakeFeed:
    """A feed client: each node's changes, and failures on demand."""

    def __init__(self) -> None:
        self.changes: dict[str, list[str]] = {"n1": [], "n2": []}
        self.failing = False
        self.asked: list[tuple[str, str]] = []

    def request(self, method: str, path: str, *, params: dict[str, Any], node: str) -> dict[str, Any]:
        if self.failing:
            raise DatabaseUnavailable("node down")
        self.asked.append((node, params["since"]))
        pending, self.changes[node] = self.changes[node], []
        return {"results": [{"id": doc_id} for doc_id in pending], "last_seq": f"{node}-{len(self.asked)}"}

    def close(self) -> None:
        pass


def _follower() -> tuple[ReadCache, FakeFeed, list[str], CacheFollower]:
    cache = ReadCache(["notes"], 1 << 20)
    feed = FakeFeed()
    active = ["n1"]
    follower = CacheFollower(cache, feed, lambda: active[0], 0.05)  # type: ignore[arg-type]
    return cache, feed, active, follower


def test_the_follower_turns_the_cache_on_after_taking_a_position() -> None:
    cache, feed, _, follower = _follower()
    assert not cache.live
    follower.poll()
    assert cache.live and feed.asked == [("n1", "now")]
    follower.poll()
    assert feed.asked[-1] == ("n1", "n1-1")  # the position the first poll returned


def test_the_follower_evicts_what_the_feed_reports() -> None:
    cache, feed, _, follower = _follower()
    follower.poll()
    cache.store("notes", "a", "", {"_id": "a"}, cache.generation())
    cache.store("notes", "b", "", {"_id": "b"}, cache.generation())
    feed.changes["n1"] = ["a"]
    follower.poll()
    assert cache.get("notes", "a", "") is None
    assert cache.get("notes", "b", "") == {"_id": "b"}


def test_a_failed_poll_switches_the_cache_off_until_a_new_position() -> None:
    cache, feed, _, follower = _follower()
    follower.poll()
    cache.store("notes", "a", "", {"_id": "a"}, cache.generation())
    feed.failing = True
    follower.poll()
    assert not cache.live and cache.size() == (0, 0)
    feed.failing = False
    follower.poll()
    assert cache.live and feed.asked[-1] == ("n1", "now")  # a changed document could be missed


def test_another_active_node_clears_the_cache_and_starts_from_now_there() -> None:
    cache, feed, active, follower = _follower()
    follower.poll()
    cache.store("notes", "a", "", {"_id": "a"}, cache.generation())
    active[0] = "n2"  # the client failed over
    follower.poll()
    assert cache.size() == (0, 0) and cache.live
    assert feed.asked[-1] == ("n2", "now")


def test_a_membership_change_evicts_its_users_derived_list_and_refuses_it_in_flight() -> None:
    from notebook.database.repository import memberships_changed_by

    cache = ReadCache(["notes"], 1 << 20, derived=memberships_changed_by)
    cache.clear(live=True)
    key = memberships_changed_by("member:nb1:user:ada")[0]
    assert memberships_changed_by("note:1") == [] and memberships_changed_by("member:") == []
    cache.store("notes", key, "derived", {"value": ["old"]}, cache.generation())
    other = memberships_changed_by("member:nb1:user:bob")[0]
    cache.store("notes", other, "derived", {"value": ["bob's"]}, cache.generation())
    since = cache.generation()  # a listing starts reading Ada's memberships
    cache.evict("notes", ["member:nb2:user:ada"])  # a change to one of them is reported
    cache.store("notes", key, "derived", {"value": ["stale"]}, since)  # the listing's old answer
    assert cache.get("notes", key, "derived") is None  # neither the old entry nor the raced one
    assert cache.get("notes", other, "derived") == {"value": ["bob's"]}  # another user's stays
