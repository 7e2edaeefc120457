"""CouchDB's error answers as exceptions, and the decoding of every answer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson

from notebook.core.errors import ServiceUnavailable, StorageError


class CouchError(StorageError):
    """An error answer from CouchDB (services see it as a `StorageError`)."""

    def __init__(self, status: int, error: str = "", reason: str = "") -> None:
        StorageError.__init__(self, f"{status} {error}: {reason}".strip(), reason)
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


class QuorumNotReached(DatabaseUnavailable):
    """A document write reached fewer nodes than WRITE_QUORUM in time (couch/quorum.py).

    It is neither acknowledged nor rolled back: the node that took it keeps it and replication
    may still spread it, so the client is told the ids (`writeIds`) to check before writing again.
    """

    def __init__(self, doc_ids: list[str], copies: int, required: int, reason: str) -> None:
        CouchError.__init__(self, 503, "quorum_not_reached", reason)
        ServiceUnavailable.__init__(
            self,
            f"the write reached {copies} of the {required} database nodes it needs and is not "
            "confirmed; it may still be kept: read it back before writing it again",
            writeIds=list(doc_ids),
            writeQuorum=required,
        )
        self.doc_ids = list(doc_ids)
        self.copies = copies
        self.required = required


ERRORS_BY_STATUS: dict[int, type[CouchError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: DocumentNotFound,
    409: DocumentConflict,
    412: PreconditionFailed,
}


def loads(content: bytes) -> Any:
    """JSON from CouchDB: orjson, or the standard library for what orjson refuses (escaped
    unpaired surrogates, numbers beyond a double)."""
    try:
        return orjson.loads(content)
    except ValueError:
        return json.loads(content)


def decode(response: httpx.Response) -> Any:
    """The JSON body of a success; the typed CouchError of a failure."""
    try:
        payload = loads(response.content) if response.content else {}
    except ValueError:
        payload = {"error": "bad_response", "reason": response.text[:200]}
    if response.status_code < 400:
        return payload
    error = payload.get("error", "") if isinstance(payload, dict) else ""
    reason = payload.get("reason", "") if isinstance(payload, dict) else ""
    if response.status_code >= 500:
        raise DatabaseUnavailable(f"{response.status_code} {error}")
    cls = ERRORS_BY_STATUS.get(response.status_code, CouchError)
    raise cls(response.status_code, str(error), str(reason))
