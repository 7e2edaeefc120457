"""CouchDB's error answers as exceptions, and the decoding of every answer."""

from __future__ import annotations

from typing import Any

import httpx

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


ERRORS_BY_STATUS: dict[int, type[CouchError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: DocumentNotFound,
    409: DocumentConflict,
    412: PreconditionFailed,
}


def decode(response: httpx.Response) -> Any:
    """The JSON body of a success; the typed CouchError of a failure."""
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
    cls = ERRORS_BY_STATUS.get(response.status_code, CouchError)
    raise cls(response.status_code, str(error), str(reason))
