"""The database API: one CouchDB database's documents, bulk writes, Mango, views and changes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from notebook.database.couch.errors import DocumentConflict, DocumentNotFound, PreconditionFailed
from notebook.database.couch.paths import quote_id
from notebook.database.couch.read_cache import DERIVED, params_key
from notebook.database.couch.server_differences import CHANGES_FEED
from notebook.database.couch.verification import WRITE_ID_FIELD, new_write_id

if TYPE_CHECKING:
    from notebook.database.couch.client import CouchDBClient


class Database:
    """One CouchDB database: documents, bulk writes, Mango, views and the changes feed."""

    def __init__(self, client: CouchDBClient, name: str) -> None:
        self.client = client
        self.name = name
        self._path = quote(name, safe="")

    def _request(self, method: str, path: str = "", **kwargs: Any) -> Any:
        target = f"{self._path}/{path}" if path else self._path
        return self.client.request(method, target, **kwargs)

    # databases -----------------------------------------------------------------------------
    def ensure_exists(self) -> bool:
        """Create the database unless it exists; True when it was created now."""
        try:
            self._request("PUT")
        except PreconditionFailed:
            return False
        return True

    def destroy(self) -> None:
        try:
            self._request("DELETE")
        except DocumentNotFound:
            pass

    def info(self) -> dict[str, Any]:
        return self._request("GET")

    # documents -----------------------------------------------------------------------------
    def caches_reads(self) -> bool:
        """Whether reads by id are served from the read cache now (read_cache.py): a caller may
        then read a view's ids alone and its documents by id, instead of `include_docs`."""
        cache = self.client.read_cache
        return cache is not None and cache.covers(self.name)

    def get(self, doc_id: str, **params: Any) -> dict[str, Any]:
        cache = self.client.read_cache
        if cache is None or not cache.covers(self.name):
            return self._request("GET", quote_id(doc_id), params=params)
        key = params_key(params)
        hit = cache.get(self.name, doc_id, key)
        if hit is not None:
            return hit
        since = cache.generation()
        doc = self._request("GET", quote_id(doc_id), params=params)
        cache.store(self.name, doc_id, key, doc, since)
        return doc

    def get_or_none(self, doc_id: str, **params: Any) -> dict[str, Any] | None:
        try:
            return self.get(doc_id, **params)
        except DocumentNotFound:
            return None

    def open_revs(self, doc_id: str, revs: Sequence[str], history: bool = False) -> list[dict[str, Any]]:
        """Bodies of specific leaf revisions (conflict leaves), in one request; missing ones skipped."""
        params: dict[str, Any] = {"open_revs": json.dumps(list(revs)), "revs": history}
        answers = self._request("GET", quote_id(doc_id), params=params)
        return [answer["ok"] for answer in answers if isinstance(answer, dict) and answer.get("ok")]

    def _stamp(self, doc: dict[str, Any], write_id: str | None = None) -> None:
        """Give a document about to be written a fresh write id (see verification.py), or
        `write_id` when the caller names the write itself.

        Always fresh, also when `doc` was read back with an older one: the id names this write.
        Design and local documents, tombstones and system databases are left as they are.
        """
        doc_id = str(doc.get("_id", ""))
        if self.name.startswith("_") or doc_id.startswith(("_design/", "_local/")) or doc.get("_deleted"):
            return
        doc[WRITE_ID_FIELD] = write_id or new_write_id()

    def put(self, doc: dict[str, Any]) -> str:
        """Create or update a document; return its new revision (DocumentConflict if stale)."""
        self._stamp(doc)
        try:
            result = self._request("PUT", quote_id(doc["_id"]), body=doc)
        finally:
            self._evict([doc["_id"]])
        doc["_rev"] = result["rev"]
        return result["rev"]

    def delete(self, doc_id: str, rev: str) -> str:
        try:
            return self._request("DELETE", quote_id(doc_id), params={"rev": rev})["rev"]
        finally:
            self._evict([doc_id])

    def _evict(self, doc_ids: Iterable[str]) -> None:
        """This process wrote these documents (or may have): its next read goes to CouchDB."""
        if self.client.read_cache is not None:
            self.client.read_cache.evict(self.name, doc_ids)

    def bulk_docs(
        self, docs: Sequence[dict[str, Any]], new_edits: bool = True, write_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Write many documents in one round trip; each result has `id` and `rev` or `error`.

        `write_id` names a write that other processes may make identically (conflict
        resolution): the same body on the same parent then gets the same revision id on every
        node, where a fresh id per process would make each node's answer a new conflict."""
        if not docs:
            return []
        body: dict[str, Any] = {"docs": list(docs)}
        if not new_edits:
            body["new_edits"] = False  # replicated revisions: stored exactly as given
        else:
            for doc in docs:
                doc.setdefault("_id", uuid.uuid4().hex)  # an id lets an uncertain write be checked
                self._stamp(doc, write_id)
        try:
            return self._request("POST", "_bulk_docs", body=body)
        finally:
            self._evict(str(doc["_id"]) for doc in docs if "_id" in doc)

    def all_docs(self, keys: Iterable[str], include_docs: bool = True, **params: Any) -> list[dict[str, Any]]:
        """Fetch documents by id in one round trip; missing ones come back without `doc`."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        result = self._request(
            "POST", "_all_docs", params={"include_docs": include_docs, **params}, body={"keys": keys}
        )
        return result["rows"]

    def get_many(self, keys: Iterable[str], **params: Any) -> dict[str, dict[str, Any]]:
        """Documents by id, skipping missing and deleted ones; `params` as for `_all_docs`."""
        cache = self.client.read_cache
        if cache is None or not cache.covers(self.name):
            return self._fetch_many(keys, params)
        key = "all_docs&" + params_key(params)
        found: dict[str, dict[str, Any]] = {}
        missing = []
        for doc_id in dict.fromkeys(keys):
            hit = cache.get(self.name, doc_id, key)
            if hit is None:
                missing.append(doc_id)
            else:
                found[doc_id] = hit
        if missing:
            since = cache.generation()
            fetched = self._fetch_many(missing, params)
            for doc_id, doc in fetched.items():
                cache.store(self.name, doc_id, key, doc, since)
            found.update(fetched)
        return found

    def _fetch_many(self, keys: Iterable[str], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            row["id"]: row["doc"]
            for row in self.all_docs(keys, **params)
            if row.get("doc") and not row.get("value", {}).get("deleted")
        }

    # queries -------------------------------------------------------------------------------
    def find(
        self,
        selector: Mapping[str, Any],
        *,
        limit: int,
        fields: Sequence[str] | None = None,
        sort: Sequence[Mapping[str, str]] | None = None,
        use_index: str | None = None,
    ) -> list[dict[str, Any]]:
        """A Mango query; `limit` is required because pouchdb-server has no default limit."""
        body: dict[str, Any] = {"selector": selector, "limit": limit}
        if fields:
            body["fields"] = list(fields)
        if sort:
            body["sort"] = list(sort)
        if use_index:
            body["use_index"] = use_index
        return self._request("POST", "_find", body=body)["docs"]

    def view(self, design: str, view: str, *, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        """Query a view; `keys` goes in the body so long key lists fit. `timeout` overrides the
        client's for a query that may have to build the index first."""
        path = f"_design/{quote(design, safe='')}/_view/{quote(view, safe='')}"
        keys = params.pop("keys", None)
        if keys is not None:
            return self._request("POST", path, params=params, body={"keys": keys}, timeout=timeout)
        return self._request("GET", path, params=params, timeout=timeout)

    def cached_derived(self, key: str, compute: Callable[[], list[Any]]) -> list[Any]:
        """`compute()` (a list made from views), kept in the read cache under `key` (an id no
        document can have: it starts with `_derived/`) until a document the cache's `derived`
        rule links to it changes; computed every time when the cache is not live."""
        cache = self.client.read_cache
        if cache is None or not cache.covers(self.name):
            return compute()
        hit = cache.get(self.name, key, DERIVED)
        if hit is not None:
            return list(hit["value"])
        since = cache.generation()
        value = compute()
        cache.store(self.name, key, DERIVED, {"value": value}, since)
        return value

    def view_docs(
        self, design: str, view: str, doc_params: dict[str, Any] | None = None, **params: Any
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """A view's rows and the documents they name (by id; missing and deleted ones left out).
        With the read cache live, the rows alone and the documents from the cache (the server
        neither reads nor sends them); otherwise one request with `include_docs`. `doc_params`
        are the document read's parameters (`conflicts`)."""
        doc_params = doc_params or {}
        if self.caches_reads():
            rows = self.view(design, view, **params)["rows"]
            return rows, self.get_many((row["id"] for row in rows if "id" in row), **doc_params)
        rows = self.view(design, view, include_docs=True, **doc_params, **params)["rows"]
        return rows, {row["id"]: row["doc"] for row in rows if row.get("doc")}

    def changes(self, *, node: str | None = None, **params: Any) -> dict[str, Any]:
        """One page of the changes feed, answered at once (server_differences D6).

        A `since` other than "now" or 0 is a position in one node's feed (D5): give that node
        as `node` and the request goes there only, or fails with DatabaseUnavailable.
        """
        params.setdefault("feed", CHANGES_FEED)
        return self._request("GET", "_changes", params=params, node=node)

    # schema --------------------------------------------------------------------------------
    def ensure_index(self, name: str, fields: Sequence[str], ddoc: str | None = None) -> None:
        """Create a Mango index; CouchDB answers `exists` when it is already there."""
        body: dict[str, Any] = {"index": {"fields": list(fields)}, "name": name, "type": "json"}
        body["ddoc"] = ddoc or f"idx-{name}"
        self._request("POST", "_index", body=body)

    def ensure_design(self, design: str, body: dict[str, Any]) -> bool:
        """Install or update a design document when its content differs; True when written."""
        doc_id = f"_design/{design}"
        current = self.get_or_none(doc_id)
        wanted = {"_id": doc_id, **body}
        if current is not None:
            comparable = {k: v for k, v in current.items() if k != "_rev"}
            if comparable == wanted:
                return False
            wanted["_rev"] = current["_rev"]
        try:
            self.put(wanted)
        except DocumentConflict:
            return False  # another process installed it at the same moment
        return True
