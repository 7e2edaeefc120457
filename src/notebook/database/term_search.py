"""Filtered listings whose cost does not grow with the number of notes.

The `note_terms_sorted` view has one row per live note and term (word hash or tag key), under its
owner's scope, keyed `[scope, kind, term, updated_at, note id]`: a term's notes come in listing
order. A page is
then found by walking the terms from the listing's position instead of reading every match:

- each term's first rows are read (one range request per term, `CHUNK` rows at most);
- a term that ran out is complete: it drives, and the others are checked against it;
- otherwise the first term drives, chunk by chunk; a candidate found in the rows already read
  of every other term is a match at once, and only the undecided candidates before the page is
  certain are checked, with one request for the exact keys they would have in the other terms
  (pouchdb-server answers a `keys` request with one lookup per key);
- the walk stops as soon as the page plus one note is found.

So a page costs a few requests of at most `CHUNK` rows whatever the number of notes: a single
term is one range read, several terms add one exact-key request per chunk. Only a page of terms
that rarely occur together (many candidates, few matches) reads further. The whole set of matches
(`totalCount`, other orders, a notebook's or shared notes, the trash) is still read by the
repository's full path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from notebook.database.couch import Database
from notebook.database.design_docs import NOTES_DESIGN

VIEW = "note_terms_sorted"
_HIGH: dict[str, Any] = {}

Position = tuple[str, str]  # (updated_at, note id): a row's place in the listing order


class _TermRows:
    """One term's rows from a position on, read a chunk at a time."""

    def __init__(self, db: Database, prefix: list[str], descending: bool, after: Position | None) -> None:
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
            NOTES_DESIGN, VIEW, startkey=start, endkey=low if self.descending else high,
            descending=self.descending, limit=limit,
        )["rows"]  # fmt: skip
        self.requests += 1
        self.exhausted = len(rows) < limit
        found = [(str(row["key"][3]), str(row["key"][4])) for row in rows]
        if self.last and found and found[0] == self.last:
            found = found[1:]
        found = found[:size] if not self.exhausted else found
        if found:
            self.last = found[-1]
        return found


def sorted_matches(
    db: Database,
    scope: str,
    terms: Sequence[tuple[str, str]],
    descending: bool,
    first: int,
    after: Position | None,
    chunk: int = 0,
) -> tuple[list[Position], bool]:
    """The positions of the first `first` live notes of `scope` that have every (kind, term),
    in listing order from `after`, and whether more follow."""
    size = chunk or max(100, 4 * (first + 1))
    streams = [_TermRows(db, [scope, kind, term], descending, after) for kind, term in terms]
    heads = [stream.next_chunk(size) for stream in streams]
    complete = [i for i, stream in enumerate(streams) if stream.exhausted]
    driver = min(complete, key=lambda i: len(heads[i])) if complete else 0
    seen = [set(head) for head in heads]  # a complete term's rows are all of its notes
    others = [i for i in range(len(streams)) if i != driver]
    matches: list[Position] = []
    queue = list(heads[driver])
    while queue:
        # candidates up to the one that makes the page certain from the rows already read;
        # only the undecided among them are looked up, the rest of the chunk waits
        needed, certain, cut = first + 1 - len(matches), 0, len(queue)
        for number, position in enumerate(queue):
            if all(position in seen[i] for i in others):
                certain += 1
                if certain >= needed:
                    cut = number + 1
                    break
        batch, queue = queue[:cut], queue[cut:]
        lookups = [(i, p) for p in batch for i in others if p not in seen[i] and i not in complete]
        found: set[tuple[int, Position]] = set()
        if lookups:
            keyed = {(*streams[i].prefix, *position): i for i, position in lookups}
            rows = db.view(NOTES_DESIGN, VIEW, keys=[list(key) for key in keyed])["rows"]
            found = {(keyed[tuple(row["key"])], (str(row["key"][3]), str(row["key"][4]))) for row in rows}
        for position in batch:
            if all(position in seen[i] or (i, position) in found for i in others):
                matches.append(position)
        if len(matches) > first:
            break
        if not queue:
            queue = streams[driver].next_chunk(size)
    return matches[:first], len(matches) > first
