"""Quorum acknowledgement across independent nodes (docs/replication.md, "Quorum writes").

A document write is acknowledged once `write_quorum` nodes hold its exact revision: the node
that took it, and the next nodes in failover order, to which the client pushes the same revision
with `POST /{db}/_bulk_docs {"new_edits": false}` (the replication protocol's own way of storing
a given revision with its history). No read is needed: the write's answer names the new revision,
the request holds the body and the parent revision.

Why the *next nodes in failover order*: the node the client fails over to when the active one
dies is the first of them, so it already holds every quorum-acknowledged write (read-your-writes
through failover).

What is exempt, and why:
- system databases (`_replicator`, `_users`): their documents are per node (a replication job
  document pushed to another node would start a job there);
- design and `_local` documents: schema installation rewrites design documents at every start and
  `_local` documents are never replicated;
- databases in the client's `quorum_exempt` (the app exempts the throttle counters: losing a
  few failed-login attempts with a lost disk only loosens a rate limit for one window, and
  every login attempt would pay the second round trip).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from notebook.database.couch.verification import WritePlan


@dataclass
class QuorumPush:
    """The revisions one write produced, as `new_edits=false` documents, and who holds them."""

    db_path: str
    docs: list[dict[str, Any]]
    copies: dict[str, int] = field(default_factory=dict)  # doc id -> nodes holding the revision
    reasons: list[str] = field(default_factory=list)  # why a node did not take them (for logs)
    holders: dict[str, set[str]] = field(default_factory=dict)  # node url -> doc ids it took

    @property
    def ids(self) -> list[str]:
        return [str(doc["_id"]) for doc in self.docs]

    def pending(self, required: int) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if self.copies.get(str(doc["_id"]), 0) < required]

    def short_of(self, required: int) -> list[str]:
        return [doc_id for doc_id in self.ids if self.copies.get(doc_id, 0) < required]

    def record(self, node_url: str, sent: Sequence[Mapping[str, Any]], answer: Any) -> None:
        """Count the node that answered `answer` to `sent` as a holder of every document it did
        not refuse (CouchDB 3 answers `[]` when all were stored, pouchdb-server one entry per
        document; refusals carry `error`)."""
        refused = {
            str(entry.get("id"))
            for entry in (answer if isinstance(answer, list) else [])
            if isinstance(entry, Mapping) and entry.get("error")
        }
        for doc in sent:
            doc_id = str(doc["_id"])
            if doc_id not in refused:
                self.copies[doc_id] = self.copies.get(doc_id, 0) + 1
                self.holders.setdefault(node_url, set()).add(doc_id)

    def held_by(self, node_url: str) -> dict[str, str]:
        """doc id -> revision of the documents `node_url` took."""
        taken = self.holders.get(node_url, set())
        return {str(doc["_id"]): str(doc["_rev"]) for doc in self.docs if doc["_id"] in taken}


def exempt_database(db_path: str) -> bool:
    return db_path.startswith("_")


def replica_docs(plan: WritePlan, payload: Any) -> QuorumPush | None:
    """The revisions `payload` (the answer to `plan`) reports written, ready to push; None when
    nothing written needs a quorum."""
    if exempt_database(plan.db_path):
        return None
    items = {item.doc_id: item for item in plan.items}
    docs = []
    for result in payload if isinstance(payload, list) else [payload]:
        if not isinstance(result, Mapping) or result.get("error") or not result.get("rev"):
            continue
        item = items.get(str(result.get("id")))
        if item is None or item.doc_id.startswith(("_design/", "_local/")):
            continue
        rev = str(result["rev"])
        generation, _, new_hash = rev.partition("-")
        if not generation.isdigit() or not new_hash:
            continue
        doc = dict(item.body) if item.body is not None else {}
        if item.deleted:
            doc["_deleted"] = True
        history = [new_hash]
        if item.base_rev:
            parent_generation, _, parent_hash = item.base_rev.partition("-")
            if parent_generation == str(int(generation) - 1) and parent_hash:
                history.append(parent_hash)  # so the pushed revision extends the parent, not a new branch
        doc.update(_id=item.doc_id, _rev=rev, _revisions={"start": int(generation), "ids": history})
        docs.append(doc)
    if not docs:
        return None
    return QuorumPush(plan.db_path, docs, dict.fromkeys((str(d["_id"]) for d in docs), 1))
