"""Filtered listings whose cost does not grow with the number of notes.

The `note_terms_sorted` view has one row per note and term (word hash or tag key), under its
owner's scope, keyed `[scope, kind, term, trashed, updated_at, note id]`: a term's notes of one
trash state come in listing order. A page is then found by walking the terms from the listing's
position instead of reading every match:

- each term's first rows are read (one range request per term: the page plus one for a single
  term, `max(100, 4 x (page + 1))` for several);
- a term that ran out is complete: it drives, and the others are checked against it;
- otherwise the first term drives, chunk by chunk; a candidate is decided by the rows already
  read when every other term returned it (a match) or read past its position without it (not
  one). Only the undecided candidates before the page is certain are checked, with one request
  for the exact keys they would have in the other terms (pouchdb-server answers a `keys` request
  with one lookup per key);
- the walk stops as soon as the page plus one note is found.

So a page costs a few requests of a bounded number of rows whatever the number of notes: a single
term is one range read, several terms add one exact-key request per chunk. Only a page of terms
that rarely occur together (many candidates, few matches) reads further. The whole set of matches
(`totalCount`, other orders, a notebook's or shared notes) is still read by the repository's
full path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from notebook.database.couch import Database
from notebook.database.design_docs import NOTES_DESIGN

SORTED_TERMS_VIEW = "note_terms_sorted"
_HIGH: dict[str, Any] = {}

Position = tuple[str, str]  # (updated_at, note id): a row's place in the listing order


class _TermRows:
    """One term's rows from a position on, read a chunk at a time."""

    def __init__(self, db: Database, prefix: list[Any], descending: bool, after: Position | None) -> None:
        self.db = db
        self.prefix = prefix
        self.descending = descending
        self.last = after
        self.exhausted = False
        self.requests = 0

    def next_chunk(self, size: int) -> list[Position]:
        if self.exhausted:
            return []
        low, high = self.prefix, [*self.prefix, _HIGH]
        start: list[Any] = [*self.prefix, *self.last] if self.last else (high if self.descending else low)
        limit = size + (1 if self.last else 0)  # the row at `last` itself comes back first
        rows = self.db.view(
            NOTES_DESIGN, SORTED_TERMS_VIEW, startkey=start, endkey=low if self.descending else high,
            descending=self.descending, limit=limit,
        )["rows"]  # fmt: skip
        self.requests += 1
        self.exhausted = len(rows) < limit
        found = [_position(row["key"]) for row in rows]
        if self.last and found and found[0] == self.last:
            found = found[1:]
        found = found[:size] if not self.exhausted else found
        if found:
            self.last = found[-1]
        return found


def _position(key: list[Any]) -> Position:
    return (str(key[-2]), str(key[-1]))


def every_row(
    db: Database, scope: str, kind: str, term: str, trashed: bool
) -> Iterator[tuple[str, str, list[Any]]]:
    """(note id, updated_at, [created_at, title_key]) of every note of `scope` in that trash
    state with (kind, term): one range request, for the repository's full path."""
    low = [scope, kind, term, trashed]
    for row in db.view(NOTES_DESIGN, SORTED_TERMS_VIEW, startkey=low, endkey=[*low, _HIGH])["rows"]:
        yield row["id"], _position(row["key"])[0], row["value"]


def _shape(text: str) -> str:
    return _SHAPE.sub("x", text)


_SHAPE = re.compile(r"[0-9a-f]")


def _read_past(stream: _TermRows, position: Position) -> bool:
    """Whether `stream` has read every row up to `position` in listing order, so that a
    position it did not return is not under its term. Positions are compared as Python strings
    only when they have the same shape (fixed-width times, lowercase hex ids): then CouchDB's
    ICU collation and pouchdb-server's code-point order agree with Python's; any other pair is
    left undecided."""
    if stream.exhausted:
        return True
    last = stream.last
    if last is None or _shape(last[0]) != _shape(position[0]) or _shape(last[1]) != _shape(position[1]):
        return False
    return position >= last if stream.descending else position <= last


def sorted_matches(
    db: Database,
    scope: str,
    terms: Sequence[tuple[str, str]],
    descending: bool,
    first: int,
    after: Position | None,
    trashed: bool = False,
    chunk: int = 0,
) -> tuple[list[Position], bool]:
    """The positions of the first `first` notes of `scope` that have every (kind, term), live
    ones or (`trashed`) those in the trash, in listing order from `after`, and whether more
    follow."""
    # one term: its first rows are the page; several: enough candidates for a sparse overlap
    size = chunk or (first + 1 if len(terms) == 1 else max(100, 4 * (first + 1)))
    streams = [_TermRows(db, [scope, kind, term, trashed], descending, after) for kind, term in terms]
    heads = [stream.next_chunk(size) for stream in streams]
    complete = [i for i, stream in enumerate(streams) if stream.exhausted]
    driver = min(complete, key=lambda i: len(heads[i])) if complete else 0
    seen = [set(head) for head in heads]  # a complete term's rows are all of its notes
    others = [i for i in range(len(streams)) if i != driver]
    matches: list[Position] = []
    queue = list(heads[driver])
    while queue:
        # a candidate is decided by the rows already read when every other term either returned
        # it or read past it; the undecided ones before the page is certain are looked up, the
        # rest of the chunk waits
        needed, certain, cut = first + 1 - len(matches), 0, len(queue)
        for number, position in enumerate(queue):
            if all(position in seen[i] for i in others):
                certain += 1
                if certain >= needed:
                    cut = number + 1
                    break
        batch, queue = queue[:cut], queue[cut:]
        lookups = [
            (i, p) for p in batch for i in others if p not in seen[i] and not _read_past(streams[i], p)
        ]
        found: set[tuple[int, Position]] = set()
        if lookups:
            keyed = {(*streams[i].prefix, *position): i for i, position in lookups}
            rows = db.view(NOTES_DESIGN, SORTED_TERMS_VIEW, keys=[list(key) for key in keyed])["rows"]
            found = {(keyed[tuple(row["key"])], _position(row["key"])) for row in rows}
        for position in batch:
            if all(position in seen[i] or (i, position) in found for i in others):
                matches.append(position)
        if len(matches) > first:
            break
        if not queue:
            queue = streams[driver].next_chunk(size)
    return matches[:first], len(matches) > first
