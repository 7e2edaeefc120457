"""The one place where errors become `extensions.code`: nothing else decides what a client sees."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from graphql import GraphQLError

from notebook.core.errors import DomainError
from notebook.utils.logging import request_id_var

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal server error"
SUGGESTION = " Did you mean "

ErrorFormatter = Callable[[GraphQLError, bool], dict[str, Any]]


def internal_error_extensions() -> dict[str, Any]:
    """extensions of a masked internal error: the code, and the request id the log line carries."""
    request_id = request_id_var.get()
    return {"code": "INTERNAL_SERVER_ERROR", **({"requestId": request_id} if request_id else {})}


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
        formatted["extensions"] = internal_error_extensions()
    return formatted


def graphql_error_formatter(field_suggestions: bool) -> ErrorFormatter:
    """format_graphql_error, without graphql-core's "Did you mean ...?" hints unless allowed.

    The hints name fields, arguments and enum values close to what was typed: with introspection
    off they would still let a stranger read the schema one guess at a time.
    """
    if field_suggestions:
        return format_graphql_error

    def format_without_suggestions(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
        formatted = format_graphql_error(error, debug)
        formatted["message"] = formatted["message"].split(SUGGESTION, 1)[0]
        return formatted

    return format_without_suggestions
