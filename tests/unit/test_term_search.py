"""The sorted term walk (database/term_search.py) against a brute-force intersection, on an
in-memory `note_terms_sorted` index with chunks small enough that every path is taken."""

from __future__ import annotations

import random
from typing import Any

import pytest

from notebook.database.term_search import SORTED_TERMS_VIEW, sorted_matches

SCOPE = "o:u1"


class IndexOnly:
    """A Database answering `note_terms_sorted` range and `keys` requests (keys of [scope, kind,
    term, trashed, updated_at, id] compare like CouchDB's for these same-shaped strings)."""

    def __init__(self, rows: list[list[Any]]) -> None:
        self.rows = sorted(rows)
        self.requests: list[str] = []
        self.keys_asked = 0

    def view(self, design: str, view: str, **params: Any) -> dict[str, Any]:
        assert view == SORTED_TERMS_VIEW
        if "keys" in params:
            self.requests.append("keys")
            self.keys_asked += len(params["keys"])
            present = {tuple(row) for row in self.rows}
            return {"rows": [{"key": key} for key in params["keys"] if tuple(key) in present]}
        self.requests.append("range")
        high, low = (params["startkey"], params["endkey"]) if params["descending"] else (
            params["endkey"], params["startkey"])  # fmt: skip
        rows = [row for row in self.rows if _at_least(row, low) and _at_most(row, high)]
        if params["descending"]:
            rows.reverse()
        return {"rows": [{"key": row} for row in rows[: params["limit"]]]}


def _at_least(row: list[Any], key: list[Any]) -> bool:
    return row[: len(key)] >= key if not key or key[-1] != {} else row[: len(key) - 1] > key[:-1]


def _at_most(row: list[Any], key: list[Any]) -> bool:
    if key and key[-1] == {}:
        return row[: len(key) - 1] <= key[:-1]
    return row[: len(key)] <= key


def _index(
    rng: random.Random, notes: int, rates: dict[str, float], trashed: bool = False
) -> tuple[list[list[Any]], dict[str, set]]:
    """Rows of `notes` notes, a fifth of them in the trash; the positions of each term's notes
    in the trash state asked for."""
    rows, having = [], {term: set() for term in rates}
    for n in range(notes):
        position = (f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z", f"note:{rng.getrandbits(32):08x}")
        in_trash = rng.random() < 0.2
        for term, rate in rates.items():
            if rng.random() < rate:
                rows.append([SCOPE, "w", term, in_trash, *position])
                if in_trash == trashed:
                    having[term].add(position)
    return rows, having


@pytest.mark.parametrize("trashed", [False, True])
@pytest.mark.parametrize("chunk", [10, 0])
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("descending", [True, False])
def test_every_page_is_the_brute_force_intersection(
    seed: int, descending: bool, chunk: int, trashed: bool
) -> None:
    rng = random.Random(seed)
    rates = {"common": rng.uniform(0.3, 0.9), "other": rng.uniform(0.2, 0.9), "rare": rng.uniform(0.01, 0.1)}
    rows, having = _index(rng, 300, rates, trashed)
    terms = rng.sample(sorted(rates), rng.randint(1, 3))
    expected = sorted(set.intersection(*(having[t] for t in terms)), reverse=descending)
    db = IndexOnly(rows)
    walked: list[tuple[str, str]] = []
    after = None
    while True:
        page, more = sorted_matches(
            db, SCOPE, [("w", t) for t in terms], descending, 7, after, trashed, chunk
        )  # type: ignore[arg-type]
        walked += page
        if not more:
            break
        assert len(page) == 7
        after = page[-1]
    assert walked == expected


def test_candidates_already_read_in_every_term_are_not_looked_up() -> None:
    """Two terms in every note: the first chunks decide the page, no `keys` request is sent."""
    rows, _ = _index(random.Random(1), 200, {"a": 1.0, "b": 1.0})
    db = IndexOnly(rows)
    page, more = sorted_matches(db, SCOPE, [("w", "a"), ("w", "b")], descending=True, first=20, after=None)
    assert len(page) == 20 and more
    assert db.requests == ["range", "range"] and db.keys_asked == 0


def test_a_candidate_another_term_read_past_is_decided_without_a_lookup() -> None:
    """`b` is in every other note: its first rows reach past `a`'s, so each `a` row is either
    among them (a match) or was passed over (not one)."""
    rows = []
    for n in range(300):
        position = [f"2026-01-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z", f"note:{n:08x}"]
        rows.append([SCOPE, "w", "a", False, *position])
        if n % 2 == 0:
            rows.append([SCOPE, "w", "b", False, *position])
    db = IndexOnly(rows)
    page, more = sorted_matches(
        db, SCOPE, [("w", "a"), ("w", "b")], descending=True, first=3, after=None, chunk=10
    )
    assert [position[1] for position in page] == ["note:0000012a", "note:00000128", "note:00000126"] and more
    assert db.keys_asked == 0


def test_positions_of_another_shape_are_looked_up_not_compared() -> None:
    """A time of another width could collate differently on the server: never decided by
    comparing it, always by its exact key."""
    rows = []
    for n in range(40):
        when = f"2026-01-01T00:00:{n:02d}Z" if n % 2 else f"2026-01-01T00:00:{n:02d}.5Z"
        rows.append([SCOPE, "w", "a", False, when, f"note:{n:08x}"])
        if n % 4 == 0:
            rows.append([SCOPE, "w", "b", False, when, f"note:{n:08x}"])
    db = IndexOnly(rows)
    page, _ = sorted_matches(
        db, SCOPE, [("w", "a"), ("w", "b")], descending=True, first=2, after=None, chunk=5
    )
    assert [position[1] for position in page] == ["note:00000024", "note:00000020"]
    assert db.keys_asked > 0
