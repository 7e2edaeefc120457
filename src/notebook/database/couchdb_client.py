"""The one CouchDB HTTP client of a process: pooled keep-alive connections, timeouts, typed errors.

Everything here speaks the CouchDB 3 HTTP API only, so the same code runs against Apache CouchDB
in production and pouchdb-server in development (see docs/architecture.md, "Compatibility").
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from notebook.core.errors import ServiceUnavailable

log = logging.getLogger(__name__)

# view parameters that CouchDB expects as JSON values
_JSON_PARAMS = {"key", "keys", "startkey", "endkey", "start_key", "end_key"}


class CouchError(Exception):
    """An error answer from CouchDB."""

    def __init__(self, status: int, error: str = "", reason: str = "") -> None:
        super().__init__(f"{status} {error}: {reason}".strip())
        self.status = status
        self.error = error
        self.reason = reason


class DocumentNotFound(CouchError):
    pass


class DocumentConflict(CouchError):
    pass


class PreconditionFailed(CouchError):
    pass


class BadRequest(CouchError):
    pass


class Unauthorized(CouchError):
    pass


class DatabaseUnavailable(CouchError, ServiceUnavailable):
    """No node could answer: connection refused, timeout or a server error."""

    def __init__(self, reason: str) -> None:
        CouchError.__init__(self, 503, "unavailable", reason)
        ServiceUnavailable.__init__(self, "the database is unavailable")


_ERRORS_BY_STATUS: dict[int, type[CouchError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: DocumentNotFound,
    409: DocumentConflict,
    412: PreconditionFailed,
}


def quote_id(doc_id: str) -> str:
    """Quote a document id for a URL path; design documents keep their slash."""
    if doc_id.startswith("_design/"):
        return "_design/" + quote(doc_id[len("_design/") :], safe="")
    return quote(doc_id, safe="")


def strip_credentials(url: str) -> str:
    """A node URL safe to show: no user, no password."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None))


class RequestCounter:
    """Counts requests sent to CouchDB; tests use it to check the cost of a GraphQL query."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def add(self) -> None:
        with self._lock:
            self.total += 1


class CouchDBClient:
    """HTTP access to one CouchDB node; `database(name)` gives a handle on one database."""

    def __init__(
        self,
        url: str,
        user: str = "",
        password: str = "",
        timeout: float = 10.0,
        max_connections: int = 50,
    ) -> None:
        self.url = strip_credentials(url).rstrip("/") + "/"
        auth = httpx.BasicAuth(user, password) if user else None
        self._http = httpx.Client(
            base_url=self.url,
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Accept": "application/json"},
        )
        self.requests = RequestCounter()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON body; raise a typed CouchError."""
        self.requests.add()
        kwargs: dict[str, Any] = {"params": _encode_params(params)}
        if body is not None:
            kwargs["content"] = json.dumps(body, separators=(",", ":"))
            kwargs["headers"] = {"Content-Type": "application/json"}
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DatabaseUnavailable(f"{type(exc).__name__} from {self.url}") from None
        return _decode(response)

    def server_info(self) -> dict[str, Any]:
        return self.request("GET", "")

    def ping(self) -> bool:
        """True when the node answers its welcome document."""
        try:
            self.request("GET", "", timeout=2.0)
        except CouchError:
            return False
        return True

    def database(self, name: str) -> Database:
        return Database(self, name)


def _encode_params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    encoded: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in _JSON_PARAMS:
            encoded[name] = json.dumps(value)
        elif isinstance(value, bool):
            encoded[name] = "true" if value else "false"
        else:
            encoded[name] = str(value)
    return encoded


def _decode(response: httpx.Response) -> Any:
    try:
        payload = response.json() if response.content else {}
    except ValueError:
        payload = {"error": "bad_response", "reason": response.text[:200]}
    if response.status_code < 400:
        return payload
    error = payload.get("error", "") if isinstance(payload, dict) else ""
    reason = payload.get("reason", "") if isinstance(payload, dict) else ""
    if response.status_code >= 500:
        raise DatabaseUnavailable(f"{response.status_code} {error}")
    cls = _ERRORS_BY_STATUS.get(response.status_code, CouchError)
    raise cls(response.status_code, str(error), str(reason))


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
    def get(self, doc_id: str, **params: Any) -> dict[str, Any]:
        return self._request("GET", quote_id(doc_id), params=params)

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

    def put(self, doc: dict[str, Any]) -> str:
        """Create or update a document; return its new revision (DocumentConflict if stale)."""
        result = self._request("PUT", quote_id(doc["_id"]), body=doc)
        doc["_rev"] = result["rev"]
        return result["rev"]

    def delete(self, doc_id: str, rev: str) -> str:
        return self._request("DELETE", quote_id(doc_id), params={"rev": rev})["rev"]

    def bulk_docs(self, docs: Sequence[dict[str, Any]], new_edits: bool = True) -> list[dict[str, Any]]:
        """Write many documents in one round trip; each result has `id` and `rev` or `error`."""
        if not docs:
            return []
        body: dict[str, Any] = {"docs": list(docs)}
        if not new_edits:
            body["new_edits"] = False
        return self._request("POST", "_bulk_docs", body=body)

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

    def view(self, design: str, view: str, **params: Any) -> dict[str, Any]:
        """Query a view; `keys` goes in the body so long key lists fit."""
        path = f"_design/{quote(design, safe='')}/_view/{quote(view, safe='')}"
        keys = params.pop("keys", None)
        if keys is not None:
            return self._request("POST", path, params=params, body={"keys": keys})
        return self._request("GET", path, params=params)

    def changes(self, **params: Any) -> dict[str, Any]:
        timeout = None
        if params.get("feed") == "longpoll":
            timeout = float(params.get("timeout", 30000)) / 1000 + 10
        return self._request("GET", "_changes", params=params, timeout=timeout)

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
