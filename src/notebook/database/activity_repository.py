"""Activity records and the figures counted from them, served from views.

Where a record lives: in the database of the change it records, written in the same
`_bulk_docs` round trip as the change (notes database: notes, notebooks, memberships; users
database: accounts and sign-ins), so no change exists without its record and no record without
its change. Security events record no change; they go to the activity database. The same
design document (`activity`, design_docs.py) indexes all three.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from notebook.core.activity import Activity
from notebook.core.domain import Page
from notebook.core.pagination import decode_cursor, encode_cursor
from notebook.database.couch import Database
from notebook.database.design_docs import ACTIVITY_DESIGN, NOTES_DESIGN, USERS_DESIGN

ACTIVITY_ORDER = "ACTIVITY"  # the cursor kind (core/pagination)
_HIGH: dict[str, Any] = {}


def activity_to_doc(event: Activity) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": event.id,
        "type": "activity",
        "action": event.action,
        "actor_id": event.actor_id,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "at": event.at,
        "summary": event.summary,
    }
    if event.notebook_id:
        doc["notebook_id"] = event.notebook_id
    if event.notebook_owner_id:
        doc["notebook_owner_id"] = event.notebook_owner_id
    if event.count != 1:
        doc["count"] = event.count
    if event.security:
        doc["security"] = True
    return doc


def activity_from_doc(doc: dict[str, Any]) -> Activity:
    return Activity(
        id=doc["_id"],
        action=doc["action"],
        actor_id=doc.get("actor_id"),
        target_type=doc["target_type"],
        target_id=doc["target_id"],
        at=doc["at"],
        notebook_id=doc.get("notebook_id"),
        notebook_owner_id=doc.get("notebook_owner_id"),
        summary=doc.get("summary"),
        count=int(doc.get("count") or 1),
        security=bool(doc.get("security")),
    )


def with_events(docs: Sequence[dict[str, Any]], events: Iterable[Activity]) -> list[dict[str, Any]]:
    """The documents of one write followed by its activity records: one `_bulk_docs` body."""
    return [*docs, *(activity_to_doc(event) for event in events)]


@dataclass(frozen=True)
class FeedScope:
    """One range of the `feed` view: a database and a key prefix ('u:<user>', 'n:<notebook>',
    'o:<owner>' or 's:' for security events)."""

    db: Database
    prefix: str


class ActivityRepository:
    """Reads activity from the three databases that hold it; writes security events."""

    def __init__(self, notes: Database, users: Database, security: Database) -> None:
        self.notes = notes
        self.users = users
        self.security = security

    # the feed --------------------------------------------------------------------------------
    def user_feed(
        self, user_id: str, shared_notebook_ids: Sequence[str], first: int, after: str | None
    ) -> Page:
        """What a user sees: their own actions, everything in notebooks they own, and
        everything in the notebooks shared with them."""
        scopes = [
            FeedScope(self.notes, f"u:{user_id}"),
            FeedScope(self.notes, f"o:{user_id}"),
            FeedScope(self.users, f"u:{user_id}"),
        ]
        scopes += [FeedScope(self.notes, f"n:{nb}") for nb in dict.fromkeys(shared_notebook_ids)]
        return self.feed(scopes, first, after)

    def notebook_feed(self, notebook_id: str, first: int, after: str | None) -> Page:
        return self.feed([FeedScope(self.notes, f"n:{notebook_id}")], first, after)

    def security_feed(self, first: int, after: str | None) -> Page:
        return self.feed([FeedScope(self.security, "s:")], first, after)

    def feed(self, scopes: Sequence[FeedScope], first: int, after: str | None = None) -> Page:
        """Newest first across every scope: one ranged request per scope, merged by (time, id)."""
        cursor = decode_cursor(after, ACTIVITY_ORDER) if after else None
        found: dict[str, tuple[tuple[str, str], FeedScope]] = {}
        for scope in scopes:
            start: list[Any] = [scope.prefix, *cursor] if cursor else [scope.prefix, _HIGH]
            rows = scope.db.view(
                ACTIVITY_DESIGN,
                "feed",
                descending=True,
                startkey=start,
                endkey=[scope.prefix],
                limit=first + 2,
            )["rows"]
            for row in rows:
                key = (row["key"][1], row["key"][2])
                if cursor is None or key < cursor:
                    found.setdefault(row["id"], (key, scope))
        ordered = sorted(found.values(), key=lambda item: item[0], reverse=True)
        page = ordered[:first]
        docs: dict[str, dict[str, Any]] = {}
        for db in {id(scope.db): scope.db for _, scope in page}.values():
            wanted = [key[1] for key, scope in page if scope.db is db]
            docs.update(db.get_many(wanted))
        items = [activity_from_doc(docs[key[1]]) for key, _ in page if key[1] in docs]
        cursors = [encode_cursor(ACTIVITY_ORDER, key[0], key[1]) for key, _ in page if key[1] in docs]
        return Page(items, cursors, has_next_page=len(ordered) > first)

    def record_security(self, event: Activity) -> None:
        """Store a security event; one with a deterministic id that exists already is kept."""
        self.security.bulk_docs([activity_to_doc(event)])

    # figures ---------------------------------------------------------------------------------
    def actor_counts(self, user_id: str, since_bucket: str) -> dict[tuple[str, str], int]:
        """(15-minute bucket, action) -> how often the user did it, from `since_bucket` on: one
        request, rows bounded by buckets times actions whatever the number of notes."""
        rows = self.notes.view(
            ACTIVITY_DESIGN,
            "counts",
            group=True,
            startkey=["a", user_id, since_bucket],
            endkey=["a", user_id, _HIGH],
        )["rows"]
        return {(row["key"][2], row["key"][3]): int(row["value"]) for row in rows}

    def writes_per_day(self, since_day: str) -> dict[str, int]:
        rows = self.notes.view(
            ACTIVITY_DESIGN, "counts", group=True, startkey=["w", since_day], endkey=["w", _HIGH]
        )["rows"]
        return {row["key"][1]: int(row["value"]) for row in rows}

    def active_users(self, since_day: str) -> int:
        """Accounts that wrote or signed in on a day from `since_day` on."""
        actors: set[str] = set()
        for db in (self.notes, self.users):
            rows = db.view(
                ACTIVITY_DESIGN, "counts", group=True, startkey=["d", since_day], endkey=["d", _HIGH]
            )["rows"]
            actors.update(row["key"][2] for row in rows)
        return len(actors)

    def action_total(self, action: str, since_day: str) -> int:
        rows = self.notes.view(
            ACTIVITY_DESIGN, "counts", startkey=["x", action, since_day], endkey=["x", action, _HIGH]
        )["rows"]
        return int(rows[0]["value"]) if rows else 0

    def note_stats(self, owner: str) -> tuple[int, int, int]:
        """(live notes, trashed notes, words in live notes) of an owner, or of everyone ('*')."""
        rows = self.notes.view(NOTES_DESIGN, "note_stats", group=True, keys=[[owner, False], [owner, True]])[
            "rows"
        ]
        stats = {bool(row["key"][1]): row["value"] for row in rows if row.get("value")}
        live, trashed = stats.get(False) or {}, stats.get(True) or {}
        return int(live.get("count", 0)), int(trashed.get("count", 0)), int(live.get("sum", 0))

    def notebook_count(self, owner: str | None) -> int:
        params: dict[str, Any] = {} if owner is None else {"key": owner}
        rows = self.notes.view(NOTES_DESIGN, "notebook_counts", **params)["rows"]
        return int(rows[0]["value"]) if rows else 0

    def user_count(self) -> int:
        rows = self.users.view(USERS_DESIGN, "user_counts")["rows"]
        return int(rows[0]["value"]) if rows else 0

    def forget_user(self, user_id: str, *, batch: int = 500) -> int:
        """Delete the records of a deleted account: its account events, everything in the
        notebooks it owned, and its actions outside other people's notebooks. Its actions in
        other people's notebooks stay, as the notes it wrote there do: they are those notebooks'
        history. Returns how many were deleted."""
        deleted = 0
        for db, prefix in (
            (self.users, f"u:{user_id}"),
            (self.notes, f"o:{user_id}"),
            (self.notes, f"u:{user_id}"),
        ):
            start: list[Any] = [prefix]
            while True:
                rows = db.view(
                    ACTIVITY_DESIGN,
                    "feed",
                    startkey=start,
                    endkey=[prefix, _HIGH],
                    include_docs=True,
                    limit=batch,
                )["rows"]
                rows = [row for row in rows if row["key"] != start]
                if not rows:
                    break
                start = rows[-1]["key"]
                doomed = [
                    {"_id": row["id"], "_rev": row["doc"]["_rev"], "_deleted": True}
                    for row in rows
                    if row.get("doc") and row["doc"].get("notebook_owner_id") in (None, user_id)
                ]
                deleted += sum(1 for r in db.bulk_docs(doomed) if not r.get("error"))
        return deleted

    # retention -------------------------------------------------------------------------------
    def prune_before(self, cutoff: str, *, batch: int = 500) -> int:
        """Delete every record older than `cutoff` in every database; returns how many."""
        deleted = 0
        for db in (self.notes, self.users, self.security):
            while True:
                rows = db.view(ACTIVITY_DESIGN, "by_time", endkey=cutoff, inclusive_end=False, limit=batch)[
                    "rows"
                ]
                if not rows:
                    break
                tombstones = [
                    {"_id": row["id"], "_rev": row["value"]["rev"], "_deleted": True}
                    for row in db.all_docs((row["id"] for row in rows), include_docs=False)
                    if "value" in row and not row["value"].get("deleted")
                ]
                written = [r for r in db.bulk_docs(tombstones) if not r.get("error")]
                deleted += len(written)
                if not written:
                    break  # nothing could be deleted: stop rather than loop on the same rows
        return deleted
