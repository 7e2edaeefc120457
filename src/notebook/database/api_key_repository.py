"""API keys in the users database: one document per key, holding the SHA-256 of its secret."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from notebook.core.activity import Activity
from notebook.core.domain import ApiKey
from notebook.database.couch import Database, DocumentConflict
from notebook.database.design_docs import USERS_DESIGN
from notebook.database.repository import result_for, write_with_events

_HIGH: dict[str, Any] = {}
_FIELDS = ("user_id", "name", "scope", "created_at", "secret_hash", "session_epoch", "expires_at",
           "last_used_at", "revoked_at")  # fmt: skip


def _to_doc(key: ApiKey) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": key.id, "type": "api_key", **{f: getattr(key, f) for f in _FIELDS}}
    if key.version:
        doc["_rev"] = key.version
    return doc


def _from_doc(doc: dict[str, Any]) -> ApiKey:
    return ApiKey(id=doc["_id"], version=doc.get("_rev"), **{f: doc.get(f) for f in _FIELDS})  # type: ignore[arg-type]


class ApiKeyRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, key: ApiKey, *, events: Sequence[Activity] = ()) -> None:
        result = result_for(write_with_events(self.db, [_to_doc(key)], events), key.id)
        if result.get("error"):
            raise DocumentConflict(409, str(result["error"]), f"{key.id} was not written")
        key.version = result["rev"]

    def get(self, key_id: str) -> ApiKey | None:
        doc = self.db.get_or_none(key_id)
        return _from_doc(doc) if doc and doc.get("type") == "api_key" else None

    def for_user(self, user_id: str) -> list[ApiKey]:
        rows = self.db.view(
            USERS_DESIGN, "api_keys_by_user", include_docs=True, startkey=[user_id], endkey=[user_id, _HIGH]
        )["rows"]
        return [_from_doc(row["doc"]) for row in rows if row.get("doc")]

    def update(self, key: ApiKey, *, events: Sequence[Activity] = ()) -> bool:
        """Write the key's changes on its version; False when it changed meanwhile."""
        result = result_for(write_with_events(self.db, [_to_doc(key)], events), key.id)
        if result.get("error"):
            return False
        key.version = result["rev"]
        return True

    def delete_for_user(self, user_id: str) -> int:
        keys = self.for_user(user_id)
        if keys:
            self.db.bulk_docs([{"_id": k.id, "_rev": k.version, "_deleted": True} for k in keys])
        return len(keys)
