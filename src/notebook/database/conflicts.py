"""Finding and reading CouchDB conflict leaves, and settling documents that need no merge.

How conflicts are found, on CouchDB 3 and pouchdb-server alike:
- the changes feed with `style=all_docs` lists every leaf revision of a changed document, so a
  change with more than one leaf is a candidate;
- the `conflicted` view (map functions see `_conflicts`) lists every conflicted document no
  matter which node's feed position we hold, so nothing is missed after a failover.
Feed positions are kept per node and a request carrying one goes to that node only: a position
from another node makes CouchDB 3 replay its feed from 0 (server_differences D5).
Every write here is idempotent: a second resolver doing the same work gets a harmless 409.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from notebook.core.domain import email_claim_id
from notebook.database.couch import BadRequest, Database, resolution_write_id
from notebook.database.couch.server_differences import CHANGES_START
from notebook.database.design_docs import NOTES_DESIGN, USERS_DESIGN
from notebook.database.repository import claimants

log = logging.getLogger(__name__)


@dataclass
class Leaf:
    """One live leaf of a document: its body and its revision history, newest first."""

    doc: dict[str, Any]
    history: list[str]

    @property
    def rev(self) -> str:
        return self.doc["_rev"]


def rev_order(rev: str) -> tuple[int, str]:
    generation, _, rev_hash = rev.partition("-")
    return (int(generation or 0), rev_hash)


def history_of(doc: dict[str, Any]) -> list[str]:
    revisions = doc.get("_revisions")
    if not revisions:
        return [doc["_rev"]]
    start = revisions["start"]
    return [f"{start - i}-{rev_id}" for i, rev_id in enumerate(revisions["ids"])]


class ConflictStore:
    """Conflict bookkeeping of one database."""

    def __init__(self, db: Database, design: str) -> None:
        self.db = db
        self.design = design
        self._positions: dict[str, Any] = {}  # node URL -> position in that node's changes feed

    @property
    def positions(self) -> dict[str, Any]:
        """The changes-feed position held for each node (by URL)."""
        return dict(self._positions)

    def conflicted_ids(self, limit: int = 200) -> list[str]:
        rows = self.db.view(self.design, "conflicted", limit=limit)["rows"]
        return list(dict.fromkeys(row["id"] for row in rows))

    def changed_with_leaves(self, limit: int = 500) -> list[str]:
        """The ids with more than one leaf among the changes since the last call, read from the
        node the client uses now and with that node's own position; a node read for the first
        time (or that no longer knows its position) starts at "now"."""
        node = self.db.client.active_url
        since = self._positions.get(node)
        if since is None:
            result = self.db.changes(since=CHANGES_START, limit=1, node=node)
            self._positions[node] = result.get("last_seq", CHANGES_START)
            return []
        try:
            result = self.db.changes(since=since, style="all_docs", limit=limit, node=node)
        except BadRequest:
            self._positions.pop(node, None)  # not a position of this node's feed (any more)
            return []
        self._positions[node] = result.get("last_seq", since)
        return [row["id"] for row in result["results"] if len(row.get("changes", [])) > 1]

    def leaves(self, doc_id: str) -> list[Leaf]:
        """The winning leaf first, then the losing live leaves; [] if the document is gone."""
        winner = self.db.get_or_none(doc_id, conflicts=True, revs=True)
        if winner is None:
            return []
        leaves = [Leaf(winner, history_of(winner))]
        losers = winner.get("_conflicts", [])
        if losers:
            for doc in self.db.open_revs(doc_id, losers, history=True):
                if not doc.get("_deleted"):
                    leaves.append(Leaf(doc, history_of(doc)))
        for leaf in leaves:
            leaf.doc.pop("_conflicts", None)
        return leaves

    def settle_by_rule(self, doc_id: str) -> bool:
        """Settle a non-note document: refresh tokens keep every used/revoked flag; an e-mail
        claim goes to the earliest claim, and the accounts it displaces are flagged; other
        documents keep the last written leaf (by clock stamp, see `_last_written`)."""
        leaves = self.leaves(doc_id)
        if len(leaves) < 2:
            return False
        winner, losers = leaves[0], leaves[1:]
        flagged: list[dict[str, Any]] = []
        if winner.doc.get("type") == "email_claim":
            body, flagged = self._settle_claim(doc_id, leaves)
        else:
            chosen = max(leaves, key=_last_written)
            body = {k: v for k, v in chosen.doc.items() if k != "_revisions"}
        if body.get("type") == "refresh_token":
            body["used"] = any(leaf.doc.get("used") for leaf in leaves)
            body["revoked"] = any(leaf.doc.get("revoked") for leaf in leaves)
        if body.get("type") in ("user", "deleted_user"):
            _keep_ended_sessions(body, [leaf.doc for leaf in leaves])
        body["_rev"] = winner.rev
        docs = [{"_id": doc_id, "_rev": leaf.rev, "_deleted": True} for leaf in losers]
        same_as_winner = {k: v for k, v in winner.doc.items() if k != "_revisions"} == body
        if not same_as_winner:
            docs.insert(0, body)
        write_id = resolution_write_id(doc_id, [leaf.rev for leaf in leaves])
        results = self.db.bulk_docs(docs + flagged, write_id=write_id)
        return not any(r.get("error") for r in results)

    def _settle_claim(self, doc_id: str, leaves: list[Leaf]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The settled claim of an address registered on both sides of a partition: the
        earliest claim's, naming the accounts it displaced (so that they can still sign in),
        and those accounts' documents flagged `email_conflict` where they are here already
        (sign-in flags the others)."""
        ids = claimants([leaf.doc for leaf in leaves])
        holder = next(leaf for leaf in leaves if leaf.doc.get("user_id") == ids[0])
        body = {k: v for k, v in holder.doc.items() if k != "_revisions"}
        displaced = ids[1:]
        body["displaced"] = displaced
        flagged = []
        for user in self.db.get_many(displaced).values():
            if user.get("type") != "user" or user.get("email_conflict"):
                continue
            if email_claim_id(str(user.get("email", ""))) == doc_id:
                flagged.append({**user, "email_conflict": True})
        # the account ids only: the address is personal data, and the claim id names it
        log.warning(
            "an e-mail address was registered on two nodes during a partition; the earliest "
            "account keeps it, the others must confirm a new address",
            extra={"event": "email_conflict", "user_id": ids[0], "displaced": displaced},
        )
        return body, flagged


def _last_written(leaf: Leaf) -> tuple[str, str, tuple[int, str]]:
    """Latest first by clock stamp (core/hlc.py; leaves written before stamps count as older),
    then `updated_at`, then CouchDB's own order."""
    return (str(leaf.doc.get("hlc") or ""), str(leaf.doc.get("updated_at") or ""), rev_order(leaf.rev))


def refresh_family_to_revoke(leaves: list[Leaf]) -> str | None:
    """The family to revoke when a refresh token's leaves show a use that raced another change.

    Tokens are only ever changed by being used or revoked, so two live leaves of which one is
    `used` mean the token was used on two nodes (a replay before replication arrived) or used
    on one while its session was revoked on another: either way a successor escaped, so the
    whole family goes. Two `revoked` leaves need nothing more."""
    docs = [leaf.doc for leaf in leaves if leaf.doc.get("type") == "refresh_token"]
    if len(docs) < 2 or not any(doc.get("used") for doc in docs):
        return None
    return str(docs[0]["family"])


def _keep_ended_sessions(body: dict[str, Any], leaves: list[dict[str, Any]]) -> None:
    """A session ended on any node stays ended, and a deleted account stays deleted, whichever
    leaf of a user document wins."""
    deleted = [doc for doc in leaves if doc.get("type") == "deleted_user"]
    if deleted:
        body.clear()
        body.update({k: v for k, v in deleted[0].items() if k not in ("_revisions", "_rev")})
    body["session_epoch"] = max(int(doc.get("session_epoch") or 0) for doc in leaves)
    if not deleted:
        ended: dict[str, float] = {}
        for doc in leaves:
            ended.update(doc.get("ended_sessions") or {})
        body["ended_sessions"] = ended


def conflict_stores(notes: Database, users: Database) -> tuple[ConflictStore, ConflictStore]:
    return ConflictStore(notes, NOTES_DESIGN), ConflictStore(users, USERS_DESIGN)
