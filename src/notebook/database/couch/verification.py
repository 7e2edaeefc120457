"""Uncertain document writes: what a request is for the retry rules, and how a write that may
have landed is recognised on a node before anything is sent again.

Why reading back is safe: every document the repositories write carries a fresh `write_id`
(Database.put/bulk_docs set it), so a revision found on a node with our write_id *is* our write,
already applied or already replicated there: it is not sent again. A document without a write id
(system databases such as `_replicator`, where CouchDB 3 adds `owner`) is recognised by the fields
we wrote, never by comparing whole documents (server_differences D11). When the write is not
found, it is sent to that node. The only way this duplicates anything is when the first node
applied the write but had not replicated it before it failed: then the same edit exists twice, on
the same parent revision, with the same body, which merges silently on CouchDB 3 and becomes a
conflict of identical versions on pouchdb-server (server_differences D16), collapsed by the
conflict resolver. Nothing is lost either way, and nothing a user did not send is written.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from notebook.database.couch.paths import segments
from notebook.database.couch.server_differences import bulk_answers_by_id, written_fields_match

#: Field holding the token of the write that produced a document revision.
#: CouchDB reserves names starting with "_", hence no underscore.
WRITE_ID_FIELD = "write_id"


def new_write_id() -> str:
    return uuid.uuid4().hex


def resolution_write_id(doc_id: str, replaced_revs: Iterable[str]) -> str:
    """The write id of settling `doc_id`'s leaves `replaced_revs`: the same on every node.

    Resolvers on several nodes settle the same conflict at about the same time. Identical
    bodies on identical parents get identical revision ids, so their answers replicate into one
    revision; a fresh write id per resolver made every answer a new conflict, and the nodes
    went on answering each other's answers (50 generations in one partition test)."""
    key = "\n".join([doc_id, *sorted(replaced_revs)])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class RequestKind(Enum):
    """What a request is, for the retry rules."""

    READ = "read"  # no effect: retried anywhere
    IDEMPOTENT = "idempotent"  # same effect when repeated (create database, index, ...): retried
    DOC_WRITE = "doc_write"  # document writes: verified by reading back before any repeat
    UNSAFE = "unsafe"  # anything else: an unknown outcome is reported, never repeated


_READ_POSTS = {"_all_docs", "_find", "_explain", "_revs_diff", "_bulk_get", "_changes", "_design_docs",
               "_local_docs", "_missing_revs", "_all_dbs", "_dbs_info"}  # fmt: skip
_IDEMPOTENT_ENDPOINTS = {"_index", "_compact", "_view_cleanup", "_ensure_full_commit", "_security",
                         "_revs_limit", "_purge"}  # fmt: skip
_SYSTEM_DATABASES = {"_replicator", "_users", "_global_changes"}


@dataclass
class DocWrite:
    """One document of a write: how to recognise it on a node once it has landed."""

    doc_id: str
    body: dict[str, Any] | None  # None for DELETE
    base_rev: str | None
    deleted: bool

    def result_if_landed(self, row: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The write result if `row` (from `_all_docs?include_docs=true`) shows this write."""
        if not row or "value" not in row:
            return None
        rev = row["value"].get("rev")
        if not rev or rev == self.base_rev:
            return None  # absent, or still the revision this write started from
        if row["value"].get("deleted"):
            landed = self.deleted
        elif self.deleted or self.body is None:
            landed = False
        else:
            doc = row.get("doc") or {}
            write_id = self.body.get(WRITE_ID_FIELD)
            if write_id is not None:
                landed = doc.get(WRITE_ID_FIELD) == write_id
            else:
                landed = written_fields_match(self.body, doc)
        return {"ok": True, "id": self.doc_id, "rev": rev} if landed else None


@dataclass
class WritePlan:
    """A document write whose outcome may be unknown, and how to check and finish it."""

    db_path: str
    method: str
    path: str
    params: dict[str, str] | None
    body: Any
    items: list[DocWrite]
    bulk: bool
    landed: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def pending(self) -> list[int]:
        return [i for i in range(len(self.items)) if i not in self.landed]

    def pending_keys(self) -> list[str]:
        return [self.items[i].doc_id for i in self.pending]

    def pending_request(self) -> tuple[str, str, dict[str, str] | None, Any]:
        """The request that writes what has not landed yet."""
        if not self.bulk:
            return self.method, self.path, self.params, self.body
        docs = self.body["docs"]
        body = {**self.body, "docs": [docs[i] for i in self.pending]}
        return self.method, self.path, self.params, body

    def record_found(self, rows: Mapping[Any, Mapping[str, Any]]) -> int:
        """Mark the pending documents that `rows` (by id, from `_all_docs`) show as landed;
        return how many were found."""
        found = 0
        for i in self.pending:
            result = self.items[i].result_if_landed(rows.get(self.items[i].doc_id))
            if result is not None:
                self.landed[i] = result
                found += 1
        return found

    def finish(self, payload: Any) -> Any:
        """Merge the answer to `pending_request()` with what verification found already landed."""
        if not self.landed:
            return payload
        if not self.bulk:
            return payload if payload is not None else self.landed[0]
        answers = bulk_answers_by_id(payload)
        return [
            self.landed[i]
            if i in self.landed
            else answers.get(item.doc_id, {"id": item.doc_id, "error": "missing"})
            for i, item in enumerate(self.items)
        ]

    def all_landed(self) -> Any:
        return self.finish(None) if self.bulk else self.landed[0]


def classify(
    method: str, path: str, params: dict[str, str] | None, body: Any
) -> tuple[RequestKind, WritePlan | None]:
    """How a request may be retried; for document writes, the plan to verify them."""
    if method in ("GET", "HEAD"):
        return RequestKind.READ, None
    parts = segments(path)
    if not parts or (parts[0].startswith("_") and parts[0] not in _SYSTEM_DATABASES):
        read = method == "POST" and bool(parts) and parts[0] in _READ_POSTS
        return (RequestKind.READ if read else RequestKind.UNSAFE), None
    db_path = path.split("?")[0].strip("/").split("/")[0]
    rest = parts[1:]
    if not rest:
        return (RequestKind.IDEMPOTENT if method in ("PUT", "DELETE") else RequestKind.UNSAFE), None
    if rest[0] in ("_design", "_local") and len(rest) >= 2:
        doc_id, tail = f"{rest[0]}/{rest[1]}", rest[2:]
        if tail:
            query = rest[0] == "_design" and tail[0] in ("_view", "_list", "_show") and method == "POST"
            return (RequestKind.READ if query else RequestKind.UNSAFE), None
        if rest[0] == "_local":  # local documents are not replicated: sending again is harmless
            return RequestKind.IDEMPOTENT, None
    elif rest[0].startswith("_"):
        if method == "POST" and rest[0] in _READ_POSTS:
            return RequestKind.READ, None
        if rest[0] in _IDEMPOTENT_ENDPOINTS:
            return RequestKind.IDEMPOTENT, None
        if rest[0] == "_bulk_docs" and method == "POST" and len(rest) == 1:
            return _bulk_plan(db_path, method, path, params, body)
        return RequestKind.UNSAFE, None
    else:
        doc_id, tail = rest[0], rest[1:]
        if tail:
            return RequestKind.UNSAFE, None  # attachments
    params = params or {}
    if method == "PUT" and isinstance(body, dict):
        item = DocWrite(doc_id, body, body.get("_rev") or params.get("rev"), bool(body.get("_deleted")))
    elif method == "DELETE" and params.get("rev"):
        item = DocWrite(doc_id, None, params["rev"], True)
    else:
        return RequestKind.UNSAFE, None
    return RequestKind.DOC_WRITE, WritePlan(db_path, method, path, params or None, body, [item], bulk=False)


def _bulk_plan(
    db_path: str, method: str, path: str, params: dict[str, str] | None, body: Any
) -> tuple[RequestKind, WritePlan | None]:
    if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
        return RequestKind.UNSAFE, None
    if body.get("new_edits") is False:
        return RequestKind.IDEMPOTENT, None  # explicit revisions: writing them twice changes nothing
    items = []
    for doc in body["docs"]:
        if not isinstance(doc, dict) or not isinstance(doc.get("_id"), str):
            return RequestKind.UNSAFE, None
        items.append(DocWrite(doc["_id"], doc, doc.get("_rev"), bool(doc.get("_deleted"))))
    if len({item.doc_id for item in items}) != len(items):
        return RequestKind.UNSAFE, None
    return RequestKind.DOC_WRITE, WritePlan(db_path, method, path, params, body, items, bulk=True)
