"""The one place where errors become `extensions.code`: nothing else decides what a client sees."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from notebook.core.errors import DomainError

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal server error"


def error_body(code: str, message: str, **extensions: Any) -> dict[str, Any]:
    """An error in the GraphQL response shape, for failures before GraphQL runs."""
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


def format_graphql_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    """Map a GraphQL error to {message, locations, path, extensions.code}; hide internals."""
    formatted: dict[str, Any] = {"message": error.message}
    if error.locations:
        formatted["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        formatted["path"] = list(error.path)
    original = error.original_error
    if isinstance(original, DomainError):
        formatted["message"] = original.message
        formatted["extensions"] = {"code": original.code, **original.extensions}
    elif isinstance(original, RecursionError):
        # the parser gave up on a document nested deeper than it can follow
        formatted["message"] = "the query is nested too deeply"
        formatted["extensions"] = {"code": "QUERY_TOO_COMPLEX"}
    elif original is None or error.path is None:
        # parse, validation and variable errors: the request itself is wrong
        code = (error.extensions or {}).get("code", "BAD_USER_INPUT")
        formatted["extensions"] = {"code": code}
    else:
        log.error("unexpected error in resolver", exc_info=original, extra={"path": error.path})
        formatted["message"] = INTERNAL_MESSAGE
        formatted["extensions"] = {"code": "INTERNAL_SERVER_ERROR"}
    return formatted
