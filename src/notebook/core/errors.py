"""Domain errors. The API layer turns each into its `extensions.code` in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a client may see; `code` is the GraphQL `extensions.code`."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: object) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class InvalidInput(DomainError):
    code = "BAD_USER_INPUT"


class EmailTaken(Exception):
    """Another account already has this e-mail address. Not a DomainError: the service that
    registers an account turns it into the error the client sees."""


class VersionConflict(DomainError):
    """A write named a stale version; nothing was changed."""

    code = "CONFLICT"

    def __init__(self, message: str, current_version: str | None) -> None:
        super().__init__(message, currentVersion=current_version)
        self.current_version = current_version


class RateLimited(DomainError):
    code = "RATE_LIMITED"


class QueryTooComplex(DomainError):
    code = "QUERY_TOO_COMPLEX"


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"


class ServiceUnavailable(DomainError):
    code = "SERVICE_UNAVAILABLE"


class StorageError(Exception):
    """A failure reported by the storage below the services.

    The database layer raises only subclasses of this (its CouchDB errors derive from it), so a
    service handles storage failures without knowing which database sits below. It is not a
    DomainError: its message is for logs; a client sees it as an internal error, except when it
    is also a `ServiceUnavailable` (the database cannot be reached).
    """

    def __init__(self, message: str, reason: str = "") -> None:
        Exception.__init__(self, message)
        self.reason = reason or message


class UndecryptableDocument(DomainError):
    """A stored ciphertext that does not open: tampered with, copied from another document, or
    under a key this server does not hold. Never answered as an empty note."""

    def __init__(self, doc_id: str, why: str) -> None:
        super().__init__(
            f"document {doc_id} does not decrypt: {why}", reason="DECRYPTION_FAILED", documentId=doc_id
        )
        self.doc_id = doc_id
